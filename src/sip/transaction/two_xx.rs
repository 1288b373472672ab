//! 2xx retransmission by the UAS core (RFC 3261 §13.3.1.4, RFC 6026).

use std::collections::VecDeque;
use std::time::Instant;

use rsip::{Response, SipMessage};

use super::Transmit;
use super::timers::{Backoff, Timers, due, earliest};

/// What the 2xx retransmitter reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoXxEvent {
    /// No ACK within 64*T1: the UAS core should confirm and then end the
    /// dialog with a BYE (RFC 3261 §13.3.1.4).
    AckTimeout,
}

/// Retransmits a 2xx to an INVITE until the ACK arrives: intervals T1,
/// 2*T1, … capped at T2, giving up after 64*T1. Runs regardless of
/// transport (the RFC requires it even over TCP, for UDP hops beyond).
///
/// `new` does not send: the first 2xx goes out through
/// [`crate::sip::ServerTransaction::send_response`]. The ACK for a 2xx
/// is its own transaction (new branch), so it is not matched by the server
/// transaction; the dialog layer recognises it and calls
/// [`TwoXxRetransmitter::ack_received`].
#[derive(Debug)]
pub struct TwoXxRetransmitter {
    response: Response,
    backoff: Option<Backoff>,
    give_up_at: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TwoXxEvent>,
}

impl TwoXxRetransmitter {
    /// Starts retransmitting `response`, first resend at `now + T1`.
    pub fn new(response: Response, now: Instant, timers: Timers) -> Self {
        Self {
            response,
            backoff: Some(Backoff::new(now, timers.t1, Some(timers.t2))),
            give_up_at: Some(now + timers.t1_x64()),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Fires the retransmission or give-up timer if due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if due(self.give_up_at, now) {
            self.stop();
            self.events.push_back(TwoXxEvent::AckTimeout);
        } else if let Some(backoff) = self.backoff.as_mut().filter(|b| b.at <= now) {
            backoff.fire(now);
            let message = SipMessage::Response(self.response.clone());
            self.transmits.push_back(Transmit { message });
        }
    }

    /// The ACK arrived: stop for good.
    pub fn ack_received(&mut self) {
        self.stop();
    }

    /// True once stopped by ACK or give-up.
    pub fn is_finished(&self) -> bool {
        self.give_up_at.is_none()
    }

    /// Next retransmission to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<TwoXxEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.backoff.map(|b| b.at), self.give_up_at])
    }

    fn stop(&mut self) {
        self.backoff = None;
        self.give_up_at = None;
        self.transmits.clear();
    }
}
