use super::*;

const T: Timers = Timers { delay: 300, retry_window: 2 * 86400, pass_lifetime: 36 * 86400 };

fn key() -> TripletKey {
    TripletKey {
        client: "192.0.2.0/24".into(),
        sender: "alice@example.org".into(),
        recipient: "bob@example.net".into(),
    }
}

fn awl(after: u32) -> AutoWhitelist {
    AutoWhitelist { client: "192.0.2.10".into(), after, lifetime: 36 * 86400 }
}

/// Replays attempts at the given times against one in-memory record pair and
/// returns the outcomes, the way a backend would apply them.
fn replay(times: &[Timestamp], awl_after: Option<u32>) -> Vec<Outcome> {
    let mut entry: Option<Entry> = None;
    let mut client: Option<ClientRecord> = None;
    times
        .iter()
        .map(|&now| {
            let req = DecideRequest { triplet: key(), timers: T, auto_whitelist: awl_after.map(awl), now };
            let step = decide(&req, client.as_ref(), entry.as_ref());
            if let (Some(e), true) = (step.entry, step.write_entry) {
                entry = Some(e);
            }
            if let Some(c) = step.client {
                client = Some(c);
            }
            step.outcome
        })
        .collect()
}

#[test]
fn greylisting_rounds() {
    use Outcome::*;
    let day = 86400;
    let cases: &[(&str, &[Timestamp], &[Outcome])] = &[
        ("first sight defers", &[1000], &[New]),
        (
            "early retry says how long is left",
            &[1000, 1100, 1299],
            &[New, TooSoon { remaining: 200 }, TooSoon { remaining: 1 }],
        ),
        ("retry exactly at the delay passes", &[1000, 1300], &[New, FirstPass { delayed: 300 }]),
        (
            "passed stays passed and is refreshed on use",
            &[1000, 1400, 1400 + 30 * day, 1400 + 60 * day],
            &[New, FirstPass { delayed: 400 }, Passed, Passed],
        ),
        (
            "passed expires after its lifetime without use",
            &[1000, 1400, 1400 + 36 * day + 1, 1400 + 36 * day + 2],
            &[New, FirstPass { delayed: 400 }, Expired, TooSoon { remaining: 299 }],
        ),
        (
            "retry after the window starts a new round",
            &[1000, 1000 + 2 * day + 1, 1000 + 2 * day + 301],
            &[New, Stale, FirstPass { delayed: 300 }],
        ),
        (
            "retry at the very end of the window still passes",
            &[1000, 1000 + 2 * day],
            &[New, FirstPass { delayed: 2 * day }],
        ),
        (
            "clock going backwards never lengthens the delay",
            &[5000, 4000, 4300],
            &[New, TooSoon { remaining: 300 }, FirstPass { delayed: 300 }],
        ),
    ];
    for (name, times, want) in cases {
        assert_eq!(&replay(times, None), want, "{name}");
    }
}

#[test]
fn entry_fields_follow_the_round() {
    let req = |now| DecideRequest { triplet: key(), timers: T, auto_whitelist: None, now };
    let s1 = decide(&req(1000), None, None);
    let e1 = s1.entry.unwrap();
    assert_eq!((e1.first_seen, e1.last_seen, e1.attempts, e1.passes), (1000, 1000, 1, 0));
    assert_eq!(e1.expires_at, 1000 + T.retry_window);
    assert_eq!(e1.state(), EntryState::Pending);

    let e2 = decide(&req(1100), None, Some(&e1)).entry.unwrap();
    assert_eq!((e2.first_seen, e2.last_seen, e2.attempts), (1000, 1100, 2));
    assert_eq!(e2.expires_at, e1.expires_at, "an early retry does not extend the window");

    let e3 = decide(&req(1500), None, Some(&e2)).entry.unwrap();
    assert_eq!(e3.passed_at, Some(1500));
    assert_eq!(e3.passes, 1);
    assert_eq!(e3.expires_at, 1500 + T.pass_lifetime);
    assert_eq!(e3.state(), EntryState::Passed);
}

