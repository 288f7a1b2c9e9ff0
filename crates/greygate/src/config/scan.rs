//! The `[scan]` section: content scanning in the SMTP proxy with clamd
//! (viruses) and spamd (spam score), smtp-gated's job.
//!
//! Scanning is off unless `[scan.clamd]` or `[scan.spamd]` is present. A
//! scanner that is down or too slow tempfails the message by default: mail
//! is never passed unscanned unless `on_error = "accept"` says so.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::duration::Human;

/// What to do with a message a scanner has condemned or could not judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanAction {
    /// Refuse it for good (554 5.7.1).
    Reject,
    /// Refuse it for now (451 4.7.1); the sender retries.
    Tempfail,
    /// Deliver it (logged and counted).
    Accept,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawScan {
    /// Scan at most this many bytes of a message; a bigger message gets
    /// `too_big`.
    pub max_size: u64,
    /// What happens to a message bigger than `max_size`.
    pub too_big: ScanAction,
    /// Keep up to this many bytes of a message in memory; more goes to a
    /// private temporary file in `spool_dir`.
    pub memory: usize,
    /// Where spool files go (deleted at once; the system's temporary
    /// directory when unset).
    pub spool_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clamd: Option<RawClamd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spamd: Option<RawSpamd>,
    /// Settings per client network and recipient (`[[scan.rule]]`).
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RawScanRule>,
}

