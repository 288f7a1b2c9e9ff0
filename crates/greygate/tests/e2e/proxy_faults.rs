//! The proxy when things go wrong: an upstream that is down, drops the
//! connection mid-DATA, never answers, or closes with 421; clients that
//! talk too early, open too many sessions, or send garbage. The rule under
//! test: the client never gets a 250 for a message the upstream did not
//! accept, and one bad session breaks nothing else.

use std::time::Duration;

use greygate_testkit::fake_mta::{FakeMta, Script};
use greygate_testkit::greygate::message;
use greygate_testkit::postfix::DOMAIN;
use greygate_testkit::smtp::{Reply, SmtpClient};

use crate::proxy::{gateway, send_part_and_see_it_streamed};

/// EHLO, MAIL and RCPT for bob@test.example; returns the RCPT reply.
fn open_transaction(c: &mut SmtpClient) -> Reply {
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>"))
}

#[test]
fn an_unreachable_upstream_is_a_451() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (_dir, g) = gateway(closed, "upstream_connect_timeout = \"2s\"", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    let reply = open_transaction(&mut c);
    assert_eq!((reply.code, reply.text().as_str()), (451, "4.4.1 Mail server unavailable, please try again later"));
    assert_eq!(c.cmd("DATA").code, 554);
    assert_eq!(c.cmd("QUIT").code, 221);
}

