//! The SMTP server session (command parsing, limits, the DATA scanner),
//! fed arbitrary client bytes and answered by a fixed policy.
//!
//! Oracles: it never panics; the input it keeps stays bounded by the line
//! limit while reading commands; every byte it writes is a well-formed
//! reply line; and the replies and the relayed message data do not depend
//! on how the bytes arrive (whole or in pieces) — the property that keeps
//! pipelining and smuggling defences honest.
#![no_main]

use greygate_proto::smtp::{BareNewline, Event, Extensions, Limits, Reply, ServerSession};
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 512;

fn session() -> ServerSession {
    let limits = Limits { max_line: MAX_LINE, max_recipients: 100, bare_newline: BareNewline::Normalize, max_errors: 50 };
    let ext = Extensions { size: 4096, starttls: true, auth: vec!["PLAIN".into()], ..Extensions::default() };
    ServerSession::new("fuzz.example", limits, ext)
}

/// Answer events deterministically from their content.
fn answer(s: &mut ServerSession, event: Event, relayed: &mut Vec<u8>, chunk: &mut Vec<u8>) -> bool {
    match event {
        Event::Helo { name, .. } => {
            if name.len() % 7 == 3 {
                s.answer(&Reply::new(550, "5.7.1 no"));
            } else {
                s.helo_ok(&name);
            }
        }
        Event::Mail { from, .. } => {
            let code = if from.address.len() % 5 == 1 { 451 } else { 250 };
            s.answer(&Reply::new(code, "x"));
        }
        Event::Rcpt { to, .. } => {
            let code = if to.address.len() % 3 == 1 { 550 } else { 250 };
            s.answer(&Reply::new(code, "x"));
        }
        Event::Data => s.answer(&Reply::new(354, "go")),
        Event::MessageData => {
            s.take_message_data(chunk);
            relayed.extend_from_slice(chunk);
        }
        Event::MessageEnd(end) => {
            relayed.extend_from_slice(format!("<end {} {} {}>", end.size, end.oversize, end.bare_newline).as_bytes());
            s.answer(&Reply::new(250, "ok"));
        }
        Event::Rset => s.answer(&Reply::new(250, "ok")),
        // What is buffered after STARTTLS depends on packet boundaries by
        // design (it is thrown away): stop comparing there.
        Event::StartTls => {
            s.start_tls();
            return false;
        }
        Event::Auth { .. } | Event::AuthResponse(_) => s.answer_auth(&Reply::new(535, "no"), None),
        Event::Quit | Event::TooManyErrors => return false,
    }
    true
}

fn run(data: &[u8], piece: usize) -> (Vec<u8>, Vec<u8>) {
    let mut s = session();
    let (mut relayed, mut chunk) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    'feed: for part in data.chunks(piece.max(1)) {
        s.input().extend_from_slice(part);
        while let Some(event) = s.poll() {
            if !answer(&mut s, event, &mut relayed, &mut chunk) {
                out.append(s.output());
                break 'feed;
            }
        }
        if !s.in_data() {
            assert!(s.input().len() < MAX_LINE.saturating_add(piece.max(1)), "command input must stay bounded");
        }
        out.append(s.output());
    }
    (out, relayed)
}

fuzz_target!(|input: &[u8]| {
    let Some((&shape, data)) = input.split_first() else { return };
    let whole = run(data, usize::MAX);
    let pieces = run(data, usize::from(shape % 17) + 1);
    assert_eq!(whole, pieces, "replies or relayed data depend on how the bytes arrive");
    // Every reply line: three digits, '-' or ' ', text, CRLF.
    let text = whole.0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        assert!(line.len() >= 6 && line.ends_with(b"\r\n"), "bad reply line {line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit) && matches!(line[3], b' ' | b'-'), "bad reply line {line:?}");
        assert!(!line[..line.len() - 2].contains(&b'\r') && line.len() <= 512);
    }
});
