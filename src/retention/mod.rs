//! The retention sweeper: erases recordings whose time has come, then
//! destroys the epoch KEKs that nothing needs any more.
//!
//! Order of the steps, and why an interruption anywhere is safe:
//! 1. **row**: in one transaction, the recording's row (with its wrapped
//!    DEK) is deleted and a tombstone and an audit event are written. From
//!    here on the recording cannot be decrypted from the live database.
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
//! Each step is idempotent, so running the sweep again after any failure
//! completes what the failed run left.

mod holds;

pub use holds::{
    Kept, Released, SubjectErasure, erase_subject, hold, move_to_hold, release, rotate,
};

use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::recording::{Recorder, epoch_end};
use crate::store::{RecordingRow, Tombstone};

/// The pseudonym key and function belong to `keys`; kept here too for
/// the callers of the sweep's API.
pub use crate::keys::{PSEUDONYM_KEY_ID, pseudonym};

/// Most recordings handled per batch (the sweep loops until none is due).
const BATCH: i64 = 200;

/// The steps of a sweep, for fault injection in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// After a recording's row was erased, before its blob is deleted.
    AfterRow,
    /// After a recording's blob was deleted.
    AfterBlob,
    /// Before an epoch KEK is destroyed.
    BeforeKek,
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
}

/// One sweep at `now`.
pub async fn sweep(
    rec: &Recorder,
    now: Timestamp,
    dry_run: bool,
    faults: &dyn FaultPoint,
) -> Result<SweepReport, RetentionError> {
    let mut report = SweepReport {
        dry_run,
        ..SweepReport::default()
    };
    loop {
        let due = rec.store.due_recordings(now, BATCH).await?;
        let batch = due.len();
        for row in due {
            report.erased.push(Erased {
                recording_id: row.id.clone(),
                call_id: row.call_id.clone(),
                retention_class: row.retention_class.clone(),
                expired_at: row.expires_at,
            });
            if !dry_run {
                erase_one(rec, &row, now, "expired", faults).await?;
            }
        }
        if dry_run || (batch as i64) < BATCH {
            break;
        }
    }
    report.orphan_blobs = orphan_blobs(rec, dry_run).await?;
    report.keys_destroyed = spent_keys(rec, now, dry_run, faults).await?;
    report.pseudonymised = pseudonymise(rec, now, dry_run).await?;
    Ok(report)
}

/// Replaces the real numbers whose retention has ended; returns how many
/// rows changed (or, in a dry run, would change).
async fn pseudonymise(
    rec: &Recorder,
    now: Timestamp,
    dry_run: bool,
) -> Result<usize, RetentionError> {
    let before = rec.policy.pseudonymise_before(now);
    let due = rec.store.count_pseudonymisable(before).await?.total();
    // No key is created while there is nothing to hash (or in a dry run).
    if dry_run || due == 0 {
        return Ok(due);
    }
    // `epoch_kek` is the key store's get-or-create; this key has no epoch.
    rec.ensure_epoch_kek(PSEUDONYM_KEY_ID)?;
    // A failed keyed hash gives "", which the store refuses as a pseudonym.
    let done = rec
        .store
        .pseudonymise_closed(before, |n| pseudonym(&*rec.keys, n).unwrap_or_default())
        .await?;
    tracing::info!(
        sessions = done.sessions,
        bindings = done.bindings,
        calls = done.calls,
        before = %before.to_rfc3339(),
        "real numbers replaced by pseudonyms"
    );
    Ok(done.total())
}

/// Erases one recording: row (tombstone, audit), then blob.
pub async fn erase_one(
    rec: &Recorder,
    row: &RecordingRow,
    now: Timestamp,
    reason: &str,
    faults: &dyn FaultPoint,
) -> Result<(), RetentionError> {
    let hash = match rec.blobs.read(&row.blob) {
        Ok(bytes) => Some(hex::encode(Sha256::digest(&bytes))),
        Err(crate::recording::blob::BlobError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
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
    rec.store.erase_recording(&tomb, "system:retention").await?;
    faults.at(Step::AfterRow)?;
    rec.blobs.delete(&row.blob)?;
    faults.at(Step::AfterBlob)?;
    tracing::info!(recording = %row.id, class = %row.retention_class, reason, "recording erased");
    Ok(())
}

/// Blobs no recording row names: left by an interrupted erasure.
async fn orphan_blobs(rec: &Recorder, dry_run: bool) -> Result<Vec<String>, RetentionError> {
    let mut orphans = Vec::new();
    for name in rec.blobs.list()? {
        if rec.store.blob_in_use(&name).await? {
            continue;
        }
        // A writer stores its row before it creates its blob, so a blob
        // without a row is one whose erasure was interrupted.
        if !dry_run {
            rec.blobs.delete(&name)?;
        }
        orphans.push(name);
    }
    Ok(orphans)
}

/// Destroys epoch KEKs whose epoch has ended and which wrap no live DEK.
async fn spent_keys(
    rec: &Recorder,
    now: Timestamp,
    dry_run: bool,
    faults: &dyn FaultPoint,
) -> Result<Vec<String>, RetentionError> {
    let mut destroyed = Vec::new();
    for id in rec.keys.list()? {
        let Some((_, end)) = epoch_end(&id) else {
            continue;
        };
        if end > now || rec.store.live_in_epoch(&id).await? > 0 {
            continue;
        }
        if !dry_run {
            faults.at(Step::BeforeKek)?;
            rec.keys.destroy(&id)?;
            tracing::info!(key = %id, "epoch key destroyed");
        }
        destroyed.push(id);
    }
    Ok(destroyed)
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
    for id in rec.keys.list()? {
        let Some((class, ends_at)) = epoch_end(&id) else {
            continue;
        };
        let live = rec.store.live_in_epoch(&id).await?;
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
