//! `GET /v1/recordings/{id}/audio`: a recording as a 2-channel WAV (or one
//! side, mono: `?channels=caller|callee`),
//! decrypted on the fly, with HTTP Range support.
//!
//! Only a support user (or a supervisor) holding a live grant (approved,
//! not expired, on an open dispute that covers the recording's call,
//! requested by that user) may listen. Every request that sends audio is
//! an audit event (`recording.play`). A task opens the encrypted file,
//! reads its header and chunk index at offsets, and then reads and decrypts
//! one chunk at a time, feeding the response body through a small channel;
//! a Range request touches only the chunks it overlaps
//! ([`crate::recording::playback`]). Nothing decrypted is written to disk,
//! and the response forbids caching (`Cache-Control: no-store`) so the
//! browser does not write it either.
//!
//! A damaged file never sends a byte that did not authenticate. Damage
//! found before the response starts (header, key commitment, a chunk whose
//! clear fields are out of bounds, or the last chunk, which is decrypted to
//! authenticate the length) answers `500 recording-damaged`, naming the
//! chunk and why, for GET, HEAD and Range alike, and is logged. Damage
//! found while streaming (a chunk further in that does not authenticate)
//! ends the body early: the client sees fewer bytes than `Content-Length`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use super::extract::{Caller, Params};
use super::problem::Problem;
use crate::audit::Event;
use crate::metrics::Metrics;
use crate::recording::crec::CrecError;
use crate::recording::crec_reader::CrecReader;
use crate::recording::export::{ExportError, Sealed, codec_of};
use crate::recording::playback::{ByteRange, Channels, RangeReader, WavLayout};
use crate::recording::waveform::{self, WaveformError};
use crate::store::{Grant, GrantOnCall, Role, StaffMember};

/// Waveforms computed at once, process-wide: each is a CPU-bound pass over
/// a recording, so more would only slow each other down and take threads
/// from the rest; a request past these waits its turn.
const WAVEFORMS_AT_ONCE: usize = 2;
static WAVEFORMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(WAVEFORMS_AT_ONCE);

/// Pieces in flight between the decrypting thread and the socket: enough
/// to keep the socket busy, little enough to hold at most a few chunks.
const PIPELINE: usize = 2;

/// The grant that lets `me` listen to `call_id` now, or why there is none.
async fn live_grant(state: &AppState, me: &StaffMember, call_id: &str) -> Result<Grant, Problem> {
    let now = state.clock.now();
    let grants = state
        .routing
        .store()
        .grants_on_call(&me.id, call_id)
        .await?;
    let live = |g: &GrantOnCall| {
        !g.dispute_resolved && g.grant.approved_at.is_some() && g.grant.expires_at > Some(now)
    };
    if let Some(g) = grants.iter().find(|g| live(g)) {
        return Ok(g.grant.clone());
    }
    let (slug, title, detail) = if grants.is_empty() {
        (
            "no-grant",
            "No playback grant",
            "no grant of yours covers this recording: open a dispute on its call and ask for one",
        )
    } else if grants.iter().all(|g| g.dispute_resolved) {
        (
            "dispute-resolved",
            "Dispute resolved",
            "the disputes that covered this recording are resolved",
        )
    } else if grants.iter().any(|g| g.grant.approved_at.is_some()) {
        (
            "grant-expired",
            "Playback grant expired",
            "your grant on this recording has expired: ask for a new one",
        )
    } else {
        (
            "grant-pending",
            "Playback grant not approved",
            "your grant on this recording waits for a supervisor's approval",
        )
    };
    Err(Problem::new(StatusCode::FORBIDDEN, slug, title, detail))
}

fn erased(detail: String) -> Problem {
    Problem::new(
        StatusCode::GONE,
        "recording-erased",
        "Recording erased",
        detail,
    )
}

/// 500 `recording-damaged`: the recording's file is not what was written
/// (a disk, a backup or someone with access to the file changed it). It is
/// our data that is damaged, and asking again will not help: a 5xx, not
/// 503. The detail names the damage (which chunk, and why); it holds ids
/// and offsets only.
fn damaged(recording: &str, e: &CrecError) -> Problem {
    tracing::error!(%recording, error = %e, "recording file is damaged: playback refused");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "recording-damaged",
        "Recording damaged",
        format!("recording {recording}: its file is damaged: {e}"),
    )
}

/// Query of `GET /v1/recordings/{id}/audio`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioQuery {
    /// `caller`, `callee` or `both` (the default): one side alone is a
    /// mono WAV.
    channels: Option<String>,
}

/// Query of `GET /v1/recordings/{id}/waveform`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveformQuery {
    /// Milliseconds a bucket (default 50, at least 10, at most 100,000
    /// buckets an answer).
    bucket_ms: Option<u64>,
}

/// What a listener may open: who they are, the grant that lets them, and
/// the recording, unsealed (its DEK unwrapped, nothing decrypted yet).
struct Access {
    me: StaffMember,
    grant: Grant,
    sealed: Sealed,
}

