//! `greygate entries ...` and `greygate clients ...`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use greygate_engine::address::{normalize_recipient, normalize_sender};
use greygate_engine::network::NetworkKeying;
use greygate_store::{ClientFilter, ClientMatch, ClientRecord, Entry, EntryFilter, EntryState, Glob, Store};

use super::{print_json, table, time};
use crate::cli::{ClientsCommand, EntriesCommand, EntryFilterArgs, StateArg};
use crate::config::Config;

fn filter(args: &EntryFilterArgs) -> EntryFilter {
    EntryFilter {
        client: args.client.as_deref().map(ClientMatch::parse),
        sender: args.sender.as_deref().map(Glob::new),
        recipient: args.recipient.as_deref().map(Glob::new),
        state: args.state.map(|s| match s {
            StateArg::Pending => EntryState::Pending,
            StateArg::Passed => EntryState::Passed,
        }),
    }
}

fn entry_row(e: &Entry) -> Vec<String> {
    vec![
        e.key.client.clone(),
        e.key.sender.clone(),
        e.key.recipient.clone(),
        e.state().as_str().to_owned(),
        time(e.first_seen),
        time(e.last_seen),
        e.attempts.to_string(),
        e.passes.to_string(),
        time(e.expires_at),
    ]
}

const ENTRY_HEADER: [&str; 9] =
    ["CLIENT", "SENDER", "RECIPIENT", "STATE", "FIRST SEEN", "LAST SEEN", "DEFERRED", "PASSED", "EXPIRES"];

pub async fn run(cmd: EntriesCommand, store: &dyn Store, config: &Config) -> Result<ExitCode> {
    match cmd {
        EntriesCommand::List { filter: f, limit, output } => {
            let entries = store.entries(&filter(&f), Some(limit)).await?;
            if output.json {
                print_json(&entries)?;
            } else {
                table(&ENTRY_HEADER, &entries.iter().map(entry_row).collect::<Vec<_>>());
                if entries.len() == limit {
                    eprintln!("(showing the first {limit}; use --limit to see more)");
                }
            }
        }
        EntriesCommand::Show { client_ip, sender, recipient, output } => {
            // The key the engine would use for this message.
            let g = &config.raw.greylist;
            let keying = NetworkKeying { ipv4_prefix: g.ipv4_prefix, ipv6_prefix: g.ipv6_prefix };
            let (client, sender, recipient) =
                (keying.key(client_ip), normalize_sender(&sender), normalize_recipient(&recipient));
            let exact = EntryFilter {
                client: Some(ClientMatch::Exact(client.clone())),
                sender: Some(Glob::new(&sender)),
                recipient: Some(Glob::new(&recipient)),
                state: None,
            };
            let entry = store
                .entries(&exact, None)
                .await?
                .into_iter()
                .find(|e| e.key.sender == sender && e.key.recipient == recipient);
            let awl = ClientFilter { client: Some(ClientMatch::Exact(client_ip.to_canonical().to_string())) };
            let client_record = store.clients(&awl, Some(1)).await?.into_iter().next();
            if output.json {
                print_json(&serde_json::json!({
                    "key": { "client": client, "sender": sender, "recipient": recipient },
                    "entry": entry,
                    "client_record": client_record,
                }))?;
            } else {
                println!("key:        {client}/{sender}/{recipient}");
                match &entry {
                    None => println!("entry:      none (the next message is new)"),
                    Some(e) => {
                        println!("state:      {}", e.state().as_str());
                        println!("first seen: {}", time(e.first_seen));
                        println!("last seen:  {}", time(e.last_seen));
                        if let Some(p) = e.passed_at {
                            println!("passed at:  {}", time(p));
                        }
                        println!("deferred:   {}", e.attempts);
                        println!("passed:     {}", e.passes);
                        println!("expires:    {}", time(e.expires_at));
                    }
                }
                match &client_record {
                    None => println!("client {client_ip}: no passes counted"),
                    Some(c) => println!(
                        "client {client_ip}: {} passes counted (auto-whitelist after {}), last seen {}",
                        c.passes,
                        config.raw.greylist.auto_whitelist_after,
                        time(c.last_seen)
                    ),
                }
            }
            if entry.is_none() {
                return Ok(ExitCode::from(3));
            }
        }
        EntriesCommand::Delete { filter: f, all } => {
            let filter = filter(&f);
            if filter.is_empty() && !all {
                bail!(
                    "refusing to delete every entry without --all; give a filter (--client, --sender, --recipient, --state)"
                );
            }
            let n = store.delete_entries(&filter).await?;
            println!("deleted {n} entries");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn client_row(c: &ClientRecord) -> Vec<String> {
    vec![c.client.clone(), c.passes.to_string(), time(c.last_counted), time(c.last_seen), time(c.expires_at)]
}

pub async fn run_clients(cmd: ClientsCommand, store: &dyn Store) -> Result<ExitCode> {
    match cmd {
        ClientsCommand::List { client, limit, output } => {
            let filter = ClientFilter { client: client.as_deref().map(ClientMatch::parse) };
            let clients = store.clients(&filter, Some(limit)).await?;
            if output.json {
                print_json(&clients)?;
            } else {
                table(
                    &["CLIENT", "PASSES", "LAST COUNTED", "LAST SEEN", "EXPIRES"],
                    &clients.iter().map(client_row).collect::<Vec<_>>(),
                );
            }
        }
        ClientsCommand::Delete { client } => {
            let n = store.delete_clients(&ClientFilter { client: Some(ClientMatch::parse(&client)) }).await?;
            println!("deleted {n} client records");
        }
    }
    Ok(ExitCode::SUCCESS)
}
