//! One structured log line per decision.
//!
//! Fields, not prose: `action` is what the client was told, `reason` a
//! stable kind (`new`, `too_soon`, `first_pass`, `whitelisted`, ...),
//! `detail` the human explanation (which list entry, which key).

use greygate_engine::{Facts, Verdict};
use greygate_proto::policy::{self, Request};

pub fn policy(
    peer: &str,
    facts: &Facts,
    req: &Request,
    verdict: &Verdict,
    action: &policy::Action,
) {
    tracing::info!(
        frontend = "policy",
        peer,
        client = %facts.client_ip,
        client_name = facts.client_name.as_deref().unwrap_or("unknown"),
        helo = facts.helo.as_deref().unwrap_or(""),
        sender = facts.sender.as_deref().unwrap_or(""),
        recipient = facts.recipient.as_deref().unwrap_or(""),
        stage = %facts.stage,
        queue_id = req.queue_id.as_deref().unwrap_or(""),
        action = action.keyword(),
        reason = verdict.reason.kind(),
        learning = verdict.learning,
        detail = %verdict.reason,
        "decision"
    );
}
