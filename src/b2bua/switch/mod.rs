//! The SIP switch: every call of one shard, and everything between the
//! wire and the calls, sans-IO.
//!
//! Like quinn-proto's `Endpoint`, a [`Switch`] owns the tables and
//! demultiplexes: the server and client transaction tables
//! ([`crate::sip::ServerTransaction`], [`crate::sip::ClientTransaction`]),
//! the dialog table (Call-ID and our tag → call and leg), the calls
//! ([`Call`]), the 2xx retransmitters, CANCEL matching, the route lookups
//! it asked for, and one timer queue for all of them. It never touches a
//! socket, a task runtime, a database or a clock: the driver passes in
//! what happened, with `now` (and the wall-clock time call records
//! carry), and drains what to do.
//!
//! * Inputs: [`Switch::handle_inbound`] (a message from a flow),
//!   [`Switch::handle_routed`] (the answer to a [`SwitchEvent::RouteLookup`]),
//!   [`Switch::handle_timeout`] (at [`Switch::poll_timeout`]).
//! * Outputs: [`Switch::poll_transmit`] (bytes for a flow),
//!   [`Switch::poll_event`] (route lookups, media, call records, connection
//!   use), [`Switch::poll_timeout`].
//!
//! Every input is handled to the end before it returns: the calls whose
//! state machines got something are put on a work queue, and the queue is
//! drained in a loop (a call's actions may open client transactions, whose
//! outputs feed calls again, which only queues them), so nothing re-enters
//! a call while it is being drained.
//!
//! A server transaction has a [`TxnId`]; the call gets it with each
//! request and names it in [`Action::Respond`], so a response always finds
//! its transaction, whatever kind of key the transaction is stored under
//! (an RFC 2543 caller's is a `Legacy` key). Timers are one ordered set of
//! `(deadline, timer)` with each timer's current deadline remembered, so
//! rescheduling removes the old entry and no comparison allocates.
//!
//! A switch is one shard of `shards` ([`Switch::new`]): it owns the calls
//! whose Call-IDs hash to it ([`super::shard_of`]) and draws the B-leg
//! Call-IDs it makes so that they hash to it too.

#[doc(hidden)]
pub mod bench_support;
mod demux;
mod drain;
mod lingering;
mod party;
mod records;
mod setup;
mod tables;
mod timers;
mod trunking;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_calls;
#[cfg(test)]
mod tests_dialog;
#[cfg(test)]
mod tests_edge;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_linger;
#[cfg(test)]
mod tests_oos;
#[cfg(test)]
mod tests_shards;
#[cfg(test)]
mod tests_trunks;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rsip::SipMessage;

pub use records::CdrOp;

use super::shard::LoadShare;
use super::trunks::TrunkSet;
use super::{DialogId, Leg, MediaDirection, MediaPorts, Shard, SharedLoad, TrunkPeer, TxnId};
use crate::clock::Timestamp;
use crate::logging::Throttle;
use crate::phone::E164;
use crate::routing::Route;
use crate::sip::{LingerTable, Timers, TransactionKey, parse_datagram, response_for_error};
use crate::transport::{Flow, Inbound};
use lingering::Lingering;
use tables::{CallEntry, ClientEntry, ClientId, Lookup, ServerEntry};
use timers::{Timer, TimerQueue};

/// What a switch needs to know from the configuration.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    /// Our SIP domain (the From host of B-legs).
    pub domain: String,
    /// Our SIP address, written into Via and Contact.
    pub local_sip: SocketAddr,
    /// The trunks, best first (at least one): where B-leg requests go
    /// and whose number plans read a caller's numbers.
    pub trunks: Vec<TrunkPeer>,
    /// Our media address, written into every SDP we send.
    pub advertise: IpAddr,
    /// Status for calls no open session routes.
    pub unknown_caller_status: u16,
    /// Longest call; both legs are hung up then.
    pub max_duration: Duration,
    /// How long the callee may ring before the call is given up.
    pub no_answer_timeout: Duration,
    /// Most calls at once (routed or being routed); more get `503`.
    pub max_calls: usize,
    /// Most transactions at once; new requests beyond get `503` (requests
    /// about something that exists are always taken). Lingering ones (only
    /// absorbing retransmissions) are not counted: see `max_lingering`.
    pub max_transactions: usize,
    /// Most transactions lingering in this switch's retransmission table
    /// ([`crate::sip::LingerTable`]); beyond, the one nearest its deadline
    /// is evicted (counted in [`SwitchStats::lingering_evicted`]).
    pub max_lingering: usize,
    /// RFC 3261 timer values.
    pub timers: Timers,
    /// Session timers (RFC 4028) and the in-dialog probe.
    pub dialog_timers: super::DialogTimers,
    /// Where calls no open session routes are forwarded (`[routing]
    /// out_of_session = "forward"`); `None` refuses them.
    pub fallback: Option<Fallback>,
    /// How calls no open session routes hear the out-of-session
    /// announcement (`out_of_session = "announce"`); `None` unless that
    /// mode is configured (a `fallback` takes precedence).
    pub announce: Option<super::AnnounceMode>,
}

