//! `ansim serve`: wires configuration, store, routing and the API together,
//! runs the background jobs, and shuts everything down gracefully.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{BlobLocation, Config, KeyStoreLocation};
use crate::keys::{DirKeyStore, KeyStore, MasterKey, Pkcs11KeyStore};
use crate::metrics::Metrics;
use crate::recording::blob::{BlobStore, LocalBlobStore};
use crate::recording::{Recorder, RecordingPolicy};
use crate::routing::{Routing, RoutingPolicy};
use crate::store::{Store, StoreError};

/// How often open sessions are checked for expiry.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

/// How often recordings left without a writer are looked for.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A listening socket could not be bound.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// Which listener (`api`, `sip udp`, …).
        what: &'static str,
        /// The address from the configuration.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The SIP transports could not start.
    #[error("sip: {0}")]
    Sip(crate::transport::TransportError),
    /// The `[api.tls]` certificate or key could not be loaded.
    #[error("api.tls: {0}")]
    ApiTls(crate::transport::TransportError),
    /// The master key, key store or blob store could not be opened.
    #[error("{0}")]
    Keys(String),
    /// The media port pool could not be set up.
    #[error("media: {0}")]
    Media(String),
    /// The announcement file is missing or unusable.
    #[error("{0}")]
    Announcement(#[from] crate::media::AnnouncementError),
    /// The file descriptor limit is too low for the configuration.
    #[error("{0}")]
    FdLimit(#[from] crate::fd_limit::FdLimitError),
    /// The webhook secret or client could not be set up.
    #[error("{0}")]
    Webhooks(#[from] crate::webhooks::WebhookError),
    /// `[routing] out_of_session_announcement` is missing or unusable.
    #[error("routing.out_of_session_announcement: {}: {}", .0.path.display(), .0.problem)]
    OutOfSessionAnnouncement(#[source] crate::media::AnnouncementError),
    /// A server task failed while running.
    #[error("{0} failed: {1}")]
    Io(&'static str, std::io::Error),
}

/// The routing policy from the configuration.
pub fn routing_policy(config: &Config) -> RoutingPolicy {
    RoutingPolicy {
        default_ttl: config.routing.default_ttl,
        max_ttl: config.routing.max_ttl,
        quarantine: config.routing.quarantine,
        route_cache_ttl: config.routing.route_cache_ttl,
        default_class: config.retention.default_class.clone(),
        classes: config.retention.classes.clone(),
    }
}

/// Opens the store named by the configuration and applies migrations.
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    let store = Store::connect(&config.store.database_url.url).await?;
    store.migrate().await?;
    Ok(store
        .with_webhooks(crate::webhooks::policy(&config.webhooks))
        .with_node(&config.node.id))
}

/// Runs the service until `shutdown` resolves (SIGINT/SIGTERM from the CLI).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let fds = crate::fd_limit::ensure(&config)?;
    tracing::info!(
        needed = fds.needed,
        soft = fds.soft,
        hard = fds.hard,
        "file descriptor limit"
    );
    let store = open_store(&config).await?;
    // Before anything reconciles: another live process with this id would
    // have its calls ended under it.
    let lease = store.lease_node().await?;
    tracing::info!(database = %config.store.database_url.redacted(), node = %config.node.id, "store ready");
    let clock: SharedClock = Arc::new(SystemClock);
    let routing = Arc::new(Routing::new(
        store.clone(),
        clock.clone(),
        routing_policy(&config),
    ));
    let metrics = Arc::new(Metrics::default());
    let recorder = open_recorder_counting(
        &config,
        store.clone(),
        clock.clone(),
        metrics.recording.clone(),
    )?;
    let state = AppState {
        recorder: Some(recorder.clone()),
        legally_required: Arc::new(config.retention.legally_required.clone()),
        four_eyes: config.api.four_eyes,
        grant_ttl: config.api.grant_ttl,
        body_limit: config.api.body_limit,
        auth_throttle: Arc::new(api::throttle::AuthThrottle::new(
            config.api.auth_failures_per_minute,
        )),
        ..AppState::new(routing.clone(), metrics.clone())
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let sip = start_sip_thread(
        &config,
        routing.clone(),
        store.clone(),
        clock.clone(),
        metrics.clone(),
        recorder.clone(),
        stop_rx.clone(),
    )
    .await?;
    let reconciler = tokio::spawn(reconcile_job(recorder.clone(), stop_rx.clone()));
    let sweeper = tokio::spawn(retention_job(
        recorder,
        metrics.clone(),
        clock.clone(),
        config.retention.sweep_interval,
        stop_rx.clone(),
    ));

    let listener = TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| ServeError::Bind {
            what: "api",
            addr: config.api.listen.to_string(),
            source,
        })?;
    let deliverer = crate::webhooks::Deliverer::new(
        &config.webhooks,
        store.clone(),
        clock.clone(),
        metrics.clone(),
    )?
    .map(|d| tokio::spawn(d.run(stop_rx.clone())));
    let expiry = tokio::spawn(expiry_job(routing.clone(), clock, stop_rx.clone()));
    let follower = store
        .session_ends()
        .await?
        .map(|ends| tokio::spawn(routing.clone().follow_session_ends(ends, stop_rx.clone())));
    let mut api_stop = stop_rx.clone();
    let api_shutdown = async move {
        let _ = api_stop.wait_for(|stop| *stop).await;
    };
    let limits = api::ConnectionLimits::from_config(&config.api);
    let api = match &config.api.tls {
        Some(files) => {
            let tls = crate::transport::tls::server_config(files)
                .await
                .map_err(ServeError::ApiTls)?;
            let tls = api::tls::Acceptor::new(tls);
            tracing::info!(listen = %config.api.listen, "HTTPS API listening");
            tokio::spawn(api::serve_https(listener, tls, state, limits, api_shutdown))
        }
        None => {
            tracing::info!(listen = %config.api.listen, "HTTP API listening");
            tokio::spawn(api::serve(listener, state, limits, api_shutdown))
        }
    };

    shutdown.await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    let api_result = api.await;
    let _ = expiry.await;
    if let Some(f) = follower {
        let _ = f.await;
    }
    let _ = sip.await;
    let _ = sweeper.await;
    let _ = reconciler.await;
    if let Some(d) = deliverer {
        let _ = d.await;
    }
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "node lease release failed; the database drops it with the connection");
    }
    store.close().await;
    tracing::info!("stopped");
    api_result.map_err(|e| ServeError::Io("api", std::io::Error::other(e.to_string())))
}

