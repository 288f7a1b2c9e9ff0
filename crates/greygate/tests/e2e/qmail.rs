//! The qmail front end (greydaemon's UDP protocol), byte for byte, and the
//! `greygate greydaemon` drop-in command line.
//!
//! Datagrams are built as qmail-smtpd's greylisting patch builds them
//! (testkit `qmail`); replies are compared as the two bytes greydaemon
//! sends. "No reply" is shown by the next datagram's reply arriving first
//! and alone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use greygate_testkit::greygate::{Greygate, field, message};
use greygate_testkit::policy::{PolicyClient, rcpt_request};
use greygate_testkit::qmail::{Ending, QmailClient, datagram};
use greygate_testkit::wait_for;
use nix::sys::signal::Signal;

use crate::{bin, server};

const WHITELISTED: &[u8] = &[1, 1];
const KNOWN_IP: &[u8] = &[1, 2];
const RETRY_OK: &[u8] = &[1, 3];
const BOUNCE: &[u8] = &[1, 4];
const NEW: &[u8] = &[0, 1];
const TOO_SOON: &[u8] = &[0, 2];

const VERP: &str = "list-bounces-bob=example.net@lists.example.org";

fn qmail_server(extra: &str) -> (tempfile::TempDir, Greygate, QmailClient) {
    let (dir, g) = server(&format!("[qmail]\nlisten = [\"127.0.0.1:0\"]\n{extra}"));
    let c = QmailClient::connect(g.qmail_addr());
    (dir, g, c)
}

fn ask(c: &QmailClient, ip: &str, sender: &str, rcpts: &[&str]) -> Vec<u8> {
    c.ask(&datagram(ip, sender, rcpts, Ending::Plain)).expect("a reply within qmail-smtpd's 3 s")
}

/// Sleep past a greylisting delay of 1 or 2 s: the server counts whole
/// seconds, and 2.1 s later they differ by at least 2.
fn past_the_delay() {
    std::thread::sleep(Duration::from_millis(2100));
}

#[test]
fn several_recipients_in_one_datagram() {
    // 2 s: the second ask must be too soon even across a second boundary.
    let (_dir, g, c) = qmail_server("[greylist]\ndelay = \"2s\"\n");
    let rcpts = ["rcpt1@example.net", "rcpt2@example.net"];
    assert_eq!(ask(&c, "192.0.2.10", "sender@example.org", &rcpts), NEW);
    // With the newer client's extra NUL: the same question.
    let extra = datagram("192.0.2.10", "sender@example.org", &rcpts, Ending::ExtraNul);
    assert_eq!(c.ask(&extra).unwrap(), TOO_SOON);
    past_the_delay();
    assert_eq!(ask(&c, "192.0.2.10", "sender@example.org", &rcpts), RETRY_OK);
    // One new recipient among passed ones greylists the transaction.
    assert_eq!(ask(&c, "192.0.2.10", "sender@example.org", &["rcpt1@example.net", "rcpt3@example.net"]), NEW);
    // Each recipient decided is logged, with the datagram's reply.
    let line = g.wait_log("the decision for rcpt3", |v| {
        message(v) == Some("decision") && field(v, "recipient") == Some("rcpt3@example.net")
    });
    assert_eq!(field(&line, "frontend"), Some("qmail"));
    assert_eq!(field(&line, "action"), Some("0001"));
    assert_eq!(field(&line, "reason"), Some("new"));
    assert_eq!(field(&line, "net"), Some("192.0.2.0/24"));
}

#[test]
fn null_sender_to_a_verp_address_is_a_bounce() {
    let (_dir, _g, c) = qmail_server("");
    assert_eq!(ask(&c, "192.0.2.20", "", &[VERP]), BOUNCE);
    assert_eq!(ask(&c, "192.0.2.20", "", &["bob@example.net"]), NEW, "a plain null-sender message is greylisted");
    assert_eq!(ask(&c, "192.0.2.20", "alice@example.org", &[VERP]), NEW, "not a bounce with a sender");
}

