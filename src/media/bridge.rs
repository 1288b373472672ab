//! One call's media, sans-IO: the decisions of the relay for the four
//! sockets of a call (A RTP, A RTCP, B RTP, B RTCP), with no socket, no
//! clock and no runtime. The relay worker ([`super::worker`]) reads
//! datagrams, hands each to [`Bridge::handle_datagram`] with the time, and
//! sends what it is told to; commands from the call's
//! [`super::MediaHandle`] come in through [`Bridge::handle`].
//!
//! What it owns: the SDP targets and latches of both legs (the source
//! check), the RTCP identity scrubbing, the announcement being played,
//! the tap, and the call's counters.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::announcement::Announcement;
use super::announcer::Announcer;
use super::g711::Codec;
use super::latch::{Latch, SourcePolicy};
use super::rtcp::{self, Cname};
use super::rtp::{Packet, RtpPacket};
use super::sdp::MediaDirection;
use super::stats::{RelayTotals, SharedStats};
use super::tap::{Leg, MediaTap, PacketKind};

/// A change asked of a call's media by its handle.
pub(super) enum Command {
    /// `leg`'s `kind` target from its SDP (`None`: unknown).
    Remote(Leg, PacketKind, Option<SocketAddr>),
    /// An offer/answer: `leg`'s SDP named this address.
    OfferAnswer(Leg, SocketAddr),
    /// `leg`'s SDP direction.
    Direction(Leg, MediaDirection),
    /// Play this to both legs, then bridge again.
    Play(Arc<Announcement>),
    /// Play this to leg A alone, in this codec, and never relay anything
    /// (a caller no session routes hears our announcement; no B-leg).
    Announce(Arc<Announcement>, Codec),
    /// Show every packet to this tap from now on (replacing any other).
    AttachTap(Box<dyn MediaTap>),
    /// Close and drop the tap.
    DetachTap,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Remote(leg, kind, addr) => write!(f, "Remote({leg:?}, {kind:?}, {addr:?})"),
            Command::OfferAnswer(leg, addr) => write!(f, "OfferAnswer({leg:?}, {addr})"),
            Command::Direction(leg, d) => write!(f, "Direction({leg:?}, {d:?})"),
            Command::Play(_) => f.write_str("Play"),
            Command::Announce(_, codec) => write!(f, "Announce({codec:?})"),
            Command::AttachTap(_) => f.write_str("AttachTap"),
            Command::DetachTap => f.write_str("DetachTap"),
        }
    }
}

/// Where a received datagram goes: out of the other leg's socket of the
/// same kind, to `to`, `len` bytes of the (possibly rewritten) buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Forward {
    /// The leg whose socket sends it.
    pub(super) via: Leg,
    /// RTP or RTCP socket.
    pub(super) kind: PacketKind,
    /// The destination.
    pub(super) to: SocketAddr,
    /// Bytes to send.
    pub(super) len: usize,
}

/// The per-call state; see the module docs.
pub(super) struct Bridge {
    /// Addresses from SDP, `[leg][kind]`.
    sdp: [[Option<SocketAddr>; 2]; 2],
    /// Latched sources, `[leg][kind]`.
    latches: [[Latch; 2]; 2],
    /// Sees every admitted, valid packet; dropped if it panics.
    tap: Option<Box<dyn MediaTap>>,
    /// Counters, read by the handle.
    stats: Arc<SharedStats>,
    /// The codec of the first PCMU/PCMA packet seen on either leg.
    codec: Option<Codec>,
    /// The announcement being played: nothing is relayed meanwhile.
    playback: Option<Announcer>,
    /// Set by [`Command::Announce`]: the call has one party (leg A), who
    /// hears the announcement; leg B gets nothing, and nothing received
    /// on either leg is ever relayed (no reflection through our ports).
    alone: bool,
    /// Process-wide counters (foreign packets, unscrubbable RTCP).
    totals: Arc<RelayTotals>,
    /// Our RTCP CNAME toward each leg, `[leg]`: what that leg's party sees
    /// in the RTCP relayed to it, instead of the other party's.
    cnames: [Cname; 2],
}

