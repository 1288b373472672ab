//! Any datagram: parsing never panics, and whatever parses prints back to
//! something that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ansim::sip::parse_datagram(data) {
        Ok(msg) => {
            let bytes = ansim::sip::to_bytes(&msg);
            assert!(ansim::sip::parse_datagram(&bytes).is_ok(), "reprint does not parse");
        }
        Err(e) => {
            let _ = ansim::sip::response_for_error(&e);
        }
    }
});
