//! The in-memory mirror of the log, and every read or write of
//! greylisting state.
//!
//! A key's state is its latest log record if it has one, else its snapshot
//! row. [`State`] holds the latest logged state of every key in memory, so a
//! decision reads memory first and the snapshot only on a miss (and only
//! when the [`SnapshotFilter`] says the snapshot may hold the key), and a
//! transaction writes one log row, whatever the number of decisions in it
//! ([`super::log`]).
//!
//! Coherence between processes (the server, the admin CLI, a second
//! server): every write transaction starts with [`State::catch_up`], which
//! applies log rows other processes appended since our last look. The
//! write lock is held from then to COMMIT, so the mirror is exact for the
//! whole transaction. Writes are staged in [`Pending`] and reach the
//! mirror only after COMMIT succeeded.
//!
//! [`State::compact`] moves the oldest log rows into the snapshot, in key
//! order, and deletes them; their keys leave memory.

use std::sync::Arc;

use foldhash::HashMap;
use rusqlite::{Connection, OptionalExtension, params};

use super::filter::SnapshotFilter;
use super::log::{self, Batch, ClientChange, ClientTimes, Times, TripletChange};
use super::shortcut::{Read, Shortcut};
use super::table::Table;
use crate::TripletKey;
use crate::model::{ClientRecord, Entry};

impl Times {
    fn of(e: &Entry) -> Times {
        Times {
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            passed_at: e.passed_at,
            attempts: e.attempts,
            passes: e.passes,
            expires_at: e.expires_at,
        }
    }

    fn entry(self, key: &TripletKey) -> Entry {
        Entry {
            key: key.clone(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            passed_at: self.passed_at,
            attempts: self.attempts,
            passes: self.passes,
            expires_at: self.expires_at,
        }
    }
}

impl ClientTimes {
    fn of(c: &ClientRecord) -> ClientTimes {
        ClientTimes { passes: c.passes, last_counted: c.last_counted, last_seen: c.last_seen, expires_at: c.expires_at }
    }

    fn record(self, client: &str) -> ClientRecord {
        ClientRecord {
            client: client.to_owned(),
            passes: self.passes,
            last_counted: self.last_counted,
            last_seen: self.last_seen,
            expires_at: self.expires_at,
        }
    }
}

/// The latest log row of a key: its sequence number and value (`None` for
/// a deletion).
#[derive(Debug, Clone, Copy)]
struct Slot<T> {
    seq: i64,
    value: Option<T>,
}

/// Writes of one transaction: read back by later decisions of the same
/// transaction, written as one log row before COMMIT, applied to [`State`]
/// after it.
#[derive(Debug)]
pub(super) struct Pending {
    triplets: HashMap<TripletKey, Slot<Times>>,
    clients: HashMap<String, Slot<ClientTimes>>,
    /// The sequence number of this transaction's log row.
    seq: i64,
}

impl Pending {
    /// Staging for a transaction that starts with `state` caught up.
    pub fn new(state: &State) -> Pending {
        Pending { triplets: HashMap::default(), clients: HashMap::default(), seq: state.seq + 1 }
    }

    pub fn put_entry(&mut self, e: &Entry) {
        self.triplets.insert(e.key.clone(), Slot { seq: self.seq, value: Some(Times::of(e)) });
    }

    pub fn delete_entry(&mut self, key: &TripletKey) {
        self.triplets.insert(key.clone(), Slot { seq: self.seq, value: None });
    }

    pub fn put_client(&mut self, c: &ClientRecord) {
        self.clients.insert(c.client.clone(), Slot { seq: self.seq, value: Some(ClientTimes::of(c)) });
    }

    pub fn delete_client(&mut self, client: &str) {
        self.clients.insert(client.to_owned(), Slot { seq: self.seq, value: None });
    }

