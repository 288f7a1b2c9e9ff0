//! The SMTP proxy in front of real Postfix: swaks or a raw client →
//! greygate → Postfix → the delivered mailbox.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use greygate_testkit::dns::DnsServer;
use greygate_testkit::greygate::Greygate;
use greygate_testkit::haproxy::Haproxy;
use greygate_testkit::postfix::{DOMAIN, Options, Postfix};
use greygate_testkit::smtp::SmtpClient;
use greygate_testkit::swaks::swaks;
use greygate_testkit::wait_for;

use crate::bin;
use crate::checks::dns_section;

/// Inside DATA: send a header and 2,000 lines without the final dot, and
/// wait until the MTA has them all (the proxy streams the message, it does
/// not hold it). Returns the lines, to find them in the delivered message.
pub fn send_part_and_see_it_streamed(c: &mut SmtpClient, mta: &greygate_testkit::fake_mta::FakeMta) -> String {
    let part: String = (0..2000).map(|i| format!("streamed line {i:04}\r\n")).collect();
    c.send_raw(format!("Subject: streaming\r\n\r\n{part}").as_bytes());
    wait_for("the data at the MTA before the end of the message", Duration::from_secs(10), || {
        (mta.data_bytes.load(std::sync::atomic::Ordering::Relaxed) >= part.len()).then_some(())
    });
    assert!(mta.messages().is_empty());
    part
}

/// greygate as an SMTP proxy relaying to `upstream`, accepting mail for
/// test.example. `proxy` lines go into `[proxy]`; `extra` may add other
/// sections. Without a `[dns]` section in `extra`, client names are looked
/// up in an empty test zone, never in the system's DNS.
pub fn gateway(upstream: SocketAddr, proxy: &str, extra: &str) -> (tempfile::TempDir, Greygate) {
    let dir = tempfile::tempdir().unwrap();
    let dns = if extra.contains("[dns]") { String::new() } else { no_names_dns() };
    let config = format!(
        "[store]\npath = \"{db}\"\nlists_refresh = \"100ms\"\n[policy]\nlisten = []\n[proxy]\nlisten = [\"127.0.0.1:0\"]\nupstream = [\"{upstream}\"]\nhostname = \"gw.test\"\nrelay_domains = [\"{DOMAIN}\"]\n{proxy}\n{extra}\n{dns}",
        db = dir.path().join("greygate.db").display(),
    );
    let g = Greygate::start(bin(), dir.path(), &config);
    (dir, g)
}

/// A `[dns]` section for a test DNS server with no records, shared by the
/// tests that do not look up names themselves.
pub fn no_names_dns() -> String {
    static EMPTY: OnceLock<DnsServer> = OnceLock::new();
    dns_section(EMPTY.get_or_init(DnsServer::start))
}

fn postfix() -> Postfix {
    Postfix::start(&Options::default())
}

fn upstream(p: &Postfix) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p.port))
}

