//! `greygate greydaemon`: a drop-in for John Levine's greydaemon.
//!
//! Takes greydaemon's command line, with the same meanings and defaults
//! (PROTOCOLS.md §2.4):
//!
//! ```text
//! greygate greydaemon [-d] [-u user] [-w whitelist] [-s min] [-t days] [-g hours] [-m min] ipaddr[:port] savefile
//! ```
//!
//! and turns it into a greygate configuration: the qmail front end in
//! greydaemon mode on `ipaddr:port` (1999 by default), the timers from
//! `-m`, `-g`, `-t`, the whitelist file's ranges as client whitelist
//! entries, the save file imported at start and written back
//! ([`savefile`]), and the switch to `-u` after binding ([`privileges`]).
//! Nothing else is on unless a `--config` file asks for it: each of the
//! sections `[policy]`, `[lists]`, `[store]`, `[greylist]` and `[qmail]`
//! that the file leaves at its defaults takes greydaemon's instead: no
//! policy server; no trusted networks, built-in or recipient whitelists;
//! the store in `savefile.db`; exact-address keys (as greydaemon keys) and
//! no header; datagrams answered from any address. A section the file sets
//! is used as written, so the qmail front end can share a store, lists and
//! keys with the other front ends.

pub mod privileges;
pub mod savefile;
pub mod whitelist;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use greygate_engine::network::NetworkKeying;
use greygate_store::Timers;

use self::savefile::SaveFile;
use crate::config::RawConfig;
use crate::config::duration::Human;
use crate::config::qmail::QmailMode;

/// greydaemon's default port.
pub const DEFAULT_PORT: u16 = 1999;

/// greydaemon's options. A value of 0 means the default, as it does in
/// greydaemon (`$opt_t || 7`).
#[derive(Debug, Clone, Args)]
pub struct GreydaemonArgs {
    /// Debug: debug-level logging, and the save file written after every
    /// answered datagram.
    #[arg(short = 'd')]
    pub debug: bool,
    /// Switch to this user (and its group) after binding the socket.
    #[arg(short = 'u', value_name = "user")]
    pub user: Option<String>,
    /// File of IPv4 ranges that are never greylisted.
    #[arg(short = 'w', value_name = "whitelist")]
    pub whitelist: Option<PathBuf>,
    /// Minutes between writes of the save file [default: 10].
    #[arg(short = 's', value_name = "min")]
    pub save_minutes: Option<f64>,
    /// Days an address that passed stays known, refreshed by use [default: 7].
    #[arg(short = 't', value_name = "days")]
    pub known_days: Option<f64>,
    /// Hours within which a retry must come [default: 12].
    #[arg(short = 'g', value_name = "hours")]
    pub window_hours: Option<f64>,
    /// Minutes before a retry is accepted [default: 5].
    #[arg(short = 'm', value_name = "min")]
    pub delay_minutes: Option<f64>,
    /// Address to listen on, `ipaddr[:port]` (port 1999 by default); IPv6
    /// as `[addr]:port` or a bare address.
    #[arg(value_name = "ipaddr[:port]")]
    pub listen: String,
    /// greydaemon's context save file.
    #[arg(value_name = "savefile")]
    pub savefile: PathBuf,
}

/// What `serve` needs beyond the configuration.
#[derive(Debug, Clone)]
pub struct Extras {
    pub user: Option<String>,
    pub savefile: SaveFile,
}

fn or_default(value: Option<f64>, default: f64, what: &str) -> Result<f64> {
    match value {
        None => Ok(default),
        Some(0.0) => Ok(default),
        Some(v) if v.is_finite() && v > 0.0 => Ok(v),
        Some(v) => bail!("{what} must be a positive number, got {v}"),
    }
}

fn seconds(n: f64) -> Duration {
    Duration::from_secs(n.round().max(1.0) as u64)
}

/// `ipaddr[:port]`: `192.0.2.1`, `192.0.2.1:2000`, `[::1]:2000`, `::1`,
/// `localhost:2000`.
pub fn listen_addr(arg: &str) -> Result<SocketAddr> {
    if let Ok(addr) = arg.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = arg.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(arg);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let (host, port) = match arg.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().with_context(|| format!("bad port in {arg:?}"))?),
        None => (arg, DEFAULT_PORT),
    };
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host:?}"))?
        .find(SocketAddr::is_ipv4)
        .with_context(|| format!("{host:?} has no IPv4 address"))
}

