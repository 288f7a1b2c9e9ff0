//! The behaviour every backend must show, as one suite.
//!
//! Each case is a public async function taking a fresh, empty store. A
//! backend's test file runs them all with [`conformance_suite!`]:
//!
//! ```ignore
//! async fn make() -> (MyStore, TempDir) { ... }
//! greygate_store::conformance_suite!(make());
//! ```
//!
//! The cases use a manual clock (`now` values chosen by the test), never
//! the real one, and never sleep.

use std::sync::Arc;

use crate::filter::ClientMatch;
use crate::{
    AutoWhitelist, ClientFilter, ClientRecord, DecideRequest, Entry, EntryFilter, EntryState, Glob, ListEntry,
    ListKind, ListTarget, Outcome, Store, Timers, TripletKey,
};

/// Generate one `#[tokio::test]` per conformance case. `$make` is an
/// expression evaluating to a future of `(store, guard)`; the guard (a temp
/// directory, a server handle) lives as long as the test.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            greylisting_round, retry_after_window_starts_over, passed_triplet_expires,
            timers_come_with_each_request, auto_whitelist_after_counted_passes, peek_changes_nothing,
            first_sight_is_atomic_under_concurrency, entries_filter_and_delete, clients_list_and_delete,
            put_records_round_trip, lists_add_remove_and_version, counters_and_stats,
            expire_removes_only_expired_in_batches, clear_removes_records_keeps_lists, decisions_match_the_model,
            close_stops_the_store
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}

const TIMERS: Timers = Timers { delay: 300, retry_window: 2 * 86400, pass_lifetime: 36 * 86400 };

fn key(client: &str, sender: &str, recipient: &str) -> TripletKey {
    TripletKey { client: client.into(), sender: sender.into(), recipient: recipient.into() }
}

fn req(k: &TripletKey, now: i64) -> DecideRequest {
    DecideRequest { triplet: k.clone(), timers: TIMERS, auto_whitelist: None, now }
}

async fn outcome(store: &dyn Store, r: &DecideRequest) -> Outcome {
    store.decide(r).await.expect("decide").outcome
}

pub async fn greylisting_round(store: &dyn Store) {
    let k = key("192.0.2.0/24", "alice@example.org", "bob@example.net");
    assert_eq!(outcome(store, &req(&k, 1000)).await, Outcome::New);
    assert_eq!(outcome(store, &req(&k, 1100)).await, Outcome::TooSoon { remaining: 200 });
    let d = store.decide(&req(&k, 1400)).await.unwrap();
    assert_eq!(d.outcome, Outcome::FirstPass { delayed: 400 });
    let e = d.entry.expect("entry after a pass");
    assert_eq!((e.first_seen, e.last_seen, e.passed_at, e.attempts, e.passes), (1000, 1400, Some(1400), 2, 1));
    assert_eq!(outcome(store, &req(&k, 5000)).await, Outcome::Passed);
    // Stored state matches what decide returned.
    let stored = store.entries(&EntryFilter::default(), None).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].last_seen, stored[0].passes), (5000, 2));
    assert_eq!(stored[0].expires_at, 5000 + TIMERS.pass_lifetime);
}

pub async fn retry_after_window_starts_over(store: &dyn Store) {
    let k = key("198.51.100.0/24", "a@x", "b@y");
    assert_eq!(outcome(store, &req(&k, 0)).await, Outcome::New);
    let late = TIMERS.retry_window + 1;
    assert_eq!(outcome(store, &req(&k, late)).await, Outcome::Stale);
    assert_eq!(outcome(store, &req(&k, late + 299)).await, Outcome::TooSoon { remaining: 1 });
    assert_eq!(outcome(store, &req(&k, late + 300)).await, Outcome::FirstPass { delayed: 300 });
}

