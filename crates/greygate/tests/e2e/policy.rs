//! The Postfix policy protocol against the running server, byte for byte.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use greygate_testkit::policy::{PolicyClient, rcpt_request};

use crate::server;

const GREYLISTED: &str =
    "DEFER_IF_PERMIT 4.7.1 Greylisted: first attempts from new senders are delayed, please retry in 300 seconds";

#[test]
fn first_attempt_is_deferred_with_lf_only_reply() {
    let (_dir, g) = server("");
    let mut c = PolicyClient::connect(g.addr());
    c.send(rcpt_request("192.0.2.10", "alice@example.org", "bob@example.net", "a.1").as_bytes());
    assert_eq!(c.reply(), format!("action={GREYLISTED}\n\n"), "exact bytes, LF only");
    // Same connection, next request: persistent connections.
    assert_eq!(c.ask(&rcpt_request("192.0.2.10", "alice@example.org", "bob@example.net", "a.2")), GREYLISTED);
}

#[test]
fn retry_after_the_delay_gets_one_x_greylist_header_per_message() {
    let (_dir, g) = server("[greylist]\ndelay = \"1s\"\nhostname = \"mx.test\"\n");
    let mut c = PolicyClient::connect(g.addr());
    let ask = |c: &mut PolicyClient, rcpt: &str, instance: &str| {
        c.ask(&rcpt_request("192.0.2.10", "alice@example.org", rcpt, instance))
    };
    assert!(ask(&mut c, "bob@example.net", "m.1").starts_with("DEFER_IF_PERMIT"));
    assert!(ask(&mut c, "carol@example.net", "m.1").starts_with("DEFER_IF_PERMIT"));
    std::thread::sleep(Duration::from_millis(2100));
    // The retry carries two recipients: one header for the message.
    let first = ask(&mut c, "bob@example.net", "m.2");
    assert!(first.starts_with("PREPEND X-Greylist: delayed "), "{first}");
    assert!(first.contains(" seconds by greygate-0.1.0 at mx.test; "), "{first}");
    assert_eq!(ask(&mut c, "carol@example.net", "m.2"), "DUNNO");
    // Later messages pass without a header.
    assert_eq!(ask(&mut c, "bob@example.net", "m.3"), "DUNNO");
}

#[test]
fn trusted_whitelisted_and_blacklisted() {
    let (_dir, g) =
        server("[lists]\nblacklist_senders = [\"spammer.example\"]\nwhitelist_clients = [\"friendly.example\"]\n");
    let mut c = PolicyClient::connect(g.addr());
    assert_eq!(c.ask(&rcpt_request("127.0.0.1", "a@b.example", "r@x", "i")), "DUNNO", "loopback is trusted");
    assert_eq!(c.ask(&rcpt_request("192.0.2.1", "a@b.example", "postmaster@x", "i")), "DUNNO");
    assert_eq!(
        c.ask(&rcpt_request("192.0.2.1", "x@mail.spammer.example", "r@x", "i")),
        "554 5.7.1 Rejected by local policy"
    );
    let named = rcpt_request("192.0.2.1", "a@b.example", "r@x", "i")
        .replace("client_name=unknown", "client_name=mx.friendly.example");
    assert_eq!(c.ask(&named), "DUNNO");
    let unverified = rcpt_request("192.0.2.1", "a@b.example", "r@x", "i")
        .replace("reverse_client_name=unknown", "reverse_client_name=mx.friendly.example");
    assert!(c.ask(&unverified).starts_with("DEFER_IF_PERMIT"), "an unverified PTR name is not trusted");
}