/// The platform's customer centre, for calls no open session routes: the
/// call goes there as a session call would, the centre seeing the dialled
/// safe number as the caller, never the caller's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// `[routing] fallback_number`.
    pub to: E164,
    /// `[routing] fallback_record`: whether the forwarded call is recorded
    /// (the driver says so again with [`RouteResult::OutOfSession`]).
    pub record: bool,
}

/// A call of a switch, for the driver (which keeps its media under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

/// A route lookup the switch asked for ([`SwitchEvent::RouteLookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LookupId(pub u64);

/// Bytes to send on a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub flow: Flow,
    /// One whole SIP message.
    pub bytes: Vec<u8>,
}

/// What a route lookup came to, as the driver hands it back.
#[derive(Debug, Clone)]
pub enum RouteResult {
    /// An open session routes the call, and the driver has the relay
    /// running on `ports`. `route.record` must already say whether the
    /// call is recorded here (false when no recorder is configured).
    Routed {
        /// Where the call goes.
        route: Route,
        /// Our relay ports, one per leg.
        ports: MediaPorts,
    },
    /// A session routes the call, but the media port pool is exhausted.
    NoMedia,
    /// No open session routes the call (and no media is open for it).
    Unknown,
    /// No open session routes the call, and the driver has a relay running
    /// on `ports` for its out-of-session handling (the forward to
    /// [`SwitchConfig::fallback`], or the announcement of
    /// [`SwitchConfig::announce`]). `record`: whether it is recorded here
    /// (never for an announcement).
    OutOfSession {
        /// Our relay ports, one per leg.
        ports: MediaPorts,
        /// Whether the forwarded call is recorded (false without a
        /// recorder).
        record: bool,
    },
    /// The lookup failed (database down).
    Failed,
}

/// Something the driver must do or know.
#[derive(Debug)]
pub enum SwitchEvent {
    /// Look up where a call from `caller` to `dialled` goes, then call
    /// [`Switch::handle_routed`] with `id`.
    RouteLookup {
        /// Names the lookup in the answer.
        id: LookupId,
        /// The caller's number.
        caller: E164,
        /// The proxy number dialled.
        dialled: E164,
    },
    /// A leg's party announced where it wants media: set the relay.
    Media {
        /// The call.
        call: CallRef,
        /// Whose SDP it was.
        leg: Leg,
        /// Its RTP address (`0.0.0.0` for RFC 2543 hold).
        remote: SocketAddr,
        /// Its direction for the audio stream.
        direction: MediaDirection,
    },
    /// The callee answered and the caller has the 2xx: start the
    /// recording (if the call records) and the announcement.
    Answered {
        /// The call.
        call: CallRef,
        /// Its call record's id.
        call_record: String,
    },
    /// An announced call's caller has our answer (its ACK, or our 183):
    /// play the out-of-session announcement to it, encoded in `codec`.
    /// The switch ends the call when the announcement's length is over.
    Play {
        /// The call.
        call: CallRef,
        /// What our SDP answer chose (PCMU or PCMA).
        codec: crate::media::g711::Codec,
    },
    /// Write this to the call records, in order.
    CallRecord(CdrOp),
    /// The call is over and gone from the switch: stop its media and
    /// switch its recording tap off.
    Ended {
        /// The call.
        call: CallRef,
    },
    /// A TCP/TLS connection got its first transaction or dialog
    /// (`in_use`), or lost its last one: while in use it must not be
    /// closed for idleness.
    ConnectionUse {
        /// The connection id of its flow.
        conn: u64,
        /// Whether anything uses it now.
        in_use: bool,
    },
}

/// Counters and sizes, for the driver to publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Calls routed and started, ever.
    pub calls_relayed: u64,
    /// INVITEs refused (unknown caller, lookup failure, limits, no media,
    /// an INVITE we cannot relay), ever.
    pub calls_refused: u64,
    /// INVITEs refused because `max_calls` were in progress, ever.
    pub calls_over_limit: u64,
    /// Calls no open session routes that were refused, ever
    /// (`ansim_out_of_session_total{outcome="rejected"}`).
    pub out_of_session_rejected: u64,
    /// Calls no open session routes that were forwarded to the fallback
    /// number, ever (`outcome="forwarded"`).
    pub out_of_session_forwarded: u64,
    /// Calls no open session routes that heard the out-of-session
    /// announcement, ever (`outcome="announced"`).
    pub out_of_session_announced: u64,
    /// Calls in progress now.
    pub calls_active: usize,
    /// Server and client transactions now (the lingering ones apart).
    pub transactions: usize,
    /// Transactions lingering now, only to absorb retransmissions.
    pub lingering: usize,
    /// Lingering transactions evicted because the table was full, ever.
    pub lingering_evicted: u64,
}

