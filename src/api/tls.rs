//! HTTPS for the API (`[api.tls]`): the rustls handshake of one connection.
//!
//! [`super::connections`] runs each handshake on the connection's own task,
//! bounded by [`HANDSHAKE_TIMEOUT`] and counted against `[api]
//! max_connections`, so a slow or silent client never holds up the accept
//! loop; a failed handshake closes only that connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes TLS handshakes with the API's certificate. Cheap to clone.
#[derive(Clone)]
pub struct Acceptor {
    /// rustls, with ALPN set to HTTP/1.1 (the only protocol served).
    inner: tokio_rustls::TlsAcceptor,
}

impl Acceptor {
    /// Serves `config`, offering ALPN `http/1.1`.
    pub fn new(mut config: rustls::ServerConfig) -> Self {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Acceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }

    /// Runs the handshake on `tcp`, from `peer`. `None` when it fails or
    /// takes longer than [`HANDSHAKE_TIMEOUT`]; the connection is then
    /// dropped, which closes it.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.inner.accept(tcp)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }
}
