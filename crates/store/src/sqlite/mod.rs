//! The embedded default backend: one SQLite file in WAL mode.
//!
//! One writer thread owns the connection ([`writer`]); async callers send it
//! jobs and await the answer. Decisions are group-committed. Maintenance
//! (expiry, purge, deletes) runs in bounded batches, each its own short
//! transaction, so it never holds the write lock long enough to stall
//! decisions, unlike postgrey's nightly whole-database walk.
//!
//! Durability: with `synchronous = normal` (the default) a committed
//! decision survives the process being killed; `full` also survives power
//! loss, at the cost of one fsync per group commit.

mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, params};
use tokio::sync::oneshot;

use self::writer::{CLIENT_COLUMNS, ENTRY_COLUMNS, Job, client_from_row, entry_from_row};
use crate::model::{ClientRecord, Entry};
use crate::{
    ClientFilter, DecideRequest, Decision, EntryFilter, ListEntry, ListKind, ListTarget, Stats,
    Store, StoreError, Timestamp,
};

pub use schema::CURRENT_VERSION as SCHEMA_VERSION;

/// How hard SQLite works to make a commit survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Survives the process being killed; a power loss may lose the last
    /// commits (never corrupts the file).
    #[default]
    Normal,
    /// Survives power loss too: one fsync per group commit.
    Full,
}

/// Settings for [`SqliteStore::open`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// How long to wait for another process (the admin CLI) holding the
    /// write lock before the operation fails.
    pub busy_timeout: Duration,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Rows deleted or written per transaction by maintenance and admin work.
const CHUNK: usize = 1000;

