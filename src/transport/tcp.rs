//! SIP over TCP: one reader and one writer task per connection, framing by
//! Content-Length ([`crate::sip::StreamFramer`]). TLS connections
//! ([`super::tls`]) reuse [`connection`] once their handshake is done.
//!
//! Every connection is bounded: it is accepted only from the trunk and
//! while fewer than `max_tcp_connections` are open ([`Connections::admit`],
//! a handshake in progress counts), it buffers at most `max_message_size`
//! bytes of one message, and it is closed after `tcp_idle_timeout` without
//! a message in either direction unless a transaction or dialog holds a
//! [`FlowLease`] on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::{Flow, Inbound, Shared};
use crate::sip::StreamFramer;

/// Messages queued for one connection before sends are dropped.
const WRITE_QUEUE: usize = 256;

/// Read buffer per connection.
const READ_BUFFER: usize = 16 * 1024;

/// Connection ids, shared by TCP and TLS (they share the connection map).
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A new connection id, unique for the process lifetime.
pub(super) fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// How a connection is used, shared by its tasks and its leases.
#[derive(Debug)]
struct Usage {
    /// Transactions and dialogs on the connection ([`FlowLease`]s alive).
    users: AtomicUsize,
    /// When a message last went in or out.
    last_activity: Mutex<Instant>,
}

impl Usage {
    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn last_activity(&self) -> Instant {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_use(&self) -> bool {
        self.users.load(Ordering::Relaxed) > 0
    }
}

/// Keeps a connection from being closed for idleness while a transaction
/// or dialog uses it; dropping it releases the connection.
#[derive(Debug)]
pub struct FlowLease(Arc<Usage>);

impl Drop for FlowLease {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open connection, as the senders see it.
#[derive(Debug, Clone)]
struct Entry {
    /// Its writer task's queue.
    tx: mpsc::Sender<Vec<u8>>,
    /// How it is used.
    usage: Arc<Usage>,
}

/// The open stream connections (TCP and TLS) and the cap on their number.
#[derive(Debug, Clone)]
pub(super) struct Connections {
    /// By connection id.
    open: Arc<Mutex<HashMap<u64, Entry>>>,
    /// One permit per connection that may still be opened.
    slots: Arc<Semaphore>,
}

impl Connections {
    /// Room for `max` connections.
    pub(super) fn new(max: usize) -> Connections {
        Connections {
            open: Arc::default(),
            slots: Arc::new(Semaphore::new(max)),
        }
    }

    /// A slot for a connection just accepted from `remote`, or `None`
    /// (counted) when it must be closed at once: an outsider, or too many
    /// connections open.
    pub(super) fn admit(&self, shared: &Shared, remote: SocketAddr) -> Option<Slot> {
        let counters = &shared.settings.counters;
        if !shared.settings.gate.is_trunk(remote.ip()) {
            shared.settings.gate.count_connection();
            return None;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            counters
                .connections_over_limit
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, "too many SIP connections: closed at accept");
            return None;
        };
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            _permit: permit,
            counters: counters.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer queue of connection `conn`, if it is open.
    pub(super) fn writer(&self, conn: u64) -> Option<mpsc::Sender<Vec<u8>>> {
        self.lock().get(&conn).map(|e| e.tx.clone())
    }

    /// A slot for a connection we open (to a trunk), or `None` (counted)
    /// when `max_tcp_connections` are open.
    pub(super) fn outbound_slot(&self, shared: &Shared) -> Option<Slot> {
        let counters = &shared.settings.counters;
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            counters
                .connections_over_limit
                .fetch_add(1, Ordering::Relaxed);
            return None;
        };
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            _permit: permit,
            counters: counters.clone(),
        })
    }

    /// A lease on connection `conn`, if it is open.
    pub(super) fn lease(&self, conn: u64) -> Option<FlowLease> {
        let usage = self.lock().get(&conn).map(|e| e.usage.clone())?;
        usage.users.fetch_add(1, Ordering::Relaxed);
        Some(FlowLease(usage))
    }
}

/// A connection's place under the cap; freed when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    /// The semaphore permit.
    _permit: OwnedSemaphorePermit,
    /// Where the open-connection gauge lives.
    counters: Arc<super::TransportCounters>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                let Some(slot) = shared.conns.admit(&shared, remote) else {
                    drop(stream);
                    continue;
                };
                let conn = next_conn_id();
                let flow = Flow::Tcp { conn, remote };
                let (reader, writer) = stream.into_split();
                tokio::spawn(connection(
                    reader,
                    writer,
                    flow,
                    slot,
                    shared.clone(),
                    stop.clone(),
                ));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a connection's read loop ended.
