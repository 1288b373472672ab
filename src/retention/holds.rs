//! Legal holds: a dispute keeps its recordings past their retention by
//! re-wrapping their DEKs under a KEK of its own (`hold-…`), without ever
//! writing a DEK down unwrapped.
//!
//! A hold has a database half (the `holds` row, and `held_by` on each
//! recording it keeps) and a key-store half (the hold's KEK, and each
//! recording's DEK wrapped by it). The two cannot commit together, so the
//! order is chosen to make every intermediate state safe and finishable:
//!
//! **Placing** ([`place_hold`], then [`apply_hold`]):
//! 1. In the transaction that opens the dispute, the hold row is written
//!    and its recordings are marked `held_by` it. Before this commits,
//!    nothing exists anywhere (not even a KEK). From the commit on the hold
//!    is in force: no sweep erases a held recording, and the epoch KEK
//!    still wrapping its DEK is not destroyed either, because a row names
//!    it.
//! 2. Then the hold's KEK is created (if missing) and each DEK moves under
//!    it. A crash or an error here leaves recordings held but wrapped by
//!    their epoch KEK, still playable; the next sweep (or any later
//!    `apply_hold`) finishes the move. Every move is compare-and-set, so
//!    running it twice, or alongside a release, is harmless.
//!
//! **Releasing** ([`release`]):
//! 1. The release is requested (`release_requested_at`; when a dispute is
//!    resolved, in the transaction that resolves it, with its audit event).
//!    From then on no grant on the dispute plays anything.
//! 2. Each recording leaves the hold: to another open dispute's hold if one
//!    covers its call, else erased at once if its retention has passed,
//!    else back under the KEK of a live epoch.
//! 3. The hold's KEK is destroyed, and only then is the hold marked
//!    released (with a `hold.release` event). A failure anywhere leaves a
//!    requested, unfinished release that the next resolve of the dispute,
//!    or the next sweep, completes: the KEK is never destroyed while a row
//!    still names it.

use crate::audit::{self, Actor, Event};
use crate::clock::Timestamp;
use crate::keys::WrappedDek;
use crate::keys::epoch_id;
use crate::recording::Recorder;
use crate::recording::rewrap::RewrapError;
use crate::store::{RecordingRow, StoreError, Tx};

use super::{FaultPoint, NoFaults, RetentionError, Step, erase_one};

/// How many times a hold operation re-reads recordings that others keep
/// changing before it gives up (and is tried again later).
const MAX_PASSES: usize = 8;

/// A fresh hold id (also its KEK's id).
pub fn new_hold_id() -> String {
    format!("hold-{}", uuid::Uuid::new_v4().simple())
}

/// `row`'s DEK wrapped anew under the KEK `to_id`: the key store unwraps
/// and wraps it (inside the token for an HSM); only the key module ever
/// holds it in the clear.
fn rewrapped(
    rec: &Recorder,
    row: &RecordingRow,
    to_id: &str,
) -> Result<WrappedDek, RetentionError> {
    rec.wrapped_under(row, to_id).map_err(|e| match e {
        RewrapError::Keys(crate::keys::KeyError::KekNotFound { .. }) => {
            RetentionError::KeyGone(row.epoch_id.clone())
        }
        RewrapError::Keys(k) => k.into(),
        RewrapError::Store(s) => s.into(),
        RewrapError::BadId(_) => RetentionError::KeyGone(row.id.clone()),
    })
}

/// Moves `row` (as read) under the KEK `to_id`, held by `held_by`.
/// `false` if the row changed meanwhile (nothing done; read it again).
pub(super) async fn move_dek(
    rec: &Recorder,
    row: &RecordingRow,
    to_id: &str,
    held_by: Option<&str>,
) -> Result<bool, RetentionError> {
    let wrapped = if row.epoch_id == to_id {
        row.wrapped_dek.clone()
    } else {
        rewrapped(rec, row, to_id)?.as_bytes().to_vec()
    };
    Ok(rec
        .store()
        .move_recording_key(row, to_id, &wrapped, held_by)
        .await?)
}

