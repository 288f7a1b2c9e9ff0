//! An in-process authoritative DNS server on 127.0.0.1 (UDP and TCP on one
//! port), so SPF, DNSBL and reverse-DNS tests never touch the Internet.
//!
//! Each test starts its own server, adds the records it needs (TXT, A,
//! AAAA, PTR), and points greygate's `[dns] nameservers` at
//! [`DnsServer::addr`]. A name with no records is NXDOMAIN; a name with
//! records of other types answers NODATA. A name can be made to time out
//! (the server reads the query and never answers) or to fail (SERVFAIL).
//! Every query is counted per name, so tests can see what a cache saved.
//!
//! Messages are encoded with hickory-proto; the server itself is two plain
//! threads that stop when the [`DnsServer`] is dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How a name misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Read the query, never answer.
    Timeout,
    /// Answer SERVFAIL.
    ServFail,
}

#[derive(Default)]
struct Zone {
    records: HashMap<String, Vec<(RecordType, RData, u32)>>,
    faults: HashMap<String, Fault>,
    queries: HashMap<String, usize>,
    /// Answer for TXT questions about names without records.
    default_txt: Option<String>,
    ttl: u32,
    negative_ttl: u32,
}

/// A running test DNS server; stops on drop.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The lowercase, dot-terminated form every lookup uses.
fn key(name: &str) -> String {
    let mut k = name.trim().to_ascii_lowercase();
    if !k.ends_with('.') {
        k.push('.');
    }
    k
}

/// The `in-addr.arpa` / `ip6.arpa` name of an address.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

impl DnsServer {
    /// Bind UDP and TCP on one free port of 127.0.0.1 and start serving.
    pub fn start() -> DnsServer {
        DnsServer::serve(bind_pair())
    }

    /// Serve on 127.0.0.1:`port` (UDP and TCP), for a standalone server.
    pub fn start_on(port: u16) -> std::io::Result<DnsServer> {
        let udp = UdpSocket::bind(("127.0.0.1", port))?;
        let tcp = TcpListener::bind(("127.0.0.1", port))?;
        Ok(DnsServer::serve((udp, tcp)))
    }

