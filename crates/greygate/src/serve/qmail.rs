//! The qmail front end: greydaemon's UDP protocol (PROTOCOLS.md §2).
//!
//! One datagram is one question about a whole transaction (qmail-smtpd
//! asks at DATA with every recipient); the answer is one 2-byte datagram
//! to the sender's address. Datagrams are decided concurrently, at most
//! `qmail.max_in_flight` at once. A datagram that does not decode, comes
//! from an address outside `qmail.allow_from`, or arrives while too many
//! are in flight gets **no reply**: qmail-smtpd then times out and answers
//! 451, as it does with greydaemon.
//!
//! This module owns the socket loop and the verdict → reply mapping; the
//! byte layout is in `greygate_proto::qmail`, the decision in the engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use greygate_engine::{Action, Engine, Facts, Reason, Stage, Verdict};
use greygate_proto::qmail::{MAX_DATAGRAM, Reply, Request};
use greygate_store::Outcome;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::decision_log;
use crate::config::QmailConfig;

/// A bound UDP socket.
pub struct QmailListener {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
}

impl QmailListener {
    pub async fn bind(addr: SocketAddr) -> Result<QmailListener> {
        let socket = UdpSocket::bind(addr).await.with_context(|| format!("cannot bind qmail UDP listener {addr}"))?;
        let local = socket.local_addr()?;
        Ok(QmailListener { socket: Arc::new(socket), local })
    }

    /// `qmail:127.0.0.1:1999`, as logged at start-up.
    pub fn local(&self) -> String {
        format!("qmail:{}", self.local)
    }
}

/// What every datagram shares.
pub struct QmailContext {
    pub engine: Arc<Engine>,
    /// Swapped on SIGHUP (mode, allow_from; not listen).
    pub config: ArcSwap<QmailConfig>,
    in_flight: Arc<Semaphore>,
    next_id: AtomicU64,
    /// Datagrams dropped unread (outside `allow_from`, over
    /// `max_in_flight`); logged at 1, 2, 4, 8, ... so a flood cannot flood
    /// the log.
    refused_peers: AtomicU64,
    overloaded: AtomicU64,
    /// Woken after every answered datagram (greydaemon's `-d` saves then).
    pub answered: Option<Arc<Notify>>,
}

impl QmailContext {
    pub fn new(engine: Arc<Engine>, config: &QmailConfig, answered: Option<Arc<Notify>>) -> QmailContext {
        QmailContext {
            engine,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            config: ArcSwap::from_pointee(config.clone()),
            next_id: AtomicU64::new(1),
            refused_peers: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            answered,
        }
    }
}

/// Receive datagrams until shutdown; each is decided in a task of its own
/// (tracked by `tasks`, so shutdown waits for the answers in flight).
pub async fn serve(listener: QmailListener, ctx: Arc<QmailContext>, tasks: TaskTracker, shutdown: CancellationToken) {
    // One byte more than the limit, so an oversized datagram is seen as
    // such instead of silently truncated to a valid one.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.socket.recv_from(&mut buf) => r,
        };
        let (len, peer) = match received {
            Ok(r) => r,
            Err(error) => {
                tracing::debug!(frontend = "qmail", %error, "receive failed");
                continue;
            }
        };
        if !ctx.config.load().allows(peer.ip()) {
            if let Some(dropped) = sparse(&ctx.refused_peers) {
                tracing::warn!(frontend = "qmail", %peer, dropped, "datagram from an address outside qmail.allow_from; dropped");
            }
            continue;
        }
        let Ok(permit) = ctx.in_flight.clone().try_acquire_owned() else {
            if let Some(dropped) = sparse(&ctx.overloaded) {
                tracing::warn!(frontend = "qmail", %peer, dropped, "too many datagrams in flight; dropped unanswered");
            }
            continue;
        };
        let datagram = buf[..len].to_vec();
        let (ctx, socket) = (ctx.clone(), listener.socket.clone());
        tasks.spawn(async move {
            if let Some(reply) = answer(&ctx, peer, &datagram).await {
                if let Err(error) = socket.send_to(&reply.bytes(), peer).await {
                    tracing::debug!(frontend = "qmail", %peer, %error, "send failed");
                }
                if let Some(n) = &ctx.answered {
                    n.notify_one();
                }
            }
            drop(permit);
        });
    }
}

/// Count one more; the new count when it is a power of two (worth a log line).
fn sparse(counter: &AtomicU64) -> Option<u64> {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    n.is_power_of_two().then_some(n)
}

/// Decide on one datagram; `None` means no reply.
async fn answer(ctx: &QmailContext, peer: SocketAddr, datagram: &[u8]) -> Option<Reply> {
    let request = match Request::decode(datagram) {
        Ok(r) => r,
        Err(error) => {
            let bytes = datagram.len();
            tracing::warn!(frontend = "qmail", %peer, %error, bytes, "malformed datagram; no reply");
            return None;
        }
    };
    let profile = ctx.config.load().profile;
    let mut facts = Facts { sender: Some(request.sender), ..Facts::new(Stage::Rcpt, request.client) };
    let verdicts = ctx.engine.decide_transaction(profile, &facts, &request.recipients, super::unix_now()).await;
    let reply = combine(verdicts.iter().map(code));
    let id = format!("q{:x}", ctx.next_id.fetch_add(1, Ordering::Relaxed));
    let action = reply.to_string();
    for (verdict, recipient) in verdicts.iter().zip(request.recipients) {
        facts.recipient = Some(recipient);
        decision_log::decision("qmail", &facts, verdict, &action, &id);
    }
    Some(reply)
}

