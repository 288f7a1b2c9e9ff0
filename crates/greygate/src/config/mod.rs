//! Configuration: one TOML file, validated into what the server runs on.
//!
//! [`raw`] is the file as written (with defaults); [`Config`] is the
//! validated form. Reading list files and building the engine's
//! [`Policy`] happens in [`Config::policy`], which SIGHUP calls again, so
//! file lists reload with the config. Nothing here reads the environment.

pub mod backends;
pub mod checks;
pub mod duration;
pub mod proxy;
pub mod qmail;
pub mod raw;
pub mod scan;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use greygate_engine::lists::{ListsBuilder, Origin};
use greygate_engine::network::NetworkKeying;
use greygate_engine::template::{ReplyClass, ReplyTemplate, Template};
use greygate_engine::{Overrides, Policy, RuleSpec, Rules, Settings, StaticEntry};
use greygate_proto::policy::Limits;
use greygate_store::{ListKind, ListTarget, Timers};

pub use proxy::ProxyConfig;
pub use qmail::QmailConfig;
pub use raw::{Backend, DeferAction, FailMode, LogFormat, RawConfig, Synchronous};

/// greygate's built-in whitelist of big senders that retry from pools.
pub const BUILTIN_WHITELIST: &str = include_str!("../../../../data/whitelist_clients");

