//! Erasure and legal holds in the database: tombstones, the rows whose
//! time has come, holds and the recordings they keep.
//!
//! A recording's row names the KEK that wraps its DEK (`epoch_id`: an
//! epoch's, or a hold's) and the hold that keeps it (`held_by`). Changes to
//! those two columns are compare-and-set: they apply only if the row still
//! has the values the caller read, so two operations racing on one
//! recording (a sweep and a dispute, two disputes) never overwrite each
//! other's wrapped DEK; the loser sees `false` and reads the row again.

use std::collections::HashSet;

use super::recordings::{COLUMNS, RecordingRow, Row, row};
use super::{Store, StoreError, Tx};
use crate::clock::Timestamp;

/// What remains of an erased recording: ids and times only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tombstone {
    /// The erased recording.
    pub recording_id: String,
    /// Its call.
    pub call_id: String,
    /// Its session.
    pub session_id: String,
    /// Its retention class.
    pub retention_class: String,
    /// The epoch KEK that wrapped its DEK.
    pub epoch_id: String,
    /// When recording started.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// When its retention ended.
    pub expires_at: Option<Timestamp>,
    /// When it was erased.
    pub erased_at: Timestamp,
    /// `expired` or `subject-request`.
    pub reason: String,
    /// SHA-256 of the encrypted blob, hex, if the blob still existed.
    pub ciphertext_sha256: Option<String>,
}

type TombRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    String,
    Option<String>,
);

/// A legal hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    /// `hold-…`, also the id of its KEK.
    pub id: String,
    /// The ticket it serves.
    pub reference: String,
    /// When it was placed.
    pub created_at: Timestamp,
    /// When its release was asked for (its dispute resolved), if it was.
    pub release_requested_at: Option<Timestamp>,
    /// When its release completed (its KEK destroyed), if it has.
    pub released_at: Option<Timestamp>,
}

/// The blob names looked up per query by [`Store::blobs_in_use`].
pub const BLOB_LOOKUP_BATCH: usize = 500;

impl Store {
    /// Finished, unheld recordings whose retention has ended by `now`,
    /// oldest first, after `after` (the `(expires_at, id)` of the last row
    /// of the previous page), at most `limit`. One indexed range read
    /// (`recordings_due`).
    pub async fn due_recordings(
        &self,
        now: Timestamp,
        after: Option<(Timestamp, &str)>,
        limit: i64,
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let (after_at, after_id) = after.map_or((i64::MIN, ""), |(t, id)| (t.as_millis(), id));
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} {DUE_SQL}"));
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(now.as_millis())
            .bind(after_at)
            .bind(after_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(row).collect()
    }

    /// How many recordings [`Store::due_recordings`] would return at `now`.
    pub async fn count_due(&self, now: Timestamp) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM recordings WHERE expires_at <= $1 \
               AND state IN ('complete', 'truncated', 'failed') AND held_by IS NULL",
        )
        .bind(now.as_millis())
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }

    /// The tombstone of a recording, by recording id or call id.
    pub async fn find_tombstone(&self, id: &str) -> Result<Option<Tombstone>, StoreError> {
        let r: Option<TombRow> = sqlx::query_as(
            "SELECT recording_id, call_id, session_id, retention_class, epoch_id, started_at, \
                    ended_at, expires_at, erased_at, reason, ciphertext_sha256 \
             FROM tombstones WHERE recording_id = $1 OR call_id = $1 ORDER BY erased_at DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let ts = Timestamp::from_millis;
        Ok(r.map(|r| Tombstone {
            recording_id: r.0,
            call_id: r.1,
            session_id: r.2,
            retention_class: r.3,
            epoch_id: r.4,
            started_at: ts(r.5),
            ended_at: r.6.map(ts),
            expires_at: r.7.map(ts),
            erased_at: ts(r.8),
            reason: r.9,
            ciphertext_sha256: r.10,
        }))
    }

    /// Recordings (of any state) whose DEK the KEK `epoch_id` still wraps.
    pub async fn live_in_epoch(&self, epoch_id: &str) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE epoch_id = $1")
            .bind(epoch_id)
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }

    /// Which of `names` (at most [`BLOB_LOOKUP_BATCH`]) a recording row
    /// names: one indexed query (`recordings_by_blob`) for the batch.
    pub async fn blobs_in_use(&self, names: &[String]) -> Result<HashSet<String>, StoreError> {
        if names.is_empty() {
            return Ok(HashSet::new());
        }
        // Only placeholders are formatted into the SQL; the names are bound.
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT blob FROM recordings WHERE blob IN ({})",
            placeholders.join(", ")
        ));
        let mut q = sqlx::query_as::<_, (String,)>(sql);
        for n in names {
            q = q.bind(n);
        }
        let rows = q.fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(|(b,)| b).collect())
    }
}

