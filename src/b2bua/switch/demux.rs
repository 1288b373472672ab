//! Inbound messages: match a transaction, a dialog or nothing, and hand
//! the request or response to its owner. (Only the trunk's messages
//! arrive: the transports have already dropped or answered outsiders.)

use std::time::Instant;

use rsip::{Method, Request, Response, SipMessage, StatusCode};

use super::{CallRef, DialogId, Leg, Switch};
use crate::sip::headers::{core_values, tag_of};
use crate::sip::{ServerState, TransactionKey, new_tag, response_to};
use crate::transport::Flow;

/// Seconds a caller refused for capacity is asked to wait (`Retry-After`).
pub(super) const RETRY_AFTER_SECS: u32 = 5;

/// A `503 Service Unavailable` for `req`, with `Retry-After`.
pub(super) fn unavailable(req: &Request) -> Response {
    let mut resp = response_to(req, StatusCode::ServiceUnavailable, Some(&new_tag()));
    resp.headers.push(rsip::Header::Other(
        "Retry-After".into(),
        RETRY_AFTER_SECS.to_string(),
    ));
    resp
}

impl Switch {
    pub(super) fn on_request(&mut self, now: Instant, flow: Flow, req: Request) {
        let Ok(key) = TransactionKey::server(&req) else {
            let resp = response_to(&req, StatusCode::BadRequest, None);
            self.send(&flow, &SipMessage::Response(resp));
            return;
        };
        if let Some(&id) = self.server_keys.get(&key) {
            // A retransmission, or the ACK of a non-2xx final response.
            if let Some(entry) = self.servers.get_mut(&id) {
                entry.txn.handle_request(now, req);
            }
            self.flush_server(now, id);
            return;
        }
        let Some(req) = self.absorb_request(now, &key, req) else {
            return;
        };
        if self.transactions_full() && !self.is_about_existing(&key, &req) {
            if let Some(held) = self.warnings.transactions.allow(now) {
                tracing::warn!(method = %req.method, more_since_last = held, "transaction table full: 503");
            }
            self.send(&flow, &SipMessage::Response(unavailable(&req)));
            return;
        }
        match req.method {
            Method::Ack => self.on_dialog_ack(now, req),
            Method::Cancel => self.on_cancel(now, flow, key, req),
            _ if has_to_tag(&req) => self.on_in_dialog(now, flow, key, req),
            Method::Invite | Method::Options if self.draining => {
                self.stats.calls_refused += u64::from(req.method == Method::Invite);
                let resp = unavailable(&req);
                if let Some(txn) = self.open_server(now, flow, key, req, None) {
                    self.respond_on(now, txn, resp);
                }
            }
            Method::Invite => self.on_initial_invite(now, flow, key, req),
            Method::Options => self.answer_directly(now, flow, key, req, StatusCode::OK),
            Method::Register
            | Method::Subscribe
            | Method::Message
            | Method::Publish
            | Method::Notify
            | Method::Refer => {
                self.answer_directly(now, flow, key, req, StatusCode::MethodNotAllowed)
            }
            _ => self.answer_directly(now, flow, key, req, StatusCode::CallTransactionDoesNotExist),
        }
    }

    /// Whether `req` belongs to something that exists (an ACK, a request
    /// in a dialog of ours, a CANCEL of a transaction of ours): such
    /// requests are taken even when the transaction table is full, so a
    /// call in progress can always end.
    fn is_about_existing(&self, key: &TransactionKey, req: &Request) -> bool {
        match req.method {
            Method::Ack => true,
            Method::Cancel => {
                key.cancel_target()
                    .is_some_and(|t| self.server_keys.contains_key(&t))
                    || self.lingering_cancel_target(key).is_some()
            }
            _ => self.dialog_of(req).is_some(),
        }
    }

    /// Opens a server transaction and answers it at once with `status`.
    fn answer_directly(
        &mut self,
        now: Instant,
        flow: Flow,
        key: TransactionKey,
        req: Request,
        status: StatusCode,
    ) {
        let resp = response_to(&req, status, Some(&new_tag()));
        if let Some(txn) = self.open_server(now, flow, key, req, None) {
            self.respond_on(now, txn, resp);
        }
    }

    /// An ACK matching no transaction: the ACK for a 2xx of ours.
    fn on_dialog_ack(&mut self, now: Instant, req: Request) {
        if let Some((call, leg)) = self.dialog_of(&req) {
            self.ack_received(now, call, leg, req);
        }
    }

