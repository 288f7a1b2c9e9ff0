//! A message kept for the scanners (and, when the proxy holds a message
//! for tagging, for the MTA): in memory up to a threshold, then in a
//! private temporary file that is unlinked at creation, so nothing is left
//! behind by a crash.

use std::io::{self, SeekFrom};
use std::path::Path;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

/// Bytes read back per chunk.
const CHUNK: usize = 64 * 1024;

pub enum Spool {
    Memory(Vec<u8>),
    /// `reading`: the file position was moved by [`Spool::rewind`].
    File {
        file: BufWriter<File>,
        len: u64,
        reading: bool,
    },
}

impl Spool {
    pub fn new() -> Spool {
        Spool::Memory(Vec::new())
    }

    pub fn len(&self) -> u64 {
        match self {
            Spool::Memory(v) => v.len() as u64,
            Spool::File { len, .. } => *len,
        }
    }

    /// Append `bytes`, moving to a file in `dir` once the whole would pass
    /// `memory` bytes.
    pub async fn write(&mut self, bytes: &[u8], memory: usize, dir: &Path) -> io::Result<()> {
        if let Spool::Memory(v) = self {
            if v.len() + bytes.len() <= memory {
                v.extend_from_slice(bytes);
                return Ok(());
            }
            let std_file = tempfile::tempfile_in(dir)?;
            let mut file = BufWriter::with_capacity(CHUNK, File::from_std(std_file));
            file.write_all(v).await?;
            let len = v.len() as u64;
            *self = Spool::File { file, len, reading: false };
        }
        let Spool::File { file, len, reading } = self else { unreachable!("moved to a file above") };
        if *reading {
            file.get_mut().seek(SeekFrom::End(0)).await?;
            *reading = false;
        }
        file.write_all(bytes).await?;
        *len += bytes.len() as u64;
        Ok(())
    }

    /// Start reading from the beginning with [`Spool::next_chunk`].
    pub async fn rewind(&mut self) -> io::Result<()> {
        if let Spool::File { file, reading, .. } = self {
            file.flush().await?;
            file.get_mut().seek(SeekFrom::Start(0)).await?;
            *reading = true;
        }
        Ok(())
    }

    /// The next piece of the spool after `pos` bytes (advanced), or `None`
    /// at the end.
    pub async fn next_chunk(&mut self, pos: &mut u64) -> io::Result<Option<Vec<u8>>> {
        let left = self.len().saturating_sub(*pos);
        if left == 0 {
            return Ok(None);
        }
        let n = CHUNK.min(left as usize);
        let chunk = match self {
            Spool::Memory(v) => v[*pos as usize..*pos as usize + n].to_vec(),
            Spool::File { file, .. } => {
                let mut buf = vec![0; n];
                file.get_mut().read_exact(&mut buf).await?;
                buf
            }
        };
        *pos += n as u64;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_back(spool: &mut Spool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0;
        spool.rewind().await.unwrap();
        while let Some(chunk) = spool.next_chunk(&mut pos).await.unwrap() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[tokio::test]
    async fn a_spool_moves_to_a_file_past_the_threshold_and_reads_back_whole_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new();
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let line = format!("line {i} of the message\r\n");
            spool.write(line.as_bytes(), 4096, dir.path()).await.unwrap();
            want.extend_from_slice(line.as_bytes());
        }
        assert!(matches!(spool, Spool::File { .. }));
        assert_eq!(spool.len(), want.len() as u64);
        assert_eq!(read_back(&mut spool).await, want);
        spool.write(b"more\r\n", 4096, dir.path()).await.unwrap();
        want.extend_from_slice(b"more\r\n");
        assert_eq!(read_back(&mut spool).await, want);
        // The file is unlinked: nothing is visible in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_small_message_stays_in_memory() {
        let mut spool = Spool::new();
        spool.write(b"Subject: hi\r\n\r\nbody\r\n", 4096, Path::new("/nonexistent")).await.unwrap();
        assert!(matches!(spool, Spool::Memory(_)));
        assert_eq!(read_back(&mut spool).await, b"Subject: hi\r\n\r\nbody\r\n");
    }
}
