//! What support staff read: who they are, the disputes, and for one
//! dispute its calls (without real numbers), recordings, grants and who
//! has listened. Listing a dispute's recordings is an audit event
//! (`recording.list`).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::disputes::{dispute, grant_view};
use super::extract::{Caller, Params};
use super::page::{self, Cursor, Page};
use super::problem::Problem;
use super::sessions::CallView;
use crate::audit::Event;
use crate::clock::Timestamp;
use crate::store::{Dispute, DisputeSearch, DisputeState, Role, Store};

/// `GET /v1/me` (any role): the caller's own staff record, so a client
/// (the web page) knows which role it acts as.
pub async fn me(caller: Caller) -> Json<crate::store::StaffMember> {
    Json(caller.0)
}

/// Query of `GET /v1/disputes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include resolved disputes (`true`/`false`, default false); the
    /// older spelling of `state=all`.
    all: Option<bool>,
    /// Part of the ticket (case-insensitive), e.g. `CS-77`.
    ticket: Option<String>,
    /// `open` (the default), `resolved` or `all`.
    state: Option<String>,
    /// Items per page (1–500, default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl ListQuery {
    fn search(&self) -> Result<DisputeSearch<'_>, Problem> {
        let state = match (self.state.as_deref(), self.all) {
            (None, Some(true)) => DisputeState::Any,
            (None | Some("open"), _) => DisputeState::Open,
            (Some("resolved"), _) => DisputeState::Resolved,
            (Some("all"), _) => DisputeState::Any,
            (Some(_), _) => {
                return Err(Problem::invalid_field(
                    "state",
                    "must be open, resolved or all",
                ));
            }
        };
        let ticket = self
            .ticket
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if ticket.is_some_and(|t| t.len() > 500) {
            return Err(Problem::invalid_field("ticket", "at most 500 characters"));
        }
        Ok(DisputeSearch { ticket, state })
    }
}

/// `GET /v1/disputes[?ticket=…][&state=open|resolved|all]` (support,
/// supervisor): the disputes found (by default the open ones), newest
/// first, a page at a time (`limit`, `cursor`).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Page<Dispute>>, Problem> {
    caller.require(&[Role::Support, Role::Supervisor])?;
    let search = q.search()?;
    let limit = page::limit(q.limit)?;
    let before = Cursor::parse(q.cursor.as_deref())?;
    let rows = state
        .store
        .list_disputes_page(
            &search,
            before.as_ref().map(|c| (c.key, c.id.as_str())),
            limit + 1,
        )
        .await?;
    Ok(Json(Page::from_rows(rows, limit, |d| Cursor {
        key: d.opened_at.as_millis(),
        id: d.id.clone(),
    })))
}

/// A recording of a disputed call, as support sees it.
#[derive(Serialize)]
struct RecordingView {
    id: String,
    call_id: String,
    /// `recording`, `complete`, `truncated` or `erased`.
    state: String,
    duration_ms: Option<i64>,
    /// When it was erased, if it was.
    erased_at: Option<Timestamp>,
    /// Who has listened: one entry per staff member.
    listened: Vec<Listener>,
}

/// One staff member's playback of a recording.
#[derive(Serialize)]
struct Listener {
    staff_id: String,
    name: Option<String>,
    first_at: Timestamp,
    last_at: Timestamp,
    /// Audio requests (a player seeking makes several).
    requests: u64,
}

/// Who listened to `recording_id`, from the audit log.
async fn listeners(
    store: &Store,
    recording_id: &str,
    names: &HashMap<String, String>,
) -> Result<Vec<Listener>, Problem> {
    let mut by: BTreeMap<String, Listener> = BTreeMap::new();
    for (at, actor, _) in store
        .audit_events_on("recording.play", recording_id)
        .await?
    {
        let staff_id = actor.strip_prefix("staff:").unwrap_or(&actor).to_owned();
        let l = by.entry(staff_id.clone()).or_insert_with(|| Listener {
            name: names.get(&staff_id).cloned(),
            staff_id,
            first_at: at,
            last_at: at,
            requests: 0,
        });
        l.last_at = at;
        l.requests += 1;
    }
    Ok(by.into_values().collect())
}

/// The recording of `call_id`, live or erased, if it had one.
async fn recording_of(
    store: &Store,
    call_id: &str,
    names: &HashMap<String, String>,
) -> Result<Option<RecordingView>, Problem> {
    let view = if let Some(r) = store.find_recording(call_id).await? {
        RecordingView {
            listened: listeners(store, &r.id, names).await?,
            id: r.id,
            call_id: r.call_id,
            state: r.state.to_string(),
            duration_ms: r.duration_ms,
            erased_at: None,
        }
    } else if let Some(t) = store.find_tombstone(call_id).await? {
        RecordingView {
            listened: listeners(store, &t.recording_id, names).await?,
            id: t.recording_id,
            call_id: t.call_id,
            state: "erased".into(),
            duration_ms: None,
            erased_at: Some(t.erased_at),
        }
    } else {
        return Ok(None);
    };
    Ok(Some(view))
}

/// `GET /v1/disputes/{id}` (support, supervisor): the dispute, its calls
/// (no real numbers), their recordings with who listened, and its grants.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let me = caller.require(&[Role::Support, Role::Supervisor])?.clone();
    let store = &state.store;
    let d = dispute(store, &id).await?;
    let names: HashMap<String, String> = store
        .list_staff()
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let mut calls = Vec::new();
    let mut recordings = Vec::new();
    for call_id in &d.call_ids {
        if let Some(c) = store.get_call(call_id).await? {
            calls.push(CallView::new(c, false));
        }
        if let Some(r) = recording_of(store, call_id, &names).await? {
            recordings.push(r);
        }
    }
    let now = state.clock.now();
    let grants: Vec<Value> = store
        .grants_of_dispute(&d.id)
        .await?
        .iter()
        .map(|g| {
            let mut v = grant_view(g, now);
            v["requested_by_name"] = json!(names.get(&g.requested_by));
            v["approved_by_name"] = json!(g.approved_by.as_ref().and_then(|a| names.get(a)));
            v
        })
        .collect();
    // The listing is an access event: committed before anything is shown.
    let event = Event::recordings_listed(now, &me.id, &d.id, recordings.len());
    state.audit.record(&event).await?;
    let mut v = json!(d);
    v["calls"] = json!(calls);
    v["recordings"] = json!(recordings);
    v["grants"] = json!(grants);
    Ok(Json(v))
}
