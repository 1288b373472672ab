//! A relay worker on io_uring (`[media] io = "io_uring"`): the same I/O
//! shell around each call's sans-IO [`Bridge`] as [`super::worker`], the
//! same [`Request`]s through the same [`WorkerLink`], the same bridge calls
//! in the same order, with other system calls underneath.
//!
//! Why: at 50 packets/s per socket each epoll wake finds one datagram, so
//! every packet costs a share of `epoll_wait`, a `recvmmsg` and a
//! `sendmmsg`, each taking a file reference (`fdget`). Here one
//! `io_uring_enter` per loop turn submits every send of the turn and waits
//! for the next completions, for all sockets at once.
//!
//! - **Registered files.** A sparse fixed-file table with a group of four
//!   slots per call (A RTP, A RTCP, B RTP, B RTCP), updated when a call
//!   opens and closes; every operation names its socket by slot
//!   (`types::Fixed`), so no file reference is taken per operation.
//! - **Receive.** One multishot `recvmsg` per socket, picking buffers from
//!   the worker's provided-buffer ring ([`super::bufring`]); a completion
//!   without `IORING_CQE_F_MORE` re-arms it. When the ring is empty the
//!   kernel ends the receive with `ENOBUFS`: counted
//!   ([`super::RelayTotals::ring_starved`]) and re-armed once buffers come
//!   back; the datagrams wait in the socket meanwhile.
//! - **Send.** A forward leaves from the buffer it arrived in, with a
//!   `sendmsg` on the other leg's slot; the buffer is recycled when the
//!   send completes, and the bridge hears the result ([`Bridge::sent`]).
//! - **Timers and wake-ups.** The earliest bridge timer is the wait's
//!   timeout; requests wake the worker through an eventfd the ring reads.
//!   Requests are taken only between batches of completions, through the
//!   [`super::patrol`] protocol: never while completions are handled, so a
//!   call's file slots are not handed to a new call while completions of
//!   the old one are still being read.
//! - **Close.** A closing call's receives are cancelled; once every
//!   operation on its sockets has completed, its slots are cleared and its
//!   [`PortPair`]s go back to the pool (silenced and drained, as always),
//!   and only then is the closer told.
//!
//! Announcement packets are rare (50/s for a few seconds of a call) and
//! keep the epoll worker's direct `sendto` ([`mmsg::send_one`]).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use io_uring::types::{CancelBuilder, Fd, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use super::bridge::Bridge;
use super::bufring::{self, BufRing, SendSlots};
use super::patrol::Patrol;
use super::ports::PortPair;
use super::relay::MAX_DATAGRAM;
use super::stats::RelayTotals;
use super::tap::{Leg, PacketKind};
use super::worker::{self, CallId, Request, Wake, WorkerLink};

/// What a completion is about: the tag in the top bits of its user data.
const TAG_SHIFT: u32 = 56;
const RECV: u64 = 1 << TAG_SHIFT;
const SEND: u64 = 2 << TAG_SHIFT;
const WAKE: u64 = 3 << TAG_SHIFT;
const CANCEL: u64 = 4 << TAG_SHIFT;
const INDEX: u64 = (1 << TAG_SHIFT) - 1;

/// Submission queue entries; a full queue is submitted early.
const SQ_ENTRIES: u32 = 1024;

/// Completion queue entries (the kernel keeps overflow, never drops).
const CQ_ENTRIES: u32 = 8192;

/// Completions copied out of the ring at a time.
const CQE_BATCH: usize = 512;

/// One socket of a call, by its fixed-file slot.
struct Socket {
    call: CallId,
    leg: Leg,
    kind: PacketKind,
    /// Its multishot receive is in the kernel (a completion will come).
    armed: bool,
}

/// One call on this worker.
struct Call {
    bridge: Box<Bridge>,
    /// Its four fixed-file slots start at `group * 4`.
    group: u32,
    /// Raw fds per `[leg][kind]`, for announcement packets.
    fds: [[RawFd; 2]; 2],
    /// The timer this call is filed under, if any.
    timer: Option<Instant>,
    /// Operations on its sockets still in the kernel (armed receives,
    /// sends); a closing call is finished when this reaches 0.
    pending: usize,
    /// Set once closing: whom to tell when it is finished.
    closing: Option<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Owns the sockets; dropped (back to the pool) when finished.
    _pairs: [PortPair; 2],
}

