use super::*;

/// The request Postfix 3.7 sends at RCPT, byte for byte (PROTOCOLS.md §1.2).
const POSTFIX_RCPT: &[u8] = b"request=smtpd_access_policy\n\
protocol_state=RCPT\n\
protocol_name=ESMTP\n\
client_address=192.0.2.10\n\
client_name=mail.example.org\n\
client_port=51234\n\
reverse_client_name=mail.example.org\n\
server_address=198.51.100.5\n\
server_port=25\n\
helo_name=mail.example.org\n\
sender=alice@example.org\n\
recipient=bob@example.net\n\
recipient_count=0\n\
queue_id=\n\
instance=1a2b.6740c0de.4d2f1.0\n\
size=0\n\
etrn_domain=\n\
stress=\n\
sasl_method=\n\
sasl_username=\n\
sasl_sender=\n\
ccert_subject=\n\
ccert_issuer=\n\
ccert_fingerprint=\n\
ccert_pubkey_fingerprint=\n\
encryption_protocol=TLSv1.3\n\
encryption_cipher=TLS_AES_256_GCM_SHA384\n\
encryption_keysize=256\n\
policy_context=\n\
compatibility_level=3.6\n\
mail_version=3.7.11\n\
\n";

fn decode_all(input: &[u8], limits: Limits) -> (Vec<Request>, Result<(), DecodeError>, usize) {
    let mut buf = BytesMut::from(input);
    let mut decoder = Decoder::new(limits);
    let mut out = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => return (out, Ok(()), buf.len()),
            Err(e) => return (out, Err(e), buf.len()),
        }
    }
}

#[test]
fn decodes_the_postfix_rcpt_request() {
    let (reqs, res, left) = decode_all(POSTFIX_RCPT, Limits::default());
    assert_eq!(res, Ok(()));
    assert_eq!(left, 0);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert!(r.is_access_policy());
    assert_eq!(r.get(Attr::ProtocolState), Some("RCPT"));
    assert_eq!(r.get(Attr::ClientAddress), Some("192.0.2.10"));
    assert_eq!(r.get(Attr::ClientName), Some("mail.example.org"));
    assert_eq!(r.get(Attr::Sender), Some("alice@example.org"));
    assert_eq!(r.get(Attr::Recipient), Some("bob@example.net"));
    assert_eq!(r.get(Attr::Instance), Some("1a2b.6740c0de.4d2f1.0"));
    assert_eq!(r.get(Attr::QueueId), Some(""));
    assert_eq!(r.get(Attr::SaslUsername), Some(""));
    assert_eq!(r.attribute_count, 31);
}

#[test]
fn byte_at_a_time_gives_the_same_request() {
    let mut buf = BytesMut::new();
    let mut decoder = Decoder::default();
    let mut got = None;
    for (i, b) in POSTFIX_RCPT.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        match decoder.decode(&mut buf).unwrap() {
            Some(r) => {
                assert_eq!(i, POSTFIX_RCPT.len() - 1, "request ended early");
                got = Some(r);
            }
            None => assert!(i < POSTFIX_RCPT.len() - 1),
        }
    }
    let (whole, _, _) = decode_all(POSTFIX_RCPT, Limits::default());
    assert_eq!(got.as_ref(), whole.first());
}

#[test]
fn pipelined_requests_come_out_in_order_and_leftovers_stay() {
    let mut input = Vec::new();
    input.extend_from_slice(b"request=smtpd_access_policy\nrecipient=a@x\n\n");
    input.extend_from_slice(b"request=smtpd_access_policy\nrecipient=b@x\n\n");
    input.extend_from_slice(b"request=smtpd_access_policy\nrecip");
    let (reqs, res, left) = decode_all(&input, Limits::default());
    assert_eq!(res, Ok(()));
    let rcpts: Vec<&str> = reqs.iter().map(|r| r.get(Attr::Recipient).unwrap()).collect();
    assert_eq!(rcpts, ["a@x", "b@x"]);
    assert_eq!(left, "request=smtpd_access_policy\nrecip".len());
}

