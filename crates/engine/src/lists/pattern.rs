//! List entry syntax: what an administrator may write in a list.
//!
//! Client entries follow postgrey's `whitelist_clients` format, and
//! address entries Postfix's access(5) conventions as postgrey's
//! `whitelist_recipients` reads them, so existing files work unchanged.

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;

/// An entry that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty entry")]
    Empty,
    #[error("{0:?} contains white space")]
    WhiteSpace(String),
    #[error("{0:?} is not a valid network: {1}")]
    Network(String, String),
    #[error("{0:?} is not a valid regular expression: {1}")]
    Regex(String, String),
    #[error("{0:?} does not look like a host name")]
    Host(String),
    #[error("{0:?} is not a network; trusted entries must be addresses or CIDR networks")]
    NotANetwork(String),
}

/// A client entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPattern {
    /// `192.0.2.10`, `192.0.2.0/24`, `192.0.2` (a /24), `192.0` (a /16),
    /// `2001:db8::/32`.
    Network(IpNet),
    /// `example.com`: the verified client name is this name or ends in
    /// `.example.com`.
    Host(String),
    /// `/^mail\d+\.example\.com$/`: matched, case-insensitively, against
    /// the verified client name.
    Regex(String),
}

impl ClientPattern {
    pub fn parse(raw: &str) -> Result<ClientPattern, PatternError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(PatternError::WhiteSpace(s.into()));
        }
        if let Some(re) = regex_body(s) {
            return compile(re).map(|_| ClientPattern::Regex(re.to_owned()));
        }
        if let Some(net) = parse_network(s)? {
            return Ok(ClientPattern::Network(net));
        }
        let host = s.trim_end_matches('.').to_lowercase();
        if host.is_empty() || host.contains(['/', '@', ':']) {
            return Err(PatternError::Host(s.into()));
        }
        Ok(ClientPattern::Host(host))
    }

    /// Parse an entry that must be a network (trusted networks).
    pub fn parse_network(raw: &str) -> Result<IpNet, PatternError> {
        match ClientPattern::parse(raw)? {
            ClientPattern::Network(net) => Ok(net),
            _ => Err(PatternError::NotANetwork(raw.trim().into())),
        }
    }
}

/// A sender or recipient entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPattern {
    /// `user@example.com`; also matches `user+ext@example.com`.
    Address { local: String, domain: String },
    /// `user@`: that local part at any domain, with or without extension.
    LocalPart(String),
    /// `example.com` matches the domain and its subdomains; `@example.com`
    /// matches the domain only.
    Domain { name: String, subdomains: bool },
    /// `/regex/`, matched case-insensitively against the whole address.
    Regex(String),
    /// `<>`: the null sender.
    Null,
}

impl AddressPattern {
    pub fn parse(raw: &str) -> Result<AddressPattern, PatternError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(PatternError::WhiteSpace(s.into()));
        }
        if s == "<>" {
            return Ok(AddressPattern::Null);
        }
        if let Some(re) = regex_body(s) {
            return compile(re).map(|_| AddressPattern::Regex(re.to_owned()));
        }
        let s = s.to_lowercase();
        Ok(match s.rsplit_once('@') {
            Some(("", domain)) => {
                AddressPattern::Domain { name: domain.trim_end_matches('.').to_owned(), subdomains: false }
            }
            Some((local, "")) => AddressPattern::LocalPart(local.to_owned()),
            Some((local, domain)) => {
                AddressPattern::Address { local: local.to_owned(), domain: domain.trim_end_matches('.').to_owned() }
            }
            None => AddressPattern::Domain { name: s.trim_end_matches('.').to_owned(), subdomains: true },
        })
    }
}

/// `/body/` gives `body`.
fn regex_body(s: &str) -> Option<&str> {
    s.strip_prefix('/')?.strip_suffix('/').filter(|b| !b.is_empty())
}

/// Compile a list regex: case-insensitive, like postgrey's `qr{...}i`.
pub(crate) fn compile(body: &str) -> Result<Regex, PatternError> {
    Regex::new(&format!("(?i){body}")).map_err(|e| PatternError::Regex(body.into(), e.to_string()))
}

/// `Ok(None)` when the entry is not written as an address at all.
fn parse_network(s: &str) -> Result<Option<IpNet>, PatternError> {
    let bad = |e: &dyn std::fmt::Display| PatternError::Network(s.into(), e.to_string());
    if s.contains(':') || s.contains('/') || s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Some(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Some(IpNet::from(ip)));
        }
        // postgrey's partial IPv4 forms: `a.b.c` is a /24, `a.b` a /16.
        let octets: Vec<&str> = s.split('.').collect();
        if !s.contains(['/', ':']) && (2..=3).contains(&octets.len()) {
            let mut bytes = [0u8; 4];
            for (b, o) in bytes.iter_mut().zip(&octets) {
                *b = o.parse().map_err(|e| bad(&e))?;
            }
            let prefix = 8 * octets.len() as u8;
            return IpNet::new(IpAddr::from(bytes), prefix).map(Some).map_err(|e| bad(&e));
        }
        if s.contains(':') || s.contains('/') || s.contains('.') {
            return Err(bad(&"not an address or CIDR network"));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_patterns() {
        use ClientPattern::*;
        let net = |s: &str| Ok(Network(s.parse().unwrap()));
        let cases: Vec<(&str, Result<ClientPattern, ()>)> = vec![
            ("192.0.2.10", net("192.0.2.10/32")),
            ("192.0.2.10/24", net("192.0.2.0/24")),
            ("192.0.2", net("192.0.2.0/24")),
            ("192.0", net("192.0.0.0/16")),
            ("2001:db8::/32", net("2001:db8::/32")),
            ("2001:db8::1", net("2001:db8::1/128")),
            ("Mail.Example.COM.", Ok(Host("mail.example.com".into()))),
            ("/^mx\\d+\\.example\\.net$/", Ok(Regex("^mx\\d+\\.example\\.net$".into()))),
            ("192.0.2.300", Err(())),
            ("192.0.2.0/40", Err(())),
            ("/unclosed(/", Err(())),
            ("two words", Err(())),
            ("a@b", Err(())),
            ("", Err(())),
        ];
        for (raw, want) in cases {
            assert_eq!(ClientPattern::parse(raw).map_err(|_| ()), want, "{raw:?}");
        }
        assert!(ClientPattern::parse_network("example.com").is_err());
        assert_eq!(ClientPattern::parse_network("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn address_patterns() {
        use AddressPattern::*;
        let cases = [
            ("Postmaster@", LocalPart("postmaster".into())),
            ("bob@Example.NET", Address { local: "bob".into(), domain: "example.net".into() }),
            ("example.net", Domain { name: "example.net".into(), subdomains: true }),
            ("@example.net", Domain { name: "example.net".into(), subdomains: false }),
            ("/^bounce/", Regex("^bounce".into())),
            ("<>", Null),
        ];
        for (raw, want) in cases {
            assert_eq!(AddressPattern::parse(raw).unwrap(), want, "{raw:?}");
        }
        assert!(AddressPattern::parse("/(/").is_err());
        assert!(AddressPattern::parse("a b@c").is_err());
    }
}
