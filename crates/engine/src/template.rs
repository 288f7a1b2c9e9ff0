//! SMTP replies and the texts administrators can customise.
//!
//! A [`Template`] is text with `{name}` placeholders, checked when the
//! config is loaded so that a typo fails at start-up, not at 3 a.m. in the
//! middle of a reply. `{{` and `}}` stand for literal braces.

use std::fmt;

/// A placeholder a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Seconds until a retry can pass.
    Remaining,
    /// The configured delay, in seconds.
    Delay,
    /// Seconds the message was delayed (X-Greylist header).
    Delayed,
    Recipient,
    RecipientDomain,
    Sender,
    /// Client address.
    Client,
    /// This gateway's host name.
    Host,
    /// greygate's version.
    Version,
    /// The decision time, RFC 5322 date.
    Date,
}

impl Field {
    const ALL: [(&'static str, Field); 10] = [
        ("remaining", Field::Remaining),
        ("delay", Field::Delay),
        ("delayed", Field::Delayed),
        ("recipient", Field::Recipient),
        ("recipient_domain", Field::RecipientDomain),
        ("sender", Field::Sender),
        ("client", Field::Client),
        ("host", Field::Host),
        ("version", Field::Version),
        ("date", Field::Date),
    ];
}

/// Values for the placeholders; unset ones render empty.
#[derive(Debug, Default, Clone)]
pub struct Vars<'a> {
    pub remaining: Option<i64>,
    pub delay: Option<i64>,
    pub delayed: Option<i64>,
    pub recipient: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub client: Option<std::net::IpAddr>,
    pub host: Option<&'a str>,
    pub date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// Text with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}}; known: {1}")]
    Unknown(String, String),
    #[error("unclosed '{{' in {0:?}")]
    Unclosed(String),
    #[error("the reply must start with a 3-digit code: {0:?}")]
    Code(String),
    #[error("code {code} is not allowed here; expected {expected}")]
    WrongClass { code: u16, expected: &'static str },
    #[error("enhanced status {status} does not match code {code}")]
    StatusMismatch { code: u16, status: String },
    #[error("text contains a line break or NUL")]
    LineBreak,
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        if s.contains(['\r', '\n', '\0']) {
            return Err(TemplateError::LineBreak);
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let brace = rest.as_bytes()[i];
            rest = &rest[i + 1..];
            if rest.as_bytes().first() == Some(&brace) {
                text.push(brace as char);
                rest = &rest[1..];
                continue;
            }
            if brace == b'}' {
                text.push('}');
                continue;
            }
            let Some(end) = rest.find('}') else {
                return Err(TemplateError::Unclosed(s.into()));
            };
            let name = &rest[..end];
            let field = Field::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).ok_or_else(|| {
                let known: Vec<_> = Field::ALL.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                TemplateError::Unknown(name.into(), known.join(" "))
            })?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Field(field));
            rest = &rest[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts, source: s.into() })
    }

    pub fn render(&self, vars: &Vars<'_>) -> String {
        use std::fmt::Write;
        // Values come from clients; never let them break a reply line.
        fn push_clean(out: &mut String, s: &str) {
            out.extend(s.chars().map(|c| if matches!(c, '\r' | '\n' | '\0') { ' ' } else { c }));
        }
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => {
                    let _ = match f {
                        Field::Remaining => write_opt(&mut out, vars.remaining),
                        Field::Delay => write_opt(&mut out, vars.delay),
                        Field::Delayed => write_opt(&mut out, vars.delayed),
                        Field::Recipient => {
                            push_clean(&mut out, vars.recipient.unwrap_or(""));
                            Ok(())
                        }
                        Field::RecipientDomain => {
                            push_clean(&mut out, vars.recipient.and_then(crate::address::domain_of).unwrap_or(""));
                            Ok(())
                        }
                        Field::Sender => {
                            push_clean(&mut out, vars.sender.unwrap_or(""));
                            Ok(())
                        }
                        Field::Client => match vars.client {
                            Some(ip) => write!(out, "{ip}"),
                            None => Ok(()),
                        },
                        Field::Host => {
                            push_clean(&mut out, vars.host.unwrap_or(""));
                            Ok(())
                        }
                        Field::Version => write!(out, "{}", env!("CARGO_PKG_VERSION")),
                        Field::Date => {
                            push_clean(&mut out, vars.date.as_deref().unwrap_or(""));
                            Ok(())
                        }
                    };
                }
            }
        }
        out
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

fn write_opt(out: &mut String, v: Option<i64>) -> fmt::Result {
    use std::fmt::Write;
    match v {
        Some(v) => write!(out, "{v}"),
        None => Ok(()),
    }
}

