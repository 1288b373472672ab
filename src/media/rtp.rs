//! The media vocabulary: one RTP header type, parsed once per packet and
//! handed along parsed ([`RtpPacket`], [`Packet`]), and RTP/RTCP
//! demultiplexing (RFC 3550 §5.1, RFC 5761 §4).
//!
//! Every read is bounds-checked: truncated or garbage input yields `None` /
//! `false`, never a panic. [`Packet::parse`] is the relay's one decision on
//! what a received datagram is ([`classify`] says the same in one word).
//!
//! Why not the `rtp-rs` reader, which the design card names: measured side
//! by side (`cargo bench --bench recording -- "rtp parse"`), its
//! `RtpReader::new` is about 2.5 ns faster per packet (≈ 5.5 against ≈ 8 ns
//! on the CI machine, 0.4 % of the recorded path), so it is not kept for
//! speed. It is kept because the relay needs what `RtpReader` is not: a
//! header that borrows nothing (`Copy`), taken before the relay scrubs RTCP
//! in the same buffer and handed on to the recorder without re-reading the
//! bytes; and checks `rtp-rs` does not make (it takes RTCP for RTP,
//! payload type 72, CRATES.md), which would have to be added around it.

use super::relay::MAX_DATAGRAM;
use super::tap::PacketKind;

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// The only RTP/RTCP version in use (RFC 3550).
const VERSION: u8 = 2;

/// Minimal length of an RTCP packet's common header.
const RTCP_HEADER_LEN: usize = 4;

/// A parsed view of an RTP packet's header. It borrows nothing; use
/// [`RtpHeader::payload`] with the same packet to get the payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit (M).
    pub marker: bool,
    /// Payload type (7 bits). Never in 64..=95: those collide with RTCP.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Number of CSRC identifiers (CC, 0..=15).
    pub csrc_count: u8,
    /// Whether a header extension (X) is present.
    pub has_extension: bool,
    /// Whether padding (P) is present.
    pub has_padding: bool,
    /// Offset of the payload: fixed header + CSRCs + extension.
    pub payload_offset: usize,
    /// Length of the payload, padding excluded.
    pub payload_len: usize,
}

impl RtpHeader {
    /// Parses the header of an RTP packet.
    ///
    /// Returns `None` if the packet is shorter than its header says (fixed
    /// header, CSRC list, extension, padding), if the version is not 2, or if
    /// it is RTCP by RFC 5761 (see [`is_rtcp`]).
    #[must_use]
    pub fn parse(packet: &[u8]) -> Option<RtpHeader> {
        let fixed = packet.get(..RTP_FIXED_HEADER_LEN)?;
        if fixed[0] >> 6 != VERSION || is_rtcp_type(fixed[1]) {
            return None;
        }
        let csrc_count = fixed[0] & 0x0f;
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let mut offset = RTP_FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if has_extension {
            let ext = packet.get(offset..offset + 4)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            offset += 4 + 4 * words;
        }
        let padding = if has_padding {
            usize::from(*packet.last()?)
        } else {
            0
        };
        if (has_padding && padding == 0) || offset + padding > packet.len() {
            return None;
        }
        Some(RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7f,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            csrc_count,
            has_extension,
            has_padding,
            payload_offset: offset,
            payload_len: packet.len() - offset - padding,
        })
    }

    /// The payload of `packet`, which must be the packet this header was
    /// parsed from (an empty slice if it is not long enough).
    #[must_use]
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet
            .get(self.payload_offset..self.payload_offset + self.payload_len)
            .unwrap_or(&[])
    }
}

/// Whether the second byte of a packet marks RTCP (RFC 5761 §4: packet types
/// 192..=223, i.e. `byte & 0x7f` in 64..=95).
fn is_rtcp_type(second_byte: u8) -> bool {
    (64..=95).contains(&(second_byte & 0x7f))
}

/// Whether `packet` is an RTCP packet (RFC 5761 demultiplexing): version 2,
/// second byte & 0x7F in 64..=95, and the first RTCP packet's length field
/// fits in the datagram.
#[must_use]
pub fn is_rtcp(packet: &[u8]) -> bool {
    let Some(header) = packet.get(..RTCP_HEADER_LEN) else {
        return false;
    };
    let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
    header[0] >> 6 == VERSION && is_rtcp_type(header[1]) && (words + 1) * 4 <= packet.len()
}

