//! One structured log line per decision.
//!
//! Fields, not prose: `action` is what the client was told, `reason` a
//! stable kind (`new`, `too_soon`, `first_pass`, `whitelisted`, ...). A
//! greylisting outcome adds `net` (the client part of the key) and
//! `remaining` or `delayed` seconds; any other outcome adds `detail`, the
//! human explanation (which list entry, which rule, which error). This
//! line is written for every decision, so it avoids formatting prose when
//! fields say the same.
//!
//! With the text format (the default) the line is written straight into
//! the log buffer ([`crate::logging::text_line`]): going through `tracing`'s
//! field visitors cost a policy server a fifth of its per-request work.
//! The JSON format takes the `tracing` event; both carry the same fields in
//! the same order, which a test checks.

use greygate_engine::network::push_ip;
use greygate_engine::{Facts, Reason, Verdict};
use greygate_proto::policy::{self, Attr, Request};
use greygate_store::Outcome;
use tracing::Level;

use crate::logging::{self, Line};

pub fn policy(facts: &Facts, req: &Request, verdict: &Verdict, action: &policy::Action) {
    decision("policy", facts, verdict, action.keyword(), req.get(Attr::QueueId).unwrap_or(""));
}

/// The decision line for any front end; `id` is the queue or session id.
pub fn decision(frontend: &'static str, facts: &Facts, verdict: &Verdict, action: &str, id: &str) {
    if !tracing::enabled!(Level::INFO) {
        return;
    }
    let mut client = String::with_capacity(40);
    push_ip(&mut client, facts.client_ip);
    let line = DecisionLine::new(frontend, &client, facts, verdict, action, id);
    if !logging::text_line(Level::INFO, "decision", |l| line.write(l)) {
        line.event();
    }
}

/// The fields of one decision line, in their order.
struct DecisionLine<'a> {
    frontend: &'static str,
    client: &'a str,
    client_name: &'a str,
    helo: &'a str,
    sender: &'a str,
    recipient: &'a str,
    id: &'a str,
    action: &'a str,
    reason: &'static str,
    learning: bool,
    /// Greylisting outcomes: the key's client part and the seconds.
    net: Option<&'a str>,
    remaining: Option<i64>,
    delayed: Option<i64>,
    /// Any other outcome: the explanation.
    detail: Option<String>,
}

impl<'a> DecisionLine<'a> {
    fn new(
        frontend: &'static str,
        client: &'a str,
        facts: &'a Facts,
        verdict: &'a Verdict,
        action: &'a str,
        id: &'a str,
    ) -> Self {
        let (mut net, mut remaining, mut delayed, mut detail) = (None, None, None, None);
        match &verdict.reason {
            Reason::Greylist { outcome, key } => {
                net = Some(key.client.as_str());
                match *outcome {
                    Outcome::TooSoon { remaining: r } => remaining = Some(r),
                    Outcome::FirstPass { delayed: d } => delayed = Some(d),
                    Outcome::New
                    | Outcome::Stale
                    | Outcome::Expired
                    | Outcome::Passed
                    | Outcome::AutoWhitelisted { .. } => {}
                }
            }
            other => detail = Some(other.to_string()),
        }
        DecisionLine {
            frontend,
            client,
            client_name: facts.client_name.as_deref().unwrap_or("unknown"),
            helo: facts.helo.as_deref().unwrap_or(""),
            sender: facts.sender.as_deref().unwrap_or(""),
            recipient: facts.recipient.as_deref().unwrap_or(""),
            id,
            action,
            reason: verdict.reason.kind(),
            learning: verdict.learning,
            net,
            remaining,
            delayed,
            detail,
        }
    }

    fn write(&self, l: &mut Line<'_>) {
        l.str("frontend", self.frontend);
        l.str("client", self.client);
        l.str("client_name", self.client_name);
        l.str("helo", self.helo);
        l.str("sender", self.sender);
        l.str("recipient", self.recipient);
        l.str("id", self.id);
        l.str("action", self.action);
        l.str("reason", self.reason);
        l.bool("learning", self.learning);
        if let Some(net) = self.net {
            l.str("net", net);
        }
        if let Some(n) = self.remaining {
            l.i64("remaining", n);
        }
        if let Some(n) = self.delayed {
            l.i64("delayed", n);
        }
        if let Some(detail) = &self.detail {
            l.str("detail", detail);
        }
    }

    /// The same fields as a `tracing` event (for the JSON format); absent
    /// options are left out, as [`Self::write`] leaves them out.
    fn event(&self) {
        tracing::info!(
            frontend = self.frontend,
            client = self.client,
            client_name = self.client_name,
            helo = self.helo,
            sender = self.sender,
            recipient = self.recipient,
            id = self.id,
            action = self.action,
            reason = self.reason,
            learning = self.learning,
            net = self.net,
            remaining = self.remaining,
            delayed = self.delayed,
            detail = self.detail.as_deref(),
            "decision"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use greygate_engine::{Action, Stage};
    use greygate_store::TripletKey;

    use super::*;
    use crate::logging::testing;

    #[test]
    fn the_direct_line_is_what_the_event_would_have_written() {
        let facts = Facts {
            stage: Stage::Rcpt,
            client_ip: "2001:db8::7".parse::<IpAddr>().unwrap(),
            client_name: None,
            reverse_name: None,
            helo: Some("say \"hi\" =\\ ünïcode".into()),
            sender: Some(String::new()),
            recipient: Some("bob@example.net".into()),
            authenticated: None,
            tls: false,
        };
        let key =
            TripletKey { client: "2001:db8::/64".into(), sender: "<>".into(), recipient: "bob@example.net".into() };
        let greylist = |outcome| Reason::Greylist { outcome, key: key.clone() };
        let reasons = [
            greylist(Outcome::New),
            greylist(Outcome::TooSoon { remaining: 42 }),
            greylist(Outcome::FirstPass { delayed: 301 }),
            Reason::Authenticated("alice".into()),
        ];
        for (i, reason) in reasons.into_iter().enumerate() {
            let verdict = Verdict { action: Action::Accept, headers: Vec::new(), reason, learning: i == 1 };
            let line = DecisionLine::new("policy", "2001:db8::7", &facts, &verdict, "DUNNO", "Q1D");
            let direct = testing::direct(Level::INFO, "decision", |l| line.write(l));
            let event = testing::event(|| line.event());
            // Equal after the timestamp (27 bytes: `2026-11-21T07:16:16.123509Z`).
            assert_eq!(direct[27..], event[27..], "{direct}");
            assert!(direct.contains(" client=2001:db8::7 client_name=unknown "), "{direct}");
        }
    }
}
