//! Disputes and playback grants (support access).
//!
//! Opening a dispute puts the recordings of its calls under a legal hold;
//! a support user then asks for a grant on the dispute, which a supervisor
//! other than the requester approves when `[api] four_eyes` is on. A grant
//! covers only that dispute's recordings, only for its requester, and
//! expires `[api] grant_ttl` after approval. Every step is audited, in the
//! transaction of the change it records ([`crate::audit`]).
//!
//! **Opening** writes the dispute, its calls (each once, however often the
//! request names it), its hold and the hold's recordings, and the
//! `dispute.open` event in one transaction: either all of it exists or
//! none does. Only then does the hold's key-store half run (the DEKs move
//! under the hold's KEK); if that fails the hold is nonetheless in force
//! (no sweep erases a held recording, and the epoch KEK that still wraps
//! it is kept because a row names it) and the next retention sweep
//! finishes it. See [`crate::retention::holds`] for why that order is safe.
//!
//! **Resolving** marks the dispute resolved, asks for its hold's release
//! and writes `dispute.resolve` in one transaction, then releases the hold.
//! If the release fails, the answer is 503 and the dispute stays resolved
//! with its release pending: the same `POST …/resolve` again completes it
//! (so does the sweep). Only a dispute resolved *and* released answers 409.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::problem::Problem;
use crate::audit::{Actor, Event};
use crate::store::{Dispute, Grant, NewDispute, Role, Store};

/// Body of `POST /v1/disputes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
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
    let store = &state.store;
    // A call named twice is one call of the dispute.
    let mut calls: Vec<String> = Vec::with_capacity(body.call_ids.len());
    let mut recordings = Vec::new();
    for (i, c) in body.call_ids.iter().enumerate() {
        if calls.contains(c) {
            continue;
        }
        if !store.call_exists(c).await? {
            return Err(Problem::invalid_field(
                format!("call_ids[{i}]"),
                format!("no call '{c}'"),
            ));
        }
        if let Some(r) = store.find_recording(c).await? {
            recordings.push(r.id);
        }
        calls.push(c.clone());
    }
    let now = state.clock.now();
    let hold_id = (!recordings.is_empty()).then(crate::retention::new_hold_id);
    let mut tx = store.begin().await?;
    let held = match &hold_id {
        Some(h) => crate::retention::place_hold(&mut tx, h, &body.ticket, &recordings, now).await?,
        None => Vec::new(),
    };
    let new = NewDispute {
        ticket: &body.ticket,
        reason: &body.reason,
        opened_by: &me.id,
        call_ids: &calls,
        hold_id: hold_id.as_deref(),
    };
    let d = tx.insert_dispute(&new, now).await?;
    state
        .audit
        .append(&mut tx, &Event::dispute_opened(now, &me.id, &d, held.len()))
        .await?;
    tx.commit().await?;
    // The key-store half, once the hold is in force (see the module doc).
    if let (Some(rec), Some(h)) = (&state.recorder, &hold_id)
        && let Err(e) = crate::retention::apply_hold(rec, h, &*state.retention_faults).await
    {
        tracing::warn!(
            hold = %h, dispute = %d.id, error = %e,
            "legal hold in force, but not all its keys have moved yet; the retention sweep finishes it"
        );
    }
    Ok((
        StatusCode::CREATED,
        Json({
            let mut v = json!(d);
            v["held_recordings"] = json!(held);
            v
        }),
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
    let store = &state.store;
    let d = dispute(store, &id).await?;
    if d.resolved_at.is_some() {
        return Err(resolved("a resolved dispute gives no more access"));
    }
    let now = state.clock.now();
    let mut tx = store.begin().await?;
    let mut g = tx.insert_grant(&d.id, &me.id, now).await?;
    if !state.four_eyes {
        // Without four-eyes the request is its own approval.
        let until = now.saturating_add(state.grant_ttl);
        g = tx.approve_grant(&g, &me.id, now, until).await?.unwrap_or(g);
    }
    state
        .audit
        .append(&mut tx, &Event::grant_requested(now, &me.id, &g))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(grant_view(&g, now))))
}

/// `POST /v1/grants/{id}/approve` (supervisor, never the requester's own).
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let me = caller.require(&[Role::Supervisor])?.clone();
    let store = &state.store;
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
    let now = state.clock.now();
    let mut tx = store.begin().await?;
    let until = now.saturating_add(state.grant_ttl);
    let Some(g) = tx.approve_grant(&g, &me.id, now, until).await? else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "grant-already-approved",
            "Grant already approved",
            "this grant was approved before",
        ));
    };
    state
        .audit
        .append(&mut tx, &Event::grant_approved(now, &me.id, &g))
        .await?;
    tx.commit().await?;
    Ok(Json(grant_view(&g, now)))
}

/// `POST /v1/disputes/{id}/resolve` (support, supervisor): resolves the
/// dispute and releases its hold; again on a dispute whose release did not
/// complete, it completes it.
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let me = caller.require(&[Role::Support, Role::Supervisor])?.clone();
    let store = &state.store;
    let d = dispute(store, &id).await?;
    let now = state.clock.now();
    let mut resolved_now = false;
    if d.resolved_at.is_none() {
        let mut tx = store.begin().await?;
        if tx.mark_dispute_resolved(&d.id, &me.id, now).await? {
            if let Some(hold) = &d.hold_id {
                tx.request_hold_release(hold, now).await?;
            }
            let event = Event::dispute_resolved(now, &me.id, &d.id, d.hold_id.as_deref());
            state.audit.append(&mut tx, &event).await?;
            tx.commit().await?;
            resolved_now = true;
        }
    }
    // Resolved before (or by a request racing this one): only a release
    // still pending is left to do.
    if !resolved_now && !release_pending(store, &d).await? {
        return Err(resolved("this dispute was resolved before"));
    }
    let released = match (&state.recorder, &d.hold_id) {
        (Some(rec), Some(hold)) => Some(
            crate::retention::release(
                rec,
                hold,
                now,
                &Actor::staff(&me.id),
                &*state.retention_faults,
            )
            .await
            .map_err(|e| release_incomplete(&d.id, &e))?,
        ),
        _ => None,
    };
    let mut v = json!(dispute(store, &id).await?);
    v["released"] = json!(released);
    Ok(Json(v))
}

/// Whether dispute `d`'s hold still waits to be released.
async fn release_pending(store: &Store, d: &Dispute) -> Result<bool, Problem> {
    let Some(hold) = &d.hold_id else {
        return Ok(false);
    };
    Ok(store
        .hold_state(hold)
        .await?
        .is_some_and(|h| h.released_at.is_none()))
}

/// 503: the dispute is resolved, its hold not yet released.
fn release_incomplete(dispute: &str, err: &dyn std::fmt::Display) -> Problem {
    tracing::error!(%dispute, error = %err, "releasing a resolved dispute's hold failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "release-incomplete",
        "Hold not released yet",
        format!(
            "dispute {dispute} is resolved, but releasing its legal hold failed; \
             POST /v1/disputes/{dispute}/resolve again to complete it (the retention sweep \
             also does)"
        ),
    )
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
pub(super) async fn dispute(store: &Store, id: &str) -> Result<Dispute, Problem> {
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
    let mut v = json!(g);
    v["status"] = json!(status);
    v
}