    fn serve((udp, tcp): (UdpSocket, TcpListener)) -> DnsServer {
        let addr = udp.local_addr().expect("udp address");
        let zone = Arc::new(Mutex::new(Zone { ttl: 300, negative_ttl: 300, ..Zone::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(50))).expect("udp timeout");
        tcp.set_nonblocking(true).expect("tcp nonblocking");
        let threads = vec![
            {
                let (zone, stop) = (zone.clone(), stop.clone());
                std::thread::spawn(move || serve_udp(udp, &zone, &stop))
            },
            {
                let (zone, stop) = (zone.clone(), stop.clone());
                std::thread::spawn(move || serve_tcp(tcp, &zone, &stop))
            },
        ];
        DnsServer { addr, zone, stop, threads }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TTL of records added from now on (seconds; default 300).
    pub fn set_ttl(&self, ttl: u32) -> &Self {
        self.zone.lock().unwrap().ttl = ttl;
        self
    }

    /// SOA minimum, the TTL of negative answers (seconds; default 300).
    pub fn set_negative_ttl(&self, ttl: u32) -> &Self {
        self.zone.lock().unwrap().negative_ttl = ttl;
        self
    }

    fn add(&self, name: &str, rtype: RecordType, data: RData) -> &Self {
        let mut zone = self.zone.lock().unwrap();
        let ttl = zone.ttl;
        zone.records.entry(key(name)).or_default().push((rtype, data, ttl));
        self
    }

    /// A TXT record; text longer than 255 bytes is split into strings.
    pub fn txt(&self, name: &str, text: &str) -> &Self {
        let chunks: Vec<String> =
            text.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>();
        let chunks = if chunks.is_empty() { vec![String::new()] } else { chunks };
        self.add(name, RecordType::TXT, RData::TXT(TXT::new(chunks)))
    }

    pub fn a(&self, name: &str, ip: Ipv4Addr) -> &Self {
        self.add(name, RecordType::A, RData::A(A(ip)))
    }

    pub fn aaaa(&self, name: &str, ip: Ipv6Addr) -> &Self {
        self.add(name, RecordType::AAAA, RData::AAAA(AAAA(ip)))
    }

    /// A or AAAA, by the address family.
    pub fn addr_record(&self, name: &str, ip: IpAddr) -> &Self {
        match ip {
            IpAddr::V4(v4) => self.a(name, v4),
            IpAddr::V6(v6) => self.aaaa(name, v6),
        }
    }

    /// A PTR record for `ip` naming `host`.
    pub fn ptr(&self, ip: IpAddr, host: &str) -> &Self {
        let target = Name::from_ascii(key(host)).expect("PTR target name");
        self.add(&reverse_name(ip), RecordType::PTR, RData::PTR(PTR(target)))
    }

    /// `host` → `ip` and `ip` → `host`: forward-confirmed reverse DNS.
    pub fn host(&self, host: &str, ip: IpAddr) -> &Self {
        self.addr_record(host, ip).ptr(ip, host)
    }

    /// Answer every TXT question about a name without records with
    /// `text` (a catch-all SPF record for load tests).
    pub fn default_txt(&self, text: &str) -> &Self {
        self.zone.lock().unwrap().default_txt = Some(text.to_owned());
        self
    }

    /// Queries for `name` are read and never answered.
    pub fn timeout(&self, name: &str) -> &Self {
        self.zone.lock().unwrap().faults.insert(key(name), Fault::Timeout);
        self
    }

    /// Queries for `name` are answered SERVFAIL.
    pub fn servfail(&self, name: &str) -> &Self {
        self.zone.lock().unwrap().faults.insert(key(name), Fault::ServFail);
        self
    }

    /// Remove every record and fault of `name`.
    pub fn remove(&self, name: &str) -> &Self {
        let mut zone = self.zone.lock().unwrap();
        zone.records.remove(&key(name));
        zone.faults.remove(&key(name));
        self
    }

    /// How many queries (of any type) asked for `name`.
    pub fn queries(&self, name: &str) -> usize {
        self.zone.lock().unwrap().queries.get(&key(name)).copied().unwrap_or(0)
    }

    /// Queries received in total.
    pub fn total_queries(&self) -> usize {
        self.zone.lock().unwrap().queries.values().sum()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("udp address").port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// The answer to one query, or `None` to stay silent.
fn answer(zone: &Mutex<Zone>, query: &[u8], max_len: usize) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let Some(q) = request.queries.first().cloned() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    response.add_query(q.clone());
    let name = key(&q.name().to_ascii());
    let mut zone = zone.lock().unwrap();
    *zone.queries.entry(name.clone()).or_default() += 1;
    match zone.faults.get(&name) {
        Some(Fault::Timeout) => return None,
        Some(Fault::ServFail) => {
            response.metadata.response_code = ResponseCode::ServFail;
            return response.to_vec().ok();
        }
        None => {}
    }
    let soa = || {
        let origin = Name::from_ascii("test.").expect("name");
        let data = SOA::new(
            Name::from_ascii("ns.test.").expect("name"),
            Name::from_ascii("hostmaster.test.").expect("name"),
            1,
            3600,
            600,
            86400,
            zone.negative_ttl,
        );
        Record::from_rdata(origin, zone.negative_ttl, RData::SOA(data))
    };
    match zone.records.get(&name) {
        None if q.query_type() == RecordType::TXT && zone.default_txt.is_some() => {
            let text = zone.default_txt.clone().unwrap_or_default();
            response.add_answer(Record::from_rdata(q.name().clone(), zone.ttl, RData::TXT(TXT::new(vec![text]))));
        }
        None => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(soa());
        }
        Some(records) => {
            let answers: Vec<Record> = records
                .iter()
                .filter(|(t, ..)| *t == q.query_type())
                .map(|(_, data, ttl)| Record::from_rdata(q.name().clone(), *ttl, data.clone()))
                .collect();
            if answers.is_empty() {
                response.add_authority(soa());
            }
            response.add_answers(answers);
        }
    }
    let bytes = response.to_vec().ok()?;
    if bytes.len() > max_len {
        // Too big for UDP: say so, and the client retries over TCP.
        return response.truncate().to_vec().ok();
    }
    Some(bytes)
}

fn serve_udp(socket: UdpSocket, zone: &Mutex<Zone>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
        if let Some(reply) = answer(zone, &buf[..n], 1232) {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

fn serve_tcp(listener: TcpListener, zone: &Arc<Mutex<Zone>>, stop: &Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (zone, stop) = (zone.clone(), stop.clone());
                std::thread::spawn(move || serve_tcp_conn(stream, &zone, &stop));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve_tcp_conn(mut stream: TcpStream, zone: &Mutex<Zone>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        while pending.len() >= 2 {
            let len = u16::from_be_bytes([pending[0], pending[1]]) as usize;
            if pending.len() < 2 + len {
                break;
            }
            let query: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            if let Some(reply) = answer(zone, &query, u16::MAX as usize) {
                let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(server: &DnsServer, name: &str, rtype: RecordType) -> Option<Message> {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        socket.send_to(&q.to_vec().unwrap(), server.addr()).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        Some(Message::from_vec(&buf[..n]).unwrap())
    }

    fn ask_tcp(server: &DnsServer, name: &str, rtype: RecordType) -> Message {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        let bytes = q.to_vec().unwrap();
        stream.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
        stream.write_all(&bytes).unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).unwrap();
        Message::from_vec(&body).unwrap()
    }

    #[test]
    fn answers_records_nodata_nxdomain_and_faults() {
        let dns = DnsServer::start();
        dns.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
            .a("mx.example.org", Ipv4Addr::new(192, 0, 2, 1))
            .host("mail.example.org", "2001:db8::25".parse().unwrap())
            .timeout("slow.example")
            .servfail("broken.example");

        let m = ask(&dns, "Example.ORG.", RecordType::TXT).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let RData::TXT(txt) = &m.answers[0].data else { panic!("not TXT: {m:?}") };
        assert_eq!(txt.to_string(), "v=spf1 ip4:192.0.2.0/24 -all");

        let m = ask(&dns, "example.org.", RecordType::A).unwrap();
        assert_eq!((m.metadata.response_code, m.answers.len(), m.authorities.len()), (ResponseCode::NoError, 0, 1));

        let m = ask(&dns, "nothing.example.", RecordType::A).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

        let m = ask(&dns, "mail.example.org.", RecordType::AAAA).unwrap();
        assert_eq!(m.answers[0].data, RData::AAAA(AAAA("2001:db8::25".parse().unwrap())));
        let rev = reverse_name("2001:db8::25".parse().unwrap());
        assert!(rev.starts_with("5.2.0.0.") && rev.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa."), "{rev}");
        let m = ask_tcp(&dns, &rev, RecordType::PTR);
        assert_eq!(m.answers[0].data.to_string(), "mail.example.org.");

        assert!(ask(&dns, "slow.example.", RecordType::TXT).is_none());
        assert_eq!(
            ask(&dns, "broken.example.", RecordType::TXT).unwrap().metadata.response_code,
            ResponseCode::ServFail
        );
        assert_eq!(dns.queries("example.org"), 2);
        assert_eq!(dns.queries("slow.example"), 1);
    }

    #[test]
    fn long_txt_is_split_and_big_answers_truncate_over_udp() {
        let dns = DnsServer::start();
        let long = "x".repeat(600);
        dns.txt("long.example", &long);
        let m = ask_tcp(&dns, "long.example.", RecordType::TXT);
        let RData::TXT(txt) = &m.answers[0].data else { panic!() };
        assert_eq!(txt.txt_data.len(), 3);
        for i in 0..10 {
            dns.txt("big.example", &format!("{i}{}", "y".repeat(250)));
        }
        let m = ask(&dns, "big.example.", RecordType::TXT).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(ask_tcp(&dns, "big.example.", RecordType::TXT).answers.len(), 10);
    }
}
