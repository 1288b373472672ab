//! Any byte stream, cut anywhere: the TCP framer never panics and never
//! buffers without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let cut = usize::from(cut).min(rest.len());
    let mut framer = ansim::sip::StreamFramer::new();
    for part in [&rest[..cut], &rest[cut..]] {
        framer.push(part);
        while let Some(msg) = framer.next_message() {
            match msg {
                Ok(m) => {
                    let _ = ansim::sip::parse_datagram(&m);
                }
                Err(_) => return,
            }
        }
    }
});
