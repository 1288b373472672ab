//! The RTP port pool: even RTP ports, RTCP on RTP+1, bound on allocation and
//! returned to the pool when the [`PortPair`] is dropped.
//!
//! Pairs are handed out **at random** from the free ones, so nobody can
//! guess which port the next call gets (an attacker who could would aim
//! its packets there), and a freed port is rarely reused at once (late
//! packets of the old call would reach the new one — where the source
//! check drops them anyway).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use std::net::UdpSocket;

use super::MediaError;

/// A pool of RTP/RTCP port pairs in `first..=last` on one bind address.
///
/// Cheap to share (`Arc<PortPool>` or `clone()`: clones share the same pool).
/// Allocation takes a mutex (once per call leg, never per packet).
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    bind_ip: IpAddr,
    /// First even RTP port of the pool.
    base: u16,
    /// The configured range, for error messages.
    first: u16,
    last: u16,
    slots: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    /// Number of slots; slot `i` is port `base + 2 * i`.
    capacity: usize,
    /// The slots not handed out, in no particular order (a random one is
    /// taken with `swap_remove`; a freed one is pushed back).
    free: Vec<usize>,
}

/// A bound RTP/RTCP socket pair. The port goes back to the pool when the
/// pair is dropped (the sockets close first, then the slot is freed): keep the
/// pair together rather than moving sockets out of it.
#[derive(Debug)]
pub struct PortPair {
    /// The RTP socket, on the even port [`PortPair::port`].
    pub rtp: UdpSocket,
    /// The RTCP socket, on `port + 1`.
    pub rtcp: UdpSocket,
    /// The (even) RTP port.
    pub port: u16,
    /// Returns the slot to the pool on drop; declared last so it drops last.
    _lease: Lease,
}

/// Frees a pool slot when dropped.
#[derive(Debug)]
struct Lease {
    pool: Arc<PoolInner>,
    slot: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.lock().free.push(self.slot);
    }
}

impl PoolInner {
    /// Locks the slots; a poisoned lock is still consistent (plain flags).
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PortPool {
    /// A pool of the even ports `p` in `first..=last` with `p + 1 <= last`,
    /// bound on `bind_ip`. Nothing is bound until [`PortPool::allocate`].
    ///
    /// # Errors
    /// [`MediaError::InvalidRange`] if no pair fits or `first` is 0.
    pub fn new(bind_ip: IpAddr, first: u16, last: u16) -> Result<PortPool, MediaError> {
        let invalid = || MediaError::InvalidRange { first, last };
        let base = first.checked_add(first % 2).ok_or_else(invalid)?;
        if first == 0 || base >= last {
            return Err(invalid());
        }
        // Even ports p in base..=last with p + 1 <= last.
        let pairs = usize::from((last - base).div_ceil(2));
        let inner = PoolInner {
            bind_ip,
            base,
            first,
            last,
            slots: Mutex::new(Slots {
                capacity: pairs,
                free: (0..pairs).collect(),
            }),
        };
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

    /// Binds a free even port, picked at random, and the one above it.
    ///
    /// Ports the OS refuses with `EADDRINUSE` (taken by another program) are
    /// skipped, not marked, and tried again on later allocations.
    ///
    /// # Errors
    /// [`MediaError::PoolExhausted`] when no pair is left,
    /// [`MediaError::Bind`] when binding fails otherwise (bind IP not local).
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
            let port = self.port_of(slot);
            if let Some((rtp, rtcp)) = self.bind_pair(port)? {
                slots.free.swap_remove(position);
                return Ok(PortPair {
                    rtp,
                    rtcp,
                    port,
                    _lease: Lease {
                        pool: Arc::clone(&self.inner),
                        slot,
                    },
                });
            }
        }
        Err(MediaError::PoolExhausted {
            first: self.inner.first,
            last: self.inner.last,
        })
    }

    fn port_of(&self, slot: usize) -> u16 {
        // slot < capacity <= (last - base + 1) / 2, so this fits in u16.
        let offset = u16::try_from(slot * 2).unwrap_or(u16::MAX);
        self.inner.base.saturating_add(offset)
    }