#[test]
fn malformed_datagrams_get_no_reply() {
    let (_dir, g, c) = qmail_server("");
    let mut oversize = datagram("192.0.2.30", "a@example.org", &[], Ending::Plain);
    while oversize.len() <= 2048 {
        oversize.extend_from_slice(b"Trecipient@example.net\0");
    }
    let cases: [(&str, Vec<u8>); 6] = [
        ("trailing LF", datagram("192.0.2.30", "a@example.org", &["b@example.net"], Ending::TrailingLf)),
        ("no I field", b"X192.0.2.30\0Fa@example.org\0Tb@example.net\0".to_vec()),
        ("not an address", datagram("mail.example.org", "a@example.org", &["b@example.net"], Ending::Plain)),
        ("no recipient", datagram("192.0.2.30", "a@example.org", &[], Ending::Plain)),
        ("bad recipient field", b"I192.0.2.30\0Fa@example.org\0Xb@example.net\0".to_vec()),
        ("oversize", oversize),
    ];
    for (i, (what, bad)) in cases.iter().enumerate() {
        c.send(bad);
        // The next valid datagram's reply comes back first, and alone.
        let rcpt = format!("b{i}@example.net");
        let valid = datagram("192.0.2.30", "a@example.org", &[&rcpt], Ending::Plain);
        assert_eq!(c.ask(&valid).as_deref(), Some(NEW), "{what}");
        assert_eq!(c.receive(Duration::from_millis(200)), None, "{what}: nothing more");
    }
    let malformed = || g.logs().iter().filter(|v| message(v) == Some("malformed datagram; no reply")).count();
    wait_for("six malformed datagrams logged", Duration::from_secs(10), || (malformed() == cases.len()).then_some(()));
}

#[test]
fn whitelisted_clients_and_ipv6() {
    let (_dir, g, c) = qmail_server("[lists]\nwhitelist_clients = [\"198.51.100.0/24\"]\n");
    assert_eq!(ask(&c, "198.51.100.7", "a@example.org", &["b@example.net", "c@example.net"]), WHITELISTED);
    assert_eq!(ask(&c, "2001:db8:1:2::7", "a@example.org", &["b@example.net"]), NEW);
    // The same /64, another address: the same triplet.
    assert_eq!(ask(&c, "[2001:db8:1:2::8]", "a@example.org", &["b@example.net"]), TOO_SOON);
    // IPv4-mapped is IPv4.
    assert_eq!(ask(&c, "::ffff:198.51.100.9", "a@example.org", &["b@example.net"]), WHITELISTED);
    let line = g.wait_log("the IPv6 decision", |v| field(v, "client") == Some("2001:db8:1:2::8"));
    assert_eq!(field(&line, "net"), Some("2001:db8:1:2::/64"));
}

#[test]
fn a_triplet_seen_over_udp_is_the_same_triplet_for_the_policy_server() {
    // 2 s: the policy ask must be too soon even across a second boundary.
    let (_dir, g, c) = qmail_server("[greylist]\ndelay = \"2s\"\n");
    assert_eq!(ask(&c, "192.0.2.40", "alice@example.org", &["bob@example.net"]), NEW);
    let mut p = PolicyClient::connect(g.addr());
    let policy = |p: &mut PolicyClient| p.ask(&rcpt_request("192.0.2.40", "alice@example.org", "bob@example.net", "i"));
    assert!(policy(&mut p).starts_with("DEFER_IF_PERMIT 4.7.1 "));
    g.wait_log("the policy server's too_soon", |v| {
        field(v, "frontend") == Some("policy") && field(v, "reason") == Some("too_soon")
    });
    past_the_delay();
    assert!(policy(&mut p).starts_with("PREPEND X-Greylist: delayed "), "first pass through the policy server");
    // Passed through the policy server: passed over UDP too.
    assert_eq!(ask(&c, "192.0.2.40", "alice@example.org", &["bob@example.net"]), RETRY_OK);
    g.wait_log("the qmail passed", |v| field(v, "frontend") == Some("qmail") && field(v, "reason") == Some("passed"));
}

