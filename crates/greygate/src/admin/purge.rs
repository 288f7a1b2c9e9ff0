//! `greygate purge`: delete expired records (or all with `--all`) in
//! batches, each its own short transaction, with a progress bar when
//! stderr is a terminal. Safe while the server runs.

use std::process::ExitCode;

use anyhow::{Result, ensure};
use greygate_store::Store;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::PurgeArgs;

pub async fn run(args: PurgeArgs, store: &dyn Store) -> Result<ExitCode> {
    ensure!(args.batch > 0, "--batch must be at least 1");
    let now = crate::serve::unix_now();
    let total = if args.all {
        store.record_count().await?
    } else {
        let s = store.stats(now, 0).await?;
        s.expired
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .map_err(|e| anyhow::anyhow!(e))?
            .progress_chars("=> "),
    );
    bar.set_message(if args.all { "deleting all records" } else { "purging expired records" });
    let mut deleted = 0u64;
    loop {
        let n = if args.all { store.clear(args.batch).await? } else { store.expire(now, args.batch).await? };
        if n == 0 {
            break;
        }
        deleted += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    println!("deleted {deleted} records");
    Ok(ExitCode::SUCCESS)
}
