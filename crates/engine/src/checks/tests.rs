use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::executor::block_on;
use regex::RegexSet;

use super::*;
use crate::check::{Check, Effect};
use crate::dns::{Answer, DnsError, Resolver};
use crate::facts::{Facts, Stage};

/// DNS from a table; names absent are NXDOMAIN.
#[derive(Default)]
pub struct FakeDns {
    a: HashMap<String, Answer<Ipv4Addr>>,
    aaaa: HashMap<String, Answer<Ipv6Addr>>,
    ptr: HashMap<IpAddr, Answer<String>>,
    asked: Mutex<Vec<String>>,
}

impl FakeDns {
    fn a(mut self, name: &str, ip: &str) -> Self {
        self.a.entry(name.into()).or_insert(Ok(Vec::new())).as_mut().unwrap().push(ip.parse().unwrap());
        self
    }
    fn aaaa(mut self, name: &str, ip: &str) -> Self {
        self.aaaa.entry(name.into()).or_insert(Ok(Vec::new())).as_mut().unwrap().push(ip.parse().unwrap());
        self
    }
    fn a_fails(mut self, name: &str) -> Self {
        self.a.insert(name.into(), Err(DnsError::Timeout));
        self
    }
    fn ptr(mut self, ip: &str, name: &str) -> Self {
        self.ptr.entry(ip.parse().unwrap()).or_insert(Ok(Vec::new())).as_mut().unwrap().push(name.into());
        self
    }
    fn ptr_fails(mut self, ip: &str) -> Self {
        self.ptr.insert(ip.parse().unwrap(), Err(DnsError::Failure("SERVFAIL".into())));
        self
    }
}

#[async_trait]
impl Resolver for FakeDns {
    async fn ipv4(&self, name: &str) -> Answer<Ipv4Addr> {
        self.asked.lock().unwrap().push(name.into());
        self.a.get(name).cloned().unwrap_or(Ok(Vec::new()))
    }
    async fn ipv6(&self, name: &str) -> Answer<Ipv6Addr> {
        self.asked.lock().unwrap().push(name.into());
        self.aaaa.get(name).cloned().unwrap_or(Ok(Vec::new()))
    }
    async fn ptr(&self, ip: IpAddr) -> Answer<String> {
        self.ptr.get(&ip).cloned().unwrap_or(Ok(Vec::new()))
    }
    async fn txt(&self, _name: &str) -> Answer<String> {
        Ok(Vec::new())
    }
}

fn facts(ip: &str, helo: &str, sender: &str) -> Facts {
    Facts {
        helo: Some(helo.into()),
        sender: Some(sender.into()),
        recipient: Some("bob@example.net".into()),
        ..Facts::new(Stage::Rcpt, ip.parse().unwrap())
    }
}

// ---- SPF -------------------------------------------------------------

/// Answers a fixed outcome and remembers what it was asked.
struct FakeSpf(SpfOutcome, Mutex<Vec<(IpAddr, String, String)>>);

#[async_trait]
impl SpfVerifier for FakeSpf {
    async fn verify(&self, ip: IpAddr, helo: &str, sender: &str) -> SpfOutcome {
        self.1.lock().unwrap().push((ip, helo.into(), sender.into()));
        self.0.clone()
    }
}

fn spf(result: SpfResult, explanation: Option<&str>, policy: SpfPolicy) -> (SpfCheck, Arc<FakeSpf>) {
    let outcome = SpfOutcome { result, domain: "example.org".into(), explanation: explanation.map(Into::into) };
    let fake = Arc::new(FakeSpf(outcome, Mutex::new(Vec::new())));
    (SpfCheck::new(fake.clone(), SpfPolicy { hostname: "mx.test".into(), ..policy }), fake)
}

