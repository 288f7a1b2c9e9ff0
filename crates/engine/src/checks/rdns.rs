//! Reverse DNS of the client: forward-confirmed (FCrDNS), missing, or
//! dynamic-looking.
//!
//! The PTR names of the client address are looked up, then each name's
//! A/AAAA records; a name whose addresses include the client confirms it.
//! A missing PTR, an unconfirmed one, and a name that looks like a
//! dial-up/DSL/cable pool (the address written into it, or words such as
//! `dyn`, `dhcp`, `pool`) each add their score. A confirmed, static-looking
//! name can serve as the retry identity (its organisational domain), as
//! Haraka's greylist plugin does, so a pool of `*.outbound.example.com`
//! hosts is one sender.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use regex::RegexSet;

use super::OnDnsFailure;
use crate::check::{Check, CheckResult};
use crate::dns::{DnsError, Resolver};
use crate::facts::Facts;

/// Score contributions and switches.
#[derive(Debug, Clone)]
pub struct RdnsScores {
    /// No PTR record.
    pub missing: f64,
    /// A PTR, but no name of it resolves back to the client.
    pub unconfirmed: f64,
    /// The name looks like a dynamic/residential pool.
    pub dynamic: f64,
    /// Patterns (case-insensitive) that mark a name as dynamic.
    pub dynamic_patterns: RegexSet,
    /// A name with the client address written into it is dynamic.
    pub dynamic_embedded_ip: bool,
    /// Key the triplet on the confirmed name's organisational domain.
    pub retry_identity: bool,
}

/// The default dynamic-name patterns.
pub const DYNAMIC_PATTERNS: &[&str] = &[
    r"(^|[.-])(dyn|dynamic|dhcp|dialup|dial-?in|ppp|pppoe|adsl|xdsl|dsl|cable|pool|cpe|broadband|residential|unassigned|client)[0-9]*([.-]|$)",
];

/// At most this many PTR names are forward-checked.
const MAX_NAMES: usize = 5;

/// The PTR names of an address, and which of them resolves back to it.
struct Reverse {
    names: Vec<String>,
    /// Index in `names` of the first forward-confirmed name.
    confirmed: Option<usize>,
    /// A name whose address lookup failed, when none was confirmed.
    failed: Option<(String, DnsError)>,
}

/// Look up the PTR names of `ip`, then the addresses of at most
/// [`MAX_NAMES`] of them until one includes `ip`. `Err` when the PTR
/// lookup itself failed.
async fn reverse(resolver: &dyn Resolver, ip: IpAddr) -> Result<Reverse, DnsError> {
    let names = resolver.ptr(ip).await?;
    let mut failed = None;
    for (index, name) in names.iter().enumerate().take(MAX_NAMES) {
        let found = match ip {
            IpAddr::V4(v4) => resolver.ipv4(name).await.map(|a| a.contains(&v4)),
            IpAddr::V6(v6) => resolver.ipv6(name).await.map(|a| a.contains(&v6)),
        };
        match found {
            Ok(true) => return Ok(Reverse { names, confirmed: Some(index), failed: None }),
            Ok(false) => {}
            Err(error) => failed = Some((name.clone(), error)),
        }
    }
    Ok(Reverse { names, confirmed: None, failed })
}

/// What reverse DNS says about a client, as Postfix reports it in
/// `client_name` and `reverse_client_name`: for front ends that see only
/// the address (the SMTP proxy), so host name lists match there too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientNames {
    /// The first PTR name that resolves back to the address (FCrDNS).
    pub verified: Option<String>,
    /// The first PTR name, confirmed or not.
    pub reverse: Option<String>,
    /// A lookup failed temporarily: the name may exist (Postfix's
    /// `[TEMPUNAVAIL]`, where a missing one is `[UNAVAILABLE]`).
    pub tempfail: bool,
}

impl ClientNames {
    /// No names, because the lookup failed or took too long.
    pub fn tempfailed() -> ClientNames {
        ClientNames { tempfail: true, ..ClientNames::default() }
    }
}

/// Look up and forward-confirm the names of `ip`. A PTR name that is not
/// a valid host name counts as none, as in Postfix (an MTA given it in
/// XCLIENT would refuse the command).
pub async fn client_names(resolver: &dyn Resolver, ip: IpAddr) -> ClientNames {
    match reverse(resolver, ip.to_canonical()).await {
        Err(_) => ClientNames::tempfailed(),
        Ok(Reverse { names, confirmed, failed }) => ClientNames {
            verified: confirmed.map(|i| names[i].clone()).filter(|n| valid_hostname(n)),
            reverse: names.first().cloned().filter(|n| valid_hostname(n)),
            tempfail: confirmed.is_none() && failed.is_some(),
        },
    }
}