/// The SQLite backend.
pub struct SqliteStore {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Open (creating if needed, with its directory) and migrate the file,
    /// then start the writer thread.
    pub fn open(options: &SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let mut conn = Connection::open_with_flags(
            &options.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", options.path.display()))
        })?;
        conn.busy_timeout(options.busy_timeout).map_err(error)?;
        let synchronous = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{}: cannot switch to WAL mode (got {mode}); is it on a network filesystem?",
                options.path.display()
            )));
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous};
             PRAGMA cache_size = -65536;
             PRAGMA temp_store = MEMORY;"
        ))
        .map_err(error)?;
        schema::migrate(&mut conn)?;

        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("greygate-sqlite".into())
            .spawn(move || writer::run(conn, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the sqlite thread: {e}")))?;
        Ok(SqliteStore {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            path: options.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    /// Run `f` on the writer thread and wait for its result.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Run(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        })))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn decide_job(&self, req: &DecideRequest, write: bool) -> Result<Decision, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Decide {
            req: req.clone(),
            write,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Dropping the sender ends the writer loop after queued jobs; wait
        // for it so the file is checkpointed and closed before we return.
        self.jobs
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

/// Classify an SQLite error: lock contention, I/O and a full disk are worth
/// retrying; anything else means the file is not what we expect.
pub(crate) fn error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::OutOfMemory
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied,
        ) => StoreError::Unavailable(e.to_string()),
        Some(_) => StoreError::Invalid(e.to_string()),
        None => StoreError::Unavailable(e.to_string()),
    }
}

fn scan_entries(
    conn: &Connection,
    filter: &EntryFilter,
    limit: Option<usize>,
) -> Result<Vec<Entry>, StoreError> {
    let state_clause = match filter.state {
        Some(crate::EntryState::Pending) => " WHERE passed_at IS NULL",
        Some(crate::EntryState::Passed) => " WHERE passed_at IS NOT NULL",
        None => "",
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM triplets{state_clause} ORDER BY client, sender, recipient"
        ))
        .map_err(error)?;
    let mut rows = stmt.query([]).map_err(error)?;
    let mut out = Vec::new();
    let limit = limit.unwrap_or(usize::MAX);
    while out.len() < limit {
        let Some(row) = rows.next().map_err(error)? else {
            break;
        };
        let e = entry_from_row(row).map_err(error)?;
        if filter.matches(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

fn scan_clients(
    conn: &Connection,
    filter: &ClientFilter,
    limit: Option<usize>,
) -> Result<Vec<ClientRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client"
        ))
        .map_err(error)?;
    let mut rows = stmt.query([]).map_err(error)?;
    let mut out = Vec::new();
    let limit = limit.unwrap_or(usize::MAX);
    while out.len() < limit {
        let Some(row) = rows.next().map_err(error)? else {
            break;
        };
        let c = client_from_row(row).map_err(error)?;
        if filter.matches(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// Run `each` over `items` in transactions of [`CHUNK`] rows.
fn chunked<T>(
    conn: &mut Connection,
    items: &[T],
    mut each: impl FnMut(&Connection, &T) -> rusqlite::Result<usize>,
) -> Result<u64, StoreError> {
    let mut done = 0u64;
    for chunk in items.chunks(CHUNK) {
        let tx = conn.transaction().map_err(error)?;
        for item in chunk {
            done += each(&tx, item).map_err(error)? as u64;
        }
        tx.commit().map_err(error)?;
    }
    Ok(done)
}

fn bump_lists_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'lists_version'",
        [],
    )
}

/// Delete at most `limit` rows of `table`: those expired before `cutoff`,
/// or any rows when `cutoff` is `None`.
fn delete_some(
    conn: &Connection,
    table: &str,
    key: &str,
    cutoff: Option<Timestamp>,
    limit: usize,
) -> rusqlite::Result<usize> {
    let condition = if cutoff.is_some() {
        "WHERE expires_at < ?1"
    } else {
        "WHERE ?1 IS NULL"
    };
    conn.prepare_cached(&format!(
        "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} {condition} LIMIT ?2)"
    ))?
    .execute(params![cutoff, limit as i64])
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn decide(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.decide_job(req, true).await
    }

    async fn peek(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.decide_job(req, false).await
    }

    async fn entries(
        &self,
        filter: &EntryFilter,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| scan_entries(conn, &filter, limit))
            .await
    }

    async fn delete_entries(&self, filter: &EntryFilter) -> Result<u64, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| {
            let victims = scan_entries(conn, &filter, None)?;
            chunked(conn, &victims, |tx, e| {
                tx.prepare_cached(
                    "DELETE FROM triplets WHERE client = ?1 AND sender = ?2 AND recipient = ?3",
                )?
                .execute(params![e.key.client, e.key.sender, e.key.recipient])
            })
        })
        .await
    }

    async fn clients(
        &self,
        filter: &ClientFilter,
        limit: Option<usize>,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| scan_clients(conn, &filter, limit))
            .await
    }

    async fn delete_clients(&self, filter: &ClientFilter) -> Result<u64, StoreError> {
        let filter = filter.clone();
        self.call(move |conn| {
            let victims = scan_clients(conn, &filter, None)?;
            chunked(conn, &victims, |tx, c| {
                tx.prepare_cached("DELETE FROM clients WHERE client = ?1")?
                    .execute(params![c.client])
            })
        })
        .await
    }

    async fn put_records(
        &self,
        entries: &[Entry],
        clients: &[ClientRecord],
    ) -> Result<(), StoreError> {
        let (entries, clients) = (entries.to_vec(), clients.to_vec());
        self.call(move |conn| {
            chunked(conn, &entries, |tx, e| {
                writer::upsert_entry(tx, e).map(|()| 1)
            })?;
            chunked(conn, &clients, |tx, c| {
                writer::upsert_client(tx, c).map(|()| 1)
            })?;
            Ok(())
        })
        .await
    }

    async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare("SELECT kind, target, value, comment, added_at FROM lists")
                .map_err(error)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(error)?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, target, value, comment, added_at) = row.map_err(error)?;
                let (Some(kind), Some(target)) =
                    (ListKind::parse(&kind), ListTarget::parse(&target))
                else {
                    return Err(StoreError::Invalid(format!("unknown list {kind}/{target}")));
                };
                out.push(ListEntry {
                    kind,
                    target,
                    value,
                    comment,
                    added_at,
                });
            }
            // The trait's order is the enums' order, not their names'.
            out.sort_by(|a, b| (a.kind, a.target, &a.value).cmp(&(b.kind, b.target, &b.value)));
            Ok(out)
        })
        .await
    }

    async fn add_list_entry(&self, entry: &ListEntry) -> Result<bool, StoreError> {
        let entry = entry.clone();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(error)?;
            let updated = tx
                .execute(
                    "UPDATE lists SET comment = ?4 WHERE kind = ?1 AND target = ?2 AND value = ?3",
                    params![entry.kind.as_str(), entry.target.as_str(), entry.value, entry.comment],
                )
                .map_err(error)?;
            if updated == 0 {
                tx.execute(
                    "INSERT INTO lists (kind, target, value, comment, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![entry.kind.as_str(), entry.target.as_str(), entry.value, entry.comment, entry.added_at],
                )
                .map_err(error)?;
            }
            bump_lists_version(&tx).map_err(error)?;
            tx.commit().map_err(error)?;
            Ok(updated == 0)
        })
        .await
    }

    async fn remove_list_entry(
        &self,
        kind: ListKind,
        target: ListTarget,
        value: &str,
    ) -> Result<bool, StoreError> {
        let value = value.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(error)?;
            let removed = tx
                .execute(
                    "DELETE FROM lists WHERE kind = ?1 AND target = ?2 AND value = ?3",
                    params![kind.as_str(), target.as_str(), value],
                )
                .map_err(error)?;
            if removed > 0 {
                bump_lists_version(&tx).map_err(error)?;
            }
            tx.commit().map_err(error)?;
            Ok(removed > 0)
        })
        .await
    }

    async fn lists_version(&self) -> Result<u64, StoreError> {
        self.call(|conn| {
            conn.prepare_cached("SELECT value FROM meta WHERE key = 'lists_version'")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(|v| v as u64)
                .map_err(error)
        })
        .await
    }

    async fn add_counters(&self, deltas: &[(String, u64)]) -> Result<(), StoreError> {
        let deltas = deltas.to_vec();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(error)?;
            for (name, delta) in &deltas {
                tx.prepare_cached(
                    "INSERT INTO counters (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                )
                .and_then(|mut s| s.execute(params![name, *delta as i64]))
                .map_err(error)?;
            }
            tx.commit().map_err(error)
        })
        .await
    }

    async fn stats(&self, now: Timestamp, awl_after: u32) -> Result<Stats, StoreError> {
        self.call(move |conn| {
            let mut stats = Stats::default();
            let (expired, passed, pending): (i64, i64, i64) = conn
                .query_row(
                    "SELECT COUNT(*) FILTER (WHERE expires_at < ?1),
                            COUNT(*) FILTER (WHERE expires_at >= ?1 AND passed_at IS NOT NULL),
                            COUNT(*) FILTER (WHERE expires_at >= ?1 AND passed_at IS NULL)
                     FROM triplets",
                    params![now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(error)?;
            let threshold = if awl_after == 0 {
                i64::MAX
            } else {
                i64::from(awl_after)
            };
            let (c_expired, whitelisted, counting): (i64, i64, i64) = conn
                .query_row(
                    "SELECT COUNT(*) FILTER (WHERE expires_at < ?1),
                            COUNT(*) FILTER (WHERE expires_at >= ?1 AND passes >= ?2),
                            COUNT(*) FILTER (WHERE expires_at >= ?1 AND passes < ?2)
                     FROM clients",
                    params![now, threshold],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(error)?;
            stats.expired = (expired + c_expired) as u64;
            stats.passed = passed as u64;
            stats.pending = pending as u64;
            stats.clients_whitelisted = whitelisted as u64;
            stats.clients_counting = counting as u64;
            let mut stmt = conn
                .prepare("SELECT kind || '/' || target, COUNT(*) FROM lists GROUP BY kind, target")
                .map_err(error)?;
            for row in stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(error)?
            {
                let (name, n) = row.map_err(error)?;
                stats.lists.insert(name, n as u64);
            }
            let mut stmt = conn
                .prepare("SELECT name, value FROM counters")
                .map_err(error)?;
            for row in stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(error)?
            {
                let (name, n) = row.map_err(error)?;
                stats.counters.insert(name, n as u64);
            }
            Ok(stats)
        })
        .await
    }

    async fn expire(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError> {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(error)?;
            let entries = delete_some(
                &tx,
                "triplets",
                "client, sender, recipient",
                Some(now),
                batch,
            )
            .map_err(error)?;
            let clients =
                delete_some(&tx, "clients", "client", Some(now), batch - entries).map_err(error)?;
            tx.commit().map_err(error)?;
            Ok((entries + clients) as u64)
        })
        .await
    }

    async fn clear(&self, batch: usize) -> Result<u64, StoreError> {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(error)?;
            let entries = delete_some(&tx, "triplets", "client, sender, recipient", None, batch)
                .map_err(error)?;
            let clients =
                delete_some(&tx, "clients", "client", None, batch - entries).map_err(error)?;
            tx.commit().map_err(error)?;
            Ok((entries + clients) as u64)
        })
        .await
    }

    async fn record_count(&self) -> Result<u64, StoreError> {
        self.call(|conn| {
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM triplets) + (SELECT COUNT(*) FROM clients)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(error)
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.send(Job::Close(done))?;
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = wait.await;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            // It has already answered `Close`, so this returns at once.
            let _ = t.join();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
