//! testdns: the test DNS server as a standalone process, for benchmarks
//! and hand checks.
//!
//! `testdns PORT [DEFAULT_TXT] [--host NAME=ADDRESS]...` serves on
//! 127.0.0.1:PORT (UDP and TCP): NXDOMAIN for every name, DEFAULT_TXT
//! (for example a catch-all SPF record) for every TXT question, and for
//! each `--host` the name's address and the address's PTR back to the name
//! (forward-confirmed reverse DNS). It runs until killed.

use std::net::IpAddr;

fn usage() -> ! {
    eprintln!("usage: testdns PORT [DEFAULT_TXT] [--host NAME=ADDRESS]...");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(port) = args.next().and_then(|p| p.parse::<u16>().ok()) else {
        usage();
    };
    let mut default_txt = None;
    let mut hosts: Vec<(String, IpAddr)> = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--host" {
            let host = args
                .next()
                .and_then(|h| h.split_once('=').and_then(|(n, a)| Some((n.to_owned(), a.parse().ok()?))))
                .unwrap_or_else(|| usage());
            hosts.push(host);
        } else if default_txt.is_none() {
            default_txt = Some(arg);
        } else {
            usage();
        }
    }
    let server = match greygate_testkit::dns::DnsServer::start_on(port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testdns: cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    if let Some(txt) = default_txt {
        server.default_txt(&txt);
    }
    for (name, addr) in &hosts {
        server.host(name, *addr);
    }
    println!("testdns listening on {}", server.addr());
    loop {
        std::thread::park();
    }
}
