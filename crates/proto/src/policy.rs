//! Postfix SMTP access policy delegation (`check_policy_service`).
//!
//! A request is a block of `name=value` lines, each ended by LF, and the
//! block is ended by an empty line. The reply is one `action=...` line and an
//! empty line, LF only: Postfix does not strip CR, so a CRLF reply would be
//! read as an attribute named `\r` and the request would time out
//! (PROTOCOLS.md §1.1). CR on *input* is tolerated, as postgrey does.
//!
//! This module owns framing, limits and attribute extraction. It does not
//! decide anything and does not know which attributes a front end needs
//! beyond the ones Postfix documents; unknown attributes are skipped.

use bytes::{Buf, BytesMut};
use memchr::memchr;
use std::fmt;

/// Bounds that keep a hostile or broken client from growing our buffers.
///
/// Postfix itself no longer enforces a line limit on policy requests, so the
/// server must. A real request is about 750 bytes and 30 attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted line, in bytes, including the LF. Default 8192
    /// (Postfix's historic 4 × `line_length_limit`).
    pub max_line: usize,
    /// Largest accepted request, in bytes, including the final empty line.
    /// Default 65536.
    pub max_request: usize,
    /// Most attribute lines in one request. Default 256.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_line: 8192, max_request: 64 * 1024, max_attributes: 256 }
    }
}

/// Why a request could not be decoded. Every variant means the client is not
/// speaking the protocol: the server logs it and closes without replying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("request larger than {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("more than {limit} attributes in one request")]
    TooManyAttributes { limit: usize },
    #[error("line {line} has no '=' separator")]
    MissingSeparator { line: usize },
    #[error("line {line} has an empty attribute name")]
    EmptyName { line: usize },
    #[error("line {line} contains a NUL byte")]
    NulByte { line: usize },
}

/// The attributes greygate reads; any others are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Request,
    ProtocolState,
    ProtocolName,
    ClientAddress,
    ClientName,
    ReverseClientName,
    ClientPort,
    ServerAddress,
    ServerPort,
    HeloName,
    Sender,
    Recipient,
    RecipientCount,
    QueueId,
    Instance,
    Size,
    SaslMethod,
    SaslUsername,
    SaslSender,
    EncryptionProtocol,
    PolicyContext,
}

impl Attr {
    const COUNT: usize = 21;

    fn from_name(name: &[u8]) -> Option<Attr> {
        Some(match name {
            b"request" => Attr::Request,
            b"protocol_state" => Attr::ProtocolState,
            b"protocol_name" => Attr::ProtocolName,
            b"client_address" => Attr::ClientAddress,
            b"client_name" => Attr::ClientName,
            b"reverse_client_name" => Attr::ReverseClientName,
            b"client_port" => Attr::ClientPort,
            b"server_address" => Attr::ServerAddress,
            b"server_port" => Attr::ServerPort,
            b"helo_name" => Attr::HeloName,
            b"sender" => Attr::Sender,
            b"recipient" => Attr::Recipient,
            b"recipient_count" => Attr::RecipientCount,
            b"queue_id" => Attr::QueueId,
            b"instance" => Attr::Instance,
            b"size" => Attr::Size,
            b"sasl_method" => Attr::SaslMethod,
            b"sasl_username" => Attr::SaslUsername,
            b"sasl_sender" => Attr::SaslSender,
            b"encryption_protocol" => Attr::EncryptionProtocol,
            b"policy_context" => Attr::PolicyContext,
            _ => return None,
        })
    }
}

/// One policy request, as Postfix sent it.
///
/// [`Request::get`] gives `None` when the attribute was absent and
/// `Some("")` when it was sent empty (for `sender` that is the null sender
/// `<>`). The request is kept as one UTF-8 string with the positions of the
/// known values, so decoding allocates once. Invalid UTF-8 is replaced,
/// because Postfix passes client-supplied text (HELO names) through.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    text: String,
    values: [Option<(u32, u32)>; Attr::COUNT],
    /// Number of attribute lines in the request, known or not.
    pub attribute_count: usize,
}