#[test]
fn spf_acts_per_result() {
    let f = facts("192.0.2.1", "mail.example.org", "alice@example.org");
    let cases: &[(SpfResult, &str)] = &[
        (SpfResult::Pass, "none"),
        (
            SpfResult::Fail,
            "reject 550 5.7.23 SPF fail: domain of alice@example.org does not designate 192.0.2.1 as permitted sender",
        ),
        (SpfResult::SoftFail, "greylist"),
        (SpfResult::Neutral, "greylist"),
        (SpfResult::None, "greylist"),
        (
            SpfResult::TempError,
            "defer 451 4.7.24 SPF temporary error: temporary error while evaluating the SPF record of example.org, please try again later",
        ),
        (SpfResult::PermError, "greylist"),
    ];
    for (result, want) in cases {
        let (check, _) = spf(*result, None, SpfPolicy::default());
        let r = block_on(check.check(&f));
        let got = match &r.effect {
            Effect::None => "none".to_owned(),
            Effect::Greylist => "greylist".to_owned(),
            Effect::SkipGreylisting => "skip".to_owned(),
            Effect::Reject(reply) => format!("reject {reply}"),
            Effect::Defer(reply) => format!("defer {reply}"),
        };
        assert_eq!((r.result.as_str(), got.as_str()), (result.as_str(), *want));
        assert_eq!(r.retry_identity.is_some(), *result == SpfResult::Pass, "{result}");
    }
    // permerror can be made a rejection.
    let (check, _) = spf(SpfResult::PermError, None, SpfPolicy { permerror: SpfAction::Reject, ..Default::default() });
    let Effect::Reject(reply) = block_on(check.check(&f)).effect else { panic!() };
    assert_eq!(reply.to_string(), "550 5.7.24 SPF permanent error: permanent error in the SPF record of example.org");
}

#[test]
fn spf_fail_quotes_the_domain_explanation_safely() {
    let f = facts("192.0.2.1", "mail.example.org", "alice@example.org");
    let (check, _) = spf(SpfResult::Fail, Some("Not\r\nauthorised, see http://example.org/spf"), SpfPolicy::default());
    let Effect::Reject(reply) = block_on(check.check(&f)).effect else { panic!() };
    assert_eq!(reply.to_string(), "550 5.7.23 SPF fail: Not??authorised, see http://example.org/spf");
}

#[test]
fn spf_pass_gives_the_domain_as_retry_identity_and_a_header() {
    let f = facts("192.0.2.1", "mail.example.org", "Alice@Example.org");
    let (check, fake) = spf(SpfResult::Pass, None, SpfPolicy::default());
    let r = block_on(check.check(&f));
    assert_eq!(r.retry_identity.as_deref(), Some("spf:example.org"));
    assert_eq!(
        r.headers,
        [
            "Received-SPF: pass (mx.test: domain of Alice@Example.org designates 192.0.2.1 as permitted sender) client-ip=192.0.2.1; envelope-from=\"Alice@Example.org\"; helo=mail.example.org; receiver=mx.test; identity=mailfrom;"
        ]
    );
    assert_eq!(
        fake.1.lock().unwrap()[0],
        ("192.0.2.1".parse().unwrap(), "mail.example.org".into(), "Alice@Example.org".into())
    );

    // No identity when switched off.
    let (check, _) = spf(SpfResult::Pass, None, SpfPolicy { retry_identity: false, ..Default::default() });
    assert_eq!(block_on(check.check(&f)).retry_identity, None);
}

#[test]
fn spf_check_only_records_but_does_not_act() {
    let f = facts("192.0.2.1", "mail.example.org", "alice@example.org");
    for result in [SpfResult::Fail, SpfResult::Pass, SpfResult::TempError] {
        let (check, _) = spf(result, None, SpfPolicy { check_only: true, ..Default::default() });
        let r = block_on(check.check(&f));
        assert_eq!((r.effect, r.retry_identity, r.result.as_str()), (Effect::None, None, result.as_str()));
        assert!(r.headers[0].starts_with(&format!("Received-SPF: {result} ")));
        assert!(r.detail.ends_with("(check only)"));
    }
}

