use std::net::IpAddr;

use async_trait::async_trait;
use futures::executor::block_on;
use greygate_store::memory::MemoryStore;
use greygate_store::{Outcome, Timers};

use super::*;
use crate::rules::{Overrides, RuleSpec};
use crate::template::{Reply, ReplyClass};

const HOUR: i64 = 3600;

fn policy(rules: &[RuleSpec], lists: &[(ListKind, ListTarget, &str)]) -> Policy {
    Policy {
        defaults: Settings {
            greylist: true,
            learning: false,
            timers: Timers { delay: 300, retry_window: 48 * HOUR, pass_lifetime: 36 * 24 * HOUR },
            auto_whitelist_after: 5,
        },
        rules: Rules::new(rules).unwrap(),
        keying: NetworkKeying::default(),
        static_lists: lists
            .iter()
            .map(|(kind, target, pattern)| StaticEntry {
                kind: *kind,
                target: *target,
                pattern: (*pattern).into(),
                origin: Origin::Config,
            })
            .collect(),
        greylist_reply: ReplyTemplate::parse(
            "451 4.7.1 Greylisted, try again in {remaining} seconds",
            ReplyClass::Temporary,
        )
        .unwrap(),
        blacklist_reply: ReplyTemplate::parse("554 5.7.1 Go away", ReplyClass::Permanent).unwrap(),
        store_failure_reply: ReplyTemplate::parse("451 4.3.0 Try later", ReplyClass::Temporary).unwrap(),
        header: Some(Template::parse("X-Greylist: delayed {delayed} seconds by greygate at {host}; {date}").unwrap()),
        hostname: "mx.test".into(),
        fail_open: true,
        scoring: Default::default(),
    }
}

fn engine(p: Policy) -> Engine {
    Engine::new(Arc::new(MemoryStore::new()), p, Vec::new()).unwrap()
}

fn facts(ip: &str, sender: &str, rcpt: &str) -> Facts {
    Facts {
        sender: Some(sender.into()),
        recipient: Some(rcpt.into()),
        ..Facts::new(Stage::Rcpt, ip.parse::<IpAddr>().unwrap())
    }
}

fn defer_text(v: &Verdict) -> Option<String> {
    match &v.action {
        Action::Defer(r) => Some(r.to_string()),
        _ => None,
    }
}

#[test]
fn a_greylisting_round_through_the_engine() {
    let e = engine(policy(&[], &[]));
    let f = facts("192.0.2.10", "alice+news@example.org", "bob@example.net");
    let t0 = 1_700_000_000;
    let v = block_on(e.decide(&f, t0));
    assert_eq!(defer_text(&v).as_deref(), Some("451 4.7.1 Greylisted, try again in 300 seconds"));
    assert_eq!(v.reason.kind(), "new");

    let v = block_on(e.decide(&f, t0 + 100));
    assert_eq!(defer_text(&v).as_deref(), Some("451 4.7.1 Greylisted, try again in 200 seconds"));

    // The retry comes from another host of the same /24, with another tag.
    let retry = facts("192.0.2.77", "alice+other@example.org", "Bob@Example.NET");
    let v = block_on(e.decide(&retry, t0 + 312));
    assert_eq!(v.action, Action::Accept);
    assert_eq!(v.reason.kind(), "first_pass");
    assert_eq!(
        v.headers,
        [format!("X-Greylist: delayed 312 seconds by greygate at mx.test; {}", rfc5322_date(t0 + 312))]
    );
    assert!(v.headers[0].ends_with("+0000"), "{}", v.headers[0]);

    let v = block_on(e.decide(&f, t0 + 5 * HOUR));
    assert_eq!((v.action.clone(), v.headers.len(), v.reason.kind()), (Action::Accept, 0, "passed"));

    let counts: std::collections::BTreeMap<_, _> = e.take_counters().into_iter().collect();
    assert_eq!(counts.get("new"), Some(&1));
    assert_eq!(counts.get("too_soon"), Some(&1));
    assert_eq!(counts.get("first_pass"), Some(&1));
    assert_eq!(counts.get("passed"), Some(&1));
    assert!(e.take_counters().is_empty(), "taking resets the counters");
}

