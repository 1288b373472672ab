//! Operational endpoints: `/healthz`, `/metrics`, the 404 fallback, and the
//! request-counting middleware.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::problem::Problem;
use crate::metrics::Gauges;

/// `GET /healthz`: 200 when the database answers, 503 otherwise.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok", "database": "ok"})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, Problem> {
    let (routing, store) = (&state.routing, &state.store);
    let gauges = Gauges {
        open_sessions: store.count_open_sessions(state.clock.now()).await?,
        pool_numbers: store.list_numbers().await?.len() as i64,
        cached_routes: routing.cached_routes(),
    };
    let body = state.metrics.render(&routing.counters, gauges);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// Unknown paths get a problem document too.
pub async fn not_found(req: Request) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("no endpoint {} {}", req.method(), req.uri().path()),
    )
}

/// Turns the bare 413 of the body limit (tower-http's, plain text) into
/// the `payload-too-large` problem; 413 problems pass unchanged.
pub async fn payload_too_large(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/problem+json");
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_problem {
        return Problem::payload_too_large(state.body_limit).into_response();
    }
    resp
}

/// Counts every request by route template and status.
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    state
        .metrics
        .count_http(&method, &route, resp.status().as_u16());
    resp
}
