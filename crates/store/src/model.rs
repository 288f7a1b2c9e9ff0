//! The greylisting state machine, as pure functions.
//!
//! Every backend reads the current records, calls [`decide`], and writes the
//! records it returns, all in one atomic step. Keeping the rules here, once,
//! is what makes a triplet first seen through one backend or front end
//! behave the same when it is retried through another.
//!
//! Nothing here reads the clock: `now` is always an argument.

use serde::{Deserialize, Serialize};

use crate::{AutoWhitelist, DecideRequest, Timers, Timestamp, TripletKey};

/// Seconds between two counted passes of one client (postgrey's rule: a
/// client that retries many messages at once counts once an hour).
pub const AWL_COUNT_INTERVAL: i64 = 3600;

/// A whitelisted client's or a passed triplet's `last_seen` is refreshed
/// at most this often, so known senders, most of a mail server's traffic,
/// cost no write per message. Lifetimes are days, so an hour is nothing.
pub const REFRESH_INTERVAL: i64 = 3600;

/// Where a triplet stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Seen, not yet retried successfully.
    Pending,
    /// Retried after the delay; passes until its lifetime runs out.
    Passed,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Passed => "passed",
        }
    }
}

/// One stored triplet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: TripletKey,
    /// First attempt of the current greylisting round.
    pub first_seen: Timestamp,
    /// Most recent attempt.
    pub last_seen: Timestamp,
    /// When the first retry was accepted; `None` while pending.
    pub passed_at: Option<Timestamp>,
    /// Attempts refused in the current round (1 after the first sight).
    pub attempts: u32,
    /// Accepted attempts since the triplet passed, counted at most once
    /// per [`REFRESH_INTERVAL`] after the first.
    pub passes: u32,
    /// After this moment the entry is dead weight and may be purged.
    pub expires_at: Timestamp,
}

impl Entry {
    pub fn state(&self) -> EntryState {
        if self.passed_at.is_some() { EntryState::Passed } else { EntryState::Pending }
    }

    fn fresh(key: &TripletKey, timers: &Timers, now: Timestamp) -> Entry {
        Entry {
            key: key.clone(),
            first_seen: now,
            last_seen: now,
            passed_at: None,
            attempts: 1,
            passes: 0,
            expires_at: now.saturating_add(timers.retry_window),
        }
    }
}

/// One client address's auto-whitelist record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Exact client address, as text.
    pub client: String,
    /// Successful retries counted (at most one per [`AWL_COUNT_INTERVAL`]).
    pub passes: u32,
    /// When a pass was last counted.
    pub last_counted: Timestamp,
    /// When the client was last seen passing or whitelisted.
    pub last_seen: Timestamp,
    pub expires_at: Timestamp,
}

/// The result of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The client passed often enough to skip greylisting.
    AutoWhitelisted { passes: u32 },
    /// First attempt: recorded, to be deferred.
    New,
    /// Retried before the delay ran out: deferred again.
    TooSoon { remaining: i64 },
    /// Retried after the retry window: a new round starts, deferred.
    Stale,
    /// The triplet had passed, but not been seen within its lifetime: a new
    /// round starts, deferred.
    Expired,
    /// First retry after the delay: accepted; `delayed` seconds since the
    /// first attempt.
    FirstPass { delayed: i64 },
    /// Known good triplet: accepted.
    Passed,
}

impl Outcome {
    /// True when the message may go through.
    pub fn accepts(self) -> bool {
        matches!(self, Outcome::AutoWhitelisted { .. } | Outcome::FirstPass { .. } | Outcome::Passed)
    }

    /// Seconds until a retry can pass, for deferred outcomes.
    pub fn remaining(self, timers: &Timers) -> Option<i64> {
        match self {
            Outcome::New | Outcome::Stale | Outcome::Expired => Some(timers.delay),
            Outcome::TooSoon { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// Stable snake_case name, used for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::AutoWhitelisted { .. } => "auto_whitelisted",
            Outcome::New => "new",
            Outcome::TooSoon { .. } => "too_soon",
            Outcome::Stale => "stale",
            Outcome::Expired => "expired",
            Outcome::FirstPass { .. } => "first_pass",
            Outcome::Passed => "passed",
        }
    }
}

/// What a backend must write after a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub outcome: Outcome,
    /// The triplet entry after the decision (`None`: not consulted, the
    /// client is auto-whitelisted).
    pub entry: Option<Entry>,
    /// Whether `entry` must be written (a known triplet seen again within
    /// [`REFRESH_INTERVAL`] is not).
    pub write_entry: bool,
    /// The client record to store (`None`: leave it untouched).
    pub client: Option<ClientRecord>,
}

