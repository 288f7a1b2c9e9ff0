//! The config file as written: serde structs with every default filled in.
//!
//! Unknown keys are errors (`deny_unknown_fields`), so a typo such as
//! `dealy = "5m"` stops the start instead of silently using the default.
//! `greygate check-config` prints these structs back, defaults included.
//! Validation into the runtime form happens in the parent module.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::duration::Human;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub store: RawStore,
    pub greylist: RawGreylist,
    pub lists: RawLists,
    pub replies: RawReplies,
    pub policy: RawPolicy,
    pub proxy: super::proxy::RawProxy,
    /// Content scanning in the proxy (clamd, spamd).
    pub scan: super::scan::RawScan,
    pub qmail: super::qmail::RawQmail,
    pub log: RawLog,
    pub server: RawServer,
    /// The resolver the sender checks use.
    pub dns: super::checks::RawDns,
    /// Sender checks: SPF, DNS lists, reverse DNS, HELO; score thresholds.
    pub checks: super::checks::RawChecks,
    /// Overrides per client, sender or recipient (`[[rule]]` tables).
    #[serde(rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One file, no server (the default).
    Sqlite,
    /// In memory only: everything is lost on restart. For trials and tests.
    Memory,
    /// Redis (single node, Cluster or Sentinel), shared by several gateways:
    /// `[store.redis]`.
    Redis,
    /// PostgreSQL, shared by several gateways: `[store.postgres]`.
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Committed decisions survive a crash of greygate.
    Normal,
    /// Committed decisions also survive a power loss (one fsync per group
    /// commit).
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Accept the mail without greylisting (logged and counted).
    Open,
    /// Defer the mail with `replies.store_failure` (logged and counted).
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub backend: Backend,
    /// SQLite file; relative paths are relative to the working directory.
    /// Its directory is created if missing.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// What to do with mail when the store fails or times out.
    pub fail_mode: FailMode,
    /// Longest wait for one store decision before the fail mode applies.
    pub timeout: Human,
    /// How often expired entries are purged (in small batches that never
    /// block decisions for long).
    pub expire_interval: Human,
    /// How often the store is checked for list changes made with the CLI.
    pub lists_refresh: Human,
    /// Settings for `backend = "postgres"`.
    pub postgres: super::backends::RawPostgres,
    /// Settings for `backend = "redis"`.
    pub redis: super::backends::RawRedis,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            backend: Backend::Sqlite,
            path: PathBuf::from("greygate.db"),
            synchronous: Synchronous::Normal,
            fail_mode: FailMode::Open,
            timeout: Human::secs(5),
            expire_interval: Human::secs(60),
            lists_refresh: Human::secs(2),
            postgres: Default::default(),
            redis: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGreylist {
    /// Greylist at all (rules can switch it per client, sender, recipient).
    pub enabled: bool,
    /// A retry is accepted this long after the first attempt.
    pub delay: Human,
    /// A retry later than this after the first attempt starts over.
    pub retry_window: Human,
    /// A passed triplet stays passed this long after it was last seen.
    pub pass_lifetime: Human,
    /// Successful retries (counted at most once an hour) after which a
    /// client address skips greylisting; 0 turns this off.
    pub auto_whitelist_after: u32,
    /// Decide and record, but never defer or reject.
    pub learning: bool,
    /// Client network prefix in the key, IPv4 (32 = exact address).
    pub ipv4_prefix: u8,
    /// Client network prefix in the key, IPv6 (128 = exact address).
    pub ipv6_prefix: u8,
    /// Header added on the first accepted retry; "" adds none.
    /// Placeholders: {delayed} {version} {host} {date} and the reply ones.
    pub header: String,
    /// Name used in the header; the system host name when empty.
    pub hostname: String,
}