#[test]
fn lists_decide_before_the_store() {
    use ListKind::*;
    use ListTarget::*;
    let e = engine(policy(
        &[],
        &[
            (Trust, Client, "10.0.0.0/8"),
            (Whitelist, Client, "friendly.example"),
            (Whitelist, Recipient, "postmaster@"),
            (Blacklist, Sender, "spammer.example"),
            (Blacklist, Client, "203.0.113.0/24"),
        ],
    ));
    let now = 1000;
    let cases: Vec<(Facts, &str, &str)> = vec![
        (facts("10.1.2.3", "s@spammer.example", "r@x"), "accept", "trusted"),
        (facts("192.0.2.1", "s@spammer.example", "r@x"), "reject", "blacklisted"),
        (facts("203.0.113.5", "a@b", "postmaster@x"), "reject", "blacklisted"),
        (facts("192.0.2.1", "a@b", "Postmaster@x"), "accept", "whitelisted"),
        (
            Facts { client_name: Some("mx1.friendly.example".into()), ..facts("192.0.2.1", "a@b", "r@x") },
            "accept",
            "whitelisted",
        ),
        (
            // An unverified PTR name does not count.
            Facts { reverse_name: Some("mx1.friendly.example".into()), ..facts("192.0.2.1", "a@b", "r@x") },
            "defer",
            "new",
        ),
        (
            Facts { authenticated: Some("alice".into()), ..facts("192.0.2.1", "s@spammer.example", "r@x") },
            "accept",
            "authenticated",
        ),
        (Facts { stage: Stage::Mail, ..facts("192.0.2.1", "a@b", "r@x") }, "accept", "stage"),
        (Facts { stage: Stage::Data, ..facts("192.0.2.1", "a@b", "r@x") }, "accept", "stage"),
        // The null sender is decided at DATA.
        (Facts { stage: Stage::Data, ..facts("192.0.2.1", "", "r@x") }, "defer", "new"),
        (Facts { recipient: None, ..facts("192.0.2.1", "a@b", "r@x") }, "accept", "incomplete"),
    ];
    for (f, action, kind) in cases {
        let v = block_on(e.decide(&f, now));
        assert_eq!((v.action.name(), v.reason.kind()), (action, kind), "{f:?}");
    }
    let v = block_on(e.decide(&facts("192.0.2.1", "s@spammer.example", "r@x"), now));
    assert_eq!(v.action, Action::Reject(Reply { code: 554, status: Some("5.7.1".into()), text: "Go away".into() }));
    assert_eq!(v.reason.to_string(), "sender blacklisted by spammer.example (config)");
}

#[test]
fn rules_override_timers_and_switch_greylisting_off() {
    let rules = [
        RuleSpec {
            name: "partners".into(),
            client: Some("198.51.100.0/24".into()),
            sender: None,
            recipient: None,
            overrides: Overrides { greylist: Some(false), ..Overrides::default() },
        },
        RuleSpec {
            name: "quick sales".into(),
            client: None,
            sender: None,
            recipient: Some("sales@shop.example".into()),
            overrides: Overrides { delay: Some(60), ..Overrides::default() },
        },
    ];
    let e = engine(policy(&rules, &[]));
    let v = block_on(e.decide(&facts("198.51.100.9", "a@b", "r@x"), 0));
    assert_eq!((v.action, v.reason.to_string()), (Action::Accept, "greylisting off by rule partners".into()));

    let f = facts("192.0.2.1", "a@b", "sales@shop.example");
    let v = block_on(e.decide(&f, 0));
    assert_eq!(defer_text(&v).as_deref(), Some("451 4.7.1 Greylisted, try again in 60 seconds"));
    assert_eq!(block_on(e.decide(&f, 60)).reason.kind(), "first_pass");
}

#[test]
fn learning_mode_records_but_never_refuses() {
    let mut p = policy(&[], &[(ListKind::Blacklist, ListTarget::Sender, "spammer.example")]);
    p.defaults.learning = true;
    let e = engine(p);
    let f = facts("192.0.2.1", "a@b", "r@x");
    let v = block_on(e.decide(&f, 0));
    assert_eq!((v.action.clone(), v.learning, v.reason.kind()), (Action::Accept, true, "new"));
    // It was recorded: the retry after the delay is a first pass.
    let v = block_on(e.decide(&f, 300));
    assert_eq!((v.reason.kind(), v.learning), ("first_pass", false));
    assert!(v.headers.is_empty(), "nothing was delayed, so no X-Greylist: {:?}", v.headers);
    let v = block_on(e.decide(&facts("192.0.2.1", "x@spammer.example", "r@x"), 0));
    assert_eq!((v.action, v.learning, v.reason.kind()), (Action::Accept, true, "blacklisted"));
    let counts: std::collections::BTreeMap<_, _> = e.take_counters().into_iter().collect();
    assert_eq!(counts.get("learning"), Some(&2));
}

