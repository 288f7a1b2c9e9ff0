//! Redis for tests: a key prefix of its own on the shared server
//! (127.0.0.1:6379), or a private `redis-server` on another port that a
//! test may kill and restart. The shared server is never stopped.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{free_port, require, wait_for};

/// The shared server.
pub const SHARED_URL: &str = "redis://127.0.0.1:6379/";

/// A key prefix unique to this test; its keys are deleted on drop.
pub struct RedisPrefix {
    pub prefix: String,
    port: u16,
}

impl RedisPrefix {
    pub fn new() -> RedisPrefix {
        RedisPrefix::on_port(6379)
    }

    pub fn on_port(port: u16) -> RedisPrefix {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let prefix = format!("gge2e:{}:{}:{nanos}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        RedisPrefix { prefix, port }
    }

    /// Keys under the prefix.
    pub fn keys(&self) -> Vec<String> {
        let out = cli(self.port, &["--scan", "--pattern", &format!("{}*", self.prefix)]);
        out.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }
}

impl Default for RedisPrefix {
    fn default() -> Self {
        RedisPrefix::new()
    }
}

/// Deletes every key matching ARGV[1], inside Redis (keys may hold any
/// byte, which a command line cannot).
const DELETE_MATCHING: &str = "local c = '0' repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) \
    c = r[1] for _, k in ipairs(r[2]) do redis.call('DEL', k) end until c == '0'";

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        cli(self.port, &["EVAL", DELETE_MATCHING, "0", &format!("{}*", self.prefix)]);
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private, non-persistent redis-server on a free port.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        require("redis-server", "redis-server");
        let mut s = RedisServer { port: free_port(), child: None };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start it (again, on the same port, empty).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            (cli(port, &["PING"]).trim() == "PONG").then_some(())
        });
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze it (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        kill(self.pid(), Signal::SIGSTOP).expect("SIGSTOP redis-server");
    }

    pub fn thaw(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = kill(self.pid(), Signal::SIGCONT);
        }
        self.kill();
    }
}
