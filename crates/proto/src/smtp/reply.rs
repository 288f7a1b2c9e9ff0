//! SMTP replies: the ones greygate writes and the ones it reads from the
//! upstream MTA.
//!
//! A reply is a three-digit code and one or more text lines; on the wire
//! every line but the last has a `-` after the code (RFC 5321 §4.2.1).
//! Enhanced status codes (RFC 3463) are part of each line's text, as the
//! common practice repeats them on every line. This module frames replies;
//! it does not decide which reply a command gets.

use std::fmt;

/// Longest reply line we write or accept, including CRLF (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// Longest reply line we accept from an upstream server. Real servers stay
/// within 512 bytes; some EHLO replies run longer, so allow a margin.
const MAX_UPSTREAM_LINE: usize = 4096;

/// Most lines in one upstream reply (an EHLO reply has about a dozen).
const MAX_UPSTREAM_LINES: usize = 128;

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Text lines without code, separator or CRLF; never empty.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply. `text` should begin with the enhanced status code
    /// when the session announced ENHANCEDSTATUSCODES.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply { code, lines: vec![text.into()] }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server wants more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: the client should try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The enhanced status code of the first line, if it has one
    /// (`4.7.1`), as written.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?;
        let word = first.split(' ').next()?;
        let mut parts = word.split('.');
        let ok = matches!(parts.next(), Some("2" | "4" | "5"))
            && parts.next().is_some_and(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_some_and(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
            && parts.next().is_none();
        ok.then_some(word)
    }

    /// Append the wire form to `out`. Lines are cut at [`MAX_REPLY_LINE`]
    /// and stripped of CR and LF, so a reply text taken from elsewhere
    /// (config, upstream) cannot break the framing.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code.clamp(200, 599);
        let last = self.lines.len().saturating_sub(1);
        if self.lines.is_empty() {
            out.extend_from_slice(format!("{code} \r\n").as_bytes());
            return;
        }
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { b' ' } else { b'-' };
            out.extend_from_slice(itoa3(code).as_slice());
            out.push(sep);
            let room = MAX_REPLY_LINE - 6;
            let mut written = 0;
            for &b in line.as_bytes() {
                if written == room {
                    break;
                }
                if b != b'\r' && b != b'\n' {
                    out.push(b);
                    written += 1;
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

fn itoa3(code: u16) -> [u8; 3] {
    [b'0' + (code / 100) as u8, b'0' + (code / 10 % 10) as u8, b'0' + (code % 10) as u8]
}

/// Why an upstream reply could not be read. Each one means the upstream is
/// not speaking SMTP; the caller drops the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line longer than {MAX_UPSTREAM_LINE} bytes")]
    LineTooLong,
    #[error("reply with more than {MAX_UPSTREAM_LINES} lines")]
    TooManyLines,
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("reply lines with different codes ({0} then {1})")]
    MixedCodes(u16, u16),
}

/// Reads replies from bytes received from a server (the upstream leg).
///
/// Lines end with CRLF; a bare LF is tolerated. A reply ends with the line
/// whose code is followed by a space (or by nothing: `250\r\n`).
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyReader {
    pub fn new() -> ReplyReader {
        ReplyReader::default()
    }

    /// Buffered bytes not yet part of a complete reply.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Add received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Drop everything buffered (after STARTTLS: bytes the server sent
    /// before the handshake must not be read as protected replies).
    pub fn discard(&mut self) {
        self.buf.clear();
        self.code = None;
        self.lines.clear();
    }

    /// The next complete reply, if the buffer holds one.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(end) = memchr::memchr(b'\n', &self.buf) else {
                if self.buf.len() > MAX_UPSTREAM_LINE {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            if end + 1 > MAX_UPSTREAM_LINE {
                return Err(ReplyError::LineTooLong);
            }
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let (code, last, text) = parse_line(&line)?;
            match self.code {
                Some(prev) if prev != code => return Err(ReplyError::MixedCodes(prev, code)),
                _ => self.code = Some(code),
            }
            if self.lines.len() == MAX_UPSTREAM_LINES {
                return Err(ReplyError::TooManyLines);
            }
            self.lines.push(text);
            if last {
                self.code = None;
                return Ok(Some(Reply { code, lines: std::mem::take(&mut self.lines) }));
            }
        }
    }
}

fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
    let digits = line.get(..3).ok_or_else(malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(malformed());
    }
    let code = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_framed_with_dashes_and_crlf() {
        let reply = Reply { code: 250, lines: vec!["mx.example".into(), "PIPELINING".into(), "SIZE 100".into()] };
        assert_eq!(reply.to_bytes(), b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n");
        assert_eq!(Reply::new(451, "4.7.1 try\r\nMAIL FROM:<x>").to_bytes(), b"451 4.7.1 tryMAIL FROM:<x>\r\n");
    }

    #[test]
    fn long_reply_lines_are_cut_to_512_bytes() {
        let bytes = Reply::new(250, "x".repeat(2000)).to_bytes();
        assert_eq!(bytes.len(), MAX_REPLY_LINE);
    }

    #[test]
    fn enhanced_codes_are_recognised() {
        assert_eq!(Reply::new(451, "4.7.1 Greylisted").enhanced(), Some("4.7.1"));
        assert_eq!(Reply::new(250, "mx.example").enhanced(), None);
        assert_eq!(Reply::new(250, "2.0.0").enhanced(), Some("2.0.0"));
    }

    #[test]
    fn reader_collects_multi_line_replies_split_anywhere() {
        let wire = b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n354 go\n250\r\n";
        for split in 0..wire.len() {
            let mut r = ReplyReader::new();
            let mut got = Vec::new();
            r.feed(&wire[..split]);
            while let Some(reply) = r.next_reply().unwrap() {
                got.push(reply);
            }
            r.feed(&wire[split..]);
            while let Some(reply) = r.next_reply().unwrap() {
                got.push(reply);
            }
            assert_eq!(got.len(), 4, "split at {split}");
            assert_eq!(got[0], Reply::new(220, "mx ESMTP"));
            assert_eq!(got[1].lines, ["mx", "PIPELINING", "8BITMIME"]);
            assert_eq!(got[2], Reply::new(354, "go"));
            assert_eq!(got[3], Reply::new(250, ""));
        }
    }

    #[test]
    fn reader_refuses_garbage() {
        for bad in [&b"hello\r\n"[..], b"25 x\r\n", b"250x\r\n", b"650 x\r\n", b"250-a\r\n251 b\r\n"] {
            let mut r = ReplyReader::new();
            r.feed(bad);
            assert!(r.next_reply().is_err(), "{bad:?}");
        }
        let mut r = ReplyReader::new();
        r.feed(&vec![b'2'; 5000]);
        assert_eq!(r.next_reply(), Err(ReplyError::LineTooLong));
        let mut r = ReplyReader::new();
        r.feed("250-x\r\n".repeat(200).as_bytes());
        assert_eq!(r.next_reply(), Err(ReplyError::TooManyLines));
    }
}
