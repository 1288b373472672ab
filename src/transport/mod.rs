//! SIP transports: UDP sockets, TCP connections and TLS connections.
//!
//! Transports move bytes, and guard the door. Every received datagram is
//! first checked against the [`SourceGate`] (is it the trunk?) before
//! anything else is done with it; a TCP/TLS connection is checked at
//! accept. The trunk's datagrams, and the messages framed out of its
//! streams, go to the engine as [`Inbound`]s with the [`Flow`] they came
//! on, through the two queues of [`queue`]; the engine answers on the same
//! flow. Outsiders never reach the engine: within a small budget they get
//! a `403` built right here (the only place this module parses SIP),
//! otherwise silence.
//!
//! Stream connections are bounded: at most `[sip] max_tcp_connections`
//! at once (more are closed at accept), at most `[sip] max_message_size`
//! bytes buffered for one message, and closed after `[sip]
//! tcp_idle_timeout` without a message when no transaction or dialog uses
//! them ([`FlowLease`]).

pub mod gate;
pub mod queue;
mod tcp;
pub mod tls;
#[cfg(test)]
mod tls_tests;
mod trunk_link;
mod udp_out;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rsip::{Method, SipMessage, StatusCode};
use tokio::net::UdpSocket;
use tokio::sync::watch;

pub use gate::{SourceGate, Verdict};
pub use queue::{InboundReceiver, InboundSender, inbound_queues};
pub use tcp::FlowLease;
pub use trunk_link::TrunkLink;
pub use udp_out::UdpOutbox;

use crate::config::{ListenAddr, TlsFiles, Transport};

/// Counters of the transports, for `/metrics`.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Datagrams from outsiders dropped unanswered
    /// (`ansim_sip_outsider_dropped_total`).
    pub outsider_dropped: AtomicU64,
    /// `403`s sent to outsiders (`ansim_sip_outsider_replies_total`).
    pub outsider_replies: AtomicU64,
    /// TCP/TLS connections from outsiders closed at accept.
    pub outsider_connections: AtomicU64,
    /// Trunk connections closed at accept because `max_tcp_connections`
    /// were open.
    pub connections_over_limit: AtomicU64,
    /// Connections closed for idleness.
    pub connections_idle_closed: AtomicU64,
    /// Connections closed because a message overflowed `max_message_size`
    /// or could not be framed.
    pub connections_bad_framing: AtomicU64,
    /// TCP/TLS connections open now (handshakes included).
    pub connections_open: AtomicI64,
    /// New requests shed because their queue was full.
    pub inbound_shed: AtomicU64,
}

/// How the transports behave (from `[sip]`, `[trunk]` and `[limits]`).
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Who is the trunk; shared by every socket.
    pub gate: Arc<SourceGate>,
    /// Most TCP/TLS connections open at once.
    pub max_connections: usize,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Largest message (a datagram, or one framed stream message).
    pub max_message_size: usize,
    /// What the transports did.
    pub counters: Arc<TransportCounters>,
}

/// Where a message came from, and so where its answers go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flow {
    /// A UDP socket of ours (index into the bound sockets) and the peer.
    Udp {
        /// Which of our UDP sockets.
        socket: usize,
        /// The peer's address (answers go here, as with `rport`).
        remote: SocketAddr,
    },
    /// A TCP connection (by id) and its peer.
    Tcp {
        /// Connection id, unique for the process lifetime.
        conn: u64,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// A TLS connection (by id, from the same id space as TCP) and its peer.
    Tls {
        /// Connection id, unique for the process lifetime.
        conn: u64,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// Trunk number `trunk` (`[[trunks]]` order), over the TCP or TLS
    /// connection the transports keep to it and reopen when lost
    /// ([`Transports::connect_trunks`]). Only sent on: what the trunk
    /// sends back arrives on that connection's `Tcp` or `Tls` flow.
    Trunk {
        /// The trunk's index.
        trunk: usize,
        /// Its address.
        remote: SocketAddr,
        /// TLS rather than TCP.
        tls: bool,
    },
}

impl Flow {
    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        match self {
            Flow::Udp { remote, .. }
            | Flow::Tcp { remote, .. }
            | Flow::Tls { remote, .. }
            | Flow::Trunk { remote, .. } => *remote,
        }
    }

    /// Whether the transport is reliable (no SIP retransmissions needed).
    pub fn is_reliable(&self) -> bool {
        matches!(
            self,
            Flow::Tcp { .. } | Flow::Tls { .. } | Flow::Trunk { .. }
        )
    }

    /// The transport's name, for logs.
    fn transport_name(&self) -> &'static str {
        match self {
            Flow::Udp { .. } => "udp",
            Flow::Tcp { .. } | Flow::Trunk { tls: false, .. } => "tcp",
            Flow::Tls { .. } | Flow::Trunk { tls: true, .. } => "tls",
        }
    }
}