impl Default for RawScan {
    fn default() -> Self {
        RawScan {
            max_size: 25 * 1024 * 1024,
            too_big: ScanAction::Accept,
            memory: 1024 * 1024,
            spool_dir: None,
            clamd: None,
            spamd: None,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClamd {
    /// `host:port` or `unix:/path/to/clamd.ctl`.
    pub address: String,
    /// Longest wait for clamd: connect, each write, and the verdict.
    pub timeout: Human,
    pub on_virus: ScanAction,
    /// clamd down, too slow, or answering an error.
    pub on_error: ScanAction,
}

impl Default for RawClamd {
    fn default() -> Self {
        RawClamd {
            address: "unix:/run/clamav/clamd.ctl".into(),
            timeout: Human::secs(60),
            on_virus: ScanAction::Reject,
            on_error: ScanAction::Tempfail,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpamd {
    /// `host:port` or `unix:/path`.
    pub address: String,
    pub timeout: Human,
    /// Messages bigger than this are not sent to spamd (spamc's own
    /// default is 500 KB; spam is small).
    pub max_size: u64,
    /// Refuse (554) at or above this score.
    pub reject_score: Option<f64>,
    /// Tempfail (451) at or above this score.
    pub tempfail_score: Option<f64>,
    /// Add `X-Spam-Status` and `X-Spam-Score` headers to delivered mail.
    /// The message is then held until spamd has answered and sent to the
    /// MTA after (with the headers on top) instead of while it streams in.
    pub tag: bool,
    /// The `User:` spamd applies per-user settings for.
    pub user: Option<String>,
    pub on_error: ScanAction,
}

impl Default for RawSpamd {
    fn default() -> Self {
        RawSpamd {
            address: "127.0.0.1:783".into(),
            timeout: Human::secs(60),
            max_size: 500 * 1024,
            reject_score: None,
            tempfail_score: None,
            tag: true,
            user: None,
            on_error: ScanAction::Tempfail,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawScanRule {
    pub name: String,
    /// Client address or network.
    pub client: Option<String>,
    /// Recipient domain (`example.org`, `.example.org` for subdomains) or
    /// address; the rule applies when every recipient matches.
    pub recipient: Option<String>,
    pub clamd: Option<bool>,
    pub spamd: Option<bool>,
    pub on_virus: Option<ScanAction>,
    pub reject_score: Option<f64>,
    pub tempfail_score: Option<f64>,
    pub tag: Option<bool>,
}

/// Where a scanner listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScannerAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl std::fmt::Display for ScannerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScannerAddr::Tcp(a) => f.write_str(a),
            ScannerAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl ScannerAddr {
    fn parse(s: &str, key: &str) -> Result<ScannerAddr> {
        if let Some(path) = s.strip_prefix("unix:") {
            ensure!(path.starts_with('/'), "{key}: a unix socket path must be absolute, got {path:?}");
            return Ok(ScannerAddr::Unix(path.into()));
        }
        let ok = s.rsplit_once(':').is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
        ensure!(ok, "{key}: invalid address {s:?}; expected host:port or unix:/path");
        Ok(ScannerAddr::Tcp(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClamdConfig {
    pub address: ScannerAddr,
    pub timeout: Duration,
    pub on_virus: ScanAction,
    pub on_error: ScanAction,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpamdConfig {
    pub address: ScannerAddr,
    pub timeout: Duration,
    pub max_size: u64,
    pub reject_score: Option<f64>,
    pub tempfail_score: Option<f64>,
    pub tag: bool,
    pub user: Option<String>,
    pub on_error: ScanAction,
}

/// What one message gets: the section's settings with the first matching
/// rule applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanPlan {
    pub rule: Option<String>,
    pub clamd: bool,
    pub spamd: bool,
    pub on_virus: ScanAction,
    pub reject_score: Option<f64>,
    pub tempfail_score: Option<f64>,
    pub tag: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct ScanRule {
    name: String,
    client: Option<IpNet>,
    recipient: Option<String>,
    raw: RawScanRule,
}

/// The validated `[scan]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanConfig {
    pub max_size: u64,
    pub too_big: ScanAction,
    pub memory: usize,
    pub spool_dir: PathBuf,
    pub clamd: Option<ClamdConfig>,
    pub spamd: Option<SpamdConfig>,
    rules: Vec<ScanRule>,
}

impl ScanConfig {
    pub fn enabled(&self) -> bool {
        self.clamd.is_some() || self.spamd.is_some()
    }

    pub fn from_raw(s: &RawScan) -> Result<ScanConfig> {
        ensure!(s.max_size >= 1024, "scan.max_size must be at least 1024 bytes");
        ensure!(s.max_size <= u32::MAX as u64, "scan.max_size must be below 4 GiB");
        let score = |v: Option<f64>, key: &str| -> Result<Option<f64>> {
            if let Some(v) = v {
                ensure!(v.is_finite(), "{key} must be a number");
            }
            Ok(v)
        };
        let clamd = match &s.clamd {
            None => None,
            Some(c) => {
                ensure!(!c.timeout.0.is_zero(), "scan.clamd.timeout must be more than zero");
                Some(ClamdConfig {
                    address: ScannerAddr::parse(&c.address, "scan.clamd.address")?,
                    timeout: c.timeout.0,
                    on_virus: c.on_virus,
                    on_error: c.on_error,
                })
            }
        };
        let spamd = match &s.spamd {
            None => None,
            Some(c) => {
                ensure!(!c.timeout.0.is_zero(), "scan.spamd.timeout must be more than zero");
                Some(SpamdConfig {
                    address: ScannerAddr::parse(&c.address, "scan.spamd.address")?,
                    timeout: c.timeout.0,
                    max_size: c.max_size,
                    reject_score: score(c.reject_score, "scan.spamd.reject_score")?,
                    tempfail_score: score(c.tempfail_score, "scan.spamd.tempfail_score")?,
                    tag: c.tag,
                    user: c.user.clone(),
                    on_error: c.on_error,
                })
            }
        };
        let mut rules = Vec::new();
        for r in &s.rules {
            let key = format!("scan.rule {:?}", r.name);
            let client = match &r.client {
                None => None,
                Some(n) => Some(
                    n.parse::<IpNet>()
                        .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                        .with_context(|| format!("{key}: invalid client network {n:?}"))?,
                ),
            };
            let recipient = r.recipient.as_ref().map(|p| p.trim().to_ascii_lowercase());
            if let Some(p) = &recipient {
                ensure!(!p.is_empty() && !p.contains(char::is_whitespace), "{key}: invalid recipient {p:?}");
            }
            if client.is_none() && recipient.is_none() {
                bail!("{key}: give a client network, a recipient, or both");
            }
            score(r.reject_score, &key)?;
            score(r.tempfail_score, &key)?;
            rules.push(ScanRule { name: r.name.clone(), client, recipient, raw: r.clone() });
        }
        Ok(ScanConfig {
            max_size: s.max_size,
            too_big: s.too_big,
            memory: s.memory,
            spool_dir: s.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
            clamd,
            spamd,
            rules,
        })
    }

    /// The plan for a message from `client` to `recipients`.
    pub fn plan(&self, client: IpAddr, recipients: &[String]) -> ScanPlan {
        let spamd = self.spamd.as_ref();
        let mut plan = ScanPlan {
            rule: None,
            clamd: self.clamd.is_some(),
            spamd: spamd.is_some(),
            on_virus: self.clamd.as_ref().map_or(ScanAction::Reject, |c| c.on_virus),
            reject_score: spamd.and_then(|s| s.reject_score),
            tempfail_score: spamd.and_then(|s| s.tempfail_score),
            tag: spamd.is_some_and(|s| s.tag),
        };
        let rule = self.rules.iter().find(|r| {
            r.client.is_none_or(|net| net.contains(&client.to_canonical()))
                && r.recipient.as_deref().is_none_or(|p| recipients.iter().all(|rcpt| recipient_matches(p, rcpt)))
        });
        if let Some(rule) = rule {
            let r = &rule.raw;
            plan.rule = Some(rule.name.clone());
            plan.clamd &= r.clamd.unwrap_or(true);
            plan.spamd &= r.spamd.unwrap_or(true);
            plan.on_virus = r.on_virus.unwrap_or(plan.on_virus);
            plan.reject_score = r.reject_score.or(plan.reject_score);
            plan.tempfail_score = r.tempfail_score.or(plan.tempfail_score);
            plan.tag = plan.spamd && r.tag.unwrap_or(plan.tag);
        }
        plan
    }
}

/// `user@example.org` (that address), `example.org` (that domain) or
/// `.example.org` (its subdomains).
fn recipient_matches(pattern: &str, recipient: &str) -> bool {
    let recipient = recipient.trim_matches(['<', '>']).to_ascii_lowercase();
    if pattern.contains('@') {
        return recipient == pattern;
    }
    let Some((_, domain)) = recipient.rsplit_once('@') else { return false };
    match pattern.strip_prefix('.') {
        Some(parent) => domain.len() > parent.len() && domain.ends_with(pattern),
        None => domain == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> Result<ScanConfig> {
        let raw: RawScan = toml::from_str(toml_text)?;
        ScanConfig::from_raw(&raw)
    }

    #[test]
    fn scanning_is_off_by_default_and_tempfails_on_errors_when_on() {
        let off = config("").unwrap();
        assert!(!off.enabled());
        let on = config("[clamd]\naddress = \"127.0.0.1:3310\"\n[spamd]\n").unwrap();
        assert!(on.enabled());
        assert_eq!(on.clamd.as_ref().unwrap().on_error, ScanAction::Tempfail);
        assert_eq!(on.clamd.as_ref().unwrap().on_virus, ScanAction::Reject);
        assert_eq!(on.spamd.as_ref().unwrap().on_error, ScanAction::Tempfail);
        assert_eq!(on.spamd.as_ref().unwrap().address, ScannerAddr::Tcp("127.0.0.1:783".into()));
    }

    #[test]
    fn bad_values_are_named() {
        for (text, want) in [
            ("[clamd]\naddress = \"clamd\"", "scan.clamd.address"),
            ("[clamd]\naddress = \"unix:relative\"", "absolute"),
            ("[spamd]\ntimeout = \"0s\"", "scan.spamd.timeout"),
            ("[[rule]]\nname = \"x\"", "give a client network"),
            ("[[rule]]\nname = \"x\"\nclient = \"300.0.0.0/8\"", "invalid client network"),
            ("max_size = 10", "scan.max_size"),
        ] {
            let error = format!("{:#}", config(text).unwrap_err());
            assert!(error.contains(want), "{text:?}: {error}");
        }
        assert!(format!("{:#}", config("[clamd]\nadress = \"x\"").unwrap_err()).contains("adress"));
    }

    #[test]
    fn the_first_rule_matching_the_client_and_every_recipient_applies() {
        let c = config(
            r#"
            [clamd]
            address = "127.0.0.1:3310"
            [spamd]
            reject_score = 15.0
            [[rule]]
            name = "partners"
            client = "192.0.2.0/24"
            spamd = false
            [[rule]]
            name = "abuse desk"
            recipient = "abuse@example.org"
            on_virus = "accept"
            tag = false
            [[rule]]
            name = "strict subdomains"
            recipient = ".strict.example"
            reject_score = 5.0
            "#,
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let rcpts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let p = c.plan(ip("192.0.2.7"), &rcpts(&["bob@example.org"]));
        assert_eq!((p.rule.as_deref(), p.clamd, p.spamd, p.tag), (Some("partners"), true, false, false));

        let p = c.plan(ip("198.51.100.1"), &rcpts(&["<Abuse@Example.org>"]));
        assert_eq!((p.rule.as_deref(), p.on_virus, p.tag), (Some("abuse desk"), ScanAction::Accept, false));

        // Not every recipient is the abuse desk: the section's settings.
        let p = c.plan(ip("198.51.100.1"), &rcpts(&["abuse@example.org", "bob@example.org"]));
        assert_eq!((p.rule, p.on_virus, p.reject_score, p.tag), (None, ScanAction::Reject, Some(15.0), true));

        let p = c.plan(ip("198.51.100.1"), &rcpts(&["a@mx.strict.example"]));
        assert_eq!(p.reject_score, Some(5.0));
        let p = c.plan(ip("198.51.100.1"), &rcpts(&["a@strict.example"]));
        assert_eq!(p.reject_score, Some(15.0));
    }
}
