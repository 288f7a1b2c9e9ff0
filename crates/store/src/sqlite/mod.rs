//! The embedded default backend: one SQLite file in WAL mode.
//!
//! State lives in two forms in the same file: *snapshot* tables keyed by
//! triplet and client, and append-only *log* tables where every change is
//! written first ([`state`] explains the model). One writer thread owns the
//! connection ([`writer`]); async callers queue it jobs ([`queue`]: a
//! serving thread wakes it when it parks, so decisions come in batches)
//! and await the answer. Decisions are group-committed, and a decision
//! costs an append, not a random B-tree write, so a burst of new triplets
//! runs at the speed of appends. Compaction folds the log into the
//! snapshot when the writer is idle. Maintenance (expiry, purge, deletes)
//! works in bounded batches, each its own short transaction, so it never
//! stalls decisions for long, unlike postgrey's nightly whole-database
//! walk. Decisions that write
//! nothing (known senders) are answered on the caller's thread from
//! records the writer remembered ([`shortcut`]).
//!
//! Several processes may use one file (the server and the admin CLI, or
//! two servers): each catches up on the others' log rows at the start of
//! every write transaction, under SQLite's write lock.
//!
//! Durability: with `synchronous = normal` (the default) a committed
//! decision survives the process being killed; `full` also survives power
//! loss, at the cost of one fsync per group commit.

mod checkpoint;
mod filter;
mod log;
mod queue;
mod schema;
mod shortcut;
mod state;
mod table;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, params};
use tokio::sync::oneshot;

use self::queue::JobQueue;
pub use self::queue::wake_deferred;
use self::shortcut::Shortcut;
use self::state::State;
use self::writer::{Job, read_txn, write_txn};
use crate::model::{ClientRecord, Entry, EntryState};
use crate::{
    ClientFilter, DecideRequest, Decision, EntryFilter, ListEntry, ListKind, ListTarget, Stats, Store, StoreError,
    Timestamp,
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
    /// Fold the whole log into the snapshot when closing. The server does;
    /// a short-lived admin command should not, because that holds the
    /// write lock for as long as the log is big, stalling the server.
    pub compact_on_close: bool,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            compact_on_close: true,
        }
    }
}

/// Records written per transaction by admin work (deletes, imports).
const CHUNK: usize = 1000;

/// The SQLite backend.
pub struct SqliteStore {
    /// Jobs for the writer thread; closed when the store is dropped.
    jobs: Arc<JobQueue>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    /// Decisions that write nothing, answered on the caller's thread.
    shortcut: Arc<Shortcut>,
}

impl SqliteStore {
    /// Open (creating if needed, with its directory) and migrate the file,
    /// then start the writer thread.
    pub fn open(options: &SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open_with_flags(
            &options.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", options.path.display())))?;
        conn.busy_timeout(options.busy_timeout).map_err(error)?;
        // Only takes effect on a new file, before WAL mode is set. Every
        // group commit rewrites the log table's last page into the WAL: 2 KiB
        // pages halve that volume against SQLite's 4 KiB default (p99 under
        // load 1.9-2.0 ms -> 1.1-1.4 ms measured), while keeping the
        // snapshot's B-trees shallow.
        conn.execute_batch("PRAGMA page_size = 2048;").map_err(error)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{}: cannot switch to WAL mode (got {mode}); is it on a network filesystem?",
                options.path.display()
            )));
        }
        let synchronous = match options.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous};
             PRAGMA cache_size = -65536;
             PRAGMA temp_store = MEMORY;
             PRAGMA wal_autocheckpoint = 0;"
        ))
        .map_err(error)?;
        schema::migrate(&mut conn)?;

        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| StoreError::Unavailable(format!("cannot start the {name} thread: {e}")))
        };
        let (stop_checkpoints, stop) = mpsc::channel();
        let path = options.path.clone();
        let checkpointer = spawn("greygate-ckpt", Box::new(move || checkpoint::run(path, synchronous, stop)))?;
        let jobs = Arc::new(JobQueue::default());
        let for_writer_jobs = Arc::clone(&jobs);
        let compact_on_close = options.compact_on_close;
        let shortcut = Arc::new(Shortcut::default());
        let for_writer = Arc::clone(&shortcut);
        let writer = spawn(
            "greygate-sqlite",
            Box::new(move || {
                writer::run(conn, &for_writer_jobs, compact_on_close, for_writer);
                for_writer_jobs.abandon();
                // The writer checkpointed at its shutdown; stop the other.
                drop(stop_checkpoints);
                let _ = checkpointer.join();
            }),
        )?;
        Ok(SqliteStore { jobs, thread: Mutex::new(Some(writer)), path: options.path.clone(), shortcut })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let decision = matches!(job, Job::Decide { .. });
        if self.jobs.push(job, decision) { Ok(()) } else { Err(StoreError::Closed) }
    }

    /// Run `f` on the writer thread and wait for its result.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &mut State) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Run(Box::new(move |conn, state| {
            let _ = reply.send(f(conn, state));
        })))?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn decide_job(&self, req: &DecideRequest, write: bool) -> Result<Decision, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Decide { req: req.clone(), write, reply })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer loop after queued jobs; wait
        // for it so the file is compacted and closed before we return.
        self.jobs.close();
        if let Some(t) = self.thread.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
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

