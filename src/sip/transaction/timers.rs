//! RFC 3261 Appendix A timer values and a small retransmission backoff.

use std::time::{Duration, Instant};

/// Transaction timer configuration (RFC 3261 Appendix A, RFC 6026 §8.7).
///
/// Derived timers are methods; those that exist only to absorb
/// retransmissions over unreliable transports (D, I, J, K) take
/// `reliable` and return zero on TCP/TLS, as the RFC says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, default 5 s.
    pub t4: Duration,
    /// Timer D on unreliable transports ("at least 32 s"), default 32 s.
    pub d_unreliable: Duration,
    /// Delay before an INVITE server transaction sends `100 Trying` on its
    /// own if the TU has not answered (RFC 3261 §17.2.1), default 200 ms.
    /// Zero sends it immediately when the transaction is created.
    pub trying_delay: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d_unreliable: Duration::from_secs(32),
            trying_delay: Duration::from_millis(200),
        }
    }
}

fn unless(reliable: bool, d: Duration) -> Duration {
    if reliable { Duration::ZERO } else { d }
}

impl Timers {
    /// 64*T1, the transaction timeout (timers B, F, H, L; J unreliable).
    pub fn t1_x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
    /// Timer A initial value (INVITE request retransmit, unreliable only).
    pub fn timer_a(&self) -> Duration {
        self.t1
    }
    /// Timer B: INVITE client transaction timeout.
    pub fn timer_b(&self) -> Duration {
        self.t1_x64()
    }
    /// Timer D: wait for response retransmits after a non-2xx final.
    pub fn timer_d(&self, reliable: bool) -> Duration {
        unless(reliable, self.d_unreliable)
    }
    /// Timer E initial value (non-INVITE request retransmit).
    pub fn timer_e(&self) -> Duration {
        self.t1
    }
    /// Timer F: non-INVITE client transaction timeout.
    pub fn timer_f(&self) -> Duration {
        self.t1_x64()
    }
    /// Timer G initial value (INVITE non-2xx response retransmit).
    pub fn timer_g(&self) -> Duration {
        self.t1
    }
    /// Timer H: wait for ACK.
    pub fn timer_h(&self) -> Duration {
        self.t1_x64()
    }
    /// Timer I: absorb ACK retransmits.
    pub fn timer_i(&self, reliable: bool) -> Duration {
        unless(reliable, self.t4)
    }
    /// Timer J: absorb non-INVITE request retransmits.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        unless(reliable, self.t1_x64())
    }
    /// Timer K: absorb non-INVITE response retransmits.
    pub fn timer_k(&self, reliable: bool) -> Duration {
        unless(reliable, self.t4)
    }
    /// Timer L (RFC 6026): INVITE server transaction lingers in Accepted.
    pub fn timer_l(&self) -> Duration {
        self.t1_x64()
    }
}

/// A retransmission timer whose interval doubles, optionally up to a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// When it next fires.
    pub(crate) at: Instant,
    /// The interval that will follow the next firing (before doubling).
    pub(crate) interval: Duration,
    cap: Option<Duration>,
}

impl Backoff {
    /// First firing at `now + initial`.
    pub(crate) fn new(now: Instant, initial: Duration, cap: Option<Duration>) -> Self {
        Self {
            at: now + initial,
            interval: initial,
            cap,
        }
    }

    /// Call when it fired at `now`: doubles (capped) and re-arms.
    pub(crate) fn fire(&mut self, now: Instant) {
        let doubled = self.interval.saturating_mul(2);
        self.interval = self.cap.map_or(doubled, |cap| doubled.min(cap));
        self.at = now + self.interval;
    }

    /// Makes every later interval `interval` (the next firing is kept).
    pub(crate) fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
        self.cap = Some(interval);
    }
}

/// True if the optional deadline has passed.
pub(crate) fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|at| at <= now)
}

/// The earliest of several optional deadlines.
pub(crate) fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_derived() {
        let t = Timers::default();
        assert_eq!(t.timer_b(), Duration::from_secs(32));
        assert_eq!(t.timer_d(false), Duration::from_secs(32));
        assert_eq!(t.timer_d(true), Duration::ZERO);
        assert_eq!(t.timer_j(false), Duration::from_secs(32));
        assert_eq!(t.timer_k(true), Duration::ZERO);
        assert_eq!(t.timer_i(false), Duration::from_secs(5));
    }

    #[test]
    fn backoff_caps() {
        let t0 = Instant::now();
        let mut b = Backoff::new(t0, Duration::from_secs(1), Some(Duration::from_secs(4)));
        let mut fired = Vec::new();
        for _ in 0..5 {
            fired.push(b.at - t0);
            b.fire(b.at);
        }
        let secs: Vec<u64> = fired.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![1, 3, 7, 11, 15]);
    }
}
