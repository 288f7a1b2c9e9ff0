use greygate_store::memory::MemoryStore;

use super::*;

const NOW: Timestamp = 1_800_000_000;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

fn file(path: PathBuf) -> SaveFile {
    SaveFile {
        path,
        interval: Duration::from_secs(600),
        every_datagram: false,
        keying: NetworkKeying::EXACT,
        timers: Timers { delay: 300, retry_window: 12 * HOUR, pass_lifetime: 7 * DAY },
    }
}

#[tokio::test]
async fn import_skips_expired_and_strange_entries_and_keys_as_the_engine_does() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(dir.path().join("grey.save"));
    let text = format!(
        "I {} 192.0.2.1\nI {} 192.0.2.2\nG {} 192.0.2.3 alice@example.org bob@example.net\nG {} 192.0.2.3 . list-x=y@example.net\nG {} 192.0.2.4 old@x y@z\nI 12 host.example\nrubbish\n",
        NOW - DAY,
        NOW - 8 * DAY,
        NOW - HOUR,
        NOW - 2 * HOUR,
        NOW - 13 * HOUR,
    );
    std::fs::write(&f.path, text).unwrap();
    let store = MemoryStore::new();
    let got = f.import(&store, NOW).await.unwrap();
    assert_eq!(got, Imported { addresses: 1, triplets: 2, skipped: 4 });
    let clients = store.clients(&ClientFilter::default(), None).await.unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!((clients[0].client.as_str(), clients[0].passes, clients[0].last_seen), ("192.0.2.1", 1, NOW - DAY));
    let keys: Vec<String> =
        store.entries(&EntryFilter::default(), None).await.unwrap().iter().map(|e| e.key.to_string()).collect();
    assert_eq!(keys, ["192.0.2.3/<>/list-x=y@example.net", "192.0.2.3/alice@example.org/bob@example.net"]);

    // Written back in greydaemon's format, the same records.
    f.save(&store, NOW).await.unwrap();
    let mut lines: Vec<String> = std::fs::read_to_string(&f.path).unwrap().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("G {} 192.0.2.3 . list-x=y@example.net", NOW - 2 * HOUR),
            format!("G {} 192.0.2.3 alice@example.org bob@example.net", NOW - HOUR),
            format!("I {} 192.0.2.1", NOW - DAY),
        ]
    );
    assert!(!dir.path().join("grey.save.new").exists());
}

#[tokio::test]
async fn import_never_overwrites_what_the_store_knows() {
    let dir = tempfile::tempdir().unwrap();
    let f = file(dir.path().join("grey.save"));
    let store = MemoryStore::new();
    let passed = Entry {
        key: TripletKey { client: "192.0.2.3".into(), sender: "a@x".into(), recipient: "b@y".into() },
        first_seen: NOW - HOUR,
        last_seen: NOW - 10,
        passed_at: Some(NOW - 10),
        attempts: 1,
        passes: 1,
        expires_at: NOW + 7 * DAY,
    };
    store.put_records(std::slice::from_ref(&passed), &[]).await.unwrap();
    std::fs::write(&f.path, format!("G {} 192.0.2.3 a@x b@y\n", NOW - HOUR)).unwrap();
    assert_eq!(f.import(&store, NOW).await.unwrap(), Imported { addresses: 0, triplets: 0, skipped: 1 });
    assert_eq!(store.entries(&EntryFilter::default(), None).await.unwrap(), [passed]);
    // A missing file imports nothing.
    let none = file(dir.path().join("missing"));
    assert_eq!(none.import(&store, NOW).await.unwrap(), Imported::default());
}
