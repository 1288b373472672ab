//! In-dialog requests: ACK, BYE, OPTIONS and the relay of re-INVITE,
//! UPDATE and INFO with their responses.

use std::time::Instant;

use rsip::headers::{Allow, UntypedHeader};
use rsip::{Header, Method, Request, Response};

use super::call::{Call, GUARD, Phase, Relay, outcome};
use super::message::{ALLOW, Body, body_of, copy_relayed, cseq, map_status, respond, set_body};
use super::session_timer::{Kind, as_uac, as_uas, uac_headers, uas_headers};
use super::{CallResult, HangupSide, Leg, TxnId};
use crate::sip::{ack_for_2xx, new_branch};

impl Call {
    /// Any in-dialog request other than ACK (and the caller's CANCEL),
    /// received through the server transaction `txn`.
    pub(super) fn on_dialog_request(
        &mut self,
        now: Instant,
        leg: Leg,
        txn: TxnId,
        request: Request,
    ) {
        let early_bye = leg == Leg::A && request.method == Method::Bye;
        if !self.dialog(leg).matches(&request, early_bye) {
            self.reply(leg, txn, &request, 481);
            return;
        }
        let Some((number, _)) = cseq(&request.headers) else {
            self.reply(leg, txn, &request, 400);
            return;
        };
        if !self.dialog(leg).accept_remote_cseq(number) {
            self.reply(leg, txn, &request, 500);
            return;
        }
        let confirmed = self.phase == Phase::Confirmed;
        match request.method {
            Method::Bye => self.on_bye(now, leg, txn, &request),
            Method::Options => {
                let mut ok = respond(&request, 200, None);
                ok.headers.push(Header::Allow(Allow::new(ALLOW)));
                self.respond(leg, txn, ok);
            }
            Method::Invite | Method::Update | Method::Info if confirmed => {
                self.relay(leg, txn, request)
            }
            Method::Invite | Method::Update => self.reply(leg, txn, &request, 491),
            Method::Info | Method::PRack => self.reply(leg, txn, &request, 481),
            _ => self.reply(leg, txn, &request, 405),
        }
    }

    fn on_bye(&mut self, now: Instant, leg: Leg, txn: TxnId, bye: &Request) {
        if self.phase == Phase::Calling && leg == Leg::B {
            // The callee may not BYE an early dialog (RFC 3261 §15).
            self.reply(leg, txn, bye, 481);
            return;
        }
        self.reply(leg, txn, bye, 200);
        let hangup = match leg {
            Leg::A => HangupSide::Caller,
            Leg::B => HangupSide::Callee,
        };
        match self.phase {
            Phase::Confirmed => {
                self.outcome = Some(outcome(CallResult::Answered, hangup));
                self.abort_relays();
                self.bye(now, &[leg.other()]);
            }
            Phase::Calling => {
                self.answer_a_invite(487);
                self.start_cancel(now, outcome(CallResult::Cancelled, hangup), None);
            }
            Phase::Ending => self.bye_done(leg),
            Phase::Cancelling | Phase::Finished => {}
        }
    }

    /// Hangs up both legs (max duration, failures).
    pub(super) fn hang_up(&mut self, now: Instant, hangup: HangupSide) {
        if self.phase != Phase::Confirmed {
            return;
        }
        self.outcome = Some(outcome(CallResult::Answered, hangup));
        self.abort_relays();
        self.bye(now, &[Leg::A, Leg::B]);
    }

    fn bye(&mut self, now: Instant, legs: &[Leg]) {
        self.flush_b_ack();
        for &leg in legs {
            let bye = self.dialog(leg).request(Method::Bye);
            self.send(leg, bye);
        }
        self.pending_byes = legs.to_vec();
        self.phase = Phase::Ending;
        self.guard_at = Some(now + GUARD);
    }

    /// Our BYE on `leg` was answered (or timed out, or crossed theirs).
    pub(super) fn bye_done(&mut self, leg: Leg) {
        if self.phase != Phase::Ending {
            return;
        }
        self.pending_byes.retain(|l| *l != leg);
        if self.pending_byes.is_empty() {
            self.finish();
        }
    }

    /// Answers every relayed request still waiting with 487.
    fn abort_relays(&mut self) {
        for relay in std::mem::take(&mut self.relays) {
            self.reply(relay.origin, relay.txn, &relay.request, 487);
        }
    }

