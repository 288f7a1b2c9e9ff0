//! What a front end knows about the mail it asks about.
//!
//! Each front end (policy server, SMTP proxy, qmail UDP) translates its own
//! protocol into [`Facts`]; the engine never sees protocol details.

use std::fmt;
use std::net::IpAddr;

/// The SMTP stage a question is asked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    EndOfMessage,
    /// A stage greygate does not act on (VRFY, ETRN, ...).
    Other,
}

impl Stage {
    /// Parse Postfix's `protocol_state` names.
    pub fn from_postfix(state: &str) -> Stage {
        const STAGES: [(&str, Stage); 8] = [
            ("RCPT", Stage::Rcpt),
            ("DATA", Stage::Data),
            ("END-OF-MESSAGE", Stage::EndOfMessage),
            ("CONNECT", Stage::Connect),
            ("EHLO", Stage::Helo),
            ("HELO", Stage::Helo),
            ("MAIL", Stage::Mail),
            ("BDAT", Stage::Data),
        ];
        // Case-insensitive without an upper-cased copy, the most frequent
        // state first: this runs on every policy request.
        STAGES.iter().find(|(name, _)| name.eq_ignore_ascii_case(state)).map_or(Stage::Other, |&(_, stage)| stage)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Helo => "helo",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::EndOfMessage => "end-of-message",
            Stage::Other => "other",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One question about one recipient of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub stage: Stage,
    pub client_ip: IpAddr,
    /// Forward-confirmed client hostname; `None` when it could not be
    /// verified (Postfix's `unknown`). Hostname lists match only this name,
    /// never an unverified PTR, so they cannot be spoofed by a PTR record.
    pub client_name: Option<String>,
    /// PTR name, unverified; `None` when there is none.
    pub reverse_name: Option<String>,
    pub helo: Option<String>,
    /// Envelope sender as given, without angle brackets; `Some("")` is the
    /// null sender, `None` means not known yet.
    pub sender: Option<String>,
    /// Envelope recipient as given; `None` before RCPT.
    pub recipient: Option<String>,
    /// SASL login name when the client authenticated.
    pub authenticated: Option<String>,
    /// The client connection is encrypted.
    pub tls: bool,
}

impl Facts {
    /// Facts for a client at `stage`, everything else unknown.
    pub fn new(stage: Stage, client_ip: IpAddr) -> Facts {
        Facts {
            stage,
            client_ip,
            client_name: None,
            reverse_name: None,
            helo: None,
            sender: None,
            recipient: None,
            authenticated: None,
            tls: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_protocol_states_are_read_in_any_case() {
        for (state, stage) in [
            ("RCPT", Stage::Rcpt),
            ("rcpt", Stage::Rcpt),
            ("Data", Stage::Data),
            ("BDAT", Stage::Data),
            ("END-OF-MESSAGE", Stage::EndOfMessage),
            ("connect", Stage::Connect),
            ("EHLO", Stage::Helo),
            ("helo", Stage::Helo),
            ("MAIL", Stage::Mail),
            ("VRFY", Stage::Other),
            ("", Stage::Other),
            ("RCPT ", Stage::Other),
        ] {
            assert_eq!(Stage::from_postfix(state), stage, "{state:?}");
        }
    }
}
