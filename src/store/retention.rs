//! Erasure in the database: tombstones, and the rows whose time has come.

use super::recordings::RecordingRow;
use super::{Store, StoreError};
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

impl Store {
    /// Finished recordings whose retention has ended by `now`, oldest first.
    pub async fn due_recordings(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM recordings WHERE expires_at <= $1 AND state <> 'recording' \
               AND held_by IS NULL \
             ORDER BY expires_at LIMIT $2",
        )
        .bind(now.as_millis())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut rows = Vec::with_capacity(ids.len());
        for (id,) in ids {
            if let Some(r) = self.find_recording(&id).await? {
                rows.push(r);
            }
        }
        Ok(rows)
    }

    /// Erases a recording's row in one transaction: the tombstone and the
    /// audit event are written and the row with its wrapped DEK deleted,
    /// all or nothing. Returns `false` if the row was already gone.
    pub async fn erase_recording(&self, t: &Tombstone, actor: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let gone = sqlx::query("DELETE FROM recordings WHERE id = $1")
            .bind(&t.recording_id)
            .execute(&mut *tx)
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
        .execute(&mut *tx)
        .await?;
        super::audit::append(
            &mut tx,
            t.erased_at,
            actor,
            "recording.erase",
            &t.recording_id,
            &format!("reason={} epoch={}", t.reason, t.epoch_id),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
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

    /// Whether any recording row names the blob `name`.
    pub async fn blob_in_use(&self, name: &str) -> Result<bool, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM recordings WHERE blob = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await?;
        Ok(n > 0)
    }
}

impl Store {
    /// Records a new legal hold.
    pub async fn insert_hold(
        &self,
        id: &str,
        reference: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO holds (id, reference, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(reference)
            .bind(now.as_millis())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Marks a hold released.
    pub async fn release_hold_row(&self, id: &str, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE holds SET released_at = $2 WHERE id = $1 AND released_at IS NULL")
            .bind(id)
            .bind(now.as_millis())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Re-points a recording's DEK: wrapped anew under the KEK `epoch_id`,
    /// held by `held_by` (a hold id) or by nobody. One statement, so the row
    /// never names a KEK its wrapped DEK does not belong to.
    pub async fn rewrap_recording(
        &self,
        id: &str,
        epoch_id: &str,
        wrapped_dek: &[u8],
        held_by: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE recordings SET epoch_id = $2, wrapped_dek = $3, held_by = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(epoch_id)
        .bind(wrapped_dek)
        .bind(held_by)
        .execute(self.pool())
        .await?;
        if let Some(hold) = held_by {
            sqlx::query(
                "INSERT INTO held_recordings (hold_id, recording_id) VALUES ($1, $2) \
                 ON CONFLICT (hold_id, recording_id) DO NOTHING",
            )
            .bind(hold)
            .bind(id)
            .execute(self.pool())
            .await?;
        }
        Ok(())
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
