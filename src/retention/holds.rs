//! Legal holds and early erasure: moving a recording's DEK from one KEK to
//! another without ever writing it down unwrapped.
//!
//! - **Hold**: a dispute re-wraps its recordings' DEKs under a KEK of its
//!   own (`hold-…`). Their epoch KEK can then be destroyed on time; the
//!   held recordings stay readable through the hold KEK.
//! - **Release**: each held recording whose retention has passed is erased
//!   at once; the others move back under the KEK of a live epoch. Then the
//!   hold KEK is destroyed.
//! - **Early erasure** (a data subject's request): the subject's recordings
//!   that no hold and no legally required class keeps are erased now, and
//!   every epoch they were in is **rotated**: the epoch's other DEKs are
//!   re-wrapped under a fresh KEK (`…-g<n>`) and the old KEK is destroyed,
//!   so a backup taken before the request cannot decrypt the erased
//!   recording either. A writer that wraps a new DEK under the old KEK in
//!   the milliseconds between the last re-wrap and the destruction would
//!   lose its recording; the rotation re-checks the epoch right before
//!   destroying to keep that window as small as possible.

use crate::clock::Timestamp;
use crate::keys::{DekBinding, WrappedDek};
use crate::phone::E164;
use crate::recording::{Recorder, epoch_end, epoch_id};
use crate::store::RecordingRow;

use super::{NoFaults, RetentionError, erase_one};

/// Moves `row`'s DEK under the KEK `to_id`, held by `held_by`. The DEK is
/// unwrapped and wrapped again by the key store (inside the token for an
/// HSM); only the key module ever holds it in the clear.
async fn rewrap(
    rec: &Recorder,
    row: &RecordingRow,
    to_id: &str,
    held_by: Option<&str>,
) -> Result<(), RetentionError> {
    let recording_id =
        uuid::Uuid::parse_str(&row.id).map_err(|_| RetentionError::KeyGone(row.id.clone()))?;
    let binding = |epoch: &str| DekBinding {
        call_id: row.call_id.clone(),
        recording_id,
        epoch_id: epoch.to_owned(),
    };
    let dek = match rec.keys.unwrap_dek(
        &row.epoch_id,
        &WrappedDek(row.wrapped_dek.clone()),
        &binding(&row.epoch_id),
    ) {
        Err(crate::keys::KeyError::KekNotFound { .. }) => {
            return Err(RetentionError::KeyGone(row.epoch_id.clone()));
        }
        other => other?,
    };
    let wrapped = rec.keys.wrap_dek(to_id, &dek, &binding(to_id))?;
    rec.store
        .rewrap_recording(&row.id, to_id, wrapped.as_bytes(), held_by)
        .await?;
    Ok(())
}

async fn row(rec: &Recorder, id: &str) -> Result<RecordingRow, RetentionError> {
    rec.store
        .find_recording(id)
        .await?
        .ok_or_else(|| RetentionError::NoRecording(id.to_owned()))
}

/// Puts `recording_ids` under a new legal hold for `reference` (a dispute
/// or ticket); returns the hold's id.
pub async fn hold(
    rec: &Recorder,
    reference: &str,
    recording_ids: &[String],
    now: Timestamp,
) -> Result<String, RetentionError> {
    let id = format!("hold-{}", uuid::Uuid::new_v4().simple());
    rec.keys.create(&id)?;
    rec.store.insert_hold(&id, reference, now).await?;
    for rid in recording_ids {
        let r = row(rec, rid).await?;
        rewrap(rec, &r, &id, Some(&id)).await?;
    }
    tracing::info!(hold = %id, recordings = recording_ids.len(), "legal hold placed");
    Ok(id)
}

/// Moves one held recording under another hold (`hold_id`), as when a
/// dispute is resolved while another open dispute still covers the call.
pub async fn move_to_hold(
    rec: &Recorder,
    recording_id: &str,
    hold_id: &str,
) -> Result<(), RetentionError> {
    let r = row(rec, recording_id).await?;
    rewrap(rec, &r, hold_id, Some(hold_id)).await?;
    tracing::info!(hold = %hold_id, recording = %recording_id, "recording moved to another hold");
    Ok(())
}

/// What releasing a hold did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Released {
    /// Recordings erased at once (their retention had passed).
    pub erased: Vec<String>,
    /// Recordings returned to a live epoch, with its KEK id.
    pub returned: Vec<(String, String)>,
}

