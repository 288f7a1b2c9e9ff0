//! Shared stores (issue 7): two greygate instances on one Redis or
//! PostgreSQL, the admin CLI on each backend, copying state from SQLite,
//! and backend outages, all with the real servers. The shared servers
//! (6379, 5432) are only used through a private key prefix or schema;
//! outage tests start and kill servers of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use greygate_testkit::greygate::{Greygate, message, run};
use greygate_testkit::policy::{PolicyClient, rcpt_request};
use greygate_testkit::postgres::{PgSchema, PgServer};
use greygate_testkit::redis::{RedisPrefix, RedisServer};
use greygate_testkit::wait_for;

use crate::bin;

/// The `[store]` section for a backend, plus the rest of a config.
fn start(store: &str, extra: &str) -> (tempfile::TempDir, Greygate) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[store]\nlists_refresh = \"100ms\"\n{store}\n[policy]\nlisten = [\"127.0.0.1:0\"]\n{extra}");
    let g = Greygate::start(bin(), dir.path(), &config);
    (dir, g)
}

fn redis_store(url: &str, prefix: &RedisPrefix) -> String {
    format!("backend = \"redis\"\n[store.redis]\nurl = \"{url}\"\nprefix = \"{}\"\n", prefix.prefix)
}

fn postgres_store(url: &str, schema: &PgSchema) -> String {
    format!("backend = \"postgres\"\n[store.postgres]\nurl = \"{url}\"\nschema = \"{}\"\n", schema.name)
}

fn admin(g: &Greygate, args: &[&str]) -> (i32, String) {
    crate::admin(g, args)
}

