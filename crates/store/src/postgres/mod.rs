//! The PostgreSQL backend: one shared state for several gateways.
//!
//! Connections come from a pool (deadpool) that replaces broken ones by
//! itself, so a restarted or briefly unreachable server costs the
//! decisions made while it is away (each fails as `Unavailable`, and the
//! engine applies the fail mode), nothing more. The store must be
//! reachable when it is opened: the schema is checked and migrated then
//! ([`schema`]).
//!
//! A decision is one call of the `greygate_decide` function: one round
//! trip, one transaction, the triplet row locked for its duration. The
//! admin operations work in bounded statements; filters are applied in
//! Rust, the same way as for every backend.
//!
//! Expiry is a batched `DELETE` of rows whose `expires_at` passed,
//! rechecked under the row lock so a row refreshed meanwhile survives.

mod schema;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::{StreamExt, pin_mut};
use tokio_postgres::Row;
use tokio_postgres::config::SslMode;

use crate::model::{self, ClientRecord, Entry};
use crate::tls::TlsOptions;
use crate::{
    ClientFilter, DecideRequest, Decision, EntryFilter, ListEntry, ListKind, ListTarget, Outcome, Stats, Store,
    StoreError, Timestamp, TripletKey,
};

pub use schema::MIGRATIONS;

/// Settings for [`PostgresStore::open`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// A libpq-style connection string (`host=db1 user=greygate
    /// dbname=mail`) or a `postgres://` URL. TLS is set by `tls`, not here.
    pub url: String,
    /// Schema holding greygate's tables (created if missing). Letters,
    /// digits and `_` only.
    pub schema: String,
    /// Most connections held open at once.
    pub pool_size: usize,
    /// Longest wait to establish a connection, or for a free one.
    pub connect_timeout: Duration,
    pub tls: TlsOptions,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: "greygate".into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            tls: TlsOptions::default(),
        }
    }
}

/// Records written per statement by admin work (deletes, imports).
const CHUNK: usize = 1000;

/// The PostgreSQL backend.
pub struct PostgresStore {
    pool: Pool,
    closed: AtomicBool,
}

/// Check a schema name: it goes into `search_path` and into SQL.
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

