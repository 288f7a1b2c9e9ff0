//! The server side of an SMTP session, as greygate plays it toward clients.
//!
//! [`ServerSession`] owns framing, command syntax (parsed with smtp-proto),
//! command order, limits and the replies that need no outside knowledge
//! (syntax errors, bad sequence, NOOP, VRFY, too-long lines, refused
//! XCLIENT/XFORWARD/BDAT). Everything that needs a decision — HELO, MAIL,
//! RCPT, DATA, the end of a message, RSET, STARTTLS, AUTH — comes out of
//! [`ServerSession::poll`] as an [`Event`], and the session waits for the
//! front end's answer before it reads the next command. Replies are
//! therefore written in the order the commands came (RFC 2920), and input
//! is never thrown away except where the protocol says so: the rest of an
//! over-long line, and plaintext buffered after STARTTLS (CVE-2011-0411).
//!
//! The session never touches a socket or a clock: the front end puts the
//! bytes it reads into [`ServerSession::input`], writes out
//! [`ServerSession::output`] whenever `poll` needs more input, and owns
//! timeouts and TLS.

use bytes::{Buf, BytesMut};
use smtp_proto::{MailFrom, RcptTo, Request};

use super::data::{BareNewline, DataScanner};
use super::ehlo::Extensions;
use super::reply::Reply;

/// Bounds on what a client can make a session do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line in bytes, CRLF included (at least 512; Postfix
    /// reads 2048). Longer lines get `500 5.5.2` and the session goes on.
    pub max_line: usize,
    /// Most recipients per message; more get `452 4.5.3` (RFC 5321 asks
    /// for at least 100).
    pub max_recipients: usize,
    /// What to do with bare CR or LF in message data.
    pub bare_newline: BareNewline,
    /// Protocol errors (bad syntax, bad sequence, unknown commands) before
    /// the session is closed with `421`.
    pub max_errors: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_line: 2048, max_recipients: 1000, bare_newline: BareNewline::Normalize, max_errors: 20 }
    }
}

/// Something the front end must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// HELO or EHLO: answer with [`ServerSession::helo_ok`] or a refusal.
    Helo {
        name: String,
        esmtp: bool,
    },
    /// MAIL, parsed, and the command line as the client sent it (for
    /// relaying it unchanged).
    Mail {
        from: MailFrom<String>,
        line: String,
    },
    Rcpt {
        to: RcptTo<String>,
        line: String,
    },
    /// DATA: answer 354 to start the message, or refuse it.
    Data,
    /// Message data to relay: take it with [`ServerSession::take_message_data`].
    /// Needs no answer.
    MessageData,
    /// The client finished the message: answer with the final reply.
    MessageEnd(MessageEnd),
    Rset,
    /// STARTTLS: accept with [`ServerSession::start_tls`] or refuse.
    StartTls,
    /// AUTH: answer with [`ServerSession::answer_auth`].
    Auth {
        mechanism: String,
        line: String,
    },
    /// A line the client sent in reply to a 334 challenge.
    AuthResponse(String),
    /// QUIT was answered; close after writing the output.
    Quit,
    /// Too many protocol errors; `421` was written; close.
    TooManyErrors,
}

/// What the data phase saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageEnd {
    pub size: u64,
    /// Over the size limit: the relayed copy was cut short.
    pub oversize: bool,
    /// Bare CR or LF were seen (relayed as CRLF unless the limit says reject).
    pub bare_newline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Command,
    Data,
    /// After a 334: the next line is an AUTH response.
    AuthResponse,
    /// Waiting for the TLS handshake.
    Handshake,
    Closed,
}

/// Which event the session is waiting to see answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Helo { esmtp: bool },
    Mail,
    Rcpt,
    Data,
    MessageEnd,
    Rset,
    StartTls,
    Auth,
}

