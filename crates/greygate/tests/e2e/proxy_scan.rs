//! Content scanning in the proxy with the real scanners: clamd (a test
//! database with the EICAR signature) and spamd (`--local`, GTUBE), and
//! real Postfix as the MTA behind greygate.

use std::net::SocketAddr;

use greygate_testkit::greygate::Greygate;
use greygate_testkit::postfix::{DOMAIN, Options, Postfix};
use greygate_testkit::scanners::{Clamd, EICAR, EICAR_NAME, GTUBE, Spamd};
use greygate_testkit::smtp::{Reply, SmtpClient};

use crate::proxy::{gateway, send_part_and_see_it_streamed};

fn postfix() -> Postfix {
    Postfix::start(&Options::default())
}

fn upstream(p: &Postfix) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p.port))
}

/// Send one message (loopback is trusted: no greylisting) and return the
/// reply to its end of data.
fn send(g: &Greygate, subject: &str, body: &str) -> Reply {
    let (mut c, greeting) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(greeting.code, 220);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<alice@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let message = format!(
        "From: Alice <alice@sender.example>\r\nTo: bob@{DOMAIN}\r\nSubject: {subject}\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@sender.example>\r\n\r\n{body}\r\n.\r\n"
    );
    c.send_raw(message.as_bytes());
    let reply = c.reply();
    assert_eq!(c.cmd("QUIT").code, 221);
    reply
}

fn clean_body() -> String {
    "Hello Bob,\r\n\r\nthe minutes of Tuesday's meeting are below.\r\n..a line that starts with a dot\r\n\r\nAlice"
        .into()
}

/// A message `subject` must be in the mailbox, and no message with
/// `refused` in its subject. The clean one is sent after the refused one,
/// so once it has arrived Postfix has had the time to deliver both.
fn delivered_only(mx: &Postfix, count: usize, subject: &str, refused: &str) -> String {
    let messages = mx.wait_messages(count);
    assert!(
        messages.iter().all(|m| !m.contains(&format!("Subject: {refused}"))),
        "a refused message was delivered:\n{messages:#?}"
    );
    messages.into_iter().find(|m| m.contains(&format!("Subject: {subject}"))).expect("the clean message")
}

#[test]
fn eicar_is_refused_and_not_delivered_while_clean_mail_goes_through() {
    let mx = postfix();
    let clamd = Clamd::start();
    let (_dir, g) = gateway(upstream(&mx), "", &format!("[scan.clamd]\naddress = \"{}\"\n", clamd.unix_address()));

    let virus = send(&g, "eicar", &format!("see the attachment\r\n{EICAR}"));
    assert_eq!(virus.code, 554, "{virus:?}");
    assert_eq!(virus.text(), format!("5.7.1 Message refused: virus found ({EICAR_NAME})"));
    let ok = send(&g, "minutes", &clean_body());
    assert_eq!(ok.code, 250, "{ok:?}");
    let message = delivered_only(&mx, 1, "minutes", "eicar");
    assert!(message.contains("\n.a line that starts with a dot\n"), "{message}");
    assert_eq!(mx.messages().len(), 1);

    g.wait_log("the virus verdict", |v| v["message"] == "scan" && v["clamd"] == format!("virus {EICAR_NAME}"));
    g.wait_log("the clean verdict", |v| v["message"] == "scan" && v["clamd"] == "clean" && v["action"] == "deliver");
}

