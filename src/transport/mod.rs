//! SIP transports: UDP sockets and TCP connections.
//!
//! Transports only move bytes. Every received datagram, or every message
//! framed out of a TCP stream, goes to the engine as an [`Inbound`] with the
//! [`Flow`] it came on; the engine answers on the same flow. Nothing here
//! parses SIP beyond TCP framing.

mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::config::{ListenAddr, Transport};

/// Largest UDP datagram we read.
const MAX_DATAGRAM: usize = 65_535;

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
}

impl Flow {
    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        match self {
            Flow::Udp { remote, .. } | Flow::Tcp { remote, .. } => *remote,
        }
    }

    /// Whether the transport is reliable (no SIP retransmissions needed).
    pub fn is_reliable(&self) -> bool {
        matches!(self, Flow::Tcp { .. })
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
    /// TLS listeners are not built yet.
    #[error("{0}: TLS for SIP is not available in this version")]
    TlsUnsupported(String),
    /// Calls go out over UDP, so one UDP listener is required.
    #[error("sip.listen needs at least one udp: address (B-legs are sent over UDP)")]
    NoUdp,
}

/// The bound transports; cheap to clone, shared by the engine.
#[derive(Clone)]
pub struct Transports {
    /// UDP sockets, in `sip.listen` order.
    udp: Vec<Arc<UdpSocket>>,
    /// Writers of the open TCP connections, by connection id.
    tcp: Arc<Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>>,
}

impl Transports {
    /// Binds every listen address and starts their receive tasks, which
    /// forward messages to `inbound` until `stop` turns true.
    pub async fn bind(
        listen: &[ListenAddr],
        inbound: mpsc::Sender<Inbound>,
        stop: watch::Receiver<bool>,
    ) -> Result<Transports, TransportError> {
        let mut transports = Transports {
            udp: Vec::new(),
            tcp: Arc::default(),
        };
        for l in listen {
            let bind_err = |source| TransportError::Bind {
                listen: l.to_string(),
                source,
            };
            match l.transport {
                Transport::Udp => {
                    let socket = Arc::new(UdpSocket::bind(l.addr).await.map_err(bind_err)?);
                    let index = transports.udp.len();
                    transports.udp.push(socket.clone());
                    tokio::spawn(udp_loop(index, socket, inbound.clone(), stop.clone()));
                }
                Transport::Tcp => {
                    let listener = tokio::net::TcpListener::bind(l.addr)
                        .await
                        .map_err(bind_err)?;
                    let conns = transports.tcp.clone();
                    tokio::spawn(tcp::accept_loop(
                        listener,
                        conns,
                        inbound.clone(),
                        stop.clone(),
                    ));
                }
                Transport::Tls => return Err(TransportError::TlsUnsupported(l.to_string())),
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

    /// The flow for sending to `remote` from our first UDP socket.
    pub fn udp_flow(&self, remote: SocketAddr) -> Flow {
        Flow::Udp { socket: 0, remote }
    }

    /// Sends one message on `flow`. Never waits: a full socket buffer or a
    /// closed connection drops the message (SIP retransmission covers UDP
    /// loss; a lost TCP peer ends its transactions by timeout).
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
            Flow::Tcp { conn, remote } => {
                let writer = self
                    .tcp
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(conn)
                    .cloned();
                match writer {
                    Some(w) => {
                        if w.try_send(bytes).is_err() {
                            tracing::debug!(%remote, "TCP connection busy or closed; message dropped");
                        }
                    }
                    None => tracing::debug!(%remote, "TCP connection gone; message dropped"),
                }
            }
        }
    }
}

async fn udp_loop(
    index: usize,
    socket: Arc<UdpSocket>,
    inbound: mpsc::Sender<Inbound>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match received {
            Ok((n, remote)) => {
                // Keep-alives (CRLF) and stray bytes are not messages.
                if buf[..n].iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let msg = Inbound {
                    flow: Flow::Udp {
                        socket: index,
                        remote,
                    },
                    data: buf[..n].to_vec(),
                };
                if inbound.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
        }
    }
}
