//! Batched datagram I/O for the relay workers: `recvmmsg(2)` and
//! `sendmmsg(2)` over preallocated buffers, so a batch of up to [`BATCH`]
//! datagrams costs one system call in and one out, and nothing is
//! allocated per packet.
//!
//! With `quiet.rs` (a socket filter), the only `unsafe` of the media module: the kernel is handed raw
//! pointers into [`Batch`]'s own arrays, which outlive each call and are
//! not moved while it runs (`&mut self`).

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use super::relay::MAX_DATAGRAM;

/// Datagrams per system call at most.
pub(super) const BATCH: usize = 32;

/// One receive buffer: a datagram that fills it was truncated by the
/// kernel and is dropped.
const BUF: usize = MAX_DATAGRAM + 1;

/// A batch of datagrams: the buffers, their lengths and peer addresses,
/// and the kernel's message headers.
pub(super) struct Batch {
    bufs: Box<[[u8; BUF]; BATCH]>,
    lens: [usize; BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
    iovecs: [libc::iovec; BATCH],
    headers: [libc::mmsghdr; BATCH],
    /// Datagrams in the batch (from the last receive).
    count: usize,
}

// SAFETY: the raw pointers in `iovecs` and `headers` only ever point into
// the batch's own fields and are rebuilt before each system call; moving
// the batch to another thread moves what they would point to with it.
unsafe impl Send for Batch {}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch {
            bufs: vec![[0u8; BUF]; BATCH]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("the vec has BATCH buffers")),
            lens: [0; BATCH],
            addrs: zeroed(),
            iovecs: zeroed(),
            headers: zeroed(),
            count: 0,
        }
    }

    /// Datagram `i`: its buffer (to read or rewrite in place), its length
    /// and where it came from. `None` for an address family we do not use.
    pub(super) fn datagram(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>) {
        let addr = from_storage(&self.addrs[i]);
        (&mut self.bufs[i][..], self.lens[i], addr)
    }

    /// Reads up to [`BATCH`] datagrams from `fd` without waiting; how many
    /// (0 when nothing was waiting). A datagram that filled its buffer is
    /// truncated: its length is set past [`MAX_DATAGRAM`] for the caller to
    /// drop.
    pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: BUF,
            };
            let h = &mut self.headers[i].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: every header points into this batch's arrays, which stay
        // in place for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for i in 0..n {
            let truncated = self.headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let len = self.headers[i].msg_len as usize;
            self.lens[i] = if truncated { BUF } else { len };
        }
        self.count = n;
        Ok(n)
    }
}

/// Datagrams queued for one socket, each pointing at a buffer of a
/// [`Batch`] (the one just received, rewritten in place).
pub(super) struct SendQueue {
    entries: [(usize, usize); BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
    addr_lens: [libc::socklen_t; BATCH],
    iovecs: [libc::iovec; BATCH],
    headers: [libc::mmsghdr; BATCH],
    count: usize,
}

// SAFETY: as for `Batch`: the pointers are rebuilt before each call.
unsafe impl Send for SendQueue {}

impl SendQueue {
    pub(super) fn new() -> SendQueue {
        SendQueue {
            entries: [(0, 0); BATCH],
            addrs: zeroed(),
            addr_lens: [0; BATCH],
            iovecs: zeroed(),
            headers: zeroed(),
            count: 0,
        }
    }

    /// Queues the first `len` bytes of the batch's buffer `index` for `to`.
    /// `false` (nothing queued) when the queue is full.
    pub(super) fn push(&mut self, index: usize, len: usize, to: SocketAddr) -> bool {
        if self.count == BATCH {
            return false;
        }
        let i = self.count;
        self.addr_lens[i] = to_storage(to, &mut self.addrs[i]);
        self.entries[i] = (index, len);
        self.count += 1;
        true
    }

