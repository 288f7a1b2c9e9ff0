//! The PostgreSQL schema, its versioned migrations, and the decision
//! function.
//!
//! Everything lives in one schema of its own (`greygate` by default), so
//! the tables never mix with an application's. `greygate_migrations`
//! records which migrations ran; they only ever append to [`MIGRATIONS`],
//! and a database migrated by a newer greygate is refused. Several
//! gateways starting at once migrate one at a time, under an advisory
//! lock.
//!
//! Keys are `COLLATE "C"` so that PostgreSQL orders them byte by byte,
//! the order the Store trait promises, whatever the database's locale.
//!
//! `greygate_decide` is [`crate::model::decide`] written in PL/pgSQL, so a
//! decision is one round trip and one atomic step: the triplet row is
//! locked (`FOR UPDATE`, or created with `ON CONFLICT DO NOTHING`, which
//! waits for a concurrent creator), and a client's pass is counted with
//! one conditional upsert. The conformance case `decisions_match_the_model`
//! checks it against the Rust model.

use deadpool_postgres::{Client, Transaction};

use super::pg_error;
use crate::StoreError;

/// Each entry moves the schema from version `index` to `index + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE triplets (
        client     text COLLATE "C" NOT NULL,
        sender     text COLLATE "C" NOT NULL,
        recipient  text COLLATE "C" NOT NULL,
        first_seen bigint NOT NULL,
        last_seen  bigint NOT NULL,
        passed_at  bigint,
        attempts   integer NOT NULL,
        passes     integer NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (client, sender, recipient)
    );
    CREATE INDEX triplets_expires_at ON triplets (expires_at);

    CREATE TABLE clients (
        client       text COLLATE "C" NOT NULL PRIMARY KEY,
        passes       integer NOT NULL,
        last_counted bigint NOT NULL,
        last_seen    bigint NOT NULL,
        expires_at   bigint NOT NULL
    );
    CREATE INDEX clients_expires_at ON clients (expires_at);

    CREATE TABLE lists (
        kind     text COLLATE "C" NOT NULL,
        target   text COLLATE "C" NOT NULL,
        value    text COLLATE "C" NOT NULL,
        comment  text NOT NULL,
        added_at bigint NOT NULL,
        PRIMARY KEY (kind, target, value)
    );

    CREATE TABLE counters (
        name  text PRIMARY KEY,
        value bigint NOT NULL
    );

    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value bigint NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('lists_version', 0);

    CREATE FUNCTION greygate_decide(
        p_client text, p_sender text, p_recipient text,
        p_delay bigint, p_window bigint, p_lifetime bigint,
        p_awl_client text, p_awl_after integer, p_awl_lifetime bigint,
        p_now bigint,
        OUT outcome text, OUT detail bigint,
        OUT first_seen bigint, OUT last_seen bigint, OUT passed_at bigint,
        OUT attempts integer, OUT passes integer, OUT expires_at bigint)
    LANGUAGE plpgsql AS $fn$
    #variable_conflict use_column
    DECLARE
        c clients%ROWTYPE;
        t triplets%ROWTYPE;
        age bigint;
    BEGIN
        -- Auto-whitelisted client: the triplet is not consulted.
        IF p_awl_client IS NOT NULL THEN
            SELECT * INTO c FROM clients WHERE client = p_awl_client;
            IF FOUND AND c.passes >= p_awl_after AND p_now - c.last_seen <= p_awl_lifetime THEN
                IF p_now - c.last_seen >= 3600 OR c.last_seen > p_now THEN
                    UPDATE clients SET last_seen = p_now, expires_at = p_now + p_awl_lifetime
                        WHERE client = p_awl_client;
                END IF;
                outcome := 'auto_whitelisted';
                detail := c.passes;
                RETURN;
            END IF;
        END IF;

        -- Lock the triplet row, or create it; a concurrent creator makes
        -- the insert wait and do nothing, and the next round locks its row.
        LOOP
            SELECT * INTO t FROM triplets
                WHERE client = p_client AND sender = p_sender AND recipient = p_recipient FOR UPDATE;
            EXIT WHEN FOUND;
            INSERT INTO triplets AS x VALUES
                (p_client, p_sender, p_recipient, p_now, p_now, NULL, 1, 0, p_now + p_window)
                ON CONFLICT DO NOTHING
                RETURNING x.first_seen, x.last_seen, x.passed_at, x.attempts, x.passes, x.expires_at
                INTO first_seen, last_seen, passed_at, attempts, passes, expires_at;
            IF FOUND THEN
                outcome := 'new';
                RETURN;
            END IF;
        END LOOP;

        IF t.passed_at IS NOT NULL THEN
            IF p_now - t.last_seen > p_lifetime THEN
                outcome := 'expired';
                t.first_seen := p_now; t.last_seen := p_now; t.passed_at := NULL;
                t.attempts := 1; t.passes := 0; t.expires_at := p_now + p_window;
            ELSIF p_now - t.last_seen < 3600 AND t.last_seen <= p_now THEN
                outcome := 'passed';
                first_seen := t.first_seen; last_seen := t.last_seen; passed_at := t.passed_at;
                attempts := t.attempts; passes := t.passes; expires_at := t.expires_at;
                RETURN;
            ELSE
                outcome := 'passed';
                t.last_seen := greatest(p_now, t.last_seen);
                t.passes := t.passes + 1;
                t.expires_at := p_now + p_lifetime;
            END IF;
        ELSE
            -- A first sight in the future means the clock went back.
            t.first_seen := least(t.first_seen, p_now);
            age := p_now - t.first_seen;
            IF age > p_window THEN
                outcome := 'stale';
                t.first_seen := p_now; t.last_seen := p_now; t.passed_at := NULL;
                t.attempts := 1; t.passes := 0; t.expires_at := p_now + p_window;
            ELSIF age < p_delay THEN
                outcome := 'too_soon';
                detail := p_delay - age;
                t.last_seen := p_now;
                t.attempts := t.attempts + 1;
            ELSE
                outcome := 'first_pass';
                detail := age;
                t.last_seen := p_now;
                t.passed_at := p_now;
                t.passes := 1;
                t.expires_at := p_now + p_lifetime;
            END IF;
        END IF;

        UPDATE triplets x SET first_seen = t.first_seen, last_seen = t.last_seen, passed_at = t.passed_at,
                attempts = t.attempts, passes = t.passes, expires_at = t.expires_at
            WHERE x.client = p_client AND x.sender = p_sender AND x.recipient = p_recipient;
        first_seen := t.first_seen; last_seen := t.last_seen; passed_at := t.passed_at;
        attempts := t.attempts; passes := t.passes; expires_at := t.expires_at;

        -- Count the client's pass, at most once an hour; a record past its
        -- lifetime starts over.
        IF outcome = 'first_pass' AND p_awl_client IS NOT NULL THEN
            INSERT INTO clients AS x VALUES (p_awl_client, 1, p_now, p_now, p_now + p_awl_lifetime)
                ON CONFLICT (client) DO UPDATE SET
                    passes = CASE WHEN p_now - x.last_seen > p_awl_lifetime THEN 1 ELSE x.passes + 1 END,
                    last_counted = p_now, last_seen = p_now, expires_at = p_now + p_awl_lifetime
                WHERE p_now - x.last_seen > p_awl_lifetime
                   OR NOT (p_now - x.last_counted < 3600 AND x.last_counted <= p_now);
        END IF;
    END
    $fn$;
    "#,
];

