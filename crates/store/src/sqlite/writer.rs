//! The thread that owns the SQLite connection and the log mirror.
//!
//! Every operation is a job on one queue. Consecutive decisions share one
//! transaction (group commit), and each caller is answered only after
//! COMMIT returned: an answered decision is in the WAL, so `kill -9` cannot
//! lose it.
//!
//! Compaction (log → snapshot) runs in this thread when it is otherwise
//! idle: after [`IDLE`] without a job, small chunks are compacted until a
//! job arrives. Under a load with no idle moments, memory would grow, so
//! past [`SOFT_LIMIT`] keys every batch also compacts twice as many log
//! rows as it wrote: a burst is absorbed at the speed of appends, a
//! sustained flood runs at the speed of compaction.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::hooks::Wal;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::error;
use super::queue::{JobQueue, Waited};
use super::shortcut::{Read, Shortcut};
use super::state::{Pending, State};
use crate::model::{self, ClientRecord, Entry};
use crate::{DecideRequest, Decision, StoreError};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// An operation on the database, run by the writer thread.
pub(super) type Work = Box<dyn FnOnce(&mut Connection, &mut State) + Send>;

pub(super) enum Job {
    Decide {
        req: DecideRequest,
        /// `false` for `peek`: decide, but write nothing.
        write: bool,
        reply: Reply<Decision>,
    },
    /// Any other operation; the closure sends its own reply.
    Run(Work),
    /// Finish queued work, compact, checkpoint, and stop.
    Close(oneshot::Sender<()>),
}

/// Most jobs taken from the queue into one transaction.
const MAX_BATCH: usize = 512;
/// Quiet time after which compaction starts: long enough that a busy
/// server's brief gaps do not count, short enough that a normally loaded
/// one compacts between messages.
const IDLE: Duration = Duration::from_millis(20);
/// Log rows compacted per transaction when idle (a few milliseconds).
const IDLE_CHUNK: usize = 256;
/// Keys in memory above which every batch compacts too.
pub(super) const SOFT_LIMIT: usize = 500_000;
/// WAL frames (pages) above which the writer restarts the WAL itself:
/// 16384 pages, 64 MiB. Under a continuous load the background checkpoint
/// never sees the WAL complete, so SQLite would never start it over and it
/// would grow without bound. The background thread has already copied all
/// but the newest frames; what the restart costs is mostly the fsync of the
/// database file (5-8 ms measured on this disk), so it should be rare.
const WAL_LIMIT_FRAMES: i32 = 16384;

thread_local! {
    /// Frames in the WAL after this thread's last commit (SQLite's WAL hook).
    static WAL_FRAMES: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(frames));
    Ok(())
}

pub(super) fn run(mut conn: Connection, jobs: &JobQueue, compact_on_close: bool, shortcut: Arc<Shortcut>) {
    conn.wal_hook(Some(note_wal_frames));
    let mut state = State::new(shortcut);
    let mut decisions: Vec<(DecideRequest, bool, Reply<Decision>)> = Vec::new();
    // Whether the log may hold rows to compact.
    let mut dirty = true;
    let mut next: Option<Job> = None;
    let mut last_job = Instant::now();
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => match jobs.wait(dirty.then_some(IDLE), last_job) {
                Waited::Job(job) => job,
                Waited::Timeout => {
                    (next, dirty) = compact_while_idle(&mut conn, &mut state, jobs);
                    continue;
                }
                Waited::Closed => break,
            },
        };
        last_job = Instant::now();
        dirty = true;
        let mut job = Some(first);
        let mut taken = 0;
        while let Some(current) = job.take() {
            taken += 1;
            match current {
                Job::Decide { req, write, reply } => decisions.push((req, write, reply)),
                Job::Run(f) => {
                    commit_decisions(&mut conn, &mut state, &mut decisions);
                    f(&mut conn, &mut state);
                }
                Job::Close(done) => {
                    commit_decisions(&mut conn, &mut state, &mut decisions);
                    shut_down(conn, &mut state, compact_on_close);
                    let _ = done.send(());
                    return;
                }
            }
            if taken < MAX_BATCH {
                job = jobs.try_pop();
            }
        }
        let written = commit_decisions(&mut conn, &mut state, &mut decisions);
        if state.len() > SOFT_LIMIT
            && written > 0
            && let Err(e) = compact_step(&mut conn, &mut state, 2 * written)
        {
            tracing::warn!(error = %e, "sqlite compaction failed; will retry");
        }
        if WAL_FRAMES.with(Cell::get) > WAL_LIMIT_FRAMES {
            match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                Ok(()) => WAL_FRAMES.with(|f| f.set(0)),
                Err(e) => tracing::debug!(error = %e, "wal restart skipped"),
            }
        }
    }
    shut_down(conn, &mut state, compact_on_close);
}

