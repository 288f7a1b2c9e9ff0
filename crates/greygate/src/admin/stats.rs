//! `greygate stats`: entries by state, clients, lists, decisions.

use std::process::ExitCode;

use anyhow::Result;
use greygate_store::Store;

use super::print_json;
use crate::cli::OutputArgs;
use crate::config::Config;

pub async fn run(out: OutputArgs, store: &dyn Store, config: &Config) -> Result<ExitCode> {
    let stats = store.stats(crate::serve::unix_now(), config.raw.greylist.auto_whitelist_after).await?;
    if out.json {
        print_json(&serde_json::json!({ "backend": store.backend(), "stats": stats }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("store: {}", store.backend());
    println!("entries:");
    println!("  pending            {}", stats.pending);
    println!("  passed             {}", stats.passed);
    println!("  expired (to purge) {}", stats.expired);
    println!("clients:");
    println!("  auto-whitelisted   {}", stats.clients_whitelisted);
    println!("  counting passes    {}", stats.clients_counting);
    println!("lists in the store:");
    if stats.lists.is_empty() {
        println!("  (none)");
    }
    for (name, n) in &stats.lists {
        println!("  {name:<18} {n}");
    }
    println!("decisions (saved every 10 s by the server):");
    if stats.counters.is_empty() {
        println!("  (none yet)");
    }
    for (name, n) in &stats.counters {
        println!("  {name:<18} {n}");
    }
    Ok(ExitCode::SUCCESS)
}