/// Releases a hold: erases what has expired, returns the rest to a live
/// epoch, destroys the hold KEK.
pub async fn release(
    rec: &Recorder,
    hold_id: &str,
    now: Timestamp,
) -> Result<Released, RetentionError> {
    let mut out = Released::default();
    for rid in rec.store.recordings_in_epoch(hold_id).await? {
        let r = row(rec, &rid).await?;
        if r.expires_at.is_some_and(|e| e <= now) {
            erase_one(rec, &r, now, "expired", &NoFaults).await?;
            out.erased.push(rid);
            continue;
        }
        let target = live_epoch(rec, &r, now)?;
        rec.ensure_epoch_kek(&target)?;
        rewrap(rec, &r, &target, None).await?;
        out.returned.push((rid, target));
    }
    rec.keys.destroy(hold_id)?;
    rec.store.release_hold_row(hold_id, now).await?;
    tracing::info!(hold = %hold_id, erased = out.erased.len(), returned = out.returned.len(), "legal hold released");
    Ok(out)
}

/// The epoch a released recording goes back to: the one whose end is the
/// first epoch boundary at or after its expiry.
fn live_epoch(rec: &Recorder, r: &RecordingRow, now: Timestamp) -> Result<String, RetentionError> {
    let period = rec
        .policy
        .classes
        .get(&r.retention_class)
        .copied()
        .unwrap_or_default();
    let expiry = r.expires_at.unwrap_or_else(|| {
        now.saturating_add(rec.policy.max_call)
            .saturating_add(period)
    });
    let width = i64::try_from(rec.policy.epoch.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let end = expiry
        .as_millis()
        .saturating_add(width - 1)
        .div_euclid(width)
        .saturating_mul(width);
    Ok(epoch_id(
        &r.retention_class,
        Timestamp::from_millis(end.max(now.as_millis() + 1)),
    ))
}

/// Why a subject's recording was kept.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Kept {
    /// The recording.
    pub recording_id: String,
    /// Why it remains.
    pub reason: String,
}

/// What an early erasure did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SubjectErasure {
    /// Recordings erased now.
    pub erased: Vec<String>,
    /// Recordings kept, with the reason.
    pub kept: Vec<Kept>,
    /// Epochs rotated: old KEK id → new KEK id.
    pub rotated: Vec<(String, String)>,
    /// Rows of sessions and calls whose copy of the number was replaced by
    /// its pseudonym.
    pub pseudonymised: usize,
}

/// Erases now every recording of `number`'s sessions that no hold and no
/// legally required class keeps, rotates their epochs, and replaces the
/// number by its pseudonym in closed sessions and ended calls (the same
/// pseudonym the personal-data retention would give it later).
pub async fn erase_subject(
    rec: &Recorder,
    number: &E164,
    legally_required: &[String],
    now: Timestamp,
) -> Result<SubjectErasure, RetentionError> {
    let mut out = SubjectErasure::default();
    let mut epochs = Vec::new();
    for rid in rec.store.recordings_of_number(number.as_str()).await? {
        let r = row(rec, &rid).await?;
        if let Some(h) = &r.held_by {
            out.kept.push(Kept {
                recording_id: rid,
                reason: format!("under legal hold {h}"),
            });
        } else if legally_required.contains(&r.retention_class) {
            out.kept.push(Kept {
                recording_id: rid,
                reason: format!(
                    "class {} is kept by law until its retention ends",
                    r.retention_class
                ),
            });
        } else if r.state == "recording" {
            out.kept.push(Kept {
                recording_id: rid,
                reason: "the call is still in progress; ask again when it has ended".into(),
            });
        } else {
            erase_one(rec, &r, now, "subject-request", &NoFaults).await?;
            if !epochs.contains(&r.epoch_id) {
                epochs.push(r.epoch_id.clone());
            }
            out.erased.push(rid);
        }
    }
    for e in epochs {
        if let Some(new) = rotate(rec, &e).await? {
            out.rotated.push((e, new));
        }
    }
    rec.ensure_epoch_kek(super::PSEUDONYM_KEY_ID)?;
    let pseudonym = super::pseudonym(&*rec.keys, number)?;
    out.pseudonymised = rec.store.pseudonymise_number(number, &pseudonym).await?;
    Ok(out)
}

/// Rotates an epoch: its remaining DEKs move under a fresh KEK, then the
/// old KEK is destroyed. `None` if the KEK was already gone.
pub async fn rotate(rec: &Recorder, old: &str) -> Result<Option<String>, RetentionError> {
    let Some((class, end)) = epoch_end(old) else {
        return Ok(None);
    };
    if !rec.keys.exists(old)? {
        return Ok(None);
    }
    let base = epoch_id(&class, end);
    let generation = rec
        .keys
        .list()?
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{base}-g"))?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let new = format!("{base}-g{generation}");
    rec.keys.create(&new)?;
    // Re-wrap until nothing is left under the old KEK (a writer may have
    // added a DEK meanwhile), then destroy it.
    loop {
        let left = rec.store.recordings_in_epoch(old).await?;
        if left.is_empty() {
            break;
        }
        for rid in left {
            let r = row(rec, &rid).await?;
            rewrap(rec, &r, &new, r.held_by.as_deref()).await?;
        }
    }
    rec.keys.destroy(old)?;
    tracing::info!(from = %old, to = %new, "epoch key rotated");
    Ok(Some(new))
}
