//! Per-call relay counters: atomics written by the call's relay worker, read as a
//! snapshot by [`crate::media::MediaHandle::stats`].
//!
//! Counters are relaxed atomics written by one worker (no lock per packet);
//! the rarely changing fields (latched addresses, SDP direction) sit behind a
//! small mutex touched only when they change or when a snapshot is taken.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::sdp::MediaDirection;
use super::tap::{Leg, PacketKind};

/// Counters of one socket (RTP or RTCP) of one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received on this socket from the leg's admitted source
    /// (any content).
    pub packets_in: u64,
    /// Bytes of those datagrams.
    pub bytes_in: u64,
    /// Datagrams sent out of this socket to the leg's party.
    pub packets_out: u64,
    /// Bytes of those datagrams.
    pub bytes_out: u64,
    /// Received datagrams not relayed: not RTP/RTCP (garbage, too short,
    /// too long), no target known yet for the other leg, or send failed.
    pub dropped: u64,
    /// Datagrams from a source the leg does not admit (see
    /// [`crate::media::SourcePolicy`]): dropped unread, never relayed or
    /// tapped, and not counted in `packets_in`.
    pub foreign: u64,
}

/// A snapshot of one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    /// The leg's RTP socket (RFC 5761 multiplexed RTCP included).
    pub rtp: Counters,
    /// The leg's RTCP socket.
    pub rtcp: Counters,
    /// Source address latched on the RTP socket, if any.
    pub rtp_latched: Option<SocketAddr>,
    /// Source address latched on the RTCP socket, if any.
    pub rtcp_latched: Option<SocketAddr>,
    /// The SDP direction last set for this leg.
    pub direction: MediaDirection,
    /// Announcement RTP packets sent to this leg's party (also counted in
    /// `rtp.packets_out`).
    pub announcement_sent: u64,
    /// Announcement packets for this leg not sent: no target known yet
    /// (nothing latched, no SDP address) or the send failed.
    pub announcement_dropped: u64,
    /// Valid packets received from this leg while the announcement played
    /// and not relayed (also counted in their socket's `dropped`).
    pub dropped_announcing: u64,
}

impl LegStats {
    /// The counters of the `kind` socket.
    #[must_use]
    pub fn counters(&self, kind: PacketKind) -> &Counters {
        match kind {
            PacketKind::Rtp => &self.rtp,
            PacketKind::Rtcp => &self.rtcp,
        }
    }
}

/// A snapshot of a call's relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Leg A (caller side).
    pub a: LegStats,
    /// Leg B (callee side).
    pub b: LegStats,
}

impl MediaStats {
    /// The snapshot of `leg`.
    #[must_use]
    pub fn leg(&self, leg: Leg) -> &LegStats {
        match leg {
            Leg::A => &self.a,
            Leg::B => &self.b,
        }
    }
}

/// Live counters of one socket.
#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped: AtomicU64,
    foreign: AtomicU64,
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl AtomicCounters {
    /// A datagram of `len` bytes arrived.
    pub(crate) fn received(&self, len: usize) {
        add(&self.packets_in, 1);
        add(&self.bytes_in, len);
    }

    /// A datagram of `len` bytes was sent.
    pub(crate) fn sent(&self, len: usize) {
        add(&self.packets_out, 1);
        add(&self.bytes_out, len);
    }

    /// A received datagram was not relayed.
    pub(crate) fn dropped(&self) {
        add(&self.dropped, 1);
    }

    /// A datagram from a source the leg does not admit was dropped.
    pub(crate) fn foreign(&self) {
        add(&self.foreign, 1);
    }

    fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            packets_in: get(&self.packets_in),
            bytes_in: get(&self.bytes_in),
            packets_out: get(&self.packets_out),
            bytes_out: get(&self.bytes_out),
            dropped: get(&self.dropped),
            foreign: get(&self.foreign),
        }
    }
}

/// Counters of every relay of the process, for `/metrics`.
#[derive(Debug, Default)]
pub struct RelayTotals {
    /// Datagrams dropped because their source is not the leg's own
    /// (`ansim_media_foreign_packets_total`).
    pub foreign_packets: AtomicU64,
    /// RTCP datagrams dropped because they could not be scrubbed of
    /// identity (malformed compound packets).
    pub rtcp_unscrubbable: AtomicU64,
    /// Times an io_uring worker's receive buffers ran out and a socket's
    /// receive waited for them to come back (`ansim_media_ring_starved_total`;
    /// the datagrams wait in the socket meanwhile).
    pub ring_starved: AtomicU64,
}

/// Rarely changing per-leg facts.
#[derive(Debug, Default)]
struct LegFacts {
    latched: [Option<SocketAddr>; 2],
    direction: MediaDirection,
}

/// Live statistics of one leg.
#[derive(Debug, Default)]
struct LegShared {
    counters: [AtomicCounters; 2],
    announcement_sent: AtomicU64,
    announcement_dropped: AtomicU64,
    dropped_announcing: AtomicU64,
    facts: Mutex<LegFacts>,
}

impl LegShared {
    fn facts(&self) -> MutexGuard<'_, LegFacts> {
        self.facts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Live statistics of a call, shared by the relay task and the handle.
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    legs: [LegShared; 2],
}

impl SharedStats {
    /// The live counters of `leg`'s `kind` socket.
    pub(crate) fn counters(&self, leg: Leg, kind: PacketKind) -> &AtomicCounters {
        &self.legs[leg.index()].counters[kind.index()]
    }

    /// Records a (re-)latch of `leg`'s `kind` socket to `addr`.
    pub(crate) fn set_latched(&self, leg: Leg, kind: PacketKind, addr: SocketAddr) {
        self.legs[leg.index()].facts().latched[kind.index()] = Some(addr);
    }

    /// An announcement packet was sent to `leg`.
    pub(crate) fn announcement_sent(&self, leg: Leg) {
        add(&self.legs[leg.index()].announcement_sent, 1);
    }

    /// An announcement packet for `leg` could not be sent.
    pub(crate) fn announcement_dropped(&self, leg: Leg) {
        add(&self.legs[leg.index()].announcement_dropped, 1);
    }

    /// A packet from `leg` was not relayed because the announcement played.
    pub(crate) fn dropped_announcing(&self, leg: Leg) {
        add(&self.legs[leg.index()].dropped_announcing, 1);
    }

    /// Records `leg`'s SDP direction.
    pub(crate) fn set_direction(&self, leg: Leg, direction: MediaDirection) {
        self.legs[leg.index()].facts().direction = direction;
    }

    /// A consistent-enough snapshot (counters are read one by one).
    pub(crate) fn snapshot(&self) -> MediaStats {
        let leg = |leg: Leg| {
            let shared = &self.legs[leg.index()];
            let facts = shared.facts();
            LegStats {
                rtp: shared.counters[0].snapshot(),
                rtcp: shared.counters[1].snapshot(),
                rtp_latched: facts.latched[0],
                rtcp_latched: facts.latched[1],
                direction: facts.direction,
                announcement_sent: shared.announcement_sent.load(Ordering::Relaxed),
                announcement_dropped: shared.announcement_dropped.load(Ordering::Relaxed),
                dropped_announcing: shared.dropped_announcing.load(Ordering::Relaxed),
            }
        };
        MediaStats {
            a: leg(Leg::A),
            b: leg(Leg::B),
        }
    }
}