/// The whole decision: auto-whitelist first, then the triplet.
///
/// `prev_client` is only consulted when the request asks for
/// auto-whitelisting; `prev_entry` only when the client is not whitelisted.
/// A backend may therefore read the triplet lazily, but reading both up
/// front is always correct.
pub fn decide(req: &DecideRequest, prev_client: Option<&ClientRecord>, prev_entry: Option<&Entry>) -> Step {
    if let Some(awl) = &req.auto_whitelist
        && let Some(rec) = prev_client.filter(|r| whitelists(r, awl, req.now))
    {
        let refreshed = (req.now - rec.last_seen >= REFRESH_INTERVAL || rec.last_seen > req.now).then(|| {
            ClientRecord { last_seen: req.now, expires_at: req.now.saturating_add(awl.lifetime), ..rec.clone() }
        });
        return Step {
            outcome: Outcome::AutoWhitelisted { passes: rec.passes },
            entry: None,
            write_entry: false,
            client: refreshed,
        };
    }

    let (entry, outcome, write_entry) = triplet(prev_entry, &req.triplet, &req.timers, req.now);
    let client = match (outcome, &req.auto_whitelist) {
        (Outcome::FirstPass { .. }, Some(awl)) => count_pass(prev_client, awl, req.now),
        _ => None,
    };
    Step { outcome, entry: Some(entry), write_entry, client }
}

/// True when the client record puts the client on the auto-whitelist now.
pub fn whitelists(rec: &ClientRecord, awl: &AutoWhitelist, now: Timestamp) -> bool {
    rec.passes >= awl.after && now - rec.last_seen <= awl.lifetime
}

/// The triplet transition: the entry after it, the outcome, and whether
/// the entry changed enough to be written.
fn triplet(prev: Option<&Entry>, key: &TripletKey, timers: &Timers, now: Timestamp) -> (Entry, Outcome, bool) {
    let Some(prev) = prev else {
        return (Entry::fresh(key, timers, now), Outcome::New, true);
    };
    match prev.state() {
        EntryState::Passed => {
            if now - prev.last_seen > timers.pass_lifetime {
                return (Entry::fresh(key, timers, now), Outcome::Expired, true);
            }
            if now - prev.last_seen < REFRESH_INTERVAL && prev.last_seen <= now {
                return (prev.clone(), Outcome::Passed, false);
            }
            let entry = Entry {
                last_seen: now.max(prev.last_seen),
                passes: prev.passes.saturating_add(1),
                expires_at: now.saturating_add(timers.pass_lifetime),
                ..prev.clone()
            };
            (entry, Outcome::Passed, true)
        }
        EntryState::Pending => {
            // A first-seen time in the future means the clock went back;
            // count from now rather than defer for longer than the delay.
            let first_seen = prev.first_seen.min(now);
            let age = now - first_seen;
            if age > timers.retry_window {
                return (Entry::fresh(key, timers, now), Outcome::Stale, true);
            }
            if age < timers.delay {
                let entry =
                    Entry { first_seen, last_seen: now, attempts: prev.attempts.saturating_add(1), ..prev.clone() };
                return (entry, Outcome::TooSoon { remaining: timers.delay - age }, true);
            }
            let entry = Entry {
                first_seen,
                last_seen: now,
                passed_at: Some(now),
                passes: 1,
                expires_at: now.saturating_add(timers.pass_lifetime),
                ..prev.clone()
            };
            (entry, Outcome::FirstPass { delayed: age }, true)
        }
    }
}

/// Count one successful retry for the client, at most once an interval.
fn count_pass(prev: Option<&ClientRecord>, awl: &AutoWhitelist, now: Timestamp) -> Option<ClientRecord> {
    let expires_at = now.saturating_add(awl.lifetime);
    match prev {
        // A record that outlived its lifetime starts counting again.
        Some(rec) if now - rec.last_seen <= awl.lifetime => {
            if now - rec.last_counted < AWL_COUNT_INTERVAL && rec.last_counted <= now {
                return None;
            }
            Some(ClientRecord {
                passes: rec.passes.saturating_add(1),
                last_counted: now,
                last_seen: now,
                expires_at,
                ..rec.clone()
            })
        }
        _ => {
            Some(ClientRecord { client: awl.client.clone(), passes: 1, last_counted: now, last_seen: now, expires_at })
        }
    }
}

#[cfg(test)]
mod tests;
