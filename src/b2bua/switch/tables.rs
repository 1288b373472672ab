//! The switch's entries, and opening, answering and counting what uses a
//! connection.

use std::time::Instant;

use rsip::{Request, Response};

use super::party::Party;
use super::timers::Timer;
use super::{CallRef, Leg, Switch, SwitchEvent, TxnId};
use crate::phone::E164;
use crate::sip::{ClientTransaction, ServerTransaction, TransactionKey, TwoXxRetransmitter};
use crate::transport::Flow;

/// A client transaction, as the switch numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct ClientId(pub(super) u64);

/// A server transaction and what it belongs to.
#[derive(Debug)]
pub(super) struct ServerEntry {
    pub(super) txn: ServerTransaction,
    /// Where the request came from; responses go back there.
    pub(super) flow: Flow,
    /// The call and leg it belongs to, once known.
    pub(super) owner: Option<(CallRef, Leg)>,
}

/// A client transaction and the call leg that sent it.
#[derive(Debug)]
pub(super) struct ClientEntry {
    pub(super) txn: ClientTransaction,
    pub(super) flow: Flow,
    pub(super) owner: (CallRef, Leg),
}

/// One call in progress.
#[derive(Debug)]
pub(super) struct CallEntry {
    /// The call's state machine: bridged, or the caller alone hearing
    /// the out-of-session announcement.
    pub(super) call: Party,
    /// Where the caller's INVITE came from; A-leg requests go there.
    pub(super) a_flow: Flow,
    /// The call record's id.
    pub(super) record_id: String,
    /// 2xx responses we retransmit until they are ACKed.
    pub(super) two_xx: Vec<TwoXx>,
}

/// A 2xx to an INVITE of `leg`, retransmitted on `flow` until ACKed.
#[derive(Debug)]
pub(super) struct TwoXx {
    pub(super) leg: Leg,
    pub(super) flow: Flow,
    pub(super) retransmitter: TwoXxRetransmitter,
}

/// A route lookup asked for: the INVITE's transaction and its numbers.
#[derive(Debug)]
pub(super) struct Lookup {
    pub(super) server: TxnId,
    pub(super) caller: E164,
    pub(super) dialled: E164,
}

/// The connection id of a stream flow.
fn conn_of(flow: &Flow) -> Option<u64> {
    match flow {
        Flow::Udp { .. } | Flow::Trunk { .. } => None,
        Flow::Tcp { conn, .. } | Flow::Tls { conn, .. } => Some(*conn),
    }
}

impl Switch {
    /// Creates and registers a server transaction for a request received on
    /// `flow` under `key`; `None` if it cannot be (an ACK, or a request
    /// that cannot key one).
    pub(super) fn open_server(
        &mut self,
        now: Instant,
        flow: Flow,
        key: TransactionKey,
        req: Request,
        owner: Option<(CallRef, Leg)>,
    ) -> Option<TxnId> {
        let reliable = flow.is_reliable();
        match ServerTransaction::new(req, now, reliable, self.cfg.timers) {
            Ok(txn) => {
                let id = TxnId(self.next_id());
                self.hold_connection(&flow);
                self.server_keys.insert(key, id);
                self.servers.insert(id, ServerEntry { txn, flow, owner });
                self.flush_server(now, id);
                Some(id)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot open server transaction");
                None
            }
        }
    }

    /// Passes a response to its server transaction and sends what it says;
    /// false if the transaction is gone or refused it (a second final
    /// response, say).
    pub(super) fn respond_on(&mut self, now: Instant, txn: TxnId, resp: Response) -> bool {
        let Some(entry) = self.servers.get_mut(&txn) else {
            tracing::debug!("response for a server transaction that has ended");
            return false;
        };
        let sent = match entry.txn.send_response(now, resp) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "response refused by its transaction");
                false
            }
        };
        self.flush_server(now, txn);
        sent
    }

    /// Starts a client transaction for a request of `owner` to `flow`.
    pub(super) fn open_client(
        &mut self,
        now: Instant,
        flow: Flow,
        req: Request,
        owner: (CallRef, Leg),
    ) {
        match ClientTransaction::new(req, now, flow.is_reliable(), self.cfg.timers) {
            Ok(txn) => {
                let id = ClientId(self.next_id());
                self.hold_connection(&flow);
                self.client_keys.insert(txn.key().clone(), id);
                self.clients.insert(id, ClientEntry { txn, flow, owner });
                self.flush_client(now, id);
            }
            Err(e) => tracing::warn!(error = %e, "cannot start client transaction"),
        }
    }

    /// Drops a terminated server transaction.
    pub(super) fn remove_server(&mut self, id: TxnId) {
        self.timers.set(Timer::Server(id), None);
        if let Some(entry) = self.servers.remove(&id) {
            self.server_keys.remove(entry.txn.key());
            self.release_connection(&entry.flow);
        }
    }

    /// Drops a terminated client transaction.
    pub(super) fn remove_client(&mut self, id: ClientId) {
        self.timers.set(Timer::Client(id), None);
        if let Some(entry) = self.clients.remove(&id) {
            self.client_keys.remove(entry.txn.key());
            self.release_connection(&entry.flow);
        }
    }

    /// One more user of `flow`'s connection (none for UDP).
    pub(super) fn hold_connection(&mut self, flow: &Flow) {
        let Some(conn) = conn_of(flow) else {
            return;
        };
        let users = self.connections.entry(conn).or_insert(0);
        *users += 1;
        if *users == 1 {
            let in_use = true;
            self.events
                .push_back(SwitchEvent::ConnectionUse { conn, in_use });
        }
    }

    /// One user fewer of `flow`'s connection.
    pub(super) fn release_connection(&mut self, flow: &Flow) {
        let Some(conn) = conn_of(flow) else {
            return;
        };
        let Some(users) = self.connections.get_mut(&conn) else {
            return;
        };
        *users = users.saturating_sub(1);
        if *users == 0 {
            self.connections.remove(&conn);
            let in_use = false;
            self.events
                .push_back(SwitchEvent::ConnectionUse { conn, in_use });
        }
    }
}
