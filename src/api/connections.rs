//! The API's connections: the accept loop, the cap on open connections,
//! the TLS handshake, and HTTP/1.1 through hyper.
//!
//! This replaces `axum::serve`, which has neither a header-read timeout nor
//! a connection cap. Each accepted connection first takes a place under
//! `[api] max_connections` (or is closed at once), then runs on its own
//! task: the TLS handshake if any, then hyper's HTTP/1.1 server with
//! `[api] header_timeout`, which closes a connection whose request headers
//! do not arrive in time (slowloris) and an idle keep-alive connection
//! after as long. The router sees each request with the client's address
//! as [`ConnectInfo<SocketAddr>`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use super::tls;
use crate::config::ApiConfig;
use crate::metrics::Metrics;

/// How long the accept loop waits after a failed accept (out of file
/// descriptors, say) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What bounds the API's connections (`[api]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's headers, and the
    /// longest a keep-alive connection may sit idle (`header_timeout`).
    pub header_timeout: Duration,
    /// Most connections open at once, TLS handshakes included
    /// (`max_connections`).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// The configuration's defaults: 10 s, 1024 connections.
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

impl ConnectionLimits {
    /// The limits configured in `[api]`.
    pub fn from_config(api: &ApiConfig) -> Self {
        ConnectionLimits {
            header_timeout: api.header_timeout,
            max_connections: api.max_connections,
        }
    }
}

/// Accepts connections on `listener` and serves `app` on them (over TLS
/// with `tls`), until `shutdown` completes; then stops accepting and waits
/// for the requests in flight to finish.
pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<tls::Acceptor>,
    app: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let cap = ConnectionCap::new(limits.max_connections, metrics);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let server = Arc::new(Server { http, app, tls });
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(open) = cap.try_open() else {
            tracing::debug!(%peer, "API connection refused: max_connections are open");
            drop(tcp);
            continue;
        };
        let (server, watcher) = (server.clone(), graceful.watcher());
        tokio::spawn(async move {
            server.connection(tcp, peer, watcher).await;
            drop(open);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What every connection of one API server shares.
struct Server {
    /// hyper's HTTP/1.1 settings: the timer and the header-read timeout.
    http: http1::Builder,
    /// The routes (cheap to clone: one per request).
    app: Router,
    /// The certificate for HTTPS; `None` for plain HTTP.
    tls: Option<tls::Acceptor>,
}

impl Server {
    /// Serves one connection from `peer` until it closes (or, after a
    /// shutdown signal through `watcher`, until its request in flight is
    /// answered).
    async fn connection(&self, tcp: TcpStream, peer: SocketAddr, watcher: Watcher) {
        match &self.tls {
            None => self.http_on(tcp, peer, watcher).await,
            Some(acceptor) => {
                if let Some(stream) = acceptor.handshake(tcp, peer).await {
                    self.http_on(stream, peer, watcher).await;
                }
            }
        }
    }

    async fn http_on<I>(&self, io: I, peer: SocketAddr, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let conn = self.http.serve_connection(TokioIo::new(io), service);
        let ended: Result<(), hyper::Error> = watcher.watch(conn).await;
        if let Err(e) = ended {
            // Header timeouts, clients that hang up mid-request, bad
            // requests: the client's problem, worth a debug line.
            tracing::debug!(%peer, error = %e, "API connection ended with an error");
        }
    }
}

/// Counts open connections against `[api] max_connections`.
struct ConnectionCap {
    /// One permit per connection that may be open.
    slots: Arc<Semaphore>,
    /// Where the open gauge, the refusals and the limit are shown.
    metrics: Arc<Metrics>,
}

impl ConnectionCap {
    fn new(max_connections: usize, metrics: Arc<Metrics>) -> Self {
        let max = max_connections.min(Semaphore::MAX_PERMITS);
        let shown = i64::try_from(max).unwrap_or(i64::MAX);
        metrics
            .limit_api_max_connections
            .store(shown, Ordering::Relaxed);
        ConnectionCap {
            slots: Arc::new(Semaphore::new(max)),
            metrics,
        }
    }

    /// A place for one more connection, or `None` (counted as refused)
    /// when all are taken.
    fn try_open(&self) -> Option<OpenConnection> {
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                self.metrics
                    .http_connections_open
                    .fetch_add(1, Ordering::Relaxed);
                Some(OpenConnection {
                    _slot: slot,
                    metrics: self.metrics.clone(),
                })
            }
            Err(_) => {
                self.metrics
                    .http_connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// A connection's place under the cap, freed when it is dropped (when the
/// connection's task ends, however it ends).
struct OpenConnection {
    /// Returned to the cap on drop.
    _slot: OwnedSemaphorePermit,
    /// For the open-connections gauge.
    metrics: Arc<Metrics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics
            .http_connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_beyond_its_limit_and_frees_places_on_drop() {
        let metrics = Arc::new(Metrics::default());
        let cap = ConnectionCap::new(2, metrics.clone());
        let load = |m: &Metrics| {
            (
                m.http_connections_open.load(Ordering::Relaxed),
                m.http_connections_refused.load(Ordering::Relaxed),
                m.limit_api_max_connections.load(Ordering::Relaxed),
            )
        };
        assert_eq!(load(&metrics), (0, 0, 2));
        let a = cap.try_open().expect("first");
        let _b = cap.try_open().expect("second");
        assert!(cap.try_open().is_none());
        assert_eq!(load(&metrics), (2, 1, 2));
        drop(a);
        assert_eq!(load(&metrics), (1, 1, 2));
        assert!(cap.try_open().is_some(), "a place was freed");
    }
}
