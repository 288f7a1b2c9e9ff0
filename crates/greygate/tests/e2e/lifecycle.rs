//! Start-up, reload, shutdown, crashes and store failures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greygate_testkit::greygate::{Greygate, field, message};
use greygate_testkit::policy::{PolicyClient, rcpt_request};
use greygate_testkit::wait_for;
use nix::sys::signal::Signal;

use crate::{admin, bin, server};

/// The README's first command: `greygate serve` with no config serves the
/// policy protocol on 127.0.0.1:10023 with greygate.db in the working
/// directory.
#[test]
fn the_default_command_works_on_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    // The default port is fixed; another test run on this machine may hold
    // it for a moment.
    wait_for("127.0.0.1:10023 to be free", Duration::from_secs(60), || {
        std::net::TcpListener::bind("127.0.0.1:10023").ok().map(drop)
    });
    let mut child = std::process::Command::new(bin())
        .arg("serve")
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = "127.0.0.1:10023".parse().unwrap();
    let mut c = wait_for("the default listener on 127.0.0.1:10023", Duration::from_secs(10), || {
        assert!(child.try_wait().unwrap().is_none(), "greygate exited; is port 10023 taken?");
        std::net::TcpStream::connect(addr).ok().map(|_| PolicyClient::connect(addr))
    });
    let action = c.ask(&rcpt_request("192.0.2.1", "a@b.example", "r@x.example", "i"));
    assert!(action.starts_with("DEFER_IF_PERMIT 4.7.1 "), "{action}");
    assert!(dir.path().join("greygate.db").exists(), "the store is in the working directory");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn sighup_reloads_config_and_list_files_without_dropping_connections() {
    let (dir, g) = server("");
    let list = dir.path().join("clients.txt");
    std::fs::write(&list, "# empty for now\n").unwrap();
    let base = std::fs::read_to_string(&g.config).unwrap();
    let mut c = PolicyClient::connect(g.addr());
    let ask = |c: &mut PolicyClient, ip: &str| c.ask(&rcpt_request(ip, "a@b.example", "r@x.example", "i"));
    assert!(ask(&mut c, "192.0.2.1").starts_with("DEFER_IF_PERMIT"));
    assert!(ask(&mut c, "198.51.100.1").starts_with("DEFER_IF_PERMIT"));

    // New reply text in the config, and a list file that now lists a client.
    let reloaded = base.replace(
        "[log]",
        &format!(
            "[replies]\ngreylist = \"451 4.7.1 Come back in {{remaining}}s\"\n[lists]\nwhitelist_clients_files = [{:?}]\n[log]",
            list
        ),
    );
    std::fs::write(&g.config, reloaded).unwrap();
    std::fs::write(&list, "198.51.100.0/24\n").unwrap();
    g.signal(Signal::SIGHUP);
    g.wait_log("the reload", |v| message(v) == Some("SIGHUP: config and lists reloaded"));
    assert_eq!(ask(&mut c, "198.51.100.1"), "DUNNO", "the file entry applies, on the same connection");
    assert_eq!(ask(&mut c, "203.0.113.9"), "DEFER_IF_PERMIT 4.7.1 Come back in 300s");

    // A broken config is refused and the running one stays.
    std::fs::write(&g.config, "[greylist]\ndealy = \"1m\"\n").unwrap();
    g.signal(Signal::SIGHUP);
    let refused =
        g.wait_log("the refusal", |v| message(v) == Some("SIGHUP: config not reloaded; keeping the running one"));
    assert!(field(&refused, "error").unwrap().contains("dealy"), "{refused}");
    assert_eq!(ask(&mut c, "198.51.100.1"), "DUNNO");
}

