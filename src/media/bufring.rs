//! The memory an io_uring relay worker ([`super::uring`]) shares with the
//! kernel: a provided-buffer ring (the receive buffers the kernel picks
//! from for every socket's multishot `recvmsg`) and, per buffer, the
//! `msghdr` of the send that forwards what it holds.
//!
//! - **One buffer group per worker.** Every socket of the worker receives
//!   into the same [`BufRing`]; a buffer is lent to the kernel until a
//!   completion names it, and goes back ([`BufRing::recycle`]) once the
//!   bridge has handled its datagram and the forward (if any) is sent. The
//!   new tail is published once per loop turn ([`BufRing::publish`]).
//! - **A send slot per buffer.** A datagram is forwarded from the buffer it
//!   arrived in, so buffer `bid` has at most one send in flight: its
//!   [`SendSlot`] (header, iovec, destination) is indexed by the same id.
//!   Nothing is allocated per packet; the kernel reads the slot until the
//!   send's completion.
//!
//! The only `unsafe` here: both regions are `mmap`ed once, handed to the
//! kernel by address, and unmapped when the worker (after its ring) drops.

use std::io;
use std::net::SocketAddr;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

use super::bridge::Forward;
use super::mmsg;
use super::relay::MAX_DATAGRAM;
use super::worker::CallId;

/// The buffer group id of a worker's ring (one group per ring).
pub(super) const GROUP: u16 = 0;

/// Receive buffers per worker unless configured: at 50 packets/s per
/// socket a turn finds far fewer datagrams than this.
pub(super) const DEFAULT_BUFFERS: u16 = 2048;

/// Bytes of the kernel's `io_uring_recvmsg_out` at the start of a buffer.
const OUT_HEADER: usize = 16;

/// Room for the source address, after the header (`msg_namelen`).
pub(super) const NAME: usize = size_of::<libc::sockaddr_storage>();

/// Where the payload starts in a buffer (no control data is asked for).
pub(super) const PAYLOAD: usize = OUT_HEADER + NAME;

/// One buffer: header, address, and a payload larger than
/// [`MAX_DATAGRAM`] (so a too-large datagram is seen as such, and RTCP
/// scrubbing has the same room as with `recvmmsg`), rounded to a cache line.
const STRIDE: usize = (PAYLOAD + MAX_DATAGRAM + 1).next_multiple_of(64);

/// An anonymous private mapping of `len` bytes, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length and is
        // not used after this (the ring that used it is gone first).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The provided-buffer ring: its entries and its buffers.
pub(super) struct BufRing {
    /// The ring of `count` entries the kernel takes buffers from (page
    /// aligned, as the kernel wants; its tail shares the first entry).
    entries: Mapping,
    /// `count` buffers of [`STRIDE`] bytes.
    buffers: Mapping,
    /// Buffers in the ring (a power of two).
    count: u16,
    /// Our tail, ahead of the published one until [`BufRing::publish`].
    tail: u16,
    /// Buffers recycled since the last [`BufRing::take_returned`]: a socket
    /// starved of buffers is re-armed once some came back.
    returned: usize,
}

// SAFETY: the mappings are owned by the ring and only reached through it;
// moving it to the worker thread moves that ownership with it.
unsafe impl Send for BufRing {}

impl BufRing {
    /// `count` buffers (a power of two, at most 32768), all in the ring.
    pub(super) fn new(count: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 {
            return Err(io::Error::other(
                "buffer count must be a power of two <= 32768",
            ));
        }
        let entries = Mapping::new(usize::from(count) * size_of::<BufRingEntry>())?;
        let buffers = Mapping::new(usize::from(count) * STRIDE)?;
        let mut ring = BufRing {
            entries,
            buffers,
            count,
            tail: 0,
            returned: 0,
        };
        for bid in 0..count {
            ring.recycle(bid);
        }
        ring.publish();
        ring.returned = 0;
        Ok(ring)
    }

