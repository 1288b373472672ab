//! The per-call RTP/RTCP relay: one Tokio task per call owning the four
//! sockets (A RTP, A RTCP, B RTP, B RTCP) and all per-call state.
//!
//! See the module docs of [`crate::media`] for the design and policies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::announcement::Announcement;
use super::announcer::Announcer;
use super::g711::Codec;
use super::latch::Latch;
use super::latch::SourcePolicy;
use super::ports::PortPair;
use super::rtcp::{self, Cname};
use super::rtp::{Packet, RtpPacket};
use super::sdp::MediaDirection;
use super::stats::{MediaStats, RelayTotals, SharedStats};
use super::tap::{Leg, MediaTap, PacketKind};

/// Largest datagram relayed. The receive buffer is one byte longer: a
/// datagram that fills it was truncated by the kernel and is dropped.
pub const MAX_DATAGRAM: usize = 2048;

/// Datagrams read from one socket per wake-up before giving the others a turn.
const BATCH: usize = 16;

/// Relay settings.
#[derive(Debug, Clone, Default)]
pub struct RelayConfig {
    /// Which source each leg admits (`[media] source`, `learn_window`).
    pub source: SourcePolicy,
    /// Process-wide counters shared by every relay (for `/metrics`).
    pub totals: Arc<RelayTotals>,
}

/// Starts per-call relays.
#[derive(Debug)]
pub struct MediaSession;

impl MediaSession {
    /// Starts relaying between leg A (`a`, the caller's side) and leg B (`b`)
    /// with the default [`RelayConfig`]. See [`MediaSession::start_with`].
    #[must_use = "dropping the handle stops the relay"]
    pub fn start(a: PortPair, b: PortPair, tap: Option<Arc<dyn MediaTap>>) -> MediaHandle {
        MediaSession::start_with(RelayConfig::default(), a, b, tap)
    }

    /// Spawns the call's relay task, which owns both port pairs until
    /// [`MediaHandle::stop`] or the handle's drop.
    ///
    /// # Panics
    /// Outside a Tokio runtime (like `tokio::spawn`); a [`PortPair`] can only
    /// be allocated inside one.
    #[must_use = "dropping the handle stops the relay"]
    pub fn start_with(
        config: RelayConfig,
        a: PortPair,
        b: PortPair,
        tap: Option<Arc<dyn MediaTap>>,
    ) -> MediaHandle {
        let stats = Arc::new(SharedStats::default());
        let (control, commands) = mpsc::unbounded_channel();
        let ports = [a.port, b.port];
        let latch = || [Latch::new(config.source), Latch::new(config.source)];
        let state = RelayState {
            sdp: [[None; 2]; 2],
            latches: [latch(), latch()],
            tap,
            stats: Arc::clone(&stats),
            buf: vec![0; MAX_DATAGRAM + 1].into_boxed_slice(),
            codec: None,
            playback: None,
            totals: config.totals,
            cnames: [Cname::random(), Cname::random()],
        };
        let task = tokio::spawn(run([a, b], state, commands));
        MediaHandle {
            control: Some(control),
            task: Some(task),
            stats,
            ports,
        }
    }
}

/// Controls one call's relay. Dropping it stops the relay too (the ports are
/// freed as soon as the task has noticed; use [`MediaHandle::stop`] to wait).
#[derive(Debug)]
pub struct MediaHandle {
    control: Option<mpsc::UnboundedSender<Command>>,
    task: Option<JoinHandle<()>>,
    stats: Arc<SharedStats>,
    ports: [u16; 2],
}

/// A change asked of the relay task.
#[derive(Debug)]
enum Command {
    Remote(Leg, PacketKind, Option<SocketAddr>),
    /// An offer/answer: `leg`'s SDP named this address.
    OfferAnswer(Leg, SocketAddr),
    Direction(Leg, MediaDirection),
    Play(Arc<Announcement>),
}