#[test]
fn gtube_is_refused_tempfailed_or_tagged_per_config() {
    let mx = postfix();
    let spamd = Spamd::start();
    let address = spamd.address();

    // Refused above reject_score.
    let (_d1, reject) =
        gateway(upstream(&mx), "", &format!("[scan.spamd]\naddress = \"{address}\"\nreject_score = 20.0\n"));
    let r = send(&reject, "gtube-rejected", &format!("buy now\r\n{GTUBE}"));
    assert_eq!(r.code, 554, "{r:?}");
    // GTUBE scores 1000; other rules move it a little either way.
    let score = |text: &str| -> f64 { text.split("score ").nth(1).unwrap().trim_end_matches(')').parse().unwrap() };
    assert!(r.text().starts_with("5.7.1 Message refused as spam (score "), "{r:?}");
    assert!(score(&r.text()) >= 900.0, "{r:?}");

    // Deferred above tempfail_score (spamd's own threshold is 5).
    let (_d2, defer) =
        gateway(upstream(&mx), "", &format!("[scan.spamd]\naddress = \"{address}\"\ntempfail_score = 20.0\n"));
    let r = send(&defer, "gtube-deferred", &format!("buy now\r\n{GTUBE}"));
    assert_eq!(r.code, 451, "{r:?}");

    // Tagged (the default: no thresholds): delivered with the headers.
    let (_d3, tag) = gateway(upstream(&mx), "", &format!("[scan.spamd]\naddress = \"{address}\"\n"));
    let r = send(&tag, "gtube-tagged", &format!("buy now\r\n{GTUBE}"));
    assert_eq!(r.code, 250, "{r:?}");
    let r = send(&tag, "ham", &clean_body());
    assert_eq!(r.code, 250, "{r:?}");

    let messages = mx.wait_messages(2);
    assert!(messages.iter().all(|m| !m.contains("Subject: gtube-rejected") && !m.contains("Subject: gtube-deferred")));
    let spam = messages.iter().find(|m| m.contains("Subject: gtube-tagged")).expect("the tagged message");
    let status = spam.lines().find(|l| l.starts_with("X-Spam-Status:")).unwrap_or_else(|| panic!("{spam}"));
    assert!(status.starts_with("X-Spam-Status: Yes, score="), "{spam}");
    assert!(spam.contains("GTUBE"), "{spam}");
    let tagged: f64 =
        spam.lines().find_map(|l| l.strip_prefix("X-Spam-Score: ")).expect("X-Spam-Score").parse().unwrap();
    assert!(tagged >= 900.0, "{tagged}");
    // The held message went out whole, our trace header below the tags.
    assert!(spam.contains("by gw.test (greygate 0.1.0)"), "{spam}");
    let ham = messages.iter().find(|m| m.contains("Subject: ham")).expect("the ham");
    assert!(ham.contains("X-Spam-Status: No, score="), "{ham}");
    assert!(ham.contains("\n.a line that starts with a dot\n"), "dot-stuffing after the spool:\n{ham}");
    assert_eq!(mx.messages().len(), 2);
}

#[test]
fn a_scanner_that_is_down_tempfails_by_default_or_accepts_when_configured() {
    let mx = postfix();
    let mut clamd = Clamd::start();
    let address = clamd.address();
    let (_d1, strict) = gateway(upstream(&mx), "", &format!("[scan.clamd]\naddress = \"{address}\"\n"));
    let (_d2, lenient) =
        gateway(upstream(&mx), "", &format!("[scan.clamd]\naddress = \"{address}\"\non_error = \"accept\"\n"));
    assert_eq!(send(&strict, "before", &clean_body()).code, 250);

    clamd.stop();
    let r = send(&strict, "clamd-down", &clean_body());
    assert_eq!((r.code, r.text().as_str()), (451, "4.3.0 Message could not be scanned now, please try again later"));
    assert_eq!(send(&lenient, "unscanned", &clean_body()).code, 250);
    strict.wait_log("the scanner error", |v| {
        v["message"] == "scan" && v["clamd"].as_str().is_some_and(|s| s.starts_with("error: ")) && v["action"] == "451"
    });

    // spamd that is not there at all.
    let (_d3, no_spamd) = gateway(upstream(&mx), "", "[scan.spamd]\naddress = \"127.0.0.1:1\"\n");
    let r = send(&no_spamd, "spamd-down", &clean_body());
    assert_eq!(r.code, 451, "{r:?}");

    clamd.restart();
    assert_eq!(send(&strict, "after", &clean_body()).code, 250);
    let messages = mx.wait_messages(3);
    assert!(messages.iter().all(|m| !m.contains("Subject: clamd-down") && !m.contains("Subject: spamd-down")));
    for subject in ["before", "unscanned", "after"] {
        assert!(messages.iter().any(|m| m.contains(&format!("Subject: {subject}"))), "{subject} missing");
    }
}

#[test]
fn big_messages_spool_to_disk_and_are_scanned_whole() {
    let mx = postfix();
    let clamd = Clamd::start();
    let spamd = Spamd::start();
    // Spool past 4 KiB; hold for tagging, so the message goes to Postfix
    // from the spool file.
    let (_dir, g) = gateway(
        upstream(&mx),
        "",
        &format!(
            "[scan]\nmemory = 4096\n[scan.clamd]\naddress = \"{}\"\n[scan.spamd]\naddress = \"{}\"\n",
            clamd.address(),
            spamd.address()
        ),
    );
    let filler: String =
        (0..3000).map(|i| format!("line {i:05} of a long report\r\n.line {i:05} starting with a dot\r\n")).collect();
    let r = send(&g, "big-virus", &format!("{filler}{EICAR}"));
    assert_eq!(r.code, 554, "EICAR at the end of a spooled message: {r:?}");
    let r = send(&g, "big-clean", &filler.replace("\r\n.", "\r\n.."));
    assert_eq!(r.code, 250, "{r:?}");
    let message = delivered_only(&mx, 1, "big-clean", "big-virus");
    assert!(message.contains("\n.line 02999 starting with a dot\n"), "the end of the held message");
    assert!(message.contains("X-Spam-Status: No"), "spamd saw it (under its 500 KiB limit)");
    assert_eq!(message.matches(" of a long report\n").count(), 3000);
}