#[test]
fn other_stages_and_missing_attributes_answer_dunno() {
    let (_dir, g) = server("");
    let mut c = PolicyClient::connect(g.addr());
    let at_data =
        rcpt_request("192.0.2.1", "a@b.example", "r@x", "i").replace("protocol_state=RCPT", "protocol_state=DATA");
    assert_eq!(c.ask(&at_data), "DUNNO");
    assert_eq!(c.ask("request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@b\nrecipient=r@x\n\n"), "DUNNO");
    let bad_ip = rcpt_request("not-an-ip", "a@b.example", "r@x", "i");
    assert_eq!(c.ask(&bad_ip), "DUNNO");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_dir, g) = server("[lists]\nwhitelist_recipients = [\"postmaster@\"]\n");
    let mut c = PolicyClient::connect(g.addr());
    let mut batch = String::new();
    batch.push_str(&rcpt_request("192.0.2.1", "a@b.example", "r@x", "i"));
    batch.push_str(&rcpt_request("192.0.2.1", "a@b.example", "postmaster@x", "i"));
    batch.push_str(&rcpt_request("127.0.0.1", "a@b.example", "r@x", "i"));
    c.send(batch.as_bytes());
    assert!(c.reply().starts_with("action=DEFER_IF_PERMIT"));
    assert_eq!(c.reply(), "action=DUNNO\n\n");
    assert_eq!(c.reply(), "action=DUNNO\n\n");
}

