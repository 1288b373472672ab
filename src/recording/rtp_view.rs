//! Minimal, allocation-free RTP header parser (RFC 3550).
//!
//! Only what the recorder needs: fixed header fields and the payload slice,
//! with CSRC list, header extension and padding bounds-checked. RTCP packets
//! multiplexed on the same port (RFC 5761: second byte & 0x7f in 64..=95)
//! are rejected.

/// Length of the fixed RTP header.
const FIXED_HEADER: usize = 12;

/// A borrowed view of one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Marker bit (for audio: first packet of a talkspurt).
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp (sampling clock units).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload, without header, CSRCs, extension or padding.
    pub payload: &'a [u8],
}

impl<'a> RtpView<'a> {
    /// Parses `packet`; returns `None` for anything that is not a
    /// well-formed RTP version 2 packet (including RTCP).
    pub fn parse(packet: &'a [u8]) -> Option<Self> {
        if packet.len() < FIXED_HEADER || packet[0] >> 6 != 2 {
            return None;
        }
        let payload_type = packet[1] & 0x7f;
        if (64..=95).contains(&payload_type) {
            return None; // RTCP (RFC 5761 demultiplexing)
        }
        let csrc_count = usize::from(packet[0] & 0x0f);
        let mut offset = FIXED_HEADER + 4 * csrc_count;
        if packet[0] & 0x10 != 0 {
            let ext = packet.get(offset..offset + 4)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            offset += 4 + 4 * words;
        }
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            let pad = usize::from(*packet.last()?);
            if pad == 0 {
                return None;
            }
            end = end.checked_sub(pad)?;
        }
        let payload = packet.get(offset..end)?;
        Some(Self {
            payload_type,
            marker: packet[1] & 0x80 != 0,
            seq: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            payload,
        })
    }
}

/// Builds an RTP packet (test and tone-generation helper).
#[cfg(test)]
pub(crate) fn build(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(FIXED_HEADER + payload.len());
    p.push(0x80);
    p.push(pt | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_fixed_header() {
        let p = build(0, true, 0x1234, 0xdead_beef, 0x0102_0304, &[1, 2, 3]);
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.payload_type, 0);
        assert!(v.marker);
        assert_eq!(v.seq, 0x1234);
        assert_eq!(v.timestamp, 0xdead_beef);
        assert_eq!(v.ssrc, 0x0102_0304);
        assert_eq!(v.payload, &[1, 2, 3]);
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        let mut p = build(8, false, 1, 2, 3, &[]);
        p[0] = 0x80 | 0x20 | 0x10 | 2; // padding, extension, 2 CSRCs
        p.extend_from_slice(&[0; 8]); // CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // 1-word extension
        p.extend_from_slice(&[7, 7]); // payload
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let v = RtpView::parse(&p).unwrap();
        assert_eq!(v.payload_type, 8);
        assert_eq!(v.payload, &[7, 7]);
    }

    #[test]
    fn rejects_bad_packets() {
        let good = build(0, false, 1, 2, 3, &[0xff; 4]);
        assert!(RtpView::parse(&good[..11]).is_none(), "short");
        let mut v1 = good.clone();
        v1[0] = 0x40;
        assert!(RtpView::parse(&v1).is_none(), "version 1");
        let mut rtcp = good.clone();
        rtcp[1] = 200; // SR: 200 & 0x7f = 72
        assert!(RtpView::parse(&rtcp).is_none(), "RTCP");
        let mut csrc = good.clone();
        csrc[0] |= 0x0f;
        assert!(RtpView::parse(&csrc).is_none(), "CSRCs past end");
        let mut ext = good.clone();
        ext[0] |= 0x10;
        assert!(RtpView::parse(&ext).is_none(), "extension past end");
        let mut pad = good.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 200;
        assert!(RtpView::parse(&pad).is_none(), "padding past payload");
        *pad.last_mut().unwrap() = 0;
        assert!(RtpView::parse(&pad).is_none(), "zero padding count");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(v) = RtpView::parse(&bytes) {
                prop_assert!(v.payload.len() + FIXED_HEADER <= bytes.len());
            }
        }
    }
}
