//! EHLO: what greygate announces to clients, and what it learns from the
//! upstream's EHLO reply.
//!
//! greygate announces only extensions it handles itself or can pass
//! through unchanged. Never CHUNKING (BDAT would need conversion to DATA),
//! never XCLIENT or XFORWARD (clients must not set their own address), and
//! STARTTLS only before TLS (RFC 3207 §4.2). AUTH only over TLS, and only
//! with the mechanisms the upstream offers, since AUTH is relayed.

use super::reply::Reply;

/// The extensions a session announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extensions {
    /// `SIZE` limit in bytes.
    pub size: u64,
    /// TLS is configured (STARTTLS is announced until it is active).
    pub starttls: bool,
    /// AUTH mechanisms to announce once TLS is active; empty for none.
    pub auth: Vec<String>,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            size: 10 * 1024 * 1024,
            starttls: false,
            auth: Vec::new(),
            eightbitmime: true,
            smtputf8: false,
            dsn: false,
        }
    }
}

impl Extensions {
    /// The EHLO reply for a session in the given TLS state.
    pub fn ehlo_reply(&self, hostname: &str, tls_active: bool) -> Reply {
        let mut lines = vec![hostname.to_owned(), "PIPELINING".into(), format!("SIZE {}", self.size)];
        if self.starttls && !tls_active {
            lines.push("STARTTLS".into());
        }
        if tls_active && !self.auth.is_empty() {
            lines.push(format!("AUTH {}", self.auth.join(" ")));
        }
        lines.push("ENHANCEDSTATUSCODES".into());
        if self.eightbitmime {
            lines.push("8BITMIME".into());
        }
        if self.dsn {
            lines.push("DSN".into());
        }
        if self.smtputf8 {
            lines.push("SMTPUTF8".into());
        }
        Reply { code: 250, lines }
    }
}

/// What an upstream server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Upper-cased keywords (`PIPELINING`, `STARTTLS`, ...).
    pub keywords: Vec<String>,
    /// `SIZE` value; 0 when absent or unlimited.
    pub size: u64,
    /// AUTH mechanisms, upper-cased.
    pub auth: Vec<String>,
    /// XCLIENT attribute names, upper-cased; `None` when not offered.
    pub xclient: Option<Vec<String>>,
    /// XFORWARD attribute names, upper-cased; `None` when not offered.
    pub xforward: Option<Vec<String>>,
}

impl Capabilities {
    /// Read a 250 EHLO reply (the first line is the server's name).
    pub fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            let keyword = keyword.to_ascii_uppercase();
            let args = || words.clone().map(str::to_ascii_uppercase).collect::<Vec<_>>();
            match keyword.as_str() {
                "SIZE" => caps.size = words.clone().next().and_then(|n| n.parse().ok()).unwrap_or(0),
                "AUTH" => caps.auth = args(),
                "XCLIENT" => caps.xclient = Some(args()),
                "XFORWARD" => caps.xforward = Some(args()),
                _ => {}
            }
            caps.keywords.push(keyword);
        }
        caps
    }

    pub fn has(&self, keyword: &str) -> bool {
        self.keywords.iter().any(|k| k == keyword)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_ehlo_never_offers_chunking_or_xclient_and_auth_only_over_tls() {
        let ext = Extensions { starttls: true, auth: vec!["PLAIN".into(), "LOGIN".into()], ..Extensions::default() };
        let plain = ext.ehlo_reply("gw.example", false).to_bytes();
        let plain = String::from_utf8(plain).unwrap();
        assert!(plain.starts_with("250-gw.example\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250-STARTTLS\r\n"));
        assert!(!plain.contains("AUTH") && !plain.contains("CHUNKING") && !plain.contains("XCLIENT"));
        let tls = String::from_utf8(ext.ehlo_reply("gw.example", true).to_bytes()).unwrap();
        assert!(!tls.contains("STARTTLS"));
        assert!(tls.contains("250-AUTH PLAIN LOGIN\r\n"));
        assert!(tls.ends_with("250 8BITMIME\r\n"));
    }

    #[test]
    fn upstream_capabilities_are_read() {
        let reply = Reply {
            code: 250,
            lines: [
                "mx.example",
                "PIPELINING",
                "SIZE 10240000",
                "auth plain login",
                "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT",
                "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT",
                "8BITMIME",
                "",
            ]
            .map(String::from)
            .to_vec(),
        };
        let caps = Capabilities::parse(&reply);
        assert!(caps.has("PIPELINING") && caps.has("8BITMIME") && !caps.has("STARTTLS"));
        assert_eq!(caps.size, 10_240_000);
        assert_eq!(caps.auth, ["PLAIN", "LOGIN"]);
        assert!(caps.xclient.as_ref().unwrap().iter().any(|a| a == "ADDR"));
        assert_eq!(caps.xforward.as_ref().unwrap().len(), 7);
    }
}
