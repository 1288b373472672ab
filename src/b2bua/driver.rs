//! The SIP engine: the tokio driver around the [`Switch`]es.
//!
//! It owns everything that is I/O and nothing that is SIP: the transports
//! and their inbound queues, the timers (a sleep until
//! [`Switch::poll_timeout`] per switch), the route lookups (a route-cache
//! hit answered inline in the shard's task; a miss spawned, answered back
//! through a channel), the call-record writer task, the
//! media relays and their port pool, the recorder and the announcement,
//! the connection leases, and the metrics. `[sip] shards` switches run
//! side by side, each on its own task with its own calls; with more than
//! one, a dispatcher task hands every received message to the switch
//! owning its Call-ID ([`shard_of_message`]), the one cross-task hop of a
//! message. Each shard's task hands its switch every inbound message,
//! route answer and timer expiry, then carries out the switch's events and
//! transmits. Handling one never waits on I/O, so the loop's latency does
//! not depend on the database.
//!
//! This is the only file of [`crate::b2bua`] that uses tokio.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::cdr::CdrQueue;
use super::{
    CallRef, LookupId, MediaPorts, RouteResult, SharedLoad, Switch, SwitchConfig, SwitchEvent,
    SwitchStats, shard_of_message,
};
use crate::clock::SharedClock;
use crate::media::{Announcement, Leg, MediaHandle, Relay};
use crate::metrics::Metrics;
use crate::recording::{Recorder, RecordingMeta};
use crate::routing::{Route, Routing};
use crate::sip::Timers;
use crate::store::Store;
use crate::transport::{FlowLease, Inbound, InboundReceiver, Transports, UdpOutbox};

/// How long shutdown waits for the call-record writer to catch up.
const WRITER_DRAIN: Duration = Duration::from_secs(5);
/// Messages one shard's queue holds: a new request beyond is dropped
/// (counted), anything else waits for room.
const SHARD_QUEUE: usize = 4_096;
/// Messages a shard hands its switch before it sends what came of them.
const INBOUND_BATCH: usize = 64;

/// What the engine needs to know from the configuration.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// Our SIP domain (From host of B-legs).
    pub domain: String,
    /// The trunks, best first: where B-leg requests go.
    pub trunks: Vec<super::TrunkPeer>,
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
    /// Most calls at once (routed or being routed); more get `503`.
    pub max_calls: usize,
    /// Most transactions at once; new requests beyond get `503`.
    pub max_transactions: usize,
    /// Most transactions lingering to absorb retransmissions, all shards
    /// together (each shard gets its share).
    pub max_lingering: usize,
    /// Session timers (RFC 4028) and the in-dialog probe, per leg.
    pub dialog_timers: super::DialogTimers,
    /// Switches side by side (`[sip] shards`; 0 = one per core).
    pub shards: usize,
    /// After `stop`, how long calls in progress may go on while new calls
    /// and OPTIONS get `503` (`[sip] drain_timeout`; zero: end at once).
    pub drain: Duration,
    /// Calls no open session routes go here (`[routing] out_of_session =
    /// "forward"`); `None` refuses them.
    pub fallback: Option<FallbackSettings>,
    /// Calls no open session routes hear this and are hung up
    /// (`[routing] out_of_session = "announce"`); `None` otherwise.
    pub announce: Option<AnnounceSettings>,
}

/// The out-of-session announcement, for `out_of_session = "announce"`.
#[derive(Debug, Clone)]
pub struct AnnounceSettings {
    /// `out_of_session_announce = "early"` (183, play, the final status);
    /// else answered, played and hung up.
    pub early: bool,
    /// `out_of_session_announcement`, loaded.
    pub announcement: Arc<Announcement>,
}