/// What a datagram received on a `socket_kind` socket is, `None` if it is
/// not to be relayed. The RTP socket also passes RFC 5761 multiplexed RTCP.
///
/// See [`Packet::parse`]: the kind of what it accepts.
#[must_use]
pub fn classify(socket_kind: PacketKind, data: &[u8]) -> Option<PacketKind> {
    Packet::parse(socket_kind, data).map(|p| p.kind())
}

/// An RTP packet, parsed: its header and the datagram it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The parsed header (fields, and where the payload is).
    pub header: RtpHeader,
    /// The whole datagram, header included.
    pub bytes: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses `bytes` as RTP ([`RtpHeader::parse`]).
    #[must_use]
    pub fn parse(bytes: &'a [u8]) -> Option<RtpPacket<'a>> {
        RtpHeader::parse(bytes).map(|header| RtpPacket { header, bytes })
    }

    /// The payload: no header, CSRCs, extension or padding.
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        self.header.payload(self.bytes)
    }
}

/// A datagram the relay accepted: parsed RTP, or RTCP (a compound packet
/// the relay has scrubbed before anyone else sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// RTP media.
    Rtp(RtpPacket<'a>),
    /// RTCP, as bytes.
    Rtcp(&'a [u8]),
}

impl<'a> Packet<'a> {
    /// What a datagram received on a `socket_kind` socket is. In order:
    /// longer than [`MAX_DATAGRAM`] (the kernel filled the receive buffer,
    /// so it may have been cut) is refused; RTCP by [`is_rtcp`] is RTCP on
    /// either socket; on the RTP socket, what [`RtpHeader::parse`] accepts
    /// is RTP; everything else is refused.
    #[must_use]
    pub fn parse(socket_kind: PacketKind, data: &'a [u8]) -> Option<Packet<'a>> {
        if data.len() > MAX_DATAGRAM {
            None
        } else if is_rtcp(data) {
            Some(Packet::Rtcp(data))
        } else if socket_kind == PacketKind::Rtp {
            RtpPacket::parse(data).map(Packet::Rtp)
        } else {
            None
        }
    }

    /// RTP or RTCP.
    #[must_use]
    pub fn kind(&self) -> PacketKind {
        match self {
            Packet::Rtp(_) => PacketKind::Rtp,
            Packet::Rtcp(_) => PacketKind::Rtcp,
        }
    }

    /// The datagram's bytes.
    #[must_use]
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            Packet::Rtp(p) => p.bytes,
            Packet::Rtcp(b) => b,
        }
    }
}

