//! The engine's [`SpfVerifier`] over mail-auth, sharing the checks'
//! hickory resolver (and its cache).

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use greygate_engine::checks::{SpfOutcome, SpfResult, SpfVerifier};
use hickory_resolver::TokioResolver;
use mail_auth::MessageAuthenticator;
use mail_auth::spf::verify::SpfParameters;

pub struct MailAuthSpf {
    auth: MessageAuthenticator,
    /// Our name, for the `%{r}` macro.
    hostname: String,
    /// Bound on one whole evaluation.
    timeout: Duration,
}

impl MailAuthSpf {
    pub fn new(resolver: TokioResolver, hostname: String, timeout: Duration) -> MailAuthSpf {
        MailAuthSpf { auth: MessageAuthenticator(resolver), hostname, timeout }
    }
}

#[async_trait]
impl SpfVerifier for MailAuthSpf {
    async fn verify(&self, ip: IpAddr, helo: &str, sender: &str) -> SpfOutcome {
        let params = if sender.is_empty() {
            SpfParameters::verify_ehlo(ip, helo, &self.hostname)
        } else {
            SpfParameters::verify_mail_from(ip, helo, &self.hostname, sender)
        };
        let fallback_domain = || {
            if sender.is_empty() {
                helo.to_owned()
            } else {
                sender.rsplit_once('@').map_or(helo, |(_, d)| d).to_owned()
            }
        };
        match tokio::time::timeout(self.timeout, self.auth.verify_spf(params)).await {
            Ok(out) => SpfOutcome {
                result: match out.result() {
                    mail_auth::SpfResult::Pass => SpfResult::Pass,
                    mail_auth::SpfResult::Fail => SpfResult::Fail,
                    mail_auth::SpfResult::SoftFail => SpfResult::SoftFail,
                    mail_auth::SpfResult::Neutral => SpfResult::Neutral,
                    mail_auth::SpfResult::TempError => SpfResult::TempError,
                    mail_auth::SpfResult::PermError => SpfResult::PermError,
                    mail_auth::SpfResult::None => SpfResult::None,
                },
                domain: if out.domain().is_empty() { fallback_domain() } else { out.domain().to_owned() },
                explanation: out.explanation().map(str::to_owned),
            },
            Err(_) => SpfOutcome { result: SpfResult::TempError, domain: fallback_domain(), explanation: None },
        }
    }
}
