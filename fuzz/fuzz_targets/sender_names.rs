//! Names from the outside world through the sender checks: HELO strings,
//! PTR names, envelope senders and SPF explanations, as a client or a DNS
//! server could send them.
//!
//! Input: fields separated by `\n`: helo, ptr name, sender, explanation,
//! and a client address byte pattern (the first 16 bytes of the rest).
//! Oracles: no panic; every header and reply a check produces is one line
//! of printable ASCII; the organisational domain is a suffix of the name;
//! `sanitize` keeps its bound.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use async_trait::async_trait;
use futures::executor::block_on;
use greygate_engine::checks::rdns::{DYNAMIC_PATTERNS, org_domain};
use greygate_engine::checks::{
    DnsListCheck, DnsListKind, DnsListTarget, DnsListZone, HeloCheck, HeloScores, OnDnsFailure, RdnsCheck,
    RdnsScores, SpfCheck, SpfOutcome, SpfPolicy, SpfResult, SpfVerifier, sanitize,
};
use greygate_engine::dns::{Answer, Resolver};
use greygate_engine::{Check, CheckResult, Effect, Facts, Stage};
use libfuzzer_sys::fuzz_target;

/// Answers every question with the fuzzed name and the client address.
struct Echo {
    name: String,
    ip: IpAddr,
}

#[async_trait]
impl Resolver for Echo {
    async fn ipv4(&self, _: &str) -> Answer<Ipv4Addr> {
        Ok(match self.ip {
            IpAddr::V4(v4) => vec![v4, Ipv4Addr::new(127, 255, 255, 254)],
            IpAddr::V6(_) => vec![Ipv4Addr::new(127, 0, 0, 2)],
        })
    }
    async fn ipv6(&self, _: &str) -> Answer<Ipv6Addr> {
        Ok(match self.ip {
            IpAddr::V6(v6) => vec![v6],
            IpAddr::V4(_) => vec![],
        })
    }
    async fn ptr(&self, _: IpAddr) -> Answer<String> {
        Ok(vec![self.name.clone()])
    }
    async fn txt(&self, _: &str) -> Answer<String> {
        Ok(vec![self.name.clone()])
    }
}

struct Spf(SpfResult, String, String);

#[async_trait]
impl SpfVerifier for Spf {
    async fn verify(&self, _: IpAddr, _: &str, _: &str) -> SpfOutcome {
        SpfOutcome { result: self.0, domain: self.1.clone(), explanation: Some(self.2.clone()) }
    }
}

fn one_printable_line(s: &str) -> bool {
    s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

fn check_result(r: &CheckResult) {
    for h in &r.headers {
        assert!(one_printable_line(h), "header {h:?}");
    }
    if let Effect::Reject(reply) | Effect::Defer(reply) = &r.effect {
        assert!(one_printable_line(&reply.to_string()), "reply {reply}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let helo = fields.next().unwrap_or("").to_owned();
    let ptr = fields.next().unwrap_or("").to_owned();
    let sender = fields.next().unwrap_or("").to_owned();
    let explanation = fields.next().unwrap_or("").to_owned();
    let rest: Vec<u8> = fields.flat_map(|f| f.bytes()).collect();
    let ip = if rest.len() >= 16 {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&rest[..16]).unwrap()))
    } else {
        let mut o = [192, 0, 2, 1];
        for (i, b) in rest.iter().take(4).enumerate() {
            o[i] = *b;
        }
        IpAddr::V4(Ipv4Addr::from(o))
    };

    let s = sanitize(&explanation, 50);
    assert!(s.len() <= 50 && one_printable_line(&s));
    let org = org_domain(&ptr);
    assert!(ptr.trim_end_matches('.').to_ascii_lowercase().ends_with(&org), "{org:?} of {ptr:?}");

    let facts = Facts {
        helo: Some(helo.clone()),
        sender: Some(sender.clone()),
        recipient: Some("r@example.net".into()),
        ..Facts::new(Stage::Rcpt, ip)
    };
    let dns = Arc::new(Echo { name: ptr.clone(), ip });
    let patterns = regex::RegexSet::new(DYNAMIC_PATTERNS).unwrap();
    let checks: Vec<Box<dyn Check>> = vec![
        Box::new(HeloCheck::new(HeloScores {
            invalid: 1.0,
            mismatch: 1.0,
            forged: 1.0,
            own_names: vec![ptr.clone()],
        })),
        Box::new(RdnsCheck::new(
            dns.clone(),
            RdnsScores {
                missing: 1.0,
                unconfirmed: 1.0,
                dynamic: 1.0,
                dynamic_patterns: patterns,
                dynamic_embedded_ip: true,
                retry_identity: true,
            },
            OnDnsFailure::defer(),
        )),
        Box::new(DnsListCheck::new(
            DnsListZone {
                zone: "bl.test".into(),
                kind: DnsListKind::Block,
                target: DnsListTarget::SenderDomain,
                weight: 1.0,
                values: vec![],
                skip_greylisting: false,
            },
            dns.clone(),
            OnDnsFailure::defer(),
        )),
    ];
    for c in &checks {
        check_result(&block_on(c.check(&facts)));
    }
    for result in [SpfResult::Fail, SpfResult::Pass, SpfResult::TempError, SpfResult::PermError] {
        let policy = SpfPolicy { permerror: greygate_engine::checks::SpfAction::Reject, ..SpfPolicy::default() };
        let spf = SpfCheck::new(Arc::new(Spf(result, ptr.clone(), explanation.clone())), policy);
        check_result(&block_on(spf.check(&facts)));
    }
});
