use super::*;
use crate::Outcome;
use crate::test_support::request;

#[tokio::test]
async fn decisions_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new(dir.path().join("sub/dir/greygate.db"));
    {
        let store = SqliteStore::open(&options).unwrap();
        assert_eq!(store.decide(&request("a@x", 0)).await.unwrap().outcome, Outcome::New);
        store.close().await.unwrap();
    }
    let store = SqliteStore::open(&options).unwrap();
    assert_eq!(store.decide(&request("a@x", 400)).await.unwrap().outcome, Outcome::FirstPass { delayed: 400 });
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
    conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY);").unwrap();
    drop(conn);
    let err = SqliteStore::open(&SqliteOptions::new(&path)).err().expect("must refuse");
    assert!(err.to_string().contains("not greygate's"), "{err}");
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greygate.db");
    drop(SqliteStore::open(&SqliteOptions::new(&path)).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION as i64 + 1).unwrap();
    drop(conn);
    let err = SqliteStore::open(&SqliteOptions::new(&path)).err().expect("must refuse");
    assert!(err.to_string().contains("newer than this greygate"), "{err}");
}

#[test]
fn opens_a_fresh_file_in_wal_mode_at_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("greygate.db");
    drop(SqliteStore::open(&SqliteOptions::new(&path)).unwrap());
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(page_size, 2048);
    assert_eq!(mode, "wal");
    assert_eq!(version, SCHEMA_VERSION as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_are_group_committed_and_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&SqliteOptions::new(dir.path().join("g.db"))).unwrap());
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.decide(&request(&format!("s{i}@x"), 0)).await.unwrap().outcome })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Outcome::New);
    }
    assert_eq!(store.record_count().await.unwrap(), 400);
}

fn key(sender: &str) -> crate::TripletKey {
    request(sender, 0).triplet
}

fn count(path: &std::path::Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

/// The server and the admin CLI use one file through two stores: each must
/// see the other's writes, deletions and imports at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new(dir.path().join("g.db"));
    let server = SqliteStore::open(&options).unwrap();
    let cli = SqliteStore::open(&options).unwrap();

    assert_eq!(server.decide(&request("a@x", 0)).await.unwrap().outcome, Outcome::New);
    assert_eq!(cli.peek(&request("a@x", 100)).await.unwrap().outcome, Outcome::TooSoon { remaining: 200 });
    assert_eq!(cli.entries(&EntryFilter::default(), None).await.unwrap().len(), 1);

    // The CLI deletes it: the server treats the next attempt as new.
    let deleted = cli
        .delete_entries(&EntryFilter { sender: Some(crate::Glob::new("a@x")), ..EntryFilter::default() })
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(server.decide(&request("a@x", 400)).await.unwrap().outcome, Outcome::New);

    // The CLI imports a passed entry: the server honours it.
    let passed = Entry {
        key: key("imported@x"),
        first_seen: 0,
        last_seen: 300,
        passed_at: Some(300),
        attempts: 1,
        passes: 1,
        expires_at: 86400,
    };
    cli.put_records(&[passed], &[]).await.unwrap();
    assert_eq!(server.decide(&request("imported@x", 1000)).await.unwrap().outcome, Outcome::Passed);

    cli.close().await.unwrap();
    server.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_by_one_store_keeps_the_answers_of_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let options = SqliteOptions::new(&path);
    let server = SqliteStore::open(&options).unwrap();
    for i in 0..50 {
        server.decide(&request(&format!("s{i}@x"), 0)).await.unwrap();
    }
    // Another process opens the file and closes it: closing compacts the
    // whole log into the snapshot, behind the server's back.
    let other = SqliteStore::open(&options).unwrap();
    other.close().await.unwrap();
    assert_eq!(count(&path, "log"), 0);
    assert_eq!(count(&path, "triplets"), 50);

    // The server's answers are unchanged, and its new writes are seen by
    // yet another process.
    assert_eq!(server.decide(&request("s7@x", 300)).await.unwrap().outcome, Outcome::FirstPass { delayed: 300 });
    let third = SqliteStore::open(&options).unwrap();
    assert_eq!(third.peek(&request("s7@x", 400)).await.unwrap().outcome, Outcome::Passed);
    assert_eq!(third.peek(&request("s8@x", 400)).await.unwrap().outcome, Outcome::FirstPass { delayed: 400 });
    assert_eq!(third.record_count().await.unwrap(), 50);
    third.close().await.unwrap();
    server.close().await.unwrap();
}

#[tokio::test]
async fn close_compacts_the_log_and_reopening_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let options = SqliteOptions::new(&path);
    let store = SqliteStore::open(&options).unwrap();
    for i in 0..20 {
        store.decide(&request(&format!("s{i}@x"), 0)).await.unwrap();
    }
    store.decide(&request("s3@x", 500)).await.unwrap();
    let before = store.entries(&EntryFilter::default(), None).await.unwrap();
    assert!(count(&path, "log") > 0, "decisions go to the log first");
    store.close().await.unwrap();
    assert_eq!((count(&path, "log"), count(&path, "triplets")), (0, 20));
    let store = SqliteStore::open(&options).unwrap();
    assert_eq!(store.entries(&EntryFilter::default(), None).await.unwrap(), before);
}

