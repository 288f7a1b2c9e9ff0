//! Telling the upstream MTA who the real client is: Postfix's XCLIENT and
//! XFORWARD commands (PROTOCOLS.md §5), with their xtext encoding.
//!
//! XCLIENT replaces the client attributes the upstream uses for access
//! control and must be followed by a new EHLO; XFORWARD only changes what
//! the upstream logs and writes in its Received header, and must be sent
//! before every MAIL. Both are built here as complete command lines that
//! respect the 512-byte command limit; sending them is the front end's job.

use std::net::{IpAddr, SocketAddr};

/// Longest command line the upstream must accept, CRLF included.
const MAX_COMMAND: usize = 512;

/// Longest attribute value XFORWARD accepts, and a safe bound for XCLIENT.
const MAX_VALUE: usize = 255;

/// Encode `value` as xtext (RFC 3461 §4): `+XX` for `+`, `=`, and every
/// byte outside `!`..`~`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Decode xtext leniently (Postfix before 2.3 sent plain values): a `+`
/// not followed by two hex digits is kept as it is.
pub fn xtext_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(s) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(s, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The client as greygate knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub addr: SocketAddr,
    /// Forward-confirmed host name; `None` is sent as `[UNAVAILABLE]`, or
    /// as `[TEMPUNAVAIL]` after a temporary lookup failure.
    pub name: Option<String>,
    /// The PTR name, confirmed or not (XCLIENT `REVERSE_NAME`).
    pub reverse_name: Option<String>,
    /// The name lookup failed temporarily.
    pub name_tempfail: bool,
    /// The HELO/EHLO argument; `None` before the client sent one.
    pub helo: Option<String>,
    /// The client used EHLO (ESMTP) rather than HELO.
    pub esmtp: bool,
    /// The address the client connected to.
    pub local: Option<SocketAddr>,
}

fn addr_value(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPV6:{v6}"),
        },
    }
}

/// A host name attribute: the name, or why there is none.
fn name_value(name: Option<&str>, tempfail: bool) -> String {
    match name {
        Some(name) => bounded(name),
        None if tempfail => "[TEMPUNAVAIL]".into(),
        None => "[UNAVAILABLE]".into(),
    }
}