#[test]
fn a_connection_dropped_inside_data_is_a_451_never_250() {
    let mta = FakeMta::start(Script { drop_in_data_after: Some(200), ..Script::default() });
    let (_dir, g) = gateway(mta.addr, "", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(open_transaction(&mut c).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(b"Subject: dropped\r\n\r\n");
    for _ in 0..50 {
        c.send_raw(format!("{}\r\n", "y".repeat(70)).as_bytes());
    }
    let reply = c.cmd(".");
    assert_eq!(reply.code, 451, "{reply:?}");
    assert!(reply.text().starts_with("4.4.2 "), "{reply:?}");
    assert!(mta.messages().is_empty());
    // The next transaction gets a fresh upstream session.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
}

#[test]
fn an_upstream_that_never_answers_the_final_dot_is_a_451() {
    let mta = FakeMta::start(Script { stall_at_end_of_data: true, ..Script::default() });
    let (_dir, g) = gateway(mta.addr, "upstream_timeout = \"1s\"", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(open_transaction(&mut c).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let started = std::time::Instant::now();
    let reply = c.cmd("Subject: stalled\r\n\r\nx\r\n.");
    assert_eq!(reply.code, 451, "{reply:?}");
    // Twice upstream_timeout for the end of data.
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
}

#[test]
fn an_upstream_421_becomes_a_451_and_the_session_goes_on() {
    let mta = FakeMta::start(Script {
        replies: vec![("RCPT TO:<closing@".into(), vec!["421 4.3.2 shutting down".into()])],
        ..Script::default()
    });
    let (_dir, g) = gateway(mta.addr, "", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    let reply = c.cmd(&format!("RCPT TO:<closing@{DOMAIN}>"));
    assert_eq!(reply.code, 451, "{reply:?}");
    assert_eq!(c.cmd("RSET").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    assert_eq!(c.cmd("Subject: after\r\n\r\nx\r\n.").code, 250);
    assert_eq!(mta.messages().len(), 1);
}

#[test]
fn xforward_is_sent_before_each_mail_when_xclient_is_not_offered() {
    let mta = FakeMta::start(Script {
        ehlo: vec!["PIPELINING".into(), "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT".into()],
        ..Script::default()
    });
    let (_dir, g) = gateway(mta.addr, "", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(open_transaction(&mut c).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    assert_eq!(c.cmd("Subject: x\r\n\r\nx\r\n.").code, 250);
    // Greygate's start-up probe may still be talking to the MTA on its own
    // connection; look at this session's alone.
    let commands = mta.session_with("MAIL FROM:");
    let xforward = commands.iter().position(|l| l.starts_with("XFORWARD ")).expect("an XFORWARD");
    assert!(commands[xforward].contains("ADDR=127.0.0.1") && commands[xforward].contains("HELO=client.example"));
    assert!(commands[xforward + 1].starts_with("MAIL FROM:<a@sender.example>"), "{commands:?}");
    assert!(!commands.iter().any(|l| l.starts_with("XCLIENT")));
}

#[test]
fn a_client_that_talks_before_the_greeting_gets_554() {
    let mta = FakeMta::start(Script::default());
    let (_dir, g) = gateway(mta.addr, "greet_pause = \"1s\"\ngreet_pause_exempt = []", "");
    let mut early = SmtpClient::connect_raw(g.smtp_addr());
    early.send_raw(b"EHLO bot.example\r\n");
    let reply = early.reply();
    assert_eq!(reply.code, 554, "{reply:?}");
    assert!(early.closed());
    // A patient client is greeted after the pause.
    let started = std::time::Instant::now();
    let (_c, greeting) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(greeting.code, 220);
    assert!(started.elapsed() >= Duration::from_millis(900));
    g.wait_log("the early talker", |v| message(v).is_some_and(|m| m.starts_with("early talker")));
}

#[test]
fn session_limits_per_client_and_in_total_get_421() {
    let mta = FakeMta::start(Script::default());
    let (_dir, g) =
        gateway(mta.addr, "listen_proxy_protocol = [\"127.0.0.1:0\"]\nmax_sessions = 3\nmax_sessions_per_ip = 2", "");
    let from = |ip: &str| {
        let mut c = SmtpClient::connect_raw(g.proxy_protocol_addr());
        c.send_raw(format!("PROXY TCP4 {ip} 127.0.0.1 40000 25\r\n").as_bytes());
        let greeting = c.reply();
        (c, greeting)
    };
    let (_a1, r) = from("192.0.2.1");
    assert_eq!(r.code, 220);
    let (_a2, r) = from("192.0.2.1");
    assert_eq!(r.code, 220);
    let (_a3, r) = from("192.0.2.1");
    assert_eq!((r.code, r.text().starts_with("4.7.0 ")), (421, true), "{r:?}");
    let (_b1, r) = from("192.0.2.2");
    assert_eq!(r.code, 220);
    let (_c1, r) = from("192.0.2.3");
    assert_eq!((r.code, r.text().starts_with("4.3.2 ")), (421, true), "{r:?}");
    drop(_a1);
    // A freed slot is usable again.
    greygate_testkit::wait_for("a slot to free up", Duration::from_secs(10), || {
        let (_c, r) = from("192.0.2.4");
        (r.code == 220).then_some(())
    });
}

#[test]
fn a_high_load_average_refuses_new_sessions() {
    let mta = FakeMta::start(Script::default());
    // Any machine running this test suite is above this load.
    let (_dir, g) = gateway(mta.addr, "max_load = 0.0001", "");
    let (_c, greeting) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(greeting.code, 421, "{greeting:?}");
    assert!(greeting.text().contains("overloaded"), "{greeting:?}");
}

#[test]
fn bad_commands_get_clear_answers_and_the_session_goes_on() {
    let mta = FakeMta::start(Script::default());
    let (_dir, g) = gateway(mta.addr, "", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    let ehlo = c.cmd("EHLO client.example");
    for hidden in ["CHUNKING", "XCLIENT", "XFORWARD", "STARTTLS", "AUTH"] {
        assert!(!ehlo.lines.iter().any(|l| l.starts_with(hidden)), "{hidden} in {ehlo:?}");
    }
    let long = c.cmd(&format!("NOOP {}", "x".repeat(5000)));
    assert_eq!((long.code, long.text().as_str()), (500, "5.5.2 Error: command line too long"));
    assert_eq!(c.cmd("XCLIENT ADDR=10.0.0.1").code, 550);
    assert_eq!(c.cmd("XFORWARD ADDR=10.0.0.1").code, 550);
    assert_eq!(c.cmd("BDAT 100 LAST").code, 502);
    assert_eq!(c.cmd("STARTTLS").code, 502);
    assert_eq!(c.cmd("FOO bar").code, 500);
    assert_eq!(c.cmd("MAIL FROM:<broken").code, 501);
    assert_eq!(c.cmd("RCPT TO:<x@test.example>").code, 503);
    assert_eq!(c.cmd("NOOP").code, 250);
    assert_eq!(c.cmd("QUIT").code, 221);
    // Only greygate's start-up probe (EHLO, QUIT) reached the MTA.
    let probe = vec!["EHLO gw.test".to_owned(), "QUIT".to_owned()];
    let sessions = mta.sessions();
    assert!(sessions.iter().all(|s| *s == probe), "nothing of this session reached the MTA: {sessions:?}");
}

#[test]
fn an_idle_client_is_timed_out_with_421() {
    let mta = FakeMta::start(Script::default());
    let (_dir, g) = gateway(mta.addr, "command_timeout = \"1s\"", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    let reply = c.reply();
    assert_eq!(reply.code, 421, "{reply:?}");
    assert!(c.closed());
}

#[test]
fn message_data_reaches_the_mta_as_it_arrives_after_our_headers() {
    use greygate_testkit::wait_for;

    let mta = FakeMta::start(Script::default());
    let (_dir, g) = gateway(mta.addr, "", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(open_transaction(&mut c).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    // Our headers wait for the message's first piece, never for its end.
    let part = send_part_and_see_it_streamed(&mut c, &mta);
    c.send_raw(b"last line\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    let message = &mta.messages()[0];
    assert!(message.starts_with("Received: from client.example"), "{message}");
    assert!(message.contains(&format!("\r\nSubject: streaming\r\n\r\n{part}last line\r\n")), "{message}");
    // A clean end of session says QUIT upstream (without waiting for 221).
    assert_eq!(c.cmd("QUIT").code, 221);
    // The start-up probe says QUIT too, on its own connection.
    wait_for("QUIT at the MTA", Duration::from_secs(10), || {
        mta.session_with("MAIL FROM:").last().is_some_and(|l| l.eq_ignore_ascii_case("QUIT")).then_some(())
    });
}
