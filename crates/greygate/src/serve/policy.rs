//! The Postfix policy front end: one task per connection.
//!
//! Postfix keeps a connection open per smtpd process and sends one request
//! at a time; pipelined requests are still answered in order. A malformed
//! request is logged and the connection closed **without a reply**, which
//! is what Postfix expects (it reconnects and retries, then applies its
//! default action). Unsolicited bytes would make Postfix drop the
//! connection, so nothing is ever written except replies.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use greygate_engine::{Action, Engine, Facts, Stage, Verdict};
use greygate_proto::policy::{self, Attr, Decoder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::decision_log;
use super::listen::Stream;
use crate::config::{DeferAction, PolicyConfig};

/// Free buffer space before each read: a whole request from Postfix (a
/// kilobyte or two) fits, so one read takes it and one decode parses it.
const READ_ROOM: usize = 4096;

/// What every policy connection shares.
pub struct PolicyContext {
    pub engine: Arc<Engine>,
    /// Swapped on SIGHUP; each request reads the current one.
    pub config: ArcSwap<PolicyConfig>,
}

/// Serve one connection until the client closes it, it idles out, it
/// sends garbage, or the server shuts down between requests.
pub async fn serve(mut stream: Box<dyn Stream>, peer: String, ctx: Arc<PolicyContext>, shutdown: CancellationToken) {
    let mut buf = BytesMut::with_capacity(READ_ROOM);
    let mut decoder = Decoder::new(ctx.config.load().limits);
    let mut out = Vec::with_capacity(512);
    // postgrey's rule: one X-Greylist header per message (instance).
    let mut prepended_instance = Prepended::default();
    // One timer and one shutdown waiter for the connection's life, not one
    // per read: a busy connection only notes when it last read.
    let mut last_read = Instant::now();
    let idle = tokio::time::sleep_until(last_read + ctx.config.load().idle_timeout);
    let cancelled = shutdown.cancelled();
    tokio::pin!(idle, cancelled);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(request)) if request.is_access_policy() => {
                    let action = answer(&ctx, &peer, &request, &mut prepended_instance).await;
                    action.encode(&mut out);
                }
                Ok(Some(request)) => {
                    let kind = request.get(Attr::Request);
                    tracing::warn!(frontend = "policy", %peer, request = ?kind, "not an smtpd_access_policy request; closing without reply");
                    close_after_bad_input(stream, &out).await;
                    return;
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(frontend = "policy", %peer, %error, "malformed policy request; closing without reply");
                    close_after_bad_input(stream, &out).await;
                    return;
                }
            }
        }
        if !out.is_empty() {
            if let Err(error) = stream.write_all(&out).await {
                tracing::debug!(frontend = "policy", %peer, %error, "write failed");
                return;
            }
            out.clear();
        }
        // Room for a whole request, so one read takes it; what is left of
        // the last read moves to the front.
        buf.reserve(READ_ROOM);
        let read = loop {
            tokio::select! {
                // Between requests, a shutdown closes the connection; Postfix
                // reconnects to whichever server is up.
                () = &mut cancelled, if buf.is_empty() => return,
                r = stream.read_buf(&mut buf) => break r,
                () = &mut idle => {
                    // The timer was set for an earlier read; a reload may
                    // have changed the timeout since.
                    let idle_timeout = ctx.config.load().idle_timeout;
                    if last_read.elapsed() >= idle_timeout {
                        tracing::debug!(frontend = "policy", %peer, "idle timeout");
                        return;
                    }
                    idle.as_mut().reset(last_read + idle_timeout);
                }
            }
        };
        last_read = Instant::now();
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    tracing::warn!(frontend = "policy", %peer, bytes = buf.len(), "connection closed inside a request");
                }
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(frontend = "policy", %peer, %error, "read failed");
                return;
            }
        }
    }
}

