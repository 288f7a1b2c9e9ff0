//! WAL checkpoints on their own thread.
//!
//! SQLite's automatic checkpoint runs inside a COMMIT on the writer thread
//! and fsyncs twice, stalling every decision queued behind it. This thread
//! checkpoints with its own connection instead (PASSIVE: it never waits for
//! the writer), so copying WAL frames into the database and the fsyncs
//! happen beside the decisions, not in front of them.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is checkpointed.
pub(super) const INTERVAL: Duration = Duration::from_millis(250);

pub(super) fn run(path: PathBuf, synchronous: &'static str, stop: Receiver<()>) {
    let conn = match Connection::open(&path).and_then(|c| {
        c.busy_timeout(Duration::from_secs(1))?;
        c.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the checkpoint connection; the WAL is checkpointed at shutdown only");
            return;
        }
    };
    loop {
        match stop.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "wal checkpoint skipped");
        }
    }
}
