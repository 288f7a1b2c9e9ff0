//! Trusted networks, whitelists and blacklists, compiled for lookup.
//!
//! Entries come from the config file, from list files (postgrey's formats),
//! from the built-in whitelist and from the store (managed with the CLI).
//! [`ListsBuilder`] gathers them all and [`Lists`] answers, per message,
//! whether and why a client, sender or recipient is on a list. Every entry
//! keeps its [`Source`] so `explain` and the decision log can say which
//! line of which file decided.
//!
//! Matching uses hash probes (one per prefix length, per domain label)
//! plus one regex-set pass, so big lists cost little per message.

mod pattern;

use foldhash::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use greygate_store::{ListKind, ListTarget};
use regex::RegexSet;

pub use pattern::{AddressPattern, ClientPattern, PatternError};

use crate::network::NetSet;

/// Where a list entry came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file's `[lists]` section.
    Config,
    /// A list file, with the line number.
    File { path: Arc<str>, line: usize },
    /// greygate's built-in whitelist of big senders.
    Builtin { line: usize },
    /// The store (added with `greygate whitelist add` and friends).
    Store,
}

/// A list entry as written, and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub pattern: String,
    pub origin: Origin,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Config => write!(f, "{} (config)", self.pattern),
            Origin::File { path, line } => write!(f, "{} ({path}:{line})", self.pattern),
            Origin::Builtin { line } => write!(f, "{} (built-in whitelist:{line})", self.pattern),
            Origin::Store => write!(f, "{} (store)", self.pattern),
        }
    }
}

/// Regexes with the entries they came from; compiled into one set.
#[derive(Debug, Default)]
pub(crate) struct RegexList {
    bodies: Vec<String>,
    sources: Vec<Source>,
    set: Option<RegexSet>,
}

impl RegexList {
    fn push(&mut self, body: String, source: Source) {
        self.bodies.push(body);
        self.sources.push(source);
    }

    pub(crate) fn compile(&mut self) -> Result<(), PatternError> {
        if self.bodies.is_empty() {
            return Ok(());
        }
        let set = RegexSet::new(self.bodies.iter().map(|b| format!("(?i){b}")))
            .map_err(|e| PatternError::Regex(self.bodies.join(" | "), e.to_string()))?;
        self.set = Some(set);
        Ok(())
    }

    /// The first entry (in insertion order) that matches.
    fn find(&self, text: &str) -> Option<&Source> {
        let set = self.set.as_ref()?;
        set.matches(text).iter().next().map(|i| &self.sources[i])
    }
}

/// Client entries: networks, verified host names, host name regexes.
#[derive(Debug, Default)]
pub(crate) struct ClientList {
    nets: NetSet<Source>,
    hosts: HashMap<String, Source>,
    pub(crate) regexes: RegexList,
}

impl ClientList {
    pub(crate) fn add(&mut self, pattern: ClientPattern, source: Source) {
        match pattern {
            ClientPattern::Network(net) => self.nets.insert(net, source),
            ClientPattern::Host(h) => {
                self.hosts.entry(h).or_insert(source);
            }
            ClientPattern::Regex(body) => self.regexes.push(body, source),
        }
    }

    pub(crate) fn find(&self, ip: IpAddr, name: Option<&str>) -> Option<&Source> {
        if let Some((_, s)) = self.nets.lookup(ip) {
            return Some(s);
        }
        // Most lists have no names (a blacklist rarely does): skip the name.
        if self.hosts.is_empty() && self.regexes.sources.is_empty() {
            return None;
        }
        let name = crate::address::lowercase(name?.trim_end_matches('.'));
        suffixes(&name).find_map(|suffix| self.hosts.get(suffix)).or_else(|| self.regexes.find(&name))
    }

    fn len(&self) -> usize {
        self.nets.len() + self.hosts.len() + self.regexes.sources.len()
    }
}

/// Sender or recipient entries.
#[derive(Debug, Default)]
pub(crate) struct AddressList {
    addresses: HashMap<String, Source>,
    locals: HashMap<String, Source>,
    /// Domain → (source, whether subdomains match too).
    domains: HashMap<String, (Source, bool)>,
    pub(crate) regexes: RegexList,
    null: Option<Source>,
}

impl AddressList {
    pub(crate) fn add(&mut self, pattern: AddressPattern, source: Source) {
        match pattern {
            AddressPattern::Address { local, domain } => {
                self.addresses.entry(format!("{local}@{domain}")).or_insert(source);
            }
            AddressPattern::LocalPart(local) => {
                self.locals.entry(local).or_insert(source);
            }
            AddressPattern::Domain { name, subdomains } => {
                let slot = self.domains.entry(name).or_insert((source, subdomains));
                slot.1 |= subdomains;
            }
            AddressPattern::Regex(body) => self.regexes.push(body, source),
            AddressPattern::Null => {
                self.null.get_or_insert(source);
            }
        }
    }

