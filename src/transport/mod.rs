//! SIP transports: UDP sockets, TCP connections and TLS connections.
//!
//! Transports only move bytes. Every received datagram, or every message
//! framed out of a TCP or TLS stream, goes to the engine as an [`Inbound`]
//! with the [`Flow`] it came on; the engine answers on the same flow.
//! Nothing here parses SIP beyond stream framing.

mod tcp;
pub mod tls;
#[cfg(test)]
mod tls_tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::config::{ListenAddr, TlsFiles, Transport};

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
    /// A TLS connection (by id, from the same id space as TCP) and its peer.
    Tls {
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
            Flow::Udp { remote, .. } | Flow::Tcp { remote, .. } | Flow::Tls { remote, .. } => {
                *remote
            }
        }
    }

    /// Whether the transport is reliable (no SIP retransmissions needed).
    pub fn is_reliable(&self) -> bool {
        matches!(self, Flow::Tcp { .. } | Flow::Tls { .. })
    }

    /// The transport's name, for logs.
    fn transport_name(&self) -> &'static str {
        match self {
            Flow::Udp { .. } => "udp",
            Flow::Tcp { .. } => "tcp",
            Flow::Tls { .. } => "tls",
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
    #[error("sip.listen needs at least one udp: address (B-legs are sent over UDP)")]
    NoUdp,
}

/// The bound transports; cheap to clone, shared by the engine.
#[derive(Clone)]
pub struct Transports {
    /// UDP sockets, in `sip.listen` order.
    udp: Vec<Arc<UdpSocket>>,
    /// Writers of the open TCP and TLS connections, by connection id.
    tcp: tcp::Writers,
    /// Local addresses of the TLS listeners, in `sip.listen` order.
    tls: Vec<SocketAddr>,
}

impl Transports {
    /// Binds every listen address and starts their receive tasks, which
    /// forward messages to `inbound` until `stop` turns true. `tls` holds
    /// the certificate and key for `tls:` listeners; they are loaded before
    /// anything is bound.
    pub async fn bind(
        listen: &[ListenAddr],
        tls: Option<&TlsFiles>,
        inbound: mpsc::Sender<Inbound>,
        stop: watch::Receiver<bool>,
    ) -> Result<Transports, TransportError> {
        let acceptor = match listen.iter().find(|l| l.transport == Transport::Tls) {
            None => None,
            Some(l) => {
                let files = tls.ok_or_else(|| TransportError::NoTlsFiles(l.to_string()))?;
                Some(tls::acceptor(files).await?)
            }
        };
        let mut transports = Transports {
            udp: Vec::new(),
            tcp: Arc::default(),
            tls: Vec::new(),
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
                        transports.tcp.clone(),
                        inbound.clone(),
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
            Flow::Tcp { conn, remote } | Flow::Tls { conn, remote } => {
                let writer = self
                    .tcp
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(conn)
                    .cloned();
                match writer {
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