/// Runs [`start_sip`] and the engine on a thread of their own ("ansim-sip")
/// with a one-thread runtime: the SIP sockets' receive loops and the
/// engine they feed then hand messages over without waking another
/// thread (on the shared runtime each datagram could cost a cross-thread
/// wake-up). The HTTP API, the database's and the recorders' tasks stay
/// on the shared runtime. The handle ends when the engine has.
#[allow(clippy::too_many_arguments)]
async fn start_sip_thread(
    config: &Config,
    routing: Arc<Routing>,
    store: Store,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    recorder: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
    let config = config.clone();
    let background = tokio::runtime::Handle::current();
    let body = move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(ServeError::Io("sip runtime", e)));
                return;
            }
        };
        runtime.block_on(async move {
            let shared = (routing, store, clock, metrics, recorder);
            let started = start_sip(&config, shared, background, stop).await;
            match started {
                Ok(engine) => {
                    let _ = ready_tx.send(Ok(()));
                    let _ = engine.await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        drop(done_tx);
    };
    std::thread::Builder::new()
        .name("ansim-sip".into())
        .spawn(body)
        .map_err(|e| ServeError::Io("sip thread", e))?;
    match ready.await {
        Ok(Ok(())) => Ok(tokio::spawn(async move {
            let _ = done.await;
        })),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ServeError::Io(
            "sip thread",
            std::io::Error::other("the SIP thread ended while starting"),
        )),
    }
}

/// The out-of-session announcement at `path`, loaded.
fn out_of_session_announcement(path: &Path) -> Result<crate::media::Announcement, ServeError> {
    let own =
        crate::media::Announcement::load(path).map_err(ServeError::OutOfSessionAnnouncement)?;
    tracing::info!(path = %path.display(), duration_ms = own.duration().as_millis() as u64, "out-of-session announcement loaded");
    Ok(own)
}

/// The announcement of out-of-session calls, for `out_of_session =
/// "announce"`.
fn announce_settings(
    config: &Config,
) -> Result<Option<crate::b2bua::AnnounceSettings>, ServeError> {
    let crate::config::OutOfSession::Announce {
        announcement,
        early,
    } = &config.routing.out_of_session
    else {
        return Ok(None);
    };
    Ok(Some(crate::b2bua::AnnounceSettings {
        early: *early,
        announcement: Arc::new(out_of_session_announcement(announcement)?),
    }))
}

/// The forward of out-of-session calls, for `out_of_session = "forward"`:
/// its announcement loaded (and followed by the recording notice when the
/// forwarded call is recorded).
fn fallback_settings(
    config: &Config,
    notice: Option<&Arc<crate::media::Announcement>>,
) -> Result<Option<crate::b2bua::FallbackSettings>, ServeError> {
    use crate::config::OutOfSession;
    let (to, path, record) = match &config.routing.out_of_session {
        OutOfSession::Reject | OutOfSession::Announce { .. } => return Ok(None),
        OutOfSession::Forward {
            to,
            announcement,
            record,
        } => (to.clone(), announcement.as_ref(), *record),
    };
    let announcement = match path {
        Some(path) => {
            let own = out_of_session_announcement(path)?;
            let joined = notice.filter(|_| record).and_then(|n| {
                let samples: Vec<i16> = own.samples().iter().chain(n.samples()).copied().collect();
                crate::media::Announcement::from_samples(samples).ok()
            });
            Some(Arc::new(joined.unwrap_or(own)))
        }
        None => notice.filter(|_| record).cloned(),
    };
    Ok(Some(crate::b2bua::FallbackSettings {
        target: crate::b2bua::Fallback { to, record },
        announcement,
        retention_class: config.retention.default_class.clone(),
    }))
}

/// What the SIP side shares with the rest of `ansim serve`.
type SipShared = (
    Arc<Routing>,
    Store,
    SharedClock,
    Arc<Metrics>,
    Arc<Recorder>,
);

/// Binds the SIP transports and the media port pool, and starts the
/// engine (on the current runtime); `background` is where the
/// call-record writer runs.
async fn start_sip(
    config: &Config,
    (routing, store, clock, metrics, recorder): SipShared,
    background: tokio::runtime::Handle,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let announcement = match &config.media.announcement {
        Some(path) => {
            let announcement = crate::media::Announcement::load(path)?;
            let duration_ms = announcement.duration().as_millis() as u64;
            tracing::info!(path = %path.display(), duration_ms, "announcement loaded");
            Some(Arc::new(announcement))
        }
        None => None,
    };
    // Nothing is being recorded yet: every row still in `recording` was
    // left by an earlier run.
    for r in &recorder.reconcile().await? {
        tracing::warn!(recording = %r.id, call = %r.call_id, "recording left unfinished by an earlier run: marked truncated");
    }
    // Their files (and any whose upload had not succeeded) go to the
    // object store now; a no-op for local files.
    match recorder.publish_leftovers().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "spool files of an earlier run queued for upload"),
        Err(e) => tracing::warn!(error = %e, "spool files could not be listed for upload"),
    }
    let interrupted = store.interrupt_open_calls(clock.now()).await?;
    if interrupted > 0 {
        tracing::warn!(
            calls = interrupted,
            "calls left open by an earlier run marked interrupted"
        );
    }
    let counters = metrics.transport.clone();
    let (transports_stop, transports_stopped) = watch::channel(false);
    let (tx, rx) = crate::transport::inbound_queues(config.limits.inbound_queue, counters.clone());
    let gate = crate::transport::SourceGate::new(
        config.trunk_allow(),
        config.trunks.iter().map(|t| t.address.ip()).collect(),
        config.sip.outsider_replies_per_second,
        counters.clone(),
    );
    let transport_settings = crate::transport::TransportSettings {
        gate: Arc::new(gate),
        max_connections: config.sip.max_tcp_connections,
        idle_timeout: config.sip.tcp_idle_timeout,
        max_message_size: config.sip.max_message_size,
        counters,
    };
    let mut transports = crate::transport::Transports::bind(
        &config.sip.listen,
        config.sip.tls.as_ref(),
        transport_settings,
        tx,
        transports_stopped,
    )
    .await
    .map_err(ServeError::Sip)?;
    let (failures_tx, trunk_failures) = tokio::sync::mpsc::channel(64);
    transports
        .connect_trunks(&trunk_links(config), failures_tx)
        .await
        .map_err(ServeError::Sip)?;
    let ports = &config.media.ports;
    let relay_config = crate::media::RelayConfig {
        source: config.media.source,
        totals: metrics.media.clone(),
        workers: config.media.workers,
        io: config.media.io,
        ring_buffers: 0,
    };
    let relay = crate::media::Relay::new(config.media.bind, ports.first, ports.last, relay_config)
        .map_err(|e| ServeError::Media(e.to_string()))?;
    tracing::info!(workers = relay.workers(), io = ?relay.io(), "media relay running");
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let limits = &metrics.limits;
    limits
        .inbound_queue
        .store(config.limits.inbound_queue as i64, relaxed);
    limits
        .max_tcp_connections
        .store(config.sip.max_tcp_connections as i64, relaxed);
    limits
        .media_port_pairs
        .store(relay.capacity() as i64, relaxed);
    // One relay per run and per `Metrics`: this is its only setting.
    let _ = metrics.media_pool.set(relay.pool());
    if config.sip.min_session_expires < std::time::Duration::from_secs(90) {
        tracing::warn!(
            "sip.min_session_expires is below the RFC 4028 minimum of 90s (for tests only)"
        );
    }
    let fallback = fallback_settings(config, announcement.as_ref())?;
    let settings = crate::b2bua::SipSettings {
        fallback,
        announce: announce_settings(config)?,
        domain: config.sip.domain.clone(),
        trunks: config
            .trunks
            .iter()
            .map(|t| crate::b2bua::TrunkPeer {
                name: t.name.clone(),
                address: t.address,
                allow: t.allow.clone(),
                transport: t.transport,
                numbers: t.numbers.clone(),
                keepalive: t.keepalive,
            })
            .collect(),
        advertise: config.media.advertise,
        unknown_caller_status: config.routing.unknown_caller_status,
        max_duration: config.sip.max_call_duration,
        no_answer_timeout: config.sip.no_answer_timeout,
        announcement,
        max_calls: config.limits.max_calls,
        max_transactions: config.limits.max_transactions,
        max_lingering: config.limits.max_lingering_transactions,
        dialog_timers: crate::b2bua::DialogTimers {
            session_expires: config.sip.session_expires,
            min_se: config.sip.min_session_expires,
            probe_interval: config.sip.dialog_probe_interval,
        },
        shards: config.sip.shards,
        drain: config.sip.drain_timeout,
    };
    for addr in transports.udp_local_addrs() {
        tracing::info!(%addr, "SIP listening (udp)");
    }
    for addr in transports.tls_local_addrs() {
        tracing::info!(%addr, "SIP listening (tls)");
    }
    let parts = crate::b2bua::EngineParts {
        transports,
        inbound: rx,
        routing,
        store,
        media: Arc::new(relay),
        settings,
        clock,
        metrics,
        recorder: Some(recorder),
        trunk_failures,
        background: Some(background),
    };
    let engine = crate::b2bua::Engine::run(parts, stop);
    // The sockets stay open while the engine drains, for the calls that
    // are finishing; they close when it is done.
    Ok(tokio::spawn(async move {
        engine.await;
        let _ = transports_stop.send(true);
    }))
}