/// The forward of out-of-session calls to the customer centre.
#[derive(Debug, Clone)]
pub struct FallbackSettings {
    /// The centre's number and whether its calls are recorded.
    pub target: super::Fallback,
    /// Played to the caller and the centre when the centre answers, before
    /// they are bridged (`out_of_session_announcement`, followed by
    /// `[media] announcement` when the call is recorded).
    pub announcement: Option<Arc<Announcement>>,
    /// Retention class of forwarded recordings (`[retention]
    /// default_class`).
    pub retention_class: String,
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
    /// The media relay (its ports and workers).
    pub media: Arc<Relay>,
    /// Settings from the configuration.
    pub settings: SipSettings,
    /// Wall-clock time for call records.
    pub clock: SharedClock,
    /// Counters shared with `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Records answered calls of sessions with recording on.
    pub recorder: Option<Arc<Recorder>>,
    /// Trunks the transports could not connect to (by index), from
    /// [`Transports::connect_trunks`].
    pub trunk_failures: mpsc::Receiver<usize>,
    /// Where the call-record writer runs (`None`: the engine's runtime).
    /// `ansim serve` runs the engine on a one-thread runtime of its own
    /// and the writer on the shared one: on the engine's thread it fell
    /// behind at 3,000 calls/s and its queue dropped records.
    pub background: Option<tokio::runtime::Handle>,
}

/// What a spawned route lookup found.
enum Found {
    Route(Route),
    Nothing,
    Failed,
}

/// A call's media, what it records under if it is recorded (the recording
/// starts at answer), and what it plays then.
struct CallMedia {
    handle: MediaHandle,
    /// Session id (`""` for a forwarded call) and retention class.
    recording: Option<(String, String)>,
    /// Played to both parties at the answer, before the bridge.
    announcement: Option<Arc<Announcement>>,
}

/// What every shard's engine shares: the send side of the transports,
/// the lookups, the relay, the recorder, the call-record queue and the
/// metrics (all cheap to clone, all safe to use from several tasks).
#[derive(Clone)]
struct Shared {
    /// The send side every shard transmits on.
    transports: Transports,
    /// Route lookups (cache and database).
    routing: Arc<Routing>,
    /// The media relay: ports and workers.
    relay: Arc<Relay>,
    /// Settings from the configuration.
    settings: SipSettings,
    /// Wall-clock time for call records.
    clock: SharedClock,
    /// Counters shared with `/metrics`.
    metrics: Arc<Metrics>,
    /// Records answered calls of sessions with recording on.
    recorder: Option<Arc<Recorder>>,
    /// Ordered call-record writes, stored behind the calls.
    cdr: CdrQueue,
}

/// Where a shard's engine takes its messages from: the transports' queues
/// themselves when it runs alone (no hand-off at all), else its own queue,
/// filled by [`dispatch`].
enum Inbox {
    /// The only shard: the transports' queues, urgent first.
    Sole(InboundReceiver),
    /// One of several: its queue from the dispatcher.
    Shard(mpsc::Receiver<Inbound>),
}

impl Inbox {
    async fn recv(&mut self) -> Option<Inbound> {
        match self {
            Inbox::Sole(rx) => rx.recv().await,
            Inbox::Shard(rx) => rx.recv().await,
        }
    }

    fn try_recv(&mut self) -> Option<Inbound> {
        match self {
            Inbox::Sole(rx) => rx.try_recv(),
            Inbox::Shard(rx) => rx.try_recv().ok(),
        }
    }
}

/// What one shard's engine runs on.
struct ShardIo {
    /// Its messages.
    inbox: Inbox,
    /// Trunks the transports could not reach ([`fan_out`]).
    trunk_failures: mpsc::Receiver<usize>,
    /// The answers to this shard's route lookups.
    found_rx: mpsc::Receiver<(LookupId, Found)>,
    /// Turns true at shutdown.
    stop: watch::Receiver<bool>,
}

/// One shard's engine state; see the module docs.
pub struct Engine {
    /// This shard's switch.
    switch: Switch,
    /// What every shard shares.
    shared: Shared,
    /// Where spawned route lookups answer.
    found: mpsc::Sender<(LookupId, Found)>,
    /// Each call's media, under the switch's name for the call.
    media: HashMap<CallRef, CallMedia>,
    /// One lease per TCP/TLS connection the switch uses.
    leases: HashMap<u64, FlowLease>,
    /// The switch's stats as last added to the metrics.
    published: SwitchStats,
    /// The trunk states as last published (shard 0 publishes them: every
    /// shard probes the trunks, one speaks for them).
    published_trunks: Vec<(String, bool)>,
    /// A flush's UDP messages, sent together at its end (kept to reuse
    /// its capacity).
    outbox: UdpOutbox,
}

