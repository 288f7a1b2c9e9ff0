use std::net::IpAddr;
use std::sync::Arc;

use futures::executor::block_on;
use greygate_store::memory::MemoryStore;
use greygate_store::{ListKind, ListTarget, Outcome, Timers};

use super::*;
use crate::engine::{Policy, StaticEntry};
use crate::facts::Stage;
use crate::lists::Origin;
use crate::network::NetworkKeying;
use crate::rules::{Rules, Settings};
use crate::template::{ReplyClass, ReplyTemplate};
use crate::verdict::Action;

const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// greydaemon's defaults: -m 5, -g 12, -t 7, exact-IP keys.
fn engine(whitelist: &[&str]) -> Engine {
    let policy = Policy {
        defaults: Settings {
            greylist: true,
            learning: false,
            timers: Timers { delay: 5 * MIN, retry_window: 12 * HOUR, pass_lifetime: 7 * DAY },
            auto_whitelist_after: 5,
        },
        rules: Rules::new(&[]).unwrap(),
        keying: NetworkKeying::EXACT,
        scoring: Default::default(),
        static_lists: whitelist
            .iter()
            .map(|p| StaticEntry {
                kind: ListKind::Whitelist,
                target: ListTarget::Client,
                pattern: (*p).into(),
                origin: Origin::Config,
            })
            .collect(),
        greylist_reply: ReplyTemplate::parse("451 4.7.1 Greylisted", ReplyClass::Temporary).unwrap(),
        blacklist_reply: ReplyTemplate::parse("554 5.7.1 No", ReplyClass::Permanent).unwrap(),
        store_failure_reply: ReplyTemplate::parse("451 4.3.0 Later", ReplyClass::Temporary).unwrap(),
        header: None,
        hostname: "mx.test".into(),
        fail_open: true,
    };
    Engine::new(Arc::new(MemoryStore::new()), policy, Vec::new()).unwrap()
}

fn ask(e: &Engine, profile: Profile, ip: &str, sender: &str, rcpts: &[&str], now: i64) -> Vec<&'static str> {
    let facts = Facts { sender: Some(sender.into()), ..Facts::new(Stage::Rcpt, ip.parse::<IpAddr>().unwrap()) };
    let rcpts: Vec<String> = rcpts.iter().map(|r| (*r).to_owned()).collect();
    block_on(e.decide_transaction(profile, &facts, &rcpts, now)).iter().map(|v| v.reason.kind()).collect()
}

const T0: i64 = 1_700_000_000;

#[test]
fn greydaemon_round_then_the_address_is_known() {
    let e = engine(&[]);
    let gd = Profile::Greydaemon;
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["b@y"], T0), ["new"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["b@y"], T0 + 4 * MIN), ["too_soon"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["b@y"], T0 + 6 * MIN), ["first_pass"]);
    // Known now: any sender, any recipients, one answer for the transaction.
    assert_eq!(ask(&e, gd, "192.0.2.1", "other@z", &["c@y", "d@y"], T0 + 7 * MIN), ["auto_whitelisted"]);
    // Known for -t days since last seen, refreshed by use.
    assert_eq!(ask(&e, gd, "192.0.2.1", "n@z", &["c@y"], T0 + 6 * DAY), ["auto_whitelisted"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "n@z", &["c@y"], T0 + 12 * DAY), ["auto_whitelisted"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "n@z", &["c@y"], T0 + 20 * DAY), ["new"]);
    // Exact-IP keys: the neighbour is not known.
    assert_eq!(ask(&e, gd, "192.0.2.2", "a@x", &["b@y"], T0 + 7 * MIN), ["new"]);
}

#[test]
fn greydaemon_retry_after_the_window_is_stale() {
    let e = engine(&[]);
    let gd = Profile::Greydaemon;
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["b@y"], T0), ["new"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["b@y"], T0 + 13 * HOUR), ["stale"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["b@y"], T0 + 13 * HOUR + 6 * MIN), ["first_pass"]);
}

