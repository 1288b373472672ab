//! The RTP port pool: even RTP ports, RTCP on RTP+1, **bound once** when the
//! pool is made and kept bound between calls; a [`PortPair`] goes back to
//! the pool when it is dropped.
//!
//! - **At random.** Pairs are handed out at random from the free ones
//!   (`rand`'s thread RNG, a CSPRNG), so nobody can guess which port the
//!   next call gets (an attacker who could would aim its packets there).
//! - **Bound once.** Binding and closing four sockets per call cost four
//!   `bind`s and four `close`s on the call set-up path; now the pool binds
//!   every pair at start-up (a process whose descriptor limit cannot hold
//!   them fails then, saying so: [`MediaError::Descriptors`]). A port taken
//!   by another program at start-up is tried again when it is picked.
//! - **Quiet while idle, clean when reused.** A returned pair is silenced
//!   (a socket filter drops everything it receives) and drained of what
//!   the previous call left queued; taking it drains it again, clears any
//!   pending socket error and lifts the filter (`quiet.rs`). So no datagram
//!   sent to the previous call, or sprayed at the idle port, reaches the
//!   next call; latching starts afresh with the next call's bridge. A pair
//!   that cannot be silenced or woken is closed, and bound afresh later.
//!   Idle ports and ports in use look the same from outside: both are
//!   bound, neither answers with ICMP.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use std::net::UdpSocket;

use super::MediaError;
use super::quiet;

/// A pool of RTP/RTCP port pairs in `first..=last` on one bind address.
///
/// Cheap to share (`Arc<PortPool>` or `clone()`: clones share the same pool).
/// Allocation takes a mutex (once per call leg, never per packet).
#[derive(Debug, Clone)]
pub struct PortPool {
    /// The pool shared with every lease.
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    /// The address every media socket binds to (`[media] bind`).
    bind_ip: IpAddr,
    /// First even RTP port of the pool.
    base: u16,
    /// The configured range's first port, for error messages.
    first: u16,
    /// The configured range's last port, for error messages.
    last: u16,
    /// Which slots are free, and the idle sockets they keep.
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    /// Number of slots; slot `i` is port `base + 2 * i`.
    capacity: usize,
    /// The slots not handed out, in no particular order (a random one is
    /// taken with `swap_remove`; a freed one is pushed back).
    free: Vec<usize>,
    /// Per slot, its silenced sockets while it is free; `None` while it is
    /// handed out, or when it is free but unbound (its port was taken by
    /// another program, or its sockets could not be kept quiet).
    idle: Vec<Option<Sockets>>,
}

/// The RTP and RTCP sockets of one slot.
#[derive(Debug)]
struct Sockets {
    /// On the even port.
    rtp: UdpSocket,
    /// On the port above.
    rtcp: UdpSocket,
}

impl Sockets {
    /// Silences both (idle in the pool); `Err` if either cannot be kept quiet.
    fn silence(&self) -> io::Result<()> {
        quiet::silence(&self.rtp)?;
        quiet::silence(&self.rtcp)
    }

    /// Drains both and lets them receive (the start of a call).
    fn wake(&self) -> io::Result<()> {
        quiet::wake(&self.rtp)?;
        quiet::wake(&self.rtcp)
    }
}

/// A bound RTP/RTCP socket pair, handed out for one call leg. Dropping it
/// gives the sockets back to the pool, silenced and drained.
#[derive(Debug)]
pub struct PortPair {
    /// The (even) RTP port; RTCP is on the port above.
    port: u16,
    /// The RTP socket's descriptor (owned by `sockets`), for the worker.
    rtp_fd: RawFd,
    /// The RTCP socket's descriptor (owned by `sockets`), for the worker.
    rtcp_fd: RawFd,
    /// The sockets; `None` only once `drop` has given them back.
    sockets: Option<Sockets>,
    /// The pool they go back to.
    pool: Arc<PoolInner>,
    /// Their slot in it.
    slot: usize,
}

impl PortPair {
    /// The (even) RTP port; RTCP is on the port above.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The RTP socket (non-blocking), valid while the pair lives.
    #[must_use]
    pub fn rtp_fd(&self) -> RawFd {
        self.rtp_fd
    }

    /// The RTCP socket (non-blocking), valid while the pair lives.
    #[must_use]
    pub fn rtcp_fd(&self) -> RawFd {
        self.rtcp_fd
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        let Some(sockets) = self.sockets.take() else {
            return;
        };
        // Silenced and drained outside the lock; a pair that cannot be is
        // closed here and bound afresh when its slot is picked again.
        let kept = match sockets.silence() {
            Ok(()) => Some(sockets),
            Err(e) => {
                tracing::warn!(port = self.port, error = %e, "media ports closed instead of kept idle");
                None
            }
        };
        let mut slots = self.pool.lock();
        slots.idle[self.slot] = kept;
        slots.free.push(self.slot);
    }
}