/// A received SIP message.
#[derive(Debug)]
pub struct Inbound {
    /// Where it came from.
    pub flow: Flow,
    /// One whole SIP message.
    pub data: Vec<u8>,
}

/// Why a transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A socket could not be bound.
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        /// The configured listen address.
        listen: String,
        /// Why.
        source: std::io::Error,
    },
    /// A `tls:` listener was given without certificate files.
    #[error("{0}: a tls listener needs [sip.tls] cert and key")]
    NoTlsFiles(String),
    /// The TLS certificate or key could not be loaded or used.
    #[error("TLS file {}: {reason}", path.display())]
    Tls {
        /// The certificate or key file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Calls go out over UDP, so one UDP listener is required.
    #[error(
        "sip.listen needs at least one udp: address (UDP trunks and their keep-alives are served from it)"
    )]
    NoUdp,
}

impl TransportSettings {
    /// Settings for tests: loopback is the trunk, defaults otherwise.
    #[cfg(test)]
    pub(crate) fn loopback_for_tests() -> TransportSettings {
        let counters = Arc::new(TransportCounters::default());
        let allow = vec!["127.0.0.0/8".parse().expect("a network")];
        TransportSettings {
            gate: Arc::new(SourceGate::new(allow, Vec::new(), 2, counters.clone())),
            max_connections: 64,
            idle_timeout: Duration::from_secs(120),
            max_message_size: 65_535,
            counters,
        }
    }
}

/// What every receive task shares.
#[derive(Debug, Clone)]
struct Shared {
    /// Settings and counters.
    settings: TransportSettings,
    /// Where the trunk's messages go.
    inbound: InboundSender,
    /// Open stream connections.
    conns: tcp::Connections,
}

/// The bound transports; cheap to clone, shared by the engine.
#[derive(Clone)]
pub struct Transports {
    /// UDP sockets, in `sip.listen` order.
    udp: Vec<Arc<UdpSocket>>,
    /// The open TCP and TLS connections, by connection id.
    tcp: tcp::Connections,
    /// Local addresses of the TLS listeners, in `sip.listen` order.
    tls: Vec<SocketAddr>,
    /// What the receive tasks share, for the trunk links started later.
    shared: Shared,
    /// Stops the trunk links with the rest.
    stop: watch::Receiver<bool>,
    /// The TCP/TLS trunks' links, by trunk index.
    links: Arc<trunk_link::Links>,
}

