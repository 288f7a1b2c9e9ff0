//! The engine's [`Resolver`] over hickory: UDP with TCP on truncation, a
//! TTL cache (negative answers kept for the SOA minimum), per-query
//! timeouts. One resolver (and cache) is shared by SPF (mail-auth) and
//! the other checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use greygate_engine::dns::{Answer, DnsError, Resolver};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::config::checks::DnsConfig;

/// Build the hickory resolver `[dns]` describes.
pub fn tokio_resolver(config: &DnsConfig) -> Result<TokioResolver> {
    let (resolver_config, mut opts) = if config.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().context("cannot read the system resolver configuration")?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        (ResolverConfig::from_parts(None, Vec::new(), servers), ResolverOpts::default())
    };
    opts.timeout = config.timeout;
    opts.attempts = config.attempts;
    opts.cache_size = config.cache_size;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .context("cannot build the DNS resolver")
}

/// The engine's resolver trait over a hickory resolver.
pub struct HickoryResolver {
    inner: TokioResolver,
    /// Bound on one lookup, retries included.
    limit: Duration,
}

impl HickoryResolver {
    pub fn new(inner: TokioResolver, config: &DnsConfig) -> HickoryResolver {
        let tries = u32::try_from(config.attempts.max(1)).unwrap_or(u32::MAX);
        let servers = u32::try_from(config.nameservers.len().max(1)).unwrap_or(u32::MAX);
        HickoryResolver { inner, limit: config.timeout.saturating_mul(tries.saturating_mul(servers)) + config.timeout }
    }

    /// The bound on one lookup, retries included.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    async fn lookup<T>(
        &self,
        query: impl Future<Output = Result<Lookup, NetError>>,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Answer<T> {
        match tokio::time::timeout(self.limit, query).await {
            Err(_) => Err(DnsError::Timeout),
            Ok(Ok(lookup)) => Ok(lookup.answers().iter().filter_map(|r| pick(&r.data)).collect()),
            Ok(Err(e)) if e.is_no_records_found() => Ok(Vec::new()),
            Ok(Err(NetError::Timeout)) => Err(DnsError::Timeout),
            Ok(Err(e)) => Err(DnsError::Failure(e.to_string())),
        }
    }
}

/// `name` as a fully qualified name (no search list, no ndots guessing).
fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_owned() } else { format!("{name}.") }
}

fn host(name: &hickory_resolver::proto::rr::Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

#[async_trait]
impl Resolver for HickoryResolver {
    async fn ipv4(&self, name: &str) -> Answer<Ipv4Addr> {
        self.lookup(self.inner.ipv4_lookup(fqdn(name)), |d| if let RData::A(a) = d { Some(a.0) } else { None }).await
    }

    async fn ipv6(&self, name: &str) -> Answer<Ipv6Addr> {
        self.lookup(self.inner.ipv6_lookup(fqdn(name)), |d| if let RData::AAAA(a) = d { Some(a.0) } else { None }).await
    }

    async fn ptr(&self, ip: IpAddr) -> Answer<String> {
        self.lookup(self.inner.reverse_lookup(ip), |d| if let RData::PTR(p) = d { Some(host(&p.0)) } else { None })
            .await
    }

    async fn txt(&self, name: &str) -> Answer<String> {
        self.lookup(self.inner.txt_lookup(fqdn(name)), |d| {
            if let RData::TXT(t) = d {
                Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect::<String>())
            } else {
                None
            }
        })
        .await
    }
}
