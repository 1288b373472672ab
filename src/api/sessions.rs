//! `/v1/sessions` and `/v1/calls`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::extract::{Caller, JsonBody, Params};
use super::page::{self, Cursor, Page};
use super::problem::Problem;
use crate::audit::Event;
use crate::clock::Timestamp;
use crate::phone::{E164, PartyNumber};
use crate::routing::{SessionError, SessionRequest};
use crate::store::{CallRecord, CreateSessionError, Participant, Role, SessionRecord};

/// Body of `POST /v1/sessions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    a: Option<String>,
    b: Option<String>,
    ttl: Option<String>,
    retention_class: Option<String>,
    record: Option<bool>,
}

/// A session as the API shows it. After the personal-data retention period
/// the participants' numbers read as their pseudonyms `h:…`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    id: String,
    a: Participant,
    b: Participant,
    status: &'static str,
    record: bool,
    retention_class: String,
    created_at: Timestamp,
    expires_at: Timestamp,
    closed_at: Option<Timestamp>,
}

impl SessionView {
    fn new(s: SessionRecord, now: Timestamp) -> Self {
        let status = match (s.is_open(now), s.close_reason) {
            (true, _) => "open",
            (false, Some(crate::store::CloseReason::Closed)) => "closed",
            (false, _) => "expired",
        };
        SessionView {
            status,
            id: s.id,
            a: s.a,
            b: s.b,
            record: s.record,
            retention_class: s.retention_class,
            created_at: s.created_at,
            expires_at: s.expires_at,
            closed_at: s.closed_at,
        }
    }
}

fn number(field: &'static str, raw: Option<String>) -> Result<E164, Problem> {
    let raw = raw.ok_or_else(|| Problem::invalid_field(field, "is required"))?;
    E164::parse(&raw).map_err(|e| Problem::invalid_field(field, e))
}

/// `POST /v1/sessions` (provisioner).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response, Problem> {
    caller.require(&[Role::Provisioner])?;
    let body: CreateBody = body.parse()?;
    let ttl = body
        .ttl
        .map(|t| crate::duration::parse_duration(&t).map_err(|e| Problem::invalid_field("ttl", e)))
        .transpose()?;
    let req = SessionRequest {
        a: number("a", body.a)?,
        b: number("b", body.b)?,
        ttl,
        retention_class: body.retention_class,
        record: body.record,
    };
    let session = state
        .routing
        .create_session(req)
        .await
        .map_err(session_problem)?;
    let location = format!("/v1/sessions/{}", session.id);
    let view = SessionView::new(session, state.clock.now());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

fn session_problem(e: SessionError) -> Problem {
    match e {
        SessionError::Invalid { field, reason } => Problem::invalid_field(field, reason),
        SessionError::Create(CreateSessionError::NoProxy { side, reason }) => Problem::new(
            StatusCode::CONFLICT,
            "no-proxy-number",
            "No proxy number available",
            format!("participant {}: {reason}", side.as_str()),
        )
        .with_field(side.as_str()),
        SessionError::Create(CreateSessionError::Store(e)) => Problem::from(e),
    }
}

/// `GET /v1/sessions/{id}` (provisioner).
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, Problem> {
    caller.require(&[Role::Provisioner])?;
    let s = state
        .routing
        .get_session(&id)
        .await?
        .ok_or_else(|| Problem::not_found("session", &id))?;
    Ok(Json(SessionView::new(s, state.clock.now())))
}

/// `DELETE /v1/sessions/{id}` (provisioner): closes; idempotent.
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, Problem> {
    caller.require(&[Role::Provisioner])?;
    let s = state
        .routing
        .close_session(&id)
        .await?
        .ok_or_else(|| Problem::not_found("session", &id))?;
    Ok(Json(SessionView::new(s, state.clock.now())))
}

