//! A time limit on the decisions of any backend.
//!
//! A store that hangs (a stuck disk, a network partition to Redis) must not
//! hang the mail: after the limit the decision fails like any other store
//! error, and the engine applies the configured fail mode. Only the hot
//! path is bounded; admin operations may legitimately run long.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{ClientRecord, Entry};
use crate::{
    ClientFilter, DecideRequest, Decision, EntryFilter, ListEntry, ListKind, ListTarget, Stats, Store, StoreError,
    Timestamp,
};

/// Wraps a store; `decide` and `peek` fail after `limit`.
pub struct TimeoutStore {
    inner: Arc<dyn Store>,
    limit: Duration,
}

impl TimeoutStore {
    pub fn new(inner: Arc<dyn Store>, limit: Duration) -> TimeoutStore {
        TimeoutStore { inner, limit }
    }

    async fn bounded<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        tokio::time::timeout(self.limit, f).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "{} store did not answer within {:?}",
                self.inner.backend(),
                self.limit
            )))
        })
    }
}

#[async_trait]
impl Store for TimeoutStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn expires_by_itself(&self) -> bool {
        self.inner.expires_by_itself()
    }

    async fn decide(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.bounded(self.inner.decide(req)).await
    }

    async fn peek(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        self.bounded(self.inner.peek(req)).await
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
        self.bounded(self.inner.lists_version()).await
    }

    async fn add_counters(&self, deltas: &[(String, u64)]) -> Result<(), StoreError> {
        self.bounded(self.inner.add_counters(deltas)).await
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
