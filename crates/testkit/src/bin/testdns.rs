//! testdns: the test DNS server as a standalone process, for benchmarks.
//!
//! `testdns PORT [DEFAULT_TXT]` serves on 127.0.0.1:PORT (UDP and TCP):
//! NXDOMAIN for every name, and DEFAULT_TXT (for example a catch-all SPF
//! record) for every TXT question. It runs until killed.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(port) = args.next().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: testdns PORT [DEFAULT_TXT]");
        std::process::exit(2);
    };
    let server = match greygate_testkit::dns::DnsServer::start_on(port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testdns: cannot bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    if let Some(txt) = args.next() {
        server.default_txt(&txt);
    }
    println!("testdns listening on {}", server.addr());
    loop {
        std::thread::park();
    }
}
