//! SPF (RFC 7208) of the envelope sender, acted on per result.
//!
//! The evaluation itself (DNS, macros, the ten-lookup limit) sits behind
//! [`SpfVerifier`]; the binary implements it with mail-auth. This module
//! decides what each result means for the mail, writes the
//! `Received-SPF` header, and on `pass` offers the authenticated sender
//! domain as the retry identity, so a sender pool that retries from
//! another address still matches its first attempt. The first attempt is
//! deferred all the same: an SPF-publishing spammer gains nothing.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;

use super::sanitize;
use crate::check::{Check, CheckResult, Effect};
use crate::facts::Facts;
use crate::template::Reply;

/// RFC 7208 §2.6 results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl SpfResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for SpfResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an SPF evaluation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    pub result: SpfResult,
    /// The domain whose policy was evaluated (sender domain, or the HELO
    /// name for the null sender).
    pub domain: String,
    /// The domain's own explanation (`exp=`), on fail.
    pub explanation: Option<String>,
}

/// Evaluates SPF; implemented over DNS by the binary.
#[async_trait]
pub trait SpfVerifier: Send + Sync {
    /// `sender` is the MAIL FROM address, empty for the null sender (then
    /// the HELO identity is checked, RFC 7208 §2.3).
    async fn verify(&self, ip: IpAddr, helo: &str, sender: &str) -> SpfOutcome;
}

/// What greygate does with one SPF result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfAction {
    /// Refuse permanently (550 5.7.23, or 5.7.24 for permerror).
    Reject,
    /// Refuse temporarily (451 4.7.24 for temperror, else 4.7.1).
    Defer,
    /// Greylist, even when other checks would let the mail through.
    Greylist,
    /// No opinion: the other checks and the greylisting rules decide.
    Dunno,
    /// Accept without greylisting. (Lets any domain that publishes SPF
    /// skip the retry: use with care.)
    Skip,
}

/// The action for each result, and the SPF check's switches.
#[derive(Debug, Clone, PartialEq)]
pub struct SpfPolicy {
    pub pass: SpfAction,
    pub fail: SpfAction,
    pub softfail: SpfAction,
    pub neutral: SpfAction,
    pub none: SpfAction,
    pub temperror: SpfAction,
    pub permerror: SpfAction,
    /// Record and add the header, but act on nothing (tumgreyspf's
    /// SPFSEEDONLY).
    pub check_only: bool,
    /// On pass, key the triplet on the SPF-authenticated sender domain.
    pub retry_identity: bool,
    /// Add a `Received-SPF` header.
    pub header: bool,
    /// This gateway's name, for the header.
    pub hostname: String,
}

impl Default for SpfPolicy {
    fn default() -> Self {
        SpfPolicy {
            pass: SpfAction::Dunno,
            fail: SpfAction::Reject,
            softfail: SpfAction::Greylist,
            neutral: SpfAction::Greylist,
            none: SpfAction::Greylist,
            temperror: SpfAction::Defer,
            permerror: SpfAction::Greylist,
            check_only: false,
            retry_identity: true,
            header: true,
            hostname: "localhost".into(),
        }
    }
}

impl SpfPolicy {
    pub fn action(&self, result: SpfResult) -> SpfAction {
        match result {
            SpfResult::Pass => self.pass,
            SpfResult::Fail => self.fail,
            SpfResult::SoftFail => self.softfail,
            SpfResult::Neutral => self.neutral,
            SpfResult::None => self.none,
            SpfResult::TempError => self.temperror,
            SpfResult::PermError => self.permerror,
        }
    }
}

/// The SPF check.
pub struct SpfCheck {
    verifier: Arc<dyn SpfVerifier>,
    policy: SpfPolicy,
}

impl SpfCheck {
    pub fn new(verifier: Arc<dyn SpfVerifier>, policy: SpfPolicy) -> SpfCheck {
        SpfCheck { verifier, policy }
    }
}

