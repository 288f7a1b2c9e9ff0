//! spamd's SYMBOLS check of a spooled message.

use std::io;

use greygate_proto::spamd::{self, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::net;
use super::spool::Spool;
use crate::config::scan::SpamdConfig;

/// Ask spamd about the message in `spool`; the whole exchange is bounded
/// by the configured timeout.
pub async fn check(config: &SpamdConfig, spool: &mut Spool) -> Result<Verdict, String> {
    let t = config.timeout;
    let exchange = async {
        let mut conn = net::connect(&config.address, t).await?;
        conn.write_all(&spamd::request_head(spool.len(), config.user.as_deref())).await?;
        spool.rewind().await?;
        let mut pos = 0;
        while let Some(piece) = spool.next_chunk(&mut pos).await? {
            conn.write_all(&piece).await?;
        }
        conn.flush().await?;
        let mut response = Vec::new();
        (&mut conn).take(spamd::MAX_RESPONSE as u64 + 1).read_to_end(&mut response).await?;
        Ok::<_, io::Error>(response)
    };
    let response = net::deadline(t, exchange).await.map_err(|e| format!("spamd at {}: {e}", config.address))?;
    spamd::parse_response(&response).map_err(|e| e.to_string())
}