/// Hold SQLite's write lock from this process, the way a stuck admin job
/// or a hung disk would.
fn lock_store(g: &Greygate) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(g.dir.join("greygate.db")).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits() {
    let (_dir, mut g) = server("");
    let mut c = PolicyClient::connect(g.addr());
    assert!(c.ask(&rcpt_request("192.0.2.1", "a@b.example", "r@x.example", "i")).starts_with("DEFER_IF_PERMIT"));
    // The next decision waits for the store; stop the server meanwhile.
    let lock = lock_store(&g);
    c.send(rcpt_request("192.0.2.2", "other@b.example", "r@x.example", "i").as_bytes());
    std::thread::sleep(Duration::from_millis(200));
    g.signal(Signal::SIGTERM);
    g.wait_log("the shutdown", |v| message(v).is_some_and(|m| m.starts_with("shutting down")));
    drop(lock);
    assert!(c.reply().starts_with("action=DEFER_IF_PERMIT"), "the request in flight is answered");
    assert!(c.closed_without_reply(), "then the connection closes");
    let status = wait_for("exit", Duration::from_secs(15), || g.try_wait());
    assert!(status.success(), "{status}");
    g.wait_log("the final log line", |v| message(v) == Some("stopped"));
    // Counters were saved on the way out.
    let (_, out) = admin(&g, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["stats"]["counters"]["new"], 2, "{out}");
}

#[test]
fn store_failure_follows_the_fail_mode_and_recovers() {
    for (mode, want) in
        [("open", "DUNNO"), ("closed", "DEFER_IF_PERMIT 4.3.0 Temporary local problem, please try again later")]
    {
        let (_dir, g) = crate::server_with(&format!("timeout = \"300ms\"\nfail_mode = \"{mode}\""), "");
        let mut c = PolicyClient::connect(g.addr());
        let lock = lock_store(&g);
        let started = Instant::now();
        assert_eq!(c.ask(&rcpt_request("192.0.2.1", "a@b.example", "r@x.example", "i")), want, "fail {mode}");
        assert!(started.elapsed() < Duration::from_secs(3), "the timeout bounds the wait");
        // Requests that need no store keep working during the outage.
        assert_eq!(c.ask(&rcpt_request("127.0.0.1", "a@b.example", "r@x.example", "i")), "DUNNO");
        let logged = g.wait_log("the failed decision", |v| field(v, "reason") == Some("store_error"));
        assert!(field(&logged, "detail").unwrap().contains("did not answer within"), "{logged}");
        drop(lock);
        // Back to normal once the store answers again.
        let action = wait_for("recovery", Duration::from_secs(10), || {
            let a = c.ask(&rcpt_request("192.0.2.9", "a@b.example", "r@x.example", "i"));
            a.starts_with("DEFER_IF_PERMIT 4.7.1").then_some(a)
        });
        assert!(action.contains("Greylisted"), "{action}");
    }
}

/// `kill -9` under load: every decision that was answered is still known
/// after a restart, so every answered first attempt passes on its retry.
#[test]
fn kill_9_under_load_loses_no_answered_decision() {
    let (dir, mut g) = server("[greylist]\ndelay = \"1s\"\n");
    let addr = g.addr();
    let answered: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (answered, stop) = (answered.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = PolicyClient::connect(addr);
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // Letters in every word: digit-only words are VERP
                    // counters and would be folded into one sender.
                    let (ip, sender) = (format!("198.18.{}.{}", w, i % 250), format!("w{w}x{i}@load.example"));
                    c.send(rcpt_request(&ip, &sender, "r@x.example", "i").as_bytes());
                    match c.try_reply() {
                        Ok(reply) => {
                            assert!(reply.starts_with("action=DEFER_IF_PERMIT"), "{reply}");
                            answered.lock().unwrap().push((ip, sender));
                        }
                        // Killed mid-request: that one was never answered.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    wait_for("some load", Duration::from_secs(30), || (answered.lock().unwrap().len() > 3000).then_some(()));
    g.kill9();
    let killed_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();

    let g = Greygate::restart(bin(), dir.path(), &g.config);
    while killed_at.elapsed() < Duration::from_millis(1100) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = g.addr();
    let lost: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = answered
            .chunks(answered.len().div_ceil(8))
            .map(|chunk| {
                scope.spawn(move || {
                    let mut c = PolicyClient::connect(addr);
                    chunk
                        .iter()
                        .enumerate()
                        .filter_map(|(i, (ip, sender))| {
                            // Each retry is its own message (instance).
                            let a = c.ask(&rcpt_request(ip, sender, "r@x.example", &format!("retry.{i}")));
                            (!a.starts_with("PREPEND X-Greylist")).then(|| format!("{ip} {sender}: {a}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        lost.is_empty(),
        "{} of {} answered decisions lost, e.g. {:?}",
        lost.len(),
        answered.len(),
        &lost[..lost.len().min(5)]
    );
}
