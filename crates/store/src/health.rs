//! Store outages, logged once and counted, whatever the backend.
//!
//! A shared store (Redis, PostgreSQL) can go away and come back while
//! greygate runs; the backends reconnect by themselves. This wrapper
//! watches the calls the server makes all the time (decisions, list
//! refreshes, counter flushes) and logs the first failure of an outage
//! and the recovery, with how long it lasted and how many calls failed,
//! instead of one line per failed call. Each recovery adds one to the
//! `store_outages` counter. Every failed decision is also counted by the
//! engine (`store_error`) and has the configured fail mode applied.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;

use crate::model::{ClientRecord, Entry};
use crate::{
    ClientFilter, DecideRequest, Decision, EntryFilter, ListEntry, ListKind, ListTarget, Stats, Store, StoreError,
    Timestamp,
};

/// Wraps a store; logs and counts its outages.
pub struct HealthStore {
    inner: Arc<dyn Store>,
    outage: Mutex<Option<Outage>>,
}

struct Outage {
    since: Instant,
    failures: u64,
}

impl HealthStore {
    pub fn new(inner: Arc<dyn Store>) -> HealthStore {
        HealthStore { inner, outage: Mutex::new(None) }
    }

    /// Whether the store is in an outage now (for tests and status).
    pub fn failing(&self) -> bool {
        self.outage.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    async fn watch<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let result = f.await;
        match &result {
            Err(StoreError::Closed) => {}
            Err(error) => {
                let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
                match outage.as_mut() {
                    Some(o) => o.failures += 1,
                    None => {
                        tracing::warn!(backend = self.inner.backend(), %error, "store unavailable; applying the fail mode until it is back");
                        *outage = Some(Outage { since: Instant::now(), failures: 1 });
                    }
                }
            }
            Ok(_) => {
                let ended = self.outage.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(o) = ended {
                    tracing::info!(
                        backend = self.inner.backend(),
                        failed_calls = o.failures,
                        outage_ms = o.since.elapsed().as_millis() as u64,
                        "store reachable again"
                    );
                    if let Err(error) = self.inner.add_counters(&[("store_outages".to_owned(), 1)]).await {
                        tracing::warn!(%error, "cannot count the store outage");
                    }
                }
            }
        }
        result
    }
}

#[async_trait]
impl Store for HealthStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn expires_by_itself(&self) -> bool {
        self.inner.expires_by_itself()
    }

    async fn decide(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.watch(self.inner.decide(req)).await
    }

    async fn peek(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.watch(self.inner.peek(req)).await
    }

    async fn entries(&self, filter: &EntryFilter, limit: Option<usize>) -> Result<Vec<Entry>, StoreError> {
        self.inner.entries(filter, limit).await
    }

    async fn delete_entries(&self, filter: &EntryFilter) -> Result<u64, StoreError> {
        self.inner.delete_entries(filter).await
    }

    async fn clients(&self, filter: &ClientFilter, limit: Option<usize>) -> Result<Vec<ClientRecord>, StoreError> {
        self.inner.clients(filter, limit).await
    }

    async fn delete_clients(&self, filter: &ClientFilter) -> Result<u64, StoreError> {
        self.inner.delete_clients(filter).await
    }

    async fn put_records(&self, entries: &[Entry], clients: &[ClientRecord]) -> Result<(), StoreError> {
        self.inner.put_records(entries, clients).await
    }

    async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError> {
        self.inner.list_entries().await
    }

    async fn add_list_entry(&self, entry: &ListEntry) -> Result<bool, StoreError> {
        self.inner.add_list_entry(entry).await
    }

    async fn remove_list_entry(&self, kind: ListKind, target: ListTarget, value: &str) -> Result<bool, StoreError> {
        self.inner.remove_list_entry(kind, target, value).await
    }

    async fn lists_version(&self) -> Result<u64, StoreError> {
        self.watch(self.inner.lists_version()).await
    }

    async fn add_counters(&self, deltas: &[(String, u64)]) -> Result<(), StoreError> {
        self.watch(self.inner.add_counters(deltas)).await
    }

    async fn stats(&self, now: Timestamp, awl_after: u32) -> Result<Stats, StoreError> {
        self.inner.stats(now, awl_after).await
    }

    async fn expire(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError> {
        self.inner.expire(now, batch).await
    }

    async fn clear(&self, batch: usize) -> Result<u64, StoreError> {
        self.inner.clear(batch).await
    }

    async fn record_count(&self) -> Result<u64, StoreError> {
        self.inner.record_count().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
