//! The source check at the edge: who may reach the SIP engine at all.
//!
//! Every datagram and every accepted connection is checked here *before*
//! anything is parsed. A source inside `[trunk] allow` is the trunk and
//! goes on to the engine. Anyone else is an outsider:
//! - a TCP/TLS connection from an outsider is closed at accept;
//! - a datagram from an outsider is, within a small budget
//!   (`[sip] outsider_replies_per_second`, per source), answered with a
//!   `403` built here, and otherwise dropped silently and counted. So a
//!   scanner learns little, a flood costs us a hash look-up per datagram,
//!   and nothing of it ever shares a queue with the trunk's traffic.
//! - Responses are the exception: a response from a trunk's *address*
//!   (where we send B-leg requests) is the trunk answering us, whether or
//!   not that address is in `allow`.
//!
//! [`OutsiderLimiter`] is the budget: a token bucket per source address in
//! a table of bounded size, so spoofed sources cannot grow memory; beyond
//! the table's size, unknown sources share one global bucket. It is sans-IO
//! (`now` is passed in) and tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::TransportCounters;

/// Sources tracked one by one before they share the global budget.
pub const OUTSIDER_TABLE: usize = 4096;

/// What to do with a datagram from some source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The trunk: hand it to the engine.
    Pass,
    /// An outsider within its budget: answer a request with `403`.
    Refuse,
    /// An outsider beyond its budget (or a response from one): drop.
    Drop,
}

/// Decides what happens to traffic from a source; shared by every socket.
#[derive(Debug)]
pub struct SourceGate {
    /// Who may send requests (`[trunk] allow`).
    allow: Vec<IpNet>,
    /// Where we send requests: responses from there are always let in.
    peers: Vec<IpAddr>,
    /// The outsiders' budget.
    limiter: Mutex<OutsiderLimiter>,
    /// What the check did.
    counters: Arc<TransportCounters>,
    /// When an outsider was last logged (one line per ten seconds).
    last_log: Mutex<Option<Instant>>,
}

impl SourceGate {
    /// A gate letting `allow` in (and responses from `peers`), answering
    /// outsiders at most `replies_per_second` times per second each.
    pub fn new(
        allow: Vec<IpNet>,
        peers: Vec<IpAddr>,
        replies_per_second: u32,
        counters: Arc<TransportCounters>,
    ) -> SourceGate {
        SourceGate {
            allow,
            peers,
            limiter: Mutex::new(OutsiderLimiter::new(replies_per_second, OUTSIDER_TABLE)),
            counters,
            last_log: Mutex::new(None),
        }
    }

