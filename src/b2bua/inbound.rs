//! Inbound messages: parse, match a transaction or a dialog, and hand the
//! request or response to its owner. (Only the trunk's messages arrive
//! here: the transports have already dropped or answered outsiders.)

use std::time::Instant;

use rsip::{Method, Request, Response, SipMessage, StatusCode};

use super::DialogId;
use super::call::Leg;
use super::engine::{ClientEntry, Engine, ServerEntry, TimerRef, TransactionKeyOrd};
use crate::sip::headers::core_values;
use crate::sip::{
    ServerTransaction, TransactionKey, parse_datagram, response_for_error, response_to,
};
use crate::transport::{Flow, Inbound};

/// Seconds a caller refused for capacity is asked to wait (`Retry-After`).
pub(super) const RETRY_AFTER_SECS: u32 = 5;

/// A `503 Service Unavailable` for `req`, with `Retry-After`.
pub(super) fn unavailable(req: &Request) -> Response {
    let mut resp = response_to(
        req,
        StatusCode::ServiceUnavailable,
        Some(&crate::sip::new_tag()),
    );
    resp.headers.push(rsip::Header::Other(
        "Retry-After".into(),
        RETRY_AFTER_SECS.to_string(),
    ));
    resp
}

impl Engine {
    pub(super) fn on_inbound(&mut self, now: Instant, inbound: Inbound) {
        let Inbound { flow, data } = inbound;
        match parse_datagram(&data) {
            Ok(SipMessage::Request(req)) => self.on_request(now, flow, req),
            Ok(SipMessage::Response(resp)) => self.on_response(now, resp),
            Err(e) => {
                tracing::debug!(remote = %flow.remote(), error = %e, "unparseable SIP message");
                if let Some(resp) = response_for_error(&e) {
                    self.respond_stateless(&flow, resp);
                }
            }
        }
    }

    fn on_request(&mut self, now: Instant, flow: Flow, req: Request) {
        let Ok(key) = TransactionKey::server(&req) else {
            self.respond_stateless(&flow, response_to(&req, StatusCode::BadRequest, None));
            return;
        };
        if let Some(entry) = self.servers.get_mut(&key) {
            // A retransmission, or the ACK of a non-2xx final response.
            entry.txn.handle_request(now, req);
            self.drain_server(now, &key);
            return;
        }
        if self.transactions_full() && !self.is_about_existing(&key, &req) {
            tracing::warn!(method = %req.method, "transaction table full: 503");
            self.respond_stateless(&flow, unavailable(&req));
            return;
        }
        match req.method {
            Method::Ack => self.on_dialog_ack(now, req),
            Method::Cancel => self.on_cancel(now, flow, key, req),
            _ if has_to_tag(&req) => self.on_in_dialog(now, flow, key, req),
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
            Method::Cancel => key
                .cancel_target()
                .is_some_and(|t| self.servers.contains_key(&t)),
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
        let resp = response_to(&req, status, Some(&crate::sip::new_tag()));
        if let Some(key) = self.open_server(now, flow, key, req, None) {
            self.respond_on(now, &key, resp);
        }
    }

    /// Creates and registers a server transaction; `None` if it cannot be.
    pub(super) fn open_server(
        &mut self,
        now: Instant,
        flow: Flow,
        key: TransactionKey,
        req: Request,
        owner: Option<(u64, Leg)>,
    ) -> Option<TransactionKey> {
        match ServerTransaction::new(req, now, flow.is_reliable(), self.timers) {
            Ok(txn) => {
                let _lease = self.transports.lease(&flow);
                let id = super::TxnId(self.next_txn);
                self.next_txn += 1;
                self.server_ids.insert(id, key.clone());
                let entry = ServerEntry {
                    id,
                    txn,
                    flow,
                    owner,
                    _lease,
                };
                self.servers.insert(key.clone(), entry);
                self.drain_server(now, &key);
                Some(key)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot open server transaction");
                None
            }
        }
    }

    /// Passes a response to its server transaction and sends what it says.
    pub(super) fn respond_on(&mut self, now: Instant, key: &TransactionKey, resp: Response) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        if let Err(e) = entry.txn.send_response(now, resp) {
            tracing::debug!(error = %e, "response refused by its transaction");
        }
        self.drain_server(now, key);
    }

    fn on_dialog_ack(&mut self, now: Instant, req: Request) {
        let Some((call, leg)) = self.dialog_of(&req) else {
            return;
        };
        if let Some(entry) = self.calls.get_mut(&call) {
            for (l, r) in entry.two_xx.iter_mut() {
                if *l == leg {
                    r.ack_received();
                }
            }
            entry.two_xx.retain(|(_, r)| !r.is_finished());
            entry.call.handle_ack(now, leg, req);
        }
        self.drain_call(now, call);
    }

