//! Call setup: the callee's responses to the B-leg INVITE, CANCEL, and
//! the answer.

use std::time::Instant;

use rsip::headers::{Allow, CSeq, MaxForwards, UntypedHeader, Via};
use rsip::{Header, Headers, Method, Request, Response};

use super::call::{Call, GUARD, Outcome, Phase, b_leg_invite, outcome};
use super::message::{
    ALLOW, Body, body_of, copy_relayed, header_value, lists_tag, map_status, respond, result_for,
    set_body,
};
use super::session_timer::{as_uac, min_se, uas_headers};
use super::{CallEvent, CallResult, HangupSide, Leg, TxnId};
use crate::sip::headers::{core_values, tag_of, top_via};
use crate::sip::{ack_for_2xx, new_branch};

impl Call {
    /// A response to the initial B-leg INVITE (CSeq 1).
    pub(super) fn on_invite_response(&mut self, now: Instant, response: Response) {
        match response.status_code.code() {
            100..=199 => self.on_provisional(response),
            200..=299 => self.on_invite_success(now, response),
            _ => self.on_invite_failure(&response),
        }
    }

    fn on_provisional(&mut self, response: Response) {
        self.b_provisional = true;
        if self.cancel_deferred {
            self.cancel_deferred = false;
            self.send_cancel();
        }
        let code = response.status_code.code();
        if code == 100 || self.phase != Phase::Calling {
            return;
        }
        let has_tag = core_values(&response.headers).to.and_then(tag_of).is_some();
        if has_tag {
            self.b.learn_from_response(&response);
        }
        if lists_tag(&response.headers, "Require", "100rel") {
            let rseq = header_value(&response.headers, "RSeq").and_then(|v| v.parse().ok());
            match rseq {
                Some(rseq) if self.b_rseq.is_none_or(|last| rseq > last) => {
                    self.b_rseq = Some(rseq);
                    self.prack(rseq);
                }
                // A retransmission (already PRACKed and relayed) or no RSeq.
                _ => return,
            }
        }
        self.relay_provisional(code, &response);
    }

    /// Relays a 18x to the caller, unreliably, with its SDP rewritten.
    fn relay_provisional(&mut self, code: u16, response: &Response) {
        let mut out = self.a_dialog_response(code);
        if let Ok(Body::Sdp(sdp)) = body_of(&response.headers, &response.body)
            && let Ok(body) = self.cross_sdp(Leg::B, &sdp)
        {
            set_body(&mut out.headers, &mut out.body, "application/sdp", body);
        }
        self.respond(Leg::A, self.a_invite_txn, out);
        if !self.ringing {
            self.ringing = true;
            self.event(CallEvent::Ringing);
        }
    }

    /// A dialog-creating response (18x/2xx) to the caller's INVITE: our
    /// tag and Contact, and the caller's own Record-Route copied back
    /// (RFC 3261 §12.1.1) so its proxies stay on the path.
    fn a_dialog_response(&self, code: u16) -> Response {
        let mut out = respond(&self.a_invite, code, Some(self.a.local_tag()));
        for header in self.a_invite.headers.iter() {
            if matches!(header, Header::RecordRoute(_)) {
                out.headers.push(header.clone());
            }
        }
        out.headers.push(self.a.contact());
        out
    }

    /// PRACKs a reliable provisional response of the callee.
    fn prack(&mut self, rseq: u32) {
        let mut prack = self.b.request(Method::PRack);
        prack
            .headers
            .push(Header::Other("RAck".into(), format!("{rseq} 1 INVITE")));
        self.send(Leg::B, prack);
    }

    fn on_invite_success(&mut self, now: Instant, response: Response) {
        match self.phase {
            Phase::Calling => self.answer(now, response),
            Phase::Cancelling => {
                // CANCEL/200 race: take the call down on the B-leg.
                self.ack_b(&response);
                self.answer_a_invite(487);
                self.end_b(now);
            }
            _ => self.resend_ack(Leg::B, self.b_invite_cseq),
        }
    }