#[test]
fn spf_null_sender_checks_the_helo_identity() {
    let (check, fake) = spf(SpfResult::Pass, None, SpfPolicy::default());
    let r = block_on(check.check(&facts("192.0.2.1", "mail.example.org", "")));
    assert_eq!(fake.1.lock().unwrap()[0].2, "");
    assert!(r.headers[0].contains("identity=helo;"), "{:?}", r.headers);
    assert_eq!(r.retry_identity, None, "only the MAIL FROM domain keys retries");
    let r = block_on(check.check(&Facts { helo: None, ..facts("192.0.2.1", "", "") }));
    assert_eq!(r.result, "none");
    assert_eq!(fake.1.lock().unwrap().len(), 1, "nothing to check without HELO");
}

// ---- DNS lists --------------------------------------------------------

fn zone(name: &str, kind: DnsListKind, target: DnsListTarget, weight: f64, values: &[&str]) -> DnsListZone {
    DnsListZone {
        zone: name.into(),
        kind,
        target,
        weight,
        values: values.iter().map(|v| v.parse().unwrap()).collect(),
        skip_greylisting: kind == DnsListKind::Allow,
    }
}

#[test]
fn dnsbl_queries_reversed_addresses_and_filters_values() {
    let dns = Arc::new(
        FakeDns::default()
            .a("1.2.0.192.bl.test", "127.0.0.2")
            .a("2.2.0.192.bl.test", "127.0.0.10")
            .a("3.2.0.192.bl.test", "127.255.255.254")
            .a("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test", "127.0.0.4")
            .a_fails("4.2.0.192.bl.test"),
    );
    let check = DnsListCheck::new(
        zone("bl.test", DnsListKind::Block, DnsListTarget::Client, 5.0, &["127.0.0.2/32", "127.0.0.4/30"]),
        dns.clone(),
        OnDnsFailure::Skip,
    );
    let run = |ip: &str| block_on(check.check(&facts(ip, "h.example", "a@example.org")));
    let r = run("192.0.2.1");
    assert_eq!(
        (r.result.as_str(), r.score, r.effect, r.detail.as_str()),
        ("listed", 5.0, Effect::None, "192.0.2.1 listed in bl.test (127.0.0.2)")
    );
    let r = run("::ffff:192.0.2.1");
    assert_eq!(r.result, "listed", "mapped addresses are looked up as IPv4");
    let r = run("192.0.2.2");
    assert_eq!((r.result.as_str(), r.score), ("clear", 0.0), "127.0.0.10 is not a configured value");
    let r = run("192.0.2.3");
    assert_eq!((r.result.as_str(), r.score, r.effect), ("unknown", 0.0, Effect::None), "list error code");
    let r = run("192.0.2.4");
    assert_eq!((r.result.as_str(), r.detail.as_str()), ("unknown", "4.2.0.192.bl.test: DNS timeout"));
    assert_eq!(run("192.0.2.5").result, "clear");
    assert_eq!(run("2001:db8::1").result, "listed");
    assert_eq!(check.name(), "dnsbl bl.test");

    let defer = DnsListCheck::new(
        zone("bl.test", DnsListKind::Block, DnsListTarget::Client, 5.0, &[]),
        dns,
        OnDnsFailure::defer(),
    );
    let r = block_on(defer.check(&facts("192.0.2.4", "h", "a@b.example")));
    let Effect::Defer(reply) = r.effect else { panic!("{r:?}") };
    assert_eq!(reply.to_string(), "451 4.4.3 Temporary DNS failure, please try again later");
    // Without values any 127/8 answer lists.
    assert_eq!(block_on(defer.check(&facts("192.0.2.2", "h", "a@b.example"))).result, "listed");
}

