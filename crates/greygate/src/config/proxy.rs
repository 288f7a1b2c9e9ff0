//! The `[proxy]` section: greygate as an SMTP proxy in front of an MTA.
//!
//! The raw section (with defaults) and its validated form. Relay control
//! is closed by default: with no `relay_domains`, only trusted or
//! authenticated clients can give any recipient.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use greygate_proto::smtp::{BareNewline, Limits};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::duration::Human;
use super::scan::{RawScan, ScanConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareNewlineMode {
    /// Relay bare CR/LF in message data as CRLF.
    Normalize,
    /// Refuse messages containing them (550 5.5.2).
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    /// STARTTLS when the upstream offers it (certificate not verified
    /// unless `upstream_tls_ca` is set).
    May,
    /// Never STARTTLS toward the upstream.
    None,
    /// Refuse to relay unless STARTTLS succeeds.
    Require,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardClient {
    /// XCLIENT when the upstream offers it, else XFORWARD, else nothing.
    Auto,
    Xclient,
    Xforward,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProxy {
    /// SMTP listeners, `host:port` (IPv4 or `[v6]:port`). Empty (the
    /// default) turns the proxy off.
    pub listen: Vec<String>,
    /// Listeners where every connection starts with a PROXY protocol
    /// header (v1 or v2) from a load balancer; never guessed elsewhere.
    pub listen_proxy_protocol: Vec<String>,
    /// Networks allowed to send a PROXY protocol header.
    pub proxy_protocol_from: Vec<String>,
    /// The real MTA, `host:port`, tried in order.
    pub upstream: Vec<String>,
    /// Our name in the greeting, EHLO and Received header; empty means
    /// `greylist.hostname` (the system host name by default).
    pub hostname: String,
    /// Recipient domains we accept mail for: `example.com`, `.example.com`
    /// for its subdomains, or one address `postmaster@example.com`.
    pub relay_domains: Vec<String>,
    /// Simultaneous sessions; more get 421.
    pub max_sessions: usize,
    /// Simultaneous sessions from one client address; more get 421.
    pub max_sessions_per_ip: usize,
    /// Refuse new sessions (421) while the 1-minute load average is above
    /// this; 0 turns the check off.
    pub max_load: f64,
    /// Longest wait for the next command.
    pub command_timeout: Human,
    /// Longest wait for more message data.
    pub data_timeout: Human,
    /// Longest wait for a TCP connection to the upstream.
    pub upstream_connect_timeout: Human,
    /// Longest wait for an upstream reply (the end-of-data reply may take
    /// up to twice this).
    pub upstream_timeout: Human,
    /// Longest command line, bytes (at least 512).
    pub max_line: usize,
    /// Largest message, bytes (announced as SIZE; more gets 552).
    pub max_message_size: u64,
    /// Most recipients per message (at least 100; more get 452).
    pub max_recipients: usize,
    /// Protocol errors before a session is closed.
    pub max_errors: u32,
    pub bare_newline: BareNewlineMode,
    /// Wait this long before the greeting; a client that talks first gets
    /// 554 and is disconnected. 0 turns it off.
    pub greet_pause: Human,
    /// Clients exempt from the greet pause (CIDRs).
    pub greet_pause_exempt: Vec<String>,
    /// PEM certificate chain and key for STARTTLS; both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub upstream_tls: UpstreamTls,
    /// PEM CA certificates to verify the upstream's certificate with.
    pub upstream_tls_ca: Option<PathBuf>,
    pub forward_client: ForwardClient,
    /// Relay AUTH to the upstream for clients on TLS (authenticated
    /// clients may relay and skip greylisting).
    pub auth: bool,
    /// Look up the client's host name (PTR, forward-confirmed, with
    /// `[dns]`), so host name lists match and the MTA is told the name.
    pub client_lookup: bool,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            listen: Vec::new(),
            listen_proxy_protocol: Vec::new(),
            proxy_protocol_from: vec!["127.0.0.0/8".into(), "::1/128".into()],
            upstream: Vec::new(),
            hostname: String::new(),
            relay_domains: Vec::new(),
            max_sessions: 1000,
            max_sessions_per_ip: 20,
            max_load: 0.0,
            command_timeout: Human::secs(300),
            data_timeout: Human::secs(180),
            upstream_connect_timeout: Human::secs(30),
            upstream_timeout: Human::secs(300),
            max_line: 2048,
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 1000,
            max_errors: 20,
            bare_newline: BareNewlineMode::Normalize,
            greet_pause: Human::secs(0),
            greet_pause_exempt: vec!["127.0.0.0/8".into(), "::1/128".into()],
            tls_cert: None,
            tls_key: None,
            upstream_tls: UpstreamTls::May,
            upstream_tls_ca: None,
            forward_client: ForwardClient::Auto,
            auth: true,
            client_lookup: true,
        }
    }
}

/// Which recipients we accept mail for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayDomains {
    domains: Vec<String>,
    parents: Vec<String>,
    addresses: Vec<String>,
}

