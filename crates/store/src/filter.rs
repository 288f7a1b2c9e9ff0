//! Filters for the admin CLI's entry and client listings.
//!
//! Filters are evaluated in Rust, the same way for every backend, so
//! `greygate entries list --sender '*@example.com'` means the same thing on
//! SQLite as on Redis. Backends may narrow a scan first but must apply
//! [`EntryFilter::matches`] to what they return.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{ClientRecord, Entry, EntryState};

/// A case-insensitive wildcard pattern: `*` matches any run of characters,
/// everything else matches itself. The whole value must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern split at each `*`, lower-cased; one segment means no `*`.
    segments: Vec<String>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob { segments: pattern.to_lowercase().split('*').map(str::to_owned).collect() }
    }

    pub fn matches(&self, value: &str) -> bool {
        let value = value.to_lowercase();
        let (first, rest) = self.segments.split_first().expect("split yields one segment at least");
        let Some((last, middle)) = rest.split_last() else {
            return value == *first;
        };
        if value.len() < first.len() + last.len()
            || !value.starts_with(first.as_str())
            || !value.ends_with(last.as_str())
        {
            return false;
        }
        let mut inner = &value[first.len()..value.len() - last.len()];
        for segment in middle {
            match inner.find(segment.as_str()) {
                Some(at) => inner = &inner[at + segment.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Which clients an admin command is about: a network (every key inside
/// it) or an exact key such as a retry identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMatch {
    Network(IpNet),
    Exact(String),
}

impl ClientMatch {
    pub fn parse(s: &str) -> ClientMatch {
        if let Ok(net) = s.parse::<IpNet>() {
            return ClientMatch::Network(net.trunc());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return ClientMatch::Network(IpNet::from(ip));
        }
        ClientMatch::Exact(s.to_owned())
    }

    /// A stored client key matches when it is an address or network inside
    /// the filter network, or equal to the exact key.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            ClientMatch::Exact(k) => k == key,
            ClientMatch::Network(net) => {
                if let Ok(n) = key.parse::<IpNet>() {
                    net.contains(&n)
                } else if let Ok(ip) = key.parse::<IpAddr>() {
                    net.contains(&ip)
                } else {
                    false
                }
            }
        }
    }
}

/// Selects triplet entries. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    pub client: Option<ClientMatch>,
    pub sender: Option<Glob>,
    pub recipient: Option<Glob>,
    pub state: Option<EntryState>,
}

impl EntryFilter {
    pub fn matches(&self, e: &Entry) -> bool {
        self.client.as_ref().is_none_or(|c| c.matches(&e.key.client))
            && self.sender.as_ref().is_none_or(|g| g.matches(&e.key.sender))
            && self.recipient.as_ref().is_none_or(|g| g.matches(&e.key.recipient))
            && self.state.is_none_or(|s| s == e.state())
    }

    pub fn is_empty(&self) -> bool {
        *self == EntryFilter::default()
    }
}

/// Selects client (auto-whitelist) records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFilter {
    pub client: Option<ClientMatch>,
}

impl ClientFilter {
    pub fn matches(&self, c: &ClientRecord) -> bool {
        self.client.as_ref().is_none_or(|m| m.matches(&c.client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("*@example.com", "Alice@Example.COM", true),
            ("*@example.com", "alice@example.com.evil", false),
            ("alice@*", "alice@example.com", true),
            ("alice@*", "xalice@example.com", false),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abcd", false),
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "x", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*mid*", "a mid b", true),
            ("*mid*", "a mi d", false),
            ("a*b*c", "a_b_c", true),
            ("a*b*c", "a_c_b", false),
            ("ab*ba", "aba", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(Glob::new(pattern).matches(value), want, "{pattern} ~ {value}");
        }
    }

    #[test]
    fn client_matches() {
        let net = ClientMatch::parse("192.0.2.0/23");
        assert!(net.matches("192.0.2.0/24"));
        assert!(net.matches("192.0.3.7"));
        assert!(!net.matches("192.0.4.0/24"));
        assert!(!net.matches("spf:example.com"));
        let ip = ClientMatch::parse("2001:db8::1");
        assert!(ip.matches("2001:db8::1"));
        assert!(!ip.matches("2001:db8::/64"), "a host filter does not match its whole network");
        let exact = ClientMatch::parse("spf:example.com");
        assert!(exact.matches("spf:example.com"));
    }
}