/// The RFC 7208 §9.1 comment for a result.
fn comment(result: SpfResult, who: &str, ip: IpAddr, domain: &str) -> String {
    match result {
        SpfResult::Pass => format!("domain of {who} designates {ip} as permitted sender"),
        SpfResult::Fail => format!("domain of {who} does not designate {ip} as permitted sender"),
        SpfResult::SoftFail => format!("domain of transitioning {who} does not designate {ip} as permitted sender"),
        SpfResult::Neutral => format!("{ip} is neither permitted nor denied by domain of {who}"),
        SpfResult::None => format!("domain of {who} does not publish an SPF record"),
        SpfResult::TempError => format!("temporary error while evaluating the SPF record of {domain}"),
        SpfResult::PermError => format!("permanent error in the SPF record of {domain}"),
    }
}

#[async_trait]
impl Check for SpfCheck {
    fn name(&self) -> &str {
        "spf"
    }

    async fn check(&self, facts: &Facts) -> CheckResult {
        let Some(sender) = facts.sender.as_deref() else {
            return CheckResult::neutral("spf", "skipped");
        };
        let sender = if sender == "<>" { "" } else { sender };
        let helo = facts.helo.as_deref().unwrap_or("");
        if sender.is_empty() && helo.is_empty() {
            return CheckResult { detail: "null sender and no HELO".into(), ..CheckResult::neutral("spf", "none") };
        }
        let ip = facts.client_ip.to_canonical();
        let outcome = self.verifier.verify(ip, helo, sender).await;
        let result = outcome.result;
        let domain = sanitize(&outcome.domain, 255);
        let who = if sender.is_empty() { format!("postmaster@{domain}") } else { sanitize(sender, 255) };
        let detail = comment(result, &who, ip, &domain);
        let mut r = CheckResult { detail: detail.clone(), ..CheckResult::neutral("spf", result.as_str()) };
        if self.policy.header {
            r.headers.push(format!(
                "Received-SPF: {result} ({host}: {detail}) client-ip={ip}; envelope-from=\"{from}\"; helo={helo}; receiver={host}; identity={identity};",
                host = self.policy.hostname,
                from = sanitize(sender, 255).replace('"', "?"),
                helo = sanitize(helo, 255).replace([';', ' '], "?"),
                identity = if sender.is_empty() { "helo" } else { "mailfrom" },
            ));
        }
        if self.policy.check_only {
            r.detail.push_str(" (check only)");
            return r;
        }
        r.effect = match self.policy.action(result) {
            SpfAction::Reject => Effect::Reject(match result {
                SpfResult::PermError => {
                    Reply { code: 550, status: Some("5.7.24".into()), text: format!("SPF permanent error: {detail}") }
                }
                _ => Reply {
                    code: 550,
                    status: Some("5.7.23".into()),
                    text: match outcome.explanation.as_deref().map(|e| sanitize(e, 200)).filter(|e| !e.is_empty()) {
                        Some(exp) => format!("SPF {result}: {exp}"),
                        None => format!("SPF {result}: {detail}"),
                    },
                },
            }),
            SpfAction::Defer => Effect::Defer(match result {
                SpfResult::TempError => Reply {
                    code: 451,
                    status: Some("4.7.24".into()),
                    text: format!("SPF temporary error: {detail}, please try again later"),
                },
                _ => Reply {
                    code: 451,
                    status: Some("4.7.1".into()),
                    text: format!("SPF {result}: {detail}, please try again later"),
                },
            }),
            SpfAction::Greylist => Effect::Greylist,
            SpfAction::Dunno => Effect::None,
            SpfAction::Skip => Effect::SkipGreylisting,
        };
        if result == SpfResult::Pass && self.policy.retry_identity && !sender.is_empty() && !domain.is_empty() {
            r.retry_identity = Some(format!("spf:{}", domain.to_ascii_lowercase()));
        }
        r
    }
}
