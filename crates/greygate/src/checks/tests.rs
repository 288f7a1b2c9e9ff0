//! The adapters against the in-process DNS server: real hickory, real
//! mail-auth, real UDP/TCP on 127.0.0.1.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use greygate_engine::checks::{OnDnsFailure, SpfResult, SpfVerifier};
use greygate_engine::dns::{DnsError, Resolver};
use greygate_testkit::dns::DnsServer;

use super::resolver::{HickoryResolver, tokio_resolver};
use super::spf::MailAuthSpf;
use crate::config::checks::DnsConfig;

fn dns_config(server: &DnsServer) -> DnsConfig {
    DnsConfig {
        nameservers: vec![server.addr()],
        timeout: Duration::from_millis(300),
        attempts: 1,
        cache_size: 1024,
        on_failure: OnDnsFailure::Skip,
    }
}

fn resolver(server: &DnsServer) -> HickoryResolver {
    let config = dns_config(server);
    HickoryResolver::new(tokio_resolver(&config).unwrap(), &config)
}

fn spf(server: &DnsServer) -> MailAuthSpf {
    MailAuthSpf::new(tokio_resolver(&dns_config(server)).unwrap(), "mx.test".into(), Duration::from_secs(3))
}

#[tokio::test]
async fn lookups_answers_negative_answers_and_failures() {
    let server = DnsServer::start();
    server
        .a("mail.example.org", "192.0.2.25".parse().unwrap())
        .aaaa("mail.example.org", "2001:db8::25".parse().unwrap())
        .ptr("192.0.2.25".parse().unwrap(), "Mail.Example.org")
        .txt("example.org", "hello world")
        .timeout("slow.example")
        .servfail("broken.example");
    let r = resolver(&server);
    assert_eq!(r.ipv4("mail.example.org").await, Ok(vec!["192.0.2.25".parse().unwrap()]));
    assert_eq!(r.ipv6("mail.example.org").await, Ok(vec!["2001:db8::25".parse().unwrap()]));
    assert_eq!(r.ptr("192.0.2.25".parse().unwrap()).await, Ok(vec!["mail.example.org".to_owned()]));
    assert_eq!(r.txt("example.org").await, Ok(vec!["hello world".to_owned()]));
    assert_eq!(r.ipv4("nothing.example").await, Ok(vec![]), "NXDOMAIN");
    assert_eq!(r.ipv4("example.org").await, Ok(vec![]), "NODATA");
    assert_eq!(r.ptr("192.0.2.99".parse().unwrap()).await, Ok(vec![]));

    let started = Instant::now();
    assert_eq!(r.ipv4("slow.example").await, Err(DnsError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the timeout: {:?}", started.elapsed());
    assert!(matches!(r.ipv4("broken.example").await, Err(DnsError::Failure(_))));
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl() {
    let server = DnsServer::start();
    server.set_ttl(300).a("cached.example", "192.0.2.1".parse().unwrap());
    server.set_ttl(1).a("short.example", "192.0.2.2".parse().unwrap());
    let r = resolver(&server);
    for _ in 0..3 {
        assert_eq!(r.ipv4("cached.example").await.unwrap().len(), 1);
        assert_eq!(r.ipv4("nx.example").await.unwrap().len(), 0);
    }
    assert_eq!(server.queries("cached.example"), 1);
    assert_eq!(server.queries("nx.example"), 1, "negative answers are cached too");

    assert_eq!(r.ipv4("short.example").await.unwrap().len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.queries("short.example") < 2 {
        assert!(Instant::now() < deadline, "a 1 s TTL must expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(r.ipv4("short.example").await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn spf_results_from_real_records() {
    let server = DnsServer::start();
    server
        .txt("pass.example", "v=spf1 include:_spf.pass.example -all")
        .txt("_spf.pass.example", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
        .txt("fail.example", "v=spf1 ip4:198.51.100.1 -all exp=explain.fail.example")
        .txt("explain.fail.example", "%{i} is not one of %{d}'s mail servers")
        .txt("soft.example", "v=spf1 ~all")
        .txt("neutral.example", "v=spf1 ?all")
        .txt("broken.example", "v=spf1 ip4:not-an-address -all")
        .txt("nospf.example", "some other record")
        .txt("mx.pass.example", "v=spf1 a -all")
        .a("mx.pass.example", "192.0.2.77".parse().unwrap())
        .timeout("slow.example");
    let s = spf(&server);
    let ip: IpAddr = "192.0.2.10".parse().unwrap();
    let cases = [
        ("a@pass.example", SpfResult::Pass),
        ("a@fail.example", SpfResult::Fail),
        ("a@soft.example", SpfResult::SoftFail),
        ("a@neutral.example", SpfResult::Neutral),
        ("a@broken.example", SpfResult::PermError),
        ("a@nospf.example", SpfResult::None),
        ("a@nothing.example", SpfResult::None),
        ("a@slow.example", SpfResult::TempError),
    ];
    for (sender, want) in cases {
        let out = s.verify(ip, "mx.pass.example", sender).await;
        assert_eq!(out.result, want, "{sender}");
        assert_eq!(out.domain, sender.split('@').nth(1).unwrap());
    }
    let out = s.verify("2001:db8::5".parse().unwrap(), "h", "a@pass.example").await;
    assert_eq!(out.result, SpfResult::Pass);
    let out = s.verify(ip, "h", "a@fail.example").await;
    assert_eq!(out.explanation.as_deref(), Some("192.0.2.10 is not one of fail.example's mail servers"));
    // The null sender is checked against the HELO name.
    let out = s.verify("192.0.2.77".parse().unwrap(), "mx.pass.example", "").await;
    assert_eq!((out.result, out.domain.as_str()), (SpfResult::Pass, "mx.pass.example"));
}

#[tokio::test]
async fn the_configured_checks_run_against_dns() {
    use greygate_engine::{Facts, Stage};
    let server = DnsServer::start();
    server
        .txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
        .host("mail.example.org", "192.0.2.10".parse().unwrap())
        .a("10.2.0.192.bl.test", "127.0.0.2".parse().unwrap());
    let toml = format!(
        r#"
        [dns]
        nameservers = ["{}"]
        [checks.spf]
        enabled = true
        [checks.rdns]
        enabled = true
        [checks.helo]
        enabled = true
        [[checks.dnsbl]]
        zone = "bl.test"
        weight = 3
        "#,
        server.addr()
    );
    let raw: crate::config::RawConfig = toml::from_str(&toml).unwrap();
    let config = crate::config::Config::from_raw(raw, None).unwrap();
    let checks_config = config.checks().unwrap();
    let checks = super::build(&checks_config, &super::Dns::new(&checks_config.dns)).unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["spf", "rdns", "dnsbl bl.test", "helo"]);
    let facts = Facts {
        helo: Some("mail.example.org".into()),
        sender: Some("alice@example.org".into()),
        recipient: Some("bob@example.net".into()),
        ..Facts::new(Stage::Rcpt, "192.0.2.10".parse().unwrap())
    };
    let mut got = Vec::new();
    for c in &checks {
        let r = c.check(&facts).await;
        got.push((r.check, r.result, r.score));
    }
    let want = [("spf", "pass", 0.0), ("rdns", "pass", 0.0), ("dnsbl bl.test", "listed", 3.0), ("helo", "pass", 0.0)];
    assert_eq!(got, want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c)));
}