impl PoolInner {
    /// Locks the slots; a poisoned lock is still consistent (plain flags).
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn port_of(&self, slot: usize) -> u16 {
        // slot < capacity <= (last - base + 1) / 2, so this fits in u16.
        let offset = u16::try_from(slot * 2).unwrap_or(u16::MAX);
        self.base.saturating_add(offset)
    }

    /// Binds `port` and `port + 1`; `Ok(None)` if either is in use.
    fn bind_pair(&self, port: u16) -> Result<Option<Sockets>, MediaError> {
        let Some(rtp) = self.bind(port)? else {
            return Ok(None);
        };
        let Some(rtcp) = self.bind(port + 1)? else {
            return Ok(None);
        };
        Ok(Some(Sockets { rtp, rtcp }))
    }

    /// Binds one non-blocking UDP socket; `Ok(None)` on `EADDRINUSE`.
    fn bind(&self, port: u16) -> Result<Option<UdpSocket>, MediaError> {
        let addr = SocketAddr::new(self.bind_ip, port);
        let bound = UdpSocket::bind(addr).and_then(|socket| {
            socket.set_nonblocking(true)?;
            Ok(socket)
        });
        match bound {
            Ok(socket) => Ok(Some(socket)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
            Err(source) => Err(bind_error(addr, source)),
        }
    }
}

/// The error for a failed bind: out of descriptors is said as such.
fn bind_error(addr: SocketAddr, source: io::Error) -> MediaError {
    match source.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => MediaError::Descriptors { addr, source },
        _ => MediaError::Bind { addr, source },
    }
}

impl PortPool {
    /// A pool of the even ports `p` in `first..=last` with `p + 1 <= last`,
    /// every pair bound on `bind_ip` now and kept (silenced while free).
    /// Ports another program holds are left unbound and tried again when
    /// picked.
    ///
    /// # Errors
    /// [`MediaError::InvalidRange`] if no pair fits or `first` is 0;
    /// [`MediaError::Descriptors`] when the descriptor limit cannot hold
    /// the range; [`MediaError::Bind`] when binding fails otherwise (bind
    /// IP not local).
    pub fn new(bind_ip: IpAddr, first: u16, last: u16) -> Result<PortPool, MediaError> {
        let invalid = || MediaError::InvalidRange { first, last };
        let base = first.checked_add(first % 2).ok_or_else(invalid)?;
        if first == 0 || base >= last {
            return Err(invalid());
        }
        // Even ports p in base..=last with p + 1 <= last.
        let pairs = usize::from((last - base).div_ceil(2));
        let mut inner = PoolInner {
            bind_ip,
            base,
            first,
            last,
            slots: Mutex::new(Slots {
                capacity: pairs,
                free: (0..pairs).collect(),
                idle: Vec::with_capacity(pairs),
            }),
        };
        let idle = (0..pairs)
            .map(|slot| inner.bind_idle(slot))
            .collect::<Result<Vec<_>, _>>()?;
        inner
            .slots
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .idle = idle;
        Ok(PortPool {
            inner: Arc::new(inner),
        })
    }

    /// Number of port pairs in the pool.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity
    }

    /// Number of port pairs currently handed out.
    #[must_use]
    pub fn in_use(&self) -> usize {
        let slots = self.inner.lock();
        slots.capacity - slots.free.len()
    }

    /// Hands out a free pair, picked at random, drained and receiving.
    ///
    /// A free slot without sockets is bound now; ports the OS refuses with
    /// `EADDRINUSE` (taken by another program) are skipped, not marked, and
    /// tried again on later allocations.
    ///
    /// # Errors
    /// [`MediaError::PoolExhausted`] when no pair is left,
    /// [`MediaError::Descriptors`] or [`MediaError::Bind`] when binding a
    /// slot fails otherwise.
    pub fn allocate(&self) -> Result<PortPair, MediaError> {
        let mut slots = self.inner.lock();
        let count = slots.free.len();
        let start = if count == 0 {
            0
        } else {
            rand::random_range(0..count)
        };
        for step in 0..count {
            let position = (start + step) % count;
            let slot = slots.free[position];
            let Some(sockets) = self.ready(&mut slots, slot)? else {
                continue;
            };
            slots.free.swap_remove(position);
            return Ok(PortPair {
                port: self.inner.port_of(slot),
                rtp_fd: sockets.rtp.as_raw_fd(),
                rtcp_fd: sockets.rtcp.as_raw_fd(),
                sockets: Some(sockets),
                pool: Arc::clone(&self.inner),
                slot,
            });
        }
        Err(MediaError::PoolExhausted {
            first: self.inner.first,
            last: self.inner.last,
        })
    }

    /// `slot`'s sockets, woken (its idle ones, or fresh ones if it has
    /// none or they will not wake); `Ok(None)` if its ports are in use.
    fn ready(&self, slots: &mut Slots, slot: usize) -> Result<Option<Sockets>, MediaError> {
        if let Some(sockets) = slots.idle[slot].take() {
            match sockets.wake() {
                Ok(()) => return Ok(Some(sockets)),
                Err(e) => {
                    let port = self.inner.port_of(slot);
                    tracing::warn!(port, error = %e, "idle media ports would not wake: bound afresh");
                }
            }
        }
        // Fresh sockets have queued nothing that matters: nobody was told
        // their port yet. (What raced in is latched out by the bridge.)
        self.inner.bind_pair(self.inner.port_of(slot))
    }
}

