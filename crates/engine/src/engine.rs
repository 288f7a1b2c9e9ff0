//! The decision pipeline shared by every front end.
//!
//! Order: stage → trusted networks → authenticated → blacklist →
//! whitelist → rules → checks → greylisting store. The first step that
//! decides ends the pipeline. Checks decide in this order: a check's own
//! refusal (SPF fail), the total score against [`Scoring`] (reject, or
//! skip greylisting when low, unless a check insists on greylisting), a
//! check's skip (DNSWL); a retry identity from a check (SPF pass) replaces
//! the client network in the key. [`Engine::explain`] runs the very same code
//! with a trace and a read-only store lookup, so it cannot drift from what
//! [`Engine::decide`] does.
//!
//! The engine reads no clock (`now` is an argument) and opens no socket;
//! the store and the checks are traits handed in by the binary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use greygate_store::{
    AutoWhitelist, DecideRequest, Decision, ListEntry, ListKind, ListTarget, Store, StoreError, Timestamp, TripletKey,
};

use crate::address::{normalize_recipient, normalize_sender};
use crate::check::{Check, CheckResult, Effect};
use crate::facts::{Facts, Stage};
use crate::lists::{Lists, ListsBuilder, Origin, PatternError, Who};
use crate::network::NetworkKeying;
use crate::rules::{Rules, Settings};
use crate::template::{ReplyTemplate, Template, Vars};
use crate::verdict::{Action, Reason, Verdict};

mod profile;

use self::profile::Ask;
pub use self::profile::{Profile, is_verp_bounce};

/// A list entry from the config file, a list file or the built-in list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticEntry {
    pub kind: ListKind,
    pub target: ListTarget,
    pub pattern: String,
    pub origin: Origin,
}

/// Everything configurable about decisions; swapped whole on reload.
#[derive(Debug)]
pub struct Policy {
    pub defaults: Settings,
    pub rules: Rules,
    pub keying: NetworkKeying,
    /// Config, file and built-in list entries (store entries are added).
    pub static_lists: Vec<StaticEntry>,
    pub greylist_reply: ReplyTemplate,
    pub blacklist_reply: ReplyTemplate,
    /// Used when the store fails and the fail mode is closed.
    pub store_failure_reply: ReplyTemplate,
    /// Header added on the first accepted retry; `None` adds nothing.
    pub header: Option<Template>,
    /// This gateway's name, for the header.
    pub hostname: String,
    /// On store failure: accept (`true`) or defer (`false`).
    pub fail_open: bool,
    /// Thresholds on the checks' total score.
    pub scoring: Scoring,
}

/// Thresholds on the sum of the checks' scores (DNSBL weights, reverse
/// DNS, HELO). Applied only when checks are configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    /// At or above: refuse permanently, naming the checks that scored.
    pub reject: f64,
    /// Below: accept without greylisting (selective greylisting); at or
    /// above: greylist. `-inf` greylists everyone.
    pub greylist: f64,
    /// The refusal; the scoring checks are appended to its text.
    pub reject_reply: ReplyTemplate,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            reject: f64::INFINITY,
            greylist: f64::NEG_INFINITY,
            reject_reply: ReplyTemplate::parse(
                "554 5.7.1 Service unavailable; client {client} refused",
                crate::template::ReplyClass::Permanent,
            )
            .expect("valid built-in reply"),
        }
    }
}

/// What `explain` shows besides the verdict.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// (step, what it found), in pipeline order.
    pub steps: Vec<(&'static str, String)>,
    pub settings: Option<Settings>,
    pub rules: Vec<String>,
    pub checks: Vec<CheckResult>,
    pub key: Option<TripletKey>,
    pub store: Option<Decision>,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub trace: Trace,
    pub verdict: Verdict,
}

