//! The media tap (the recorder's hook) and the small types it speaks in.

use std::time::Instant;

use super::rtp::Packet;
use super::sdp::MediaDirection;

/// One side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller's side.
    A,
    /// The callee's side.
    B,
}

impl Leg {
    /// The other leg.
    #[must_use]
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    /// 0 for A, 1 for B (array index).
    pub(crate) fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}

/// RTP or RTCP. Also names a leg's socket (the RTP one, on the even port, or
/// the RTCP one, on the port above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// RTP media.
    Rtp,
    /// RTCP control (RFC 5761 demultiplexed: second byte & 0x7F in 64..=95).
    Rtcp,
}

impl PacketKind {
    /// 0 for RTP, 1 for RTCP (array index).
    pub(crate) fn index(self) -> usize {
        match self {
            PacketKind::Rtp => 0,
            PacketKind::Rtcp => 1,
        }
    }
}

/// A hook that sees every relayed packet; the recorder implements it.
///
/// A tap is owned by the call's relay once attached
/// ([`crate::media::MediaHandle::attach_tap`]) and driven by the relay
/// worker that owns the call, sans-IO style: inputs come in as method
/// calls with the time, and the tap says when it next wants to be woken
/// ([`MediaTap::poll_timeout`]).
///
/// # Contract
/// - Called synchronously on the relay worker, in arrival order per socket,
///   for every packet from the leg's own source that passed validation
///   (valid RTP, or RTCP), before it is sent on — also when it cannot be
///   sent (no target yet, send error). Garbage and foreign packets dropped
///   by the relay are not shown.
/// - `packet` is parsed once, by the relay: RTP as received with its
///   header, RTCP as scrubbed for the other leg. It borrows the worker's
///   receive buffer and is only valid during the call: copy what you keep.
/// - Implementations **must not block** (no I/O, no locks held elsewhere,
///   no `block_on`): every call on the same worker waits for them. Do the
///   cheap per-packet work in place; hand anything slow (encryption, disk)
///   to another thread in batches, through a bounded queue (`try_send`),
///   and drop and count when it is full.
/// - A panic in the tap detaches it (it is dropped, the relay logs it); the
///   call's media goes on.
pub trait MediaTap: Send {
    /// A packet received from `from`'s party at `arrival` (taken right
    /// after the receive).
    fn on_packet(&mut self, from: Leg, packet: Packet<'_>, arrival: Instant);

    /// The SDP direction of `leg` changed (hold / resume). The relay keeps
    /// forwarding whatever arrives; the tap may use this, e.g. to mark a
    /// hold in the recording. Default: ignored.
    fn on_media_direction(&mut self, leg: Leg, direction: MediaDirection) {
        let _ = (leg, direction);
    }

    /// When the tap next wants [`MediaTap::handle_timeout`]; `None` for
    /// never. Asked again after every call into the tap.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The time from [`MediaTap::poll_timeout`] has come (`now` is at or
    /// after it).
    fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// The tap is detached (or the call's relay stops): no more packets
    /// come. The tap is dropped right after.
    fn close(&mut self, now: Instant) {
        let _ = now;
    }
}
