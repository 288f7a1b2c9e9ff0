//! Log output: `tracing` to stderr, text or JSON, written off the request
//! path by a background thread.

use anyhow::{Context, Result};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Start logging. `filter` is a level or a tracing filter directive;
/// `override_filter` (from `RUST_LOG`, read by `main`) wins when set. The
/// returned guard flushes the last lines when dropped.
pub fn init(filter: &str, override_filter: Option<String>, format: LogFormat) -> Result<WorkerGuard> {
    let filter = EnvFilter::try_new(override_filter.as_deref().unwrap_or(filter))
        .with_context(|| format!("invalid log level {filter:?}"))?;
    // Never drop decision lines: if stderr is slow, wait for it.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(1 << 16)
        .finish(std::io::stderr());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(guard)
}