/// The database half of a new hold, inside the caller's transaction (the
/// one that opens the dispute): the hold row, and each of `recording_ids`
/// marked held by it. Returns the recordings it holds (one that vanished
/// meanwhile, erased, is not among them). Nothing is in the key store yet:
/// call [`apply_hold`] once the transaction has committed.
pub async fn place_hold(
    tx: &mut Tx,
    hold_id: &str,
    reference: &str,
    recording_ids: &[String],
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    tx.insert_hold(hold_id, reference, now).await?;
    let mut held = Vec::with_capacity(recording_ids.len());
    for rid in recording_ids {
        if tx.hold_recording(hold_id, rid).await? {
            held.push(rid.clone());
        }
    }
    Ok(held)
}

/// The key-store half of hold `hold_id`: creates its KEK if missing and
/// moves every recording it holds under it; returns how many moved.
/// Idempotent: after a failure, calling it again finishes the job (the
/// sweep does). A hold whose release was requested is left to
/// [`release`].
pub async fn apply_hold(
    rec: &Recorder,
    hold_id: &str,
    faults: &dyn FaultPoint,
) -> Result<usize, RetentionError> {
    let state = rec
        .store()
        .hold_state(hold_id)
        .await?
        .ok_or_else(|| RetentionError::NoHold(hold_id.to_owned()))?;
    if state.release_requested_at.is_some() {
        return Ok(0);
    }
    rec.ensure_key(hold_id)?;
    let mut moved = 0;
    for _ in 0..MAX_PASSES {
        let entering = rec.store().recordings_entering_hold(hold_id).await?;
        if entering.is_empty() {
            if moved > 0 {
                tracing::info!(hold = %hold_id, recordings = moved, "legal hold keys in place");
            }
            return Ok(moved);
        }
        for r in entering {
            faults.at(Step::HoldRewrap)?;
            if move_dek(rec, &r, hold_id, Some(hold_id)).await? {
                moved += 1;
            }
        }
    }
    Err(RetentionError::Busy(format!("hold {hold_id}")))
}

/// Puts `recording_ids` under a new legal hold for `reference` (a ticket),
/// both halves at once; returns the hold's id. (A dispute places its hold
/// in its own transaction instead: [`place_hold`].)
pub async fn hold(
    rec: &Recorder,
    reference: &str,
    recording_ids: &[String],
    now: Timestamp,
) -> Result<String, RetentionError> {
    let id = new_hold_id();
    let mut tx = rec.store().begin().await?;
    place_hold(&mut tx, &id, reference, recording_ids, now).await?;
    tx.commit().await?;
    apply_hold(rec, &id, &NoFaults).await?;
    Ok(id)
}

/// What releasing a hold did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Released {
    /// Recordings erased at once (their retention had passed).
    pub erased: Vec<String>,
    /// Recordings returned to a live epoch or handed to another hold,
    /// with the KEK id that now wraps them.
    pub returned: Vec<(String, String)>,
}

