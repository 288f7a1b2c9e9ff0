//! The clamd protocol (ClamAV 1.4), the parts a mail gateway uses:
//! `zINSTREAM` with length-prefixed chunks, and its one reply
//! (PROTOCOLS.md §3).
//!
//! ```text
//! "zINSTREAM" NUL  { u32be length, bytes }*  u32be 0      → "stream: OK" NUL
//! ```
//!
//! A reply is `stream: OK` (clean), `stream: <name> FOUND` (infected) or
//! anything else, which is an error and must never count as clean:
//! `INSTREAM size limit exceeded. ERROR`, `stream: <reason> ERROR`,
//! `UNKNOWN COMMAND`. [`ReplyReader`] collects the bytes up to the NUL
//! terminator, bounded.

/// The command that starts a stream scan (NUL-terminated form).
pub const INSTREAM: &[u8] = b"zINSTREAM\0";

/// The zero-length chunk that ends the stream.
pub const END_OF_STREAM: [u8; 4] = [0; 4];

/// The longest reply kept; a virus name is far shorter.
pub const MAX_REPLY: usize = 1024;

/// The 4-byte header of a chunk of `len` bytes. clamd takes chunks of any
/// size up to its `StreamMaxLength` quota.
pub fn chunk_header(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

/// What clamd said about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature name, e.g. `Eicar-Test-Custom.UNOFFICIAL`.
    Infected(String),
    /// Any other reply, printable; a temporary failure.
    Error(String),
}

/// Read one reply: bytes up to the NUL (or LF) terminator.
#[derive(Debug, Default, Clone)]
pub struct ReplyReader {
    buf: Vec<u8>,
    done: bool,
}

impl ReplyReader {
    /// Feed bytes read from clamd. Returns the verdict once the terminator
    /// is seen, or an error verdict when the reply grows past
    /// [`MAX_REPLY`].
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Verdict> {
        if self.done {
            return None;
        }
        let end = bytes.iter().position(|&b| b == 0 || b == b'\n');
        let take = end.unwrap_or(bytes.len()).min(MAX_REPLY + 1 - self.buf.len().min(MAX_REPLY + 1));
        self.buf.extend_from_slice(&bytes[..take]);
        if self.buf.len() > MAX_REPLY {
            self.done = true;
            return Some(Verdict::Error("over-long reply from clamd".to_owned()));
        }
        if end.is_some() {
            self.done = true;
            return Some(parse_reply(&self.buf));
        }
        None
    }

    /// clamd closed the connection: what was read so far, if anything, is
    /// the reply (a terminator-less reply is still read, as clamd may be
    /// old or behind a proxy).
    pub fn eof(&mut self) -> Verdict {
        if self.done {
            return Verdict::Error("reply already read".to_owned());
        }
        self.done = true;
        if self.buf.is_empty() {
            Verdict::Error("clamd closed the connection without a reply".to_owned())
        } else {
            parse_reply(&self.buf)
        }
    }
}

/// Parse one reply, its terminator stripped.
pub fn parse_reply(reply: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r']);
    // Inside an IDSESSION a reply is prefixed "<n>: "; we never use one,
    // but accept the shape.
    let body = match text.split_once(": ") {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => text,
    };
    let printable: String = body.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    match body.strip_prefix("stream: ") {
        Some("OK") => Verdict::Clean,
        Some(rest) => match rest.strip_suffix(" FOUND") {
            Some(name) if !name.is_empty() && !name.contains(char::is_control) => Verdict::Infected(name.to_owned()),
            _ => Verdict::Error(printable),
        },
        None => Verdict::Error(printable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_clamd_writes_them() {
        let cases: &[(&[u8], Verdict)] = &[
            (b"stream: OK\0", Verdict::Clean),
            (b"stream: Eicar-Test-Custom.UNOFFICIAL FOUND\0", Verdict::Infected("Eicar-Test-Custom.UNOFFICIAL".into())),
            (b"stream: Win.Test.EICAR_HDB-1 FOUND\n", Verdict::Infected("Win.Test.EICAR_HDB-1".into())),
            (b"1: stream: OK\0", Verdict::Clean),
            (b"INSTREAM size limit exceeded. ERROR\0", Verdict::Error("INSTREAM size limit exceeded. ERROR".into())),
            (b"stream: Can't allocate memory ERROR\0", Verdict::Error("stream: Can't allocate memory ERROR".into())),
            (b"UNKNOWN COMMAND\n", Verdict::Error("UNKNOWN COMMAND".into())),
            (b"stream:  FOUND\0", Verdict::Error("stream:  FOUND".into())),
            (b"stream: OK \0", Verdict::Error("stream: OK ".into())),
        ];
        for (bytes, want) in cases {
            for piece in 1..=bytes.len() {
                let mut r = ReplyReader::default();
                let mut got = None;
                for part in bytes.chunks(piece) {
                    if let Some(v) = r.feed(part) {
                        got = Some(v);
                        break;
                    }
                }
                assert_eq!(got.as_ref(), Some(want), "{:?} in pieces of {piece}", String::from_utf8_lossy(bytes));
            }
        }
    }

    #[test]
    fn a_reply_without_terminator_is_read_at_eof_and_an_empty_one_is_an_error() {
        let mut r = ReplyReader::default();
        assert_eq!(r.feed(b"stream: OK"), None);
        assert_eq!(r.eof(), Verdict::Clean);
        assert!(matches!(ReplyReader::default().eof(), Verdict::Error(_)));
    }

    #[test]
    fn an_endless_reply_is_an_error_not_a_growing_buffer() {
        let mut r = ReplyReader::default();
        let mut got = None;
        for _ in 0..100 {
            if let Some(v) = r.feed(&[b'a'; 100]) {
                got = Some(v);
                break;
            }
        }
        assert!(matches!(got, Some(Verdict::Error(_))));
        assert!(r.buf.len() <= MAX_REPLY + 1);
    }

    #[test]
    fn chunk_headers_are_big_endian() {
        assert_eq!(chunk_header(68), [0, 0, 0, 68]);
        assert_eq!(chunk_header(0x0102_0304), [1, 2, 3, 4]);
    }
}
