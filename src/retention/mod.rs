//! The retention sweeper: erases recordings whose time has come, then
//! destroys the epoch KEKs that nothing needs any more; and legal holds
//! ([`holds`]) and early erasure ([`subject`]), which move DEKs between KEKs.
//!
//! Order of the steps of erasing one recording, and why an interruption
//! anywhere is safe:
//! 1. **row**: in one transaction, the recording's row (with its wrapped
//!    DEK) is deleted and a tombstone and the `recording.erase` audit event
//!    are written. From here on the recording cannot be decrypted from the
//!    live database.
//! 2. **blob**: the encrypted file is overwritten and deleted. If the sweep
//!    stops between 1 and 2, the next sweep finds a blob that no row names
//!    and deletes it.
//! 3. **keys**: every epoch KEK whose epoch has ended and which wraps no
//!    live DEK is destroyed in the key store. Once it is gone, the wrapped
//!    DEKs of that epoch in any copy of the database are useless. A KEK is
//!    never destroyed before its epoch ends, and an epoch ends after the
//!    latest possible expiry of every recording it wraps
//!    ([`crate::recording::RecordingPolicy::epoch_for`]).
//!
//! 4. **personal data**: the real numbers of sessions that ended more than
//!    `max([retention] personal_data, [routing] quarantine)` ago, of their
//!    bindings and calls, and of refused calls that old, are replaced by
//!    pseudonyms: `h:` and the hex keyed PRF (AES-256 of SHA-256) of the number under the
//!    pseudonym key [`PSEUDONYM_KEY_ID`], which lives in the key store (never
//!    in the database) and is created on first use. The rows stay, for
//!    statistics and disputes; the same number gets the same pseudonym.
//!    Waiting for the quarantine too keeps every binding that quarantine
//!    still compares readable.
//!
//! Before those, a sweep finishes what interrupted hold operations left:
//! holds whose recordings' DEKs have not all moved under the hold's KEK,
//! and holds whose release (a resolved dispute) did not complete.
//!
//! Each step is idempotent, so running the sweep again after any failure
//! completes what the failed run left. **One bad item does not stop a
//! sweep** ([`sweep`]): a recording whose blob cannot be read or deleted, a
//! key the key store refuses to destroy, a hold that cannot be finished is
//! logged, counted in the report's `failures` (and in
//! `ansim_retention_erase_failures_total` under `ansim serve`) and tried
//! again by the next sweep, while the others are erased. Only a failure of
//! the database itself, or a [`FaultPoint`] standing in for a crash, stops
//! the sweep.

mod holds;
mod subject;
mod sweep;

pub use holds::{Released, apply_hold, hold, new_hold_id, place_hold, release};
pub use subject::{Kept, SubjectErasure, erase_subject, rotate};
pub use sweep::sweep;

use crate::audit::{self, Actor, Event};
use crate::clock::Timestamp;
use crate::keys::epoch_end;
use crate::recording::Recorder;
use crate::store::{RecordingRow, Tombstone};

/// The pseudonym key and function belong to `keys`; kept here too for
/// the callers of the sweep's API.
pub use crate::keys::{PSEUDONYM_KEY_ID, pseudonym};

/// The steps of a sweep, for fault injection in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// After a recording's row was erased, before its blob is deleted.
    AfterRow,
    /// After a recording's blob was deleted.
    AfterBlob,
    /// Before an epoch KEK is destroyed.
    BeforeKek,
    /// Before a held recording's DEK moves under its hold's KEK.
    HoldRewrap,
    /// Before a released hold's KEK is destroyed.
    BeforeHoldKek,
}

/// Lets a test stop the sweep at a step; production uses [`NoFaults`].
pub trait FaultPoint: Send + Sync {
    /// `Err` stops the sweep there, as a crash would.
    fn at(&self, step: Step) -> Result<(), RetentionError>;
}

/// No injected faults.
pub struct NoFaults;

impl FaultPoint for NoFaults {
    fn at(&self, _: Step) -> Result<(), RetentionError> {
        Ok(())
    }
}

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The key store failed.
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// The blob store failed.
    #[error("blob: {0}")]
    Blob(#[from] crate::recording::blob::BlobError),
    /// A recording's KEK no longer exists, so its DEK cannot be moved.
    #[error("key {0} no longer exists")]
    KeyGone(String),
    /// No such recording.
    #[error("no recording {0}")]
    NoRecording(String),
    /// No such legal hold.
    #[error("no legal hold {0}")]
    NoHold(String),
    /// Recordings kept changing under a hold operation (other operations
    /// on the same recordings ran at the same time); trying again finishes.
    #[error("{0}: recordings kept changing meanwhile; try again")]
    Busy(String),
    /// A test stopped the sweep here.
    #[error("fault injected at {0:?}")]
    Injected(Step),
}