#[test]
fn greydaemon_mode_knows_an_address_that_passed() {
    let (_dir, _g, c) = qmail_server("mode = \"greydaemon\"\n[greylist]\ndelay = \"1s\"\n");
    assert_eq!(ask(&c, "192.0.2.50", "a@example.org", &["b@example.net"]), NEW);
    past_the_delay();
    // b passes (the address becomes known) but c, new, is greylisted: the
    // address was looked up once, before the triplets.
    assert_eq!(ask(&c, "192.0.2.50", "a@example.org", &["b@example.net", "c@example.net"]), NEW);
    assert_eq!(ask(&c, "192.0.2.50", "other@example.com", &["d@example.net"]), KNOWN_IP);
    // Known before the bounce rule.
    assert_eq!(ask(&c, "192.0.2.50", "", &[VERP]), KNOWN_IP);
}

/// `greygate greydaemon` with greydaemon's arguments; the config file only
/// asks for JSON logs (every other section takes greydaemon's defaults).
fn greydaemon(dir: &Path, args: &[&str]) -> Greygate {
    let config = dir.join("log.toml");
    std::fs::write(&config, "[log]\nformat = \"json\"\n").unwrap();
    let mut all = vec!["--config", config.to_str().unwrap(), "greydaemon"];
    all.extend_from_slice(args);
    Greygate::start_with_args(bin(), dir, &all, config.clone())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn drop_in_command_line_whitelist_and_save_file() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("grey.save");
    let t = now();
    std::fs::write(
        &save,
        format!(
            "I {} 192.0.2.60\nG {} 192.0.2.61 alice@example.org bob@example.net\nG {} 192.0.2.62 old@example.org bob@example.net\n",
            t - 86400,
            t - 600,
            t - 13 * 3600
        ),
    )
    .unwrap();
    let wl = dir.path().join("whitelist");
    std::fs::write(&wl, "# greydaemon whitelist\n203.0.113\n198.51.100.5\n").unwrap();
    // -m 0.02 minutes: a 1 s delay.
    let mut g = greydaemon(
        dir.path(),
        &["-w", wl.to_str().unwrap(), "-m", "0.02", "-s", "60", "127.0.0.1:0", save.to_str().unwrap()],
    );
    let imported = g.wait_log("the import", |v| message(v) == Some("greydaemon save file imported"));
    assert_eq!(imported.get("addresses").and_then(|v| v.as_u64()), Some(1));
    assert_eq!(imported.get("triplets").and_then(|v| v.as_u64()), Some(1));
    let c = QmailClient::connect(g.qmail_addr());
    // Whitelist file: a /24 and a /32.
    assert_eq!(ask(&c, "203.0.113.99", "a@x.example", &["b@y.example"]), WHITELISTED);
    assert_eq!(ask(&c, "198.51.100.5", "a@x.example", &["b@y.example"]), WHITELISTED);
    // The save file's known address and pending triplet.
    assert_eq!(ask(&c, "192.0.2.60", "a@x.example", &["b@y.example"]), KNOWN_IP);
    assert_eq!(ask(&c, "192.0.2.61", "alice@example.org", &["bob@example.net"]), RETRY_OK);
    assert_eq!(ask(&c, "192.0.2.61", "n@x.example", &["m@y.example"]), KNOWN_IP);
    // Stale in the file: skipped, so new.
    assert_eq!(ask(&c, "192.0.2.62", "old@example.org", &["bob@example.net"]), NEW);
    // Exact-address keys, as greydaemon: the neighbour is not known.
    assert_eq!(ask(&c, "192.0.2.63", "a@x.example", &["b@y.example"]), NEW);
    // No trusted networks: loopback clients are greylisted too.
    assert_eq!(ask(&c, "127.0.0.1", "a@x.example", &["b@y.example"]), NEW);
    past_the_delay();
    assert_eq!(ask(&c, "192.0.2.63", "a@x.example", &["b@y.example"]), RETRY_OK);
    assert!(dir.path().join("grey.save.db").exists(), "the store sits next to the save file");

    // SIGUSR1 writes the save file back in greydaemon's format.
    std::fs::remove_file(&save).unwrap();
    g.signal(Signal::SIGUSR1);
    let text = wait_for("the save file", Duration::from_secs(10), || std::fs::read_to_string(&save).ok());
    let lines: Vec<&str> = text.lines().collect();
    for (kind, ip) in [("I", "192.0.2.60"), ("I", "192.0.2.61"), ("I", "192.0.2.63"), ("G", "192.0.2.62")] {
        assert!(lines.iter().any(|l| l.starts_with(kind) && l.split(' ').nth(2) == Some(ip)), "{kind} {ip}:\n{text}");
    }
    assert!(lines.iter().any(|l| l.ends_with(" 192.0.2.61 alice@example.org bob@example.net")), "{text}");
    for l in &lines {
        let f: Vec<&str> = l.split(' ').collect();
        assert!(matches!((f[0], f.len()), ("I", 3) | ("G", 5)), "greydaemon's line format: {l}");
        assert!(f[1].parse::<i64>().is_ok_and(|ts| (t - 86400 - 5..=now()).contains(&ts)), "{l}");
    }
    // And at shutdown.
    std::fs::remove_file(&save).unwrap();
    assert!(g.stop().success());
    assert!(std::fs::read_to_string(&save).unwrap().contains(" 192.0.2.63 a@x.example b@y.example\n"));

    // Restarted on the file it wrote: nothing is lost or changed.
    let g = greydaemon(dir.path(), &["-m", "0.02", "127.0.0.1:0", save.to_str().unwrap()]);
    let c = QmailClient::connect(g.qmail_addr());
    assert_eq!(ask(&c, "192.0.2.63", "z@x.example", &["w@y.example"]), KNOWN_IP);
}

