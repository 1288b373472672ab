//! Draining the state machines: what transactions and calls want sent,
//! and the events they report.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rsip::{Method, Response, SipMessage};
use tokio::sync::mpsc;

use super::engine::{Engine, TimerRef};
use super::{Action, CallEvent, CallResult, Hangup, Leg};
use crate::clock::Timestamp;
use crate::sip::{ClientEvent, ServerEvent, TransactionKey, TwoXxEvent, TwoXxRetransmitter};
use crate::store::{CallEnd, NewCall, Store};

/// A write to the call records, applied in order by one task so that an
/// update never overtakes the insert of its record.
pub enum CdrOp {
    /// A new record.
    Insert(NewCall),
    /// The callee rings.
    Ring(String, Timestamp),
    /// The callee answered.
    Answer(String, Timestamp),
    /// The call ended.
    End(String, CallEnd),
}

/// Runs the call-record writer until the sender is dropped.
pub async fn cdr_writer(store: Store, mut ops: mpsc::UnboundedReceiver<CdrOp>) {
    while let Some(op) = ops.recv().await {
        let result = match &op {
            CdrOp::Insert(c) => store.insert_call(c).await,
            CdrOp::Ring(id, at) => store.call_ringing(id, *at).await,
            CdrOp::Answer(id, at) => store.call_answered(id, *at).await,
            CdrOp::End(id, end) => store.call_ended(id, end).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "call record write failed");
        }
    }
}

