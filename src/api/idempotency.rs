//! `Idempotency-Key` on every `POST`: the first request with a key runs,
//! and its response is kept for 24 h, scoped to the token's staff member
//! and the route (method and path). A retry with the same key and body
//! gets that response again (with `Idempotency-Replayed: true`); while the
//! first still runs, `409 idempotency-key-in-use`; with another body,
//! `422 idempotency-key-reused`. Requests without the header are untouched.
//!
//! Failures on our side (5xx) are not kept: the key is released, so a
//! retry runs the request again. The claim lives in the database
//! ([`crate::store::idempotency`]), so this holds across nodes.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::extract::Caller;
use super::problem::Problem;
use crate::store::idempotency::{Claim, IdempotencyScope, StoredResponse};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// How long a key and its response are kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a claim holds while its request runs (a node that died
/// mid-request leaves it to lapse).
const LOCK: Duration = Duration::from_secs(300);
/// Longest response kept (larger ones are not replayable: released).
const MAX_KEPT: usize = 1 << 20;

/// 409: the first request with this key is still running.
pub fn in_use() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "idempotency-key-in-use",
        "Idempotency key in use",
        "a request with this Idempotency-Key is still being processed; retry later",
    )
}

/// 422: the key was used before with another body.
pub fn reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
        "Idempotency key reused",
        "this Idempotency-Key was used with a different request body",
    )
    .with_field(HEADER)
}

fn key_of(req: &Request) -> Result<Option<String>, Problem> {
    let Some(v) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::invalid_field(HEADER, "must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(k.to_owned()))
}

/// The middleware, around every route.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match run(state, req, next).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn run(state: AppState, req: Request, next: Next) -> Result<Response, Problem> {
    if req.method() != Method::POST {
        return Ok(next.run(req).await);
    }
    let Some(key) = key_of(&req)? else {
        return Ok(next.run(req).await);
    };
    let (mut parts, body) = req.into_parts();
    let Caller(me) = Caller::from_request_parts(&mut parts, &state).await?;
    let bytes = axum::body::to_bytes(body, state.body_limit)
        .await
        .map_err(|_| Problem::payload_too_large(state.body_limit))?;
    let route = format!("POST {}", parts.uri.path());
    let hash = hex::encode(Sha256::digest(&bytes));
    let scope = IdempotencyScope {
        staff_id: &me.id,
        route: &route,
        key: &key,
        body_sha256: &hash,
    };
    let now = state.clock.now();
    match state
        .store
        .claim_idempotency(&scope, now, KEEP, LOCK)
        .await?
    {
        Claim::InUse => return Err(in_use()),
        Claim::Mismatch => return Err(reused()),
        Claim::Done(stored) => return Ok(replay(stored)),
        Claim::New => {}
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    keep(&state, &scope, resp).await
}

/// Stores `resp` as the key's response (or releases the key) and answers it.
async fn keep(
    state: &AppState,
    scope: &IdempotencyScope<'_>,
    resp: Response,
) -> Result<Response, Problem> {
    let (parts, body) = resp.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_KEPT).await {
        Ok(b) if !parts.status.is_server_error() => b,
        other => {
            state.store.release_idempotency(scope).await?;
            let body = other.map(Body::from).unwrap_or_else(|_| Body::empty());
            return Ok(Response::from_parts(parts, body));
        }
    };
    let text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        location: text(header::LOCATION),
        content_type: text(header::CONTENT_TYPE),
        body: bytes.to_vec(),
    };
    state.store.finish_idempotency(scope, &stored).await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, stored.body).into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        (header::LOCATION, stored.location),
        (header::CONTENT_TYPE, stored.content_type),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    }
    h.insert("idempotency-replayed", HeaderValue::from_static("true"));
    resp
}