/// Turn greydaemon's arguments into greygate's configuration; `raw` is
/// the `--config` file, or the default.
pub fn configure(raw: &mut RawConfig, args: &GreydaemonArgs) -> Result<Extras> {
    let delay = seconds(or_default(args.delay_minutes, 5.0, "-m")? * 60.0);
    let window = seconds(or_default(args.window_hours, 12.0, "-g")? * 3600.0);
    let known = seconds(or_default(args.known_days, 7.0, "-t")? * 86400.0);
    let interval = seconds(or_default(args.save_minutes, 10.0, "-s")? * 60.0);
    ensure!(delay < window, "-m ({} min) must be shorter than -g", delay.as_secs() / 60);
    let listen = listen_addr(&args.listen)?;

    let defaults = RawConfig::default();
    if raw.policy == defaults.policy {
        raw.policy.listen.clear();
    }
    if raw.qmail == defaults.qmail {
        raw.qmail.allow_from = vec!["0.0.0.0/0".into(), "::/0".into()];
    }
    if raw.lists == defaults.lists {
        raw.lists.trusted_networks.clear();
        raw.lists.builtin_whitelist = false;
        raw.lists.whitelist_recipients.clear();
    }
    if raw.store == defaults.store {
        let mut db = args.savefile.clone().into_os_string();
        db.push(".db");
        raw.store.path = db.into();
    }
    if raw.greylist == defaults.greylist {
        raw.greylist.ipv4_prefix = 32;
        raw.greylist.ipv6_prefix = 128;
        raw.greylist.header.clear();
    }
    raw.qmail.listen = vec![listen.to_string()];
    raw.qmail.mode = QmailMode::Greydaemon;
    let g = &mut raw.greylist;
    (g.delay, g.retry_window, g.pass_lifetime) = (Human(delay), Human(window), Human(known));
    if args.debug {
        raw.log.level = "debug".into();
    }
    if let Some(path) = &args.whitelist {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot open {}", path.display()))?;
        let ranges = whitelist::parse(&text).with_context(|| format!("whitelist {}", path.display()))?;
        raw.lists.whitelist_clients.extend(ranges);
    }
    let g = &raw.greylist;
    Ok(Extras {
        user: args.user.clone(),
        savefile: SaveFile {
            path: args.savefile.clone(),
            interval,
            every_datagram: args.debug,
            keying: NetworkKeying { ipv4_prefix: g.ipv4_prefix, ipv6_prefix: g.ipv6_prefix },
            timers: Timers {
                delay: g.delay.as_secs_i64(),
                retry_window: g.retry_window.as_secs_i64(),
                pass_lifetime: g.pass_lifetime.as_secs_i64(),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: GreydaemonArgs,
    }

    fn configured(argv: &[&str]) -> (RawConfig, Extras) {
        let args = Cmd::try_parse_from(std::iter::once("greydaemon").chain(argv.iter().copied())).unwrap().args;
        let mut raw = RawConfig::default();
        let extras = configure(&mut raw, &args).unwrap();
        (raw, extras)
    }

    #[test]
    fn greydaemons_defaults() {
        let (raw, extras) = configured(&["127.0.0.1", "/var/lib/grey/save"]);
        assert_eq!(raw.qmail.listen, ["127.0.0.1:1999"]);
        assert_eq!(raw.qmail.mode, QmailMode::Greydaemon);
        assert_eq!(extras.savefile.timers, Timers { delay: 300, retry_window: 12 * 3600, pass_lifetime: 7 * 86400 });
        assert_eq!(extras.savefile.interval, Duration::from_secs(600));
        assert_eq!(extras.savefile.keying, NetworkKeying::EXACT);
        assert!(raw.policy.listen.is_empty() && raw.lists.trusted_networks.is_empty());
        assert_eq!(raw.store.path, PathBuf::from("/var/lib/grey/save.db"));
        assert_eq!(extras.user, None);
    }

    #[test]
    fn greydaemons_options() {
        let (raw, extras) =
            configured(&["-d", "-u", "qmaild", "-s", "1", "-t", "30", "-g", "4", "-m", "0.5", "[::1]:2000", "s"]);
        assert_eq!(raw.qmail.listen, ["[::1]:2000"]);
        assert_eq!(extras.savefile.timers, Timers { delay: 30, retry_window: 4 * 3600, pass_lifetime: 30 * 86400 });
        assert_eq!(extras.savefile.interval, Duration::from_secs(60));
        assert!(extras.savefile.every_datagram);
        assert_eq!(raw.log.level, "debug");
        assert_eq!(extras.user.as_deref(), Some("qmaild"));
        // 0 means the default, as in greydaemon.
        let (_, extras) = configured(&["-m", "0", "127.0.0.1:1999", "s"]);
        assert_eq!(extras.savefile.timers.delay, 300);
    }

    #[test]
    fn listen_addresses() {
        for (arg, want) in [
            ("127.0.0.1", "127.0.0.1:1999"),
            ("127.0.0.1:2001", "127.0.0.1:2001"),
            ("::1", "[::1]:1999"),
            ("[::1]", "[::1]:1999"),
            ("[::1]:2001", "[::1]:2001"),
            ("localhost:2001", "127.0.0.1:2001"),
        ] {
            assert_eq!(listen_addr(arg).unwrap().to_string(), want, "{arg}");
        }
        assert!(listen_addr("127.0.0.1:x").is_err());
    }
}
