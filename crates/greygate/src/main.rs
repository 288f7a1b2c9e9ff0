//! greygate: a greylisting mail gateway.
//!
//! One binary: `serve` runs the server; the other subcommands validate the
//! config, explain decisions and administer the store. Errors are turned
//! into a message and an exit status here, and nowhere below.
#![forbid(unsafe_code)]

mod admin;
mod checks;
mod cli;
mod config;
mod greydaemon;
mod logging;
mod scan;
mod serve;
mod store;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command};

/// Requests are parsed on the async workers and their strings freed on the
/// store's thread; mimalloc handles that cross-thread pattern much better
/// than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("greygate: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // Parse the file first so logging follows its [log] section, then
    // validate (validation may log warnings about list files).
    let mut raw = Config::read_raw(cli.config.as_deref())?;
    let serving = matches!(cli.command, Command::Serve | Command::Greydaemon(_));
    let greydaemon = match &cli.command {
        Command::Greydaemon(args) => Some(greydaemon::configure(&mut raw, args)?),
        _ => None,
    };
    // Admin commands print their results; only warnings go to the log.
    let level = if serving { raw.log.level.clone() } else { "warn".to_owned() };
    logging::init(&level, std::env::var("RUST_LOG").ok(), raw.log.format)?;

    // greydaemon's arguments override the file, so SIGHUP must not re-read
    // it without them: under `greydaemon` there is nothing to reload.
    let file = if greydaemon.is_some() { None } else { cli.config.clone() };
    let config = Config::from_raw(raw, file)?;
    config.policy()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads())
        .enable_all()
        .thread_name("greygate")
        .on_thread_start(logging::buffer_this_thread)
        .on_thread_park(|| {
            // Decisions queued while this thread was busy are committed
            // together, now that it has nothing else to do.
            greygate_store::sqlite::wake_deferred();
            logging::flush_this_thread();
        })
        .on_thread_stop(logging::flush_this_thread)
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve => runtime.block_on(serve::run(config)).map(|()| ExitCode::SUCCESS),
        Command::Greydaemon(_) => runtime.block_on(serve::run_with(config, greydaemon)).map(|()| ExitCode::SUCCESS),
        Command::CheckConfig => {
            print!("{}", config.to_toml());
            eprintln!("greygate: configuration OK");
            Ok(ExitCode::SUCCESS)
        }
        command => runtime.block_on(admin::run(command, &config)),
    }
}
