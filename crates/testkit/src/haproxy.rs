//! haproxy in TCP mode in front of greygate, sending the PROXY protocol
//! header (`send-proxy` or `send-proxy-v2`), as a load balancer would.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{free_port, require, wait_for};

pub struct Haproxy {
    _dir: tempfile::TempDir,
    child: Child,
    /// Where clients connect (127.0.0.1).
    pub port: u16,
}

impl Haproxy {
    /// Relay 127.0.0.1:<new port> to `backend` with `send-proxy` (v1) or
    /// `send-proxy-v2`.
    pub fn start(backend: std::net::SocketAddr, v2: bool) -> Haproxy {
        require("/usr/sbin/haproxy", "haproxy");
        let dir = tempfile::Builder::new().prefix("greygate-haproxy-").tempdir().expect("temp dir");
        let port = free_port();
        let send = if v2 { "send-proxy-v2" } else { "send-proxy" };
        let config = format!(
            "global\n    maxconn 1000\n    nbthread 1\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\nfrontend smtp_in\n    bind 127.0.0.1:{port}\n    default_backend gw\nbackend gw\n    server gw {backend} {send}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("haproxy.cfg");
        let child = Command::new("/usr/sbin/haproxy")
            .args(["-f", path.to_str().expect("utf-8"), "-db"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let mut h = Haproxy { _dir: dir, child, port };
        wait_for("haproxy to listen", Duration::from_secs(10), || {
            if let Ok(Some(status)) = h.child.try_wait() {
                panic!("haproxy exited with {status}");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