    fn on_cancel(&mut self, now: Instant, flow: Flow, key: TransactionKey, req: Request) {
        let target = key
            .cancel_target()
            .and_then(|t| self.server_keys.get(&t).copied());
        let Some(invite) = target else {
            // An INVITE with its final response already (the CANCEL/200
            // race): its call answers the CANCEL, without a 487 (RFC 3261
            // §9.2); one that belonged to no call gets a plain 200.
            match self.lingering_cancel_target(&key) {
                Some(Some((call, leg))) => self.hand_to_call(now, flow, key, req, call, leg),
                Some(None) => self.answer_directly(now, flow, key, req, StatusCode::OK),
                None => {
                    let status = StatusCode::CallTransactionDoesNotExist;
                    self.answer_directly(now, flow, key, req, status);
                }
            }
            return;
        };
        let owner = self.servers.get(&invite).and_then(|e| e.owner);
        let Some((call, leg)) = owner else {
            // An INVITE still being routed (or already refused): the
            // CANCEL gets its 200, the INVITE its 487 unless it has its
            // final response already; a lookup that comes back later finds
            // the INVITE answered and starts nothing.
            self.answer_directly(now, flow, key, req, StatusCode::OK);
            let terminated = self
                .servers
                .get(&invite)
                .filter(|e| e.txn.state() == ServerState::Proceeding)
                .map(|e| {
                    let status = StatusCode::RequestTerminated;
                    response_to(e.txn.request(), status, Some(&new_tag()))
                });
            if let Some(resp) = terminated {
                self.respond_on(now, invite, resp);
            }
            return;
        };
        self.hand_to_call(now, flow, key, req, call, leg);
    }

    fn on_in_dialog(&mut self, now: Instant, flow: Flow, key: TransactionKey, req: Request) {
        match self.dialog_of(&req) {
            Some((call, leg)) => self.hand_to_call(now, flow, key, req, call, leg),
            None => {
                let status = StatusCode::CallTransactionDoesNotExist;
                self.answer_directly(now, flow, key, req, status);
            }
        }
    }

    /// Opens the server transaction of a request for `leg` of `call` and
    /// hands both to the call.
    fn hand_to_call(
        &mut self,
        now: Instant,
        flow: Flow,
        key: TransactionKey,
        req: Request,
        call: CallRef,
        leg: Leg,
    ) {
        let Some(txn) = self.open_server(now, flow, key, req.clone(), Some((call, leg))) else {
            return;
        };
        if let Some(entry) = self.calls.get_mut(&call) {
            entry.call.handle_request(now, leg, txn, req);
            self.work.push_back(call);
        }
    }

    /// The dialog a request from the other side belongs to: our tag is in
    /// its `To`.
    fn dialog_of(&self, req: &Request) -> Option<(CallRef, Leg)> {
        let values = core_values(&req.headers);
        self.dialog(values.call_id?, values.to.and_then(tag_of)?)
    }

    /// The dialog with `call_id` and our tag `local_tag`.
    fn dialog(&self, call_id: &str, local_tag: &str) -> Option<(CallRef, Leg)> {
        let id = DialogId {
            call_id: call_id.trim().to_owned(),
            local_tag: local_tag.to_owned(),
        };
        self.dialogs.get(&id).copied()
    }

    pub(super) fn on_response(&mut self, now: Instant, resp: Response) {
        if self.probe_answered(&resp) {
            return;
        }
        let Ok(key) = TransactionKey::from_response(&resp) else {
            return;
        };
        if let Some(&id) = self.client_keys.get(&key) {
            if let Some(entry) = self.clients.get_mut(&id) {
                entry.txn.handle_response(now, resp);
            }
            self.flush_client(now, id);
            return;
        }
        if self.absorb_response(&key, &resp) {
            return;
        }
        // A retransmitted 2xx to the B-leg INVITE whose transaction has
        // ended: the call re-sends its ACK. Our tag is in the `From` of a
        // response to our request.
        let values = core_values(&resp.headers);
        let Some((call_id, tag)) = values.call_id.zip(values.from.and_then(tag_of)) else {
            return;
        };
        if let Some((call, Leg::B)) = self.dialog(call_id, tag)
            && let Some(entry) = self.calls.get_mut(&call)
        {
            entry.call.handle_response(now, Leg::B, resp);
            self.work.push_back(call);
        }
    }
}

fn has_to_tag(req: &Request) -> bool {
    core_values(&req.headers).to.and_then(tag_of).is_some()
}
