//! HELO/EHLO name checks; no DNS.
//!
//! - syntax: a fully qualified host name or an address literal
//!   (`[192.0.2.1]`, `[IPv6:2001:db8::1]`); a bare address, a single label
//!   or bad characters are `invalid`;
//! - an address literal that is not the client's address is `mismatch`;
//! - our own host name (or one of the names/literals configured as ours)
//!   from a client that is not trusted is `forged`: a classic bot trick.

use std::net::IpAddr;

use async_trait::async_trait;

use crate::check::{Check, CheckResult};
use crate::facts::Facts;

/// Score contributions.
#[derive(Debug, Clone, PartialEq)]
pub struct HeloScores {
    pub invalid: f64,
    pub mismatch: f64,
    pub forged: f64,
    /// Names (and `[address]` literals) that are ours, lowercase.
    pub own_names: Vec<String>,
}

/// The check.
pub struct HeloCheck {
    scores: HeloScores,
}

impl HeloCheck {
    pub fn new(mut scores: HeloScores) -> HeloCheck {
        for n in &mut scores.own_names {
            *n = n.trim_end_matches('.').to_ascii_lowercase();
        }
        HeloCheck { scores }
    }
}

/// A syntactically valid host name with at least two labels and a
/// non-numeric top-level label.
pub fn valid_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !labels[labels.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// `None` when `helo` is not an address literal; `Some(None)` for brackets
/// around something that is not an address; `Some(Some(ip))` otherwise.
fn literal(helo: &str) -> Option<Option<IpAddr>> {
    let inner = helo.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.strip_prefix("IPv6:").or_else(|| inner.strip_prefix("ipv6:")).unwrap_or(inner);
    Some(inner.parse().ok())
}

#[async_trait]
impl Check for HeloCheck {
    fn name(&self) -> &str {
        "helo"
    }

    async fn check(&self, facts: &Facts) -> CheckResult {
        let Some(helo) = facts.helo.as_deref().map(str::trim).filter(|h| !h.is_empty()) else {
            return CheckResult { detail: "no HELO given".into(), ..CheckResult::neutral("helo", "none") };
        };
        let shown = super::sanitize(helo, 100);
        let lower = helo.trim_end_matches('.').to_ascii_lowercase();
        if self.scores.own_names.contains(&lower) {
            return CheckResult {
                score: self.scores.forged,
                detail: format!("HELO {shown} is our own name"),
                ..CheckResult::neutral("helo", "forged")
            };
        }
        let client = facts.client_ip.to_canonical();
        match literal(helo) {
            Some(Some(ip)) if ip.to_canonical() == client => CheckResult {
                detail: format!("HELO {shown} is the client address"),
                ..CheckResult::neutral("helo", "pass")
            },
            Some(Some(_)) => CheckResult {
                score: self.scores.mismatch,
                detail: format!("HELO {shown} is not the client address {client}"),
                ..CheckResult::neutral("helo", "mismatch")
            },
            Some(None) => CheckResult {
                score: self.scores.invalid,
                detail: format!("HELO {shown} is not a valid address literal"),
                ..CheckResult::neutral("helo", "invalid")
            },
            None if helo.parse::<IpAddr>().is_ok() => CheckResult {
                score: self.scores.invalid,
                detail: format!("HELO {shown} is an address without brackets"),
                ..CheckResult::neutral("helo", "invalid")
            },
            None if !valid_hostname(helo) => CheckResult {
                score: self.scores.invalid,
                detail: format!("HELO {shown} is not a fully qualified host name"),
                ..CheckResult::neutral("helo", "invalid")
            },
            None => {
                CheckResult { detail: format!("HELO {shown} is well-formed"), ..CheckResult::neutral("helo", "pass") }
            }
        }
    }
}
