use super::*;

/// Feed `input` (in one piece), answering events the way a permissive
/// front end would, and return (output, events seen, relayed data).
fn run(session: &mut ServerSession, input: &[u8]) -> (String, Vec<String>, Vec<u8>) {
    session.input().extend_from_slice(input);
    let mut events = Vec::new();
    let mut relayed = Vec::new();
    let mut chunk = Vec::new();
    while let Some(event) = session.poll() {
        events.push(format!("{event:?}"));
        match event {
            Event::Helo { name, .. } => session.helo_ok(&name),
            Event::Mail { .. } => session.answer(&Reply::new(250, "2.1.0 Ok")),
            Event::Rcpt { to, .. } if to.address.starts_with("grey") => {
                session.answer(&Reply::new(451, "4.7.1 Greylisted"))
            }
            Event::Rcpt { .. } => session.answer(&Reply::new(250, "2.1.5 Ok")),
            Event::Data => session.answer(&Reply::new(354, "End data with <CR><LF>.<CR><LF>")),
            Event::MessageData => {
                session.take_message_data(&mut chunk);
                relayed.extend_from_slice(&chunk);
            }
            Event::MessageEnd(_) => session.answer(&Reply::new(250, "2.0.0 Ok: queued")),
            Event::Rset => session.answer(&Reply::new(250, "2.0.0 Ok")),
            Event::StartTls => session.start_tls(),
            Event::Auth { .. } => session.answer_auth(&Reply::new(334, ""), None),
            Event::AuthResponse(_) => {
                session.answer_auth(&Reply::new(235, "2.7.0 Authentication successful"), Some("u".into()))
            }
            Event::Quit | Event::TooManyErrors => break,
        }
    }
    let out = String::from_utf8(std::mem::take(session.output())).unwrap();
    (out, events, relayed)
}

fn session() -> ServerSession {
    ServerSession::new("gw.example", Limits::default(), Extensions { starttls: true, ..Extensions::default() })
}

fn codes(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.as_bytes().get(3) == Some(&b' ')).map(|l| &l[..3]).collect()
}

