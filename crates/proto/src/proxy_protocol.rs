//! HAProxy's PROXY protocol, versions 1 and 2, as a receiver
//! (PROTOCOLS.md §6).
//!
//! A load balancer in front of greygate sends one header right after
//! connecting, carrying the real client's address. This module decodes
//! exactly one header from the start of a connection's bytes and says how
//! many bytes it used; everything after it belongs to SMTP. It never
//! guesses: the front end calls it only on listeners configured for the
//! protocol, and anything that is not a complete, valid header is an
//! error (the connection is dropped).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
const SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// Longest v1 header, CRLF included.
const MAX_V1: usize = 107;

/// Largest v2 address block and TLVs we accept (haproxy sends well under
/// one segment).
const MAX_V2_LEN: usize = 2048;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The connection came through the proxy from `source` to `destination`.
    Proxied { source: SocketAddr, destination: SocketAddr },
    /// v2 LOCAL (a health check) or v1 `UNKNOWN` or an address family other
    /// than TCP over IPv4/IPv6: use the connection's own addresses.
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY v1 header")]
    BadV1,
    #[error("PROXY v1 header without CRLF within 107 bytes")]
    V1TooLong,
    #[error("unsupported PROXY v2 version or command {0:#04x}")]
    BadV2Command(u8),
    #[error("PROXY v2 address block too short for its family")]
    BadV2Length,
    #[error("PROXY v2 header longer than {MAX_V2_LEN} bytes")]
    V2TooLong,
    #[error("PROXY v2 datagram transport on a stream listener")]
    Datagram,
}

/// Decode a header from the start of `buf`: `Ok(None)` when more bytes are
/// needed, otherwise the header and its length in bytes.
pub fn decode(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let n = buf.len().min(SIGNATURE.len());
    if buf[..n] == SIGNATURE[..n] {
        return if buf.len() < 16 { Ok(None) } else { decode_v2(buf) };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if buf.len() < 6 { Ok(None) } else { decode_v1(buf) };
    }
    Err(ProxyError::NotProxy)
}

fn decode_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        return if buf.len() >= MAX_V1 { Err(ProxyError::V1TooLong) } else { Ok(None) };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(ProxyError::BadV1);
    }
    let line = std::str::from_utf8(&window[..lf - 1]).map_err(|_| ProxyError::BadV1)?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => ProxyHeader::Local,
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            let source = SocketAddr::new(v1_addr(src, v4)?, v1_port(sport)?);
            let destination = SocketAddr::new(v1_addr(dst, v4)?, v1_port(dport)?);
            ProxyHeader::Proxied { source, destination }
        }
        _ => return Err(ProxyError::BadV1),
    };
    Ok(Some((header, lf + 1)))
}

fn v1_addr(s: &str, v4: bool) -> Result<IpAddr, ProxyError> {
    let ip: IpAddr = s.parse().map_err(|_| ProxyError::BadV1)?;
    match (ip, v4) {
        (IpAddr::V4(_), true) | (IpAddr::V6(_), false) => Ok(ip),
        _ => Err(ProxyError::BadV1),
    }
}

fn v1_port(s: &str) -> Result<u16, ProxyError> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProxyError::BadV1);
    }
    s.parse().map_err(|_| ProxyError::BadV1)
}

