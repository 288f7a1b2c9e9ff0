//! The PROXY protocol header decoder (v1 and v2), fed arbitrary bytes.
//!
//! Oracles: it never panics; a decoded header never claims more bytes
//! than it was given; bytes after the header do not change the result;
//! and every proper prefix of a decoded header asks for more input or is
//! refused, never decoded as something else.
#![no_main]

use greygate_proto::proxy_protocol::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, used))) = decode(data) else { return };
    assert!(used > 0 && used <= data.len());
    assert_eq!(decode(&data[..used]), Ok(Some((header, used))), "trailing bytes changed the header");
    for cut in 0..used {
        if let Ok(Some(other)) = decode(&data[..cut]) {
            panic!("prefix of {cut} bytes decoded as {other:?}, the whole as {header:?}");
        }
    }
});
