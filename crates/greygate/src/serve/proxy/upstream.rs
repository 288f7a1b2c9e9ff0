//! The upstream leg: an SMTP client connection from greygate to the real
//! MTA, one per client session, opened when the first recipient is
//! accepted (so greylisted and refused sessions never reach the MTA).
//!
//! Opening it walks the configured hosts in order: connect, read the
//! greeting, EHLO, STARTTLS when offered (and EHLO again), then tell the
//! MTA who the real client is — XCLIENT followed by the client's own
//! EHLO, or XFORWARD before each MAIL (PROTOCOLS.md §5). Every wait is
//! bounded by a timeout; every failure is an [`UpstreamError`], which the
//! session turns into a 4xx for the client (never a 250).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use greygate_proto::smtp::forward::{self, ClientIdentity};
use greygate_proto::smtp::{Capabilities, Reply, ReplyReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::tls::Conn;
use crate::config::proxy::{ForwardClient, UpstreamTls};

/// How to reach the upstream.
pub struct Settings {
    pub hosts: Vec<String>,
    /// Our name in EHLO.
    pub hostname: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub tls: UpstreamTls,
    pub tls_config: Arc<rustls::ClientConfig>,
    pub forward: ForwardClient,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream reachable: {0}")]
    Unavailable(String),
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// The upstream answered a session-level command (greeting, EHLO,
    /// XCLIENT) with a refusal.
    #[error("upstream refused the session: {0}")]
    Refused(Reply),
    #[error("TLS toward the upstream failed: {0}")]
    Tls(String),
}

/// An open upstream session.
pub struct Upstream {
    conn: Conn,
    reader: ReplyReader,
    buf: Vec<u8>,
    /// Message data queued by [`Upstream::queue_data`], sent with the next
    /// write: one send for our headers, a piece of the message and its
    /// end, instead of three.
    queued: Vec<u8>,
    /// Whether [`Upstream::flush`] has anything to send: our own headers
    /// alone wait for the client's first piece.
    unflushed: bool,
    pub caps: Capabilities,
    pub host: String,
    peer: Option<std::net::SocketAddr>,
    timeout: Duration,
    /// XFORWARD lines to send before each MAIL, when that is how the
    /// client is forwarded.
    xforward: Vec<String>,
}

impl Upstream {
    /// Connect to the first upstream that greets us and set the session up
    /// for `client`.
    pub async fn open(settings: &Settings, client: &ClientIdentity) -> Result<Upstream, UpstreamError> {
        let mut failures = Vec::new();
        let mut refusal = None;
        for host in &settings.hosts {
            match Upstream::open_one(settings, host, client).await {
                Ok(upstream) => return Ok(upstream),
                Err(error) => {
                    tracing::warn!(frontend = "proxy", upstream = %host, %error, "upstream unusable");
                    failures.push(format!("{host}: {error}"));
                    refusal = match error {
                        UpstreamError::Refused(reply) => Some(reply),
                        _ => None,
                    };
                }
            }
        }
        // When the last MTA refused this client outright, pass its answer on.
        match refusal {
            Some(reply) => Err(UpstreamError::Refused(reply)),
            None => Err(UpstreamError::Unavailable(failures.join("; "))),
        }
    }

    /// Ask the first reachable upstream what it announces (greeting, EHLO,
    /// QUIT), so sessions can announce matching extensions before they
    /// ever open an upstream session.
    pub async fn probe(settings: &Settings) -> Result<Capabilities, UpstreamError> {
        let mut last = UpstreamError::Unavailable("no upstream configured".into());
        for host in &settings.hosts {
            match Upstream::probe_one(settings, host).await {
                Ok(caps) => return Ok(caps),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn probe_one(settings: &Settings, host: &str) -> Result<Capabilities, UpstreamError> {
        let up = Upstream::handshake(settings, host).await?;
        let caps = up.caps.clone();
        up.quit().await;
        Ok(caps)
    }

    async fn connect(settings: &Settings, host: &str) -> Result<Upstream, UpstreamError> {
        let tcp = match timeout(settings.connect_timeout, TcpStream::connect(host)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(UpstreamError::Io(error)),
            Err(_) => return Err(UpstreamError::Timeout),
        };
        let _ = tcp.set_nodelay(true);
        let peer = host.parse().ok().or_else(|| tcp.peer_addr().ok());
        Ok(Upstream {
            peer,
            conn: Conn::Plain(tcp),
            reader: ReplyReader::new(),
            buf: vec![0; 8192],
            queued: Vec::new(),
            unflushed: false,
            caps: Capabilities::default(),
            host: host.to_owned(),
            timeout: settings.timeout,
            xforward: Vec::new(),
        })
    }

    async fn open_one(settings: &Settings, host: &str, client: &ClientIdentity) -> Result<Upstream, UpstreamError> {
        let mut up = Upstream::handshake(settings, host).await?;
        up.forward_client(settings.forward, client).await?;
        Ok(up)
    }

    /// Connect, read the greeting, EHLO, and STARTTLS when configured.
    async fn handshake(settings: &Settings, host: &str) -> Result<Upstream, UpstreamError> {
        let mut up = Upstream::connect(settings, host).await?;
        let greeting = up.read_reply(settings.timeout).await?;
        if greeting.code != 220 {
            return Err(UpstreamError::Refused(greeting));
        }
        up.hello(&settings.hostname, true).await?;
        if settings.tls != UpstreamTls::None && up.caps.has("STARTTLS") {
            let reply = up.command("STARTTLS").await?;
            if reply.code != 220 {
                return Err(UpstreamError::Tls(format!("STARTTLS refused: {reply}")));
            }
            // Bytes the server sent before the handshake are not protected.
            up.reader.discard();
            let name = host.rsplit_once(':').map_or(host, |(h, _)| h).trim_matches(['[', ']']);
            up.conn
                .connect_tls(settings.tls_config.clone(), name)
                .await
                .map_err(|e| UpstreamError::Tls(e.to_string()))?;
            up.hello(&settings.hostname, true).await?;
        } else if settings.tls == UpstreamTls::Require {
            return Err(UpstreamError::Tls("the upstream does not offer STARTTLS".into()));
        }
        Ok(up)
    }

    /// EHLO (or HELO) as `name`; learns the capabilities.
    async fn hello(&mut self, name: &str, esmtp: bool) -> Result<(), UpstreamError> {
        let verb = if esmtp { "EHLO" } else { "HELO" };
        let reply = self.command(&format!("{verb} {name}")).await?;
        if reply.code != 250 {
            return Err(UpstreamError::Refused(reply));
        }
        self.caps = if esmtp { Capabilities::parse(&reply) } else { Capabilities::default() };
        Ok(())
    }

    async fn forward_client(&mut self, mode: ForwardClient, client: &ClientIdentity) -> Result<(), UpstreamError> {
        let xclient = self.caps.xclient.clone();
        let xforward = self.caps.xforward.clone();
        match (mode, xclient, xforward) {
            (ForwardClient::Auto | ForwardClient::Xclient, Some(attrs), _) => {
                for line in forward::xclient(client, &attrs) {
                    // A successful XCLIENT resets the session and greets
                    // again (220); smtp-sink answers 250.
                    let reply = self.command(&line).await?;
                    if !reply.is_positive() {
                        return Err(UpstreamError::Refused(reply));
                    }
                }
                // Replay the client's own greeting, so the MTA sees its
                // HELO name and protocol (PROTOCOLS.md §5.2).
                let (helo, esmtp) = match &client.helo {
                    Some(h) => (h.clone(), client.esmtp),
                    None => ("[UNAVAILABLE]".to_owned(), true),
                };
                self.hello(&helo, esmtp).await?;
                // The EHLO reply after XCLIENT may hide XCLIENT: keep using
                // what we learned.
            }
            (ForwardClient::Auto | ForwardClient::Xforward, _, Some(attrs)) => {
                self.xforward = forward::xforward(client, &attrs);
            }
            (ForwardClient::None | ForwardClient::Auto, _, _) => {}
            (ForwardClient::Xclient, None, _) => {
                tracing::warn!(frontend = "proxy", upstream = %self.host, "forward_client = xclient but the upstream does not offer XCLIENT");
            }
            (ForwardClient::Xforward, _, None) => {
                tracing::warn!(frontend = "proxy", upstream = %self.host, "forward_client = xforward but the upstream does not offer XFORWARD");
            }
        }
        Ok(())
    }

    pub fn is_encrypted(&self) -> bool {
        self.conn.is_tls()
    }

    /// The upstream is on this machine (plaintext AUTH to it stays local).
    pub fn is_loopback(&self) -> bool {
        self.peer.is_some_and(|p| p.ip().is_loopback())
    }

    /// Send one command line and read its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, UpstreamError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes).await?;
        self.read_reply(self.timeout).await
    }

    /// Start a transaction: XFORWARD (if used), MAIL and the first RCPT,
    /// pipelined when the upstream allows it.
    pub async fn mail_rcpt(&mut self, mail: &str, rcpt: &str) -> Result<(Reply, Option<Reply>), UpstreamError> {
        for line in self.xforward.clone() {
            let reply = self.command(&line).await?;
            if reply.code != 250 {
                tracing::warn!(frontend = "proxy", upstream = %self.host, %reply, "XFORWARD refused; continuing without it");
            }
        }
        if !self.caps.has("PIPELINING") {
            let mail_reply = self.command(mail).await?;
            if !mail_reply.is_positive() {
                return Ok((mail_reply, None));
            }
            let rcpt_reply = self.command(rcpt).await?;
            return Ok((mail_reply, Some(rcpt_reply)));
        }
        let mut bytes = Vec::with_capacity(mail.len() + rcpt.len() + 4);
        for line in [mail, rcpt] {
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        self.write(&bytes).await?;
        let mail_reply = self.read_reply(self.timeout).await?;
        let rcpt_reply = self.read_reply(self.timeout).await?;
        Ok((mail_reply, Some(rcpt_reply)))
    }

    /// Relay message data (already CRLF-clean and dot-stuffed).
    pub async fn send_data(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.write(bytes).await
    }

    /// Relay message data with the next write ([`Upstream::flush`], or
    /// the end of the message). The caller flushes before it waits for
    /// more from the client, so data is never held back while idle.
    pub fn queue_data(&mut self, bytes: &[u8]) {
        self.queued.extend_from_slice(bytes);
        self.unflushed = true;
    }

    /// Queue the headers we put on top of the message; unlike
    /// [`Upstream::queue_data`] they wait for the message's first piece
    /// (or its end), not for the next flush.
    pub fn queue_headers(&mut self, bytes: &[u8]) {
        self.queued.extend_from_slice(bytes);
    }

    /// Send queued message data.
    pub async fn flush(&mut self) -> Result<(), UpstreamError> {
        if !self.unflushed {
            return Ok(());
        }
        self.write(&[]).await
    }

    /// End the message and wait for the MTA's verdict on it. The MTA may
    /// take a while (its own filters), so the wait is twice the usual.
    pub async fn end_data(&mut self) -> Result<Reply, UpstreamError> {
        self.write(b".\r\n").await?;
        self.read_reply(self.timeout * 2).await
    }

    /// Best-effort QUIT, without waiting for the 221 (as Postfix's own
    /// proxy does): it tells us nothing, and waiting costs a round trip
    /// per session. A TLS session also gets its close_notify.
    pub async fn quit(mut self) {
        let _ = timeout(Duration::from_secs(5), async {
            if self.write(b"QUIT\r\n").await.is_ok() && self.conn.is_tls() {
                let _ = self.conn.shutdown().await;
            }
        })
        .await;
    }

    /// Write queued data, then `bytes`, in one go.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        let all = if self.queued.is_empty() {
            bytes
        } else {
            self.queued.extend_from_slice(bytes);
            &self.queued
        };
        let result = timeout(self.timeout, self.conn.write_all(all)).await;
        self.queued.clear();
        self.unflushed = false;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(UpstreamError::Io(error)),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    async fn read_reply(&mut self, wait: Duration) -> Result<Reply, UpstreamError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.reader.next_reply() {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(error) => return Err(UpstreamError::Protocol(error.to_string())),
            }
            match tokio::time::timeout_at(deadline, self.conn.read(&mut self.buf)).await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Ok(0)) => return Err(UpstreamError::Closed),
                Ok(Ok(n)) => self.reader.feed(&self.buf[..n]),
                Ok(Err(error)) => return Err(UpstreamError::Io(error)),
            }
        }
    }
}