#[test]
fn malformed_requests_close_the_connection_without_a_reply() {
    let (_dir, g) = server("");
    let cases: Vec<Vec<u8>> = vec![
        b"this is not an attribute\n\n".to_vec(),
        b"request=something_else\nclient_address=192.0.2.1\n\n".to_vec(),
        b"=value\n\n".to_vec(),
        b"request=smtpd_access_policy\nsender=a\0b\n\n".to_vec(),
        // An over-long line: no LF within the limit (8192).
        [b"sender=".as_slice(), &vec![b'a'; 10_000]].concat(),
    ];
    for bytes in cases {
        let mut c = PolicyClient::connect(g.addr());
        // A valid request first, in the same write: the answer to it still
        // comes, then the end of the stream (not a reset, which could
        // destroy that answer unread).
        c.send(&[rcpt_request("127.0.0.1", "a@b", "r@x", "i").as_bytes(), &bytes].concat());
        assert_eq!(c.reply(), "action=DUNNO\n\n");
        assert!(c.closed_without_reply(), "input {:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(60)]));
        g.wait_log("the malformed request logged", |v| {
            v.get("level").and_then(|l| l.as_str()) == Some("WARN")
                && v.get("message").and_then(|m| m.as_str()).is_some_and(|m| m.contains("closing without reply"))
        });
    }
    // The server is unharmed.
    let mut c = PolicyClient::connect(g.addr());
    assert_eq!(c.ask(&rcpt_request("127.0.0.1", "a@b", "r@x", "i")), "DUNNO");
}

#[test]
fn a_request_split_into_single_bytes_is_answered_once() {
    let (_dir, g) = server("");
    let mut s = TcpStream::connect(g.addr()).unwrap();
    s.set_nodelay(true).unwrap();
    for b in rcpt_request("127.0.0.1", "a@b", "r@x", "i").as_bytes() {
        s.write_all(&[*b]).unwrap();
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = vec![0u8; 64];
    let n = s.read(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"action=DUNNO\n\n");
}

#[test]
fn crlf_requests_are_understood_and_answered_with_lf() {
    let (_dir, g) = server("");
    let mut c = PolicyClient::connect(g.addr());
    let crlf = rcpt_request("192.0.2.1", "a@b.example", "r@x", "i").replace('\n', "\r\n");
    c.send(crlf.as_bytes());
    let reply = c.reply();
    assert!(reply.starts_with("action=DEFER_IF_PERMIT") && !reply.contains('\r'), "{reply:?}");
}

#[test]
fn unix_socket_listener() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/policy.sock");
    let config = format!(
        "[store]\npath = \"{}\"\n[policy]\nlisten = [\"unix:{}\"]\nsocket_mode = \"0660\"\n",
        dir.path().join("g.db").display(),
        socket.display()
    );
    let mut g = greygate_testkit::greygate::Greygate::start(crate::bin(), dir.path(), &config);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o660);
    let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    s.write_all(rcpt_request("192.0.2.1", "a@b.example", "r@x", "i").as_bytes()).unwrap();
    let mut reply = String::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with("\n\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        reply.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    assert!(reply.starts_with("action=DEFER_IF_PERMIT 4.7.1 "), "{reply}");
    drop(s);
    assert!(g.stop().success());
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

#[test]
fn hundreds_of_concurrent_clients() {
    let (_dir, g) = server("");
    let addr = g.addr();
    let threads: Vec<_> = (0..300)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = PolicyClient::connect(addr);
                for i in 0..20 {
                    let a = c.ask(&rcpt_request("192.0.2.7", &format!("s{t}@x.example"), &format!("r{i}@y"), "i"));
                    assert!(a.starts_with("DEFER_IF_PERMIT"), "{a}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every triplet was recorded exactly once.
    let (code, out) = crate::admin(&g, &["stats", "--json"]);
    assert_eq!(code, 0);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["stats"]["pending"], 6000);
}

#[test]
fn connections_above_the_limit_are_closed_and_logged() {
    let (_dir, g) = server("max_connections = 2\n");
    // `max_connections` belongs to [policy]; it follows the [policy] header
    // written by `server`.
    let mut a = PolicyClient::connect(g.addr());
    let mut b = PolicyClient::connect(g.addr());
    assert_eq!(a.ask(&rcpt_request("127.0.0.1", "a@b", "r@x", "i")), "DUNNO");
    assert_eq!(b.ask(&rcpt_request("127.0.0.1", "a@b", "r@x", "i")), "DUNNO");
    let mut c = PolicyClient::connect(g.addr());
    assert!(c.closed_without_reply());
    g.wait_log("the refusal logged", |v| {
        v.get("message").and_then(|m| m.as_str()) == Some("too many connections; closing this one")
    });
    drop(a);
    // Once the server has seen the close, the slot is free again.
    let reply = greygate_testkit::wait_for("a free slot", Duration::from_secs(5), || {
        let mut d = PolicyClient::connect(g.addr());
        d.send(rcpt_request("127.0.0.1", "a@b", "r@x", "i").as_bytes());
        d.try_reply().ok()
    });
    assert_eq!(reply, "action=DUNNO\n\n");
}

#[test]
fn an_idle_connection_is_closed_and_a_busy_one_is_kept() {
    let (_dir, g) = server("idle_timeout = \"1s\"\n");
    let mut busy = PolicyClient::connect(g.addr());
    let mut idle = PolicyClient::connect(g.addr());
    let opened = std::time::Instant::now();
    // Requests every 300 ms keep a connection open well past the timeout
    // counted from its start.
    while opened.elapsed() < Duration::from_millis(2500) {
        assert_eq!(busy.ask(&rcpt_request("127.0.0.1", "a@b", "r@x", "i")), "DUNNO");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(idle.closed_without_reply(), "the silent connection was closed");
    // Once silent, the busy one is closed too, a timeout after its last request.
    let quiet = std::time::Instant::now();
    assert!(busy.closed_without_reply());
    let waited = quiet.elapsed();
    assert!(waited >= Duration::from_millis(600) && waited < Duration::from_secs(3), "closed after {waited:?}");
}

#[test]
fn the_default_text_log_has_one_logfmt_line_per_decision() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greygate.toml");
    let store = dir.path().join("greygate.db");
    std::fs::write(&config, format!("[store]\npath = \"{}\"\n[policy]\nlisten = [\"127.0.0.1:0\"]\n", store.display()))
        .unwrap();
    let mut child = Command::new(crate::bin())
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let ready = lines.by_ref().find(|l| l.contains(" INFO greygate ready ")).expect("a ready line");
    assert!(ready.contains(&format!(" location={} ", store.display())), "{ready}");
    let port: String = ready.split("127.0.0.1:").nth(1).unwrap().chars().take_while(char::is_ascii_digit).collect();
    let mut c = PolicyClient::connect(format!("127.0.0.1:{port}").parse().unwrap());
    let answer = c.ask(&rcpt_request("192.0.2.10", "Alice+news@Example.org", "bob@example.net", "a.1"));
    assert!(answer.starts_with("DEFER_IF_PERMIT"), "{answer}");
    drop(c);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let decisions: Vec<String> = lines.filter(|l| l.contains(" INFO decision ")).collect();
    assert!(child.wait().unwrap().success());
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let want = " INFO decision frontend=policy client=192.0.2.10 client_name=unknown helo=client.example \
                sender=Alice+news@Example.org recipient=bob@example.net id=\"\" action=DEFER_IF_PERMIT reason=new \
                learning=false net=192.0.2.0/24";
    assert!(decisions[0].ends_with(want), "{}", decisions[0]);
}
