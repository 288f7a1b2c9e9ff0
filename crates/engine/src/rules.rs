//! Settings and the rules that override them.
//!
//! [`Settings`] are the greylisting knobs in effect for one message. The
//! `[greylist]` section gives the defaults; `[[rule]]` entries override
//! some of them for a client, a sender, a recipient, or a combination (the
//! idea behind tumgreyspf's per-IP/sender/recipient config tree).
//!
//! Every matching rule applies, from the least to the most specific, so the
//! most specific rule wins for each setting it names and leaves the others
//! alone. Specificity: more selectors first; then the recipient selector,
//! then the sender, then the client, each ranked by how narrow it is
//! (address > `user@` > exact `@domain` > domain with subdomains > regex;
//! network by prefix length > host name by labels > regex). On a tie the
//! rule written later wins.

use greygate_store::Timers;

use crate::lists::{AddressList, AddressPattern, ClientList, ClientPattern, Origin, PatternError, Source, Who};

/// The greylisting settings in effect for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Greylist at all. `false` accepts without consulting the store.
    pub greylist: bool,
    /// Decide and record, but never defer.
    pub learning: bool,
    pub timers: Timers,
    /// Counted successful retries after which a client skips greylisting;
    /// 0 turns auto-whitelisting off.
    pub auto_whitelist_after: u32,
}

/// The settings a rule changes; `None` leaves a setting alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub greylist: Option<bool>,
    pub learning: Option<bool>,
    /// Seconds.
    pub delay: Option<i64>,
    /// Seconds.
    pub retry_window: Option<i64>,
    /// Seconds.
    pub pass_lifetime: Option<i64>,
    pub auto_whitelist_after: Option<u32>,
}

impl Overrides {
    fn apply(&self, s: &mut Settings) {
        if let Some(v) = self.greylist {
            s.greylist = v;
        }
        if let Some(v) = self.learning {
            s.learning = v;
        }
        if let Some(v) = self.delay {
            s.timers.delay = v;
        }
        if let Some(v) = self.retry_window {
            s.timers.retry_window = v;
        }
        if let Some(v) = self.pass_lifetime {
            s.timers.pass_lifetime = v;
        }
        if let Some(v) = self.auto_whitelist_after {
            s.auto_whitelist_after = v;
        }
    }
}

/// A rule as configured: selectors (all given ones must match) and
/// overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: String,
    pub client: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub overrides: Overrides,
}

type Rank = (u8, u32);

#[derive(Debug)]
struct Rule {
    name: String,
    client: Option<ClientList>,
    sender: Option<AddressList>,
    recipient: Option<AddressList>,
    overrides: Overrides,
    /// (selectors, recipient rank, sender rank, client rank, position).
    order: (u8, Rank, Rank, Rank, usize),
}

impl Rule {
    fn matches(&self, who: &Who<'_>) -> bool {
        self.client.as_ref().is_none_or(|c| c.find(who.ip, who.client_name).is_some())
            && self.sender.as_ref().is_none_or(|l| who.sender.is_some_and(|a| l.find(a).is_some()))
            && self.recipient.as_ref().is_none_or(|l| who.recipient.is_some_and(|a| l.find(a).is_some()))
    }
}

/// Compiled rules, kept in the order they apply.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule {rule:?}: {field}: {error}")]
    Pattern { rule: String, field: &'static str, error: PatternError },
    #[error("rule {0:?} has no client, sender or recipient selector; change the [greylist] defaults instead")]
    NoSelector(String),
}

impl Rules {
    pub fn new(specs: &[RuleSpec]) -> Result<Rules, RuleError> {
        let mut rules = Vec::with_capacity(specs.len());
        for (position, spec) in specs.iter().enumerate() {
            let bad = |field, error| RuleError::Pattern { rule: spec.name.clone(), field, error };
            let source = |pattern: &str| Source { pattern: pattern.to_owned(), origin: Origin::Config };
            let mut client_rank = (0, 0);
            let client = spec
                .client
                .as_deref()
                .map(|p| {
                    let pattern = ClientPattern::parse(p).map_err(|e| bad("client", e))?;
                    client_rank = client_specificity(&pattern);
                    let mut list = ClientList::default();
                    list.add(pattern, source(p));
                    list.regexes.compile().map_err(|e| bad("client", e))?;
                    Ok(list)
                })
                .transpose()?;
            let address = |field, p: Option<&str>, rank: &mut Rank| {
                p.map(|p| {
                    let pattern = AddressPattern::parse(p).map_err(|e| bad(field, e))?;
                    *rank = address_specificity(&pattern);
                    let mut list = AddressList::default();
                    list.add(pattern, source(p));
                    list.regexes.compile().map_err(|e| bad(field, e))?;
                    Ok(list)
                })
                .transpose()
            };
            let (mut sender_rank, mut recipient_rank) = ((0, 0), (0, 0));
            let sender = address("sender", spec.sender.as_deref(), &mut sender_rank)?;
            let recipient = address("recipient", spec.recipient.as_deref(), &mut recipient_rank)?;
            let selectors = [client.is_some(), sender.is_some(), recipient.is_some()].iter().filter(|s| **s).count();
            if selectors == 0 {
                return Err(RuleError::NoSelector(spec.name.clone()));
            }
            rules.push(Rule {
                name: spec.name.clone(),
                client,
                sender,
                recipient,
                overrides: spec.overrides.clone(),
                order: (selectors as u8, recipient_rank, sender_rank, client_rank, position),
            });
        }
        rules.sort_by_key(|r| r.order);
        Ok(Rules { rules })
    }

