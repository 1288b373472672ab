//! One call's recording writer: plaintext chunks in (from the call's
//! [`super::tap::RecordingTap`] on the relay worker), encrypted chunks out.
//!
//! The writer waits for the tap to name the codec (its first audio
//! packet), makes the recording's DEK, stores the row (wrapped DEK) before
//! the blob exists, then seals each chunk the tap sends (at least every
//! [`CHUNK_MEDIA`] of audio and every [`FLUSH_EVERY`] of wall time), and
//! has the group committer ([`super::commit`]) append and sync it with the
//! other recordings' chunks of its round: a crash loses at most that much
//! audio.
//!
//! It never gets stuck and never holds more than it must:
//! - the tap releases silence by time and cuts chunks at [`CHUNK_MEDIA`]
//!   of audio, so a long hold neither piles up in memory nor makes an
//!   oversized chunk;
//! - the tap keeps at most [`EARLY_PACKETS`] while waiting for the codec;
//!   audio in a codec it cannot store (anything but PCMU/PCMA) ends the
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

use tokio::sync::mpsc;

use super::blob::BlobWriter;
use super::crec::{CrecHeader, CrecWriter};
use super::service::{Recorder, RecordingMeta};
use super::tap::TapMessage;
#[cfg(doc)]
use super::tap::{CHUNK_MEDIA, EARLY_PACKETS, FLUSH_EVERY};
use crate::keys::{Dek, DekBinding};
use crate::media::g711::Codec;
use crate::store::{RecordingEnd, RecordingFailure, RecordingRow, RecordingState};

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
    /// Audio written so far, in samples per channel.
    samples: u64,
    /// Where the last sealed chunk ends, in ms of media time.
    end_ms: u64,
}

/// What the tap said first.
enum Start {
    /// Audio in this codec.
    Codec(Codec),
    /// Audio in a codec we cannot store.
    Unsupported,
    /// The tap closed before any audio (an empty recording).
    Ended,
}

/// Runs the writer until the tap is closed.
pub(super) async fn run(
    rec: Arc<Recorder>,
    meta: RecordingMeta,
    mut rx: mpsc::Receiver<TapMessage>,
) {
    let recording_id = uuid::Uuid::new_v4();
    // Registered before its row exists, so reconciliation never takes a
    // live recording for an orphan.
    let _live = rec.writers().register(recording_id.to_string());
    let codec = match wait_for_codec(&mut rx).await {
        Start::Codec(codec) => codec,
        Start::Ended => Codec::Pcmu,
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
    let last = match record(&rec, &mut open, &mut rx).await {
        Ok(last) => last,
        Err(e) => {
            drop(rx);
            tracing::error!(call = %meta.call_id, recording = %open.row.id, error = %e, "recording write failed: recording ends failed, the call goes on");
            rec.counters().failed(RecordingFailure::WriteError);
            end_failed(&rec, &open.row, open.samples, RecordingFailure::WriteError).await;
            publish(&rec, &open.row).await;
            return;
        }
    };
    let finished = finish(&rec, &mut open, last).await;
    publish(&rec, &open.row).await;
    match finished {
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

/// Waits for the tap to name the codec (or say it cannot be stored).
async fn wait_for_codec(rx: &mut mpsc::Receiver<TapMessage>) -> Start {
    match rx.recv().await {
        Some(TapMessage::Codec(codec)) => Start::Codec(codec),
        Some(TapMessage::Unsupported) => Start::Unsupported,
        // The tap sends the codec before any chunk; a chunk first would be
        // a bug of ours: nothing was written, so end the recording empty.
        Some(TapMessage::Chunk { .. }) | None => Start::Ended,
    }
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
    if let Err(e) = rec.insert_row(&row).await {
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
    if let Err(e) = rec.finish_row(&row.id, &end).await {
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
    rec.insert_row(&row).await.map_err(|e| (e.into(), None))?;
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
    let blob = rec.commit.create(row.blob.clone(), header_bytes).await;
    let blob = match blob.map_err(WriteError::from) {
        Ok(b) => b,
        Err(e) => return Err((e, Some(row))),
    };
    Ok(Open {
        row,
        crec,
        blob: Some(blob),
        samples: 0,
        end_ms: 0,
    })
}

/// Seals every chunk the tap sends; `true` when the last one was sealed
/// (the tap closed in order), `false` when the queue closed without it
/// (the last chunk was dropped on a full queue, or the tap went away).
async fn record(
    rec: &Recorder,
    open: &mut Open,
    rx: &mut mpsc::Receiver<TapMessage>,
) -> Result<bool, WriteError> {
    while let Some(message) = rx.recv().await {
        if let TapMessage::Chunk {
            start_ms,
            bytes,
            last,
        } = message
        {
            seal(rec, open, start_ms, &bytes, last).await?;
            if last {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Seals `bytes` (interleaved, starting at `start_ms`) as one chunk (the
/// last of the file if `last`), and has the group committer append it and
/// sync the blob, with the other recordings' chunks of its round.
async fn seal(
    rec: &Recorder,
    open: &mut Open,
    start_ms: u64,
    bytes: &[u8],
    last: bool,
) -> Result<(), WriteError> {
    let chunk = open.crec.seal_chunk(start_ms, bytes, last)?;
    open.samples += (bytes.len() / 2) as u64;
    open.end_ms = start_ms + (bytes.len() / 16) as u64;
    let blob = open
        .blob
        .take()
        .ok_or_else(|| WriteError::Join("blob writer lost".into()))?;
    open.blob = Some(rec.commit.append_sync(blob, chunk).await?);
    Ok(())
}

async fn finish(rec: &Recorder, open: &mut Open, last_sealed: bool) -> Result<(), WriteError> {
    if !last_sealed {
        // The file still ends with a last chunk (empty), as readers expect.
        seal(rec, open, open.end_ms, &[], true).await?;
    }
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
    rec.finish_row(&open.row.id, &end).await?;
    Ok(())
}

/// Hands the finished blob to its final place (an upload for object
/// storage). A failure is the store's to retry; the row is already final
/// and the blob stays readable from the spool meanwhile.
async fn publish(rec: &Recorder, row: &RecordingRow) {
    let blobs = rec.blobs.clone();
    let name = row.blob.clone();
    if let Err(e) = blocking(move || blobs.publish(&name)).await {
        tracing::warn!(recording = %row.id, error = %e, "recording not yet in its final place; retried in the background");
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
