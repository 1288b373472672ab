//! Playing the announcement: the per-call state of one announcement being
//! played (the encoded audio, one RTP stream per leg, when the next packet
//! is due). No clock and no timer of its own: the relay worker asks
//! [`Announcer::due`] and calls back at that time.
//!
//! Everything is allocated when the playback starts; building a packet
//! writes into a fixed buffer of its own.

use std::time::{Duration, Instant};

use super::announcement::{Announcement, SAMPLES_PER_PACKET};
use super::g711::Codec;
use super::rtp::RTP_FIXED_HEADER_LEN;
use super::tap::Leg;

/// Packet time of the announcement.
const PTIME: Duration = Duration::from_millis(20);

/// Length of one announcement packet.
const PACKET_LEN: usize = RTP_FIXED_HEADER_LEN + SAMPLES_PER_PACKET;

/// The RTP stream toward one leg: its own SSRC and random starting points.
struct Stream {
    ssrc: u32,
    first_sequence: u16,
    first_timestamp: u32,
}

/// An announcement being played to both legs.
pub(super) struct Announcer {
    /// The whole announcement in the call's codec, whole packets.
    encoded: Box<[u8]>,
    payload_type: u8,
    /// Index of the next packet to send.
    next: usize,
    streams: [Stream; 2],
    /// When the next packet is due: the start, then every 20 ms after it.
    /// A late worker catches up in a burst, so the pace does not drift.
    due: Instant,
    /// Where a packet is built.
    packet: [u8; PACKET_LEN],
}

impl Announcer {
    /// Starts playing `announcement` encoded in `codec`; the first packet is
    /// due at `now`.
    pub(super) fn start(announcement: &Announcement, codec: Codec, now: Instant) -> Announcer {
        let stream = || Stream {
            ssrc: rand::random(),
            first_sequence: rand::random(),
            first_timestamp: rand::random(),
        };
        Announcer {
            encoded: announcement.encode(codec),
            payload_type: codec.payload_type(),
            next: 0,
            streams: [stream(), stream()],
            due: now,
            packet: [0; PACKET_LEN],
        }
    }

    /// When the next packet is due.
    pub(super) fn due(&self) -> Instant {
        self.due
    }

    /// The current packet for `leg`: RTP version 2, the codec's payload
    /// type, the marker on the first packet, sequence and timestamp counting
    /// from the stream's random start (+1 and +160 per packet).
    pub(super) fn packet(&mut self, leg: Leg) -> &[u8] {
        let stream = &self.streams[leg.index()];
        let index = self.next;
        // At most 30 s: 1,500 packets, far from wrapping arithmetic limits.
        let sequence = stream.first_sequence.wrapping_add(index as u16);
        let timestamp = stream
            .first_timestamp
            .wrapping_add((index * SAMPLES_PER_PACKET) as u32);
        let marker = if index == 0 { 0x80 } else { 0 };
        let p = &mut self.packet;
        p[0] = 0x80;
        p[1] = marker | self.payload_type;
        p[2..4].copy_from_slice(&sequence.to_be_bytes());
        p[4..8].copy_from_slice(&timestamp.to_be_bytes());
        p[8..12].copy_from_slice(&stream.ssrc.to_be_bytes());
        let start = index * SAMPLES_PER_PACKET;
        if let Some(audio) = self.encoded.get(start..start + SAMPLES_PER_PACKET) {
            p[RTP_FIXED_HEADER_LEN..].copy_from_slice(audio);
        }
        &self.packet
    }

    /// Moves to the next packet, due 20 ms after this one; `true` when all
    /// have been sent.
    pub(super) fn advance(&mut self) -> bool {
        self.next += 1;
        self.due += PTIME;
        self.next * SAMPLES_PER_PACKET >= self.encoded.len()
    }
}