/// A concrete SMTP reply: code, optional enhanced status, text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: Option<String>,
    pub text: String,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(s) = &self.status {
            write!(f, " {s}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

impl Reply {
    /// The status and text, as a Postfix action carries them after its
    /// keyword (`DEFER_IF_PERMIT 4.7.1 text`).
    pub fn status_and_text(&self) -> String {
        match &self.status {
            Some(s) if self.text.is_empty() => s.clone(),
            Some(s) => [s.as_str(), " ", &self.text].concat(),
            None => self.text.clone(),
        }
    }
}

/// A configured reply: `451 4.7.1 Greylisted, try again in {remaining} s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTemplate {
    pub code: u16,
    pub status: Option<String>,
    pub text: Template,
}

/// Which class of codes a configured reply must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyClass {
    Temporary,
    Permanent,
}

impl ReplyTemplate {
    pub fn parse(s: &str, class: ReplyClass) -> Result<ReplyTemplate, TemplateError> {
        let s = s.trim();
        let (code_str, rest) = s.split_once(' ').unwrap_or((s, ""));
        let code: u16 = code_str
            .parse()
            .ok()
            .filter(|c| (200..600).contains(c) && code_str.len() == 3)
            .ok_or_else(|| TemplateError::Code(s.into()))?;
        let expected = match class {
            ReplyClass::Temporary => (400..500, "a 4xx code"),
            ReplyClass::Permanent => (500..600, "a 5xx code"),
        };
        if !expected.0.contains(&code) {
            return Err(TemplateError::WrongClass { code, expected: expected.1 });
        }
        let rest = rest.trim_start();
        let (status, text) = match rest.split_once(' ').unwrap_or((rest, "")) {
            (first, text) if is_enhanced_status(first) => (Some(first.to_owned()), text),
            _ => (None, rest),
        };
        if let Some(st) = &status
            && !st.starts_with(char::from(b'0' + (code / 100) as u8))
        {
            return Err(TemplateError::StatusMismatch { code, status: st.clone() });
        }
        Ok(ReplyTemplate { code, status, text: Template::parse(text)? })
    }

    pub fn render(&self, vars: &Vars<'_>) -> Reply {
        Reply { code: self.code, status: self.status.clone(), text: self.text.render(vars) }
    }
}

impl fmt::Display for ReplyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(s) = &self.status {
            write!(f, " {s}")?;
        }
        if !self.text.as_str().is_empty() {
            write!(f, " {}", self.text.as_str())?;
        }
        Ok(())
    }
}

/// `4.7.1`: class digit, then two dot-separated numbers (RFC 3463).
fn is_enhanced_status(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: Option<&str>, max: usize| {
        p.is_some_and(|p| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let class = parts.next();
    class.is_some_and(|c| matches!(c, "2" | "4" | "5"))
        && ok(parts.next(), 3)
        && ok(parts.next(), 3)
        && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_validate() {
        let t = Template::parse("try again in {remaining}s to {recipient_domain} {{literal}} }").unwrap();
        let vars = Vars { remaining: Some(42), recipient: Some("bob@example.net"), ..Vars::default() };
        assert_eq!(t.render(&vars), "try again in 42s to example.net {literal} }");
        assert!(matches!(Template::parse("{nope}"), Err(TemplateError::Unknown(..))));
        assert!(matches!(Template::parse("{remaining"), Err(TemplateError::Unclosed(_))));
        assert_eq!(Template::parse("a\nb"), Err(TemplateError::LineBreak));
        let evil = Vars { sender: Some("a\r\nRSET"), ..Vars::default() };
        assert_eq!(Template::parse("from {sender}").unwrap().render(&evil), "from a  RSET");
    }

    #[test]
    fn replies_parse_with_class_and_status_checks() {
        let r =
            ReplyTemplate::parse("451 4.7.1 Greylisted, retry in {remaining} seconds", ReplyClass::Temporary).unwrap();
        assert_eq!((r.code, r.status.as_deref()), (451, Some("4.7.1")));
        let reply = r.render(&Vars { remaining: Some(300), ..Vars::default() });
        assert_eq!(reply.to_string(), "451 4.7.1 Greylisted, retry in 300 seconds");
        assert_eq!(reply.status_and_text(), "4.7.1 Greylisted, retry in 300 seconds");

        let plain = ReplyTemplate::parse("450 Please come back later", ReplyClass::Temporary).unwrap();
        assert_eq!((plain.status, plain.text.as_str()), (None, "Please come back later"));
        assert_eq!(ReplyTemplate::parse("554 5.7.1", ReplyClass::Permanent).unwrap().to_string(), "554 5.7.1");

        for (bad, class) in [
            ("550 5.7.1 no", ReplyClass::Temporary),
            ("451 4.7.1 no", ReplyClass::Permanent),
            ("451 5.7.1 mismatch", ReplyClass::Temporary),
            ("45 short", ReplyClass::Temporary),
            ("4510 long", ReplyClass::Temporary),
            ("hello", ReplyClass::Temporary),
        ] {
            assert!(ReplyTemplate::parse(bad, class).is_err(), "{bad}");
        }
    }
}
