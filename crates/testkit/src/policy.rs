//! A raw Postfix-policy client: exact bytes in, exact bytes out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The attributes Postfix 3.7 sends at RCPT, in its order (PROTOCOLS.md §1.2).
pub fn rcpt_request(client: &str, sender: &str, recipient: &str, instance: &str) -> String {
    let attrs = [
        ("request", "smtpd_access_policy"),
        ("protocol_state", "RCPT"),
        ("protocol_name", "ESMTP"),
        ("client_address", client),
        ("client_name", "unknown"),
        ("client_port", "51234"),
        ("reverse_client_name", "unknown"),
        ("server_address", "127.0.0.1"),
        ("server_port", "25"),
        ("helo_name", "client.example"),
        ("sender", sender),
        ("recipient", recipient),
        ("recipient_count", "0"),
        ("queue_id", ""),
        ("instance", instance),
        ("size", "0"),
        ("etrn_domain", ""),
        ("stress", ""),
        ("sasl_method", ""),
        ("sasl_username", ""),
        ("sasl_sender", ""),
        ("ccert_subject", ""),
        ("ccert_issuer", ""),
        ("ccert_fingerprint", ""),
        ("ccert_pubkey_fingerprint", ""),
        ("encryption_protocol", ""),
        ("encryption_cipher", ""),
        ("encryption_keysize", "0"),
        ("policy_context", ""),
        ("compatibility_level", "3.6"),
        ("mail_version", "3.7.11"),
    ];
    let mut out = String::new();
    for (k, v) in attrs {
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// A persistent policy connection, as a Postfix smtpd process keeps one.
pub struct PolicyClient {
    stream: TcpStream,
}

impl PolicyClient {
    pub fn connect(addr: SocketAddr) -> PolicyClient {
        let stream = TcpStream::connect(addr).expect("connect to the policy server");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        PolicyClient { stream }
    }

    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Read one reply: bytes up to and including the empty line.
    pub fn reply(&mut self) -> String {
        self.try_reply().unwrap_or_else(|partial| panic!("connection closed or failed after {partial:?}"))
    }

    /// Read one reply, or give what arrived before the connection closed.
    pub fn try_reply(&mut self) -> Result<String, String> {
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\n\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => out.push(byte[0]),
                _ => return Err(String::from_utf8_lossy(&out).into_owned()),
            }
        }
        Ok(String::from_utf8(out).expect("utf-8 reply"))
    }

    /// Send a request and return the action (the text after `action=`).
    pub fn ask(&mut self, request: &str) -> String {
        self.send(request.as_bytes());
        let reply = self.reply();
        reply.strip_prefix("action=").and_then(|r| r.strip_suffix("\n\n")).unwrap_or(&reply).to_owned()
    }

    /// True when the server closed the connection without sending anything
    /// more (waits up to the read timeout).
    pub fn closed_without_reply(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.stream.read(&mut buf), Ok(0))
    }
}