#[test]
fn table_of_inputs() {
    let small = Limits { max_line: 32, max_request: 96, max_attributes: 3 };
    type Case = (&'static [u8], Limits, Result<usize, DecodeError>);
    let cases: &[Case] = &[
        // CRLF input is tolerated, the empty line may be CR LF too.
        (b"request=smtpd_access_policy\r\nsender=\r\n\r\n", Limits::default(), Ok(1)),
        // Value may contain '=': split at the first one.
        (b"sender=a=b@x\n\n", Limits::default(), Ok(1)),
        // A lone empty line is a request with no attributes.
        (b"\n", Limits::default(), Ok(1)),
        (b"no separator\n\n", Limits::default(), Err(DecodeError::MissingSeparator { line: 1 })),
        (b"a=1\n=x\n\n", Limits::default(), Err(DecodeError::EmptyName { line: 2 })),
        (b"a=1\0\n\n", Limits::default(), Err(DecodeError::NulByte { line: 1 })),
        // Incomplete line at the limit: rejected before the LF arrives.
        (&[b'a'; 32], small, Err(DecodeError::LineTooLong { limit: 32 })),
        (&[b'a'; 31], small, Ok(0)),
        (b"a=1\nb=2\nc=3\nd=4\n\n", small, Err(DecodeError::TooManyAttributes { limit: 3 })),
        (
            b"aaaaaaaaaaaaaaaaaaaaaaaaaa=1\nbbbbbbbbbbbbbbbbbbbbbbbbbb=2\ncccccccccccccccccccccccccccccccccc",
            small,
            Err(DecodeError::LineTooLong { limit: 32 }),
        ),
        (
            b"aaaaaaaaaaaaaaaaaaaaaaaaaa=1\nbbbbbbbbbbbbbbbbbbbbbbbbbb=2\ncccccccccccccccccccccccccc=3\ndddddddd=4\n",
            small,
            Err(DecodeError::RequestTooLarge { limit: 96 }),
        ),
    ];
    for (input, limits, want) in cases {
        let (reqs, res, _) = decode_all(input, *limits);
        let got = res.map(|()| reqs.len());
        assert_eq!(&got, want, "input {:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn invalid_utf8_is_replaced_not_rejected() {
    let (reqs, res, _) = decode_all(b"helo_name=h\xffst\n\n", Limits::default());
    assert_eq!(res, Ok(()));
    assert_eq!(reqs[0].get(Attr::HeloName), Some("h\u{fffd}st"));
}

#[test]
fn repeated_attribute_keeps_the_last_value() {
    let (reqs, _, _) = decode_all(b"sender=a@x\nsender=b@x\n\n", Limits::default());
    assert_eq!(reqs[0].get(Attr::Sender), Some("b@x"));
    assert_eq!(reqs[0].attribute_count, 2);
}

#[test]
fn replies_are_lf_only_and_sanitised() {
    let cases = [
        (Action::Dunno, &b"action=DUNNO\n\n"[..]),
        (
            Action::DeferIfPermit("4.7.1 Greylisted, try again in 300 seconds".into()),
            b"action=DEFER_IF_PERMIT 4.7.1 Greylisted, try again in 300 seconds\n\n",
        ),
        (Action::Reply { code: 451, text: "4.7.1 Greylisted".into() }, b"action=451 4.7.1 Greylisted\n\n"),
        (
            Action::Prepend("X-Greylist: delayed 301 seconds".into()),
            b"action=PREPEND X-Greylist: delayed 301 seconds\n\n",
        ),
        (Action::Reject("bad\r\nthing\0".into()), b"action=REJECT bad  thing \n\n"),
        (Action::Defer(String::new()), b"action=DEFER\n\n"),
        (Action::Ok, b"action=OK\n\n"),
        (Action::Reply { code: 550, text: String::new() }, b"action=550\n\n"),
    ];
    for (action, want) in cases {
        let mut out = Vec::new();
        action.encode(&mut out);
        assert_eq!(out, want, "{action:?}");
    }
}

/// The fuzz target's main property, on every test run: the same requests
/// come out, and the same inputs are refused, however the bytes are cut.
#[test]
fn decoding_does_not_depend_on_how_bytes_arrive() {
    let limits = Limits { max_line: 64, max_request: 512, max_attributes: 8 };
    let pieces: [&[u8]; 10] = [
        b"request=smtpd_access_policy\n",
        b"sender=a@b\n",
        b"recipient=c@d\r\n",
        b"\n",
        b"\r\n",
        b"x",
        b"=",
        b"\0",
        b"client_address=192.0.2.1\n",
        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ];
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let decode = |data: &[u8], step: usize| {
        let mut decoder = Decoder::new(limits);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in data.chunks(step) {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(r)) => out.push(r),
                    Ok(None) => break,
                    Err(_) => return (out, true),
                }
            }
            assert!(buf.len() < limits.max_request + step);
        }
        (out, false)
    };
    for _ in 0..2000 {
        let len = (next() % 40) as usize;
        let data: Vec<u8> =
            (0..len).flat_map(|_| pieces[(next() % pieces.len() as u64) as usize].iter().copied()).collect();
        let whole = decode(&data, data.len().max(1));
        for step in [1, 2, 3, 7, 16] {
            assert_eq!(decode(&data, step), whole, "step {step}, input {:?}", String::from_utf8_lossy(&data));
        }
    }
}

#[test]
fn find_byte_agrees_with_a_plain_search() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for needle in [b'\n', b'=', 0x00, 0x01, 0x80, 0xff] {
        // Bytes next to the needle's value and around the word trick's
        // borrows, so false flags would show.
        let alphabet = [needle, needle.wrapping_add(1), needle.wrapping_sub(1), 0x00, 0x01, 0x80, 0xff, b'a'];
        for len in 0..48 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len).map(|_| alphabet[(next() % 8) as usize]).collect();
                let want = bytes.iter().position(|&b| b == needle);
                assert_eq!(super::find_byte(&bytes, needle), want, "{needle:#x} in {bytes:x?}");
            }
        }
    }
}

/// A small deterministic generator (xorshift64), so failures repeat.
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
