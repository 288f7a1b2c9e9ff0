//! `greygate copy-store`: move the greylisting state from one store to the
//! configured one (SQLite → Redis or PostgreSQL when a site grows a second
//! MX), with a progress bar.
//!
//! Copied: triplet entries and client records that have not expired, the
//! run-time lists, and the decision counters (added to the target's).
//! Records already in the target with the same key are replaced. Safe to
//! run again; run it before pointing the servers at the new store, or the
//! copy overwrites what they decided meanwhile.

use std::process::ExitCode;

use anyhow::{Context, Result, ensure};
use greygate_store::{ClientFilter, EntryFilter, Store};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::CopyStoreArgs;
use crate::config::{Backend, Config};
use crate::store::Role;

pub async fn run(args: CopyStoreArgs, target: &dyn Store, config: &Config) -> Result<ExitCode> {
    ensure!(args.batch > 0, "--batch must be at least 1");
    let mut source_config = match (&args.from.from_config, &args.from.from_sqlite) {
        (Some(file), _) => Config::load(Some(file))?.store,
        (None, Some(path)) => {
            let mut c = Config::from_raw(Default::default(), None)?.store;
            c.path = path.clone();
            ensure!(path.exists(), "no SQLite file at {}", path.display());
            c
        }
        (None, None) => unreachable!("clap requires one source"),
    };
    ensure!(source_config.backend != Backend::Memory, "a memory store has nothing to copy");
    ensure!(
        !same_store(&source_config, &config.store),
        "the source and the target are the same store; nothing to copy"
    );
    source_config.timeout = config.store.timeout.max(std::time::Duration::from_secs(60));
    let source = crate::store::open(&source_config, Role::Admin).await.context("cannot open the source store")?;
    let result = copy(&*source, target, args.batch).await;
    source.close().await?;
    result
}

fn same_store(a: &crate::config::StoreConfig, b: &crate::config::StoreConfig) -> bool {
    match (a.backend, b.backend) {
        (Backend::Sqlite, Backend::Sqlite) => a.path == b.path,
        (Backend::Postgres, Backend::Postgres) => {
            a.postgres.as_ref().map(|o| (&o.url, &o.schema)) == b.postgres.as_ref().map(|o| (&o.url, &o.schema))
        }
        (Backend::Redis, Backend::Redis) => {
            a.redis.as_ref().map(|o| (format!("{:?}", o.connect.topology), &o.prefix))
                == b.redis.as_ref().map(|o| (format!("{:?}", o.connect.topology), &o.prefix))
        }
        _ => false,
    }
}

async fn copy(source: &dyn Store, target: &dyn Store, batch: usize) -> Result<ExitCode> {
    let now = crate::serve::unix_now();
    let total = source.record_count().await.context("cannot count the source's records")?;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .map_err(|e| anyhow::anyhow!(e))?
            .progress_chars("=> "),
    );
    bar.set_message(format!("copying {} → {}", source.backend(), target.backend()));

    let entries = source.entries(&EntryFilter::default(), None).await.context("cannot read the source's entries")?;
    let (mut copied, mut skipped) = (0u64, 0u64);
    for chunk in entries.chunks(batch) {
        let live: Vec<_> = chunk.iter().filter(|e| e.expires_at >= now).cloned().collect();
        target.put_records(&live, &[]).await.context("cannot write entries to the target")?;
        copied += live.len() as u64;
        skipped += (chunk.len() - live.len()) as u64;
        bar.inc(chunk.len() as u64);
    }
    let clients = source.clients(&ClientFilter::default(), None).await.context("cannot read the source's clients")?;
    for chunk in clients.chunks(batch) {
        let live: Vec<_> = chunk.iter().filter(|c| c.expires_at >= now).cloned().collect();
        target.put_records(&[], &live).await.context("cannot write clients to the target")?;
        copied += live.len() as u64;
        skipped += (chunk.len() - live.len()) as u64;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    let lists = source.list_entries().await?;
    let mut lists_added = 0;
    for entry in &lists {
        if target.add_list_entry(entry).await? {
            lists_added += 1;
        }
    }
    let counters: Vec<(String, u64)> = source.stats(now, 0).await?.counters.into_iter().collect();
    target.add_counters(&counters).await?;
    println!(
        "copied {copied} records ({skipped} expired ones skipped), {lists_added} new list entries of {}, {} counters",
        lists.len(),
        counters.len()
    );
    Ok(ExitCode::SUCCESS)
}