/// All calls of one shard; see the module docs.
#[derive(Debug)]
pub struct Switch {
    cfg: SwitchConfig,
    shard: Shard,
    /// The wall-clock time of the input being handled.
    wall: Timestamp,
    servers: HashMap<TxnId, ServerEntry>,
    server_keys: HashMap<TransactionKey, TxnId>,
    clients: HashMap<ClientId, ClientEntry>,
    client_keys: HashMap<TransactionKey, ClientId>,
    /// Transactions that only absorb retransmissions now (outside
    /// `max_transactions`, bounded by `max_lingering`).
    lingering: LingerTable<Lingering>,
    calls: HashMap<CallRef, CallEntry>,
    /// Either leg's dialog → the call and which leg it is.
    dialogs: HashMap<DialogId, (CallRef, Leg)>,
    /// Route lookups asked for and not answered yet: they count against
    /// `max_calls` like the calls they may become.
    lookups: HashMap<LookupId, Lookup>,
    /// Users (transactions, calls) of each TCP/TLS connection.
    connections: HashMap<u64, usize>,
    timers: TimerQueue<Timer>,
    /// The trunks, their state and keep-alives.
    trunks: TrunkSet,
    /// Calls whose state machines have something to drain.
    work: VecDeque<CallRef>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SwitchEvent>,
    /// The last id handed out (transactions, calls, lookups share it).
    last_id: u64,
    stats: SwitchStats,
    /// Call record ids: UUIDv7 from the wall time passed in.
    record_ids: records::RecordIds,
    /// The calls and transactions of all shards, for the limits.
    load: LoadShare,
    /// Set by [`Switch::begin_drain`]: new calls and OPTIONS probes get
    /// `503` (a dispatcher in front moves new calls to another node), the
    /// calls in progress go on.
    draining: bool,
    /// The overload warnings, each at most once a second.
    warnings: OverloadWarnings,
}

/// The warnings a switch logs when it refuses for want of room, each
/// throttled (under overload there is one per refused request; the
/// stats and metrics count every one).
#[derive(Debug)]
struct OverloadWarnings {
    /// `max_calls` reached.
    calls: Throttle,
    /// The media port pool is exhausted.
    ports: Throttle,
    /// `max_transactions` reached.
    transactions: Throttle,
}

impl Default for OverloadWarnings {
    fn default() -> Self {
        let second = Duration::from_secs(1);
        Self {
            calls: Throttle::new(second),
            ports: Throttle::new(second),
            transactions: Throttle::new(second),
        }
    }
}

impl Switch {
    /// A switch for shard `shard` of `shards` (0 of 1 when it runs alone).
    pub fn new(shard: usize, shards: usize, cfg: SwitchConfig) -> Switch {
        let mut trunks = TrunkSet::new(cfg.trunks.clone(), cfg.local_sip, cfg.domain.clone());
        trunks.set_shard(Shard::new(shard, shards));
        Switch {
            trunks,
            lingering: LingerTable::new(cfg.max_lingering),
            cfg,
            shard: Shard::new(shard, shards),
            wall: Timestamp::from_millis(0),
            servers: HashMap::new(),
            server_keys: HashMap::new(),
            clients: HashMap::new(),
            client_keys: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            lookups: HashMap::new(),
            connections: HashMap::new(),
            timers: TimerQueue::default(),
            work: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_id: 0,
            stats: SwitchStats::default(),
            record_ids: records::RecordIds::default(),
            load: LoadShare::default(),
            draining: false,
            warnings: OverloadWarnings::default(),
        }
    }

    /// Counts `max_calls` and `max_transactions` over every switch that
    /// shares `load` (call before the first input).
    pub fn share_load(&mut self, load: std::sync::Arc<SharedLoad>) {
        self.load = LoadShare::new(load);
        self.publish_load();
    }

    /// Stops taking new calls (SIGTERM with a drain period): from now on
    /// new INVITEs and OPTIONS are answered `503`; calls in progress, and
    /// their in-dialog requests, go on until they end.
    pub fn begin_drain(&mut self) {
        self.draining = true;
    }

