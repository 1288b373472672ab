//! Whole calls through one [`Switch`] with no I/O, for `benches/switch.rs`
//! (not for production use, hence hidden from the docs).
//!
//! A caller on one UDP flow and a callee behind the trunk play every
//! message of a call as SIPp's UAC and UAS scenarios do (INVITE, 100, 180,
//! 200 with SDP, ACK, BYE from the caller, 200 from the callee); route
//! lookups are answered at once. Time is simulated: each call moves it on
//! by `1 / rate`, and the timers due by then fire, so the transactions
//! that linger to absorb retransmissions (32 s over UDP) pile up as they
//! would at that rate.

use std::time::{Duration, Instant};

use super::{RouteResult, Switch, SwitchConfig, SwitchEvent, Transmit};
use crate::b2bua::{MediaPorts, TrunkPeer};
use crate::clock::Timestamp;
use crate::phone::E164;
use crate::routing::Route;
use crate::sip::Timers;
use crate::store::Side;
use crate::transport::{Flow, Inbound};

/// Our address, written into Via and Contact.
const LOCAL: &str = "198.51.100.10:5060";
const CALLER: &str = "192.0.2.10:5060";
const TRUNK: &str = "192.0.2.50:5060";
const A_SDP: &str = "v=0\r\no=caller 111 111 IN IP4 10.9.8.7\r\ns=-\r\nc=IN IP4 10.9.8.7\r\n\
    t=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
const B_SDP: &str = "v=0\r\no=callee 222 222 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\n\
    t=0 0\r\nm=audio 50000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

/// A switch and its two parties; see the module docs.
#[derive(Debug)]
pub struct SwitchBench {
    /// The switch under test.
    sw: Switch,
    /// Simulated time.
    now: Instant,
    /// Simulated wall-clock time, for the call records.
    wall: Timestamp,
    /// How far one call moves time on.
    step: Duration,
    /// The caller's flow.
    caller: Flow,
    /// The trunk's flow.
    trunk: Flow,
    /// Transmits of the current step, taken apart by flow.
    sent: Vec<Transmit>,
    /// Events seen, ever (route lookups answered, the rest counted).
    pub events: u64,
}

impl SwitchBench {
    /// Shard `shard` of `shards`, at `rate` calls per simulated second,
    /// with no limits.
    pub fn new(shard: usize, shards: usize, rate: u32) -> SwitchBench {
        Self::limited(shard, shards, rate, |_| {})
    }

    /// One switch at `rate` calls per simulated second with the default
    /// `[limits]` (`max_calls`, `max_transactions`,
    /// `max_lingering_transactions`), as `ansim serve` runs it.
    pub fn with_default_limits(rate: u32) -> SwitchBench {
        let limits = crate::config::Config::default_dev().limits;
        Self::limited(0, 1, rate, |cfg| {
            cfg.max_calls = limits.max_calls;
            cfg.max_transactions = limits.max_transactions;
            cfg.max_lingering = limits.max_lingering_transactions;
        })
    }

    /// Bytes per lingering transaction now (see
    /// [`crate::sip::LingerTable::bytes_per_entry`]).
    pub fn lingering_bytes_per_entry(&self) -> usize {
        self.sw.lingering.bytes_per_entry()
    }

    fn limited(
        shard: usize,
        shards: usize,
        rate: u32,
        limit: impl FnOnce(&mut SwitchConfig),
    ) -> SwitchBench {
        let trunk_addr = TRUNK.parse().unwrap_or_else(|_| unreachable!());
        let caller = Flow::Udp {
            socket: 0,
            remote: CALLER.parse().unwrap_or_else(|_| unreachable!()),
        };
        let trunk = Flow::Udp {
            socket: 0,
            remote: trunk_addr,
        };
        let mut cfg = SwitchConfig {
            domain: "ansim.example".into(),
            local_sip: LOCAL.parse().unwrap_or_else(|_| unreachable!()),
            trunks: vec![TrunkPeer::udp("carrier", trunk_addr)],
            advertise: "203.0.113.5".parse().unwrap_or_else(|_| unreachable!()),
            unknown_caller_status: 404,
            max_duration: Duration::from_secs(3600),
            no_answer_timeout: Duration::from_secs(60),
            max_calls: usize::MAX,
            max_transactions: usize::MAX,
            max_lingering: usize::MAX,
            timers: Timers::default(),
            dialog_timers: crate::b2bua::DialogTimers::default(),
            fallback: None,
            announce: None,
        };
        limit(&mut cfg);
        SwitchBench {
            sw: Switch::new(shard, shards, cfg),
            now: Instant::now(),
            wall: Timestamp::from_millis(1_700_000_000_000),
            step: Duration::from_secs(1) / rate.max(1),
            caller,
            trunk,
            sent: Vec::new(),
            events: 0,
        }
    }

    /// Transactions and calls the switch holds now.
    pub fn stats(&self) -> super::SwitchStats {
        self.sw.stats()
    }