impl PostgresStore {
    /// Connect, create the schema if needed and migrate it.
    pub async fn open(options: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        if !valid_schema_name(&options.schema) {
            return Err(StoreError::Invalid(format!(
                "PostgreSQL schema name {:?} must be letters, digits and _ (not starting with a digit)",
                options.schema
            )));
        }
        let mut config = tokio_postgres::Config::from_str(&options.url)
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL connection string: {e}")))?;
        config
            .connect_timeout(options.connect_timeout)
            .application_name("greygate")
            .options(format!("-c search_path={}", options.schema))
            .ssl_mode(if options.tls.enabled { SslMode::Require } else { SslMode::Disable });
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = if options.tls.enabled {
            let tls = crate::tls::client_config(options.tls.ca_file.as_deref())?;
            Manager::from_config(config, tokio_postgres_rustls::MakeRustlsConnect::new(tls), manager_config)
        } else {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL pool: {e}")))?;
        let store = PostgresStore { pool, closed: AtomicBool::new(false) };
        let mut client = store.client().await?;
        schema::migrate(&mut client, &options.schema).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            deadpool_postgres::PoolError::Closed => StoreError::Closed,
            other => StoreError::Unavailable(format!("PostgreSQL: {other}")),
        })
    }

    /// Run one statement, prepared once per connection.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
        client.query(&stmt, params).await.map_err(pg_error)
    }

    async fn scan_entries(&self, filter: &EntryFilter, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let sql = match filter.state {
            None => format!("SELECT {ENTRY_COLUMNS} FROM triplets ORDER BY client, sender, recipient"),
            Some(model::EntryState::Pending) => {
                format!(
                    "SELECT {ENTRY_COLUMNS} FROM triplets WHERE passed_at IS NULL ORDER BY client, sender, recipient"
                )
            }
            Some(model::EntryState::Passed) => format!(
                "SELECT {ENTRY_COLUMNS} FROM triplets WHERE passed_at IS NOT NULL ORDER BY client, sender, recipient"
            ),
        };
        let client = self.client().await?;
        let rows = client.query_raw(&sql, std::iter::empty::<i64>()).await.map_err(pg_error)?;
        pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let entry = entry_from_row(&row.map_err(pg_error)?, 0);
            if filter.matches(&entry) {
                out.push(entry);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn scan_clients(&self, filter: &ClientFilter, limit: usize) -> Result<Vec<ClientRecord>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let client = self.client().await?;
        let sql = "SELECT client, passes, last_counted, last_seen, expires_at FROM clients ORDER BY client";
        let rows = client.query_raw(sql, std::iter::empty::<i64>()).await.map_err(pg_error)?;
        pin_mut!(rows);
        while let Some(row) = rows.next().await {
            let record = client_from_row(&row.map_err(pg_error)?, 0);
            if filter.matches(&record) {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn delete_batch(&self, table: Table, now: Option<Timestamp>, batch: usize) -> Result<u64, StoreError> {
        if batch == 0 {
            return Ok(0);
        }
        // The expiry is checked again on the locked row, so a row that a
        // decision refreshed meanwhile is kept.
        let (cond, recheck) =
            if now.is_some() { ("expires_at < $1", "t.expires_at < $1") } else { ("$1::int8 IS NULL", "TRUE") };
        let sql = match table {
            Table::Triplets => format!(
                "WITH d AS (DELETE FROM triplets t USING (
                     SELECT client, sender, recipient FROM triplets WHERE {cond} LIMIT $2 FOR UPDATE SKIP LOCKED
                 ) v WHERE t.client = v.client AND t.sender = v.sender AND t.recipient = v.recipient
                   AND {recheck} RETURNING 1)
                 SELECT count(*) FROM d"
            ),
            Table::Clients => format!(
                "WITH d AS (DELETE FROM clients t USING (
                     SELECT client FROM clients WHERE {cond} LIMIT $2 FOR UPDATE SKIP LOCKED
                 ) v WHERE t.client = v.client AND {recheck} RETURNING 1)
                 SELECT count(*) FROM d"
            ),
        };
        let rows = self.query(&sql, &[&now, &(batch as i64)]).await?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    async fn delete_in_batches(&self, now: Option<Timestamp>, batch: usize) -> Result<u64, StoreError> {
        let n = self.delete_batch(Table::Triplets, now, batch).await?;
        let room = batch - n as usize;
        Ok(n + self.delete_batch(Table::Clients, now, room).await?)
    }
}

#[derive(Clone, Copy)]
enum Table {
    Triplets,
    Clients,
}

const ENTRY_COLUMNS: &str = "client, sender, recipient, first_seen, last_seen, passed_at, attempts, passes, expires_at";

fn entry_from_row(row: &Row, at: usize) -> Entry {
    Entry {
        key: TripletKey { client: row.get(at), sender: row.get(at + 1), recipient: row.get(at + 2) },
        first_seen: row.get(at + 3),
        last_seen: row.get(at + 4),
        passed_at: row.get(at + 5),
        attempts: row.get::<_, i32>(at + 6) as u32,
        passes: row.get::<_, i32>(at + 7) as u32,
        expires_at: row.get(at + 8),
    }
}

fn client_from_row(row: &Row, at: usize) -> ClientRecord {
    ClientRecord {
        client: row.get(at),
        passes: row.get::<_, i32>(at + 1) as u32,
        last_counted: row.get(at + 2),
        last_seen: row.get(at + 3),
        expires_at: row.get(at + 4),
    }
}

