//! greygate end to end: the real binary, driven the way users drive it.
//!
//! - `policy`: the Postfix policy protocol, byte for byte.
//! - `lifecycle`: default config, reload, shutdown, crash durability, store
//!   failure.
//! - `admin`: the admin CLI against a running server.
//! - `postfix`: real Postfix and swaks through greygate.
//! - `proxy`: the SMTP proxy in front of real Postfix (swaks, haproxy).
//! - `proxy_faults`: upstream failures, limits, bad clients.
//! - `proxy_tls`: STARTTLS on both legs, injection, reload, AUTH.
//! - `proxy_scan`: content scanning with real clamd and spamd.
//! - `checks`: SPF, DNS lists, reverse DNS, HELO (DNS from the in-process
//!   server), through the policy protocol and real Postfix.
//! - `qmail`: the qmail UDP front end and the `greydaemon` drop-in.
//! - `shared_store`: Redis and PostgreSQL shared by two instances, the
//!   admin CLI and `copy-store` on them, backend outages.

mod admin;
mod checks;
mod lifecycle;
mod policy;
mod postfix;
mod proxy;
mod proxy_faults;
mod proxy_scan;
mod proxy_tls;
mod qmail;
mod shared_store;

use std::path::Path;

use greygate_testkit::greygate::Greygate;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_greygate"))
}

/// A server on a free port with its store in a fresh temp dir. `extra` is
/// appended to a config with `[store]` and `[policy]` already set, so it
/// may add `[greylist]`, `[lists]`, `[replies]` or `[[rule]]` sections.
pub fn server(extra: &str) -> (tempfile::TempDir, Greygate) {
    server_with("", extra)
}

/// Like [`server`], with `store` lines added to the `[store]` section.
pub fn server_with(store: &str, extra: &str) -> (tempfile::TempDir, Greygate) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[store]\npath = \"{}\"\nlists_refresh = \"100ms\"\n{store}\n[policy]\nlisten = [\"127.0.0.1:0\"]\n{extra}",
        dir.path().join("greygate.db").display()
    );
    let g = Greygate::start(bin(), dir.path(), &config);
    (dir, g)
}

/// Run an admin command against the server's config; (status, stdout).
pub fn admin(g: &Greygate, args: &[&str]) -> (i32, String) {
    let config = g.config.to_str().unwrap();
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    let (code, out, err) = greygate_testkit::greygate::run(bin(), &g.dir, &all);
    if code != 0 {
        eprintln!("greygate {args:?} exited {code}: {err}");
    }
    (code, out)
}
