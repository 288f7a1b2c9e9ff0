//! Real Postfix, real swaks, greygate as Postfix's policy service.

use std::time::{Duration, Instant};

use greygate_testkit::postfix::{DOMAIN, Options, Postfix};
use greygate_testkit::swaks::swaks;

use crate::server;

#[test]
fn first_attempt_is_deferred_and_the_retry_is_delivered_with_the_header() {
    let (_dir, g) = server(
        "[greylist]\ndelay = \"2s\"\nhostname = \"gw.test\"\n[replies]\ngreylist = \"451 4.7.1 Greylisted by greygate, retry in {remaining} seconds\"\n",
    );
    let postfix = Postfix::start(&Options { policy: Some(format!("inet:{}", g.addr())), ..Options::default() });
    let rcpt = format!("bob@{DOMAIN}");
    let send = || {
        swaks(
            postfix.port,
            &[
                "--to",
                &rcpt,
                "--from",
                "alice@sender.example",
                "--helo",
                "mail.sender.example",
                "--xclient-addr",
                "192.0.2.10",
                "--xclient-name",
                "mail.sender.example",
                "--header",
                "Subject: greylisting e2e",
            ],
        )
    };

    let first = send();
    let started = Instant::now();
    assert!(!first.delivered(), "{}", first.transcript);
    let reply = first.reply("450").unwrap_or_else(|| panic!("no 450 in:\n{}", first.transcript));
    assert!(
        reply.contains(&format!(
            "450 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted by greygate, retry in 2 seconds"
        )),
        "{reply}"
    );
    assert!(postfix.messages().is_empty());

    while started.elapsed() < Duration::from_millis(2200) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let retry = send();
    assert!(retry.delivered(), "{}", retry.transcript);
    let messages = postfix.wait_messages(1);
    let message = &messages[0];
    assert!(message.contains("Subject: greylisting e2e"), "{message}");
    let header = message
        .lines()
        .find(|l| l.starts_with("X-Greylist:"))
        .unwrap_or_else(|| panic!("no X-Greylist in:\n{message}"));
    assert!(
        header.starts_with("X-Greylist: delayed ") && header.contains(" seconds by greygate-0.1.0 at gw.test; "),
        "{header}"
    );
    // Postfix saw the original client through XCLIENT, and greygate's
    // decisions name it.
    assert!(g.logs().iter().any(|v| v["client"] == "192.0.2.10" && v["action"] == "PREPEND"), "{}", g.raw_log());
}

#[test]
fn whitelisted_recipients_and_trusted_clients_are_delivered_at_once() {
    let (_dir, g) = server("");
    let postfix = Postfix::start(&Options { policy: Some(format!("inet:{}", g.addr())), ..Options::default() });
    let postmaster = swaks(
        postfix.port,
        &["--to", &format!("postmaster@{DOMAIN}"), "--from", "someone@sender.example", "--xclient-addr", "192.0.2.20"],
    );
    assert!(postmaster.delivered(), "{}", postmaster.transcript);
    // Without XCLIENT the client is 127.0.0.1, a trusted network.
    let local = swaks(postfix.port, &["--to", &format!("carol@{DOMAIN}"), "--from", "app@localhost.example"]);
    assert!(local.delivered(), "{}", local.transcript);
    assert_eq!(postfix.wait_messages(2).len(), 2);
    let greylisted = swaks(
        postfix.port,
        &["--to", &format!("carol@{DOMAIN}"), "--from", "someone@sender.example", "--xclient-addr", "192.0.2.20"],
    );
    assert!(greylisted.reply("450").is_some(), "{}", greylisted.transcript);
}