/// One recipient's verdict in greydaemon's codes.
pub fn code(v: &Verdict) -> Reply {
    match (&v.action, &v.reason) {
        (Action::Accept, Reason::Bounce) => Reply::Bounce,
        (Action::Accept, Reason::Greylist { outcome: Outcome::AutoWhitelisted { .. }, .. }) => Reply::KnownIp,
        // A passed triplet, a refusal turned into acceptance by learning
        // mode, or a store failure with fail_mode = "open".
        (Action::Accept, Reason::Greylist { .. } | Reason::StoreFailure { .. }) => Reply::RetryOk,
        (Action::Accept, _) if v.learning => Reply::RetryOk,
        // Trusted, whitelisted, not greylisted by a rule, a check.
        (Action::Accept, _) => Reply::Whitelisted,
        (_, Reason::Greylist { outcome: Outcome::TooSoon { .. }, .. }) => Reply::TooSoon,
        (_, Reason::Greylist { outcome: Outcome::Stale | Outcome::Expired, .. }) => Reply::Stale,
        // New, and whatever else refuses: greydaemon's protocol has no
        // permanent refusal, so a blacklisted client is greylisted forever.
        (_, _) => Reply::New,
    }
}

/// The transaction's reply from its recipients' codes, as greydaemon
/// builds it: a bounce (which ends the transaction) answers for all;
/// otherwise the last refusal; otherwise "whitelisted" when every
/// recipient was, "known" when the client was, and "retry ok".
pub fn combine(codes: impl IntoIterator<Item = Reply>) -> Reply {
    let (mut last, mut refusal, mut all_whitelisted) = (None, None, true);
    for c in codes {
        if !c.accepts() {
            refusal = Some(c);
        }
        all_whitelisted &= c == Reply::Whitelisted;
        last = Some(c);
    }
    match (last, refusal) {
        (Some(Reply::Bounce), _) => Reply::Bounce,
        (_, Some(refusal)) => refusal,
        (Some(Reply::Whitelisted), None) if all_whitelisted => Reply::Whitelisted,
        (Some(Reply::KnownIp), None) => Reply::KnownIp,
        _ => Reply::RetryOk,
    }
}

#[cfg(test)]
mod tests {
    use greygate_store::TripletKey;

    use super::*;
    use Reply::*;

    #[test]
    fn verdicts_map_to_greydaemons_codes() {
        let key = TripletKey { client: "192.0.2.0/24".into(), sender: "a@x".into(), recipient: "b@y".into() };
        let grey = |outcome| Reason::Greylist { outcome, key: key.clone() };
        let reply = greygate_engine::Reply { code: 451, status: None, text: "Greylisted".into() };
        let defer =
            |reason| Verdict { action: Action::Defer(reply.clone()), headers: Vec::new(), reason, learning: false };
        let store = || Reason::StoreFailure { error: "down".into() };
        let cases = [
            (Verdict::accept(grey(Outcome::FirstPass { delayed: 400 })), RetryOk),
            (Verdict::accept(grey(Outcome::Passed)), RetryOk),
            (Verdict::accept(grey(Outcome::AutoWhitelisted { passes: 1 })), KnownIp),
            (Verdict::accept(Reason::Bounce), Bounce),
            (Verdict::accept(Reason::NotGreylisted { rules: vec!["r".into()] }), Whitelisted),
            (Verdict::accept(store()), RetryOk),
            (Verdict { learning: true, ..Verdict::accept(grey(Outcome::New)) }, RetryOk),
            (defer(grey(Outcome::New)), New),
            (defer(grey(Outcome::TooSoon { remaining: 30 })), TooSoon),
            (defer(grey(Outcome::Stale)), Stale),
            (defer(grey(Outcome::Expired)), Stale),
            (defer(store()), New),
        ];
        for (verdict, want) in cases {
            assert_eq!(code(&verdict), want, "{verdict:?}");
        }
    }

    #[test]
    fn replies_combine_as_greydaemon_builds_them() {
        let cases: &[(&[Reply], Reply)] = &[
            (&[RetryOk], RetryOk),
            (&[RetryOk, RetryOk], RetryOk),
            (&[New], New),
            (&[RetryOk, New, RetryOk], New),
            (&[New, TooSoon], TooSoon),
            (&[TooSoon, New], New),
            (&[Stale, RetryOk], Stale),
            // A bounce ends the transaction and answers for it, even after
            // a refusal (greydaemon overwrites the reply and stops).
            (&[New, Bounce], Bounce),
            (&[Whitelisted, Whitelisted], Whitelisted),
            (&[Whitelisted, RetryOk], RetryOk),
            (&[Whitelisted, New], New),
            (&[KnownIp], KnownIp),
            (&[Whitelisted, KnownIp], KnownIp),
        ];
        for (codes, want) in cases {
            assert_eq!(combine(codes.iter().copied()), *want, "{codes:?}");
        }
    }
}