    /// Relays a re-INVITE, UPDATE or INFO from `from` (server transaction
    /// `txn`) to the other leg.
    fn relay(&mut self, from: Leg, txn: TxnId, request: Request) {
        let invite = request.method == Method::Invite;
        // Our own refresh in flight on either leg: glare (RFC 3261 §14.1).
        let refreshing = [&self.a_keep, &self.b_keep]
            .into_iter()
            .flatten()
            .filter_map(|k| k.outstanding.as_ref())
            .any(|(_, sent)| sent.method == Method::Invite);
        let pending = self.relays.iter().any(|r| r.sent.method == Method::Invite);
        if invite && (pending || refreshing || self.b_ack_pending.is_some()) {
            self.reply(from, txn, &request, 491);
            return;
        }
        let body = match body_of(&request.headers, &request.body) {
            Ok(Body::Empty) if invite => {
                // Offerless re-INVITE would need the answer in the ACK.
                self.reply(from, txn, &request, 488);
                return;
            }
            Ok(Body::Sdp(sdp)) => match self.cross_sdp(from, &sdp) {
                Ok(sdp) => Some(("application/sdp".to_owned(), sdp)),
                Err(_) => return self.reply(from, txn, &request, 488),
            },
            Ok(Body::Other {
                content_type,
                bytes,
            }) => Some((content_type, bytes)),
            Ok(Body::Empty) => None,
            Err(_) => return self.reply(from, txn, &request, 415),
        };
        if matches!(request.method, Method::Invite | Method::Update) {
            self.dialog(from).refresh_target(&request.headers);
        }
        let to = from.other();
        let mut sent = self.dialog(to).request(request.method);
        if matches!(request.method, Method::Invite | Method::Update) {
            sent.headers.push(self.dialog(to).contact());
            let timer = self.keepalive(to).as_ref().map(|k| k.kind);
            if let Some(Kind::Timer { interval, .. }) = timer {
                let min_se = self.cfg.dialog_timers.min_se.as_secs();
                uac_headers(&mut sent.headers, interval.as_secs(), min_se);
            }
        }
        copy_relayed(&request.headers, &mut sent.headers);
        if let Some((content_type, bytes)) = body {
            set_body(&mut sent.headers, &mut sent.body, &content_type, bytes);
        }
        let cseq = self.dialog(to).local_cseq;
        self.relays.push(Relay {
            origin: from,
            txn,
            request,
            sent: sent.clone(),
            cseq,
        });
        self.send(to, sent);
    }

    /// A response on `leg` to something other than the initial INVITE or
    /// a BYE: the answer to a relayed request, or a stray.
    pub(super) fn on_relay_response(
        &mut self,
        now: Instant,
        leg: Leg,
        number: u32,
        method: &str,
        response: Response,
    ) {
        let code = response.status_code.code();
        let found = self.relays.iter().position(|r| {
            r.origin == leg.other() && r.cseq == number && r.sent.method.to_string() == method
        });
        let Some(index) = found else {
            if method == "INVITE" && (200..300).contains(&code) {
                self.resend_ack(leg, number);
            }
            return;
        };
        if code < 200 {
            return;
        }
        let relay = self.relays.remove(index);
        let success = (200..300).contains(&code);
        if success && relay.sent.method == Method::Invite {
            let ack = ack_for_2xx(&relay.sent, &response, &new_branch());
            self.acks.push((leg, number, ack.clone()));
            self.send(leg, ack);
            self.dialog(leg).refresh_target(&response.headers);
        }
        let mut out = respond(&relay.request, map_status(code), None);
        if success && matches!(relay.sent.method, Method::Invite | Method::Update) {
            out.headers.push(self.dialog(relay.origin).contact());
            // A refresh of both legs' sessions, each on its own terms.
            let timers = self.cfg.dialog_timers;
            self.refreshed(now, leg, as_uac(&response, &timers));
            let agreed = as_uas(&relay.request.headers, &self.cfg.dialog_timers);
            if let Some(kind) = agreed {
                uas_headers(&mut out.headers, kind);
            }
            self.refreshed(now, relay.origin, agreed);
        }
        copy_relayed(&response.headers, &mut out.headers);
        match body_of(&response.headers, &response.body) {
            Ok(Body::Sdp(sdp)) => {
                if let Ok(sdp) = self.cross_sdp(leg, &sdp) {
                    set_body(&mut out.headers, &mut out.body, "application/sdp", sdp);
                }
            }
            Ok(Body::Other {
                content_type,
                bytes,
            }) => set_body(&mut out.headers, &mut out.body, &content_type, bytes),
            Ok(Body::Empty) | Err(_) => {}
        }
        self.respond(relay.origin, relay.txn, out);
    }

    /// A client transaction of ours on `leg` timed out in a confirmed
    /// call, or a 2xx we sent there was never ACKed: answer the relayed
    /// request (if any) with 408 and hang up (RFC 5057: the peer is gone).
    pub(super) fn relay_timeout(&mut self, now: Instant, leg: Leg, method: Method) {
        let found = self
            .relays
            .iter()
            .position(|r| r.origin == leg.other() && r.sent.method == method);
        if let Some(index) = found {
            let relay = self.relays.remove(index);
            self.reply(relay.origin, relay.txn, &relay.request, 408);
        }
        self.hang_up(now, HangupSide::System);
    }
}
