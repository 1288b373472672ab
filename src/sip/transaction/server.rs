//! Server transactions (RFC 3261 §17.2, INVITE updated by RFC 6026).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::{Method, Request, Response, SipMessage, StatusCode};

use super::linger::{Linger, LingerAnswer};
use super::timers::{Backoff, Timers, due, earliest};
use super::{TransactionKey, Transmit, is_provisional, is_success};
use crate::sip::LocalError;
use crate::sip::reply::response_to;

/// Server transaction state. INVITE starts in `Proceeding`, others in
/// `Trying`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE received, no response yet.
    Trying,
    /// A provisional response was sent (INVITE: or none yet).
    Proceeding,
    /// A final response was sent (INVITE: non-2xx, timers G, H; non-INVITE:
    /// timer J).
    Completed,
    /// INVITE only: ACK received for the non-2xx (timer I).
    Confirmed,
    /// INVITE only (RFC 6026): a 2xx was sent (timer L).
    Accepted,
    /// Done; the driver should drop the transaction.
    Terminated,
}

/// What a server transaction tells its transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// An ACK matched this transaction while Accepted (RFC 6026: passed to
    /// the TU). ACKs for non-2xx are absorbed, not reported.
    Ack(Request),
    /// The INVITE was retransmitted while Accepted. RFC 6026 absorbs it;
    /// the event is informational (the TU may resend its 2xx early, or
    /// ignore it and leave that to [`super::TwoXxRetransmitter`]).
    InviteRetransmission(Request),
    /// Timer H fired: no ACK for our non-2xx final response.
    Timeout,
    /// The transport failed to send our response.
    TransportError,
    /// The transaction ended; it can be removed from the table.
    Terminated,
}

/// An RFC 3261 §17.2 server transaction, INVITE or non-INVITE.
///
/// The INVITE transaction sends `100 Trying` itself if the TU has sent no
/// response [`Timers::trying_delay`] (200 ms) after creation
/// (RFC 3261 §17.2.1); set the delay to zero to send it at once.
#[derive(Debug)]
pub struct ServerTransaction {
    key: TransactionKey,
    request: Request,
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ServerState,
    last_response: Option<Response>,
    trying_at: Option<Instant>,
    retransmit: Option<Backoff>,
    timeout_at: Option<Instant>,
    linger_at: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
}

impl ServerTransaction {
    /// Creates the transaction for a received request (not ACK, which
    /// never creates one). The driver hands the request to the TU itself.
    pub fn new(
        request: Request,
        now: Instant,
        reliable: bool,
        timers: Timers,
    ) -> Result<Self, LocalError> {
        if request.method == Method::Ack {
            return Err(LocalError::AckTransaction);
        }
        let key = TransactionKey::server(&request)?;
        let invite = request.method == Method::Invite;
        let state = if invite {
            ServerState::Proceeding
        } else {
            ServerState::Trying
        };
        let mut transaction = Self {
            key,
            request,
            invite,
            reliable,
            timers,
            state,
            last_response: None,
            trying_at: None,
            retransmit: None,
            timeout_at: None,
            linger_at: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        if invite {
            transaction.schedule_trying(now);
        }
        Ok(transaction)
    }

    fn schedule_trying(&mut self, now: Instant) {
        if self.timers.trying_delay.is_zero() {
            self.send_trying();
        } else {
            self.trying_at = Some(now + self.timers.trying_delay);
        }
    }

    /// The key requests are matched on.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The request that created this transaction.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// True once terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    /// The compact form this transaction can linger in once it only waits
    /// out a timer to absorb retransmissions (Accepted: Timer L;
    /// Confirmed: I; a completed non-INVITE: J); `None` while it still
    /// has something to decide or retransmit.
    pub fn linger(&self) -> Option<Linger> {
        let until = self.linger_at?;
        let answer = match self.state {
            ServerState::Accepted => LingerAnswer::PassAck,
            ServerState::Confirmed => LingerAnswer::Absorb,
            ServerState::Completed if !self.invite => {
                let response = self.last_response.clone()?;
                let bytes = crate::sip::wire::to_bytes(&SipMessage::Response(response));
                LingerAnswer::Resend(bytes.into_boxed_slice())
            }
            _ => return None,
        };
        Some(Linger { until, answer })
    }

    /// Feeds a request matching this transaction: a retransmission of the
    /// original, or (INVITE) an ACK. Requests with another key are ignored.
    pub fn handle_request(&mut self, now: Instant, request: Request) {
        if TransactionKey::server(&request).as_ref() != Ok(&self.key) {
            return;
        }
        if request.method == Method::Ack {
            self.on_ack(now, request);
        } else {
            self.on_retransmission(request);
        }
    }

    fn on_ack(&mut self, now: Instant, ack: Request) {
        match self.state {
            ServerState::Completed if self.invite => {
                self.state = ServerState::Confirmed;
                self.retransmit = None;
                self.timeout_at = None;
                self.linger_for(now, self.timers.timer_i(self.reliable));
            }
            ServerState::Accepted => self.events.push_back(ServerEvent::Ack(ack)),
            _ => {}
        }
    }

    fn on_retransmission(&mut self, request: Request) {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => self.resend_last(),
            ServerState::Accepted => self
                .events
                .push_back(ServerEvent::InviteRetransmission(request)),
            _ => {}
        }
    }

