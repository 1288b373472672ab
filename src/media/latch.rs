//! Who may send media on a leg: the source check at the relay's edge.
//!
//! Every datagram a leg's socket receives is first checked against that
//! socket's [`Latch`] ([`Latch::admits`]), *before* it is classified,
//! relayed or shown to the recorder. A datagram from any other source is
//! foreign: dropped and counted, so a stranger who sprays RTP at the port
//! range never reaches the other party or the recording (the "RTP bleed"
//! class of bug).
//!
//! Two policies ([`SourcePolicy`], `[media] source`):
//! - **`sdp`** (the default): only the IP address the leg's SDP connection
//!   line names may send. The port is latched from the first valid packet
//!   from that IP (a phone's RTP source port is usually, but not always,
//!   its SDP port); afterwards only that `ip:port` is admitted. A new SDP
//!   from the leg (re-INVITE, UPDATE, the 200 after a 183) sets the IP
//!   again and lets the port be learnt again. An SDP without a usable
//!   address (`0.0.0.0` hold) changes nothing.
//! - **`learn`** (peers behind NAT, whose SDP names a private address):
//!   after each offer/answer the leg is *learning* for a window
//!   (`[media] learn_window`); the first valid packet within it latches its
//!   source and ends the window. Outside the window only the latched
//!   source is admitted (strict). An offer/answer on either leg opens the
//!   window on both, because each party starts sending once it has our
//!   answer; a party that keeps talking re-latches to itself at once.
//!
//! Before its first SDP (or first window) a leg admits nothing.
//! RTP and RTCP have a latch each. The clock is injected (`now`), so the
//! policy is tested without waiting.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How a leg's media source is decided (`[media] source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePolicy {
    /// Only from the IP in the leg's SDP; the port from its first packet.
    #[default]
    Sdp,
    /// The first valid packet within `window` after an offer/answer.
    Learn {
        /// How long a leg learns after each offer/answer.
        window: Duration,
    },
}

/// The admitted source of one socket (RTP or RTCP) of one leg.
#[derive(Debug, Clone)]
pub(crate) struct Latch {
    /// The configured policy.
    policy: SourcePolicy,
    /// `sdp`: the IP the leg's latest usable SDP named.
    sdp_ip: Option<IpAddr>,
    /// The source admitted from now on (and where the leg's media goes).
    latched: Option<SocketAddr>,
    /// `learn`: until when another source may still be latched.
    learn_until: Option<Instant>,
}

impl Latch {
    /// A latch that admits nothing until the first offer/answer.
    pub(crate) fn new(policy: SourcePolicy) -> Latch {
        Latch {
            policy,
            sdp_ip: None,
            latched: None,
            learn_until: None,
        }
    }

    /// The latched address, if any.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// An offer/answer took place at `now`. `sdp` is the address this
    /// leg's own SDP named when it was this leg's SDP that crossed, `None`
    /// when it was the other leg's.
    pub(crate) fn offer_answer(&mut self, sdp: Option<IpAddr>, now: Instant) {
        match self.policy {
            SourcePolicy::Sdp => {
                if let Some(ip) = sdp.filter(|ip| !ip.is_unspecified()) {
                    self.sdp_ip = Some(ip);
                    self.latched = None;
                }
            }
            SourcePolicy::Learn { window } => self.learn_until = now.checked_add(window),
        }
    }

    /// Whether a datagram from `src` at `now` may be looked at at all.
    pub(crate) fn admits(&self, src: SocketAddr, now: Instant) -> bool {
        if self.latched == Some(src) {
            return true;
        }
        match self.policy {
            SourcePolicy::Sdp => self.latched.is_none() && self.sdp_ip == Some(src.ip()),
            SourcePolicy::Learn { .. } => self.learn_until.is_some_and(|until| now < until),
        }
    }