impl MediaHandle {
    /// Sets `leg`'s address from its SDP (an offer or an answer): RTP goes
    /// to `addr`, RTCP to the port above, until latching learns where the
    /// party really sends from (a latched address wins). It is also an
    /// offer/answer for the source policy: with `sdp`, `leg` admits media
    /// from `addr`'s IP only, its port learnt again; with `learn`, both legs
    /// learn for a window. Call [`MediaHandle::set_remote_rtcp`] afterwards
    /// if the SDP has `a=rtcp`.
    pub fn set_remote(&self, leg: Leg, addr: SocketAddr) {
        let rtcp = addr
            .port()
            .checked_add(1)
            .map(|port| SocketAddr::new(addr.ip(), port));
        self.send(Command::Remote(leg, PacketKind::Rtp, Some(addr)));
        self.send(Command::Remote(leg, PacketKind::Rtcp, rtcp));
        self.send(Command::OfferAnswer(leg, addr));
    }

    /// Sets `leg`'s RTCP address explicitly (SDP `a=rtcp`, RFC 3605).
    pub fn set_remote_rtcp(&self, leg: Leg, addr: SocketAddr) {
        self.send(Command::Remote(leg, PacketKind::Rtcp, Some(addr)));
    }

    /// Records `leg`'s SDP direction. Media keeps flowing whatever it is
    /// (what arrives is relayed); the tap is told, and [`MediaHandle::stats`]
    /// shows it.
    pub fn set_direction(&self, leg: Leg, direction: MediaDirection) {
        self.stats.set_direction(leg, direction);
        self.send(Command::Direction(leg, direction));
    }

    /// Plays `announcement` to both legs, then bridges them again: until
    /// its last packet is sent, nothing is relayed between the legs (what
    /// arrives is still latched, tapped and counted in
    /// [`crate::media::LegStats::dropped_announcing`]). Each leg gets its own
    /// RTP stream (SSRC, random sequence and timestamp, marker on the first
    /// packet) of 20 ms packets in the call's codec: that of the first
    /// PCMU/PCMA packet seen on either leg, else PCMU. Calling it again
    /// restarts with the new announcement.
    pub fn play_then_bridge(&self, announcement: Arc<Announcement>) {
        self.send(Command::Play(announcement));
    }

    /// A snapshot of the counters and latched addresses.
    #[must_use]
    pub fn stats(&self) -> MediaStats {
        self.stats.snapshot()
    }

    /// The local RTP port of `leg` (RTCP is the port above): what our SDP
    /// offers to that leg's party.
    #[must_use]
    pub fn local_port(&self, leg: Leg) -> u16 {
        self.ports[leg.index()]
    }

    /// Stops relaying and waits for the task to end: when this returns, the
    /// sockets are closed and the ports are back in the pool.
    pub async fn stop(mut self) {
        self.control.take();
        if let Some(task) = self.task.take() {
            // A JoinError means the task panicked (a tap) or was cancelled at
            // runtime shutdown: either way it is over and its ports freed.
            let _ = task.await;
        }
    }

