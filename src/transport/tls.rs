//! SIP over TLS: a TCP listener whose connections go through a rustls
//! handshake and are then served exactly like TCP connections
//! ([`super::tcp::connection`]).
//!
//! The `ServerConfig` is built with the `ring` provider passed explicitly,
//! so no process-wide rustls crypto provider has to be installed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::tcp::{self, Slot};
use super::{Flow, Shared, TransportError};
use crate::config::TlsFiles;

/// Longest a TLS handshake may take before the connection is closed.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the PEM certificate chain and private key named by `files` and
/// builds the acceptor for `tls:` listeners. Errors name the file at fault.
pub(super) async fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TransportError> {
    Ok(TlsAcceptor::from(Arc::new(server_config(files).await?)))
}

/// The rustls server configuration for the certificate and key in
/// `files` (also used by the HTTPS API). Errors name the file at fault.
pub async fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TransportError> {
    let certs = load_certs(&files.cert).await?;
    let key = load_key(&files.key).await?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&files.cert, format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            let reason = format!(
                "private key cannot be used with the certificate in {}: {e}",
                files.cert.display()
            );
            tls_error(&files.key, reason)
        })?;
    Ok(config)
}

pub(super) fn tls_error(path: &Path, reason: String) -> TransportError {
    TransportError::Tls {
        path: path.to_path_buf(),
        reason,
    }
}

async fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, TransportError> {
    tokio::fs::read(path)
        .await
        .map_err(|e| tls_error(path, format!("cannot read the {what} file: {e}")))
}

pub(super) async fn load_certs(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem_bytes = read_file(path, "certificate").await?;
    let certs = CertificateDer::pem_slice_iter(&pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, format!("not a valid PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(
            path,
            "no certificate in it (expected a PEM \"BEGIN CERTIFICATE\" block)".to_string(),
        ));
    }
    Ok(certs)
}

async fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let pem_bytes = read_file(path, "private key").await?;
    PrivateKeyDer::from_pem_slice(&pem_bytes).map_err(|e| {
        let reason = match e {
            pem::Error::NoItemsFound => {
                "no private key in it (expected a PEM PKCS#8, PKCS#1 or SEC1 private key block)"
                    .to_string()
            }
            e => format!("not a valid PEM private key file: {e}"),
        };
        tls_error(path, reason)
    })
}

/// Accepts TCP connections on `listener` and serves each one, after its
/// TLS handshake, as a [`Flow::Tls`] connection, until `stop` turns true.
/// Outsiders and connections over the cap are closed before any
/// handshake; a failed or slow handshake (over `handshake_timeout`)
/// closes only that connection.
pub(super) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
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
                let served = serve(
                    stream,
                    remote,
                    acceptor.clone(),
                    handshake_timeout,
                    slot,
                    shared.clone(),
                    stop.clone(),
                );
                tokio::spawn(served);
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS listener: TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs the handshake of one accepted connection, then serves it.
async fn serve(
    stream: TcpStream,
    remote: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    slot: Slot,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
    let result = tokio::select! {
        r = handshake => r,
        _ = stop.wait_for(|s| *s) => return,
    };
    let stream = match result {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed; connection closed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, timeout = ?handshake_timeout, "TLS handshake timed out; connection closed");
            return;
        }
    };
    let conn = tcp::next_conn_id();
    let (reader, writer) = tokio::io::split(stream);
    tcp::connection(
        reader,
        writer,
        Flow::Tls { conn, remote },
        slot,
        shared,
        stop,
    )
    .await;
}