/// Unread input left after bad input (the rest of an over-long line).
const LINGER_BYTES: usize = 64 * 1024;
/// How long the client may take to close after we did.
const LINGER: Duration = Duration::from_secs(1);

/// Close the connection after bad input: the answers to the requests
/// before it, then end of stream. Closing a socket with unread input makes
/// the kernel send a reset, which can destroy those answers before the
/// client reads them; so we close our side first and discard what the
/// client still sends, for a bounded time and amount.
async fn close_after_bad_input(mut stream: Box<dyn Stream>, answers: &[u8]) {
    if stream.write_all(answers).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while discarded < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

/// Decide on one request and turn the verdict into a policy action.
async fn answer(ctx: &PolicyContext, peer: &str, req: &Request, prepended: &mut Prepended) -> policy::Action {
    let Some(ip) = req.get(Attr::ClientAddress).and_then(|a| a.parse::<IpAddr>().ok()) else {
        let client_address = req.get(Attr::ClientAddress);
        tracing::warn!(frontend = "policy", %peer, ?client_address, "request without a usable client_address; answering DUNNO");
        return policy::Action::Dunno;
    };
    let facts = facts(req, ip);
    let verdict = ctx.engine.decide(&facts, super::unix_now()).await;
    let action = encode(&verdict, ctx.config.load().defer_action, req.get(Attr::Instance), prepended);
    decision_log::policy(&facts, req, &verdict, &action);
    action
}

/// Postfix attributes → engine facts.
pub fn facts(req: &Request, ip: IpAddr) -> Facts {
    let present = |a| req.get(a).filter(|s| !s.is_empty()).map(str::to_owned);
    let known = |a| req.get(a).filter(|s| !s.is_empty() && *s != "unknown").map(str::to_owned);
    Facts {
        stage: req.get(Attr::ProtocolState).map_or(Stage::Other, Stage::from_postfix),
        client_ip: ip,
        client_name: known(Attr::ClientName),
        reverse_name: known(Attr::ReverseClientName),
        helo: present(Attr::HeloName),
        sender: req.get(Attr::Sender).map(str::to_owned),
        recipient: present(Attr::Recipient),
        authenticated: present(Attr::SaslUsername),
        tls: req.get(Attr::EncryptionProtocol).is_some_and(|p| !p.is_empty()),
    }
}

/// The header names already prepended to one message (Postfix
/// `instance`).
#[derive(Debug, Default)]
pub struct Prepended {
    instance: Option<String>,
    names: Vec<String>,
}

/// Verdict → policy action. Postfix takes one action per reply, so each
/// accepted recipient can prepend one header: the first of the verdict's
/// headers whose name this message (`instance`) has not had yet. So a
/// message gets one X-Greylist header, and with two or more recipients
/// also its Received-SPF; a one-recipient first retry carries only
/// X-Greylist.
pub fn encode(
    verdict: &Verdict,
    defer: DeferAction,
    instance: Option<&str>,
    prepended: &mut Prepended,
) -> policy::Action {
    match &verdict.action {
        Action::Accept => {
            if instance.is_none() || prepended.instance.as_deref() != instance {
                prepended.instance = instance.map(str::to_owned);
                prepended.names.clear();
            }
            let name = |h: &str| h.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            let Some(header) = verdict.headers.iter().find(|h| !prepended.names.contains(&name(h))) else {
                return policy::Action::Dunno;
            };
            prepended.names.push(name(header));
            policy::Action::Prepend(header.clone())
        }
        Action::Defer(reply) => match defer {
            DeferAction::DeferIfPermit => policy::Action::DeferIfPermit(reply.status_and_text()),
            DeferAction::Defer => policy::Action::Defer(reply.status_and_text()),
            DeferAction::Reply => policy::Action::Reply { code: reply.code, text: reply.status_and_text() },
        },
        Action::Reject(reply) => policy::Action::Reply { code: reply.code, text: reply.status_and_text() },
    }
}
