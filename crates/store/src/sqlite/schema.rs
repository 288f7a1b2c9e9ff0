//! The SQLite schema and its migrations.
//!
//! Two kinds of tables hold greylisting state (see the parent module):
//! the *snapshot* tables `triplets` and `clients`, keyed by their natural
//! keys, and the append-only `log`, where every change is written first,
//! one row per transaction. A key's state is its latest log record if it
//! has one, else its snapshot row.
//!
//! `PRAGMA user_version` holds the number of migrations applied, and
//! `PRAGMA application_id` marks the file as greygate's so that pointing the
//! config at some other database fails loudly instead of adding tables to it.
//! Migrations only ever append to [`MIGRATIONS`]; a released one never
//! changes.

use rusqlite::Connection;

use crate::StoreError;

/// "GREY" in ASCII.
pub const APPLICATION_ID: i32 = 0x4752_4559;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE triplets (
        client     TEXT    NOT NULL,
        sender     TEXT    NOT NULL,
        recipient  TEXT    NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen  INTEGER NOT NULL,
        passed_at  INTEGER,
        attempts   INTEGER NOT NULL,
        passes     INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (client, sender, recipient)
    ) WITHOUT ROWID;
    CREATE INDEX triplets_expires_at ON triplets (expires_at);

    CREATE TABLE clients (
        client       TEXT    NOT NULL PRIMARY KEY,
        passes       INTEGER NOT NULL,
        last_counted INTEGER NOT NULL,
        last_seen    INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX clients_expires_at ON clients (expires_at);

    -- Append-only: one row per transaction, holding every change it made
    -- (see state.rs for the encoding). `seq` is never reused: the next one
    -- is one more than the largest here or in meta.log_seq (saved by
    -- compaction).
    CREATE TABLE log (
        seq  INTEGER PRIMARY KEY,
        data BLOB    NOT NULL
    );

    CREATE TABLE lists (
        kind     TEXT    NOT NULL,
        target   TEXT    NOT NULL,
        value    TEXT    NOT NULL,
        comment  TEXT    NOT NULL DEFAULT '',
        added_at INTEGER NOT NULL,
        PRIMARY KEY (kind, target, value)
    ) WITHOUT ROWID;

    CREATE TABLE counters (
        name  TEXT    NOT NULL PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE meta (
        key   TEXT    NOT NULL PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('lists_version', 0);
    -- The largest log sequence number compacted away.
    INSERT INTO meta (key, value) VALUES ('log_seq', 0);
    ",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: usize = MIGRATIONS.len();

/// Bring the database to [`CURRENT_VERSION`], refusing files that are not
/// ours or that a newer greygate has already migrated.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(super::error)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(super::error)?;
    if app_id != APPLICATION_ID {
        let tables: i64 =
            conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0)).map_err(super::error)?;
        if app_id != 0 || tables > 0 {
            return Err(StoreError::Invalid(
                "the file is an SQLite database, but not greygate's; refusing to touch it".into(),
            ));
        }
    }
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > CURRENT_VERSION {
        return Err(StoreError::Invalid(format!(
            "schema version {version} is newer than this greygate understands ({CURRENT_VERSION}); upgrade greygate"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(super::error)?;
        tx.execute_batch(sql).map_err(super::error)?;
        tx.pragma_update(None, "user_version", index as i64 + 1).map_err(super::error)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(super::error)?;
        tx.commit().map_err(super::error)?;
        tracing::info!(version = index + 1, "sqlite schema migrated");
    }
    Ok(())
}