impl Default for RawGreylist {
    fn default() -> Self {
        RawGreylist {
            enabled: true,
            delay: Human::secs(300),
            retry_window: Human::secs(2 * 86400),
            pass_lifetime: Human::secs(36 * 86400),
            auto_whitelist_after: 5,
            learning: false,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            header: "X-Greylist: delayed {delayed} seconds by greygate-{version} at {host}; {date}".into(),
            hostname: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLists {
    /// Networks whose clients skip every check.
    pub trusted_networks: Vec<String>,
    /// Use greygate's built-in whitelist of big senders that retry from
    /// address pools.
    pub builtin_whitelist: bool,
    /// Entries: address/CIDR, host name suffix or /regex/ (postgrey's
    /// whitelist_clients format).
    pub whitelist_clients: Vec<String>,
    pub whitelist_clients_files: Vec<PathBuf>,
    /// Entries: user@domain, user@, domain, @domain, /regex/, <>.
    pub whitelist_senders: Vec<String>,
    pub whitelist_senders_files: Vec<PathBuf>,
    pub whitelist_recipients: Vec<String>,
    pub whitelist_recipients_files: Vec<PathBuf>,
    pub blacklist_clients: Vec<String>,
    pub blacklist_clients_files: Vec<PathBuf>,
    pub blacklist_senders: Vec<String>,
    pub blacklist_senders_files: Vec<PathBuf>,
    pub blacklist_recipients: Vec<String>,
    pub blacklist_recipients_files: Vec<PathBuf>,
}

impl Default for RawLists {
    fn default() -> Self {
        RawLists {
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            builtin_whitelist: true,
            whitelist_clients: Vec::new(),
            whitelist_clients_files: Vec::new(),
            whitelist_senders: Vec::new(),
            whitelist_senders_files: Vec::new(),
            // RFC 2142 role addresses must always be reachable.
            whitelist_recipients: vec!["postmaster@".into(), "abuse@".into()],
            whitelist_recipients_files: Vec::new(),
            blacklist_clients: Vec::new(),
            blacklist_clients_files: Vec::new(),
            blacklist_senders: Vec::new(),
            blacklist_senders_files: Vec::new(),
            blacklist_recipients: Vec::new(),
            blacklist_recipients_files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReplies {
    /// Deferral of a greylisted message: a 4xx code, optional enhanced
    /// status, text. Placeholders: {remaining} {delay} {recipient}
    /// {recipient_domain} {sender} {client} {host}.
    pub greylist: String,
    /// Rejection of a blacklisted message: a 5xx reply.
    pub blacklist: String,
    /// Deferral when the store fails and `store.fail_mode = "closed"`.
    pub store_failure: String,
}

impl Default for RawReplies {
    fn default() -> Self {
        RawReplies {
            greylist:
                "451 4.7.1 Greylisted: first attempts from new senders are delayed, please retry in {remaining} seconds"
                    .into(),
            blacklist: "554 5.7.1 Rejected by local policy".into(),
            store_failure: "451 4.3.0 Temporary local problem, please try again later".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeferAction {
    /// `DEFER_IF_PERMIT <status> <text>`: Postfix answers 450 unless a
    /// later restriction rejects (the classic greylisting action).
    DeferIfPermit,
    /// `DEFER <status> <text>`: Postfix answers 450.
    Defer,
    /// The configured reply as it is, code included (`451 4.7.1 ...`).
    Reply,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    /// Postfix policy listeners: `host:port` or `unix:/path`. Empty
    /// disables the policy server.
    pub listen: Vec<String>,
    pub defer_action: DeferAction,
    /// Simultaneous client connections; more are closed at once.
    pub max_connections: usize,
    /// A connection idle this long is closed (Postfix itself closes idle
    /// policy connections after 300 s).
    pub idle_timeout: Human,
    /// Permissions of unix sockets, octal.
    pub socket_mode: String,
    /// Longest accepted request line, bytes.
    pub max_line: usize,
    /// Largest accepted request, bytes.
    pub max_request: usize,
}

impl Default for RawPolicy {
    fn default() -> Self {
        RawPolicy {
            listen: vec!["127.0.0.1:10023".into()],
            defer_action: DeferAction::DeferIfPermit,
            max_connections: 1000,
            idle_timeout: Human::secs(600),
            socket_mode: "0666".into(),
            max_line: 8192,
            max_request: 65536,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `error`, `warn`, `info` (one line per decision), `debug`, `trace`,
    /// or a tracing filter directive.
    pub level: String,
    pub format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { level: "info".into(), format: LogFormat::Text }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Threads that serve connections. 0 (the default) means one per CPU
    /// core less one, at least one: the SQLite store writes on a thread of
    /// its own, and on a small machine the MTA needs a core too.
    pub threads: usize,
}

/// One `[[rule]]`: selectors (all given ones must match) and overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRule {
    /// Shown in logs and `explain`; defaults to `rule N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Address, CIDR network, host name suffix or /regex/.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// user@domain, user@, domain, @domain, /regex/ or <>.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greylist: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Human>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_window: Option<Human>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_lifetime: Option<Human>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_whitelist_after: Option<u32>,
}
