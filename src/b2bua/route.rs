//! Initial INVITEs: routing through the session store, then starting the
//! call (media ports, call record, B-leg) or refusing it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rsip::{Request, StatusCode};

use super::actions::CdrOp;
use super::addr::{uri_user, user_number};
use super::engine::{CallEntry, Engine, Event};
use super::{Call, CallConfig, Leg, MediaPorts, Routing as CallRouting};
use crate::phone::E164;
use crate::recording::{RecordingMeta, RecordingTap};
use crate::routing::Route;
use crate::sip::headers::core_values;
use crate::sip::{TransactionKey, new_tag, response_to};
use crate::store::{CallEnd, NewCall, Side};
use crate::transport::Flow;

/// What a route lookup found.
pub(super) enum Outcome {
    /// An open session routes the call.
    Routed {
        caller: E164,
        dialled: E164,
        route: Route,
    },
    /// No session routes it (or the numbers could not be read).
    Unknown {
        caller: Option<E164>,
        dialled: Option<E164>,
    },
    /// The lookup failed (database down).
    Failed,
}

impl Engine {
    pub(super) fn on_initial_invite(
        &mut self,
        now: Instant,
        flow: Flow,
        key: TransactionKey,
        req: Request,
    ) {
        let caller = core_values(&req.headers)
            .from
            .and_then(uri_user)
            .and_then(user_number);
        let dialled = uri_user(&req.uri.to_string()).and_then(user_number);
        if self.calls_full() {
            tracing::warn!(
                max_calls = self.settings.max_calls,
                "call limit reached: 503"
            );
            self.metrics.calls_refused.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .calls_over_limit
                .fetch_add(1, Ordering::Relaxed);
            let resp = super::inbound::unavailable(&req);
            if let Some(key) = self.open_server(now, flow, key, req, None) {
                self.respond_on(now, &key, resp);
            }
            return;
        }
        let Some(key) = self.open_server(now, flow, key, req, None) else {
            return;
        };
        self.routing_pending += 1;
        let routing = self.routing.clone();
        let events = self.events.clone();
        let at = self.now_ts();
        tokio::spawn(async move {
            let outcome = match (caller, dialled) {
                (Some(caller), Some(dialled)) => match routing.route(&caller, &dialled, at).await {
                    Ok(Some(route)) => Outcome::Routed {
                        caller,
                        dialled,
                        route,
                    },
                    Ok(None) => Outcome::Unknown {
                        caller: Some(caller),
                        dialled: Some(dialled),
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "route lookup failed");
                        Outcome::Failed
                    }
                },
                (caller, dialled) => Outcome::Unknown { caller, dialled },
            };
            let _ = events.send(Event::Routed { key, outcome }).await;
        });
    }

    pub(super) fn on_routed(&mut self, now: Instant, key: TransactionKey, outcome: Outcome) {
        self.routing_pending = self.routing_pending.saturating_sub(1);
        // Cancelled (or timed out) while the lookup ran: nothing to do.
        let Some(invite) = self.request_of(&key).cloned() else {
            return;
        };
        if self
            .servers
            .get(&key)
            .is_some_and(|e| e.txn.is_terminated() || e.owner.is_some())
        {
            return;
        }
        match outcome {
            Outcome::Routed {
                caller,
                dialled,
                route,
            } => self.start_call(now, key, invite, caller, dialled, route),
            Outcome::Unknown { caller, dialled } => {
                let status = self.settings.unknown_caller_status;
                tracing::info!(caller = ?caller, dialled = ?dialled, status, "no open session routes this call");
                self.refuse(now, &key, &invite, StatusCode::from(status));
                if let (Some(caller), Some(dialled)) = (caller, dialled) {
                    self.record_refused(caller, dialled, status, "rejected");
                }
            }
            Outcome::Failed => self.refuse(now, &key, &invite, StatusCode::ServiceUnavailable),
        }
    }

    fn refuse(&mut self, now: Instant, key: &TransactionKey, invite: &Request, status: StatusCode) {
        self.metrics.calls_refused.fetch_add(1, Ordering::Relaxed);
        let resp = response_to(invite, status, Some(&new_tag()));
        self.respond_on(now, key, resp);
    }

    fn record_refused(&self, caller: E164, dialled: E164, status: u16, result: &'static str) {
        let at = self.now_ts();
        let id = crate::store::new_id("cal");
        let call = NewCall {
            id: id.clone(),
            session_id: None,
            direction: "unrouted",
            caller,
            dialled,
            invite_at: at,
        };
        let end = CallEnd {
            at,
            result,
            sip_status: status,
            hangup_side: None,
        };
        let _ = self.cdr.send(CdrOp::Insert(call));
        let _ = self.cdr.send(CdrOp::End(id, end));
    }

    fn start_call(
        &mut self,
        now: Instant,
        key: TransactionKey,
        invite: Request,
        caller: E164,
        dialled: E164,
        route: Route,
    ) {
        let (a, b) = match (self.media.allocate(), self.media.allocate()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                tracing::warn!("media port pool exhausted: 503");
                self.refuse(now, &key, &invite, StatusCode::ServiceUnavailable);
                return;
            }
        };
        let ports = MediaPorts {
            a_side: a.port,
            b_side: b.port,
        };
        let cfg = CallConfig {
            domain: self.settings.domain.clone(),
            local_sip: self.local_sip,
            trunk: self.settings.trunk,
            advertise: self.settings.advertise,
            max_duration: self.settings.max_duration,
            no_answer_timeout: self.settings.no_answer_timeout,
            shard: super::Shard::SOLE,
        };
        let routing = CallRouting {
            callee: route.callee.clone(),
            caller_id: route.caller_id.clone(),
            record: route.record && self.recorder.is_some(),
        };
        let txn = self.servers.get(&key).map_or(super::TxnId(0), |e| e.id);
        let call = match Call::new(now, txn, &invite, routing, ports, cfg) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, status = e.status(), "INVITE cannot be relayed");
                self.refuse(now, &key, &invite, StatusCode::from(e.status()));
                return;
            }
        };
        let id = self.next_call;
        self.next_call += 1;
        let a_flow = self
            .servers
            .get(&key)
            .map(|e| e.flow.clone())
            .unwrap_or_else(|| self.transports.udp_flow(self.settings.trunk));
        if let Some(entry) = self.servers.get_mut(&key) {
            entry.owner = Some((id, Leg::A));
        }
        let a_lease = self.transports.lease(&a_flow);
        for leg in [Leg::A, Leg::B] {
            self.dialogs.insert(call.dialog_id(leg), (id, leg));
        }
        let cdr = crate::store::new_id("cal");
        let recording = (route.record && self.recorder.is_some()).then(|| {
            let meta = RecordingMeta {
                call_id: cdr.clone(),
                session_id: route.session_id.clone(),
                retention_class: route.retention_class.clone(),
            };
            (Arc::new(RecordingTap::default()), meta)
        });
        let tap = recording
            .as_ref()
            .map(|(t, _)| t.clone() as Arc<dyn crate::media::MediaTap>);
        let media = crate::media::MediaSession::start_with(self.settings.relay.clone(), a, b, tap);
        let record = NewCall {
            id: cdr.clone(),
            session_id: Some(route.session_id.clone()),
            direction: if route.caller_side == Side::A {
                "a_to_b"
            } else {
                "b_to_a"
            },
            caller,
            dialled,
            invite_at: self.now_ts(),
        };
        let _ = self.cdr.send(CdrOp::Insert(record));
        tracing::info!(session = %route.session_id, callee = %route.callee, "call routed");
        self.metrics.calls_relayed.fetch_add(1, Ordering::Relaxed);
        self.metrics.calls_active.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .media_pairs_in_use
            .store(self.media.in_use() as i64, Ordering::Relaxed);
        self.calls.insert(
            id,
            CallEntry {
                call,
                a_flow,
                _a_lease: a_lease,
                media: Some(media),
                cdr,
                two_xx: Vec::new(),
                recording,
            },
        );
        self.drain_call(now, id);
    }
}
