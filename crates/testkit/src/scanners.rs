//! Real clamd and spamd for the proxy's scanning tests.
//!
//! clamd runs offline with a database holding one custom body signature
//! for the EICAR test string (PROTOCOLS.md §3.5), so it starts in a second
//! and needs no freshclam. spamd runs with `--local` (no network tests)
//! on Debian's shipped rules, which include GTUBE. Both listen on loopback
//! ports of their own and are stopped by PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{free_port, require, wait_for};

/// The EICAR anti-virus test string (68 bytes).
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The name clamd reports for it with the test database.
pub const EICAR_NAME: &str = "Eicar-Test-Custom.UNOFFICIAL";
/// SpamAssassin's GTUBE test string (scores 1000).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

const EICAR_NDB: &str = "Eicar-Test-Custom:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a\n";

pub struct Clamd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

impl Clamd {
    /// clamd with the EICAR test signature; `StreamMaxLength` 10M.
    pub fn start() -> Clamd {
        Clamd::start_with("10M")
    }

    pub fn start_with(stream_max_length: &str) -> Clamd {
        require("/usr/sbin/clamd", "clamav-daemon");
        let dir = tempfile::Builder::new().prefix("greygate-clamd-").tempdir().expect("temp dir");
        let port = free_port();
        std::fs::create_dir(dir.path().join("db")).expect("db dir");
        std::fs::create_dir(dir.path().join("tmp")).expect("tmp dir");
        std::fs::write(dir.path().join("db/custom.ndb"), EICAR_NDB).expect("custom.ndb");
        let d = dir.path().display();
        let config = format!(
            "Foreground yes\nDatabaseDirectory {d}/db\nLocalSocket {d}/clamd.sock\nTCPSocket {port}\nTCPAddr 127.0.0.1\nTemporaryDirectory {d}/tmp\nLogFile {d}/clamd.log\nStreamMaxLength {stream_max_length}\nReadTimeout 10\n"
        );
        std::fs::write(dir.path().join("clamd.conf"), config).expect("clamd.conf");
        let mut clamd = Clamd { dir, child: None, port };
        clamd.spawn();
        clamd
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("clamd.conf");
        let child = Command::new("/usr/sbin/clamd")
            .arg(format!("--config-file={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clamd");
        self.child = Some(child);
        let port = self.port;
        wait_for("clamd to answer PING", Duration::from_secs(60), || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("clamd exited with {status}; log:\n{}", self.log());
            }
            ping(("127.0.0.1", port), b"zPING\0", b"PONG")
        });
    }

    /// `host:port` for greygate's config.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The unix socket, as `unix:/path`.
    pub fn unix_address(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("clamd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    /// Stop clamd (it can be started again on the same port).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Spamd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
}

impl Spamd {
    pub fn start() -> Spamd {
        require("/usr/sbin/spamd", "spamd");
        let dir = tempfile::Builder::new().prefix("greygate-spamd-").tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("spamd.log")).expect("spamd.log");
        let child = Command::new("/usr/sbin/spamd")
            .args(["--local", "-x", "--max-children", "2", "--syslog=stderr"])
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--pidfile={}", dir.path().join("spamd.pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start spamd");
        let mut spamd = Spamd { dir, child: Some(child), port };
        wait_for("spamd to answer PING", Duration::from_secs(120), || {
            if let Some(Ok(Some(status))) = spamd.child.as_mut().map(|c| c.try_wait()) {
                panic!("spamd exited with {status}; log:\n{}", spamd.log());
            }
            ping(("127.0.0.1", port), b"PING SPAMC/1.5\r\n\r\n", b"PONG")
        });
        spamd
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("spamd.log")).unwrap_or_default()
    }

    /// Stop spamd (its parent; the parent ends its children).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Drop for Spamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Send `request`, read to the end, and check the answer has `want`.
fn ping(addr: (&str, u16), request: &[u8], want: &[u8]) -> Option<()> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request).ok()?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer.windows(want.len()).any(|w| w == want).then_some(())
}
