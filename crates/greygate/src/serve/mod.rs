//! `greygate serve`: start-up, run, reload, shutdown.
//!
//! Start-up order: config (already validated) → bind every socket → open
//! the store → build the engine → start background work → log "ready" →
//! accept. A failure at any step exits before a single request is taken.
//!
//! SIGHUP re-reads the config file and list files and swaps the policy in
//! place; connections are not dropped. SIGTERM/SIGINT stop accepting,
//! let every connection finish the request it is in (bounded by
//! [`DRAIN_TIMEOUT`]), flush counters, close the store and exit.

mod decision_log;
mod listen;
mod maintenance;
pub mod policy;
pub mod proxy;
pub mod qmail;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use greygate_engine::Engine;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::listen::Listener;
use self::policy::PolicyContext;
use crate::config::Config;

/// Longest wait for open connections at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds since the Unix epoch: the only clock the decision path uses.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub async fn run(config: Config) -> Result<()> {
    run_with(config, None).await
}

/// [`run`], with `greygate greydaemon`'s user switch and save file.
pub async fn run_with(config: Config, greydaemon: Option<crate::greydaemon::Extras>) -> Result<()> {
    let open_files = listen::raise_open_files_limit();
    let mut listeners = Vec::new();
    for addr in &config.policy.listen {
        listeners.push(Listener::bind(addr, config.policy.socket_mode).await?);
    }
    let mut proxy_listeners = Vec::new();
    for addr in &config.proxy.listen {
        proxy_listeners.push(proxy::ProxyListener::bind(*addr, false).await?);
    }
    for addr in &config.proxy.listen_proxy_protocol {
        proxy_listeners.push(proxy::ProxyListener::bind(*addr, true).await?);
    }
    let mut qmail_listeners = Vec::new();
    for addr in &config.qmail.listen {
        qmail_listeners.push(qmail::QmailListener::bind(*addr).await?);
    }
    if listeners.is_empty() && proxy_listeners.is_empty() && qmail_listeners.is_empty() {
        anyhow::bail!("nothing to serve: policy.listen, proxy.listen and qmail.listen are empty");
    }
    // Bound; the store's files are created by the user we run as.
    if let Some(user) = greydaemon.as_ref().and_then(|g| g.user.as_deref()) {
        crate::greydaemon::privileges::drop_to(user)?;
    }

    let store = crate::store::open(&config.store, crate::store::Role::Server).await?;
    let checks_config = config.checks()?;
    let dns = crate::checks::Dns::new(&checks_config.dns);
    let checks = crate::checks::build(&checks_config, &dns).context("cannot set up the sender checks")?;
    let engine = Arc::new(Engine::new(store.clone(), config.policy()?, checks).context("cannot build the lists")?);
    if let Err(error) = engine.refresh_lists().await {
        tracing::warn!(%error, "cannot load lists from the store; will keep trying");
    }

    let shutdown = CancellationToken::new();
    let background = TaskTracker::new();
    let connections = TaskTracker::new();
    maintenance::spawn(&background, engine.clone(), &config.store, shutdown.clone());
    let saver = match greydaemon {
        Some(g) => Some(g.savefile.start(store.clone(), &background, shutdown.clone()).await?),
        None => None,
    };

    let ctx = Arc::new(PolicyContext { engine: engine.clone(), config: ArcSwap::from_pointee(config.policy.clone()) });
    let limit = Arc::new(Semaphore::new(config.policy.max_connections));
    let mut bound: Vec<String> = listeners.iter().map(Listener::local).collect();
    for listener in listeners {
        background.spawn(accept_loop(listener, ctx.clone(), connections.clone(), limit.clone(), shutdown.clone()));
    }
    let proxy_ctx = Arc::new(proxy::ProxyContext::new(engine.clone(), &config.proxy, &dns)?);
    if config.proxy.enabled() {
        proxy_ctx.probe_upstream();
    }
    if config.proxy.enabled() && (config.proxy.max_sessions as u64).saturating_mul(2) + 64 > open_files {
        tracing::warn!(
            open_files,
            max_sessions = config.proxy.max_sessions,
            "the open files limit is below two per proxy session; raise it (ulimit -n, LimitNOFILE=)"
        );
    }
    if config.proxy.enabled() && config.proxy.relay.is_empty() {
        tracing::warn!("proxy.relay_domains is empty: the proxy takes mail only from trusted or authenticated clients");
    }
    bound.extend(proxy_listeners.iter().map(proxy::ProxyListener::local));
    let answered = saver.as_ref().and_then(|s| s.after_datagram());
    let qmail_ctx = Arc::new(qmail::QmailContext::new(engine.clone(), &config.qmail, answered));
    bound.extend(qmail_listeners.iter().map(qmail::QmailListener::local));
    for listener in qmail_listeners {
        background.spawn(qmail::serve(listener, qmail_ctx.clone(), connections.clone(), shutdown.clone()));
    }
    for listener in proxy_listeners {
        background.spawn(proxy::accept_loop(listener, proxy_ctx.clone(), connections.clone(), shutdown.clone()));
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = ?bound,
        store = store.backend(),
        location = %config.store.location(),
        lists = ?engine.list_counts(),
        open_files,
        "greygate ready"
    );

    let mut current = config;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&mut current, &engine, &ctx, &proxy_ctx, &qmail_ctx),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    tracing::info!("shutting down: no new connections, finishing open requests");
    shutdown.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait()).await.is_err() {
        tracing::warn!(open = connections.len(), "connections still open after the drain timeout; closing them");
    }
    background.close();
    background.wait().await;
    if let Some(saver) = saver {
        saver.finish().await;
    }
    maintenance::save_counters(&engine).await;
    if let Err(error) = store.close().await {
        tracing::warn!(%error, "closing the store failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: re-read the config and list files; keep the old ones on error.
fn reload(
    current: &mut Config,
    engine: &Engine,
    ctx: &PolicyContext,
    proxy_ctx: &Arc<proxy::ProxyContext>,
    qmail_ctx: &qmail::QmailContext,
) {
    let Some(file) = current.file.clone() else {
        tracing::info!("SIGHUP: running on the built-in default config; nothing to reload");
        return;
    };
    let next = match Config::load(Some(&file)).and_then(|c| Ok((c.policy()?, c))) {
        Ok(next) => next,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "SIGHUP: config not reloaded; keeping the running one");
            return;
        }
    };
    let (policy, config) = next;
    let checks_config = match config.checks() {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "SIGHUP: checks not rebuilt; keeping the running config");
            return;
        }
    };
    let dns = crate::checks::Dns::new(&checks_config.dns);
    if let Err(error) = proxy_ctx.reload(&config.proxy, &dns) {
        tracing::error!(
            error = format!("{error:#}"),
            "SIGHUP: proxy settings not reloaded; keeping the running config"
        );
        return;
    }
    let checks = match crate::checks::build(&checks_config, &dns) {
        Ok(checks) => checks,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "SIGHUP: checks not rebuilt; keeping the running config");
            return;
        }
    };
    if let Err(error) = engine.set_policy(policy) {
        tracing::error!(%error, "SIGHUP: lists not reloaded; keeping the running config");
        return;
    }
    engine.set_checks(checks);
    for (what, changed) in [
        ("store", config.raw.store != current.raw.store),
        ("policy.listen", config.raw.policy.listen != current.raw.policy.listen),
        ("proxy.listen", config.raw.proxy.listen != current.raw.proxy.listen),
        (
            "proxy.listen_proxy_protocol",
            config.raw.proxy.listen_proxy_protocol != current.raw.proxy.listen_proxy_protocol,
        ),
        ("log", config.raw.log != current.raw.log),
        ("qmail.listen", config.raw.qmail.listen != current.raw.qmail.listen),
    ] {
        if changed {
            tracing::warn!(section = what, "SIGHUP: this change takes effect only after a restart");
        }
    }
    ctx.config.store(Arc::new(config.policy.clone()));
    qmail_ctx.config.store(Arc::new(config.qmail.clone()));
    if config.proxy.enabled() {
        proxy_ctx.probe_upstream();
    }
    *current = config;
    tracing::info!(lists = ?engine.list_counts(), "SIGHUP: config and lists reloaded");
}

async fn accept_loop(
    listener: Listener,
    ctx: Arc<PolicyContext>,
    connections: TaskTracker,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok(conn) => match limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
                    connections.spawn(async move {
                        policy::serve(conn.stream, conn.peer, ctx, shutdown).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tracing::warn!(
                        frontend = "policy",
                        peer = %conn.peer,
                        max = ctx.config.load().max_connections,
                        "too many connections; closing this one"
                    );
                }
            },
            Err(error) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
