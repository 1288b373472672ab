//! Keeping an idle media socket quiet: while a port pair waits in the pool
//! for its next call it stays bound, but the kernel must queue nothing on
//! it, so no datagram meant for the previous call (or sprayed by a
//! stranger) can reach the next one.
//!
//! An idle socket carries a socket filter that drops every datagram before
//! it is queued; what was queued before the filter went on is drained
//! ([`drain`]). Taking the pair for a call drains it once more, takes any
//! pending socket error (an ICMP error of the previous call's sends), and
//! removes the filter.
//!
//! The filter is one eBPF program (`r0 = 0; exit`) loaded once per process
//! and attached by descriptor (`SO_ATTACH_BPF`): that costs the kernel a
//! reference, where a classic filter (`SO_ATTACH_FILTER`, one `ret #0`) is
//! checked and compiled afresh on every attach, four times a call (it was
//! a third of a relay worker's time at 1,000 calls per second). Where the
//! process may not load eBPF (`kernel.unprivileged_bpf_disabled`, seccomp),
//! the classic filter is used instead; both drop the same datagrams.
//!
//! With the `unsafe` of `mmsg.rs`, the only `unsafe` of the media module:
//! `setsockopt` and `bpf` are handed pointers to values that live on the
//! stack for the duration of the call.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

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
/// Also detaches an eBPF filter (`SO_DETACH_BPF` is the same option).
const SO_DETACH_FILTER: libc::c_int = 27;
const SO_ATTACH_BPF: libc::c_int = 50;

/// The drop-all eBPF program, loaded on first use; `None` if this process
/// may not load one.
static DROP_ALL: OnceLock<Option<OwnedFd>> = OnceLock::new();

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
    match drop_all_program() {
        Some(program) => attach_bpf(socket, program)?,
        None => attach_classic(socket)?,
    }
    drain(socket)
}

/// The loaded drop-all eBPF program, if this process may load one.
fn drop_all_program() -> Option<RawFd> {
    DROP_ALL
        .get_or_init(|| match load_drop_all() {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::info!(error = %e, "no eBPF socket filter: idle media ports use a classic one");
                None
            }
        })
        .as_ref()
        .map(AsRawFd::as_raw_fd)
}

/// Loads `r0 = 0; exit` as a socket filter (`BPF_PROG_LOAD`).
fn load_drop_all() -> io::Result<OwnedFd> {
    // struct bpf_insn: code, dst/src registers, offset, immediate.
    // BPF_ALU64 | BPF_MOV | BPF_K (0xb7), r0, 0; BPF_JMP | BPF_EXIT (0x95).
    let program: [[u8; 8]; 2] = [[0xb7, 0, 0, 0, 0, 0, 0, 0], [0x95, 0, 0, 0, 0, 0, 0, 0]];
    let license = c"MIT";
    let attr = ProgLoad {
        prog_type: 1, // BPF_PROG_TYPE_SOCKET_FILTER
        insn_cnt: 2,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    const BPF_PROG_LOAD: libc::c_long = 5;
    // SAFETY: `attr` and what it points to (program, license) live until
    // the call returns; the size passed is the struct's, and the kernel
    // zero-fills the fields beyond it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<ProgLoad>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("bpf returned no descriptor"))?;
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The first fields of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
struct ProgLoad {
    /// The program's type.
    prog_type: u32,
    /// Instructions in it.
    insn_cnt: u32,
    /// Where they are.
    insns: u64,
    /// Its licence string.
    license: u64,
    /// No verifier log.
    log_level: u32,
    /// No verifier log.
    log_size: u32,
    /// No verifier log.
    log_buf: u64,
    /// Unused for socket filters.
    kern_version: u32,
    /// None.
    prog_flags: u32,
}

/// Attaches the loaded eBPF `program` to `socket`.
fn attach_bpf(socket: &UdpSocket, program: RawFd) -> io::Result<()> {
    // SAFETY: setsockopt reads one int we own for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_BPF,
            std::ptr::from_ref(&program).cast(),
            socklen::<libc::c_int>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches a classic one-instruction drop-all filter to `socket`.
fn attach_classic(socket: &UdpSocket) -> io::Result<()> {
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
    Ok(())
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
/// `socket`, and any pending error.
///
/// # Errors
/// [`io::ErrorKind::Other`] when more than [`DRAIN_MAX`] datagrams came.
pub(super) fn drain(socket: &UdpSocket) -> io::Result<()> {
    let mut byte = [0u8; 1];
    for _ in 0..DRAIN_MAX {
        match socket.recv(&mut byte) {
            // A datagram (truncated to one byte, the rest discarded), or a
            // pending error (ICMP of an earlier send): both consumed. A
            // receive reports a pending error before it would block, so
            // `WouldBlock` means none is left (no `SO_ERROR` read needed:
            // it was four system calls a call on the SIP thread).
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
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

    /// The next datagram `socket` receives (it is on its way).
    fn recv_one(socket: &UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 16];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => return buf[..n].to_vec(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
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
        assert_eq!(recv_one(&idle), b"new call");
    }

    #[test]
    fn the_classic_filter_drops_as_the_ebpf_one_does() {
        let (idle, peer, to) = pair();
        peer.send_to(b"old call", to).unwrap();
        attach_classic(&idle).unwrap();
        drain(&idle).unwrap();
        peer.send_to(b"while idle", to).unwrap();
        assert!(!pending(&idle));
        wake(&idle).unwrap();
        peer.send_to(b"new call", to).unwrap();
        assert_eq!(recv_one(&idle), b"new call");
    }

    #[test]
    fn the_ebpf_program_loads_when_run_as_root() {
        // The test machines run as root, where loading must work; elsewhere
        // the classic filter is the defined fallback.
        if unsafe { libc::geteuid() } == 0 {
            assert!(drop_all_program().is_some(), "{:?}", load_drop_all().err());
        }
    }

    #[test]
    fn waking_a_socket_never_silenced_drains_it() {
        let (idle, peer, to) = pair();
        peer.send_to(b"before", to).unwrap();
        wake(&idle).unwrap();
        assert!(!pending(&idle));
    }
}
