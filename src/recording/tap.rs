//! The bridge from the media relay to a call's recording writer.

use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::media::{Leg, MediaTap, Packet, RtpHeader, RtpPacket};
use crate::recording::align::Channel;

/// Packets queued for a writer before new ones are dropped (about 40 s of
/// both directions at 50 packets per second): the writer never slows the
/// relay down.
pub const TAP_QUEUE: usize = 4096;

/// One RTP packet on its way to the recorder: the header the relay
/// parsed, and a copy of the datagram.
#[derive(Debug)]
pub struct TapPacket {
    /// Caller (A→B) or callee (B→A).
    pub channel: Channel,
    /// Its header, as the relay parsed it.
    pub header: RtpHeader,
    /// The datagram as relayed.
    pub data: Vec<u8>,
    /// When the relay received it.
    pub arrival: Instant,
}

impl TapPacket {
    /// The packet, parsed (no parsing happens here).
    pub fn rtp(&self) -> RtpPacket<'_> {
        RtpPacket {
            header: self.header,
            bytes: &self.data,
        }
    }
}

/// Attached to a call's relay from the start, and switched on at answer:
/// recording covers the conversation, not the ringing or early media.
#[derive(Debug, Default)]
pub struct RecordingTap {
    /// The writer's queue while recording; `None` before answer and after
    /// the end. A per-call lock, taken once per packet and never contended
    /// except at switch-on and switch-off.
    slot: Mutex<Option<mpsc::Sender<TapPacket>>>,
    /// Packets dropped because the writer fell behind.
    dropped: std::sync::atomic::AtomicU64,
}

impl RecordingTap {
    /// Starts sending packets to a writer; returns its receiving end.
    pub fn switch_on(&self) -> mpsc::Receiver<TapPacket> {
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// Stops sending; the writer sees its queue close and finishes.
    pub fn switch_off(&self) {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Packets dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl MediaTap for RecordingTap {
    fn on_packet(&self, from: Leg, packet: Packet<'_>, arrival: Instant) {
        let Packet::Rtp(rtp) = packet else {
            return;
        };
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = slot.as_ref() else { return };
        let channel = match from {
            Leg::A => Channel::Caller,
            Leg::B => Channel::Callee,
        };
        let packet = TapPacket {
            channel,
            header: rtp.header,
            data: rtp.bytes.to_vec(),
            arrival,
        };
        if tx.try_send(packet).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