/// Create the schema if needed and apply the migrations it lacks.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    match migrate_in(&tx, schema).await {
        Ok(()) => tx.commit().await.map_err(pg_error),
        Err(e) => {
            // Roll back now rather than when the connection is dropped, so
            // the migration lock is not held a moment longer.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn migrate_in(tx: &Transaction<'_>, schema: &str) -> Result<(), StoreError> {
    let quoted = quote_ident(schema);
    // One migrator at a time, across every gateway sharing the database.
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('greygate-migrate:' || $1, 0))", &[&schema])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted};
         CREATE TABLE IF NOT EXISTS {quoted}.greygate_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(pg_error)?;
    let current: i32 = tx
        .query_one(&format!("SELECT coalesce(max(version), 0) FROM {quoted}.greygate_migrations"), &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if current > known {
        return Err(StoreError::Invalid(format!(
            "PostgreSQL schema {schema} is at version {current}, newer than this greygate ({known}); upgrade greygate"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i32 + 1;
        tx.batch_execute(&format!("SET LOCAL search_path TO {quoted};\n{sql}")).await.map_err(pg_error)?;
        tx.execute(&format!("INSERT INTO {quoted}.greygate_migrations (version) VALUES ($1)"), &[&version])
            .await
            .map_err(pg_error)?;
        tracing::info!(schema, version, "PostgreSQL schema migrated");
    }
    Ok(())
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