/// The checks every read of a recording's audio makes: a support user
/// (or a supervisor) with a live grant of their own on it, a recording not
/// erased, its key still there.
async fn open_for(state: &AppState, caller: Caller, id: &str) -> Result<Access, Problem> {
    // Supervisors may ask for grants too (then someone else approves).
    let me = caller.require(&[Role::Support, Role::Supervisor])?.clone();
    let recorder = state.recorder.clone().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "recording-disabled",
            "Recording is not configured",
            "this instance keeps no recordings",
        )
    })?;
    let store = &state.store;
    // The live row, or the tombstone of an erased recording: either names
    // the call the grant must cover.
    let (row, call_id) = match store.find_recording(id).await? {
        Some(row) if row.id == id => {
            let call = row.call_id.clone();
            (Ok(row), call)
        }
        _ => match store.find_tombstone(id).await? {
            Some(t) => (Err(t.clone()), t.call_id),
            None => return Err(Problem::not_found("recording", id)),
        },
    };
    let grant = live_grant(state, &me, &call_id).await?;
    let row = row.map_err(|t| {
        erased(format!(
            "recording {} was erased at {} ({})",
            t.recording_id,
            t.erased_at.to_rfc3339(),
            t.reason
        ))
    })?;
    let sealed = match recorder.unseal(row) {
        Ok(s) => s,
        Err(e @ ExportError::KeyDestroyed(..)) => return Err(erased(e.to_string())),
        Err(e) => return Err(Problem::internal(&e)),
    };
    Ok(Access { me, grant, sealed })
}

/// `GET|HEAD /v1/recordings/{id}/audio[?channels=caller|callee|both]`
/// (support or supervisor, with a live grant of their own).
pub async fn audio(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<AudioQuery>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let channels = match q.channels.as_deref() {
        None => Channels::Both,
        Some(name) => Channels::from_name(name)
            .ok_or_else(|| Problem::invalid_field("channels", "must be caller, callee or both"))?,
    };
    let Access { me, grant, sealed } = open_for(&state, caller, &id).await?;
    let row_id = sealed.row.id.clone();
    let mut player = Player::start(sealed, channels, state.metrics.clone());
    let len = player.len(&row_id).await?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse);
    let (start, end) = match range.map(|r| r.resolve(len)) {
        None => (0, len),
        Some(Some(r)) => r,
        Some(None) => return Ok(unsatisfiable(len)),
    };
    let mut response = Response::builder()
        .status(if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header(header::CONTENT_TYPE, "audio/wav")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::CONTENT_LENGTH, end - start);
    if range.is_some() {
        let value = format!("bytes {start}-{}/{len}", end.saturating_sub(1));
        response = response.header(header::CONTENT_RANGE, value);
    }
    if method == Method::HEAD {
        return response
            .body(Body::empty())
            .map_err(|e| Problem::internal(&e));
    }
    // The play is recorded (committed) before a byte of audio goes out.
    let now = state.clock.now();
    let mut event = Event::recording_played(now, &me.id, &row_id, &grant.id, (start, end, len));
    if channels != Channels::Both {
        event.detail.push_str(" channels=");
        event.detail.push_str(channels.as_str());
    }
    state.audit.record(&event).await?;
    response
        .body(player.play(start, end))
        .map_err(|e| Problem::internal(&e))
}

/// `GET /v1/recordings/{id}/waveform[?bucket_ms=50]` (support or
/// supervisor, with a live grant of their own): per channel, the peaks of
/// each bucket and the stretches of speech ([`crate::recording::waveform`]),
/// computed from the decrypted chunks on a blocking thread, one chunk in
/// memory at a time; nothing is kept. Audited (`recording.waveform`)
/// before it is sent; `Cache-Control: no-store`.
pub async fn waveform(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<WaveformQuery>,
) -> Result<Response, Problem> {
    let bucket_ms = q.bucket_ms.unwrap_or(50);
    if bucket_ms < waveform::MIN_BUCKET_MS {
        return Err(bucket_problem(&WaveformError::BucketTooSmall(bucket_ms)));
    }
    let Access { me, grant, sealed } = open_for(&state, caller, &id).await?;
    let metrics = state.metrics.clone();
    let turn = WAVEFORMS
        .acquire()
        .await
        .map_err(|e| Problem::internal(&e))?;
    // The turn goes with the work: a client that leaves does not free it
    // before the work is done.
    let computed = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let reader = sealed.reader()?;
        let w = waveform::compute(&reader, codec_of(&reader), bucket_ms);
        metrics
            .playback_chunks_decrypted
            .fetch_add(reader.decryptions(), Ordering::Relaxed);
        w
    })
    .await
    .map_err(|e| Problem::internal(&e))?;
    let w = match computed {
        Ok(w) => w,
        Err(e @ (WaveformError::BucketTooSmall(_) | WaveformError::TooManyBuckets { .. })) => {
            return Err(bucket_problem(&e));
        }
        Err(WaveformError::Crec(e)) if e.is_damaged_file() => return Err(damaged(&id, &e)),
        Err(WaveformError::Crec(e)) => return Err(Problem::internal(&e)),
    };
    let event = Event::recording_waveform(state.clock.now(), &me.id, &id, &grant.id, bucket_ms);
    state.audit.record(&event).await?;
    let mut response = Json(w).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// 422 naming `bucket_ms`: too small, or too many buckets.