#[test]
fn store_failure_follows_the_fail_mode() {
    for (fail_open, want) in [(true, "accept"), (false, "defer")] {
        let mut p = policy(&[], &[]);
        p.fail_open = fail_open;
        let store = Arc::new(MemoryStore::new());
        block_on(store.close()).unwrap();
        let e = Engine::new(store, p, Vec::new()).unwrap();
        let v = block_on(e.decide(&facts("192.0.2.1", "a@b", "r@x"), 0));
        assert_eq!((v.action.name(), v.reason.kind()), (want, "store_error"));
        if !fail_open {
            assert_eq!(defer_text(&v).as_deref(), Some("451 4.3.0 Try later"));
        }
        assert_eq!(e.take_counters(), [("store_error".to_owned(), 1)]);
    }
}

struct FakeCheck {
    effect: Effect,
    identity: Option<&'static str>,
}

#[async_trait]
impl Check for FakeCheck {
    fn name(&self) -> &str {
        "fake"
    }

    async fn check(&self, _facts: &Facts) -> CheckResult {
        CheckResult {
            effect: self.effect.clone(),
            retry_identity: self.identity.map(Into::into),
            headers: vec!["X-Fake: yes".into()],
            detail: "because".into(),
            ..CheckResult::neutral("fake", "seen")
        }
    }
}

#[test]
fn checks_can_refuse_skip_or_change_the_retry_identity() {
    let with = |effect, identity| {
        let e = engine(policy(&[], &[]));
        e.set_checks(vec![Arc::new(FakeCheck { effect, identity })]);
        e
    };
    let reject = Reply { code: 550, status: Some("5.7.23".into()), text: "SPF fail".into() };
    let v = block_on(with(Effect::Reject(reject.clone()), None).decide(&facts("192.0.2.1", "a@b", "r@x"), 0));
    assert_eq!((v.action, v.reason.to_string()), (Action::Reject(reject), "fake seen: because".into()));

    let v = block_on(with(Effect::SkipGreylisting, None).decide(&facts("192.0.2.1", "a@b", "r@x"), 0));
    assert_eq!((v.action, v.headers), (Action::Accept, vec!["X-Fake: yes".to_owned()]));

    // A retry identity keys the triplet independently of the network.
    let e = with(Effect::None, Some("spf:example.org"));
    let v = block_on(e.decide(&facts("192.0.2.1", "a@example.org", "r@x"), 0));
    assert_eq!(v.reason.kind(), "new");
    let v = block_on(e.decide(&facts("198.51.100.200", "a@example.org", "r@x"), 400));
    assert_eq!(v.reason.kind(), "first_pass");
    assert_eq!(v.headers.len(), 2, "X-Greylist first, then the check's header: {:?}", v.headers);
    assert!(v.headers[0].starts_with("X-Greylist: delayed 400 seconds"));
}

#[test]
fn explain_traces_the_decision_and_changes_nothing() {
    let e = engine(policy(&[], &[(ListKind::Whitelist, ListTarget::Recipient, "abuse@")]));
    let f = facts("192.0.2.1", "a@b", "r@x");
    let x = block_on(e.explain(&f, 0));
    assert_eq!(x.verdict.reason.kind(), "new");
    let steps: Vec<_> = x.trace.steps.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, ["stage", "trusted", "authenticated", "blacklist", "whitelist", "rules", "key", "store"]);
    assert_eq!(x.trace.key.unwrap().to_string(), "192.0.2.0/24/a@b/r@x");
    assert_eq!(x.trace.store.unwrap().outcome, Outcome::New);
    assert!(e.take_counters().is_empty(), "explain is not counted");
    // Nothing was recorded: a real decision still sees a new triplet.
    assert_eq!(block_on(e.decide(&f, 0)).reason.kind(), "new");
    let x = block_on(e.explain(&facts("192.0.2.1", "a@b", "abuse@x"), 0));
    assert_eq!(x.trace.steps.last().unwrap().1, "recipient matches abuse@ (config)");
}

