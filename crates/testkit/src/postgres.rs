//! PostgreSQL for tests: a schema of its own on the shared server
//! (127.0.0.1:5432, trust auth, database `test`), or a private server in a
//! temporary directory on another port that a test may kill and restart.
//! The shared server is never stopped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{free_port, require, wait_for};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The shared server's connection string.
pub const SHARED_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn psql(port: u16, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "test", "-Atqc", sql])
        .output()
        .expect("run psql");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A schema name unique to this test; the schema is dropped on drop.
pub struct PgSchema {
    pub name: String,
    port: u16,
}

impl PgSchema {
    pub fn new() -> PgSchema {
        PgSchema::on_port(5432)
    }

    pub fn on_port(port: u16) -> PgSchema {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("gg_e2e_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        PgSchema { name, port }
    }

    /// Run SQL in the test database, search path set to the schema.
    pub fn query(&self, sql: &str) -> String {
        let (ok, out) = psql(self.port, &format!("SET search_path TO {}; {sql}", self.name));
        assert!(ok, "psql failed: {sql}");
        out
    }
}

impl Default for PgSchema {
    fn default() -> Self {
        PgSchema::new()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        psql(self.port, &format!("SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// A private PostgreSQL server (run as the `postgres` user) with its data
/// in a temporary directory, trust auth, a `test` database.
pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `-c` settings for TLS, when started with [`PgServer::start_tls`].
    tls: Vec<String>,
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with(None)
    }

    /// Started with `ssl = on`, serving this certificate and key (PEM).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> PgServer {
        PgServer::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&std::path::Path, &std::path::Path)>) -> PgServer {
        require(&format!("{BIN}/initdb"), "postgresql-15");
        require("setpriv", "util-linux");
        let dir = tempfile::Builder::new().prefix("greygate-pg-").tempdir().expect("temp dir");
        let user = nix::unistd::User::from_name("postgres").expect("users").expect("a postgres user");
        nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
        let status = as_postgres(&format!("{BIN}/initdb"))
            .args(["-D", &data(&dir).display().to_string(), "-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        let mut settings = Vec::new();
        if let Some((cert, key)) = tls {
            // The server insists on owning its key, readable by it alone.
            let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(cert, &c).expect("copy cert");
            std::fs::copy(key, &k).expect("copy key");
            for f in [&c, &k] {
                nix::unistd::chown(f, Some(user.uid), Some(user.gid)).expect("chown");
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
            settings = vec![
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", c.display()),
                format!("ssl_key_file={}", k.display()),
            ];
        }
        let mut s = PgServer { port: free_port(), dir, child: None, tls: settings };
        s.restart();
        let (ok, _) = psql_db(s.port, "postgres", "CREATE DATABASE test");
        assert!(ok, "create database test");
        s
    }

    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=test", self.port)
    }

    /// Start it (again, on the same port and data).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let socket_dir = self.dir.path().display().to_string();
        let child = as_postgres(&format!("{BIN}/postgres"))
            .args(["-D", &data(&self.dir).display().to_string(), "-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", &format!("unix_socket_directories={socket_dir}")])
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .args(self.tls.iter().flat_map(|t| ["-c", t.as_str()]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let port = self.port;
        wait_for("postgres to answer", Duration::from_secs(30), || {
            psql_db(port, "postgres", "SELECT 1").0.then_some(())
        });
    }

    /// Immediate shutdown (SIGQUIT: the server and its backends exit at
    /// once, like a crash), and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGQUIT);
            if wait_for_exit(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn data(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data")
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--", program]);
    c
}

fn psql_db(port: u16, db: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", db, "-Atqc", sql])
        .stderr(Stdio::null())
        .output()
        .expect("run psql");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for_exit(c: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
