//! Content scanning for the SMTP proxy: clamd for viruses, spamd for a
//! spam score, on the fly (smtp-gated's way).
//!
//! While a message streams in, every piece goes to the MTA at once (unless
//! the message is held for tagging, below), to clamd's INSTREAM at the
//! same time, and to a spool (memory, then a private temporary file) that
//! spamd reads at the end, since spamd needs the length up front. Only the
//! final `.` waits for the verdicts; a message that must be refused is then
//! aborted upstream, so nothing is delivered.
//!
//! Tagging (`X-Spam-Status`/`X-Spam-Score`) puts headers on top of a
//! message whose score is known only at its end, so a message that may be
//! tagged is held: it goes to the MTA from the spool after the verdict.
//!
//! A scanner that is down, slow or answers nonsense gives its `on_error`
//! action (tempfail by default); a message bigger than `max_size` gives
//! `too_big`. Every outcome is logged by the session and counted.

mod clamd;
mod net;
mod spamd;
mod spool;

use std::sync::Arc;
use std::time::Instant;

use greygate_proto::clamd::Verdict as ClamdVerdict;
use greygate_proto::smtp::{Reply, Unstuffer};

pub use self::spool::Spool;
use crate::config::ProxyConfig;
use crate::config::scan::{ScanAction, ScanPlan};
use crate::serve::proxy::replies::{scanner_failed_reply, spam_reply, too_big_reply, virus_reply};

/// What the scanners decided for one message.
#[derive(Debug)]
pub enum Outcome {
    /// Deliver, with these headers on top (held messages only).
    Deliver {
        headers: Vec<String>,
    },
    Refuse(Reply),
}

/// The outcome and what to log and count.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    /// `clean`, `virus <name>`, `error: …`, `skipped`, `off`.
    pub clamd: String,
    /// `score 2.3/5.0`, `error: …`, `skipped (size)`, `off`.
    pub spamd: String,
    /// Counter names (engine counters, shown by `greygate stats`).
    pub counters: Vec<&'static str>,
    pub millis: u64,
}

/// One message being scanned.
pub struct MessageScan {
    config: Arc<ProxyConfig>,
    plan: ScanPlan,
    spool: Spool,
    spool_error: Option<String>,
    unstuffer: Unstuffer,
    clamd: Option<clamd::ClamdStream>,
    /// Message bytes seen (dot-stuffing removed).
    size: u64,
    scratch: Vec<u8>,
    started: Instant,
}

impl MessageScan {
    pub fn start(config: Arc<ProxyConfig>, plan: ScanPlan) -> MessageScan {
        let clamd = match (&config.scan.clamd, plan.clamd) {
            (Some(c), true) => Some(clamd::ClamdStream::start(c)),
            _ => None,
        };
        MessageScan {
            config,
            plan,
            spool: Spool::new(),
            spool_error: None,
            unstuffer: Unstuffer::default(),
            clamd,
            size: 0,
            scratch: Vec::new(),
            started: Instant::now(),
        }
    }

    /// The message goes to the MTA only after the verdict (tagging).
    pub fn holds(&self) -> bool {
        self.plan.tag && self.plan.spamd
    }

    fn too_big(&self) -> bool {
        self.size > self.config.scan.max_size
    }

    /// Feed message bytes (our own headers, already in message form).
    pub async fn feed_message(&mut self, bytes: &[u8]) {
        let was_big = self.too_big();
        self.size += bytes.len() as u64;
        if self.too_big() && !was_big {
            // Past the scan limit: stop feeding clamd (its verdict would
            // cover part of the message only).
            self.clamd = None;
        }
        if !self.too_big()
            && let Some(c) = &mut self.clamd
        {
            c.feed(bytes.to_vec()).await;
        }
        // A held message is kept whole (it is sent from the spool); else
        // only what the scanners may read.
        if (self.holds() || !self.too_big()) && self.spool_error.is_none() {
            let scan = &self.config.scan;
            if let Err(error) = self.spool.write(bytes, scan.memory, &scan.spool_dir).await {
                self.spool_error = Some(format!("spool in {}: {error}", scan.spool_dir.display()));
            }
        }
    }