    /// ACKs the callee's 2xx to the initial INVITE and learns its dialog.
    fn ack_b(&mut self, response: &Response) {
        self.b.learn_from_response(response);
        let ack = ack_for_2xx(&self.b_invite, response, &new_branch());
        self.acks.push((Leg::B, self.b_invite_cseq, ack.clone()));
        self.send(Leg::B, ack);
    }

    /// Re-sends the ACK we sent for a 2xx on `leg` with CSeq `number`.
    pub(super) fn resend_ack(&mut self, leg: Leg, number: u32) {
        let ack = self
            .acks
            .iter()
            .find(|(l, n, _)| *l == leg && *n == number)
            .map(|(_, _, ack)| ack.clone());
        if let Some(ack) = ack {
            self.send(leg, ack);
        }
    }

    /// BYEs the B-leg only and waits for it.
    fn end_b(&mut self, now: Instant) {
        let bye = self.b.request(Method::Bye);
        self.send(Leg::B, bye);
        self.pending_byes = vec![Leg::B];
        self.phase = Phase::Ending;
        self.guard_at = Some(now + GUARD);
    }

    /// The callee answered: ACK it (with a delayed offer, once the caller
    /// has ACKed), relay the 200 to the caller, arm each leg's session
    /// timer or probe.
    fn answer(&mut self, now: Instant, response: Response) {
        if !self.delayed {
            self.ack_b(&response);
        }
        let sdp = match body_of(&response.headers, &response.body) {
            Ok(Body::Sdp(sdp)) => self.cross_sdp(Leg::B, &sdp).ok(),
            _ => None,
        };
        let fallback = if self.delayed {
            None
        } else {
            self.a_sdp.clone()
        };
        let Some(sdp) = sdp.or(fallback) else {
            // No usable answer (or, delayed, no offer): no media for the
            // caller. ACK and BYE the callee.
            if self.delayed {
                self.ack_b(&response);
                self.end_reason = Some("no-offer-in-2xx");
            }
            self.outcome = Some(outcome(CallResult::Failed, HangupSide::System));
            self.answer_a_invite(502);
            self.end_b(now);
            return;
        };
        if self.delayed {
            self.hold_b_ack(&response);
        }
        let code = response.status_code.code();
        let mut ok = self.a_dialog_response(code);
        ok.headers.push(Header::Allow(Allow::new(ALLOW)));
        if let Some(kind) = self.a_timer {
            uas_headers(&mut ok.headers, kind);
        }
        self.arm_keepalive(now, Leg::A, self.a_timer);
        self.arm_keepalive(now, Leg::B, as_uac(&response, &self.cfg.dialog_timers));
        copy_relayed(&response.headers, &mut ok.headers);
        set_body(&mut ok.headers, &mut ok.body, "application/sdp", sdp);
        self.respond(Leg::A, self.a_invite_txn, ok);
        self.a_final = Some(code);
        self.phase = Phase::Confirmed;
        self.no_answer_at = None;
        self.max_duration_at = now.checked_add(self.cfg.max_duration);
        self.outcome = Some(Outcome {
            result: CallResult::Answered,
            hangup: None,
        });
        self.event(CallEvent::Answered);
    }

    fn on_invite_failure(&mut self, response: &Response) {
        let code = response.status_code.code();
        if code == 422 && self.phase == Phase::Calling && self.retry_b_invite(response) {
            return;
        }
        if self.fail_over(code) {
            return;
        }
        match self.phase {
            Phase::Calling => {
                let tag = self.a.local_tag().to_owned();
                let mut out = respond(&self.a_invite, map_status(code), Some(&tag));
                copy_relayed(&response.headers, &mut out.headers);
                self.a_final = Some(map_status(code));
                self.respond(Leg::A, self.a_invite_txn, out);
                self.outcome = Some(outcome(result_for(code), HangupSide::Callee));
                self.finish();
            }
            Phase::Cancelling => self.cancel_done(),
            _ => {}
        }
    }

