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
        match state.to_ascii_uppercase().as_str() {
            "CONNECT" => Stage::Connect,
            "EHLO" | "HELO" => Stage::Helo,
            "MAIL" => Stage::Mail,
            "RCPT" => Stage::Rcpt,
            "DATA" | "BDAT" => Stage::Data,
            "END-OF-MESSAGE" => Stage::EndOfMessage,
            _ => Stage::Other,
        }
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