/// How many switches `configured` shards means (0 = one per core).
pub fn shard_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Engine {
    /// Runs the engine until `stop` turns true: `[sip] shards` switches,
    /// each on its own task, and (with more than one) the task that hands
    /// each received message to the switch owning its Call-ID.
    pub async fn run(parts: EngineParts, stop: watch::Receiver<bool>) {
        let EngineParts {
            transports,
            inbound,
            routing,
            store,
            media,
            settings,
            clock,
            metrics,
            recorder,
            trunk_failures,
            background,
        } = parts;
        let background = background.unwrap_or_else(tokio::runtime::Handle::current);
        let (cdr, writer) = CdrQueue::start(store, metrics.clone(), &background);
        if let Some(recorder) = &recorder {
            // Recordings' rows go in the same batches, after their calls'.
            recorder.send_rows_to(cdr.row_sink());
        }
        let cfg = switch_config(&transports, &settings);
        let limits = &metrics.limits;
        let relaxed = Ordering::Relaxed;
        limits.max_calls.store(settings.max_calls as i64, relaxed);
        limits
            .max_transactions
            .store(settings.max_transactions as i64, relaxed);
        let shards = shard_count(settings.shards);
        let first = settings.trunks.first().map(|t| t.address);
        tracing::info!(local = %cfg.local_sip, trunk = ?first, trunks = settings.trunks.len(), shards, "SIP engine running");
        let shared = Shared {
            transports,
            routing,
            relay: media,
            settings,
            clock,
            metrics: metrics.clone(),
            recorder,
            cdr,
        };
        let load = Arc::new(SharedLoad::default());
        let (inboxes, dispatcher) = if shards == 1 {
            (vec![Inbox::Sole(inbound)], None)
        } else {
            let (txs, rxs): (Vec<_>, Vec<_>) =
                (0..shards).map(|_| mpsc::channel(SHARD_QUEUE)).unzip();
            let task = tokio::spawn(dispatch(inbound, txs, metrics.clone()));
            (rxs.into_iter().map(Inbox::Shard).collect(), Some(task))
        };
        let (failure_txs, failure_rxs): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::channel(64)).unzip();
        let forwarder = tokio::spawn(fan_out(trunk_failures, failure_txs));
        let mut tasks = Vec::with_capacity(shards);
        for (index, (inbox, trunk_failures)) in inboxes.into_iter().zip(failure_rxs).enumerate() {
            let mut switch = Switch::new(index, shards, cfg.clone());
            switch.share_load(load.clone());
            let (found, found_rx) = mpsc::channel(1024);
            let engine = Engine::new(switch, shared.clone(), found);
            let io = ShardIo {
                inbox,
                trunk_failures,
                found_rx,
                stop: stop.clone(),
            };
            tasks.push(tokio::spawn(engine.run_shard(io)));
        }
        drop(shared);
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a SIP shard ended abnormally");
            }
        }
        forwarder.abort();
        if let Some(task) = dispatcher {
            task.abort();
        }
        // The writer ends once every sender is gone and its queue is done.
        if tokio::time::timeout(WRITER_DRAIN, writer).await.is_err() {
            tracing::warn!("call records still being written at shutdown");
        }
    }

    fn new(switch: Switch, shared: Shared, found: mpsc::Sender<(LookupId, Found)>) -> Engine {
        Engine {
            switch,
            shared,
            found,
            media: HashMap::new(),
            leases: HashMap::new(),
            published: SwitchStats::default(),
            published_trunks: Vec::new(),
            outbox: UdpOutbox::new(),
        }
    }

    /// One shard's loop: its messages (a batch at a time), its route
    /// answers, its timers, until `stop` or the end of its inbox; then its
    /// calls end `interrupted`.
    async fn run_shard(mut self, io: ShardIo) {
        let ShardIo {
            mut inbox,
            mut trunk_failures,
            mut found_rx,
            mut stop,
        } = io;
        self.switch.start_keepalives(Instant::now());
        self.flush();
        // Set once `stop` turned true with a drain period: until then.
        let mut drain_until: Option<tokio::time::Instant> = None;
        // One timer for the switch's next deadline, moved only when the
        // deadline moves (not made anew on every turn of the loop).
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            if drain_until.is_some_and(|t| t <= tokio::time::Instant::now())
                || (drain_until.is_some() && self.switch.is_idle())
            {
                break;
            }
            let stopping = async {
                match drain_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => {
                        let _ = stop.wait_for(|s| *s).await;
                    }
                }
            };
            let next = self.switch.poll_timeout();
            if next != armed {
                if let Some(t) = next {
                    sleep.as_mut().reset(t.into());
                }
                armed = next;
            }
            tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(m) => self.on_inbound(m, &mut inbox),
                    None => break,
                },
                Some((id, found)) = found_rx.recv() => self.on_found(id, found),
                Some(trunk) = trunk_failures.recv() => {
                    let wall = self.shared.clock.now();
                    self.switch.handle_trunk_failure(Instant::now(), wall, trunk);
                }
                _ = &mut sleep, if armed.is_some() => {
                    armed = None;
                    let wall = self.shared.clock.now();
                    self.switch.handle_timeout(Instant::now(), wall);
                }
                _ = stopping => {
                    if drain_until.is_some() || self.shared.settings.drain.is_zero() {
                        break;
                    }
                    tracing::info!(drain = ?self.shared.settings.drain, "draining: new calls and OPTIONS get 503 while calls in progress finish");
                    self.switch.begin_drain();
                    drain_until = Some(tokio::time::Instant::now() + self.shared.settings.drain);
                }
            }
            self.flush();
        }
        let wall = self.shared.clock.now();
        self.switch.shutdown(wall);
        self.flush();
    }

    /// Hands `first` and whatever else is waiting (up to [`INBOUND_BATCH`])
    /// to the switch before anything is flushed.
    fn on_inbound(&mut self, first: Inbound, inbox: &mut Inbox) {
        let now = Instant::now();
        let wall = self.shared.clock.now();
        self.switch.handle_inbound(now, wall, first);
        for _ in 1..INBOUND_BATCH {
            let Some(m) = inbox.try_recv() else {
                break;
            };
            self.switch.handle_inbound(now, wall, m);
        }
    }

    /// Carries out what the switch asked for, and publishes its counters.
    fn flush(&mut self) {
        while let Some(ev) = self.switch.poll_event() {
            self.on_event(ev);
        }
        while let Some(t) = self.switch.poll_transmit() {
            self.shared
                .transports
                .queue(&mut self.outbox, &t.flow, t.bytes);
        }
        self.shared.transports.send_queued(&mut self.outbox);
        self.publish();
    }

    fn on_event(&mut self, ev: SwitchEvent) {
        match ev {
            SwitchEvent::RouteLookup {
                id,
                caller,
                dialled,
            } => {
                let at = self.shared.clock.now();
                // A cache hit is answered here and now: no task, no channel.
                let cached = self.shared.routing.route_cached(&caller, &dialled, at);
                if let Some(hit) = cached {
                    self.on_found(id, hit.map_or(Found::Nothing, Found::Route));
                    return;
                }
                let (routing, found) = (self.shared.routing.clone(), self.found.clone());
                tokio::spawn(async move {
                    let answer = match routing.route(&caller, &dialled, at).await {
                        Ok(Some(route)) => Found::Route(route),
                        Ok(None) => Found::Nothing,
                        Err(e) => {
                            tracing::error!(error = %e, "route lookup failed");
                            Found::Failed
                        }
                    };
                    let _ = found.send((id, answer)).await;
                });
            }
            SwitchEvent::Media {
                call,
                leg,
                remote,
                direction,
            } => {
                if let Some(m) = self.media.get(&call) {
                    m.handle.set_remote(leg, remote);
                    m.handle.set_direction(leg, direction);
                }
            }
            SwitchEvent::Answered { call, call_record } => {
                let Some(m) = self.media.get(&call) else {
                    return;
                };
                if let (Some(recorder), Some((session, class))) =
                    (&self.shared.recorder, &m.recording)
                {
                    let meta = RecordingMeta {
                        call_id: call_record,
                        session_id: session.clone(),
                        retention_class: class.clone(),
                    };
                    m.handle.attach_tap(Box::new(recorder.begin(meta)));
                }
                if let Some(announcement) = &m.announcement {
                    m.handle.play_then_bridge(announcement.clone());
                }
            }
            SwitchEvent::Play { call, codec } => {
                if let (Some(m), Some(a)) = (self.media.get(&call), &self.shared.settings.announce)
                {
                    m.handle.announce_alone(a.announcement.clone(), codec);
                }
            }
            SwitchEvent::CallRecord(op) => self.shared.cdr.push(op),
            SwitchEvent::Ended { call } => {
                if let Some(m) = self.media.remove(&call) {
                    self.stop_media(m);
                }
            }
            SwitchEvent::ConnectionUse { conn, in_use } => {
                if !in_use {
                    self.leases.remove(&conn);
                } else if let Some(lease) = self.shared.transports.lease_conn(conn) {
                    self.leases.insert(conn, lease);
                }
            }
        }
    }

    /// A route lookup came back: for a route, or a call to forward to the
    /// customer centre, the call's media is opened on two fresh port pairs
    /// before the switch hears of it.
    fn on_found(&mut self, id: LookupId, found: Found) {
        let mut media = None;
        let settings = &self.shared.settings;
        let result = match found {
            Found::Nothing => match (settings.fallback.clone(), settings.announce.is_some()) {
                (Some(fallback), _) => {
                    let record = fallback.target.record && self.shared.recorder.is_some();
                    let recording = record.then(|| (String::new(), fallback.retention_class));
                    match self.open_media(recording, fallback.announcement) {
                        Some((ports, m)) => {
                            media = Some(m);
                            RouteResult::OutOfSession { ports, record }
                        }
                        None => RouteResult::Unknown,
                    }
                }
                // Announced: nothing recorded, nothing played at an answer
                // (the switch asks for the playback with `Play`).
                (None, true) => match self.open_media(None, None) {
                    Some((ports, m)) => {
                        media = Some(m);
                        let record = false;
                        RouteResult::OutOfSession { ports, record }
                    }
                    None => RouteResult::Unknown,
                },
                (None, false) => RouteResult::Unknown,
            },
            Found::Failed => RouteResult::Failed,
            Found::Route(mut route) => {
                route.record &= self.shared.recorder.is_some();
                let recording = route
                    .record
                    .then(|| (route.session_id.clone(), route.retention_class.clone()));
                let announcement = self.shared.settings.announcement.clone();
                match self.open_media(recording, announcement) {
                    Some((ports, m)) => {
                        media = Some(m);
                        RouteResult::Routed { route, ports }
                    }
                    None => RouteResult::NoMedia,
                }
            }
        };
        let wall = self.shared.clock.now();
        let call = self.switch.handle_routed(Instant::now(), wall, id, result);
        match (call, media) {
            (Some(call), Some(m)) => {
                self.media.insert(call, m);
            }
            (_, Some(m)) => self.stop_media(m),
            (_, None) => {}
        }
    }

    /// Opens a call's relay: its ports and its media, or `None` when the
    /// port pool is exhausted.
    fn open_media(
        &self,
        recording: Option<(String, String)>,
        announcement: Option<Arc<Announcement>>,
    ) -> Option<(MediaPorts, CallMedia)> {
        match self.shared.relay.open() {
            Ok(handle) => {
                let ports = MediaPorts {
                    a_side: handle.local_port(Leg::A),
                    b_side: handle.local_port(Leg::B),
                };
                let m = CallMedia {
                    handle,
                    recording,
                    announcement,
                };
                Some((ports, m))
            }
            Err(e) => {
                // The switch warns (throttled) as it answers 503.
                tracing::debug!(error = %e, "no media for a call");
                None
            }
        }
    }

    /// Ends a call's media (its recording with it): dropping the handle
    /// asks its worker to close the call, which frees its ports once the
    /// kernel is done with them. Nothing here waits for that (the
    /// pairs-in-use gauge reads the pool when scraped).
    fn stop_media(&self, m: CallMedia) {
        drop(m);
    }

    /// Adds what changed in the switch's stats to the metrics (adding, so
    /// several switches can share the counters).
    fn publish(&mut self) {
        let (now, was) = (self.switch.stats(), self.published);
        let m = &self.shared.metrics;
        let relaxed = Ordering::Relaxed;
        m.calls_relayed
            .fetch_add(now.calls_relayed - was.calls_relayed, relaxed);
        m.calls_refused
            .fetch_add(now.calls_refused - was.calls_refused, relaxed);
        m.calls_over_limit
            .fetch_add(now.calls_over_limit - was.calls_over_limit, relaxed);
        let oos = &m.out_of_session;
        oos.rejected.fetch_add(
            now.out_of_session_rejected - was.out_of_session_rejected,
            relaxed,
        );
        oos.forwarded.fetch_add(
            now.out_of_session_forwarded - was.out_of_session_forwarded,
            relaxed,
        );
        oos.announced.fetch_add(
            now.out_of_session_announced - was.out_of_session_announced,
            relaxed,
        );
        let delta = |a: usize, b: usize| a as i64 - b as i64;
        m.calls_active
            .fetch_add(delta(now.calls_active, was.calls_active), relaxed);
        m.sip_transactions
            .fetch_add(delta(now.transactions, was.transactions), relaxed);
        m.sip_lingering
            .fetch_add(delta(now.lingering, was.lingering), relaxed);
        m.sip_lingering_evicted
            .fetch_add(now.lingering_evicted - was.lingering_evicted, relaxed);
        self.published = now;
        if self.switch.shard().index() != 0 {
            return;
        }
        let trunks = self.switch.trunk_states();
        if trunks != self.published_trunks {
            m.set_trunks(trunks.clone());
            self.published_trunks = trunks;
        }
    }
}

