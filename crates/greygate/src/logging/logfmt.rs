//! The text log format: one logfmt line per event.
//!
//! `2026-11-21T07:16:16.123509Z INFO decision frontend=policy client=192.0.2.10 ...`
//!
//! A value is written as it is when it is plain, and quoted with escapes
//! when it holds a space, a quote, `=`, a backslash or a control character,
//! so a client-supplied string can never break a line or forge a field.
//! Written for speed (one line per decision): the date is formatted once a
//! second, and nothing goes through `Debug` unless it has to.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The logfmt event formatter.
pub struct Logfmt;

thread_local! {
    /// (second, "YYYY-MM-DDTHH:MM:SS") of the last timestamp written.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    /// Scratch space for values that must be formatted before quoting.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
    /// The line [`line`] builds.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

fn write_timestamp(w: &mut impl fmt::Write) -> fmt::Result {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            d.1 = i64::try_from(secs)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .and_then(|t| t.format(&format).ok())
                .unwrap_or_default();
            d.0 = secs;
        }
        w.write_str(&d.1)?;
        let mut micros = *b".000000Z";
        let mut n = now.subsec_micros();
        for digit in micros[1..7].iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        w.write_str(std::str::from_utf8(&micros).unwrap_or(".000000Z"))
    })
}

/// A line being written without `tracing`'s field visitors (see
/// [`super::text_line`]): the same text [`Logfmt`] writes for an event
/// with these fields.
pub struct Line<'a> {
    out: &'a mut String,
}

impl Line<'_> {
    pub fn str(&mut self, name: &str, value: &str) {
        self.name(name);
        let _ = write_value(self.out, value);
    }

    pub fn bool(&mut self, name: &str, value: bool) {
        self.name(name);
        self.out.push_str(if value { "true" } else { "false" });
    }

    pub fn i64(&mut self, name: &str, value: i64) {
        self.name(name);
        let _ = write!(self.out, "{value}");
    }

    fn name(&mut self, name: &str) {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push('=');
    }
}

/// Write a whole line (timestamp, level, message, then what `fields`
/// adds) and hand it to `emit`.
pub fn line(level: &Level, message: &str, fields: impl FnOnce(&mut Line<'_>), emit: impl FnOnce(&[u8])) {
    LINE.with(|s| {
        let mut s = s.borrow_mut();
        s.clear();
        let _ = write_timestamp(&mut *s);
        s.push(' ');
        s.push_str(self::level(level));
        s.push(' ');
        s.push_str(message);
        fields(&mut Line { out: &mut s });
        s.push('\n');
        emit(s.as_bytes());
    });
}

fn level(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Write `value` bare if it is plain, else quoted and escaped.
fn write_value(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    // Every byte is looked at, without an early exit, so the loop can run
    // vectorised: nearly every value is plain.
    let plain = value
        .bytes()
        .fold(!value.is_empty(), |plain, b| plain & b.is_ascii_graphic() & (b != b'"') & (b != b'=') & (b != b'\\'));
    if plain {
        return w.write_str(value);
    }
    w.write_char('"')?;
    // Copy runs that need no escape in one call each; escape quotes,
    // backslashes and every control character (C0 and C1).
    let mut run = 0;
    for (at, c) in value.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if c.is_control() => "",
            _ => continue,
        };
        w.write_str(&value[run..at])?;
        if escape.is_empty() {
            write!(w, "\\u{{{:x}}}", c as u32)?;
        } else {
            w.write_str(escape)?;
        }
        run = at + c.len_utf8();
    }
    w.write_str(&value[run..])?;
    w.write_char('"')
}

struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = if field.name() == "message" {
            // The message comes first and is the event's name: bare words.
            self.w.write_char(' ').and_then(|()| self.w.write_str(value))
        } else {
            self.name(field).and_then(|()| write_value(&mut self.w, value))
        };
    }

    fn name(&mut self, field: &Field) -> fmt::Result {
        self.w.write_char(' ')?;
        self.w.write_str(field.name())?;
        self.w.write_char('=')
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, if value { "true" } else { "false" });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| write!(self.w, "{value}"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| write!(self.w, "{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            if write!(s, "{value:?}").is_ok() {
                self.field(field, &s);
            }
        });
    }
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write_timestamp(&mut w)?;
        w.write_char(' ')?;
        w.write_str(level(event.metadata().level()))?;
        let mut fields = Fields { w: &mut w, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bare_only_when_plain() {
        let cases = [
            ("192.0.2.10", "192.0.2.10"),
            ("alice+x@example.org", "alice+x@example.org"),
            ("", "\"\""),
            ("two words", "\"two words\""),
            ("a=b", "\"a=b\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("line\nbreak\r", "\"line\\nbreak\\r\""),
            ("nul\0", "\"nul\\u{0}\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("jörg@example.de", "\"jörg@example.de\""),
            ("next\u{85}line", "\"next\\u{85}line\""),
        ];
        for (input, want) in cases {
            let mut out = String::new();
            write_value(&mut out, input).unwrap();
            assert_eq!(out, want, "{input:?}");
        }
    }
}
