//! Delayed offer: a caller's INVITE without SDP. The B-leg INVITE goes
//! out without SDP too; the callee's offer in its 2xx is rewritten into
//! the caller's 2xx (`setup.rs`), and the B-leg ACK waits for the
//! caller's ACK, whose answer it carries, rewritten.
//!
//! Outcomes off the happy path: a 2xx without an offer is ACKed and
//! BYEd (the caller gets 502); an ACK without an answer (or with one we
//! cannot read) is passed on bare and both legs are hung up; a caller
//! that never ACKs, or hangs up first, gets the B-leg ACKed bare before
//! its BYE.

use std::time::Instant;

use rsip::{Request, Response};

use super::call::Call;
use super::message::{Body, body_of, set_body};
use super::{CallResult, HangupSide, Leg};
use crate::sip::{ack_for_2xx, new_branch};

impl Call {
    /// The callee's 2xx with its offer, relayed to the caller: hold its
    /// ACK until the caller's answer.
    pub(super) fn hold_b_ack(&mut self, response: &Response) {
        self.b.learn_from_response(response);
        self.b_ack_pending = Some(response.clone());
    }

    /// The caller's ACK of our 2xx: with a delayed offer still open, its
    /// answer goes to the callee in the B-leg ACK.
    pub(super) fn on_delayed_answer(&mut self, now: Instant, ack: &Request) {
        let Some(response) = self.b_ack_pending.take() else {
            return;
        };
        let answer = match body_of(&ack.headers, &ack.body) {
            Ok(Body::Sdp(sdp)) => self.cross_sdp(Leg::A, &sdp).ok(),
            _ => None,
        };
        let mut b_ack = ack_for_2xx(&self.b_invite, &response, &new_branch());
        let answered = answer.is_some();
        if let Some(sdp) = answer {
            set_body(&mut b_ack.headers, &mut b_ack.body, "application/sdp", sdp);
        }
        self.acks.push((Leg::B, self.b_invite_cseq, b_ack.clone()));
        self.send(Leg::B, b_ack);
        if !answered {
            tracing::info!("delayed offer: the caller's ACK has no usable answer");
            self.end_reason = Some("no-answer-in-ack");
            self.hang_up(now, HangupSide::System);
            if let Some(outcome) = self.outcome.as_mut() {
                outcome.result = CallResult::Failed;
            }
        }
    }

    /// The call ends before the caller's ACK came: the callee's 2xx still
    /// gets its (bare) ACK, before our BYE.
    pub(super) fn flush_b_ack(&mut self) {
        if let Some(response) = self.b_ack_pending.take() {
            let ack = ack_for_2xx(&self.b_invite, &response, &new_branch());
            self.acks.push((Leg::B, self.b_invite_cseq, ack.clone()));
            self.send(Leg::B, ack);
        }
    }
}
