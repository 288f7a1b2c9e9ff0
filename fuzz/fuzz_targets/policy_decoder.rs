//! The Postfix policy request decoder, fed arbitrary bytes.
//!
//! Oracles: it never panics; the buffer it keeps stays within the request
//! limit; decoding the input in arbitrary pieces gives exactly the requests
//! (and the same error) as decoding it whole; and encoding any action text
//! yields exactly one `action=` line and the empty line, nothing more.
#![no_main]

use bytes::BytesMut;
use greygate_proto::policy::{Action, Attr, DecodeError, Decoder, Limits, Request};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_line: 256, max_request: 2048, max_attributes: 24 };

/// Decode `data` fed in pieces of the given sizes (cycled).
fn decode(data: &[u8], pieces: &[usize]) -> (Vec<Request>, Option<DecodeError>) {
    let mut decoder = Decoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().cycle();
    while at < data.len() {
        let n = (*sizes.next().unwrap()).clamp(1, data.len() - at);
        buf.extend_from_slice(&data[at..at + n]);
        at += n;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(r)) => {
                    assert!(r.attribute_count <= LIMITS.max_attributes);
                    out.push(r);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(buf.len() < LIMITS.max_request + n, "the decoder keeps a bounded buffer");
    }
    (out, None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&shape, data)) = input.split_first() else { return };
    let whole = decode(data, &[usize::MAX]);
    let pieces = [usize::from(shape % 13) + 1, usize::from(shape / 13) + 1];
    let chunked = decode(data, &pieces);
    assert_eq!(whole.0, chunked.0, "requests depend on how the bytes arrive");
    // Which limit trips first may depend on the pieces (a long line can be
    // "too long" or "request too large"); that input is refused either way.
    assert_eq!(whole.1.is_some(), chunked.1.is_some(), "refusal depends on how the bytes arrive");
    for r in &whole.0 {
        // Reading every attribute is safe (ranges are valid).
        for a in [Attr::Request, Attr::ClientAddress, Attr::Sender, Attr::Recipient, Attr::Instance] {
            let _ = r.get(a);
        }
    }

    let text = String::from_utf8_lossy(data);
    for action in [Action::DeferIfPermit(text.to_string()), Action::Prepend(text.to_string()), Action::Reject(text.to_string())] {
        let mut out = Vec::new();
        action.encode(&mut out);
        assert!(out.starts_with(b"action="));
        assert!(out.ends_with(b"\n\n"));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2, "one line and the empty line");
        assert!(!out.contains(&b'\r') && !out.contains(&0));
    }
});