/// Builds an RTP packet with a fixed header (no CSRC, extension or
/// padding): for tools, benchmarks and tests that make media.
#[must_use]
pub fn build(
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(RTP_FIXED_HEADER_LEN + payload.len());
    p.push(VERSION << 6);
    p.push(payload_type | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&sequence.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn parses_fixed_header() {
        let mut p = rtp(4242, &[7; 160]);
        p[1] = 0x80 | 8; // marker, PCMA
        let h = RtpHeader::parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.sequence, 4242);
        assert_eq!(h.timestamp, 0x0102_0304);
        assert_eq!(h.ssrc, 0xdead_beef);
        assert_eq!(
            (h.csrc_count, h.has_extension, h.has_padding),
            (0, false, false)
        );
        assert_eq!(h.payload(&p), &[7; 160][..]);
    }

    #[test]
    fn header_only_packet_has_empty_payload() {
        let h = RtpHeader::parse(&rtp(1, &[])).unwrap();
        assert_eq!(h.payload_len, 0);
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let p = rtp(1, &[1, 2, 3]);
        for len in 0..RTP_FIXED_HEADER_LEN {
            assert!(RtpHeader::parse(&p[..len]).is_none(), "len {len}");
        }
        let mut v0 = p.clone();
        v0[0] = 0x00;
        assert!(RtpHeader::parse(&v0).is_none());
        let mut v1 = p.clone();
        v1[0] = 0x40;
        assert!(RtpHeader::parse(&v1).is_none());
        assert!(RtpHeader::parse(&[0xff; 40]).is_none());
    }

    #[test]
    fn csrc_list_bounds() {
        let mut p = rtp(1, &[0; 8]); // room for exactly 2 CSRCs
        p[0] = 0x82;
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!((h.csrc_count, h.payload_offset, h.payload_len), (2, 20, 0));
        p[0] = 0x83;
        assert!(RtpHeader::parse(&p).is_none());
        p[0] = 0x8f;
        assert!(RtpHeader::parse(&p).is_none());
    }

    #[test]
    fn extension_bounds() {
        // Extension header (profile 0xBEDE, 1 word) + 1 word + 2 payload bytes.
        let mut p = rtp(1, &[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4, 9, 9]);
        p[0] = 0x90;
        let h = RtpHeader::parse(&p).unwrap();
        assert!(h.has_extension);
        assert_eq!(h.payload(&p), &[9, 9]);
        // Extension header cut short.
        assert!(RtpHeader::parse(&p[..14]).is_none());
        // Extension length claims more words than present.
        p[15] = 3;
        assert!(RtpHeader::parse(&p).is_none());
    }

    #[test]
    fn padding_bounds() {
        let mut p = rtp(1, &[5, 5, 0, 2]);
        p[0] = 0xa0;
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.payload(&p), &[5, 5]);
        *p.last_mut().unwrap() = 0; // zero padding count is invalid
        assert!(RtpHeader::parse(&p).is_none());
        *p.last_mut().unwrap() = 5; // more padding than payload
        assert!(RtpHeader::parse(&p).is_none());
    }

    #[test]
    fn rtcp_demultiplexing() {
        // Receiver report, no report blocks: 8 bytes, length field 1.
        let rr = [0x80, 201, 0x00, 0x01, 1, 2, 3, 4];
        assert!(is_rtcp(&rr));
        assert!(RtpHeader::parse(&[&rr[..], &[0; 8]].concat()).is_none());
        // Sender report type 200 and APP 204 are RTCP too.
        assert!(is_rtcp(&[0x80, 200, 0, 0]));
        assert!(is_rtcp(&[0x81, 204, 0, 0]));
        // RTP PCMU with and without marker is not.
        assert!(!is_rtcp(&rtp(1, &[0; 4])));
        let mut marked = rtp(1, &[0; 4]);
        marked[1] = 0x80;
        assert!(!is_rtcp(&marked));
        // Truncated, wrong version, length beyond datagram.
        assert!(!is_rtcp(&rr[..3]));
        assert!(!is_rtcp(&[0x00, 201, 0, 1, 0, 0, 0, 0]));
        assert!(!is_rtcp(&[0x80, 201, 0, 2, 0, 0, 0, 0]));
        assert!(!is_rtcp(&[]));
    }

    #[test]
    fn classify_by_socket() {
        use PacketKind::{Rtcp, Rtp};
        let media = rtp(1, &[0; 160]);
        let rr = [0x80, 201, 0x00, 0x01, 1, 2, 3, 4];
        assert_eq!(classify(Rtp, &media), Some(Rtp));
        assert_eq!(classify(Rtp, &rr), Some(Rtcp), "RFC 5761 multiplexing");
        assert_eq!(classify(Rtcp, &rr), Some(Rtcp));
        assert_eq!(classify(Rtcp, &media), None, "RTP on the RTCP socket");
        for garbage in [&[][..], &[0xff; 40], &media[..11]] {
            assert_eq!(classify(Rtp, garbage), None);
            assert_eq!(classify(Rtcp, garbage), None);
        }
        let mut longest = rtp(1, &[0; MAX_DATAGRAM - RTP_FIXED_HEADER_LEN]);
        assert_eq!(classify(Rtp, &longest), Some(Rtp));
        longest.push(0);
        assert_eq!(classify(Rtp, &longest), None, "filled the receive buffer");
        let mut long_rtcp = rr.to_vec();
        long_rtcp.resize(MAX_DATAGRAM + 1, 0);
        assert_eq!(classify(Rtcp, &long_rtcp), None);
    }
}
