//! Any SDP body: rewriting and rendering never panic, and what comes out
//! names only our address and keeps to the whitelist of lines and
//! attributes (checked against a list of its own here, not the one in
//! `ansim::media::sdp`). Rewriting the output again changes nothing.
//!
//! The first input byte picks the target (IPv4 or IPv6 address, port); the
//! rest is the body.
#![no_main]

use std::net::IpAddr;

use ansim::media::sdp::{Origin, Target, rewrite};
use libfuzzer_sys::fuzz_target;

/// Attributes that may cross legs (with the direction attributes).
const ALLOWED: [&str; 10] = [
    "rtpmap",
    "fmtp",
    "ptime",
    "maxptime",
    "rtcp-fb",
    "silencesupp",
    "sendrecv",
    "sendonly",
    "recvonly",
    "inactive",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let address: IpAddr = if pick & 1 == 0 {
        "203.0.113.5".parse().unwrap()
    } else {
        "2001:db8::5".parse().unwrap()
    };
    let target = Target {
        address,
        audio_port: if pick & 2 == 0 { 30000 } else { 0 },
    };
    let Ok(rewritten) = rewrite(body, target) else {
        return;
    };
    let mut origin = Origin::new(1);
    let out = origin.render(&rewritten, address);
    assert_eq!(origin.render(&rewritten, address), out);
    assert_eq!(origin.version(), 1, "same body, new version");
    let text = std::str::from_utf8(&out).expect("output is UTF-8");
    assert!(text.starts_with("v=0\r\n") && text.ends_with("\r\n"));
    let ours = format!(" {address}");
    for line in text[..text.len() - 2].split("\r\n") {
        assert!(
            !line.contains(['\r', '\n', '\0']),
            "line break inside {line:?}"
        );
        let (kind, value) = line.split_at_checked(2).expect("short line");
        match kind {
            "v=" | "s=" | "b=" | "t=" | "r=" | "z=" | "m=" => {}
            "o=" | "c=" => assert!(value.ends_with(&ours), "foreign address: {line:?}"),
            "a=" => {
                let name = value.split(':').next().unwrap_or(value);
                assert!(
                    ALLOWED.iter().any(|a| a.eq_ignore_ascii_case(name)),
                    "attribute crossed: {line:?}"
                );
            }
            _ => panic!("line crossed: {line:?}"),
        }
    }
    let again = rewrite(&out, target).expect("our output is valid SDP");
    assert_eq!(
        Origin::new(1).render(&again, address),
        out,
        "not a fixed point"
    );
});