#[test]
fn store_list_entries_take_effect_on_refresh() {
    let store = Arc::new(MemoryStore::new());
    let e = Engine::new(store.clone(), policy(&[], &[]), Vec::new()).unwrap();
    let f = facts("192.0.2.1", "a@b", "r@x");
    assert!(block_on(e.refresh_lists()).unwrap(), "first refresh loads");
    assert!(!block_on(e.refresh_lists()).unwrap(), "nothing changed");
    block_on(store.add_list_entry(&ListEntry {
        kind: ListKind::Trust,
        target: ListTarget::Client,
        value: "192.0.2.0/24".into(),
        comment: String::new(),
        added_at: 0,
    }))
    .unwrap();
    assert_eq!(block_on(e.decide(&f, 0)).reason.kind(), "new", "not yet refreshed");
    assert!(block_on(e.refresh_lists()).unwrap());
    assert_eq!(block_on(e.decide(&f, 1)).reason.to_string(), "trusted network 192.0.2.0/24 (store)");
    // A new policy keeps the store's entries.
    e.set_policy(policy(&[], &[])).unwrap();
    assert_eq!(block_on(e.decide(&f, 2)).reason.kind(), "trusted");
}

#[test]
fn auto_whitelisting_through_the_engine() {
    let mut p = policy(&[], &[]);
    p.defaults.auto_whitelist_after = 2;
    let e = engine(p);
    for (i, start) in [0, 2 * HOUR].into_iter().enumerate() {
        let f = facts("192.0.2.10", &format!("user{i}x@b"), "r@x");
        block_on(e.decide(&f, start));
        assert_eq!(block_on(e.decide(&f, start + 300)).reason.kind(), "first_pass");
    }
    let v = block_on(e.decide(&facts("192.0.2.10", "someone-new@b", "r@x"), 3 * HOUR));
    assert_eq!((v.action, v.reason.kind()), (Action::Accept, "auto_whitelisted"));
    // Only the exact address is whitelisted, not its network.
    let v = block_on(e.decide(&facts("192.0.2.11", "someone-new@b", "r@x"), 3 * HOUR));
    assert_eq!(v.reason.kind(), "new");
}

