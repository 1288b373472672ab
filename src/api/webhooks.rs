//! `GET /v1/webhooks/deliveries` (admin): the outbox, with each event's
//! tries and why the last one failed.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::extract::{Caller, Params};
use super::page::{self, Cursor, Page};
use super::problem::Problem;
use crate::clock::Timestamp;
use crate::store::Role;
use crate::store::webhooks::Delivery;

/// Query of a paginated list without filters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page (1–500, default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/webhooks/deliveries` (admin), oldest first.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<PageQuery>,
) -> Result<Json<Page<Delivery>>, Problem> {
    caller.require(&[Role::Admin])?;
    let limit = page::limit(q.limit)?;
    let after = Cursor::parse(q.cursor.as_deref())?;
    let after = after
        .as_ref()
        .map(|c| (Timestamp::from_millis(c.key), c.id.as_str()));
    let rows = state.store.list_webhooks(after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |d| Cursor {
        key: d.created_at.as_millis(),
        id: d.id.clone(),
    })))
}
