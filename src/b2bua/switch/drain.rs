//! Draining the state machines: what transactions and calls want sent, and
//! what they report, through one work queue of calls.
//!
//! Flushing a transaction moves its transmits out, feeds its events to the
//! call that owns it (which only queues actions in the call) and puts the
//! call on the work queue. Draining a call carries out its actions; those
//! open client transactions and answer server transactions, whose flushes
//! may put the call on the queue again. Nothing here drains a call from
//! inside another drain.

use std::time::Instant;

use rsip::{Method, Request, Response, SipMessage};

use super::tables::{ClientId, TwoXx};
use super::timers::Timer;
use super::{CallRef, CdrOp, Leg, Switch, SwitchEvent, Transmit, TxnId};
use crate::b2bua::{Action, CallEvent};
use crate::sip::{ClientEvent, ServerEvent, TwoXxEvent, TwoXxRetransmitter};
use crate::store::CallEnd;

impl Switch {
    /// Drains every call on the work queue, until none has anything left.
    pub(super) fn drain_work(&mut self, now: Instant) {
        while let Some(call) = self.work.pop_front() {
            self.drain_call(now, call);
        }
        self.publish_load();
    }

    /// Sends what a server transaction has to send, hands its ACKs to its
    /// call, re-arms its timer, and drops it once terminated.
    pub(super) fn flush_server(&mut self, now: Instant, id: TxnId) {
        let Some(entry) = self.servers.get_mut(&id) else {
            return;
        };
        while let Some(t) = entry.txn.poll_transmit() {
            let flow = entry.flow.clone();
            let bytes = t.to_bytes();
            self.transmits.push_back(Transmit { flow, bytes });
        }
        let mut acks = Vec::new();
        let mut terminated = false;
        while let Some(ev) = entry.txn.poll_event() {
            match ev {
                ServerEvent::Ack(req) => acks.push(req),
                ServerEvent::Terminated => terminated = true,
                ServerEvent::InviteRetransmission(_)
                | ServerEvent::Timeout
                | ServerEvent::TransportError => {}
            }
        }
        let owner = entry.owner;
        let at = entry.txn.poll_timeout();
        let linger = entry.txn.linger().filter(|_| !terminated);
        if terminated {
            self.remove_server(id);
        } else if let Some(linger) = linger {
            self.linger_server(now, id, linger);
        } else {
            self.timers.set(Timer::Server(id), at);
        }
        if let Some((call, leg)) = owner {
            for ack in acks {
                self.ack_received(now, call, leg, ack);
            }
        }
    }

    /// Sends what a client transaction has to send, hands its responses
    /// and failures to its call, re-arms its timer, and drops it once
    /// terminated (whether or not its call is still there).
    pub(super) fn flush_client(&mut self, now: Instant, id: ClientId) {
        let Some(entry) = self.clients.get_mut(&id) else {
            return;
        };
        while let Some(t) = entry.txn.poll_transmit() {
            let flow = entry.flow.clone();
            let bytes = t.to_bytes();
            self.transmits.push_back(Transmit { flow, bytes });
        }
        let events: Vec<ClientEvent> = std::iter::from_fn(|| entry.txn.poll_event()).collect();
        let (call, leg) = entry.owner;
        let method = entry.txn.request().method;
        let at = entry.txn.poll_timeout();
        let linger = entry.txn.linger();
        let mut terminated = false;
        let mut fed = false;
        for ev in events {
            if matches!(ev, ClientEvent::Terminated) {
                terminated = true;
                continue;
            }
            let Some(c) = self.calls.get_mut(&call) else {
                continue;
            };
            fed = true;
            match (ev, leg) {
                (ClientEvent::Provisional(r) | ClientEvent::Final(r), leg) => {
                    c.call.handle_response(now, leg, r)
                }
                (ClientEvent::Timeout | ClientEvent::TransportError, _) => {
                    c.call.handle_transaction_timeout(now, leg, method)
                }
                (ClientEvent::Terminated, _) => {}
            }
        }
        if terminated {
            self.remove_client(id);
        } else if let Some(linger) = linger {
            self.linger_client(now, id, linger);
        } else {
            self.timers.set(Timer::Client(id), at);
        }
        if fed {
            self.work.push_back(call);
        }
    }

    /// An ACK from `leg` of `call` for a 2xx of ours: the retransmission
    /// of that leg's 2xx stops.
    pub(super) fn ack_received(&mut self, now: Instant, call: CallRef, leg: Leg, ack: Request) {
        let Some(entry) = self.calls.get_mut(&call) else {
            return;
        };
        for t in entry.two_xx.iter_mut().filter(|t| t.leg == leg) {
            t.retransmitter.ack_received();
        }
        entry.two_xx.retain(|t| !t.retransmitter.is_finished());
        entry.call.handle_ack(now, leg, ack);
        self.work.push_back(call);
    }

