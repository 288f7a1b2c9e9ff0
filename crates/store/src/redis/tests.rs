//! The Redis backend against the real server on 127.0.0.1:6379. Every test
//! uses a key prefix of its own, deleted afterwards, so parallel runs never
//! see each other's keys.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::test_support::request;

pub const URL: &str = "redis://127.0.0.1:6379/";

/// A key prefix whose keys are deleted when this is dropped.
pub struct TempPrefix {
    pub prefix: String,
}

impl TempPrefix {
    pub fn new() -> TempPrefix {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        TempPrefix {
            prefix: format!("ggtest:{}:{}:{nanos}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
        }
    }

    pub fn options(&self) -> RedisOptions {
        RedisOptions { prefix: self.prefix.clone(), ..RedisOptions::new(URL) }
    }
}

impl Drop for TempPrefix {
    fn drop(&mut self) {
        let mut con = ::redis::Client::open(URL).unwrap().get_connection().unwrap();
        let keys: Vec<String> = ::redis::Commands::scan_match::<_, String>(&mut con, format!("{}*", self.prefix))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for k in keys {
            let _: () = ::redis::Commands::del(&mut con, k).unwrap();
        }
    }
}

pub async fn make() -> (RedisStore, TempPrefix) {
    let prefix = TempPrefix::new();
    let store = RedisStore::open(&prefix.options()).await.expect("open the Redis store");
    (store, prefix)
}

mod conformance {
    crate::conformance_suite!(super::make());
}

#[tokio::test]
async fn records_carry_a_ttl_matching_their_expiry() {
    let (store, prefix) = make().await;
    assert!(store.expires_by_itself());
    store.decide(&request("a@x", 1000)).await.unwrap();
    let mut con = ::redis::Client::open(URL).unwrap().get_connection().unwrap();
    let key = format!("{}t:192.0.2.0/24 a@x r@y", prefix.prefix);
    let value: String = ::redis::Commands::get(&mut con, &key).unwrap();
    assert_eq!(value, "1000 1000 - 1 0 87400");
    let ttl: i64 = ::redis::Commands::ttl(&mut con, &key).unwrap();
    assert!((86390..=86400).contains(&ttl), "retry window as TTL: {ttl}");
    store.decide(&request("a@x", 1400)).await.unwrap();
    let ttl: i64 = ::redis::Commands::ttl(&mut con, &key).unwrap();
    assert!((86390..=86400).contains(&ttl), "pass lifetime as TTL: {ttl}");
}

#[tokio::test]
async fn bad_prefixes_and_unreachable_servers() {
    let bad = RedisOptions { prefix: "a*".into(), ..RedisOptions::new(URL) };
    assert!(matches!(RedisStore::open(&bad).await.err().unwrap(), StoreError::Invalid(_)));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = RedisStore::open(&RedisOptions::new(format!("redis://127.0.0.1:{port}/"))).await.err().unwrap();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn key_parts_with_spaces_and_percent_signs_round_trip() {
    let (store, _prefix) = make().await;
    let odd = TripletKey { client: "id:a b".into(), sender: "\"x y\"%20@x".into(), recipient: "r\t@y".into() };
    let req = DecideRequest { triplet: odd.clone(), ..request("unused@x", 0) };
    store.decide(&req).await.unwrap();
    let plain = request("x@y", 0);
    store.decide(&plain).await.unwrap();
    let keys: Vec<TripletKey> =
        store.entries(&EntryFilter::default(), None).await.unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(keys, [plain.triplet, odd]);
    store
        .put_records(
            &[],
            &[ClientRecord { client: "a b%".into(), passes: 1, last_counted: 0, last_seen: 0, expires_at: 9 }],
        )
        .await
        .unwrap();
    assert_eq!(store.clients(&ClientFilter::default(), None).await.unwrap()[0].client, "a b%");
    assert_eq!(escape("a%b c\u{1}"), "a%25b%20c%01");
    assert_eq!(unescape("a%25b%20c%01").as_deref(), Some("a%b c\u{1}"));
    assert_eq!(unescape("bad%2"), None);
}

#[test]
fn stored_text_decoders_round_trip() {
    for text in [
        "1000 1400 1400 2 1 3111400",
        "1000 1000 - 1 0 87400",
        "5 1000 2000 3112000",
        "+5 -1 2 3",
        "192.0.2.0/24 a%20b@x r%25@y",
        "a%2",
        "%FF%FE",
        "x  y z",
        "",
        "ü %C3%BC",
    ] {
        check_decoders(text);
    }
}