/// The due-recordings query after its column list; `$1` now, `$2`/`$3`
/// the cursor, `$4` the limit. Its `WHERE` repeats the partial index's.
pub(super) const DUE_SQL: &str = "FROM recordings \
     WHERE expires_at <= $1 AND state IN ('complete', 'truncated', 'failed') AND held_by IS NULL \
       AND (expires_at, id) > ($2, $3) \
     ORDER BY expires_at, id LIMIT $4";

impl Tx {
    /// Erases a recording's row: deletes it (and with it the wrapped DEK)
    /// and writes its tombstone, provided it is still held by `held_by`
    /// (`None`: held by nobody), so that a recording a dispute has just put
    /// under a hold is not erased. `false` if it was already gone or its
    /// hold changed.
    pub async fn erase_recording(
        &mut self,
        t: &Tombstone,
        held_by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let gone = sqlx::query(
            "DELETE FROM recordings WHERE id = $1 AND COALESCE(held_by, '') = COALESCE($2, '')",
        )
        .bind(&t.recording_id)
        .bind(held_by)
        .execute(self.conn())
        .await?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO tombstones (recording_id, call_id, session_id, retention_class, epoch_id, \
                started_at, ended_at, expires_at, erased_at, reason, ciphertext_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&t.recording_id)
        .bind(&t.call_id)
        .bind(&t.session_id)
        .bind(&t.retention_class)
        .bind(&t.epoch_id)
        .bind(t.started_at.as_millis())
        .bind(t.ended_at.map(Timestamp::as_millis))
        .bind(t.expires_at.map(Timestamp::as_millis))
        .bind(t.erased_at.as_millis())
        .bind(&t.reason)
        .bind(t.ciphertext_sha256.as_deref())
        .execute(self.conn())
        .await?;
        let event = super::WebhookEvent::RecordingErased {
            id: &t.recording_id,
            call_id: &t.call_id,
            session_id: &t.session_id,
            reason: &t.reason,
        };
        self.enqueue_webhook(&event, t.erased_at).await?;
        Ok(true)
    }

