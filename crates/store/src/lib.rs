//! greygate's persistent greylisting state.
//!
//! This crate owns *what is remembered*: triplet entries, auto-whitelisted
//! clients, the lists an administrator manages at run time, and decision
//! counters. It does not own *policy*: which key to use, which timers apply
//! and what a verdict looks like are decided by the engine and passed in.
//!
//! The state machine of one greylisting decision lives in [`model`] as pure
//! functions. Every backend applies it as **one atomic step per key** (one
//! transaction in SQLite or PostgreSQL, one script or transaction in Redis),
//! so two gateways or two connections deciding on the same triplet at the
//! same moment can never both see it as new.
//!
//! Backends: [`sqlite`] (the embedded default), [`postgres`] and [`redis`]
//! (one state shared by several gateways), and [`memory`] (nothing
//! survives a restart; for tests and trials). Every backend must pass the
//! [`conformance`] suite.
// One call (lowering the checkpoint thread's priority) needs libc; it is
// allowed where it is made, and nowhere else.
#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod filter;
pub mod health;
pub mod memory;
pub mod model;
pub mod postgres;
pub mod redis;
pub mod sqlite;
#[cfg(test)]
mod test_support;
pub mod timeout;
pub mod tls;

pub use filter::{ClientFilter, ClientMatch, EntryFilter, Glob};
pub use model::{ClientRecord, Entry, EntryState, Outcome};

/// Seconds since the Unix epoch. Greylisting works in whole seconds, like
/// every greylister before it (postgrey, greydaemon's save file).
pub type Timestamp = i64;

/// The greylisting key: who (client network, or a retry identity that
/// replaces it), from whom, to whom. All three parts are already normalised
/// by the engine; the store compares them byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TripletKey {
    /// Client network (`192.0.2.0/24`, `2001:db8:1:2::/64`), exact address,
    /// or another retry identity chosen by the engine.
    pub client: String,
    /// Normalised envelope sender; `<>` for the null sender.
    pub sender: String,
    /// Normalised envelope recipient.
    pub recipient: String,
}

impl fmt::Display for TripletKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.client, self.sender, self.recipient)
    }
}

/// Greylisting timers in seconds, as they apply to one decision (rules may
/// give different timers to different senders or recipients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// A retry is accepted this long after the first attempt, not before.
    pub delay: i64,
    /// A retry later than this after the first attempt starts over.
    pub retry_window: i64,
    /// A passed triplet stays passed this long after it was last seen.
    pub pass_lifetime: i64,
}

/// Client auto-whitelisting for one decision: the client (exact address)
/// whose successful retries are counted, and the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoWhitelist {
    /// The exact client address, as text.
    pub client: String,
    /// Successful retries (counted at most once an hour) after which the
    /// client skips greylisting. Always at least 1.
    pub after: u32,
    /// How long a whitelisted client stays whitelisted after it was last
    /// seen, in seconds.
    pub lifetime: i64,
}

/// Everything a backend needs for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecideRequest {
    pub triplet: TripletKey,
    pub timers: Timers,
    /// `None` when auto-whitelisting is off for this decision.
    pub auto_whitelist: Option<AutoWhitelist>,
    pub now: Timestamp,
}

/// What a decision found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The triplet entry as it is after the decision, or `None` when the
    /// client was auto-whitelisted and the triplet was not consulted.
    pub entry: Option<Entry>,
}

/// Which run-time list an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    /// Trusted networks: skip every check.
    Trust,
    /// Skip greylisting.
    Whitelist,
    /// Refuse.
    Blacklist,
}

/// What a list entry is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListTarget {
    Client,
    Sender,
    Recipient,
}

