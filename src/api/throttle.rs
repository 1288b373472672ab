//! Throttling of failed bearer-token attempts, per client address.
//!
//! A token is 256 random bits, so guessing one is hopeless; but each guess
//! still costs us a database lookup, and a client that keeps sending bad
//! tokens is up to no good. After `[api] auth_failures_per_minute` failed
//! attempts (an unknown or a disabled token; a missing token is not an
//! attempt) from one address in a window of a minute, every request from
//! that address that carries a token is refused with 429 until the window
//! is over, *before* its token is looked up.
//!
//! [`AuthFailureLimiter`] is the rule itself, sans-IO: it is told the time
//! (`now`) and never reads a clock, so its tests move time by hand.
//! [`AuthThrottle`] shares one limiter between the API's requests.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::Timestamp;

/// How long a window lasts: failures are counted per minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Most client addresses tracked at once. Beyond it, addresses that are not
/// tracked share one window (see [`AuthFailureLimiter`]), so memory stays
/// bounded whatever number of addresses an attacker has.
pub const MAX_TRACKED: usize = 4096;

/// How often, at most, a full table is swept for windows that are over.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The answer for an address that has failed too often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Time until the address's window is over (at least one second, so
    /// that it can be sent as `Retry-After` in whole seconds).
    pub retry_after: Duration,
}

/// One address's (or the shared overflow's) failures in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// When the window's first failure happened; it ends [`WINDOW`] later.
    started: Timestamp,
    /// Failures counted since `started`.
    failures: u32,
}

impl Window {
    fn new(now: Timestamp) -> Self {
        Window {
            started: now,
            failures: 0,
        }
    }

    fn ends(&self) -> Timestamp {
        self.started.saturating_add(WINDOW)
    }

    fn is_over(&self, now: Timestamp) -> bool {
        now >= self.ends()
    }

    /// `Some` when this window has used up `limit` failures and is not over.
    fn throttled(&self, limit: u32, now: Timestamp) -> Option<Throttled> {
        if self.is_over(now) || self.failures < limit {
            return None;
        }
        let left_ms = self.ends().as_millis().saturating_sub(now.as_millis());
        // Whole seconds, rounded up; a wall clock set back must not make a
        // client wait longer than a window.
        let secs = u64::try_from(left_ms).unwrap_or(0).div_ceil(1000);
        let secs = secs.clamp(1, WINDOW.as_secs());
        Some(Throttled {
            retry_after: Duration::from_secs(secs),
        })
    }

    /// Counts one failure at `now`, starting a fresh window if this one is over.
    fn record(&mut self, now: Timestamp) {
        if self.is_over(now) {
            *self = Window::new(now);
        }
        self.failures = self.failures.saturating_add(1);
    }
}

/// Counts failed token attempts per client address in windows of a minute.
///
/// The window of an address opens at its first failure and lasts
/// [`WINDOW`]; once it holds `limit` failures, [`check`](Self::check)
/// refuses that address until it is over. At most `capacity` addresses
/// are tracked: when the table is full (after dropping windows that are
/// over), every address that is not in it shares one overflow window. An
/// attacker with more addresses than that can therefore throttle token
/// requests from addresses we have never seen fail, but never buys more
/// than `limit` guesses per minute for all of those addresses together.
#[derive(Debug)]
pub struct AuthFailureLimiter {
    /// Failures allowed per window (`[api] auth_failures_per_minute`).
    limit: u32,
    /// Most addresses in `windows` ([`MAX_TRACKED`] outside tests).
    capacity: usize,
    /// Tracked addresses (see [`client_key`]) and their current window.
    windows: HashMap<IpAddr, Window>,
    /// The window shared by untracked addresses while the table is full.
    overflow: Window,
    /// Earliest time a full table is swept again: sweeping costs a pass
    /// over the table, so a flood of new addresses does not pay it on
    /// every failure.
    next_sweep: Timestamp,
}

impl AuthFailureLimiter {
    /// A limiter allowing `limit` failures per address per minute, tracking
    /// at most `capacity` addresses.
    pub fn new(limit: u32, capacity: usize) -> Self {
        AuthFailureLimiter {
            limit,
            capacity,
            windows: HashMap::new(),
            overflow: Window::new(Timestamp::from_millis(i64::MIN)),
            next_sweep: Timestamp::from_millis(i64::MIN),
        }
    }

