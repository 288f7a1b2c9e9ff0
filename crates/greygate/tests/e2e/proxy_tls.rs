//! STARTTLS on both legs, the plaintext-injection defence, certificate
//! reload on SIGHUP, and AUTH relayed to the upstream.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use greygate_testkit::certs::TestCert;
use greygate_testkit::fake_mta::{FakeMta, Script};
use greygate_testkit::greygate::message;
use greygate_testkit::postfix::{DOMAIN, Options, Postfix};
use greygate_testkit::smtp::SmtpClient;
use greygate_testkit::swaks::swaks;
use greygate_testkit::wait_for;
use nix::sys::signal::Signal;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::proxy::gateway;

fn tls_lines(cert: &TestCert) -> String {
    format!("tls_cert = \"{}\"\ntls_key = \"{}\"", cert.cert.display(), cert.key.display())
}

/// Connect, EHLO, STARTTLS, and EHLO again over TLS.
fn tls_session(addr: SocketAddr) -> (SmtpClient, greygate_testkit::smtp::Reply) {
    let (mut c, _) = SmtpClient::connect(addr);
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.lines.contains(&"STARTTLS".to_string()), "{ehlo:?}");
    assert_eq!(c.cmd("STARTTLS").code, 220);
    let mut c = c.start_tls();
    let ehlo = c.cmd("EHLO client.example");
    assert_eq!(ehlo.code, 250);
    (c, ehlo)
}

#[test]
fn starttls_from_the_client_and_to_postfix() {
    let gw_cert = TestCert::new(&["gw.test", "localhost"]);
    let mx_cert = TestCert::new(&["mx.test.example"]);
    let mx = Postfix::start(&Options {
        main_cf: vec![
            format!("smtpd_tls_cert_file = {}", mx_cert.cert.display()),
            format!("smtpd_tls_key_file = {}", mx_cert.key.display()),
            "smtpd_tls_security_level = may".into(),
            "smtpd_tls_received_header = yes".into(),
        ],
        ..Options::default()
    });
    let (_dir, g) = gateway(SocketAddr::from(([127, 0, 0, 1], mx.port)), &tls_lines(&gw_cert), "");
    let s = swaks(g.smtp_addr().port(), &["--tls", "--to", &format!("bob@{DOMAIN}"), "--from", "a@sender.example"]);
    assert!(s.delivered(), "{}", s.transcript);
    let message = &mx.wait_messages(1)[0];
    // Our hop says the client used TLS; Postfix's says greygate did.
    assert!(message.contains("by gw.test (greygate 0.1.0) with ESMTPS id "), "{message}");
    assert!(message.contains("(using TLSv1."), "the upstream leg was not encrypted:\n{message}");
}

