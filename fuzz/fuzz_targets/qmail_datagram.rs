//! The qmail greylisting datagram decoder, fed arbitrary bytes.
//!
//! Oracles: it never panics; a datagram over the limit is always refused;
//! a decoded request has a recipient, and no field holds a NUL, a control
//! character or a space; re-encoding a decoded request and decoding that
//! gives the same request (so what qmail-smtpd sends is read back as
//! sent); extra trailing NULs change nothing. Every reply encodes to two
//! bytes that decode back to it.
#![no_main]

use greygate_proto::qmail::{MAX_DATAGRAM, Reply, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = Request::decode(data);
    if data.len() > MAX_DATAGRAM {
        assert!(decoded.is_err());
        return;
    }
    let Ok(request) = decoded else { return };
    assert!(!request.recipients.is_empty());
    for field in std::iter::once(&request.sender).chain(&request.recipients) {
        assert!(!field.chars().any(|c| c.is_ascii_control() || c == ' '), "{field:?}");
    }
    let mut again = Vec::new();
    request.encode(&mut again);
    if again.len() <= MAX_DATAGRAM {
        assert_eq!(Request::decode(&again).as_ref(), Ok(&request));
    }
    if data.len() < MAX_DATAGRAM {
        let mut padded = data.to_vec();
        padded.push(0);
        assert_eq!(Request::decode(&padded).as_ref(), Ok(&request));
    }
    for reply in Reply::ALL {
        assert_eq!(Reply::decode(&reply.bytes()), Some(reply));
    }
});
