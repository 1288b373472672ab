//! Client transactions (RFC 3261 §17.1).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::{Method, Request, Response, SipMessage};

use super::linger::{Linger, LingerAnswer};
use super::timers::{Backoff, Timers, due, earliest};
use super::{TransactionKey, Transmit, is_provisional, is_success};
use crate::sip::LocalError;
use crate::sip::build::ack_for_non_2xx;

/// Client transaction state. INVITE starts in `Calling`, others in `Trying`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard yet (timers A, B).
    Calling,
    /// Non-INVITE sent, nothing heard yet (timers E, F).
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A final response was received; absorbing retransmits (timers D, K).
    Completed,
    /// Done; the driver should drop the transaction.
    Terminated,
}

/// What a client transaction tells its transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A 1xx response.
    Provisional(Response),
    /// The final response (for INVITE: 2xx, or non-2xx already ACKed).
    Final(Response),
    /// Timer B or F fired: no final response in time.
    Timeout,
    /// The transport reported a failure sending our request.
    TransportError,
    /// The transaction ended; it can be removed from the table.
    Terminated,
}

/// An RFC 3261 §17.1 client transaction, INVITE or non-INVITE.
///
/// `new` queues the request for sending; retransmissions (A/E) run only
/// when `reliable` is false.
#[derive(Debug)]
pub struct ClientTransaction {
    key: TransactionKey,
    request: Request,
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ClientState,
    retransmit: Option<Backoff>,
    timeout_at: Option<Instant>,
    linger_at: Option<Instant>,
    ack: Option<Request>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl ClientTransaction {
    /// Starts a client transaction for `request` (whose top Via must carry
    /// the branch, see [`crate::sip::new_branch`]). ACK is refused: it is
    /// not a transaction of its own.
    pub fn new(
        request: Request,
        now: Instant,
        reliable: bool,
        timers: Timers,
    ) -> Result<Self, LocalError> {
        if request.method == Method::Ack {
            return Err(LocalError::AckTransaction);
        }
        let key = TransactionKey::client(&request)?;
        let invite = request.method == Method::Invite;
        let (state, cap) = match invite {
            true => (ClientState::Calling, None),
            false => (ClientState::Trying, Some(timers.t2)),
        };
        let retransmit = (!reliable).then(|| Backoff::new(now, timers.t1, cap));
        let timeout = if invite {
            timers.timer_b()
        } else {
            timers.timer_f()
        };
        let mut transaction = Self {
            key,
            request,
            invite,
            reliable,
            timers,
            state,
            retransmit,
            timeout_at: Some(now + timeout),
            linger_at: None,
            ack: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        transaction.send_request();
        Ok(transaction)
    }

    /// The key responses are matched on.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The request this transaction sends.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// True once terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    /// The compact form this transaction can linger in once it only waits
    /// out Timer D (INVITE: re-ACK a retransmitted non-2xx) or K
    /// (non-INVITE: swallow response retransmissions); `None` before.
    pub fn linger(&self) -> Option<Linger> {
        let until = self.linger_at?;
        if self.state != ClientState::Completed {
            return None;
        }
        let answer = match (&self.ack, self.invite) {
            (Some(ack), true) => {
                let bytes = crate::sip::wire::to_bytes(&SipMessage::Request(ack.clone()));
                LingerAnswer::Resend(bytes.into_boxed_slice())
            }
            _ => LingerAnswer::Absorb,
        };
        Some(Linger { until, answer })
    }

    /// Feeds a response. Responses whose key does not match are ignored.
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        if TransactionKey::from_response(&response).as_ref() != Ok(&self.key) {
            return;
        }
        if self.invite {
            self.invite_response(now, response);
        } else {
            self.non_invite_response(now, response);
        }
    }

    fn invite_response(&mut self, now: Instant, response: Response) {
        let code = response.status_code.code();
        let waiting = matches!(self.state, ClientState::Calling | ClientState::Proceeding);
        match (waiting, self.state) {
            (true, _) if is_provisional(code) => {
                self.state = ClientState::Proceeding;
                self.retransmit = None;
                self.timeout_at = None;
                self.events.push_back(ClientEvent::Provisional(response));
            }
            (true, _) if is_success(code) => {
                self.events.push_back(ClientEvent::Final(response));
                self.terminate();
            }
            (true, _) if code >= 300 => {
                let ack = ack_for_non_2xx(&self.request, &response);
                self.ack = Some(ack);
                self.send_ack();
                self.events.push_back(ClientEvent::Final(response));
                self.complete(now, self.timers.timer_d(self.reliable));
            }
            (false, ClientState::Completed) if code >= 300 => self.send_ack(),
            _ => {}
        }
    }

    fn non_invite_response(&mut self, now: Instant, response: Response) {
        let code = response.status_code.code();
        if !matches!(self.state, ClientState::Trying | ClientState::Proceeding) {
            return;
        }
        if is_provisional(code) {
            self.state = ClientState::Proceeding;
            if let Some(backoff) = self.retransmit.as_mut() {
                backoff.set_interval(self.timers.t2);
            }
            self.events.push_back(ClientEvent::Provisional(response));
        } else if code >= 200 {
            self.events.push_back(ClientEvent::Final(response));
            self.complete(now, self.timers.timer_k(self.reliable));
        }
    }

    /// Enters Completed, lingering `linger` (zero: terminate at once).
    fn complete(&mut self, now: Instant, linger: Duration) {
        self.state = ClientState::Completed;
        self.retransmit = None;
        self.timeout_at = None;
        if linger.is_zero() {
            self.terminate();
        } else {
            self.linger_at = Some(now + linger);
        }
    }

    /// Fires whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_terminated() {
            return;
        }
        if due(self.timeout_at, now) {
            self.events.push_back(ClientEvent::Timeout);
            self.terminate();
        } else if due(self.linger_at, now) {
            self.terminate();
        } else if let Some(backoff) = self.retransmit.as_mut().filter(|b| b.at <= now) {
            backoff.fire(now);
            self.send_request();
        }
    }

    /// The transport failed to send for this transaction (§17.1.4).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if !self.is_terminated() {
            self.events.push_back(ClientEvent::TransportError);
            self.terminate();
        }
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.retransmit.map(|b| b.at);
        earliest(&[retransmit, self.timeout_at, self.linger_at])
    }

    fn send_request(&mut self) {
        let message = SipMessage::Request(self.request.clone());
        self.transmits.push_back(Transmit { message });
    }

    fn send_ack(&mut self) {
        if let Some(ack) = &self.ack {
            let message = SipMessage::Request(ack.clone());
            self.transmits.push_back(Transmit { message });
        }
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.retransmit = None;
        self.timeout_at = None;
        self.linger_at = None;
        self.events.push_back(ClientEvent::Terminated);
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
