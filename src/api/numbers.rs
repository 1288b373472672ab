//! `/v1/numbers`: the safe-number pool.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::extract::{Caller, JsonBody};
use super::problem::Problem;
use crate::phone::E164;
use crate::store::{AddedNumbers, Role};

/// Most numbers one request may add.
const MAX_NUMBERS: usize = 10_000;

/// Body of `POST /v1/numbers`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    numbers: Vec<String>,
}

/// `POST /v1/numbers` (admin): `201` if any number was new, else `200`.
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<(StatusCode, Json<AddedNumbers>), Problem> {
    caller.require(&[Role::Admin])?;
    let body: AddBody = body.parse()?;
    if body.numbers.is_empty() || body.numbers.len() > MAX_NUMBERS {
        return Err(Problem::invalid_field(
            "numbers",
            format!("must hold 1 to {MAX_NUMBERS} numbers"),
        ));
    }
    let parsed = body
        .numbers
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            E164::parse(raw).map_err(|e| Problem::invalid_field(format!("numbers[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let added = state.store.add_numbers(&parsed, state.clock.now()).await?;
    tracing::info!(
        added = added.added.len(),
        existing = added.existing.len(),
        "numbers added to the pool"
    );
    let status = if added.added.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(added)))
}

/// `GET /v1/numbers` (admin): the pool with usage counts.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(&[Role::Admin])?;
    let numbers = state.store.list_numbers().await?;
    Ok(Json(
        serde_json::json!({ "total": numbers.len(), "numbers": numbers }),
    ))
}
