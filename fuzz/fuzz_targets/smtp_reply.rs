//! The upstream reply reader, fed arbitrary server bytes.
//!
//! Oracles: it never panics, keeps a bounded buffer, and reads the same
//! replies (and the same error) whether the bytes arrive whole or in
//! pieces.
#![no_main]

use greygate_proto::smtp::ReplyReader;
use greygate_proto::smtp::reply::ReplyError;
use libfuzzer_sys::fuzz_target;

fn read(data: &[u8], piece: usize) -> (Vec<greygate_proto::smtp::Reply>, Option<ReplyError>) {
    let mut r = ReplyReader::new();
    let mut out = Vec::new();
    for part in data.chunks(piece.max(1)) {
        r.feed(part);
        loop {
            match r.next_reply() {
                Ok(Some(reply)) => {
                    assert!((200..600).contains(&reply.code) && !reply.lines.is_empty());
                    out.push(reply);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(r.buffered() <= 4096usize.saturating_add(piece.max(1)));
    }
    (out, None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&shape, data)) = input.split_first() else { return };
    assert_eq!(read(data, usize::MAX), read(data, usize::from(shape % 11) + 1));
});