/// The TCP and TLS trunks the transports keep connections to.
fn trunk_links(config: &Config) -> Vec<crate::transport::TrunkLink> {
    config
        .trunks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.transport != crate::config::Transport::Udp)
        .map(|(trunk, t)| crate::transport::TrunkLink {
            trunk,
            address: t.address,
            tls_ca: t.tls_ca.clone(),
        })
        .collect()
}

/// Opens the key store (a key directory with its master key, or a PKCS#11
/// token) and the blob store, and builds the recorder from them.
pub fn open_recorder(
    config: &Config,
    store: Store,
    clock: SharedClock,
) -> Result<Arc<Recorder>, ServeError> {
    open_recorder_counting(config, store, clock, Arc::default())
}

/// As [`open_recorder`], counting how recordings end into `counters`.
fn open_recorder_counting(
    config: &Config,
    store: Store,
    clock: SharedClock,
    counters: Arc<crate::recording::RecordingCounters>,
) -> Result<Arc<Recorder>, ServeError> {
    let keys_err = |e: crate::keys::KeyError| ServeError::Keys(e.to_string());
    let keys: Arc<dyn KeyStore> = match &config.keys.store {
        KeyStoreLocation::Dir(dir) => {
            let master =
                MasterKey::load(&config.keys.master_key_file, config.keys.dev).map_err(keys_err)?;
            Arc::new(DirKeyStore::open(dir, master).map_err(keys_err)?)
        }
        // The token holds the KEKs itself: no master key is involved.
        KeyStoreLocation::Pkcs11 {
            module,
            slot,
            pin_file,
        } => Arc::new(Pkcs11KeyStore::open(module, *slot, pin_file.as_deref()).map_err(keys_err)?),
    };
    let blobs: Arc<dyn BlobStore> = match &config.store.recordings {
        BlobLocation::File(dir) => Arc::new(
            LocalBlobStore::new(dir)
                .map_err(|e| ServeError::Keys(format!("store.recordings: {e}")))?,
        ),
        BlobLocation::S3 { bucket, prefix } => {
            let loc = crate::recording::s3::S3Location {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                settings: config.store.s3.clone(),
            };
            Arc::new(
                crate::recording::s3::S3BlobStore::open(&loc, Arc::clone(&counters))
                    .map_err(|e| ServeError::Keys(format!("store.recordings: {e}")))?,
            )
        }
    };
    let policy = RecordingPolicy {
        classes: config.retention.classes.clone(),
        epoch: config.retention.epoch,
        max_call: config.sip.max_call_duration,
        personal_data: config.retention.personal_data,
        quarantine: config.routing.quarantine,
    };
    let recorder = Recorder::new(store, keys, blobs, policy, clock).with_counters(counters);
    Ok(Arc::new(recorder))
}

