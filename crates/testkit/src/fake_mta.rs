//! A scripted SMTP server standing in for the upstream MTA where the real
//! one cannot be made to fail on cue: dropping the connection in the
//! middle of DATA, never answering, answering 421. Everything it received
//! is recorded for the test to inspect.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake MTA behaves.
#[derive(Debug, Clone)]
pub struct Script {
    pub greeting: String,
    /// EHLO keywords after the host name line.
    pub ehlo: Vec<String>,
    /// Reply lines (wire form without CRLF, `-` continuations allowed as
    /// separate entries) for commands starting with a prefix
    /// (case-insensitive), checked in order.
    pub replies: Vec<(String, Vec<String>)>,
    /// Close the connection after this many bytes of message data.
    pub drop_in_data_after: Option<usize>,
    /// Never answer the final dot.
    pub stall_at_end_of_data: bool,
    pub end_of_data: String,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 fake.mta ESMTP".into(),
            ehlo: vec!["PIPELINING".into(), "SIZE 10240000".into(), "8BITMIME".into()],
            replies: Vec::new(),
            drop_in_data_after: None,
            stall_at_end_of_data: false,
            end_of_data: "250 2.0.0 Ok: queued as FAKE".into(),
        }
    }
}

pub struct FakeMta {
    pub addr: SocketAddr,
    /// Every command line received, in order, across connections, with
    /// the number of the connection (in order of acceptance) it came on.
    commands: Arc<Mutex<Vec<(usize, String)>>>,
    /// Complete messages received (data as sent, without the final dot).
    pub messages: Arc<Mutex<Vec<String>>>,
    /// Message data bytes received so far, complete or not (to see data
    /// arrive while the client is still sending).
    pub data_bytes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FakeMta {
    pub fn start(script: Script) -> FakeMta {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let commands = Arc::new(Mutex::new(Vec::new()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let data_bytes = Arc::new(AtomicUsize::new(0));
        let (c, m, s, d) = (commands.clone(), messages.clone(), stop.clone(), data_bytes.clone());
        std::thread::spawn(move || {
            let mut accepted = 0;
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (script, c, m, s, d) = (script.clone(), c.clone(), m.clone(), s.clone(), d.clone());
                        let connection = accepted;
                        accepted += 1;
                        std::thread::spawn(move || {
                            let _ = serve(stream, connection, &script, &c, &m, &s, &d);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeMta { addr, commands, messages, data_bytes, stop }
    }

    /// Every command line received, in order, across connections.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().iter().map(|(_, line)| line.clone()).collect()
    }

    /// The command lines of each connection, in order of acceptance, so a
    /// test can tell a session from greygate's start-up probe running
    /// beside it.
    pub fn sessions(&self) -> Vec<Vec<String>> {
        let mut sessions: Vec<Vec<String>> = Vec::new();
        for (connection, line) in self.commands.lock().unwrap().iter() {
            if sessions.len() <= *connection {
                sessions.resize(connection + 1, Vec::new());
            }
            sessions[*connection].push(line.clone());
        }
        sessions
    }

    /// The commands of the one session that contains a line starting with
    /// `marker` (case-sensitive); panics if none or several do.
    pub fn session_with(&self, marker: &str) -> Vec<String> {
        let mut found: Vec<Vec<String>> =
            self.sessions().into_iter().filter(|s| s.iter().any(|l| l.starts_with(marker))).collect();
        assert_eq!(found.len(), 1, "one session with {marker:?} in {:?}", self.sessions());
        found.remove(0)
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for FakeMta {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    connection: usize,
    script: &Script,
    commands: &Mutex<Vec<(usize, String)>>,
    messages: &Mutex<Vec<String>>,
    stop: &AtomicBool,
    data_bytes: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let send = |out: &mut TcpStream, lines: &[String]| -> std::io::Result<()> {
        let mut wire = String::new();
        for l in lines {
            wire.push_str(l);
            wire.push_str("\r\n");
        }
        out.write_all(wire.as_bytes())
    };
    send(&mut out, std::slice::from_ref(&script.greeting))?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        commands.lock().unwrap().push((connection, line.clone()));
        let upper = line.to_ascii_uppercase();
        if let Some((_, reply)) = script.replies.iter().find(|(p, _)| upper.starts_with(&p.to_ascii_uppercase())) {
            send(&mut out, reply)?;
            if reply.last().is_some_and(|r| r.starts_with("421")) {
                return Ok(());
            }
            continue;
        }
        let verb = upper.split(' ').next().unwrap_or("");
        match verb {
            "EHLO" => {
                let mut lines = vec!["250-fake.mta".to_owned()];
                for (i, k) in script.ehlo.iter().enumerate() {
                    let sep = if i + 1 == script.ehlo.len() { ' ' } else { '-' };
                    lines.push(format!("250{sep}{k}"));
                }
                if script.ehlo.is_empty() {
                    lines = vec!["250 fake.mta".into()];
                }
                send(&mut out, &lines)?;
            }
            "HELO" => send(&mut out, &["250 fake.mta".into()])?,
            "XCLIENT" => send(&mut out, std::slice::from_ref(&script.greeting))?,
            "QUIT" => {
                send(&mut out, &["221 2.0.0 Bye".into()])?;
                return Ok(());
            }
            "DATA" => {
                send(&mut out, &["354 End data with <CR><LF>.<CR><LF>".into()])?;
                let mut data = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    if reader.read(&mut byte)? == 0 {
                        return Ok(());
                    }
                    data.push(byte[0]);
                    data_bytes.fetch_add(1, Ordering::Relaxed);
                    if script.drop_in_data_after.is_some_and(|n| data.len() >= n) {
                        return Ok(());
                    }
                    if data.ends_with(b"\r\n.\r\n") || data == b".\r\n" {
                        break;
                    }
                }
                let body = data[..data.len() - 3].to_vec();
                messages.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                if script.stall_at_end_of_data {
                    // Hold the connection open without answering.
                    let mut rest = Vec::new();
                    let _ = reader.read_to_end(&mut rest);
                    return Ok(());
                }
                send(&mut out, std::slice::from_ref(&script.end_of_data))?;
            }
            _ => send(&mut out, &["250 2.0.0 Ok".into()])?,
        }
    }
}
