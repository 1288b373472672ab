//! One webhook POST: a fresh connection (TLS through rustls for
//! `https://`), HTTP/1.1, bounded in time as a whole.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::webhooks::WebhookTarget;

/// Why a client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file could not be read or held no certificate.
    #[error("webhooks.ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("webhook TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Posts signed events to the configured receiver.
pub struct Client {
    target: WebhookTarget,
    tls: Option<TlsConnector>,
    timeout: Duration,
}

/// The receiver's answer, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It answered with this status.
    Status(u16),
    /// No answer: connection, TLS or timeout (the reason is for the log
    /// and the deliveries list; it holds no secret).
    Failed(String),
}

impl Client {
    /// A client for `target`, trusting the CAs in `ca_file` for `https://`.
    pub fn new(
        target: WebhookTarget,
        ca_file: &std::path::Path,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let tls = if target.tls {
            Some(connector(ca_file)?)
        } else {
            None
        };
        Ok(Client {
            target,
            tls,
            timeout,
        })
    }

    /// POSTs `body` with `headers`; the whole exchange within the timeout.
    pub async fn post(&self, headers: &[(&str, String)], body: String) -> Outcome {
        match tokio::time::timeout(self.timeout, self.exchange(headers, body)).await {
            Ok(Ok(status)) => Outcome::Status(status),
            Ok(Err(e)) => Outcome::Failed(e),
            Err(_) => Outcome::Failed(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn exchange(&self, headers: &[(&str, String)], body: String) -> Result<u16, String> {
        let t = &self.target;
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let req = self.request(headers, body)?;
        match &self.tls {
            None => send(tcp, req).await,
            Some(tls) => {
                let name = ServerName::try_from(t.host.clone())
                    .map_err(|e| format!("server name: {e}"))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                send(stream, req).await
            }
        }
    }

    fn request(&self, headers: &[(&str, String)], body: String) -> Result<Request<Body>, String> {
        let t = &self.target;
        let host = if t.port == if t.tls { 443 } else { 80 } {
            t.host.clone()
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let mut b = Request::post(t.path.as_str())
            .header("host", host)
            .header("content-type", "application/json")
            .header("user-agent", concat!("ansim/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        b.body(Body::from(body))
            .map_err(|e| format!("request: {e}"))
    }
}

async fn send<S>(io: S, req: Request<Body>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let answer = sender.send_request(req).await;
    driver.abort();
    answer
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("HTTP: {e}"))
}

fn connector(ca_file: &std::path::Path) -> Result<TlsConnector, ClientError> {
    let bad = |reason: String| ClientError::CaFile {
        path: ca_file.display().to_string(),
        reason,
    };
    let pem = std::fs::read(ca_file).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        // A bundle may hold certificates rustls cannot use; skip those.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(bad("no usable CA certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