/// Releases hold `hold_id` (see the module's "Releasing"): each recording
/// goes to another open dispute's hold, or is erased if its retention has
/// passed, or returns to a live epoch; then the hold's KEK is destroyed.
/// Idempotent: after a failure, calling it again completes it; on a hold
/// already released it does nothing. `by` is who the `hold.release` event
/// names.
pub async fn release(
    rec: &Recorder,
    hold_id: &str,
    now: Timestamp,
    by: &Actor,
    faults: &dyn FaultPoint,
) -> Result<Released, RetentionError> {
    let state = rec
        .store()
        .hold_state(hold_id)
        .await?
        .ok_or_else(|| RetentionError::NoHold(hold_id.to_owned()))?;
    let mut out = Released::default();
    if state.released_at.is_some() {
        return Ok(out);
    }
    if state.release_requested_at.is_none() {
        let mut tx = rec.store().begin().await?;
        tx.request_hold_release(hold_id, now).await?;
        tx.commit().await?;
    }
    let mut passes = 0;
    loop {
        let rows = rec.store().recordings_of_hold(hold_id).await?;
        if rows.is_empty() {
            break;
        }
        passes += 1;
        if passes > MAX_PASSES {
            return Err(RetentionError::Busy(format!("hold {hold_id}")));
        }
        for r in rows {
            release_one(rec, hold_id, &r, now, faults, &mut out).await?;
        }
    }
    // No row names the hold's KEK any more: destroying it loses nothing.
    faults.at(Step::BeforeHoldKek)?;
    rec.destroy_key(hold_id)?;
    let mut tx = rec.store().begin().await?;
    if tx.mark_hold_released(hold_id, now).await? {
        let event = Event::hold_released(
            now,
            by.clone(),
            hold_id,
            out.erased.len(),
            out.returned.len(),
        );
        audit::append(&mut tx, &event).await?;
    }
    tx.commit().await?;
    tracing::info!(hold = %hold_id, erased = out.erased.len(), returned = out.returned.len(), "legal hold released");
    Ok(out)
}

/// Takes one recording `r` out of hold `hold`. If `r` changed meanwhile
/// nothing happens here; the caller reads the hold's rows again.
async fn release_one(
    rec: &Recorder,
    hold: &str,
    r: &RecordingRow,
    now: Timestamp,
    faults: &dyn FaultPoint,
    out: &mut Released,
) -> Result<(), RetentionError> {
    // Another hold keeps it: a newer dispute took it over, or an older open
    // one still covers its call. Its DEK moves under that hold's KEK.
    let other = match r.held_by.as_deref() {
        Some(h) if h != hold => Some(h.to_owned()),
        _ => rec.store().other_open_hold(&r.call_id, hold).await?,
    };
    if let Some(other) = other {
        if r.held_by.as_deref() != Some(other.as_str())
            && !move_dek(rec, r, &r.epoch_id, Some(&other)).await?
        {
            return Ok(());
        }
        // Only apply_hold creates a hold's KEK, and only for a hold in
        // force; it moves this DEK with the hold's others.
        apply_hold(rec, &other, faults).await?;
        let moved = rec.store().find_recording(&r.id).await?;
        if moved.is_some_and(|m| m.epoch_id == other) {
            out.returned.push((r.id.clone(), other));
        }
        return Ok(());
    }
    if r.expires_at.is_some_and(|e| e <= now) {
        if erase_one(rec, r, now, "expired", faults).await? {
            out.erased.push(r.id.clone());
        }
        return Ok(());
    }
    // Back to retention: under a live epoch's KEK if the hold's KEK wraps
    // it, or just unheld if it never left its own (still live) epoch.
    let target = if r.epoch_id == hold {
        let target = live_epoch(rec, r, now);
        rec.ensure_key(&target)?;
        target
    } else {
        r.epoch_id.clone()
    };
    if move_dek(rec, r, &target, None).await? {
        out.returned.push((r.id.clone(), target));
    }
    Ok(())
}

/// The epoch a released recording goes back to: the one whose end is the
/// first epoch boundary at or after its expiry.
fn live_epoch(rec: &Recorder, r: &RecordingRow, now: Timestamp) -> String {
    let period = rec
        .policy()
        .classes
        .get(&r.retention_class)
        .copied()
        .unwrap_or_default();
    let expiry = r.expires_at.unwrap_or_else(|| {
        now.saturating_add(rec.policy().max_call)
            .saturating_add(period)
    });
    let width = i64::try_from(rec.policy().epoch.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let end = expiry
        .as_millis()
        .saturating_add(width - 1)
        .div_euclid(width)
        .saturating_mul(width);
    epoch_id(
        &r.retention_class,
        Timestamp::from_millis(end.max(now.as_millis() + 1)),
    )
}