    /// Records a new legal hold.
    pub async fn insert_hold(
        &mut self,
        id: &str,
        reference: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO holds (id, reference, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(reference)
            .bind(now.as_millis())
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Puts recording `recording_id` under hold `hold_id` (taking it from
    /// an older hold, if it had one). From now on no sweep erases it, and
    /// the KEK that wraps its DEK outlives its epoch because a row names
    /// it. `false` if the recording is gone.
    pub async fn hold_recording(
        &mut self,
        hold_id: &str,
        recording_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE recordings SET held_by = $1 WHERE id = $2")
            .bind(hold_id)
            .bind(recording_id)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO held_recordings (hold_id, recording_id) VALUES ($1, $2) \
             ON CONFLICT (hold_id, recording_id) DO NOTHING",
        )
        .bind(hold_id)
        .bind(recording_id)
        .execute(self.conn())
        .await?;
        Ok(true)
    }

    /// Asks for hold `id` to be released; `false` if that was asked before.
    pub async fn request_hold_release(
        &mut self,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE holds SET release_requested_at = $2 \
             WHERE id = $1 AND release_requested_at IS NULL",
        )
        .bind(id)
        .bind(now.as_millis())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks hold `id` released; `false` if it was already.
    pub async fn mark_hold_released(
        &mut self,
        id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE holds SET released_at = $2 WHERE id = $1 AND released_at IS NULL")
                .bind(id)
                .bind(now.as_millis())
                .execute(self.conn())
                .await?;
        Ok(done.rows_affected() == 1)
    }
}

type HoldRow = (String, String, i64, Option<i64>, Option<i64>);

impl Store {
    /// A legal hold.
    pub async fn hold_state(&self, id: &str) -> Result<Option<HoldState>, StoreError> {
        let r: Option<HoldRow> = sqlx::query_as(
            "SELECT id, reference, created_at, release_requested_at, released_at \
             FROM holds WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let ts = Timestamp::from_millis;
        Ok(r.map(|r| HoldState {
            id: r.0,
            reference: r.1,
            created_at: ts(r.2),
            release_requested_at: r.3.map(ts),
            released_at: r.4.map(ts),
        }))
    }

    /// Holds in force with recordings whose DEK has not moved under the
    /// hold's KEK yet (placing them was interrupted).
    pub async fn holds_to_apply(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT h.id FROM holds h JOIN recordings r ON r.held_by = h.id \
             WHERE h.release_requested_at IS NULL AND h.released_at IS NULL \
               AND r.epoch_id <> h.id ORDER BY h.id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Holds whose release was asked for and has not completed.
    pub async fn holds_to_release(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM holds WHERE release_requested_at IS NOT NULL AND released_at IS NULL \
             ORDER BY release_requested_at, id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Recordings hold `hold_id` keeps or whose DEK its KEK wraps.
    pub async fn recordings_of_hold(&self, hold_id: &str) -> Result<Vec<RecordingRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM recordings WHERE held_by = $1 OR epoch_id = $1 ORDER BY id"
        ));
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(hold_id)
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(row).collect()
    }

    /// Recordings hold `hold_id` keeps whose DEK another KEK still wraps.
    pub async fn recordings_entering_hold(
        &self,
        hold_id: &str,
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM recordings WHERE held_by = $1 AND epoch_id <> $1 ORDER BY id"
        ));
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(hold_id)
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(row).collect()
    }

    /// Re-points recording `from` (as the caller read it): its DEK now
    /// wrapped as `wrapped_dek` under the KEK `epoch_id`, held by
    /// `held_by`. Compare-and-set: `false`, changing nothing, if the row no
    /// longer has `from`'s KEK and hold (someone moved it meanwhile) or is
    /// gone. One transaction with the hold's history row.
    pub async fn move_recording_key(
        &self,
        from: &RecordingRow,
        epoch_id: &str,
        wrapped_dek: &[u8],
        held_by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE recordings SET epoch_id = $4, wrapped_dek = $5, held_by = $6 \
             WHERE id = $1 AND epoch_id = $2 AND COALESCE(held_by, '') = COALESCE($3, '')",
        )
        .bind(&from.id)
        .bind(&from.epoch_id)
        .bind(from.held_by.as_deref())
        .bind(epoch_id)
        .bind(wrapped_dek)
        .bind(held_by)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(hold) = held_by {
            sqlx::query(
                "INSERT INTO held_recordings (hold_id, recording_id) VALUES ($1, $2) \
                 ON CONFLICT (hold_id, recording_id) DO NOTHING",
            )
            .bind(hold)
            .bind(&from.id)
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Re-points recording `id`'s DEK from the KEK `from` to `to`, only if
    /// it is still under `from` and held by nobody; `true` if it moved.
    pub async fn move_unheld_dek(
        &self,
        id: &str,
        from: &str,
        to: &str,
        wrapped_dek: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE recordings SET epoch_id = $3, wrapped_dek = $4 \
             WHERE id = $1 AND epoch_id = $2 AND held_by IS NULL",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(wrapped_dek)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ids of the recordings whose DEK the KEK `epoch_id` wraps.
    pub async fn recordings_in_epoch(&self, epoch_id: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM recordings WHERE epoch_id = $1 ORDER BY id")
                .bind(epoch_id)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Ids of the recordings of the sessions in which `number` took part.
    pub async fn recordings_of_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT r.id FROM recordings r JOIN sessions s ON s.id = r.session_id \
             WHERE s.a_number = $1 OR s.b_number = $1 ORDER BY r.started_at",
        )
        .bind(number)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Ids of the sessions in which `number` took part, oldest first.
    pub async fn sessions_of_number(&self, number: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM sessions WHERE a_number = $1 OR b_number = $1 ORDER BY created_at",
        )
        .bind(number)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