impl Transports {
    /// Binds every listen address and starts their receive tasks, which
    /// forward the trunk's messages to `inbound` until `stop` turns true.
    /// `tls` holds the certificate and key for `tls:` listeners; they are
    /// loaded before anything is bound.
    pub async fn bind(
        listen: &[ListenAddr],
        tls: Option<&TlsFiles>,
        settings: TransportSettings,
        inbound: InboundSender,
        stop: watch::Receiver<bool>,
    ) -> Result<Transports, TransportError> {
        let acceptor = match listen.iter().find(|l| l.transport == Transport::Tls) {
            None => None,
            Some(l) => {
                let files = tls.ok_or_else(|| TransportError::NoTlsFiles(l.to_string()))?;
                Some(tls::acceptor(files).await?)
            }
        };
        let conns = tcp::Connections::new(settings.max_connections);
        let shared = Shared {
            settings,
            inbound,
            conns: conns.clone(),
        };
        let mut transports = Transports {
            udp: Vec::new(),
            tcp: conns,
            tls: Vec::new(),
            shared: shared.clone(),
            stop: stop.clone(),
            links: Arc::default(),
        };
        for l in listen {
            let bind_err = |source| TransportError::Bind {
                listen: l.to_string(),
                source,
            };
            match l.transport {
                Transport::Udp => {
                    let socket = Arc::new(UdpSocket::bind(l.addr).await.map_err(bind_err)?);
                    enlarge_buffers(&socket, l);
                    let index = transports.udp.len();
                    transports.udp.push(socket.clone());
                    tokio::spawn(udp_loop(index, socket, shared.clone(), stop.clone()));
                }
                Transport::Tcp => {
                    let listener = tokio::net::TcpListener::bind(l.addr)
                        .await
                        .map_err(bind_err)?;
                    tokio::spawn(tcp::accept_loop(listener, shared.clone(), stop.clone()));
                }
                Transport::Tls => {
                    let Some(acceptor) = acceptor.clone() else {
                        return Err(TransportError::NoTlsFiles(l.to_string()));
                    };
                    let listener = tokio::net::TcpListener::bind(l.addr)
                        .await
                        .map_err(bind_err)?;
                    transports
                        .tls
                        .push(listener.local_addr().map_err(bind_err)?);
                    tokio::spawn(tls::accept_loop(
                        listener,
                        acceptor,
                        tls::HANDSHAKE_TIMEOUT,
                        shared.clone(),
                        stop.clone(),
                    ));
                }
            }
        }
        if transports.udp.is_empty() {
            return Err(TransportError::NoUdp);
        }
        Ok(transports)
    }

    /// The local address of the first UDP socket (B-legs leave from it).
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.udp.first().and_then(|s| s.local_addr().ok())
    }

    /// Local addresses of all UDP sockets.
    pub fn udp_local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Local addresses of all TLS listeners.
    pub fn tls_local_addrs(&self) -> Vec<SocketAddr> {
        self.tls.clone()
    }

    /// The flow for sending to `remote` from our first UDP socket.
    pub fn udp_flow(&self, remote: SocketAddr) -> Flow {
        Flow::Udp { socket: 0, remote }
    }

    /// Marks `flow`'s connection as used by a transaction or dialog until
    /// the lease is dropped: a used connection is never closed for
    /// idleness. `None` for UDP, or a connection already gone.
    pub fn lease(&self, flow: &Flow) -> Option<FlowLease> {
        match flow {
            Flow::Udp { .. } | Flow::Trunk { .. } => None,
            Flow::Tcp { conn, .. } | Flow::Tls { conn, .. } => self.tcp.lease(*conn),
        }
    }

    /// As [`Transports::lease`], for TCP/TLS connection `conn`.
    pub fn lease_conn(&self, conn: u64) -> Option<FlowLease> {
        self.tcp.lease(conn)
    }

    /// As [`Transports::send`], except that a UDP message waits in `out`
    /// for [`Transports::send_queued`], which sends all of a flush's UDP
    /// messages with one system call per socket.
    pub fn queue(&self, out: &mut UdpOutbox, flow: &Flow, bytes: Vec<u8>) {
        match flow {
            Flow::Udp { socket, remote } => out.push(*socket, *remote, bytes),
            _ => self.send(flow, bytes),
        }
    }

    /// Sends what [`Transports::queue`] put in `out`, and empties it.
    pub fn send_queued(&self, out: &mut UdpOutbox) {
        if !out.is_empty() {
            out.flush(&self.udp);
        }
    }

    /// Sends one message on `flow`. Never waits: a full socket buffer or a
    /// closed connection drops the message (SIP retransmission covers UDP
    /// loss; a lost TCP or TLS peer ends its transactions by timeout).
    pub fn send(&self, flow: &Flow, bytes: Vec<u8>) {
        match flow {
            Flow::Udp { socket, remote } => {
                let Some(s) = self.udp.get(*socket) else {
                    return;
                };
                if let Err(e) = s.try_send_to(&bytes, *remote) {
                    tracing::debug!(%remote, error = %e, "UDP send failed");
                }
            }
            Flow::Trunk { trunk, remote, .. } => {
                if !self.links.send(*trunk, bytes) {
                    tracing::debug!(%remote, "trunk link busy or absent; message dropped");
                }
            }
            Flow::Tcp { conn, remote } | Flow::Tls { conn, remote } => {
                match self.tcp.writer(*conn) {
                    Some(w) => {
                        if w.try_send(bytes).is_err() {
                            tracing::debug!(%remote, transport = flow.transport_name(), "connection busy or closed; message dropped");
                        }
                    }
                    None => {
                        tracing::debug!(%remote, transport = flow.transport_name(), "connection gone; message dropped")
                    }
                }
            }
        }
    }
}