fn bump_lists_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'lists_version'", [])
}

fn matching_entries(
    conn: &mut Connection,
    state: &mut State,
    filter: &EntryFilter,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    read_txn(conn, state, |state, tx| {
        let mut out = Vec::new();
        if limit > 0 {
            state.scan_entries(tx, |e| {
                if filter.matches(&e) {
                    out.push(e);
                }
                out.len() < limit
            })?;
        }
        Ok(out)
    })
}

fn matching_clients(
    conn: &mut Connection,
    state: &mut State,
    filter: &ClientFilter,
    limit: usize,
) -> Result<Vec<ClientRecord>, StoreError> {
    read_txn(conn, state, |state, tx| {
        let mut out = Vec::new();
        if limit > 0 {
            state.scan_clients(tx, |c| {
                if filter.matches(&c) {
                    out.push(c);
                }
                out.len() < limit
            })?;
        }
        Ok(out)
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn decide(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        if let Some(decision) = self.shortcut.decide(req) {
            return Ok(decision);
        }
        self.decide_job(req, true).await
    }

    async fn peek(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.decide_job(req, false).await
    }

    async fn entries(&self, filter: &EntryFilter, limit: Option<usize>) -> Result<Vec<Entry>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn, state| matching_entries(conn, state, &filter, limit.unwrap_or(usize::MAX))).await
    }

    async fn delete_entries(&self, filter: &EntryFilter) -> Result<u64, StoreError> {
        let filter = filter.clone();
        self.call(move |conn, state| {
            let victims = matching_entries(conn, state, &filter, usize::MAX)?;
            for chunk in victims.chunks(CHUNK) {
                write_txn(conn, state, |_, pending, _| {
                    chunk.iter().for_each(|e| pending.delete_entry(&e.key));
                    Ok(())
                })?;
            }
            Ok(victims.len() as u64)
        })
        .await
    }

    async fn clients(&self, filter: &ClientFilter, limit: Option<usize>) -> Result<Vec<ClientRecord>, StoreError> {
        let filter = filter.clone();
        self.call(move |conn, state| matching_clients(conn, state, &filter, limit.unwrap_or(usize::MAX))).await
    }

    async fn delete_clients(&self, filter: &ClientFilter) -> Result<u64, StoreError> {
        let filter = filter.clone();
        self.call(move |conn, state| {
            let victims = matching_clients(conn, state, &filter, usize::MAX)?;
            for chunk in victims.chunks(CHUNK) {
                write_txn(conn, state, |_, pending, _| {
                    chunk.iter().for_each(|c| pending.delete_client(&c.client));
                    Ok(())
                })?;
            }
            Ok(victims.len() as u64)
        })
        .await
    }

    async fn put_records(&self, entries: &[Entry], clients: &[ClientRecord]) -> Result<(), StoreError> {
        let (entries, clients) = (entries.to_vec(), clients.to_vec());
        self.call(move |conn, state| {
            for chunk in entries.chunks(CHUNK) {
                write_txn(conn, state, |_, pending, _| {
                    chunk.iter().for_each(|e| pending.put_entry(e));
                    Ok(())
                })?;
            }
            for chunk in clients.chunks(CHUNK) {
                write_txn(conn, state, |_, pending, _| {
                    chunk.iter().for_each(|c| pending.put_client(c));
                    Ok(())
                })?;
            }
            Ok(())
        })
        .await
    }

    async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError> {
        self.call(|conn, _| {
            let mut stmt = conn.prepare("SELECT kind, target, value, comment, added_at FROM lists").map_err(error)?;
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
                let (Some(kind), Some(target)) = (ListKind::parse(&kind), ListTarget::parse(&target)) else {
                    return Err(StoreError::Invalid(format!("unknown list {kind}/{target}")));
                };
                out.push(ListEntry { kind, target, value, comment, added_at });
            }
            // The trait's order is the enums' order, not their names'.
            out.sort_by(|a, b| (a.kind, a.target, &a.value).cmp(&(b.kind, b.target, &b.value)));
            Ok(out)
        })
        .await
    }

    async fn add_list_entry(&self, entry: &ListEntry) -> Result<bool, StoreError> {
        let entry = entry.clone();
        self.call(move |conn, _| {
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

    async fn remove_list_entry(&self, kind: ListKind, target: ListTarget, value: &str) -> Result<bool, StoreError> {
        let value = value.to_owned();
        self.call(move |conn, _| {
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
        self.call(|conn, _| {
            conn.prepare_cached("SELECT value FROM meta WHERE key = 'lists_version'")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(|v| v as u64)
                .map_err(error)
        })
        .await
    }

    async fn add_counters(&self, deltas: &[(String, u64)]) -> Result<(), StoreError> {
        let deltas = deltas.to_vec();
        self.call(move |conn, _| {
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
        self.call(move |conn, state| {
            read_txn(conn, state, |state, tx| {
                let mut stats = Stats::default();
                state.scan_entries(tx, |e| {
                    match (e.expires_at < now, e.state()) {
                        (true, _) => stats.expired += 1,
                        (false, EntryState::Passed) => stats.passed += 1,
                        (false, EntryState::Pending) => stats.pending += 1,
                    }
                    true
                })?;
                state.scan_clients(tx, |c| {
                    if c.expires_at < now {
                        stats.expired += 1;
                    } else if awl_after > 0 && c.passes >= awl_after {
                        stats.clients_whitelisted += 1;
                    } else {
                        stats.clients_counting += 1;
                    }
                    true
                })?;
                let mut stmt = tx.prepare("SELECT kind || '/' || target, COUNT(*) FROM lists GROUP BY kind, target")?;
                for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                    let (name, n) = row?;
                    stats.lists.insert(name, n as u64);
                }
                let mut stmt = tx.prepare("SELECT name, value FROM counters")?;
                for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                    let (name, n) = row?;
                    stats.counters.insert(name, n as u64);
                }
                Ok(stats)
            })
        })
        .await
    }

    async fn expire(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError> {
        self.call(move |conn, state| {
            write_txn(conn, state, |state, pending, tx| state.delete_expired(pending, tx, batch, Some(now)))
                .map(|n| n as u64)
        })
        .await
    }

    async fn clear(&self, batch: usize) -> Result<u64, StoreError> {
        self.call(move |conn, state| {
            write_txn(conn, state, |state, pending, tx| state.delete_expired(pending, tx, batch, None))
                .map(|n| n as u64)
        })
        .await
    }

    async fn record_count(&self) -> Result<u64, StoreError> {
        self.call(|conn, state| {
            read_txn(conn, state, |state, tx| {
                let mut n = 0u64;
                state.scan_entries(tx, |_| {
                    n += 1;
                    true
                })?;
                state.scan_clients(tx, |_| {
                    n += 1;
                    true
                })?;
                Ok(n)
            })
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.shortcut.close();
        let (done, wait) = oneshot::channel();
        self.send(Job::Close(done))?;
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