    fn on_cancel(&mut self, now: Instant, flow: Flow, key: TransactionKey, req: Request) {
        let owner = key
            .cancel_target()
            .and_then(|t| self.servers.get(&t))
            .and_then(|e| e.owner);
        let Some((call, leg)) = owner else {
            // A CANCEL for an INVITE still being routed, or unknown: the
            // routed INVITE will find its transaction gone if it was ours.
            let pending = key.cancel_target().filter(|t| self.servers.contains_key(t));
            match pending {
                Some(invite_key) => {
                    self.answer_directly(now, flow, key, req, StatusCode::OK);
                    if let Some(invite) = self.request_of(&invite_key).cloned() {
                        let resp = response_to(
                            &invite,
                            StatusCode::RequestTerminated,
                            Some(&crate::sip::new_tag()),
                        );
                        self.respond_on(now, &invite_key, resp);
                    }
                }
                None => self.answer_directly(
                    now,
                    flow,
                    key,
                    req,
                    StatusCode::CallTransactionDoesNotExist,
                ),
            }
            return;
        };
        let Some(key) = self.open_server(now, flow, key, req.clone(), Some((call, leg))) else {
            return;
        };
        let txn = self.servers.get(&key).map_or(super::TxnId(0), |e| e.id);
        if let Some(entry) = self.calls.get_mut(&call) {
            entry.call.handle_a_request(now, txn, req);
        }
        self.drain_call(now, call);
    }

    fn on_in_dialog(&mut self, now: Instant, flow: Flow, key: TransactionKey, req: Request) {
        let Some((call, leg)) = self.dialog_of(&req) else {
            self.answer_directly(now, flow, key, req, StatusCode::CallTransactionDoesNotExist);
            return;
        };
        let Some(key) = self.open_server(now, flow, key, req.clone(), Some((call, leg))) else {
            return;
        };
        let txn = self.servers.get(&key).map_or(super::TxnId(0), |e| e.id);
        if let Some(entry) = self.calls.get_mut(&call) {
            match leg {
                Leg::A => entry.call.handle_a_request(now, txn, req),
                Leg::B => entry.call.handle_b_request(now, txn, req),
            }
        }
        self.drain_call(now, call);
    }

    /// The dialog a request from the other side belongs to: our tag is
    /// in its `To`.
    fn dialog_of(&self, req: &Request) -> Option<(u64, Leg)> {
        let values = core_values(&req.headers);
        let id = DialogId {
            call_id: values.call_id?.trim().to_owned(),
            local_tag: values.to.and_then(crate::sip::headers::tag_of)?.to_owned(),
        };
        self.dialogs.get(&id).copied()
    }

    fn on_response(&mut self, now: Instant, resp: Response) {
        let Ok(key) = TransactionKey::from_response(&resp) else {
            return;
        };
        if let Some(entry) = self.clients.get_mut(&key) {
            entry.txn.handle_response(now, resp);
            self.drain_client(now, &key);
            return;
        }
        // A retransmitted 2xx to an INVITE whose transaction has ended: the
        // call re-sends its ACK.
        // Our tag is in the `From` of a response to our request.
        let values = core_values(&resp.headers);
        let id = values
            .call_id
            .zip(values.from.and_then(crate::sip::headers::tag_of));
        let id = id.map(|(call_id, tag)| DialogId {
            call_id: call_id.trim().to_owned(),
            local_tag: tag.to_owned(),
        });
        if let Some((call, Leg::B)) = id.and_then(|id| self.dialogs.get(&id).copied()) {
            if let Some(entry) = self.calls.get_mut(&call) {
                entry.call.handle_b_response(now, resp);
            }
            self.drain_call(now, call);
        }
    }

    /// Starts a client transaction for a request a call sends.
    pub(super) fn open_client(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Request,
        owner: (u64, Leg),
    ) {
        match crate::sip::ClientTransaction::new(req, now, flow.is_reliable(), self.timers) {
            Ok(txn) => {
                let key = txn.key().clone();
                let _lease = self.transports.lease(&flow);
                let entry = ClientEntry {
                    txn,
                    flow,
                    owner,
                    _lease,
                };
                self.clients.insert(key.clone(), entry);
                self.drain_client(now, &key);
            }
            Err(e) => tracing::warn!(error = %e, "cannot start client transaction"),
        }
    }

    pub(super) fn schedule_server(&mut self, key: &TransactionKey) {
        let at = self.servers.get(key).and_then(|e| e.txn.poll_timeout());
        self.schedule(at, TimerRef::Server(TransactionKeyOrd(key.clone())));
    }

    pub(super) fn schedule_client(&mut self, key: &TransactionKey) {
        let at = self.clients.get(key).and_then(|e| e.txn.poll_timeout());
        self.schedule(at, TimerRef::Client(TransactionKeyOrd(key.clone())));
    }
}

fn has_to_tag(req: &Request) -> bool {
    core_values(&req.headers)
        .to
        .and_then(crate::sip::headers::tag_of)
        .is_some()
}
