//! The sender checks: SPF, DNS block and allow lists, reverse DNS, HELO.
//!
//! Each is a [`Check`](crate::Check) that turns facts (and DNS answers from
//! a [`Resolver`](crate::dns::Resolver) or an [`SpfVerifier`]) into a
//! [`CheckResult`](crate::CheckResult): a result word, a score, an effect,
//! headers, and for SPF pass or confirmed reverse DNS a retry identity.
//! The engine adds the scores up and compares them with the
//! [`Scoring`](crate::engine::Scoring) thresholds. Nothing here does I/O
//! itself; lookups go through the traits, so every check is unit-tested
//! with tables.

pub mod dnsbl;
pub mod helo;
pub mod rdns;
pub mod spf;

pub use dnsbl::{DnsListCheck, DnsListKind, DnsListTarget, DnsListZone};
pub use helo::{HeloCheck, HeloScores};
pub use rdns::{ClientNames, RdnsCheck, RdnsScores, client_names};
pub use spf::{SpfAction, SpfCheck, SpfOutcome, SpfPolicy, SpfResult, SpfVerifier};

use crate::check::{CheckResult, Effect};
use crate::dns::DnsError;
use crate::template::Reply;

/// What a DNS failure (timeout, SERVFAIL) makes of a check.
#[derive(Debug, Clone, PartialEq)]
pub enum OnDnsFailure {
    /// Result `unknown`, no score, no effect.
    Skip,
    /// Result `unknown`, and the message is deferred with this reply.
    Defer(Reply),
}

impl OnDnsFailure {
    /// The default deferral reply for DNS failures.
    pub fn defer() -> OnDnsFailure {
        OnDnsFailure::Defer(Reply {
            code: 451,
            status: Some("4.4.3".into()),
            text: "Temporary DNS failure, please try again later".into(),
        })
    }

    fn result(&self, check: &str, what: &str, error: &DnsError) -> CheckResult {
        CheckResult {
            effect: match self {
                OnDnsFailure::Skip => Effect::None,
                OnDnsFailure::Defer(reply) => Effect::Defer(reply.clone()),
            },
            detail: format!("{what}: {error}"),
            ..CheckResult::neutral(check, "unknown")
        }
    }
}

/// Text from the outside world (SPF explanations, HELO, senders) made safe
/// for a reply or a header: printable ASCII only, at most `max` bytes.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out: String = text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    if out.len() > max {
        out.truncate(max);
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests;