enum Ended {
    /// The peer closed, or reading failed, or we are stopping.
    Closed,
    /// No message and no user for the idle timeout.
    Idle,
    /// The peer sent something that cannot be framed (or too much).
    BadFraming,
    /// The engine is gone.
    EngineGone,
}

/// Serves one established stream connection: registers it under the
/// connection id of `flow` (a `Tcp` or `Tls` flow), forwards every framed
/// message to the engine, and unregisters when the peer closes, framing
/// fails, it has been idle too long or `stop` turns true. `slot` is its
/// place under the connection cap, freed when this returns.
pub(super) async fn connection<R, W>(
    reader: R,
    writer: W,
    flow: Flow,
    slot: Slot,
    shared: Shared,
    stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Some(registered) = register(&flow, &shared) else {
        return;
    };
    serve(reader, writer, flow, slot, shared, stop, registered).await;
}

/// A connection entered in the connection map: its writer queue's
/// receiving end and its usage.
pub(super) struct Registered {
    rx: mpsc::Receiver<Vec<u8>>,
    usage: Arc<Usage>,
}

/// Enters the connection of `flow` (a `Tcp` or `Tls` flow) in the
/// connection map, so that sends to it are queued from now on.
pub(super) fn register(flow: &Flow, shared: &Shared) -> Option<Registered> {
    let conn = match flow {
        Flow::Tcp { conn, .. } | Flow::Tls { conn, .. } => *conn,
        Flow::Udp { .. } | Flow::Trunk { .. } => return None,
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let usage = Arc::new(Usage {
        users: AtomicUsize::new(0),
        last_activity: Mutex::new(Instant::now()),
    });
    shared.conns.lock().insert(
        conn,
        Entry {
            tx,
            usage: usage.clone(),
        },
    );
    Some(Registered { rx, usage })
}

/// Serves a [`register`]ed connection until it ends, then removes it
/// from the map.
pub(super) async fn serve<R, W>(
    reader: R,
    mut writer: W,
    flow: Flow,
    slot: Slot,
    shared: Shared,
    stop: watch::Receiver<bool>,
    registered: Registered,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Registered { mut rx, usage } = registered;
    let conn = match flow {
        Flow::Tcp { conn, .. } | Flow::Tls { conn, .. } => conn,
        Flow::Udp { .. } | Flow::Trunk { .. } => return,
    };
    let written = usage.clone();
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            // TLS buffers records inside the stream: flush pushes them out.
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            written.touch();
        }
    });
    let ended = read_loop(reader, &flow, &usage, &shared, stop).await;
    let counters = &shared.settings.counters;
    let remote = flow.remote();
    match ended {
        Ended::Idle => {
            counters
                .connections_idle_closed
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, "closing idle SIP connection");
        }
        Ended::BadFraming => {
            counters
                .connections_bad_framing
                .fetch_add(1, Ordering::Relaxed);
        }
        Ended::Closed | Ended::EngineGone => {}
    }
    shared.conns.lock().remove(&conn);
    write_task.abort();
    drop(slot);
}

/// Reads and frames messages until the connection ends, and says why.
async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    flow: &Flow,
    usage: &Usage,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let idle = shared.settings.idle_timeout;
    let max = shared.settings.max_message_size;
    let mut framer = StreamFramer::with_max_message(max);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut deadline = Instant::now() + idle;
    loop {
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r { Ok(0) | Err(_) => return Ended::Closed, Ok(n) => n },
            _ = tokio::time::sleep_until(deadline) => {
                let quiet_since = usage.last_activity();
                if usage.in_use() {
                    deadline = Instant::now() + idle;
                } else if quiet_since + idle > Instant::now() {
                    deadline = quiet_since + idle;
                } else {
                    return Ended::Idle;
                }
                continue;
            }
            _ = stop.wait_for(|s| *s) => return Ended::Closed,
        };
        framer.push(buf.get(..n).unwrap_or_default());
        while let Some(framed) = framer.next_message() {
            match framed {
                Ok(msg) => {
                    usage.touch();
                    deadline = Instant::now() + idle;
                    let item = Inbound {
                        flow: flow.clone(),
                        data: msg.to_vec(),
                    };
                    if shared.inbound.send(item).await.is_err() {
                        return Ended::EngineGone;
                    }
                }
                Err(e) => {
                    let (remote, kind) = (flow.remote(), flow.transport_name());
                    tracing::info!(%remote, transport = kind, error = %e, "closing connection: bad framing");
                    return Ended::BadFraming;
                }
            }
        }
    }
}
