//! The trunks of a switch: which one a source belongs to (for its number
//! plan), the order B-legs try them in, and their OPTIONS keep-alives,
//! sans-IO.
//!
//! A trunk with a `keepalive` interval is sent `OPTIONS` at that interval
//! (the first at start). Any response but `503` within
//! [`PROBE_TIMEOUT`] (or the interval, if shorter) marks it up; a `503`,
//! no answer in time, or a transport error toward it marks it down. A
//! trunk without keep-alives is always up. B-legs try the trunks that are
//! up by priority, then those that are down (a down trunk is still better
//! than no call).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::config::Transport;
use crate::phone::NumberPlan;
use crate::sip::headers::core_values;
use crate::sip::{new_branch, new_tag};

/// Longest wait for the answer to a probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A trunk, as the switch needs it (`[trunk]` / `[[trunks]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkPeer {
    /// Its name (metrics, logs).
    pub name: String,
    /// Where its B-legs and probes go.
    pub address: SocketAddr,
    /// Who it calls from.
    pub allow: Vec<IpNet>,
    /// How we reach it.
    pub transport: Transport,
    /// How it writes numbers.
    pub numbers: NumberPlan,
    /// OPTIONS interval; `None` = not probed.
    pub keepalive: Option<Duration>,
}

impl TrunkPeer {
    /// A UDP trunk at `address` that also calls from its IP, E.164, not
    /// probed.
    pub fn udp(name: &str, address: SocketAddr) -> TrunkPeer {
        TrunkPeer {
            name: name.to_owned(),
            address,
            allow: vec![IpNet::from(address.ip())],
            transport: Transport::Udp,
            numbers: NumberPlan::default(),
            keepalive: None,
        }
    }
}

/// The state of one trunk.
#[derive(Debug)]
struct TrunkState {
    peer: TrunkPeer,
    up: bool,
    next_probe: Option<Instant>,
    /// The outstanding probe: its Call-ID and when it times out.
    probe: Option<(String, Instant)>,
}

/// A probe to send: to trunk `trunk`, one whole OPTIONS request.
#[derive(Debug)]
pub(super) struct Probe {
    pub(super) trunk: usize,
    pub(super) bytes: Vec<u8>,
}

/// Every trunk of a switch, in priority order (as configured).
#[derive(Debug)]
pub(super) struct TrunkSet {
    trunks: Vec<TrunkState>,
    /// Our SIP address and domain, for the probes' Via and From.
    local_sip: SocketAddr,
    domain: String,
    /// The switch's shard: probe Call-IDs hash to it, so that their
    /// answers come back to the switch that sent them.
    shard: super::Shard,
}

impl TrunkSet {
    pub(super) fn new(peers: Vec<TrunkPeer>, local_sip: SocketAddr, domain: String) -> TrunkSet {
        let trunks = peers
            .into_iter()
            .map(|peer| TrunkState {
                peer,
                up: true,
                next_probe: None,
                probe: None,
            })
            .collect();
        TrunkSet {
            trunks,
            local_sip,
            domain,
            shard: super::Shard::SOLE,
        }
    }

    /// Draws probe Call-IDs that `shard` owns.
    pub(super) fn set_shard(&mut self, shard: super::Shard) {
        self.shard = shard;
    }

    /// Trunk `index`, if there is one.
    pub(super) fn peer(&self, index: usize) -> Option<&TrunkPeer> {
        self.trunks.get(index).map(|t| &t.peer)
    }

    /// The trunk a request from `ip` came from: the first (best) whose
    /// `allow` holds it.
    pub(super) fn source_of(&self, ip: IpAddr) -> Option<&TrunkPeer> {
        self.trunks
            .iter()
            .map(|t| &t.peer)
            .find(|p| p.allow.iter().any(|net| net.contains(&ip)))
    }

