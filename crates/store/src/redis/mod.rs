//! The Redis backend: one shared state for several gateways, on a single
//! node, a Redis Cluster, or behind Sentinels ([`conn`]).
//!
//! Keys (all under a configurable prefix `P`):
//!
//! - `P` `t:` client ` ` sender ` ` recipient: one triplet;
//! - `P` `c:` address: one client's auto-whitelist record;
//!
//! (parts escaped: `%`, space and control characters as `%XX`, so keys
//! read well in `redis-cli` and split back exactly);
//! - `P` `{meta}lists`, `P` `{meta}lists_version`, `P` `{meta}counters`:
//!   the run-time lists (a hash), their version, the decision counters
//!   (a hash). The `{meta}` hash tag keeps them in one cluster slot, so a
//!   list change and its version bump are one script.
//!
//! Each decision step is a Lua script on one key ([`scripts`]). Every
//! record carries a TTL matching its `expires_at`, so Redis drops dead
//! records by itself and the server runs no expiry ([`Store::expires_by_itself`]);
//! `expire` still deletes records whose stored expiry passed (for the
//! admin's `purge`), each checked and deleted in one step.
//!
//! Admin listings SCAN the key space (every master of a cluster) and
//! filter in Rust, the same way as every backend.

mod conn;
mod scripts;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

pub use self::conn::{ConnectOptions, Topology};
use self::conn::{Connection, Handle};
use crate::model::{self, ClientRecord, Entry};
use crate::{
    ClientFilter, DecideRequest, Decision, EntryFilter, ListEntry, ListKind, ListTarget, Outcome, Stats, Store,
    StoreError, Timestamp, TripletKey,
};

/// Settings for [`RedisStore::open`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub connect: ConnectOptions,
    /// Prepended to every key, so several greygate installations (or a
    /// test run) can share one Redis. Letters, digits and `:_.-` only.
    pub prefix: String,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            connect: ConnectOptions {
                topology: Topology::Single { url: url.into() },
                username: None,
                password: None,
                db: 0,
                tls: Default::default(),
                connect_timeout: Duration::from_secs(5),
                response_timeout: Duration::from_secs(5),
            },
            prefix: "greygate:".into(),
        }
    }
}

/// Check a key prefix: it goes into SCAN patterns unescaped.
pub fn valid_prefix(prefix: &str) -> bool {
    prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b":_.-".contains(&b))
}

/// Keys fetched per SCAN step and per batch of reads.
const SCAN_COUNT: usize = 1000;

/// The Redis backend.
pub struct RedisStore {
    conn: Connection,
    prefix: String,
    closed: AtomicBool,
}

/// Classify a Redis error: I/O, timeouts, a server busy loading or
/// failing over are worth retrying; anything else is not.
pub(crate) fn redis_error(e: redis::RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
            ) | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::ClusterConnectionNotFound
        );
    if transient { StoreError::Unavailable(format!("Redis: {e}")) } else { StoreError::Invalid(format!("Redis: {e}")) }
}

fn parse_fields<const N: usize>(text: &str) -> Option<[&str; N]> {
    let mut out = [""; N];
    let mut parts = text.split(' ');
    for slot in &mut out {
        *slot = parts.next()?;
    }
    parts.next().is_none().then_some(out)
}

/// A triplet record (`first last passed attempts passes expires`).
fn parse_entry(key: TripletKey, text: &str) -> Result<Entry, StoreError> {
    let bad = || StoreError::Invalid(format!("unreadable triplet record {text:?} for {key}"));
    let [f, l, p, a, n, e] = parse_fields(text).ok_or_else(bad)?;
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    Ok(Entry {
        first_seen: num(f)?,
        last_seen: num(l)?,
        passed_at: if p == "-" { None } else { Some(num(p)?) },
        attempts: num(a)? as u32,
        passes: num(n)? as u32,
        expires_at: num(e)?,
        key,
    })
}

fn format_entry(e: &Entry) -> String {
    let passed = e.passed_at.map_or_else(|| "-".to_owned(), |p| p.to_string());
    format!("{} {} {passed} {} {} {}", e.first_seen, e.last_seen, e.attempts, e.passes, e.expires_at)
}

