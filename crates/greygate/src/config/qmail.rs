//! The `[qmail]` section: greydaemon-compatible UDP greylisting for a
//! qmail-smtpd patched with `GREYIP`.
//!
//! The raw section (with defaults) and its validated form. Off while
//! `listen` is empty.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use greygate_engine::Profile;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QmailMode {
    /// greygate's semantics, as the policy server and the proxy decide.
    Greygate,
    /// greydaemon's: a client address that passed once is known for
    /// `greylist.pass_lifetime` since it was last seen.
    Greydaemon,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQmail {
    /// UDP listeners, `host:port` or `[v6]:port`; greydaemon's port is
    /// 1999. Empty (the default) turns the qmail front end off.
    pub listen: Vec<String>,
    /// Whose decision semantics apply.
    pub mode: QmailMode,
    /// Who may ask: datagrams from other addresses are dropped unanswered.
    pub allow_from: Vec<String>,
    /// Datagrams being decided at once; more are dropped unanswered (the
    /// client times out and answers 451).
    pub max_in_flight: usize,
}

impl Default for RawQmail {
    fn default() -> Self {
        RawQmail {
            listen: Vec::new(),
            mode: QmailMode::Greygate,
            allow_from: vec!["127.0.0.0/8".into(), "::1/128".into()],
            max_in_flight: 1024,
        }
    }
}

/// The validated `[qmail]` section.
#[derive(Debug, Clone)]
pub struct QmailConfig {
    pub listen: Vec<SocketAddr>,
    pub profile: Profile,
    pub allow_from: Vec<IpNet>,
    pub max_in_flight: usize,
}

impl QmailConfig {
    pub fn from_raw(raw: &RawQmail) -> Result<QmailConfig> {
        let listen = raw
            .listen
            .iter()
            .map(|l| l.parse().with_context(|| format!("qmail.listen: {l:?} is not host:port or [v6]:port")))
            .collect::<Result<Vec<SocketAddr>>>()?;
        let allow_from = raw
            .allow_from
            .iter()
            .map(|n| {
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(IpNet::from))
                    .with_context(|| format!("qmail.allow_from: {n:?} is not an address or CIDR network"))
            })
            .collect::<Result<Vec<_>>>()?;
        anyhow::ensure!(raw.max_in_flight > 0, "qmail.max_in_flight must be at least 1");
        let profile = match raw.mode {
            QmailMode::Greygate => Profile::Greygate,
            QmailMode::Greydaemon => Profile::Greydaemon,
        };
        Ok(QmailConfig { listen, profile, allow_from, max_in_flight: raw.max_in_flight })
    }

    /// Whether a datagram from `peer` is answered.
    pub fn allows(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.allow_from.iter().any(|n| n.contains(&peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RawConfig};

    fn parse(text: &str) -> Result<Config> {
        Config::from_raw(toml::from_str::<RawConfig>(text)?, None)
    }

    #[test]
    fn the_documented_section_works_as_written() {
        let c = parse("[qmail]\nlisten = [\"127.0.0.1:1999\", \"[::1]:1999\"]\nmode = \"greydaemon\"\n").unwrap();
        assert_eq!(c.qmail.listen, ["127.0.0.1:1999".parse().unwrap(), "[::1]:1999".parse().unwrap()]);
        assert_eq!(c.qmail.profile, Profile::Greydaemon);
        assert!(c.qmail.allows("127.0.0.1".parse().unwrap()));
        assert!(c.qmail.allows("::ffff:127.0.0.2".parse().unwrap()));
        assert!(c.qmail.allows("::1".parse().unwrap()));
        assert!(!c.qmail.allows("192.0.2.1".parse().unwrap()));
        let off = parse("").unwrap();
        assert!(off.qmail.listen.is_empty());
        assert_eq!(off.qmail.profile, Profile::Greygate);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, want) in [
            ("[qmail]\nlisten = [\"1999\"]", "qmail.listen: \"1999\" is not host:port"),
            ("[qmail]\nallow_from = [\"lan\"]", "qmail.allow_from: \"lan\" is not an address"),
            ("[qmail]\nmax_in_flight = 0", "qmail.max_in_flight must be at least 1"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = format!("{:#}", parse("[qmail]\nmode = \"postgrey\"").unwrap_err());
        assert!(err.contains("unknown variant"), "{err}");
        let err = format!("{:#}", parse("[qmail]\nlisten_udp = []").unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
    }
}