    /// Whether an outsider seen at `now` should be logged: at most one
    /// line per ten seconds, so a flood cannot fill the log.
    pub fn should_log(&self, now: Instant) -> bool {
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(10));
        if due {
            *last = Some(now);
        }
        due
    }

    /// Whether `ip` is the trunk (inside `[trunk] allow`).
    pub fn is_trunk(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip))
    }

    /// The verdict on a datagram `data` from `ip` received at `now`.
    pub fn datagram(&self, ip: IpAddr, data: &[u8], now: Instant) -> Verdict {
        if self.is_trunk(ip) {
            return Verdict::Pass;
        }
        if crate::sip::peek::is_response(data) {
            if self.peers.contains(&ip) {
                return Verdict::Pass;
            }
            self.count_dropped();
            return Verdict::Drop;
        }
        let allowed = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(ip, now);
        if allowed {
            Verdict::Refuse
        } else {
            self.count_dropped();
            Verdict::Drop
        }
    }

    /// Counts a `403` actually sent.
    pub fn count_reply(&self) {
        self.counters
            .outsider_replies
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a datagram dropped (over budget, or unanswerable).
    pub fn count_dropped(&self) {
        self.counters
            .outsider_dropped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an outsider's connection closed at accept.
    pub fn count_connection(&self) {
        self.counters
            .outsider_connections
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// One token bucket: `tokens` left as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left (each is one reply).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// How many replies outsiders get: per source, and for everyone beyond
/// the table's size together.
#[derive(Debug)]
pub struct OutsiderLimiter {
    /// Tokens per second (also the burst size, at least one token).
    rate: f64,
    /// Tracked sources.
    table: HashMap<IpAddr, Bucket>,
    /// Most sources tracked one by one.
    capacity: usize,
    /// Shared by sources that find the table full.
    global: Bucket,
    /// When idle buckets were last removed from the table.
    last_sweep: Option<Instant>,
}

impl OutsiderLimiter {
    /// `rate` replies per second per source (0: never); at most
    /// `capacity` sources tracked one by one.
    pub fn new(rate: u32, capacity: usize) -> OutsiderLimiter {
        let rate = f64::from(rate);
        OutsiderLimiter {
            rate,
            table: HashMap::new(),
            capacity,
            global: Bucket {
                tokens: rate.max(1.0),
                at: Instant::now(),
            },
            last_sweep: None,
        }
    }

    /// Sources tracked now (bounded by the capacity).
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Whether `ip` may get one more reply at `now` (and takes it).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        self.sweep(now);
        let burst = self.rate.max(1.0);
        if !self.table.contains_key(&ip) && self.table.len() >= self.capacity {
            return take(&mut self.global, self.rate, burst, now);
        }
        let bucket = self.table.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        take(bucket, self.rate, burst, now)
    }

    /// Once a second, forgets sources whose bucket has refilled: they are
    /// back to where a new source starts, so forgetting them is exact.
    fn sweep(&mut self, now: Instant) {
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if !due {
            return;
        }
        self.last_sweep = Some(now);
        let (rate, burst) = (self.rate, self.rate.max(1.0));
        self.table
            .retain(|_, b| refilled(b, rate, burst, now) < burst);
    }
}

/// The bucket's tokens at `now`, without taking any.
fn refilled(bucket: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

/// Takes one token from `bucket` at `now` if there is one.
fn take(bucket: &mut Bucket, rate: f64, burst: f64, now: Instant) -> bool {
    bucket.tokens = refilled(bucket, rate, burst, now);
    bucket.at = bucket.at.max(now);
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_source_gets_its_rate_and_no_more() {
        let t0 = Instant::now();
        let mut l = OutsiderLimiter::new(2, 16);
        let granted = (0..100).filter(|_| l.allow(ip(1), t0)).count();
        assert_eq!(granted, 2, "a burst of the rate");
        // Half a second later: one more token.
        assert!(l.allow(ip(1), t0 + Duration::from_millis(500)));
        assert!(!l.allow(ip(1), t0 + Duration::from_millis(500)));
        // Over ten seconds of flooding: about the rate, never more.
        let granted = (0..10_000)
            .filter(|i| l.allow(ip(1), t0 + Duration::from_millis(500 + i)))
            .count();
        assert!((19..=21).contains(&granted), "{granted}");
        // Another source has its own budget.
        assert!(l.allow(ip(2), t0));
    }

    #[test]
    fn zero_means_never() {
        let mut l = OutsiderLimiter::new(0, 16);
        assert!(!l.allow(ip(1), Instant::now()));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn spoofed_sources_share_one_budget_beyond_the_table() {
        let t0 = Instant::now();
        let mut l = OutsiderLimiter::new(2, 100);
        let granted = (0..100_000).filter(|&n| l.allow(ip(n), t0)).count();
        assert_eq!(l.tracked(), 100, "the table never grows past its size");
        // One reply for each of the 100 tracked sources, then the shared
        // budget's burst of 2 for the other 99,900.
        assert_eq!(granted, 100 + 2);
    }

    #[test]
    fn idle_sources_are_forgotten() {
        let t0 = Instant::now();
        let mut l = OutsiderLimiter::new(2, 100);
        for n in 0..100 {
            l.allow(ip(n), t0);
        }
        assert_eq!(l.tracked(), 100);
        // A second later every bucket has refilled: the sweep forgets them
        // and new sources get budgets of their own again.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.allow(ip(5000), t1));
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn gate_passes_the_trunk_and_responses_from_its_address() {
        let counters = Arc::new(TransportCounters::default());
        let gate = SourceGate::new(
            vec!["192.0.2.0/24".parse().unwrap()],
            vec!["198.51.100.7".parse().unwrap()],
            1,
            counters.clone(),
        );
        let now = Instant::now();
        let request = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let response = b"SIP/2.0 200 OK\r\n\r\n";
        let trunk = "192.0.2.9".parse().unwrap();
        let peer = "198.51.100.7".parse().unwrap();
        let stranger = "203.0.113.1".parse().unwrap();
        assert_eq!(gate.datagram(trunk, request, now), Verdict::Pass);
        assert_eq!(gate.datagram(peer, response, now), Verdict::Pass);
        assert_eq!(gate.datagram(peer, request, now), Verdict::Refuse);
        assert_eq!(gate.datagram(stranger, response, now), Verdict::Drop);
        assert_eq!(gate.datagram(stranger, request, now), Verdict::Refuse);
        assert_eq!(gate.datagram(stranger, request, now), Verdict::Drop);
        assert_eq!(counters.outsider_dropped.load(Ordering::Relaxed), 2);
    }
}
