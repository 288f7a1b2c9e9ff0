//! Client addresses: the network part of the greylisting key, and fast
//! membership tests for CIDR lists.

use foldhash::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// How a client address becomes the client part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkKeying {
    /// IPv4 prefix length, 0..=32 (24 by default; 32 is exact-IP mode).
    pub ipv4_prefix: u8,
    /// IPv6 prefix length, 0..=128 (64 by default; 128 is exact-IP mode).
    pub ipv6_prefix: u8,
}

impl Default for NetworkKeying {
    fn default() -> Self {
        NetworkKeying { ipv4_prefix: 24, ipv6_prefix: 64 }
    }
}

impl NetworkKeying {
    pub const EXACT: NetworkKeying = NetworkKeying { ipv4_prefix: 32, ipv6_prefix: 128 };

    /// `192.0.2.0/24`, `2001:db8:1:2::/64`, or the bare address when the
    /// prefix covers all of it. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn key(&self, ip: IpAddr) -> String {
        // The network's address, its prefix, and the prefix that is the
        // whole address (written bare).
        let (network, prefix, whole): (IpAddr, u8, u8) = match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let prefix = self.ipv4_prefix.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                (Ipv4Addr::from(u32::from(v4) & mask).into(), prefix, 32)
            }
            IpAddr::V6(v6) => {
                let prefix = self.ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                (Ipv6Addr::from(u128::from(v6) & mask).into(), prefix, 128)
            }
        };
        let mut out = String::with_capacity(24);
        push_ip(&mut out, network);
        if prefix < whole {
            out.push('/');
            push_decimal(&mut out, prefix);
        }
        out
    }
}

/// Append an address in its usual text form (the same as its `Display`).
/// Written out by hand, without the formatting machinery, because it runs
/// for every decision (keys, auto-whitelist records, the log line):
/// std's IPv6 `Display` costs several thousand instructions.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_ipv4(out, v4),
        IpAddr::V6(v6) => push_ipv6(out, v6),
    }
}

/// RFC 5952 text: lower-case hex without leading zeros, the longest run
/// of two or more zero groups (the first, on a tie) as `::`, and
/// IPv4-mapped addresses as `::ffff:a.b.c.d`.
fn push_ipv6(out: &mut String, ip: Ipv6Addr) {
    if let Some(v4) = ip.to_ipv4_mapped() {
        out.push_str("::ffff:");
        return push_ipv4(out, v4);
    }
    let groups = ip.segments();
    // The longest run of zero groups: (start, length).
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, &g) in groups.iter().enumerate() {
        if g != 0 {
            continue;
        }
        run = if run.1 > 0 && run.0 + run.1 == i { (run.0, run.1 + 1) } else { (i, 1) };
        if run.1 > best.1 {
            best = run;
        }
    }
    let (zeros, zeros_end) = if best.1 >= 2 { (best.0, best.0 + best.1) } else { (8, 8) };
    let mut i = 0;
    while i < 8 {
        if i == zeros {
            out.push_str("::");
            i = zeros_end;
            continue;
        }
        if i > 0 && i != zeros_end {
            out.push(':');
        }
        push_hex(out, groups[i]);
        i += 1;
    }
}

fn push_hex(out: &mut String, n: u16) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12, 8, 4, 0] {
        let digit = (n >> shift) & 0xf;
        if digit != 0 || started || shift == 0 {
            out.push(char::from(DIGITS[usize::from(digit)]));
            started = true;
        }
    }
}

fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, octet);
    }
}

fn push_decimal(out: &mut String, n: u8) {
    if n >= 100 {
        out.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        out.push(char::from(b'0' + n / 10 % 10));
    }
    out.push(char::from(b'0' + n % 10));
}

/// A set of networks, each carrying a value (where the entry came from).
///
/// Lookup is one hash probe per distinct prefix length in the set, so it
/// stays cheap with thousands of entries.
#[derive(Debug, Clone)]
pub struct NetSet<T> {
    /// (prefix length, networks of that length), longest prefix first.
    by_len: Vec<(u8, bool, HashMap<IpNet, T>)>,
}

impl<T> Default for NetSet<T> {
    fn default() -> Self {
        NetSet { by_len: Vec::new() }
    }
}

impl<T> NetSet<T> {
    /// Add a network; a repeated network keeps its first value.
    pub fn insert(&mut self, net: IpNet, value: T) {
        let net = canonical_net(net).trunc();
        let v4 = matches!(net, IpNet::V4(_));
        let len = net.prefix_len();
        let slot = match self.by_len.iter().position(|(l, is_v4, _)| *l == len && *is_v4 == v4) {
            Some(i) => i,
            None => {
                self.by_len.push((len, v4, HashMap::default()));
                self.by_len.sort_by_key(|b| std::cmp::Reverse(b.0));
                self.by_len.iter().position(|(l, is_v4, _)| *l == len && *is_v4 == v4).expect("just added")
            }
        };
        self.by_len[slot].2.entry(net).or_insert(value);
    }

