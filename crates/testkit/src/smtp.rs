//! A raw SMTP client for byte-exact tests: send exactly these bytes, read
//! exactly the replies, optionally switch to TLS (certificates are not
//! verified: the peers are test instances).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// One reply: code and text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub struct SmtpClient {
    reader: BufReader<Stream>,
}

impl SmtpClient {
    /// Connect without reading anything.
    pub fn connect_raw(addr: SocketAddr) -> SmtpClient {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        SmtpClient { reader: BufReader::new(Stream::Plain(tcp)) }
    }

    /// Connect and read the greeting.
    pub fn connect(addr: SocketAddr) -> (SmtpClient, Reply) {
        let mut c = SmtpClient::connect_raw(addr);
        let greeting = c.reply();
        (c, greeting)
    }

    /// Write bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write");
        self.reader.get_mut().flush().expect("flush");
    }

    /// Send one command line (CRLF added) and read its reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Read one reply; code 0 with an empty text means the connection
    /// closed.
    pub fn reply(&mut self) -> Reply {
        self.try_reply().unwrap_or(Reply { code: 0, lines: Vec::new() })
    }

    pub fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            let code = line.get(..3)?.parse().ok()?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if last {
                return Some(Reply { code, lines });
            }
        }
    }

    /// The peer closed the connection (reads EOF).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }

    /// Bytes buffered from the server but not yet read as replies.
    pub fn buffered(&self) -> usize {
        self.reader.buffer().len()
    }

    /// The server's certificate (DER) once TLS is active.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self.reader.get_ref() {
            Stream::Tls(s) => s.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec()),
            Stream::Plain(_) => None,
        }
    }

    /// Switch to TLS after a 220 to STARTTLS.
    pub fn start_tls(self) -> SmtpClient {
        assert_eq!(self.buffered(), 0, "server sent bytes after its 220 to STARTTLS");
        let Stream::Plain(tcp) = self.reader.into_inner() else { panic!("TLS already active") };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").expect("name"))
            .expect("tls client");
        let mut tls = StreamOwned::new(conn, tcp);
        // Drive the handshake now so failures show here.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
        }
        SmtpClient { reader: BufReader::new(Stream::Tls(Box::new(tls))) }
    }
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