    /// Carries out everything a call wants done, then ends it or re-arms
    /// its timer.
    fn drain_call(&mut self, now: Instant, id: CallRef) {
        loop {
            let Some(entry) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(action) = entry.call.poll_action() else {
                break;
            };
            match action {
                Action::Respond { leg, txn, response } => {
                    self.call_respond(now, id, leg, txn, response)
                }
                Action::Send { leg, request } => self.call_send(now, id, leg, request),
                Action::Media {
                    leg,
                    remote,
                    direction,
                } => self.events.push_back(SwitchEvent::Media {
                    call: id,
                    leg,
                    remote,
                    direction,
                }),
                Action::Play { codec } => {
                    self.events.push_back(SwitchEvent::Play { call: id, codec })
                }
                Action::Event(ev) => self.call_event(id, ev),
            }
        }
        let Some(entry) = self.calls.get(&id) else {
            return;
        };
        if entry.call.is_finished() && entry.two_xx.is_empty() {
            self.end_call(id);
        } else {
            let retransmits = entry
                .two_xx
                .iter()
                .filter_map(|t| t.retransmitter.poll_timeout());
            let at = entry
                .call
                .poll_timeout()
                .into_iter()
                .chain(retransmits)
                .min();
            self.timers.set(Timer::Call(id), at);
        }
    }

    /// A response of the call through server transaction `txn`; a 2xx to
    /// an INVITE is retransmitted until its ACK comes.
    fn call_respond(&mut self, now: Instant, id: CallRef, leg: Leg, txn: TxnId, resp: Response) {
        let invite = self
            .servers
            .get(&txn)
            .is_some_and(|e| e.txn.request().method == Method::Invite);
        let two_xx =
            (invite && (200..300).contains(&resp.status_code.code())).then(|| resp.clone());
        if !self.respond_on(now, txn, resp) {
            return;
        }
        let Some(response) = two_xx else {
            return;
        };
        let Some(flow) = self.leg_flow(id, leg) else {
            return;
        };
        let retransmitter = TwoXxRetransmitter::new(response, now, self.cfg.timers);
        if let Some(entry) = self.calls.get_mut(&id) {
            entry.two_xx.push(TwoXx {
                leg,
                flow,
                retransmitter,
            });
        }
    }

    /// A request of the call on `leg`: an ACK goes out bare, anything else
    /// through a new client transaction.
    fn call_send(&mut self, now: Instant, id: CallRef, leg: Leg, request: Request) {
        let Some(flow) = self.leg_flow(id, leg) else {
            return;
        };
        if request.method == Method::Ack {
            self.send(&flow, &SipMessage::Request(request));
        } else {
            self.open_client(now, flow, request, (id, leg));
        }
    }

    /// A call-record milestone of the call.
    fn call_event(&mut self, id: CallRef, ev: CallEvent) {
        let Some(entry) = self.calls.get(&id) else {
            return;
        };
        let record = entry.record_id.clone();
        let at = self.wall;
        let op = match ev {
            CallEvent::Ringing => CdrOp::Ring(record, at),
            CallEvent::Answered => {
                self.events.push_back(SwitchEvent::Answered {
                    call: id,
                    call_record: record.clone(),
                });
                CdrOp::Answer(record, at)
            }
            CallEvent::Ended {
                result,
                hangup,
                status,
            } => {
                let reason = entry.call.end_reason();
                tracing::info!(call = %record, ?result, status, reason, "call ended");
                let end = CallEnd {
                    at,
                    result,
                    sip_status: status,
                    hangup_side: hangup,
                    reason,
                };
                CdrOp::End(record, end)
            }
        };
        self.events.push_back(SwitchEvent::CallRecord(op));
    }

    /// The call's timer: its own deadlines and its 2xx retransmitters.
    pub(super) fn call_timeout(&mut self, now: Instant, id: CallRef) {
        let Some(entry) = self.calls.get_mut(&id) else {
            return;
        };
        entry.call.handle_timeout(now);
        let mut gave_up = Vec::new();
        for t in entry.two_xx.iter_mut() {
            t.retransmitter.handle_timeout(now);
            while let Some(x) = t.retransmitter.poll_transmit() {
                let flow = t.flow.clone();
                let bytes = x.to_bytes();
                self.transmits.push_back(Transmit { flow, bytes });
            }
            while let Some(TwoXxEvent::AckTimeout) = t.retransmitter.poll_event() {
                gave_up.push(t.leg);
            }
        }
        entry.two_xx.retain(|t| !t.retransmitter.is_finished());
        for leg in gave_up {
            entry
                .call
                .handle_transaction_timeout(now, leg, Method::Invite);
        }
        self.work.push_back(id);
    }

    /// Forgets a call that is over. Its transactions still running end by
    /// their own timers.
    pub(super) fn end_call(&mut self, id: CallRef) {
        let Some(entry) = self.calls.remove(&id) else {
            return;
        };
        for leg in [Leg::A, Leg::B] {
            if let Some(dialog) = entry.call.dialog_id(leg) {
                self.dialogs.remove(&dialog);
            }
        }
        self.timers.set(Timer::Call(id), None);
        self.release_connection(&entry.a_flow);
        self.events.push_back(SwitchEvent::Ended { call: id });
    }
}