    /// Write this transaction's log row, if it changed anything. Call last,
    /// before COMMIT.
    pub fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let batch = Batch {
            triplets: self
                .triplets
                .iter()
                .map(|(k, slot)| TripletChange {
                    client: k.client.as_str().into(),
                    sender: k.sender.as_str().into(),
                    recipient: k.recipient.as_str().into(),
                    times: slot.value,
                })
                .collect(),
            clients: self
                .clients
                .iter()
                .map(|(c, slot)| ClientChange { client: c.as_str().into(), times: slot.value })
                .collect(),
        };
        conn.prepare_cached("INSERT INTO log (seq, data) VALUES (?1, ?2)")?
            .execute(params![self.seq, batch.encode()])?;
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.triplets.is_empty() && self.clients.is_empty()
    }

    /// Whether this transaction writes the triplet.
    pub fn writes_triplet(&self, key: &TripletKey) -> bool {
        self.triplets.contains_key(key)
    }

    /// Whether this transaction writes the client record.
    pub fn writes_client(&self, client: &str) -> bool {
        self.clients.contains_key(client)
    }
}

/// What a compaction step moved, to forget after COMMIT.
#[derive(Debug, Default)]
pub(super) struct Compacted {
    triplets: Vec<TripletKey>,
    clients: Vec<String>,
    /// The last log row moved.
    upto: i64,
}

impl Compacted {
    /// Records moved.
    pub fn records(&self) -> usize {
        self.triplets.len() + self.clients.len()
    }
}

/// The latest state of every key that has log rows.
#[derive(Default)]
pub(super) struct State {
    triplets: Table<TripletKey, Slot<Times>>,
    clients: Table<String, Slot<ClientTimes>>,
    /// The last log sequence number applied (ours or others').
    seq: i64,
    /// The compaction point (`meta.log_seq`) at our last look: log rows up
    /// to it have been folded into the snapshot and deleted.
    compacted: i64,
    /// `PRAGMA data_version` at our last look: unchanged means no other
    /// connection committed since, so there is nothing to catch up on.
    data_version: Option<i64>,
    /// Which keys the snapshot may hold; `None` until (re)built, when every
    /// miss in memory probes SQLite.
    filter: Option<SnapshotFilter>,
    /// Records of decisions that wrote nothing, for callers to answer
    /// alike without the writer; kept coherent from here.
    shortcut: Arc<Shortcut>,
}

impl State {
    /// An empty mirror that keeps `shortcut` coherent.
    pub fn new(shortcut: Arc<Shortcut>) -> State {
        State { shortcut, ..State::default() }
    }

    /// Keys held in memory (one per key with log rows).
    pub fn len(&self) -> usize {
        self.triplets.len() + self.clients.len()
    }

    /// Apply log rows appended by others since our last look. Call at the
    /// start of every transaction, with the transaction's connection (for a
    /// write transaction, after the write lock is taken).
    pub fn catch_up(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let data_version: i64 = conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?;
        if self.data_version == Some(data_version) {
            self.shortcut.caught_up(false);
            return Ok(());
        }
        // Forgotten before anything else changes, so that even a failed
        // catch-up leaves nothing stale behind.
        self.shortcut.caught_up(true);
        let (compacted, last): (i64, i64) = conn
            .prepare_cached(
                "SELECT value, max(value, coalesce((SELECT max(seq) FROM log), 0))
                 FROM meta WHERE key = 'log_seq'",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if compacted > self.seq {
            // Another process compacted log rows we never read: our memory
            // may hold states they changed. The snapshot has their result
            // now, so start over from it and what is left of the log.
            *self = State { shortcut: Arc::clone(&self.shortcut), ..State::default() };
        } else if compacted > self.compacted {
            // Rows we had read were compacted by another process: their
            // keys' states are in the snapshot now; free the memory.
            self.evict_upto(compacted);
        }
        self.compacted = compacted;
        if last > self.seq {
            self.apply_log(conn, self.seq)?;
            self.seq = last;
        }
        self.data_version = Some(data_version);
        if self.filter.as_ref().is_none_or(SnapshotFilter::is_full) {
            let started = std::time::Instant::now();
            self.filter = Some(SnapshotFilter::load(conn)?);
            tracing::debug!(ms = started.elapsed().as_millis() as u64, "snapshot key filter built");
        }
        Ok(())
    }