#[test]
fn drop_in_switches_user_after_binding() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: -u needs root");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let save = state.join("grey.save");
    // Port below 1024: only root may bind it, so binding must come first.
    let port =
        (700..1000).find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok()).expect("a free privileged UDP port");
    let listen = format!("127.0.0.1:{port}");
    let mut g = greydaemon(dir.path(), &["-u", "nobody", &listen, save.to_str().unwrap()]);
    g.wait_log("the user switch", |v| message(v) == Some("now running as user"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", g.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let want = nobody.uid.as_raw().to_string();
    assert!(uid.split_whitespace().skip(1).all(|u| u == want), "real, effective, saved and fs uid: {uid}");
    let c = QmailClient::connect(listen.parse().unwrap());
    assert_eq!(ask(&c, "192.0.2.70", "a@x.example", &["b@y.example"]), NEW);
    let db = std::fs::metadata(state.join("grey.save.db")).unwrap();
    assert_eq!(db.uid(), nobody.uid.as_raw(), "the store was created by the user switched to");
    assert!(g.stop().success());
    assert_eq!(std::fs::metadata(&save).unwrap().uid(), nobody.uid.as_raw());
}

#[test]
fn datagrams_from_outside_allow_from_are_dropped() {
    let (_dir, g, c) = qmail_server("allow_from = [\"192.0.2.0/24\"]\n");
    c.send(&datagram("192.0.2.80", "a@example.org", &["b@example.net"], Ending::Plain));
    g.wait_log("the drop", |v| message(v) == Some("datagram from an address outside qmail.allow_from; dropped"));
    assert_eq!(c.receive(Duration::from_millis(300)), None, "no reply to a loopback peer not in allow_from");
}

#[test]
fn drop_in_debug_writes_the_save_file_after_every_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("grey.save");
    let g = greydaemon(dir.path(), &["-d", "127.0.0.1:0", save.to_str().unwrap()]);
    let c = QmailClient::connect(g.qmail_addr());
    assert_eq!(ask(&c, "192.0.2.90", "", &["bob@example.net"]), NEW);
    let text = wait_for("the save file", Duration::from_secs(10), || {
        std::fs::read_to_string(&save).ok().filter(|t| t.contains(" 192.0.2.90 . bob@example.net\n"))
    });
    assert!(text.starts_with("G "), "{text}");
    assert_eq!(ask(&c, "192.0.2.91", "a@example.org", &["carol@example.net"]), NEW);
    wait_for("the second datagram saved", Duration::from_secs(10), || {
        std::fs::read_to_string(&save).ok().filter(|t| t.contains(" 192.0.2.91 a@example.org carol@example.net\n"))
    });
}
