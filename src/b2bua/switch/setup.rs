//! Initial INVITEs: a route lookup for the driver, then starting the call
//! or refusing it.

use crate::store::CallResult;
use std::time::Instant;

use rsip::{Request, StatusCode};

use super::demux::unavailable;
use super::party::Party;
use super::tables::{CallEntry, Lookup};
use super::{CallRef, CdrOp, Fallback, LookupId, RouteResult, Switch, SwitchEvent, TxnId};
use crate::b2bua::numbers::{caller_number, dialled_number};
use crate::b2bua::{
    AnnounceMode, AnnouncedCall, Call, CallConfig, Leg, MediaPorts, Routing as CallRouting,
    TrunkTarget,
};
use crate::phone::E164;
use crate::sip::{ServerState, TransactionKey, new_tag, response_to};
use crate::store::{CallEnd, NewCall, Side};
use crate::transport::Flow;

/// What a started call's record says of where it came from.
struct RecordKind {
    /// The session that routes it; `None` for a forwarded call.
    session_id: Option<String>,
    /// `a_to_b`, `b_to_a` or `unrouted`.
    direction: &'static str,
    /// Why, for a call no session routes (`out-of-session-forwarded`).
    reason: Option<&'static str>,
}

impl Switch {
    /// A new INVITE: refused at once when `max_calls` are up or its
    /// numbers cannot be read, else held (`100 Trying` comes from its
    /// transaction) while the driver looks its route up.
    pub(super) fn on_initial_invite(
        &mut self,
        now: Instant,
        flow: Flow,
        key: TransactionKey,
        req: Request,
    ) {
        let plan = self
            .trunks
            .source_of(flow.remote().ip())
            .map(|t| t.numbers.clone())
            .unwrap_or_default();
        let caller = caller_number(&req.headers, &plan);
        let dialled = dialled_number(&req.uri.to_string(), &plan);
        if let Some(min_se) = crate::b2bua::too_brief(&req, &self.cfg.dialog_timers) {
            tracing::info!(min_se, "session interval too brief: 422");
            self.stats.calls_refused += 1;
            let resp = response_to(&req, StatusCode::from(422), Some(&new_tag()));
            let resp = crate::b2bua::interval_too_brief(resp, min_se);
            if let Some(txn) = self.open_server(now, flow, key, req, None) {
                self.respond_on(now, txn, resp);
            }
            return;
        }
        if self.calls_full() {
            if let Some(held) = self.warnings.calls.allow(now) {
                let max_calls = self.cfg.max_calls;
                tracing::warn!(max_calls, more_since_last = held, "call limit reached: 503");
            }
            self.stats.calls_refused += 1;
            self.stats.calls_over_limit += 1;
            let resp = unavailable(&req);
            if let Some(txn) = self.open_server(now, flow, key, req, None) {
                self.respond_on(now, txn, resp);
            }
            return;
        }
        let Some(server) = self.open_server(now, flow, key, req, None) else {
            return;
        };
        match (caller, dialled) {
            (Some(caller), Some(dialled)) => {
                let id = LookupId(self.next_id());
                let lookup = Lookup {
                    server,
                    caller: caller.clone(),
                    dialled: dialled.clone(),
                };
                self.lookups.insert(id, lookup);
                let ev = SwitchEvent::RouteLookup {
                    id,
                    caller,
                    dialled,
                };
                self.events.push_back(ev);
            }
            (None, Some(dialled)) => {
                let status = self.cfg.unknown_caller_status;
                let reason = "no-caller-number";
                tracing::info!(dialled = ?dialled, status, reason, "the INVITE carries no caller's number");
                self.refuse(now, server, status);
                let result = CallResult::Rejected;
                self.record_refused(None, dialled, status, result, Some(reason));
            }
            (caller, None) => {
                let status = self.cfg.unknown_caller_status;
                tracing::info!(caller = ?caller, status, "the INVITE carries no dialled number");
                self.refuse(now, server, status);
            }
        }
    }

