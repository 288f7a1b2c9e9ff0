//! `[dns]` and `[checks]`: the resolver and the sender checks (SPF, DNS
//! lists, reverse DNS, HELO), as written and validated.
//!
//! Every check is off by default, so a default install asks no DNS
//! questions. [`ChecksConfig::from_raw`] turns the raw tables into the
//! engine's check settings; the binary's `checks` module builds the
//! checks from that with a real resolver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use greygate_engine::Scoring;
use greygate_engine::checks::rdns::DYNAMIC_PATTERNS;
use greygate_engine::checks::{
    DnsListKind, DnsListTarget, DnsListZone, HeloScores, OnDnsFailure, RdnsScores, SpfAction, SpfPolicy,
};
use greygate_engine::template::{ReplyClass, ReplyTemplate};
use regex::RegexSetBuilder;
use serde::{Deserialize, Serialize};

use super::duration::Human;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsFailureMode {
    /// The check's result is `unknown` and it has no say.
    Skip,
    /// The message is deferred (`451 4.4.3`), to be tried again later.
    Defer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDns {
    /// Name servers as `ip` or `ip:port` (UDP, TCP on truncation); empty
    /// uses the system's /etc/resolv.conf.
    pub nameservers: Vec<String>,
    /// Per-query timeout.
    pub timeout: Human,
    /// Tries per query and server.
    pub attempts: usize,
    /// Answers kept in the cache (each for its TTL, negative answers for
    /// the SOA minimum); 0 disables caching.
    pub cache_size: u64,
    /// What a DNS failure (timeout, SERVFAIL) does to a DNS list or
    /// reverse-DNS check. SPF has its own `temperror` action.
    pub on_failure: DnsFailureMode,
}

impl Default for RawDns {
    fn default() -> Self {
        RawDns {
            nameservers: Vec::new(),
            timeout: Human::secs(2),
            attempts: 2,
            cache_size: 8192,
            on_failure: DnsFailureMode::Skip,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfActionWord {
    /// Refuse permanently (550 5.7.23; 5.7.24 for permerror).
    Reject,
    /// Refuse temporarily (451).
    Defer,
    /// Greylist even when scores or allow lists would skip it.
    Greylist,
    /// No opinion.
    Dunno,
    /// Accept without greylisting.
    Skip,
}

impl From<SpfActionWord> for SpfAction {
    fn from(w: SpfActionWord) -> SpfAction {
        match w {
            SpfActionWord::Reject => SpfAction::Reject,
            SpfActionWord::Defer => SpfAction::Defer,
            SpfActionWord::Greylist => SpfAction::Greylist,
            SpfActionWord::Dunno => SpfAction::Dunno,
            SpfActionWord::Skip => SpfAction::Skip,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpf {
    pub enabled: bool,
    /// Record the result and add the header, but act on nothing.
    pub check_only: bool,
    pub pass: SpfActionWord,
    pub fail: SpfActionWord,
    pub softfail: SpfActionWord,
    pub neutral: SpfActionWord,
    pub none: SpfActionWord,
    pub temperror: SpfActionWord,
    pub permerror: SpfActionWord,
    /// On pass, key the greylisting triplet on the sender domain instead
    /// of the client network, so a sender pool retrying from another
    /// address matches. The first attempt is still deferred.
    pub retry_identity: bool,
    /// Add `Received-SPF:` (PREPEND in policy mode, inserted by the proxy).
    pub header: bool,
    /// Longest time for one whole SPF evaluation (all its lookups); then
    /// the result is temperror.
    pub timeout: Human,
}

impl Default for RawSpf {
    fn default() -> Self {
        let p = SpfPolicy::default();
        let w = |a: SpfAction| match a {
            SpfAction::Reject => SpfActionWord::Reject,
            SpfAction::Defer => SpfActionWord::Defer,
            SpfAction::Greylist => SpfActionWord::Greylist,
            SpfAction::Dunno => SpfActionWord::Dunno,
            SpfAction::Skip => SpfActionWord::Skip,
        };
        RawSpf {
            enabled: false,
            check_only: p.check_only,
            pass: w(p.pass),
            fail: w(p.fail),
            softfail: w(p.softfail),
            neutral: w(p.neutral),
            none: w(p.none),
            temperror: w(p.temperror),
            permerror: w(p.permerror),
            retry_identity: p.retry_identity,
            header: p.header,
            timeout: Human::secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListTargetWord {
    /// The client address, reversed (IPv4 octets, IPv6 nibbles).
    Client,
    /// The envelope sender's domain.
    SenderDomain,
}

/// One `[[checks.dnsbl]]` or `[[checks.dnswl]]` zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsList {
    pub zone: String,
    /// Added to the score when listed; default 5 for block lists, -5 for
    /// allow lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// A answers that count as listed (`127.0.0.2`, `127.0.0.4/30`); empty:
    /// any 127.0.0.0/8 answer.
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default = "client_target")]
    pub target: ListTargetWord,
    /// Allow lists only: a listed client skips greylisting (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_greylisting: Option<bool>,
}

fn client_target() -> ListTargetWord {
    ListTargetWord::Client
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRdns {
    pub enabled: bool,
    /// Added when the client has no PTR record.
    pub missing_score: f64,
    /// Added when no PTR name resolves back to the client.
    pub unconfirmed_score: f64,
    /// Added when the name looks dynamic (pattern or embedded address).
    pub dynamic_score: f64,
    /// Case-insensitive regexes that mark a name as dynamic.
    pub dynamic_patterns: Vec<String>,
    /// A name with the client address written in it is dynamic.
    pub dynamic_embedded_ip: bool,
    /// Key the triplet on the forward-confirmed name's organisational
    /// domain (when SPF gave no identity).
    pub retry_identity: bool,
}

impl Default for RawRdns {
    fn default() -> Self {
        RawRdns {
            enabled: false,
            missing_score: 2.0,
            unconfirmed_score: 1.0,
            dynamic_score: 1.5,
            dynamic_patterns: DYNAMIC_PATTERNS.iter().map(|s| (*s).to_owned()).collect(),
            dynamic_embedded_ip: true,
            retry_identity: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHelo {
    pub enabled: bool,
    /// Not a host name or address literal (bare IP, single label, bad
    /// characters).
    pub invalid_score: f64,
    /// An address literal that is not the client's address.
    pub mismatch_score: f64,
    /// Our own name (`greylist.hostname` and `own_names`).
    pub forged_score: f64,
    /// More names and `[address]` literals that are ours.
    pub own_names: Vec<String>,
}

impl Default for RawHelo {
    fn default() -> Self {
        RawHelo { enabled: false, invalid_score: 1.0, mismatch_score: 2.0, forged_score: 5.0, own_names: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawChecks {
    /// A total score at or above this refuses the mail with
    /// `reject_reply`, naming the lists and checks that scored.
    pub reject_score: f64,
    /// Below this total, mail is accepted without greylisting (selective
    /// greylisting); at or above, it is greylisted. 0 with no allow lists
    /// greylists everyone, as classic greylisting does.
    pub greylist_score: f64,
    /// A 5xx reply; the scoring checks are appended. Placeholders as in
    /// `[replies]`.
    pub reject_reply: String,
    pub spf: RawSpf,
    pub rdns: RawRdns,
    pub helo: RawHelo,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dnsbl: Vec<RawDnsList>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dnswl: Vec<RawDnsList>,
}

impl Default for RawChecks {
    fn default() -> Self {
        RawChecks {
            reject_score: 10.0,
            greylist_score: 0.0,
            reject_reply: "554 5.7.1 Service unavailable; client {client} refused".into(),
            spf: RawSpf::default(),
            rdns: RawRdns::default(),
            helo: RawHelo::default(),
            dnsbl: Vec::new(),
            dnswl: Vec::new(),
        }
    }
}

/// The validated `[dns]` section.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Empty: the system configuration.
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: usize,
    pub cache_size: u64,
    pub on_failure: OnDnsFailure,
}

/// The validated checks; `None` for those switched off.
#[derive(Debug, Clone)]
pub struct ChecksConfig {
    pub dns: DnsConfig,
    pub spf: Option<(SpfPolicy, Duration)>,
    pub lists: Vec<DnsListZone>,
    pub rdns: Option<RdnsScores>,
    pub helo: Option<HeloScores>,
}

impl ChecksConfig {
    /// Whether any check needs DNS.
    pub fn uses_dns(&self) -> bool {
        self.spf.is_some() || !self.lists.is_empty() || self.rdns.is_some()
    }

    pub fn from_raw(dns: &RawDns, raw: &RawChecks, hostname: &str) -> Result<ChecksConfig> {
        let nameservers = dns
            .nameservers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .with_context(|| format!("dns.nameservers: {s:?} is not an address or address:port"))
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(!dns.timeout.0.is_zero(), "dns.timeout must be more than zero");
        ensure!(dns.attempts >= 1, "dns.attempts must be at least 1");
        let on_failure = match dns.on_failure {
            DnsFailureMode::Skip => OnDnsFailure::Skip,
            DnsFailureMode::Defer => OnDnsFailure::defer(),
        };
        let s = &raw.spf;
        let spf = s.enabled.then(|| {
            (
                SpfPolicy {
                    pass: s.pass.into(),
                    fail: s.fail.into(),
                    softfail: s.softfail.into(),
                    neutral: s.neutral.into(),
                    none: s.none.into(),
                    temperror: s.temperror.into(),
                    permerror: s.permerror.into(),
                    check_only: s.check_only,
                    retry_identity: s.retry_identity,
                    header: s.header,
                    hostname: hostname.to_owned(),
                },
                s.timeout.0,
            )
        });
        if spf.is_some() {
            ensure!(!s.timeout.0.is_zero(), "checks.spf.timeout must be more than zero");
        }
        let mut lists = Vec::new();
        for (kind, section, zones) in
            [(DnsListKind::Block, "dnsbl", &raw.dnsbl), (DnsListKind::Allow, "dnswl", &raw.dnswl)]
        {
            for z in zones {
                let zone = z.zone.trim().trim_end_matches('.').to_ascii_lowercase();
                ensure!(
                    greygate_engine::checks::helo::valid_hostname(&zone),
                    "checks.{section}: zone {:?} is not a domain name",
                    z.zone
                );
                let values = z
                    .values
                    .iter()
                    .map(|v| {
                        v.parse::<ipnet::Ipv4Net>()
                            .or_else(|_| v.parse::<std::net::Ipv4Addr>().map(ipnet::Ipv4Net::from))
                            .with_context(|| {
                                format!("checks.{section} {zone}: value {v:?} is not an IPv4 address or network")
                            })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let weight = z.weight.unwrap_or(if kind == DnsListKind::Block { 5.0 } else { -5.0 });
                ensure!(weight.is_finite(), "checks.{section} {zone}: weight must be a finite number");
                lists.push(DnsListZone {
                    zone,
                    kind,
                    target: match z.target {
                        ListTargetWord::Client => DnsListTarget::Client,
                        ListTargetWord::SenderDomain => DnsListTarget::SenderDomain,
                    },
                    weight,
                    values,
                    skip_greylisting: kind == DnsListKind::Allow && z.skip_greylisting.unwrap_or(true),
                });
            }
        }
        let r = &raw.rdns;
        let rdns = if r.enabled {
            let patterns = RegexSetBuilder::new(&r.dynamic_patterns)
                .case_insensitive(true)
                .build()
                .context("checks.rdns.dynamic_patterns")?;
            Some(RdnsScores {
                missing: r.missing_score,
                unconfirmed: r.unconfirmed_score,
                dynamic: r.dynamic_score,
                dynamic_patterns: patterns,
                dynamic_embedded_ip: r.dynamic_embedded_ip,
                retry_identity: r.retry_identity,
            })
        } else {
            None
        };
        let h = &raw.helo;
        let helo = h.enabled.then(|| {
            let mut own_names = vec![hostname.to_owned()];
            own_names.extend(h.own_names.iter().cloned());
            HeloScores { invalid: h.invalid_score, mismatch: h.mismatch_score, forged: h.forged_score, own_names }
        });
        Ok(ChecksConfig {
            dns: DnsConfig {
                nameservers,
                timeout: dns.timeout.0,
                attempts: dns.attempts,
                cache_size: dns.cache_size,
                on_failure,
            },
            spf,
            lists,
            rdns,
            helo,
        })
    }
}

/// The engine's score thresholds from `[checks]`.
pub fn scoring(raw: &RawChecks) -> Result<Scoring> {
    ensure!(!raw.reject_score.is_nan(), "checks.reject_score must be a number");
    ensure!(!raw.greylist_score.is_nan(), "checks.greylist_score must be a number");
    ensure!(
        raw.greylist_score <= raw.reject_score,
        "checks.greylist_score ({}) must not be above checks.reject_score ({})",
        raw.greylist_score,
        raw.reject_score
    );
    let reject_reply = ReplyTemplate::parse(&raw.reject_reply, ReplyClass::Permanent).context("checks.reject_reply")?;
    Ok(Scoring { reject: raw.reject_score, greylist: raw.greylist_score, reject_reply })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<ChecksConfig> {
        let raw: crate::config::RawConfig = toml::from_str(toml)?;
        scoring(&raw.checks)?;
        ChecksConfig::from_raw(&raw.dns, &raw.checks, "mx.test")
    }

    #[test]
    fn everything_is_off_by_default() {
        let c = load("").unwrap();
        assert!(!c.uses_dns() && c.helo.is_none() && c.lists.is_empty());
        assert!(c.dns.nameservers.is_empty());
    }

    #[test]
    fn valid_sections_become_check_settings() {
        let c = load(
            r#"
            [dns]
            nameservers = ["127.0.0.1:5353", "::1", "192.0.2.53"]
            on_failure = "defer"
            [checks.spf]
            enabled = true
            permerror = "reject"
            [checks.helo]
            enabled = true
            own_names = ["[192.0.2.25]"]
            [[checks.dnsbl]]
            zone = "Zen.Example."
            values = ["127.0.0.2", "127.0.0.4/30"]
            [[checks.dnswl]]
            zone = "wl.example"
            skip_greylisting = false
            "#,
        )
        .unwrap();
        let ns: Vec<String> = c.dns.nameservers.iter().map(|a| a.to_string()).collect();
        assert_eq!(ns, ["127.0.0.1:5353", "[::1]:53", "192.0.2.53:53"]);
        assert_eq!(c.dns.on_failure, OnDnsFailure::defer());
        let (spf, _) = c.spf.unwrap();
        assert_eq!((spf.permerror, spf.fail, spf.hostname.as_str()), (SpfAction::Reject, SpfAction::Reject, "mx.test"));
        assert_eq!(c.helo.unwrap().own_names, ["mx.test", "[192.0.2.25]"]);
        let zones: Vec<_> =
            c.lists.iter().map(|z| (z.zone.as_str(), z.weight, z.values.len(), z.skip_greylisting)).collect();
        assert_eq!(zones, [("zen.example", 5.0, 2, false), ("wl.example", -5.0, 0, false)]);
    }

    #[test]
    fn mistakes_are_named() {
        for (toml, want) in [
            ("[dns]\nnameservers = [\"resolver.example\"]", "dns.nameservers: \"resolver.example\""),
            ("[dns]\ntimeout = 0", "dns.timeout must be more than zero"),
            ("[[checks.dnsbl]]\nzone = \"not a zone\"", "checks.dnsbl: zone \"not a zone\""),
            ("[[checks.dnsbl]]\nzone = \"bl.example\"\nvalues = [\"127.0.0.300\"]", "value \"127.0.0.300\""),
            ("[checks]\ngreylist_score = 11", "checks.greylist_score (11) must not be above checks.reject_score (10)"),
            ("[checks.rdns]\nenabled = true\ndynamic_patterns = [\"(\"]", "checks.rdns.dynamic_patterns"),
            ("[checks.spf]\nfail = \"bounce\"", "unknown variant `bounce`"),
            ("[checks]\nreject_reply = \"451 4.7.1 not permanent\"", "checks.reject_reply"),
        ] {
            let error = format!("{:#}", load(toml).unwrap_err());
            assert!(error.contains(want), "{toml}: {error}");
        }
    }
}