impl Request {
    /// An attribute's value. A repeated attribute gives its last value.
    pub fn get(&self, attr: Attr) -> Option<&str> {
        self.values[attr as usize].map(|(start, end)| &self.text[start as usize..end as usize])
    }

    /// True when `request=smtpd_access_policy`, the only request type
    /// Postfix sends. Anything else is not ours to answer.
    pub fn is_access_policy(&self) -> bool {
        self.get(Attr::Request) == Some("smtpd_access_policy")
    }
}

/// Incremental request decoder.
///
/// Feed it the connection's read buffer; it removes one complete request at
/// a time and leaves any following bytes (a pipelined next request) in place.
/// It remembers how far it has already scanned, so a request that arrives in
/// many small reads is scanned once, not once per read.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Bytes at the start of the buffer already checked to be complete lines.
    scanned: usize,
    /// Where each of those lines ends (after its LF), so parsing does not
    /// search for line ends again.
    line_ends: Vec<u32>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder { limits, scanned: 0, line_ends: Vec::new() }
    }

    /// Try to take one request from the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. After an error the
    /// connection must be dropped: the decoder does not resynchronise.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, DecodeError> {
        let limits = self.limits;
        let mut line_start = self.scanned;
        while let Some(lf) = find_byte(&buf[line_start..], b'\n') {
            let end = line_start + lf + 1;
            if end - line_start > limits.max_line {
                return Err(DecodeError::LineTooLong { limit: limits.max_line });
            }
            if end > limits.max_request {
                return Err(DecodeError::RequestTooLarge { limit: limits.max_request });
            }
            let blank = end - line_start == 1 || (end - line_start == 2 && buf[line_start] == b'\r');
            if blank {
                let body_len = line_start;
                let block = buf.split_to(end);
                self.scanned = 0;
                let parsed = parse_block(&block[..body_len], &self.line_ends);
                self.line_ends.clear();
                return parsed.map(Some);
            }
            if self.line_ends.len() == limits.max_attributes {
                return Err(DecodeError::TooManyAttributes { limit: limits.max_attributes });
            }
            // Request size is bounded by `Limits`, far below u32::MAX.
            self.line_ends.push(end as u32);
            line_start = end;
        }
        self.scanned = line_start;
        let partial = buf.len() - line_start;
        if partial >= limits.max_line {
            return Err(DecodeError::LineTooLong { limit: limits.max_line });
        }
        if buf.len() >= limits.max_request {
            return Err(DecodeError::RequestTooLarge { limit: limits.max_request });
        }
        Ok(None)
    }

    /// Drop any partial request state, e.g. before reusing the decoder.
    pub fn reset(&mut self, buf: &mut BytesMut) {
        buf.advance(buf.len());
        self.scanned = 0;
        self.line_ends.clear();
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Limits::default())
    }
}

/// Parse the attribute lines of one complete request (without the blank
/// line); `line_ends` are the offsets just after each line's LF.
fn parse_block(block: &[u8], line_ends: &[u32]) -> Result<Request, DecodeError> {
    if let Some(nul) = memchr(0, block) {
        return Err(DecodeError::NulByte { line: 1 + memchr::memchr_iter(b'\n', &block[..nul]).count() });
    }
    let recomputed: Vec<u32>;
    let (text, line_ends) = match std::str::from_utf8(block) {
        Ok(s) => (s.to_owned(), line_ends),
        Err(_) => {
            // Replacement characters are longer than the bytes they
            // replace: find the line ends again in the converted text.
            let text = String::from_utf8_lossy(block).into_owned();
            recomputed = memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i as u32 + 1).collect();
            (text, recomputed.as_slice())
        }
    };
    let mut request = Request { text: String::new(), values: [None; Attr::COUNT], attribute_count: 0 };
    let bytes = text.as_bytes();
    let mut line_start = 0;
    for (index, &end) in line_ends.iter().enumerate() {
        let lf = end as usize - 1;
        let raw = &bytes[line_start..lf];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line_no = index + 1;
        let Some(eq) = find_byte(line, b'=') else {
            return Err(DecodeError::MissingSeparator { line: line_no });
        };
        if eq == 0 {
            return Err(DecodeError::EmptyName { line: line_no });
        }
        if let Some(attr) = Attr::from_name(&line[..eq]) {
            // Request size is bounded by `Limits`, far below u32::MAX.
            request.values[attr as usize] = Some(((line_start + eq + 1) as u32, (line_start + line.len()) as u32));
        }
        request.attribute_count += 1;
        line_start = lf + 1;
    }
    request.text = text;
    Ok(request)
}

