//! The DATA phase: finding the end of a message and relaying its lines
//! safely.
//!
//! A message ends only at `CRLF . CRLF`. Bare LF and bare CR are the raw
//! material of SMTP smuggling (PROTOCOLS.md §7.7): if greygate and the
//! upstream MTA disagreed about where a message ends, a second message
//! could hide inside the first. So every line leaves this scanner with a
//! CRLF ending, whatever the client used, and a line holding a lone `.`
//! that did not end with CRLF is relayed dot-stuffed (`..`): the upstream
//! sees the same single message greygate saw. With [`BareNewline::Reject`]
//! the message is refused instead (the scanner still finds its end).
//!
//! The client's dot-stuffing is kept: lines are relayed as they came, so
//! the upstream removes the same dots the client added. The scanner
//! streams: it holds at most a couple of bytes of state between calls.

use memchr::memchr2;

/// What to do with a bare CR or LF inside message data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewline {
    /// Relay it as CRLF (Postfix's `smtpd_forbid_bare_newline = normalize`).
    Normalize,
    /// Refuse the message at its end.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// The line so far is a single `.`.
    Dot,
    /// The line so far is `.` CR.
    DotCr,
    /// Inside a line.
    InLine,
    /// Inside a line, just after a CR.
    Cr,
    /// The end of the message was found.
    Done,
}

/// What one call to [`DataScanner::scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Input bytes used. Less than the input only when the end of the
    /// message was found; the rest belongs to the next command.
    pub consumed: usize,
    /// The end of the message (`CRLF . CRLF`) was found.
    pub done: bool,
}

/// Scans one message's data.
#[derive(Debug, Clone)]
pub struct DataScanner {
    state: State,
    size: u64,
    max_size: u64,
    bare_newline: bool,
    /// The current line began after a real CRLF (or at the start of the
    /// data): only such a `.` line can end the message.
    clean: bool,
}

impl DataScanner {
    /// A scanner for a message of at most `max_size` bytes; beyond that the
    /// rest is read but not relayed.
    pub fn new(max_size: u64) -> DataScanner {
        DataScanner { state: State::LineStart, size: 0, max_size, bare_newline: false, clean: true }
    }

    /// Bytes of message data seen so far (as received, dot-stuffing
    /// included, the final `.` line excluded).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The message is larger than the limit; what was relayed is cut short
    /// and must not be delivered.
    pub fn oversize(&self) -> bool {
        self.size > self.max_size
    }

    /// The message contained a bare CR or LF.
    pub fn bare_newline(&self) -> bool {
        self.bare_newline
    }