impl Bridge {
    pub(super) fn new(
        policy: SourcePolicy,
        stats: Arc<SharedStats>,
        totals: Arc<RelayTotals>,
    ) -> Bridge {
        let latch = || [Latch::new(policy), Latch::new(policy)];
        Bridge {
            sdp: [[None; 2]; 2],
            latches: [latch(), latch()],
            tap: None,
            stats,
            codec: None,
            playback: None,
            alone: false,
            totals,
            cnames: [Cname::random(), Cname::random()],
        }
    }

    /// Applies a command from the handle.
    pub(super) fn handle(&mut self, now: Instant, command: Command) {
        match command {
            Command::Remote(leg, kind, addr) => self.sdp[leg.index()][kind.index()] = addr,
            Command::OfferAnswer(leg, addr) => {
                for latch in &mut self.latches[leg.index()] {
                    latch.offer_answer(Some(addr.ip()), now);
                }
                for latch in &mut self.latches[leg.other().index()] {
                    latch.offer_answer(None, now);
                }
            }
            Command::Direction(leg, direction) => {
                self.stats.set_direction(leg, direction);
                self.with_tap(|tap| tap.on_media_direction(leg, direction));
            }
            Command::Play(announcement) => {
                let codec = self.codec.unwrap_or(Codec::Pcmu);
                tracing::debug!(
                    ?codec,
                    packets = announcement.packets(),
                    "announcement starts"
                );
                self.playback = Some(Announcer::start(&announcement, codec, now));
            }
            Command::Announce(announcement, codec) => {
                tracing::debug!(
                    ?codec,
                    packets = announcement.packets(),
                    "announcement to the caller alone starts"
                );
                self.alone = true;
                self.codec = Some(codec);
                self.playback = Some(Announcer::start(&announcement, codec, now));
            }
            Command::AttachTap(tap) => {
                self.close_tap(now);
                self.tap = Some(tap);
            }
            Command::DetachTap => self.close_tap(now),
        }
    }

