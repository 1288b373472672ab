//! A relay worker: one OS thread that owns the sockets of a set of calls
//! and relays their media, draining ready sockets with `recvmmsg` and
//! sending each batch on with one `sendmmsg` ([`super::mmsg`]).
//!
//! The worker is the I/O shell around each call's sans-IO
//! [`Bridge`]: it waits on an epoll set (`mio`) of its calls' sockets, a
//! waker for requests from the handles, and the earliest of the calls'
//! timers (announcement packets, the tap's flushes). No task per call, no
//! lock and no allocation per packet; a flooded socket is served at most
//! [`ROUNDS`] batches per turn, so it cannot starve the others.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::bridge::{Bridge, Command, Forward};
use super::mmsg::{self, BATCH, Batch, SendQueue};
use super::patrol::Patrol;
use super::ports::PortPair;
use super::tap::{Leg, PacketKind};

/// The waker's token; sockets use their slot index.
const WAKER: Token = Token(usize::MAX);

/// Batches read from one socket per turn at most.
const ROUNDS: usize = 4;

/// A call's id, unique in the process.
pub(super) type CallId = u64;

/// What a handle (or the relay) asks of a worker.
pub(super) enum Request {
    /// A new call on these port pairs (`[leg A, leg B]`).
    Open {
        call: CallId,
        pairs: [PortPair; 2],
        bridge: Box<Bridge>,
    },
    /// A command for a call's bridge.
    Command(CallId, Command),
    /// The call ends: its tap is closed, its sockets go back to the pool
    /// (silenced and drained), then `done` is told.
    Close(CallId, Option<tokio::sync::oneshot::Sender<()>>),
    /// The worker ends (every call with it).
    Shutdown,
}

/// How a link wakes its worker.
#[derive(Debug, Clone)]
pub(super) enum Wake {
    /// The epoll worker's waker (an eventfd in its epoll set).
    Mio(Arc<Waker>),
    /// An eventfd the io_uring worker's ring reads ([`super::uring`]).
    EventFd(Arc<OwnedFd>),
}

impl Wake {
    fn wake(&self) -> std::io::Result<()> {
        match self {
            Wake::Mio(waker) => waker.wake(),
            Wake::EventFd(fd) => {
                let one = 1u64.to_ne_bytes();
                // SAFETY: writes 8 bytes from a live buffer to our eventfd.
                let n = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
                if n == 8 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            }
        }
    }
}

/// The sending side of a worker's request queue.
#[derive(Debug, Clone)]
pub(super) struct WorkerLink {
    tx: std::sync::mpsc::Sender<Request>,
    waker: Wake,
    /// A wake-up is on its way, or the worker looks for requests by
    /// itself ([`super::patrol`]): the next ones need no wake-up of their
    /// own (a call's remote address and direction, sent together, cost
    /// one; a busy worker's requests cost none).
    woken: Arc<AtomicBool>,
}

impl WorkerLink {
    /// A link over `tx` that wakes its worker with `waker`; `woken` is
    /// shared with the worker, which clears it before taking requests.
    pub(super) fn new(
        tx: std::sync::mpsc::Sender<Request>,
        waker: Wake,
        woken: Arc<AtomicBool>,
    ) -> WorkerLink {
        WorkerLink { tx, waker, woken }
    }

    /// Queues `request` and wakes the worker unless a wake-up is already
    /// on its way; `false` when the worker is gone.
    pub(super) fn send(&self, request: Request) -> bool {
        if self.tx.send(request).is_err() {
            return false;
        }
        if !self.woken.swap(true, Ordering::SeqCst) && self.waker.wake().is_err() {
            // Only if the eventfd is broken; the next request retries.
            self.woken.store(false, Ordering::SeqCst);
        }
        true
    }
}

/// One socket of a call, registered under its slot's token.
struct Socket {
    call: CallId,
    leg: Leg,
    kind: PacketKind,
    fd: RawFd,
}

/// One call: its bridge, its sockets' tokens and the sockets themselves.
struct Call {
    bridge: Box<Bridge>,
    /// Slot index per `[leg][kind]`.
    tokens: [[usize; 2]; 2],
    /// Raw fds per `[leg][kind]`, for sending.
    fds: [[RawFd; 2]; 2],
    /// The timer this call is filed under, if any.
    timer: Option<Instant>,
    /// Owns the sockets; dropped (back to the pool) when the call is.
    _pairs: [PortPair; 2],
}

