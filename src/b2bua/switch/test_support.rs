//! An in-memory rig for switch tests: the carrier's flows, simulated time,
//! route lookups answered by hand, and everything the switch transmitted,
//! where to, as text.
//!
//! The caller's messages come from [`carrier`] (or a TCP flow), the
//! callee's from and to [`trunk`]. The caller is the identity-laden one of
//! [`crate::b2bua::test_support`]; the callee answers as `btag-callee` from
//! 10.1.1.1.

use std::time::{Duration, Instant};

use rsip::{Request, Response, SipMessage};

use super::{CallRef, CdrOp, LookupId, RouteResult, Switch, SwitchConfig, SwitchEvent};
use crate::b2bua::MediaPorts;
use crate::b2bua::test_support::{A_SDP, a_invite, body_text, reply_to, text};
use crate::clock::Timestamp;
use crate::phone::E164;
use crate::routing::Route;
use crate::sip::headers::{core_values, tag_of};
use crate::sip::{Timers, parse_datagram};
use crate::store::Side;
use crate::transport::{Flow, Inbound};

/// Where B-legs go (`[trunk] address`).
pub(super) const TRUNK: &str = "192.0.2.50:5060";
/// Where the carrier's requests come from.
pub(super) const CARRIER: &str = "192.0.2.10:5060";

pub(super) const PORTS: MediaPorts = MediaPorts {
    a_side: 30000,
    b_side: 30002,
};

pub(super) fn cfg() -> SwitchConfig {
    SwitchConfig {
        domain: "ansim.example".into(),
        local_sip: "198.51.100.10:5060".parse().unwrap(),
        trunks: vec![crate::b2bua::TrunkPeer {
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            ..crate::b2bua::TrunkPeer::udp("carrier", TRUNK.parse().unwrap())
        }],
        advertise: "203.0.113.5".parse().unwrap(),
        unknown_caller_status: 404,
        max_duration: Duration::from_secs(3600),
        no_answer_timeout: Duration::from_secs(60),
        max_calls: 10,
        max_transactions: 100,
        max_lingering: 10_000,
        timers: Timers::default(),
        dialog_timers: crate::b2bua::DialogTimers::default(),
        fallback: None,
        announce: None,
    }
}

/// The UDP flow of the caller's side of the carrier.
pub(super) fn carrier() -> Flow {
    Flow::Udp {
        socket: 0,
        remote: CARRIER.parse().unwrap(),
    }
}

/// The UDP flow of the trunk, where B-legs go and the callee answers from.
pub(super) fn trunk() -> Flow {
    Flow::Udp {
        socket: 0,
        remote: TRUNK.parse().unwrap(),
    }
}

/// The route of the customer calling the master.
pub(super) fn route() -> Route {
    Route {
        session_id: "ses_test".into(),
        caller_side: Side::A,
        callee: E164::parse("+821099990000").unwrap(),
        caller_id: E164::parse("+827070001111").unwrap(),
        expires_at: Timestamp::from_millis(4_000_000_000_000),
        record: false,
        retention_class: "dispute-3y".into(),
    }
}

pub(super) fn routed() -> RouteResult {
    RouteResult::Routed {
        route: route(),
        ports: PORTS,
    }
}

/// The caller's INVITE ([`a_invite`]) with its Call-ID, From tag and Via
/// branch replaced.
pub(super) fn invite(call_id: &str, tag: &str, branch: &str) -> String {
    text(a_invite())
        .replace("aleg-callid@10.9.8.7", call_id)
        .replace("atag-secret", tag)
        .replace("z9hG4bK-aleg", branch)
}

/// The default caller's INVITE, as [`a_invite`] has it.
pub(super) fn default_invite() -> String {
    text(a_invite())
}

/// One dialog of a caller, as it writes its requests.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub(super) call_id: String,
    pub(super) tag: String,
    /// Our To tag, once the caller has a response with it.
    pub(super) our_tag: Option<String>,
}

impl Caller {
    /// The default caller of [`a_invite`].
    pub(super) fn default_one() -> Caller {
        Caller {
            call_id: "aleg-callid@10.9.8.7".into(),
            tag: "atag-secret".into(),
            our_tag: None,
        }
    }

