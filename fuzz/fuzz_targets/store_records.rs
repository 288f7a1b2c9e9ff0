//! Records and key parts as the Redis store reads them back
//! (`greygate_store::redis::check_decoders`): no panic, and every decoded
//! value re-encodes to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        greygate_store::redis::check_decoders(text);
    }
});
