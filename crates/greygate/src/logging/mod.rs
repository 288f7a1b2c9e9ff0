//! Log output: `tracing` to stderr, text or JSON.
//!
//! A line per decision is a lot of writes under load. Handing each line to
//! a writer thread costs a channel send and a thread wakeup per decision.
//! Instead, the async workers format into a buffer of their own and write
//! it to stderr in one call when it is large, or when the worker is about to
//! go idle (tokio's `on_thread_park`), so under light load a line is written
//! at once and under heavy load a hundred lines share one system call.
//! Every other thread writes straight through. Lines are never split or
//! interleaved: a buffer only ever holds whole lines. The text format is
//! logfmt ([`logfmt`]); `format = "json"` gives one JSON object per line.

mod logfmt;

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

pub use logfmt::Line;
use tracing::Level;

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// The text format is in use (see [`text_line`]).
static TEXT: AtomicBool = AtomicBool::new(false);

/// Buffered bytes after which a worker writes them out.
const FLUSH_AT: usize = 32 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static BUFFERED: Cell<bool> = const { Cell::new(false) };
}

/// Make the calling thread buffer its log lines (call on worker start).
pub fn buffer_this_thread() {
    BUFFERED.with(|b| b.set(true));
}

/// Write out the calling thread's buffered lines (call when the worker
/// parks, and before exit).
pub fn flush_this_thread() {
    BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        if !buf.is_empty() {
            // Nothing sensible to do if stderr is gone.
            let _ = io::stderr().lock().write_all(&buf);
            buf.clear();
        }
    });
}

/// The writer for one log line.
pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !BUFFERED.with(Cell::get) {
            return io::stderr().lock().write_all(bytes);
        }
        let full = BUFFER.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.extend_from_slice(bytes);
            buf.len() >= FLUSH_AT
        });
        if full {
            flush_this_thread();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Lines;

impl<'a> MakeWriter<'a> for Lines {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}

/// Start logging. `filter` is a level or a tracing filter directive;
/// `override_filter` (from `RUST_LOG`, read by `main`) wins when set.
pub fn init(filter: &str, override_filter: Option<String>, format: LogFormat) -> Result<()> {
    let filter = EnvFilter::try_new(override_filter.as_deref().unwrap_or(filter))
        .with_context(|| format!("invalid log level {filter:?}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Lines).with_target(false);
    TEXT.store(format == LogFormat::Text, Ordering::Relaxed);
    match format {
        LogFormat::Text => builder.event_format(logfmt::Logfmt).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// Write one line of the text format directly, without a `tracing` event:
/// for the one line per decision, where the event's field visitors cost
/// more than the rest of the line. The caller has checked that `level` is
/// enabled (`tracing::enabled!`). Returns false, writing nothing, when the
/// log is JSON: the caller then emits the event.
pub fn text_line(level: Level, message: &str, fields: impl FnOnce(&mut Line<'_>)) -> bool {
    if !TEXT.load(Ordering::Relaxed) {
        return false;
    }
    logfmt::line(&level, message, fields, |bytes| {
        let _ = LineWriter.write_all(bytes);
    });
    true
}

/// What [`text_line`] writes, and what the same fields give as a `tracing`
/// event through [`logfmt::Logfmt`], for tests that compare the two.
#[cfg(test)]
pub mod testing {
    use std::sync::{Arc, Mutex};

    use tracing::Level;
    use tracing_subscriber::fmt::MakeWriter;

    use super::{Line, logfmt};

    pub fn direct(level: Level, message: &str, fields: impl FnOnce(&mut Line<'_>)) -> String {
        let mut out = String::new();
        logfmt::line(&level, message, fields, |bytes| out = String::from_utf8_lossy(bytes).into_owned());
        out
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    pub fn event(emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_target(false)
            .event_format(logfmt::Logfmt)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }
}
