//! Fixtures for the B2BUA tests: a caller's INVITE full of identity, a
//! callee answering from 10.1.1.1, and helpers to drive a [`Call`].

use std::time::{Duration, Instant};

use rsip::{Request, Response, SipMessage};

use super::{Action, Call, CallConfig, CallEvent, Leg, MediaPorts, Routing, TxnId};
use crate::phone::E164;
use crate::sip::headers::{core_values, tag_of, top_via};
use crate::sip::{parse_datagram, to_bytes};

pub(super) const A_SDP: &str = "v=0\r\no=caller 111 111 IN IP4 10.9.8.7\r\ns=Phone of +821012345678\r\n\
    c=IN IP4 10.9.8.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
    a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
    a=rtcp:40001 IN IP4 10.9.8.7\r\na=sendrecv\r\n";

pub(super) const B_SDP: &str = "v=0\r\no=callee 222 222 IN IP4 10.1.1.1\r\ns=-\r\n\
    c=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

pub(super) fn cfg() -> CallConfig {
    CallConfig {
        domain: "ansim.example".into(),
        local_sip: "198.51.100.10:5060".parse().unwrap(),
        trunks: vec![super::TrunkTarget {
            index: 0,
            address: "192.0.2.50:5060".parse().unwrap(),
            transport: crate::config::Transport::Udp,
            numbers: crate::phone::NumberPlan::default(),
        }],
        advertise: "203.0.113.5".parse().unwrap(),
        max_duration: Duration::from_secs(3600),
        no_answer_timeout: Duration::from_secs(60),
        dialog_timers: super::DialogTimers::default(),
        shard: super::Shard::SOLE,
    }
}

pub(super) const PORTS: MediaPorts = MediaPorts {
    a_side: 30000,
    b_side: 30002,
};

pub(super) fn routing() -> Routing {
    Routing {
        callee: E164::parse("+821099990000").unwrap(),
        caller_id: E164::parse("+827070001111").unwrap(),
        record: false,
    }
}

pub(super) fn parse(text: &str) -> SipMessage {
    parse_datagram(text.as_bytes()).unwrap_or_else(|e| panic!("fixture {e}: {text}"))
}

pub(super) fn request(text: &str) -> Request {
    match parse(text) {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("not a request"),
    }
}

pub(super) fn response(text: &str) -> Response {
    match parse(text) {
        SipMessage::Response(r) => r,
        SipMessage::Request(_) => panic!("not a response"),
    }
}

/// The caller's INVITE, full of identity and topology.
pub(super) fn a_invite() -> Request {
    request(&format!(
        "INVITE sip:+827070001111@198.51.100.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.9.8.7:5099;branch=z9hG4bK-aleg;rport\r\n\
         Record-Route: <sip:10.9.8.7:5099;lr>\r\n\
         Max-Forwards: 69\r\n\
         From: \"Kim Minsu\" <sip:+821012345678@10.9.8.7>;tag=atag-secret\r\n\
         To: <sip:+827070001111@198.51.100.10>\r\n\
         Call-ID: aleg-callid@10.9.8.7\r\n\
         CSeq: 10 INVITE\r\n\
         Contact: <sip:+821012345678@10.9.8.7:5099>\r\n\
         P-Asserted-Identity: \"Kim Minsu\" <sip:+821012345678@10.9.8.7>\r\n\
         Remote-Party-ID: <sip:+821012345678@10.9.8.7>;party=calling\r\n\
         Privacy: none\r\n\
         Diversion: <sip:+821012345678@10.9.8.7>;reason=unconditional\r\n\
         History-Info: <sip:+821012345678@10.9.8.7>;index=1\r\n\
         User-Agent: KimPhone/1.0\r\n\
         Organization: Kim Plumbing\r\n\
         X-Caller-Real: 821012345678\r\n\
         Supported: 100rel, timer\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{A_SDP}",
        A_SDP.len()
    ))
}

