//! swaks, the SMTP test client, against a local port.

use std::process::Command;

use crate::require;

/// What swaks printed and how it ended.
#[derive(Debug)]
pub struct Session {
    pub code: i32,
    pub transcript: String,
}

impl Session {
    /// The last server reply line starting with `code` (e.g. "450").
    pub fn reply(&self, code: &str) -> Option<&str> {
        // Plaintext (`<-`, `<**`) and TLS (`<~`, `<~*`) replies.
        self.transcript.lines().rfind(|l| {
            ["<** ", "<-  ", "<~* ", "<~  "].iter().any(|p| l.trim_start().starts_with(&format!("{p}{code}")))
        })
    }

    /// swaks exits 0 only when the message was accepted.
    pub fn delivered(&self) -> bool {
        self.code == 0
    }
}

/// Run swaks against 127.0.0.1:`port` with extra arguments.
pub fn swaks(port: u16, args: &[&str]) -> Session {
    require("swaks", "swaks");
    let server = format!("127.0.0.1:{port}");
    let out = Command::new("swaks")
        .args(["--server", &server, "--timeout", "30", "--hide-informational"])
        .args(args)
        .output()
        .expect("run swaks");
    Session {
        code: out.status.code().unwrap_or(-1),
        transcript: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    }
}