/// The io_uring worker's state. Field order matters: the ring drops first,
/// so the kernel is done with the buffers and slots when they are freed.
pub(super) struct Worker {
    ring: IoUring,
    /// Receive buffers (one group) the kernel picks from.
    bufs: BufRing,
    /// Per buffer, the send that forwards what it holds.
    sends: SendSlots,
    /// The header every multishot receive is armed with (read by the
    /// kernel at each arming; boxed so it does not move).
    recv_header: Box<libc::msghdr>,
    /// The eventfd the handles write to wake the worker.
    wake_fd: Arc<OwnedFd>,
    /// Where the ring reads the eventfd's counter into.
    wake_buf: Box<u64>,
    /// The eventfd read is in the kernel.
    wake_armed: bool,
    requests: Receiver<Request>,
    /// Cleared before the requests are taken: see [`WorkerLink`].
    woken: Arc<AtomicBool>,
    /// Per fixed-file slot, the socket registered there.
    sockets: Vec<Option<Socket>>,
    /// Slot groups (of four) not in use.
    free_groups: Vec<u32>,
    calls: HashMap<CallId, Call>,
    timers: BTreeSet<(Instant, CallId)>,
    /// Slots whose receive ended for want of buffers, to re-arm.
    starved: Vec<u32>,
    /// Completions copied out of the ring, handled after.
    cqes: Vec<(u64, i32, u32)>,
    /// Process-wide counters (buffer starvation).
    totals: Arc<RelayTotals>,
    /// A shutdown was asked for (or every link is gone).
    stopping: bool,
    /// The wake-up read completed this turn: look at the requests again.
    woke: bool,
}

// SAFETY: `recv_header` is a plain msghdr with null pointers (only its
// lengths are read); every pointer the kernel is given points into the
// worker's own boxes and mappings, which move with it.
unsafe impl Send for Worker {}

impl Worker {
    /// A worker for up to `calls` calls with `buffers` receive buffers (a
    /// power of two), and the link to reach it. Fails on kernels without
    /// what it needs (multishot receive, buffer rings: 6.0), under seccomp
    /// or resource limits: the relay then uses the epoll worker.
    pub(super) fn new(
        calls: usize,
        buffers: u16,
        totals: Arc<RelayTotals>,
    ) -> io::Result<(Worker, WorkerLink)> {
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_coop_taskrun()
            .build(SQ_ENTRIES)?;
        let slots = u32::try_from(calls.saturating_mul(4)).map_err(io::Error::other)?;
        ring.submitter().register_files_sparse(slots.max(4))?;
        let bufs = BufRing::new(buffers)?;
        bufs.register(&ring.submitter())?;
        // Blocking: the ring's read of a non-blocking eventfd would fail
        // with EAGAIN instead of waiting. Writers never block (a counter).
        // SAFETY: eventfd returns a fresh descriptor (or -1, checked).
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is ours alone.
        let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let (tx, requests) = std::sync::mpsc::channel();
        let woken = Arc::new(AtomicBool::new(false));
        let link = WorkerLink::new(tx, Wake::EventFd(Arc::clone(&wake_fd)), Arc::clone(&woken));
        let groups = u32::try_from(calls.max(1)).map_err(io::Error::other)?;
        let worker = Worker {
            ring,
            bufs,
            sends: SendSlots::new(buffers),
            recv_header: Box::new(bufring::recv_header()),
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            requests,
            woken,
            sockets: (0..slots.max(4)).map(|_| None).collect(),
            free_groups: (0..groups).rev().collect(),
            calls: HashMap::new(),
            timers: BTreeSet::new(),
            starved: Vec::new(),
            cqes: Vec::with_capacity(CQE_BATCH),
            totals,
            stopping: false,
            woke: false,
        };
        Ok((worker, link))
    }