/// Query of `GET /v1/calls`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    session: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Query of `GET /v1/sessions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    participant: Option<String>,
    status: Option<crate::store::SessionStatus>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /v1/sessions?participant=…&status=open|closed|expired` (provisioner),
/// oldest first, a page at a time.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<SessionsQuery>,
) -> Result<Json<Page<SessionView>>, Problem> {
    caller.require(&[Role::Provisioner])?;
    let limit = page::limit(q.limit)?;
    let after = Cursor::parse(q.cursor.as_deref())?;
    let participant = q
        .participant
        .filter(|p| !p.is_empty())
        .map(|p| E164::parse(&p).map_err(|e| Problem::invalid_field("participant", e)))
        .transpose()?;
    let now = state.clock.now();
    let rows = state
        .store
        .list_sessions(
            participant.as_ref(),
            q.status,
            now,
            after.as_ref().map(|c| (c.key, c.id.as_str())),
            limit + 1,
        )
        .await?;
    let page = Page::from_rows(rows, limit, |s| Cursor {
        key: s.created_at.as_millis(),
        id: s.id.clone(),
    });
    Ok(Json(page.map(|s| SessionView::new(s, now))))
}

/// A call record; the caller's number (real, or its pseudonym `h:…` after
/// the personal-data retention period) only for the provisioner.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CallView {
    id: String,
    session_id: Option<String>,
    direction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller: Option<PartyNumber>,
    dialled: E164,
    invite_at: Timestamp,
    ring_at: Option<Timestamp>,
    answer_at: Option<Timestamp>,
    end_at: Option<Timestamp>,
    result: Option<crate::store::CallResult>,
    sip_status: Option<i64>,
    hangup_side: Option<crate::store::HangupSide>,
    duration_ms: Option<i64>,
    recording_id: Option<String>,
    /// Why the call went as it did, when the result alone does not say:
    /// `no-caller-number`; for calls no open session routes (direction
    /// `unrouted`) `out-of-session` (refused), `out-of-session-announced`
    /// (heard the out-of-session announcement) or
    /// `out-of-session-forwarded` (connected to the customer centre); for
    /// calls ansim ended itself `session-expired`,
    /// `session-refresh-failed`, `dialog-probe-failed`, `no-answer-in-ack`
    /// or `no-offer-in-2xx`. The same field is in `call.completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The ansim node that handled the call (`[node] id`); empty for calls
    /// recorded before nodes existed.
    node: String,
}

impl CallView {
    pub(super) fn new(c: CallRecord, show_numbers: bool) -> Self {
        let duration_ms = match (c.answer_at, c.end_at) {
            (Some(a), Some(e)) => Some(e.as_millis() - a.as_millis()),
            _ => None,
        };
        CallView {
            caller: c.caller.filter(|_| show_numbers),
            id: c.id,
            session_id: c.session_id,
            direction: c.direction,
            dialled: c.dialled,
            invite_at: c.invite_at,
            ring_at: c.ring_at,
            answer_at: c.answer_at,
            end_at: c.end_at,
            result: c.result,
            sip_status: c.sip_status,
            hangup_side: c.hangup_side,
            duration_ms,
            recording_id: c.recording_id,
            reason: c.reason,
            node: c.node,
        }
    }
}

/// `GET /v1/calls?session={id}` (provisioner, support): the session's
/// calls, oldest first, a page at a time.
pub async fn calls(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<CallsQuery>,
) -> Result<Json<Page<CallView>>, Problem> {
    let me = caller.require(&[Role::Provisioner, Role::Support])?;
    let show_numbers = me.role == Role::Provisioner;
    let limit = page::limit(q.limit)?;
    let after = Cursor::parse(q.cursor.as_deref())?;
    let session = q
        .session
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Problem::invalid_field("session", "query parameter is required"))?;
    if state.routing.get_session(&session).await?.is_none() {
        return Err(Problem::not_found("session", &session));
    }
    let rows = state
        .store
        .list_calls_page(
            &session,
            after.as_ref().map(|c| (c.key, c.id.as_str())),
            limit + 1,
        )
        .await?;
    let page = Page::from_rows(rows, limit, |c| Cursor {
        key: c.invite_at.as_millis(),
        id: c.id.clone(),
    })
    .map(|c| CallView::new(c, show_numbers));
    let recordings = page
        .items
        .iter()
        .filter(|c| c.recording_id.is_some())
        .count();
    if recordings > 0 {
        // Listing recordings is an access event like any other, committed
        // before anything is shown.
        let event = Event::recordings_listed(state.clock.now(), &me.id, &session, recordings);
        state.audit.record(&event).await?;
    }
    Ok(Json(page))
}
