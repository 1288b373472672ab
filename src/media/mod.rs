//! Media: the RTP/RTCP relay between the two legs of a call.
//!
//! # Design
//! - [`Relay`] owns the [`PortPool`] and a few **worker threads**
//!   (`[media] workers`, one per core by default). [`Relay::open`] takes
//!   two port pairs (an even RTP port and the RTCP port above it, picked at
//!   random from the free ones; the pool binds them all once, at start-up,
//!   and keeps a free pair silenced and drained: `ports.rs`, `quiet.rs`) and gives the call to one worker
//!   (round robin) with a [`MediaHandle`] to control it.
//! - Each call's decisions live in a sans-IO `Bridge` (`bridge.rs`): SDP
//!   targets, latches, RTCP scrubbing, the announcement, the tap, the
//!   counters. It takes `now` and datagrams and says where to send them; it
//!   has no socket, clock or runtime, and is tested without them.
//! - A worker (`worker.rs`) is the I/O shell around its calls' bridges: an
//!   epoll set (`mio`) of their sockets, a waker for the handles' requests
//!   and a timer set (announcement packets, the tap's flushes). A ready
//!   socket is drained with `recvmmsg` in batches of 32, and what a batch
//!   forwards leaves in one `sendmmsg` (`mmsg.rs`): two system calls per
//!   batch rather than two per packet, and no task wake-up per packet. A
//!   flooded socket is served at most 4 batches per turn, then the others.
//! - With `[media] io = "io_uring"` a worker is `uring.rs` instead: the same
//!   requests, the same bridge calls in the same order, but one
//!   `io_uring_enter` per loop turn submits every send and waits for the
//!   next completions of all its sockets (registered files, a multishot
//!   receive per socket into one provided-buffer ring, `bufring.rs`). The
//!   relay falls back to epoll where the ring cannot be set up.
//! - Packets are forwarded unchanged (no SSRC/sequence rewriting).
//! - [`MediaHandle`] controls the call: SDP addresses, SDP direction, the
//!   announcement, the tap, stats, stop. Dropping it ends the call's media.
//!
//! # No per-packet allocation, no lock
//! Each worker has one batch of receive buffers; receive, scrubbing and
//! send work on them in place; the tap gets a borrowed slice. Counters are
//! relaxed atomics written by the call's worker ([`MediaStats`] reads
//! them); the only mutexes are the pool's (once per allocation) and a
//! per-call one touched when a latch or direction changes. No database,
//! no logging per packet. A full send buffer drops the packet rather than
//! waiting.
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
//! - **Pacing.** Each packet is due 20 ms after the one before, the first
//!   at once; the worker wakes for it (its timer set). A late worker
//!   catches up in a burst, so the stream does not drift from the clock.
//! - **Target.** Each packet goes out of the leg's RTP socket to the leg's
//!   current RTP target: the latched source, else the SDP address. With
//!   neither, it is dropped and counted
//!   ([`LegStats::announcement_dropped`]); sent packets count in
//!   [`LegStats::announcement_sent`] and the socket's `packets_out`.
//! - **No bridging meanwhile.** Until the last packet is sent, nothing
//!   received (RTP or RTCP) is relayed to the other leg. It is still
//!   validated, latched, shown to the tap (the recording keeps what the
//!   parties say, not the announcement, which never passes the tap) and
//!   counted as dropped ([`LegStats::dropped_announcing`]). From then on
//!   packets are relayed again,
//!   unchanged (the phones see the other party's SSRC take over from ours).
//! - **The caller alone.** [`MediaHandle::announce_alone`] plays an
//!   announcement to leg A only, in the codec our SDP answer named, for a
//!   caller no session routes (`out_of_session = "announce"`): leg B gets
//!   nothing, and nothing received on either leg is relayed, during the
//!   playback or after it (dropped and counted), so the call's ports
//!   reflect nothing. The switch ends the call after the announcement's
//!   length.
//!
//! # The tap
//! [`MediaTap::on_packet`] sees every valid packet received from a leg, as
//! the relay parsed it ([`Packet`]: RTP with its header, or scrubbed RTCP)
//! and with the leg it came from, synchronously on the call's worker, and
//! has a timer of its own ([`MediaTap::poll_timeout`]). It must not block:
//! see the trait's contract. The recorder's tap aligns and cuts chunks
//! there and hands a chunk every 2 s to its writer task.

pub mod announcement;
mod announcer;
mod bridge;
mod bufring;
pub mod g711;
mod latch;
mod mmsg;
mod patrol;
mod ports;
mod quiet;
mod relay;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
mod stats;
mod tap;
mod uring;
pub mod wav;
mod worker;

#[cfg(test)]
mod relay_tests;

pub use announcement::{Announcement, AnnouncementError, AnnouncementProblem};
pub use latch::SourcePolicy;
pub use ports::{PortPair, PortPool};
pub use relay::{MAX_DATAGRAM, MediaHandle, MediaIo, Relay, RelayConfig};
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
    /// The process ran out of file descriptors binding a media socket: the
    /// descriptor limit does not hold the port range.
    #[error(
        "cannot bind media socket {addr}: out of file descriptors ({source}); every port of \
         [media] ports holds one: raise the limit (LimitNOFILE, ulimit -n) or narrow the range"
    )]
    Descriptors {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The OS error (`EMFILE` or `ENFILE`).
        #[source]
        source: std::io::Error,
    },
    /// A relay worker thread could not be started, or has stopped.
    #[error("media worker: {0}")]
    Worker(#[source] std::io::Error),
}