    /// Relays until [`Request::Shutdown`] or every link is gone; then ends
    /// every call and waits for the kernel to be done with them.
    pub(super) fn run(mut self) {
        self.arm_wake();
        let mut ending = false;
        let mut patrol = Patrol::new(Arc::clone(&self.woken));
        loop {
            if let Err(e) = self.wait(&patrol) {
                tracing::error!(error = %e, "media worker cannot wait on its ring: stopping");
                break;
            }
            let now = Instant::now();
            // Requests first: a remote set before a packet arrived applies
            // to that packet.
            patrol.take(|| self.take_requests(now));
            self.complete_all(now);
            if std::mem::take(&mut self.woke) {
                patrol.take(|| self.take_requests(now));
            }
            self.rearm_starved();
            self.bufs.publish();
            if self.stopping {
                if !ending {
                    ending = true;
                    self.end_all(now);
                }
                if self.calls.is_empty() && !self.wake_armed {
                    break;
                }
                continue;
            }
            self.fire_timers(Instant::now());
        }
        let now = Instant::now();
        for (_, mut call) in self.calls.drain() {
            call.bridge.close(now);
        }
    }

    /// Submits what is queued and waits for a completion or the earliest
    /// timer.
    fn wait(&mut self, patrol: &Patrol) -> io::Result<()> {
        let timeout = patrol.timeout(
            self.timers
                .first()
                .map(|(at, _)| at.saturating_duration_since(Instant::now())),
        );
        let submitter = self.ring.submitter();
        let result = match timeout {
            None => submitter.submit_and_wait(1),
            Some(t) if t.is_zero() => submitter.submit(),
            Some(t) => {
                let ts = Timespec::from(t);
                submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Queues `entry`, submitting first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: every entry points into the worker's own boxes and
            // mappings, which outlive the operation (see the field order).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                tracing::error!(error = %e, "media worker cannot submit");
            }
        }
    }

    fn arm_wake(&mut self) {
        let buf = std::ptr::from_mut(&mut *self.wake_buf).cast::<u8>();
        let read = opcode::Read::new(Fd(self.wake_fd.as_raw_fd()), buf, 8)
            .build()
            .user_data(WAKE);
        self.push(&read);
        self.wake_armed = true;
    }

    fn arm_recv(&mut self, slot: u32) {
        let Some(Some(socket)) = self.sockets.get_mut(slot as usize) else {
            return;
        };
        if socket.armed {
            return;
        }
        socket.armed = true;
        let id = socket.call;
        let recv = opcode::RecvMsgMulti::new(Fixed(slot), &*self.recv_header, bufring::GROUP)
            .build()
            .user_data(RECV | u64::from(slot));
        self.push(&recv);
        if let Some(call) = self.calls.get_mut(&id) {
            call.pending += 1;
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
                    if let Some(call) = self.calls.get_mut(&id)
                        && call.closing.is_none()
                    {
                        call.bridge.handle(now, command);
                        self.reschedule(id);
                    }
                }
                Ok(Request::Close(id, done)) => self.close(now, id, done),
                Ok(Request::Shutdown) | Err(TryRecvError::Disconnected) => self.stopping = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        taken
    }

    fn open(&mut self, id: CallId, pairs: [PortPair; 2], bridge: Box<Bridge>) {
        let Some(group) = self.free_groups.pop() else {
            // More calls than the pool has ports for: cannot happen.
            tracing::error!("media worker has no file slots left: call has no media");
            return;
        };
        let mut fds = [[0; 2]; 2];
        for leg in [Leg::A, Leg::B] {
            let pair = &pairs[leg.index()];
            fds[leg.index()] = [pair.rtp_fd(), pair.rtcp_fd()];
        }
        let all = [fds[0][0], fds[0][1], fds[1][0], fds[1][1]];
        if let Err(e) = self.ring.submitter().register_files_update(group * 4, &all) {
            tracing::error!(error = %e, "media sockets could not be registered: call has no media");
            self.free_groups.push(group);
            return;
        }
        for leg in [Leg::A, Leg::B] {
            for kind in [PacketKind::Rtp, PacketKind::Rtcp] {
                self.sockets[slot_of(group, leg, kind) as usize] = Some(Socket {
                    call: id,
                    leg,
                    kind,
                    armed: false,
                });
            }
        }
        let call = Call {
            bridge,
            group,
            fds,
            timer: None,
            pending: 0,
            closing: None,
            _pairs: pairs,
        };
        self.calls.insert(id, call);
        for slot in group * 4..group * 4 + 4 {
            // Datagrams that arrived before are read at once.
            self.arm_recv(slot);
        }
        self.reschedule(id);
    }