    /// What a route lookup came to.
    pub(super) fn routed(
        &mut self,
        now: Instant,
        id: LookupId,
        result: RouteResult,
    ) -> Option<CallRef> {
        let lookup = self.lookups.remove(&id)?;
        // Cancelled, or timed out, while the lookup ran: nothing to do.
        let server = self.servers.get(&lookup.server)?;
        if server.owner.is_some() || server.txn.state() != ServerState::Proceeding {
            return None;
        }
        match result {
            RouteResult::Routed { route, ports } => {
                tracing::debug!(session = %route.session_id, callee = %route.callee, "call routed");
                let routing = CallRouting {
                    callee: route.callee.clone(),
                    caller_id: route.caller_id.clone(),
                    record: route.record,
                };
                let direction = if route.caller_side == Side::A {
                    "a_to_b"
                } else {
                    "b_to_a"
                };
                let kind = RecordKind {
                    session_id: Some(route.session_id),
                    direction,
                    reason: None,
                };
                self.start_call(now, lookup, routing, ports, kind)
            }
            RouteResult::NoMedia => {
                if let Some(held) = self.warnings.ports.allow(now) {
                    tracing::warn!(more_since_last = held, "media port pool exhausted: 503");
                }
                self.refuse(now, lookup.server, 503);
                None
            }
            RouteResult::Unknown => {
                self.out_of_session_refused(now, lookup);
                None
            }
            RouteResult::OutOfSession { ports, record } => {
                match (self.cfg.fallback.clone(), self.cfg.announce) {
                    (Some(fallback), _) => self.forward(now, lookup, fallback, ports, record),
                    (None, Some(mode)) => self.announce(now, lookup, mode, ports),
                    (None, None) => {
                        self.out_of_session_refused(now, lookup);
                        None
                    }
                }
            }
            RouteResult::Failed => {
                self.refuse(now, lookup.server, 503);
                None
            }
        }
    }

    /// A call no open session routes, refused with `unknown_caller_status`
    /// and recorded with the reason `out-of-session`.
    fn out_of_session_refused(&mut self, now: Instant, lookup: Lookup) {
        let status = self.cfg.unknown_caller_status;
        let (caller, dialled) = (&lookup.caller, &lookup.dialled);
        tracing::info!(caller = ?caller, dialled = ?dialled, status, "no open session routes this call");
        self.refuse(now, lookup.server, status);
        self.stats.out_of_session_rejected += 1;
        let (caller, result) = (Some(lookup.caller), CallResult::Rejected);
        self.record_refused(
            caller,
            lookup.dialled,
            status,
            result,
            Some("out-of-session"),
        );
    }

    /// A call no open session routes, forwarded to the customer centre:
    /// the B-leg goes to `fallback.to` with the dialled safe number as its
    /// caller, built like any session call's (the caller's real number
    /// nowhere on it), and recorded with the reason
    /// `out-of-session-forwarded`.
    fn forward(
        &mut self,
        now: Instant,
        lookup: Lookup,
        fallback: Fallback,
        ports: MediaPorts,
        record: bool,
    ) -> Option<CallRef> {
        tracing::info!(caller = ?lookup.caller, dialled = ?lookup.dialled, centre = ?fallback.to, "no open session routes this call: forwarded");
        let routing = CallRouting {
            callee: fallback.to,
            caller_id: lookup.dialled.clone(),
            record,
        };
        let kind = RecordKind {
            session_id: None,
            direction: "unrouted",
            reason: Some("out-of-session-forwarded"),
        };
        let call = self.start_call(now, lookup, routing, ports, kind)?;
        self.stats.out_of_session_forwarded += 1;
        Some(call)
    }

    /// A call no open session routes, answered by ourselves with the
    /// out-of-session announcement (`mode`), on our relay port
    /// `ports.a_side`; no B-leg. Recorded with the reason
    /// `out-of-session-announced`. An INVITE we cannot answer (no
    /// PCMU/PCMA offer) is refused like an unknown caller's, with the
    /// status the error names.
    fn announce(
        &mut self,
        now: Instant,
        lookup: Lookup,
        mode: AnnounceMode,
        ports: MediaPorts,
    ) -> Option<CallRef> {
        tracing::info!(caller = ?lookup.caller, dialled = ?lookup.dialled, early = mode.early, "no open session routes this call: announced");
        let server = self.servers.get(&lookup.server)?;
        let cfg = self.call_config();
        let status = self.cfg.unknown_caller_status;
        let request = server.txn.request();
        let call = AnnouncedCall::new(
            now,
            lookup.server,
            request,
            ports.a_side,
            &cfg,
            mode,
            status,
        );
        let call = match call {
            Ok(c) => c,
            Err(e) => {
                let status = e.status();
                tracing::info!(error = %e, status, "INVITE cannot hear the announcement");
                self.refuse(now, lookup.server, status);
                self.stats.out_of_session_rejected += 1;
                let (caller, result) = (Some(lookup.caller), CallResult::Rejected);
                let reason = Some("out-of-session");
                self.record_refused(caller, lookup.dialled, status, result, reason);
                return None;
            }
        };
        let kind = RecordKind {
            session_id: None,
            direction: "unrouted",
            reason: Some("out-of-session-announced"),
        };
        let id = self.insert_call(lookup, Party::Announced(Box::new(call)), kind)?;
        self.stats.out_of_session_announced += 1;
        Some(id)
    }

