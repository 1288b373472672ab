//! SIP over TCP: one reader and one writer task per connection, framing by
//! Content-Length ([`crate::sip::StreamFramer`]). TLS connections
//! ([`super::tls`]) reuse [`connection`] once their handshake is done.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::{Flow, Inbound};
use crate::sip::StreamFramer;

/// Messages queued for one connection before sends are dropped.
const WRITE_QUEUE: usize = 256;

/// Connection ids, shared by TCP and TLS (they share the writer map).
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Writers of the open stream connections (TCP and TLS), by connection id.
pub(super) type Writers = Arc<Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>>;

/// A new connection id, unique for the process lifetime.
pub(super) fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    writers: Writers,
    inbound: mpsc::Sender<Inbound>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                let conn = next_conn_id();
                let flow = Flow::Tcp { conn, remote };
                let (reader, writer) = stream.into_split();
                tokio::spawn(connection(
                    reader,
                    writer,
                    flow,
                    writers.clone(),
                    inbound.clone(),
                    stop.clone(),
                ));
            }
            Err(e) => tracing::debug!(error = %e, "TCP accept failed"),
        }
    }
}

/// Serves one established stream connection: registers its writer under
/// the connection id of `flow` (a `Tcp` or `Tls` flow), forwards every framed message to
/// `inbound`, and unregisters when the peer closes, framing fails or `stop`
/// turns true.
pub(super) async fn connection<R, W>(
    mut reader: R,
    mut writer: W,
    flow: Flow,
    writers: Writers,
    inbound: mpsc::Sender<Inbound>,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let conn = match flow {
        Flow::Tcp { conn, .. } | Flow::Tls { conn, .. } => conn,
        Flow::Udp { .. } => return,
    };
    let remote = flow.remote();
    let kind = flow.transport_name();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(conn, tx);
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            // TLS buffers records inside the stream: flush pushes them out.
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            _ = stop.wait_for(|s| *s) => break,
        };
        framer.push(&buf[..n]);
        while let Some(framed) = framer.next_message() {
            match framed {
                Ok(msg) => {
                    let item = Inbound {
                        flow: flow.clone(),
                        data: msg.to_vec(),
                    };
                    if inbound.send(item).await.is_err() {
                        break 'read;
                    }
                }
                Err(e) => {
                    tracing::info!(%remote, transport = kind, error = %e, "closing connection: bad framing");
                    break 'read;
                }
            }
        }
    }
    writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&conn);
    write_task.abort();
}
