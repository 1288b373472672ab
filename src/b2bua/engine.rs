//! The SIP engine: the driver between the transports, the RFC 3261
//! transaction state machines and the per-call B2BUA state machines.
//!
//! It is the only place that reads the clock and owns timers for SIP. One
//! task runs it: every inbound message, route result and timer expiry is an
//! event; handling one never waits on I/O (route lookups and call records
//! are done by spawned tasks that report back as events), so the loop's
//! latency does not depend on the database.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsip::{Request, Response, SipMessage};
use tokio::sync::{mpsc, watch};

use super::{Call, Leg};
use crate::clock::SharedClock;
use crate::media::{Announcement, MediaHandle, PortPool, RelayConfig};
use crate::metrics::Metrics;
use crate::recording::{Recorder, RecordingMeta, RecordingTap};
use crate::routing::Routing;
use crate::sip::{
    ClientTransaction, ServerTransaction, Timers, TransactionKey, TwoXxRetransmitter,
};
use crate::store::Store;
use crate::transport::{Flow, FlowLease, InboundReceiver, Transports};

/// What the engine needs to know from the configuration.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// Our SIP domain (From host of B-legs).
    pub domain: String,
    /// Where B-leg requests go.
    pub trunk: SocketAddr,
    /// Our media address, written into SDP; also our Via/Contact host when
    /// the SIP socket is bound to a wildcard address.
    pub advertise: IpAddr,
    /// Status for calls no open session routes.
    pub unknown_caller_status: u16,
    /// Longest call; both legs are hung up then.
    pub max_duration: Duration,
    /// How long the callee may ring before the call is given up.
    pub no_answer_timeout: Duration,
    /// Played to both parties when the call is answered, before they are
    /// bridged (`[media] announcement`).
    pub announcement: Option<Arc<Announcement>>,
    /// How each call's relay admits media sources.
    pub relay: RelayConfig,
    /// Most calls at once (routed or being routed); more get `503`.
    pub max_calls: usize,
    /// Most transactions at once; new requests beyond get `503`.
    pub max_transactions: usize,
}

/// Events the engine's task handles, besides inbound messages.
pub(super) enum Event {
    /// A route lookup finished for the INVITE server transaction `key`.
    Routed {
        key: TransactionKey,
        outcome: super::route::Outcome,
    },
}

/// A server transaction and what it belongs to.
pub(super) struct ServerEntry {
    /// Its id, handed to the call with the request.
    pub id: super::TxnId,
    pub txn: ServerTransaction,
    pub flow: Flow,
    /// The call and leg it belongs to, once known.
    pub owner: Option<(u64, Leg)>,
    /// Keeps a TCP/TLS flow's connection open while the transaction lives.
    pub _lease: Option<FlowLease>,
}

/// A client transaction and the call leg that sent it.
pub(super) struct ClientEntry {
    pub txn: ClientTransaction,
    pub flow: Flow,
    pub owner: (u64, Leg),
    /// Keeps a TCP/TLS flow's connection open while the transaction lives.
    pub _lease: Option<FlowLease>,
}

/// One call in progress.
pub(super) struct CallEntry {
    pub call: Call,
    /// Where the caller's requests came from; A-leg requests go back there.
    pub a_flow: Flow,
    /// Keeps the caller's TCP/TLS connection open for the whole call.
    pub _a_lease: Option<FlowLease>,
    /// The relay; dropping it frees the ports.
    pub media: Option<MediaHandle>,
    /// The call record's id.
    pub cdr: String,
    /// 2xx responses we are retransmitting until ACKed, by leg.
    pub two_xx: Vec<(Leg, TwoXxRetransmitter)>,
    /// The relay's recording tap and what to record under, when the
    /// session records; switched on at answer.
    pub recording: Option<(Arc<RecordingTap>, RecordingMeta)>,
}

/// Something with a timer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerRef {
    Server(TransactionKeyOrd),
    Client(TransactionKeyOrd),
    Call(u64),
}

/// [`TransactionKey`] with an order, for the timer heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TransactionKeyOrd(pub TransactionKey);

impl PartialOrd for TransactionKeyOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TransactionKeyOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        format!("{:?}", self.0).cmp(&format!("{:?}", other.0))
    }
}

/// What the engine is built from.
pub struct EngineParts {
    /// The bound SIP sockets.
    pub transports: Transports,
    /// Messages the transports received from the trunk.
    pub inbound: InboundReceiver,
    /// Route lookups.
    pub routing: Arc<Routing>,
    /// Call records.
    pub store: Store,
    /// RTP port pairs.
    pub media: Arc<PortPool>,
    /// Settings from the configuration.
    pub settings: SipSettings,
    /// Wall-clock time for call records.
    pub clock: SharedClock,
    /// Counters shared with `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Records answered calls of sessions with recording on.
    pub recorder: Option<Arc<Recorder>>,
}

/// The engine's state; see the module docs.
pub struct Engine {
    pub(super) transports: Transports,
    pub(super) routing: Arc<Routing>,
    pub(super) media: Arc<PortPool>,
    pub(super) settings: Arc<SipSettings>,
    /// Our address in Via and Contact of B-legs.
    pub(super) local_sip: SocketAddr,
    pub(super) timers: Timers,
    pub(super) clock: SharedClock,
    pub(super) metrics: Arc<Metrics>,
    pub(super) recorder: Option<Arc<Recorder>>,
    pub(super) servers: HashMap<TransactionKey, ServerEntry>,
    /// Server transaction ids → their keys.
    pub(super) server_ids: HashMap<super::TxnId, TransactionKey>,
    pub(super) next_txn: u64,
    pub(super) clients: HashMap<TransactionKey, ClientEntry>,
    pub(super) calls: HashMap<u64, CallEntry>,
    /// Either leg's dialog → the call and which leg it is.
    pub(super) dialogs: HashMap<super::DialogId, (u64, Leg)>,
    pub(super) deadlines: BinaryHeap<Reverse<(Instant, TimerRef)>>,
    pub(super) events: mpsc::Sender<Event>,
    /// Ordered call-record writes ([`super::actions::cdr_writer`]).
    pub(super) cdr: mpsc::UnboundedSender<super::actions::CdrOp>,
    pub(super) next_call: u64,
    /// INVITEs whose route lookup is running: they count against
    /// `max_calls` like the calls they may become.
    pub(super) routing_pending: usize,
}

