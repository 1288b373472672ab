//! Keeping an idle media socket quiet: while a port pair waits in the pool
//! for its next call it stays bound, but the kernel must queue nothing on
//! it, so no datagram meant for the previous call (or sprayed by a
//! stranger) can reach the next one.
//!
//! An idle socket carries a classic BPF socket filter that drops every
//! datagram before it is queued (`SO_ATTACH_FILTER` with one `ret #0`);
//! what was queued before the filter went on is drained ([`drain`]). Taking
//! the pair for a call drains it once more, takes any pending socket error
//! (an ICMP error of the previous call's sends), and removes the filter.
//!
//! With the `unsafe` of `mmsg.rs`, the only `unsafe` of the media module:
//! `setsockopt` is handed a pointer to a filter program that lives on the
//! stack for the duration of the call.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

// `<asm-generic/socket.h>`: the values of x86, arm, aarch64, riscv and
// powerpc (libc exports them for Android only). MIPS and SPARC differ.
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
compile_error!("SO_ATTACH_FILTER/SO_DETACH_FILTER differ on this architecture");
const SO_ATTACH_FILTER: libc::c_int = 26;
const SO_DETACH_FILTER: libc::c_int = 27;

/// Datagrams read at most by one [`drain`]: more than any socket buffer
/// holds, so only a socket without its filter, flooded faster than it is
/// read, reaches it.
const DRAIN_MAX: usize = 1 << 16;

/// Makes `socket` drop everything it receives from now on, then drains
/// what it had queued.
///
/// # Errors
/// When the filter cannot be attached or the queue does not empty: the
/// caller closes the socket instead of keeping it.
pub(super) fn silence(socket: &UdpSocket) -> io::Result<()> {
    let mut drop_all = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let program = libc::sock_fprog {
        len: 1,
        filter: drop_all.as_mut_ptr(),
    };
    // SAFETY: `program` and the one instruction it points to live until
    // setsockopt returns; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            std::ptr::from_ref(&program).cast(),
            socklen::<libc::sock_fprog>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    drain(socket)
}

/// Drains `socket` and lets it receive again (the start of a call).
///
/// # Errors
/// When the queue does not empty or the filter cannot be removed: the
/// caller closes the socket and binds a fresh one.
pub(super) fn wake(socket: &UdpSocket) -> io::Result<()> {
    drain(socket)?;
    let none: libc::c_int = 0;
    // SAFETY: setsockopt reads one int we own; SO_DETACH_FILTER ignores it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_DETACH_FILTER,
            std::ptr::from_ref(&none).cast(),
            socklen::<libc::c_int>(),
        )
    };
    // ENOENT: no filter was attached (a socket never silenced).
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    Ok(())
}

/// Reads and discards every datagram queued on the (non-blocking)
/// `socket`, and its pending error.
///
/// # Errors
/// [`io::ErrorKind::Other`] when more than [`DRAIN_MAX`] datagrams came.
pub(super) fn drain(socket: &UdpSocket) -> io::Result<()> {
    let mut byte = [0u8; 1];
    for _ in 0..DRAIN_MAX {
        match socket.recv(&mut byte) {
            // A datagram (truncated to one byte, the rest discarded), or a
            // pending error (ICMP of an earlier send): both consumed.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = socket.take_error();
                return Ok(());
            }
            Err(_) => {}
        }
    }
    Err(io::Error::other("media socket does not stop receiving"))
}

fn socklen<T>() -> libc::socklen_t {
    // Both options' arguments are a few bytes.
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn pair() -> (UdpSocket, UdpSocket, SocketAddr) {
        let idle = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        idle.set_nonblocking(true).unwrap();
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to = idle.local_addr().unwrap();
        (idle, peer, to)
    }

    fn pending(socket: &UdpSocket) -> bool {
        let mut buf = [0u8; 16];
        !matches!(socket.recv(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    #[test]
    fn a_silenced_socket_drops_what_was_queued_and_what_comes() {
        let (idle, peer, to) = pair();
        for _ in 0..5 {
            peer.send_to(b"old call", to).unwrap();
        }
        silence(&idle).unwrap();
        peer.send_to(b"while idle", to).unwrap();
        assert!(!pending(&idle));
        wake(&idle).unwrap();
        assert!(!pending(&idle));
        // Awake again: the next call's datagrams are received.
        peer.send_to(b"new call", to).unwrap();
        let mut buf = [0u8; 16];
        let n = loop {
            match idle.recv(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"new call");
    }

    #[test]
    fn waking_a_socket_never_silenced_drains_it() {
        let (idle, peer, to) = pair();
        peer.send_to(b"before", to).unwrap();
        wake(&idle).unwrap();
        assert!(!pending(&idle));
    }
}