impl RelayDomains {
    pub fn parse(entries: &[String]) -> Result<RelayDomains> {
        let mut relay = RelayDomains::default();
        for entry in entries {
            let e = entry.trim().to_ascii_lowercase();
            ensure!(!e.is_empty() && !e.contains(char::is_whitespace), "proxy.relay_domains: invalid entry {entry:?}");
            if e.contains('@') {
                ensure!(!e.starts_with('@') && !e.ends_with('@'), "proxy.relay_domains: invalid address {entry:?}");
                relay.addresses.push(e);
            } else if let Some(parent) = e.strip_prefix('.') {
                ensure!(!parent.is_empty(), "proxy.relay_domains: invalid entry {entry:?}");
                relay.parents.push(format!(".{parent}"));
            } else {
                relay.domains.push(e);
            }
        }
        Ok(relay)
    }

    /// Mail for `recipient` may come in from anyone.
    pub fn accepts(&self, recipient: &str) -> bool {
        let r = recipient.to_ascii_lowercase();
        let Some((_, domain)) = r.rsplit_once('@') else {
            // A bare local part (`postmaster`) is not for us to route.
            return false;
        };
        let domain = domain.trim_end_matches('.');
        self.addresses.contains(&r)
            || self.domains.iter().any(|d| d == domain)
            || self.parents.iter().any(|p| domain.ends_with(p.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.parents.is_empty() && self.addresses.is_empty()
    }
}

/// The validated `[proxy]` section.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: Vec<SocketAddr>,
    pub listen_proxy_protocol: Vec<SocketAddr>,
    pub proxy_protocol_from: Vec<IpNet>,
    pub upstream: Vec<String>,
    pub hostname: String,
    pub relay: RelayDomains,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub max_load: Option<f64>,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub limits: Limits,
    pub max_message_size: u64,
    pub greet_pause: Duration,
    pub greet_pause_exempt: Vec<IpNet>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub upstream_tls: UpstreamTls,
    pub upstream_tls_ca: Option<PathBuf>,
    pub forward_client: ForwardClient,
    pub auth: bool,
    /// Look up the client's host name (see [`RawProxy::client_lookup`]).
    pub client_lookup: bool,
    pub scan: ScanConfig,
}

impl ProxyConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty() || !self.listen_proxy_protocol.is_empty()
    }

    pub fn from_raw(p: &RawProxy, scan: &RawScan, default_hostname: &str) -> Result<ProxyConfig> {
        let addrs = |list: &[String], key: &str| -> Result<Vec<SocketAddr>> {
            list.iter()
                .map(|a| a.parse().with_context(|| format!("proxy.{key}: invalid address {a:?}; expected host:port")))
                .collect()
        };
        let nets = |list: &[String], key: &str| -> Result<Vec<IpNet>> {
            list.iter()
                .map(|n| {
                    n.parse::<IpNet>()
                        .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                        .with_context(|| format!("proxy.{key}: invalid network {n:?}"))
                })
                .collect()
        };
        let listen = addrs(&p.listen, "listen")?;
        let listen_proxy_protocol = addrs(&p.listen_proxy_protocol, "listen_proxy_protocol")?;
        let enabled = !listen.is_empty() || !listen_proxy_protocol.is_empty();
        ensure!(!enabled || !p.upstream.is_empty(), "proxy.upstream must name the MTA to relay to (host:port)");
        for u in &p.upstream {
            let ok = u.rsplit_once(':').is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok());
            ensure!(ok, "proxy.upstream: invalid address {u:?}; expected host:port");
        }
        ensure!(p.max_line >= 512, "proxy.max_line must be at least 512");
        ensure!(p.max_recipients >= 100, "proxy.max_recipients must be at least 100 (RFC 5321 §4.5.3.1.8)");
        ensure!(p.max_message_size >= 65536, "proxy.max_message_size must be at least 65536 bytes");
        ensure!(
            p.max_sessions > 0 && p.max_sessions_per_ip > 0,
            "proxy.max_sessions and max_sessions_per_ip must be at least 1"
        );
        ensure!(p.max_errors > 0, "proxy.max_errors must be at least 1");
        ensure!(p.max_load >= 0.0, "proxy.max_load must not be negative");
        for (key, d) in [
            ("command_timeout", p.command_timeout),
            ("data_timeout", p.data_timeout),
            ("upstream_connect_timeout", p.upstream_connect_timeout),
            ("upstream_timeout", p.upstream_timeout),
        ] {
            ensure!(!d.0.is_zero(), "proxy.{key} must be more than zero");
        }
        let tls = match (&p.tls_cert, &p.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => anyhow::bail!("proxy.tls_cert and proxy.tls_key go together"),
        };
        Ok(ProxyConfig {
            listen,
            listen_proxy_protocol,
            proxy_protocol_from: nets(&p.proxy_protocol_from, "proxy_protocol_from")?,
            upstream: p.upstream.clone(),
            hostname: if p.hostname.is_empty() { default_hostname.to_owned() } else { p.hostname.clone() },
            relay: RelayDomains::parse(&p.relay_domains)?,
            max_sessions: p.max_sessions,
            max_sessions_per_ip: p.max_sessions_per_ip,
            max_load: (p.max_load > 0.0).then_some(p.max_load),
            command_timeout: p.command_timeout.0,
            data_timeout: p.data_timeout.0,
            upstream_connect_timeout: p.upstream_connect_timeout.0,
            upstream_timeout: p.upstream_timeout.0,
            limits: Limits {
                max_line: p.max_line,
                max_recipients: p.max_recipients,
                bare_newline: match p.bare_newline {
                    BareNewlineMode::Normalize => BareNewline::Normalize,
                    BareNewlineMode::Reject => BareNewline::Reject,
                },
                max_errors: p.max_errors,
            },
            max_message_size: p.max_message_size,
            greet_pause: p.greet_pause.0,
            greet_pause_exempt: nets(&p.greet_pause_exempt, "greet_pause_exempt")?,
            tls,
            upstream_tls: p.upstream_tls,
            upstream_tls_ca: p.upstream_tls_ca.clone(),
            forward_client: p.forward_client,
            auth: p.auth,
            client_lookup: p.client_lookup,
            scan: ScanConfig::from_raw(scan)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_domains_match_domains_subdomains_and_addresses() {
        let relay =
            RelayDomains::parse(&["Example.COM".into(), ".sub.example.net".into(), "pm@other.example".into()]).unwrap();
        assert!(relay.accepts("a@example.com") && relay.accepts("A@EXAMPLE.COM."));
        assert!(!relay.accepts("a@mail.example.com"));
        assert!(relay.accepts("a@x.sub.example.net") && !relay.accepts("a@sub.example.net"));
        assert!(relay.accepts("PM@other.example") && !relay.accepts("x@other.example"));
        assert!(!relay.accepts("postmaster") && !relay.accepts("a@evil-example.com"));
    }

    #[test]
    fn the_default_relays_for_nobody() {
        let config = ProxyConfig::from_raw(&RawProxy::default(), &RawScan::default(), "gw.example").unwrap();
        assert!(!config.enabled());
        assert!(config.relay.is_empty());
        assert!(!config.relay.accepts("user@outside.example"));
    }

    #[test]
    fn an_enabled_proxy_needs_an_upstream() {
        let raw = RawProxy { listen: vec!["127.0.0.1:2525".into()], ..RawProxy::default() };
        assert!(
            ProxyConfig::from_raw(&raw, &RawScan::default(), "h").unwrap_err().to_string().contains("proxy.upstream")
        );
        let raw = RawProxy { upstream: vec!["mx.internal:25".into()], ..raw };
        assert!(ProxyConfig::from_raw(&raw, &RawScan::default(), "h").unwrap().enabled());
    }
}
