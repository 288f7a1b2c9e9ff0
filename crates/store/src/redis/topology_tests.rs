//! The conformance suite through Redis Cluster and Sentinel, against
//! redis-server instances these tests start on free ports (never the shared
//! server) and kill when done.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::conformance;

/// Processes killed (and reaped) on drop, and their directory.
struct Instances {
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Instances {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Instances {
    fn new() -> Instances {
        Instances { children: Vec::new(), dir: tempfile::tempdir().unwrap() }
    }

    fn redis(&mut self, port: u16, extra: &[&str]) {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.children.push(child);
        wait("redis-server", || cli(port, &["PING"]).trim() == "PONG");
    }
}

/// Run every conformance case on a fresh prefix of a store `open` gives.
async fn all_cases<F, Fut>(open: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = RedisStore>,
{
    macro_rules! cases {
        ($($case:ident),* $(,)?) => {
            $(
                let store = open(format!("case:{}:", stringify!($case))).await;
                conformance::$case(&store).await;
            )*
        };
    }
    cases!(
        greylisting_round,
        retry_after_window_starts_over,
        passed_triplet_expires,
        timers_come_with_each_request,
        auto_whitelist_after_counted_passes,
        peek_changes_nothing,
        first_sight_is_atomic_under_concurrency,
        entries_filter_and_delete,
        clients_list_and_delete,
        put_records_round_trip,
        lists_add_remove_and_version,
        counters_and_stats,
        expire_removes_only_expired_in_batches,
        clear_removes_records_keeps_lists,
        decisions_match_the_model,
        close_stops_the_store
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_a_redis_cluster() {
    let mut instances = Instances::new();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        let conf = format!("nodes-{i}.conf");
        instances.redis(*port, &["--cluster-enabled", "yes", "--cluster-config-file", &conf]);
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
    for port in &ports {
        wait("the cluster", || cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
    }
    let nodes: Vec<String> = addrs.iter().map(|a| format!("redis://{a}/")).collect();
    all_cases(|prefix| {
        let mut options = RedisOptions::new("unused");
        options.connect.topology = Topology::Cluster { nodes: nodes.clone() };
        options.prefix = prefix;
        async move { RedisStore::open(&options).await.expect("open through the cluster") }
    })
    .await;
    // The keys really are spread over the masters, and SCAN found them all.
    let per_node: Vec<usize> = ports.iter().map(|p| cli(*p, &["DBSIZE"]).trim().parse().unwrap()).collect();
    assert!(per_node.iter().filter(|n| **n > 0).count() >= 2, "keys on several masters: {per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_sentinel() {
    let mut instances = Instances::new();
    let master = free_port();
    instances.redis(master, &[]);
    let sentinel = free_port();
    let conf = instances.dir.path().join("sentinel.conf");
    std::fs::write(&conf, format!("port {sentinel}\nbind 127.0.0.1\nsentinel monitor grey 127.0.0.1 {master} 1\n"))
        .unwrap();
    let child = Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .current_dir(instances.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-sentinel");
    instances.children.push(child);
    wait("the sentinel", || {
        cli(sentinel, &["SENTINEL", "get-master-addr-by-name", "grey"]).contains(&master.to_string())
    });
    all_cases(|prefix| {
        let mut options = RedisOptions::new("unused");
        options.connect.topology =
            Topology::Sentinel { sentinels: vec![format!("redis://127.0.0.1:{sentinel}/")], service: "grey".into() };
        options.prefix = prefix;
        async move { RedisStore::open(&options).await.expect("open through the sentinel") }
    })
    .await;
    assert!(cli(master, &["DBSIZE"]).trim().parse::<u64>().unwrap() > 0, "the data is on the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_tls_with_a_password() {
    let mut instances = Instances::new();
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (instances.dir.path().join("cert.pem"), instances.dir.path().join("key.pem"));
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--tls-cert-file", cert.to_str().unwrap(), "--tls-key-file", key.to_str().unwrap()])
        .args(["--tls-ca-cert-file", cert.to_str().unwrap(), "--tls-auth-clients", "no"])
        .args(["--requirepass", "s3cret"])
        .current_dir(instances.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server with TLS");
    instances.children.push(child);
    wait("redis-server over TLS", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let options = |tls: bool, password: &str, prefix: String| {
        let mut options = RedisOptions::new(format!("redis://127.0.0.1:{port}/"));
        options.connect.tls = crate::tls::TlsOptions { enabled: tls, ca_file: Some(cert.clone()) };
        options.connect.password = Some(password.to_owned());
        options.connect.connect_timeout = Duration::from_secs(2);
        options.connect.response_timeout = Duration::from_secs(2);
        options.prefix = prefix;
        options
    };
    all_cases(|prefix| {
        let options = options(true, "s3cret", prefix);
        async move { RedisStore::open(&options).await.expect("open over TLS with the password") }
    })
    .await;
    let wrong = RedisStore::open(&options(true, "wrong", "x:".into())).await.err().expect("a wrong password fails");
    assert!(wrong.to_string().to_lowercase().contains("pass") || wrong.to_string().contains("auth"), "{wrong}");
    assert!(RedisStore::open(&options(false, "s3cret", "x:".into())).await.is_err(), "plain text is refused");
    // A certificate from another CA is refused.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let other_ca = instances.dir.path().join("other.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let mut untrusted = options(true, "s3cret", "x:".into());
    untrusted.connect.tls.ca_file = Some(other_ca);
    assert!(RedisStore::open(&untrusted).await.is_err(), "the server certificate is verified");
}