/// One client session.
#[derive(Debug)]
pub struct ServerSession {
    hostname: String,
    limits: Limits,
    extensions: Extensions,
    input: BytesMut,
    output: Vec<u8>,
    phase: Phase,
    awaiting: Option<Awaiting>,
    skipping_long_line: bool,
    helo: Option<(String, bool)>,
    tls: bool,
    authenticated: Option<String>,
    in_transaction: bool,
    recipients: usize,
    errors: u32,
    scanner: Option<DataScanner>,
    message_data: Vec<u8>,
    message_done: bool,
}

impl ServerSession {
    pub fn new(hostname: &str, limits: Limits, extensions: Extensions) -> ServerSession {
        ServerSession {
            hostname: hostname.to_owned(),
            limits,
            extensions,
            input: BytesMut::with_capacity(4096),
            output: Vec::with_capacity(1024),
            phase: Phase::Command,
            awaiting: None,
            skipping_long_line: false,
            helo: None,
            tls: false,
            authenticated: None,
            in_transaction: false,
            recipients: 0,
            errors: 0,
            scanner: None,
            message_data: Vec::new(),
            message_done: false,
        }
    }

    /// Write the greeting (or a refusal such as `554`/`421`, after which
    /// the caller closes).
    pub fn greet(&mut self, reply: &Reply) {
        reply.encode(&mut self.output);
    }

