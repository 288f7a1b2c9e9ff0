use super::*;
use crate::{DecideRequest, Outcome, Timers, TripletKey};

fn request(sender: &str, now: i64) -> DecideRequest {
    DecideRequest {
        triplet: TripletKey {
            client: "192.0.2.0/24".into(),
            sender: sender.into(),
            recipient: "r@y".into(),
        },
        timers: Timers {
            delay: 300,
            retry_window: 86400,
            pass_lifetime: 86400,
        },
        auto_whitelist: None,
        now,
    }
}

#[tokio::test]
async fn decisions_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new(dir.path().join("sub/dir/greygate.db"));
    {
        let store = SqliteStore::open(&options).unwrap();
        assert_eq!(
            store.decide(&request("a@x", 0)).await.unwrap().outcome,
            Outcome::New
        );
        store.close().await.unwrap();
    }
    let store = SqliteStore::open(&options).unwrap();
    assert_eq!(
        store.decide(&request("a@x", 400)).await.unwrap().outcome,
        Outcome::FirstPass { delayed: 400 }
    );
}

#[tokio::test]
async fn dropping_without_close_keeps_committed_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new(dir.path().join("greygate.db"));
    {
        let store = SqliteStore::open(&options).unwrap();
        store.decide(&request("a@x", 0)).await.unwrap();
    }
    let store = SqliteStore::open(&options).unwrap();
    assert_eq!(store.record_count().await.unwrap(), 1);
}

#[test]
fn refuses_a_database_that_is_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY);")
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&SqliteOptions::new(&path))
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("not greygate's"), "{err}");
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greygate.db");
    drop(SqliteStore::open(&SqliteOptions::new(&path)).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION as i64 + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&SqliteOptions::new(&path))
        .err()
        .expect("must refuse");
    assert!(
        err.to_string().contains("newer than this greygate"),
        "{err}"
    );
}

#[test]
fn opens_a_fresh_file_in_wal_mode_at_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greygate.db");
    drop(SqliteStore::open(&SqliteOptions::new(&path)).unwrap());
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(version, SCHEMA_VERSION as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_are_group_committed_and_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        SqliteStore::open(&SqliteOptions::new(dir.path().join("g.db"))).unwrap(),
    );
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .decide(&request(&format!("s{i}@x"), 0))
                    .await
                    .unwrap()
                    .outcome
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Outcome::New);
    }
    assert_eq!(store.record_count().await.unwrap(), 400);
}