pub async fn passed_triplet_expires(store: &dyn Store) {
    let k = key("2001:db8::/64", "<>", "b@y");
    store.decide(&req(&k, 0)).await.unwrap();
    assert_eq!(outcome(store, &req(&k, 300)).await, Outcome::FirstPass { delayed: 300 });
    let later = 300 + TIMERS.pass_lifetime;
    assert_eq!(outcome(store, &req(&k, later)).await, Outcome::Passed, "refreshed on use");
    assert_eq!(outcome(store, &req(&k, later + TIMERS.pass_lifetime + 1)).await, Outcome::Expired);
}

pub async fn timers_come_with_each_request(store: &dyn Store) {
    let k = key("192.0.2.0/24", "a@x", "b@y");
    store.decide(&req(&k, 0)).await.unwrap();
    let mut quick = req(&k, 60);
    quick.timers.delay = 60;
    assert_eq!(outcome(store, &quick).await, Outcome::FirstPass { delayed: 60 });
}

pub async fn auto_whitelist_after_counted_passes(store: &dyn Store) {
    let awl = AutoWhitelist { client: "192.0.2.10".into(), after: 2, lifetime: 36 * 86400 };
    let with_awl = |k: &TripletKey, now| DecideRequest { auto_whitelist: Some(awl.clone()), ..req(k, now) };
    let hour = 3600;
    for (i, start) in [0, hour].into_iter().enumerate() {
        let k = key("192.0.2.0/24", &format!("s{i}@x"), "r@y");
        assert_eq!(outcome(store, &with_awl(&k, start)).await, Outcome::New);
        assert_eq!(outcome(store, &with_awl(&k, start + 300)).await, Outcome::FirstPass { delayed: 300 });
    }
    let clients = store.clients(&ClientFilter::default(), None).await.unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!((clients[0].client.as_str(), clients[0].passes), ("192.0.2.10", 2));
    let fresh = key("192.0.2.0/24", "never-seen@x", "r@y");
    let d = store.decide(&with_awl(&fresh, hour + 600)).await.unwrap();
    assert_eq!(d.outcome, Outcome::AutoWhitelisted { passes: 2 });
    assert_eq!(d.entry, None);
    assert!(
        store
            .entries(&EntryFilter { sender: Some(Glob::new("never-seen@x")), ..EntryFilter::default() }, None)
            .await
            .unwrap()
            .is_empty(),
        "a whitelisted client leaves no triplet behind"
    );
    // Without auto-whitelisting in the request, the record is ignored.
    assert_eq!(outcome(store, &req(&fresh, hour + 700)).await, Outcome::New);
}

pub async fn peek_changes_nothing(store: &dyn Store) {
    let k = key("192.0.2.0/24", "a@x", "b@y");
    assert_eq!(store.peek(&req(&k, 0)).await.unwrap().outcome, Outcome::New);
    assert_eq!(store.peek(&req(&k, 0)).await.unwrap().outcome, Outcome::New);
    assert!(store.entries(&EntryFilter::default(), None).await.unwrap().is_empty());
    store.decide(&req(&k, 0)).await.unwrap();
    assert_eq!(store.peek(&req(&k, 400)).await.unwrap().outcome, Outcome::FirstPass { delayed: 400 });
    assert_eq!(store.peek(&req(&k, 400)).await.unwrap().outcome, Outcome::FirstPass { delayed: 400 });
}