/// The worker's state.
pub(super) struct Worker {
    poll: Poll,
    requests: Receiver<Request>,
    /// Cleared before the requests are taken: see [`WorkerLink`].
    woken: Arc<AtomicBool>,
    sockets: Vec<Option<Socket>>,
    free_slots: Vec<usize>,
    calls: HashMap<CallId, Call>,
    timers: BTreeSet<(Instant, CallId)>,
    /// Sockets that still had datagrams after [`ROUNDS`] batches.
    backlog: Vec<usize>,
    batch: Batch,
    queue: SendQueue,
    forwards: [Option<Forward>; BATCH],
    /// A shutdown was asked for (or every link is gone).
    stopping: bool,
}

impl Worker {
    /// A worker and the link to reach it; run it with [`Worker::run`].
    pub(super) fn new() -> std::io::Result<(Worker, WorkerLink)> {
        let poll = Poll::new()?;
        let waker = Wake::Mio(Arc::new(Waker::new(poll.registry(), WAKER)?));
        let (tx, requests) = std::sync::mpsc::channel();
        let woken = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            poll,
            requests,
            woken: woken.clone(),
            sockets: Vec::new(),
            free_slots: Vec::new(),
            calls: HashMap::new(),
            timers: BTreeSet::new(),
            backlog: Vec::new(),
            batch: Batch::new(),
            queue: SendQueue::new(),
            forwards: [None; BATCH],
            stopping: false,
        };
        Ok((worker, WorkerLink { tx, waker, woken }))
    }

    /// Relays until [`Request::Shutdown`] or every link is gone.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut patrol = Patrol::new(self.woken.clone());
        loop {
            let timeout = if self.backlog.is_empty() {
                patrol.timeout(
                    self.timers
                        .first()
                        .map(|(at, _)| at.saturating_duration_since(Instant::now())),
                )
            } else {
                Some(std::time::Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "media worker cannot poll: stopping");
                break;
            }
            let now = Instant::now();
            // Requests first: a remote set before a packet arrived applies
            // to that packet (`serve` checks again after each receive).
            patrol.take(|| self.take_requests(now));
            for event in &events {
                if let Token(slot) = event.token()
                    && event.token() != WAKER
                {
                    self.serve(now, slot);
                }
            }
            for slot in std::mem::take(&mut self.backlog) {
                self.serve(now, slot);
            }
            if self.stopping {
                break;
            }
            self.fire_timers(Instant::now());
        }
        let now = Instant::now();
        for (_, mut call) in self.calls.drain() {
            call.bridge.close(now);
        }
    }

    /// Applies every queued request (cheap when there is none); how many.
    /// When to look is [`Patrol`]'s business.
    fn take_requests(&mut self, now: Instant) -> usize {
        let mut taken = 0;
        while !self.stopping {
            let request = self.requests.try_recv();
            taken += usize::from(request.is_ok());
            match request {
                Ok(Request::Open {
                    call,
                    pairs,
                    bridge,
                }) => self.open(call, pairs, bridge),
                Ok(Request::Command(id, command)) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.bridge.handle(now, command);
                        self.reschedule(id);
                    }
                }
                Ok(Request::Close(id, done)) => {
                    self.close(now, id);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Ok(Request::Shutdown) | Err(TryRecvError::Disconnected) => self.stopping = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        taken
    }

    fn open(&mut self, id: CallId, pairs: [PortPair; 2], bridge: Box<Bridge>) {
        let mut tokens = [[0; 2]; 2];
        let mut fds = [[0; 2]; 2];
        for leg in [Leg::A, Leg::B] {
            for kind in [PacketKind::Rtp, PacketKind::Rtcp] {
                let pair = &pairs[leg.index()];
                let fd = match kind {
                    PacketKind::Rtp => pair.rtp_fd(),
                    PacketKind::Rtcp => pair.rtcp_fd(),
                };
                let slot = self.free_slots.pop().unwrap_or_else(|| {
                    self.sockets.push(None);
                    self.sockets.len() - 1
                });
                let registered = self.poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(slot),
                    Interest::READABLE,
                );
                if let Err(e) = registered {
                    // The socket stays silent for this call; it is still
                    // closed and freed with the others.
                    tracing::error!(error = %e, "media socket could not be registered");
                }
                self.sockets[slot] = Some(Socket {
                    call: id,
                    leg,
                    kind,
                    fd,
                });
                tokens[leg.index()][kind.index()] = slot;
                fds[leg.index()][kind.index()] = fd;
                // Datagrams that arrived before registration would not
                // raise an edge: read them now.
                self.backlog.push(slot);
            }
        }
        let call = Call {
            bridge,
            tokens,
            fds,
            timer: None,
            _pairs: pairs,
        };
        self.calls.insert(id, call);
        self.reschedule(id);
    }

    fn close(&mut self, now: Instant, id: CallId) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        if let Some(at) = call.timer {
            self.timers.remove(&(at, id));
        }
        call.bridge.close(now);
        for slot in call.tokens.iter().flatten().copied() {
            if let Some(socket) = self.sockets[slot].take() {
                let _ = self.poll.registry().deregister(&mut SourceFd(&socket.fd));
            }
            self.backlog.retain(|s| *s != slot);
            self.free_slots.push(slot);
        }
        // The sockets go back to the pool here (silenced and drained).
        drop(call);
    }

    /// Reads and relays what waits on socket `slot`, up to [`ROUNDS`]
    /// batches; a socket with more is served again next turn.
    fn serve(&mut self, now: Instant, slot: usize) {
        let Some(Some(socket)) = self.sockets.get(slot) else {
            return;
        };
        let (id, leg, kind, fd) = (socket.call, socket.leg, socket.kind, socket.fd);
        for _ in 0..ROUNDS {
            let n = match self.batch.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    // E.g. an ICMP error reported on the socket: one-shot.
                    // What still waits is read on the next datagram's edge.
                    tracing::debug!(error = %e, ?leg, ?kind, "media receive error");
                    self.reschedule(id);
                    return;
                }
            };
            if n == 0 {
                // Drained: the next datagram raises a new edge.
                self.reschedule(id);
                return;
            }
            // What a handle asked before these were sent applies to them.
            self.take_requests(now);
            let Some(call) = self.calls.get_mut(&id) else {
                return; // closed meanwhile: the datagrams go nowhere
            };
            let mut out_fd = None;
            for i in 0..n {
                let (buf, len, src) = self.batch.datagram(i);
                let Some(src) = src else { continue };
                let forward = call.bridge.handle_datagram(now, leg, kind, src, buf, len);
                self.forwards[i] = forward;
                if let Some(f) = forward {
                    out_fd = Some(call.fds[f.via.index()][f.kind.index()]);
                    self.queue.push(i, f.len, f.to);
                }
            }
            if let Some(out) = out_fd {
                let (queue, batch, forwards) = (&mut self.queue, &mut self.batch, &self.forwards);
                let mut order = forwards[..n].iter().flatten();
                queue.flush(out, batch, |_, result| {
                    if let Some(f) = order.next() {
                        call.bridge.sent(f, result);
                    }
                });
            }
            if n < BATCH {
                self.reschedule(id);
                return;
            }
        }
        self.backlog.push(slot);
        self.reschedule(id);
    }

    /// Files call `id` under its bridge's next timeout.
    fn reschedule(&mut self, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let next = call.bridge.poll_timeout();
        if next == call.timer {
            return;
        }
        if let Some(at) = call.timer {
            self.timers.remove(&(at, id));
        }
        if let Some(at) = next {
            self.timers.insert((at, id));
        }
        call.timer = next;
    }

    /// Runs every call's due timers: announcement packets, tap timeouts.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                return;
            }
            self.timers.pop_first();
            if let Some(call) = self.calls.get_mut(&id) {
                call.timer = None;
                play_due(&mut call.bridge, call.fds, now);
                call.bridge.handle_timeout(now);
            }
            self.reschedule(id);
        }
    }
}

/// Sends every announcement packet due by `now` (a late worker catches
/// up in a burst) out of the legs' RTP sockets (`fds[leg][kind]`); both
/// workers use it.
pub(super) fn play_due(bridge: &mut Bridge, fds: [[RawFd; 2]; 2], now: Instant) {
    loop {
        let mut any = false;
        for leg in [Leg::A, Leg::B] {
            let fd = fds[leg.index()][PacketKind::Rtp.index()];
            let Some((target, packet)) = bridge.poll_announcement(now, leg) else {
                continue;
            };
            any = true;
            let result = target.and_then(|to| mmsg::send_one(fd, packet, to));
            bridge.announcement_sent(leg, result);
        }
        if !any {
            return;
        }
        bridge.announcement_advance();
    }
}