    /// The most specific network containing `ip`, with its value.
    pub fn lookup(&self, ip: IpAddr) -> Option<(IpNet, &T)> {
        let ip = ip.to_canonical();
        let v4 = ip.is_ipv4();
        self.by_len.iter().filter(|(_, is_v4, _)| *is_v4 == v4).find_map(|(len, _, nets)| {
            let net = IpNet::new(ip, *len).ok()?.trunc();
            nets.get(&net).map(|v| (net, v))
        })
    }

    pub fn len(&self) -> usize {
        self.by_len.iter().map(|(_, _, m)| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:192.0.2.0/120`) as IPv4.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written text forms must be byte for byte what std (and
    /// ipnet) write: keys already stored were written with those.
    #[test]
    fn addresses_and_keys_are_written_exactly_as_display_writes_them() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..100_000 {
            // Groups are often zero, so every shape of zero run comes up.
            let r = next();
            let groups: [u16; 8] = std::array::from_fn(|i| match (r >> (2 * i)) & 3 {
                0 | 1 => 0,
                2 => (next() & 0xf) as u16,
                _ => next() as u16,
            });
            let v6 = Ipv6Addr::from(groups);
            let mut ours = String::new();
            push_ip(&mut ours, v6.into());
            assert_eq!(ours, v6.to_string());
            let mapped = Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, groups[6], groups[7]]);
            ours.clear();
            push_ip(&mut ours, mapped.into());
            assert_eq!(ours, mapped.to_string());
            let v4 = Ipv4Addr::from(next() as u32);
            ours.clear();
            push_ip(&mut ours, v4.into());
            assert_eq!(ours, v4.to_string());

            let keying = NetworkKeying { ipv4_prefix: (next() % 33) as u8, ipv6_prefix: (next() % 129) as u8 };
            let want = |ip: IpAddr, prefix: u8| match IpNet::new(ip, prefix) {
                Ok(net) if prefix < net.max_prefix_len() => net.trunc().to_string(),
                _ => ip.to_string(),
            };
            assert_eq!(keying.key(v6.into()), want(v6.into(), keying.ipv6_prefix), "{v6}");
            assert_eq!(keying.key(v4.into()), want(v4.into(), keying.ipv4_prefix), "{v4}");
        }
    }

    #[test]
    fn keys() {
        let k = NetworkKeying::default();
        let cases = [
            ("192.0.2.10", k, "192.0.2.0/24"),
            ("::ffff:192.0.2.10", k, "192.0.2.0/24"),
            ("2001:db8:1:2:3:4:5:6", k, "2001:db8:1:2::/64"),
            ("192.0.2.10", NetworkKeying::EXACT, "192.0.2.10"),
            ("10.200.30.4", NetworkKeying { ipv4_prefix: 0, ipv6_prefix: 0 }, "0.0.0.0/0"),
            ("255.255.255.255", NetworkKeying { ipv4_prefix: 31, ipv6_prefix: 64 }, "255.255.255.254/31"),
            ("::ffff:10.0.0.1", NetworkKeying::EXACT, "10.0.0.1"),
            ("2001:db8::1", NetworkKeying { ipv4_prefix: 24, ipv6_prefix: 0 }, "::/0"),
            ("2001:db8::1", NetworkKeying::EXACT, "2001:db8::1"),
            ("198.51.100.77", NetworkKeying { ipv4_prefix: 19, ipv6_prefix: 48 }, "198.51.96.0/19"),
        ];
        for (ip, keying, want) in cases {
            assert_eq!(keying.key(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn netset_finds_the_most_specific_network() {
        let mut set = NetSet::default();
        set.insert("10.0.0.0/8".parse().unwrap(), "wide");
        set.insert("10.1.2.0/24".parse().unwrap(), "narrow");
        set.insert("10.1.2.3/32".parse().unwrap(), "host");
        set.insert("2001:db8::/32".parse().unwrap(), "v6");
        set.insert("::ffff:203.0.113.0/120".parse().unwrap(), "mapped");
        let find = |ip: &str| set.lookup(ip.parse().unwrap()).map(|(n, v)| (n.to_string(), *v));
        assert_eq!(find("10.1.2.3"), Some(("10.1.2.3/32".into(), "host")));
        assert_eq!(find("10.1.2.4"), Some(("10.1.2.0/24".into(), "narrow")));
        assert_eq!(find("10.9.9.9"), Some(("10.0.0.0/8".into(), "wide")));
        assert_eq!(find("11.0.0.1"), None);
        assert_eq!(find("2001:db8:ffff::1"), Some(("2001:db8::/32".into(), "v6")));
        assert_eq!(find("203.0.113.9"), Some(("203.0.113.0/24".into(), "mapped")));
        assert_eq!(find("::ffff:10.1.2.3"), Some(("10.1.2.3/32".into(), "host")));
        assert_eq!(set.len(), 5);
    }
}