#[tokio::test]
async fn expire_covers_logged_and_compacted_records() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new(dir.path().join("g.db"));
    let store = SqliteStore::open(&options).unwrap();
    // Compacted (closed and reopened), then more in the log.
    for i in 0..5 {
        store.decide(&request(&format!("old{i}@x"), 0)).await.unwrap();
    }
    store.close().await.unwrap();
    let store = SqliteStore::open(&options).unwrap();
    for i in 0..5 {
        store.decide(&request(&format!("logged{i}@x"), 10)).await.unwrap();
    }
    store.decide(&request("fresh@x", 100_000)).await.unwrap();
    let mut total = 0;
    loop {
        let n = store.expire(100_000, 3).await.unwrap();
        assert!(n <= 3);
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 10);
    let left = store.entries(&EntryFilter::default(), None).await.unwrap();
    assert_eq!(left.iter().map(|e| e.key.sender.as_str()).collect::<Vec<_>>(), ["fresh@x"]);
}

/// After one store compacts the whole log away, a store opened later must
/// not reuse sequence numbers, or stores that were already open would
/// never see its writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_numbers_survive_a_full_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new(dir.path().join("g.db"));
    let server = SqliteStore::open(&options).unwrap();
    for i in 0..10 {
        server.decide(&request(&format!("s{i}@x"), 0)).await.unwrap();
    }
    SqliteStore::open(&options).unwrap().close().await.unwrap();
    let late = SqliteStore::open(&options).unwrap();
    late.put_records(
        &[Entry {
            key: key("late@x"),
            first_seen: 0,
            last_seen: 300,
            passed_at: Some(300),
            attempts: 1,
            passes: 1,
            expires_at: 86400,
        }],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(server.decide(&request("late@x", 400)).await.unwrap().outcome, Outcome::Passed);
    late.close().await.unwrap();
    server.close().await.unwrap();
}

/// A store that compacts log rows another store has not read yet must not
/// leave that store answering from a stale memory: here the deletion would
/// be compacted away before the server ever saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_of_unseen_rows_does_not_leave_stale_state() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new(dir.path().join("g.db"));
    let server = SqliteStore::open(&options).unwrap();
    assert_eq!(server.decide(&request("a@x", 0)).await.unwrap().outcome, Outcome::New);
    let other = SqliteStore::open(&options).unwrap();
    other
        .delete_entries(&EntryFilter { sender: Some(crate::Glob::new("a@x")), ..EntryFilter::default() })
        .await
        .unwrap();
    // Closing compacts the tombstone into the snapshot and deletes it from
    // the log, before the server looked.
    other.close().await.unwrap();
    assert_eq!(server.decide(&request("a@x", 100)).await.unwrap().outcome, Outcome::New);
    server.close().await.unwrap();
}

/// A passed triplet seen again is answered from the shortcut; our own
/// writes are seen at once, another process's within `shortcut::FRESH`.
#[tokio::test]
async fn known_senders_take_the_shortcut_and_it_stays_coherent() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new(dir.path().join("greygate.db"));
    let store = SqliteStore::open(&options).unwrap();
    store.decide(&request("a@x", 0)).await.unwrap();
    store.decide(&request("a@x", 400)).await.unwrap();
    // Read by the writer (a decision that writes nothing), then remembered.
    assert_eq!(store.decide(&request("a@x", 401)).await.unwrap().outcome, Outcome::Passed);
    let shortcut = store.shortcut.decide(&request("a@x", 402)).expect("remembered");
    assert_eq!(shortcut.outcome, Outcome::Passed);
    assert_eq!(store.decide(&request("a@x", 402)).await.unwrap(), shortcut);

    // Our own delete: gone at once.
    store
        .delete_entries(&EntryFilter { sender: Some(crate::Glob::new("a@x")), ..EntryFilter::default() })
        .await
        .unwrap();
    assert!(store.shortcut.decide(&request("a@x", 403)).is_none());
    assert_eq!(store.decide(&request("a@x", 403)).await.unwrap().outcome, Outcome::New);

    // Pass it again, then another process (the admin CLI) deletes it.
    store.decide(&request("a@x", 800)).await.unwrap();
    store.decide(&request("a@x", 801)).await.unwrap();
    assert!(store.shortcut.decide(&request("a@x", 802)).is_some());
    let admin = SqliteStore::open(&SqliteOptions { compact_on_close: false, ..options.clone() }).unwrap();
    admin.delete_entries(&EntryFilter::default()).await.unwrap();
    admin.close().await.unwrap();
    tokio::time::sleep(shortcut::FRESH + std::time::Duration::from_millis(100)).await;
    assert!(store.shortcut.decide(&request("a@x", 803)).is_none(), "stale: must ask the writer");
    assert_eq!(store.decide(&request("a@x", 803)).await.unwrap().outcome, Outcome::New);

    store.close().await.unwrap();
    assert!(store.shortcut.decide(&request("a@x", 804)).is_none(), "closed");
}
