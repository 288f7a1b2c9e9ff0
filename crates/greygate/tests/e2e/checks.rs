//! Sender checks end to end: SPF, DNS lists, reverse DNS and HELO, with
//! DNS from the in-process server on 127.0.0.1 (never the Internet),
//! through the policy protocol and through real Postfix.

use std::time::{Duration, Instant};

use greygate_testkit::dns::DnsServer;
use greygate_testkit::policy::{PolicyClient, rcpt_request};
use greygate_testkit::postfix::{DOMAIN, Options, Postfix};
use greygate_testkit::swaks::swaks;

use crate::{admin, server};

/// SPF records of the test senders: `pool.example` sends from two /24s.
fn spf_zone() -> DnsServer {
    let dns = DnsServer::start();
    dns.txt("pool.example", "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 -all")
        .txt("fail.example", "v=spf1 ip4:203.0.113.1 -all")
        .txt("soft.example", "v=spf1 ~all")
        .timeout("slow.example");
    dns
}

pub fn dns_section(dns: &DnsServer) -> String {
    format!("[dns]\nnameservers = [\"{}\"]\ntimeout = \"300ms\"\nattempts = 1\n", dns.addr())
}

fn ask(c: &mut PolicyClient, client: &str, sender: &str, instance: &str) -> String {
    c.ask(&rcpt_request(client, sender, "bob@example.net", instance))
}