    /// Decides about one datagram of `len` bytes in `buf`, received at
    /// `now` from `src` on `leg`'s `kind` socket: where to send it, if
    /// anywhere. RTCP is scrubbed in place in `buf`. Counters are updated;
    /// call [`Bridge::sent`] with the outcome of the send.
    pub(super) fn handle_datagram(
        &mut self,
        now: Instant,
        leg: Leg,
        kind: PacketKind,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Option<Forward> {
        let counters = self.stats.counters(leg, kind);
        let latch = &mut self.latches[leg.index()][kind.index()];
        // The edge check: a stranger's datagram is not even classified.
        if !latch.admits(src, now) {
            counters.foreign();
            self.totals.foreign_packets.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        counters.received(len);
        if len > super::relay::MAX_DATAGRAM {
            counters.dropped();
            return None;
        }
        // Parsed once; the header borrows nothing, so RTCP can be
        // scrubbed in the same buffer.
        let rtp = match Packet::parse(kind, &buf[..len]) {
            Some(Packet::Rtp(p)) => Some(p.header),
            Some(Packet::Rtcp(_)) => None,
            None => {
                counters.dropped();
                return None;
            }
        };
        if latch.latch(src, now) {
            self.stats.set_latched(leg, kind, src);
            tracing::debug!(?leg, ?kind, %src, "media latched");
        }
        let out = leg.other();
        let mut len = len;
        if rtp.is_none() {
            // What identifies the sender (SDES, BYE reasons, APP) is ours
            // toward the other leg: scrubbed before anything sees it.
            match rtcp::sanitize(buf, len, self.cnames[out.index()].as_bytes()) {
                Some(n) => len = n,
                None => {
                    counters.dropped();
                    let unscrubbable = &self.totals.rtcp_unscrubbable;
                    unscrubbable.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        if self.tap.is_some() {
            let bytes = &buf[..len];
            let packet = match rtp {
                Some(header) => Packet::Rtp(RtpPacket { header, bytes }),
                None => Packet::Rtcp(bytes),
            };
            self.with_tap(|tap| tap.on_packet(leg, packet, now));
        }
        if let (None, Some(header)) = (self.codec, rtp) {
            self.codec = Codec::from_payload_type(header.payload_type);
        }
        if self.alone {
            self.stats.counters(leg, kind).dropped();
            return None;
        }
        if self.playback.is_some() {
            self.stats.counters(leg, kind).dropped();
            self.stats.dropped_announcing(leg);
            return None;
        }
        let Some(to) = self.target(out, kind) else {
            self.stats.counters(leg, kind).dropped();
            return None;
        };
        Some(Forward {
            via: out,
            kind,
            to,
            len,
        })
    }

    /// The outcome of sending `forward`: its length when sent.
    pub(super) fn sent(&self, forward: &Forward, result: Option<usize>) {
        match result {
            Some(n) => self.stats.counters(forward.via, forward.kind).sent(n),
            None => self
                .stats
                .counters(forward.via.other(), forward.kind)
                .dropped(),
        }
    }

    /// Where `leg`'s `kind` media goes: the latched source, else the SDP's.
    fn target(&self, leg: Leg, kind: PacketKind) -> Option<SocketAddr> {
        let (l, k) = (leg.index(), kind.index());
        self.latches[l][k].addr().or(self.sdp[l][k])
    }

    /// When [`Bridge::handle_timeout`] or [`Bridge::poll_announcement`]
    /// next has work.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let announcement = self.playback.as_ref().map(Announcer::due);
        let tap = self.tap.as_ref().and_then(|t| t.poll_timeout());
        match (announcement, tap) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Time has come for the tap (its own timers).
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if self
            .tap
            .as_ref()
            .and_then(|t| t.poll_timeout())
            .is_some_and(|t| t <= now)
        {
            self.with_tap(|tap| tap.handle_timeout(now));
        }
    }

    /// The announcement packet due at `now` for `leg`, and where it goes
    /// (`None` as target: nowhere known yet). `None` when no packet is due.
    pub(super) fn poll_announcement(
        &mut self,
        now: Instant,
        leg: Leg,
    ) -> Option<(Option<SocketAddr>, &[u8])> {
        if self.alone && leg == Leg::B {
            return None;
        }
        let target = self.target(leg, PacketKind::Rtp);
        let playback = self.playback.as_mut()?;
        if playback.due() > now {
            return None;
        }
        Some((target, playback.packet(leg)))
    }

    /// The outcome of sending the due announcement packet to `leg`.
    pub(super) fn announcement_sent(&self, leg: Leg, result: Option<usize>) {
        match result {
            Some(n) => {
                self.stats.counters(leg, PacketKind::Rtp).sent(n);
                self.stats.announcement_sent(leg);
            }
            None => self.stats.announcement_dropped(leg),
        }
    }

    /// Moves to the next announcement packet once both legs had theirs;
    /// after the last, the legs are bridged again.
    pub(super) fn announcement_advance(&mut self) {
        if let Some(playback) = self.playback.as_mut()
            && playback.advance()
        {
            self.playback = None;
            tracing::debug!("announcement done, bridging");
        }
    }

    /// The call's media ends: the tap is closed.
    pub(super) fn close(&mut self, now: Instant) {
        self.close_tap(now);
    }

    fn close_tap(&mut self, now: Instant) {
        self.with_tap(|tap| tap.close(now));
        self.tap = None;
    }

    /// Runs `f` on the tap; a panic detaches the tap (the media goes on).
    fn with_tap(&mut self, f: impl FnOnce(&mut dyn MediaTap)) {
        let Some(tap) = self.tap.as_mut() else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| f(tap.as_mut()))).is_err() {
            tracing::error!("media tap panicked: detached, the call's media goes on");
            self.tap = None;
        }
    }
}

#[cfg(test)]
#[path = "bridge_tests.rs"]
mod tests;
