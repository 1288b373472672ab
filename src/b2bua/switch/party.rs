//! What the switch runs for one call entry: a bridged [`Call`] (two legs)
//! or an [`AnnouncedCall`] (the caller alone, hearing the out-of-session
//! announcement). The switch's tables, transactions, timers and 2xx
//! retransmission treat both alike; this type only dispatches.

use std::time::Instant;

use rsip::{Method, Request, Response};

use super::{DialogId, Leg, TxnId};
use crate::b2bua::{Action, AnnouncedCall, Call};

/// One call entry's state machine.
#[derive(Debug)]
pub(super) enum Party {
    /// A routed or forwarded call: caller and callee bridged.
    Bridged(Box<Call>),
    /// A caller no session routes, hearing our announcement.
    Announced(Box<AnnouncedCall>),
}

impl Party {
    /// A request from `leg` through server transaction `txn`.
    pub(super) fn handle_request(&mut self, now: Instant, leg: Leg, txn: TxnId, req: Request) {
        match (self, leg) {
            (Party::Bridged(c), Leg::A) => c.handle_a_request(now, txn, req),
            (Party::Bridged(c), Leg::B) => c.handle_b_request(now, txn, req),
            (Party::Announced(c), Leg::A) => c.handle_request(now, txn, req),
            // An announced call has no B dialog: nothing is routed here.
            (Party::Announced(_), Leg::B) => {}
        }
    }

    /// A response to a request of ours on `leg`.
    pub(super) fn handle_response(&mut self, now: Instant, leg: Leg, resp: Response) {
        match (self, leg) {
            (Party::Bridged(c), Leg::A) => c.handle_a_response(now, resp),
            (Party::Bridged(c), Leg::B) => c.handle_b_response(now, resp),
            (Party::Announced(c), Leg::A) => c.handle_response(&resp),
            (Party::Announced(_), Leg::B) => {}
        }
    }

    /// A client transaction of `leg` timed out, or a 2xx was never ACKed.
    pub(super) fn handle_transaction_timeout(&mut self, now: Instant, leg: Leg, method: Method) {
        match self {
            Party::Bridged(c) => c.handle_transaction_timeout(now, leg, method),
            Party::Announced(c) if leg == Leg::A => c.handle_transaction_timeout(now, method),
            Party::Announced(_) => {}
        }
    }

    /// An ACK from `leg` for a 2xx of ours.
    pub(super) fn handle_ack(&mut self, now: Instant, leg: Leg, ack: Request) {
        match self {
            Party::Bridged(c) => c.handle_ack(now, leg, ack),
            Party::Announced(c) if leg == Leg::A => c.handle_ack(now),
            Party::Announced(_) => {}
        }
    }

    /// The call's own timers.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Party::Bridged(c) => c.handle_timeout(now),
            Party::Announced(c) => c.handle_timeout(now),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Party::Bridged(c) => c.poll_timeout(),
            Party::Announced(c) => c.poll_timeout(),
        }
    }

    pub(super) fn poll_action(&mut self) -> Option<Action> {
        match self {
            Party::Bridged(c) => c.poll_action(),
            Party::Announced(c) => c.poll_action(),
        }
    }

    pub(super) fn is_finished(&self) -> bool {
        match self {
            Party::Bridged(c) => c.is_finished(),
            Party::Announced(c) => c.is_finished(),
        }
    }

    /// Why ansim ended the call itself (the record's `end_reason`).
    pub(super) fn end_reason(&self) -> Option<&'static str> {
        match self {
            Party::Bridged(c) => c.end_reason(),
            Party::Announced(_) => None,
        }
    }

    /// The dialog of ours on `leg`, if the call has one there.
    pub(super) fn dialog_id(&self, leg: Leg) -> Option<DialogId> {
        match (self, leg) {
            (Party::Bridged(c), leg) => Some(c.dialog_id(leg)),
            (Party::Announced(c), Leg::A) => Some(c.dialog_id()),
            (Party::Announced(_), Leg::B) => None,
        }
    }

    /// The trunk the B-leg went to; `None` without a B-leg.
    pub(super) fn b_trunk(&self) -> Option<usize> {
        match self {
            Party::Bridged(c) => c.b_trunk(),
            Party::Announced(_) => None,
        }
    }
}