fn bounded(value: &str) -> String {
    let mut end = value.len().min(MAX_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    xtext(&value[..end])
}

/// Pack `name=value` attributes into as few `COMMAND ...` lines as fit
/// in 512 bytes each (CRLF included), in the given order.
fn pack(command: &str, attrs: &[(String, String)]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::from(command);
    for (name, value) in attrs {
        let attr = format!(" {name}={value}");
        if line.len() > command.len() && line.len() + attr.len() + 2 > MAX_COMMAND {
            lines.push(std::mem::replace(&mut line, String::from(command)));
        }
        line.push_str(&attr);
    }
    if line.len() > command.len() {
        lines.push(line);
    }
    lines
}

/// XCLIENT command lines for `client`, using only the attributes the
/// upstream offered (`offered`, upper case). NAME and ADDR go last: once
/// ADDR is set, Postfix re-checks whether greygate may send XCLIENT at all
/// (PROTOCOLS.md §5.2). HELO and PROTO are left to the EHLO greygate
/// replays after the new greeting.
pub fn xclient(client: &ClientIdentity, offered: &[String]) -> Vec<String> {
    let has = |a: &str| offered.iter().any(|o| o == a);
    let mut attrs = Vec::new();
    if let Some(local) = client.local {
        if has("DESTADDR") {
            attrs.push(("DESTADDR".into(), xtext(&addr_value(local.ip()))));
        }
        if has("DESTPORT") {
            attrs.push(("DESTPORT".into(), local.port().to_string()));
        }
    }
    if has("PORT") {
        attrs.push(("PORT".into(), client.addr.port().to_string()));
    }
    if has("REVERSE_NAME") {
        attrs.push(("REVERSE_NAME".into(), name_value(client.reverse_name.as_deref(), client.name_tempfail)));
    }
    if has("NAME") {
        attrs.push(("NAME".into(), name_value(client.name.as_deref(), client.name_tempfail)));
    }
    if has("ADDR") {
        attrs.push(("ADDR".into(), xtext(&addr_value(client.addr.ip()))));
    }
    pack("XCLIENT", &attrs)
}

/// XFORWARD command lines for `client` (before each MAIL), using only the
/// attributes the upstream offered.
pub fn xforward(client: &ClientIdentity, offered: &[String]) -> Vec<String> {
    let has = |a: &str| offered.iter().any(|o| o == a);
    let mut attrs = Vec::new();
    if has("NAME") {
        attrs.push(("NAME".into(), name_value(client.name.as_deref(), client.name_tempfail)));
    }
    if has("ADDR") {
        attrs.push(("ADDR".into(), xtext(&addr_value(client.addr.ip()))));
    }
    if has("PORT") {
        attrs.push(("PORT".into(), client.addr.port().to_string()));
    }
    if has("PROTO") {
        attrs.push(("PROTO".into(), if client.esmtp { "ESMTP" } else { "SMTP" }.into()));
    }
    if has("HELO") {
        attrs.push(("HELO".into(), client.helo.as_deref().map_or("[UNAVAILABLE]".into(), bounded)));
    }
    if has("SOURCE") {
        attrs.push(("SOURCE".into(), "REMOTE".into()));
    }
    pack("XFORWARD", &attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn xtext_round_trips() {
        assert_eq!(xtext("a b+c=d\u{e9}"), "a+20b+2Bc+3Dd+C3+A9");
        assert_eq!(xtext_decode("a+20b+2Bc+3Dd+C3+A9"), "a b+c=d\u{e9}");
        assert_eq!(xtext_decode("plain+zz"), "plain+zz");
    }

    #[test]
    fn xclient_sends_offered_attributes_with_addr_last() {
        let client = ClientIdentity {
            addr: "[2001:db8::7]:51234".parse().unwrap(),
            name: None,
            reverse_name: None,
            name_tempfail: false,
            helo: Some("client.example".into()),
            esmtp: true,
            local: Some("192.0.2.1:25".parse().unwrap()),
        };
        let all = offered("NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT");
        assert_eq!(
            xclient(&client, &all),
            [
                "XCLIENT DESTADDR=192.0.2.1 DESTPORT=25 PORT=51234 REVERSE_NAME=[UNAVAILABLE] NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::7"
            ]
        );
        assert_eq!(xclient(&client, &offered("NAME ADDR")), ["XCLIENT NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::7"]);
    }

    #[test]
    fn names_are_sent_as_looked_up_or_as_why_they_are_missing() {
        let mut client = ClientIdentity {
            addr: "192.0.2.10:25000".parse().unwrap(),
            name: Some("mail.example.org".into()),
            reverse_name: Some("mail.example.org".into()),
            name_tempfail: false,
            helo: None,
            esmtp: true,
            local: None,
        };
        let xclient_offered = offered("NAME ADDR REVERSE_NAME");
        assert_eq!(
            xclient(&client, &xclient_offered),
            ["XCLIENT REVERSE_NAME=mail.example.org NAME=mail.example.org ADDR=192.0.2.10"]
        );
        // A PTR that does not resolve back: no verified name.
        client.name = None;
        assert_eq!(
            xclient(&client, &xclient_offered),
            ["XCLIENT REVERSE_NAME=mail.example.org NAME=[UNAVAILABLE] ADDR=192.0.2.10"]
        );
        assert!(xforward(&client, &offered("NAME ADDR"))[0].starts_with("XFORWARD NAME=[UNAVAILABLE] "));
        // DNS failed: the name may exist.
        client.reverse_name = None;
        client.name_tempfail = true;
        assert_eq!(
            xclient(&client, &xclient_offered),
            ["XCLIENT REVERSE_NAME=[TEMPUNAVAIL] NAME=[TEMPUNAVAIL] ADDR=192.0.2.10"]
        );
        assert!(xforward(&client, &offered("NAME ADDR"))[0].starts_with("XFORWARD NAME=[TEMPUNAVAIL] "));
    }

    #[test]
    fn xforward_lines_stay_within_512_bytes() {
        let client = ClientIdentity {
            addr: "192.0.2.10:25000".parse().unwrap(),
            name: Some("n".repeat(300)),
            reverse_name: None,
            name_tempfail: false,
            helo: Some("h".repeat(300)),
            esmtp: false,
            local: None,
        };
        let lines = xforward(&client, &offered("NAME ADDR PROTO HELO SOURCE PORT IDENT"));
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() + 2 <= 512 && l.starts_with("XFORWARD ")));
        let all = lines.join(" ");
        assert!(all.contains("ADDR=192.0.2.10") && all.contains("PROTO=SMTP") && all.contains("SOURCE=REMOTE"));
        assert!(all.contains(&format!("NAME={}", "n".repeat(255))));
    }
}
