//! The interface for checks that decide whom to greylist and how hard.
//!
//! A check looks at the [`Facts`] of a message and returns a
//! [`CheckResult`]: a result word for logs and `explain`, a score, headers
//! to add, an [`Effect`] on the verdict, and optionally a retry identity
//! that replaces the client network in the greylisting key (so a sender
//! pool retrying from another address is recognised). Checks are shared by
//! every front end; anything slow (DNS) sits behind the check, not in the
//! engine.

use async_trait::async_trait;

use crate::facts::Facts;
use crate::template::Reply;

/// What a check asks the engine to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// No opinion.
    None,
    /// Accept without greylisting (the client is known good).
    SkipGreylisting,
    /// Greylist even if other checks would skip it.
    Greylist,
    /// Refuse temporarily now.
    Defer(Reply),
    /// Refuse permanently now.
    Reject(Reply),
}

/// One check's finding.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// The check's name.
    pub check: String,
    /// Its result in a word (`pass`, `fail`, `listed`, ...).
    pub result: String,
    /// Contribution to the total score (issue-specific thresholds decide).
    pub score: f64,
    pub effect: Effect,
    /// Header lines (`Name: value`) to add when the message is accepted.
    pub headers: Vec<String>,
    /// Human-readable explanation.
    pub detail: String,
    /// A key that identifies the sender across its address pool, used in
    /// place of the client network in the greylisting key.
    pub retry_identity: Option<String>,
}

impl CheckResult {
    /// A result with no effect.
    pub fn neutral(check: &str, result: &str) -> CheckResult {
        CheckResult {
            check: check.into(),
            result: result.into(),
            score: 0.0,
            effect: Effect::None,
            headers: Vec::new(),
            detail: String::new(),
            retry_identity: None,
        }
    }
}

/// A check run for each recipient before the greylisting decision.
#[async_trait]
pub trait Check: Send + Sync {
    fn name(&self) -> &str;

    /// Look at one recipient's facts (RCPT stage, or DATA for transactions
    /// greylisted at DATA).
    async fn check(&self, facts: &Facts) -> CheckResult;
}