/// Classify a PostgreSQL error: connection trouble, overload, shutdown
/// and lock conflicts are worth retrying; anything else (a missing table,
/// a constraint) means the database is not what we expect.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let text = format!("PostgreSQL error {code}: {}", db.message());
            // 08 connection, 40 serialization/deadlock, 53 resources,
            // 57 operator intervention (shutdown), 55P03 lock not available.
            if ["08", "40", "53", "57"].iter().any(|class| code.starts_with(class)) || code == "55P03" {
                StoreError::Unavailable(text)
            } else {
                StoreError::Invalid(text)
            }
        }
        None => StoreError::Unavailable(format!("PostgreSQL: {e}")),
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn decide(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        let awl = req.auto_whitelist.as_ref();
        let rows = self
            .query(
                "SELECT outcome, detail, first_seen, last_seen, passed_at, attempts, passes, expires_at
                 FROM greygate_decide($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &req.triplet.client,
                    &req.triplet.sender,
                    &req.triplet.recipient,
                    &req.timers.delay,
                    &req.timers.retry_window,
                    &req.timers.pass_lifetime,
                    &awl.map(|a| a.client.as_str()),
                    &awl.map_or(0, |a| to_i32(a.after)),
                    &awl.map_or(0, |a| a.lifetime),
                    &req.now,
                ],
            )
            .await?;
        let row = rows.first().ok_or_else(|| StoreError::Invalid("greygate_decide returned no row".into()))?;
        let detail: Option<i64> = row.get(1);
        let detail = detail.unwrap_or(0);
        let outcome = match row.get::<_, &str>(0) {
            "auto_whitelisted" => {
                return Ok(Decision { outcome: Outcome::AutoWhitelisted { passes: detail as u32 }, entry: None });
            }
            "new" => Outcome::New,
            "too_soon" => Outcome::TooSoon { remaining: detail },
            "stale" => Outcome::Stale,
            "expired" => Outcome::Expired,
            "first_pass" => Outcome::FirstPass { delayed: detail },
            "passed" => Outcome::Passed,
            other => return Err(StoreError::Invalid(format!("greygate_decide returned outcome {other:?}"))),
        };
        let entry = Entry {
            key: req.triplet.clone(),
            first_seen: row.get(2),
            last_seen: row.get(3),
            passed_at: row.get(4),
            attempts: row.get::<_, i32>(5) as u32,
            passes: row.get::<_, i32>(6) as u32,
            expires_at: row.get(7),
        };
        Ok(Decision { outcome, entry: Some(entry) })
    }

    async fn peek(&self, req: &DecideRequest) -> Result<Decision, StoreError> {
        let t = &req.triplet;
        let rows = self
            .query(
                &format!("SELECT {ENTRY_COLUMNS} FROM triplets WHERE client = $1 AND sender = $2 AND recipient = $3"),
                &[&t.client, &t.sender, &t.recipient],
            )
            .await?;
        let entry = rows.first().map(|r| entry_from_row(r, 0));
        let client = match &req.auto_whitelist {
            Some(awl) => self
                .query(
                    "SELECT client, passes, last_counted, last_seen, expires_at FROM clients WHERE client = $1",
                    &[&awl.client],
                )
                .await?
                .first()
                .map(|r| client_from_row(r, 0)),
            None => None,
        };
        let step = model::decide(req, client.as_ref(), entry.as_ref());
        Ok(Decision { outcome: step.outcome, entry: step.entry })
    }

    async fn entries(&self, filter: &EntryFilter, limit: Option<usize>) -> Result<Vec<Entry>, StoreError> {
        self.scan_entries(filter, limit.unwrap_or(usize::MAX)).await
    }

    async fn delete_entries(&self, filter: &EntryFilter) -> Result<u64, StoreError> {
        let victims = self.scan_entries(filter, usize::MAX).await?;
        let mut deleted = 0;
        for chunk in victims.chunks(CHUNK) {
            let (c, s, r): (Vec<&str>, Vec<&str>, Vec<&str>) =
                multiunzip(chunk.iter().map(|e| (&*e.key.client, &*e.key.sender, &*e.key.recipient)));
            let rows = self
                .query(
                    "WITH d AS (DELETE FROM triplets t USING unnest($1::text[], $2::text[], $3::text[]) AS v(c, s, r)
                     WHERE t.client = v.c AND t.sender = v.s AND t.recipient = v.r RETURNING 1)
                     SELECT count(*) FROM d",
                    &[&c, &s, &r],
                )
                .await?;
            deleted += rows[0].get::<_, i64>(0) as u64;
        }
        Ok(deleted)
    }

    async fn clients(&self, filter: &ClientFilter, limit: Option<usize>) -> Result<Vec<ClientRecord>, StoreError> {
        self.scan_clients(filter, limit.unwrap_or(usize::MAX)).await
    }

    async fn delete_clients(&self, filter: &ClientFilter) -> Result<u64, StoreError> {
        let victims = self.scan_clients(filter, usize::MAX).await?;
        let mut deleted = 0;
        for chunk in victims.chunks(CHUNK) {
            let names: Vec<&str> = chunk.iter().map(|c| c.client.as_str()).collect();
            let rows = self
                .query(
                    "WITH d AS (DELETE FROM clients WHERE client = ANY($1::text[]) RETURNING 1) SELECT count(*) FROM d",
                    &[&names],
                )
                .await?;
            deleted += rows[0].get::<_, i64>(0) as u64;
        }
        Ok(deleted)
    }

    async fn put_records(&self, entries: &[Entry], clients: &[ClientRecord]) -> Result<(), StoreError> {
        // One upsert may not touch a row twice: the last record of a key wins.
        let entries: BTreeMap<&TripletKey, &Entry> = entries.iter().map(|e| (&e.key, e)).collect();
        let entries: Vec<&Entry> = entries.into_values().collect();
        for chunk in entries.chunks(CHUNK) {
            let (c, s, r): (Vec<&str>, Vec<&str>, Vec<&str>) =
                multiunzip(chunk.iter().map(|e| (&*e.key.client, &*e.key.sender, &*e.key.recipient)));
            let first: Vec<i64> = chunk.iter().map(|e| e.first_seen).collect();
            let last: Vec<i64> = chunk.iter().map(|e| e.last_seen).collect();
            let passed: Vec<Option<i64>> = chunk.iter().map(|e| e.passed_at).collect();
            let attempts: Vec<i32> = chunk.iter().map(|e| to_i32(e.attempts)).collect();
            let passes: Vec<i32> = chunk.iter().map(|e| to_i32(e.passes)).collect();
            let expires: Vec<i64> = chunk.iter().map(|e| e.expires_at).collect();
            self.query(
                "INSERT INTO triplets (client, sender, recipient, first_seen, last_seen, passed_at, attempts, passes,
                                       expires_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[],
                                      $7::int4[], $8::int4[], $9::int8[])
                 ON CONFLICT (client, sender, recipient) DO UPDATE SET first_seen = excluded.first_seen,
                     last_seen = excluded.last_seen, passed_at = excluded.passed_at, attempts = excluded.attempts,
                     passes = excluded.passes, expires_at = excluded.expires_at",
                &[&c, &s, &r, &first, &last, &passed, &attempts, &passes, &expires],
            )
            .await?;
        }
        let clients: BTreeMap<&str, &ClientRecord> = clients.iter().map(|c| (c.client.as_str(), c)).collect();
        let clients: Vec<&ClientRecord> = clients.into_values().collect();
        for chunk in clients.chunks(CHUNK) {
            let names: Vec<&str> = chunk.iter().map(|c| c.client.as_str()).collect();
            let passes: Vec<i32> = chunk.iter().map(|c| to_i32(c.passes)).collect();
            let counted: Vec<i64> = chunk.iter().map(|c| c.last_counted).collect();
            let seen: Vec<i64> = chunk.iter().map(|c| c.last_seen).collect();
            let expires: Vec<i64> = chunk.iter().map(|c| c.expires_at).collect();
            self.query(
                "INSERT INTO clients (client, passes, last_counted, last_seen, expires_at)
                 SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[], $5::int8[])
                 ON CONFLICT (client) DO UPDATE SET passes = excluded.passes, last_counted = excluded.last_counted,
                     last_seen = excluded.last_seen, expires_at = excluded.expires_at",
                &[&names, &passes, &counted, &seen, &expires],
            )
            .await?;
        }
        Ok(())
    }

    async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError> {
        let rows = self.query("SELECT kind, target, value, comment, added_at FROM lists", &[]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (kind, target): (&str, &str) = (row.get(0), row.get(1));
            let (Some(kind), Some(target)) = (ListKind::parse(kind), ListTarget::parse(target)) else {
                return Err(StoreError::Invalid(format!("unknown list {kind}/{target}")));
            };
            out.push(ListEntry { kind, target, value: row.get(2), comment: row.get(3), added_at: row.get(4) });
        }
        // The trait's order is the enums' order, not their names'.
        out.sort_by(|a, b| (a.kind, a.target, &a.value).cmp(&(b.kind, b.target, &b.value)));
        Ok(out)
    }

    async fn add_list_entry(&self, entry: &ListEntry) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "WITH up AS (
                     INSERT INTO lists (kind, target, value, comment, added_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (kind, target, value) DO UPDATE SET comment = excluded.comment
                     RETURNING (xmax = 0) AS inserted),
                 v AS (UPDATE meta SET value = value + 1 WHERE key = 'lists_version')
                 SELECT inserted FROM up",
                &[&entry.kind.as_str(), &entry.target.as_str(), &entry.value, &entry.comment, &entry.added_at],
            )
            .await?;
        Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
    }

    async fn remove_list_entry(&self, kind: ListKind, target: ListTarget, value: &str) -> Result<bool, StoreError> {
        let rows = self
            .query(
                "WITH d AS (DELETE FROM lists WHERE kind = $1 AND target = $2 AND value = $3 RETURNING 1),
                 v AS (UPDATE meta SET value = value + 1 WHERE key = 'lists_version' AND EXISTS (SELECT 1 FROM d))
                 SELECT count(*) FROM d",
                &[&kind.as_str(), &target.as_str(), &value],
            )
            .await?;
        Ok(rows[0].get::<_, i64>(0) > 0)
    }

    async fn lists_version(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT value FROM meta WHERE key = 'lists_version'", &[]).await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn add_counters(&self, deltas: &[(String, u64)]) -> Result<(), StoreError> {
        let mut summed: BTreeMap<&str, i64> = BTreeMap::new();
        for (name, delta) in deltas {
            *summed.entry(name).or_default() += *delta as i64;
        }
        if summed.is_empty() {
            return Ok(());
        }
        let (names, values): (Vec<&str>, Vec<i64>) = summed.into_iter().unzip();
        self.query(
            "INSERT INTO counters (name, value) SELECT * FROM unnest($1::text[], $2::int8[])
             ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
            &[&names, &values],
        )
        .await?;
        Ok(())
    }

    async fn stats(&self, now: Timestamp, awl_after: u32) -> Result<Stats, StoreError> {
        let after = to_i32(awl_after);
        let row = self
            .query(
                "SELECT
                   (SELECT count(*) FROM triplets WHERE expires_at >= $1 AND passed_at IS NULL),
                   (SELECT count(*) FROM triplets WHERE expires_at >= $1 AND passed_at IS NOT NULL),
                   (SELECT count(*) FROM triplets WHERE expires_at < $1)
                     + (SELECT count(*) FROM clients WHERE expires_at < $1),
                   (SELECT count(*) FROM clients WHERE expires_at >= $1 AND NOT ($2 > 0 AND passes >= $2)),
                   (SELECT count(*) FROM clients WHERE expires_at >= $1 AND $2 > 0 AND passes >= $2)",
                &[&now, &after],
            )
            .await?;
        let n = |i: usize| row[0].get::<_, i64>(i) as u64;
        let mut stats = Stats {
            pending: n(0),
            passed: n(1),
            expired: n(2),
            clients_counting: n(3),
            clients_whitelisted: n(4),
            ..Stats::default()
        };
        for row in self.query("SELECT kind || '/' || target, count(*) FROM lists GROUP BY kind, target", &[]).await? {
            stats.lists.insert(row.get(0), row.get::<_, i64>(1) as u64);
        }
        for row in self.query("SELECT name, value FROM counters", &[]).await? {
            stats.counters.insert(row.get(0), row.get::<_, i64>(1) as u64);
        }
        Ok(stats)
    }

    async fn expire(&self, now: Timestamp, batch: usize) -> Result<u64, StoreError> {
        self.delete_in_batches(Some(now), batch).await
    }

    async fn clear(&self, batch: usize) -> Result<u64, StoreError> {
        self.delete_in_batches(None, batch).await
    }

    async fn record_count(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT (SELECT count(*) FROM triplets) + (SELECT count(*) FROM clients)", &[]).await?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        self.pool.close();
        Ok(())
    }
}

/// Split triples into three vectors.
fn multiunzip<'a>(
    items: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (x, y, z) in items {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}

#[cfg(test)]
mod tests;
