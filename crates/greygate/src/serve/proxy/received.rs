//! The Received header for greygate's hop (RFC 5321 §4.4), with the
//! protocol names of RFC 3848 (ESMTPS, ESMTPA, ESMTPSA).

use std::net::IpAddr;

pub struct Hop<'a> {
    pub helo: Option<&'a str>,
    /// Verified client host name.
    pub name: Option<&'a str>,
    pub ip: IpAddr,
    /// Our host name.
    pub by: &'a str,
    pub esmtp: bool,
    pub tls: bool,
    pub authenticated: bool,
    pub id: &'a str,
    /// The recipient, when there is exactly one.
    pub recipient: Option<&'a str>,
    pub now: i64,
}

/// Client-supplied text as a safe header token: printable ASCII, no
/// parentheses or semicolons that would confuse parsers of the line.
fn token(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | ';' | '<' | '>' | '[' | ']'))
        .take(255)
        .collect();
    if cleaned.is_empty() { "unknown".into() } else { cleaned }
}

/// The header in wire form, folded, ending with CRLF.
pub fn header(hop: &Hop<'_>) -> String {
    let ip = match hop.ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    let mut proto = String::from(if hop.esmtp { "ESMTP" } else { "SMTP" });
    if hop.esmtp && hop.tls {
        proto.push('S');
    }
    if hop.esmtp && hop.authenticated {
        proto.push('A');
    }
    let helo = hop.helo.map_or_else(|| "unknown".into(), token);
    let name = hop.name.map_or_else(|| "unknown".into(), token);
    let date = greygate_engine::engine::rfc5322_date(hop.now);
    let mut out = format!(
        "Received: from {helo} ({name} [{ip}])\r\n\tby {by} (greygate {version}) with {proto} id {id}",
        by = hop.by,
        version = env!("CARGO_PKG_VERSION"),
        id = hop.id,
    );
    if let Some(rcpt) = hop.recipient {
        out.push_str(&format!(
            "\r\n\tfor <{}>",
            rcpt.chars().filter(|c| !c.is_control() && *c != '>').collect::<String>()
        ));
    }
    out.push_str(&format!("; {date}\r\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_header_names_the_client_and_protocol() {
        let hop = Hop {
            helo: Some("client.example (evil; x)"),
            name: None,
            ip: "2001:db8::1".parse().unwrap(),
            by: "gw.example",
            esmtp: true,
            tls: true,
            authenticated: false,
            id: "S1",
            recipient: Some("bob@test.example"),
            now: 1_700_000_000,
        };
        let h = header(&hop);
        assert!(
            h.starts_with(
                "Received: from client.exampleevilx (unknown [IPv6:2001:db8::1])\r\n\tby gw.example (greygate "
            ),
            "{h}"
        );
        assert!(
            h.contains(") with ESMTPS id S1\r\n\tfor <bob@test.example>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"),
            "{h}"
        );
    }
}