/// A check that only scores.
struct Scored(&'static str, f64, Effect);

#[async_trait]
impl Check for Scored {
    fn name(&self) -> &str {
        self.0
    }

    async fn check(&self, _facts: &Facts) -> CheckResult {
        CheckResult { score: self.1, effect: self.2.clone(), ..CheckResult::neutral(self.0, "listed") }
    }
}

fn scored(reject: f64, greylist: f64, checks: Vec<Scored>) -> Engine {
    let mut p = policy(&[], &[]);
    p.scoring.reject = reject;
    p.scoring.greylist = greylist;
    let e = engine(p);
    e.set_checks(checks.into_iter().map(|c| Arc::new(c) as Arc<dyn Check>).collect());
    e
}

#[test]
fn scores_add_up_to_a_rejection_naming_the_lists() {
    let e = scored(
        6.0,
        0.0,
        vec![
            Scored("dnsbl a.test", 4.0, Effect::None),
            Scored("dnsbl b.test", 0.0, Effect::None),
            Scored("rdns", 2.0, Effect::None),
        ],
    );
    let v = block_on(e.decide(&facts("192.0.2.1", "a@b", "r@x"), 0));
    let Action::Reject(reply) = &v.action else { panic!("{v:?}") };
    assert_eq!(
        reply.to_string(),
        "554 5.7.1 Service unavailable; client 192.0.2.1 refused: dnsbl a.test (+4), rdns (+2)"
    );
    assert_eq!(v.reason.to_string(), "score reject: total 6 at or above 6: dnsbl a.test (+4), rdns (+2)");
    assert_eq!(e.take_counters(), [("check".to_owned(), 1)]);

    // Below the threshold: greylisted as usual.
    let e = scored(6.1, 0.0, vec![Scored("dnsbl a.test", 4.0, Effect::None), Scored("rdns", 2.0, Effect::None)]);
    assert_eq!(block_on(e.decide(&facts("192.0.2.1", "a@b", "r@x"), 0)).reason.kind(), "new");
}

#[test]
fn a_low_score_skips_greylisting_unless_a_check_insists() {
    // Selective greylisting: only clients scoring 1 or more are greylisted.
    let e = scored(10.0, 1.0, vec![Scored("rdns", 0.5, Effect::None)]);
    let v = block_on(e.decide(&facts("192.0.2.1", "a@b", "r@x"), 0));
    assert_eq!(
        (v.action.name(), v.reason.to_string()),
        ("accept", "score low: total 0.5 below the greylisting threshold 1".into())
    );
    let e = scored(10.0, 1.0, vec![Scored("rdns", 1.0, Effect::None)]);
    assert_eq!(block_on(e.decide(&facts("192.0.2.1", "a@b", "r@x"), 0)).reason.kind(), "new");
    // SPF softfail says "greylist" whatever the score.
    let e = scored(10.0, 1.0, vec![Scored("rdns", 0.0, Effect::None), Scored("spf", 0.0, Effect::Greylist)]);
    assert_eq!(block_on(e.decide(&facts("192.0.2.1", "a@b", "r@x"), 0)).reason.kind(), "new");
    // A DNSWL listing with a negative weight skips greylisting.
    let e = scored(10.0, 0.0, vec![Scored("dnswl w.test", -5.0, Effect::SkipGreylisting)]);
    let v = block_on(e.decide(&facts("192.0.2.1", "a@b", "r@x"), 0));
    assert_eq!((v.action.name(), v.reason.kind()), ("accept", "check"));
    // Learning mode turns a score rejection into acceptance.
    let mut p = policy(&[], &[]);
    p.defaults.learning = true;
    p.scoring.reject = 1.0;
    let e = engine(p);
    e.set_checks(vec![Arc::new(Scored("dnsbl a.test", 5.0, Effect::None))]);
    let v = block_on(e.decide(&facts("192.0.2.1", "a@b", "r@x"), 0));
    assert_eq!((v.action.name(), v.learning), ("accept", true));
}

/// SPF passes for every sender of `example.org`.
struct PassingSpf;

#[async_trait]
impl crate::checks::SpfVerifier for PassingSpf {
    async fn verify(&self, _ip: IpAddr, _helo: &str, sender: &str) -> crate::checks::SpfOutcome {
        let pass = sender.ends_with("@example.org");
        crate::checks::SpfOutcome {
            result: if pass { crate::checks::SpfResult::Pass } else { crate::checks::SpfResult::SoftFail },
            domain: crate::address::domain_of(sender).unwrap_or("").into(),
            explanation: None,
        }
    }
}

#[test]
fn a_sender_pool_with_spf_pass_is_recognised_from_another_network() {
    let e = engine(policy(&[], &[]));
    let spf = crate::checks::SpfPolicy { hostname: "mx.test".into(), ..Default::default() };
    e.set_checks(vec![Arc::new(crate::checks::SpfCheck::new(Arc::new(PassingSpf), spf))]);

    // The first attempt is deferred all the same.
    let v = block_on(e.decide(&facts("192.0.2.1", "news+tag@example.org", "r@x"), 0));
    let Reason::Greylist { outcome: Outcome::New, key } = &v.reason else { panic!("{v:?}") };
    assert_eq!(key.to_string(), "spf:example.org/news@example.org/r@x");
    // Too soon from anywhere in the pool.
    let v = block_on(e.decide(&facts("203.0.113.9", "news@example.org", "r@x"), 100));
    assert_eq!(v.reason.kind(), "too_soon");
    // The retry comes from another /24 and passes.
    let v = block_on(e.decide(&facts("198.51.100.7", "news@example.org", "r@x"), 400));
    assert_eq!(v.reason.kind(), "first_pass");
    assert!(v.headers[0].starts_with("X-Greylist: delayed 400 seconds"), "{:?}", v.headers);
    assert!(
        v.headers[1].starts_with("Received-SPF: pass (mx.test: domain of news@example.org designates 198.51.100.7")
    );

    // Without SPF pass the network still keys the triplet: another /24 is new.
    let v = block_on(e.decide(&facts("192.0.2.1", "x@other.example", "r@x"), 0));
    assert_eq!(v.reason.kind(), "new");
    let v = block_on(e.decide(&facts("198.51.100.7", "x@other.example", "r@x"), 400));
    assert_eq!(v.reason.kind(), "new");
}