fn bucket_problem(e: &WaveformError) -> Problem {
    Problem::invalid_field("bucket_ms", e)
}

/// 416 with the length the client should have asked within.
fn unsatisfiable(len: u64) -> Response {
    let mut r = Problem::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range-not-satisfiable",
        "Range not satisfiable",
        format!("the recording's WAV is {len} bytes long"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    r
}

type Piece = Result<Bytes, std::io::Error>;

/// One recording being played: a task opens it (header, key commitment,
/// chunk index: once per request), reports the WAV's length, then waits
/// for the byte range to send, if any. File reads and decryption run in
/// `block_in_place`, a chunk at a time; while the client is not reading
/// (a paused audio player keeps its connection open) the task just waits,
/// holding no thread.
struct Player {
    /// The WAV's length, or why the file cannot be read.
    len: Option<oneshot::Receiver<Result<u64, CrecError>>>,
    /// The range to send; dropping it ends the task (HEAD, 416).
    go: oneshot::Sender<(u64, u64)>,
    /// The decrypted pieces, in order.
    pieces: mpsc::Receiver<Piece>,
}

/// Runs blocking work (a file read, a chunk's decryption) on this worker
/// thread, telling the runtime to move its other tasks elsewhere.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Player {
    fn start(sealed: Sealed, channels: Channels, metrics: Arc<Metrics>) -> Player {
        let (len_tx, len) = oneshot::channel();
        let (go, go_rx) = oneshot::channel();
        let (tx, pieces) = mpsc::channel(PIPELINE);
        tokio::spawn(async move {
            let opened = blocking(|| {
                let reader = sealed.reader()?;
                let layout = WavLayout::of_channels(&reader, codec_of(&reader), channels);
                // Authenticating the length decrypted a chunk: count it,
                // whatever comes next (HEAD, 416, or damage).
                metrics
                    .playback_chunks_decrypted
                    .fetch_add(reader.decryptions(), Ordering::Relaxed);
                Ok::<_, CrecError>((layout?, reader))
            });
            let (layout, reader) = match opened {
                Ok(r) => r,
                Err(e) => {
                    let _ = len_tx.send(Err(e));
                    return;
                }
            };
            if len_tx.send(Ok(layout.len())).is_err() {
                return;
            }
            let Ok((start, end)) = go_rx.await else {
                return;
            };
            let pieces = layout.range(&reader, start, end);
            send(&reader, pieces, &tx, &metrics, &sealed.row.id).await;
        });
        Player {
            len: Some(len),
            go,
            pieces,
        }
    }

    /// The WAV's length in bytes, authenticated; or a `recording-damaged`
    /// problem if the file is damaged, naming the damage.
    async fn len(&mut self, recording: &str) -> Result<u64, Problem> {
        let rx = self
            .len
            .take()
            .ok_or_else(|| Problem::internal(&"length asked twice"))?;
        match rx.await {
            Ok(Ok(len)) => Ok(len),
            Ok(Err(e)) if e.is_damaged_file() => Err(damaged(recording, &e)),
            Ok(Err(e)) => Err(Problem::internal(&e)),
            Err(e) => Err(Problem::internal(&e)),
        }
    }

    /// The body: bytes `[start, end)`, decrypted a chunk at a time.
    fn play(self, start: u64, end: u64) -> Body {
        let _ = self.go.send((start, end));
        Body::from_stream(futures_util::stream::unfold(
            self.pieces,
            |mut rx| async move { rx.recv().await.map(|piece| (piece, rx)) },
        ))
    }
}

/// Sends the range's pieces until done or the client goes away. A chunk
/// that fails authentication ends the body with an error (the client sees
/// a cut connection, never forged audio).
async fn send(
    reader: &CrecReader<'_>,
    mut pieces: RangeReader<'_, '_, '_>,
    tx: &mpsc::Sender<Piece>,
    metrics: &Metrics,
    recording: &str,
) {
    // What opening the recording decrypted is counted already.
    let mut counted = reader.decryptions();
    while let Some(piece) = blocking(|| pieces.next()) {
        // Counted before the bytes go out, so a client that has them also
        // sees them in /metrics.
        let done = reader.decryptions();
        metrics
            .playback_chunks_decrypted
            .fetch_add(done - counted, Ordering::Relaxed);
        counted = done;
        let piece = piece.map(Bytes::from).map_err(|e| {
            if e.is_damaged_file() {
                tracing::error!(%recording, error = %e, "recording file is damaged: playback ended early");
            } else {
                tracing::error!(%recording, error = %e, "playback stopped");
            }
            std::io::Error::other(e.to_string())
        });
        if tx.send(piece).await.is_err() {
            break; // the client went away
        }
    }
}