    /// `addr` is the address as sent, without brackets; empty for `<>`.
    pub(crate) fn find(&self, addr: &str) -> Option<&Source> {
        if addr.is_empty() || addr == "<>" {
            return self.null.as_ref();
        }
        // Most lists are empty; asking them must cost nothing.
        if self.len() == 0 {
            return None;
        }
        let addr = crate::address::lowercase(addr);
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return self.regexes.find(&addr);
        };
        let base = local.split('+').next().unwrap_or(local);
        let base_address = || (base.len() != local.len()).then(|| format!("{base}@{domain}"));
        self.addresses
            .get(&*addr)
            .or_else(|| base_address().and_then(|a| self.addresses.get(&a)))
            .or_else(|| self.locals.get(local))
            .or_else(|| self.locals.get(base))
            .or_else(|| {
                suffixes(domain)
                    .enumerate()
                    .find_map(|(i, suffix)| self.domains.get(suffix).filter(|(_, sub)| i == 0 || *sub).map(|(s, _)| s))
            })
            .or_else(|| self.regexes.find(&addr))
    }

    fn len(&self) -> usize {
        self.addresses.len()
            + self.locals.len()
            + self.domains.len()
            + self.regexes.sources.len()
            + usize::from(self.null.is_some())
    }
}

/// `a.b.c`, `b.c`, `c`.
fn suffixes(name: &str) -> impl Iterator<Item = &str> {
    // A byte loop: names are short, and `split_once` sets up a searcher
    // for every label.
    std::iter::successors(Some(name), |s: &&str| s.bytes().position(|b| b == b'.').map(|i| &s[i + 1..]))
        .filter(|s| !s.is_empty())
}

#[derive(Debug, Default)]
struct TargetLists {
    clients: ClientList,
    senders: AddressList,
    recipients: AddressList,
}

impl TargetLists {
    fn find(&self, who: &Who<'_>) -> Option<(ListTarget, &Source)> {
        self.clients
            .find(who.ip, who.client_name)
            .map(|s| (ListTarget::Client, s))
            .or_else(|| who.sender.and_then(|a| self.senders.find(a)).map(|s| (ListTarget::Sender, s)))
            .or_else(|| who.recipient.and_then(|a| self.recipients.find(a)).map(|s| (ListTarget::Recipient, s)))
    }
}

/// What the lists are asked about.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub ip: IpAddr,
    /// Verified client name only.
    pub client_name: Option<&'a str>,
    /// Sender as sent (`""` for `<>`).
    pub sender: Option<&'a str>,
    pub recipient: Option<&'a str>,
}

/// All lists, compiled.
#[derive(Debug, Default)]
pub struct Lists {
    trusted: NetSet<Source>,
    whitelist: TargetLists,
    blacklist: TargetLists,
}

impl Lists {
    /// The trusted network entry containing `ip`.
    pub fn trusted(&self, ip: IpAddr) -> Option<&Source> {
        self.trusted.lookup(ip).map(|(_, s)| s)
    }

    pub fn whitelisted(&self, who: &Who<'_>) -> Option<(ListTarget, &Source)> {
        self.whitelist.find(who)
    }

    pub fn blacklisted(&self, who: &Who<'_>) -> Option<(ListTarget, &Source)> {
        self.blacklist.find(who)
    }

    /// Entry counts by list, for logs.
    pub fn counts(&self) -> [(&'static str, usize); 7] {
        [
            ("trusted", self.trusted.len()),
            ("whitelist/client", self.whitelist.clients.len()),
            ("whitelist/sender", self.whitelist.senders.len()),
            ("whitelist/recipient", self.whitelist.recipients.len()),
            ("blacklist/client", self.blacklist.clients.len()),
            ("blacklist/sender", self.blacklist.senders.len()),
            ("blacklist/recipient", self.blacklist.recipients.len()),
        ]
    }
}

/// A line of a list file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub error: PatternError,
}

/// Collects entries, then compiles them into [`Lists`].
#[derive(Debug, Default)]
pub struct ListsBuilder {
    lists: Lists,
}

impl ListsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one entry. Trusted entries must be networks.
    pub fn add(
        &mut self,
        kind: ListKind,
        target: ListTarget,
        pattern: &str,
        origin: Origin,
    ) -> Result<(), PatternError> {
        let source = Source { pattern: pattern.trim().to_owned(), origin };
        let lists = match kind {
            ListKind::Trust => {
                if target != ListTarget::Client {
                    return Err(PatternError::NotANetwork(pattern.into()));
                }
                let net = ClientPattern::parse_network(pattern)?;
                self.lists.trusted.insert(net, source);
                return Ok(());
            }
            ListKind::Whitelist => &mut self.lists.whitelist,
            ListKind::Blacklist => &mut self.lists.blacklist,
        };
        match target {
            ListTarget::Client => lists.clients.add(ClientPattern::parse(pattern)?, source),
            ListTarget::Sender => lists.senders.add(AddressPattern::parse(pattern)?, source),
            ListTarget::Recipient => lists.recipients.add(AddressPattern::parse(pattern)?, source),
        }
        Ok(())
    }

    /// Add every entry of a file in postgrey's format (one entry per line,
    /// `#` comments). Unusable lines are skipped and returned, so one bad
    /// line in a third-party file does not take the lists down.
    pub fn add_file(
        &mut self,
        kind: ListKind,
        target: ListTarget,
        text: &str,
        origin: impl Fn(usize) -> Origin,
    ) -> Vec<Skipped> {
        let mut skipped = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Err(error) = self.add(kind, target, line, origin(index + 1)) {
                skipped.push(Skipped { line: index + 1, error });
            }
        }
        skipped
    }

    pub fn build(mut self) -> Result<Lists, PatternError> {
        for lists in [&mut self.lists.whitelist, &mut self.lists.blacklist] {
            lists.clients.regexes.compile()?;
            lists.senders.regexes.compile()?;
            lists.recipients.regexes.compile()?;
        }
        Ok(self.lists)
    }
}

#[cfg(test)]
mod tests;