/// Wait until `since` is `d` old (the greylisting delay must pass).
fn wait_until(since: Instant, d: Duration) {
    while since.elapsed() < d {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn spf_results_act_and_a_pool_retry_from_another_network_passes() {
    let dns = spf_zone();
    let (_dir, g) = server(&format!(
        "[greylist]\ndelay = \"1s\"\nhostname = \"mx.test\"\n{}[checks.spf]\nenabled = true\n",
        dns_section(&dns)
    ));
    let mut c = PolicyClient::connect(g.addr());

    assert_eq!(
        ask(&mut c, "192.0.2.10", "alice@fail.example", "f.1"),
        "550 5.7.23 SPF fail: domain of alice@fail.example does not designate 192.0.2.10 as permitted sender"
    );
    assert_eq!(
        ask(&mut c, "192.0.2.10", "alice@slow.example", "t.1"),
        "DEFER_IF_PERMIT 4.7.24 SPF temporary error: temporary error while evaluating the SPF record of slow.example, please try again later"
    );

    // The first attempt of an SPF-passing sender is deferred all the same.
    let first = Instant::now();
    let to_carol =
        |client: &str, instance: &str| rcpt_request(client, "news@pool.example", "carol@example.net", instance);
    assert!(ask(&mut c, "192.0.2.10", "news@pool.example", "p.1").starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"));
    assert!(c.ask(&to_carol("192.0.2.10", "p.1")).starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"));
    // The retry comes from the other /24 of the pool: the same triplets.
    // Postfix takes one header per reply: the first recipient prepends
    // X-Greylist, the second the message's Received-SPF.
    wait_until(first, Duration::from_millis(1100));
    let retry = ask(&mut c, "198.51.100.20", "news@pool.example", "p.2");
    assert!(retry.starts_with("PREPEND X-Greylist: delayed "), "{retry}");
    let second = c.ask(&to_carol("198.51.100.20", "p.2"));
    assert!(second.starts_with("PREPEND Received-SPF: pass (mx.test: "), "{second}");
    // Later messages pass, and carry Received-SPF.
    assert_eq!(
        ask(&mut c, "198.51.100.21", "news@pool.example", "p.3"),
        "PREPEND Received-SPF: pass (mx.test: domain of news@pool.example designates 198.51.100.21 as permitted sender) client-ip=198.51.100.21; envelope-from=\"news@pool.example\"; helo=client.example; receiver=mx.test; identity=mailfrom;"
    );
    // A sender without SPF pass is keyed on its network: another /24 is new.
    assert!(ask(&mut c, "192.0.2.10", "x@soft.example", "s.1").starts_with("DEFER_IF_PERMIT"));
    wait_until(Instant::now(), Duration::from_millis(1100));
    assert!(ask(&mut c, "198.51.100.20", "x@soft.example", "s.2").starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"));

    // explain shows the check, and the SPF-domain key.
    let (code, out) = admin(
        &g,
        &["explain", "--client-ip", "192.0.2.99", "--sender", "news@pool.example", "--recipient", "bob@example.net"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("check          spf pass (score +0) domain of news@pool.example designates 192.0.2.99"),
        "{out}"
    );
    assert!(out.contains("key            spf:pool.example/news@pool.example/bob@example.net"), "{out}");
}

#[test]
fn spf_check_only_records_without_acting() {
    let dns = spf_zone();
    let (_dir, g) = server(&format!(
        "[greylist]\nhostname = \"mx.test\"\n{}[checks.spf]\nenabled = true\ncheck_only = true\n",
        dns_section(&dns)
    ));
    let mut c = PolicyClient::connect(g.addr());
    assert!(ask(&mut c, "192.0.2.10", "alice@fail.example", "f.1").starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"));
    let log = g.wait_log("the decision", |v| v["sender"] == "alice@fail.example");
    assert_eq!(log["reason"], "new", "{log}");
}

#[test]
fn dns_lists_weigh_reject_and_skip_greylisting() {
    let dns = DnsServer::start();
    dns.a("66.2.0.192.bl.test", "127.0.0.2".parse().unwrap())
        .a("67.2.0.192.bl.test", "127.0.0.2".parse().unwrap())
        .a("67.2.0.192.bl2.test", "127.0.0.3".parse().unwrap())
        .a("68.2.0.192.bl.test", "127.0.0.9".parse().unwrap())
        .a("5.2.0.192.wl.test", "127.0.10.2".parse().unwrap())
        .a("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test", "127.0.0.2".parse().unwrap())
        .a("spam.example.dbl.test", "127.0.1.2".parse().unwrap())
        .timeout("99.2.0.192.bl.test");
    let (_dir, g) = server(&format!(
        r#"{}
[checks]
reject_score = 8
[[checks.dnsbl]]
zone = "bl.test"
weight = 5
values = ["127.0.0.2"]
[[checks.dnsbl]]
zone = "bl2.test"
weight = 3
[[checks.dnsbl]]
zone = "dbl.test"
target = "sender_domain"
weight = 8
[[checks.dnswl]]
zone = "wl.test"
"#,
        dns_section(&dns).replace("[dns]\n", "[dns]\non_failure = \"defer\"\n")
    ));
    let mut c = PolicyClient::connect(g.addr());
    // 5 + 3 reaches the reject threshold; the reply names both lists.
    assert_eq!(
        ask(&mut c, "192.0.2.67", "a@ok.example", "i"),
        "554 5.7.1 Service unavailable; client 192.0.2.67 refused: dnsbl bl.test (+5), dnsbl bl2.test (+3)"
    );
    // 5 alone is greylisted; 127.0.0.9 is not a configured value.
    assert!(ask(&mut c, "192.0.2.66", "a@ok.example", "i").starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"));
    assert!(ask(&mut c, "192.0.2.68", "a@ok.example", "i").starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"));
    // IPv6 clients are looked up by nibbles.
    assert!(ask(&mut c, "2001:db8::1", "a@ok.example", "i").starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"));
    let log = g.wait_log("the IPv6 decision", |v| v["client"] == "2001:db8::1");
    assert_eq!(log["reason"], "new", "{log}");
    // A listed sender domain.
    assert_eq!(
        ask(&mut c, "192.0.2.70", "x@spam.example", "i"),
        "554 5.7.1 Service unavailable; client 192.0.2.70 refused: dnsbl dbl.test (+8)"
    );
    // The allow list skips greylisting.
    assert_eq!(ask(&mut c, "192.0.2.5", "a@ok.example", "i"), "DUNNO");
    // A list that does not answer defers (dns.on_failure = "defer").
    let started = Instant::now();
    assert_eq!(
        ask(&mut c, "192.0.2.99", "a@ok.example", "i"),
        "DEFER_IF_PERMIT 4.4.3 Temporary DNS failure, please try again later"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by dns.timeout: {:?}", started.elapsed());

    // explain lists every check with its result and score.
    let (code, out) = admin(
        &g,
        &["explain", "--client-ip", "192.0.2.66", "--sender", "a@ok.example", "--recipient", "r@x", "--json"],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let checks: Vec<(String, String, f64)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["check"].as_str().unwrap().into(), c["result"].as_str().unwrap().into(), c["score"].as_f64().unwrap())
        })
        .collect();
    let want = [
        ("dnsbl bl.test", "listed", 5.0),
        ("dnsbl bl2.test", "clear", 0.0),
        ("dnsbl dbl.test", "clear", 0.0),
        ("dnswl wl.test", "clear", 0.0),
    ];
    assert_eq!(checks, want.map(|(a, b, s)| (a.to_owned(), b.to_owned(), s)));
}

#[test]
fn selective_greylisting_by_reverse_dns_and_helo() {
    let dns = DnsServer::start();
    dns.host("mx1.big.example", "192.0.2.10".parse().unwrap())
        .host("mx2.big.example", "198.51.100.10".parse().unwrap())
        .host("203-0-113-7.dyn.isp.example", "203.0.113.7".parse().unwrap())
        .ptr("203.0.113.8".parse().unwrap(), "forged.big.example");
    // Only clients scoring 1 or more are greylisted.
    let (_dir, g) = server(&format!(
        "[greylist]\nhostname = \"mx.test\"\n{}[checks]\ngreylist_score = 1\n[checks.rdns]\nenabled = true\n[checks.helo]\nenabled = true\n",
        dns_section(&dns)
    ));
    let mut c = PolicyClient::connect(g.addr());
    let with_helo = |client: &str, helo: &str| {
        rcpt_request(client, "a@big.example", "bob@example.net", "i")
            .replace("helo_name=client.example", &format!("helo_name={helo}"))
    };
    assert_eq!(
        c.ask(&with_helo("192.0.2.10", "mx1.big.example")),
        "DUNNO",
        "confirmed, static-looking: not greylisted"
    );
    for (client, helo, why) in [
        ("203.0.113.7", "mx1.big.example", "dynamic-looking name"),
        ("203.0.113.8", "mx1.big.example", "PTR does not resolve back"),
        ("203.0.113.9", "mx1.big.example", "no PTR"),
        ("198.51.100.10", "mx.test", "our own name in HELO"),
        ("198.51.100.10", "[192.0.2.1]", "someone else's address literal"),
    ] {
        let answer = c.ask(&with_helo(client, helo));
        assert!(answer.starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"), "{why}: {answer}");
    }
    let log = g.wait_log("the accepted decision", |v| v["client"] == "192.0.2.10");
    assert_eq!(log["reason"], "check", "{log}");
}

#[test]
fn postfix_rejects_spf_fail_and_accepts_a_pool_retry_from_another_network() {
    let dns = spf_zone();
    let (_dir, g) = server(&format!(
        "[greylist]\ndelay = \"2s\"\nhostname = \"gw.test\"\n{}[checks.spf]\nenabled = true\n",
        dns_section(&dns)
    ));
    let postfix = Postfix::start(&Options { policy: Some(format!("inet:{}", g.addr())), ..Options::default() });
    let rcpt = format!("bob@{DOMAIN}");
    let send = |from: &str, client: &str, subject: &str| {
        swaks(
            postfix.port,
            &[
                "--to",
                &rcpt,
                "--from",
                from,
                "--helo",
                "mail.pool.example",
                "--xclient-addr",
                client,
                "--header",
                &format!("Subject: {subject}"),
            ],
        )
    };

    let rejected = send("alice@fail.example", "192.0.2.10", "spf fail");
    assert!(!rejected.delivered(), "{}", rejected.transcript);
    let reply = rejected.reply("550").unwrap_or_else(|| panic!("no 550 in:\n{}", rejected.transcript));
    assert!(
        reply.contains(&format!("550 5.7.23 <{rcpt}>: Recipient address rejected: SPF fail: domain of alice@fail.example does not designate 192.0.2.10 as permitted sender")),
        "{reply}"
    );

    let first = send("news@pool.example", "192.0.2.10", "pool first");
    let started = Instant::now();
    assert!(!first.delivered(), "{}", first.transcript);
    assert!(first.reply("450").is_some_and(|r| r.contains("450 4.7.1")), "{}", first.transcript);

    wait_until(started, Duration::from_millis(2200));
    let retry = send("news@pool.example", "198.51.100.20", "pool retry");
    assert!(retry.delivered(), "a retry from the pool's other /24 passes:\n{}", retry.transcript);
    let again = send("news@pool.example", "198.51.100.21", "pool again");
    assert!(again.delivered(), "{}", again.transcript);

    let messages = postfix.wait_messages(2);
    let retried = messages.iter().find(|m| m.contains("Subject: pool retry")).expect("the retried message");
    assert!(retried.lines().any(|l| l.starts_with("X-Greylist: delayed ")), "{retried}");
    let later = messages.iter().find(|m| m.contains("Subject: pool again")).expect("the later message");
    assert!(
        later.contains(
            "Received-SPF: pass (gw.test: domain of news@pool.example designates 198.51.100.21 as permitted sender)"
        ),
        "{later}"
    );
    assert!(postfix.messages().iter().all(|m| !m.contains("Subject: spf fail")));
}

#[test]
fn the_proxy_rejects_spf_fail_and_inserts_received_spf_on_the_pool_retry() {
    let dns = DnsServer::start();
    dns.txt("pool.example", "v=spf1 ip4:127.0.0.0/16 -all").txt("fail.example", "v=spf1 ip4:192.0.2.1 -all");
    let mx = Postfix::start(&Options::default());
    let (_dir, g) = crate::proxy::gateway(
        std::net::SocketAddr::from(([127, 0, 0, 1], mx.port)),
        "",
        &format!(
            "[greylist]\ndelay = \"2s\"\nhostname = \"gw.test\"\n[lists]\ntrusted_networks = []\n{}[checks.spf]\nenabled = true\n",
            dns_section(&dns)
        ),
    );
    let rcpt = format!("bob@{DOMAIN}");
    let port = g.smtp_addr().port();
    let send = |from: &str, source: &str, subject: &str| {
        swaks(
            port,
            &[
                "--to",
                &rcpt,
                "--from",
                from,
                "--helo",
                "mail.pool.example",
                "--local-interface",
                source,
                "--header",
                &format!("Subject: {subject}"),
            ],
        )
    };
    let rejected = send("alice@fail.example", "127.0.0.9", "spf fail");
    let reply = rejected.reply("550").unwrap_or_else(|| panic!("no 550 in:\n{}", rejected.transcript));
    assert!(
        reply.contains(
            "550 5.7.23 SPF fail: domain of alice@fail.example does not designate 127.0.0.9 as permitted sender"
        ),
        "{reply}"
    );

    let first = send("news@pool.example", "127.0.0.5", "first");
    let started = Instant::now();
    assert!(first.reply("451").is_some_and(|r| r.contains("451 4.7.1 Greylisted")), "{}", first.transcript);
    wait_until(started, Duration::from_millis(2200));
    // The retry comes from another /24 (127.0.1.0/24).
    let retry = send("news@pool.example", "127.0.1.5", "retry");
    assert!(retry.delivered(), "{}", retry.transcript);
    let message = &mx.wait_messages(1)[0];
    assert!(message.lines().any(|l| l.starts_with("X-Greylist: delayed ")), "{message}");
    assert!(
        message.contains("Received-SPF: pass (gw.test: domain of news@pool.example designates 127.0.1.5 as permitted sender) client-ip=127.0.1.5;"),
        "{message}"
    );
}

#[test]
fn sighup_switches_the_checks_on_without_dropping_connections() {
    use greygate_testkit::greygate::message;
    use nix::sys::signal::Signal;
    let dns = spf_zone();
    let (_dir, g) = server("");
    let mut c = PolicyClient::connect(g.addr());
    assert!(ask(&mut c, "192.0.2.10", "alice@fail.example", "i").starts_with("DEFER_IF_PERMIT 4.7.1 Greylisted"));
    let base = std::fs::read_to_string(&g.config).unwrap();
    std::fs::write(&g.config, format!("{base}\n{}[checks.spf]\nenabled = true\n", dns_section(&dns))).unwrap();
    g.signal(Signal::SIGHUP);
    g.wait_log("the reload", |v| message(v) == Some("SIGHUP: config and lists reloaded"));
    assert!(ask(&mut c, "192.0.2.10", "alice@fail.example", "i").starts_with("550 5.7.23 SPF fail"));
    // A broken check section is refused and the running checks stay.
    std::fs::write(&g.config, format!("{base}\n[[checks.dnsbl]]\nzone = \"not a zone\"\n")).unwrap();
    g.signal(Signal::SIGHUP);
    g.wait_log("the refusal", |v| message(v) == Some("SIGHUP: config not reloaded; keeping the running one"));
    assert!(ask(&mut c, "192.0.2.10", "alice@fail.example", "i").starts_with("550 5.7.23 SPF fail"));
}