    /// The order a new B-leg tries the trunks in: those up, then those
    /// down, each by priority.
    pub(super) fn order(&self) -> Vec<usize> {
        let (up, down): (Vec<usize>, Vec<usize>) =
            (0..self.trunks.len()).partition(|&i| self.trunks[i].up);
        up.into_iter().chain(down).collect()
    }

    /// Each trunk's name and whether it is up.
    pub(super) fn states(&self) -> impl Iterator<Item = (&str, bool)> {
        self.trunks.iter().map(|t| (t.peer.name.as_str(), t.up))
    }

    /// Schedules the first probe of every probed trunk at `now`.
    pub(super) fn start(&mut self, now: Instant) {
        for t in &mut self.trunks {
            if t.peer.keepalive.is_some() && t.next_probe.is_none() {
                t.next_probe = Some(now);
            }
        }
    }

    /// When [`TrunkSet::handle_timeout`] must next run.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.trunks
            .iter()
            .flat_map(|t| [t.next_probe, t.probe.as_ref().map(|p| p.1)])
            .flatten()
            .min()
    }

    /// Times out unanswered probes and returns the probes due.
    pub(super) fn handle_timeout(&mut self, now: Instant) -> Vec<Probe> {
        let mut due = Vec::new();
        for i in 0..self.trunks.len() {
            let Some(t) = self.trunks.get_mut(i) else {
                continue;
            };
            if t.probe.as_ref().is_some_and(|p| p.1 <= now) {
                t.probe = None;
                set_up(t, false);
            }
            let (Some(at), Some(interval)) = (t.next_probe, t.peer.keepalive) else {
                continue;
            };
            if at > now {
                continue;
            }
            t.next_probe = Some(now + interval);
            let call_id = self.probe_call_id();
            let (bytes, timeout) = (self.options(i, &call_id), interval.min(PROBE_TIMEOUT));
            if let Some(t) = self.trunks.get_mut(i) {
                t.probe = Some((call_id, now + timeout));
            }
            due.push(Probe { trunk: i, bytes });
        }
        due
    }

    /// A fresh probe Call-ID of this switch's shard.
    fn probe_call_id(&self) -> String {
        loop {
            let id = format!("keepalive-{}", new_tag());
            if self.shard.owns(&id) {
                return id;
            }
        }
    }

    /// A response: `true` if it answers one of our probes (and is used up).
    pub(super) fn on_response(&mut self, call_id: &str, status: u16) -> bool {
        let Some(t) = self
            .trunks
            .iter_mut()
            .find(|t| t.probe.as_ref().is_some_and(|p| p.0 == call_id))
        else {
            return call_id.starts_with("keepalive-");
        };
        if status < 200 {
            return true;
        }
        t.probe = None;
        set_up(t, status != 503);
        true
    }

    /// A transport error toward trunk `index` (its connection could not
    /// be made): down, if it is probed.
    pub(super) fn transport_failed(&mut self, index: usize) {
        if let Some(t) = self.trunks.get_mut(index)
            && t.peer.keepalive.is_some()
        {
            t.probe = None;
            set_up(t, false);
        }
    }

    /// The OPTIONS probe for trunk `index`.
    fn options(&self, index: usize, call_id: &str) -> Vec<u8> {
        let Some(t) = self.trunks.get(index) else {
            return Vec::new();
        };
        let (target, local) = (t.peer.address, self.local_sip);
        format!(
            "OPTIONS sip:{target} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch={};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:ansim@{}>;tag={}\r\n\
             To: <sip:{target}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Accept: application/sdp\r\n\
             Content-Length: 0\r\n\r\n",
            via_transport(t.peer.transport),
            new_branch(),
            self.domain,
            new_tag(),
        )
        .into_bytes()
    }
}

fn set_up(t: &mut TrunkState, up: bool) {
    if t.up != up {
        let name = &t.peer.name;
        if up {
            tracing::info!(trunk = %name, "trunk answers OPTIONS again: up");
        } else {
            tracing::warn!(trunk = %name, "trunk does not answer OPTIONS: down");
        }
    }
    t.up = up;
}

