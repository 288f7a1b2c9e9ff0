//! Envelope address normalisation: one sender is one sender.
//!
//! Bulk and forwarding software rewrites the envelope sender on every
//! message (BATV tags, SRS, VERP counters, `+` extensions). Keyed raw, each
//! retry of such mail would look like a new triplet and be deferred again.
//! These functions strip the per-message parts so that every message from
//! one mailbox maps to one key. They are pure and total: any input gives
//! some string, and odd input is kept rather than rejected.

use std::borrow::Cow;

/// `s` lower-cased, without copying when it has no upper case.
pub fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The stored form of the null sender `<>`.
pub const NULL_SENDER: &str = "<>";

/// Normalise an envelope sender for the greylisting key.
///
/// Lower-cases; unwraps SRS0/SRS1 to the original address; strips BATV
/// (`prvs=TAG=user`, also the reversed form), `+extension`, and replaces
/// VERP-style counters (all-digit words, and long hexadecimal tokens that
/// contain a digit) with `#`. The null sender becomes `<>`.
pub fn normalize_sender(raw: &str) -> String {
    let addr = strip_brackets(raw);
    if addr.is_empty() {
        return NULL_SENDER.to_owned();
    }
    let addr = lowercase(addr);
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return addr.into_owned();
    };
    let (local, domain) = unwrap_srs(local).unwrap_or((local, domain));
    let local = strip_batv(local);
    let local = local.split_once('+').map_or(local, |(base, _)| base);
    let mut out = mask_counters(local, domain.len() + 1);
    out.push('@');
    out.push_str(domain);
    out
}

/// Normalise an envelope recipient: brackets removed, lower-cased. The
/// extension is kept: a recipient does not change between retries.
pub fn normalize_recipient(raw: &str) -> String {
    lowercase(strip_brackets(raw)).into_owned()
}

/// The domain of an address (after the last `@`), if any.
pub fn domain_of(addr: &str) -> Option<&str> {
    addr.rsplit_once('@').map(|(_, d)| d).filter(|d| !d.is_empty())
}

fn strip_brackets(raw: &str) -> &str {
    let s = raw.trim();
    s.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(s)
}

/// `SRS0=HHH=TT=orig-domain=orig-local@forwarder` and
/// `SRS1=HHH=forwarder==HHH=TT=orig-domain=orig-local@forwarder`
/// give back `(orig-local, orig-domain)`. The separator after `SRS0`/`SRS1`
/// may be `=`, `+` or `-`.
fn unwrap_srs(local: &str) -> Option<(&str, &str)> {
    let tag = local.get(..4)?;
    let sep = local.as_bytes().get(4)?;
    if !matches!(sep, b'=' | b'+' | b'-') {
        return None;
    }
    let rest = &local[5..];
    let srs0_part = match tag {
        "srs0" => rest,
        "srs1" => rest.split_once("==")?.1,
        _ => return None,
    };
    // hash = timestamp = domain = local (the local part may contain '=').
    let mut parts = srs0_part.splitn(4, '=');
    let (_hash, _ts) = (parts.next()?, parts.next()?);
    let (domain, user) = (parts.next()?, parts.next()?);
    (!domain.is_empty() && !user.is_empty()).then_some((user, domain))
}

/// BATV `prvs=TAG=user` (RFC draft) or the common reversed `prvs=user=TAG`.
/// TAG is a key digit, three days digits and six hex digits: ten characters.
fn strip_batv(local: &str) -> &str {
    let Some(rest) = local.strip_prefix("prvs=") else {
        return local;
    };
    let Some((a, b)) = rest.split_once('=') else {
        return local;
    };
    if b.contains('=') {
        return local;
    }
    match (looks_like_batv_tag(a), looks_like_batv_tag(b)) {
        (false, true) => a,
        _ => b,
    }
}

fn looks_like_batv_tag(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Replace per-message counters in a local part with `#`: words made only
/// of digits, and hexadecimal words of at least eight characters that
/// contain a digit. Words are separated by anything not alphanumeric.
/// The result has room for `more` bytes after it (the caller's domain).
fn mask_counters(local: &str, more: usize) -> String {
    let mut out = String::with_capacity(local.len() + more);
    let mut word_start = None;
    let flush = |out: &mut String, word: &str| {
        let all_digits = word.bytes().all(|b| b.is_ascii_digit());
        let hex_counter =
            word.len() >= 8 && word.bytes().all(|b| b.is_ascii_hexdigit()) && word.bytes().any(|b| b.is_ascii_digit());
        if all_digits || hex_counter {
            out.push('#');
        } else {
            out.push_str(word);
        }
    };
    for (i, c) in local.char_indices() {
        if c.is_ascii_alphanumeric() {
            word_start.get_or_insert(i);
        } else {
            if let Some(start) = word_start.take() {
                flush(&mut out, &local[start..i]);
            }
            out.push(c);
        }
    }
    if let Some(start) = word_start {
        flush(&mut out, &local[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders() {
        let cases = [
            ("", "<>"),
            ("<>", "<>"),
            ("  <Alice@Example.ORG> ", "alice@example.org"),
            ("alice@example.org", "alice@example.org"),
            ("alice+news@example.org", "alice@example.org"),
            // BATV, both orders; the tag is replaced, not kept.
            ("prvs=1234abcdef=alice@example.org", "alice@example.org"),
            ("prvs=alice=1234abcdef@example.org", "alice@example.org"),
            // SRS0 and SRS1 unwrap to the original sender.
            ("SRS0=HhH=TT=example.org=alice@forwarder.example", "alice@example.org"),
            ("srs0+HhH=TT=example.org=alice@forwarder.example", "alice@example.org"),
            ("SRS1=X=first.example==HhH=TT=example.org=alice@second.example", "alice@example.org"),
            ("SRS0=HhH=TT=example.org=a=b@fw.example", "a=b@example.org"),
            // Broken SRS stays as it is (lower-cased).
            ("SRS0=only@fw.example", "srs0=only@fw.example"),
            // VERP counters.
            ("bounce-12345-bob=example.net@lists.example.org", "bounce-#-bob=example.net@lists.example.org"),
            ("bounces-ce9f2a41b7@mail.example.com", "bounces-#@mail.example.com"),
            ("user123@example.org", "user123@example.org"),
            ("deadbeef@example.org", "deadbeef@example.org"),
            ("msg.2024.11.21@example.org", "msg.#.#.#@example.org"),
            // No domain: kept, lower-cased.
            ("MAILER-DAEMON", "mailer-daemon"),
            // Non-ASCII local parts pass through.
            ("Jörg+x@example.de", "jörg@example.de"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_sender(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn recipients_and_domains() {
        assert_eq!(normalize_recipient("<Bob+Tag@Example.NET>"), "bob+tag@example.net");
        assert_eq!(domain_of("bob@example.net"), Some("example.net"));
        assert_eq!(domain_of("a@b@c.example"), Some("c.example"));
        assert_eq!(domain_of("nodomain"), None);
        assert_eq!(domain_of("x@"), None);
    }
}