impl Engine {
    /// Runs the engine until `stop` turns true.
    pub async fn run(parts: EngineParts, mut stop: watch::Receiver<bool>) {
        let EngineParts {
            transports,
            mut inbound,
            routing,
            store,
            media,
            settings,
            clock,
            metrics,
            recorder,
        } = parts;
        let (events, mut event_rx) = mpsc::channel(1024);
        let (cdr, cdr_rx) = mpsc::unbounded_channel();
        tokio::spawn(super::actions::cdr_writer(store.clone(), cdr_rx));
        let local = transports
            .udp_local_addr()
            .unwrap_or_else(|| SocketAddr::new(settings.advertise, 5060));
        let local_sip = if local.ip().is_unspecified() {
            SocketAddr::new(settings.advertise, local.port())
        } else {
            local
        };
        let mut engine = Engine {
            transports,
            routing,
            media,
            settings: Arc::new(settings),
            local_sip,
            timers: Timers::default(),
            clock,
            metrics,
            recorder,
            servers: HashMap::new(),
            server_ids: HashMap::new(),
            next_txn: 1,
            clients: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            deadlines: BinaryHeap::new(),
            events,
            cdr,
            next_call: 1,
            routing_pending: 0,
        };
        let limits = &engine.metrics.limits;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        limits
            .max_calls
            .store(engine.settings.max_calls as i64, relaxed);
        limits
            .max_transactions
            .store(engine.settings.max_transactions as i64, relaxed);
        tracing::info!(local = %engine.local_sip, trunk = %engine.settings.trunk, "SIP engine running");
        loop {
            let next = engine.deadlines.peek().map(|Reverse((t, _))| *t);
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = inbound.recv() => match msg {
                    Some(m) => engine.on_inbound(Instant::now(), m),
                    None => break,
                },
                Some(ev) = event_rx.recv() => engine.on_event(Instant::now(), ev),
                _ = sleep => engine.on_timers(Instant::now()),
                _ = stop.wait_for(|s| *s) => break,
            }
            engine.update_gauges();
        }
        engine.shutdown();
    }

    fn on_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Routed { key, outcome } => self.on_routed(now, key, outcome),
        }
    }

    /// Fires every timer that is due.
    fn on_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, _))) = self.deadlines.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, which))) = self.deadlines.pop() else {
                break;
            };
            match which {
                TimerRef::Server(k) => {
                    if let Some(e) = self.servers.get_mut(&k.0) {
                        e.txn.handle_timeout(now);
                    }
                    self.drain_server(now, &k.0);
                }
                TimerRef::Client(k) => {
                    if let Some(e) = self.clients.get_mut(&k.0) {
                        e.txn.handle_timeout(now);
                    }
                    self.drain_client(now, &k.0);
                }
                TimerRef::Call(id) => self.call_timeout(now, id),
            }
        }
    }

    /// Ends every call (both legs hung up by their state machines would
    /// need the network; at shutdown we stop media and close records).
    fn shutdown(&mut self) {
        let now = self.clock.now();
        for (_, entry) in self.calls.drain() {
            let end = crate::store::CallEnd {
                at: now,
                result: "interrupted",
                sip_status: 0,
                hangup_side: Some("system"),
            };
            let _ = self.cdr.send(super::actions::CdrOp::End(entry.cdr, end));
        }
    }

    pub(super) fn schedule(&mut self, at: Option<Instant>, which: TimerRef) {
        if let Some(at) = at {
            self.deadlines.push(Reverse((at, which)));
        }
    }

    /// Publishes the table sizes to `/metrics`.
    fn update_gauges(&self) {
        let transactions = (self.servers.len() + self.clients.len()) as i64;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.metrics.sip_transactions.store(transactions, relaxed);
    }

    /// Whether the transaction table is full: new requests get `503`.
    pub(super) fn transactions_full(&self) -> bool {
        self.servers.len() + self.clients.len() >= self.settings.max_transactions
    }

    /// Whether another call would pass `max_calls`.
    pub(super) fn calls_full(&self) -> bool {
        self.calls.len() + self.routing_pending >= self.settings.max_calls
    }

    /// Sends a message on a flow.
    pub(super) fn send(&self, flow: &Flow, msg: &SipMessage) {
        self.transports.send(flow, crate::sip::to_bytes(msg));
    }

    /// Sends a response straight away, without a transaction (stateless).
    pub(super) fn respond_stateless(&self, flow: &Flow, resp: Response) {
        self.send(flow, &SipMessage::Response(resp));
    }

    pub(super) fn now_ts(&self) -> crate::clock::Timestamp {
        self.clock.now()
    }

    pub(super) fn leg_flow(&self, call: u64, leg: Leg) -> Option<Flow> {
        let entry = self.calls.get(&call)?;
        Some(match leg {
            Leg::A => entry.a_flow.clone(),
            Leg::B => self.transports.udp_flow(self.settings.trunk),
        })
    }

    pub(super) fn request_of(&self, key: &TransactionKey) -> Option<&Request> {
        self.servers.get(key).map(|e| e.txn.request())
    }
}
