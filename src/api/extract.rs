//! Request extractors that fail with problem documents naming the field.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::problem::Problem;
use crate::store::{Role, StaffMember};

/// A JSON request body, read but not yet parsed: handlers check the
/// caller's role first and parse after, so a caller without the right role
/// learns nothing about the body's validity. Parse errors name the JSON
/// path of the bad field. Its size is bounded by `[api] body_limit`,
/// enforced around the whole router (see [`super::router`]).
pub struct JsonBody {
    /// Whether `Content-Type` said JSON.
    is_json: bool,
    /// The raw body.
    bytes: Bytes,
}

impl JsonBody {
    /// Parses the body as `T`, or answers the problem that says why not.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        if !self.is_json {
            return Err(Problem::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json",
            ));
        }
        let de = &mut serde_json::Deserializer::from_slice(&self.bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Problem::bad_request(format!("body is not valid JSON: {inner}"))
            } else if path == "." {
                Problem::invalid_field("body", strip_position(&inner.to_string()))
            } else {
                Problem::invalid_field(path, strip_position(&inner.to_string()))
            }
        })
    }
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        // A body without Content-Length (chunked) that grows past the
        // limit is cut off while it is read: the same 413 as a declared one.
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::payload_too_large(state.body_limit)
            } else {
                Problem::bad_request(format!("cannot read body: {e}"))
            }
        })?;
        Ok(JsonBody { is_json, bytes })
    }
}

/// Query parameters, parsed into `T`; a bad one is a 422 problem naming
/// it (axum's `Query` would answer plain text).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Params)
            .map_err(|e| {
                let field = match e.path().to_string() {
                    p if p == "." => "query".to_owned(),
                    p => p,
                };
                Problem::invalid_field(field, strip_position(&e.inner().to_string()))
            })
    }
}

/// serde_json appends " at line 1 column 7"; the field name says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The authenticated staff member making the request.
#[derive(Debug, Clone)]
pub struct Caller(pub StaffMember);

impl Caller {
    /// Refuses with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<&StaffMember, Problem> {
        if roles.contains(&self.0.role) {
            return Ok(&self.0);
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(Problem::forbidden(format!(
            "role '{}' may not do this; it needs: {}",
            self.0.role,
            names.join(" or ")
        )))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    /// Finds the token, refuses it unchecked if its address is throttled
    /// ([`super::throttle`]), and otherwise looks it up; an unknown or
    /// disabled token counts as a failure of that address.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = bearer_token(parts)?;
        let ip = peer_ip(parts);
        let now = state.clock.now();
        if let Err(throttled) = state.auth_throttle.check(ip, now) {
            state
                .metrics
                .http_auth_throttled
                .fetch_add(1, Ordering::Relaxed);
            return Err(Problem::too_many_auth_failures(throttled.retry_after));
        }
        let member = state
            .routing
            .store()
            .staff_by_token_hash(&super::auth::hash_token(token))
            .await?;
        let refusal = match member {
            None => Problem::unauthorized("invalid-token", "the token is not valid"),
            Some(m) if m.disabled_at.is_some() => {
                Problem::unauthorized("token-disabled", "the token has been disabled")
            }
            Some(m) => return Ok(Caller(m)),
        };
        state.auth_throttle.record_failure(ip, now);
        Err(refusal)
    }
}

/// The request's token: from `Authorization: Bearer …`, or else from the
/// audio cookie where that is accepted. A missing or malformed one is a 401
/// that does not count as a failed attempt (nothing was guessed).
fn bearer_token(parts: &Parts) -> Result<&str, Problem> {
    match parts.headers.get(header::AUTHORIZATION) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized("missing-token", "Authorization must be 'Bearer <token>'")
            }),
        None => audio_cookie(parts).ok_or_else(|| {
            Problem::unauthorized("missing-token", "send Authorization: Bearer <token>")
        }),
    }
}

/// The client's IP address, as the API server put it in the request
/// ([`super::connections`]). A request without one (a router served some
/// other way) counts under `0.0.0.0`, so its failures are still throttled.
fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Name of the cookie the web page sets so that the browser's audio player,
/// which cannot send an `Authorization` header, can fetch a recording.
pub const AUDIO_COOKIE: &str = "ansim_token";

/// The token from [`AUDIO_COOKIE`], accepted only where the audio player
/// needs it: a `GET` or `HEAD` of `/v1/recordings/{id}/audio`. The page sets
/// it `SameSite=Strict` with `Path=/v1/recordings/`, so another site cannot
/// make a browser send it, and it never authorises a change.
fn audio_cookie(parts: &Parts) -> Option<&str> {
    let read_only =
        parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD;
    let path = parts.uri.path();
    if !read_only || !path.starts_with("/v1/recordings/") || !path.ends_with("/audio") {
        return None;
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == AUDIO_COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}