/// Compact while no job is waiting. Returns the job that interrupted, if
/// any, and whether the log may still hold rows.
fn compact_while_idle(conn: &mut Connection, state: &mut State, jobs: &JobQueue) -> (Option<Job>, bool) {
    loop {
        match compact_step(conn, state, IDLE_CHUNK) {
            Ok(0) => return (None, false),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "sqlite compaction failed; will retry after the next job");
                return (None, false);
            }
        }
        if let Some(job) = jobs.try_pop() {
            return (Some(job), true);
        }
    }
}

/// One compaction transaction; returns the log rows moved.
pub(super) fn compact_step(conn: &mut Connection, state: &mut State, limit: usize) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    state.catch_up(&tx)?;
    let compacted = state.compact(&tx, limit)?;
    tx.commit()?;
    let rows = compacted.records();
    state.forget(compacted);
    Ok(rows)
}

fn shut_down(mut conn: Connection, state: &mut State, compact: bool) {
    // Leave a short log behind so the next start loads quickly.
    if compact {
        loop {
            match compact_step(&mut conn, state, 10_000) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sqlite compaction at shutdown failed");
                    break;
                }
            }
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "sqlite checkpoint at shutdown failed");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "sqlite close failed");
    }
}

/// Run `f` in a write transaction that starts caught up; its staged writes
/// reach the mirror only if COMMIT succeeds.
pub(super) fn write_txn<T>(
    conn: &mut Connection,
    state: &mut State,
    f: impl FnOnce(&State, &mut Pending, &Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let run = || {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        state.catch_up(&tx)?;
        let mut pending = Pending::new(state);
        let out = f(state, &mut pending, &tx)?;
        pending.write(&tx)?;
        tx.commit()?;
        Ok::<_, rusqlite::Error>((out, pending))
    };
    let (out, pending) = run().map_err(error)?;
    state.commit(pending);
    Ok(out)
}

/// Run `f` in a read transaction (one consistent view) that starts caught up.
pub(super) fn read_txn<T>(
    conn: &mut Connection,
    state: &mut State,
    f: impl FnOnce(&State, &Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let run = || {
        let tx = conn.transaction()?;
        state.catch_up(&tx)?;
        let out = f(state, &tx)?;
        tx.commit()?;
        Ok(out)
    };
    run().map_err(error)
}

/// Apply queued decisions in one transaction, then answer them. Returns
/// the number of log rows written.
fn commit_decisions(
    conn: &mut Connection,
    state: &mut State,
    decisions: &mut Vec<(DecideRequest, bool, Reply<Decision>)>,
) -> usize {
    if decisions.is_empty() {
        return 0;
    }
    let result = write_txn(conn, state, |state, pending, tx| {
        let mut out = Vec::with_capacity(decisions.len());
        let mut reads = Vec::new();
        let mut written = 0;
        for (req, write, _) in decisions.iter() {
            let (decision, rows, read) = decide(state, pending, tx, req, *write)?;
            out.push(decision);
            written += rows;
            reads.extend(read);
        }
        // A key a later decision of this batch wrote is not what was read.
        reads.retain(|r: &Read| {
            r.entry.as_ref().is_none_or(|e| !pending.writes_triplet(&e.key))
                && r.client.as_ref().is_none_or(|(c, _)| !pending.writes_client(c))
        });
        Ok((out, written, reads))
    });
    match result {
        Ok((out, written, reads)) => {
            state.remember(reads);
            for ((_, _, reply), decision) in decisions.drain(..).zip(out) {
                let _ = reply.send(Ok(decision));
            }
            written
        }
        Err(e) => {
            tracing::warn!(error = %e, batch = decisions.len(), "sqlite decision batch failed; rolled back");
            for (_, _, reply) in decisions.drain(..) {
                let _ = reply.send(Err(e.clone()));
            }
            0
        }
    }
}

/// One decision; returns it, the number of log rows written and, when it
/// wrote nothing, what it read (for [`Shortcut`]).
fn decide(
    state: &State,
    pending: &mut Pending,
    conn: &Connection,
    req: &DecideRequest,
    write: bool,
) -> rusqlite::Result<(Decision, usize, Option<Read>)> {
    let client = match &req.auto_whitelist {
        Some(awl) => state.client(pending, conn, &awl.client)?,
        None => None,
    };
    let whitelisted =
        client.as_ref().zip(req.auto_whitelist.as_ref()).is_some_and(|(c, awl)| model::whitelists(c, awl, req.now));
    let entry = if whitelisted { None } else { state.entry(pending, conn, &req.triplet)? };
    let step = model::decide(req, client.as_ref(), entry.as_ref());
    let mut rows = 0;
    if write {
        if let Some(c) = &step.client {
            pending.put_client(c);
            rows += 1;
        }
        if let (Some(e), true) = (&step.entry, step.write_entry) {
            pending.put_entry(e);
            rows += 1;
        }
    }
    let read = (write && rows == 0).then(|| Read {
        client: req.auto_whitelist.as_ref().map(|awl| (awl.client.clone(), client.clone())),
        entry: if whitelisted { None } else { entry },
    });
    let decision = Decision { outcome: step.outcome, entry: step.entry };
    Ok((decision, rows, read))
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
    .execute(params![c.client, c.passes, c.last_counted, c.last_seen, c.expires_at])?;
    Ok(())
}