    /// The settings for `who`, and the names of the rules that applied, in
    /// the order they applied.
    pub fn resolve<'a>(&'a self, defaults: &Settings, who: &Who<'_>) -> (Settings, Vec<&'a str>) {
        let mut settings = defaults.clone();
        let mut applied = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(who)) {
            rule.overrides.apply(&mut settings);
            applied.push(rule.name.as_str());
        }
        (settings, applied)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn labels(name: &str) -> u32 {
    name.split('.').filter(|l| !l.is_empty()).count() as u32
}

fn client_specificity(p: &ClientPattern) -> Rank {
    match p {
        ClientPattern::Regex(_) => (1, 0),
        ClientPattern::Host(h) => (2, labels(h)),
        ClientPattern::Network(n) => (3, u32::from(n.prefix_len())),
    }
}

fn address_specificity(p: &AddressPattern) -> Rank {
    match p {
        AddressPattern::Regex(_) => (1, 0),
        AddressPattern::Domain { name, subdomains: true } => (2, labels(name)),
        AddressPattern::Domain { name, subdomains: false } => (3, labels(name)),
        AddressPattern::LocalPart(_) => (4, 0),
        AddressPattern::Address { .. } | AddressPattern::Null => (5, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        Settings {
            greylist: true,
            learning: false,
            timers: Timers { delay: 300, retry_window: 172800, pass_lifetime: 3110400 },
            auto_whitelist_after: 5,
        }
    }

    fn rule(name: &str, client: Option<&str>, sender: Option<&str>, recipient: Option<&str>, o: Overrides) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            client: client.map(Into::into),
            sender: sender.map(Into::into),
            recipient: recipient.map(Into::into),
            overrides: o,
        }
    }

    fn delay(d: i64) -> Overrides {
        Overrides { delay: Some(d), ..Overrides::default() }
    }

    #[test]
    fn most_specific_rule_wins_per_setting() {
        let specs = [
            // Written first but most specific: applies last.
            rule("sales address", None, None, Some("sales@shop.example"), delay(10)),
            rule(
                "shop domain",
                None,
                None,
                Some("shop.example"),
                Overrides { delay: Some(60), learning: Some(true), ..Overrides::default() },
            ),
            rule(
                "partner net",
                Some("203.0.113.0/24"),
                None,
                None,
                Overrides { greylist: Some(false), ..Overrides::default() },
            ),
            rule("partner host", Some("203.0.113.7"), None, None, delay(1)),
            rule("partner to shop", Some("203.0.113.0/24"), None, Some("shop.example"), delay(2)),
        ];
        let rules = Rules::new(&specs).unwrap();
        let who = |ip: &'static str, rcpt: &'static str| Who {
            ip: ip.parse().unwrap(),
            client_name: None,
            sender: Some("a@b"),
            recipient: Some(rcpt),
        };
        let cases: Vec<(Who<'_>, i64, bool, bool, Vec<&str>)> = vec![
            (who("192.0.2.1", "x@elsewhere.example"), 300, true, false, vec![]),
            (who("192.0.2.1", "x@shop.example"), 60, true, true, vec!["shop domain"]),
            (who("192.0.2.1", "sales@shop.example"), 10, true, true, vec!["shop domain", "sales address"]),
            (who("192.0.2.1", "SALES+x@Shop.Example"), 10, true, true, vec!["shop domain", "sales address"]),
            (who("203.0.113.9", "x@elsewhere.example"), 300, false, false, vec!["partner net"]),
            (who("203.0.113.7", "x@elsewhere.example"), 1, false, false, vec!["partner net", "partner host"]),
            (
                who("203.0.113.7", "sales@shop.example"),
                2,
                false,
                true,
                vec!["partner net", "partner host", "shop domain", "sales address", "partner to shop"],
            ),
        ];
        for (w, want_delay, want_greylist, want_learning, want_applied) in cases {
            let (s, applied) = rules.resolve(&defaults(), &w);
            assert_eq!(
                (s.timers.delay, s.greylist, s.learning, applied.clone()),
                (want_delay, want_greylist, want_learning, want_applied),
                "{} -> {:?}",
                w.ip,
                w.recipient
            );
        }
    }

    #[test]
    fn later_rule_wins_a_tie_and_bad_rules_are_named() {
        let rules = Rules::new(&[
            rule("first", None, Some("example.org"), None, delay(1)),
            rule("second", None, Some("example.org"), None, delay(2)),
        ])
        .unwrap();
        let who = Who {
            ip: "192.0.2.1".parse().unwrap(),
            client_name: None,
            sender: Some("a@example.org"),
            recipient: Some("r@x"),
        };
        assert_eq!(rules.resolve(&defaults(), &who).0.timers.delay, 2);

        let err = Rules::new(&[rule("broken", Some("300.1.2.3"), None, None, delay(1))]).unwrap_err();
        assert!(err.to_string().starts_with("rule \"broken\": client:"), "{err}");
        let err = Rules::new(&[rule("empty", None, None, None, delay(1))]).unwrap_err();
        assert_eq!(err, RuleError::NoSelector("empty".into()));
    }
}