/// Where the first `needle` is in `bytes`, looked for eight bytes at a
/// time in a machine word. Lines and attribute names are short: a
/// vectorised search call costs more to set up than this whole loop.
fn find_byte(bytes: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let pattern = ONES * u64::from(needle);
    let mut at = 0;
    while let Some(word) = bytes.get(at..at + 8) {
        // A byte of `x` is zero where the word holds `needle`; the test
        // flags the lowest such byte exactly (only bytes above a zero byte
        // can be flagged falsely).
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ pattern;
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..].iter().position(|&b| b == needle).map(|i| at + i)
}

/// A policy reply: the right-hand side of `action=` (access(5) syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Neutral: let the next restriction decide. Greylisters answer this on
    /// "pass" so later checks still run.
    Dunno,
    /// Permit and stop the restriction list.
    Ok,
    /// Temporary failure, only if the final result would have been permit.
    DeferIfPermit(String),
    /// Temporary failure (450 by default in Postfix).
    Defer(String),
    /// Permanent rejection with Postfix's default code.
    Reject(String),
    /// An exact SMTP reply: `code` is 4xx or 5xx, `text` may begin with an
    /// enhanced status code.
    Reply { code: u16, text: String },
    /// Add a header to the message and continue (`DUNNO` semantics).
    Prepend(String),
}

impl Action {
    /// Append the complete reply (`action=...\n\n`) to `dst`.
    ///
    /// Text is sanitised: CR, LF and NUL would break the framing or be read
    /// as a separate attribute, so each becomes a space.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(b"action=");
        let start = dst.len();
        // Written without the formatting machinery: one reply per request.
        let (word, text) = match self {
            Action::Dunno | Action::Ok => (self.keyword(), ""),
            Action::DeferIfPermit(t) | Action::Defer(t) | Action::Reject(t) | Action::Prepend(t) => {
                (self.keyword(), t.as_str())
            }
            Action::Reply { code, text } => {
                // Writing to a Vec cannot fail.
                let _ = fmt::Write::write_fmt(&mut VecWriter(dst), format_args!("{code}"));
                ("", text.as_str())
            }
        };
        dst.extend_from_slice(word.as_bytes());
        if !text.is_empty() {
            dst.push(b' ');
            dst.extend_from_slice(text.as_bytes());
        }
        for b in &mut dst[start..] {
            if matches!(*b, b'\r' | b'\n' | 0) {
                *b = b' ';
            }
        }
        dst.extend_from_slice(b"\n\n");
    }

    /// The first word of the action, upper-case, as Postfix logs it.
    pub fn keyword(&self) -> &'static str {
        match self {
            Action::Dunno => "DUNNO",
            Action::Ok => "OK",
            Action::DeferIfPermit(_) => "DEFER_IF_PERMIT",
            Action::Defer(_) => "DEFER",
            Action::Reject(_) => "REJECT",
            Action::Reply { code, .. } if *code >= 500 => "REJECT",
            Action::Reply { .. } => "DEFER",
            Action::Prepend(_) => "PREPEND",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn with_text(f: &mut fmt::Formatter<'_>, word: &str, text: &str) -> fmt::Result {
            if text.is_empty() { f.write_str(word) } else { write!(f, "{word} {text}") }
        }
        match self {
            Action::Dunno => f.write_str("DUNNO"),
            Action::Ok => f.write_str("OK"),
            Action::DeferIfPermit(t) => with_text(f, "DEFER_IF_PERMIT", t),
            Action::Defer(t) => with_text(f, "DEFER", t),
            Action::Reject(t) => with_text(f, "REJECT", t),
            Action::Reply { code, text } => with_text(f, &code.to_string(), text),
            Action::Prepend(h) => with_text(f, "PREPEND", h),
        }
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