/// First attempt at A is deferred, the retry at B is accepted with the
/// header, and both then agree; the admin CLI sees and changes the shared
/// state through either config.
fn two_instances_share_one_state(store: &str) {
    // 2 s: the server counts whole seconds, so with 1 s an ask at B just
    // after a second boundary would already find A's attempt old enough.
    let extra = "[greylist]\ndelay = \"2s\"\nhostname = \"mx.test\"\n";
    let (_da, a) = start(store, extra);
    let (_db, b) = start(store, extra);
    // The ready line names the shared namespace, not a SQLite path.
    let ready = a.wait_log("the ready line", |v| message(v) == Some("greygate ready"));
    let namespace = if store.contains("\"redis\"") { "redis prefix " } else { "postgres schema " };
    let location = ready["location"].as_str().unwrap_or_default();
    assert!(location.starts_with(namespace) && !location.contains("://"), "{ready}");
    let mut ca = PolicyClient::connect(a.addr());
    let mut cb = PolicyClient::connect(b.addr());
    let ask = |c: &mut PolicyClient, sender: &str| c.ask(&rcpt_request("192.0.2.10", sender, "bob@example.net", "q.1"));
    let first = ask(&mut ca, "alice@example.org");
    assert!(first.starts_with("DEFER_IF_PERMIT"), "first attempt at A: {first}");
    let again = ask(&mut cb, "alice@example.org");
    assert!(again.starts_with("DEFER_IF_PERMIT"), "too soon at B: {again}");
    // The greylisting delay itself has to pass: 2.1 s later, the whole
    // seconds differ by at least 2.
    std::thread::sleep(Duration::from_millis(2100));
    let retry = ask(&mut cb, "alice@example.org");
    assert!(retry.starts_with("PREPEND X-Greylist: delayed "), "retry at B accepted: {retry}");
    assert_eq!(ask(&mut ca, "alice@example.org"), "DUNNO", "A knows it passed");

    // Admin CLI on this backend: entries, explain, lists, stats, purge.
    let (code, out) = admin(&a, &["entries", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("alice@example.org") && out.contains("passed"), "{out}");
    let (code, out) = admin(
        &b,
        &["explain", "--client-ip", "192.0.2.10", "--sender", "alice@example.org", "--recipient", "bob@example.net"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("verdict        accept"), "{out}");
    assert_eq!(admin(&a, &["whitelist", "add", "--sender", "friend@example.com"]).0, 0);
    let (_, out) = admin(&b, &["whitelist", "list"]);
    assert!(out.contains("friend@example.com"), "{out}");
    // B picks up A's list change (lists_refresh is 100 ms).
    wait_for("B to see the new whitelist entry", Duration::from_secs(10), || {
        (ask(&mut cb, "friend@example.com") == "DUNNO").then_some(())
    });
    let (code, out) = admin(&b, &["stats", "--json"]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["stats"]["passed"], 1, "{out}");
    // Alice's triplet and client record, and friend@'s triplet if B asked
    // the store before it saw the list change.
    let (code, out) = admin(&a, &["purge", "--all"]);
    assert!(code == 0 && ["deleted 2 records", "deleted 3 records"].contains(&out.trim()), "{out}");
    let (_, out) = admin(&a, &["entries", "list", "--json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().map(Vec::len), Some(0), "{out}");
}

#[test]
fn two_instances_share_redis() {
    let prefix = RedisPrefix::new();
    two_instances_share_one_state(&redis_store(greygate_testkit::redis::SHARED_URL, &prefix));
    assert!(prefix.keys().iter().any(|k| k.contains("{meta}")), "greygate wrote under its prefix only");
}

#[test]
fn two_instances_share_postgres() {
    let schema = PgSchema::new();
    two_instances_share_one_state(&postgres_store(greygate_testkit::postgres::SHARED_URL, &schema));
    assert_eq!(schema.query("SELECT count(*) FROM lists").trim(), "1");
}

/// A triplet first seen by a server on SQLite is retried after the site
/// moved to a shared store with `copy-store`: the retry passes.
fn copy_from_sqlite(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let old = format!(
        "[store]\npath = \"{}\"\n[policy]\nlisten = [\"127.0.0.1:0\"]\n[greylist]\ndelay = \"1s\"\n",
        db.display()
    );
    let mut g = Greygate::start(bin(), dir.path(), &old);
    let mut c = PolicyClient::connect(g.addr());
    for i in 0..30 {
        assert!(c.ask(&rcpt_request("192.0.2.10", &format!("s{i}@example.org"), "r@x", "c")).starts_with("DEFER"));
    }
    assert!(g.stop().success());
    let sqlite = db.display().to_string();
    let (code, _, _) = run(
        bin(),
        dir.path(),
        &["--config", g.config.to_str().unwrap(), "whitelist", "add", "--client", "10.1.0.0/16"],
    );
    assert_eq!(code, 0);

    let (_d2, new) = start(store, "[greylist]\ndelay = \"1s\"\n");
    let (code, out) = admin(&new, &["copy-store", "--from-sqlite", &sqlite]);
    assert_eq!(code, 0);
    assert!(out.contains("copied 30 records (0 expired ones skipped), 1 new list entries of 1"), "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    let mut c = PolicyClient::connect(new.addr());
    let retry = c.ask(&rcpt_request("192.0.2.10", "s7@example.org", "r@x", "d"));
    assert!(retry.starts_with("PREPEND X-Greylist"), "the copied triplet passes: {retry}");
    let (_, out) = admin(&new, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["stats"]["counters"]["new"], 30, "counters copied: {out}");
    let (code, _) = admin(&new, &["copy-store", "--from-sqlite", "/nonexistent.db"]);
    assert_ne!(code, 0);
}

#[test]
fn copy_store_from_sqlite_to_redis() {
    let prefix = RedisPrefix::new();
    copy_from_sqlite(&redis_store(greygate_testkit::redis::SHARED_URL, &prefix));
}

#[test]
fn copy_store_from_sqlite_to_postgres() {
    let schema = PgSchema::new();
    copy_from_sqlite(&postgres_store(greygate_testkit::postgres::SHARED_URL, &schema));
}

/// Requests on 4 connections in a loop, counting answers by kind, until
/// stopped. Each request is a new triplet, so every answer needs the store.
struct Load {
    stop: Arc<AtomicBool>,
    greylisted: Arc<AtomicU64>,
    store_failed: Arc<AtomicU64>,
    other: Arc<Vec<std::sync::Mutex<Vec<String>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(g: &Greygate) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let greylisted = Arc::new(AtomicU64::new(0));
        let store_failed = Arc::new(AtomicU64::new(0));
        let other = Arc::new((0..4).map(|_| std::sync::Mutex::new(Vec::new())).collect::<Vec<_>>());
        let threads = (0..4)
            .map(|t| {
                let (stop, greylisted, store_failed, other) =
                    (stop.clone(), greylisted.clone(), store_failed.clone(), other.clone());
                let addr = g.addr();
                std::thread::spawn(move || {
                    let mut c = PolicyClient::connect(addr);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let a = c.ask(&rcpt_request("192.0.2.20", &format!("t{t}n{i}@example.org"), "r@x", "l"));
                        if a.starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted") {
                            greylisted.fetch_add(1, Ordering::Relaxed);
                        } else if a.starts_with("DEFER_IF_PERMIT 4.3.0 Temporary local problem") {
                            store_failed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            other[t].lock().unwrap().push(a);
                        }
                    }
                })
            })
            .collect();
        Load { stop, greylisted, store_failed, other, threads }
    }

    fn counts(&self) -> (u64, u64) {
        (self.greylisted.load(Ordering::Relaxed), self.store_failed.load(Ordering::Relaxed))
    }

    /// Wait until `f(greylisted, store_failed)` holds.
    fn wait(&self, what: &str, f: impl Fn(u64, u64) -> bool) {
        wait_for(what, Duration::from_secs(30), || {
            let (g, s) = self.counts();
            f(g, s).then_some(())
        });
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("load thread");
        }
        let other: Vec<String> = self.other.iter().flat_map(|m| m.lock().unwrap().clone()).collect();
        assert!(other.is_empty(), "unexpected answers: {other:?}");
    }
}

/// Kill the backend under load, bring it back: answers follow the fail
/// mode (closed: the store-failure deferral) while it is away, greylisting
/// resumes by itself, greygate never crashes, and the outage is logged
/// and counted.
fn outage(g: &mut Greygate, kill: impl FnOnce(), restart: impl FnOnce()) {
    let load = Load::start(g);
    load.wait("greylisting under load", |grey, _| grey >= 50);
    kill();
    let (grey_at_kill, _) = load.counts();
    load.wait("the fail mode while the store is down", |_, failed| failed >= 20);
    g.wait_log("the outage logged", |v| {
        message(v) == Some("store unavailable; applying the fail mode until it is back")
    });
    restart();
    load.wait("greylisting after the store came back", |grey, _| grey >= grey_at_kill + 50);
    g.wait_log("the recovery logged", |v| message(v) == Some("store reachable again"));
    assert!(g.try_wait().is_none(), "greygate is still running");
    load.finish();
    assert!(g.stop().success());
    let (code, out, _) = run(bin(), &g.dir, &["--config", g.config.to_str().unwrap(), "stats", "--json"]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    let counters = &stats["stats"]["counters"];
    assert!(counters["store_error"].as_u64().unwrap_or(0) >= 20, "failed decisions counted: {out}");
    assert!(counters["store_outages"].as_u64().unwrap_or(0) >= 1, "outage counted: {out}");
}

const FAIL_CLOSED: &str = "timeout = \"500ms\"\nfail_mode = \"closed\"\n";

#[test]
fn redis_killed_and_restarted_under_load() {
    let mut server = RedisServer::start();
    let prefix = RedisPrefix::on_port(server.port);
    let store = format!("{FAIL_CLOSED}{}", redis_store(&server.url(), &prefix));
    let (_dir, mut g) = start(&store, "");
    let server = std::cell::RefCell::new(&mut server);
    outage(&mut g, || server.borrow_mut().kill(), || server.borrow_mut().restart());
}

#[test]
fn redis_frozen_answers_by_the_timeout_then_recovers() {
    let server = RedisServer::start();
    let prefix = RedisPrefix::on_port(server.port);
    let store = format!("{FAIL_CLOSED}{}", redis_store(&server.url(), &prefix));
    let (_dir, mut g) = start(&store, "");
    outage(&mut g, || server.freeze(), || server.thaw());
}

#[test]
fn postgres_killed_and_restarted_under_load() {
    let mut server = PgServer::start();
    let schema = PgSchema::on_port(server.port);
    let store = format!("{FAIL_CLOSED}{}", postgres_store(&server.url(), &schema));
    let (_dir, mut g) = start(&store, "");
    let server = std::cell::RefCell::new(&mut server);
    outage(&mut g, || server.borrow_mut().kill(), || server.borrow_mut().restart());
}

/// PostgreSQL over TLS, the server certificate verified against `tls_ca`.
#[test]
fn postgres_over_tls() {
    let cert = greygate_testkit::certs::TestCert::new(&["127.0.0.1"]);
    let server = PgServer::start_tls(&cert.cert, &cert.key);
    let schema = PgSchema::on_port(server.port);
    let store = format!("{}tls = true\ntls_ca = \"{}\"\n", postgres_store(&server.url(), &schema), cert.cert.display());
    let (_dir, g) = start(&store, "");
    let mut c = PolicyClient::connect(g.addr());
    assert!(c.ask(&rcpt_request("192.0.2.1", "a@example.org", "r@x", "t")).starts_with("DEFER_IF_PERMIT 4.7.1"));
    let ssl = schema.query(
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'greygate'",
    );
    assert_eq!(ssl.trim(), "t", "greygate's connections use TLS");
    // A CA that did not sign the server's certificate: greygate refuses to start.
    let other = greygate_testkit::certs::TestCert::new(&["127.0.0.1"]);
    let bad = format!("{}tls = true\ntls_ca = \"{}\"\n", postgres_store(&server.url(), &schema), other.cert.display());
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.toml");
    std::fs::write(&conf, format!("[store]\n{bad}\n[policy]\nlisten = [\"127.0.0.1:0\"]\n")).unwrap();
    let (code, _, err) = run(bin(), dir.path(), &["--config", conf.to_str().unwrap(), "stats"]);
    assert_ne!(code, 0);
    assert!(err.contains("PostgreSQL"), "{err}");
}