#[test]
fn greydaemon_decides_every_recipient_and_a_pass_counts_only_from_the_next_transaction() {
    let e = engine(&[]);
    let gd = Profile::Greydaemon;
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["b@y"], T0), ["new"]);
    // b@y passes, which makes the address known, but c@y in the same
    // transaction is still new: greydaemon looked the address up once.
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["b@y", "c@y", "b@y"], T0 + 6 * MIN), ["first_pass", "new", "passed"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &["c@y"], T0 + 7 * MIN), ["auto_whitelisted"]);
}

#[test]
fn bounces_to_verp_addresses_pass_and_stop_the_transaction() {
    let e = engine(&[]);
    let gd = Profile::Greydaemon;
    let verp = "list-bounces-bob=example.net@lists.example";
    // greydaemon records the recipients before the bounce, then stops.
    assert_eq!(ask(&e, gd, "192.0.2.1", "", &["plain@y", verp, "never@y"], T0), ["new", "bounce"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "", &["plain@y"], T0 + MIN), ["too_soon"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "", &["never@y"], T0 + MIN), ["new"], "not recorded after the bounce");
    // Not a bounce with a sender.
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &[verp], T0), ["new"]);
    // A known address answers "known" before the bounce rule, as greydaemon
    // does.
    assert_eq!(ask(&e, gd, "192.0.2.1", "a@x", &[verp], T0 + 6 * MIN), ["first_pass"]);
    assert_eq!(ask(&e, gd, "192.0.2.1", "", &[verp], T0 + 7 * MIN), ["auto_whitelisted"]);
    // The bounce rule applies in greygate's profile too (it is part of the
    // qmail transaction question).
    assert_eq!(ask(&e, Profile::Greygate, "198.51.100.1", "<>", &[verp], T0), ["bounce"]);
}

#[test]
fn whitelisted_addresses_pass_without_a_record() {
    let e = engine(&["192.0.2.0/24"]);
    assert_eq!(ask(&e, Profile::Greydaemon, "192.0.2.9", "a@x", &["b@y", "c@y"], T0), ["whitelisted", "whitelisted"]);
    assert_eq!(ask(&e, Profile::Greydaemon, "192.0.3.9", "a@x", &["b@y"], T0), ["new"]);
}

#[test]
fn greygate_profile_needs_the_configured_passes() {
    let e = engine(&[]);
    let gg = Profile::Greygate;
    assert_eq!(ask(&e, gg, "192.0.2.1", "a@x", &["b@y", "c@y"], T0), ["new", "new"]);
    assert_eq!(ask(&e, gg, "192.0.2.1", "a@x", &["b@y", "c@y"], T0 + 6 * MIN), ["first_pass", "first_pass"]);
    // One pass is not enough to know the address in greygate's profile.
    assert_eq!(ask(&e, gg, "192.0.2.1", "a@x", &["d@y"], T0 + 7 * MIN), ["new"]);
    // The same store under greydaemon's profile: that pass makes the
    // address known.
    assert_eq!(ask(&e, Profile::Greydaemon, "192.0.2.1", "a@x", &["d@y"], T0 + 8 * MIN), ["auto_whitelisted"]);
    // decide_as is decide under a profile, one recipient.
    let facts = Facts {
        sender: Some("q@x".into()),
        recipient: Some("r@y".into()),
        ..Facts::new(Stage::Rcpt, "192.0.2.77".parse().unwrap())
    };
    let v = block_on(e.decide_as(Profile::Greydaemon, &facts, T0 + 8 * MIN));
    assert_eq!(v.reason.kind(), "new");
    assert!(matches!(v.action, Action::Defer(_)));
    assert!(matches!(
        block_on(e.decide_as(Profile::Greydaemon, &facts, T0 + 9 * MIN)).reason,
        Reason::Greylist { outcome: Outcome::TooSoon { remaining: 240 }, .. }
    ));
}

#[test]
fn bounce_rule() {
    assert!(is_verp_bounce("", "list-bounces-bob=example.net@lists.example"));
    assert!(is_verp_bounce("<>", "a-=@b"));
    assert!(!is_verp_bounce("x@y", "list-bounces-bob=example.net@lists.example"));
    assert!(!is_verp_bounce("", "bob@example.net"));
    assert!(!is_verp_bounce("", "a=b-c@d"), "the '=' must follow a '-'");
}