impl ListKind {
    pub const ALL: [ListKind; 3] = [ListKind::Trust, ListKind::Whitelist, ListKind::Blacklist];

    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Trust => "trust",
            ListKind::Whitelist => "whitelist",
            ListKind::Blacklist => "blacklist",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ListKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl ListTarget {
    pub const ALL: [ListTarget; 3] = [ListTarget::Client, ListTarget::Sender, ListTarget::Recipient];

    pub fn as_str(self) -> &'static str {
        match self {
            ListTarget::Client => "client",
            ListTarget::Sender => "sender",
            ListTarget::Recipient => "recipient",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ListTarget::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ListTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a run-time list. The value's syntax (address, CIDR, domain,
/// `/regex/`) is validated by the engine before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub kind: ListKind,
    pub target: ListTarget,
    pub value: String,
    /// Free text from the administrator; may be empty.
    pub comment: String,
    pub added_at: Timestamp,
}

/// Counts for `greygate stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Triplets seen but not yet successfully retried.
    pub pending: u64,
    /// Triplets that passed and are still within their lifetime.
    pub passed: u64,
    /// Entries (triplets and clients) past their expiry, waiting for purge.
    pub expired: u64,
    /// Clients with at least one counted pass, below the threshold.
    pub clients_counting: u64,
    /// Clients at or above the auto-whitelist threshold.
    pub clients_whitelisted: u64,
    /// Run-time list entries, by `kind/target`.
    pub lists: BTreeMap<String, u64>,
    /// Decisions by outcome, and other counters, since the store was created.
    pub counters: BTreeMap<String, u64>,
}

/// A store failure, classified by whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend is down, busy, or an I/O step failed; retrying later can
    /// succeed. Front ends apply the configured fail mode.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The stored data or schema is not what this version understands.
    #[error("store data invalid: {0}")]
    Invalid(String),
    /// The store was shut down.
    #[error("store closed")]
    Closed,
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A greylisting state backend.
///
/// `decide` is the hot path and must be one atomic step per key. Everything
/// else serves the admin CLI and background maintenance; none of it may
/// block `decide` for long (expiry works in bounded batches).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short backend name for logs (`sqlite`, `memory`, ...).
    fn backend(&self) -> &'static str;

    /// True when the backend forgets expired records by itself (Redis TTLs),
    /// so the server need not run [`Store::expire`] periodically.
    fn expires_by_itself(&self) -> bool {
        false
    }

    /// Decide on one triplet and record the result, atomically.
    async fn decide(&self, req: &DecideRequest) -> Result<Decision, StoreError>;

    /// What `decide` would answer, without changing anything.
    async fn peek(&self, req: &DecideRequest) -> Result<Decision, StoreError>;

    /// Triplet entries matching `filter`, at most `limit`, ordered by key.
    async fn entries(&self, filter: &EntryFilter, limit: Option<usize>) -> Result<Vec<Entry>, StoreError>;

    /// Delete matching triplet entries; returns how many were deleted.
    async fn delete_entries(&self, filter: &EntryFilter) -> Result<u64, StoreError>;

    /// Client (auto-whitelist) records matching `filter`, ordered by client.
    async fn clients(&self, filter: &ClientFilter, limit: Option<usize>) -> Result<Vec<ClientRecord>, StoreError>;

    /// Delete matching client records; returns how many were deleted.
    async fn delete_clients(&self, filter: &ClientFilter) -> Result<u64, StoreError>;

    /// Write entries and client records as given (state copy and import).
    /// Existing records with the same key are replaced.
    async fn put_records(&self, entries: &[Entry], clients: &[ClientRecord]) -> Result<(), StoreError>;

    /// All run-time list entries, ordered by kind, target, value.
    async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError>;

    /// Add a list entry; `false` if it was already there (comment updated).
    async fn add_list_entry(&self, entry: &ListEntry) -> Result<bool, StoreError>;

    /// Remove a list entry; `false` if there was none.
    async fn remove_list_entry(&self, kind: ListKind, target: ListTarget, value: &str) -> Result<bool, StoreError>;

    /// A number that changes whenever the lists change, so a running server
    /// can notice edits made by the CLI (or by another gateway).
    async fn lists_version(&self) -> Result<u64, StoreError>;

    /// Add to named counters.
    async fn add_counters(&self, deltas: &[(String, u64)]) -> Result<(), StoreError>;

    /// Counts for the admin CLI. `awl_after` is the configured threshold, to
    /// tell whitelisted clients from those still counting.
    async fn stats(&self, now: Timestamp, awl_after: u32) -> Result<Stats, StoreError>;

    /// Delete at most `batch` expired records (entries first, then clients);
    /// returns how many were deleted. Call repeatedly until it returns 0.
    async fn expire(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError>;

    /// Delete at most `batch` records of any age (entries, then clients);
    /// lists and counters are kept. Call repeatedly until it returns 0.
    async fn clear(&self, batch: usize) -> Result<u64, StoreError>;

    /// Number of triplet and client records (for progress bars).
    async fn record_count(&self) -> Result<u64, StoreError>;

    /// Flush and stop background work. Later calls fail with `Closed`.
    async fn close(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod conformance_tests {
    mod memory {
        async fn make() -> (crate::memory::MemoryStore, ()) {
            (crate::memory::MemoryStore::new(), ())
        }
        crate::conformance_suite!(make());
    }

    mod sqlite {
        use crate::sqlite::{SqliteOptions, SqliteStore};

        async fn make() -> (SqliteStore, tempfile::TempDir) {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("greygate.db"))).unwrap();
            (store, dir)
        }
        crate::conformance_suite!(make());
    }
}
