//! `greygate trust|whitelist|blacklist add|remove|list`.
//!
//! Entries are validated with the same parser the server uses before they
//! are stored, so a typo is refused here rather than skipped at run time.

use std::process::ExitCode;

use anyhow::{Context, Result};
use greygate_engine::lists::{ListsBuilder, Origin};
use greygate_store::{ListEntry, ListKind, ListTarget, Store};

use super::{print_json, table, time};
use crate::cli::{ListCommand, OutputArgs, TargetArgs, TrustCommand};

fn target(args: TargetArgs) -> (ListTarget, String) {
    match (args.client, args.sender, args.recipient) {
        (Some(v), _, _) => (ListTarget::Client, v),
        (_, Some(v), _) => (ListTarget::Sender, v),
        (_, _, Some(v)) => (ListTarget::Recipient, v),
        // clap's argument group requires exactly one.
        (None, None, None) => unreachable!("one of --client, --sender, --recipient is required"),
    }
}

pub async fn run_trust(cmd: TrustCommand, store: &dyn Store) -> Result<ExitCode> {
    let kind = ListKind::Trust;
    match cmd {
        TrustCommand::Add { network, comment } => add(store, kind, ListTarget::Client, &network, comment).await,
        TrustCommand::Remove { network } => remove(store, kind, ListTarget::Client, &network).await,
        TrustCommand::List(out) => list(store, kind, out).await,
    }
}

pub async fn run(kind: ListKind, cmd: ListCommand, store: &dyn Store) -> Result<ExitCode> {
    match cmd {
        ListCommand::Add { target: t, comment } => {
            let (target, value) = target(t);
            add(store, kind, target, &value, comment).await
        }
        ListCommand::Remove { target: t } => {
            let (target, value) = target(t);
            remove(store, kind, target, &value).await
        }
        ListCommand::List(out) => list(store, kind, out).await,
    }
}

async fn add(store: &dyn Store, kind: ListKind, target: ListTarget, value: &str, comment: String) -> Result<ExitCode> {
    let value = value.trim();
    ListsBuilder::new()
        .add(kind, target, value, Origin::Store)
        .with_context(|| format!("cannot add {value:?} to the {kind} ({target})"))?;
    let entry = ListEntry { kind, target, value: value.to_owned(), comment, added_at: crate::serve::unix_now() };
    if store.add_list_entry(&entry).await? {
        println!("added {target} {value} to the {kind}");
    } else {
        println!("{target} {value} was already in the {kind}; comment updated");
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(store: &dyn Store, kind: ListKind, target: ListTarget, value: &str) -> Result<ExitCode> {
    if store.remove_list_entry(kind, target, value.trim()).await? {
        println!("removed {target} {value} from the {kind}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{target} {value} is not in the {kind} (entries from the config or list files are changed there)");
        Ok(ExitCode::from(3))
    }
}

async fn list(store: &dyn Store, kind: ListKind, out: OutputArgs) -> Result<ExitCode> {
    let entries: Vec<ListEntry> = store.list_entries().await?.into_iter().filter(|e| e.kind == kind).collect();
    if out.json {
        print_json(&entries)?;
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| vec![e.target.to_string(), e.value.clone(), time(e.added_at), e.comment.clone()])
            .collect();
        table(&["TARGET", "ENTRY", "ADDED", "COMMENT"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}
