//! `/v1/subjects/{number}`: what ansim holds about a person, and erasing it
//! on request (the privacy policy's article 5).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::AppState;
use super::extract::Caller;
use super::page::{self, Cursor, Page};
use super::problem::Problem;
use crate::audit::{Actor, Event};
use crate::phone::E164;
use crate::store::Role;

fn subject(raw: &str) -> Result<E164, Problem> {
    E164::parse(raw).map_err(|e| Problem::invalid_field("number", e))
}

fn recorder(state: &AppState) -> Result<&crate::recording::Recorder, Problem> {
    state.recorder.as_deref().ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "recordings are not configured on this node",
        )
    })
}

/// How `number` can appear in the database: as itself, and as its
/// pseudonym once sessions have been pseudonymised (only if the pseudonym
/// key exists; looking never creates it).
fn stored_forms(state: &AppState, number: &E164) -> Result<Vec<String>, Problem> {
    let mut forms = vec![number.as_str().to_owned()];
    let pseudonym = match state.recorder.as_deref() {
        Some(rec) => rec
            .existing_pseudonym(number)
            .map_err(|e| Problem::internal(&e))?,
        None => None,
    };
    forms.extend(pseudonym);
    Ok(forms)
}

/// `GET /v1/subjects/{number}` (admin): sessions, calls and recordings
/// (class, expiry, holds) of a number.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Problem> {
    let me = caller.require(&[Role::Admin])?.clone();
    let number = subject(&raw)?;
    let store = &state.store;
    let now = state.clock.now();
    let mut sessions = Vec::new();
    let mut calls = Vec::new();
    let forms = stored_forms(&state, &number)?;
    let mut session_ids = Vec::new();
    for form in &forms {
        session_ids.extend(store.sessions_of_number(form).await?);
    }
    for id in session_ids {
        let Some(s) = store.get_session(&id).await? else {
            continue;
        };
        let side = if forms.iter().any(|f| f == s.a.number.as_str()) {
            "a"
        } else {
            "b"
        };
        sessions.push(json!({
            "id": s.id, "side": side, "open": s.is_open(now), "retention_class": s.retention_class,
            "created_at": s.created_at, "expires_at": s.expires_at, "closed_at": s.closed_at,
        }));
        for c in store.list_calls(&s.id).await? {
            calls.push(json!({
                "id": c.id, "session_id": c.session_id, "direction": c.direction, "invite_at": c.invite_at,
                "answer_at": c.answer_at, "end_at": c.end_at, "result": c.result, "recording_id": c.recording_id,
            }));
        }
    }
    let mut recording_ids = Vec::new();
    for form in &forms {
        recording_ids.extend(store.recordings_of_number(form).await?);
    }
    let mut recordings = Vec::new();
    for id in recording_ids {
        let Some(r) = store.find_recording(&id).await? else {
            continue;
        };
        recordings.push(json!({
            "id": r.id, "call_id": r.call_id, "retention_class": r.retention_class, "state": r.state,
            "expires_at": r.expires_at, "held_by": r.held_by,
            "legally_required": state.legally_required.contains(&r.retention_class),
        }));
    }
    // Listing recordings is an access event, committed before anything is
    // shown; the subject appears masked.
    let event = Event::recordings_listed(now, &me.id, &number.masked(), recordings.len());
    state.audit.record(&event).await?;
    Ok(Json(
        json!({ "number": number, "sessions": sessions, "calls": calls, "recordings": recordings }),
    ))
}

/// `POST /v1/subjects/{number}/erase` (admin): erases now whatever no hold
/// and no legally required class keeps; answers what remains and why.
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, Problem> {
    let me = caller.require(&[Role::Admin])?.clone();
    let number = subject(&raw)?;
    let rec = recorder(&state)?;
    // Open sessions end first: their numbers can then be pseudonymised.
    let mut closed = Vec::new();
    for id in state
        .routing
        .store()
        .sessions_of_number(number.as_str())
        .await?
    {
        let open = state
            .routing
            .get_session(&id)
            .await?
            .is_some_and(|s| s.is_open(state.clock.now()));
        if open {
            state.routing.close_session_as(&id, true).await?;
            closed.push(id);
        }
    }
    let now = state.clock.now();
    // The `subject.erase` event commits with the erasure's last step
    // (see `crate::retention::erase_subject`); it names the subject masked,
    // so the log never becomes where the number survives its erasure.
    let by = Actor::staff(&me.id);
    let done = crate::retention::erase_subject(rec, &number, &state.legally_required, now, &by)
        .await
        .map_err(|e| Problem::internal(&e))?;
    tracing::info!(subject = %number, erased = done.erased.len(), kept = done.kept.len(), "subject erasure");
    Ok(Json(json!({
        "erased": { "recordings": done.erased, "number_replaced_in_rows": done.pseudonymised },
        "sessions_closed": closed,
        "remaining": {
            "recordings": done.kept,
            "note": "call records and sessions stay, with the number replaced by a pseudonym",
        },
        "rotated_epoch_keys": done.rotated.len(),
    })))
}

/// Query of `GET /v1/audit`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    since: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /v1/audit?since=RFC3339` (auditor): access events, oldest first
/// (chain order), with their chain hashes, a page at a time.
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    super::extract::Params(q): super::extract::Params<AuditQuery>,
) -> Result<Json<Page<crate::store::AuditEvent>>, Problem> {
    caller.require(&[Role::Auditor])?;
    let since = match q.since.as_deref() {
        None | Some("") => crate::clock::Timestamp::from_millis(0),
        Some(s) => crate::clock::Timestamp::parse_rfc3339(s).ok_or_else(|| {
            Problem::invalid_field(
                "since",
                "must be an RFC 3339 time, e.g. 2026-11-29T00:00:00Z",
            )
        })?,
    };
    let limit = page::limit(q.limit)?;
    let after = Cursor::parse(q.cursor.as_deref())?.map_or(0, |c| c.key);
    let rows = state.store.list_audit_page(since, after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |e| Cursor {
        key: e.seq,
        id: String::new(),
    })))
}
