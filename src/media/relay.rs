//! The media relay: a few worker threads (one per core by default), each
//! owning a set of calls' sockets ([`super::worker`]), and the handle each
//! call is controlled through ([`MediaHandle`]).
//!
//! See the module docs of [`crate::media`] for the design and policies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use super::MediaError;
use super::announcement::Announcement;
use super::bridge::{Bridge, Command};
use super::latch::SourcePolicy;
use super::ports::PortPool;
use super::sdp::MediaDirection;
use super::stats::{MediaStats, RelayTotals, SharedStats};
use super::tap::{Leg, MediaTap, PacketKind};
use super::uring;
use super::worker::{CallId, Request, Worker, WorkerLink};

/// Largest datagram relayed; a bigger one is dropped (and counted).
pub const MAX_DATAGRAM: usize = 2048;

/// Relay settings.
#[derive(Debug, Clone, Default)]
pub struct RelayConfig {
    /// Which source each leg admits (`[media] source`, `learn_window`).
    pub source: SourcePolicy,
    /// Process-wide counters shared by every call (for `/metrics`).
    pub totals: Arc<RelayTotals>,
    /// Worker threads (`[media] workers`); 0: one per available core.
    pub workers: usize,
    /// The workers' I/O (`[media] io`).
    pub io: MediaIo,
    /// Receive buffers per io_uring worker, a power of two (0: 2048). Not
    /// a configuration key: tests make it tiny to exhaust it.
    pub ring_buffers: u16,
}

/// How the relay workers do their I/O (`[media] io`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MediaIo {
    /// epoll (`mio`) with `recvmmsg`/`sendmmsg` ([`super::worker`]).
    #[default]
    Epoll,
    /// io_uring with registered files, multishot receive and a buffer ring
    /// ([`super::uring`]); falls back to epoll where the ring cannot be set
    /// up (old kernel, seccomp, limits), logged once.
    IoUring,
}

/// The relay: its port pool and its workers. Dropping it stops the workers
/// (every call's media with them).
#[derive(Debug)]
pub struct Relay {
    pool: PortPool,
    config: RelayConfig,
    links: Vec<WorkerLink>,
    threads: Vec<JoinHandle<()>>,
    /// The worker the next call goes to (round robin).
    next: AtomicUsize,
    /// The next call's id.
    ids: AtomicU64,
    /// The I/O the workers use: `config.io`, unless io_uring could not be
    /// set up (then epoll from the worker that failed on).
    io: MediaIo,
}

impl Relay {
    /// A relay on the even ports of `first..=last` (RTCP on each + 1),
    /// every pair bound on `bind_ip` now and kept, with its worker threads
    /// started.
    ///
    /// # Errors
    /// [`MediaError::InvalidRange`] for a range without a pair;
    /// [`MediaError::Descriptors`] or [`MediaError::Bind`] when the range
    /// cannot be bound; [`MediaError::Worker`] when a worker cannot be
    /// started.
    pub fn new(
        bind_ip: IpAddr,
        first: u16,
        last: u16,
        config: RelayConfig,
    ) -> Result<Relay, MediaError> {
        let pool = PortPool::new(bind_ip, first, last)?;
        let count = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut links = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        let mut io = config.io;
        for i in 0..count {
            let (link, thread) = spawn_worker(i, &mut io, &pool, &config)?;
            links.push(link);
            threads.push(thread);
        }
        Ok(Relay {
            pool,
            config,
            links,
            threads,
            next: AtomicUsize::new(0),
            ids: AtomicU64::new(1),
            io,
        })
    }

    /// Opens a call's media: two port pairs, picked at random from the
    /// free ones, relayed by one worker.
    ///
    /// # Errors
    /// [`MediaError::PoolExhausted`] when fewer than two pairs are free,
    /// [`MediaError::Bind`] when binding fails, [`MediaError::Worker`]
    /// when the worker is gone.
    pub fn open(&self) -> Result<MediaHandle, MediaError> {
        let a = self.pool.allocate()?;
        let b = self.pool.allocate()?;
        let ports = [a.port(), b.port()];
        let stats = Arc::new(SharedStats::default());
        let bridge = Bridge::new(
            self.config.source,
            Arc::clone(&stats),
            Arc::clone(&self.config.totals),
        );
        let worker = self.next.fetch_add(1, Ordering::Relaxed) % self.links.len();
        let link = self.links[worker].clone();
        let call = self.ids.fetch_add(1, Ordering::Relaxed);
        let open = Request::Open {
            call,
            pairs: [a, b],
            bridge: Box::new(bridge),
        };
        if !link.send(open) {
            return Err(MediaError::Worker(std::io::Error::other(
                "media worker stopped",
            )));
        }
        Ok(MediaHandle {
            link: Some(link),
            call,
            stats,
            ports,
        })
    }