fn sleep_until(deadline: Instant) {
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn first_attempt_is_greylisted_and_the_retry_is_delivered_with_our_headers() {
    let mx = postfix();
    // Loopback is trusted by default; greylist it here.
    let (_dir, g) = gateway(
        upstream(&mx),
        "",
        "[greylist]\ndelay = \"2s\"\nhostname = \"gw.test\"\n[lists]\ntrusted_networks = []\n",
    );
    let rcpt = format!("bob@{DOMAIN}");
    let port = g.smtp_addr().port();
    // From 127.0.0.5: the address Postfix must see through XCLIENT.
    let send = || {
        swaks(
            port,
            &[
                "--to",
                &rcpt,
                "--from",
                "alice@sender.example",
                "--helo",
                "mail.sender.example",
                "--local-interface",
                "127.0.0.5",
                "--header",
                "Subject: proxy e2e",
            ],
        )
    };
    let first = send();
    let started = Instant::now();
    assert!(!first.delivered(), "{}", first.transcript);
    let reply = first.reply("451").unwrap_or_else(|| panic!("no 451 in:\n{}", first.transcript));
    assert!(reply.contains("451 4.7.1 Greylisted: first attempts from new senders are delayed"), "{reply}");
    assert!(mx.messages().is_empty());
    assert!(!mx.log().contains("127.0.0.5"), "a greylisted session must not reach the MTA:\n{}", mx.log());

    sleep_until(started + Duration::from_millis(2200));
    let retry = send();
    assert!(retry.delivered(), "{}", retry.transcript);
    let message = &mx.wait_messages(1)[0];
    assert!(message.contains("Subject: proxy e2e"), "{message}");
    let x_greylist = message.lines().find(|l| l.starts_with("X-Greylist:")).unwrap_or_else(|| panic!("{message}"));
    assert!(x_greylist.contains(" seconds by greygate-0.1.0 at gw.test; "), "{x_greylist}");
    assert!(
        message.contains(
            "Received: from mail.sender.example (unknown [127.0.0.5])\n\tby gw.test (greygate 0.1.0) with ESMTP id "
        ),
        "{message}"
    );
    // The real Postfix logged the original client (XCLIENT), not greygate.
    wait_for("Postfix to log the original client", Duration::from_secs(10), || {
        mx.log().contains("client=unknown[127.0.0.5]").then_some(())
    });
    g.wait_log("the first decision", |v| {
        v["client"] == "127.0.0.5" && v["helo"] == "mail.sender.example" && v["reason"] == "new"
    });
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mx = postfix();
    let (_dir, g) = gateway(
        upstream(&mx),
        "",
        &format!("[lists]\ntrusted_networks = []\nwhitelist_recipients = [\"ok@{DOMAIN}\"]\n"),
    );
    let (mut c, greeting) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(greeting.code, 220);
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.lines.contains(&"PIPELINING".to_string()), "{ehlo:?}");
    c.send_raw(
        format!("MAIL FROM:<a@sender.example>\r\nRCPT TO:<grey@{DOMAIN}>\r\nRCPT TO:<ok@{DOMAIN}>\r\nDATA\r\n")
            .as_bytes(),
    );
    let codes: Vec<u16> = (0..4).map(|_| c.reply().code).collect();
    assert_eq!(codes, [250, 451, 250, 354]);
    c.send_raw(b"Subject: pipelined\r\n\r\n..leading dot kept\r\n.\r\nQUIT\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 221);
    let message = &mx.wait_messages(1)[0];
    assert!(message.contains("\n.leading dot kept\n"), "dot-stuffing must survive the relay:\n{message}");
    assert!(message.contains(&format!("for <ok@{DOMAIN}>")), "{message}");

    // swaks's own pipelining, end to end.
    let s = swaks(g.smtp_addr().port(), &["--pipeline", "--to", &format!("ok@{DOMAIN}"), "--from", "b@sender.example"]);
    assert!(s.delivered(), "{}", s.transcript);
    mx.wait_messages(2);
}

#[test]
fn relay_is_refused_with_the_default_config() {
    let mx = postfix();
    // Only the listener and the upstream are set; relay settings are the
    // defaults. The client comes from outside (192.0.2.7) through the
    // PROXY protocol, as behind a load balancer. (Its name is looked up in
    // an empty test zone, not in the system's DNS.)
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[store]\npath = \"{}\"\n[policy]\nlisten = []\n[proxy]\nlisten_proxy_protocol = [\"127.0.0.1:0\"]\nupstream = [\"{}\"]\n{}",
        dir.path().join("greygate.db").display(),
        upstream(&mx),
        no_names_dns()
    );
    let g = Greygate::start(bin(), dir.path(), &config);
    let mut c = SmtpClient::connect_raw(g.proxy_protocol_addr());
    c.send_raw(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
    assert_eq!(c.reply().code, 220);
    assert_eq!(c.cmd("EHLO outside.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<spammer@outside.example>").code, 250);
    for rcpt in ["victim@elsewhere.example", &format!("user@{DOMAIN}"), "user@localhost"] {
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(reply.code, 554, "{rcpt}: {reply:?}");
        assert_eq!(reply.text(), format!("5.7.1 <{rcpt}>: Relay access denied"));
    }
    assert_eq!(c.cmd("DATA").code, 554);
    assert!(mx.messages().is_empty());
    g.wait_log("the relay refusal", |v| v["reason"] == "relay_denied" && v["client"] == "192.0.2.7");
}

#[test]
fn haproxy_in_front_passes_the_real_client_address() {
    let mx = postfix();
    let (_dir, g) = gateway(
        upstream(&mx),
        "listen_proxy_protocol = [\"127.0.0.1:0\"]",
        "[lists]\ntrusted_networks = []\nwhitelist_clients = [\"127.0.0.9\"]\n",
    );
    for v2 in [true, false] {
        let lb = Haproxy::start(g.proxy_protocol_addr(), v2);
        let s = swaks(
            lb.port,
            &["--to", &format!("bob@{DOMAIN}"), "--from", "a@sender.example", "--local-interface", "127.0.0.9"],
        );
        assert!(s.delivered(), "v2={v2}: {}", s.transcript);
    }
    mx.wait_messages(2);
    g.wait_log("the proxied client", |v| v["client"] == "127.0.0.9" && v["reason"] == "whitelisted");
    let log = wait_for("Postfix to log the client", Duration::from_secs(10), || {
        let log = mx.log();
        (log.matches("client=unknown[127.0.0.9]").count() == 2).then_some(log)
    });
    assert!(!log.contains("client=localhost[127.0.0.1]"), "{log}");
}

#[test]
fn client_names_come_from_reverse_dns_for_host_lists_and_the_mta() {
    let mx = postfix();
    let dns = DnsServer::start();
    let ip = |last: u8| std::net::IpAddr::from([192, 0, 2, last]);
    // A pool host of a big sender (the built-in whitelist has google.com),
    // a PTR that does not resolve back, and a DNS server that never answers.
    dns.host("mail-25.outbound.google.com", ip(25));
    dns.ptr(ip(26), "mail-26.outbound.google.com");
    dns.timeout(&greygate_testkit::dns::reverse_name(ip(28)));
    let (_dir, g) = gateway(
        upstream(&mx),
        "listen_proxy_protocol = [\"127.0.0.1:0\"]",
        &format!("[lists]\ntrusted_networks = []\nwhitelist_clients = [\"192.0.2.28\"]\n{}", dns_section(&dns)),
    );
    let session = |last: u8| {
        let mut c = SmtpClient::connect_raw(g.proxy_protocol_addr());
        c.send_raw(format!("PROXY TCP4 192.0.2.{last} 127.0.0.1 40000 25\r\n").as_bytes());
        assert_eq!(c.reply().code, 220);
        assert_eq!(c.cmd("EHLO client.example").code, 250);
        assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
        let reply = c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>"));
        (c, reply)
    };
    let deliver = |c: &mut SmtpClient, subject: &str| {
        assert_eq!(c.cmd("DATA").code, 354);
        assert_eq!(c.cmd(&format!("Subject: {subject}\r\n\r\nx\r\n.")).code, 250);
    };

    // Confirmed: the host name list matches, and the MTA is told the name.
    let (mut c, reply) = session(25);
    assert_eq!(reply.code, 250, "{reply:?}");
    deliver(&mut c, "confirmed");
    let message = &mx.wait_messages(1)[0];
    assert!(message.contains("Received: from client.example (mail-25.outbound.google.com [192.0.2.25])"), "{message}");
    wait_for("Postfix to log the client's name", Duration::from_secs(10), || {
        mx.log().contains("client=mail-25.outbound.google.com[192.0.2.25]").then_some(())
    });
    g.wait_log("the whitelisted client", |v| {
        v["client"] == "192.0.2.25" && v["client_name"] == "mail-25.outbound.google.com" && v["reason"] == "whitelisted"
    });

    // A PTR alone proves nothing: greylisted, and the name stays unknown.
    let (_c, reply) = session(26);
    assert_eq!(reply.code, 451, "{reply:?}");
    g.wait_log("the unconfirmed client", |v| {
        v["client"] == "192.0.2.26" && v["client_name"] == "unknown" && v["reason"] == "new"
    });

    // DNS down: the decision waits at most for the lookup's bound, then the
    // mail goes on without a name.
    let started = Instant::now();
    let (mut c, reply) = session(28);
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    deliver(&mut c, "no dns");
    mx.wait_messages(2);
    wait_for("Postfix to log the nameless client", Duration::from_secs(10), || {
        mx.log().contains("client=unknown[192.0.2.28]").then_some(())
    });
}

#[test]
fn smuggling_sequences_stay_inside_one_message() {
    let mx = postfix();
    let (_dir, g) = gateway(upstream(&mx), "", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(
        format!(
            "Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<evil@sender.example>\r\nRCPT TO:<carol@{DOMAIN}>\r\nDATA\r\nSubject: smuggled\r\n\r\nbad\r\n.\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(c.reply().code, 250);
    // A marker message after it: once it is in, everything before it is.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    assert_eq!(c.cmd("Subject: marker\r\n\r\nend\r\n.").code, 250);
    let messages = mx.wait_messages(2);
    assert_eq!(messages.len(), 2, "exactly the outer message and the marker");
    let outer = messages.iter().find(|m| m.contains("Subject: outer")).expect("the outer message");
    assert!(outer.contains("\nSubject: smuggled\n"), "the smuggled part is body text:\n{outer}");
    assert!(messages.iter().any(|m| m.contains("Subject: marker")));
}

#[test]
fn bare_newlines_are_refused_when_configured() {
    let mx = postfix();
    let (_dir, g) = gateway(upstream(&mx), "bare_newline = \"reject\"", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send_raw(b"Subject: bare\r\n\r\none\ntwo\r\n.\r\n");
    let reply = c.reply();
    assert_eq!((reply.code, reply.text().as_str()), (550, "5.5.2 Message contains bare CR or LF characters"));
    // The session goes on, and only the clean message arrives.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    assert_eq!(c.cmd("Subject: clean\r\n\r\nok\r\n.").code, 250);
    let messages = mx.wait_messages(1);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: clean"));
}

#[test]
fn oversized_messages_get_552_and_are_not_delivered() {
    let mx = postfix();
    let (_dir, g) = gateway(upstream(&mx), "max_message_size = 65536", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 65536"), "{ehlo:?}");
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example> SIZE=100000").code, 552);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let line = format!("{}\r\n", "x".repeat(998));
    c.send_raw(b"Subject: big\r\n\r\n");
    for _ in 0..100 {
        c.send_raw(line.as_bytes());
    }
    let reply = c.cmd(".");
    assert_eq!((reply.code, reply.text().as_str()), (552, "5.3.4 Message size exceeds fixed limit"));
    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    assert_eq!(c.cmd("Subject: small\r\n\r\nok\r\n.").code, 250);
    let messages = mx.wait_messages(1);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: small"));
}

#[test]
fn postfix_refusals_are_passed_on_and_nothing_is_delivered() {
    let recipients = "smtpd_recipient_restrictions = \
        check_sender_access inline:{ { badsender@sender.example = 553 5.7.1 sender refused } }, \
        check_recipient_access inline:{ { nobody@DOMAIN = 550 5.1.1 no such user }, { busy@DOMAIN = 450 4.2.1 mailbox busy } }, \
        reject_unauth_destination";
    let end_of_data = "smtpd_end_of_data_restrictions = check_sender_access inline:{ { eod@sender.example = 554 5.7.1 content refused } }";
    let mx = Postfix::start(&Options {
        main_cf: vec![recipients.replace("DOMAIN", DOMAIN), end_of_data.into()],
        ..Options::default()
    });
    let (_dir, g) = gateway(upstream(&mx), "", "");
    let (mut c, _) = SmtpClient::connect(g.smtp_addr());
    assert_eq!(c.cmd("EHLO client.example").code, 250);

    assert_eq!(c.cmd("MAIL FROM:<badsender@sender.example>").code, 250);
    let reply = c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>"));
    assert_eq!(reply.code, 553, "{reply:?}");
    assert!(reply.text().contains("sender refused"), "{reply:?}");
    assert_eq!(c.cmd("RSET").code, 250);

    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    let nobody = c.cmd(&format!("RCPT TO:<nobody@{DOMAIN}>"));
    assert_eq!(nobody.code, 550, "{nobody:?}");
    let busy = c.cmd(&format!("RCPT TO:<busy@{DOMAIN}>"));
    assert_eq!(busy.code, 450, "{busy:?}");
    assert_eq!(c.cmd("DATA").code, 554, "no recipient was accepted");
    assert_eq!(c.cmd("RSET").code, 250);

    assert_eq!(c.cmd("MAIL FROM:<eod@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let end = c.cmd("Subject: refused at the end\r\n\r\nx\r\n.");
    assert_eq!(end.code, 554, "{end:?}");
    assert!(end.text().contains("content refused"), "{end:?}");

    assert_eq!(c.cmd("MAIL FROM:<a@sender.example>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<bob@{DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let marker = c.cmd("Subject: marker\r\n\r\nok\r\n.");
    assert_eq!(marker.code, 250, "{marker:?}\n{}", mx.log());
    let messages = mx.wait_messages(1);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: marker"));
}