    /// Binds `port` and `port + 1`; `Ok(None)` if either is in use.
    fn bind_pair(&self, port: u16) -> Result<Option<(UdpSocket, UdpSocket)>, MediaError> {
        let Some(rtp) = self.bind(port)? else {
            return Ok(None);
        };
        let Some(rtcp) = self.bind(port + 1)? else {
            return Ok(None);
        };
        Ok(Some((rtp, rtcp)))
    }

    /// Binds one non-blocking UDP socket; `Ok(None)` on `EADDRINUSE`.
    fn bind(&self, port: u16) -> Result<Option<UdpSocket>, MediaError> {
        let addr = SocketAddr::new(self.inner.bind_ip, port);
        let bound = UdpSocket::bind(addr).and_then(|socket| {
            socket.set_nonblocking(true)?;
            Ok(socket)
        });
        match bound {
            Ok(socket) => Ok(Some(socket)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
            Err(source) => Err(MediaError::Bind { addr, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

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
        assert_eq!(PortPool::new(LOCALHOST, 101, 103).unwrap().capacity(), 1);
        assert_eq!(PortPool::new(LOCALHOST, 100, 103).unwrap().capacity(), 2);
        assert_eq!(PortPool::new(LOCALHOST, 100, 104).unwrap().capacity(), 2);
    }

    #[tokio::test]
    async fn even_ports_rtcp_above_and_exhaustion() {
        let pool = PortPool::new(LOCALHOST, 31111, 31115).unwrap(); // pairs 31112, 31114
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        for pair in [&a, &b] {
            assert_eq!(pair.port % 2, 0);
            assert_eq!(pair.rtp.local_addr().unwrap().port(), pair.port);
            assert_eq!(pair.rtcp.local_addr().unwrap().port(), pair.port + 1);
            assert_eq!(pair.rtp.local_addr().unwrap().ip(), LOCALHOST);
        }
        assert_ne!(a.port, b.port);
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

    #[tokio::test]
    async fn ports_return_on_drop() {
        let pool = Arc::new(PortPool::new(LOCALHOST, 31120, 31123).unwrap());
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert!(pool.allocate().is_err());
        let freed = a.port;
        drop(a);
        assert_eq!(pool.in_use(), 1);
        let again = pool.allocate().unwrap();
        assert_eq!(again.port, freed);
        drop((b, again));
        assert_eq!(pool.in_use(), 0);
        // Many rounds through a tiny pool: nothing leaks.
        for _ in 0..50 {
            let x = pool.allocate().unwrap();
            let y = pool.allocate().unwrap();
            assert_ne!(x.port, y.port);
        }
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn skips_ports_taken_by_others() {
        let pool = PortPool::new(LOCALHOST, 31130, 31135).unwrap();
        let squatter_rtp = std::net::UdpSocket::bind((LOCALHOST, 31130)).unwrap();
        let squatter_rtcp = std::net::UdpSocket::bind((LOCALHOST, 31133)).unwrap();
        let pair = pool.allocate().unwrap();
        assert_eq!(pair.port, 31134);
        assert!(matches!(
            pool.allocate(),
            Err(MediaError::PoolExhausted { .. })
        ));
        // Skipped ports were not marked: once free, they are used again.
        drop((squatter_rtp, squatter_rtcp));
        let next = pool.allocate().unwrap();
        let last = pool.allocate().unwrap();
        let mut got = [next.port, last.port];
        got.sort_unstable();
        assert_eq!(got, [31130, 31132]);
    }

    #[tokio::test]
    async fn pairs_are_handed_out_at_random() {
        let pool = PortPool::new(LOCALHOST, 31150, 31349).unwrap(); // 100 pairs
        let mut runs = Vec::new();
        for _ in 0..3 {
            let pairs: Vec<PortPair> = (0..10).map(|_| pool.allocate().unwrap()).collect();
            let ports: Vec<u16> = pairs.iter().map(|p| p.port).collect();
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

    #[tokio::test]
    async fn bind_failure_is_an_error() {
        // TEST-NET-1 is not a local address.
        let pool = PortPool::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 31140, 31143).unwrap();
        assert!(matches!(pool.allocate(), Err(MediaError::Bind { .. })));
    }
}