/// The Via transport token for `transport`.
pub(super) fn via_transport(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    }
}

/// The Call-ID of a response, for [`TrunkSet::on_response`].
pub(super) fn call_id_of(headers: &rsip::Headers) -> Option<&str> {
    core_values(headers).call_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keepalives: &[Option<u64>]) -> TrunkSet {
        let peers = keepalives
            .iter()
            .enumerate()
            .map(|(i, k)| TrunkPeer {
                keepalive: k.map(Duration::from_secs),
                ..TrunkPeer::udp(
                    &format!("t{i}"),
                    format!("192.0.2.{}:5060", i + 1).parse().unwrap(),
                )
            })
            .collect();
        TrunkSet::new(
            peers,
            "192.0.2.100:5060".parse().unwrap(),
            "ansim.test".into(),
        )
    }

    fn call_id(probe: &Probe) -> String {
        let text = String::from_utf8(probe.bytes.clone()).unwrap();
        let line = text.lines().find(|l| l.starts_with("Call-ID: ")).unwrap();
        line["Call-ID: ".len()..].to_owned()
    }

    fn ups(s: &TrunkSet) -> Vec<bool> {
        s.states().map(|(_, up)| up).collect()
    }

    #[test]
    fn probes_go_out_at_the_interval_and_mark_trunks() {
        let t0 = Instant::now();
        let mut s = set(&[Some(10), None]);
        assert_eq!(s.poll_timeout(), None, "nothing before start");
        s.start(t0);
        assert_eq!(s.poll_timeout(), Some(t0));
        let probes = s.handle_timeout(t0);
        assert_eq!(probes.len(), 1, "only the probed trunk");
        let text = String::from_utf8(probes[0].bytes.clone()).unwrap();
        assert!(
            text.starts_with("OPTIONS sip:192.0.2.1:5060 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(crate::sip::parse_datagram(&probes[0].bytes).is_ok());
        assert_eq!(s.poll_timeout(), Some(t0 + PROBE_TIMEOUT));
        // Unanswered: down at the probe timeout; then B-legs try it last.
        assert!(s.handle_timeout(t0 + PROBE_TIMEOUT).is_empty());
        assert_eq!(ups(&s), [false, true]);
        assert_eq!(s.order(), [1, 0]);
        // The next probe is answered (even 404 means it is there).
        let probes = s.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(probes.len(), 1);
        assert!(
            s.on_response(&call_id(&probes[0]), 100),
            "provisional: still waiting"
        );
        assert!(s.on_response(&call_id(&probes[0]), 404));
        assert_eq!(ups(&s), [true, true]);
        assert_eq!(s.order(), [0, 1]);
        // 503 is down; a late answer to a finished probe is still ours.
        let probes = s.handle_timeout(t0 + Duration::from_secs(20));
        assert!(s.on_response(&call_id(&probes[0]), 503));
        assert_eq!(ups(&s), [false, true]);
        assert!(
            s.on_response(&call_id(&probes[0]), 200),
            "a stray probe answer is swallowed"
        );
        assert_eq!(ups(&s), [false, true]);
        assert!(!s.on_response("abc@host", 200), "not a probe");
    }

    #[test]
    fn transport_errors_mark_probed_trunks_down() {
        let mut s = set(&[Some(10), None]);
        s.transport_failed(0);
        s.transport_failed(1);
        s.transport_failed(7);
        assert_eq!(
            ups(&s),
            [false, true],
            "an unprobed trunk has no state to lose"
        );
    }

    #[test]
    fn sources_find_their_trunk() {
        let s = set(&[None, None]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            s.source_of(ip("192.0.2.2")).map(|p| p.name.as_str()),
            Some("t1")
        );
        assert!(s.source_of(ip("198.51.100.1")).is_none());
    }
}
