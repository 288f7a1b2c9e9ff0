//! The spamd protocol (SPAMC/1.5, SpamAssassin 4.0), the `SYMBOLS`
//! request and its response (PROTOCOLS.md §4).
//!
//! ```text
//! C: SYMBOLS SPAMC/1.5\r\nContent-length: 123\r\n\r\n<123 bytes>
//! S: SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,...
//! ```
//!
//! One request per connection; spamd closes the connection after the
//! response, so the response is read to the end of the stream (bounded by
//! [`MAX_RESPONSE`]) and parsed whole. spamd matches request header names
//! case-sensitively: it is `Content-length`, as spamc writes it.

/// The largest response kept: headers and the list of rule names.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// The request head for a message of `len` bytes; the message follows.
/// `user` selects per-user settings when spamd runs with them.
pub fn request_head(len: u64, user: Option<&str>) -> Vec<u8> {
    let mut head = format!("SYMBOLS SPAMC/1.5\r\nContent-length: {len}\r\n");
    if let Some(user) = user.filter(|u| !u.is_empty() && !u.contains(|c: char| c.is_control())) {
        head.push_str("User: ");
        head.push_str(user);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// spamd's verdict on a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// spamd's own judgement: score at or above its `required_score`.
    pub spam: bool,
    pub score: f64,
    pub threshold: f64,
    /// Names of the rules that hit.
    pub symbols: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("empty response from spamd")]
    Empty,
    #[error("response from spamd over {MAX_RESPONSE} bytes")]
    TooLong,
    #[error("malformed response from spamd: {0}")]
    Malformed(String),
    /// A non-zero status: `SPAMD/1.0 76 Bad header line: ...`.
    #[error("spamd answered {code} {message}")]
    Status { code: u32, message: String },
}

/// Parse a whole response.
pub fn parse_response(response: &[u8]) -> Result<Verdict, Error> {
    if response.is_empty() {
        return Err(Error::Empty);
    }
    if response.len() > MAX_RESPONSE {
        return Err(Error::TooLong);
    }
    let text = String::from_utf8_lossy(response);
    let (head, body) = match text.find("\r\n\r\n") {
        Some(i) => (&text[..i], &text[i + 4..]),
        None => (text.trim_end_matches(['\r', '\n']), ""),
    };
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let malformed = |what: &str| Error::Malformed(format!("{what}: {:?}", printable(status)));
    let mut parts = status.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(malformed("status line"));
    };
    if !version.starts_with("SPAMD/") {
        return Err(malformed("status line"));
    }
    let code: u32 = code.parse().map_err(|_| malformed("status code"))?;
    if code != 0 {
        return Err(Error::Status { code, message: printable(parts.next().unwrap_or_default()) });
    }
    let mut verdict = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Error::Malformed(format!("header line {:?}", printable(line))));
        };
        if name == "Spam" {
            verdict = Some(
                parse_spam_header(value.trim())
                    .ok_or_else(|| Error::Malformed(format!("Spam header {:?}", printable(value.trim()))))?,
            );
        }
    }
    let Some((spam, score, threshold)) = verdict else {
        return Err(Error::Malformed("no Spam header".to_owned()));
    };
    let symbols = body
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(printable)
        .collect();
    Ok(Verdict { spam, score, threshold, symbols })
}

/// `True ; 1000.0 / 5.0` (spamc reads it as `%5s ; %20s / %20s`).
fn parse_spam_header(value: &str) -> Option<(bool, f64, f64)> {
    let (flag, numbers) = value.split_once(';')?;
    let spam = match flag.trim() {
        "True" | "Yes" => true,
        "False" | "No" => false,
        _ => return None,
    };
    let (score, threshold) = numbers.split_once('/')?;
    let score: f64 = score.trim().parse().ok()?;
    let threshold: f64 = threshold.trim().parse().ok()?;
    (score.is_finite() && threshold.is_finite()).then_some((spam, score, threshold))
}

fn printable(s: &str) -> String {
    s.chars().take(200).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_head_is_spelled_as_spamc_spells_it() {
        assert_eq!(request_head(85, None), b"SYMBOLS SPAMC/1.5\r\nContent-length: 85\r\n\r\n");
        assert_eq!(request_head(1, Some("mail")), b"SYMBOLS SPAMC/1.5\r\nContent-length: 1\r\nUser: mail\r\n\r\n");
        assert_eq!(request_head(1, Some("a\r\nSet: x")), b"SYMBOLS SPAMC/1.5\r\nContent-length: 1\r\n\r\n");
    }

    #[test]
    fn responses_from_spamd_4_are_read() {
        // As spamd 4.0.1 answered on this machine (GTUBE, then a plain note).
        let gtube = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 34\r\nSpam: True ; 1005.2 / 5.0\r\n\r\nGTUBE,MISSING_DATE,TVD_SPACE_RATIO";
        let v = parse_response(gtube).unwrap();
        assert!(v.spam);
        assert_eq!((v.score, v.threshold), (1005.2, 5.0));
        assert_eq!(v.symbols, ["GTUBE", "MISSING_DATE", "TVD_SPACE_RATIO"]);

        let ham = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: False ; -0.1 / 5.0\r\n\r\nNO_RELAYS";
        let v = parse_response(ham).unwrap();
        assert!(!v.spam);
        assert_eq!(v.score, -0.1);

        // CHECK-style: no body.
        let v = parse_response(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 2.3 / 5.0\r\n\r\n").unwrap();
        assert_eq!((v.spam, v.score, v.symbols.len()), (false, 2.3, 0));
    }

    #[test]
    fn errors_are_errors() {
        assert_eq!(parse_response(b""), Err(Error::Empty));
        assert_eq!(
            parse_response(b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch)\r\n"),
            Err(Error::Status { code: 76, message: "Bad header line: (Content-Length mismatch)".into() })
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"SPAMD/1.1 zero EX_OK\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\n\r\nGTUBE",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1 / 5\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam True\r\n\r\n",
        ] {
            assert!(matches!(parse_response(bad), Err(Error::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_response(&vec![b'a'; MAX_RESPONSE + 1]), Err(Error::TooLong));
    }
}
