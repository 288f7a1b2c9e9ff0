//! Connections to the scanners: TCP or unix socket, with a deadline.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::config::scan::ScannerAddr;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub async fn connect(addr: &ScannerAddr, timeout: Duration) -> io::Result<Box<dyn Io>> {
    let connect = async {
        Ok::<Box<dyn Io>, io::Error>(match addr {
            ScannerAddr::Tcp(a) => {
                let s = TcpStream::connect(a.as_str()).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            ScannerAddr::Unix(p) => Box::new(UnixStream::connect(p).await?),
        })
    };
    deadline(timeout, connect).await
}

/// Run `f`, or fail with `TimedOut` after `timeout`.
pub async fn deadline<T>(timeout: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"))))
}