fn decode_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let ver_cmd = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_V2_LEN {
        return Err(ProxyError::V2TooLong);
    }
    let local = match ver_cmd {
        0x20 => true,
        0x21 => false,
        other => return Err(ProxyError::BadV2Command(other)),
    };
    let total = 16 + len;
    if buf.len() < total {
        return Ok(None);
    }
    if local {
        return Ok(Some((ProxyHeader::Local, total)));
    }
    let block = &buf[16..total];
    let header = match family {
        0x11 => {
            let a = block.get(..12).ok_or(ProxyError::BadV2Length)?;
            let src = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let dst = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(src.into(), u16::from_be_bytes([a[8], a[9]])),
                destination: SocketAddr::new(dst.into(), u16::from_be_bytes([a[10], a[11]])),
            }
        }
        0x21 => {
            let a = block.get(..36).ok_or(ProxyError::BadV2Length)?;
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&a[..16]).expect("16 bytes"));
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&a[16..32]).expect("16 bytes"));
            ProxyHeader::Proxied {
                source: SocketAddr::new(src.into(), u16::from_be_bytes([a[32], a[33]])),
                destination: SocketAddr::new(dst.into(), u16::from_be_bytes([a[34], a[35]])),
            }
        }
        0x12 | 0x22 | 0x32 => return Err(ProxyError::Datagram),
        _ => ProxyHeader::Local,
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(src: &str, dst: &str) -> ProxyHeader {
        ProxyHeader::Proxied { source: src.parse().unwrap(), destination: dst.parse().unwrap() }
    }

    #[test]
    fn v1_headers() {
        let wire = b"PROXY TCP4 192.0.2.10 198.51.100.5 51234 25\r\nEHLO x\r\n";
        assert_eq!(decode(wire), Ok(Some((proxied("192.0.2.10:51234", "198.51.100.5:25"), 45))));
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 25\r\n";
        assert_eq!(decode(v6), Ok(Some((proxied("[2001:db8::1]:1", "[2001:db8::2]:25"), v6.len()))));
        assert_eq!(decode(b"PROXY UNKNOWN\r\n"), Ok(Some((ProxyHeader::Local, 15))));
        assert_eq!(decode(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap().unwrap().0, ProxyHeader::Local);
    }

    #[test]
    fn v1_is_strict() {
        for bad in [
            &b"PROXY TCP4 192.0.2.10 198.51.100.5 51234 25\n"[..],
            b"PROXY TCP4 192.0.2.10  198.51.100.5 51234 25\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.5 51234 25\r\n",
            b"PROXY TCP4 192.0.2.10 198.51.100.5 051234 25\r\n",
            b"PROXY TCP4 192.0.2.10 198.51.100.5 70000 25\r\n",
            b"PROXY TCP5 a b 1 2\r\n",
        ] {
            assert_eq!(decode(bad), Err(ProxyError::BadV1), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(decode(&[b'P'; 3]), Err(ProxyError::NotProxy));
        assert_eq!(decode(b"EHLO x\r\n"), Err(ProxyError::NotProxy));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert_eq!(decode(&long), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v2_headers_from_the_spec() {
        let ipv4: [u8; 28] = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 0xc0, 0x00,
            0x02, 0x0a, 0xc6, 0x33, 0x64, 0x05, 0xc8, 0x22, 0x00, 0x19,
        ];
        assert_eq!(decode(&ipv4), Ok(Some((proxied("192.0.2.10:51234", "198.51.100.5:25"), 28))));
        let local: [u8; 16] =
            [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00];
        assert_eq!(decode(&local), Ok(Some((ProxyHeader::Local, 16))));
    }

    #[test]
    fn v2_with_tlvs_is_skipped_by_length_and_partial_input_waits() {
        let mut wire = SIGNATURE.to_vec();
        wire.extend_from_slice(&[0x21, 0x21, 0x00, 36 + 7]);
        wire.extend_from_slice(&[0x20, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        wire.extend_from_slice(&[0x20, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        wire.extend_from_slice(&[0x30, 0x39, 0x00, 0x19]);
        wire.extend_from_slice(&[0x04, 0x00, 0x04, 1, 2, 3, 4]);
        let total = wire.len();
        wire.extend_from_slice(b"EHLO");
        for cut in 0..total {
            assert_eq!(decode(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(decode(&wire), Ok(Some((proxied("[2001::1]:12345", "[2001::2]:25"), total))));
    }

    #[test]
    fn v2_refuses_bad_commands_short_blocks_and_datagrams() {
        let header = |ver_cmd: u8, fam: u8, len: u16| {
            let mut w = SIGNATURE.to_vec();
            w.extend_from_slice(&[ver_cmd, fam]);
            w.extend_from_slice(&len.to_be_bytes());
            w.extend(std::iter::repeat_n(0u8, usize::from(len)));
            w
        };
        assert_eq!(decode(&header(0x22, 0x11, 12)), Err(ProxyError::BadV2Command(0x22)));
        assert_eq!(decode(&header(0x11, 0x11, 12)), Err(ProxyError::BadV2Command(0x11)));
        assert_eq!(decode(&header(0x21, 0x11, 4)), Err(ProxyError::BadV2Length));
        assert_eq!(decode(&header(0x21, 0x12, 12)), Err(ProxyError::Datagram));
        assert_eq!(decode(&header(0x21, 0x11, 5000)[..16]), Err(ProxyError::V2TooLong));
        assert_eq!(decode(&header(0x21, 0x31, 216)).unwrap().unwrap().0, ProxyHeader::Local);
    }
}