impl PoolInner {
    /// `slot`'s sockets, bound and silenced, for a new pool; `None` if its
    /// ports are taken or cannot be silenced (tried again when picked).
    fn bind_idle(&self, slot: usize) -> Result<Option<Sockets>, MediaError> {
        let Some(sockets) = self.bind_pair(self.port_of(slot))? else {
            return Ok(None);
        };
        Ok(sockets.silence().is_ok().then_some(sockets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn sockets(pair: &PortPair) -> &Sockets {
        pair.sockets.as_ref().unwrap()
    }

    /// Whether a datagram (or an error) waits on `socket`.
    fn pending(socket: &UdpSocket) -> bool {
        let mut buf = [0u8; 64];
        !matches!(socket.recv(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    #[test]
    fn rejects_empty_ranges() {
        for (first, last) in [(0, 100), (100, 100), (101, 101), (101, 102), (65535, 65535)] {
            assert!(
                matches!(
                    PortPool::new(LOCALHOST, first, last),
                    Err(MediaError::InvalidRange { .. })
                ),
                "{first}..={last}"
            );
        }
        assert_eq!(
            PortPool::new(LOCALHOST, 31101, 31103).unwrap().capacity(),
            1
        );
        assert_eq!(
            PortPool::new(LOCALHOST, 31100, 31103).unwrap().capacity(),
            2
        );
        assert_eq!(
            PortPool::new(LOCALHOST, 31100, 31104).unwrap().capacity(),
            2
        );
    }

    #[test]
    fn even_ports_rtcp_above_and_exhaustion() {
        let pool = PortPool::new(LOCALHOST, 31111, 31115).unwrap(); // pairs 31112, 31114
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        for pair in [&a, &b] {
            let s = sockets(pair);
            assert_eq!(pair.port() % 2, 0);
            assert_eq!(s.rtp.local_addr().unwrap().port(), pair.port());
            assert_eq!(s.rtcp.local_addr().unwrap().port(), pair.port() + 1);
            assert_eq!(s.rtp.local_addr().unwrap().ip(), LOCALHOST);
            assert_eq!(
                (pair.rtp_fd(), pair.rtcp_fd()),
                (s.rtp.as_raw_fd(), s.rtcp.as_raw_fd())
            );
        }
        assert_ne!(a.port(), b.port());
        assert_eq!(pool.in_use(), 2);
        let err = pool.allocate().unwrap_err();
        assert!(matches!(
            err,
            MediaError::PoolExhausted {
                first: 31111,
                last: 31115
            }
        ));
    }

    #[test]
    fn ports_are_bound_once_and_return_on_drop() {
        let pool = Arc::new(PortPool::new(LOCALHOST, 31120, 31123).unwrap());
        // Bound at start-up: nobody else can take them.
        assert!(UdpSocket::bind((LOCALHOST, 31120)).is_err());
        assert!(UdpSocket::bind((LOCALHOST, 31123)).is_err());
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert!(pool.allocate().is_err());
        let freed = a.port();
        drop(a);
        assert_eq!(pool.in_use(), 1);
        // Kept bound while free.
        assert!(UdpSocket::bind((LOCALHOST, freed)).is_err());
        let again = pool.allocate().unwrap();
        assert_eq!(again.port(), freed);
        drop((b, again));
        assert_eq!(pool.in_use(), 0);
        // Many rounds through a tiny pool: nothing leaks.
        for _ in 0..50 {
            let x = pool.allocate().unwrap();
            let y = pool.allocate().unwrap();
            assert_ne!(x.port(), y.port());
        }
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn skips_ports_taken_by_others() {
        let squatter_rtp = UdpSocket::bind((LOCALHOST, 31130)).unwrap();
        let squatter_rtcp = UdpSocket::bind((LOCALHOST, 31133)).unwrap();
        let pool = PortPool::new(LOCALHOST, 31130, 31135).unwrap();
        let pair = pool.allocate().unwrap();
        assert_eq!(pair.port(), 31134);
        assert!(matches!(
            pool.allocate(),
            Err(MediaError::PoolExhausted { .. })
        ));
        // Skipped ports were not marked: once free, they are used again.
        drop((squatter_rtp, squatter_rtcp));
        let next = pool.allocate().unwrap();
        let last = pool.allocate().unwrap();
        let mut got = [next.port(), last.port()];
        got.sort_unstable();
        assert_eq!(got, [31130, 31132]);
    }

    #[test]
    fn pairs_are_handed_out_at_random() {
        let pool = PortPool::new(LOCALHOST, 31600, 31799).unwrap(); // 100 pairs
        let mut runs = Vec::new();
        for _ in 0..3 {
            let pairs: Vec<PortPair> = (0..10).map(|_| pool.allocate().unwrap()).collect();
            let ports: Vec<u16> = pairs.iter().map(PortPair::port).collect();
            let mut unique = ports.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), 10, "{ports:?}");
            runs.push(ports);
        }
        // In order, every run would be consecutive ports from the same
        // starting point; at random, three runs of ten from 100 pairs
        // coincide or come out sorted with negligible probability.
        assert!(runs.iter().any(|r| !r.windows(2).all(|w| w[1] == w[0] + 2)));
        assert!(runs[0] != runs[1] || runs[1] != runs[2]);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn every_pair_is_used_and_a_freed_one_is_not_next_in_turn() {
        let pool = PortPool::new(LOCALHOST, 31800, 31815).unwrap(); // 8 pairs
        let mut seen = BTreeSet::new();
        let mut repeats = 0;
        let mut previous = None;
        // One pair at a time: in order (or last-freed-first) it would be
        // the same port, or a fixed cycle, every time.
        for _ in 0..400 {
            let port = pool.allocate().unwrap().port();
            repeats += usize::from(previous == Some(port));
            previous = Some(port);
            seen.insert(port);
        }
        let all: BTreeSet<u16> = (31800..31816).step_by(2).collect();
        assert_eq!(seen, all);
        // About 1 in 8 at random; every time with a free stack.
        assert!((10..=120).contains(&repeats), "{repeats}");
    }

    #[test]
    fn a_reused_pair_holds_nothing_for_the_previous_call() {
        let pool = PortPool::new(LOCALHOST, 31820, 31821).unwrap(); // 1 pair
        let peer = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        // Datagrams to an idle pair (a stranger spraying the range).
        peer.send_to(b"idle", (LOCALHOST, 31820)).unwrap();
        let first = pool.allocate().unwrap();
        assert!(!pending(&sockets(&first).rtp));
        // The previous call: datagrams left unread on both sockets.
        for _ in 0..20 {
            peer.send_to(b"old call rtp", (LOCALHOST, 31820)).unwrap();
            peer.send_to(b"old call rtcp", (LOCALHOST, 31821)).unwrap();
        }
        drop(first);
        // Late packets of that call while the pair is free.
        peer.send_to(b"late rtp", (LOCALHOST, 31820)).unwrap();
        peer.send_to(b"late rtcp", (LOCALHOST, 31821)).unwrap();
        let next = pool.allocate().unwrap();
        assert_eq!(next.port(), 31820);
        let s = sockets(&next);
        assert!(!pending(&s.rtp) && !pending(&s.rtcp));
        assert!(s.rtp.take_error().unwrap().is_none());
        // And the next call hears its own party.
        peer.send_to(b"new call", (LOCALHOST, 31820)).unwrap();
        let mut buf = [0u8; 64];
        let n = s.rtp.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new call");
    }

    #[test]
    fn bind_failure_is_an_error_at_start_up() {
        // TEST-NET-1 is not a local address.
        let pool = PortPool::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 31140, 31143);
        assert!(matches!(pool, Err(MediaError::Bind { .. })));
    }

    #[test]
    fn running_out_of_descriptors_says_so() {
        let addr = SocketAddr::new(LOCALHOST, 31142);
        for errno in [libc::EMFILE, libc::ENFILE] {
            let e = bind_error(addr, io::Error::from_raw_os_error(errno));
            assert!(matches!(e, MediaError::Descriptors { .. }), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("file descriptors") && text.contains("[media] ports"),
                "{text}"
            );
        }
        let e = bind_error(addr, io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(e, MediaError::Bind { .. }));
    }
}