/// The caller's CANCEL of its INVITE.
pub(super) fn a_cancel() -> Request {
    request(
        "CANCEL sip:+827070001111@198.51.100.10:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.9.8.7:5099;branch=z9hG4bK-aleg;rport\r\n\
         From: \"Kim Minsu\" <sip:+821012345678@10.9.8.7>;tag=atag-secret\r\n\
         To: <sip:+827070001111@198.51.100.10>\r\n\
         Call-ID: aleg-callid@10.9.8.7\r\nCSeq: 10 CANCEL\r\nContent-Length: 0\r\n\r\n",
    )
}

pub(super) fn text(message: impl Into<SipMessage>) -> String {
    String::from_utf8(to_bytes(&message.into())).unwrap()
}

/// The server transaction of the caller's INVITE in [`Harness`] calls.
pub(super) const A_INVITE_TXN: TxnId = TxnId(1);

/// A call under test with simulated time.
pub(super) struct Harness {
    pub(super) call: Call,
    pub(super) now: Instant,
    /// The B-leg INVITE the call sent.
    pub(super) b_invite: Request,
    /// The last server transaction id handed out.
    last_txn: u64,
}

impl Harness {
    /// Creates the call; returns it with the actions of `Call::new`.
    pub(super) fn new() -> (Self, Vec<Action>) {
        Self::with(&a_invite(), cfg())
    }

    /// Creates the call for `invite` with `cfg`.
    pub(super) fn with(invite: &Request, cfg: CallConfig) -> (Self, Vec<Action>) {
        let now = Instant::now();
        let mut call = Call::new(now, A_INVITE_TXN, invite, routing(), PORTS, cfg).unwrap();
        let actions = drain(&mut call);
        let b_invite = sent(&actions, Leg::B)[0].clone();
        (
            Harness {
                call,
                now,
                b_invite,
                last_txn: A_INVITE_TXN.0,
            },
            actions,
        )
    }

    pub(super) fn drain(&mut self) -> Vec<Action> {
        drain(&mut self.call)
    }

    /// Feeds a request of the caller, as the driver does: an ACK bare,
    /// anything else through a new server transaction, whose id is
    /// returned (an ACK gets none, and a dummy id back).
    pub(super) fn caller_sends(&mut self, request: Request) -> TxnId {
        self.leg_sends(Leg::A, request)
    }

    /// Feeds a request of the callee, as [`Harness::caller_sends`].
    pub(super) fn callee_sends(&mut self, request: Request) -> TxnId {
        self.leg_sends(Leg::B, request)
    }

    fn leg_sends(&mut self, leg: Leg, request: Request) -> TxnId {
        if request.method == rsip::Method::Ack {
            self.call.handle_ack(self.now, leg, request);
            return TxnId(0);
        }
        self.last_txn += 1;
        let txn = TxnId(self.last_txn);
        match leg {
            Leg::A => self.call.handle_a_request(self.now, txn, request),
            Leg::B => self.call.handle_b_request(self.now, txn, request),
        }
        txn
    }

    /// The callee answers `req` (a request we sent on B) with `code`.
    pub(super) fn b_answer(
        &mut self,
        req: &Request,
        code: u16,
        extra: &str,
        sdp: Option<&str>,
    ) -> Vec<Action> {
        let resp = reply_to(req, code, "btag-callee", extra, sdp);
        self.call.handle_b_response(self.now, resp);
        self.drain()
    }

    /// The caller answers `req` (a request we sent on A) with `code`.
    pub(super) fn a_answer(&mut self, req: &Request, code: u16, sdp: Option<&str>) -> Vec<Action> {
        let resp = reply_to(req, code, "atag-secret", "", sdp);
        self.call.handle_a_response(self.now, resp);
        self.drain()
    }

    /// Runs the call to the confirmed state (180, 200 with B_SDP, ACK).
    pub(super) fn answered() -> Self {
        let (mut h, _) = Self::new();
        let invite = h.b_invite.clone();
        h.b_answer(&invite, 180, CALLEE_EXTRA, None);
        h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
        let ack = h.a_request("ACK", 10, None);
        h.caller_sends(ack);
        assert!(h.drain().is_empty());
        h
    }

    /// Our To tag on the A-leg.
    pub(super) fn a_tag(&self) -> String {
        self.call.a.local_tag().to_owned()
    }

    /// An in-dialog request from the caller.
    pub(super) fn a_request(&self, method: &str, cseq: u32, sdp: Option<&str>) -> Request {
        self.a_request_with(method, cseq, &body_text(sdp))
    }