    /// Sends what is queued on `fd` without waiting, and empties the queue.
    /// Calls `done(k, result)` for each queued datagram, in order: its
    /// length when sent, `None` when it was not (a full send buffer, an
    /// error: late media is dropped, never waited for).
    pub(super) fn flush(
        &mut self,
        fd: RawFd,
        batch: &mut Batch,
        mut done: impl FnMut(usize, Option<usize>),
    ) {
        let total = self.count;
        for i in 0..total {
            let (index, len) = self.entries[i];
            self.iovecs[i] = libc::iovec {
                iov_base: batch.bufs[index].as_mut_ptr().cast(),
                iov_len: len.min(BUF),
            };
            let h = &mut self.headers[i].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            h.msg_namelen = self.addr_lens[i];
            h.msg_iov = &mut self.iovecs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut sent = 0;
        while sent < total {
            // SAFETY: the headers point into this queue and into `batch`,
            // both borrowed for the duration of the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (total - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                // The first unsent datagram failed (full buffer, ICMP
                // error reported here, unreachable): drop it, go on.
                done(sent, None);
                sent += 1;
                continue;
            }
            for k in sent..sent + n as usize {
                done(k, Some(self.headers[k].msg_len as usize));
            }
            sent += n as usize;
        }
        self.count = 0;
    }
}

/// Sends one datagram on `fd` without waiting; its length when sent.
pub(super) fn send_one(fd: RawFd, data: &[u8], to: SocketAddr) -> Option<usize> {
    let mut storage: libc::sockaddr_storage = zeroed();
    let len = to_storage(to, &mut storage);
    // SAFETY: `data` and `storage` are valid for the duration of the call.
    let n = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT,
            std::ptr::from_ref(&storage).cast(),
            len,
        )
    };
    usize::try_from(n).ok()
}

/// An all-zero value of a plain C struct (or an array of them) from
/// `libc`: for those, all-zero is a valid value (null pointers, zero
/// lengths). Only used for the types in this file.
fn zeroed<T: Copy>() -> T {
    // SAFETY: see above; `T` is one of libc's plain-old-data structs here.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

pub(super) fn to_storage(
    addr: SocketAddr,
    storage: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { std::ptr::write(std::ptr::from_mut(storage).cast(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::from_mut(storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

pub(super) fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*std::ptr::from_ref(storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*std::ptr::from_ref(storage).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_in_and_out_in_two_calls() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            a.send_to(&[i; 10], b.local_addr().unwrap()).unwrap();
        }
        let mut batch = Batch::new();
        let mut n = 0;
        for _ in 0..100 {
            n = batch.recv(b.as_raw_fd()).unwrap();
            if n == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(n, 5);
        let mut queue = SendQueue::new();
        for i in 0..n {
            let (buf, len, from) = batch.datagram(i);
            assert_eq!((len, buf[0]), (10, i as u8));
            assert_eq!(from, Some(a.local_addr().unwrap()));
            assert!(queue.push(i, len, c.local_addr().unwrap()));
        }
        let mut sent = Vec::new();
        queue.flush(b.as_raw_fd(), &mut batch, |k, r| sent.push((k, r)));
        assert_eq!(sent, (0..5).map(|k| (k, Some(10))).collect::<Vec<_>>());
        assert_eq!(queue.count, 0);
        let mut buf = [0u8; 64];
        for i in 0..5u8 {
            let (len, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!((len, buf[0], from), (10, i, b.local_addr().unwrap()));
        }
        assert_eq!(batch.recv(c.as_raw_fd()).unwrap(), 0, "nothing waits");
    }

    #[test]
    fn a_datagram_larger_than_the_buffer_is_marked_truncated() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(&[7; BUF + 10], b.local_addr().unwrap()).unwrap();
        let mut batch = Batch::new();
        let mut n = 0;
        for _ in 0..100 {
            n = batch.recv(b.as_raw_fd()).unwrap();
            if n > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(n, 1);
        assert!(batch.datagram(0).1 > MAX_DATAGRAM);
    }
}