/// Runs the retention sweep every `interval` (the first one at start-up).
/// Items a sweep could not finish are logged by the sweep, counted in
/// `ansim_retention_erase_failures_total`, and tried again next time.
async fn retention_job(
    recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = clock.now();
        let r = match crate::retention::sweep(&recorder, now, false, &crate::retention::NoFaults)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "retention sweep failed; the next one continues");
                continue;
            }
        };
        let failures = u64::try_from(r.failures.len()).unwrap_or(u64::MAX);
        metrics
            .retention_erase_failures
            .fetch_add(failures, std::sync::atomic::Ordering::Relaxed);
        let idle = r.erased.is_empty()
            && r.keys_destroyed.is_empty()
            && r.pseudonymised == 0
            && r.holds_applied.is_empty()
            && r.holds_released.is_empty()
            && r.failures.is_empty();
        if !idle {
            tracing::info!(
                recordings = r.erased.len(),
                keys = r.keys_destroyed.len(),
                pseudonymised = r.pseudonymised,
                holds_applied = r.holds_applied.len(),
                holds_released = r.holds_released.len(),
                failures = r.failures.len(),
                "retention sweep done"
            );
        }
    }
}

/// Marks `truncated`, every [`RECONCILE_INTERVAL`], recordings left in
/// `recording` whose writer is gone (one that could not finish its row),
/// so no recording stays in `recording` for good.
async fn reconcile_job(recorder: Arc<Recorder>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // start-up has just reconciled
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match recorder.reconcile().await {
            Ok(rows) => {
                for r in rows {
                    tracing::warn!(recording = %r.id, call = %r.call_id, "recording without a writer: marked truncated");
                }
            }
            Err(e) => tracing::warn!(error = %e, "recording reconciliation failed; will retry"),
        }
    }
}

/// Ends expired sessions periodically so their numbers start quarantine
/// and their cache entries go, even if nobody touches the participants.
async fn expiry_job(routing: Arc<Routing>, clock: SharedClock, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match routing.expire_due(clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "expired sessions ended"),
            Err(e) => tracing::warn!(error = %e, "session expiry failed; will retry"),
        }
        // Idempotency keys are kept 24 h; expired ones go here.
        if let Err(e) = routing.store().purge_idempotency(clock.now()).await {
            tracing::warn!(error = %e, "idempotency key purge failed; will retry");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