#[test]
fn auto_whitelist_counts_first_passes_once_an_hour() {
    // Each call is a new triplet from the same client passing its retry.
    let mut client: Option<ClientRecord> = None;
    let mut pass_at = |now: Timestamp, sender: &str| -> Outcome {
        let mut k = key();
        k.sender = sender.into();
        let req = |now| DecideRequest { triplet: k.clone(), timers: T, auto_whitelist: Some(awl(3)), now };
        let first = decide(&req(now - 400), client.as_ref(), None);
        if first.outcome.accepts() {
            return first.outcome;
        }
        let step = decide(&req(now), client.as_ref(), first.entry.as_ref());
        if let Some(c) = step.client {
            client = Some(c);
        }
        step.outcome
    };
    let hour = 3600;
    assert_eq!(pass_at(10 * hour, "a@x"), Outcome::FirstPass { delayed: 400 });
    // Same hour: counted no more.
    assert_eq!(pass_at(10 * hour + 60, "b@x"), Outcome::FirstPass { delayed: 400 });
    assert_eq!(pass_at(11 * hour, "c@x"), Outcome::FirstPass { delayed: 400 });
    assert_eq!(pass_at(12 * hour, "d@x"), Outcome::FirstPass { delayed: 400 });
    // Three counted passes: whitelisted from now on, for any triplet.
    assert_eq!(pass_at(12 * hour + 10, "e@x"), Outcome::AutoWhitelisted { passes: 3 });
}

#[test]
fn auto_whitelist_expires_and_refreshes_sparingly() {
    let a = awl(1);
    let rec = ClientRecord {
        client: a.client.clone(),
        passes: 1,
        last_counted: 1000,
        last_seen: 1000,
        expires_at: 1000 + a.lifetime,
    };
    let req = |now| DecideRequest { triplet: key(), timers: T, auto_whitelist: Some(a.clone()), now };
    // Within the refresh interval: whitelisted, nothing written.
    let s = decide(&req(1000 + 60), Some(&rec), None);
    assert_eq!(s.outcome, Outcome::AutoWhitelisted { passes: 1 });
    assert_eq!((s.entry, s.client), (None, None));
    // Later: whitelisted and refreshed.
    let s = decide(&req(1000 + REFRESH_INTERVAL), Some(&rec), None);
    assert_eq!(s.client.unwrap().last_seen, 1000 + REFRESH_INTERVAL);
    // Past its lifetime: greylisted like anyone else.
    let s = decide(&req(1001 + a.lifetime), Some(&rec), None);
    assert_eq!(s.outcome, Outcome::New);
}

#[test]
fn auto_whitelist_off_ignores_client_records() {
    let rec = ClientRecord {
        client: "192.0.2.10".into(),
        passes: 99,
        last_counted: 0,
        last_seen: 1000,
        expires_at: i64::MAX,
    };
    let req = DecideRequest { triplet: key(), timers: T, auto_whitelist: None, now: 1001 };
    assert_eq!(decide(&req, Some(&rec), None).outcome, Outcome::New);
}

#[test]
fn a_known_triplet_is_rewritten_at_most_once_an_hour() {
    let req = |now| DecideRequest { triplet: key(), timers: T, auto_whitelist: None, now };
    let passed = decide(&req(1400), None, decide(&req(1000), None, None).entry.as_ref()).entry.unwrap();
    assert_eq!(passed.passed_at, Some(1400));
    let soon = decide(&req(1400 + REFRESH_INTERVAL - 1), None, Some(&passed));
    assert_eq!((soon.outcome, soon.write_entry), (Outcome::Passed, false));
    assert_eq!(soon.entry.as_ref(), Some(&passed), "reported as it is stored");
    let later = decide(&req(1400 + REFRESH_INTERVAL), None, Some(&passed));
    assert_eq!((later.outcome, later.write_entry), (Outcome::Passed, true));
    let e = later.entry.unwrap();
    assert_eq!(
        (e.last_seen, e.passes, e.expires_at),
        (1400 + REFRESH_INTERVAL, 2, 1400 + REFRESH_INTERVAL + T.pass_lifetime)
    );
}
