//! One client session: the driver between the client's socket, the sans-io
//! [`ServerSession`], the engine, and the upstream MTA.
//!
//! The order of work per transaction:
//! - MAIL is answered here (after the session's own checks): nothing is
//!   sent upstream yet.
//! - RCPT: relay control, then the engine's verdict (greylisting); only a
//!   recipient that passes both opens the upstream session (if needed) and
//!   is relayed, together with the MAIL on the first one.
//! - DATA: transactions from the null sender are greylisted here (callout
//!   senders stop before DATA); then DATA upstream, and the client gets
//!   354 only after the upstream's 354.
//! - Message data is relayed as it streams in; the client gets 250 only
//!   after the upstream's 250 for the final dot. A message that must not
//!   be delivered (too big, bare newlines under `reject`, upstream gone) is
//!   aborted by dropping the upstream connection mid-DATA, so the MTA
//!   discards it.

use std::sync::Arc;
use std::time::Instant;

use greygate_engine::checks::ClientNames;
use greygate_engine::{Action, Facts, Stage};
use greygate_proto::smtp::forward::ClientIdentity;
use greygate_proto::smtp::{BareNewline, Event, MessageEnd, Reply, ServerSession, Stuffer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::replies::{self, Step};
use super::tls::Conn;
use super::upstream::{Upstream, UpstreamError};
use super::{ProxyContext, received};
use crate::config::ProxyConfig;
use crate::scan::{MessageScan, Outcome};
use crate::serve::{decision_log, unix_now};

/// Free space made in the input buffer before each read: between
/// commands (an idle session's buffer stays this small), and inside DATA,
/// where a bigger read takes a small message whole.
const COMMAND_READ: usize = 1024;
const DATA_READ: usize = 16 * 1024;

/// One mail transaction (MAIL to the end of DATA or RSET).
struct Transaction {
    sender: String,
    mail_line: String,
    /// The upstream's reply to MAIL, once sent.
    mail_reply: Option<Reply>,
    recipients: Vec<String>,
    /// Headers from verdicts (X-Greylist), without duplicates.
    headers: Vec<String>,
    /// DATA was refused for good (greylisted null sender).
    refused: Option<Reply>,
    /// The upstream failed while message data was being relayed.
    data_failed: Option<UpstreamError>,
    /// Content scanning of the message, when configured.
    scan: Option<MessageScan>,
}

pub struct Session {
    ctx: Arc<ProxyContext>,
    config: Arc<ProxyConfig>,
    conn: Conn,
    smtp: ServerSession,
    client: ClientIdentity,
    /// The client's host names, looked up since the session started;
    /// taken at the first recipient.
    names: Option<JoinHandle<ClientNames>>,
    id: String,
    upstream: Option<Upstream>,
    txn: Option<Transaction>,
    auth: Option<(String, Option<String>)>,
    chunk: Vec<u8>,
    shutdown: CancellationToken,
}

impl Session {
    pub fn new(
        ctx: Arc<ProxyContext>,
        conn: Conn,
        client: ClientIdentity,
        names: Option<JoinHandle<ClientNames>>,
        early_input: &[u8],
        shutdown: CancellationToken,
    ) -> Session {
        let config = ctx.config.load_full();
        let mut smtp = ServerSession::new(&config.hostname, config.limits.clone(), ctx.extensions(&config, false));
        smtp.input().extend_from_slice(early_input);
        let id = ctx.next_id();
        Session {
            ctx,
            config,
            conn,
            smtp,
            client,
            names,
            id,
            upstream: None,
            txn: None,
            auth: None,
            chunk: Vec::new(),
            shutdown,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Greet and serve until the client quits, the session fails, or the
    /// server shuts down between transactions.
    pub async fn run(mut self) {
        self.smtp.greet(&replies::greeting(&self.config.hostname));
        loop {
            while let Some(event) = self.smtp.poll() {
                self.handle(event).await;
            }
            // Message data from this read goes out before we wait for more.
            if let Some(upstream) = self.upstream.as_mut()
                && let Err(error) = upstream.flush().await
            {
                self.data_failed(error);
            }
            if !self.flush().await || self.smtp.is_closed() {
                break;
            }
            if self.smtp.is_waiting() {
                // A handler left an event unanswered: a bug; fail safe.
                tracing::error!(frontend = "proxy", session = %self.id, "event left unanswered; closing");
                break;
            }
            let idle = !self.smtp.in_data() && !self.smtp.in_transaction();
            let wait = if self.smtp.in_data() { self.config.data_timeout } else { self.config.command_timeout };
            // Room for a whole small message per read (one read, one send
            // upstream); commands need little. Reclaims consumed space.
            let room = if self.smtp.in_data() { DATA_READ } else { COMMAND_READ };
            self.smtp.input().reserve(room);
            let read = tokio::select! {
                () = self.shutdown.cancelled(), if idle => {
                    self.smtp.close(&replies::shutting_down(&self.config.hostname));
                    let _ = self.flush().await;
                    break;
                }
                r = tokio::time::timeout(wait, self.conn.read_buf(self.smtp.input())) => r,
            };
            match read {
                Err(_) => {
                    tracing::info!(frontend = "proxy", session = %self.id, client = %self.client.addr, "client timed out");
                    self.smtp.close(&replies::timeout(&self.config.hostname));
                    let _ = self.flush().await;
                    break;
                }
                Ok(Ok(0)) => {
                    if self.smtp.in_data() {
                        tracing::info!(frontend = "proxy", session = %self.id, client = %self.client.addr, "client disconnected inside DATA; message dropped");
                    }
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(frontend = "proxy", session = %self.id, %error, "client read failed");
                    break;
                }
            }
        }
        // A transaction still open upstream is abandoned by dropping the
        // connection; a clean one gets a QUIT.
        if let Some(upstream) = self.upstream.take()
            && self.txn.is_none()
        {
            upstream.quit().await;
        }
        // Closing is enough for plain TCP; TLS says close_notify first.
        if self.conn.is_tls() {
            let _ = self.conn.shutdown().await;
        }
    }

    /// Write pending output; false when the client is gone.
    async fn flush(&mut self) -> bool {
        let out = self.smtp.output();
        if out.is_empty() {
            return true;
        }
        let result = tokio::time::timeout(self.config.command_timeout, self.conn.write_all(out)).await;
        self.smtp.output().clear();
        matches!(result, Ok(Ok(())))
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Helo { name, esmtp } => {
                self.client.helo = Some(name.clone());
                self.client.esmtp = esmtp;
                // EHLO resets the transaction; so must the upstream.
                self.reset_upstream().await;
                self.txn = None;
                self.smtp.helo_ok(&name);
            }
            Event::Mail { from, line } => {
                self.txn = Some(Transaction {
                    sender: from.address,
                    mail_line: line,
                    mail_reply: None,
                    recipients: Vec::new(),
                    headers: Vec::new(),
                    refused: None,
                    data_failed: None,
                    scan: None,
                });
                self.smtp.answer(&replies::ok("2.1.0"));
            }
            Event::Rcpt { to, line } => {
                let reply = self.rcpt(&to.address, &line).await;
                self.smtp.answer(&reply);
            }
            Event::Data => {
                let reply = self.data().await;
                self.smtp.answer(&reply);
            }
            Event::MessageData => self.message_data().await,
            Event::MessageEnd(end) => {
                let reply = self.message_end(end).await;
                self.smtp.answer(&reply);
            }
            Event::Rset => {
                self.reset_upstream().await;
                self.txn = None;
                self.smtp.answer(&replies::ok("2.0.0"));
            }
            Event::StartTls => self.start_tls().await,
            Event::Auth { mechanism, line } => {
                self.auth = Some((mechanism.clone(), None));
                let (reply, user) = self.auth_step(&line, &mechanism, true).await;
                self.smtp.answer_auth(&reply, user);
            }
            Event::AuthResponse(line) => {
                let mechanism = self.auth.as_ref().map(|(m, _)| m.clone()).unwrap_or_default();
                let (reply, user) = self.auth_step(&line, &mechanism, false).await;
                self.smtp.answer_auth(&reply, user);
            }
            Event::Quit | Event::TooManyErrors => {}
        }
    }

    fn facts(&self, stage: Stage, sender: &str, recipient: &str) -> Facts {
        Facts {
            stage,
            client_ip: self.client.addr.ip().to_canonical(),
            client_name: self.client.name.clone(),
            reverse_name: self.client.reverse_name.clone(),
            helo: self.client.helo.clone(),
            sender: Some(sender.to_owned()),
            recipient: Some(recipient.to_owned()),
            authenticated: self.smtp.authenticated().map(str::to_owned),
            tls: self.smtp.tls_active(),
        }
    }

    /// Wait for the client's host names (once): host name lists, the
    /// decision log and the MTA (XCLIENT, XFORWARD, Received) use them.
    async fn take_names(&mut self) {
        if let Some(lookup) = self.names.take() {
            let names = lookup.await.unwrap_or_else(|_| ClientNames::tempfailed());
            self.client.name = names.verified;
            self.client.reverse_name = names.reverse;
            self.client.name_tempfail = names.tempfail;
        }
    }

    async fn rcpt(&mut self, recipient: &str, line: &str) -> Reply {
        let Some(sender) = self.txn.as_ref().map(|t| t.sender.clone()) else {
            return Reply::new(503, "5.5.1 Error: need MAIL command");
        };
        let client_ip = self.client.addr.ip().to_canonical();
        let may_relay = self.ctx.engine.trusted(client_ip)
            || self.smtp.authenticated().is_some()
            || self.config.relay.accepts(recipient);
        if !may_relay {
            tracing::info!(
                frontend = "proxy",
                client = %client_ip,
                sender,
                recipient,
                id = %self.id,
                action = "reject",
                reason = "relay_denied",
                "decision"
            );
            return replies::relay_denied(recipient);
        }
        // A relay refusal does not wait for the client's names.
        self.take_names().await;
        let facts = self.facts(Stage::Rcpt, &sender, recipient);
        let verdict = self.ctx.engine.decide(&facts, unix_now()).await;
        let reply = match &verdict.action {
            Action::Accept => None,
            Action::Defer(r) | Action::Reject(r) => Some(replies::engine(r)),
        };
        let action = reply.as_ref().map_or("accept".to_owned(), |r| r.code.to_string());
        decision_log::decision("proxy", &facts, &verdict, &action, &self.id);
        if let Some(reply) = reply {
            return reply;
        }

        let reply = match self.relay_rcpt(line).await {
            Ok(reply) => replies::relay(reply),
            Err(error) => {
                tracing::warn!(frontend = "proxy", session = %self.id, %error, "upstream failed at RCPT");
                self.upstream = None;
                if let Some(txn) = self.txn.as_mut() {
                    txn.mail_reply = None;
                }
                replies::upstream_failure(&error, Step::Rcpt)
            }
        };
        if reply.is_positive()
            && let Some(txn) = self.txn.as_mut()
        {
            txn.recipients.push(recipient.to_owned());
            for header in verdict.headers {
                if !txn.headers.contains(&header) {
                    txn.headers.push(header);
                }
            }
        }
        reply
    }

    /// Relay one accepted RCPT (and the MAIL before the first one).
    async fn relay_rcpt(&mut self, line: &str) -> Result<Reply, UpstreamError> {
        if self.upstream.is_none() {
            let upstream = Upstream::open(&self.ctx.upstream_settings(&self.config), &self.client).await?;
            self.ctx.learn_capabilities(&upstream.caps);
            self.upstream = Some(upstream);
        }
        let upstream = self.upstream.as_mut().expect("opened above");
        let txn = self.txn.as_mut().expect("RCPT inside a transaction");
        match &txn.mail_reply {
            Some(mail) if mail.is_positive() => upstream.command(line).await,
            // The MTA refused the sender: every recipient gets that answer.
            Some(mail) => Ok(mail.clone()),
            None => {
                let (mail, rcpt) = upstream.mail_rcpt(&txn.mail_line, line).await?;
                txn.mail_reply = Some(mail.clone());
                Ok(rcpt.unwrap_or(mail))
            }
        }
    }

    async fn data(&mut self) -> Reply {
        let Some(txn) = self.txn.as_ref() else {
            return Reply::new(503, "5.5.1 Error: need MAIL command");
        };
        if let Some(reply) = &txn.refused {
            return reply.clone();
        }
        // The null sender is greylisted at DATA, once per recipient.
        if txn.sender.is_empty() {
            let recipients = txn.recipients.clone();
            for recipient in &recipients {
                let facts = self.facts(Stage::Data, "", recipient);
                let verdict = self.ctx.engine.decide(&facts, unix_now()).await;
                let refusal = match &verdict.action {
                    Action::Accept => None,
                    Action::Defer(r) | Action::Reject(r) => Some(replies::engine(r)),
                };
                let action = refusal.as_ref().map_or("accept".to_owned(), |r| r.code.to_string());
                decision_log::decision("proxy", &facts, &verdict, &action, &self.id);
                if let Some(reply) = refusal {
                    self.reset_upstream().await;
                    if let Some(txn) = self.txn.as_mut() {
                        txn.refused = Some(reply.clone());
                    }
                    return reply;
                }
                if let Some(txn) = self.txn.as_mut() {
                    for header in verdict.headers {
                        if !txn.headers.contains(&header) {
                            txn.headers.push(header);
                        }
                    }
                }
            }
        }
        let Some(upstream) = self.upstream.as_mut() else {
            return replies::upstream_failure(&UpstreamError::Closed, Step::Data);
        };
        match upstream.command("DATA").await {
            Ok(reply) if reply.code == 354 => {}
            Ok(reply) => return replies::relay(reply),
            Err(error) => {
                tracing::warn!(frontend = "proxy", session = %self.id, %error, "upstream failed at DATA");
                self.upstream = None;
                return replies::upstream_failure(&error, Step::Data);
            }
        }
        let header = self.trace_headers();
        if let Some(mut scan) = self.start_scan() {
            scan.feed_message(header.as_bytes()).await;
            let holds = scan.holds();
            if let Some(txn) = self.txn.as_mut() {
                txn.scan = Some(scan);
            }
            if holds {
                // Sent from the spool after the verdict, headers on top.
                return replies::start_data();
            }
        }
        // Sent with the first piece of the message.
        self.upstream.as_mut().expect("checked above").queue_headers(header.as_bytes());
        replies::start_data()
    }

    /// Start scanning the message, if the config scans this one.
    fn start_scan(&self) -> Option<MessageScan> {
        let scan = &self.config.scan;
        let txn = self.txn.as_ref()?;
        if !scan.enabled() {
            return None;
        }
        let plan = scan.plan(self.client.addr.ip(), &txn.recipients);
        (plan.clamd || plan.spamd).then(|| MessageScan::start(self.config.clone(), plan))
    }

    /// Our Received line and the verdicts' headers, in wire form.
    fn trace_headers(&self) -> String {
        let txn = self.txn.as_ref().expect("DATA inside a transaction");
        let mut out = received::header(&received::Hop {
            helo: self.client.helo.as_deref(),
            name: self.client.name.as_deref(),
            ip: self.client.addr.ip().to_canonical(),
            by: &self.config.hostname,
            esmtp: self.client.esmtp,
            tls: self.smtp.tls_active(),
            authenticated: self.smtp.authenticated().is_some(),
            id: &self.id,
            recipient: (txn.recipients.len() == 1).then(|| txn.recipients[0].as_str()),
            now: unix_now(),
        });
        for header in &txn.headers {
            out.push_str(header);
            out.push_str("\r\n");
        }
        out
    }

    fn data_failed(&mut self, error: UpstreamError) {
        tracing::warn!(frontend = "proxy", session = %self.id, %error, "upstream failed inside DATA");
        self.upstream = None;
        if let Some(txn) = self.txn.as_mut() {
            txn.data_failed = Some(error);
        }
    }

    async fn message_data(&mut self) {
        self.smtp.take_message_data(&mut self.chunk);
        let Some(txn) = self.txn.as_mut() else { return };
        if txn.data_failed.is_some() || self.chunk.is_empty() {
            return;
        }
        if let Some(scan) = txn.scan.as_mut() {
            scan.feed_wire(&self.chunk).await;
            if scan.holds() {
                return;
            }
        }
        // Sent before the session waits for more input, or with the end.
        if let Some(upstream) = self.upstream.as_mut() {
            upstream.queue_data(&self.chunk);
        }
    }

    async fn message_end(&mut self, end: MessageEnd) -> Reply {
        let mut txn = self.txn.take();
        let recipients = txn.as_ref().map_or(0, |t| t.recipients.len());
        let sender = txn.as_ref().map(|t| t.sender.clone()).unwrap_or_default();
        let scan = txn.as_mut().and_then(|t| t.scan.take());
        let started = Instant::now();
        let reply = if let Some(error) = txn.and_then(|t| t.data_failed) {
            replies::upstream_failure(&error, Step::EndOfData)
        } else if end.oversize {
            // Dropping the connection mid-DATA makes the MTA discard the
            // part it already has.
            self.upstream = None;
            replies::message_too_big()
        } else if end.bare_newline && self.config.limits.bare_newline == BareNewline::Reject {
            self.upstream = None;
            replies::bare_newline()
        } else if let Some(refusal) = self.scan_verdict(scan, &sender).await {
            refusal
        } else {
            match self.upstream.as_mut() {
                None => replies::upstream_failure(&UpstreamError::Closed, Step::EndOfData),
                Some(upstream) => match upstream.end_data().await {
                    // Postfix keeps the transaction open after refusing at
                    // the end of data (smtpd_end_of_data_restrictions);
                    // reset it so the next MAIL is not "nested".
                    Ok(reply) if !reply.is_positive() => {
                        if !upstream.command("RSET").await.is_ok_and(|r| r.is_positive()) {
                            self.upstream = None;
                        }
                        replies::relay(reply)
                    }
                    Ok(reply) => replies::relay(reply),
                    Err(error) => {
                        tracing::warn!(frontend = "proxy", session = %self.id, %error, "upstream failed at the end of DATA");
                        self.upstream = None;
                        replies::upstream_failure(&error, Step::EndOfData)
                    }
                },
            }
        };
        tracing::info!(
            frontend = "proxy",
            session = %self.id,
            client = %self.client.addr.ip().to_canonical(),
            sender,
            recipients,
            size = end.size,
            code = reply.code,
            reply = %reply,
            upstream_ms = started.elapsed().as_millis() as u64,
            "message"
        );
        reply
    }

    /// Wait for the scanners. A refusal aborts the message upstream (the
    /// connection is dropped before the final dot) and is the client's
    /// reply; a held message is sent to the MTA now, with any headers the
    /// scan added on top. `None`: go on and end the message upstream.
    async fn scan_verdict(&mut self, scan: Option<MessageScan>, sender: &str) -> Option<Reply> {
        let mut scan = scan?;
        let report = scan.finish().await;
        for name in &report.counters {
            self.ctx.engine.count_event(name);
        }
        let refusal = match &report.outcome {
            Outcome::Refuse(reply) => Some(reply.clone()),
            Outcome::Deliver { .. } => None,
        };
        tracing::info!(
            frontend = "proxy",
            session = %self.id,
            client = %self.client.addr.ip().to_canonical(),
            sender,
            clamd = %report.clamd,
            spamd = %report.spamd,
            action = refusal.as_ref().map_or("deliver".to_owned(), |r| r.code.to_string()),
            scan_ms = report.millis,
            "scan"
        );
        if let Some(reply) = refusal {
            self.upstream = None;
            return Some(reply);
        }
        if !scan.holds() {
            return None;
        }
        let Outcome::Deliver { headers } = report.outcome else { return None };
        match self.send_held(&mut scan, &headers).await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(frontend = "proxy", session = %self.id, %error, "upstream failed taking a held message");
                self.upstream = None;
                Some(replies::upstream_failure(&error, Step::EndOfData))
            }
        }
    }

    /// Send a held message: the scan's headers, then the spool (which
    /// starts with our own trace headers), dot-stuffed again.
    async fn send_held(&mut self, scan: &mut MessageScan, headers: &[String]) -> Result<(), UpstreamError> {
        let upstream = self.upstream.as_mut().ok_or(UpstreamError::Closed)?;
        let mut top = String::new();
        for header in headers {
            top.push_str(header);
            top.push_str("\r\n");
        }
        upstream.send_data(top.as_bytes()).await?;
        let spool = scan.spool().ok_or(UpstreamError::Closed)?;
        spool.rewind().await.map_err(UpstreamError::Io)?;
        let mut stuffer = Stuffer::default();
        let mut pos = 0;
        let mut wire = Vec::new();
        while let Some(piece) = spool.next_chunk(&mut pos).await.map_err(UpstreamError::Io)? {
            wire.clear();
            stuffer.stuff(&piece, &mut wire);
            upstream.send_data(&wire).await?;
        }
        upstream.send_data(stuffer.finish()).await
    }

    /// RSET the upstream if it has a transaction open.
    async fn reset_upstream(&mut self) {
        let open = self.txn.as_ref().is_some_and(|t| t.mail_reply.is_some());
        if !open {
            return;
        }
        if let Some(upstream) = self.upstream.as_mut() {
            match upstream.command("RSET").await {
                Ok(reply) if reply.is_positive() => {}
                _ => self.upstream = None,
            }
        }
    }

    async fn start_tls(&mut self) {
        let Some(config) = self.ctx.tls.load_full().as_ref().clone() else {
            self.smtp.answer(&replies::tls_unavailable());
            return;
        };
        self.smtp.start_tls();
        if !self.flush().await {
            self.smtp.close(&replies::tls_unavailable());
            return;
        }
        let handshake = tokio::time::timeout(self.config.command_timeout, self.conn.accept_tls(config)).await;
        match handshake {
            Ok(Ok(())) => {
                self.smtp.tls_started();
                self.smtp.set_extensions(self.ctx.extensions(&self.config, true));
                self.client.helo = None;
            }
            Ok(Err(error)) => {
                tracing::info!(frontend = "proxy", session = %self.id, client = %self.client.addr, %error, "TLS handshake failed");
                // Nothing more can be said in either protocol.
                self.smtp.close(&Reply::new(421, "4.7.0 TLS handshake failed"));
                self.smtp.output().clear();
            }
            Err(_) => {
                tracing::info!(frontend = "proxy", session = %self.id, client = %self.client.addr, "TLS handshake timed out");
                self.smtp.close(&Reply::new(421, "4.7.0 TLS handshake timed out"));
                self.smtp.output().clear();
            }
        }
    }

    /// Relay one AUTH line to the upstream; returns the reply for the
    /// client and, on success, the user name when it can be read.
    async fn auth_step(&mut self, line: &str, mechanism: &str, first: bool) -> (Reply, Option<String>) {
        if self.upstream.is_none() {
            match Upstream::open(&self.ctx.upstream_settings(&self.config), &self.client).await {
                Ok(upstream) => {
                    self.ctx.learn_capabilities(&upstream.caps);
                    self.upstream = Some(upstream);
                }
                Err(error) => {
                    tracing::warn!(frontend = "proxy", session = %self.id, %error, "upstream unavailable for AUTH");
                    return (replies::upstream_failure(&error, Step::Auth), None);
                }
            }
        }
        let upstream = self.upstream.as_mut().expect("opened above");
        if first && !upstream.caps.auth.iter().any(|m| m == mechanism) {
            return (replies::auth_unavailable(), None);
        }
        // Credentials must not cross a network in plaintext.
        if !upstream.is_encrypted() && !upstream.is_loopback() {
            tracing::warn!(frontend = "proxy", session = %self.id, upstream = %upstream.host, "not relaying AUTH over an unencrypted upstream connection");
            return (replies::auth_unavailable(), None);
        }
        if let Some((_, user)) = self.auth.as_mut()
            && user.is_none()
        {
            *user = auth_user(mechanism, line, first);
        }
        match upstream.command(line).await {
            Ok(reply) => {
                // A mechanism that hides the name still authenticates.
                let user = self.auth.as_ref().and_then(|(_, u)| u.clone()).unwrap_or_else(|| "(unnamed)".into());
                if reply.code == 235 {
                    tracing::info!(frontend = "proxy", session = %self.id, user, "client authenticated");
                }
                (replies::relay(reply), Some(user))
            }
            Err(error) => {
                self.upstream = None;
                (replies::upstream_failure(&error, Step::Auth), None)
            }
        }
    }
}

