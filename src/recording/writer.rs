//! One call's recording writer: tap packets in, encrypted chunks out.
//!
//! The writer waits for the first audio packet (its payload type names the
//! codec), makes the recording's DEK, stores the row (wrapped DEK) before
//! the blob exists, then aligns both directions and seals a chunk at least
//! every [`CHUNK_MEDIA`] of audio and every [`FLUSH_EVERY`] of wall time,
//! syncing the blob each time: a crash loses at most that much audio.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::align::{AlignConfig, Aligner, Block};
use super::blob::BlobWriter;
use super::crec::{Codec as CrecCodec, CrecHeader, CrecWriter};
use super::g711::Codec;
use super::rtp_view::RtpView;
use super::service::{Recorder, RecordingMeta};
use super::tap::TapPacket;
use crate::keys::{Dek, DekBinding};
use crate::store::RecordingRow;

/// Audio per chunk at most.
pub const CHUNK_MEDIA: Duration = Duration::from_secs(2);
/// Wall time between flushes at most, even when no audio flows (hold).
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Why a recording stopped early (logged; the call goes on).
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("blob: {0}")]
    Blob(#[from] super::blob::BlobError),
    #[error("format: {0}")]
    Crec(#[from] super::crec::CrecError),
    #[error("unknown retention class '{0}'")]
    Class(String),
    #[error("blob task failed: {0}")]
    Join(String),
}

/// An open recording: where sealed chunks go.
struct Open {
    row: RecordingRow,
    crec: CrecWriter,
    blob: Option<Box<dyn BlobWriter>>,
    aligner: Aligner,
    /// Interleaved caller/callee bytes not yet sealed, and where they start.
    pending: Vec<u8>,
    pending_start_ms: u64,
    /// Audio written so far, in samples per channel.
    samples: u64,
}

/// Runs the writer until the tap is switched off.
pub(super) async fn run(
    rec: Arc<Recorder>,
    meta: RecordingMeta,
    mut rx: mpsc::Receiver<TapPacket>,
) {
    let mut early = Vec::new();
    let codec = loop {
        match rx.recv().await {
            Some(p) => {
                let codec =
                    RtpView::parse(&p.data).and_then(|v| Codec::from_payload_type(v.payload_type));
                early.push(p);
                if let Some(c) = codec {
                    break c;
                }
            }
            None => break Codec::Pcmu,
        }
    };
    let mut open = match start(&rec, &meta, codec).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(call = %meta.call_id, error = %e, "recording could not start");
            return;
        }
    };
    if let Err(e) = record(&mut open, early, &mut rx).await {
        tracing::error!(call = %meta.call_id, error = %e, "recording stopped early");
    }
    match finish(&rec, &mut open).await {
        Ok(()) => {
            tracing::info!(call = %meta.call_id, recording = %open.row.id, seconds = open.samples / 8000, "recording complete")
        }
        Err(e) => {
            tracing::error!(call = %meta.call_id, error = %e, "recording could not be finished")
        }
    }
}

