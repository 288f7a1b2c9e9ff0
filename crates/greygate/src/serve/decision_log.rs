//! One structured log line per decision.
//!
//! Fields, not prose: `action` is what the client was told, `reason` a
//! stable kind (`new`, `too_soon`, `first_pass`, `whitelisted`, ...). A
//! greylisting outcome adds `net` (the client part of the key) and
//! `remaining` or `delayed` seconds; any other outcome adds `detail`, the
//! human explanation (which list entry, which rule, which error). This
//! line is written for every decision, so it avoids formatting prose when
//! fields say the same.

use greygate_engine::{Facts, Reason, Verdict};
use greygate_proto::policy::{self, Attr, Request};
use greygate_store::Outcome;

pub fn policy(facts: &Facts, req: &Request, verdict: &Verdict, action: &policy::Action) {
    decision("policy", facts, verdict, action.keyword(), req.get(Attr::QueueId).unwrap_or(""));
}

/// The decision line for any front end; `id` is the queue or session id.
pub fn decision(frontend: &'static str, facts: &Facts, verdict: &Verdict, action: &str, id: &str) {
    let client_name = facts.client_name.as_deref().unwrap_or("unknown");
    let helo = facts.helo.as_deref().unwrap_or("");
    let sender = facts.sender.as_deref().unwrap_or("");
    let recipient = facts.recipient.as_deref().unwrap_or("");
    let (reason, learning) = (verdict.reason.kind(), verdict.learning);
    let mut client = String::with_capacity(40);
    greygate_engine::network::push_ip(&mut client, facts.client_ip);
    let client = client.as_str();
    match &verdict.reason {
        Reason::Greylist { outcome, key } => {
            let (remaining, delayed) = match *outcome {
                Outcome::New | Outcome::Stale | Outcome::Expired => (None, None),
                Outcome::TooSoon { remaining } => (Some(remaining), None),
                Outcome::FirstPass { delayed } => (None, Some(delayed)),
                Outcome::Passed | Outcome::AutoWhitelisted { .. } => (None, None),
            };
            tracing::info!(
                frontend,
                client,
                client_name,
                helo,
                sender,
                recipient,
                id,
                action,
                reason,
                learning,
                net = key.client.as_str(),
                remaining,
                delayed,
                "decision"
            );
        }
        other => tracing::info!(
            frontend,
            client,
            client_name,
            helo,
            sender,
            recipient,
            id,
            action,
            reason,
            learning,
            detail = %other,
            "decision"
        ),
    }
}