    /// Forget keys whose latest log row is at or before `seq`: another
    /// process compacted them, so they are in the snapshot now.
    fn evict_upto(&mut self, seq: i64) {
        let mut filter = self.filter.take();
        self.triplets.retain(|key, slot| {
            let keep = slot.seq > seq;
            if let (false, Some(f)) = (keep, filter.as_mut()) {
                f.add_triplet(key);
            }
            keep
        });
        self.clients.retain(|client, slot| {
            let keep = slot.seq > seq;
            if let (false, Some(f)) = (keep, filter.as_mut()) {
                f.add_client(client);
            }
            keep
        });
        self.filter = filter;
    }

    fn apply_log(&mut self, conn: &Connection, after: i64) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached("SELECT seq, data FROM log WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = stmt.query(params![after])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let batch = log::decode(r.get_ref(1)?.as_blob()?)?;
            for t in batch.triplets {
                let key =
                    TripletKey { client: t.client.into(), sender: t.sender.into(), recipient: t.recipient.into() };
                self.triplets.insert(key, Slot { seq, value: t.times });
            }
            for c in batch.clients {
                self.clients.insert(c.client.into(), Slot { seq, value: c.times });
            }
        }
        Ok(())
    }

    /// Remember what committed decisions that wrote nothing read, for
    /// callers to answer alike without the writer.
    pub fn remember(&self, reads: Vec<Read>) {
        self.shortcut.remember(reads);
    }

    /// Make a committed transaction's writes part of the mirror.
    pub fn commit(&mut self, pending: Pending) {
        if pending.is_empty() {
            return;
        }
        self.shortcut.forget(pending.triplets.keys(), pending.clients.keys());
        self.seq = pending.seq;
        self.triplets.extend(pending.triplets);
        self.clients.extend(pending.clients);
    }

    /// The current entry for `key`: staged write, then memory, then snapshot.
    pub fn entry(&self, pending: &Pending, conn: &Connection, key: &TripletKey) -> rusqlite::Result<Option<Entry>> {
        if let Some(slot) = pending.triplets.get(key).or_else(|| self.triplets.get(key)) {
            return Ok(slot.value.map(|t| t.entry(key)));
        }
        if self.filter.as_ref().is_some_and(|f| !f.may_hold_triplet(key)) {
            return Ok(None);
        }
        conn.prepare_cached(
            "SELECT first_seen, last_seen, passed_at, attempts, passes, expires_at
             FROM triplets WHERE client = ?1 AND sender = ?2 AND recipient = ?3",
        )?
        .query_row(params![key.client, key.sender, key.recipient], |r| {
            Ok(Entry {
                key: key.clone(),
                first_seen: r.get(0)?,
                last_seen: r.get(1)?,
                passed_at: r.get(2)?,
                attempts: r.get(3)?,
                passes: r.get(4)?,
                expires_at: r.get(5)?,
            })
        })
        .optional()
    }

    /// The current client record: staged write, then memory, then snapshot.
    pub fn client(&self, pending: &Pending, conn: &Connection, client: &str) -> rusqlite::Result<Option<ClientRecord>> {
        if let Some(slot) = pending.clients.get(client).or_else(|| self.clients.get(client)) {
            return Ok(slot.value.map(|c| c.record(client)));
        }
        if self.filter.as_ref().is_some_and(|f| !f.may_hold_client(client)) {
            return Ok(None);
        }
        conn.prepare_cached("SELECT passes, last_counted, last_seen, expires_at FROM clients WHERE client = ?1")?
            .query_row(params![client], |r| {
                Ok(ClientRecord {
                    client: client.to_owned(),
                    passes: r.get(0)?,
                    last_counted: r.get(1)?,
                    last_seen: r.get(2)?,
                    expires_at: r.get(3)?,
                })
            })
            .optional()
    }

    /// Every current entry in key order (memory merged over the snapshot),
    /// until `each` returns `false`.
    pub fn scan_entries(&self, conn: &Connection, mut each: impl FnMut(Entry) -> bool) -> rusqlite::Result<()> {
        let mut memory: Vec<(&TripletKey, &Times)> =
            self.triplets.iter().filter_map(|(k, s)| s.value.as_ref().map(|t| (k, t))).collect();
        memory.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut memory = memory.into_iter().peekable();
        let mut stmt = conn.prepare(
            "SELECT client, sender, recipient, first_seen, last_seen, passed_at, attempts, passes, expires_at
             FROM triplets ORDER BY client, sender, recipient",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let e = Entry {
                key: TripletKey { client: r.get(0)?, sender: r.get(1)?, recipient: r.get(2)? },
                first_seen: r.get(3)?,
                last_seen: r.get(4)?,
                passed_at: r.get(5)?,
                attempts: r.get(6)?,
                passes: r.get(7)?,
                expires_at: r.get(8)?,
            };
            while let Some((k, t)) = memory.next_if(|(k, _)| **k < e.key) {
                if !each(t.entry(k)) {
                    return Ok(());
                }
            }
            // A key with log rows is shadowed; memory has its current state.
            if self.triplets.contains_key(&e.key) {
                continue;
            }
            if !each(e) {
                return Ok(());
            }
        }
        for (k, t) in memory {
            if !each(t.entry(k)) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Every current client record in key order, until `each` returns false.
    pub fn scan_clients(&self, conn: &Connection, mut each: impl FnMut(ClientRecord) -> bool) -> rusqlite::Result<()> {
        let mut memory: Vec<(&String, &ClientTimes)> =
            self.clients.iter().filter_map(|(k, s)| s.value.as_ref().map(|t| (k, t))).collect();
        memory.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut memory = memory.into_iter().peekable();
        let mut stmt =
            conn.prepare("SELECT client, passes, last_counted, last_seen, expires_at FROM clients ORDER BY client")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let c = ClientRecord {
                client: r.get(0)?,
                passes: r.get(1)?,
                last_counted: r.get(2)?,
                last_seen: r.get(3)?,
                expires_at: r.get(4)?,
            };
            while let Some((k, t)) = memory.next_if(|(k, _)| **k < c.client) {
                if !each(t.record(k)) {
                    return Ok(());
                }
            }
            if self.clients.contains_key(&c.client) {
                continue;
            }
            if !each(c) {
                return Ok(());
            }
        }
        for (k, t) in memory {
            if !each(t.record(k)) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Delete at most `limit` records that expired before `cutoff` (all
    /// records when `None`): snapshot rows without log rows directly, keys
    /// in memory by a tombstone. Returns how many were deleted.
    pub fn delete_expired(
        &self,
        pending: &mut Pending,
        conn: &Connection,
        limit: usize,
        cutoff: Option<i64>,
    ) -> rusqlite::Result<usize> {
        let doomed = |expires_at: i64| cutoff.is_none_or(|c| expires_at < c);
        let mut done = 0;
        let condition = if cutoff.is_some() { "WHERE expires_at < ?1" } else { "WHERE ?1 IS NULL" };

        let mut victims = Vec::new();
        {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT client, sender, recipient FROM triplets {condition}"))?;
            let mut rows = stmt.query(params![cutoff])?;
            while victims.len() < limit {
                let Some(r) = rows.next()? else { break };
                let key = TripletKey { client: r.get(0)?, sender: r.get(1)?, recipient: r.get(2)? };
                if !self.triplets.contains_key(&key) {
                    victims.push(key);
                }
            }
        }
        for key in &victims {
            conn.prepare_cached("DELETE FROM triplets WHERE client = ?1 AND sender = ?2 AND recipient = ?3")?
                .execute(params![key.client, key.sender, key.recipient])?;
        }
        done += victims.len();
        let doomed_memory: Vec<TripletKey> = self
            .triplets
            .iter()
            .filter(|(k, s)| s.value.is_some_and(|t| doomed(t.expires_at)) && !pending.triplets.contains_key(*k))
            .map(|(k, _)| k.clone())
            .take(limit - done)
            .collect();
        for key in &doomed_memory {
            pending.delete_entry(key);
        }
        done += doomed_memory.len();

        let mut clients = Vec::new();
        {
            let mut stmt = conn.prepare_cached(&format!("SELECT client FROM clients {condition}"))?;
            let mut rows = stmt.query(params![cutoff])?;
            while done + clients.len() < limit {
                let Some(r) = rows.next()? else { break };
                let client: String = r.get(0)?;
                if !self.clients.contains_key(&client) {
                    clients.push(client);
                }
            }
        }
        for client in &clients {
            conn.prepare_cached("DELETE FROM clients WHERE client = ?1")?.execute(params![client])?;
        }
        done += clients.len();
        let doomed_clients: Vec<String> = self
            .clients
            .iter()
            .filter(|(k, s)| s.value.is_some_and(|t| doomed(t.expires_at)) && !pending.clients.contains_key(*k))
            .map(|(k, _)| k.clone())
            .take(limit - done)
            .collect();
        for client in &doomed_clients {
            pending.delete_client(client);
        }
        Ok(done + doomed_clients.len())
    }

    /// Move the oldest log rows, at least `limit` records or all there are,
    /// into the snapshot, in key order, and delete them. Call
    /// [`State::forget`] with the result after COMMIT.
    pub fn compact(&mut self, conn: &Connection, limit: usize) -> rusqlite::Result<Compacted> {
        let mut out = Compacted::default();
        {
            let mut stmt = conn.prepare_cached("SELECT seq, data FROM log ORDER BY seq")?;
            let mut rows = stmt.query([])?;
            while out.records() < limit {
                let Some(r) = rows.next()? else { break };
                out.upto = r.get(0)?;
                let batch = log::decode(r.get_ref(1)?.as_blob()?)?;
                out.triplets.extend(batch.triplets.into_iter().map(|t| TripletKey {
                    client: t.client.into(),
                    sender: t.sender.into(),
                    recipient: t.recipient.into(),
                }));
                out.clients.extend(batch.clients.into_iter().map(|c| c.client.into_owned()));
            }
        }
        if out.upto == 0 {
            return Ok(out);
        }
        out.triplets.sort_unstable();
        out.triplets.dedup();
        out.clients.sort_unstable();
        out.clients.dedup();
        for key in &out.triplets {
            // Caught up, so every logged key is in memory, with its latest
            // state (possibly newer than the rows moved: that is fine).
            match self.triplets.get(key).and_then(|s| s.value) {
                Some(t) => {
                    super::writer::upsert_entry(conn, &t.entry(key))?;
                    // Even if this transaction fails: a false "maybe" is harmless.
                    if let Some(f) = self.filter.as_mut() {
                        f.add_triplet(key);
                    }
                }
                None => {
                    conn.prepare_cached("DELETE FROM triplets WHERE client = ?1 AND sender = ?2 AND recipient = ?3")?
                        .execute(params![key.client, key.sender, key.recipient])?;
                }
            }
        }
        for client in &out.clients {
            match self.clients.get(client.as_str()).and_then(|s| s.value) {
                Some(t) => {
                    super::writer::upsert_client(conn, &t.record(client))?;
                    if let Some(f) = self.filter.as_mut() {
                        f.add_client(client);
                    }
                }
                None => {
                    conn.prepare_cached("DELETE FROM clients WHERE client = ?1")?.execute(params![client])?;
                }
            }
        }
        conn.prepare_cached("DELETE FROM log WHERE seq <= ?1")?.execute(params![out.upto])?;
        // Sequence numbers must never be reused, even when the log empties.
        conn.prepare_cached("UPDATE meta SET value = max(value, ?1) WHERE key = 'log_seq'")?
            .execute(params![out.upto])?;
        Ok(out)
    }

    /// After a committed compaction: keys whose latest log row was moved
    /// leave memory; keys logged again since stay.
    pub fn forget(&mut self, compacted: Compacted) {
        self.compacted = self.compacted.max(compacted.upto);
        for key in compacted.triplets {
            if self.triplets.get(&key).is_some_and(|s| s.seq <= compacted.upto) {
                self.triplets.remove(&key);
            }
        }
        for client in compacted.clients {
            if self.clients.get(client.as_str()).is_some_and(|s| s.seq <= compacted.upto) {
                self.clients.remove(client.as_str());
            }
        }
    }
}
