//! Test-only helpers: the real programs a user runs next to greygate, and
//! greygate itself as a process.
//!
//! - [`greygate`]: start the binary with a config, follow its JSON log,
//!   signal it, kill it.
//! - [`postfix`]: a private Postfix instance (own config and queue
//!   directories, loopback ports) as policy client and downstream MTA.
//! - [`swaks`]: run swaks against it.
//! - [`policy`]: a raw Postfix-policy client for byte-exact tests.
//! - [`qmail`]: qmail-smtpd's greylisting UDP client, byte for byte.
//! - [`smtp`]: a raw SMTP client (with STARTTLS) for byte-exact tests.
//! - [`fake_mta`]: a scripted upstream that fails on cue.
//! - [`haproxy`]: haproxy sending the PROXY protocol.
//! - [`certs`]: a self-signed test certificate.
//! - [`scanners`]: clamd (EICAR test signature) and spamd (GTUBE).
//! - [`dns`]: an in-process DNS server on 127.0.0.1 (TXT, A, AAAA, PTR,
//!   NXDOMAIN, timeouts) for SPF, DNSBL and reverse-DNS tests.
//! - [`redis`], [`postgres`]: a private key prefix or schema on the shared
//!   servers, or a private server to kill and restart.
//!
//! Processes are stopped by the PID the helper started, never by name.
//! Nothing here sleeps a fixed time: waits poll a condition up to a
//! deadline.

pub mod certs;
pub mod dns;
pub mod fake_mta;
pub mod greygate;
pub mod haproxy;
pub mod policy;
pub mod postfix;
pub mod postgres;
pub mod qmail;
pub mod redis;
pub mod scanners;
pub mod smtp;
pub mod swaks;

use std::time::{Duration, Instant};

/// Poll `f` until it gives `Some`, or panic with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for programs that
/// must be told a port; greygate itself binds port 0 and reports it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Whether a program is installed (on PATH or at an absolute path).
pub fn installed(program: &str) -> bool {
    if program.starts_with('/') {
        return std::path::Path::new(program).exists();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).exists()))
}

/// Panic with install instructions if a required peer is missing.
pub fn require(program: &str, package: &str) {
    assert!(installed(program), "{program} is not installed; run `bash .ci/run` once, or `apt-get install {package}`");
}
