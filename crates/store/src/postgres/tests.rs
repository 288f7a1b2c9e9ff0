//! The PostgreSQL backend against the real server on 127.0.0.1:5432 (trust
//! auth, database `test`). Every test works in a schema of its own, dropped
//! afterwards, so parallel runs never see each other's rows.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::Outcome;
use crate::test_support::request;

pub const URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// A schema that is dropped (with everything in it) when this is dropped.
pub struct TempSchema {
    pub name: String,
}

impl TempSchema {
    pub fn new() -> TempSchema {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("gg_test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        TempSchema { name }
    }

    pub fn options(&self) -> PostgresOptions {
        PostgresOptions { schema: self.name.clone(), pool_size: 4, ..PostgresOptions::new(URL) }
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        // Dropped inside the test's runtime, which cannot block: use a
        // thread with a runtime of its own.
        let sql =
            format!("SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {} CASCADE", schema::quote_ident(&self.name));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(URL, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.batch_execute(&sql).await.unwrap();
            });
        })
        .join();
    }
}

pub async fn make() -> (PostgresStore, TempSchema) {
    let schema = TempSchema::new();
    let store = PostgresStore::open(&schema.options()).await.expect("open the PostgreSQL store");
    (store, schema)
}

mod conformance {
    crate::conformance_suite!(super::make());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_state_and_migrate_once() {
    let schema = TempSchema::new();
    // Two gateways starting at once: one migrates, the other waits.
    let options = schema.options();
    let (a, b) = tokio::join!(PostgresStore::open(&options), PostgresStore::open(&options));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.decide(&request("x@y", 0)).await.unwrap().outcome, Outcome::New);
    assert_eq!(b.decide(&request("x@y", 400)).await.unwrap().outcome, Outcome::FirstPass { delayed: 400 });
    assert_eq!(a.decide(&request("x@y", 500)).await.unwrap().outcome, Outcome::Passed);
    // Reopening finds the schema current and migrates nothing.
    let c = PostgresStore::open(&schema.options()).await.unwrap();
    let versions = c.query("SELECT count(*) FROM greygate_migrations", &[]).await.unwrap();
    assert_eq!(versions[0].get::<_, i64>(0), MIGRATIONS.len() as i64);
    for s in [a, b, c] {
        s.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_newer_schema_and_bad_names() {
    let schema = TempSchema::new();
    let store = PostgresStore::open(&schema.options()).await.unwrap();
    store.query("INSERT INTO greygate_migrations (version) VALUES (999)", &[]).await.unwrap();
    store.close().await.unwrap();
    let err = PostgresStore::open(&schema.options()).await.err().expect("must refuse");
    assert!(err.to_string().contains("newer than this greygate"), "{err}");

    let bad = PostgresOptions { schema: "x; DROP TABLE y".into(), ..PostgresOptions::new(URL) };
    let err = PostgresStore::open(&bad).await.err().expect("must refuse");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_invalid() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..PostgresOptions::new(format!("host=127.0.0.1 port={port} user=postgres dbname=test"))
    };
    let err = PostgresStore::open(&options).await.err().expect("nothing listens there");
    assert!(err.is_transient(), "{err}");
}