/// The switch configuration the settings and the bound sockets make.
fn switch_config(transports: &Transports, settings: &SipSettings) -> SwitchConfig {
    let local = transports
        .udp_local_addr()
        .unwrap_or_else(|| SocketAddr::new(settings.advertise, 5060));
    let local_sip = if local.ip().is_unspecified() {
        SocketAddr::new(settings.advertise, local.port())
    } else {
        local
    };
    SwitchConfig {
        domain: settings.domain.clone(),
        local_sip,
        trunks: settings.trunks.clone(),
        advertise: settings.advertise,
        unknown_caller_status: settings.unknown_caller_status,
        max_duration: settings.max_duration,
        no_answer_timeout: settings.no_answer_timeout,
        max_calls: settings.max_calls,
        max_transactions: settings.max_transactions,
        max_lingering: settings.max_lingering / shard_count(settings.shards),
        timers: Timers::default(),
        dialog_timers: settings.dialog_timers,
        fallback: settings.fallback.as_ref().map(|f| f.target.clone()),
        announce: settings.announce.as_ref().map(|a| super::AnnounceMode {
            early: a.early,
            // Whole packets of 20 ms: what the relay sends.
            length: Duration::from_millis(20 * a.announcement.packets() as u64),
        }),
    }
}

/// Hands each received message to the shard owning its Call-ID: the one
/// cross-task hop of a message. The transports' queues keep their order
/// (urgent first); a shard's full queue drops a request that would open
/// something new (counted, as the transports shed them) and makes
/// anything else wait, so a call in progress never loses a message here.
async fn dispatch(
    mut inbound: InboundReceiver,
    shards: Vec<mpsc::Sender<Inbound>>,
    metrics: Arc<Metrics>,
) {
    while let Some(m) = inbound.recv().await {
        let Some(to) = shards.get(shard_of_message(&m.data, shards.len())) else {
            continue;
        };
        if crate::sip::peek::opens_new(&m.data) {
            match to.try_send(m) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics.sip_shard_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        } else if to.send(m).await.is_err() {
            return;
        }
    }
}

/// Tells every shard that a trunk could not be reached.
async fn fan_out(mut failures: mpsc::Receiver<usize>, shards: Vec<mpsc::Sender<usize>>) {
    while let Some(trunk) = failures.recv().await {
        for shard in &shards {
            let _ = shard.send(trunk).await;
        }
    }
}
