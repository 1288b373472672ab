//! Recording rows (the wrapped DEK and where the encrypted blob is) and the
//! access events that touch them.

use super::{Store, StoreError};
use crate::clock::Timestamp;

/// A recording as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordingRow {
    /// UUID (text), also written into the CREC header.
    pub id: String,
    /// The call record it belongs to.
    pub call_id: String,
    /// The session of that call.
    pub session_id: String,
    /// Retention class.
    pub retention_class: String,
    /// The KEK (in the key store) that wraps the DEK.
    pub epoch_id: String,
    /// The DEK wrapped by that KEK; useless without it.
    pub wrapped_dek: Vec<u8>,
    /// Name of the encrypted blob.
    pub blob: String,
    /// `PCMU` or `PCMA`.
    pub codec: String,
    /// `recording`, `complete` or `truncated`.
    pub state: String,
    /// When recording started (the answer).
    pub started_at: Timestamp,
    /// When it ended, once it has.
    pub ended_at: Option<Timestamp>,
    /// Audio length, once known.
    pub duration_ms: Option<i64>,
    /// When retention ends, once the call has ended.
    pub expires_at: Option<Timestamp>,
    /// The legal hold keeping it, if any.
    pub held_by: Option<String>,
}

impl std::fmt::Debug for RecordingRow {
    /// Without the wrapped DEK: it is not secret on its own, but it has no
    /// business in logs either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRow")
            .field("id", &self.id)
            .field("call_id", &self.call_id)
            .field("epoch_id", &self.epoch_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

pub(super) type Row = (
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

pub(super) const COLUMNS: &str = "id, call_id, session_id, retention_class, epoch_id, wrapped_dek, blob, \
     codec, state, started_at, ended_at, duration_ms, expires_at, held_by";

pub(super) fn row(r: Row) -> RecordingRow {
    RecordingRow {
        id: r.0,
        call_id: r.1,
        session_id: r.2,
        retention_class: r.3,
        epoch_id: r.4,
        wrapped_dek: r.5,
        blob: r.6,
        codec: r.7,
        state: r.8,
        started_at: Timestamp::from_millis(r.9),
        ended_at: r.10.map(Timestamp::from_millis),
        duration_ms: r.11,
        expires_at: r.12.map(Timestamp::from_millis),
        held_by: r.13,
    }
}

impl Store {
    /// Stores a new recording in state `recording`, before its blob exists,
    /// and links its call record to it, in one transaction.
    pub async fn insert_recording(&self, r: &RecordingRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO recordings (id, call_id, session_id, retention_class, epoch_id, \
                wrapped_dek, blob, codec, state, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'recording', $9)",
        )
        .bind(&r.id)
        .bind(&r.call_id)
        .bind(&r.session_id)
        .bind(&r.retention_class)
        .bind(&r.epoch_id)
        .bind(&r.wrapped_dek)
        .bind(&r.blob)
        .bind(&r.codec)
        .bind(r.started_at.as_millis())
        .execute(tx.conn())
        .await?;
        sqlx::query("UPDATE calls SET recording_id = $2 WHERE id = $1")
            .bind(&r.call_id)
            .bind(&r.id)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }

    /// Records how a recording ended.
    pub async fn finish_recording(
        &self,
        id: &str,
        state: &str,
        ended_at: Timestamp,
        duration_ms: i64,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE recordings SET state = $2, ended_at = $3, duration_ms = $4, expires_at = $5 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(ended_at.as_millis())
        .bind(duration_ms)
        .bind(expires_at.as_millis())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A recording by its id, or the latest recording of a call by the
    /// call's id.
    pub async fn find_recording(&self, id: &str) -> Result<Option<RecordingRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM recordings WHERE id = $1 OR call_id = $1 \
             ORDER BY started_at DESC LIMIT 1"
        ));
        let r: Option<Row> = sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(r.map(row))
    }

    /// Recordings left in state `recording` by a process that died: they
    /// are `truncated` now (their blobs decrypt up to the last flushed
    /// chunk), ended at `at`, and expire `period_of(class)` after that.
    /// Returns them.
    pub async fn truncate_unfinished_recordings(
        &self,
        at: Timestamp,
        period_of: impl Fn(&str) -> std::time::Duration,
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM recordings WHERE state = 'recording'"
        ));
        let rows: Vec<Row> = sqlx::query_as(sql).fetch_all(self.pool()).await?;
        let rows: Vec<RecordingRow> = rows.into_iter().map(row).collect();
        for r in &rows {
            let expires = at.saturating_add(period_of(&r.retention_class));
            sqlx::query(
                "UPDATE recordings SET state = 'truncated', ended_at = $2, expires_at = $3 \
                 WHERE id = $1 AND state = 'recording'",
            )
            .bind(&r.id)
            .bind(at.as_millis())
            .bind(expires.as_millis())
            .execute(self.pool())
            .await?;
        }
        Ok(rows)
    }
}
