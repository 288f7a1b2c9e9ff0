//! The greygate binary as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::wait_for;

/// A running `greygate serve`, logging JSON lines that the test can read.
pub struct Greygate {
    child: Child,
    logs: Arc<Mutex<Vec<Value>>>,
    raw: Arc<Mutex<Vec<String>>>,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// Addresses the server reported when ready.
    pub listen: Vec<String>,
}

impl Greygate {
    /// Write `config` (TOML without a `[log]` section) to `dir/greygate.toml`
    /// and start `bin --config dir/greygate.toml serve` in `dir`, then wait
    /// for "greygate ready".
    pub fn start(bin: &Path, dir: &Path, config: &str) -> Greygate {
        let path = dir.join("greygate.toml");
        std::fs::write(&path, format!("{config}\n[log]\nformat = \"json\"\nlevel = \"info\"\n")).expect("write config");
        let arg = path.to_str().expect("utf-8 path").to_owned();
        Greygate::start_with_args(bin, dir, &["--config", &arg, "serve"], path)
    }

    /// Start again from a config file written by [`Greygate::start`] (after
    /// a crash, say).
    pub fn restart(bin: &Path, dir: &Path, config: &Path) -> Greygate {
        let arg = config.to_str().expect("utf-8 path").to_owned();
        Greygate::start_with_args(bin, dir, &["--config", &arg, "serve"], config.to_path_buf())
    }

    /// Start `bin args...` in `dir`.
    pub fn start_with_args(bin: &Path, dir: &Path, args: &[&str], config: PathBuf) -> Greygate {
        let mut child = Command::new(bin)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start greygate");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (l, r) = (logs.clone(), raw.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    l.lock().unwrap().push(v);
                }
                r.lock().unwrap().push(line);
            }
        });
        let mut g = Greygate { child, logs, raw, dir: dir.to_path_buf(), config, listen: Vec::new() };
        let ready = g.wait_log_timeout(Duration::from_secs(20), |v| message(v) == Some("greygate ready"));
        let listen = ready.as_ref().and_then(|v| v.get("listen")).and_then(Value::as_str).unwrap_or("[]").to_owned();
        g.listen = listen.trim_matches(['[', ']']).split(", ").map(|s| s.trim_matches('"').to_owned()).collect();
        if ready.is_none() {
            let status = g.child.try_wait().ok().flatten();
            panic!("greygate did not become ready (exit {status:?}); log:\n{}", g.raw_log());
        }
        g
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The first TCP policy address.
    pub fn addr(&self) -> SocketAddr {
        self.listen.iter().find_map(|l| l.parse().ok()).expect("a TCP listener")
    }

    /// The first plain SMTP proxy listener.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.listen_with("smtp:")
    }

    /// The first SMTP proxy listener that expects a PROXY protocol header.
    pub fn proxy_protocol_addr(&self) -> SocketAddr {
        self.listen_with("smtp+proxy-protocol:")
    }

    /// The first qmail UDP listener.
    pub fn qmail_addr(&self) -> SocketAddr {
        self.listen_with("qmail:")
    }

    fn listen_with(&self, prefix: &str) -> SocketAddr {
        self.listen
            .iter()
            .find_map(|l| l.strip_prefix(prefix).and_then(|a| a.parse().ok()))
            .unwrap_or_else(|| panic!("no {prefix} listener in {:?}", self.listen))
    }

    /// All JSON log records so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// The raw log, for failure messages.
    pub fn raw_log(&self) -> String {
        self.raw.lock().unwrap().join("\n")
    }

    /// Wait (up to 10 s) for a log record matching `pred`.
    pub fn wait_log(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        match self.wait_log_timeout(Duration::from_secs(10), pred) {
            Some(v) => v,
            None => panic!("no log record for {what}; log:\n{}", self.raw_log()),
        }
    }

    fn wait_log_timeout(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.logs.lock().unwrap().iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal greygate");
    }

    /// `kill -9`, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the exit (at most 20 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        let pid = self.child.id();
        wait_for(&format!("greygate {pid} to exit"), Duration::from_secs(20), || self.child.try_wait().ok().flatten())
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Greygate {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A JSON log record's message.
pub fn message(v: &Value) -> Option<&str> {
    v.get("message").and_then(Value::as_str)
}

/// A JSON log record's string field.
pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// Run `bin args...` to completion (admin commands): (status, stdout, stderr).
pub fn run(bin: &Path, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).args(args).current_dir(dir).output().expect("run greygate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
