//! Background work: list refresh, expiry, counter flushes.
//!
//! Expiry deletes in small batches with a pause between them, so it never
//! holds the store long enough to slow decisions (postgrey's nightly walk
//! blocks its request loop; sqlgrey's "sync" cleanup locks up). Everything
//! stops when `shutdown` fires.

use std::sync::Arc;
use std::time::Duration;

use greygate_engine::Engine;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::StoreConfig;

/// Records deleted per expiry transaction.
const EXPIRE_BATCH: usize = 500;
/// Pause between expiry batches, so decisions get the store in between.
const EXPIRE_PAUSE: Duration = Duration::from_millis(5);
/// How often decision counters are saved to the store.
const COUNTER_FLUSH: Duration = Duration::from_secs(10);

pub fn spawn(tasks: &TaskTracker, engine: Arc<Engine>, store: &StoreConfig, shutdown: CancellationToken) {
    tasks.spawn(refresh_lists(engine.clone(), store.lists_refresh, shutdown.clone()));
    tasks.spawn(expire(engine.clone(), store.expire_interval, shutdown.clone()));
    tasks.spawn(flush_counters(engine, shutdown));
}

async fn refresh_lists(engine: Arc<Engine>, every: Duration, shutdown: CancellationToken) {
    // Log a store outage once, and its end once, not every few seconds.
    let mut failing = false;
    while sleep_or_stop(every, &shutdown).await {
        match engine.refresh_lists().await {
            Ok(changed) => {
                if failing {
                    tracing::info!("store reachable again");
                    failing = false;
                }
                if changed {
                    tracing::info!(lists = ?engine.list_counts(), "lists reloaded from the store");
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot reload lists from the store; keeping the current ones");
                }
                failing = true;
            }
        }
    }
}

async fn expire(engine: Arc<Engine>, every: Duration, shutdown: CancellationToken) {
    // Redis forgets expired records by itself (TTLs): nothing to purge.
    if engine.store().expires_by_itself() {
        return;
    }
    while sleep_or_stop(every, &shutdown).await {
        let mut total = 0u64;
        loop {
            match engine.store().expire(super::unix_now(), EXPIRE_BATCH).await {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(error) => {
                    tracing::warn!(%error, "expiry failed; will try again");
                    break;
                }
            }
            if !sleep_or_stop(EXPIRE_PAUSE, &shutdown).await {
                break;
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, "expired entries purged");
        }
    }
}

async fn flush_counters(engine: Arc<Engine>, shutdown: CancellationToken) {
    // The last flush is `serve::run`'s, after the connections drained.
    while sleep_or_stop(COUNTER_FLUSH, &shutdown).await {
        save_counters(&engine).await;
    }
}

/// Save the decision counters; on failure keep them for the next try.
pub async fn save_counters(engine: &Engine) {
    let counts = engine.take_counters();
    if !counts.is_empty()
        && let Err(error) = engine.store().add_counters(&counts).await
    {
        tracing::warn!(%error, "cannot save decision counters; keeping them for the next try");
        engine.restore_counters(&counts);
    }
}

/// Sleep; `false` if shutdown came first.
async fn sleep_or_stop(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