    /// One whole call, `n` naming it (its Call-ID, tag and branches).
    pub fn call(&mut self, n: u64) -> Result<(), String> {
        self.tick();
        let (caller, trunk) = (self.caller.clone(), self.trunk.clone());
        self.feed(&caller, invite(n));
        if let Ok(refused) = self.take_to(&caller, "SIP/2.0 503") {
            return Err(format!("refused: {}", refused.lines().next().unwrap_or("")));
        }
        let b_invite = self.take_to(&trunk, "INVITE")?;
        for (code, sdp) in [(100, None), (180, None), (200, Some(B_SDP))] {
            self.feed(&trunk, reply(&b_invite, code, sdp));
        }
        let ok = self.take_to(&caller, "SIP/2.0 200")?;
        let our_tag = header(&ok, "To")
            .and_then(|to| to.split(";tag=").nth(1))
            .ok_or("no To tag in the 200")?
            .to_owned();
        self.feed(&caller, in_dialog(n, "ACK", 1, &our_tag));
        self.sent.clear();
        self.feed(&caller, in_dialog(n, "BYE", 2, &our_tag));
        let b_bye = self.take_to(&trunk, "BYE")?;
        self.feed(&trunk, reply(&b_bye, 200, None));
        self.take_to(&caller, "SIP/2.0 200")?;
        self.sent.clear();
        Ok(())
    }

    /// Moves time on by one step and fires the timers due.
    fn tick(&mut self) {
        self.now += self.step;
        self.wall = self.wall.saturating_add(self.step);
        if self.sw.poll_timeout().is_some_and(|at| at <= self.now) {
            self.sw.handle_timeout(self.now, self.wall);
            self.collect();
        }
    }

    /// Hands `message` to the switch as received on `flow`, answering any
    /// route lookup it asks for.
    fn feed(&mut self, flow: &Flow, message: String) {
        let inbound = Inbound {
            flow: flow.clone(),
            data: message.into_bytes(),
        };
        self.sw.handle_inbound(self.now, self.wall, inbound);
        self.collect();
    }

    fn collect(&mut self) {
        loop {
            while let Some(t) = self.sw.poll_transmit() {
                self.sent.push(t);
            }
            let Some(ev) = self.sw.poll_event() else {
                return;
            };
            self.events += 1;
            if let SwitchEvent::RouteLookup { id, .. } = ev {
                self.sw.handle_routed(self.now, self.wall, id, routed());
            }
        }
    }

    /// Takes the first message to `flow` starting with `start`, as text.
    fn take_to(&mut self, flow: &Flow, start: &str) -> Result<String, String> {
        let found = self
            .sent
            .iter()
            .position(|t| t.flow == *flow && t.bytes.starts_with(start.as_bytes()))
            .ok_or_else(|| format!("nothing starting {start:?} was sent"))?;
        let t = self.sent.remove(found);
        String::from_utf8(t.bytes).map_err(|e| e.to_string())
    }
}

fn routed() -> RouteResult {
    let number = |n: &str| E164::parse(n).unwrap_or_else(|_| unreachable!());
    RouteResult::Routed {
        route: Route {
            session_id: "ses_bench".into(),
            caller_side: Side::A,
            callee: number("+821099990000"),
            caller_id: number("+827070001111"),
            expires_at: Timestamp::from_millis(4_000_000_000_000),
            record: false,
            retention_class: "dispute-3y".into(),
        },
        ports: MediaPorts {
            a_side: 30000,
            b_side: 30002,
        },
    }
}

/// The caller's INVITE of call `n`, as SIPp's uac scenario sends it.
fn invite(n: u64) -> String {
    format!(
        "INVITE sip:+827070001111@198.51.100.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.9.8.7:5099;branch=z9hG4bK-{n}-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+821012345678@10.9.8.7>;tag={n}\r\n\
         To: <sip:+827070001111@198.51.100.10>\r\n\
         Call-ID: {n}-bench@10.9.8.7\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:+821012345678@10.9.8.7:5099>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{A_SDP}",
        A_SDP.len()
    )
}

/// The caller's ACK or BYE of call `n`.
fn in_dialog(n: u64, method: &str, cseq: u32, our_tag: &str) -> String {
    format!(
        "{method} sip:ansim@198.51.100.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.9.8.7:5099;branch=z9hG4bK-{n}-{cseq}{method};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+821012345678@10.9.8.7>;tag={n}\r\n\
         To: <sip:+827070001111@198.51.100.10>;tag={our_tag}\r\n\
         Call-ID: {n}-bench@10.9.8.7\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The callee's response `code` to `request` (text), with a To tag.
fn reply(request: &str, code: u16, sdp: Option<&str>) -> String {
    let mut out = format!("SIP/2.0 {code} Whatever\r\n");
    for line in request.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line.split(':').next().unwrap_or_default();
        match name {
            "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "To" if code > 100 && !line.contains(";tag=") => {
                out.push_str(line);
                out.push_str(";tag=callee\r\n");
            }
            "To" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Contact: <sip:callee@10.1.1.1:5060>\r\n");
    match sdp {
        Some(sdp) => out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out
}

/// The value of header `name` in a message's text.
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}
