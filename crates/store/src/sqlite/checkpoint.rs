//! WAL checkpoints on their own thread.
//!
//! SQLite's automatic checkpoint runs inside a COMMIT on the writer thread
//! and fsyncs twice, stalling every decision queued behind it. This thread
//! checkpoints with its own connection instead (PASSIVE: it never waits for
//! the writer), so copying WAL frames into the database and the fsyncs
//! happen beside the decisions, not in front of them. It runs at the lowest
//! CPU priority: on a busy machine it must not take a CPU from decisions
//! (measured: p99 latency under load 1.6-1.9 ms at normal priority,
//! 1.3-1.4 ms at nice 19).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is checkpointed.
pub(super) const INTERVAL: Duration = Duration::from_millis(250);

pub(super) fn run(path: PathBuf, synchronous: &'static str, stop: Receiver<()>) {
    lower_priority();
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

/// Give this thread the lowest scheduling priority (nice 19), whatever the
/// process's own nice value is.
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: setpriority(2) has no memory-safety preconditions. On Linux
    // the nice value is per thread and `who = 0` names the calling thread,
    // so this affects the checkpoint thread only.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if result != 0 {
        tracing::debug!("could not lower the checkpoint thread's priority");
    }
}
