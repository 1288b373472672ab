//! SIP over TCP: one reader and one writer task per connection, framing by
//! Content-Length ([`crate::sip::StreamFramer`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{Flow, Inbound};
use crate::sip::StreamFramer;

/// Messages queued for one connection before sends are dropped.
const WRITE_QUEUE: usize = 256;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

type Writers = Arc<Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>>;

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
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                let flow = Flow::Tcp { conn, remote };
                tokio::spawn(connection(
                    stream,
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

async fn connection(
    stream: TcpStream,
    flow: Flow,
    writers: Writers,
    inbound: mpsc::Sender<Inbound>,
    mut stop: watch::Receiver<bool>,
) {
    let Flow::Tcp { conn, remote } = flow else {
        return;
    };
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(conn, tx);
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
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
                    tracing::info!(%remote, error = %e, "closing TCP connection: bad framing");
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
