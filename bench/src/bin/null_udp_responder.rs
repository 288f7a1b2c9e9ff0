//! null_udp_responder: answers every UDP datagram with greydaemon's
//! "retry ok" (`01 03`) without looking at it.
//!
//! The ceiling for any qmail greylisting daemon on this machine: what
//! `udpload` measures against it is the cost of the loopback UDP round trip
//! and the load generator itself.
//!
//! Usage: null_udp_responder [--listen 127.0.0.1:10060]
//! Only loopback addresses are accepted.

use std::net::{SocketAddr, UdpSocket};
use std::process::exit;

fn main() {
    let mut listen = "127.0.0.1:10060".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    let addr: SocketAddr = listen.parse().unwrap_or_else(|_| usage());
    if !addr.ip().is_loopback() {
        eprintln!("null_udp_responder: {addr} is not a loopback address");
        exit(2);
    }
    let socket = UdpSocket::bind(addr).unwrap_or_else(|e| {
        eprintln!("null_udp_responder: cannot bind {addr}: {e}");
        exit(1)
    });
    eprintln!("null_udp_responder listening on {addr}");
    let mut buf = [0u8; 4096];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((_, peer)) => {
                let _ = socket.send_to(&[1, 3], peer);
            }
            Err(e) => eprintln!("null_udp_responder: {e}"),
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: null_udp_responder [--listen 127.0.0.1:PORT]");
    exit(2)
}
