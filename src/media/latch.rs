//! Symmetric RTP latching: learning where a peer really sends from.
//!
//! Policy (one [`Latch`] per leg and per socket, RTP and RTCP apart):
//! - the first valid packet latches its source address;
//! - a packet from the latched address refreshes it;
//! - a packet from another address re-latches only if the latched address
//!   has been silent for at least the idle time (2 s by default, see
//!   [`crate::media::RelayConfig`]); otherwise the latch is kept (the packet is
//!   still relayed, it just does not move the target).
//!
//! The clock is injected (`now` is passed in), so the policy is tested
//! without waiting.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The latched source of one socket of one leg.
#[derive(Debug, Clone)]
pub(crate) struct Latch {
    /// The latched address and when it last sent a valid packet.
    current: Option<(SocketAddr, Instant)>,
    /// How long the latched address must be silent before another may take over.
    idle: Duration,
}

impl Latch {
    /// A latch with nothing learnt yet.
    pub(crate) fn new(idle: Duration) -> Latch {
        Latch {
            current: None,
            idle,
        }
    }

    /// The latched address, if any.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.current.map(|(addr, _)| addr)
    }

    /// Records a valid packet from `src` at `now`; returns `true` if the
    /// latched address changed (first latch or re-latch).
    pub(crate) fn observe(&mut self, src: SocketAddr, now: Instant) -> bool {
        match &mut self.current {
            Some((addr, last)) if *addr == src => {
                *last = now;
                false
            }
            Some((_, last)) if now.saturating_duration_since(*last) < self.idle => false,
            _ => {
                self.current = Some((src, now));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn first_packet_latches() {
        let mut l = Latch::new(Duration::from_secs(2));
        assert_eq!(l.addr(), None);
        assert!(l.observe(addr(1000), Instant::now()));
        assert_eq!(l.addr(), Some(addr(1000)));
    }

    #[test]
    fn other_source_does_not_steal_while_latched_is_active() {
        let t0 = Instant::now();
        let mut l = Latch::new(Duration::from_secs(2));
        l.observe(addr(1000), t0);
        assert!(!l.observe(addr(2000), t0 + Duration::from_millis(500)));
        l.observe(addr(1000), t0 + Duration::from_millis(1500));
        // 1.9 s after the last packet from the latched address: still kept.
        assert!(!l.observe(addr(2000), t0 + Duration::from_millis(3400)));
        assert_eq!(l.addr(), Some(addr(1000)));
    }

    #[test]
    fn relatches_after_idle() {
        let t0 = Instant::now();
        let mut l = Latch::new(Duration::from_secs(2));
        l.observe(addr(1000), t0);
        // Packets from the intruder do not refresh the latched address' clock.
        assert!(!l.observe(addr(2000), t0 + Duration::from_secs(1)));
        assert!(l.observe(addr(2000), t0 + Duration::from_secs(2)));
        assert_eq!(l.addr(), Some(addr(2000)));
        // The old address is now the stranger.
        assert!(!l.observe(addr(1000), t0 + Duration::from_millis(2100)));
        assert_eq!(l.addr(), Some(addr(2000)));
    }

    #[test]
    fn clock_going_backwards_is_not_idle() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut l = Latch::new(Duration::from_secs(2));
        l.observe(addr(1000), t0);
        assert!(!l.observe(addr(2000), t0 - Duration::from_secs(5)));
    }
}
