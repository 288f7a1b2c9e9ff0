//! DNS block lists and allow lists (DNSBL/DNSWL, RFC 5782), one check per
//! zone.
//!
//! A client address is looked up reversed under the zone (IPv4 octets or
//! IPv6 nibbles); a sender domain is looked up as `domain.zone`. An A
//! answer lists the client when it falls in the zone's `values` (any
//! 127.0.0.0/8 answer when none are given). Answers in 127.255.255.0/24
//! are the list's own error codes (query refused, rate limit) and count
//! as "unknown", not as listed. A listed result adds the zone's weight to
//! the score; an allow list usually has a negative weight and can skip
//! greylisting outright.

use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use super::OnDnsFailure;
use crate::address::domain_of;
use crate::check::{Check, CheckResult, Effect};
use crate::dns::{DnsError, Resolver, reversed};
use crate::facts::Facts;

/// Block list or allow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsListKind {
    Block,
    Allow,
}

/// What is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsListTarget {
    /// The client address.
    Client,
    /// The envelope sender's domain.
    SenderDomain,
}

/// One configured zone.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsListZone {
    pub zone: String,
    pub kind: DnsListKind,
    pub target: DnsListTarget,
    /// Added to the score when listed (negative for allow lists).
    pub weight: f64,
    /// Answers that count as listed; empty means any 127.0.0.0/8 answer.
    pub values: Vec<Ipv4Net>,
    /// For allow lists: listed clients skip greylisting.
    pub skip_greylisting: bool,
}

/// The check for one zone.
pub struct DnsListCheck {
    name: String,
    zone: DnsListZone,
    resolver: Arc<dyn Resolver>,
    on_failure: OnDnsFailure,
}

impl DnsListCheck {
    pub fn new(zone: DnsListZone, resolver: Arc<dyn Resolver>, on_failure: OnDnsFailure) -> DnsListCheck {
        let kind = match zone.kind {
            DnsListKind::Block => "dnsbl",
            DnsListKind::Allow => "dnswl",
        };
        DnsListCheck { name: format!("{kind} {}", zone.zone), zone, resolver, on_failure }
    }

    /// The name to query, or `None` when there is nothing to look up.
    pub fn query(&self, facts: &Facts) -> Option<String> {
        let zone = self.zone.zone.trim_end_matches('.');
        match self.zone.target {
            DnsListTarget::Client => Some(format!("{}.{zone}", reversed(facts.client_ip))),
            DnsListTarget::SenderDomain => {
                let domain = domain_of(facts.sender.as_deref()?)?.trim_end_matches('.');
                (!domain.is_empty() && domain.contains('.')).then(|| format!("{}.{zone}", domain.to_ascii_lowercase()))
            }
        }
    }

    fn matches(&self, a: Ipv4Addr) -> bool {
        if self.zone.values.is_empty() {
            a.octets()[0] == 127
        } else {
            self.zone.values.iter().any(|net| net.contains(&a))
        }
    }
}

fn is_list_error(a: Ipv4Addr) -> bool {
    let o = a.octets();
    (o[0], o[1], o[2]) == (127, 255, 255)
}

#[async_trait]
impl Check for DnsListCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, facts: &Facts) -> CheckResult {
        let Some(query) = self.query(facts) else {
            return CheckResult::neutral(&self.name, "skipped");
        };
        let answers = match self.resolver.ipv4(&query).await {
            Ok(a) => a,
            Err(error) => return self.on_failure.result(&self.name, &query, &error),
        };
        if let Some(code) = answers.iter().find(|a| is_list_error(**a)) {
            let error = DnsError::Failure(format!("list error code {code}"));
            return self.on_failure.result(&self.name, &query, &error);
        }
        let hits: Vec<String> = answers.iter().filter(|a| self.matches(**a)).map(|a| a.to_string()).collect();
        let what = match self.zone.target {
            DnsListTarget::Client => facts.client_ip.to_canonical().to_string(),
            DnsListTarget::SenderDomain => query[..query.len() - self.zone.zone.trim_end_matches('.').len() - 1].into(),
        };
        if hits.is_empty() {
            let detail = if answers.is_empty() {
                format!("{what} not listed")
            } else {
                format!("{what} answered {answers:?}, no configured value")
            };
            return CheckResult { detail, ..CheckResult::neutral(&self.name, "clear") };
        }
        let skip = self.zone.kind == DnsListKind::Allow && self.zone.skip_greylisting;
        CheckResult {
            score: self.zone.weight,
            effect: if skip { Effect::SkipGreylisting } else { Effect::None },
            detail: format!("{what} listed in {} ({})", self.zone.zone, hits.join(", ")),
            ..CheckResult::neutral(&self.name, "listed")
        }
    }
}