    /// Answers the INVITE of server transaction `txn` with `status`.
    fn refuse(&mut self, now: Instant, txn: TxnId, status: u16) {
        self.stats.calls_refused += 1;
        let Some(entry) = self.servers.get(&txn) else {
            return;
        };
        let resp = response_to(
            entry.txn.request(),
            StatusCode::from(status),
            Some(&new_tag()),
        );
        self.respond_on(now, txn, resp);
    }

    /// A record for a call no session routes.
    fn record_refused(
        &mut self,
        caller: Option<E164>,
        dialled: E164,
        status: u16,
        result: CallResult,
        reason: Option<&'static str>,
    ) {
        let at = self.wall;
        let id = self.record_ids.next(at);
        let call = NewCall {
            id: id.clone(),
            session_id: None,
            direction: "unrouted",
            caller,
            dialled,
            invite_at: at,
            reason,
        };
        let end = CallEnd {
            at,
            result,
            sip_status: status,
            hangup_side: None,
            reason: None,
        };
        let record = SwitchEvent::CallRecord;
        self.events.push_back(record(CdrOp::Insert(call)));
        self.events.push_back(record(CdrOp::End(id, end)));
    }

    /// What a call of this switch is configured with.
    fn call_config(&self) -> CallConfig {
        CallConfig {
            domain: self.cfg.domain.clone(),
            local_sip: self.cfg.local_sip,
            trunks: self
                .trunks
                .order()
                .into_iter()
                .filter_map(|index| {
                    let peer = self.trunks.peer(index)?;
                    Some(TrunkTarget {
                        index,
                        address: peer.address,
                        transport: peer.transport,
                        numbers: peer.numbers.clone(),
                    })
                })
                .collect(),
            advertise: self.cfg.advertise,
            max_duration: self.cfg.max_duration,
            no_answer_timeout: self.cfg.no_answer_timeout,
            dialog_timers: self.cfg.dialog_timers,
            shard: self.shard,
        }
    }

    /// Starts the call of a routed (or forwarded) INVITE: its state
    /// machine (which sends the B-leg INVITE), its dialogs and its call
    /// record.
    fn start_call(
        &mut self,
        now: Instant,
        lookup: Lookup,
        routing: CallRouting,
        ports: MediaPorts,
        kind: RecordKind,
    ) -> Option<CallRef> {
        let server = self.servers.get(&lookup.server)?;
        let cfg = self.call_config();
        let request = server.txn.request();
        let call = match Call::new(now, lookup.server, request, routing, ports, cfg) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, status = e.status(), "INVITE cannot be relayed");
                self.refuse(now, lookup.server, e.status());
                return None;
            }
        };
        let id = self.insert_call(lookup, Party::Bridged(Box::new(call)), kind)?;
        self.stats.calls_relayed += 1;
        Some(id)
    }

    /// Takes a new call into the tables: its INVITE's transaction, its
    /// dialogs, the caller's connection, its call record, and the work
    /// queue (for what it has to send).
    fn insert_call(&mut self, lookup: Lookup, call: Party, kind: RecordKind) -> Option<CallRef> {
        let a_flow = self.servers.get(&lookup.server)?.flow.clone();
        let id = CallRef(self.next_id());
        if let Some(entry) = self.servers.get_mut(&lookup.server) {
            entry.owner = Some((id, Leg::A));
        }
        for leg in [Leg::A, Leg::B] {
            if let Some(dialog) = call.dialog_id(leg) {
                self.dialogs.insert(dialog, (id, leg));
            }
        }
        self.hold_connection(&a_flow);
        let record_id = self.record_ids.next(self.wall);
        let record = NewCall {
            id: record_id.clone(),
            session_id: kind.session_id,
            direction: kind.direction,
            caller: Some(lookup.caller),
            dialled: lookup.dialled,
            invite_at: self.wall,
            reason: kind.reason,
        };
        let insert = SwitchEvent::CallRecord(CdrOp::Insert(record));
        self.events.push_back(insert);
        let entry = CallEntry {
            call,
            a_flow,
            record_id,
            two_xx: Vec::new(),
        };
        self.calls.insert(id, entry);
        self.work.push_back(id);
        Some(id)
    }
}
