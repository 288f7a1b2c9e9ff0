//! The thread that owns the SQLite connection.
//!
//! Every operation is a job on one queue. Consecutive decisions are grouped
//! into one transaction (group commit), and each caller gets its answer
//! only after COMMIT returned: a decision that was answered is on disk (in
//! the WAL), so `kill -9` cannot lose it. One thread means one writer, which
//! is also what makes each decision's read-modify-write atomic.

use std::sync::mpsc::{Receiver, TryRecvError};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::error;
use crate::model::{self, ClientRecord, Entry};
use crate::{DecideRequest, Decision, StoreError, TripletKey};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Job {
    Decide {
        req: DecideRequest,
        /// `false` for `peek`: decide, but write nothing.
        write: bool,
        reply: Reply<Decision>,
    },
    /// Any other operation; the closure sends its own reply.
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Finish queued work, checkpoint, and stop.
    Close(oneshot::Sender<()>),
}

/// Most jobs taken from the queue into one transaction.
const MAX_BATCH: usize = 512;

pub(super) fn run(mut conn: Connection, jobs: Receiver<Job>) {
    let mut decisions: Vec<(DecideRequest, bool, Reply<Decision>)> = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(job) = next.take() {
            taken += 1;
            match job {
                Job::Decide { req, write, reply } => decisions.push((req, write, reply)),
                Job::Run(f) => {
                    commit_decisions(&mut conn, &mut decisions);
                    f(&mut conn);
                }
                Job::Close(done) => {
                    commit_decisions(&mut conn, &mut decisions);
                    shut_down(conn);
                    let _ = done.send(());
                    return;
                }
            }
            if taken < MAX_BATCH {
                next = match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
                };
            }
        }
        commit_decisions(&mut conn, &mut decisions);
    }
    shut_down(conn);
}

fn shut_down(conn: Connection) {
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "sqlite checkpoint at shutdown failed");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "sqlite close failed");
    }
}

/// Apply queued decisions in one transaction, then answer them.
fn commit_decisions(
    conn: &mut Connection,
    decisions: &mut Vec<(DecideRequest, bool, Reply<Decision>)>,
) {
    if decisions.is_empty() {
        return;
    }
    let result = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(decisions.len());
        for (req, write, _) in decisions.iter() {
            out.push(decide(&tx, req, *write)?);
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>(out)
    })();
    match result {
        Ok(out) => {
            for ((_, _, reply), decision) in decisions.drain(..).zip(out) {
                let _ = reply.send(Ok(decision));
            }
        }
        Err(e) => {
            let e = error(e);
            tracing::warn!(error = %e, batch = decisions.len(), "sqlite decision batch failed; rolled back");
            for (_, _, reply) in decisions.drain(..) {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn decide(tx: &Transaction<'_>, req: &DecideRequest, write: bool) -> rusqlite::Result<Decision> {
    let client = match &req.auto_whitelist {
        Some(awl) => select_client(tx, &awl.client)?,
        None => None,
    };
    let whitelisted = client
        .as_ref()
        .zip(req.auto_whitelist.as_ref())
        .is_some_and(|(c, awl)| model::whitelists(c, awl, req.now));
    let entry = if whitelisted {
        None
    } else {
        select_entry(tx, &req.triplet)?
    };
    let step = model::decide(req, client.as_ref(), entry.as_ref());
    if write {
        if let Some(c) = &step.client {
            upsert_client(tx, c)?;
        }
        if let Some(e) = &step.entry {
            upsert_entry(tx, e)?;
        }
    }
    Ok(Decision {
        outcome: step.outcome,
        entry: step.entry,
    })
}

pub(super) const ENTRY_COLUMNS: &str =
    "client, sender, recipient, first_seen, last_seen, passed_at, attempts, passes, expires_at";

pub(super) fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        key: TripletKey {
            client: row.get(0)?,
            sender: row.get(1)?,
            recipient: row.get(2)?,
        },
        first_seen: row.get(3)?,
        last_seen: row.get(4)?,
        passed_at: row.get(5)?,
        attempts: row.get(6)?,
        passes: row.get(7)?,
        expires_at: row.get(8)?,
    })
}

pub(super) const CLIENT_COLUMNS: &str = "client, passes, last_counted, last_seen, expires_at";

pub(super) fn client_from_row(row: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    Ok(ClientRecord {
        client: row.get(0)?,
        passes: row.get(1)?,
        last_counted: row.get(2)?,
        last_seen: row.get(3)?,
        expires_at: row.get(4)?,
    })
}

fn select_entry(conn: &Connection, key: &TripletKey) -> rusqlite::Result<Option<Entry>> {
    conn.prepare_cached(
        "SELECT client, sender, recipient, first_seen, last_seen, passed_at, attempts, passes, expires_at
         FROM triplets WHERE client = ?1 AND sender = ?2 AND recipient = ?3",
    )?
    .query_row(params![key.client, key.sender, key.recipient], entry_from_row)
    .optional()
}

fn select_client(conn: &Connection, client: &str) -> rusqlite::Result<Option<ClientRecord>> {
    conn.prepare_cached(
        "SELECT client, passes, last_counted, last_seen, expires_at FROM clients WHERE client = ?1",
    )?
    .query_row(params![client], client_from_row)
    .optional()
}

pub(super) fn upsert_entry(conn: &Connection, e: &Entry) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO triplets (client, sender, recipient, first_seen, last_seen, passed_at, attempts, passes, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (client, sender, recipient) DO UPDATE SET
             first_seen = excluded.first_seen, last_seen = excluded.last_seen,
             passed_at = excluded.passed_at, attempts = excluded.attempts,
             passes = excluded.passes, expires_at = excluded.expires_at",
    )?
    .execute(params![
        e.key.client,
        e.key.sender,
        e.key.recipient,
        e.first_seen,
        e.last_seen,
        e.passed_at,
        e.attempts,
        e.passes,
        e.expires_at
    ])?;
    Ok(())
}

pub(super) fn upsert_client(conn: &Connection, c: &ClientRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO clients (client, passes, last_counted, last_seen, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (client) DO UPDATE SET
             passes = excluded.passes, last_counted = excluded.last_counted,
             last_seen = excluded.last_seen, expires_at = excluded.expires_at",
    )?
    .execute(params![
        c.client,
        c.passes,
        c.last_counted,
        c.last_seen,
        c.expires_at
    ])?;
    Ok(())
}
