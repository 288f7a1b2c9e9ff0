//! Dot-stuffing (RFC 5321 §4.5.2), streaming both ways.
//!
//! Message data on the wire has every line that begins with `.` given a
//! second `.`. Scanners want the message itself, and a message kept in a
//! spool goes back on the wire later: [`Unstuffer`] and [`Stuffer`] turn
//! one into the other across chunk boundaries. Both expect CRLF line ends
//! (what [`super::DataScanner`] produces) and keep one bit of state.

/// Removes dot-stuffing: wire data → message.
#[derive(Debug, Clone)]
pub struct Unstuffer {
    line_start: bool,
}

impl Default for Unstuffer {
    fn default() -> Self {
        Unstuffer { line_start: true }
    }
}

impl Unstuffer {
    /// Append the message bytes of `wire` to `out`.
    pub fn unstuff(&mut self, wire: &[u8], out: &mut Vec<u8>) {
        out.reserve(wire.len());
        for &b in wire {
            if !(self.line_start && b == b'.') {
                out.push(b);
            }
            self.line_start = b == b'\n';
        }
    }
}

/// Adds dot-stuffing: message → wire data.
#[derive(Debug, Clone)]
pub struct Stuffer {
    line_start: bool,
}

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer { line_start: true }
    }
}

impl Stuffer {
    /// Append the wire form of `message` to `out`.
    pub fn stuff(&mut self, message: &[u8], out: &mut Vec<u8>) {
        out.reserve(message.len() + 8);
        for &b in message {
            if self.line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.line_start = b == b'\n';
        }
    }

    /// The message did not end with a line break: the bytes that finish
    /// its last line before the final `.` line.
    pub fn finish(&self) -> &'static [u8] {
        if self.line_start { b"" } else { b"\r\n" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstuff_in_pieces(wire: &[u8], piece: usize) -> Vec<u8> {
        let mut u = Unstuffer::default();
        let mut out = Vec::new();
        for part in wire.chunks(piece) {
            u.unstuff(part, &mut out);
        }
        out
    }

    #[test]
    fn leading_dots_are_removed_once_per_line_however_the_bytes_arrive() {
        let wire = b"..hidden\r\nplain.text\r\n...\r\n.\xff\r\n";
        let message = b".hidden\r\nplain.text\r\n..\r\n\xff\r\n";
        for piece in 1..wire.len() {
            assert_eq!(unstuff_in_pieces(wire, piece), message, "piece {piece}");
        }
    }

    #[test]
    fn stuffing_undoes_unstuffing() {
        let message = b".a\r\n\r\n..\r\nb.\r\n.";
        let mut s = Stuffer::default();
        let mut wire = Vec::new();
        for part in message.chunks(3) {
            s.stuff(part, &mut wire);
        }
        assert_eq!(wire, b"..a\r\n\r\n...\r\nb.\r\n..");
        assert_eq!(s.finish(), b"\r\n");
        assert_eq!(unstuff_in_pieces(&wire, 2), message);
    }
}