    /// The callee refused our session interval as too brief (422): ask
    /// again with its Min-SE, twice at most (RFC 4028 §7.3). False if we
    /// give up.
    fn retry_b_invite(&mut self, response: &Response) -> bool {
        let Some(floor) = min_se(&response.headers) else {
            return false;
        };
        if self.b_422_retries >= 2 || floor <= self.cfg.dialog_timers.min_se.as_secs() {
            return false;
        }
        self.b_422_retries += 1;
        let secs = floor.max(self.cfg.dialog_timers.session_expires.as_secs());
        let sdp = if self.delayed {
            None
        } else {
            self.b_sdp.clone()
        };
        let invite = b_leg_invite(&mut self.b, &self.a_invite, sdp, (secs, floor));
        self.b_invite_cseq = self.b.local_cseq;
        self.b_invite = invite.clone();
        self.b_provisional = false;
        self.b_rseq = None;
        self.send(Leg::B, invite);
        true
    }

    /// Sends the caller's INVITE its final `code`, once.
    pub(super) fn answer_a_invite(&mut self, code: u16) {
        if self.a_final.is_some() {
            return;
        }
        let tag = self.a.local_tag().to_owned();
        let response = respond(&self.a_invite, code, Some(&tag));
        self.respond(Leg::A, self.a_invite_txn, response);
        self.a_final = Some(code);
    }

    /// A CANCEL from the caller, received through `txn` (its own server
    /// transaction; the INVITE's 487 goes to the INVITE's).
    pub(super) fn on_cancel(&mut self, now: Instant, txn: TxnId, cancel: &Request) {
        if !self.a.matches(cancel, true) {
            self.reply(Leg::A, txn, cancel, 481);
            return;
        }
        let tag = self.a.local_tag().to_owned();
        self.respond(Leg::A, txn, respond(cancel, 200, Some(&tag)));
        if self.phase == Phase::Calling {
            self.start_cancel(
                now,
                outcome(CallResult::Cancelled, HangupSide::Caller),
                None,
            );
        }
    }

    /// Gives up on the B-leg INVITE: CANCEL it (once a provisional came,
    /// RFC 3261 §9.1) and, if given, answer the caller with `a_status` now
    /// (else 487 once the B-leg INVITE is over).
    pub(super) fn start_cancel(&mut self, now: Instant, why: Outcome, a_status: Option<u16>) {
        self.outcome = Some(why);
        self.phase = Phase::Cancelling;
        self.no_answer_at = None;
        self.guard_at = Some(now + GUARD);
        if let Some(code) = a_status {
            self.answer_a_invite(code);
        }
        if self.b_provisional {
            self.send_cancel();
        } else {
            self.cancel_deferred = true;
        }
    }

    /// The CANCEL for the B-leg INVITE (RFC 3261 §9.1): same Request-URI,
    /// Call-ID, From, To, Route and top Via (branch), CSeq `1 CANCEL`.
    fn send_cancel(&mut self) {
        let mut headers = Headers::default();
        if let Some(via) = top_via(&self.b_invite.headers) {
            headers.push(Header::Via(Via::new(via)));
        }
        headers.push(Header::MaxForwards(MaxForwards::new("70")));
        for header in self.b_invite.headers.iter() {
            if matches!(
                header,
                Header::Route(_) | Header::From(_) | Header::To(_) | Header::CallId(_)
            ) {
                headers.push(header.clone());
            }
        }
        headers.push(Header::CSeq(CSeq::new(format!(
            "{} CANCEL",
            self.b_invite_cseq
        ))));
        let cancel = Request {
            method: Method::Cancel,
            uri: self.b_invite.uri.clone(),
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        };
        self.send(Leg::B, cancel);
    }

    /// The cancelled B-leg INVITE is over (487, other final, timeout).
    pub(super) fn cancel_done(&mut self) {
        self.answer_a_invite(487);
        self.finish();
    }
}
