//! Decision profiles, and questions about a whole transaction.
//!
//! greygate's own semantics decide every recipient on its triplet, and a
//! client is whitelisted after `auto_whitelist_after` counted passes.
//! greydaemon (qmail's UDP greylister) decides differently, and a
//! drop-in replacement must too: a client address that passed *one*
//! triplet is "known" and skips greylisting for `pass_lifetime` (its `-t`)
//! since it was last seen, and the question is asked once per transaction
//! (at DATA, with every recipient), so "known" is looked up once, before
//! any triplet. Both profiles share the pipeline, the lists, the rules and
//! the store: a triplet recorded under one is the same triplet under the
//! other.
//!
//! This module owns the per-transaction orchestration and greydaemon's
//! bounce rule; the pipeline itself stays in the parent module.

use greygate_store::{Outcome, Timestamp};

use super::Engine;
use crate::facts::Facts;
use crate::verdict::{Reason, Verdict};

/// Whose decision semantics apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// greygate's triplet semantics (what the policy server and the proxy
    /// use).
    #[default]
    Greygate,
    /// greydaemon's: a client address that passed once is known for
    /// `pass_lifetime` since it was last seen (auto-whitelisting after one
    /// pass; `auto_whitelist_after` is not used).
    Greydaemon,
}

/// How one recipient is asked about; the default is a plain
/// [`Engine::decide`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ask {
    pub profile: Profile,
    /// Greydaemon: whether this recipient's store decision may find the
    /// client known. Only the first recipient that reaches the store in a
    /// transaction does; a pass earlier in the same transaction must not
    /// let the later recipients through (greydaemon checks once).
    pub check_known: bool,
    /// Apply greydaemon's bounce rule ([`is_verp_bounce`]).
    pub bounces: bool,
}

impl Ask {
    /// The auto-whitelist threshold for this decision; `None` when off.
    pub fn auto_whitelist_after(&self, configured: u32) -> Option<u32> {
        match self.profile {
            Profile::Greygate => (configured > 0).then_some(configured),
            // A threshold no client reaches still counts the pass. i32::MAX,
            // not u32::MAX, so that a backend storing it as a signed 32-bit
            // integer cannot wrap it to -1.
            Profile::Greydaemon => Some(if self.check_known { 1 } else { i32::MAX as u32 }),
        }
    }
}

/// greydaemon's bounce rule: a message from the null sender to a recipient
/// that matches `/-.*=/` (a VERP return address such as
/// `list-bounces-bob=example.net@lists.example.org`) is a bounce to a
/// mailing list, accepted at once and not recorded.
pub fn is_verp_bounce(sender: &str, recipient: &str) -> bool {
    (sender.is_empty() || sender == "<>") && recipient.find('-').is_some_and(|dash| recipient[dash + 1..].contains('='))
}

impl Engine {
    /// [`Engine::decide`] under `profile`, for one recipient.
    pub async fn decide_as(&self, profile: Profile, facts: &Facts, now: Timestamp) -> Verdict {
        let ask = Ask { profile, check_known: true, bounces: false };
        let verdict = self.evaluate(facts, now, None, ask).await;
        self.count(&verdict);
        verdict
    }

    /// Decide on a whole transaction at once, as qmail asks at DATA:
    /// `facts` without a recipient, and every recipient in order.
    ///
    /// Returns one verdict per recipient decided, in order. Deciding stops
    /// early, as greydaemon does, at a recipient accepted as a bounce
    /// ([`is_verp_bounce`]), and under [`Profile::Greydaemon`] at a known
    /// client (`Outcome::AutoWhitelisted`), which answers for the whole
    /// transaction. Every recipient decided is recorded, so a transaction
    /// with one new recipient among passing ones is greylisted and its new
    /// triplet starts counting.
    pub async fn decide_transaction(
        &self,
        profile: Profile,
        facts: &Facts,
        recipients: &[String],
        now: Timestamp,
    ) -> Vec<Verdict> {
        let mut verdicts = Vec::with_capacity(recipients.len());
        let mut check_known = true;
        let mut one = facts.clone();
        // Without the null sender no recipient is a bounce, so once the
        // known-address lookup is done the order no longer matters and the
        // remaining recipients are decided concurrently (one store round
        // trip instead of one per recipient).
        let bounce_possible = facts.sender.as_deref().is_none_or(|s| s.is_empty() || s == "<>");
        for (i, recipient) in recipients.iter().enumerate() {
            if !bounce_possible && (!check_known || profile == Profile::Greygate) {
                let rest = recipients[i..].iter().map(|r| {
                    let facts = Facts { recipient: Some(r.clone()), ..facts.clone() };
                    async move {
                        let ask = Ask { profile, check_known, bounces: true };
                        let verdict = self.evaluate(&facts, now, None, ask).await;
                        self.count(&verdict);
                        verdict
                    }
                });
                verdicts.extend(futures::future::join_all(rest).await);
                break;
            }
            one.recipient = Some(recipient.clone());
            let ask = Ask { profile, check_known, bounces: true };
            let verdict = self.evaluate(&one, now, None, ask).await;
            self.count(&verdict);
            let stop = match &verdict.reason {
                Reason::Bounce => true,
                Reason::Greylist { outcome: Outcome::AutoWhitelisted { .. }, .. } => profile == Profile::Greydaemon,
                _ => false,
            };
            if matches!(verdict.reason, Reason::Greylist { .. } | Reason::StoreFailure { .. }) {
                check_known = false;
            }
            verdicts.push(verdict);
            if stop {
                break;
            }
        }
        verdicts
    }
}

#[cfg(test)]
mod tests;
