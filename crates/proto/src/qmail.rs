//! qmail's greylisting datagrams (John Levine's greydaemon, PROTOCOLS.md §2).
//!
//! A qmail-smtpd patched for greylisting (`GREYIP`) sends one UDP datagram
//! at DATA with the client address, the envelope sender and every
//! recipient, each field NUL-terminated:
//!
//! ```text
//! 'I' <client IP> NUL  'F' <sender> NUL  'T' <recipient> NUL  ['T' <recipient> NUL ...]  [NUL]
//! ```
//!
//! and reads a 2-byte reply: byte 0 is the verdict (1 accept, 0
//! greylist), byte 1 the reason ([`Reply`]). A datagram that does not
//! decode gets **no reply**: the client times out and answers 451, which is
//! what qmail sites expect from greydaemon.
//!
//! This module owns the byte layout and its limits. It does not decide
//! anything, keeps no state and does no I/O.

use std::fmt;
use std::net::IpAddr;

/// Largest datagram accepted, in bytes: greydaemon reads at most 2048
/// (`MAXGREYPKTSIZE`); qmail-smtpd's buffer is 2000.
pub const MAX_DATAGRAM: usize = 2048;

/// Why a datagram was not understood. Every variant means "no reply".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram larger than {MAX_DATAGRAM} bytes")]
    TooLarge,
    #[error("empty datagram")]
    Empty,
    #[error("first field does not start with 'I'")]
    NoClient,
    #[error("client address {0:?} is not an IP address")]
    BadClient(String),
    #[error("second field does not start with 'F'")]
    NoSender,
    #[error("field {0} does not start with 'T'")]
    NoRecipient(usize),
    #[error("no recipient")]
    NoRecipients,
    #[error("recipient {0} is empty")]
    EmptyRecipient(usize),
    #[error("field {0} contains a control character")]
    ControlCharacter(usize),
}

/// One question: may this client's transaction go through now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The SMTP client's address. IPv4-mapped IPv6 (`::ffff:192.0.2.1`)
    /// is given as IPv4.
    pub client: IpAddr,
    /// Envelope sender without angle brackets; empty for the null sender.
    pub sender: String,
    /// Every recipient of the transaction, in order; never empty.
    pub recipients: Vec<String>,
}

impl Request {
    /// Decode one datagram.
    ///
    /// Accepted beyond the letter of the format, as greydaemon accepts
    /// them: any number of trailing NULs (the newer client's extra one),
    /// a last field without its NUL, and spaces inside addresses (removed).
    /// Refused: a control character anywhere in a field (this is how a
    /// trailing LF, which the 2009 client sent, is refused), a missing or
    /// empty recipient, and a client field that is not an IP address (IPv6
    /// in its usual text form, optionally in brackets).
    pub fn decode(datagram: &[u8]) -> Result<Request, DecodeError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DecodeError::TooLarge);
        }
        let end = datagram.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if end == 0 {
            return Err(DecodeError::Empty);
        }
        let mut fields = datagram[..end].split(|&b| b == 0).enumerate();
        let mut field = |tag: u8, missing: fn(usize) -> DecodeError| -> Result<Option<(usize, String)>, DecodeError> {
            let Some((i, bytes)) = fields.next() else { return Ok(None) };
            let (&first, rest) = bytes.split_first().ok_or(missing(i + 1))?;
            if first != tag {
                return Err(missing(i + 1));
            }
            if rest.iter().any(|&b| b < 0x20 || b == 0x7f) {
                return Err(DecodeError::ControlCharacter(i + 1));
            }
            let text = String::from_utf8_lossy(rest).replace(' ', "");
            Ok(Some((i + 1, text)))
        };
        let (_, client) = field(b'I', |_| DecodeError::NoClient)?.ok_or(DecodeError::NoClient)?;
        let client = parse_client(&client).ok_or(DecodeError::BadClient(client))?;
        let (_, sender) = field(b'F', |_| DecodeError::NoSender)?.ok_or(DecodeError::NoSender)?;
        let mut recipients = Vec::new();
        while let Some((n, recipient)) = field(b'T', DecodeError::NoRecipient)? {
            if recipient.is_empty() {
                return Err(DecodeError::EmptyRecipient(n));
            }
            recipients.push(recipient);
        }
        if recipients.is_empty() {
            return Err(DecodeError::NoRecipients);
        }
        Ok(Request { client, sender, recipients })
    }

    /// The datagram qmail-smtpd sends for this request (with no extra
    /// final NUL), appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "I{}\0F{}\0", self.client, self.sender);
        for r in &self.recipients {
            out.push(b'T');
            out.extend_from_slice(r.as_bytes());
            out.push(0);
        }
    }
}

/// `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, `::ffff:192.0.2.1`.
fn parse_client(text: &str) -> Option<IpAddr> {
    let text = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// greydaemon's two-byte answers, with its codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `01 01`: the client address is whitelisted.
    Whitelisted,
    /// `01 02`: the client address passed greylisting recently ("known").
    KnownIp,
    /// `01 03`: every recipient's triplet passed.
    RetryOk,
    /// `01 04`: a bounce (null sender) to a VERP-style recipient.
    Bounce,
    /// `00 01`: a new triplet, recorded; greylisted.
    New,
    /// `00 02`: retried before the delay ran out; greylisted.
    TooSoon,
    /// `00 03`: retried after the retry window; starts over, greylisted.
    Stale,
}

impl Reply {
    pub const ALL: [Reply; 7] =
        [Reply::Whitelisted, Reply::KnownIp, Reply::RetryOk, Reply::Bounce, Reply::New, Reply::TooSoon, Reply::Stale];

    /// The datagram.
    pub fn bytes(self) -> [u8; 2] {
        match self {
            Reply::Whitelisted => [1, 1],
            Reply::KnownIp => [1, 2],
            Reply::RetryOk => [1, 3],
            Reply::Bounce => [1, 4],
            Reply::New => [0, 1],
            Reply::TooSoon => [0, 2],
            Reply::Stale => [0, 3],
        }
    }

    /// Read a reply datagram (for clients and tests).
    pub fn decode(datagram: &[u8]) -> Option<Reply> {
        Reply::ALL.into_iter().find(|r| r.bytes() == datagram)
    }

    /// True when the client may go on with the transaction.
    pub fn accepts(self) -> bool {
        self.bytes()[0] == 1
    }

    /// A stable name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Reply::Whitelisted => "whitelisted",
            Reply::KnownIp => "known_ip",
            Reply::RetryOk => "retry_ok",
            Reply::Bounce => "bounce",
            Reply::New => "new",
            Reply::TooSoon => "too_soon",
            Reply::Stale => "stale",
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.bytes();
        write!(f, "{a:02x}{b:02x}")
    }
}

#[cfg(test)]
mod tests;