pub async fn first_sight_is_atomic_under_concurrency(store: &dyn Store) {
    // All racers are polled concurrently on this task.
    let k = Arc::new(key("192.0.2.0/24", "race@x", "b@y"));
    let racers = (0..50).map(|_| {
        let k = Arc::clone(&k);
        async move { store.decide(&req(&k, 1000)).await.unwrap().outcome }
    });
    let outcomes = futures::future::join_all(racers).await;
    let new = outcomes.iter().filter(|o| **o == Outcome::New).count();
    assert_eq!(new, 1, "exactly one racer sees the triplet as new: {outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::New | Outcome::TooSoon { remaining: 300 })));
    let stored = store.entries(&EntryFilter::default(), None).await.unwrap();
    assert_eq!(stored[0].attempts, 50);
}

pub async fn entries_filter_and_delete(store: &dyn Store) {
    for (c, s, r) in [
        ("192.0.2.0/24", "a@one.example", "x@local"),
        ("192.0.2.0/24", "b@two.example", "y@local"),
        ("198.51.100.0/24", "a@one.example", "x@local"),
        ("2001:db8:1::/64", "c@one.example", "z@local"),
    ] {
        store.decide(&req(&key(c, s, r), 0)).await.unwrap();
    }
    store.decide(&req(&key("198.51.100.0/24", "a@one.example", "x@local"), 400)).await.unwrap();

    let list = |f: EntryFilter| async move { store.entries(&f, None).await.unwrap() };
    let all = list(EntryFilter::default()).await;
    assert_eq!(all.len(), 4);
    let keys: Vec<_> = all.iter().map(|e| e.key.to_string()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "entries come ordered by key");

    let by_net = list(EntryFilter { client: Some(ClientMatch::parse("192.0.0.0/16")), ..EntryFilter::default() }).await;
    assert_eq!(by_net.len(), 2);
    let by_sender = list(EntryFilter { sender: Some(Glob::new("*@ONE.example")), ..EntryFilter::default() }).await;
    assert_eq!(by_sender.len(), 3);
    let passed = list(EntryFilter { state: Some(EntryState::Passed), ..EntryFilter::default() }).await;
    assert_eq!(passed.len(), 1);
    assert_eq!(passed[0].key.client, "198.51.100.0/24");
    assert_eq!(store.entries(&EntryFilter::default(), Some(2)).await.unwrap().len(), 2);

    let deleted =
        store.delete_entries(&EntryFilter { sender: Some(Glob::new("a@*")), ..EntryFilter::default() }).await.unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<_> = list(EntryFilter::default()).await.into_iter().map(|e| e.key.sender).collect();
    assert_eq!(left, ["b@two.example", "c@one.example"]);
}

fn client_record(client: &str, passes: u32) -> ClientRecord {
    ClientRecord { client: client.into(), passes, last_counted: 10, last_seen: 10, expires_at: 1000 }
}

pub async fn clients_list_and_delete(store: &dyn Store) {
    let records = [client_record("192.0.2.10", 1), client_record("192.0.2.11", 5), client_record("2001:db8::1", 2)];
    store.put_records(&[], &records).await.unwrap();
    let in_net = ClientFilter { client: Some(ClientMatch::parse("192.0.2.0/24")) };
    assert_eq!(store.clients(&in_net, None).await.unwrap().len(), 2);
    assert_eq!(store.delete_clients(&in_net).await.unwrap(), 2);
    let left = store.clients(&ClientFilter::default(), None).await.unwrap();
    assert_eq!(left, [client_record("2001:db8::1", 2)]);
}

pub async fn put_records_round_trip(store: &dyn Store) {
    let entry = Entry {
        key: key("192.0.2.0/24", "a@x", "b@y"),
        first_seen: 1,
        last_seen: 2,
        passed_at: Some(2),
        attempts: 3,
        passes: 4,
        expires_at: 5,
    };
    store.put_records(std::slice::from_ref(&entry), &[client_record("192.0.2.1", 7)]).await.unwrap();
    assert_eq!(store.entries(&EntryFilter::default(), None).await.unwrap(), std::slice::from_ref(&entry));
    let replaced = Entry { passes: 9, ..entry };
    store.put_records(std::slice::from_ref(&replaced), &[]).await.unwrap();
    assert_eq!(store.entries(&EntryFilter::default(), None).await.unwrap(), [replaced]);
    assert_eq!(store.record_count().await.unwrap(), 2);
}

pub async fn lists_add_remove_and_version(store: &dyn Store) {
    let v0 = store.lists_version().await.unwrap();
    let entry = |kind, target, value: &str| ListEntry {
        kind,
        target,
        value: value.into(),
        comment: "test".into(),
        added_at: 100,
    };
    assert!(store.add_list_entry(&entry(ListKind::Whitelist, ListTarget::Client, "mail.example.com")).await.unwrap());
    assert!(store.add_list_entry(&entry(ListKind::Trust, ListTarget::Client, "10.0.0.0/8")).await.unwrap());
    assert!(store.add_list_entry(&entry(ListKind::Blacklist, ListTarget::Sender, "spam@x")).await.unwrap());
    let v1 = store.lists_version().await.unwrap();
    assert_ne!(v0, v1, "adding entries changes the version");

    let mut again = entry(ListKind::Trust, ListTarget::Client, "10.0.0.0/8");
    again.comment = "updated".into();
    assert!(!store.add_list_entry(&again).await.unwrap(), "re-adding reports an existing entry");
    let all = store.list_entries().await.unwrap();
    let summary: Vec<_> = all.iter().map(|e| (e.kind, e.target, e.value.as_str(), e.comment.as_str())).collect();
    assert_eq!(
        summary,
        [
            (ListKind::Trust, ListTarget::Client, "10.0.0.0/8", "updated"),
            (ListKind::Whitelist, ListTarget::Client, "mail.example.com", "test"),
            (ListKind::Blacklist, ListTarget::Sender, "spam@x", "test"),
        ]
    );

    let v2 = store.lists_version().await.unwrap();
    assert!(store.remove_list_entry(ListKind::Trust, ListTarget::Client, "10.0.0.0/8").await.unwrap());
    assert!(!store.remove_list_entry(ListKind::Trust, ListTarget::Client, "10.0.0.0/8").await.unwrap());
    assert_ne!(store.lists_version().await.unwrap(), v2, "removing changes the version");
    assert_eq!(store.list_entries().await.unwrap().len(), 2);
}

pub async fn counters_and_stats(store: &dyn Store) {
    store.add_counters(&[("new".into(), 3), ("passed".into(), 1)]).await.unwrap();
    store.add_counters(&[("new".into(), 2)]).await.unwrap();
    let a = key("192.0.2.0/24", "a@x", "b@y");
    let b = key("192.0.2.0/24", "c@x", "b@y");
    store.decide(&req(&a, 0)).await.unwrap();
    store.decide(&req(&a, 300)).await.unwrap();
    store.decide(&req(&b, 0)).await.unwrap();
    store.put_records(&[], &[client_record("192.0.2.1", 1), client_record("192.0.2.2", 5)]).await.unwrap();
    store
        .add_list_entry(&ListEntry {
            kind: ListKind::Whitelist,
            target: ListTarget::Recipient,
            value: "postmaster@".into(),
            comment: String::new(),
            added_at: 0,
        })
        .await
        .unwrap();

    let stats = store.stats(500, 5).await.unwrap();
    assert_eq!((stats.pending, stats.passed, stats.expired), (1, 1, 0));
    assert_eq!((stats.clients_counting, stats.clients_whitelisted), (1, 1));
    assert_eq!(stats.counters.get("new"), Some(&5));
    assert_eq!(stats.counters.get("passed"), Some(&1));
    assert_eq!(stats.lists.get("whitelist/recipient"), Some(&1));

    // Much later everything has expired; with auto-whitelisting off no
    // client counts as whitelisted.
    let later = store.stats(TIMERS.pass_lifetime + 1000, 0).await.unwrap();
    assert_eq!((later.pending, later.passed, later.expired), (0, 0, 4));
    assert_eq!(later.clients_whitelisted, 0);
}

pub async fn expire_removes_only_expired_in_batches(store: &dyn Store) {
    for i in 0..7 {
        store.decide(&req(&key("192.0.2.0/24", &format!("old{i}@x"), "r@y"), 0)).await.unwrap();
    }
    let keep = key("192.0.2.0/24", "fresh@x", "r@y");
    let now = TIMERS.retry_window + 10;
    store.decide(&req(&keep, now)).await.unwrap();
    store.put_records(&[], &[client_record("192.0.2.1", 1)]).await.unwrap(); // expires_at 1000

    let mut rounds = Vec::new();
    loop {
        let n = store.expire(now, 3).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 3, "a batch deletes at most its size");
        rounds.push(n);
    }
    assert_eq!(rounds.iter().sum::<u64>(), 8, "seven triplets and one client: {rounds:?}");
    let left = store.entries(&EntryFilter::default(), None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, keep);
    assert!(store.clients(&ClientFilter::default(), None).await.unwrap().is_empty());
}

