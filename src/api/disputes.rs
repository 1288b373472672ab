//! Disputes and playback grants (support access).
//!
//! Opening a dispute puts the recordings of its calls under a legal hold;
//! a support user then asks for a grant on the dispute, which a supervisor
//! other than the requester approves when `[api] four_eyes` is on. A grant
//! covers only that dispute's recordings, only for its requester, and
//! expires `[api] grant_ttl` after approval. Every step is audited.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::problem::Problem;
use crate::store::{Dispute, Grant, Role};

/// Body of `POST /v1/disputes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    call_ids: Vec<String>,
    ticket: String,
    reason: String,
}

fn required(field: &'static str, value: &str) -> Result<(), Problem> {
    if value.trim().is_empty() || value.len() > 500 {
        return Err(Problem::invalid_field(field, "must be 1 to 500 characters"));
    }
    Ok(())
}

/// `POST /v1/disputes` (support): opens a dispute and holds its recordings.
pub async fn open(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let me = caller.require(&[Role::Support])?.clone();
    let body: OpenBody = body.parse()?;
    required("ticket", &body.ticket)?;
    required("reason", &body.reason)?;
    if body.call_ids.is_empty() || body.call_ids.len() > 100 {
        return Err(Problem::invalid_field(
            "call_ids",
            "must name 1 to 100 calls",
        ));
    }
    let store = state.routing.store();
    let mut recordings = Vec::new();
    for (i, c) in body.call_ids.iter().enumerate() {
        if !store.call_exists(c).await? {
            return Err(Problem::invalid_field(
                format!("call_ids[{i}]"),
                format!("no call '{c}'"),
            ));
        }
        if let Some(r) = store.find_recording(c).await? {
            recordings.push(r.id);
        }
    }
    let now = state.routing.now();
    let hold_id = match (&state.recorder, recordings.is_empty()) {
        (Some(rec), false) => Some(
            crate::retention::hold(rec, &body.ticket, &recordings, now)
                .await
                .map_err(|e| Problem::internal(&e))?,
        ),
        _ => None,
    };
    let d = store
        .create_dispute(
            &body.ticket,
            &body.reason,
            &me.id,
            &body.call_ids,
            hold_id.as_deref(),
            now,
        )
        .await?;
    let detail = format!(
        "ticket={} calls={} held={}",
        d.ticket,
        d.call_ids.len(),
        recordings.len()
    );
    store
        .insert_audit(
            now,
            &format!("staff:{}", me.id),
            "dispute.open",
            &d.id,
            &detail,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "dispute": d, "held_recordings": recordings })),
    ))
}

/// `POST /v1/disputes/{id}/grants` (support, supervisor): asks for
/// playback access for the caller.
pub async fn request_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let me = caller.require(&[Role::Support, Role::Supervisor])?.clone();
    let store = state.routing.store();
    let d = dispute(store, &id).await?;
    if d.resolved_at.is_some() {
        return Err(resolved("a resolved dispute gives no more access"));
    }
    let now = state.routing.now();
    let mut g = store.create_grant(&d.id, &me.id, now).await?;
    store
        .insert_audit(
            now,
            &format!("staff:{}", me.id),
            "grant.request",
            &g.id,
            &format!("dispute={}", d.id),
        )
        .await?;
    if !state.four_eyes {
        // Without four-eyes the request is its own approval.
        store
            .approve_grant(&g.id, &me.id, now, now.saturating_add(state.grant_ttl))
            .await?;
        g = store.get_grant(&g.id).await?.unwrap_or(g);
    }
    Ok((StatusCode::CREATED, Json(grant_view(&g, now))))
}

/// `POST /v1/grants/{id}/approve` (supervisor, never the requester's own).
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let me = caller.require(&[Role::Supervisor])?.clone();
    let store = state.routing.store();
    let g = store
        .get_grant(&id)
        .await?
        .ok_or_else(|| Problem::not_found("grant", &id))?;
    if state.four_eyes && g.requested_by == me.id {
        return Err(Problem::forbidden(
            "four-eyes: a grant must be approved by someone other than its requester",
        ));
    }
    if dispute(store, &g.dispute_id).await?.resolved_at.is_some() {
        return Err(resolved("a grant on a resolved dispute cannot be approved"));
    }
    let now = state.routing.now();
    if !store
        .approve_grant(&g.id, &me.id, now, now.saturating_add(state.grant_ttl))
        .await?
    {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "grant-already-approved",
            "Grant already approved",
            "this grant was approved before",
        ));
    }
    store
        .insert_audit(
            now,
            &format!("staff:{}", me.id),
            "grant.approve",
            &g.id,
            &format!("dispute={}", g.dispute_id),
        )
        .await?;
    let g = store
        .get_grant(&id)
        .await?
        .ok_or_else(|| Problem::not_found("grant", &id))?;
    Ok(Json(grant_view(&g, now)))
}

/// `POST /v1/disputes/{id}/resolve` (support, supervisor): releases the hold.
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let me = caller.require(&[Role::Support, Role::Supervisor])?.clone();
    let store = state.routing.store();
    let d = dispute(store, &id).await?;
    let now = state.routing.now();
    if !store.resolve_dispute(&d.id, &me.id, now).await? {
        return Err(resolved("this dispute was resolved before"));
    }
    let released = match (&state.recorder, &d.hold_id) {
        (Some(rec), Some(hold)) => {
            hand_over(rec, &d.id, hold).await?;
            Some(
                crate::retention::release(rec, hold, now)
                    .await
                    .map_err(|e| Problem::internal(&e))?,
            )
        }
        _ => None,
    };
    store
        .insert_audit(
            now,
            &format!("staff:{}", me.id),
            "dispute.resolve",
            &d.id,
            &format!("hold={}", d.hold_id.as_deref().unwrap_or("-")),
        )
        .await?;
    Ok(Json(
        json!({ "dispute": store.get_dispute(&id).await?, "released": released }),
    ))
}

/// Before dispute `dispute`'s hold is released: each of its recordings
/// whose call another open dispute still covers moves under that
/// dispute's hold instead of going back to retention.
async fn hand_over(
    rec: &crate::recording::Recorder,
    dispute: &str,
    hold: &str,
) -> Result<(), Problem> {
    let store = &rec.store;
    for rid in store.recordings_in_epoch(hold).await? {
        let Some(row) = store.find_recording(&rid).await? else {
            continue;
        };
        if let Some(other) = store.other_open_hold(&row.call_id, dispute).await? {
            crate::retention::move_to_hold(rec, &rid, &other)
                .await
                .map_err(|e| Problem::internal(&e))?;
        }
    }
    Ok(())
}

/// 409: the dispute is resolved.
fn resolved(detail: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "dispute-resolved",
        "Dispute resolved",
        detail,
    )
}

/// The dispute `id`, or 404.
pub(super) async fn dispute(store: &crate::store::Store, id: &str) -> Result<Dispute, Problem> {
    store
        .get_dispute(id)
        .await?
        .ok_or_else(|| Problem::not_found("dispute", id))
}

pub(super) fn grant_view(g: &Grant, now: crate::clock::Timestamp) -> Value {
    let status = match (g.approved_at, g.expires_at) {
        (None, _) => "pending",
        (Some(_), Some(e)) if e <= now => "expired",
        _ => "approved",
    };
    json!({ "grant": g, "status": status })
}
