//! qmail-smtpd's greylisting client (`GREYIP`), byte for byte.
//!
//! The patched qmail-smtpd builds its datagram from `'I' <TCPREMOTEIP> NUL`,
//! `'F' <sender> NUL` and its internal `rcptto` buffer, which holds every
//! accepted recipient as `'T' <address> NUL`; the newer indimail client
//! adds one more NUL (PROTOCOLS.md §2.2). It waits 3 seconds
//! (`GREYTIMEOUT`) for the 2-byte answer, then gives up with a 451.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// How the client ends its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// After the last recipient's NUL (Richards' client).
    Plain,
    /// One more NUL (newer indimail).
    ExtraNul,
    /// A trailing LF (the 2009 indimail client; greydaemon drops it).
    TrailingLf,
}

/// The datagram qmail-smtpd sends for this transaction.
pub fn datagram(client_ip: &str, sender: &str, recipients: &[&str], ending: Ending) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'I');
    out.extend_from_slice(client_ip.as_bytes());
    out.push(0);
    out.push(b'F');
    out.extend_from_slice(sender.as_bytes());
    out.push(0);
    // qmail-smtpd's rcptto: "T" addr NUL per accepted RCPT.
    for r in recipients {
        out.push(b'T');
        out.extend_from_slice(r.as_bytes());
        out.push(0);
    }
    match ending {
        Ending::Plain => {}
        Ending::ExtraNul => out.push(0),
        Ending::TrailingLf => out.push(b'\n'),
    }
    out
}

/// A UDP client bound to loopback, connected to the server.
pub struct QmailClient {
    socket: UdpSocket,
}

impl QmailClient {
    pub fn connect(server: SocketAddr) -> QmailClient {
        let local: SocketAddr = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().unwrap();
        let socket = UdpSocket::bind(local).expect("bind UDP client");
        socket.connect(server).expect("connect UDP client");
        QmailClient { socket }
    }

    pub fn send(&self, datagram: &[u8]) {
        self.socket.send(datagram).expect("send datagram");
    }

    /// The next datagram received within `timeout`, or `None`.
    pub fn receive(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 64];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
            Err(e) => panic!("receive: {e}"),
        }
    }

    /// Send and wait as qmail-smtpd does (3 s); `None` is its timeout.
    pub fn ask(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        self.send(datagram);
        self.receive(Duration::from_secs(3))
    }
}
