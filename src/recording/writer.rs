//! One call's recording writer: tap packets in, encrypted chunks out.
//!
//! The writer waits for the first audio packet (its payload type names the
//! codec), makes the recording's DEK, stores the row (wrapped DEK) before
//! the blob exists, then aligns both directions and seals a chunk at least
//! every [`CHUNK_MEDIA`] of audio and every [`FLUSH_EVERY`] of wall time,
//! syncing the blob each time: a crash loses at most that much audio.
//!
//! It never gets stuck and never holds more than it must:
//! - silence is released by time ([`Aligner::advance`] on the flush timer),
//!   and chunks are cut at [`CHUNK_MEDIA`] of audio whatever came out at
//!   once, so a long hold neither piles up in memory nor makes an
//!   oversized chunk;
//! - while waiting for the codec it keeps at most [`EARLY_PACKETS`]; audio
//!   in a codec it cannot store (anything but PCMU/PCMA) ends the
//!   recording `failed` with reason `unsupported-codec` at once, with
//!   nothing buffered;
//! - any write error (key store, database, blob, full disk) ends it
//!   `failed` with reason `write-error`, while the call goes on; what was
//!   synced before stays readable;
//! - a row it cannot finish (the database down at the end) stays in
//!   `recording` only until the reconciliation ([`Recorder::reconcile`])
//!   sees no live writer for it and marks it `truncated`.
//!
//! When it finishes, the DEK moves to the KEK of the epoch that holds the
//! recording's real expiry (see [`super::rewrap`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::align::{AlignConfig, Aligner, Block};
use super::blob::BlobWriter;
use super::crec::{CrecHeader, CrecWriter};
use super::service::{Recorder, RecordingMeta};
use super::tap::TapPacket;
use crate::keys::{Dek, DekBinding};
use crate::media::g711::Codec;
use crate::store::{RecordingEnd, RecordingFailure, RecordingRow, RecordingState};