/// A client record (`passes last_counted last_seen expires`).
fn parse_client(client: String, text: &str) -> Result<ClientRecord, StoreError> {
    let bad = || StoreError::Invalid(format!("unreadable client record {text:?} for {client}"));
    let [n, k, l, e] = parse_fields(text).ok_or_else(bad)?;
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    Ok(ClientRecord { passes: num(n)? as u32, last_counted: num(k)?, last_seen: num(l)?, expires_at: num(e)?, client })
}

fn format_client(c: &ClientRecord) -> String {
    format!("{} {} {} {}", c.passes, c.last_counted, c.last_seen, c.expires_at)
}

/// TTL for a copied record: its lifetime from its last sighting. Decisions
/// go by the stored expiry; the TTL only lets Redis forget it.
fn ttl(expires_at: Timestamp, last_seen: Timestamp) -> u64 {
    (expires_at - last_seen).max(1) as u64
}

fn list_field(kind: ListKind, target: ListTarget, value: &str) -> String {
    format!("{kind} {target} {}", escape(value))
}

/// `%`, space and control characters as `%XX`: key parts joined by spaces
/// split back exactly.
fn escape(part: &str) -> std::borrow::Cow<'_, str> {
    let special = |c: char| c == '%' || c == ' ' || c.is_ascii_control();
    if !part.contains(special) {
        return part.into();
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        if special(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.into()
}

fn join_triplet(k: &TripletKey) -> String {
    format!("{} {} {}", escape(&k.client), escape(&k.sender), escape(&k.recipient))
}

fn split_triplet(text: &str) -> Option<TripletKey> {
    let mut parts = text.split(' ');
    let key = TripletKey {
        client: unescape(parts.next()?)?,
        sender: unescape(parts.next()?)?,
        recipient: unescape(parts.next()?)?,
    };
    parts.next().is_none().then_some(key)
}

/// The decoders of what Redis holds (records, key parts), with their
/// round-trip properties asserted: for the fuzz target (`fuzz/`), since
/// another program or an older greygate may have written those bytes.
/// Panics when a property fails; never otherwise.
pub fn check_decoders(text: &str) {
    let key = TripletKey { client: "c".into(), sender: "s".into(), recipient: "r".into() };
    if let Ok(e) = parse_entry(key.clone(), text) {
        let again = parse_entry(key, &format_entry(&e)).expect("a re-encoded entry decodes");
        assert_eq!(again, e, "entry round trip");
    }
    if let Ok(c) = parse_client("c".into(), text) {
        let again = parse_client("c".into(), &format_client(&c)).expect("a re-encoded client decodes");
        assert_eq!(again, c, "client round trip");
    }
    assert_eq!(unescape(&escape(text)).as_deref(), Some(text), "escape round trip");
    assert!(!escape(text).contains(' '), "escaped parts hold no separator");
    if let Some(u) = unescape(text) {
        assert_eq!(unescape(&escape(&u)), Some(u), "unescape then escape round trip");
    }
    if let Some(k) = split_triplet(text) {
        assert_eq!(split_triplet(&join_triplet(&k)), Some(k), "key round trip");
    }
}

fn unescape(part: &str) -> Option<String> {
    if !part.contains('%') {
        return Some(part.to_owned());
    }
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl RedisStore {
    /// Connect and check that the server answers.
    pub async fn open(options: &RedisOptions) -> Result<RedisStore, StoreError> {
        if !valid_prefix(&options.prefix) {
            return Err(StoreError::Invalid(format!(
                "Redis key prefix {:?} must be letters, digits and :_.- (at most 64)",
                options.prefix
            )));
        }
        let conn = Connection::open(&options.connect).await?;
        let store = RedisStore { conn, prefix: options.prefix.clone(), closed: AtomicBool::new(false) };
        let mut h = store.handle().await?;
        let _: String = store.run(redis::cmd("PING").query_async(&mut h)).await?;
        Ok(store)
    }

    async fn handle(&self) -> Result<Handle, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.conn.handle().await
    }

    /// Await a command, classifying its error (and telling the connection).
    async fn run<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
        match f.await {
            Ok(v) => Ok(v),
            Err(e) => {
                self.conn.failed(&e).await;
                Err(redis_error(e))
            }
        }
    }

    fn triplet_key(&self, k: &TripletKey) -> String {
        format!("{}t:{}", self.prefix, join_triplet(k))
    }

    fn client_key(&self, client: &str) -> String {
        format!("{}c:{}", self.prefix, escape(client))
    }

    fn meta_key(&self, name: &str) -> String {
        format!("{}{{meta}}{name}", self.prefix)
    }

    fn triplet_from_key(&self, key: &str) -> Option<TripletKey> {
        split_triplet(key.strip_prefix(&self.prefix)?.strip_prefix("t:")?)
    }

    /// Every key matching `kind` (`t` or `c`), at most `limit`, in SCAN
    /// order, from every node that holds keys.
    async fn scan(&self, kind: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let pattern = format!("{}{kind}:*", self.prefix);
        let nodes = self.conn.scan_nodes().await?;
        let nodes: Vec<Option<&(String, u16)>> = match &nodes {
            Some(list) => list.iter().map(Some).collect(),
            None => vec![None],
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor = 0;
            loop {
                let (next, found) = self.conn.scan_step(node, cursor, &pattern, SCAN_COUNT).await?;
                keys.extend(found);
                if keys.len() >= limit {
                    keys.truncate(limit);
                    return Ok(keys);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// The values of `keys` (`None` where a key vanished meanwhile).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(SCAN_COUNT) {
            let h = self.handle().await?;
            let reads = chunk.iter().map(|k| {
                let mut h = h.clone();
                async move { h.get::<_, Option<String>>(k).await }
            });
            out.extend(self.run(futures::future::try_join_all(reads)).await?);
        }
        Ok(out)
    }

    async fn all_entries(&self) -> Result<Vec<Entry>, StoreError> {
        let keys = self.scan("t", usize::MAX).await?;
        let values = self.get_many(&keys).await?;
        let mut out = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(values) {
            if let (Some(k), Some(v)) = (self.triplet_from_key(key), value) {
                out.push(parse_entry(k, &v)?);
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn all_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let keys = self.scan("c", usize::MAX).await?;
        let values = self.get_many(&keys).await?;
        let strip = format!("{}c:", self.prefix);
        let mut out = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(values) {
            if let (Some(name), Some(v)) = (key.strip_prefix(&strip).and_then(unescape), value) {
                out.push(parse_client(name, &v)?);
            }
        }
        out.sort_by(|a, b| a.client.cmp(&b.client));
        Ok(out)
    }

    async fn delete_keys(&self, keys: &[String]) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for chunk in keys.chunks(SCAN_COUNT) {
            let h = self.handle().await?;
            let dels = chunk.iter().map(|k| {
                let mut h = h.clone();
                async move { h.del::<_, u64>(k).await }
            });
            deleted += self.run(futures::future::try_join_all(dels)).await?.into_iter().sum::<u64>();
        }
        Ok(deleted)
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut h = self.handle().await?;
        self.run(h.get(key)).await
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn expires_by_itself(&self) -> bool {
        true
    }

    async fn decide(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        let mut h = self.handle().await?;
        let awl = req.auto_whitelist.as_ref();
        let client_key = awl.map(|a| self.client_key(&a.client));
        if let (Some(awl), Some(ck)) = (awl, &client_key) {
            let passes: i64 = self
                .run(scripts::AWL_CHECK.key(ck).arg(req.now).arg(awl.after).arg(awl.lifetime).invoke_async(&mut h))
                .await?;
            if passes >= 0 {
                return Ok(Decision { outcome: Outcome::AutoWhitelisted { passes: passes as u32 }, entry: None });
            }
        }
        let t = &req.timers;
        let (outcome, detail, record): (String, i64, String) = self
            .run(
                scripts::TRIPLET
                    .key(self.triplet_key(&req.triplet))
                    .arg(req.now)
                    .arg(t.delay)
                    .arg(t.retry_window)
                    .arg(t.pass_lifetime)
                    .invoke_async(&mut h),
            )
            .await?;
        let outcome = match outcome.as_str() {
            "new" => Outcome::New,
            "too_soon" => Outcome::TooSoon { remaining: detail },
            "stale" => Outcome::Stale,
            "expired" => Outcome::Expired,
            "first_pass" => Outcome::FirstPass { delayed: detail },
            "passed" => Outcome::Passed,
            other => return Err(StoreError::Invalid(format!("Redis triplet script returned {other:?}"))),
        };
        let entry = parse_entry(req.triplet.clone(), &record)?;
        if let (Outcome::FirstPass { .. }, Some(awl), Some(ck)) = (outcome, awl, &client_key) {
            let _: i64 =
                self.run(scripts::COUNT_PASS.key(ck).arg(req.now).arg(awl.lifetime).invoke_async(&mut h)).await?;
        }
        Ok(Decision { outcome, entry: Some(entry) })
    }

    async fn peek(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        let entry = match self.get(&self.triplet_key(&req.triplet)).await? {
            Some(v) => Some(parse_entry(req.triplet.clone(), &v)?),
            None => None,
        };
        let client = match &req.auto_whitelist {
            Some(awl) => match self.get(&self.client_key(&awl.client)).await? {
                Some(v) => Some(parse_client(awl.client.clone(), &v)?),
                None => None,
            },
            None => None,
        };
        let step = model::decide(req, client.as_ref(), entry.as_ref());
        Ok(Decision { outcome: step.outcome, entry: step.entry })
    }

    async fn entries(&self, filter: &EntryFilter, limit: Option<usize>) -> Result<Vec<Entry>, StoreError> {
        let mut out: Vec<Entry> = self.all_entries().await?.into_iter().filter(|e| filter.matches(e)).collect();
        out.truncate(limit.unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn delete_entries(&self, filter: &EntryFilter) -> Result<u64, StoreError> {
        let keys: Vec<String> =
            self.all_entries().await?.iter().filter(|e| filter.matches(e)).map(|e| self.triplet_key(&e.key)).collect();
        self.delete_keys(&keys).await
    }

    async fn clients(&self, filter: &ClientFilter, limit: Option<usize>) -> Result<Vec<ClientRecord>, StoreError> {
        let mut out: Vec<ClientRecord> = self.all_clients().await?.into_iter().filter(|c| filter.matches(c)).collect();
        out.truncate(limit.unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn delete_clients(&self, filter: &ClientFilter) -> Result<u64, StoreError> {
        let keys: Vec<String> = self
            .all_clients()
            .await?
            .iter()
            .filter(|c| filter.matches(c))
            .map(|c| self.client_key(&c.client))
            .collect();
        self.delete_keys(&keys).await
    }

    async fn put_records(&self, entries: &[Entry], clients: &[ClientRecord]) -> Result<(), StoreError> {
        let writes: Vec<(String, String, u64)> = entries
            .iter()
            .map(|e| (self.triplet_key(&e.key), format_entry(e), ttl(e.expires_at, e.last_seen)))
            .chain(
                clients.iter().map(|c| (self.client_key(&c.client), format_client(c), ttl(c.expires_at, c.last_seen))),
            )
            .collect();
        for chunk in writes.chunks(SCAN_COUNT) {
            let h = self.handle().await?;
            let sets = chunk.iter().map(|(k, v, ttl)| {
                let mut h = h.clone();
                async move { h.set_ex::<_, _, ()>(k, v, *ttl).await }
            });
            self.run(futures::future::try_join_all(sets)).await?;
        }
        Ok(())
    }

    async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError> {
        let mut h = self.handle().await?;
        let all: BTreeMap<String, String> = self.run(h.hgetall(self.meta_key("lists"))).await?;
        let mut out = Vec::with_capacity(all.len());
        for (field, value) in all {
            let bad = || StoreError::Invalid(format!("unreadable list entry {field:?}"));
            let mut parts = field.splitn(3, ' ');
            let (Some(kind), Some(target), Some(v)) = (parts.next(), parts.next(), parts.next().and_then(unescape))
            else {
                return Err(bad());
            };
            let (Some(kind), Some(target)) = (ListKind::parse(kind), ListTarget::parse(target)) else {
                return Err(bad());
            };
            let (added_at, comment) = value.split_once(' ').ok_or_else(bad)?;
            out.push(ListEntry {
                kind,
                target,
                value: v,
                comment: comment.to_owned(),
                added_at: added_at.parse().map_err(|_| bad())?,
            });
        }
        out.sort_by(|a, b| (a.kind, a.target, &a.value).cmp(&(b.kind, b.target, &b.value)));
        Ok(out)
    }

    async fn add_list_entry(&self, entry: &ListEntry) -> Result<bool, StoreError> {
        let mut h = self.handle().await?;
        let field = list_field(entry.kind, entry.target, &entry.value);
        // A re-added entry keeps its first `added_at`, as in SQL.
        let existing: Option<String> = self.run(h.hget(self.meta_key("lists"), &field)).await?;
        let added_at = existing
            .as_deref()
            .and_then(|v| v.split_once(' '))
            .and_then(|(t, _)| t.parse::<i64>().ok())
            .unwrap_or(entry.added_at);
        let value = format!("{added_at} {}", entry.comment);
        let new: i64 = self
            .run(
                scripts::LIST_ADD
                    .key(self.meta_key("lists"))
                    .key(self.meta_key("lists_version"))
                    .arg(field)
                    .arg(value)
                    .invoke_async(&mut h),
            )
            .await?;
        Ok(new == 1)
    }

    async fn remove_list_entry(&self, kind: ListKind, target: ListTarget, value: &str) -> Result<bool, StoreError> {
        let mut h = self.handle().await?;
        let gone: i64 = self
            .run(
                scripts::LIST_REMOVE
                    .key(self.meta_key("lists"))
                    .key(self.meta_key("lists_version"))
                    .arg(list_field(kind, target, value))
                    .invoke_async(&mut h),
            )
            .await?;
        Ok(gone == 1)
    }

    async fn lists_version(&self) -> Result<u64, StoreError> {
        let mut h = self.handle().await?;
        let v: Option<u64> = self.run(h.get(self.meta_key("lists_version"))).await?;
        Ok(v.unwrap_or(0))
    }

    async fn add_counters(&self, deltas: &[(String, u64)]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut h = self.handle().await?;
        let mut pipe = redis::pipe();
        let key = self.meta_key("counters");
        for (name, delta) in deltas {
            pipe.hincr(&key, name, *delta).ignore();
        }
        self.run(pipe.query_async::<()>(&mut h)).await
    }

    async fn stats(&self, now: Timestamp, awl_after: u32) -> Result<Stats, StoreError> {
        let mut stats = Stats::default();
        for e in self.all_entries().await? {
            match (e.expires_at < now, e.state()) {
                (true, _) => stats.expired += 1,
                (false, model::EntryState::Passed) => stats.passed += 1,
                (false, model::EntryState::Pending) => stats.pending += 1,
            }
        }
        for c in self.all_clients().await? {
            if c.expires_at < now {
                stats.expired += 1;
            } else if awl_after > 0 && c.passes >= awl_after {
                stats.clients_whitelisted += 1;
            } else {
                stats.clients_counting += 1;
            }
        }
        for e in self.list_entries().await? {
            *stats.lists.entry(format!("{}/{}", e.kind, e.target)).or_default() += 1;
        }
        let mut h = self.handle().await?;
        stats.counters = self.run(h.hgetall(self.meta_key("counters"))).await?;
        Ok(stats)
    }

    async fn expire(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError> {
        let mut deleted = 0usize;
        for kind in ["t", "c"] {
            let keys = self.scan(kind, usize::MAX).await?;
            let mut rest = &keys[..];
            // Each check deletes at most one key, so checking no more keys
            // than the batch has room for keeps within it.
            while !rest.is_empty() && deleted < batch {
                let (now_keys, later) = rest.split_at((batch - deleted).min(SCAN_COUNT).min(rest.len()));
                rest = later;
                let h = self.handle().await?;
                let checks = now_keys.iter().map(|k| {
                    let mut h = h.clone();
                    async move { scripts::DELETE_IF_EXPIRED.key(k).arg(now).invoke_async::<u64>(&mut h).await }
                });
                deleted += self.run(futures::future::try_join_all(checks)).await?.into_iter().sum::<u64>() as usize;
            }
        }
        Ok(deleted as u64)
    }

    async fn clear(&self, batch: usize) -> Result<u64, StoreError> {
        let mut keys = self.scan("t", batch).await?;
        if keys.len() < batch {
            keys.extend(self.scan("c", batch - keys.len()).await?);
        }
        self.delete_keys(&keys).await
    }

    async fn record_count(&self) -> Result<u64, StoreError> {
        Ok((self.scan("t", usize::MAX).await?.len() + self.scan("c", usize::MAX).await?.len()) as u64)
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod topology_tests;
