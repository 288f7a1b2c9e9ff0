//! An in-process backend: one mutex around plain maps.
//!
//! Nothing survives a restart, so this is for tests, the engine's unit tests
//! and trial runs (`backend = "memory"`). It passes the conformance suite
//! like any other backend; the mutex makes each decision atomic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::model::{self, ClientRecord, Entry, EntryState};
use crate::{
    ClientFilter, DecideRequest, Decision, EntryFilter, ListEntry, ListKind, ListTarget, Stats, Store, StoreError,
    Timestamp, TripletKey,
};

#[derive(Default)]
struct State {
    entries: HashMap<TripletKey, Entry>,
    clients: HashMap<String, ClientRecord>,
    lists: BTreeMap<(ListKind, ListTarget, String), ListEntry>,
    lists_version: u64,
    counters: BTreeMap<String, u64>,
    closed: bool,
}

/// The in-memory backend.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.closed {
            return Err(StoreError::Closed);
        }
        Ok(f(&mut state))
    }
}

fn step(state: &State, req: &DecideRequest) -> model::Step {
    let client = req.auto_whitelist.as_ref().and_then(|a| state.clients.get(&a.client));
    model::decide(req, client, state.entries.get(&req.triplet))
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn decide(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.with(|state| {
            let step = step(state, req);
            if let Some(c) = step.client {
                state.clients.insert(c.client.clone(), c);
            }
            if let (Some(e), true) = (&step.entry, step.write_entry) {
                state.entries.insert(e.key.clone(), e.clone());
            }
            Decision { outcome: step.outcome, entry: step.entry }
        })
    }

    async fn peek(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.with(|state| {
            let step = step(state, req);
            Decision { outcome: step.outcome, entry: step.entry }
        })
    }

    async fn entries(&self, filter: &EntryFilter, limit: Option<usize>) -> Result<Vec<Entry>, StoreError> {
        self.with(|state| {
            let mut out: Vec<Entry> = state.entries.values().filter(|e| filter.matches(e)).cloned().collect();
            out.sort_by(|a, b| a.key.cmp(&b.key));
            out.truncate(limit.unwrap_or(usize::MAX));
            out
        })
    }

    async fn delete_entries(&self, filter: &EntryFilter) -> Result<u64, StoreError> {
        self.with(|state| {
            let before = state.entries.len();
            state.entries.retain(|_, e| !filter.matches(e));
            (before - state.entries.len()) as u64
        })
    }

    async fn clients(&self, filter: &ClientFilter, limit: Option<usize>) -> Result<Vec<ClientRecord>, StoreError> {
        self.with(|state| {
            let mut out: Vec<ClientRecord> = state.clients.values().filter(|c| filter.matches(c)).cloned().collect();
            out.sort_by(|a, b| a.client.cmp(&b.client));
            out.truncate(limit.unwrap_or(usize::MAX));
            out
        })
    }

    async fn delete_clients(&self, filter: &ClientFilter) -> Result<u64, StoreError> {
        self.with(|state| {
            let before = state.clients.len();
            state.clients.retain(|_, c| !filter.matches(c));
            (before - state.clients.len()) as u64
        })
    }

    async fn put_records(&self, entries: &[Entry], clients: &[ClientRecord]) -> Result<(), StoreError> {
        self.with(|state| {
            for e in entries {
                state.entries.insert(e.key.clone(), e.clone());
            }
            for c in clients {
                state.clients.insert(c.client.clone(), c.clone());
            }
        })
    }

    async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError> {
        self.with(|state| state.lists.values().cloned().collect())
    }

    async fn add_list_entry(&self, entry: &ListEntry) -> Result<bool, StoreError> {
        self.with(|state| {
            state.lists_version += 1;
            let key = (entry.kind, entry.target, entry.value.clone());
            match state.lists.get_mut(&key) {
                Some(existing) => {
                    existing.comment = entry.comment.clone();
                    false
                }
                None => {
                    state.lists.insert(key, entry.clone());
                    true
                }
            }
        })
    }

    async fn remove_list_entry(&self, kind: ListKind, target: ListTarget, value: &str) -> Result<bool, StoreError> {
        self.with(|state| {
            let removed = state.lists.remove(&(kind, target, value.to_owned())).is_some();
            if removed {
                state.lists_version += 1;
            }
            removed
        })
    }

    async fn lists_version(&self) -> Result<u64, StoreError> {
        self.with(|state| state.lists_version)
    }

    async fn add_counters(&self, deltas: &[(String, u64)]) -> Result<(), StoreError> {
        self.with(|state| {
            for (name, delta) in deltas {
                *state.counters.entry(name.clone()).or_default() += delta;
            }
        })
    }

    async fn stats(&self, now: Timestamp, awl_after: u32) -> Result<Stats, StoreError> {
        self.with(|state| {
            let mut stats = Stats { counters: state.counters.clone(), ..Stats::default() };
            for e in state.entries.values() {
                if e.expires_at < now {
                    stats.expired += 1;
                } else if e.state() == EntryState::Passed {
                    stats.passed += 1;
                } else {
                    stats.pending += 1;
                }
            }
            for c in state.clients.values() {
                if c.expires_at < now {
                    stats.expired += 1;
                } else if awl_after > 0 && c.passes >= awl_after {
                    stats.clients_whitelisted += 1;
                } else {
                    stats.clients_counting += 1;
                }
            }
            for (kind, target, _) in state.lists.keys() {
                *stats.lists.entry(format!("{kind}/{target}")).or_default() += 1;
            }
            stats
        })
    }

    async fn expire(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError> {
        self.with(|state| {
            let mut victims: Vec<TripletKey> =
                state.entries.values().filter(|e| e.expires_at < now).map(|e| e.key.clone()).collect();
            victims.truncate(batch);
            for k in &victims {
                state.entries.remove(k);
            }
            let room = batch - victims.len();
            let mut clients: Vec<String> =
                state.clients.values().filter(|c| c.expires_at < now).map(|c| c.client.clone()).collect();
            clients.truncate(room);
            for c in &clients {
                state.clients.remove(c);
            }
            (victims.len() + clients.len()) as u64
        })
    }

    async fn clear(&self, batch: usize) -> Result<u64, StoreError> {
        self.with(|state| {
            let keys: Vec<TripletKey> = state.entries.keys().take(batch).cloned().collect();
            for k in &keys {
                state.entries.remove(k);
            }
            let clients: Vec<String> = state.clients.keys().take(batch - keys.len()).cloned().collect();
            for c in &clients {
                state.clients.remove(c);
            }
            (keys.len() + clients.len()) as u64
        })
    }

    async fn record_count(&self) -> Result<u64, StoreError> {
        self.with(|state| (state.entries.len() + state.clients.len()) as u64)
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.with(|state| state.closed = true)
    }
}
