//! `GET /v1/recordings/{id}/audio`: a recording as a 2-channel WAV,
//! decrypted on the fly, with HTTP Range support.
//!
//! Only a support user (or supervisor) holding a live grant (approved, not expired, on an
//! open dispute that covers the recording's call, requested by that user)
//! may listen. Every request that sends audio is an audit event
//! (`recording.play`). The ciphertext is read into memory and decrypted
//! chunk by chunk on a blocking thread, which feeds the response body
//! through a small channel; a Range request decrypts only the chunks it
//! overlaps ([`crate::recording::playback`]). Nothing decrypted is written
//! to disk, and the response forbids caching (`Cache-Control: no-store`) so
//! the browser does not write it either.

use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::Caller;
use super::problem::Problem;
use crate::recording::export::{ExportError, Sealed, codec_of};
use crate::recording::playback::{ByteRange, WavLayout};
use crate::store::{Grant, GrantOnCall, Role, StaffMember};

/// Pieces in flight between the decrypting thread and the socket: enough
/// to keep the socket busy, little enough to hold at most a few chunks.
const PIPELINE: usize = 2;

/// The grant that lets `me` listen to `call_id` now, or why there is none.
async fn live_grant(state: &AppState, me: &StaffMember, call_id: &str) -> Result<Grant, Problem> {
    let now = state.routing.now();
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

/// `GET|HEAD /v1/recordings/{id}/audio` (support or supervisor, with a
/// live grant of their own).
pub async fn audio(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, Problem> {
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
    let store = state.routing.store();
    let call_id = match store.find_recording(&id).await? {
        Some(row) if row.id == id => row.call_id,
        _ => match store.find_tombstone(&id).await? {
            Some(t) => t.call_id,
            None => return Err(Problem::not_found("recording", &id)),
        },
    };
    let grant = live_grant(&state, &me, &call_id).await?;
    let sealed = match recorder.open_sealed(&id).await {
        Ok(s) => s,
        Err(ExportError::Erased { id, at, reason }) => {
            return Err(erased(format!(
                "recording {id} was erased at {} ({reason})",
                at.to_rfc3339()
            )));
        }
        Err(e @ ExportError::KeyDestroyed(..)) => return Err(erased(e.to_string())),
        Err(e) => return Err(Problem::internal(&e)),
    };
    let layout = {
        let reader = sealed.reader().map_err(|e| Problem::internal(&e))?;
        WavLayout::new(&reader, codec_of(&reader))
    };
    let len = layout.len();
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
    let detail = format!("grant={} bytes={start}-{end}/{len}", grant.id);
    let actor = format!("staff:{}", me.id);
    let now = state.routing.now();
    store
        .insert_audit(now, &actor, "recording.play", &sealed.row.id, &detail)
        .await?;
    let body = stream(sealed, layout, start, end, state.metrics.clone());
    response.body(body).map_err(|e| Problem::internal(&e))
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

/// The body: bytes `[start, end)` decrypted on a blocking thread, a piece
/// at a time. A chunk that fails authentication ends the body with an error
/// (the client sees a cut connection, never forged audio).
fn stream(
    sealed: Sealed,
    layout: WavLayout,
    start: u64,
    end: u64,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(PIPELINE);
    tokio::task::spawn_blocking(move || {
        let reader = match sealed.reader() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let mut counted = 0;
        for piece in layout.range(&reader, start, end) {
            // Counted before the bytes go out, so a client that has them
            // also sees them in /metrics.
            let done = reader.decryptions();
            metrics
                .playback_chunks_decrypted
                .fetch_add(done - counted, Ordering::Relaxed);
            counted = done;
            let piece = piece.map(Bytes::from).map_err(|e| {
                tracing::error!(recording = %sealed.row.id, error = %e, "playback stopped");
                std::io::Error::other(e.to_string())
            });
            if tx.blocking_send(piece).is_err() {
                break; // the client went away
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    }))
}