async fn udp_loop(
    index: usize,
    socket: Arc<UdpSocket>,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    // One byte more than the largest message: a datagram that fills the
    // buffer was cut short by the kernel.
    let mut buf = vec![0u8; shared.settings.max_message_size + 1];
    let gate = &shared.settings.gate;
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (n, remote) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let data = &buf[..n];
        match gate.datagram(remote.ip(), data, Instant::now()) {
            Verdict::Pass => {}
            Verdict::Refuse => {
                refuse_outsider(&socket, remote, data, gate);
                continue;
            }
            Verdict::Drop => continue,
        }
        // Keep-alives (CRLF) and stray bytes are not messages.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let msg = Inbound {
            flow: Flow::Udp {
                socket: index,
                remote,
            },
            data: data.to_vec(),
        };
        if shared.inbound.send(msg).await.is_err() {
            return;
        }
    }
}

/// Answers an outsider's request, within its budget, with `403`. Only
/// requests that can be parsed can be answered; anything else (and an
/// ACK) is dropped.
/// The receive and send buffer asked for on each SIP UDP socket. The
/// default (`net.core.rmem_default`, 208 KiB here) holds about 160
/// datagrams, 12 ms of a trunk at 2,000 calls per second: any pause of
/// the engine longer than that (a busy core) drops messages in the kernel
/// (`RcvbufErrors`), and every dropped response becomes a retransmission.
/// The kernel caps the request at `net.core.rmem_max` / `wmem_max`.
const UDP_BUFFER: usize = 8 << 20;

/// Asks for [`UDP_BUFFER`] on `socket` and logs what the kernel granted;
/// a refusal leaves the default (logged, never fatal).
fn enlarge_buffers(socket: &UdpSocket, listen: &crate::config::ListenAddr) {
    let sock = socket2::SockRef::from(socket);
    let asked = sock
        .set_recv_buffer_size(UDP_BUFFER)
        .and_then(|()| sock.set_send_buffer_size(UDP_BUFFER));
    match (asked, sock.recv_buffer_size(), sock.send_buffer_size()) {
        (Ok(()), Ok(recv), Ok(send)) => {
            tracing::info!(%listen, recv, send, "SIP UDP socket buffers (raise net.core.rmem_max/wmem_max for more)");
        }
        (asked, recv, _) => {
            tracing::warn!(%listen, error = ?asked.err(), recv = ?recv.ok(), "SIP UDP socket buffers left at the default");
        }
    }
}

fn refuse_outsider(socket: &UdpSocket, remote: SocketAddr, data: &[u8], gate: &SourceGate) {
    let request = match crate::sip::parse_datagram(data) {
        Ok(SipMessage::Request(r)) if r.method != Method::Ack => r,
        _ => {
            gate.count_dropped();
            return;
        }
    };
    if gate.should_log(Instant::now()) {
        tracing::warn!(%remote, method = %request.method, "request from a source not in [trunk] allow: 403 (further ones rate-limited)");
    }
    let tag = crate::sip::new_tag();
    let response = crate::sip::response_to(&request, StatusCode::Forbidden, Some(&tag));
    let bytes = crate::sip::to_bytes(&SipMessage::Response(response));
    match socket.try_send_to(&bytes, remote) {
        Ok(_) => gate.count_reply(),
        Err(_) => gate.count_dropped(),
    }
}

impl TransportCounters {
    /// The number of stream connections open now.
    pub fn open_connections(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod buffer_tests {
    use super::*;

    #[tokio::test]
    async fn sip_udp_sockets_get_the_buffer_the_kernel_allows() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let listen = crate::config::ListenAddr {
            transport: crate::config::Transport::Udp,
            addr: socket.local_addr().unwrap(),
        };
        enlarge_buffers(&socket, &listen);
        // The kernel grants min(asked, rmem_max) and reports it doubled.
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap();
        let max: usize = max.trim().parse().unwrap();
        let got = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        assert!(got >= 2 * UDP_BUFFER.min(max), "got {got}, rmem_max {max}");
    }
}
