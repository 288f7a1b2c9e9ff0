//! `greygate import`: postgrey's list files into the store's lists.

use std::process::ExitCode;

use anyhow::{Context, Result};
use greygate_engine::lists::{ListsBuilder, Origin, Source};
use greygate_store::{ListEntry, ListKind, ListTarget, Store};

use crate::cli::{ImportCommand, ImportList};

pub async fn run(cmd: ImportCommand, store: &dyn Store) -> Result<ExitCode> {
    let (file, into, target) = match cmd {
        ImportCommand::PostgreyClients { file, into } => (file, into, ListTarget::Client),
        ImportCommand::PostgreyRecipients { file, into } => (file, into, ListTarget::Recipient),
    };
    let kind = match into {
        ImportList::Whitelist => ListKind::Whitelist,
        ImportList::Blacklist => ListKind::Blacklist,
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let name = file.display().to_string();
    let now = crate::serve::unix_now();
    let (mut added, mut present, mut skipped) = (0, 0, 0);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let pattern = raw.split('#').next().unwrap_or("").trim();
        if pattern.is_empty() {
            continue;
        }
        let origin = Origin::File { path: name.as_str().into(), line };
        if let Err(error) = ListsBuilder::new().add(kind, target, pattern, origin.clone()) {
            let place = Source { pattern: pattern.to_owned(), origin };
            eprintln!("skipped {place}: {error}");
            skipped += 1;
            continue;
        }
        let entry = ListEntry {
            kind,
            target,
            value: pattern.to_owned(),
            comment: format!("imported from {name}:{line}"),
            added_at: now,
        };
        if store.add_list_entry(&entry).await? {
            added += 1;
        } else {
            present += 1;
        }
    }
    println!("{name}: {added} added to the {kind} ({target}), {present} already there, {skipped} skipped");
    Ok(if skipped > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
