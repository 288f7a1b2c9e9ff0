//! greydaemon's save file (PROTOCOLS.md §2.6): imported at start, kept
//! written back for a rollback.
//!
//! ```text
//! I <unix time> <ip>                    a known address, last seen then
//! G <unix time> <ip> <from> <to>        a triplet, first seen then ("." = null sender)
//! ```
//!
//! greygate's store is the real state; the file is a copy in greydaemon's
//! format. On start, records the store does not have yet are imported
//! (skipping expired ones, as greydaemon does), so importing a file
//! greygate wrote itself changes nothing. The file is written, as
//! greydaemon writes it (`savefile.new`, then renamed into place), every
//! `-s` minutes, after every answered datagram with `-d`, on SIGUSR1, and
//! at shutdown. Only IPv4 records are written: greydaemon cannot read
//! others.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use greygate_engine::address::{normalize_recipient, normalize_sender};
use greygate_engine::network::NetworkKeying;
use greygate_store::{ClientFilter, ClientRecord, Entry, EntryFilter, Store, Timers, Timestamp, TripletKey};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where and when to write the save file.
#[derive(Debug, Clone)]
pub struct SaveFile {
    pub path: PathBuf,
    /// `-s`: time between saves.
    pub interval: Duration,
    /// `-d`: save after every answered datagram.
    pub every_datagram: bool,
    /// How an address becomes the client part of a key (as the engine
    /// keys it, so imported triplets are found).
    pub keying: NetworkKeying,
    /// `-m`, `-g`, `-t` as greygate timers.
    pub timers: Timers,
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub addresses: usize,
    pub triplets: usize,
    /// Expired, already in the store, or unreadable.
    pub skipped: usize,
}

impl SaveFile {
    /// Read the records of `text` that are still alive at `now`. Unreadable
    /// lines are logged and skipped ("? Strange save entry").
    pub fn parse(&self, text: &str, now: Timestamp) -> (Vec<ClientRecord>, Vec<Entry>, usize) {
        let (mut clients, mut entries, mut skipped) = (Vec::new(), Vec::new(), 0);
        for (index, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split(' ').collect();
            let time = fields.get(1).and_then(|t| t.parse::<Timestamp>().ok());
            let ip = fields.get(2).and_then(|ip| ip.parse::<IpAddr>().ok()).map(|ip| ip.to_canonical());
            match (fields.first(), time, ip, fields.len()) {
                (Some(&"I"), Some(t), Some(ip), 3) => {
                    if t <= now - self.timers.pass_lifetime {
                        skipped += 1;
                        continue;
                    }
                    clients.push(ClientRecord {
                        client: ip.to_string(),
                        passes: 1,
                        last_counted: t,
                        last_seen: t,
                        expires_at: t.saturating_add(self.timers.pass_lifetime),
                    });
                }
                (Some(&"G"), Some(t), Some(ip), 5) if !fields[3].is_empty() && !fields[4].is_empty() => {
                    if t <= now - self.timers.retry_window {
                        skipped += 1;
                        continue;
                    }
                    let from = if fields[3] == "." { "" } else { fields[3] };
                    let key = TripletKey {
                        client: self.keying.key(ip),
                        sender: normalize_sender(from),
                        recipient: normalize_recipient(fields[4]),
                    };
                    entries.push(Entry {
                        key,
                        first_seen: t,
                        last_seen: t,
                        passed_at: None,
                        attempts: 1,
                        passes: 0,
                        expires_at: t.saturating_add(self.timers.retry_window),
                    });
                }
                _ => {
                    tracing::warn!(file = %self.path.display(), line = index + 1, text = line, "strange save entry; skipped");
                    skipped += 1;
                }
            }
        }
        (clients, entries, skipped)
    }