    /// A request of the caller in its dialog (with our tag in To if
    /// known), with `sdp` as the body.
    pub(super) fn request(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        sdp: Option<&str>,
    ) -> String {
        let to = match &self.our_tag {
            // A CANCEL's To is its INVITE's (RFC 3261 §9.1).
            Some(tag) if method != "CANCEL" => {
                format!("<sip:+827070001111@198.51.100.10>;tag={tag}")
            }
            _ => "<sip:+827070001111@198.51.100.10>".into(),
        };
        let uri = match method {
            "CANCEL" => "sip:+827070001111@198.51.100.10:5060",
            _ => "sip:ansim@198.51.100.10:5060",
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.9.8.7:5099;branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Kim Minsu\" <sip:+821012345678@10.9.8.7>;tag={}\r\n\
             To: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:+821012345678@10.9.8.7:5099>\r\n{}",
            self.tag,
            self.call_id,
            body_text(sdp)
        )
    }
}

/// A switch under test.
pub(super) struct Rig {
    pub(super) sw: Switch,
    pub(super) now: Instant,
    pub(super) wall: Timestamp,
    /// Everything transmitted and not taken yet, in order.
    pub(super) sent: Vec<(Flow, String)>,
    /// Every event not taken yet, in order.
    pub(super) events: Vec<SwitchEvent>,
}

impl Rig {
    pub(super) fn new() -> Rig {
        Rig::with(cfg())
    }

    pub(super) fn with(cfg: SwitchConfig) -> Rig {
        Rig::sharded(0, 1, cfg)
    }

    pub(super) fn sharded(shard: usize, shards: usize, cfg: SwitchConfig) -> Rig {
        Rig {
            sw: Switch::new(shard, shards, cfg),
            now: Instant::now(),
            wall: Timestamp::from_millis(1_700_000_000_000),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Hands `message` to the switch as received on `flow`.
    pub(super) fn feed(&mut self, flow: &Flow, message: &str) {
        let inbound = Inbound {
            flow: flow.clone(),
            data: message.as_bytes().to_vec(),
        };
        self.sw.handle_inbound(self.now, self.wall, inbound);
        self.collect();
    }

    /// Answers route lookup `id`.
    pub(super) fn answer(&mut self, id: LookupId, result: RouteResult) -> Option<CallRef> {
        let call = self.sw.handle_routed(self.now, self.wall, id, result);
        self.collect();
        call
    }

    /// Runs every timer due within `d`, in order, and moves time on by `d`.
    pub(super) fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(at) = self.sw.poll_timeout().filter(|at| *at <= until) {
            let step = at.saturating_duration_since(self.now);
            self.now = self.now.max(at);
            self.wall = self.wall.saturating_add(step);
            self.sw.handle_timeout(self.now, self.wall);
            self.collect();
        }
        let rest = until.saturating_duration_since(self.now);
        self.wall = self.wall.saturating_add(rest);
        self.now = until;
    }

    pub(super) fn collect(&mut self) {
        while let Some(t) = self.sw.poll_transmit() {
            let bytes = String::from_utf8(t.bytes).expect("SIP we send is UTF-8");
            self.sent.push((t.flow, bytes));
        }
        while let Some(ev) = self.sw.poll_event() {
            self.events.push(ev);
        }
    }

    /// Takes what was sent to `flow`.
    pub(super) fn sent_to(&mut self, flow: &Flow) -> Vec<String> {
        let (to, rest) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|(f, _)| f == flow);
        self.sent = rest;
        to.into_iter().map(|(_, m)| m).collect()
    }

    /// Takes what was sent to the caller (on `flow`), as status codes,
    /// learning our tag from them.
    pub(super) fn codes_to(&mut self, flow: &Flow, caller: &mut Caller) -> Vec<u16> {
        let responses: Vec<Response> = self.sent_to(flow).iter().map(|m| response(m)).collect();
        for r in &responses {
            let to = core_values(&r.headers).to.and_then(tag_of);
            if let (None, Some(tag), true) = (&caller.our_tag, to, r.status_code.code() > 100) {
                caller.our_tag = Some(tag.to_owned());
            }
        }
        responses.iter().map(|r| r.status_code.code()).collect()
    }

    /// Takes the requests sent to the trunk.
    pub(super) fn sent_to_trunk(&mut self) -> Vec<Request> {
        self.sent_to(&trunk()).iter().map(|m| request(m)).collect()
    }