/// One recording erased (or, in a dry run, due).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Erased {
    /// Recording id.
    pub recording_id: String,
    /// Its call.
    pub call_id: String,
    /// Its class.
    pub retention_class: String,
    /// When its retention ended.
    pub expired_at: Option<Timestamp>,
}

/// What a sweep did (or would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SweepReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Whether the sweep did nothing because another process (another
    /// node on the same PostgreSQL) was sweeping at the time.
    pub skipped: bool,
    /// Holds whose recordings' DEKs now all sit under the hold's KEK
    /// (placing them had been interrupted).
    pub holds_applied: Vec<String>,
    /// Holds whose interrupted release was completed.
    pub holds_released: Vec<String>,
    /// Recordings erased.
    pub erased: Vec<Erased>,
    /// Blobs left behind by an interrupted sweep, now deleted.
    pub orphan_blobs: Vec<String>,
    /// Epoch KEKs destroyed.
    pub keys_destroyed: Vec<String>,
    /// Rows (sessions, bindings, calls) whose real numbers were replaced
    /// by pseudonyms (in a dry run: that still hold real numbers past the
    /// cut-off).
    pub pseudonymised: usize,
    /// What could not be done this time; the next sweep tries again.
    pub failures: Vec<SweepFailure>,
}

/// One item a sweep could not finish, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SweepFailure {
    /// What failed.
    pub item: Item,
    /// Why (the error, for the operator).
    pub error: String,
}

/// An item of a sweep, by id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum Item {
    /// A recording to erase.
    Recording(String),
    /// A blob to delete (its row is already erased).
    Blob(String),
    /// A KEK to destroy.
    Key(String),
    /// A legal hold to finish placing or releasing.
    Hold(String),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Recording(id) => write!(f, "recording {id}"),
            Item::Blob(name) => write!(f, "blob {name}"),
            Item::Key(id) => write!(f, "key {id}"),
            Item::Hold(id) => write!(f, "hold {id}"),
        }
    }
}

/// Erases one recording: its row ([`erase_row`]), then its blob. `false`
/// if it was already erased, or put under a hold since `row` was read.
pub async fn erase_one(
    rec: &Recorder,
    row: &RecordingRow,
    now: Timestamp,
    reason: &str,
    faults: &dyn FaultPoint,
) -> Result<bool, RetentionError> {
    if !erase_row(rec, row, now, reason).await? {
        return Ok(false);
    }
    faults.at(Step::AfterRow)?;
    rec.delete_blob(&row.blob).await?;
    faults.at(Step::AfterBlob)?;
    Ok(true)
}

/// Erases a recording's row: hashes its blob for the tombstone, then in one
/// transaction deletes the row (and with it the wrapped DEK) and writes the
/// tombstone and the `recording.erase` event, provided the row still has
/// the hold `row` was read with. `false` if it was already gone or its
/// hold changed. A blob that exists but cannot be read is an error: the
/// row stays, to be erased by a later try.
pub async fn erase_row(
    rec: &Recorder,
    row: &RecordingRow,
    now: Timestamp,
    reason: &str,
) -> Result<bool, RetentionError> {
    let hash = rec.blob_sha256(&row.blob).await?;
    let tomb = Tombstone {
        recording_id: row.id.clone(),
        call_id: row.call_id.clone(),
        session_id: row.session_id.clone(),
        retention_class: row.retention_class.clone(),
        epoch_id: row.epoch_id.clone(),
        started_at: row.started_at,
        ended_at: row.ended_at,
        expires_at: row.expires_at,
        erased_at: now,
        reason: reason.to_owned(),
        ciphertext_sha256: hash,
    };
    let mut tx = rec.store().begin().await?;
    if !tx.erase_recording(&tomb, row.held_by.as_deref()).await? {
        return Ok(false);
    }
    audit::append(&mut tx, &Event::recording_erased(Actor::RETENTION, &tomb)).await?;
    tx.commit().await?;
    tracing::info!(recording = %row.id, class = %row.retention_class, reason, "recording erased");
    Ok(true)
}

/// One epoch KEK as `ansim keys status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochStatus {
    /// KEK id.
    pub id: String,
    /// Retention class.
    pub class: String,
    /// When the epoch ends.
    pub ends_at: Timestamp,
    /// Recordings whose DEK it wraps.
    pub live_recordings: i64,
    /// Whether its epoch has ended: the next sweep erases what it still
    /// wraps and destroys it.
    pub due: bool,
}

/// Every epoch KEK in the key store, with its counts.
pub async fn key_status(
    rec: &Recorder,
    now: Timestamp,
) -> Result<Vec<EpochStatus>, RetentionError> {
    let mut out = Vec::new();
    for id in rec.key_ids()? {
        let Some((class, ends_at)) = epoch_end(&id) else {
            continue;
        };
        let live = rec.store().live_in_epoch(&id).await?;
        out.push(EpochStatus {
            due: ends_at <= now,
            id,
            class,
            ends_at,
            live_recordings: live,
        });
    }
    Ok(out)
}