pub async fn clear_removes_records_keeps_lists(store: &dyn Store) {
    for i in 0..5 {
        store.decide(&req(&key("192.0.2.0/24", &format!("s{i}@x"), "r@y"), 0)).await.unwrap();
    }
    store.put_records(&[], &[client_record("192.0.2.1", 1)]).await.unwrap();
    store
        .add_list_entry(&ListEntry {
            kind: ListKind::Trust,
            target: ListTarget::Client,
            value: "10.0.0.0/8".into(),
            comment: String::new(),
            added_at: 0,
        })
        .await
        .unwrap();
    assert_eq!(store.record_count().await.unwrap(), 6);
    let mut total = 0;
    loop {
        let n = store.clear(4).await.unwrap();
        assert!(n <= 4);
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 6);
    assert_eq!(store.record_count().await.unwrap(), 0);
    assert_eq!(store.list_entries().await.unwrap().len(), 1);
}

/// A few hundred decisions with pseudo-random keys, clients, timers and
/// clock jumps (backwards too), checked one by one against the pure model
/// in [`crate::model`]. Backends that run the state machine in their own
/// language (PL/pgSQL, Lua) are held to the Rust one by this case.
pub async fn decisions_match_the_model(store: &dyn Store) {
    use std::collections::HashMap;

    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut entries: HashMap<TripletKey, Entry> = HashMap::new();
    let mut clients: HashMap<String, ClientRecord> = HashMap::new();
    let mut now = 1_000_000i64;
    for step in 0..400 {
        now += match next(10) {
            0 => -(next(4000) as i64),
            1..=5 => next(400) as i64,
            6 | 7 => next(4 * 3600) as i64,
            8 => next(3 * 86400) as i64,
            _ => next(40 * 86400) as i64,
        };
        let ip = format!("192.0.2.{}", next(3));
        let k = key("192.0.2.0/24", &format!("s{}@x", next(4)), &format!("r{}@y", next(2)));
        let timers = Timers { delay: 300 + 60 * next(3) as i64, retry_window: 86400, pass_lifetime: 20 * 86400 };
        let auto_whitelist = (next(4) != 0).then(|| AutoWhitelist {
            client: ip.clone(),
            after: 1 + next(3) as u32,
            lifetime: 20 * 86400,
        });
        let r = DecideRequest { triplet: k.clone(), timers, auto_whitelist, now };
        let want = crate::model::decide(&r, clients.get(&ip), entries.get(&k));
        if let Some(e) = &want.entry
            && want.write_entry
        {
            entries.insert(k.clone(), e.clone());
        }
        if let Some(c) = &want.client {
            clients.insert(c.client.clone(), c.clone());
        }
        let got = store.decide(&r).await.expect("decide");
        assert_eq!((got.outcome, &got.entry), (want.outcome, &want.entry), "step {step}: {r:?}");
    }
    let mut stored = store.entries(&EntryFilter::default(), None).await.unwrap();
    let mut expected: Vec<Entry> = entries.into_values().collect();
    stored.sort_by(|a, b| a.key.cmp(&b.key));
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(stored, expected, "stored entries");
    let mut expected: Vec<ClientRecord> = clients.into_values().collect();
    expected.sort_by(|a, b| a.client.cmp(&b.client));
    assert_eq!(store.clients(&ClientFilter::default(), None).await.unwrap(), expected, "stored clients");
}

pub async fn close_stops_the_store(store: &dyn Store) {
    let k = key("192.0.2.0/24", "a@x", "b@y");
    store.decide(&req(&k, 0)).await.unwrap();
    store.close().await.unwrap();
    assert!(store.decide(&req(&k, 1)).await.is_err(), "a closed store refuses work");
}