#[test]
fn a_pipelined_transaction_is_answered_in_order() {
    let mut s = session();
    let (out, events, relayed) = run(
        &mut s,
        b"EHLO client.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@test.example>\r\nRCPT TO:<grey@test.example>\r\nDATA\r\n",
    );
    assert_eq!(codes(&out), ["250", "250", "250", "451", "354"]);
    assert!(out.starts_with("250-gw.example\r\n250-PIPELINING\r\n"));
    assert_eq!(events.len(), 5);
    assert!(relayed.is_empty());
    let (out, _, relayed) = run(&mut s, b"Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
    assert_eq!(codes(&out), ["250", "221"]);
    assert_eq!(relayed, b"Subject: hi\r\n\r\n..dot\r\n");
    assert!(s.is_closed());
}

#[test]
fn commands_out_of_order_get_503_and_the_session_goes_on() {
    let mut s = session();
    let (out, events, _) = run(
        &mut s,
        b"MAIL FROM:<a@x>\r\nEHLO c\r\nRCPT TO:<b@y>\r\nDATA\r\nMAIL FROM:<a@x>\r\nDATA\r\nMAIL FROM:<a@x>\r\nNOOP\r\n",
    );
    assert_eq!(codes(&out), ["503", "250", "503", "503", "250", "554", "503", "250"]);
    assert_eq!(events.len(), 2, "{events:?}");
}

#[test]
fn over_long_lines_get_500_and_the_session_goes_on() {
    let mut s = session();
    let mut input = b"EHLO c\r\nNOOP ".to_vec();
    input.extend(std::iter::repeat_n(b'x', 10_000));
    input.extend_from_slice(b"\r\nNOOP\r\n");
    // Fed in small pieces, as a slow client would: the buffer stays bounded.
    let mut out = String::new();
    for piece in input.chunks(100) {
        out.push_str(&run(&mut s, piece).0);
        assert!(s.input().len() <= 2048);
    }
    assert_eq!(codes(&out), ["250", "500", "250"]);
    assert!(out.contains("500 5.5.2 Error: command line too long\r\n"));
}

#[test]
fn xclient_xforward_bdat_and_unknown_commands_are_refused() {
    let mut s = session();
    let (out, _, _) = run(
        &mut s,
        b"EHLO c\r\nXCLIENT ADDR=1.2.3.4\r\nxforward ADDR=1.2.3.4\r\nBDAT 10 LAST\r\nWHAT\r\nAUTH PLAIN\r\n",
    );
    assert_eq!(codes(&out), ["250", "550", "550", "502", "500", "503"]);
}

#[test]
fn too_many_errors_close_the_session_with_421() {
    let limits = Limits { max_errors: 3, ..Limits::default() };
    let mut s = ServerSession::new("gw.example", limits, Extensions::default());
    let (out, events, _) = run(&mut s, b"A\r\nB\r\nC\r\nD\r\n");
    assert_eq!(codes(&out), ["500", "500", "500", "421"]);
    assert_eq!(events.last().unwrap(), "TooManyErrors");
    assert!(s.is_closed());
}

#[test]
fn starttls_discards_plaintext_sent_after_it() {
    let mut s = session();
    // The attacker's injected commands ride in the same packet.
    let (out, _, _) = run(&mut s, b"EHLO c\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n");
    assert_eq!(codes(&out), ["250", "220"]);
    assert!(s.poll().is_none());
    s.tls_started();
    assert!(s.helo().is_none(), "EHLO must be sent again after TLS");
    let (out, _, _) = run(&mut s, b"EHLO c\r\nMAIL FROM:<a@x>\r\nSTARTTLS\r\n");
    // MAIL is accepted (no injected MAIL is pending) and STARTTLS is not
    // offered twice.
    assert_eq!(codes(&out), ["250", "250", "554"]);
    assert!(!out.contains("STARTTLS"));
}

#[test]
fn auth_is_offered_and_accepted_only_over_tls() {
    let ext = Extensions { starttls: true, auth: vec!["PLAIN".into()], ..Extensions::default() };
    let mut s = ServerSession::new("gw.example", Limits::default(), ext);
    let (out, _, _) = run(&mut s, b"EHLO c\r\nAUTH PLAIN AGEAYg==\r\nSTARTTLS\r\n");
    assert_eq!(codes(&out), ["250", "503", "220"]);
    assert!(!out.contains("AUTH"));
    s.tls_started();
    let (out, events, _) = run(&mut s, b"EHLO c\r\nAUTH LOGIN\r\nAUTH PLAIN\r\nAGEAYg==\r\nAUTH PLAIN\r\n");
    assert!(out.contains("250-AUTH PLAIN\r\n"));
    assert_eq!(codes(&out), ["250", "504", "334", "235", "503"]);
    assert!(events.contains(&"AuthResponse(\"AGEAYg==\")".to_string()));
    assert_eq!(s.authenticated(), Some("u"));
}

#[test]
fn size_and_recipient_limits() {
    let limits = Limits { max_recipients: 2, ..Limits::default() };
    let ext = Extensions { size: 1000, ..Extensions::default() };
    let mut s = ServerSession::new("gw.example", limits, ext);
    let (out, _, _) = run(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@x> SIZE=5000\r\nMAIL FROM:<a@x> SIZE=500\r\nRCPT TO:<1@y>\r\nRCPT TO:<2@y>\r\nRCPT TO:<3@y>\r\n",
    );
    assert_eq!(codes(&out), ["250", "552", "250", "250", "250", "452"]);
    let mut big = b"DATA\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2000));
    big.extend_from_slice(b"\r\n.\r\n");
    s.input().extend_from_slice(&big);
    let mut ends = Vec::new();
    let mut chunk = Vec::new();
    while let Some(event) = s.poll() {
        match event {
            Event::Data => s.answer(&Reply::new(354, "go")),
            Event::MessageData => s.take_message_data(&mut chunk),
            Event::MessageEnd(end) => {
                ends.push(end);
                s.answer(&Reply::new(552, "5.3.4 too big"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ends, [MessageEnd { size: 2002, oversize: true, bare_newline: false }]);
    assert!(!s.in_transaction());
}

#[test]
fn unannounced_options_are_refused() {
    let mut s = session();
    let (out, _, _) = run(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@x> SMTPUTF8\r\nMAIL FROM:<a@x> BODY=BINARYMIME\r\nMAIL FROM:<a@x> RET=FULL\r\nMAIL FROM:<a@x> BODY=8BITMIME\r\nRCPT TO:<b@y> NOTIFY=NEVER\r\n",
    );
    assert_eq!(codes(&out), ["250", "555", "555", "555", "250", "555"]);
}

#[test]
fn helo_gets_a_plain_reply_and_bare_lf_commands_are_read() {
    let mut s = session();
    let (out, _, _) = run(&mut s, b"HELO c\nNOOP\n");
    assert_eq!(out, "250 gw.example\r\n250 2.0.0 Ok\r\n");
    assert_eq!(s.helo(), Some(("c", false)));
}
