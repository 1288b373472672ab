//! Transactions that only absorb retransmissions: moving them out of the
//! live tables into the switch's [`LingerTable`], answering what matches
//! them there, and forgetting them at their deadline.
//!
//! A live transaction moves once [`ServerTransaction::linger`] or
//! [`ClientTransaction::linger`] says it may (RFC 6026 Accepted, Confirmed,
//! a completed non-INVITE, a completed INVITE client). From then on it no
//! longer counts against `max_transactions`; the lingering table has its
//! own bound (`max_lingering`) and evicts the entry nearest its deadline
//! when full. An entry keeps its flow's connection in use, as the
//! transaction did, until it expires or is evicted.
//!
//! [`ServerTransaction::linger`]: crate::sip::ServerTransaction::linger
//! [`ClientTransaction::linger`]: crate::sip::ClientTransaction::linger

use std::time::Instant;

use rsip::{Method, Request, Response};

use super::tables::ClientId;
use super::timers::Timer;
use super::{CallRef, Leg, Switch, Transmit, TxnId};
use crate::sip::{Linger, LingerAnswer, TransactionKey};
use crate::transport::Flow;

/// What the switch keeps with a lingering transaction.
#[derive(Debug)]
pub(super) struct Lingering {
    /// Where its stored bytes are re-sent (the request's source for a
    /// server transaction, the next hop for a client one); its connection
    /// stays in use while the entry lingers.
    pub(super) flow: Flow,
    /// The call and leg it belonged to: an ACK passed up by an Accepted
    /// INVITE goes there, and a CANCEL of an answered INVITE too.
    pub(super) owner: Option<(CallRef, Leg)>,
}

/// What a message that matched a lingering entry leads to.
enum Absorbed {
    /// Nothing more.
    Nothing,
    /// Re-send stored bytes.
    Resend(Transmit),
    /// An ACK for an Accepted INVITE: to its call.
    Ack(CallRef, Leg),
}

impl Switch {
    /// Moves live server transaction `id` to the lingering table.
    pub(super) fn linger_server(&mut self, now: Instant, id: TxnId, linger: Linger) {
        self.timers.set(Timer::Server(id), None);
        let Some(entry) = self.servers.remove(&id) else {
            return;
        };
        let key = entry.txn.key();
        self.server_keys.remove(key);
        let value = Lingering {
            flow: entry.flow,
            owner: entry.owner,
        };
        self.add_lingering(now, key, linger, value);
    }

    /// Moves live client transaction `id` to the lingering table.
    pub(super) fn linger_client(&mut self, now: Instant, id: ClientId, linger: Linger) {
        self.timers.set(Timer::Client(id), None);
        let Some(entry) = self.clients.remove(&id) else {
            return;
        };
        let key = entry.txn.key();
        self.client_keys.remove(key);
        let value = Lingering {
            flow: entry.flow,
            owner: Some(entry.owner),
        };
        self.add_lingering(now, key, linger, value);
    }

    fn add_lingering(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        linger: Linger,
        value: Lingering,
    ) {
        if let Some(gone) = self.lingering.insert(now, key, linger, value) {
            self.release_connection(&gone.flow);
        }
        self.timers
            .set(Timer::Linger, self.lingering.next_deadline());
    }

    /// Forgets the lingering transactions due at `now`.
    pub(super) fn linger_timeout(&mut self, now: Instant) {
        for gone in self.lingering.expire(now) {
            self.release_connection(&gone.flow);
        }
        self.timers
            .set(Timer::Linger, self.lingering.next_deadline());
    }

    /// A request whose `key` matches a lingering transaction: a
    /// retransmission gets the stored final response (non-INVITE) or is
    /// absorbed (an INVITE, whose 2xx its call retransmits until ACKed;
    /// RFC 6026 §7.1), an ACK of an Accepted INVITE goes to its call, an
    /// ACK of a Confirmed one is absorbed. The request back if nothing
    /// lingers under `key`.
    pub(super) fn absorb_request(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        req: Request,
    ) -> Option<Request> {
        let Some((answer, entry)) = self.lingering.get(key) else {
            return Some(req);
        };
        let ack = req.method == Method::Ack;
        let absorbed = match (answer, entry.owner) {
            (LingerAnswer::Resend(bytes), _) if !ack => Absorbed::Resend(Transmit {
                flow: entry.flow.clone(),
                bytes: bytes.to_vec(),
            }),
            (LingerAnswer::PassAck, Some((call, leg))) if ack => Absorbed::Ack(call, leg),
            _ => Absorbed::Nothing,
        };
        match absorbed {
            Absorbed::Nothing => {}
            Absorbed::Resend(t) => self.transmits.push_back(t),
            Absorbed::Ack(call, leg) => self.ack_received(now, call, leg, req),
        }
        None
    }

    /// A response whose `key` matches a lingering client transaction: a
    /// retransmitted non-2xx final response to our INVITE gets our ACK
    /// again (Timer D); anything else is absorbed. False if nothing
    /// lingers under `key`.
    pub(super) fn absorb_response(&mut self, key: &TransactionKey, resp: &Response) -> bool {
        let Some((answer, entry)) = self.lingering.get(key) else {
            return false;
        };
        if let LingerAnswer::Resend(bytes) = answer
            && resp.status_code.code() >= 300
        {
            let flow = entry.flow.clone();
            let bytes = bytes.to_vec();
            self.transmits.push_back(Transmit { flow, bytes });
        }
        true
    }

    /// The call and leg of the INVITE a CANCEL with `key` targets, if
    /// that INVITE lingers (it has its final response): `Some(None)` when
    /// it belonged to no call (refused before routing).
    pub(super) fn lingering_cancel_target(
        &self,
        key: &TransactionKey,
    ) -> Option<Option<(CallRef, Leg)>> {
        let target = key.cancel_target()?;
        self.lingering.get(&target).map(|(_, entry)| entry.owner)
    }
}