    /// Takes the events.
    pub(super) fn take_events(&mut self) -> Vec<SwitchEvent> {
        std::mem::take(&mut self.events)
    }

    /// Takes the events and returns the id of the one route lookup.
    pub(super) fn lookup(&mut self) -> LookupId {
        let ids: Vec<LookupId> = self
            .take_events()
            .iter()
            .filter_map(|e| match e {
                SwitchEvent::RouteLookup { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(ids.len(), 1, "one route lookup expected");
        ids[0]
    }

    /// Takes the call-record writes.
    pub(super) fn records(&mut self) -> Vec<CdrOp> {
        let (records, rest) = self
            .take_events()
            .into_iter()
            .partition(|e| matches!(e, SwitchEvent::CallRecord(_)));
        self.events = rest;
        records
            .into_iter()
            .filter_map(|e| match e {
                SwitchEvent::CallRecord(op) => Some(op),
                _ => None,
            })
            .collect()
    }

    /// The callee answers `req` (sent to the trunk) with `code`.
    pub(super) fn callee_answers(
        &mut self,
        req: &Request,
        code: u16,
        extra: &str,
        sdp: Option<&str>,
    ) {
        let resp = reply_to(req, code, "btag-callee", extra, sdp);
        self.feed(&trunk(), &text(resp));
    }

    /// A caller's INVITE on `flow`, routed: returns the call and the
    /// B-leg INVITE, with every transmit and event taken.
    pub(super) fn routed_call(&mut self, flow: &Flow, invite: &str) -> (CallRef, Request) {
        self.feed(flow, invite);
        let id = self.lookup();
        let call = self.answer(id, routed()).expect("a call");
        let b_invite = self.sent_to_trunk().remove(0);
        self.sent.clear();
        self.events.clear();
        (call, b_invite)
    }

    /// The default caller's call, answered and ACKed: the caller (with
    /// our tag), the call and the B-leg INVITE.
    pub(super) fn answered_call(&mut self) -> (Caller, CallRef, Request) {
        let (call, b_invite) = self.routed_call(&carrier(), &default_invite());
        let mut caller = Caller::default_one();
        self.callee_answers(&b_invite, 180, CALLEE_EXTRA, None);
        self.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
        assert_eq!(self.codes_to(&carrier(), &mut caller), vec![180, 200]);
        self.feed(
            &carrier(),
            &caller.request("ACK", 10, "z9hG4bK-ack10", None),
        );
        self.sent.clear();
        self.events.clear();
        (caller, call, b_invite)
    }
}

pub(super) use crate::b2bua::test_support::{B_SDP, CALLEE_EXTRA};

/// Our SDP as the caller offers it, for re-INVITEs.
pub(super) fn caller_sdp(direction: &str) -> String {
    A_SDP.replace("a=sendrecv", direction)
}

pub(super) fn request(text: &str) -> Request {
    match parse_datagram(text.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("not a request ({other:?}): {text}"),
    }
}

pub(super) fn response(text: &str) -> Response {
    match parse_datagram(text.as_bytes()) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("not a response ({other:?}): {text}"),
    }
}

/// The status codes of `messages`.
pub(super) fn codes(messages: &[String]) -> Vec<u16> {
    messages
        .iter()
        .map(|m| response(m).status_code.code())
        .collect()
}

/// The methods of `requests`.
pub(super) fn methods(requests: &[Request]) -> Vec<rsip::Method> {
    requests.iter().map(|r| r.method).collect()
}

/// The value of header `name` in a message's text.
pub(super) fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_default()
}

/// A request of the callee in the B dialog of `b_invite` (our INVITE to
/// it), with `sdp` as the body.
pub(super) fn callee_request(
    b_invite: &Request,
    method: &str,
    cseq: u32,
    sdp: Option<&str>,
) -> String {
    let core = core_values(&b_invite.headers);
    let (from, to, call_id) = (
        core.from.unwrap_or_default(),
        core.to.unwrap_or_default(),
        core.call_id.unwrap_or_default(),
    );
    format!(
        "{method} sip:ansim@198.51.100.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK-b{method}{cseq}\r\n\
         From: {to};tag=btag-callee\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:callee@10.1.1.1:5060>\r\nServer: CalleePBX\r\n{}",
        body_text(sdp)
    )
}