#[test]
fn the_scan_limits_apply_their_actions() {
    let mx = postfix();
    // clamd's own stream limit (1 KiB) is below the message: its refusal
    // is an error, never clean.
    let small_clamd = Clamd::start_with("1K");
    let (_d1, g) = gateway(upstream(&mx), "", &format!("[scan.clamd]\naddress = \"{}\"\n", small_clamd.address()));
    let body: String = (0..100).map(|i| format!("line {i} of a message bigger than clamd's limit\r\n")).collect();
    let r = send(&g, "over-clamd-limit", &body);
    assert_eq!(r.code, 451, "{r:?}");
    g.wait_log("clamd's size limit error", |v| {
        v["message"] == "scan" && v["clamd"].as_str().is_some_and(|s| s.contains("size limit exceeded"))
    });

    // Our own max_size: past it, too_big decides (accept by default).
    let clamd = Clamd::start();
    let scan =
        |extra: &str| format!("[scan]\nmax_size = 2048\n{extra}\n[scan.clamd]\naddress = \"{}\"\n", clamd.address());
    let (_d2, deferring) = gateway(upstream(&mx), "", &scan("too_big = \"tempfail\""));
    let r = send(&deferring, "too-big", &body);
    assert_eq!((r.code, r.text().as_str()), (451, "4.3.4 Message too big to be scanned now, please try again later"));
    let (_d3, accepting) = gateway(upstream(&mx), "", &scan(""));
    let r = send(&accepting, "big-unscanned", &body);
    assert_eq!(r.code, 250, "{r:?}");
    let message = delivered_only(&mx, 1, "big-unscanned", "too-big");
    assert!(message.contains("line 99 of a message"), "{message}");
    assert_eq!(mx.messages().len(), 1, "over-clamd-limit must not be delivered");
}

#[test]
fn scan_rules_change_actions_per_recipient() {
    let mx = postfix();
    let clamd = Clamd::start();
    let (_dir, g) = gateway(
        upstream(&mx),
        "",
        &format!(
            "[scan.clamd]\naddress = \"{}\"\n[[scan.rule]]\nname = \"abuse desk gets samples\"\nrecipient = \"bob@{DOMAIN}\"\non_virus = \"accept\"\n",
            clamd.address()
        ),
    );
    let r = send(&g, "sample", &format!("a sample for the abuse desk\r\n{EICAR}"));
    assert_eq!(r.code, 250, "{r:?}");
    let message = &mx.wait_messages(1)[0];
    assert!(message.contains(EICAR), "{message}");
    g.wait_log("the accepted virus", |v| v["message"] == "scan" && v["action"] == "deliver" && v["clamd"] != "clean");
}

#[test]
fn data_reaches_the_mta_while_it_streams_in_and_only_the_final_dot_waits() {
    use std::time::Duration;

    use greygate_testkit::fake_mta::{FakeMta, Script};
    use greygate_testkit::wait_for;

    let mta = FakeMta::start(Script::default());
    let clamd = Clamd::start();
    let (_dir, g) = gateway(mta.addr, "", &format!("[scan.clamd]\naddress = \"{}\"\n", clamd.address()));
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<alice@sender.example>");
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    // The final dot has not been sent, and the MTA already has the data.
    send_part_and_see_it_streamed(&mut c, &mta);
    c.send_raw(format!("{EICAR}\r\n.\r\n").as_bytes());
    let r = c.reply();
    assert_eq!(r.code, 554, "{r:?}");
    // Refused: the upstream connection was dropped before the final dot.
    wait_for("the aborted upstream session", Duration::from_secs(10), || {
        (mta.commands().iter().filter(|l| l.starts_with("DATA")).count() == 1).then_some(())
    });
    assert!(mta.messages().is_empty(), "{:?}", mta.messages());
    // The session goes on: the next message opens a new upstream session.
    c.cmd("MAIL FROM:<alice@sender.example>");
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(b"Subject: next\r\n\r\nclean\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(mta.messages().len(), 1);
}
