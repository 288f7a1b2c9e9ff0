//! Decisions that change nothing, answered without the writer thread.
//!
//! Most of a busy gateway's traffic comes from senders it already knows: a
//! passed triplet, or an auto-whitelisted client, seen again within
//! [`crate::model::REFRESH_INTERVAL`] of its last refresh. Such a decision
//! writes nothing, yet going through the writer costs a thread hop each
//! way and an SQLite transaction. So the writer remembers the records such
//! decisions read; a caller that finds its records here runs the very same
//! [`model::decide`] and, when that still writes nothing, answers at once.
//! Anything that would write (or any key not remembered) goes to the
//! writer as before.
//!
//! Coherence:
//! - Every write of this process removes the keys it wrote, right after
//!   its COMMIT and before its callers are answered ([`State::commit`]).
//!   A shortcut taken meanwhile reads the state just before that write,
//!   which is a valid order for two requests in flight at once.
//! - Another process's writes (the admin CLI, a second server) are seen at
//!   the writer's next catch-up, which forgets everything. Shortcuts are
//!   taken only within [`FRESH`] of the writer's last catch-up; after that
//!   one decision goes through the writer, which catches up. So another
//!   process's change takes effect here within [`FRESH`].
//!
//! [`State::commit`]: super::state::State::commit

use std::sync::Mutex;
use std::time::{Duration, Instant};

use foldhash::HashMap;

use crate::model::{self, ClientRecord, Entry};
use crate::{DecideRequest, Decision, TripletKey};

/// How long after the writer's last look at other processes' writes a
/// shortcut may be taken.
pub(super) const FRESH: Duration = Duration::from_secs(1);

/// Records remembered, triplets and clients together; past it the memory
/// starts over (the busy keys come back at once).
const CAPACITY: usize = 65_536;

/// Records read by decisions that wrote nothing, shared by the writer and
/// every caller.
#[derive(Default)]
pub(super) struct Shortcut {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    triplets: HashMap<TripletKey, Entry>,
    /// `None`: the client has no record.
    clients: HashMap<String, Option<ClientRecord>>,
    /// The writer's last catch-up; `None` before the first.
    caught_up: Option<Instant>,
    closed: bool,
}

/// What one decision that wrote nothing read, to remember after COMMIT.
#[derive(Debug)]
pub(super) struct Read {
    pub client: Option<(String, Option<ClientRecord>)>,
    pub entry: Option<Entry>,
}

impl Shortcut {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The decision, if the remembered records settle it and it writes
    /// nothing.
    pub fn decide(&self, req: &DecideRequest) -> Option<Decision> {
        let inner = self.lock();
        if inner.closed || inner.caught_up.is_none_or(|t| t.elapsed() > FRESH) {
            return None;
        }
        let client = match &req.auto_whitelist {
            Some(awl) => Some(inner.clients.get(&awl.client)?.as_ref()),
            None => None,
        };
        let whitelisted = client.flatten().zip(req.auto_whitelist.as_ref()).is_some_and(|(c, awl)| {
            // The same test `model::decide` makes; a whitelisted client's
            // triplet is not consulted, so it need not be remembered.
            model::whitelists(c, awl, req.now)
        });
        let entry = if whitelisted { None } else { Some(inner.triplets.get(&req.triplet)?) };
        let step = model::decide(req, client.flatten(), entry);
        if step.client.is_some() || step.write_entry {
            return None;
        }
        Some(Decision { outcome: step.outcome, entry: step.entry })
    }

    /// The writer has applied every other process's writes; `changed`:
    /// there were some, so what is remembered may be out of date.
    pub fn caught_up(&self, changed: bool) {
        let mut inner = self.lock();
        if changed {
            inner.triplets.clear();
            inner.clients.clear();
        }
        inner.caught_up = Some(Instant::now());
    }

    /// Forget keys this process has just written.
    pub fn forget<'a>(
        &self,
        triplets: impl Iterator<Item = &'a TripletKey>,
        clients: impl Iterator<Item = &'a String>,
    ) {
        let mut inner = self.lock();
        if inner.triplets.is_empty() && inner.clients.is_empty() {
            return;
        }
        for key in triplets {
            inner.triplets.remove(key);
        }
        for client in clients {
            inner.clients.remove(client);
        }
    }

    /// Take no more shortcuts: the store is closing.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.triplets.clear();
        inner.clients.clear();
    }

    /// Remember what committed decisions that wrote nothing read.
    pub fn remember(&self, reads: Vec<Read>) {
        if reads.is_empty() {
            return;
        }
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        if inner.triplets.len() + inner.clients.len() + reads.len() > CAPACITY {
            inner.triplets.clear();
            inner.clients.clear();
        }
        for read in reads {
            if let Some((client, record)) = read.client {
                inner.clients.insert(client, record);
            }
            if let Some(entry) = read.entry {
                inner.triplets.insert(entry.key.clone(), entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;
    use crate::{AutoWhitelist, Timers};

    fn key() -> TripletKey {
        TripletKey { client: "192.0.2.0/24".into(), sender: "a@example.org".into(), recipient: "b@example.net".into() }
    }

    fn request(now: i64, awl: bool) -> DecideRequest {
        DecideRequest {
            triplet: key(),
            timers: Timers { delay: 300, retry_window: 2 * 86_400, pass_lifetime: 36 * 86_400 },
            auto_whitelist: awl.then(|| AutoWhitelist {
                client: "192.0.2.0/24".into(),
                after: 5,
                lifetime: 36 * 86_400,
            }),
            now,
        }
    }

    fn passed(now: i64) -> Entry {
        Entry {
            key: key(),
            first_seen: now - 600,
            last_seen: now - 10,
            passed_at: Some(now - 10),
            attempts: 1,
            passes: 1,
            expires_at: now + 86_400,
        }
    }

    #[test]
    fn answers_only_what_writes_nothing_and_only_when_fresh() {
        let now = 1_000_000;
        let s = Shortcut::default();
        s.remember(vec![Read { client: None, entry: Some(passed(now)) }]);
        assert_eq!(s.decide(&request(now, false)), None, "never caught up: not fresh");
        s.caught_up(false);
        let d = s.decide(&request(now, false)).expect("a passed triplet seen again writes nothing");
        assert_eq!(d.outcome, Outcome::Passed);
        assert_eq!(d.entry, Some(passed(now)));
        // An hour later the refresh is due: a write, so the writer's job.
        assert_eq!(s.decide(&request(now + 3 * 3600, false)), None);
        // The client is asked about but not remembered: the writer's job.
        assert_eq!(s.decide(&request(now, true)), None);
        s.remember(vec![Read { client: Some(("192.0.2.0/24".into(), None)), entry: None }]);
        assert!(s.decide(&request(now, true)).is_some());
    }

    #[test]
    fn writes_and_other_processes_make_it_forget() {
        let now = 1_000_000;
        let s = Shortcut::default();
        s.caught_up(false);
        s.remember(vec![Read { client: None, entry: Some(passed(now)) }]);
        s.forget([key()].iter(), std::iter::empty());
        assert_eq!(s.decide(&request(now, false)), None, "written by us: forgotten");
        s.remember(vec![Read { client: None, entry: Some(passed(now)) }]);
        s.caught_up(true);
        assert_eq!(s.decide(&request(now, false)), None, "another process wrote: forgotten");
    }
}
