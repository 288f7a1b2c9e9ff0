//! Every reply the proxy makes up itself, and how upstream answers and
//! failures become replies for the client — in one place.
//!
//! The rule that keeps mail safe: a failure anywhere on the upstream side
//! is a 4xx (the sender retries), never a 2xx. Upstream refusals are passed
//! on with their own code and text, except `421` (the upstream is closing),
//! which becomes a transaction-level `451`: greygate's session with the
//! client goes on, and the next transaction opens a new upstream session.

use greygate_proto::smtp::Reply;

use super::upstream::UpstreamError;
use crate::config::scan::ScanAction;

/// Where in a transaction a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Rcpt,
    Data,
    EndOfData,
    Auth,
}

/// An upstream reply, as the client sees it.
pub fn relay(reply: Reply) -> Reply {
    if reply.code == 421 {
        let text = reply.lines.join(" ");
        return Reply::new(451, format!("4.4.2 Mail server closing: {text}"));
    }
    reply
}

/// An upstream failure, as the client sees it.
pub fn upstream_failure(error: &UpstreamError, step: Step) -> Reply {
    match (error, step) {
        // Only a refusal is passed on: an odd positive answer to a session
        // command must not turn into a 2xx for the client.
        (UpstreamError::Refused(reply), _) if reply.code >= 400 => relay(reply.clone()),
        (_, Step::EndOfData) => Reply::new(
            451,
            "4.4.2 Message not accepted: lost the connection to the mail server, please try again later",
        ),
        (_, Step::Auth) => Reply::new(454, "4.7.0 Temporary authentication failure"),
        _ => Reply::new(451, "4.4.1 Mail server unavailable, please try again later"),
    }
}

pub fn greeting(hostname: &str) -> Reply {
    Reply::new(220, format!("{hostname} ESMTP greygate"))
}

pub fn relay_denied(recipient: &str) -> Reply {
    Reply::new(554, format!("5.7.1 <{recipient}>: Relay access denied"))
}

pub fn too_many_sessions(hostname: &str) -> Reply {
    Reply::new(421, format!("4.3.2 {hostname} Error: too many connections, please try again later"))
}

pub fn too_many_from_ip(hostname: &str) -> Reply {
    Reply::new(421, format!("4.7.0 {hostname} Error: too many connections from your address"))
}

pub fn overloaded(hostname: &str) -> Reply {
    Reply::new(421, format!("4.3.2 {hostname} Error: system overloaded, please try again later"))
}

pub fn early_talker(hostname: &str) -> Reply {
    Reply::new(554, format!("5.5.0 {hostname} Error: SMTP protocol synchronization (talked before the greeting)"))
}

pub fn timeout(hostname: &str) -> Reply {
    Reply::new(421, format!("4.4.2 {hostname} Error: timeout exceeded"))
}

pub fn shutting_down(hostname: &str) -> Reply {
    Reply::new(421, format!("4.3.2 {hostname} Service shutting down, please try again later"))
}

pub fn tls_unavailable() -> Reply {
    Reply::new(454, "4.7.0 TLS not available due to local problem")
}

pub fn auth_unavailable() -> Reply {
    Reply::new(454, "4.7.0 Temporary authentication failure")
}

pub fn message_too_big() -> Reply {
    Reply::new(552, "5.3.4 Message size exceeds fixed limit")
}

pub fn bare_newline() -> Reply {
    Reply::new(550, "5.5.2 Message contains bare CR or LF characters")
}

pub fn ok(status: &str) -> Reply {
    Reply::new(250, format!("{status} Ok"))
}

pub fn start_data() -> Reply {
    Reply::new(354, "End data with <CR><LF>.<CR><LF>")
}

/// An engine refusal as an SMTP reply.
pub fn engine(reply: &greygate_engine::Reply) -> Reply {
    Reply::new(reply.code, reply.status_and_text())
}

// Content scanning (crate::scan): the action decides 5xx or 4xx.

pub fn virus_reply(action: ScanAction, name: &str) -> Reply {
    let name: String = name.chars().filter(|c| c.is_ascii_graphic()).take(100).collect();
    match action {
        ScanAction::Tempfail => Reply::new(451, format!("4.7.1 Message deferred: virus found ({name})")),
        _ => Reply::new(554, format!("5.7.1 Message refused: virus found ({name})")),
    }
}

pub fn spam_reply(action: ScanAction, score: f64) -> Reply {
    match action {
        ScanAction::Tempfail => Reply::new(
            451,
            format!("4.7.1 Message deferred as possible spam (score {score:.1}), please try again later"),
        ),
        _ => Reply::new(554, format!("5.7.1 Message refused as spam (score {score:.1})")),
    }
}

pub fn scanner_failed_reply(action: ScanAction) -> Reply {
    match action {
        ScanAction::Reject => Reply::new(554, "5.3.0 Message refused: it could not be scanned"),
        _ => Reply::new(451, "4.3.0 Message could not be scanned now, please try again later"),
    }
}

pub fn too_big_reply(action: ScanAction) -> Reply {
    match action {
        ScanAction::Reject => Reply::new(552, "5.3.4 Message too big to be scanned"),
        _ => Reply::new(451, "4.3.4 Message too big to be scanned now, please try again later"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_are_never_positive() {
        let failures = [
            UpstreamError::Timeout,
            UpstreamError::Closed,
            UpstreamError::Unavailable("x".into()),
            UpstreamError::Protocol("x".into()),
            UpstreamError::Tls("x".into()),
            UpstreamError::Io(std::io::Error::other("x")),
            UpstreamError::Refused(Reply::new(421, "4.3.2 bye")),
            UpstreamError::Refused(Reply::new(250, "2.0.0 Ok")),
            UpstreamError::Refused(Reply::new(354, "go ahead")),
        ];
        for error in &failures {
            for step in [Step::Rcpt, Step::Data, Step::EndOfData, Step::Auth] {
                let reply = upstream_failure(error, step);
                assert!(reply.is_transient(), "{error} at {step:?} gave {reply}");
            }
        }
        assert_eq!(relay(Reply::new(550, "5.1.1 no such user")).code, 550);
        assert_eq!(relay(Reply::new(421, "4.3.2 bye")).code, 451);
    }
}