    /// Import the file into `store` (a missing file imports nothing).
    pub async fn import(&self, store: &dyn Store, now: Timestamp) -> Result<Imported> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Imported::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read save file {}", self.path.display())),
        };
        let (clients, entries, mut skipped) = self.parse(&text, now);
        let have_clients: HashSet<String> =
            store.clients(&ClientFilter::default(), None).await?.into_iter().map(|c| c.client).collect();
        let have_entries: HashSet<TripletKey> =
            store.entries(&EntryFilter::default(), None).await?.into_iter().map(|e| e.key).collect();
        let before = clients.len() + entries.len();
        let clients: Vec<_> = clients.into_iter().filter(|c| !have_clients.contains(&c.client)).collect();
        let entries: Vec<_> = entries.into_iter().filter(|e| !have_entries.contains(&e.key)).collect();
        skipped += before - clients.len() - entries.len();
        store.put_records(&entries, &clients).await?;
        Ok(Imported { addresses: clients.len(), triplets: entries.len(), skipped })
    }

    /// The file's text for the store's state at `now`.
    pub async fn render(&self, store: &dyn Store, now: Timestamp) -> Result<String> {
        let mut out = String::new();
        for c in store.clients(&ClientFilter::default(), None).await? {
            if c.passes > 0
                && now - c.last_seen < self.timers.pass_lifetime
                && let Ok(ip) = c.client.parse::<Ipv4Addr>()
            {
                let _ = writeln!(out, "I {} {ip}", c.last_seen);
            }
        }
        for e in store.entries(&EntryFilter::default(), None).await? {
            let k = &e.key;
            if now - e.first_seen < self.timers.retry_window
                && let Ok(ip) = k.client.parse::<Ipv4Addr>()
                && !k.sender.contains(' ')
                && !k.recipient.contains(' ')
            {
                let from = if k.sender == "<>" { "." } else { &k.sender };
                let _ = writeln!(out, "G {} {ip} {from} {}", e.first_seen, k.recipient);
            }
        }
        Ok(out)
    }

    /// Write the file as greydaemon does: `path.new`, then rename.
    pub async fn save(&self, store: &dyn Store, now: Timestamp) -> Result<()> {
        let text = self.render(store, now).await?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut tmp = path.clone().into_os_string();
            tmp.push(".new");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename to {}", path.display()))
        })
        .await
        .context("the save file writer failed")?
    }

    /// Import, then keep the file written until [`Saver::finish`].
    pub async fn start(
        self,
        store: Arc<dyn Store>,
        background: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Saver> {
        let imported = self.import(store.as_ref(), crate::serve::unix_now()).await?;
        tracing::info!(
            file = %self.path.display(),
            addresses = imported.addresses,
            triplets = imported.triplets,
            skipped = imported.skipped,
            "greydaemon save file imported"
        );
        let mut usr1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
        let notify = Arc::new(Notify::new());
        let saver = Saver { file: Arc::new(self), store, notify: notify.clone() };
        let (file, store) = (saver.file.clone(), saver.store.clone());
        background.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(file.interval) => {}
                    _ = usr1.recv() => tracing::info!("SIGUSR1: writing the greydaemon save file"),
                    () = notify.notified(), if file.every_datagram => {}
                }
                save_logged(&file, store.as_ref()).await;
            }
        });
        Ok(saver)
    }
}

async fn save_logged(file: &SaveFile, store: &dyn Store) {
    match file.save(store, crate::serve::unix_now()).await {
        Ok(()) => tracing::debug!(file = %file.path.display(), "greydaemon save file written"),
        Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot write the greydaemon save file"),
    }
}

/// The running save-file writer.
pub struct Saver {
    file: Arc<SaveFile>,
    store: Arc<dyn Store>,
    notify: Arc<Notify>,
}

impl Saver {
    /// What the qmail front end wakes after each datagram (`-d` only).
    pub fn after_datagram(&self) -> Option<Arc<Notify>> {
        self.file.every_datagram.then(|| self.notify.clone())
    }

    /// The last save, after the last answer and before the store closes.
    pub async fn finish(self) {
        save_logged(&self.file, self.store.as_ref()).await;
    }
}

#[cfg(test)]
mod tests;
