//! One structured log line per decision.
//!
//! Fields, not prose: `action` is what the client was told, `reason` a
//! stable kind (`new`, `too_soon`, `first_pass`, `whitelisted`, ...),
//! `detail` the human explanation (which list entry, which key).

use greygate_engine::{Facts, Verdict};
use greygate_proto::policy::{self, Attr, Request};

pub fn policy(facts: &Facts, req: &Request, verdict: &Verdict, action: &policy::Action) {
    tracing::info!(
        frontend = "policy",
        client = %facts.client_ip,
        client_name = facts.client_name.as_deref().unwrap_or("unknown"),
        helo = facts.helo.as_deref().unwrap_or(""),
        sender = facts.sender.as_deref().unwrap_or(""),
        recipient = facts.recipient.as_deref().unwrap_or(""),
        queue_id = req.get(Attr::QueueId).unwrap_or(""),
        action = action.keyword(),
        reason = verdict.reason.kind(),
        learning = verdict.learning,
        detail = %verdict.reason,
        "decision"
    );
}
