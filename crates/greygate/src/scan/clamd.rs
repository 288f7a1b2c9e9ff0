//! clamd's INSTREAM, fed while the message streams in.
//!
//! A task holds the connection to clamd and writes each piece of the
//! message as a chunk as soon as the session hands it over (a bounded
//! channel, so a slow clamd slows the client rather than filling memory).
//! At the end of the message the session closes the channel and the task
//! sends the end-of-stream chunk and reads the verdict. A clamd that
//! closes the stream early (its `StreamMaxLength` quota, its own read
//! timeout on a slow client) is an error, never a clean result.

use std::io;

use greygate_proto::clamd::{self, ReplyReader, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::net::{self, Io};
use super::spool::Spool;
use crate::config::scan::ClamdConfig;

/// Pieces of message in flight to the clamd task.
const QUEUE: usize = 16;

/// A stream scan in progress.
pub struct ClamdStream {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    task: JoinHandle<Result<Verdict, String>>,
}

impl ClamdStream {
    pub fn start(config: &ClamdConfig) -> ClamdStream {
        let (tx, rx) = mpsc::channel(QUEUE);
        let config = config.clone();
        let task = tokio::spawn(async move { stream(&config, rx).await.map_err(|e| e.to_string()) });
        ClamdStream { tx: Some(tx), task }
    }

    /// Hand a piece of the message to clamd. A failed stream takes no
    /// more; its error comes out of [`ClamdStream::finish`].
    pub async fn feed(&mut self, bytes: Vec<u8>) {
        if let Some(tx) = &self.tx
            && tx.send(bytes).await.is_err()
        {
            self.tx = None;
        }
    }

    /// End the stream and wait for the verdict.
    pub async fn finish(mut self) -> Result<Verdict, String> {
        self.tx = None;
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) => Err(format!("clamd task failed: {error}")),
        }
    }
}

impl Drop for ClamdStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stream(config: &ClamdConfig, mut rx: mpsc::Receiver<Vec<u8>>) -> io::Result<Verdict> {
    let t = config.timeout;
    let mut conn = net::connect(&config.address, t).await?;
    let sent = async {
        net::deadline(t, conn.write_all(clamd::INSTREAM)).await?;
        while let Some(piece) = rx.recv().await {
            write_chunk(&mut conn, &piece, t).await?;
        }
        net::deadline(t, conn.write_all(&clamd::END_OF_STREAM)).await
    }
    .await;
    let verdict = read_verdict(&mut conn, t).await;
    match (sent, verdict) {
        // clamd may refuse mid-stream (size limit) and close: its reply,
        // if it sent one, says why; either way it is not clean.
        (Err(error), Ok(Verdict::Error(text))) => Ok(Verdict::Error(format!("{text} ({error})"))),
        (Err(error), _) => Err(error),
        (Ok(()), verdict) => verdict,
    }
}

/// Scan a whole spooled message in one stream (the fallback when the
/// streaming scan failed part way).
pub async fn scan_spool(config: &ClamdConfig, spool: &mut Spool) -> io::Result<Verdict> {
    let t = config.timeout;
    let mut conn = net::connect(&config.address, t).await?;
    net::deadline(t, conn.write_all(clamd::INSTREAM)).await?;
    spool.rewind().await?;
    let mut pos = 0;
    while let Some(piece) = spool.next_chunk(&mut pos).await? {
        write_chunk(&mut conn, &piece, t).await?;
    }
    net::deadline(t, conn.write_all(&clamd::END_OF_STREAM)).await?;
    read_verdict(&mut conn, t).await
}

async fn write_chunk(conn: &mut Box<dyn Io>, piece: &[u8], t: std::time::Duration) -> io::Result<()> {
    if piece.is_empty() {
        return Ok(());
    }
    let len = u32::try_from(piece.len()).map_err(|_| io::Error::other("chunk over 4 GiB"))?;
    // One write per chunk: header and data in one segment.
    let mut framed = Vec::with_capacity(4 + piece.len());
    framed.extend_from_slice(&clamd::chunk_header(len));
    framed.extend_from_slice(piece);
    net::deadline(t, conn.write_all(&framed)).await
}

async fn read_verdict(conn: &mut Box<dyn Io>, t: std::time::Duration) -> io::Result<Verdict> {
    let mut reader = ReplyReader::default();
    let mut buf = [0u8; 512];
    net::deadline(t, async {
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Ok(reader.eof());
            }
            if let Some(verdict) = reader.feed(&buf[..n]) {
                return Ok(verdict);
            }
        }
    })
    .await
}
