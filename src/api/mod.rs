//! The HTTP API (axum): provisioning, support, the web page, metrics.
//!
//! Every handler authenticates with [`extract::Caller`], checks its role,
//! and answers errors as RFC 9457 problems ([`problem::Problem`]).
//! [`connections`] serves it through hyper, with the defences of a server
//! on a hostile network: a header-read timeout, a connection cap, a body
//! limit (here, around the router) and a throttle on failed tokens
//! ([`throttle`]).

pub mod auth;
mod connections;
mod disputes;
pub mod extract;
pub mod idempotency;
mod numbers;
pub mod openapi;
mod ops;
pub mod page;
mod playback;
pub mod problem;
mod sessions;
mod subjects;
mod support;
pub mod throttle;
pub mod tls;
mod web;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;

pub use connections::ConnectionLimits;

use crate::metrics::Metrics;
use crate::routing::Routing;
use throttle::AuthThrottle;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Sessions, pool and routing.
    pub routing: Arc<Routing>,
    /// The database (the same one `routing` uses).
    pub store: crate::store::Store,
    /// Wall-clock time (injected: tests move it).
    pub clock: crate::clock::SharedClock,
    /// The access log: every listing, play, grant, dispute and erasure.
    pub audit: crate::audit::Audit,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Recordings, for subject requests (and, later, playback).
    pub recorder: Option<Arc<crate::recording::Recorder>>,
    /// Retention classes an erasure request does not cut short.
    pub legally_required: Arc<Vec<String>>,
    /// Whether a grant needs a second person's approval (`[api] four_eyes`).
    pub four_eyes: bool,
    /// How long an approved grant lasts (`[api] grant_ttl`).
    pub grant_ttl: std::time::Duration,
    /// Largest request body in bytes (`[api] body_limit`): enforced around
    /// the router, named in the 413 problem.
    pub body_limit: usize,
    /// Failed token attempts per client address (`[api]
    /// auth_failures_per_minute`), consulted before a token is looked up.
    pub auth_throttle: Arc<AuthThrottle>,
    /// Where holds placed and released by disputes may be stopped by a
    /// test; [`crate::retention::NoFaults`] in production.
    pub retention_faults: Arc<dyn crate::retention::FaultPoint>,
}

impl AppState {
    /// The state over `routing`, sharing its store and clock, with the
    /// development defaults for the rest: no recorder, no legally required
    /// class, four-eyes, grants of 4 h, bodies up to 1 MiB, 10 failed tokens
    /// a minute per address. Set the public fields to change them.
    pub fn new(routing: Arc<Routing>, metrics: Arc<Metrics>) -> AppState {
        let store = routing.store().clone();
        AppState {
            clock: routing.clock(),
            audit: crate::audit::Audit::new(store.clone()),
            store,
            routing,
            metrics,
            recorder: None,
            legally_required: Arc::new(Vec::new()),
            four_eyes: true,
            grant_ttl: std::time::Duration::from_secs(4 * 3600),
            body_limit: 1 << 20,
            auth_throttle: Arc::new(throttle::AuthThrottle::new(10)),
            retention_faults: Arc::new(crate::retention::NoFaults),
        }
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/numbers", post(numbers::add).get(numbers::list))
        .route("/v1/sessions", post(sessions::create).get(sessions::list))
        .route(
            "/v1/sessions/{id}",
            get(sessions::read).delete(sessions::close),
        )
        .route("/v1/calls", get(sessions::calls))
        .route("/v1/subjects/{number}", get(subjects::show))
        .route("/v1/subjects/{number}/erase", post(subjects::erase))
        .route("/v1/audit", get(subjects::audit))
        .route("/v1/me", get(support::me))
        .route("/v1/disputes", post(disputes::open).get(support::list))
        .route("/v1/disputes/{id}", get(support::show))
        .route("/v1/disputes/{id}/grants", post(disputes::request_grant))
        .route("/v1/disputes/{id}/resolve", post(disputes::resolve))
        .route("/v1/grants/{id}/approve", post(disputes::approve))
        .route("/v1/recordings/{id}/audio", get(playback::audio))
        .route("/v1/recordings/{id}/waveform", get(playback::waveform))
        .route("/", get(web::index))
        .route("/assets/app.js", get(web::script))
        .route("/assets/app.css", get(web::style))
        .route("/assets/i18n/{file}", get(web::messages))
        .route("/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route("/openapi.json", get(openapi::document))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        // Inside the body limit: the key's body is read under it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        // The body limit: a declared Content-Length over it is refused
        // before the handler runs, a longer chunked body is cut off while
        // it is read (axum's own 2 MB default is off: one limit, ours).
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(state.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::payload_too_large,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .with_state(state)
}

/// Serves the API over plain HTTP on `listener` until `shutdown` completes,
/// then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let metrics = state.metrics.clone();
    connections::serve(listener, None, router(state), limits, metrics, shutdown).await;
}

/// As [`serve`], over TLS: every answer also tells browsers to use HTTPS
/// only for this host from now on (`Strict-Transport-Security`).
pub async fn serve_https(
    listener: TcpListener,
    tls: tls::Acceptor,
    state: AppState,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let metrics = state.metrics.clone();
    let app = router(state).layer(axum::middleware::map_response(
        |mut r: axum::response::Response| async move {
            r.headers_mut().insert(
                axum::http::header::STRICT_TRANSPORT_SECURITY,
                axum::http::HeaderValue::from_static("max-age=31536000"),
            );
            r
        },
    ));
    connections::serve(listener, Some(tls), app, limits, metrics, shutdown).await;
}