    /// Whether no call is in progress (or being routed): draining is done.
    pub fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.lookups.is_empty()
    }

    /// This switch's shard.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// A message received on `inbound.flow`. Unparseable input gets the
    /// stateless `400`/`501` it is owed, if it can be addressed at all.
    pub fn handle_inbound(&mut self, now: Instant, wall: Timestamp, inbound: Inbound) {
        self.wall = wall;
        let Inbound { flow, data } = inbound;
        match parse_datagram(&data) {
            Ok(SipMessage::Request(req)) => self.on_request(now, flow, req),
            Ok(SipMessage::Response(resp)) => self.on_response(now, resp),
            Err(e) => {
                tracing::debug!(remote = %flow.remote(), error = %e, "unparseable SIP message");
                if let Some(resp) = response_for_error(&e) {
                    self.send(&flow, &SipMessage::Response(resp));
                }
            }
        }
        self.drain_work(now);
    }

    /// The answer to the route lookup `id`. For [`RouteResult::Routed`],
    /// the call it started, under which the driver keeps the relay; `None`
    /// when no call was started (the INVITE was cancelled meanwhile, or
    /// cannot be relayed): the driver stops the relay.
    pub fn handle_routed(
        &mut self,
        now: Instant,
        wall: Timestamp,
        id: LookupId,
        result: RouteResult,
    ) -> Option<CallRef> {
        self.wall = wall;
        let call = self.routed(now, id, result);
        self.drain_work(now);
        call
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, wall: Timestamp) {
        self.wall = wall;
        for timer in self.timers.expired(now) {
            match timer {
                Timer::Server(id) => {
                    if let Some(e) = self.servers.get_mut(&id) {
                        e.txn.handle_timeout(now);
                    }
                    self.flush_server(now, id);
                }
                Timer::Client(id) => {
                    if let Some(e) = self.clients.get_mut(&id) {
                        e.txn.handle_timeout(now);
                    }
                    self.flush_client(now, id);
                }
                Timer::Call(id) => self.call_timeout(now, id),
                Timer::Linger => self.linger_timeout(now),
                Timer::Trunks => self.trunks_timeout(now),
            }
        }
        self.drain_work(now);
    }

    /// Ends every call at shutdown: each call record ends `interrupted`
    /// and each call is [`SwitchEvent::Ended`]. (Hanging both legs up
    /// would need the network to stay up.)
    pub fn shutdown(&mut self, wall: Timestamp) {
        self.wall = wall;
        let mut calls: Vec<CallRef> = self.calls.keys().copied().collect();
        calls.sort();
        for id in calls {
            if let Some(entry) = self.calls.get(&id) {
                let end = crate::store::CallEnd {
                    at: wall,
                    result: crate::store::CallResult::Interrupted,
                    sip_status: 0,
                    hangup_side: Some(crate::store::HangupSide::System),
                    reason: None,
                };
                let op = CdrOp::End(entry.record_id.clone(), end);
                self.events.push_back(SwitchEvent::CallRecord(op));
            }
            self.end_call(id);
        }
        self.publish_load();
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing the driver must do or know.
    pub fn poll_event(&mut self) -> Option<SwitchEvent> {
        self.events.pop_front()
    }

    /// When [`Switch::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Counters and table sizes.
    pub fn stats(&self) -> SwitchStats {
        SwitchStats {
            calls_active: self.calls.len(),
            transactions: self.servers.len() + self.clients.len(),
            lingering: self.lingering.len(),
            lingering_evicted: self.lingering.evicted(),
            ..self.stats
        }
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Whether the transaction table is full: new requests get `503`.
    fn transactions_full(&self) -> bool {
        let mine = self.servers.len() + self.clients.len();
        self.load.transactions(mine) >= self.cfg.max_transactions
    }

    /// Whether another call would pass `max_calls`.
    fn calls_full(&self) -> bool {
        let mine = self.calls.len() + self.lookups.len();
        self.load.calls(mine) >= self.cfg.max_calls
    }

    /// Adds what changed in this switch's tables to the shared load.
    fn publish_load(&mut self) {
        let calls = self.calls.len() + self.lookups.len();
        let transactions = self.servers.len() + self.clients.len();
        self.load.publish(calls, transactions);
    }

    /// Queues a message for `flow`.
    fn send(&mut self, flow: &Flow, msg: &SipMessage) {
        self.transmits.push_back(Transmit {
            flow: flow.clone(),
            bytes: crate::sip::to_bytes(msg),
        });
    }

    /// Where requests to trunk `index` go: from our first UDP socket, or
    /// over the connection the transports keep to it.
    fn trunk_flow(&self, index: usize) -> Option<Flow> {
        let peer = self.trunks.peer(index)?;
        let remote = peer.address;
        Some(match peer.transport {
            crate::config::Transport::Udp => Flow::Udp { socket: 0, remote },
            transport => Flow::Trunk {
                trunk: index,
                remote,
                tls: transport == crate::config::Transport::Tls,
            },
        })
    }

    /// Where requests on `leg` of `call` go.
    fn leg_flow(&self, call: CallRef, leg: Leg) -> Option<Flow> {
        let entry = self.calls.get(&call)?;
        match leg {
            Leg::A => Some(entry.a_flow.clone()),
            Leg::B => self.trunk_flow(entry.call.b_trunk()?),
        }
    }
}
