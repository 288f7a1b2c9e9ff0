//! greydaemon's `-w` whitelist file (PROTOCOLS.md §2.5).
//!
//! One IPv4 range per line, `#` comments, blank lines ignored:
//! `a.b.c.d/nn`, `a.b.c.d` (a /32), `a.b.c` (a /24), `a.b` (a /16), `a`
//! (a /8). Missing octets are zero, as greydaemon packs them. Text after
//! the range on the same line is ignored (greydaemon's patterns are not
//! anchored either). A line that is none of these stops the start, as it
//! does greydaemon (`? bad range`).

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};

/// The ranges of a whitelist file, as CIDR networks (`192.0.2.0/24`).
pub fn parse(text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let Some(token) = line.split_whitespace().next() else { continue };
        let net = range(token).with_context(|| format!("line {}: bad range {token:?}", index + 1))?;
        out.push(net);
    }
    Ok(out)
}

fn range(token: &str) -> Result<String> {
    let (addr, len) = match token.split_once('/') {
        Some((addr, len)) => (addr, Some(len.parse::<u32>().context("prefix length is not a number")?)),
        None => (token, None),
    };
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        bail!("expected 1 to 4 octets");
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            bail!("octet {p:?} is not a number");
        }
        *o = p.parse().context("octet above 255")?;
    }
    let len = len.unwrap_or(8 * parts.len() as u32);
    if len > 32 {
        bail!("prefix length above 32");
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Ok(format!("{}/{len}", Ipv4Addr::from(u32::from(Ipv4Addr::from(octets)) & mask)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greydaemon_forms() {
        let text = "# office\n192.0.2.0/24\n198.51.100.7   # one host\n\n203.0.113\n10.1\n172 trailing words\n10/8\n192.0.2.77/24\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                "192.0.2.0/24",
                "198.51.100.7/32",
                "203.0.113.0/24",
                "10.1.0.0/16",
                "172.0.0.0/8",
                "10.0.0.0/8",
                "192.0.2.0/24"
            ]
        );
    }

    #[test]
    fn bad_lines_are_fatal() {
        for bad in ["mail.example.org", "2001:db8::/32", "1.2.3.4.5", "300.1.1.1", "1.2.3.4/33", "1..2"] {
            let err = parse(&format!("192.0.2.1\n{bad}\n")).unwrap_err();
            assert!(format!("{err:#}").starts_with("line 2: bad range"), "{bad}: {err:#}");
        }
    }
}
