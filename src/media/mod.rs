//! Media: the RTP/RTCP relay between the two legs of a call.
//!
//! # Design
//! - [`PortPool`] hands each leg a [`PortPair`]: an even RTP port and the
//!   RTCP port above it, both bound. The pair returns its port to the pool
//!   when dropped, however the call ends (stop, drop, panic).
//! - [`MediaSession::start`] spawns **one Tokio task per call** that owns the
//!   four sockets and all per-call state (SDP targets, latches, the receive
//!   buffer). It waits on the control channel and the sockets' readiness
//!   (`poll_recv_ready`, commands first, sockets in rotating order), then
//!   drains the ready socket (up to 16 datagrams per turn) with
//!   `try_recv_from` and forwards each with `try_send_to`. Why one task per call and not one per
//!   socket: a packet arriving on A's socket latches A's address, which the
//!   traffic coming from B needs — with one task that state is a plain local,
//!   with four it would be shared (atomics or locks); one call needs one
//!   buffer, not four; 1,500 calls are 1,500 tasks, not 6,000. A call is a
//!   few hundred packets a second, far below one core.
//! - Packets are forwarded unchanged (no SSRC/sequence rewriting).
//! - [`MediaHandle`] controls the task: SDP addresses, SDP direction, the
//!   announcement, stats, stop. Dropping it stops the relay.
//!
//! # No per-packet allocation, no global lock
//! The receive buffer is allocated once per call; receive and send work on
//! it in place; the tap gets a borrowed slice. Counters are relaxed atomics
//! written by the call's own task ([`MediaStats`] reads them); the only
//! mutexes are the pool's (once per allocation) and a per-call one touched
//! when a latch or direction changes. No database, no logging per packet.
//! A full send buffer drops the packet rather than waiting.
//!
//! # Who may send (the source check)
//! Every datagram is first checked against its socket's latch
//! ([`SourcePolicy`], `[media] source`), before it is classified, relayed or
//! tapped: with `sdp` (the default) a leg admits only the IP its SDP
//! connection line names, and from the first valid packet on only that
//! `ip:port`; with `learn` (NATed peers) the first valid packet within
//! `[media] learn_window` after each offer/answer latches its source, and no
//! other is admitted afterwards. Anything else is foreign: dropped and
//! counted ([`Counters::foreign`], [`RelayTotals::foreign_packets`]), so a
//! stranger spraying the port range reaches neither the other party nor
//! the recording. Until a leg's party has sent, its media goes to the
//! address from its SDP ([`MediaHandle::set_remote`]; RTCP to the port
//! above); from then on to the latched source. RTP and RTCP latch
//! separately, each on its own socket. See `latch.rs` for the policy.
//!
//! # Validation
//! [`rtp::classify`] decides. On an RTP socket: valid RTP (version 2, header,
//! CSRCs, extension and padding within the datagram, payload type not in
//! 64..=95) or RFC 5761 multiplexed RTCP; on an RTCP socket: RTCP only
//! (version 2, packet type 192..=223, first length within the datagram).
//! Anything else is peer garbage: dropped and counted in
//! [`Counters::dropped`], never an error.
//!
//! # RTCP identity scrubbing
//! [`rtcp::sanitize`] rewrites an RTCP datagram in place before it goes to
//! the other leg: SDES chunks carry only our per-leg [`rtcp::Cname`], BYE
//! loses its reason, APP is removed; a malformed compound is dropped. See
//! that module for what is kept and why.
//!
//! # SDP direction
//! `sendonly`/`recvonly`/`inactive` (hold) do not filter media: whatever
//! arrives is relayed; the direction is reported to the tap
//! ([`MediaTap::on_media_direction`]) and shown in the stats.
//!
//! # The announcement
//! [`MediaHandle::play_then_bridge`] plays an [`Announcement`] (the
//! configured "this call is recorded" WAV, loaded once at start-up) to both
//! legs, then bridges them; the engine calls it when the call is answered.
//! - **Codec.** The relay remembers the payload type of the first PCMU (0)
//!   or PCMA (8) RTP packet seen on either leg; when the playback starts,
//!   the announcement is encoded in that codec (PCMU if none was seen yet)
//!   into one buffer for the call, padded with silence to whole packets.
//! - **Streams.** Each leg gets its own RTP stream: random SSRC, sequence
//!   number and timestamp, 20 ms packets of 160 samples (sequence +1,
//!   timestamp +160), the marker bit on the first. Packets are built in a
//!   fixed buffer: nothing is allocated per packet.
//! - **Pacing.** A 20 ms `tokio::time::Interval` polled by the relay task
//!   (before the sockets), first tick at once; missed ticks are caught up
//!   in a burst, so the stream does not drift from the clock.
//! - **Target.** Each packet goes out of the leg's RTP socket to the leg's
//!   current RTP target: the latched source, else the SDP address. With
//!   neither, it is dropped and counted
//!   ([`LegStats::announcement_dropped`]); sent packets count in
//!   [`LegStats::announcement_sent`] and the socket's `packets_out`.
//! - **No bridging meanwhile.** Until the last packet is sent, nothing
//!   received (RTP or RTCP) is relayed to the other leg. It is still
//!   validated, latched, shown to the tap (the recording keeps what the
//!   parties say, not the announcement, which never passes the tap) and
//!   counted as dropped ([`LegStats::dropped_announcing`]); so is what is
//!   already waiting in the sockets when the last packet has gone out (the
//!   task drains them then). From then on packets are relayed again,
//!   unchanged (the phones see the other party's SSRC take over from ours).
//!
//! # The tap
//! [`MediaTap::on_packet`] sees every valid packet received from a leg, as
//! the relay parsed it ([`Packet`]: RTP with its header, or scrubbed RTCP)
//! and with the leg it came from, synchronously on the relay task. It must
//! not block: copy and return (see the trait's contract).

pub mod announcement;
mod announcer;
pub mod g711;
mod latch;
mod ports;
mod relay;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
mod stats;
mod tap;
pub mod wav;

#[cfg(test)]
mod relay_tests;

pub use announcement::{Announcement, AnnouncementError, AnnouncementProblem};
pub use latch::SourcePolicy;
pub use ports::{PortPair, PortPool};
pub use relay::{MAX_DATAGRAM, MediaHandle, MediaSession, RelayConfig};
pub use rtp::{Packet, RtpHeader, RtpPacket, classify, is_rtcp};
pub use sdp::MediaDirection;
pub use stats::{Counters, LegStats, MediaStats, RelayTotals};
pub use tap::{Leg, MediaTap, PacketKind};

use std::net::SocketAddr;

/// Failures of ours (configuration, OS resources). What peers send is never
/// an error: bad packets are dropped and counted in the stats.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Every port pair of the pool is in use (or taken by other programs).
    #[error("no free RTP port pair in {first}..={last}")]
    PoolExhausted {
        /// First port of the configured range.
        first: u16,
        /// Last port of the configured range.
        last: u16,
    },
    /// The configured range holds no even port with its odd neighbour.
    #[error("port range {first}..={last} holds no RTP/RTCP port pair")]
    InvalidRange {
        /// First port of the configured range.
        first: u16,
        /// Last port of the configured range.
        last: u16,
    },
    /// Binding a media socket failed for another reason than "in use"
    /// (address not local, permission).
    #[error("cannot bind media socket {addr}: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Sockets were requested outside a Tokio runtime.
    #[error("media sockets need a Tokio runtime")]
    NoRuntime,
}