    /// Scan `input`, appending the data to relay to `out` (lines ending
    /// in CRLF, dot-stuffing kept, the final `.` line not included).
    pub fn scan(&mut self, input: &[u8], out: &mut Vec<u8>) -> Scanned {
        let mut i = 0;
        let start_len = out.len();
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::LineStart => {
                    if b == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::InLine;
                    }
                }
                State::Dot => match b {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    b'\n' => {
                        // `.` LF: not an end; relay the lone dot stuffed.
                        self.bare_newline = true;
                        self.clean = false;
                        out.extend_from_slice(b"..\r\n");
                        self.state = State::LineStart;
                        i += 1;
                    }
                    _ => {
                        out.push(b'.');
                        self.state = State::InLine;
                    }
                },
                State::DotCr => {
                    if b == b'\n' && self.clean {
                        self.state = State::Done;
                        i += 1;
                        // The final line is not data.
                        return self.finish(i, out, start_len, true);
                    }
                    if b == b'\n' {
                        // `.` CRLF after a bare newline: <LF>.<CR><LF> is
                        // not an end either.
                        i += 1;
                        self.clean = true;
                    } else {
                        // `.` CR followed by something else: a bare CR.
                        self.bare_newline = true;
                        self.clean = false;
                    }
                    out.extend_from_slice(b"..\r\n");
                    self.state = State::LineStart;
                }
                State::InLine => {
                    let rest = &input[i..];
                    match memchr2(b'\r', b'\n', rest) {
                        None => {
                            out.extend_from_slice(rest);
                            i = input.len();
                        }
                        Some(pos) => {
                            out.extend_from_slice(&rest[..pos]);
                            if rest[pos] == b'\n' {
                                self.bare_newline = true;
                                self.clean = false;
                                out.extend_from_slice(b"\r\n");
                                self.state = State::LineStart;
                            } else {
                                self.state = State::Cr;
                            }
                            i += pos + 1;
                        }
                    }
                }
                State::Cr => {
                    if b == b'\n' {
                        i += 1;
                        self.clean = true;
                    } else {
                        self.bare_newline = true;
                        self.clean = false;
                    }
                    out.extend_from_slice(b"\r\n");
                    self.state = State::LineStart;
                }
            }
        }
        self.finish(i, out, start_len, false)
    }

    fn finish(&mut self, consumed: usize, out: &mut Vec<u8>, start_len: usize, done: bool) -> Scanned {
        // Count what the client sent, minus the final `.` CRLF (three
        // bytes, possibly counted in earlier calls).
        let before = self.size;
        self.size += consumed as u64;
        if done {
            self.size = self.size.saturating_sub(3);
        }
        if self.size > self.max_size {
            // Keep only what fits under the limit (nothing once over it):
            // the caller must abort the relayed copy anyway.
            let allowed = self.max_size.saturating_sub(before) as usize;
            out.truncate(start_len + allowed.min(out.len() - start_len));
        }
        Scanned { consumed, done }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scan `input` fed in pieces of `step` bytes; returns (relayed, consumed, done, bare).
    fn scan_in_steps(input: &[u8], step: usize) -> (Vec<u8>, usize, bool, bool) {
        let mut s = DataScanner::new(1 << 20);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            let r = s.scan(&input[pos..end], &mut out);
            pos += r.consumed;
            if r.done {
                return (out, pos, true, s.bare_newline());
            }
        }
        (out, pos, false, s.bare_newline())
    }

    fn check(input: &[u8], relayed: &[u8], consumed: usize, done: bool, bare: bool) {
        for step in 1..=input.len().max(1) {
            let got = scan_in_steps(input, step);
            assert_eq!(
                (got.0.as_slice(), got.1, got.2, got.3),
                (relayed, consumed, done, bare),
                "input {:?} in steps of {step}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn a_message_ends_only_at_crlf_dot_crlf() {
        check(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", b"Subject: x\r\n\r\nbody\r\n", 23, true, false);
        check(b".\r\n", b"", 3, true, false);
        check(b"a\r\n..b\r\n.\r\n", b"a\r\n..b\r\n", 11, true, false);
        check(b"a\r\n.b\r\n", b"a\r\n.b\r\n", 7, false, false);
    }

    #[test]
    fn smuggling_sequences_do_not_end_the_message() {
        // <LF>.<LF>, <CR>.<CR>, <LF>.<CR><LF>, <CR><LF>.<LF>: each becomes
        // a dot-stuffed content line, so the upstream sees one message.
        check(b"a\n.\nMAIL FROM:<x>\r\n", b"a\r\n..\r\nMAIL FROM:<x>\r\n", 19, false, true);
        check(b"a\r.\rb\r\n", b"a\r\n..\r\nb\r\n", 7, false, true);
        check(b"a\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n", 8, false, true);
        // After a proper CRLF again, the end is recognised.
        check(b"a\n.\r\nb\r\n.\r\n", b"a\r\n..\r\nb\r\n", 11, true, true);
        check(b"a\r\n.\nb\r\n", b"a\r\n..\r\nb\r\n", 8, false, true);
    }

    #[test]
    fn bare_newlines_are_relayed_as_crlf() {
        check(b"one\ntwo\rthree\r\n.\r\n", b"one\r\ntwo\r\nthree\r\n", 18, true, true);
    }

    #[test]
    fn the_size_does_not_depend_on_how_the_bytes_arrive() {
        let input = b"Subject: x\r\n\r\nbody\r\n.\r\n";
        for step in 1..input.len() {
            let mut s = DataScanner::new(1 << 20);
            let mut out = Vec::new();
            for piece in input.chunks(step) {
                s.scan(piece, &mut out);
            }
            assert_eq!(s.size(), input.len() as u64 - 3, "steps of {step}");
        }
    }

    #[test]
    fn oversize_data_is_cut_but_the_end_is_still_found() {
        let mut s = DataScanner::new(10);
        let mut out = Vec::new();
        let r = s.scan(b"0123456789abcdef\r\n.\r\nNEXT", &mut out);
        assert_eq!(r, Scanned { consumed: 21, done: true });
        assert!(s.oversize());
        assert_eq!(out, b"0123456789");
        assert_eq!(s.size(), 18);
    }
}
