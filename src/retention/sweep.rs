//! One sweep: finish interrupted hold operations, erase what is due,
//! delete leftover blobs, destroy spent KEKs, pseudonymise old numbers.
//!
//! Every item is tried on its own: a failure is logged and reported in
//! [`SweepReport::failures`] and the sweep goes on with the next item; the
//! item is still there for the next sweep. The due recordings are read a
//! page at a time after a cursor (`expires_at`, `id`), so a recording that
//! failed is not read again in the same sweep, and never blocks the ones
//! after it. An injected fault ([`RetentionError::Injected`]) is a crash
//! stand-in and stops the sweep where it is.

use crate::audit::Actor;
use crate::clock::Timestamp;
use crate::keys::epoch_end;
use crate::recording::Recorder;
use crate::store::BLOB_LOOKUP_BATCH;

use super::{
    Erased, FaultPoint, Item, PSEUDONYM_KEY_ID, RetentionError, Step, SweepFailure, SweepReport,
    apply_hold, erase_row, release,
};

/// Most recordings read per page.
const BATCH: i64 = 200;

/// One sweep at `now`. `Err` only if the database fails (or a test's
/// fault point stops it); a failure of one item is in the report.
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
    // Every node sweeps; one at a time does the work (a dry run changes
    // nothing and needs no turn).
    let lock = match dry_run {
        true => None,
        false => match rec.store().try_job_lock(SWEEP_JOB).await? {
            Some(lock) => Some(lock),
            None => {
                report.skipped = true;
                return Ok(report);
            }
        },
    };
    let swept = sweep_steps(rec, now, dry_run, faults, &mut report).await;
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        tracing::warn!(error = %e, "retention sweep lock release failed; the database drops it with the connection");
    }
    swept?;
    if !report.failures.is_empty() {
        tracing::warn!(
            failures = report.failures.len(),
            "retention sweep left items it could not finish; the next sweep tries them again"
        );
    }
    Ok(report)
}

/// The job lock every node's sweep takes ([`crate::store::Store::try_job_lock`]).
const SWEEP_JOB: &str = "retention-sweep";

/// The steps of a sweep, in order.
async fn sweep_steps(
    rec: &Recorder,
    now: Timestamp,
    dry_run: bool,
    faults: &dyn FaultPoint,
    report: &mut SweepReport,
) -> Result<(), RetentionError> {
    finish_holds(rec, now, dry_run, faults, report).await?;
    erase_due(rec, now, dry_run, faults, report).await?;
    orphan_blobs(rec, dry_run, report).await?;
    spent_keys(rec, now, dry_run, faults, report).await?;
    report.pseudonymised = pseudonymise(rec, now, dry_run).await?;
    Ok(())
}

/// Notes `result`'s failure in `report` (and the log) and goes on; an
/// injected fault stops the sweep instead, as the crash it stands for.
fn isolate<T>(
    result: Result<T, RetentionError>,
    item: Item,
    report: &mut SweepReport,
) -> Result<Option<T>, RetentionError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e @ RetentionError::Injected(_)) => Err(e),
        Err(e) => {
            tracing::warn!(%item, error = %e, "retention: could not finish; the next sweep retries");
            report.failures.push(SweepFailure {
                item,
                error: e.to_string(),
            });
            Ok(None)
        }
    }
}

/// Completes hold releases that were interrupted (a resolve whose release
/// failed), then hold placements that were (DEKs not yet under the hold's
/// KEK).
async fn finish_holds(
    rec: &Recorder,
    now: Timestamp,
    dry_run: bool,
    faults: &dyn FaultPoint,
    report: &mut SweepReport,
) -> Result<(), RetentionError> {
    for hold in rec.store().holds_to_release().await? {
        if dry_run {
            report.holds_released.push(hold);
            continue;
        }
        let done = release(rec, &hold, now, &Actor::RETENTION, faults).await;
        if isolate(done, Item::Hold(hold.clone()), report)?.is_some() {
            report.holds_released.push(hold);
        }
    }
    for hold in rec.store().holds_to_apply().await? {
        if dry_run {
            report.holds_applied.push(hold);
            continue;
        }
        let done = apply_hold(rec, &hold, faults).await;
        if isolate(done, Item::Hold(hold.clone()), report)?.is_some() {
            report.holds_applied.push(hold);
        }
    }
    Ok(())
}

