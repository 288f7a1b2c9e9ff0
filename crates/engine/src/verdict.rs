//! What the engine answers: an action, headers to add, and why.

use std::fmt;

use greygate_store::{ListTarget, Outcome, TripletKey};

use crate::facts::Stage;
use crate::lists::Source;
use crate::template::Reply;

/// What the front end must do with the message (for this recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    /// Temporary refusal: the sender should retry.
    Defer(Reply),
    /// Permanent refusal.
    Reject(Reply),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Defer(_) => "defer",
            Action::Reject(_) => "reject",
        }
    }
}

/// Why a verdict was reached. Every verdict has one.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The client is in a trusted network: nothing is checked.
    Trusted(Source),
    /// The client authenticated (SASL): nothing is checked.
    Authenticated(String),
    Blacklisted(ListTarget, Source),
    Whitelisted(ListTarget, Source),
    /// Rules turned greylisting off for this message.
    NotGreylisted {
        rules: Vec<String>,
    },
    /// greygate does not greylist at this stage.
    Stage(Stage),
    /// The question lacks something greylisting needs.
    Incomplete(&'static str),
    /// A check decided.
    Check {
        check: String,
        result: String,
        detail: String,
    },
    /// The greylisting store decided.
    Greylist {
        outcome: Outcome,
        key: TripletKey,
    },
    /// The store failed; the verdict is the configured fail mode.
    StoreFailure {
        error: String,
    },
    /// A bounce (null sender) to a VERP return address, accepted without
    /// greylisting (greydaemon's rule; qmail front end only).
    Bounce,
}

impl Reason {
    /// A stable short name, for counters and the `reason` log field.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Trusted(_) => "trusted",
            Reason::Authenticated(_) => "authenticated",
            Reason::Blacklisted(..) => "blacklisted",
            Reason::Whitelisted(..) => "whitelisted",
            Reason::NotGreylisted { .. } => "rule",
            Reason::Stage(_) => "stage",
            Reason::Incomplete(_) => "incomplete",
            Reason::Check { .. } => "check",
            Reason::Greylist { outcome, .. } => outcome.name(),
            Reason::StoreFailure { .. } => "store_error",
            Reason::Bounce => "bounce",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Trusted(s) => write!(f, "trusted network {s}"),
            Reason::Authenticated(user) => write!(f, "authenticated as {user}"),
            Reason::Blacklisted(t, s) => write!(f, "{t} blacklisted by {s}"),
            Reason::Whitelisted(t, s) => write!(f, "{t} whitelisted by {s}"),
            Reason::NotGreylisted { rules } => {
                write!(f, "greylisting off by rule {}", rules.join(", "))
            }
            Reason::Stage(stage) => write!(f, "no greylisting at stage {stage}"),
            Reason::Incomplete(what) => write!(f, "request has no {what}"),
            Reason::Check { check, result, detail } => write!(f, "{check} {result}: {detail}"),
            Reason::Greylist { outcome, key } => match outcome {
                Outcome::New => write!(f, "greylisted: new triplet {key}"),
                Outcome::TooSoon { remaining } => {
                    write!(f, "greylisted: retry too soon, {remaining}s left, {key}")
                }
                Outcome::Stale => write!(f, "greylisted: retry after the retry window, starting over, {key}"),
                Outcome::Expired => write!(f, "greylisted: passed triplet expired, starting over, {key}"),
                Outcome::FirstPass { delayed } => {
                    write!(f, "passed: retry after {delayed}s, {key}")
                }
                Outcome::Passed => write!(f, "passed: known triplet {key}"),
                Outcome::AutoWhitelisted { passes } => {
                    write!(f, "client auto-whitelisted after {passes} passes")
                }
            },
            Reason::StoreFailure { error } => write!(f, "store failure: {error}"),
            Reason::Bounce => f.write_str("bounce from the null sender to a VERP address"),
        }
    }
}

/// The engine's answer for one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub action: Action,
    /// Header lines (`Name: value`) to add to the message.
    pub headers: Vec<String>,
    pub reason: Reason,
    /// Learning mode turned a refusal into acceptance; `reason` tells what
    /// would have happened.
    pub learning: bool,
}

impl Verdict {
    pub fn accept(reason: Reason) -> Verdict {
        Verdict { action: Action::Accept, headers: Vec::new(), reason, learning: false }
    }
}
