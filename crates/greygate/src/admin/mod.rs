//! The admin commands: they open the configured store directly and work
//! the same way on every backend, while the server runs.
//!
//! Output is a plain table for people or JSON (`--json`) for scripts.
//! List changes reach a running server within `store.lists_refresh`.

mod copy;
mod entries;
mod explain;
mod import;
mod lists;
mod purge;
mod stats;

use std::process::ExitCode;

use anyhow::Result;
use greygate_store::Timestamp;

use crate::cli::Command;
use crate::config::Config;

pub async fn run(command: Command, config: &Config) -> Result<ExitCode> {
    let store = crate::store::open(&config.store, crate::store::Role::Admin).await?;
    let result = match command {
        Command::Entries(cmd) => entries::run(cmd, &*store, config).await,
        Command::Clients(cmd) => entries::run_clients(cmd, &*store).await,
        Command::Trust(cmd) => lists::run_trust(cmd, &*store).await,
        Command::Whitelist(cmd) => lists::run(greygate_store::ListKind::Whitelist, cmd, &*store).await,
        Command::Blacklist(cmd) => lists::run(greygate_store::ListKind::Blacklist, cmd, &*store).await,
        Command::Stats(out) => stats::run(out, &*store, config).await,
        Command::Purge(args) => purge::run(args, &*store).await,
        Command::Explain(args) => explain::run(args, store.clone(), config).await,
        Command::Import(cmd) => import::run(cmd, &*store).await,
        Command::CopyStore(args) => copy::run(args, &*store, config).await,
        Command::Serve | Command::CheckConfig | Command::Greydaemon(_) => unreachable!("handled by main"),
    };
    store.close().await?;
    result
}

/// `2026-11-21 07:13:00Z`.
pub fn time(t: Timestamp) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_else(|| t.to_string())
}

/// Print rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
