//! The SMTP proxy front end: greygate on port 25 in front of the real MTA.
//!
//! This module owns what happens before a session starts — accepting,
//! the PROXY protocol header on the listeners that expect one, session
//! limits (total, per client address, load average), the greet pause —
//! and what sessions share (engine, config, TLS, the upstream's announced
//! capabilities). [`session`] drives one session; [`upstream`] is the
//! leg to the MTA; the SMTP protocol itself is in `greygate_proto::smtp`.

mod received;
pub(crate) mod replies;
mod session;
pub mod tls;
mod upstream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use greygate_engine::Engine;
use greygate_engine::checks::{ClientNames, client_names};
use greygate_engine::dns::Resolver;
use greygate_proto::proxy_protocol::{self, ProxyHeader};
use greygate_proto::smtp::forward::ClientIdentity;
use greygate_proto::smtp::{Capabilities, Extensions, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::session::Session;
use self::tls::Conn;
use self::upstream::{Settings, Upstream};
use crate::checks::Dns;
use crate::config::ProxyConfig;

/// Longest wait for a PROXY protocol header (Postfix waits 5 s).
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What every proxy session shares.
pub struct ProxyContext {
    pub engine: Arc<Engine>,
    /// Swapped on SIGHUP; a session keeps the one it started with.
    pub config: ArcSwap<ProxyConfig>,
    /// The STARTTLS certificate, reloaded on SIGHUP; `None` without one.
    pub tls: ArcSwap<Option<Arc<rustls::ServerConfig>>>,
    upstream_tls: ArcSwap<rustls::ClientConfig>,
    /// What the upstream announced last time we asked.
    caps: ArcSwap<Option<Capabilities>>,
    /// Looks up client host names; `None` with `client_lookup` off.
    names: ArcSwap<Option<NameLookup>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    sessions: AtomicUsize,
    next_id: AtomicU64,
    load: Mutex<(Instant, f64)>,
}

impl ProxyContext {
    pub fn new(engine: Arc<Engine>, config: &ProxyConfig, dns: &Dns) -> Result<ProxyContext> {
        Ok(ProxyContext {
            engine,
            names: ArcSwap::from_pointee(NameLookup::new(config, dns)),
            tls: ArcSwap::from_pointee(load_tls(config)?),
            upstream_tls: ArcSwap::new(tls::client_config(config.upstream_tls_ca.as_deref())?),
            config: ArcSwap::from_pointee(config.clone()),
            caps: ArcSwap::from_pointee(None),
            per_ip: Mutex::new(HashMap::new()),
            sessions: AtomicUsize::new(0),
            next_id: AtomicU64::new(crate::serve::unix_now() as u64 * 1000),
            load: Mutex::new((Instant::now() - Duration::from_secs(60), 0.0)),
        })
    }

    /// SIGHUP: new settings and certificates; the old ones stay on error.
    pub fn reload(&self, config: &ProxyConfig, dns: &Dns) -> Result<()> {
        let tls = load_tls(config)?;
        let upstream_tls = tls::client_config(config.upstream_tls_ca.as_deref())?;
        self.names.store(Arc::new(NameLookup::new(config, dns)));
        self.tls.store(Arc::new(tls));
        self.upstream_tls.store(upstream_tls);
        self.config.store(Arc::new(config.clone()));
        Ok(())
    }

    /// A session id for logs and the Received header.
    fn next_id(&self) -> String {
        format!("{:X}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn upstream_settings(&self, config: &ProxyConfig) -> Settings {
        Settings {
            hosts: config.upstream.clone(),
            hostname: config.hostname.clone(),
            connect_timeout: config.upstream_connect_timeout,
            timeout: config.upstream_timeout,
            tls: config.upstream_tls,
            tls_config: self.upstream_tls.load_full(),
            forward: config.forward_client,
        }
    }

    /// Learn in the background what the upstream announces.
    pub fn probe_upstream(self: &Arc<Self>) {
        let ctx = self.clone();
        tokio::spawn(async move {
            let settings = ctx.upstream_settings(&ctx.config.load());
            match Upstream::probe(&settings).await {
                Ok(caps) => {
                    tracing::info!(frontend = "proxy", keywords = ?caps.keywords, "upstream capabilities learned");
                    ctx.learn_capabilities(&caps);
                }
                Err(error) => {
                    tracing::warn!(frontend = "proxy", %error, "cannot reach the upstream MTA; will retry with the first session")
                }
            }
        });
    }

    fn learn_capabilities(&self, caps: &Capabilities) {
        self.caps.store(Arc::new(Some(caps.clone())));
    }

    /// What a session announces: our limits, and the upstream's optional
    /// extensions as far as we know them (8BITMIME alone until we do).
    fn extensions(&self, config: &ProxyConfig, tls_active: bool) -> Extensions {
        let caps = self.caps.load();
        let caps = caps.as_ref().as_ref();
        let size = match caps.map_or(0, |c| c.size) {
            0 => config.max_message_size,
            upstream => upstream.min(config.max_message_size),
        };
        Extensions {
            size,
            starttls: self.tls.load().is_some(),
            auth: match caps {
                Some(c) if config.auth && tls_active => c.auth.clone(),
                _ => Vec::new(),
            },
            eightbitmime: caps.is_none_or(|c| c.has("8BITMIME")),
            smtputf8: caps.is_some_and(|c| c.has("SMTPUTF8")),
            dsn: caps.is_some_and(|c| c.has("DSN")),
        }
    }

    /// The 1-minute load average, read at most once a second.
    fn load_average(&self) -> f64 {
        let mut cached = self.load.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0.elapsed() >= Duration::from_secs(1) {
            let now = std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
                .unwrap_or(0.0);
            *cached = (Instant::now(), now);
        }
        cached.1
    }
}

fn load_tls(config: &ProxyConfig) -> Result<Option<Arc<rustls::ServerConfig>>> {
    match &config.tls {
        Some((cert, key)) => tls::server_config(cert, key).map(Some).context("proxy TLS"),
        None => Ok(None),
    }
}

/// A bound proxy listener.
pub struct ProxyListener {
    listener: TcpListener,
    /// Connections start with a PROXY protocol header.
    proxy_protocol: bool,
}

impl ProxyListener {
    pub async fn bind(addr: SocketAddr, proxy_protocol: bool) -> Result<ProxyListener> {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (proxy)"))?;
        Ok(ProxyListener { listener, proxy_protocol })
    }

    pub fn local(&self) -> String {
        let addr = self.listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        if self.proxy_protocol { format!("smtp+proxy-protocol:{addr}") } else { format!("smtp:{addr}") }
    }
}

pub async fn accept_loop(
    listener: ProxyListener,
    ctx: Arc<ProxyContext>,
    sessions: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
                let proxy_protocol = listener.proxy_protocol;
                sessions.spawn(async move { start(stream, peer, proxy_protocol, ctx, shutdown).await });
            }
            Err(error) => {
                tracing::warn!(frontend = "proxy", %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Counts a session against the limits while it lives.
struct Slot {
    ctx: Arc<ProxyContext>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.ctx.sessions.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.ctx.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Refuse with one reply and close.
async fn refuse(stream: &mut TcpStream, reply: &Reply) {
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.write_all(&reply.to_bytes())).await;
    let _ = stream.shutdown().await;
}

async fn start(
    mut stream: TcpStream,
    peer: SocketAddr,
    proxy_protocol: bool,
    ctx: Arc<ProxyContext>,
    shutdown: CancellationToken,
) {
    let config = ctx.config.load_full();
    let mut early = Vec::new();
    let mut client = peer;
    let mut local = stream.local_addr().ok();
    if proxy_protocol {
        if !config.proxy_protocol_from.iter().any(|n| n.contains(&peer.ip().to_canonical())) {
            tracing::warn!(frontend = "proxy", %peer, "PROXY protocol header from an address not in proxy_protocol_from; closing");
            return;
        }
        match read_proxy_header(&mut stream, &mut early).await {
            Ok(ProxyHeader::Proxied { source, destination }) => {
                client = source;
                local = Some(destination);
            }
            Ok(ProxyHeader::Local) => {}
            Err(error) => {
                tracing::warn!(frontend = "proxy", %peer, %error, "bad PROXY protocol header; closing");
                return;
            }
        }
    }
    let ip = client.ip().to_canonical();

    // Limits: total, per client address, load.
    let total = ctx.sessions.fetch_add(1, Ordering::Relaxed) + 1;
    let same_ip = {
        let mut per_ip = ctx.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        *n += 1;
        *n
    };
    let _slot = Slot { ctx: ctx.clone(), ip };
    let refusal = if total > config.max_sessions {
        Some(("too many sessions", replies::too_many_sessions(&config.hostname)))
    } else if same_ip > config.max_sessions_per_ip {
        Some(("too many sessions from this address", replies::too_many_from_ip(&config.hostname)))
    } else if config.max_load.is_some_and(|max| ctx.load_average() > max) {
        Some(("load average above max_load", replies::overloaded(&config.hostname)))
    } else {
        None
    };
    if let Some((why, reply)) = refusal {
        tracing::warn!(frontend = "proxy", client = %ip, sessions = total, from_client = same_ip, "{why}; refusing the session");
        refuse(&mut stream, &reply).await;
        return;
    }

    // Greet pause: a client that talks before our greeting is a bot.
    let exempt = config.greet_pause_exempt.iter().any(|n| n.contains(&ip));
    if !config.greet_pause.is_zero() && !exempt {
        let talked = if early.is_empty() {
            let mut probe = [0u8; 512];
            match tokio::time::timeout(config.greet_pause, stream.read(&mut probe)).await {
                Err(_) => None,
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => Some(probe[..n].to_vec()),
            }
        } else {
            Some(early.clone())
        };
        if let Some(bytes) = talked {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).into_owned();
            tracing::info!(frontend = "proxy", client = %ip, bytes = bytes.len(), text, "early talker: data before the greeting; refusing");
            refuse(&mut stream, &replies::early_talker(&config.hostname)).await;
            return;
        }
    }

    let identity = ClientIdentity {
        addr: SocketAddr::new(ip, client.port()),
        name: None,
        reverse_name: None,
        name_tempfail: false,
        helo: None,
        esmtp: false,
        local,
    };
    let names = ctx.look_up_names(ip);
    let session = Session::new(ctx, Conn::Plain(stream), identity, names, &early, shutdown);
    tracing::debug!(frontend = "proxy", session = session.id(), client = %ip, "session start");
    session.run().await;
}

/// Reverse DNS of proxy clients, as Postfix does it before its greeting,
/// on the resolver (and cache) the sender checks use.
struct NameLookup {
    resolver: Arc<dyn Resolver>,
    /// Bound on the whole lookup (the PTR, then the names' addresses).
    limit: Duration,
}

impl NameLookup {
    /// `None` when lookups are off, or when there is no DNS to ask (no
    /// `[dns] nameservers` and no usable /etc/resolv.conf): then names stay
    /// unknown, with a warning, rather than the proxy not starting.
    fn new(config: &ProxyConfig, dns: &Dns) -> Option<NameLookup> {
        if !config.enabled() || !config.client_lookup {
            return None;
        }
        let resolver = match dns.get() {
            Ok((_, resolver)) => resolver.clone(),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "proxy.client_lookup: no DNS resolver; client host names stay unknown"
                );
                return None;
            }
        };
        // A PTR and the address of its name; more names are rare.
        let limit = resolver.limit() * 2;
        Some(NameLookup { resolver, limit })
    }
}

impl ProxyContext {
    /// Start looking up the client's host names; `None` when lookups are
    /// off or the client is on loopback (local, not worth a query).
    fn look_up_names(&self, ip: IpAddr) -> Option<tokio::task::JoinHandle<ClientNames>> {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return None;
        }
        let names = self.names.load();
        let lookup = names.as_ref().as_ref()?;
        let (resolver, limit) = (lookup.resolver.clone(), lookup.limit);
        Some(tokio::spawn(async move {
            tokio::time::timeout(limit, client_names(&*resolver, ip))
                .await
                .unwrap_or_else(|_| ClientNames::tempfailed())
        }))
    }
}

/// Read exactly one PROXY header; bytes after it go to `rest`.
async fn read_proxy_header(stream: &mut TcpStream, rest: &mut Vec<u8>) -> Result<ProxyHeader> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let deadline = tokio::time::Instant::now() + PROXY_HEADER_TIMEOUT;
    loop {
        if !buf.is_empty()
            && let Some((header, used)) = proxy_protocol::decode(&buf)?
        {
            rest.extend_from_slice(&buf[used..]);
            return Ok(header);
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .context("no PROXY header within 5 s")?
            .context("read failed")?;
        if n == 0 {
            anyhow::bail!("connection closed before a complete PROXY header");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
