//! Connections we open to TCP and TLS trunks: one per trunk, opened when
//! the first message for it is sent, kept (never closed for idleness),
//! reused by every call, and opened again when lost. A TLS trunk's
//! certificate must chain to its `tls_ca` and name the IP of its address.
//!
//! Once open, a connection is served like an accepted one
//! ([`super::tcp::serve`]): what the trunk sends on it reaches the engine
//! on its `Tcp`/`Tls` flow, and answers go back on it. When it cannot be
//! opened (refused, [`CONNECT_TIMEOUT`], a failed handshake, or
//! `max_tcp_connections` reached), the messages waiting for it are
//! dropped and the engine is told (its transactions toward the trunk fail
//! at once, so a B-leg INVITE moves on to the next trunk); for
//! [`RETRY_AFTER`] after that, messages for the trunk fail the same way
//! without a new attempt.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::tcp::{self, FlowLease};
use super::{Flow, Shared, TransportError, Transports};

/// Longest wait for a TCP connection (and, for TLS, its handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// After a failed attempt, how long messages for the trunk fail at once.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Messages waiting for a trunk's connection to open.
const QUEUE: usize = 256;

/// A TCP or TLS trunk to keep a connection to.
#[derive(Debug, Clone)]
pub struct TrunkLink {
    /// Its index in `[[trunks]]` order (the `trunk` of [`Flow::Trunk`]).
    pub trunk: usize,
    /// Where to connect.
    pub address: SocketAddr,
    /// For TLS: the PEM CA file its certificate must chain to.
    pub tls_ca: Option<PathBuf>,
}

/// The running links, by trunk index.
#[derive(Debug, Default)]
pub(super) struct Links {
    senders: HashMap<usize, mpsc::Sender<Vec<u8>>>,
}

impl Links {
    /// Queues `bytes` for trunk `trunk`; false if it has no link or its
    /// queue is full.
    pub(super) fn send(&self, trunk: usize, bytes: Vec<u8>) -> bool {
        self.senders
            .get(&trunk)
            .is_some_and(|tx| tx.try_send(bytes).is_ok())
    }
}

impl Transports {
    /// Starts a link to each of `links`. `failed` hears the index of a
    /// trunk whose connection could not be opened. TLS CA files are read
    /// here: an unreadable one is an error naming it.
    pub async fn connect_trunks(
        &mut self,
        links: &[TrunkLink],
        failed: mpsc::Sender<usize>,
    ) -> Result<(), TransportError> {
        let mut senders = HashMap::new();
        for link in links {
            let tls = match &link.tls_ca {
                Some(ca) => Some(connector(ca).await?),
                None => None,
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            senders.insert(link.trunk, tx);
            let (shared, stop) = (self.shared.clone(), self.stop.clone());
            tokio::spawn(run(link.clone(), tls, rx, shared, failed.clone(), stop));
        }
        self.links = Arc::new(Links { senders });
        Ok(())
    }
}

/// A TLS connector trusting only the certificates in `ca`.
async fn connector(ca: &std::path::Path) -> Result<TlsConnector, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in super::tls::load_certs(ca).await? {
        roots
            .add(cert)
            .map_err(|e| super::tls::tls_error(ca, format!("not a usable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| super::tls::tls_error(ca, format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The link of one trunk: see the module docs.
async fn run(
    link: TrunkLink,
    tls: Option<TlsConnector>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    shared: Shared,
    failed: mpsc::Sender<usize>,
    mut stop: watch::Receiver<bool>,
) {
    let mut current: Option<(u64, Option<FlowLease>)> = None;
    let mut failed_at: Option<Instant> = None;
    loop {
        let bytes = tokio::select! {
            m = rx.recv() => match m { Some(b) => b, None => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let open = current
            .as_ref()
            .and_then(|(conn, _)| shared.conns.writer(*conn));
        let writer = match open {
            Some(w) => w,
            None if failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) => {
                fail(&link, &mut rx, &failed);
                continue;
            }
            None => match open_connection(&link, tls.as_ref(), &shared, &stop).await {
                Ok((conn, lease, w)) => {
                    tracing::info!(trunk = link.trunk, remote = %link.address, "connected to the trunk");
                    current = Some((conn, lease));
                    failed_at = None;
                    w
                }
                Err(reason) => {
                    tracing::warn!(trunk = link.trunk, remote = %link.address, %reason, "cannot connect to the trunk");
                    current = None;
                    failed_at = Some(Instant::now());
                    fail(&link, &mut rx, &failed);
                    continue;
                }
            },
        };
        if writer.try_send(bytes).is_err() {
            tracing::debug!(trunk = link.trunk, "trunk connection busy; message dropped");
        }
    }
}

/// Drops what waits for the trunk and tells the engine.
fn fail(link: &TrunkLink, rx: &mut mpsc::Receiver<Vec<u8>>, failed: &mpsc::Sender<usize>) {
    while rx.try_recv().is_ok() {}
    // A full channel means the engine already has failures to handle.
    let _ = failed.try_send(link.trunk);
}

type Opened = (u64, Option<FlowLease>, mpsc::Sender<Vec<u8>>);

/// Opens the trunk's connection and starts serving it; its id, a lease
/// that keeps it from idling out, and its writer queue.
async fn open_connection(
    link: &TrunkLink,
    tls: Option<&TlsConnector>,
    shared: &Shared,
    stop: &watch::Receiver<bool>,
) -> Result<Opened, String> {
    let slot = shared
        .conns
        .outbound_slot(shared)
        .ok_or("max_tcp_connections are open")?;
    let remote = link.address;
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(remote)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err(format!("connect: no answer in {CONNECT_TIMEOUT:?}")),
    };
    let _ = stream.set_nodelay(true);
    let conn = tcp::next_conn_id();
    let (stop, shared_c) = (stop.clone(), shared.clone());
    match tls {
        None => {
            let flow = Flow::Tcp { conn, remote };
            let registered = tcp::register(&flow, shared).ok_or("cannot register")?;
            let (reader, writer) = stream.into_split();
            tokio::spawn(tcp::serve(
                reader, writer, flow, slot, shared_c, stop, registered,
            ));
        }
        Some(connector) => {
            let name = ServerName::IpAddress(remote.ip().into());
            let handshake = connector.connect(name, stream);
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
                Err(_) => return Err(format!("TLS handshake: not done in {CONNECT_TIMEOUT:?}")),
            };
            let flow = Flow::Tls { conn, remote };
            let registered = tcp::register(&flow, shared).ok_or("cannot register")?;
            let (reader, writer) = tokio::io::split(stream);
            tokio::spawn(tcp::serve(
                reader, writer, flow, slot, shared_c, stop, registered,
            ));
        }
    }
    let writer = shared
        .conns
        .writer(conn)
        .ok_or("connection closed at once")?;
    Ok((conn, shared.conns.lease(conn), writer))
}