    /// Sends a response from the TU. Errors if the state forbids it (e.g. a
    /// second final response) or the status is outside 100–699.
    pub fn send_response(&mut self, now: Instant, response: Response) -> Result<(), LocalError> {
        let code = response.status_code.code();
        if !(100..700).contains(&code) {
            return Err(LocalError::InvalidStatus(code));
        }
        let accepted = match self.invite {
            true => self.invite_response(now, code),
            false => self.non_invite_response(now, code),
        };
        if !accepted {
            return Err(LocalError::InvalidState {
                action: "send response",
                state: format!("{:?}", self.state),
            });
        }
        self.trying_at = None;
        self.transmit(response.clone());
        self.last_response = Some(response);
        if self.linger_at.is_some_and(|at| at <= now) {
            self.terminate();
        }
        Ok(())
    }

    /// State change for an INVITE response; false if not allowed.
    fn invite_response(&mut self, now: Instant, code: u16) -> bool {
        match self.state {
            ServerState::Proceeding if is_provisional(code) => {}
            ServerState::Proceeding if is_success(code) => {
                self.state = ServerState::Accepted;
                self.linger_at = Some(now + self.timers.timer_l());
            }
            ServerState::Proceeding => {
                self.state = ServerState::Completed;
                let g = Backoff::new(now, self.timers.timer_g(), Some(self.timers.t2));
                self.retransmit = (!self.reliable).then_some(g);
                self.timeout_at = Some(now + self.timers.timer_h());
            }
            ServerState::Accepted => return is_success(code),
            _ => return false,
        }
        true
    }

    /// State change for a non-INVITE response; false if not allowed.
    fn non_invite_response(&mut self, now: Instant, code: u16) -> bool {
        if !matches!(self.state, ServerState::Trying | ServerState::Proceeding) {
            return false;
        }
        if is_provisional(code) {
            self.state = ServerState::Proceeding;
        } else {
            self.state = ServerState::Completed;
            self.linger_at = Some(now + self.timers.timer_j(self.reliable));
        }
        true
    }

    /// Fires whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_terminated() {
            return;
        }
        if due(self.trying_at, now) {
            self.trying_at = None;
            self.send_trying();
        }
        if due(self.timeout_at, now) {
            self.events.push_back(ServerEvent::Timeout);
            self.terminate();
        } else if due(self.linger_at, now) {
            self.terminate();
        } else if let Some(backoff) = self.retransmit.as_mut().filter(|b| b.at <= now) {
            backoff.fire(now);
            self.resend_last();
        }
    }

    /// The transport failed to send a response (§17.2.4).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if !self.is_terminated() {
            self.events.push_back(ServerEvent::TransportError);
            self.terminate();
        }
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.retransmit.map(|b| b.at);
        earliest(&[self.trying_at, retransmit, self.timeout_at, self.linger_at])
    }

    fn send_trying(&mut self) {
        if self.state == ServerState::Proceeding && self.last_response.is_none() {
            let trying = response_to(&self.request, StatusCode::Trying, None);
            self.transmit(trying.clone());
            self.last_response = Some(trying);
        }
    }

    fn linger_for(&mut self, now: Instant, linger: Duration) {
        if linger.is_zero() {
            self.terminate();
        } else {
            self.linger_at = Some(now + linger);
        }
    }

    fn resend_last(&mut self) {
        if let Some(response) = self.last_response.clone() {
            self.transmit(response);
        }
    }

    fn transmit(&mut self, response: Response) {
        let message = SipMessage::Response(response);
        self.transmits.push_back(Transmit { message });
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.trying_at = None;
        self.retransmit = None;
        self.timeout_at = None;
        self.linger_at = None;
        self.events.push_back(ServerEvent::Terminated);
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