/// Erases every due recording, a page at a time.
async fn erase_due(
    rec: &Recorder,
    now: Timestamp,
    dry_run: bool,
    faults: &dyn FaultPoint,
    report: &mut SweepReport,
) -> Result<(), RetentionError> {
    let mut cursor: Option<(Timestamp, String)> = None;
    loop {
        let after = cursor.as_ref().map(|(t, id)| (*t, id.as_str()));
        let due = rec.store().due_recordings(now, after, BATCH).await?;
        let Some(last) = due.last() else {
            return Ok(());
        };
        // Due rows always have an expiry; the cursor moves past this page.
        cursor = Some((last.expires_at.unwrap_or(now), last.id.clone()));
        for row in due {
            let erased = Erased {
                recording_id: row.id.clone(),
                call_id: row.call_id.clone(),
                retention_class: row.retention_class.clone(),
                expired_at: row.expires_at,
            };
            if dry_run {
                report.erased.push(erased);
                continue;
            }
            let done = erase_row(rec, &row, now, "expired").await;
            // `false`: erased by someone else, or held, since it was read.
            if isolate(done, Item::Recording(row.id.clone()), report)? != Some(true) {
                continue;
            }
            report.erased.push(erased);
            faults.at(Step::AfterRow)?;
            // The row is gone: if the blob stays, the next sweep's
            // leftover-blob step deletes it.
            isolate(
                rec.delete_blob(&row.blob).await.map_err(Into::into),
                Item::Blob(row.blob.clone()),
                report,
            )?;
            faults.at(Step::AfterBlob)?;
        }
    }
}

/// Deletes blobs no recording row names: left by an interrupted erasure.
/// The names are looked up [`BLOB_LOOKUP_BATCH`] at a time.
async fn orphan_blobs(
    rec: &Recorder,
    dry_run: bool,
    report: &mut SweepReport,
) -> Result<(), RetentionError> {
    let names = rec.blob_names().await?;
    for batch in names.chunks(BLOB_LOOKUP_BATCH) {
        let in_use = rec.store().blobs_in_use(batch).await?;
        // A writer stores its row before it creates its blob, so a blob
        // without a row is one whose erasure was interrupted.
        for name in batch.iter().filter(|n| !in_use.contains(*n)) {
            if !dry_run {
                let deleted = rec.delete_blob(name).await.map_err(Into::into);
                if isolate(deleted, Item::Blob(name.clone()), report)?.is_none() {
                    continue;
                }
            }
            report.orphan_blobs.push(name.clone());
        }
    }
    Ok(())
}

/// How long after the last moment a new recording could pick an epoch its
/// KEK is kept anyway: a writer that picked it has stored its row long
/// before (it does so within milliseconds of picking).
const ASSIGNMENT_GRACE: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether no recording can be assigned the epoch of `class` ending at
/// `end` from `now` on. A recording starting at `s` is assigned the epoch
/// holding `s + longest call + retention` (`RecordingPolicy::epoch_for`),
/// and when it ends at `e` it moves to the epoch holding `e + retention`
/// (`RecordingPolicy::epoch_of_expiry`); both are after `now + retention`.
/// Once that has passed `end`, the KEK only wraps what is stored already.
fn no_longer_assigned(rec: &Recorder, class: &str, end: Timestamp, now: Timestamp) -> bool {
    let reach = rec.policy().period_of(class);
    now.saturating_add(reach) >= end.saturating_add(ASSIGNMENT_GRACE)
}

/// Destroys the epoch KEKs that wrap no live DEK and that either have
/// ended or can no longer be assigned to a new recording (the start
/// epochs of finished recordings, whose DEKs moved to the epochs of their
/// expiry: an old backup holding the first wrapping is then useless too),
/// and the KEKs of released holds that were left behind.
async fn spent_keys(
    rec: &Recorder,
    now: Timestamp,
    dry_run: bool,
    faults: &dyn FaultPoint,
    report: &mut SweepReport,
) -> Result<(), RetentionError> {
    for id in rec.key_ids()? {
        let spent = match epoch_end(&id) {
            Some((class, end)) => end <= now || no_longer_assigned(rec, &class, end, now),
            // A hold's KEK outlives its release only if the release was
            // interrupted between destroying it and recording that.
            None if id.starts_with("hold-") => rec
                .store()
                .hold_state(&id)
                .await?
                .is_some_and(|h| h.released_at.is_some()),
            None => false,
        };
        if !spent || rec.store().live_in_epoch(&id).await? > 0 {
            continue;
        }
        if !dry_run {
            faults.at(Step::BeforeKek)?;
            let destroyed = rec.destroy_key(&id).map_err(Into::into);
            if isolate(destroyed, Item::Key(id.clone()), report)?.is_none() {
                continue;
            }
            tracing::info!(key = %id, "epoch key destroyed");
        }
        report.keys_destroyed.push(id);
    }
    Ok(())
}

/// Replaces the real numbers whose retention has ended; returns how many
/// rows changed (or, in a dry run, would change).
async fn pseudonymise(
    rec: &Recorder,
    now: Timestamp,
    dry_run: bool,
) -> Result<usize, RetentionError> {
    let before = rec.policy().pseudonymise_before(now);
    let due = rec.store().count_pseudonymisable(before).await?.total();
    // No key is created while there is nothing to hash (or in a dry run).
    if dry_run || due == 0 {
        return Ok(due);
    }
    // `epoch_kek` is the key store's get-or-create; this key has no epoch.
    rec.ensure_key(PSEUDONYM_KEY_ID)?;
    // A failed keyed hash gives "", which the store refuses as a pseudonym.
    let done = rec
        .store()
        .pseudonymise_closed(before, |n| rec.pseudonym(n).unwrap_or_default())
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
