//! udpload: closed-loop load for a qmail greylisting daemon (greydaemon's
//! UDP protocol).
//!
//! `--clients` threads each own a UDP socket and keep one datagram in
//! flight: send, wait for the 2-byte reply (at most `--timeout-ms`, then the
//! datagram counts as lost), send the next. Datagrams are built as
//! qmail-smtpd builds them: `I<ip>\0F<sender>\0T<rcpt>\0...`. With
//! `--unique 1.0` every datagram is a new transaction (new triplets: a
//! store write each); with 0.1, nine in ten repeat one of the client's
//! earlier transactions.
//!
//! Prints one JSON line: datagrams, lost, seconds, datagrams/s, latency
//! percentiles in microseconds, and the count of each reply.
//!
//! Usage: udpload --target 127.0.0.1:10060 [--clients 32] [--requests 200000]
//!                [--recipients 2] [--unique 1.0] [--timeout-ms 1000] [--label X]
//! Only loopback targets are accepted.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::exit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Opts {
    target: SocketAddr,
    clients: usize,
    requests: u64,
    recipients: usize,
    unique: f64,
    timeout: Duration,
    label: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: udpload --target HOST:PORT [--clients N] [--requests N] [--recipients N] [--unique F] [--timeout-ms N] [--label X]"
    );
    exit(2)
}

fn opts() -> Opts {
    let mut o = Opts {
        target: "127.0.0.1:10060".parse().unwrap(),
        clients: 32,
        requests: 200_000,
        recipients: 2,
        unique: 1.0,
        timeout: Duration::from_millis(1000),
        label: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--target" => o.target = v.parse().unwrap_or_else(|_| usage()),
            "--clients" => o.clients = v.parse().unwrap_or_else(|_| usage()),
            "--requests" => o.requests = v.parse().unwrap_or_else(|_| usage()),
            "--recipients" => o.recipients = v.parse().unwrap_or_else(|_| usage()),
            "--unique" => o.unique = v.parse().unwrap_or_else(|_| usage()),
            "--timeout-ms" => o.timeout = Duration::from_millis(v.parse().unwrap_or_else(|_| usage())),
            "--label" => o.label = v,
            _ => usage(),
        }
    }
    if !o.target.ip().is_loopback() {
        eprintln!("udpload: {} is not a loopback address", o.target);
        exit(2);
    }
    o
}

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Transaction `n` of client `c`, as qmail-smtpd sends it. The client
/// address is text inside the datagram (documentation ranges); no traffic
/// goes to it.
fn datagram(out: &mut Vec<u8>, c: usize, n: u64, recipients: usize) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "I198.51.{}.{}\0Fsender{n}-{c}@example.org\0", c % 250, (n % 250) + 1);
    for r in 0..recipients {
        let _ = write!(out, "Trcpt{r}-{n}@example.net\0");
    }
}

fn main() {
    let o = Arc::new(opts());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..o.clients)
        .map(|c| {
            let (o, next) = (o.clone(), next.clone());
            std::thread::spawn(move || {
                let local = if o.target.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" };
                let socket = UdpSocket::bind(local).expect("bind");
                socket.connect(o.target).expect("connect");
                socket.set_read_timeout(Some(o.timeout)).unwrap();
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
                let (mut lat, mut replies, mut lost) = (Vec::new(), BTreeMap::<String, u64>::new(), 0u64);
                let (mut buf, mut out, mut seen) = ([0u8; 64], Vec::with_capacity(512), 0u64);
                while next.fetch_add(1, Ordering::Relaxed) < o.requests {
                    let n = if seen == 0 || rng.unit() < o.unique {
                        seen += 1;
                        seen - 1
                    } else {
                        rng.next() % seen
                    };
                    datagram(&mut out, c, n, o.recipients);
                    let t = Instant::now();
                    socket.send(&out).expect("send");
                    match socket.recv(&mut buf) {
                        Ok(len) => {
                            lat.push(t.elapsed().as_nanos() as u64);
                            let key = buf[..len].iter().map(|b| format!("{b:02x}")).collect::<String>();
                            *replies.entry(key).or_default() += 1;
                        }
                        Err(_) => lost += 1,
                    }
                }
                (lat, replies, lost)
            })
        })
        .collect();
    let (mut lat, mut replies, mut lost) = (Vec::new(), BTreeMap::<String, u64>::new(), 0);
    for w in workers {
        let (l, r, x) = w.join().unwrap();
        lat.extend(l);
        for (k, v) in r {
            *replies.entry(k).or_default() += v;
        }
        lost += x;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() - 1) as f64 * p / 100.0).round() as usize] as f64 / 1000.0
    };
    let replies: Vec<String> = replies.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!(
        "{{\"label\":\"{}\",\"clients\":{},\"recipients\":{},\"unique\":{},\"datagrams\":{},\"lost\":{lost},\"seconds\":{secs:.3},\"dps\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"replies\":{{{}}}}}",
        o.label,
        o.clients,
        o.recipients,
        o.unique,
        lat.len(),
        lat.len() as f64 / secs,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        pct(100.0),
        replies.join(",")
    );
}
