//! Check adapters: the engine's sender checks wired to real DNS.
//!
//! [`build`] turns the validated `[dns]`/`[checks]` sections into the
//! engine's checks, in the order their retry identities are preferred:
//! SPF first, then reverse DNS; then HELO and the DNS lists. All the DNS
//! checks share one hickory resolver and its TTL cache.

pub mod resolver;
pub mod spf;

use std::sync::Arc;

use anyhow::Result;
use greygate_engine::Check;
use greygate_engine::checks::{DnsListCheck, HeloCheck, RdnsCheck, SpfCheck};
use greygate_engine::dns::Resolver;

use crate::config::checks::ChecksConfig;

/// The configured checks; none when every check is off.
pub fn build(config: &ChecksConfig) -> Result<Vec<Arc<dyn Check>>> {
    let mut checks: Vec<Arc<dyn Check>> = Vec::new();
    if config.uses_dns() {
        let inner = resolver::tokio_resolver(&config.dns)?;
        let dns: Arc<dyn Resolver> = Arc::new(resolver::HickoryResolver::new(inner.clone(), &config.dns));
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
