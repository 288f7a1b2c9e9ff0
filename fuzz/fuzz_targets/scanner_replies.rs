//! The scanners' answers: clamd's reply reader and spamd's response
//! parser, fed arbitrary bytes (the first byte picks which, and how the
//! clamd bytes are cut).
//!
//! Oracles: no panic; clamd's reader keeps a bounded buffer and gives the
//! same verdict whole or in pieces, and only `stream: OK` is clean; a
//! spamd verdict has finite numbers and symbols without control
//! characters (they go into a header).
#![no_main]

use greygate_proto::clamd::{ReplyReader, Verdict};
use greygate_proto::spamd;
use libfuzzer_sys::fuzz_target;

fn clamd(data: &[u8], piece: usize) -> Verdict {
    let mut r = ReplyReader::default();
    for part in data.chunks(piece.max(1)) {
        if let Some(v) = r.feed(part) {
            return v;
        }
    }
    r.eof()
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, data)) = input.split_first() else { return };
    if first & 1 == 0 {
        let whole = clamd(data, data.len());
        assert_eq!(whole, clamd(data, usize::from(first >> 1)));
        if whole == Verdict::Clean {
            let end = data.iter().position(|&b| b == 0 || b == b'\n').unwrap_or(data.len());
            let mut text = &data[..end];
            while let [rest @ .., b'\r'] = text {
                text = rest;
            }
            assert!(text == b"stream: OK" || text.ends_with(b": stream: OK"), "{:?}", String::from_utf8_lossy(text));
        }
    } else if let Ok(v) = spamd::parse_response(data) {
        assert!(v.score.is_finite() && v.threshold.is_finite());
        assert!(v.symbols.iter().all(|s| !s.contains(|c: char| c.is_control() || c == ',')));
    }
});