impl Engine {
    pub(super) fn drain_server(&mut self, now: Instant, key: &TransactionKey) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        let flow = entry.flow.clone();
        let owner = entry.owner;
        let mut out = Vec::new();
        while let Some(t) = entry.txn.poll_transmit() {
            out.push(t.to_bytes());
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
        for bytes in out {
            self.transports.send(&flow, bytes);
        }
        if terminated {
            if let Some(e) = self.servers.remove(key) {
                self.server_ids.remove(&e.id);
            }
        } else {
            self.schedule_server(key);
        }
        if let Some((call, leg)) = owner {
            for ack in acks {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.two_xx.retain_mut(|(l, r)| {
                        if *l == leg {
                            r.ack_received();
                        }
                        !r.is_finished()
                    });
                    c.call.handle_ack(now, leg, ack);
                }
                self.drain_call(now, call);
            }
        }
    }

    pub(super) fn drain_client(&mut self, now: Instant, key: &TransactionKey) {
        let Some(entry) = self.clients.get_mut(key) else {
            return;
        };
        let flow = entry.flow.clone();
        let (call, leg) = entry.owner;
        let method = entry.txn.request().method;
        let mut out = Vec::new();
        while let Some(t) = entry.txn.poll_transmit() {
            out.push(t.to_bytes());
        }
        let mut events = Vec::new();
        while let Some(ev) = entry.txn.poll_event() {
            events.push(ev);
        }
        for bytes in out {
            self.transports.send(&flow, bytes);
        }
        let mut terminated = false;
        for ev in events {
            if matches!(ev, ClientEvent::Terminated) {
                // Also when its call has ended meanwhile: the transaction
                // must go whoever it belonged to.
                terminated = true;
                continue;
            }
            let Some(c) = self.calls.get_mut(&call) else {
                continue;
            };
            match (ev, leg) {
                (ClientEvent::Provisional(r) | ClientEvent::Final(r), Leg::B) => {
                    c.call.handle_b_response(now, r)
                }
                (ClientEvent::Provisional(r) | ClientEvent::Final(r), Leg::A) => {
                    c.call.handle_a_response(now, r)
                }
                (ClientEvent::Timeout | ClientEvent::TransportError, _) => {
                    c.call.handle_transaction_timeout(now, leg, method)
                }
                (ClientEvent::Terminated, _) => {}
            }
        }
        if terminated {
            self.clients.remove(key);
        } else {
            self.schedule_client(key);
        }
        self.drain_call(now, call);
    }

    /// Carries out everything a call wants done.
    pub(super) fn drain_call(&mut self, now: Instant, id: u64) {
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
                Action::Send { leg, request } => {
                    let Some(flow) = self.leg_flow(id, leg) else {
                        continue;
                    };
                    if request.method == Method::Ack {
                        self.send(&flow, &SipMessage::Request(request));
                    } else {
                        self.open_client(now, flow, request, (id, leg));
                    }
                }
                Action::Media {
                    leg,
                    remote,
                    direction,
                } => {
                    if let Some(m) = entry.media.as_ref() {
                        m.set_remote(media_leg(leg), remote);
                        m.set_direction(media_leg(leg), direction.into());
                    }
                }
                Action::Event(ev) => self.call_event(id, ev),
            }
        }
        let finished = self
            .calls
            .get(&id)
            .is_some_and(|e| e.call.is_finished() && e.two_xx.is_empty());
        if finished {
            self.end_call(id);
        } else {
            let at = self.calls.get(&id).and_then(|e| {
                let retransmits = e.two_xx.iter().filter_map(|(_, r)| r.poll_timeout());
                e.call.poll_timeout().into_iter().chain(retransmits).min()
            });
            self.schedule(at, TimerRef::Call(id));
        }
    }

    fn call_respond(
        &mut self,
        now: Instant,
        id: u64,
        leg: Leg,
        txn: super::TxnId,
        response: Response,
    ) {
        let Some(key) = self.server_ids.get(&txn).cloned() else {
            return;
        };
        let is_invite_2xx = matches!(&key, TransactionKey::Server { method, .. } if method == "INVITE")
            && (200..300).contains(&u16::from(response.status_code.clone()));
        if is_invite_2xx {
            let r = TwoXxRetransmitter::new(response.clone(), now, self.timers);
            if let Some(e) = self.calls.get_mut(&id) {
                e.two_xx.push((leg, r));
            }
        }
        self.respond_on(now, &key, response);
    }

    fn call_event(&mut self, id: u64, ev: CallEvent) {
        let Some(entry) = self.calls.get(&id) else {
            return;
        };
        let cdr = entry.cdr.clone();
        let at = self.now_ts();
        let op = match ev {
            CallEvent::Ringing => CdrOp::Ring(cdr, at),
            CallEvent::Answered => {
                if let (Some(recorder), Some((tap, meta))) = (&self.recorder, &entry.recording) {
                    recorder.begin(tap, meta.clone());
                }
                if let (Some(announcement), Some(media)) =
                    (&self.settings.announcement, &entry.media)
                {
                    media.play_then_bridge(announcement.clone());
                }
                CdrOp::Answer(cdr, at)
            }
            CallEvent::Ended {
                result,
                hangup,
                status,
            } => {
                tracing::info!(call = %cdr, ?result, status, "call ended");
                CdrOp::End(
                    cdr,
                    CallEnd {
                        at,
                        result: result_name(result),
                        sip_status: status,
                        hangup_side: hangup.map(hangup_name),
                    },
                )
            }
        };
        let _ = self.cdr.send(op);
    }

    pub(super) fn call_timeout(&mut self, now: Instant, id: u64) {
        let Some(entry) = self.calls.get_mut(&id) else {
            return;
        };
        entry.call.handle_timeout(now);
        let mut sends = Vec::new();
        let mut gave_up = Vec::new();
        for (leg, r) in entry.two_xx.iter_mut() {
            r.handle_timeout(now);
            while let Some(t) = r.poll_transmit() {
                sends.push((*leg, t.to_bytes()));
            }
            while let Some(TwoXxEvent::AckTimeout) = r.poll_event() {
                gave_up.push(*leg);
            }
        }
        entry.two_xx.retain(|(_, r)| !r.is_finished());
        for leg in gave_up {
            entry
                .call
                .handle_transaction_timeout(now, leg, Method::Invite);
        }
        for (leg, bytes) in sends {
            if let Some(flow) = self.leg_flow(id, leg) {
                self.transports.send(&flow, bytes);
            }
        }
        self.drain_call(now, id);
    }

    fn end_call(&mut self, id: u64) {
        let Some(mut entry) = self.calls.remove(&id) else {
            return;
        };
        for leg in [Leg::A, Leg::B] {
            self.dialogs.remove(&entry.call.dialog_id(leg));
        }
        self.metrics.calls_active.fetch_sub(1, Ordering::Relaxed);
        if let Some((tap, _)) = &entry.recording {
            tap.switch_off();
        }
        if let Some(media) = entry.media.take() {
            let (pool, metrics) = (self.media.clone(), self.metrics.clone());
            tokio::spawn(async move {
                media.stop().await;
                metrics
                    .media_pairs_in_use
                    .store(pool.in_use() as i64, Ordering::Relaxed);
            });
        }
    }
}

fn media_leg(leg: Leg) -> crate::media::Leg {
    match leg {
        Leg::A => crate::media::Leg::A,
        Leg::B => crate::media::Leg::B,
    }
}

fn result_name(r: CallResult) -> &'static str {
    match r {
        CallResult::Answered => "answered",
        CallResult::Busy => "busy",
        CallResult::NoAnswer => "no_answer",
        CallResult::Cancelled => "cancelled",
        CallResult::Rejected => "rejected",
        CallResult::Failed => "failed",
        CallResult::Timeout => "timeout",
    }
}

fn hangup_name(h: Hangup) -> &'static str {
    match h {
        Hangup::Caller => "caller",
        Hangup::Callee => "callee",
        Hangup::System => "system",
    }
}