    /// Port pairs in the pool.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.pool.capacity()
    }

    /// Port pairs in use.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.pool.in_use()
    }

    /// The port pool, for whoever reports its use (the metrics).
    #[must_use]
    pub fn pool(&self) -> PortPool {
        self.pool.clone()
    }

    /// Worker threads.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.links.len()
    }

    /// The I/O the workers use (epoll when io_uring was asked for but the
    /// kernel refused it).
    #[must_use]
    pub fn io(&self) -> MediaIo {
        self.io
    }
}

/// Starts worker `i` with `io`; an io_uring worker that cannot be set up
/// is logged, and `io` becomes epoll for it and the workers after it.
fn spawn_worker(
    i: usize,
    io: &mut MediaIo,
    pool: &PortPool,
    config: &RelayConfig,
) -> Result<(WorkerLink, JoinHandle<()>), MediaError> {
    let name = format!("ansim-media-{i}");
    if *io == MediaIo::IoUring {
        let buffers = match config.ring_buffers {
            0 => super::bufring::DEFAULT_BUFFERS,
            n => n,
        };
        // Each call takes two pairs; any worker may get them all.
        let calls = pool.capacity() / 2 + 1;
        match uring::Worker::new(calls, buffers, Arc::clone(&config.totals)) {
            Ok((worker, link)) => {
                let thread = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || worker.run())
                    .map_err(MediaError::Worker)?;
                return Ok((link, thread));
            }
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unavailable for the media relay: using epoll");
                *io = MediaIo::Epoll;
            }
        }
    }
    let (worker, link) = Worker::new().map_err(MediaError::Worker)?;
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || worker.run())
        .map_err(MediaError::Worker)?;
    Ok((link, thread))
}

impl Drop for Relay {
    fn drop(&mut self) {
        for link in &self.links {
            link.send(Request::Shutdown);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Controls one call's media. Dropping it ends the call's media too (the
/// ports are freed as soon as the worker has seen it; use
/// [`MediaHandle::stop`] to wait).
#[derive(Debug)]
pub struct MediaHandle {
    link: Option<WorkerLink>,
    call: CallId,
    stats: Arc<SharedStats>,
    ports: [u16; 2],
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

    /// Plays `announcement` to leg A alone, encoded in `codec` (what our
    /// SDP answer named): for a caller no session routes, who hears the
    /// out-of-session announcement from us and nobody else. Leg B gets no
    /// packet, and nothing received on either leg is relayed, during the
    /// playback or after it (dropped and counted): our ports reflect
    /// nothing.
    pub fn announce_alone(&self, announcement: Arc<Announcement>, codec: super::g711::Codec) {
        self.send(Command::Announce(announcement, codec));
    }

    /// Shows every packet from now on to `tap`, on the call's worker (see
    /// [`MediaTap`]); a tap attached before replaces it (closing it).
    pub fn attach_tap(&self, tap: Box<dyn MediaTap>) {
        self.send(Command::AttachTap(tap));
    }

    /// Closes and drops the tap, if any.
    pub fn detach_tap(&self) {
        self.send(Command::DetachTap);
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

    /// Ends the call's media and waits for the worker: when this returns,
    /// the tap is closed and the sockets are back in the pool (silenced
    /// and drained).
    pub async fn stop(mut self) {
        let Some(link) = self.link.take() else {
            return;
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        if link.send(Request::Close(self.call, Some(done))) {
            // An error means the worker is gone: nothing left to wait for.
            let _ = wait.await;
        }
    }

    fn send(&self, command: Command) {
        if let Some(link) = &self.link {
            // Fails only once the worker has ended: nothing to configure.
            link.send(Request::Command(self.call, command));
        }
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            link.send(Request::Close(self.call, None));
        }
    }
}
