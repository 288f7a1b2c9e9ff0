//! Opening the configured store, the same way for the server and the CLI.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use greygate_store::Store;
use greygate_store::memory::MemoryStore;
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
pub fn open(config: &StoreConfig, role: Role) -> Result<Arc<dyn Store>> {
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
    };
    Ok(Arc::new(TimeoutStore::new(inner, config.timeout)))
}
