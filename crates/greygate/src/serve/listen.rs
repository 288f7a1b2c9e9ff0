//! Listening sockets: TCP and unix, bound before anything else starts.
//!
//! A unix socket's directory is created if missing, a stale socket file
//! left by a crash is replaced, and a socket that another process still
//! serves is refused rather than stolen. The file is removed on shutdown.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use crate::config::ListenAddr;

/// Raise the soft limit on open files to the hard limit, as mail daemons
/// do: each SMTP session holds two sockets, and the usual soft limit of
/// 1024 would cap the proxy near 500 sessions. Returns the limit in force.
pub fn raise_open_files_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 0 };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return hard,
            Err(error) => tracing::warn!(%error, soft, hard, "cannot raise the open files limit"),
        }
    }
    soft
}

/// A bound listener.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// An accepted connection, with a printable peer.
pub struct Accepted {
    pub stream: Box<dyn Stream>,
    pub peer: String,
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Listener {
    pub async fn bind(addr: &ListenAddr, socket_mode: u32) -> Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => {
                let l = TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a}"))?;
                Ok(Listener::Tcp(l))
            }
            ListenAddr::Unix(path) => bind_unix(path, socket_mode).await,
        }
    }

    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Replies are small and must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                Ok(Accepted { stream: Box::new(stream), peer: peer.to_string() })
            }
            Listener::Unix(l, path) => {
                let (stream, _) = l.accept().await?;
                Ok(Accepted { stream: Box::new(stream), peer: format!("unix:{}", path.display()) })
            }
        }
    }

    /// Printable local address (the actual port when bound to port 0).
    pub fn local(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into()),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn bind_unix(path: &Path, mode: u32) -> Result<Listener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket; refusing to replace it", path.display());
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!("{} is in use by another process", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("cannot listen on unix:{}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions of {}", path.display()))?;
    Ok(Listener::Unix(listener, path.to_path_buf()))
}