    /// Whether a request carrying a token from `ip` may have its token
    /// checked at `now`, or must be refused without looking.
    pub fn check(&self, ip: IpAddr, now: Timestamp) -> Result<(), Throttled> {
        let key = client_key(ip);
        let window = match self.windows.get(&key) {
            Some(w) => w,
            None if self.windows.len() >= self.capacity => &self.overflow,
            None => return Ok(()),
        };
        match window.throttled(self.limit, now) {
            Some(t) => Err(t),
            None => Ok(()),
        }
    }

    /// Records a failed attempt (an unknown or a disabled token) from `ip`.
    pub fn record_failure(&mut self, ip: IpAddr, now: Timestamp) {
        let key = client_key(ip);
        if let Some(window) = self.windows.get_mut(&key) {
            window.record(now);
            return;
        }
        if self.windows.len() >= self.capacity && now >= self.next_sweep {
            self.windows.retain(|_, w| !w.is_over(now));
            self.next_sweep = now.saturating_add(SWEEP_EVERY);
        }
        if self.windows.len() < self.capacity {
            let mut window = Window::new(now);
            window.record(now);
            self.windows.insert(key, window);
        } else {
            self.overflow.record(now);
        }
    }

    /// How many addresses are tracked now.
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

/// The address a client is counted under: an IPv4 address, or the /64
/// network of an IPv6 one (a single host commonly holds a whole /64, so
/// counting its addresses one by one would give it 2^64 windows).
/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(network))
        }
    }
}

/// One [`AuthFailureLimiter`] shared by all of the API's requests. The lock
/// is held for a hash lookup, never across an `await`.
#[derive(Debug)]
pub struct AuthThrottle {
    /// The rule and its table.
    limiter: Mutex<AuthFailureLimiter>,
}

impl AuthThrottle {
    /// A throttle allowing `failures_per_minute` failed attempts per address,
    /// tracking up to [`MAX_TRACKED`] addresses.
    pub fn new(failures_per_minute: u32) -> Self {
        AuthThrottle {
            limiter: Mutex::new(AuthFailureLimiter::new(failures_per_minute, MAX_TRACKED)),
        }
    }

    /// See [`AuthFailureLimiter::check`].
    pub fn check(&self, ip: IpAddr, now: Timestamp) -> Result<(), Throttled> {
        self.lock().check(ip, now)
    }