async fn start(rec: &Recorder, meta: &RecordingMeta, codec: Codec) -> Result<Open, WriteError> {
    let now = rec.clock.now();
    let (epoch_id, _) = rec
        .policy
        .epoch_for(&meta.retention_class, now)
        .ok_or_else(|| WriteError::Class(meta.retention_class.clone()))?;
    let recording_id = uuid::Uuid::new_v4();
    rec.ensure_epoch_kek(&epoch_id)?;
    let dek = Dek::generate();
    let binding = DekBinding {
        call_id: meta.call_id.clone(),
        recording_id,
        epoch_id: epoch_id.clone(),
    };
    // The KEK stays in the key store (inside the token for PKCS#11).
    let wrapped = rec.keys.wrap_dek(&epoch_id, &dek, &binding)?;
    let row = RecordingRow {
        id: recording_id.to_string(),
        call_id: meta.call_id.clone(),
        session_id: meta.session_id.clone(),
        retention_class: meta.retention_class.clone(),
        epoch_id: epoch_id.clone(),
        wrapped_dek: wrapped.as_bytes().to_vec(),
        blob: format!("{recording_id}.crec"),
        codec: codec_name(codec).to_owned(),
        state: "recording".to_owned(),
        started_at: now,
        ended_at: None,
        duration_ms: None,
        expires_at: None,
        held_by: None,
    };
    // The row first: a blob never exists without the row that explains it.
    rec.store.insert_recording(&row).await?;
    let header = CrecHeader {
        recording_id,
        call_id: meta.call_id.clone(),
        epoch_id,
        codec: match codec {
            Codec::Pcmu => CrecCodec::Pcmu,
            Codec::Pcma => CrecCodec::Pcma,
        },
        sample_rate: 8000,
        channels: 2,
        created_ms: now.as_millis(),
    };
    let (crec, header_bytes) = CrecWriter::new(&header, &dek)?;
    drop(dek);
    let blobs = rec.blobs.clone();
    let name = row.blob.clone();
    let blob = blocking(move || {
        let mut w = blobs.create(&name)?;
        w.append(&header_bytes)?;
        w.sync()?;
        Ok(w)
    })
    .await?;
    let aligner = Aligner::new(codec, AlignConfig::default());
    Ok(Open {
        row,
        crec,
        blob: Some(blob),
        aligner,
        pending: Vec::new(),
        pending_start_ms: 0,
        samples: 0,
    })
}

async fn record(
    open: &mut Open,
    early: Vec<TapPacket>,
    rx: &mut mpsc::Receiver<TapPacket>,
) -> Result<(), WriteError> {
    for p in early {
        open.aligner.push(p.channel, &p.data, p.arrival);
    }
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.tick().await;
    loop {
        tokio::select! {
            p = rx.recv() => match p {
                Some(p) => open.aligner.push(p.channel, &p.data, p.arrival),
                None => return Ok(()),
            },
            _ = flush.tick() => {
                collect(open);
                if !open.pending.is_empty() {
                    seal(open, false).await?;
                }
                continue;
            }
        }
        collect(open);
        if open.pending.len() as u64 >= 2 * 8 * CHUNK_MEDIA.as_millis() as u64 {
            seal(open, false).await?;
        }
    }
}

/// Moves finished blocks from the aligner into the pending chunk.
fn collect(open: &mut Open) {
    while let Some(block) = open.aligner.poll_block() {
        append_block(open, &block);
    }
}

fn append_block(open: &mut Open, block: &Block) {
    if open.pending.is_empty() {
        open.pending_start_ms = block.start_ms;
    }
    for (c, e) in block.caller.iter().zip(block.callee.iter()) {
        open.pending.push(*c);
        open.pending.push(*e);
    }
    open.samples += block.caller.len() as u64;
}

/// Seals the pending audio as one chunk, appends it and syncs the blob.
async fn seal(open: &mut Open, last: bool) -> Result<(), WriteError> {
    let chunk = open
        .crec
        .seal_chunk(open.pending_start_ms, &open.pending, last)?;
    open.pending_start_ms += (open.pending.len() / 16) as u64;
    open.pending.clear();
    let mut blob = open
        .blob
        .take()
        .ok_or_else(|| WriteError::Join("blob writer lost".into()))?;
    let blob = blocking(move || {
        blob.append(&chunk)?;
        blob.sync()?;
        Ok(blob)
    })
    .await?;
    open.blob = Some(blob);
    Ok(())
}

async fn finish(rec: &Recorder, open: &mut Open) -> Result<(), WriteError> {
    open.aligner.finish();
    collect(open);
    seal(open, true).await?;
    let ended = rec.clock.now();
    let period = rec
        .policy
        .classes
        .get(&open.row.retention_class)
        .copied()
        .unwrap_or_default();
    let duration_ms = i64::try_from(open.samples / 8).unwrap_or(i64::MAX);
    rec.store
        .finish_recording(
            &open.row.id,
            "complete",
            ended,
            duration_ms,
            ended.saturating_add(period),
        )
        .await?;
    Ok(())
}

fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => "PCMU",
        Codec::Pcma => "PCMA",
    }
}

/// Runs blocking file work (appends, fsync) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, super::blob::BlobError> + Send + 'static,
) -> Result<T, WriteError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(WriteError::Join(e.to_string())),
    }
}
