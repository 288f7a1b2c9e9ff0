//! The DNS lookups checks need, behind a small trait.
//!
//! The engine never opens a socket: the binary hands in a [`Resolver`]
//! (hickory, with its TTL cache and timeouts) and unit tests hand in a
//! table. An empty answer means NXDOMAIN or NODATA; an error means the
//! question could not be answered (timeout, SERVFAIL), which checks turn
//! into an "unknown" result with a configured consequence.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;

/// A lookup that got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS timeout")]
    Timeout,
    #[error("DNS failure: {0}")]
    Failure(String),
}

/// Records found; empty for NXDOMAIN and NODATA.
pub type Answer<T> = Result<Vec<T>, DnsError>;

/// Forward and reverse lookups. Names are given without a trailing dot.
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn ipv4(&self, name: &str) -> Answer<Ipv4Addr>;
    async fn ipv6(&self, name: &str) -> Answer<Ipv6Addr>;
    /// PTR names of `ip`, lowercase, without the trailing dot.
    async fn ptr(&self, ip: IpAddr) -> Answer<String>;
    /// TXT records, each one's strings joined.
    async fn txt(&self, name: &str) -> Answer<String>;
}

/// The address reversed for a DNS list query: `4.3.2.1` for 1.2.3.4, 32
/// nibbles for IPv6 (RFC 5782). IPv4-mapped IPv6 addresses count as IPv4.
pub fn reversed(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(63);
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s.pop();
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_names() {
        for (ip, want) in [
            ("192.0.2.1", "1.2.0.192"),
            ("::ffff:192.0.2.1", "1.2.0.192"),
            ("2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"),
        ] {
            assert_eq!(reversed(ip.parse().unwrap()), want, "{ip}");
        }
    }
}