/// A listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(s: &str) -> Result<ListenAddr> {
        if let Some(path) = s.strip_prefix("unix:") {
            ensure!(path.starts_with('/'), "unix socket path must be absolute: {s:?}");
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse()
            .map(ListenAddr::Tcp)
            .with_context(|| format!("invalid listen address {s:?}; expected host:port, [v6]:port or unix:/path"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The Postfix policy front end's settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub listen: Vec<ListenAddr>,
    pub defer_action: DeferAction,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub socket_mode: u32,
    pub limits: Limits,
}

/// The store's settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub timeout: Duration,
    pub expire_interval: Duration,
    pub lists_refresh: Duration,
    /// Validated `[store.postgres]`, when that is the backend.
    pub postgres: Option<greygate_store::postgres::PostgresOptions>,
    /// Validated `[store.redis]`, when that is the backend.
    pub redis: Option<greygate_store::redis::RedisOptions>,
}

impl StoreConfig {
    /// Where the state is kept, for the log: the SQLite file, or the
    /// shared store's namespace (never a URL, which may hold a password).
    pub fn location(&self) -> String {
        match (self.backend, &self.redis, &self.postgres) {
            (Backend::Redis, Some(r), _) => format!("redis prefix {}", r.prefix),
            (Backend::Postgres, _, Some(p)) => format!("postgres schema {}", p.schema),
            (Backend::Memory, _, _) => "memory (lost on restart)".to_owned(),
            _ => self.path.display().to_string(),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the built-in default.
    pub file: Option<PathBuf>,
    pub raw: RawConfig,
    pub store: StoreConfig,
    pub policy: PolicyConfig,
    pub proxy: ProxyConfig,
    pub qmail: QmailConfig,
}

fn host_or_system(configured: &str) -> String {
    if configured.is_empty() {
        gethostname::gethostname().to_string_lossy().into_owned()
    } else {
        configured.to_owned()
    }
}

impl Config {
    /// Read and parse `file` (not yet validated), or the built-in default
    /// when `None`.
    pub fn read_raw(file: Option<&Path>) -> Result<RawConfig> {
        let Some(path) = file else {
            return Ok(RawConfig::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Load `file`, or the built-in default when `None`.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let config = Config::from_raw(Config::read_raw(file)?, file.map(Path::to_path_buf))?;
        // Build the policy once now so list files and patterns are checked
        // at start-up, not at the first message.
        config.policy()?;
        Ok(config)
    }

    /// Threads serving connections: `server.threads`, or one per core less
    /// one (at least one) when 0.
    pub fn threads(&self) -> usize {
        match self.raw.server.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
            n => n,
        }
    }

    pub fn from_raw(raw: RawConfig, file: Option<PathBuf>) -> Result<Config> {
        let g = &raw.greylist;
        ensure!(g.ipv4_prefix <= 32, "greylist.ipv4_prefix must be 0..=32, got {}", g.ipv4_prefix);
        ensure!(g.ipv6_prefix <= 128, "greylist.ipv6_prefix must be 0..=128, got {}", g.ipv6_prefix);
        check_timers("greylist", g.delay.0, g.retry_window.0, g.pass_lifetime.0)?;
        let s = &raw.store;
        ensure!(!s.timeout.0.is_zero(), "store.timeout must be more than zero");
        ensure!(!s.expire_interval.0.is_zero(), "store.expire_interval must be more than zero");
        ensure!(!s.lists_refresh.0.is_zero(), "store.lists_refresh must be more than zero");
        if s.backend == Backend::Sqlite {
            ensure!(!s.path.as_os_str().is_empty(), "store.path must not be empty");
        }
        let p = &raw.policy;
        let listen = p.listen.iter().map(|l| ListenAddr::parse(l)).collect::<Result<Vec<_>>>()?;
        ensure!(p.max_connections > 0, "policy.max_connections must be at least 1");
        ensure!(!p.idle_timeout.0.is_zero(), "policy.idle_timeout must be more than zero");
        ensure!(p.max_line >= 512, "policy.max_line must be at least 512");
        ensure!(p.max_request >= p.max_line, "policy.max_request must be at least policy.max_line");
        let socket_mode =
            u32::from_str_radix(p.socket_mode.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o777).with_context(
                || format!("policy.socket_mode must be octal permissions like \"0660\", got {:?}", p.socket_mode),
            )?;
        for rule in &raw.rules {
            if let (Some(d), Some(w)) = (rule.delay, rule.retry_window) {
                ensure!(d < w, "rule {:?}: delay must be shorter than retry_window", rule.name);
            }
        }
        let proxy = ProxyConfig::from_raw(&raw.proxy, &raw.scan, &host_or_system(&raw.greylist.hostname))?;
        checks::ChecksConfig::from_raw(&raw.dns, &raw.checks, &host_or_system(&raw.greylist.hostname))?;
        checks::scoring(&raw.checks)?;
        let qmail = QmailConfig::from_raw(&raw.qmail)?;
        Ok(Config {
            file,
            proxy,
            qmail,
            store: StoreConfig {
                backend: s.backend,
                path: s.path.clone(),
                synchronous: s.synchronous,
                timeout: s.timeout.0,
                expire_interval: s.expire_interval.0,
                lists_refresh: s.lists_refresh.0,
                postgres: (s.backend == Backend::Postgres).then(|| s.postgres.options()).transpose()?,
                redis: (s.backend == Backend::Redis).then(|| s.redis.options()).transpose()?,
            },
            policy: PolicyConfig {
                listen,
                defer_action: p.defer_action,
                max_connections: p.max_connections,
                idle_timeout: p.idle_timeout.0,
                socket_mode,
                limits: Limits {
                    max_line: p.max_line,
                    max_request: p.max_request,
                    max_attributes: Limits::default().max_attributes,
                },
            },
            raw,
        })
    }

    /// The effective configuration as TOML, defaults included.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.raw).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Build the engine policy: settings, rules, replies, and every static
    /// list entry (config, files, built-in). Reads the list files.
    pub fn policy(&self) -> Result<Policy> {
        let raw = &self.raw;
        let g = &raw.greylist;
        let defaults = Settings {
            greylist: g.enabled,
            learning: g.learning,
            timers: Timers {
                delay: g.delay.as_secs_i64(),
                retry_window: g.retry_window.as_secs_i64(),
                pass_lifetime: g.pass_lifetime.as_secs_i64(),
            },
            auto_whitelist_after: g.auto_whitelist_after,
        };
        let specs: Vec<RuleSpec> = raw
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| RuleSpec {
                name: r.name.clone().unwrap_or_else(|| format!("rule {}", i + 1)),
                client: r.client.clone(),
                sender: r.sender.clone(),
                recipient: r.recipient.clone(),
                overrides: Overrides {
                    greylist: r.greylist,
                    learning: r.learning,
                    delay: r.delay.map(|d| d.as_secs_i64()),
                    retry_window: r.retry_window.map(|d| d.as_secs_i64()),
                    pass_lifetime: r.pass_lifetime.map(|d| d.as_secs_i64()),
                    auto_whitelist_after: r.auto_whitelist_after,
                },
            })
            .collect();
        let rules = Rules::new(&specs)?;
        let reply = |name: &str, text: &str, class| {
            ReplyTemplate::parse(text, class).with_context(|| format!("replies.{name}"))
        };
        let header = if g.header.trim().is_empty() {
            None
        } else {
            let t = Template::parse(&g.header).context("greylist.header")?;
            ensure!(
                g.header.split_once(':').is_some_and(|(name, _)| !name.is_empty() && !name.contains(' ')),
                "greylist.header must look like \"Name: value\""
            );
            Some(t)
        };
        let hostname = self.hostname();
        Ok(Policy {
            defaults,
            rules,
            keying: NetworkKeying { ipv4_prefix: g.ipv4_prefix, ipv6_prefix: g.ipv6_prefix },
            static_lists: self.static_lists()?,
            greylist_reply: reply("greylist", &raw.replies.greylist, ReplyClass::Temporary)?,
            blacklist_reply: reply("blacklist", &raw.replies.blacklist, ReplyClass::Permanent)?,
            store_failure_reply: reply("store_failure", &raw.replies.store_failure, ReplyClass::Temporary)?,
            header,
            hostname,
            fail_open: raw.store.fail_mode == FailMode::Open,
            scoring: checks::scoring(&raw.checks)?,
        })
    }

    /// The validated `[dns]` and `[checks]` sections.
    pub fn checks(&self) -> Result<checks::ChecksConfig> {
        checks::ChecksConfig::from_raw(&self.raw.dns, &self.raw.checks, &self.hostname())
    }

    /// `greylist.hostname`, or the system's host name when empty.
    pub fn hostname(&self) -> String {
        host_or_system(&self.raw.greylist.hostname)
    }

    /// Every list entry from the config, the list files and the built-in
    /// whitelist, validated. A bad entry in the config is an error; a bad
    /// line in a file is logged and skipped (postgrey does the same).
    fn static_lists(&self) -> Result<Vec<StaticEntry>> {
        use ListKind::*;
        use ListTarget::*;
        let l = &self.raw.lists;
        let mut out = Vec::new();
        let mut check = ListsBuilder::new();
        let inline: [(ListKind, ListTarget, &str, &Vec<String>); 7] = [
            (Trust, Client, "trusted_networks", &l.trusted_networks),
            (Whitelist, Client, "whitelist_clients", &l.whitelist_clients),
            (Whitelist, Sender, "whitelist_senders", &l.whitelist_senders),
            (Whitelist, Recipient, "whitelist_recipients", &l.whitelist_recipients),
            (Blacklist, Client, "blacklist_clients", &l.blacklist_clients),
            (Blacklist, Sender, "blacklist_senders", &l.blacklist_senders),
            (Blacklist, Recipient, "blacklist_recipients", &l.blacklist_recipients),
        ];
        for (kind, target, key, entries) in inline {
            for pattern in entries {
                check.add(kind, target, pattern, Origin::Config).with_context(|| format!("lists.{key}"))?;
                out.push(StaticEntry { kind, target, pattern: pattern.clone(), origin: Origin::Config });
            }
        }
        let files: [(ListKind, ListTarget, &Vec<PathBuf>); 6] = [
            (Whitelist, Client, &l.whitelist_clients_files),
            (Whitelist, Sender, &l.whitelist_senders_files),
            (Whitelist, Recipient, &l.whitelist_recipients_files),
            (Blacklist, Client, &l.blacklist_clients_files),
            (Blacklist, Sender, &l.blacklist_senders_files),
            (Blacklist, Recipient, &l.blacklist_recipients_files),
        ];
        for (kind, target, paths) in files {
            for path in paths {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read list file {}", path.display()))?;
                let name: std::sync::Arc<str> = path.display().to_string().into();
                out.extend(file_entries(kind, target, &text, |line| Origin::File { path: name.clone(), line }));
            }
        }
        if l.builtin_whitelist {
            let entries = file_entries(Whitelist, Client, BUILTIN_WHITELIST, |line| Origin::Builtin { line });
            out.extend(entries);
        }
        Ok(out)
    }
}

/// The usable entries of a list file; unusable lines are logged.
fn file_entries(kind: ListKind, target: ListTarget, text: &str, origin: impl Fn(usize) -> Origin) -> Vec<StaticEntry> {
    let mut out = Vec::new();
    let mut check = ListsBuilder::new();
    for (index, raw) in text.lines().enumerate() {
        let pattern = raw.split('#').next().unwrap_or("").trim();
        if pattern.is_empty() {
            continue;
        }
        let origin = origin(index + 1);
        match check.add(kind, target, pattern, origin.clone()) {
            Ok(()) => out.push(StaticEntry { kind, target, pattern: pattern.to_owned(), origin }),
            Err(error) => {
                let place = greygate_engine::lists::Source { pattern: pattern.to_owned(), origin };
                tracing::warn!(%place, %error, "skipping unusable list file line");
            }
        }
    }
    out
}

fn check_timers(section: &str, delay: Duration, window: Duration, lifetime: Duration) -> Result<()> {
    if delay >= window {
        bail!(
            "{section}.delay ({}) must be shorter than {section}.retry_window ({})",
            duration::Human(delay),
            duration::Human(window)
        );
    }
    ensure!(!lifetime.is_zero(), "{section}.pass_lifetime must be more than zero");
    Ok(())
}

#[cfg(test)]
mod tests;