#[test]
fn dnswl_skips_greylisting_and_sender_domain_lists_look_up_the_domain() {
    let dns = Arc::new(FakeDns::default().a("1.2.0.192.wl.test", "127.0.10.2").a("spam.example.dbl.test", "127.0.1.2"));
    let wl = DnsListCheck::new(
        zone("wl.test", DnsListKind::Allow, DnsListTarget::Client, -5.0, &[]),
        dns.clone(),
        OnDnsFailure::Skip,
    );
    let r = block_on(wl.check(&facts("192.0.2.1", "h", "a@b.example")));
    assert_eq!(
        (r.check.as_str(), r.result.as_str(), r.score, r.effect),
        ("dnswl wl.test", "listed", -5.0, Effect::SkipGreylisting)
    );

    let dbl = DnsListCheck::new(
        zone("dbl.test", DnsListKind::Block, DnsListTarget::SenderDomain, 3.0, &[]),
        dns.clone(),
        OnDnsFailure::Skip,
    );
    let r = block_on(dbl.check(&facts("192.0.2.9", "h", "x@Spam.Example")));
    assert_eq!((r.result.as_str(), r.detail.as_str()), ("listed", "spam.example listed in dbl.test (127.0.1.2)"));
    assert_eq!(block_on(dbl.check(&facts("192.0.2.9", "h", ""))).result, "skipped", "null sender has no domain");
    assert_eq!(block_on(dbl.check(&facts("192.0.2.9", "h", "x@ok.example"))).result, "clear");
}

// ---- reverse DNS ------------------------------------------------------

fn rdns(dns: FakeDns, identity: bool) -> RdnsCheck {
    RdnsCheck::new(
        Arc::new(dns),
        RdnsScores {
            missing: 2.0,
            unconfirmed: 1.0,
            dynamic: 1.5,
            dynamic_patterns: RegexSet::new(rdns::DYNAMIC_PATTERNS).unwrap(),
            dynamic_embedded_ip: true,
            retry_identity: identity,
        },
        OnDnsFailure::Skip,
    )
}

#[test]
fn rdns_scores_missing_unconfirmed_and_dynamic_names() {
    let dns = FakeDns::default()
        .ptr("192.0.2.1", "o1.outbound.mail.example.co.uk")
        .a("o1.outbound.mail.example.co.uk", "192.0.2.1")
        .ptr("192.0.2.2", "forged.example.org")
        .a("forged.example.org", "198.51.100.1")
        .ptr("192.0.2.3", "192-0-2-3.customers.isp.example")
        .a("192-0-2-3.customers.isp.example", "192.0.2.3")
        .ptr("192.0.2.4", "host.dyn.isp.example")
        .ptr("2001:db8::25", "mx.example.net")
        .aaaa("mx.example.net", "2001:db8::25")
        .ptr_fails("192.0.2.5");
    let check = rdns(dns, true);
    let cases = [
        ("192.0.2.1", "pass", 0.0, Some("rdns:example.co.uk")),
        ("192.0.2.2", "unconfirmed", 1.0, None),
        ("192.0.2.3", "dynamic", 1.5, None),
        ("192.0.2.4", "unconfirmed", 2.5, None),
        ("192.0.2.9", "none", 2.0, None),
        ("192.0.2.5", "unknown", 0.0, None),
        ("2001:db8::25", "pass", 0.0, Some("rdns:example.net")),
    ];
    for (ip, result, score, identity) in cases {
        let r = block_on(check.check(&facts(ip, "h.example", "a@b.example")));
        assert_eq!(
            (r.result.as_str(), r.score, r.retry_identity.as_deref()),
            (result, score, identity),
            "{ip}: {}",
            r.detail
        );
    }
    let check = rdns(FakeDns::default().ptr("192.0.2.1", "mx.example.org").a("mx.example.org", "192.0.2.1"), false);
    assert_eq!(block_on(check.check(&facts("192.0.2.1", "h", "a@b"))).retry_identity, None);
}