/// The login name in an AUTH exchange, where the mechanism shows it:
/// PLAIN's initial response or LOGIN's first answer.
fn auth_user(mechanism: &str, line: &str, first: bool) -> Option<String> {
    use base64::Engine as _;
    let decode = |b64: &str| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok();
    match (mechanism, first) {
        ("PLAIN", true) => {
            let initial = line.split_ascii_whitespace().nth(2)?;
            let raw = decode(initial)?;
            let authcid = raw.split(|b| *b == 0).nth(1)?;
            Some(String::from_utf8_lossy(authcid).into_owned())
        }
        ("PLAIN", false) => {
            let raw = decode(line)?;
            let authcid = raw.split(|b| *b == 0).nth(1)?;
            Some(String::from_utf8_lossy(authcid).into_owned())
        }
        ("LOGIN", false) => decode(line).map(|raw| String::from_utf8_lossy(&raw).into_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::auth_user;

    #[test]
    fn the_user_is_read_from_plain_and_login() {
        // "\0alice\0secret"
        assert_eq!(auth_user("PLAIN", "AUTH PLAIN AGFsaWNlAHNlY3JldA==", true).as_deref(), Some("alice"));
        assert_eq!(auth_user("PLAIN", "AGFsaWNlAHNlY3JldA==", false).as_deref(), Some("alice"));
        assert_eq!(auth_user("LOGIN", "YWxpY2U=", false).as_deref(), Some("alice"));
        assert_eq!(auth_user("CRAM-MD5", "xyz", false), None);
    }
}
