//! Opening the configured store, the same way for the server and the CLI.
//!
//! Every backend is wrapped the same way: [`HealthStore`] logs and counts
//! outages and recoveries, [`TimeoutStore`] bounds each decision.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use greygate_store::Store;
use greygate_store::health::HealthStore;
use greygate_store::memory::MemoryStore;
use greygate_store::postgres::PostgresStore;
use greygate_store::redis::RedisStore;
use greygate_store::sqlite::{self, SqliteOptions, SqliteStore};
use greygate_store::timeout::TimeoutStore;

use crate::config::{Backend, StoreConfig, Synchronous};

/// Who opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server: owns compaction.
    Server,
    /// An admin command: reads and writes, leaves compaction to the server.
    Admin,
}

/// Open the store; decisions are bounded by `store.timeout`.
pub async fn open(config: &StoreConfig, role: Role) -> Result<Arc<dyn Store>> {
    let inner: Arc<dyn Store> = match config.backend {
        Backend::Sqlite => {
            let options = SqliteOptions {
                path: config.path.clone(),
                synchronous: match config.synchronous {
                    Synchronous::Normal => sqlite::Synchronous::Normal,
                    Synchronous::Full => sqlite::Synchronous::Full,
                },
                busy_timeout: Duration::from_secs(5),
                compact_on_close: role == Role::Server,
            };
            let store = SqliteStore::open(&options)
                .with_context(|| format!("cannot open the SQLite store {}", config.path.display()))?;
            Arc::new(store)
        }
        Backend::Memory => Arc::new(MemoryStore::new()),
        Backend::Postgres => {
            let options = config.postgres.as_ref().context("store.postgres is not set")?;
            let store = PostgresStore::open(options)
                .await
                .with_context(|| format!("cannot open the PostgreSQL store (schema {})", options.schema))?;
            Arc::new(store)
        }
        Backend::Redis => {
            let options = config.redis.as_ref().context("store.redis is not set")?;
            let store = RedisStore::open(options).await.context("cannot open the Redis store")?;
            Arc::new(store)
        }
    };
    let bounded = Arc::new(TimeoutStore::new(inner, config.timeout));
    Ok(Arc::new(HealthStore::new(bounded)))
}