    /// Records a valid packet from an admitted `src` at `now`; returns
    /// `true` if the latched address changed.
    pub(crate) fn latch(&mut self, src: SocketAddr, now: Instant) -> bool {
        if !self.admits(src, now) {
            return false;
        }
        // Learning ends with the first valid packet, whoever sent it.
        self.learn_until = None;
        let changed = self.latched != Some(src);
        self.latched = Some(src);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, host], port))
    }

    fn ip(host: u8) -> Option<IpAddr> {
        Some(addr(host, 0).ip())
    }

    const WINDOW: Duration = Duration::from_secs(10);

    fn learn() -> Latch {
        Latch::new(SourcePolicy::Learn { window: WINDOW })
    }

    #[test]
    fn nothing_is_admitted_before_the_first_offer_answer() {
        let t0 = Instant::now();
        for mut l in [Latch::new(SourcePolicy::Sdp), learn()] {
            assert!(!l.admits(addr(1, 1000), t0));
            assert!(!l.latch(addr(1, 1000), t0));
            assert_eq!(l.addr(), None);
        }
    }

    #[test]
    fn sdp_admits_only_the_sdp_ip_and_then_only_the_latched_port() {
        let t0 = Instant::now();
        let mut l = Latch::new(SourcePolicy::Sdp);
        l.offer_answer(ip(1), t0);
        assert!(!l.admits(addr(2, 1000), t0), "another IP is foreign");
        assert!(l.admits(addr(1, 1000), t0));
        assert!(
            l.admits(addr(1, 2000), t0),
            "any port of the SDP IP until latched"
        );
        assert!(l.latch(addr(1, 1000), t0));
        assert_eq!(l.addr(), Some(addr(1, 1000)));
        assert!(l.admits(addr(1, 1000), t0 + Duration::from_secs(3600)));
        assert!(
            !l.admits(addr(1, 2000), t0),
            "same IP, other port: foreign once latched"
        );
        assert!(!l.latch(addr(2, 1000), t0));
        assert_eq!(l.addr(), Some(addr(1, 1000)));
    }

    #[test]
    fn sdp_new_address_relearns_and_hold_changes_nothing() {
        let t0 = Instant::now();
        let mut l = Latch::new(SourcePolicy::Sdp);
        l.offer_answer(ip(1), t0);
        l.latch(addr(1, 1000), t0);
        // The other leg's SDP and a 0.0.0.0 hold leave it as it is.
        l.offer_answer(None, t0);
        l.offer_answer(Some(IpAddr::from([0, 0, 0, 0])), t0);
        assert_eq!(l.addr(), Some(addr(1, 1000)));
        assert!(!l.admits(addr(3, 1000), t0));
        // A re-INVITE moving the party to another address.
        l.offer_answer(ip(3), t0);
        assert_eq!(l.addr(), None);
        assert!(
            !l.admits(addr(1, 1000), t0),
            "the old address is foreign now"
        );
        assert!(l.latch(addr(3, 5000), t0));
        assert!(!l.admits(addr(3, 5002), t0));
    }

    #[test]
    fn learn_latches_the_first_valid_packet_in_the_window_then_is_strict() {
        let t0 = Instant::now();
        let mut l = learn();
        l.offer_answer(None, t0);
        assert!(l.admits(addr(7, 1000), t0 + Duration::from_secs(1)));
        assert!(l.latch(addr(7, 1000), t0 + Duration::from_secs(1)));
        // Strict now, even inside what was the window.
        assert!(!l.admits(addr(8, 1000), t0 + Duration::from_secs(2)));
        assert!(!l.latch(addr(8, 1000), t0 + Duration::from_secs(2)));
        assert!(l.admits(addr(7, 1000), t0 + Duration::from_secs(3600)));
        assert_eq!(l.addr(), Some(addr(7, 1000)));
    }

    #[test]
    fn learn_relatches_only_after_a_new_offer_answer() {
        let t0 = Instant::now();
        let mut l = learn();
        l.offer_answer(None, t0);
        l.latch(addr(7, 1000), t0);
        let t1 = t0 + Duration::from_secs(60);
        assert!(
            !l.admits(addr(9, 1000), t1),
            "a silent owner does not lose its latch"
        );
        l.offer_answer(None, t1);
        assert!(
            l.admits(addr(9, 1000), t1),
            "a new offer/answer opens the window"
        );
        assert!(l.latch(addr(9, 1000), t1));
        assert!(
            !l.admits(addr(7, 1000), t1),
            "the old source is foreign now"
        );
        // The owner speaking first in a new window keeps its latch.
        l.offer_answer(None, t1);
        assert!(!l.latch(addr(9, 1000), t1), "unchanged");
        assert!(!l.admits(addr(7, 1000), t1), "window closed by the owner");
    }

    #[test]
    fn learn_window_expires_without_a_packet() {
        let t0 = Instant::now();
        let mut l = learn();
        l.offer_answer(None, t0);
        assert!(l.admits(addr(7, 1000), t0 + WINDOW - Duration::from_millis(1)));
        assert!(!l.admits(addr(7, 1000), t0 + WINDOW));
        assert!(!l.latch(addr(7, 1000), t0 + WINDOW));
        assert_eq!(l.addr(), None);
        // An earlier latch survives an expired window.
        l.offer_answer(None, t0);
        l.latch(addr(7, 1000), t0);
        l.offer_answer(None, t0 + WINDOW);
        assert!(!l.admits(addr(8, 1000), t0 + WINDOW * 2));
        assert_eq!(l.addr(), Some(addr(7, 1000)));
    }
}