    /// Starts ending call `id`: its tap is closed now, its receives are
    /// cancelled, and it is finished once the kernel is done with it.
    fn close(&mut self, now: Instant, id: CallId, done: Option<tokio::sync::oneshot::Sender<()>>) {
        let Some(call) = self.calls.get_mut(&id) else {
            if let Some(done) = done {
                let _ = done.send(());
            }
            return;
        };
        if let Some(waiting) = &mut call.closing {
            // Closed again while finishing (a handle's drop, the
            // shutdown): the first closer waits; a second is told now.
            match (waiting.is_none(), done) {
                (true, done) => *waiting = done,
                (false, Some(done)) => drop(done.send(())),
                (false, None) => {}
            }
            return;
        }
        call.bridge.close(now);
        call.closing = Some(done);
        if let Some(at) = call.timer.take() {
            self.timers.remove(&(at, id));
        }
        let group = call.group;
        for slot in group * 4..group * 4 + 4 {
            self.cancel(slot);
        }
        self.finish_if_done(id);
    }

    /// Cancels what is in the kernel on socket `slot` (its receive).
    fn cancel(&mut self, slot: u32) {
        if let Some(Some(socket)) = self.sockets.get(slot as usize)
            && socket.armed
        {
            let every = CancelBuilder::fd(Fixed(slot)).all();
            let cancel = opcode::AsyncCancel2::new(every)
                .build()
                .user_data(CANCEL | u64::from(slot));
            self.push(&cancel);
        }
    }

    /// A cancel of socket `slot` completed: tried again if its target was
    /// busy (`EALREADY`); otherwise the target ends on its own.
    fn cancelled(&mut self, slot: u32, result: i32) {
        if result == -libc::EALREADY {
            self.cancel(slot);
        }
    }