/// Audio per chunk at most.
pub const CHUNK_MEDIA: Duration = Duration::from_secs(2);
/// Wall time between flushes at most, even when no audio flows (hold).
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Packets kept while the codec is not known yet (about 3 s of telephone
/// events, comfort noise or the like at 50 packets a second).
pub const EARLY_PACKETS: usize = 150;

/// Bytes of one full chunk: two interleaved channels, one byte a sample.
const CHUNK_BYTES: usize = 2 * 8 * CHUNK_MEDIA.as_millis() as usize;

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
    #[error("moving the DEK to its expiry's epoch: {0}")]
    Rewrap(#[from] super::rewrap::RewrapError),
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

/// What the first packets said about the codec.
enum Start {
    /// Audio in this codec, with the packets seen so far.
    Codec(Codec, Vec<TapPacket>),
    /// Audio in a codec we cannot store.
    Unsupported,
    /// The tap closed before any audio (an empty recording).
    Ended,
}

/// Runs the writer until the tap is switched off.
pub(super) async fn run(
    rec: Arc<Recorder>,
    meta: RecordingMeta,
    mut rx: mpsc::Receiver<TapPacket>,
) {
    let recording_id = uuid::Uuid::new_v4();
    // Registered before its row exists, so reconciliation never takes a
    // live recording for an orphan.
    let _live = rec.writers().register(recording_id.to_string());
    let (codec, early) = match wait_for_codec(&mut rx).await {
        Start::Codec(codec, early) => (codec, early),
        Start::Ended => (Codec::Pcmu, Vec::new()),
        Start::Unsupported => {
            drop(rx); // nothing more is buffered: the tap's sends now fail fast
            unsupported(&rec, &meta, recording_id).await;
            return;
        }
    };
    let mut open = match start(&rec, &meta, recording_id, codec).await {
        Ok(o) => o,
        Err((e, row)) => {
            tracing::error!(call = %meta.call_id, error = %e, "recording could not start");
            rec.counters().failed(RecordingFailure::WriteError);
            if let Some(row) = row {
                end_failed(&rec, &row, 0, RecordingFailure::WriteError).await;
            }
            return;
        }
    };
    if let Err(e) = record(&mut open, early, &mut rx).await {
        drop(rx);
        tracing::error!(call = %meta.call_id, recording = %open.row.id, error = %e, "recording write failed: recording ends failed, the call goes on");
        rec.counters().failed(RecordingFailure::WriteError);
        end_failed(&rec, &open.row, open.samples, RecordingFailure::WriteError).await;
        return;
    }
    match finish(&rec, &mut open).await {
        Ok(()) => {
            rec.counters().completed();
            tracing::info!(call = %meta.call_id, recording = %open.row.id, seconds = open.samples / 8000, "recording complete");
        }
        Err(e) => {
            tracing::error!(call = %meta.call_id, recording = %open.row.id, error = %e, "recording could not be finished");
            rec.counters().failed(RecordingFailure::WriteError);
            end_failed(&rec, &open.row, open.samples, RecordingFailure::WriteError).await;
        }
    }
}

/// Reads packets until one names the codec, keeping at most
/// [`EARLY_PACKETS`] of them.
async fn wait_for_codec(rx: &mut mpsc::Receiver<TapPacket>) -> Start {
    let mut early = Vec::new();
    while let Some(p) = rx.recv().await {
        let payload_type = p.header.payload_type;
        if let Some(codec) = Codec::from_payload_type(payload_type) {
            early.push(p);
            return Start::Codec(codec, early);
        }
        // Comfort noise (13) and dynamic types (telephone events, or audio
        // in a dynamic codec) may precede the audio; any other static type
        // is audio we cannot store.
        let maybe_later = payload_type == 13 || payload_type >= 96;
        if !maybe_later || early.len() >= EARLY_PACKETS {
            return Start::Unsupported;
        }
        early.push(p);
    }
    Start::Ended
}

/// A new row for `recording_id` with its DEK wrapped under the start
/// epoch, in state `recording`; the DEK goes back to the caller.
fn new_row(
    rec: &Recorder,
    meta: &RecordingMeta,
    recording_id: uuid::Uuid,
    codec: Option<Codec>,
) -> Result<(RecordingRow, Dek), WriteError> {
    let now = rec.clock.now();
    let (epoch_id, _) = rec
        .policy
        .epoch_for(&meta.retention_class, now)
        .ok_or_else(|| WriteError::Class(meta.retention_class.clone()))?;
    rec.ensure_key(&epoch_id)?;
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
        epoch_id,
        wrapped_dek: wrapped.as_bytes().to_vec(),
        blob: format!("{recording_id}.crec"),
        codec,
        state: RecordingState::Recording,
        failure: None,
        started_at: now,
        ended_at: None,
        duration_ms: None,
        expires_at: None,
        held_by: None,
    };
    Ok((row, dek))
}

/// Audio in a codec we cannot store: a row that says so (no blob is ever
/// written), so the call record names a recording and its outcome.
async fn unsupported(rec: &Recorder, meta: &RecordingMeta, recording_id: uuid::Uuid) {
    tracing::warn!(call = %meta.call_id, "the call's codec cannot be recorded: recording ends failed (unsupported-codec)");
    rec.counters().failed(RecordingFailure::UnsupportedCodec);
    let row = match new_row(rec, meta, recording_id, None) {
        Ok((row, _dek)) => row,
        Err(e) => {
            tracing::error!(call = %meta.call_id, error = %e, "failed recording could not be stored");
            return;
        }
    };
    if let Err(e) = rec.store().insert_recording(&row).await {
        tracing::error!(call = %meta.call_id, error = %e, "failed recording could not be stored");
        return;
    }
    end_failed(rec, &row, 0, RecordingFailure::UnsupportedCodec).await;
}

/// Marks `row` failed for `why`, with what was written (`samples`).
async fn end_failed(rec: &Recorder, row: &RecordingRow, samples: u64, why: RecordingFailure) {
    let ended_at = rec.clock.now();
    let end = RecordingEnd {
        state: RecordingState::Failed,
        failure: Some(why),
        ended_at,
        duration_ms: Some(i64::try_from(samples / 8).unwrap_or(i64::MAX)),
        expires_at: ended_at.saturating_add(rec.period_of(&row.retention_class)),
    };
    if let Err(e) = rec.store().finish_recording(&row.id, &end).await {
        // Left in `recording`: reconciliation truncates it once this
        // writer is gone.
        tracing::error!(recording = %row.id, error = %e, "recording's failure could not be stored");
    }
}

/// Creates the row, then the blob with its header. On failure, the row if
/// it was stored (it must then be marked failed).
async fn start(
    rec: &Recorder,
    meta: &RecordingMeta,
    recording_id: uuid::Uuid,
    codec: Codec,
) -> Result<Open, (WriteError, Option<RecordingRow>)> {
    let (row, dek) = new_row(rec, meta, recording_id, Some(codec)).map_err(|e| (e, None))?;
    // The row first: a blob never exists without the row that explains it.
    rec.store
        .insert_recording(&row)
        .await
        .map_err(|e| (e.into(), None))?;
    let header = CrecHeader {
        recording_id,
        call_id: meta.call_id.clone(),
        epoch_id: row.epoch_id.clone(),
        codec,
        sample_rate: 8000,
        channels: 2,
        created_ms: row.started_at.as_millis(),
    };
    let (crec, header_bytes) = match CrecWriter::new(&header, &dek) {
        Ok(w) => w,
        Err(e) => return Err((e.into(), Some(row))),
    };
    drop(dek);
    let blobs = rec.blobs.clone();
    let name = row.blob.clone();
    let blob = blocking(move || {
        let mut w = blobs.create(&name)?;
        w.append(&header_bytes)?;
        w.sync()?;
        Ok(w)
    })
    .await;
    let blob = match blob {
        Ok(b) => b,
        Err(e) => return Err((e, Some(row))),
    };
    Ok(Open {
        row,
        crec,
        blob: Some(blob),
        aligner: Aligner::new(codec, AlignConfig::default()),
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
        open.aligner.push(p.channel, p.rtp(), p.arrival);
    }
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.tick().await;
    loop {
        tokio::select! {
            p = rx.recv() => match p {
                Some(p) => open.aligner.push(p.channel, p.rtp(), p.arrival),
                None => return Ok(()),
            },
            _ = flush.tick() => {
                // Time passes for the aligner too: silence comes out now.
                open.aligner.advance(Instant::now());
                collect(open);
                seal_full(open).await?;
                if !open.pending.is_empty() {
                    seal(open, open.pending.len(), false).await?;
                }
                continue;
            }
        }
        collect(open);
        seal_full(open).await?;
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

/// Seals as many full chunks as are pending.
async fn seal_full(open: &mut Open) -> Result<(), WriteError> {
    while open.pending.len() >= CHUNK_BYTES {
        seal(open, CHUNK_BYTES, false).await?;
    }
    Ok(())
}

/// Seals the first `len` pending bytes as one chunk (the last chunk of the
/// file if `last`), appends it and syncs the blob.
async fn seal(open: &mut Open, len: usize, last: bool) -> Result<(), WriteError> {
    let len = len.min(open.pending.len());
    let chunk = open
        .crec
        .seal_chunk(open.pending_start_ms, &open.pending[..len], last)?;
    open.pending_start_ms += (len / 16) as u64;
    open.pending.drain(..len);
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
    seal_full(open).await?;
    seal(open, open.pending.len(), true).await?;
    let ended_at = rec.clock.now();
    let expires_at = ended_at.saturating_add(rec.period_of(&open.row.retention_class));
    // The DEK moves to the epoch of the real expiry before the row says
    // complete: a crash in between leaves it `recording` (then truncated),
    // never complete under the wrong epoch.
    super::rewrap::to_expiry_epoch(rec, &open.row, expires_at).await?;
    let end = RecordingEnd {
        state: RecordingState::Complete,
        failure: None,
        ended_at,
        duration_ms: Some(i64::try_from(open.samples / 8).unwrap_or(i64::MAX)),
        expires_at,
    };
    rec.store().finish_recording(&open.row.id, &end).await?;
    Ok(())
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
