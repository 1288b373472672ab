//! Early erasure (a data subject's request): the subject's recordings that
//! no hold and no legally required class keeps are erased now, and every
//! epoch they were in is **rotated**: the epoch's other DEKs are re-wrapped
//! under a fresh KEK (`…-g<n>`) and the old KEK is destroyed, so a backup
//! taken before the request cannot decrypt the erased recording either.
//!
//! A writer that wraps a new DEK under the old KEK in the milliseconds
//! between the last re-wrap and the destruction would lose its recording;
//! the rotation re-checks the epoch right before destroying to keep that
//! window as small as possible.
//!
//! Each recording is erased in a transaction of its own with its
//! `recording.erase` event; the `subject.erase` event is written in the
//! transaction of the last step (the number replaced by its pseudonym), so
//! it exists exactly when the whole request was carried out. After a
//! failure, asking again completes it.

use crate::audit::{self, Actor, Event};
use crate::clock::Timestamp;
use crate::keys::{epoch_end, epoch_id};
use crate::phone::E164;
use crate::recording::Recorder;

use super::holds::move_dek;
use super::{NoFaults, RetentionError, erase_one};

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
/// pseudonym the personal-data retention would give it later). `by` is
/// who the `subject.erase` event names.
pub async fn erase_subject(
    rec: &Recorder,
    number: &E164,
    legally_required: &[String],
    now: Timestamp,
    by: &Actor,
) -> Result<SubjectErasure, RetentionError> {
    let mut out = SubjectErasure::default();
    let mut epochs = Vec::new();
    for rid in rec.store().recordings_of_number(number.as_str()).await? {
        let Some(r) = rec.store().find_recording(&rid).await? else {
            continue;
        };
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
        } else if r.state == crate::store::RecordingState::Recording {
            out.kept.push(Kept {
                recording_id: rid,
                reason: "the call is still in progress; ask again when it has ended".into(),
            });
        } else if erase_one(rec, &r, now, "subject-request", &NoFaults).await? {
            if !epochs.contains(&r.epoch_id) {
                epochs.push(r.epoch_id.clone());
            }
            out.erased.push(rid);
        } else {
            out.kept.push(Kept {
                recording_id: rid,
                reason: "it was put under a legal hold while being erased".into(),
            });
        }
    }
    for e in epochs {
        if let Some(new) = rotate(rec, &e).await? {
            out.rotated.push((e, new));
        }
    }
    rec.ensure_key(super::PSEUDONYM_KEY_ID)?;
    let pseudonym = rec.pseudonym(number)?;
    let counts = (out.erased.len(), out.kept.len(), out.rotated.len());
    let mut tx = rec.store().begin().await?;
    out.pseudonymised = tx.pseudonymise_number(number, &pseudonym).await?;
    let event = Event::subject_erased(now, by.clone(), &number.masked(), counts);
    audit::append(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(out)
}

/// Rotates an epoch: its remaining DEKs move under a fresh KEK, then the
/// old KEK is destroyed. `None` if the KEK was already gone.
pub async fn rotate(rec: &Recorder, old: &str) -> Result<Option<String>, RetentionError> {
    let Some((class, end)) = epoch_end(old) else {
        return Ok(None);
    };
    if !rec.key_exists(old)? {
        return Ok(None);
    }
    let base = epoch_id(&class, end);
    let generation = rec
        .key_ids()?
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{base}-g"))?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let new = format!("{base}-g{generation}");
    rec.create_key(&new)?;
    // Re-wrap until nothing is left under the old KEK (a writer may have
    // added a DEK meanwhile; a row that changed is read again), then
    // destroy it.
    loop {
        let left = rec.store().recordings_in_epoch(old).await?;
        if left.is_empty() {
            break;
        }
        for rid in left {
            if let Some(r) = rec.store().find_recording(&rid).await? {
                move_dek(rec, &r, &new, r.held_by.as_deref()).await?;
            }
        }
    }
    rec.destroy_key(old)?;
    tracing::info!(from = %old, to = %new, "epoch key rotated");
    Ok(Some(new))
}