/// Letters, digits, `-` and `_` in dot-separated labels of at most 63
/// bytes, 255 in all, not all digits (an address is not a name).
fn valid_hostname(name: &str) -> bool {
    name.len() <= 255
        && name.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The check.
pub struct RdnsCheck {
    resolver: Arc<dyn Resolver>,
    scores: RdnsScores,
    on_failure: OnDnsFailure,
}

impl RdnsCheck {
    pub fn new(resolver: Arc<dyn Resolver>, scores: RdnsScores, on_failure: OnDnsFailure) -> RdnsCheck {
        RdnsCheck { resolver, scores, on_failure }
    }

    /// The name looks like an address pool's.
    pub fn looks_dynamic(&self, name: &str, ip: IpAddr) -> bool {
        let name = name.to_ascii_lowercase();
        self.scores.dynamic_patterns.is_match(&name) || (self.scores.dynamic_embedded_ip && embeds_ip(&name, ip))
    }
}

/// `name` carries the address: `1-2-3-4`, `4.3.2.1`, `001002003004`, or
/// the hex form `01020304`.
fn embeds_ip(name: &str, ip: IpAddr) -> bool {
    let IpAddr::V4(v4) = ip.to_canonical() else {
        return false;
    };
    let o = v4.octets();
    let forms = [
        format!("{}-{}-{}-{}", o[0], o[1], o[2], o[3]),
        format!("{}-{}-{}-{}", o[3], o[2], o[1], o[0]),
        format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]),
        format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0]),
        format!("{:03}{:03}{:03}{:03}", o[0], o[1], o[2], o[3]),
        format!("{:02x}{:02x}{:02x}{:02x}", o[0], o[1], o[2], o[3]),
    ];
    forms.iter().any(|f| name.contains(f.as_str()))
}

/// The organisational domain of a host name: the last two labels, or
/// three under a common two-level country suffix (`example.co.uk`). An
/// approximation of the Public Suffix List, good enough for mail hosts.
pub fn org_domain(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    let n = labels.len();
    if n <= 2 {
        return name;
    }
    let second_level = ["co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gv", "mil"];
    let take = if labels[n - 1].len() == 2 && second_level.contains(&labels[n - 2]) { 3 } else { 2 };
    labels[n - take.min(n)..].join(".")
}

#[async_trait]
impl Check for RdnsCheck {
    fn name(&self) -> &str {
        "rdns"
    }

    async fn check(&self, facts: &Facts) -> CheckResult {
        let ip = facts.client_ip.to_canonical();
        let Reverse { names, confirmed, failed } = match reverse(&*self.resolver, ip).await {
            Ok(r) => r,
            Err(error) => return self.on_failure.result("rdns", &format!("PTR of {ip}"), &error),
        };
        if names.is_empty() {
            return CheckResult {
                score: self.scores.missing,
                detail: format!("{ip} has no PTR record"),
                ..CheckResult::neutral("rdns", "none")
            };
        }
        let confirmed = confirmed.map(|i| names[i].as_str());
        let shown = confirmed.unwrap_or(&names[0]);
        let dynamic = self.looks_dynamic(shown, ip);
        let dyn_score = if dynamic { self.scores.dynamic } else { 0.0 };
        match confirmed {
            Some(name) => CheckResult {
                score: dyn_score,
                detail: format!("{ip} is {name}, forward-confirmed{}", if dynamic { ", dynamic-looking" } else { "" }),
                retry_identity: (self.scores.retry_identity && !dynamic).then(|| format!("rdns:{}", org_domain(name))),
                ..CheckResult::neutral("rdns", if dynamic { "dynamic" } else { "pass" })
            },
            None => {
                if let Some((name, error)) = failed {
                    return self.on_failure.result("rdns", &format!("address of {name}"), &error);
                }
                CheckResult {
                    score: self.scores.unconfirmed + dyn_score,
                    detail: format!(
                        "{ip} has PTR {shown}, which does not resolve back to it{}",
                        if dynamic { "; dynamic-looking" } else { "" }
                    ),
                    ..CheckResult::neutral("rdns", "unconfirmed")
                }
            }
        }
    }
}