    /// An in-dialog request from the caller, ending with `tail` (the body
    /// headers, blank line and body).
    pub(super) fn a_request_with(&self, method: &str, cseq: u32, tail: &str) -> Request {
        let tag = self.a_tag();
        request(&format!(
            "{method} sip:ansim@198.51.100.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.9.8.7:5099;branch=z9hG4bK-a{method}{cseq}\r\n\
             From: \"Kim Minsu\" <sip:+821012345678@10.9.8.7>;tag=atag-secret\r\n\
             To: <sip:+827070001111@198.51.100.10>;tag={tag}\r\n\
             Call-ID: aleg-callid@10.9.8.7\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:+821012345678@10.9.8.7:5099>\r\nUser-Agent: KimPhone/1.0\r\n{tail}"
        ))
    }

    /// An in-dialog request from the callee.
    pub(super) fn b_request(&self, method: &str, cseq: u32, sdp: Option<&str>) -> Request {
        let core = core_values(&self.b_invite.headers);
        let (from, to, call_id) = (
            core.from.unwrap_or_default(),
            core.to.unwrap_or_default(),
            core.call_id.unwrap_or_default(),
        );
        request(&format!(
            "{method} sip:ansim@198.51.100.10:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK-b{method}{cseq}\r\n\
             From: {to};tag=btag-callee\r\nTo: {from}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:callee@10.1.1.1:5060>\r\nServer: CalleePBX\r\n{}",
            body_text(sdp)
        ))
    }
}

/// Headers the callee's responses carry, none of which may reach the caller.
pub(super) const CALLEE_EXTRA: &str = "Contact: <sip:+821099990000@10.1.1.1:5060>\r\n\
    Record-Route: <sip:10.1.1.1;lr>\r\nServer: CalleePBX/9\r\n\
    P-Asserted-Identity: <sip:+821099990000@10.1.1.1>\r\nOrganization: Callee Inc\r\n";

pub(super) fn body_text(sdp: Option<&str>) -> String {
    match sdp {
        Some(sdp) => format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
        None => "Content-Length: 0\r\n\r\n".into(),
    }
}

/// A response to `req` as its peer would send it.
pub(super) fn reply_to(
    req: &Request,
    code: u16,
    tag: &str,
    extra: &str,
    sdp: Option<&str>,
) -> Response {
    let core = core_values(&req.headers);
    let to = core.to.unwrap_or_default();
    let to = if tag_of(to).is_some() || code == 100 {
        to.to_owned()
    } else {
        format!("{to};tag={tag}")
    };
    response(&format!(
        "SIP/2.0 {code} Whatever\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}{}",
        top_via(&req.headers).unwrap_or_default(),
        core.from.unwrap_or_default(),
        core.call_id.unwrap_or_default(),
        core.cseq.unwrap_or_default(),
        body_text(sdp)
    ))
}

pub(super) fn drain(call: &mut Call) -> Vec<Action> {
    std::iter::from_fn(|| call.poll_action()).collect()
}

pub(super) fn sent(actions: &[Action], on: Leg) -> Vec<&Request> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { leg, request } if *leg == on => Some(request),
            _ => None,
        })
        .collect()
}

pub(super) fn responses(actions: &[Action], on: Leg) -> Vec<&Response> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Respond { leg, response, .. } if *leg == on => Some(response),
            _ => None,
        })
        .collect()
}

/// The status codes of the responses `actions` send through server
/// transaction `txn`.
pub(super) fn answers_to(actions: &[Action], to: TxnId) -> Vec<u16> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Respond { txn, response, .. } if *txn == to => {
                Some(response.status_code.code())
            }
            _ => None,
        })
        .collect()
}

pub(super) fn events(actions: &[Action]) -> Vec<CallEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(*e),
            _ => None,
        })
        .collect()
}

pub(super) fn codes(responses: &[&Response]) -> Vec<u16> {
    responses.iter().map(|r| r.status_code.code()).collect()
}

pub(super) fn cseq_of(message: &Request) -> String {
    core_values(&message.headers)
        .cseq
        .unwrap_or_default()
        .to_owned()
}