    fn send(&self, command: Command) {
        if let Some(control) = &self.control {
            // Fails only once the task has ended: nothing left to configure.
            let _ = control.send(command);
        }
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        self.control.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Everything the relay task mutates; the sockets are kept apart so the
/// `select!` can borrow them while handlers mutate this.
struct RelayState {
    /// Addresses from SDP, `[leg][kind]`.
    sdp: [[Option<SocketAddr>; 2]; 2],
    /// Latched sources, `[leg][kind]`.
    latches: [[Latch; 2]; 2],
    tap: Option<Arc<dyn MediaTap>>,
    stats: Arc<SharedStats>,
    /// The call's one receive buffer.
    buf: Box<[u8]>,
    /// The codec of the first PCMU/PCMA packet seen on either leg.
    codec: Option<Codec>,
    /// The announcement being played, if any: nothing is relayed meanwhile.
    playback: Option<Announcer>,
    /// Process-wide counters (foreign packets).
    totals: Arc<RelayTotals>,
    /// Our RTCP CNAME toward each leg, `[leg]`: what that leg's party sees
    /// in the RTCP relayed to it, instead of the other party's.
    cnames: [Cname; 2],
}

/// The four sockets of a call in polling order: `[leg][kind]` flattened.
const SOCKETS: [(Leg, PacketKind); 4] = [
    (Leg::A, PacketKind::Rtp),
    (Leg::A, PacketKind::Rtcp),
    (Leg::B, PacketKind::Rtp),
    (Leg::B, PacketKind::Rtcp),
];

/// Why the relay task woke up.
enum Wake {
    /// A socket has datagrams to read.
    Readable(Leg, PacketKind),
    /// The next announcement packet is due.
    Tick,
    /// The handle asked for a change.
    Command(Command),
    /// The handle is gone (stop or drop).
    Closed,
    /// A socket failed (only when the runtime's reactor is gone).
    Failed(std::io::Error),
}

/// The relay task: waits for a command or a readable socket, drains that
/// socket, until the handle goes away.
async fn run(
    io: [PortPair; 2],
    mut state: RelayState,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut next = 0;
    loop {
        let playback = &mut state.playback;
        match std::future::poll_fn(|cx| poll_wake(&io, &mut commands, playback, &mut next, cx))
            .await
        {
            Wake::Readable(leg, kind) => state.drain(&io, leg, kind),
            Wake::Tick => state.play(&io),
            Wake::Command(command) => state.apply(command),
            Wake::Closed => break,
            Wake::Failed(error) => {
                tracing::warn!(%error, "media relay socket failed, stopping relay");
                break;
            }
        }
    }
    tracing::debug!(a = io[0].port, b = io[1].port, "media relay stopped");
}

/// Polls commands first (so a `set_remote` made before a packet arrived is
/// applied before that packet is relayed), then the announcement's timer
/// (pacing), then the sockets starting after the one served last (fairness:
/// a flooded socket cannot starve the others).
///
/// `poll_recv_ready` keeps one waker slot per socket: unlike `readable()`
/// futures in a `select!`, nothing is queued or unqueued on each wake-up.
fn poll_wake(
    io: &[PortPair; 2],
    commands: &mut mpsc::UnboundedReceiver<Command>,
    playback: &mut Option<Announcer>,
    next: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<Wake> {
    match commands.poll_recv(cx) {
        Poll::Ready(Some(command)) => return Poll::Ready(Wake::Command(command)),
        Poll::Ready(None) => return Poll::Ready(Wake::Closed),
        Poll::Pending => {}
    }
    if let Some(playback) = playback
        && playback.poll_tick(cx).is_ready()
    {
        return Poll::Ready(Wake::Tick);
    }
    for step in 0..SOCKETS.len() {
        let index = (*next + step) % SOCKETS.len();
        let (leg, kind) = SOCKETS[index];
        match socket(&io[leg.index()], kind).poll_recv_ready(cx) {
            Poll::Ready(Ok(())) => {
                *next = (index + 1) % SOCKETS.len();
                return Poll::Ready(Wake::Readable(leg, kind));
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Wake::Failed(error)),
            Poll::Pending => {}
        }
    }
    Poll::Pending
}

fn socket(pair: &PortPair, kind: PacketKind) -> &UdpSocket {
    match kind {
        PacketKind::Rtp => &pair.rtp,
        PacketKind::Rtcp => &pair.rtcp,
    }
}

impl RelayState {
    fn apply(&mut self, command: Command) {
        match command {
            Command::Remote(leg, kind, addr) => self.sdp[leg.index()][kind.index()] = addr,
            Command::OfferAnswer(leg, addr) => {
                let now = Instant::now();
                for latch in &mut self.latches[leg.index()] {
                    latch.offer_answer(Some(addr.ip()), now);
                }
                for latch in &mut self.latches[leg.other().index()] {
                    latch.offer_answer(None, now);
                }
            }
            Command::Direction(leg, direction) => {
                if let Some(tap) = &self.tap {
                    tap.on_media_direction(leg, direction);
                }
            }
            Command::Play(announcement) => {
                let codec = self.codec.unwrap_or(Codec::Pcmu);
                tracing::debug!(
                    ?codec,
                    packets = announcement.packets(),
                    "announcement starts"
                );
                self.playback = Some(Announcer::start(&announcement, codec));
            }
        }
    }

    /// Sends the due announcement packet to each leg's current RTP target;
    /// after the last one, ends the playback (bridging again).
    fn play(&mut self, io: &[PortPair; 2]) {
        if self.send_announcement(io) {
            // What arrived while the last packets went out (the task may
            // have been late and caught up in a burst) is still not relayed.
            for (leg, kind) in SOCKETS {
                self.drain(io, leg, kind);
            }
            self.playback = None;
            tracing::debug!("announcement done, bridging");
        }
    }

    /// Sends the due announcement packet to both legs; `true` if it was the
    /// last one.
    fn send_announcement(&mut self, io: &[PortPair; 2]) -> bool {
        let Some(playback) = self.playback.as_mut() else {
            return false;
        };
        for leg in [Leg::A, Leg::B] {
            let (l, k) = (leg.index(), PacketKind::Rtp.index());
            let target = self.latches[l][k].addr().or(self.sdp[l][k]);
            let packet = playback.packet(leg);
            let sent = target.and_then(|to| io[l].rtp.try_send_to(packet, to).ok());
            match sent {
                Some(len) => {
                    self.stats.counters(leg, PacketKind::Rtp).sent(len);
                    self.stats.announcement_sent(leg);
                }
                None => self.stats.announcement_dropped(leg),
            }
        }
        playback.advance()
    }

    /// Reads up to [`BATCH`] datagrams from `leg`'s `kind` socket.
    fn drain(&mut self, io: &[PortPair; 2], leg: Leg, kind: PacketKind) {
        let from = socket(&io[leg.index()], kind);
        for _ in 0..BATCH {
            match from.try_recv_from(&mut self.buf) {
                Ok((len, src)) => self.relay(io, leg, kind, len, src),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    // E.g. an ICMP error reported on some platforms: one-shot,
                    // not fatal; keep reading (bounded by BATCH).
                    tracing::debug!(%error, ?leg, ?kind, "media receive error");
                }
            }
        }
    }

    /// Handles one datagram of `len` bytes (in `self.buf`) from `src`,
    /// received on `leg`'s `socket_kind` socket.
    fn relay(
        &mut self,
        io: &[PortPair; 2],
        leg: Leg,
        socket_kind: PacketKind,
        len: usize,
        src: SocketAddr,
    ) {
        let counters = self.stats.counters(leg, socket_kind);
        let arrival = Instant::now();
        let latch = &mut self.latches[leg.index()][socket_kind.index()];
        // The edge check: a stranger's datagram is not even classified.
        if !latch.admits(src, arrival) {
            counters.foreign();
            self.totals.foreign_packets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counters.received(len);
        // Parsed once; the parsed header goes on to the tap. The header
        // borrows nothing, so RTCP can be scrubbed in the same buffer.
        let rtp = match Packet::parse(socket_kind, &self.buf[..len]) {
            Some(Packet::Rtp(p)) => Some(p.header),
            Some(Packet::Rtcp(_)) => None,
            None => {
                counters.dropped();
                return;
            }
        };
        if latch.latch(src, arrival) {
            self.stats.set_latched(leg, socket_kind, src);
            tracing::debug!(?leg, kind = ?socket_kind, %src, "media latched");
        }
        let out = leg.other();
        let mut len = len;
        if rtp.is_none() {
            // What identifies the sender (SDES, BYE reasons, APP) is ours
            // toward the other leg: scrubbed in place before anything sees it.
            match rtcp::sanitize(&mut self.buf, len, self.cnames[out.index()].as_bytes()) {
                Some(n) => len = n,
                None => {
                    counters.dropped();
                    self.totals
                        .rtcp_unscrubbable
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let data = &self.buf[..len];
        let packet = match rtp {
            Some(header) => Packet::Rtp(RtpPacket {
                header,
                bytes: data,
            }),
            None => Packet::Rtcp(data),
        };
        if let Some(tap) = &self.tap {
            tap.on_packet(leg, packet, arrival);
        }
        if let (None, Some(header)) = (self.codec, rtp) {
            self.codec = Codec::from_payload_type(header.payload_type);
        }
        if self.playback.is_some() {
            counters.dropped();
            self.stats.dropped_announcing(leg);
            return;
        }
        let (o, k) = (out.index(), socket_kind.index());
        let Some(target) = self.latches[o][k].addr().or(self.sdp[o][k]) else {
            counters.dropped();
            return;
        };
        // Never wait for a full send buffer: late media is useless, drop it.
        match socket(&io[o], socket_kind).try_send_to(data, target) {
            Ok(sent) => self.stats.counters(out, socket_kind).sent(sent),
            Err(_) => counters.dropped(),
        }
    }
}
