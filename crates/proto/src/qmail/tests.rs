use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn req(client: &str, sender: &str, recipients: &[&str]) -> Request {
    Request {
        client: ip(client),
        sender: sender.to_owned(),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
    }
}

#[test]
fn decodes_what_qmail_smtpd_sends() {
    let cases: &[(&[u8], Request)] = &[
        (
            b"I192.0.2.10\0Fsender@example.org\0Trcpt1@example.net\0Trcpt2@example.net\0",
            req("192.0.2.10", "sender@example.org", &["rcpt1@example.net", "rcpt2@example.net"]),
        ),
        // The newer client's extra final NUL.
        (b"I192.0.2.10\0Fa@b\0Tc@d\0\0", req("192.0.2.10", "a@b", &["c@d"])),
        // A last field without its NUL (greydaemon's split accepts it).
        (b"I192.0.2.10\0Fa@b\0Tc@d", req("192.0.2.10", "a@b", &["c@d"])),
        // The null sender.
        (
            b"I192.0.2.10\0F\0Tlist-bounces-bob=x@lists.example\0",
            req("192.0.2.10", "", &["list-bounces-bob=x@lists.example"]),
        ),
        // Spaces are removed, as greydaemon does.
        (b"I192.0.2.10\0F a@b \0Tc @d\0", req("192.0.2.10", "a@b", &["c@d"])),
        // IPv6, plain, bracketed, and IPv4-mapped.
        (b"I2001:db8::1\0Fa@b\0Tc@d\0", req("2001:db8::1", "a@b", &["c@d"])),
        (b"I[2001:db8::1]\0Fa@b\0Tc@d\0", req("2001:db8::1", "a@b", &["c@d"])),
        (b"I::ffff:192.0.2.7\0Fa@b\0Tc@d\0", req("192.0.2.7", "a@b", &["c@d"])),
    ];
    for (bytes, want) in cases {
        assert_eq!(Request::decode(bytes).as_ref(), Ok(want), "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn malformed_datagrams_are_refused() {
    let long = {
        let mut d = b"I192.0.2.10\0Fa@b\0".to_vec();
        while d.len() <= MAX_DATAGRAM {
            d.extend_from_slice(b"Trecipient@example.net\0");
        }
        d
    };
    let cases: &[(&[u8], DecodeError)] = &[
        (b"", DecodeError::Empty),
        (b"\0\0", DecodeError::Empty),
        // The 2009 client's trailing LF, after the last NUL or inside it.
        (b"I192.0.2.10\0Fa@b\0Tc@d\0\n", DecodeError::NoRecipient(4)),
        (b"I192.0.2.10\0Fa@b\0Tc@d\n\0", DecodeError::ControlCharacter(3)),
        (b"X192.0.2.10\0Fa@b\0Tc@d\0", DecodeError::NoClient),
        (b"\0I192.0.2.10\0Fa@b\0Tc@d\0", DecodeError::NoClient),
        (b"Ihost.example\0Fa@b\0Tc@d\0", DecodeError::BadClient("host.example".into())),
        (b"I192.0.2.10\0Tc@d\0", DecodeError::NoSender),
        (b"I192.0.2.10\0", DecodeError::NoSender),
        (b"I192.0.2.10\0Fa@b\0", DecodeError::NoRecipients),
        (b"I192.0.2.10\0Fa@b\0Tc@d\0\0Te@f\0", DecodeError::NoRecipient(4)),
        (b"I192.0.2.10\0Fa@b\0Tc@d\0Fe@f\0", DecodeError::NoRecipient(4)),
        (b"I192.0.2.10\0Fa@b\0T\0", DecodeError::EmptyRecipient(3)),
        (b"I192.0.2.10\0Fa\rb\0Tc@d\0", DecodeError::ControlCharacter(2)),
        (&long, DecodeError::TooLarge),
    ];
    for (bytes, want) in cases {
        assert_eq!(Request::decode(bytes), Err(want.clone()), "{:?}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn the_largest_datagram_is_accepted() {
    let mut d = b"I192.0.2.10\0Fa@b\0".to_vec();
    while d.len() + 4 <= MAX_DATAGRAM {
        d.extend_from_slice(b"Tr@\0");
    }
    d.resize(MAX_DATAGRAM, 0);
    assert_eq!(d.len(), MAX_DATAGRAM);
    assert!(Request::decode(&d).is_ok());
}

#[test]
fn encode_is_what_decode_reads() {
    let r = req("2001:db8::5", "", &["a@b", "c-x=y@d"]);
    let mut out = Vec::new();
    r.encode(&mut out);
    assert_eq!(out, b"I2001:db8::5\0F\0Ta@b\0Tc-x=y@d\0");
    assert_eq!(Request::decode(&out), Ok(r));
}

#[test]
fn replies_have_greydaemons_codes() {
    let want: [(Reply, [u8; 2]); 7] = [
        (Reply::Whitelisted, [1, 1]),
        (Reply::KnownIp, [1, 2]),
        (Reply::RetryOk, [1, 3]),
        (Reply::Bounce, [1, 4]),
        (Reply::New, [0, 1]),
        (Reply::TooSoon, [0, 2]),
        (Reply::Stale, [0, 3]),
    ];
    for (reply, bytes) in want {
        assert_eq!(reply.bytes(), bytes);
        assert_eq!(Reply::decode(&bytes), Some(reply));
        assert_eq!(reply.accepts(), bytes[0] == 1);
    }
    assert_eq!(Reply::decode(&[1, 5]), None);
    assert_eq!(Reply::decode(&[1]), None);
    assert_eq!(Reply::Stale.to_string(), "0003");
}
