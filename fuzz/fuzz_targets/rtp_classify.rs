//! Any datagram, as the relay receives it: the classifier, the RTP header
//! parser and the RTCP scrubber never panic, and what the scrubber returns
//! is RTCP, within the buffer, carries no SDES item but our CNAME and no
//! BYE reason, and is left as it is by a second pass.
//!
//! The scrubber runs twice: in a relay-sized buffer (`MAX_DATAGRAM + 1`
//! bytes, room to grow) and in one exactly as long as the datagram (no
//! room at all).
#![no_main]

use ansim::media::rtcp::{Cname, sanitize};
use ansim::media::{MAX_DATAGRAM, PacketKind, RtpHeader, classify, is_rtcp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for socket in [PacketKind::Rtp, PacketKind::Rtcp] {
        let kind = classify(socket, data);
        if kind.is_some() {
            assert!(data.len() <= MAX_DATAGRAM);
        }
        if kind == Some(PacketKind::Rtp) {
            assert!(socket == PacketKind::Rtp && !is_rtcp(data));
        }
    }
    if let Some(header) = RtpHeader::parse(data) {
        assert!(header.payload_offset + header.payload_len <= data.len());
        assert_eq!(header.payload(data).len(), header.payload_len);
    }
    let cname = Cname::from_raw([0x5a; 8]);
    let mut relay_buf = [0u8; MAX_DATAGRAM + 1];
    let len = data.len().min(relay_buf.len());
    relay_buf[..len].copy_from_slice(&data[..len]);
    check(&mut relay_buf, len, cname.as_bytes());
    let mut tight = data.to_vec();
    check(&mut tight, data.len(), cname.as_bytes());
});

fn check(buf: &mut [u8], len: usize, cname: &[u8]) {
    let Some(n) = sanitize(buf, len, cname) else {
        return;
    };
    assert!(n <= buf.len(), "result past the buffer");
    let out = &buf[..n];
    assert!(is_rtcp(out), "result is not RTCP");
    assert_scrubbed(out, cname);
    let mut again = out.to_vec();
    assert_eq!(sanitize(&mut again, n, cname), Some(n), "not a fixed point");
    assert_eq!(again, out, "not a fixed point");
}

/// An independent reading of the result: every packet version 2 with a
/// length within the datagram and a type that may cross; every SDES
/// chunk an SSRC and our CNAME alone; every BYE no more than its SSRCs.
fn assert_scrubbed(out: &[u8], cname: &[u8]) {
    let word = |at: usize| u16::from_be_bytes([out[at + 2], out[at + 3]]);
    let mut at = 0;
    while at < out.len() {
        let (first, kind) = (out[at], out[at + 1]);
        let len = (usize::from(word(at)) + 1) * 4;
        assert_eq!(first >> 6, 2, "version");
        assert!(at + len <= out.len(), "length");
        let count = usize::from(first & 0x1f);
        match kind {
            200 | 201 | 205 | 206 | 207 => {}
            202 => {
                assert_eq!(first & 0x20, 0, "padded SDES");
                let chunk = 4 + (2 + cname.len() + 1).div_ceil(4) * 4;
                assert_eq!(len, 4 + count * chunk, "SDES length");
                for c in 0..count {
                    let items = &out[at + 4 + c * chunk + 4..at + 4 + (c + 1) * chunk];
                    assert_eq!(&items[..2], &[1, cname.len() as u8], "not our CNAME");
                    assert_eq!(&items[2..2 + cname.len()], cname, "not our CNAME");
                    assert!(
                        items[2 + cname.len()..].iter().all(|&b| b == 0),
                        "more items"
                    );
                }
            }
            203 => assert_eq!(len, 4 + 4 * count, "BYE with a reason"),
            _ => panic!("packet type {kind} crossed"),
        }
        at += len;
    }
    assert_eq!(at, out.len(), "lengths do not add up");
}
