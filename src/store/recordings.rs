//! Recording rows (the wrapped DEK and where the encrypted blob is) and the
//! access events that touch them.

use super::records::{RecordingFailure, RecordingState};
use super::{Store, StoreError, Tx, WebhookEvent};
use crate::clock::Timestamp;
use crate::media::g711::Codec;

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
    /// The stored payload's codec; `None` for a recording that failed
    /// because its codec cannot be stored (stored as `unsupported`).
    pub codec: Option<Codec>,
    /// Where it is in its life (see the README's table of recording states).
    pub state: RecordingState,
    /// Why it is `failed`, else `None`.
    pub failure: Option<RecordingFailure>,
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
            .field("failure", &self.failure)
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
    Option<String>,
);

pub(super) const COLUMNS: &str = "id, call_id, session_id, retention_class, epoch_id, wrapped_dek, blob, \
     codec, state, started_at, ended_at, duration_ms, expires_at, held_by, failure";

/// The text stored for a recording's codec.
pub(super) fn codec_text(codec: Option<Codec>) -> &'static str {
    codec.map_or(UNSUPPORTED, Codec::as_str)
}

/// What is stored as the codec of a recording whose codec cannot be stored.
const UNSUPPORTED: &str = "unsupported";

fn corrupt(what: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table: "recordings",
        what: what.to_string(),
    }
}

pub(super) fn row(r: Row) -> Result<RecordingRow, StoreError> {
    let codec = match r.7.as_str() {
        UNSUPPORTED => None,
        name => Some(Codec::from_name(name).ok_or_else(|| corrupt(format!("codec '{name}'")))?),
    };
    let state = r.8.parse().map_err(corrupt)?;
    let failure = r.14.map(|f| f.parse()).transpose().map_err(corrupt)?;
    Ok(RecordingRow {
        id: r.0,
        call_id: r.1,
        session_id: r.2,
        retention_class: r.3,
        epoch_id: r.4,
        wrapped_dek: r.5,
        blob: r.6,
        codec,
        state,
        started_at: Timestamp::from_millis(r.9),
        ended_at: r.10.map(Timestamp::from_millis),
        duration_ms: r.11,
        expires_at: r.12.map(Timestamp::from_millis),
        held_by: r.13,
        failure,
    })
}

/// How a recording ended: what [`Store::finish_recording`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingEnd {
    /// `Complete`, `Truncated` or `Failed`.
    pub state: RecordingState,
    /// Why it failed, for `Failed`.
    pub failure: Option<RecordingFailure>,
    /// When it ended.
    pub ended_at: Timestamp,
    /// Audio written, when known.
    pub duration_ms: Option<i64>,
    /// When its retention ends.
    pub expires_at: Timestamp,
}

impl Store {
    /// Stores a new recording in state `recording`, before its blob exists,
    /// and links its call record to it, in one transaction.
    pub async fn insert_recording(&self, r: &RecordingRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_recording_in(&mut tx, r).await?;
        tx.commit().await
    }

    /// Records how a recording ended. Only a recording still in state
    /// `recording` ends: `false` if it had already (e.g. truncated by a
    /// reconciliation that thought its writer gone).
    /// Its `recording.completed` event goes into the same transaction.
    pub async fn finish_recording(&self, id: &str, end: &RecordingEnd) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done = finish_recording_in(&mut tx, id, end).await?;
        tx.commit().await?;
        Ok(done)
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
        r.map(row).transpose()
    }

    /// This node's recordings (and unowned ones from before nodes existed)
    /// in state `recording` that `is_live` says no writer is writing any
    /// more; other nodes' are theirs to reconcile (a process that died, a writer that could not
    /// finish): they become `truncated` (their blobs decrypt up to the last
    /// synced chunk), ended and expiring as `ends(row)` says (ended,
    /// expires). Returns the rows it truncated.
    pub async fn truncate_unfinished_recordings(
        &self,
        is_live: impl Fn(&str) -> bool,
        ends: impl Fn(&RecordingRow) -> (Timestamp, Timestamp),
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM recordings \
             WHERE state = 'recording' AND (node = $1 OR node = '')"
        ));
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(&*self.node)
            .fetch_all(self.pool())
            .await?;
        let mut truncated = Vec::new();
        for r in rows.into_iter().map(row).collect::<Result<Vec<_>, _>>()? {
            if is_live(&r.id) {
                continue;
            }
            let (ended_at, expires_at) = ends(&r);
            let end = RecordingEnd {
                state: RecordingState::Truncated,
                failure: None,
                ended_at,
                duration_ms: None,
                expires_at,
            };
            if self.finish_recording(&r.id, &end).await? {
                truncated.push(r);
            }
        }
        Ok(truncated)
    }
}

/// Inserts `r` and links its call record to it, in `tx`.
pub(super) async fn insert_recording_in(tx: &mut Tx, r: &RecordingRow) -> Result<(), StoreError> {
    super::call_batch::insert_recordings(tx, &[r]).await
}

/// [`Store::finish_recording`] in `tx`.
pub(super) async fn finish_recording_in(
    tx: &mut Tx,
    id: &str,
    end: &RecordingEnd,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE recordings SET state = $2, failure = $3, ended_at = $4, duration_ms = $5, \
                expires_at = $6 WHERE id = $1 AND state = 'recording'",
    )
    .bind(id)
    .bind(end.state.as_str())
    .bind(end.failure.map(RecordingFailure::as_str))
    .bind(end.ended_at.as_millis())
    .bind(end.duration_ms)
    .bind(end.expires_at.as_millis())
    .execute(tx.conn())
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    report_recording_completed(tx, id, end).await?;
    Ok(true)
}

/// Writes recording `id`'s `recording.completed` event in `tx`, if the
/// webhooks want it: its end (`end`) has just taken effect.
pub(super) async fn report_recording_completed(
    tx: &mut Tx,
    id: &str,
    end: &RecordingEnd,
) -> Result<(), StoreError> {
    if tx.webhooks.wants("recording.completed") {
        let (call_id, session_id): (String, String) =
            sqlx::query_as("SELECT call_id, session_id FROM recordings WHERE id = $1")
                .bind(id)
                .fetch_one(tx.conn())
                .await?;
        let event = WebhookEvent::RecordingCompleted {
            id,
            call_id: &call_id,
            session_id: &session_id,
            state: end.state,
            duration_ms: end.duration_ms,
        };
        tx.enqueue_webhook(&event, end.ended_at).await?;
    }
    Ok(())
}