    /// Feed message data in wire form (dot-stuffed, as relayed).
    pub async fn feed_wire(&mut self, wire: &[u8]) {
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        self.unstuffer.unstuff(wire, &mut bytes);
        self.feed_message(&bytes).await;
        self.scratch = bytes;
    }

    /// The held message, for sending to the MTA after the verdict.
    pub fn spool(&mut self) -> Option<&mut Spool> {
        self.spool_error.is_none().then_some(&mut self.spool)
    }

    /// Wait for the verdicts and decide.
    pub async fn finish(&mut self) -> Report {
        let mut report = Report {
            outcome: Outcome::Deliver { headers: Vec::new() },
            clamd: if self.plan.clamd { "skipped".into() } else { "off".into() },
            spamd: if self.plan.spamd { "skipped".into() } else { "off".into() },
            counters: Vec::new(),
            millis: 0,
        };
        let config = self.config.clone();
        let scan = &config.scan;
        if self.too_big() {
            report.counters.push("scan_too_big");
            report.outcome = refuse(scan.too_big, || too_big_reply(scan.too_big))
                .map_or(Outcome::Deliver { headers: Vec::new() }, Outcome::Refuse);
            report.millis = self.started.elapsed().as_millis() as u64;
            return report;
        }
        if let Some(error) = &self.spool_error {
            // Without the spool spamd cannot be asked (and a held message
            // cannot be sent): a scanner failure.
            report.counters.push("scan_error");
            report.spamd = format!("error: {error}");
            report.outcome = Outcome::Refuse(scanner_failed_reply(ScanAction::Tempfail));
            return report;
        }

        let spamd_config = scan.spamd.as_ref().filter(|_| self.plan.spamd);
        let spamd_fits = spamd_config.is_some_and(|c| self.spool.len() <= c.max_size);
        let clamd_stream = self.clamd.take();
        let (clamd_result, spamd_result) = tokio::join!(
            async {
                match clamd_stream {
                    Some(stream) => Some(stream.finish().await),
                    None => None,
                }
            },
            async {
                match spamd_config {
                    Some(c) if spamd_fits => Some(spamd::check(c, &mut self.spool).await),
                    _ => None,
                }
            }
        );
        // The stream failed part way (clamd's read timeout on a slow
        // client, a restart): one more try with the whole spooled message.
        let clamd_result = match (clamd_result, scan.clamd.as_ref()) {
            (Some(Err(first)), Some(c)) => Some(match clamd::scan_spool(c, &mut self.spool).await {
                Ok(v) => Ok(v),
                Err(again) => Err(format!("{first}; again from the spool: {again}")),
            }),
            (r, _) => r,
        };

        let mut refusal: Option<Reply> = None;
        if let (Some(result), Some(c)) = (clamd_result, scan.clamd.as_ref()) {
            match result {
                Ok(ClamdVerdict::Clean) => report.clamd = "clean".into(),
                Ok(ClamdVerdict::Infected(name)) => {
                    report.counters.push("scan_virus");
                    refusal = refusal.or(refuse(self.plan.on_virus, || virus_reply(self.plan.on_virus, &name)));
                    report.clamd = format!("virus {name}");
                }
                Ok(ClamdVerdict::Error(text)) => {
                    report.counters.push("scan_error");
                    refusal = refusal.or(refuse(c.on_error, || scanner_failed_reply(c.on_error)));
                    report.clamd = format!("error: {text}");
                }
                Err(error) => {
                    report.counters.push("scan_error");
                    refusal = refusal.or(refuse(c.on_error, || scanner_failed_reply(c.on_error)));
                    report.clamd = format!("error: {error}");
                }
            }
        }
        let mut headers = Vec::new();
        match (spamd_result, spamd_config) {
            (Some(Ok(v)), Some(_)) => {
                report.spamd = format!("score {:.1}/{:.1}", v.score, v.threshold);
                if self.plan.reject_score.is_some_and(|s| v.score >= s) {
                    report.counters.push("scan_spam_rejected");
                    refusal = refusal.or(Some(spam_reply(ScanAction::Reject, v.score)));
                } else if self.plan.tempfail_score.is_some_and(|s| v.score >= s) {
                    report.counters.push("scan_spam_tempfailed");
                    refusal = refusal.or(Some(spam_reply(ScanAction::Tempfail, v.score)));
                } else if self.holds() {
                    if v.spam {
                        report.counters.push("scan_spam_tagged");
                    }
                    headers = spam_headers(&v);
                }
            }
            (Some(Err(error)), Some(c)) => {
                report.counters.push("scan_error");
                refusal = refusal.or(refuse(c.on_error, || scanner_failed_reply(c.on_error)));
                report.spamd = format!("error: {error}");
            }
            (None, Some(_)) => report.spamd = format!("skipped (size {})", self.spool.len()),
            _ => {}
        }
        if refusal.is_none() && report.counters.is_empty() {
            report.counters.push("scan_clean");
        }
        report.outcome = match refusal {
            Some(reply) => Outcome::Refuse(reply),
            None => Outcome::Deliver { headers },
        };
        report.millis = self.started.elapsed().as_millis() as u64;
        report
    }
}