    /// See [`AuthFailureLimiter::record_failure`].
    pub fn record_failure(&self, ip: IpAddr, now: Timestamp) {
        self.lock().record_failure(ip, now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthFailureLimiter> {
        // A panic elsewhere while holding the lock leaves a usable table.
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_795_910_400_000);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn at(secs: f64) -> Timestamp {
        Timestamp::from_millis(T0.as_millis() + (secs * 1000.0) as i64)
    }

    #[test]
    fn the_limit_th_failure_throttles_until_the_window_is_over() {
        let mut l = AuthFailureLimiter::new(3, 16);
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert_eq!(l.check(a, at(i as f64)), Ok(()), "attempt {i}");
            l.record_failure(a, at(i as f64));
        }
        // The window opened at the first failure (t = 0) and ends at t = 60.
        let t = l.check(a, at(2.0)).unwrap_err();
        assert_eq!(t.retry_after, Duration::from_secs(58));
        let t = l.check(a, at(59.2)).unwrap_err();
        assert_eq!(t.retry_after, Duration::from_secs(1), "rounded up");
        assert_eq!(l.check(a, at(60.0)), Ok(()), "the window is over");
        // A new window: three more failures are allowed from t = 60.
        l.record_failure(a, at(60.0));
        l.record_failure(a, at(61.0));
        assert_eq!(l.check(a, at(61.0)), Ok(()));
        l.record_failure(a, at(62.0));
        assert!(l.check(a, at(62.0)).is_err());
        assert_eq!(l.check(a, at(120.0)), Ok(()));
    }

    #[test]
    fn addresses_are_counted_apart() {
        let mut l = AuthFailureLimiter::new(1, 16);
        l.record_failure(ip("192.0.2.1"), T0);
        assert!(l.check(ip("192.0.2.1"), T0).is_err());
        assert_eq!(l.check(ip("192.0.2.2"), T0), Ok(()));
        assert_eq!(l.check(ip("2001:db8::1"), T0), Ok(()));
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_client_and_mapped_ipv4_as_ipv4() {
        let mut l = AuthFailureLimiter::new(2, 16);
        l.record_failure(ip("2001:db8:1:2::1"), T0);
        l.record_failure(ip("2001:db8:1:2:ffff::9"), T0);
        assert!(l.check(ip("2001:db8:1:2::77"), T0).is_err());
        assert_eq!(l.check(ip("2001:db8:1:3::1"), T0), Ok(()));
        assert_eq!(l.tracked(), 1);

        l.record_failure(ip("::ffff:192.0.2.7"), T0);
        l.record_failure(ip("192.0.2.7"), T0);
        assert!(l.check(ip("192.0.2.7"), T0).is_err());
        assert!(l.check(ip("::ffff:192.0.2.7"), T0).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_untracked_addresses_share_one_window() {
        let mut l = AuthFailureLimiter::new(2, 4);
        for i in 1..=4 {
            l.record_failure(ip(&format!("192.0.2.{i}")), T0);
        }
        assert_eq!(l.tracked(), 4);
        // Full: new addresses go to the shared overflow window.
        l.record_failure(ip("198.51.100.1"), at(1.0));
        l.record_failure(ip("198.51.100.2"), at(1.0));
        assert_eq!(l.tracked(), 4, "never more than the capacity");
        let t = l.check(ip("198.51.100.3"), at(1.0)).unwrap_err();
        assert_eq!(t.retry_after, Duration::from_secs(60));
        // Tracked addresses keep their own windows: one failure each so far.
        assert_eq!(l.check(ip("192.0.2.1"), at(1.0)), Ok(()));
        // Thousands more addresses do not grow the table.
        for i in 0..5000u32 {
            l.record_failure(IpAddr::from(i.to_be_bytes()), at(2.0));
        }
        assert_eq!(l.tracked(), 4);
        assert!(l.check(ip("203.0.113.9"), at(2.0)).is_err());
    }

    #[test]
    fn windows_that_are_over_make_room_for_new_addresses() {
        let mut l = AuthFailureLimiter::new(1, 2);
        let (a, b, c, d, e) = (
            ip("192.0.2.1"),
            ip("192.0.2.2"),
            ip("192.0.2.3"),
            ip("192.0.2.4"),
            ip("192.0.2.5"),
        );
        l.record_failure(a, at(0.0));
        l.record_failure(b, at(0.5));
        // a's window is over at t = 60: the sweep frees its place for c.
        l.record_failure(c, at(60.2));
        assert_eq!(l.tracked(), 2);
        assert!(l.check(c, at(60.2)).is_err());
        // b's window is over too at 60.7, but the last sweep was under a
        // second ago: d goes to the shared window.
        l.record_failure(d, at(60.7));
        assert_eq!(l.tracked(), 2);
        assert!(
            l.check(ip("203.0.113.1"), at(60.7)).is_err(),
            "overflow used"
        );
        assert_eq!(l.check(b, at(60.7)), Ok(()), "b's window is over");
        // A second later the next sweep drops b, and e gets its own window.
        l.record_failure(e, at(61.3));
        assert_eq!(l.tracked(), 2);
        assert!(l.check(e, at(61.3)).is_err());
        assert!(
            l.check(b, at(61.3)).is_err(),
            "b is untracked now: the shared window applies to it"
        );
    }

    #[test]
    fn a_clock_set_back_never_asks_for_more_than_a_window() {
        let mut l = AuthFailureLimiter::new(1, 4);
        l.record_failure(ip("192.0.2.1"), at(100.0));
        let t = l.check(ip("192.0.2.1"), at(0.0)).unwrap_err();
        assert_eq!(t.retry_after, WINDOW);
    }

    #[test]
    fn the_shared_throttle_applies_the_rule() {
        let t = AuthThrottle::new(1);
        t.record_failure(ip("127.0.0.1"), T0);
        assert!(t.check(ip("127.0.0.1"), T0).is_err());
        assert!(t.check(ip("127.0.0.2"), T0).is_ok());
    }
}
