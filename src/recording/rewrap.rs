//! Moving a recording's DEK from one KEK to another without ever writing
//! it down unwrapped: the key store unwraps and wraps (inside the token for
//! an HSM), and one statement re-points the row.
//!
//! At the start of a call only an upper bound of the recording's expiry is
//! known (start + longest call + retention), so its DEK is first wrapped
//! under the epoch of that bound. When the recording is finished,
//! [`to_expiry_epoch`] moves it under the epoch that holds its real expiry,
//! so its KEK is destroyed within one epoch width of the expiry rather than
//! up to a call length later.

use crate::clock::Timestamp;
use crate::keys::{DekBinding, KeyError, WrappedDek};
use crate::store::{RecordingRow, StoreError};

use super::Recorder;

/// Why a DEK could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    /// The key store failed, or the source KEK is gone.
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The row's id is not a recording id.
    #[error("recording id {0:?} is not a UUID")]
    BadId(String),
}

/// `row`'s DEK, wrapped anew under the KEK `to_id` (which must exist).
pub(crate) fn wrapped_under(
    rec: &Recorder,
    row: &RecordingRow,
    to_id: &str,
) -> Result<WrappedDek, RewrapError> {
    let recording_id =
        uuid::Uuid::parse_str(&row.id).map_err(|_| RewrapError::BadId(row.id.clone()))?;
    let binding = |epoch: &str| DekBinding {
        call_id: row.call_id.clone(),
        recording_id,
        epoch_id: epoch.to_owned(),
    };
    let dek = rec.keys.unwrap_dek(
        &row.epoch_id,
        &WrappedDek(row.wrapped_dek.clone()),
        &binding(&row.epoch_id),
    )?;
    Ok(rec.keys.wrap_dek(to_id, &dek, &binding(to_id))?)
}

/// Moves a just-finished recording's DEK under the epoch of `expires_at`.
/// Only if the row is still under the epoch it started in and not held: a
/// hold placed during the call (or a rotation) has moved it on already,
/// and wins.
pub(super) async fn to_expiry_epoch(
    rec: &Recorder,
    row: &RecordingRow,
    expires_at: Timestamp,
) -> Result<(), RewrapError> {
    let target = rec
        .policy()
        .epoch_of_expiry(&row.retention_class, expires_at);
    if target == row.epoch_id {
        return Ok(());
    }
    rec.ensure_key(&target)?;
    let wrapped = wrapped_under(rec, row, &target)?;
    let moved = rec
        .store
        .move_unheld_dek(&row.id, &row.epoch_id, &target, wrapped.as_bytes())
        .await?;
    if moved {
        tracing::debug!(recording = %row.id, from = %row.epoch_id, to = %target, "DEK moved to the epoch of its expiry");
    }
    Ok(())
}