#[test]
fn client_names_are_forward_confirmed_like_postfix() {
    let dns = FakeDns::default()
        .ptr("192.0.2.1", "forged.example.org")
        .ptr("192.0.2.1", "mail-1.outbound.example.com")
        .a("mail-1.outbound.example.com", "192.0.2.1")
        .ptr("192.0.2.2", "forged.example.org")
        .a("forged.example.org", "198.51.100.1")
        .ptr("192.0.2.3", "slow.example.net")
        .a_fails("slow.example.net")
        .ptr_fails("192.0.2.4")
        .ptr("2001:db8::25", "mx.example.net")
        .aaaa("mx.example.net", "2001:db8::25")
        .ptr("192.0.2.5", "bad name.example")
        .a("bad name.example", "192.0.2.5")
        .ptr("192.0.2.6", "192.0.2.6")
        .a("192.0.2.6", "192.0.2.6");
    let names = |verified: Option<&str>, reverse: Option<&str>, tempfail| ClientNames {
        verified: verified.map(String::from),
        reverse: reverse.map(String::from),
        tempfail,
    };
    for (ip, want) in [
        // The second PTR name confirms; the reverse name is the first.
        ("192.0.2.1", names(Some("mail-1.outbound.example.com"), Some("forged.example.org"), false)),
        ("192.0.2.2", names(None, Some("forged.example.org"), false)),
        ("192.0.2.3", names(None, Some("slow.example.net"), true)),
        ("192.0.2.4", names(None, None, true)),
        ("192.0.2.9", names(None, None, false)),
        // Not host names: as if there were none.
        ("192.0.2.5", names(None, None, false)),
        ("192.0.2.6", names(None, None, false)),
        ("2001:db8::25", names(Some("mx.example.net"), Some("mx.example.net"), false)),
        // An IPv4-mapped address is looked up as the IPv4 one.
        ("::ffff:192.0.2.1", names(Some("mail-1.outbound.example.com"), Some("forged.example.org"), false)),
    ] {
        assert_eq!(block_on(client_names(&dns, ip.parse().unwrap())), want, "{ip}");
    }
}

#[test]
fn org_domains() {
    for (name, want) in [
        ("o1.outbound.protection.outlook.com", "outlook.com"),
        ("mail.example.co.uk.", "example.co.uk"),
        ("example.org", "example.org"),
        ("a.b.example.de", "example.de"),
        ("Smtp.Example.COM.AU", "example.com.au"),
    ] {
        assert_eq!(rdns::org_domain(name), want, "{name}");
    }
}

// ---- HELO -------------------------------------------------------------

#[test]
fn helo_syntax_literals_and_our_own_name() {
    let check = HeloCheck::new(HeloScores {
        invalid: 2.0,
        mismatch: 3.0,
        forged: 5.0,
        own_names: vec!["MX.Test".into(), "[192.0.2.200]".into()],
    });
    let cases = [
        ("mail.example.org", "pass", 0.0),
        ("mail.example.org.", "pass", 0.0),
        ("[192.0.2.1]", "pass", 0.0),
        ("[IPv6:2001:db8::1]", "mismatch", 3.0),
        ("[192.0.2.77]", "mismatch", 3.0),
        ("[not-an-ip]", "invalid", 2.0),
        ("192.0.2.1", "invalid", 2.0),
        ("localhost", "invalid", 2.0),
        ("bad_host!.example", "invalid", 2.0),
        ("host.123", "invalid", 2.0),
        ("-x.example.org", "invalid", 2.0),
        ("mx.test", "forged", 5.0),
        ("[192.0.2.200]", "forged", 5.0),
        ("", "none", 0.0),
    ];
    for (helo, result, score) in cases {
        let r = block_on(check.check(&facts("192.0.2.1", helo, "a@b.example")));
        assert_eq!((r.result.as_str(), r.score), (result, score), "{helo:?}: {}", r.detail);
    }
}

#[test]
fn sanitize_keeps_printable_ascii() {
    assert_eq!(sanitize("ok\r\nbad\u{7f}é", 100), "ok??bad??");
    assert_eq!(sanitize(&"x".repeat(300), 10), "xxxxxxxxxx");
}