/// Decision counters by reason kind, plus learning conversions.
const COUNTERS: [&str; 25] = [
    "trusted",
    "authenticated",
    "blacklisted",
    "whitelisted",
    "rule",
    "stage",
    "incomplete",
    "check",
    "new",
    "too_soon",
    "stale",
    "expired",
    "first_pass",
    "passed",
    "auto_whitelisted",
    "store_error",
    "learning",
    "bounce",
    // Content scanning in the proxy, counted by the front end.
    "scan_clean",
    "scan_virus",
    "scan_spam_rejected",
    "scan_spam_tempfailed",
    "scan_spam_tagged",
    "scan_error",
    "scan_too_big",
];

/// The decision engine.
pub struct Engine {
    store: Arc<dyn Store>,
    policy: ArcSwap<Policy>,
    lists: ArcSwap<Lists>,
    /// Store list entries last loaded, and their version; the lock also
    /// serialises list rebuilds.
    store_lists: Mutex<(Option<u64>, Vec<ListEntry>)>,
    checks: ArcSwap<Vec<Arc<dyn Check>>>,
    counters: [AtomicU64; COUNTERS.len()],
}

impl Engine {
    /// Build an engine with the policy's static lists; call
    /// [`Engine::refresh_lists`] to add the store's entries.
    pub fn new(store: Arc<dyn Store>, policy: Policy, checks: Vec<Arc<dyn Check>>) -> Result<Engine, PatternError> {
        let lists = compile(&policy, &[])?;
        Ok(Engine {
            store,
            policy: ArcSwap::from_pointee(policy),
            lists: ArcSwap::from_pointee(lists),
            store_lists: Mutex::new((None, Vec::new())),
            checks: ArcSwap::from_pointee(checks),
            counters: Default::default(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Replace the policy (config reload). On error the old one stays.
    pub fn set_policy(&self, policy: Policy) -> Result<(), PatternError> {
        let cache = self.store_lists.lock().unwrap_or_else(|p| p.into_inner());
        let lists = compile(&policy, &cache.1)?;
        self.lists.store(Arc::new(lists));
        self.policy.store(Arc::new(policy));
        Ok(())
    }

    pub fn set_checks(&self, checks: Vec<Arc<dyn Check>>) {
        self.checks.store(Arc::new(checks));
    }

    /// Reload the store's list entries if they changed. Returns whether
    /// anything was reloaded.
    pub async fn refresh_lists(&self) -> Result<bool, StoreError> {
        let version = self.store.lists_version().await?;
        if self.store_lists.lock().unwrap_or_else(|p| p.into_inner()).0 == Some(version) {
            return Ok(false);
        }
        let entries = self.store.list_entries().await?;
        let mut cache = self.store_lists.lock().unwrap_or_else(|p| p.into_inner());
        let lists = compile(&self.policy.load(), &entries).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.lists.store(Arc::new(lists));
        *cache = (Some(version), entries);
        Ok(true)
    }

    /// The client is in a trusted network (config or stored list): it may
    /// relay through the proxy, and nothing is checked for it.
    pub fn trusted(&self, ip: std::net::IpAddr) -> bool {
        self.lists.load().trusted(ip).is_some()
    }

    /// Entry counts of the compiled lists.
    pub fn list_counts(&self) -> [(&'static str, usize); 7] {
        self.lists.load().counts()
    }

    /// Decide, record, and count.
    pub async fn decide(&self, facts: &Facts, now: Timestamp) -> Verdict {
        let verdict = self.evaluate(facts, now, None, Ask::default()).await;
        self.count(&verdict);
        verdict
    }

    /// Decide without changing anything, and say why.
    pub async fn explain(&self, facts: &Facts, now: Timestamp) -> Explanation {
        let mut trace = Trace::default();
        let verdict = self.evaluate(facts, now, Some(&mut trace), Ask::default()).await;
        Explanation { trace, verdict }
    }

    /// Take the counter values accumulated since the last call.
    pub fn take_counters(&self) -> Vec<(String, u64)> {
        COUNTERS
            .iter()
            .zip(&self.counters)
            .filter_map(|(name, c)| {
                let n = c.swap(0, Ordering::Relaxed);
                (n > 0).then(|| ((*name).to_owned(), n))
            })
            .collect()
    }

    /// Give back counts that could not be saved, to try again later.
    pub fn restore_counters(&self, counts: &[(String, u64)]) {
        for (name, n) in counts {
            if let Some(i) = COUNTERS.iter().position(|c| c == name) {
                self.counters[i].fetch_add(*n, Ordering::Relaxed);
            }
        }
    }

    /// Count an event a front end observed (e.g. `scan_virus`); names
    /// not in the counter table are ignored.
    pub fn count_event(&self, name: &str) {
        if let Some(i) = COUNTERS.iter().position(|c| *c == name) {
            self.counters[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count(&self, v: &Verdict) {
        let bump = |name: &str| {
            if let Some(i) = COUNTERS.iter().position(|c| *c == name) {
                self.counters[i].fetch_add(1, Ordering::Relaxed);
            }
        };
        bump(v.reason.kind());
        if v.learning {
            bump("learning");
        }
    }

    async fn evaluate(&self, facts: &Facts, now: Timestamp, trace: Option<&mut Trace>, ask: Ask) -> Verdict {
        let policy = self.policy.load();
        let lists = self.lists.load();
        let mut trace = Tracer(trace);

        // Greylisting is per recipient at RCPT. At DATA only transactions
        // from the null sender are decided: a front end defers those there
        // so that sender-verification callouts, which stop before DATA, are
        // not refused (PROTOCOLS.md §7.2).
        let null_sender = facts.sender.as_deref().is_some_and(|s| s.is_empty() || s == "<>");
        if !(facts.stage == Stage::Rcpt || facts.stage == Stage::Data && null_sender) {
            trace.note("stage", || format!("{}: greygate decides at rcpt (and at data for <>)", facts.stage));
            return Verdict::accept(Reason::Stage(facts.stage));
        }
        trace.note("stage", || facts.stage.to_string());

        if let Some(source) = lists.trusted(facts.client_ip) {
            trace.note("trusted", || format!("yes: {source}"));
            return Verdict::accept(Reason::Trusted(source.clone()));
        }
        trace.note("trusted", || "no".into());

        if let Some(user) = facts.authenticated.as_deref().filter(|u| !u.is_empty()) {
            trace.note("authenticated", || format!("yes: {user}"));
            return Verdict::accept(Reason::Authenticated(user.to_owned()));
        }
        trace.note("authenticated", || "no".into());

        let who = Who {
            ip: facts.client_ip,
            client_name: facts.client_name.as_deref(),
            sender: facts.sender.as_deref(),
            recipient: facts.recipient.as_deref(),
        };
        let vars = Vars {
            recipient: facts.recipient.as_deref(),
            sender: facts.sender.as_deref(),
            client: Some(facts.client_ip),
            host: Some(&policy.hostname),
            delay: Some(policy.defaults.timers.delay),
            ..Vars::default()
        };

        if let Some((target, source)) = lists.blacklisted(&who) {
            trace.note("blacklist", || format!("{target} matches {source}"));
            let verdict = Verdict {
                action: Action::Reject(policy.blacklist_reply.render(&vars)),
                headers: Vec::new(),
                reason: Reason::Blacklisted(target, source.clone()),
                learning: false,
            };
            return learn(verdict, policy.defaults.learning);
        }
        trace.note("blacklist", || "no match".into());

        if let Some((target, source)) = lists.whitelisted(&who) {
            trace.note("whitelist", || format!("{target} matches {source}"));
            return Verdict::accept(Reason::Whitelisted(target, source.clone()));
        }
        trace.note("whitelist", || "no match".into());

        let Some(recipient) = facts.recipient.as_deref().filter(|r| !r.is_empty()) else {
            trace.note("request", || "no recipient".into());
            return Verdict::accept(Reason::Incomplete("recipient"));
        };
        let Some(sender) = facts.sender.as_deref() else {
            trace.note("request", || "no sender".into());
            return Verdict::accept(Reason::Incomplete("sender"));
        };

        let (settings, applied) = policy.rules.resolve(&policy.defaults, &who);
        let rules: Vec<String> = applied.iter().map(|r| (*r).to_owned()).collect();
        trace.note("rules", || {
            if rules.is_empty() { "none apply".into() } else { format!("applied {}", rules.join(", ")) }
        });
        trace.with(|t| {
            t.settings = Some(settings.clone());
            t.rules = rules.clone();
        });

        let checks = self.checks.load();
        let results = futures::future::join_all(checks.iter().map(|c| c.check(facts))).await;
        let mut check_headers = Vec::new();
        let mut identity = None;
        let mut skip: Option<&CheckResult> = None;
        let mut force = false;
        for r in &results {
            trace.note("check", || format!("{} {} (score {:+}) {}", r.check, r.result, r.score, r.detail));
            let refuse = match &r.effect {
                Effect::Reject(reply) => Some(Action::Reject(reply.clone())),
                Effect::Defer(reply) => Some(Action::Defer(reply.clone())),
                Effect::SkipGreylisting => {
                    skip.get_or_insert(r);
                    None
                }
                Effect::Greylist => {
                    force = true;
                    None
                }
                Effect::None => None,
            };
            if let Some(action) = refuse {
                let verdict = Verdict { action, headers: Vec::new(), reason: check_reason(r), learning: false };
                trace.with(|t| t.checks = results.clone());
                return learn(verdict, settings.learning);
            }
            check_headers.extend(r.headers.iter().cloned());
            if identity.is_none() {
                identity = r.retry_identity.clone();
            }
        }
        trace.with(|t| t.checks = results.clone());
        let mut low_score = None;
        if !results.is_empty() {
            let total: f64 = results.iter().map(|r| r.score).sum();
            let scoring = &policy.scoring;
            trace.note("score", || format!("{total} (reject at {}, greylist at {})", scoring.reject, scoring.greylist));
            if total >= scoring.reject {
                let named: Vec<String> =
                    results.iter().filter(|r| r.score > 0.0).map(|r| format!("{} ({:+})", r.check, r.score)).collect();
                let named = named.join(", ");
                let mut reply = scoring.reject_reply.render(&vars);
                reply.text = format!("{}: {named}", reply.text);
                let reason = Reason::Check {
                    check: "score".into(),
                    result: "reject".into(),
                    detail: format!("total {total} at or above {}: {named}", scoring.reject),
                };
                let verdict = Verdict { action: Action::Reject(reply), headers: Vec::new(), reason, learning: false };
                return learn(verdict, settings.learning);
            }
            if total < scoring.greylist {
                low_score = Some(Reason::Check {
                    check: "score".into(),
                    result: "low".into(),
                    detail: format!("total {total} below the greylisting threshold {}", scoring.greylist),
                });
            }
        }
        if let Some(r) = skip.filter(|_| !force) {
            let mut verdict = Verdict::accept(check_reason(r));
            verdict.headers = check_headers;
            return verdict;
        }

        if let Some(reason) = low_score.filter(|_| !force) {
            let mut verdict = Verdict::accept(reason);
            verdict.headers = check_headers;
            return verdict;
        }

        if !settings.greylist {
            let mut verdict = Verdict::accept(Reason::NotGreylisted { rules });
            verdict.headers = check_headers;
            return verdict;
        }

        let key = TripletKey {
            client: identity.unwrap_or_else(|| policy.keying.key(facts.client_ip)),
            sender: normalize_sender(sender),
            recipient: normalize_recipient(recipient),
        };
        trace.note("key", || key.to_string());
        let req = DecideRequest {
            triplet: key,
            timers: settings.timers,
            auto_whitelist: ask.auto_whitelist_after(settings.auto_whitelist_after).map(|after| AutoWhitelist {
                client: {
                    let mut client = String::with_capacity(16);
                    crate::network::push_ip(&mut client, facts.client_ip.to_canonical());
                    client
                },
                after,
                lifetime: settings.timers.pass_lifetime,
            }),
            now,
        };
        let explaining = trace.0.is_some();
        if ask.bounces && is_verp_bounce(sender, recipient) {
            // greydaemon answers "known" before it looks for bounces; a
            // read-only look keeps that order without recording the bounce.
            if ask.profile == Profile::Greydaemon
                && ask.check_known
                && let Ok(d @ Decision { outcome: greygate_store::Outcome::AutoWhitelisted { .. }, .. }) =
                    self.store.peek(&req).await
            {
                trace.note("store", || d.outcome.name().to_owned());
                return Verdict::accept(Reason::Greylist { outcome: d.outcome, key: req.triplet });
            }
            trace.note("bounce", || "null sender to a VERP address".into());
            return Verdict::accept(Reason::Bounce);
        }
        let result = if explaining { self.store.peek(&req).await } else { self.store.decide(&req).await };
        let decision = match result {
            Ok(d) => d,
            Err(e) => {
                trace.note("store", || format!("failed: {e}"));
                let reason = Reason::StoreFailure { error: e.to_string() };
                return if policy.fail_open {
                    Verdict::accept(reason)
                } else {
                    Verdict {
                        action: Action::Defer(policy.store_failure_reply.render(&vars)),
                        headers: Vec::new(),
                        reason,
                        learning: false,
                    }
                };
            }
        };
        trace.note("store", || decision.outcome.name().to_owned());
        let outcome = decision.outcome;
        let key = req.triplet;
        trace.with(|t| {
            t.key = Some(key.clone());
            t.store = Some(decision.clone());
        });

        let reason = Reason::Greylist { outcome, key };
        if outcome.accepts() {
            let mut headers = check_headers;
            // In learning mode nothing was really delayed, so say nothing.
            if let (greygate_store::Outcome::FirstPass { delayed }, Some(header), false) =
                (outcome, &policy.header, settings.learning)
            {
                let vars = Vars { delayed: Some(delayed), date: Some(rfc5322_date(now)), ..vars };
                headers.insert(0, header.render(&vars));
            }
            return Verdict { action: Action::Accept, headers, reason, learning: false };
        }
        let vars = Vars { remaining: outcome.remaining(&settings.timers), delay: Some(settings.timers.delay), ..vars };
        let verdict = Verdict {
            action: Action::Defer(policy.greylist_reply.render(&vars)),
            headers: Vec::new(),
            reason,
            learning: false,
        };
        learn(verdict, settings.learning)
    }
}

/// Records `explain`'s trace; costs nothing when nobody is explaining.
struct Tracer<'a>(Option<&'a mut Trace>);

impl Tracer<'_> {
    fn note(&mut self, step: &'static str, what: impl FnOnce() -> String) {
        if let Some(t) = self.0.as_deref_mut() {
            t.steps.push((step, what()));
        }
    }

    fn with(&mut self, f: impl FnOnce(&mut Trace)) {
        if let Some(t) = self.0.as_deref_mut() {
            f(t);
        }
    }
}

fn check_reason(r: &CheckResult) -> Reason {
    Reason::Check { check: r.check.clone(), result: r.result.clone(), detail: r.detail.clone() }
}

/// In learning mode a refusal becomes acceptance; the reason still says
/// what would have happened.
fn learn(verdict: Verdict, learning: bool) -> Verdict {
    if learning && verdict.action != Action::Accept {
        Verdict { action: Action::Accept, headers: Vec::new(), learning: true, ..verdict }
    } else {
        verdict
    }
}

fn compile(policy: &Policy, store_entries: &[ListEntry]) -> Result<Lists, PatternError> {
    let mut builder = ListsBuilder::new();
    for e in &policy.static_lists {
        builder.add(e.kind, e.target, &e.pattern, e.origin.clone())?;
    }
    for e in store_entries {
        if let Err(error) = builder.add(e.kind, e.target, &e.value, Origin::Store) {
            tracing::warn!(list = %e.kind, target = %e.target, value = %e.value, %error, "skipping unusable stored list entry");
        }
    }
    builder.build()
}

/// `Thu, 21 Nov 2024 05:18:00 +0000`.
pub fn rfc5322_date(now: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc2822).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