fn refuse(action: ScanAction, reply: impl FnOnce() -> Reply) -> Option<Reply> {
    (action != ScanAction::Accept).then(reply)
}

/// SpamAssassin's own header shapes, folded at commas.
fn spam_headers(v: &greygate_proto::spamd::Verdict) -> Vec<String> {
    let mut status = format!(
        "X-Spam-Status: {}, score={:.1} required={:.1} tests=",
        if v.spam { "Yes" } else { "No" },
        v.score,
        v.threshold
    );
    let mut line_len = status.len();
    for (i, symbol) in v.symbols.iter().enumerate() {
        let symbol: String = symbol.chars().filter(|c| c.is_ascii_graphic() && *c != ',').take(64).collect();
        let piece = if i + 1 < v.symbols.len() { format!("{symbol},") } else { symbol };
        if line_len + piece.len() > 76 && line_len > 1 {
            status.push_str("\r\n\t");
            line_len = 1;
        }
        line_len += piece.len();
        status.push_str(&piece);
    }
    if v.symbols.is_empty() {
        status.push_str("none");
    }
    vec![status, format!("X-Spam-Score: {:.1}", v.score)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_headers_are_folded_and_clean() {
        let v = greygate_proto::spamd::Verdict {
            spam: true,
            score: 1005.24,
            threshold: 5.0,
            symbols: (0..12).map(|i| format!("RULE_NUMBER_{i}")).chain(["BAD\r\nX-Injected: 1".into()]).collect(),
        };
        let h = spam_headers(&v);
        assert!(h[0].starts_with("X-Spam-Status: Yes, score=1005.2 required=5.0 tests=RULE_NUMBER_0,"));
        for line in h[0].split("\r\n") {
            assert!(line.len() <= 78, "{line:?}");
        }
        assert!(h[0].split("\r\n").skip(1).all(|l| l.starts_with('\t')));
        assert!(h[0].ends_with("BADX-Injected:1"), "{}", h[0]);
        assert_eq!(h[1], "X-Spam-Score: 1005.2");
        let none = greygate_proto::spamd::Verdict { spam: false, score: -0.1, threshold: 5.0, symbols: vec![] };
        assert_eq!(spam_headers(&none)[0], "X-Spam-Status: No, score=-0.1 required=5.0 tests=none");
    }
}