    /// Hands the ring to the kernel as buffer group [`GROUP`].
    pub(super) fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        let addr = self.entries.ptr.as_ptr() as u64;
        // SAFETY: the entries stay mapped until the worker drops, after
        // its ring (the field order of `uring::Worker`).
        unsafe { submitter.register_buf_ring_with_flags(addr, self.count, GROUP, 0) }
    }

    /// Buffer `bid`, as the kernel left it; `None` for an id we never gave.
    pub(super) fn buffer(&mut self, bid: u16) -> Option<&mut [u8]> {
        if bid >= self.count {
            return None;
        }
        // SAFETY: in bounds; the kernel is done with a buffer once its
        // completion is seen, and it is not lent again until recycled,
        // which needs `&mut self` (so the slice is gone by then).
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.buffers.ptr.as_ptr().add(usize::from(bid) * STRIDE),
                STRIDE,
            )
        })
    }

    /// Gives buffer `bid` back to the kernel (seen at the next publish).
    pub(super) fn recycle(&mut self, bid: u16) {
        let mask = self.count - 1;
        let index = usize::from(self.tail & mask);
        // SAFETY: index < count; entries past the published tail are ours.
        let entry = unsafe { &mut *self.entries.ptr.as_ptr().cast::<BufRingEntry>().add(index) };
        // SAFETY: bid < count (checked by `buffer` before any recycle of a
        // kernel-given id, and by the loop in `new`).
        let addr = unsafe { self.buffers.ptr.as_ptr().add(usize::from(bid) * STRIDE) };
        entry.set_addr(addr as u64);
        entry.set_len(STRIDE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.returned += 1;
    }

    /// Publishes the recycled buffers to the kernel.
    pub(super) fn publish(&mut self) {
        let base = self.entries.ptr.as_ptr().cast::<BufRingEntry>();
        // SAFETY: the tail is a u16 in the first entry, aligned for an
        // atomic; the kernel reads it with acquire semantics.
        let tail = unsafe { &*BufRingEntry::tail(base).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// How many buffers came back since the last call.
    pub(super) fn take_returned(&mut self) -> usize {
        std::mem::take(&mut self.returned)
    }
}

/// The `msghdr` every multishot receive is armed with: room for the
/// source address, no control data (only the lengths are read).
pub(super) fn recv_header() -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_namelen = NAME as libc::socklen_t;
    header
}

/// One forward in flight, from the buffer of the same id.
pub(super) struct SendSlot {
    /// What the kernel reads: points at `iov` and `addr`.
    header: libc::msghdr,
    /// The payload in the buffer.
    iov: libc::iovec,
    /// The destination.
    addr: libc::sockaddr_storage,
    /// What the bridge asked for, told back with the result.
    pub(super) forward: Option<Forward>,
    /// Whose bridge hears the result.
    pub(super) call: CallId,
}

/// The send slots of a worker, one per buffer.
pub(super) struct SendSlots {
    /// Boxed once, never resized: the kernel holds pointers into it.
    slots: Box<[SendSlot]>,
}

// SAFETY: the raw pointers in each slot point into the slot itself or into
// the worker's buffers, which move with it.
unsafe impl Send for SendSlots {}

impl SendSlots {
    pub(super) fn new(count: u16) -> SendSlots {
        let slot = || SendSlot {
            // SAFETY: all-zero is valid for these plain C structs.
            header: unsafe { std::mem::zeroed() },
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: as above.
            addr: unsafe { std::mem::zeroed() },
            forward: None,
            call: 0,
        };
        SendSlots {
            slots: (0..count).map(|_| slot()).collect(),
        }
    }

    /// Fills slot `bid` to send `payload[..forward.len]` to `forward.to`;
    /// the header to hand to the kernel.
    pub(super) fn prepare(
        &mut self,
        bid: u16,
        call: CallId,
        forward: Forward,
        payload: &mut [u8],
    ) -> Option<*const libc::msghdr> {
        let slot = self.slots.get_mut(usize::from(bid))?;
        let len = mmsg::to_storage(forward.to, &mut slot.addr);
        slot.iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: forward.len.min(payload.len()),
        };
        slot.header.msg_name = std::ptr::from_mut(&mut slot.addr).cast();
        slot.header.msg_namelen = len;
        slot.header.msg_iov = &mut slot.iov;
        slot.header.msg_iovlen = 1;
        slot.forward = Some(forward);
        slot.call = call;
        Some(&slot.header)
    }

    /// Slot `bid`'s forward and call, cleared (its send completed).
    pub(super) fn complete(&mut self, bid: u16) -> Option<(CallId, Forward)> {
        let slot = self.slots.get_mut(usize::from(bid))?;
        Some((slot.call, slot.forward.take()?))
    }
}

/// The source address in a received buffer's name field.
pub(super) fn source(name: &[u8]) -> Option<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let n = name.len().min(NAME);
    // SAFETY: `storage` has NAME bytes; `n` is at most that and `name`'s length.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            std::ptr::from_mut(&mut storage).cast::<u8>(),
            n,
        );
    }
    mmsg::from_storage(&storage)
}