    /// Where the front end puts bytes read from the client.
    pub fn input(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Bytes to write to the client; the front end writes and clears them.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Replace the announced extensions (e.g. when AUTH becomes available).
    pub fn set_extensions(&mut self, extensions: Extensions) {
        self.extensions = extensions;
    }

    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The HELO/EHLO name and whether it was EHLO.
    pub fn helo(&self) -> Option<(&str, bool)> {
        self.helo.as_ref().map(|(n, e)| (n.as_str(), *e))
    }

    pub fn tls_active(&self) -> bool {
        self.tls
    }

    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// Recipients accepted in the current transaction.
    pub fn recipients(&self) -> usize {
        self.recipients
    }

    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Reading message data (the client sent DATA and got 354).
    pub fn in_data(&self) -> bool {
        self.phase == Phase::Data
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Waiting for an answer to an event.
    pub fn is_waiting(&self) -> bool {
        self.awaiting.is_some()
    }

    /// Take the relayable message data gathered since the last call
    /// (swapped into `into`, which is cleared first).
    pub fn take_message_data(&mut self, into: &mut Vec<u8>) {
        into.clear();
        std::mem::swap(into, &mut self.message_data);
    }

    /// Close the session after the output is written (a `421` on shutdown
    /// or timeout, written by the caller first).
    pub fn close(&mut self, reply: &Reply) {
        reply.encode(&mut self.output);
        self.phase = Phase::Closed;
    }

    /// The next event, or `None` when more input is needed (write the
    /// output first), an answer is pending, or the session is closed.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            if self.awaiting.is_some() {
                return None;
            }
            match self.phase {
                Phase::Closed | Phase::Handshake => return None,
                Phase::Data => return self.poll_data(),
                Phase::AuthResponse => {
                    let line = self.next_line()?;
                    self.awaiting = Some(Awaiting::Auth);
                    return Some(Event::AuthResponse(line));
                }
                Phase::Command => {
                    let line = self.next_line()?;
                    if let Some(event) = self.command(&line) {
                        return Some(event);
                    }
                    if self.errors >= self.limits.max_errors {
                        let reply = Reply::new(421, format!("4.7.0 {} Error: too many errors", self.hostname));
                        self.close(&reply);
                        return Some(Event::TooManyErrors);
                    }
                }
            }
        }
    }

    /// One complete command line without its line ending, or `None` when
    /// more input is needed. Over-long lines are answered here.
    fn next_line(&mut self) -> Option<String> {
        loop {
            let Some(lf) = memchr::memchr(b'\n', &self.input) else {
                if self.input.len() >= self.limits.max_line {
                    // Drop the long line as it comes; answer at its end.
                    self.skipping_long_line = true;
                    self.input.clear();
                }
                return None;
            };
            let too_long = self.skipping_long_line || lf + 1 > self.limits.max_line;
            let line = self.input.split_to(lf + 1);
            if too_long {
                self.skipping_long_line = false;
                self.error(500, "5.5.2 Error: command line too long");
                if self.phase == Phase::AuthResponse {
                    self.phase = Phase::Command;
                }
                continue;
            }
            let mut text = &line[..lf];
            if text.last() == Some(&b'\r') {
                text = &text[..text.len() - 1];
            }
            return Some(String::from_utf8_lossy(text).into_owned());
        }
    }

    fn reply(&mut self, code: u16, text: &str) {
        Reply::new(code, text).encode(&mut self.output);
    }

    fn error(&mut self, code: u16, text: &str) {
        self.errors += 1;
        self.reply(code, text);
    }

    fn reset_transaction(&mut self) {
        self.in_transaction = false;
        self.recipients = 0;
    }

    /// Handle one command line: an event for the front end, or `None` when
    /// the session answered it itself.
    fn command(&mut self, line: &str) -> Option<Event> {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "XCLIENT" | "XFORWARD" => {
                self.error(550, "5.7.0 Error: insufficient authorization");
                return None;
            }
            "AUTH" => return self.auth(line),
            "BDAT" => {
                // CHUNKING is never announced (PROTOCOLS.md §7.6).
                self.error(502, "5.5.1 Error: command not implemented");
                return None;
            }
            _ => {}
        }
        let mut bytes = line.as_bytes().to_vec();
        bytes.extend_from_slice(b"\r\n");
        let parsed = Request::parse(&mut bytes.iter()).map(Request::into_owned);
        let request = match parsed {
            Ok(request) => request,
            Err(error) => {
                self.syntax_error(error);
                return None;
            }
        };
        match request {
            Request::Ehlo { host } => self.hello(host, true),
            Request::Helo { host } => self.hello(host, false),
            Request::Mail { from } => self.mail(from, line),
            Request::Rcpt { to } => self.rcpt(to, line),
            Request::Data => {
                if !self.in_transaction {
                    self.error(503, "5.5.1 Error: need MAIL command");
                    None
                } else if self.recipients == 0 {
                    self.error(554, "5.5.1 Error: no valid recipients");
                    None
                } else {
                    self.awaiting = Some(Awaiting::Data);
                    Some(Event::Data)
                }
            }
            Request::Rset => {
                self.awaiting = Some(Awaiting::Rset);
                Some(Event::Rset)
            }
            Request::Noop { .. } => {
                self.reply(250, "2.0.0 Ok");
                None
            }
            Request::Help { .. } => {
                self.reply(214, "2.0.0 See RFC 5321");
                None
            }
            Request::Vrfy { .. } => {
                self.reply(252, "2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
                None
            }
            Request::Quit => {
                let reply = Reply::new(221, "2.0.0 Bye");
                self.close(&reply);
                Some(Event::Quit)
            }
            Request::StartTls => {
                if self.tls {
                    self.error(554, "5.5.1 Error: TLS already active");
                    None
                } else if !self.extensions.starttls {
                    self.error(502, "5.5.1 Error: command not implemented");
                    None
                } else if self.in_transaction {
                    self.error(503, "5.5.1 Error: MAIL transaction in progress");
                    None
                } else {
                    self.awaiting = Some(Awaiting::StartTls);
                    Some(Event::StartTls)
                }
            }
            Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. }
            | Request::Bdat { .. }
            | Request::Auth { .. } => {
                self.error(502, "5.5.1 Error: command not implemented");
                None
            }
        }
    }

    fn syntax_error(&mut self, error: smtp_proto::Error) {
        use smtp_proto::Error as E;
        match error {
            E::UnknownCommand => self.error(500, "5.5.2 Error: command not recognized"),
            E::InvalidSenderAddress => self.error(501, "5.1.7 Bad sender address syntax"),
            E::InvalidRecipientAddress => self.error(501, "5.1.3 Bad recipient address syntax"),
            E::SyntaxError { syntax } => self.error(501, &format!("5.5.4 Syntax: {syntax}")),
            E::InvalidParameter { param } => self.error(501, &format!("5.5.4 Invalid parameter {param}")),
            E::UnsupportedParameter { param } => {
                self.error(555, &format!("5.5.4 Unsupported option: {}", param.chars().take(64).collect::<String>()))
            }
            E::NeedsMoreData { .. } | E::ResponseTooLong | E::InvalidResponse { .. } => {
                self.error(500, "5.5.2 Error: bad syntax")
            }
        }
    }

    fn hello(&mut self, host: String, esmtp: bool) -> Option<Event> {
        self.awaiting = Some(Awaiting::Helo { esmtp });
        Some(Event::Helo { name: host, esmtp })
    }

    fn mail(&mut self, from: MailFrom<String>, line: &str) -> Option<Event> {
        if self.helo.is_none() {
            self.error(503, "5.5.1 Error: send HELO/EHLO first");
            return None;
        }
        if self.in_transaction {
            self.error(503, "5.5.1 Error: nested MAIL command");
            return None;
        }
        if from.size as u64 > self.extensions.size {
            self.reply(552, "5.3.4 Message size exceeds fixed limit");
            return None;
        }
        if let Some(option) = self.unsupported_mail_option(&from) {
            self.error(555, &format!("5.5.4 Unsupported option: {option}"));
            return None;
        }
        self.awaiting = Some(Awaiting::Mail);
        Some(Event::Mail { from, line: line.to_owned() })
    }

    fn unsupported_mail_option(&self, from: &MailFrom<String>) -> Option<&'static str> {
        use smtp_proto::*;
        let ext = &self.extensions;
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return Some("BODY=BINARYMIME");
        }
        if from.flags & MAIL_BODY_8BITMIME != 0 && !ext.eightbitmime {
            return Some("BODY=8BITMIME");
        }
        if from.flags & MAIL_SMTPUTF8 != 0 && !ext.smtputf8 {
            return Some("SMTPUTF8");
        }
        if from.flags & MAIL_REQUIRETLS != 0 {
            return Some("REQUIRETLS");
        }
        if !ext.dsn && (from.env_id.is_some() || from.flags & (MAIL_RET_FULL | MAIL_RET_HDRS) != 0) {
            return Some("RET/ENVID");
        }
        if from.by != 0 || from.hold_for != 0 || from.hold_until != 0 || from.mtrk.is_some() {
            return Some("BY/HOLDFOR/HOLDUNTIL/MTRK");
        }
        None
    }

    fn rcpt(&mut self, to: RcptTo<String>, line: &str) -> Option<Event> {
        if !self.in_transaction {
            self.error(503, "5.5.1 Error: need MAIL command");
            return None;
        }
        if self.recipients >= self.limits.max_recipients {
            self.reply(452, "4.5.3 Error: too many recipients");
            return None;
        }
        if !self.extensions.dsn && (to.orcpt.is_some() || to.flags != 0) {
            self.error(555, "5.5.4 Unsupported option: NOTIFY/ORCPT");
            return None;
        }
        self.awaiting = Some(Awaiting::Rcpt);
        Some(Event::Rcpt { to, line: line.to_owned() })
    }

    fn auth(&mut self, line: &str) -> Option<Event> {
        let mechanism = line.split_ascii_whitespace().nth(1).unwrap_or("").to_ascii_uppercase();
        if !self.tls || self.extensions.auth.is_empty() {
            self.error(503, "5.5.1 Error: authentication not enabled");
        } else if self.authenticated.is_some() {
            self.error(503, "5.5.1 Error: already authenticated");
        } else if self.in_transaction {
            self.error(503, "5.5.1 Error: MAIL transaction in progress");
        } else if mechanism.is_empty() {
            self.error(501, "5.5.4 Syntax: AUTH mechanism");
        } else if !self.extensions.auth.contains(&mechanism) {
            self.error(504, "5.5.4 Error: unsupported authentication mechanism");
        } else {
            self.awaiting = Some(Awaiting::Auth);
            return Some(Event::Auth { mechanism, line: line.to_owned() });
        }
        None
    }

    fn poll_data(&mut self) -> Option<Event> {
        if self.message_done {
            if !self.message_data.is_empty() {
                return Some(Event::MessageData);
            }
            self.message_done = false;
            let scanner = self.scanner.take().expect("scanner in data phase");
            self.phase = Phase::Command;
            self.awaiting = Some(Awaiting::MessageEnd);
            return Some(Event::MessageEnd(MessageEnd {
                size: scanner.size(),
                oversize: scanner.oversize(),
                bare_newline: scanner.bare_newline(),
            }));
        }
        if self.input.is_empty() {
            return if self.message_data.is_empty() { None } else { Some(Event::MessageData) };
        }
        let scanner = self.scanner.as_mut().expect("scanner in data phase");
        let scanned = scanner.scan(&self.input, &mut self.message_data);
        self.input.advance(scanned.consumed);
        if scanned.done {
            self.message_done = true;
            return self.poll_data();
        }
        if self.message_data.is_empty() { None } else { Some(Event::MessageData) }
    }

    /// Answer a pending Mail, Rcpt, Data, MessageEnd, Rset, StartTls (a
    /// refusal) or Helo (a refusal) event.
    pub fn answer(&mut self, reply: &Reply) {
        let Some(awaiting) = self.awaiting.take() else {
            debug_assert!(false, "answer without a pending event");
            return;
        };
        reply.encode(&mut self.output);
        match awaiting {
            Awaiting::Mail if reply.is_positive() => {
                self.in_transaction = true;
                self.recipients = 0;
            }
            Awaiting::Rcpt if reply.is_positive() => self.recipients += 1,
            Awaiting::Data if reply.code == 354 => {
                self.phase = Phase::Data;
                self.scanner = Some(DataScanner::new(self.extensions.size));
                self.message_data.clear();
            }
            Awaiting::MessageEnd | Awaiting::Rset => self.reset_transaction(),
            Awaiting::Auth if reply.code == 334 => self.phase = Phase::AuthResponse,
            Awaiting::Auth => self.phase = Phase::Command,
            _ => {}
        }
    }

    /// Accept a pending HELO/EHLO: the session writes its reply (the
    /// extension list for EHLO) and starts afresh, as RFC 5321 §4.1.4 asks.
    pub fn helo_ok(&mut self, name: &str) {
        let Some(Awaiting::Helo { esmtp }) = self.awaiting.take() else {
            debug_assert!(false, "helo_ok without a pending HELO");
            return;
        };
        let reply = if esmtp {
            self.extensions.ehlo_reply(&self.hostname, self.tls)
        } else {
            Reply::new(250, self.hostname.clone())
        };
        reply.encode(&mut self.output);
        self.helo = Some((name.to_owned(), esmtp));
        self.reset_transaction();
    }

    /// Accept a pending STARTTLS: writes the 220 and throws away every
    /// byte the client sent after the command, so nothing sent in
    /// plaintext is executed as if it had come over TLS (CVE-2011-0411).
    /// The caller writes the output, runs the handshake, then calls
    /// [`ServerSession::tls_started`].
    pub fn start_tls(&mut self) {
        if self.awaiting.take() != Some(Awaiting::StartTls) {
            debug_assert!(false, "start_tls without a pending STARTTLS");
            return;
        }
        self.reply(220, "2.0.0 Ready to start TLS");
        self.input.clear();
        self.phase = Phase::Handshake;
    }

    /// The handshake finished: the session starts over, as after the
    /// greeting (the client must send EHLO again).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.reset_transaction();
        self.input.clear();
        self.phase = Phase::Command;
    }

    /// Answer a pending Auth or AuthResponse event. A 334 asks the client
    /// for another line; a 235 records `user` as authenticated.
    pub fn answer_auth(&mut self, reply: &Reply, user: Option<String>) {
        if reply.code == 235 {
            self.authenticated = Some(user.unwrap_or_default());
        }
        self.answer(reply);
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