#[test]
fn plaintext_sent_after_starttls_is_not_executed() {
    let cert = TestCert::new(&["gw.test"]);
    let mta = FakeMta::start(Script::default());
    let (_dir, g) = gateway(mta.addr, &tls_lines(&cert), "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    // CVE-2011-0411: the attacker appends commands to the STARTTLS packet.
    c.send_raw(b"STARTTLS\r\nRSET\r\nMAIL FROM:<attacker@evil.example>\r\n");
    let reply = c.reply();
    assert_eq!((reply.code, reply.text().as_str()), (220, "2.0.0 Ready to start TLS"));
    let mut c = c.start_tls();
    // The first reply over TLS answers our EHLO, not an injected RSET.
    let ehlo = c.cmd("EHLO client.example");
    assert_eq!(ehlo.lines[0], "gw.test", "{ehlo:?}");
    assert!(!ehlo.lines.contains(&"STARTTLS".to_string()));
    // No MAIL is pending: a new one is not "nested".
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    assert_eq!(c.cmd("Subject: tls\r\n\r\nx\r\n.").code, 250);
    assert!(!mta.commands().iter().any(|l| l.contains("attacker")), "{:?}", mta.commands());
}

#[test]
fn sighup_reloads_the_certificate() {
    let cert = TestCert::new(&["first.test"]);
    let mta = FakeMta::start(Script::default());
    let (_dir, g) = gateway(mta.addr, &tls_lines(&cert), "");
    let der = |path: &std::path::Path| CertificateDer::from_pem_file(path).unwrap().as_ref().to_vec();
    let (c, _) = tls_session(g.smtp_addr());
    assert_eq!(c.peer_certificate().unwrap(), der(&cert.cert));

    let next = TestCert::new(&["second.test"]);
    std::fs::copy(&next.cert, &cert.cert).unwrap();
    std::fs::copy(&next.key, &cert.key).unwrap();
    g.signal(Signal::SIGHUP);
    g.wait_log("the reload", |v| message(v) == Some("SIGHUP: config and lists reloaded"));
    let (c2, _) = tls_session(g.smtp_addr());
    assert_eq!(c2.peer_certificate().unwrap(), der(&next.cert));
    // The session opened before the reload is still alive.
    drop(c);
}

fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[test]
fn auth_is_relayed_over_tls_only_and_authenticated_clients_may_relay() {
    let cert = TestCert::new(&["gw.test"]);
    let login_user = base64::engine::general_purpose::STANDARD.encode("bob");
    let mta = FakeMta::start(Script {
        ehlo: vec!["PIPELINING".into(), "AUTH PLAIN LOGIN".into(), "8BITMIME".into()],
        replies: vec![
            (format!("AUTH PLAIN {}", plain("alice", "secret")), vec!["235 2.7.0 Authentication successful".into()]),
            ("AUTH PLAIN".into(), vec!["535 5.7.8 Authentication failed".into()]),
            ("AUTH LOGIN".into(), vec!["334 VXNlcm5hbWU6".into()]),
            (login_user.clone(), vec!["334 UGFzc3dvcmQ6".into()]),
            ("c2VjcmV0".into(), vec!["235 2.7.0 Authentication successful".into()]),
        ],
        ..Script::default()
    });
    // Nothing is trusted: only AUTH lets a client relay.
    let (_dir, g) = gateway(mta.addr, &tls_lines(&cert), "[lists]\ntrusted_networks = []\n");

    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    let ehlo = c.cmd("EHLO client.example");
    assert!(!ehlo.lines.iter().any(|l| l.starts_with("AUTH")), "AUTH offered without TLS: {ehlo:?}");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", plain("alice", "secret"))).code, 503);

    // The upstream's mechanisms are announced once greygate has seen them.
    let mut c = wait_for("AUTH to be announced over TLS", Duration::from_secs(10), || {
        let (c, ehlo) = tls_session(g.smtp_addr());
        ehlo.lines.contains(&"AUTH PLAIN LOGIN".to_string()).then_some(c)
    });
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", plain("alice", "wrong"))).code, 535);
    assert_eq!(c.cmd(&format!("AUTH PLAIN {}", plain("alice", "secret"))).code, 235);
    assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").code, 250);
    // Outside our domains, and no greylisting: the client authenticated.
    assert_eq!(c.cmd("RCPT TO:<friend@elsewhere.example>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    assert_eq!(c.cmd("Subject: authenticated\r\n\r\nx\r\n.").code, 250);
    let messages = mta.messages();
    assert!(messages[0].contains(") with ESMTPSA id "), "{}", messages[0]);
    g.wait_log("the authenticated decision", |v| {
        v["reason"] == "authenticated" && v["recipient"] == "friend@elsewhere.example"
    });

    // The two-step LOGIN mechanism.
    let (mut c, _) = tls_session(g.smtp_addr());
    assert_eq!(c.cmd("AUTH LOGIN").code, 334);
    assert_eq!(c.cmd(&login_user).code, 334);
    assert_eq!(c.cmd("c2VjcmV0").code, 235);
    g.wait_log("bob's login", |v| message(v) == Some("client authenticated") && v["user"] == "bob");

    // Without AUTH, the same relay attempt is refused.
    let (mut c, _) = tls_session(g.smtp_addr());
    assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<friend@elsewhere.example>").code, 554);
}

#[test]
fn auth_against_real_postfix_sasl() {
    let cert = TestCert::new(&["gw.test"]);
    let mx = Postfix::start(&Options {
        sasl_users: vec![("alice@test.example".into(), "secret".into())],
        main_cf: vec!["smtpd_recipient_restrictions = permit_sasl_authenticated, reject_unauth_destination".into()],
        ..Options::default()
    });
    let (_dir, g) =
        gateway(SocketAddr::from(([127, 0, 0, 1], mx.port)), &tls_lines(&cert), "[lists]\ntrusted_networks = []\n");
    let auth = |password: &str| {
        swaks(
            g.smtp_addr().port(),
            &[
                "--tls",
                "--auth",
                "PLAIN",
                "--auth-user",
                "alice@test.example",
                "--auth-password",
                password,
                "--to",
                "friend@elsewhere.example",
                "--from",
                "alice@test.example",
            ],
        )
    };
    // Wait until greygate has learned that Postfix offers AUTH.
    let mut last = String::new();
    let accepted = std::iter::repeat_with(|| auth("secret"))
        .take(20)
        .find(|s| {
            last = s.transcript.clone();
            s.delivered()
        })
        .unwrap_or_else(|| panic!("AUTH never worked; last try:\n{last}\n{}\n{}", g.raw_log(), mx.log()));
    assert!(accepted.transcript.contains("235 2.7.0 Authentication successful"), "{}", accepted.transcript);
    let refused = auth("wrong");
    assert!(!refused.delivered());
    assert!(refused.reply("535").is_some(), "{}", refused.transcript);
    wait_for("Postfix to log the SASL login", Duration::from_secs(10), || {
        mx.log().contains("sasl_method=PLAIN, sasl_username=alice@test.example").then_some(())
    });
}
