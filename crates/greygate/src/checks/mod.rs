//! Check adapters: the engine's sender checks wired to real DNS.
//!
//! [`build`] turns the validated `[dns]`/`[checks]` sections into the
//! engine's checks, in the order their retry identities are preferred:
//! SPF first, then reverse DNS; then HELO and the DNS lists. All the DNS
//! checks, and the SMTP proxy's client name lookups, share one hickory
//! resolver and its TTL cache ([`Dns`]).

pub mod resolver;
pub mod spf;

use std::sync::{Arc, OnceLock};

use anyhow::{Result, anyhow};
use greygate_engine::Check;
use greygate_engine::checks::{DnsListCheck, HeloCheck, RdnsCheck, SpfCheck};
use greygate_engine::dns::Resolver;
use hickory_resolver::TokioResolver;

use self::resolver::HickoryResolver;
use crate::config::checks::{ChecksConfig, DnsConfig};

/// The resolver `[dns]` describes, built when first asked for, so a config
/// that needs no DNS builds none and one that does builds one.
pub struct Dns {
    config: DnsConfig,
    built: OnceLock<Result<(TokioResolver, Arc<HickoryResolver>), String>>,
}

impl Dns {
    pub fn new(config: &DnsConfig) -> Dns {
        Dns { config: config.clone(), built: OnceLock::new() }
    }

    /// The hickory resolver (for mail-auth) and the engine's resolver over it.
    pub fn get(&self) -> Result<&(TokioResolver, Arc<HickoryResolver>)> {
        self.built
            .get_or_init(|| {
                let inner = resolver::tokio_resolver(&self.config).map_err(|e| format!("{e:#}"))?;
                let dns = Arc::new(HickoryResolver::new(inner.clone(), &self.config));
                Ok((inner, dns))
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }
}

/// The configured checks; none when every check is off.
pub fn build(config: &ChecksConfig, shared: &Dns) -> Result<Vec<Arc<dyn Check>>> {
    let mut checks: Vec<Arc<dyn Check>> = Vec::new();
    if config.uses_dns() {
        let (inner, hickory) = shared.get()?;
        let inner = inner.clone();
        let dns: Arc<dyn Resolver> = hickory.clone();
        if let Some((policy, timeout)) = &config.spf {
            let verifier = spf::MailAuthSpf::new(inner, policy.hostname.clone(), *timeout);
            checks.push(Arc::new(SpfCheck::new(Arc::new(verifier), policy.clone())));
        }
        if let Some(scores) = &config.rdns {
            checks.push(Arc::new(RdnsCheck::new(dns.clone(), scores.clone(), config.dns.on_failure.clone())));
        }
        for zone in &config.lists {
            checks.push(Arc::new(DnsListCheck::new(zone.clone(), dns.clone(), config.dns.on_failure.clone())));
        }
    }
    if let Some(scores) = &config.helo {
        checks.push(Arc::new(HeloCheck::new(scores.clone())));
    }
    Ok(checks)
}

#[cfg(test)]
mod tests;