    /// Ends every call (shutdown).
    fn end_all(&mut self, now: Instant) {
        let open: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.closing.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            self.close(now, id, None);
        }
        if self.wake_armed {
            let cancel = opcode::AsyncCancel::new(WAKE)
                .build()
                .user_data(CANCEL | INDEX);
            self.push(&cancel);
        }
    }

    /// Finishes closing call `id` if nothing of it is left in the kernel:
    /// its slots are cleared and its ports go back to the pool.
    fn finish_if_done(&mut self, id: CallId) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.closing.is_none() || call.pending > 0 {
            return;
        }
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        let group = call.group;
        if let Err(e) = self
            .ring
            .submitter()
            .register_files_update(group * 4, &[-1; 4])
        {
            tracing::warn!(error = %e, "media file slots could not be cleared");
        }
        for slot in group * 4..group * 4 + 4 {
            self.sockets[slot as usize] = None;
        }
        self.free_groups.push(group);
        let done = call.closing.take().flatten();
        // The sockets go back to the pool here (silenced and drained).
        drop(call);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Handles every completion in the ring.
    fn complete_all(&mut self, now: Instant) {
        loop {
            self.cqes.clear();
            for cqe in self.ring.completion().take(CQE_BATCH) {
                self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
            }
            if self.cqes.is_empty() {
                return;
            }
            for i in 0..self.cqes.len() {
                let (data, result, flags) = self.cqes[i];
                let index = data & INDEX;
                match data & !INDEX {
                    RECV => self.received(now, index as u32, result, flags),
                    SEND => self.send_done(index as u16, result),
                    WAKE => {
                        self.wake_armed = false;
                        if !self.stopping {
                            self.arm_wake();
                            // This read may have taken the wake-up of a
                            // request queued after this turn's look: the
                            // loop looks again through the patrol, which
                            // clears `woken` first. (Taking the requests
                            // here left `woken` set with no wake-up on its
                            // way, so the next request never woke us.)
                            self.woke = true;
                        }
                    }
                    CANCEL if index == INDEX => {} // the wake-up read's
                    _ => self.cancelled(index as u32, result),
                }
            }
        }
    }

    /// A completion of socket `slot`'s multishot receive.
    fn received(&mut self, now: Instant, slot: u32, result: i32, flags: u32) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let Some(Some(socket)) = self.sockets.get_mut(slot as usize) else {
            if let Some(bid) = bid {
                self.bufs.recycle(bid);
            }
            return;
        };
        let (id, leg, kind) = (socket.call, socket.leg, socket.kind);
        if !more {
            socket.armed = false;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !more {
            call.pending -= 1;
        }
        let closing = call.closing.is_some();
        if result < 0 {
            if closing {
                // ECANCELED, or it ended on its own meanwhile.
            } else if result == -libc::ENOBUFS {
                self.totals.ring_starved.fetch_add(1, Ordering::Relaxed);
                self.starved.push(slot);
            } else {
                // E.g. an ICMP error reported on the socket: re-armed.
                tracing::debug!(error = %io::Error::from_raw_os_error(-result), ?leg, ?kind, "media receive error");
                self.arm_recv(slot);
            }
            self.finish_if_done(id);
            return;
        }
        if let Some(bid) = bid {
            self.relay(now, id, leg, kind, bid, result as usize);
        }
        if !more && !closing {
            self.arm_recv(slot);
        }
        self.finish_if_done(id);
        self.reschedule(id);
    }

    /// Hands the datagram in buffer `bid` (`len` bytes from the kernel) to
    /// call `id`'s bridge and sends its forward, or recycles the buffer.
    fn relay(
        &mut self,
        now: Instant,
        id: CallId,
        leg: Leg,
        kind: PacketKind,
        bid: u16,
        len: usize,
    ) {
        let header = &*self.recv_header;
        let (Some(call), Some(buf)) = (self.calls.get_mut(&id), self.bufs.buffer(bid)) else {
            return;
        };
        let parsed = RecvMsgOut::parse(&buf[..len.min(buf.len())], header)
            .ok()
            .and_then(|out| {
                let truncated = out.is_payload_truncated();
                let size = out.payload_data().len();
                let size = if truncated { MAX_DATAGRAM + 1 } else { size };
                Some((bufring::source(out.name_data())?, size))
            });
        let payload = &mut buf[bufring::PAYLOAD..];
        let forward = match parsed {
            Some((src, size)) if call.closing.is_none() => call
                .bridge
                .handle_datagram(now, leg, kind, src, payload, size),
            _ => None,
        };
        let Some(forward) = forward else {
            self.bufs.recycle(bid);
            return;
        };
        let slot = slot_of(call.group, forward.via, forward.kind);
        let Some(header) = self.sends.prepare(bid, id, forward, payload) else {
            self.bufs.recycle(bid);
            return;
        };
        call.pending += 1;
        let send = opcode::SendMsg::new(Fixed(slot), header)
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(SEND | u64::from(bid));
        self.push(&send);
    }

    /// The send from buffer `bid` completed: the bridge hears the result,
    /// the buffer goes back to the ring.
    fn send_done(&mut self, bid: u16, result: i32) {
        let Some((id, forward)) = self.sends.complete(bid) else {
            return;
        };
        self.bufs.recycle(bid);
        if let Some(call) = self.calls.get_mut(&id) {
            call.pending -= 1;
            call.bridge.sent(&forward, usize::try_from(result).ok());
            self.finish_if_done(id);
        }
    }

    /// Re-arms the receives that ran out of buffers, once some are back.
    fn rearm_starved(&mut self) {
        if self.starved.is_empty() || self.bufs.take_returned() == 0 {
            return;
        }
        for slot in std::mem::take(&mut self.starved) {
            let open = self
                .sockets
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|s| self.calls.get(&s.call).is_some_and(|c| c.closing.is_none()));
            if open {
                self.arm_recv(slot);
            }
        }
    }

    /// Files call `id` under its bridge's next timeout.
    fn reschedule(&mut self, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.closing.is_some() {
            return;
        }
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
                worker::play_due(&mut call.bridge, call.fds, now);
                call.bridge.handle_timeout(now);
            }
            self.reschedule(id);
        }
    }
}

/// The fixed-file slot of a call's `leg` `kind` socket.
fn slot_of(group: u32, leg: Leg, kind: PacketKind) -> u32 {
    group * 4 + (leg.index() * 2 + kind.index()) as u32
}
