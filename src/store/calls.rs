//! Call records (CDRs). The SIP layer writes them; the API reads them.

use super::records::{CallResult, HangupSide};
use super::webhooks::WebhookEvent;
use super::{Store, StoreError, Tx, parse_number, parse_party};
use crate::clock::Timestamp;
use crate::phone::{E164, PartyNumber};

/// One call as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// `cal_…`.
    pub id: String,
    /// The session it was routed through; `None` for rejected calls.
    pub session_id: Option<String>,
    /// `a_to_b`, `b_to_a` or `unrouted`.
    pub direction: String,
    /// The caller's real number, or its pseudonym once the personal-data
    /// retention period has passed; `None` when the call came without one.
    pub caller: Option<PartyNumber>,
    /// The proxy number dialled.
    pub dialled: E164,
    /// When the INVITE arrived.
    pub invite_at: Timestamp,
    /// When the callee started ringing.
    pub ring_at: Option<Timestamp>,
    /// When the callee answered.
    pub answer_at: Option<Timestamp>,
    /// When the call ended.
    pub end_at: Option<Timestamp>,
    /// How it ended, once it has.
    pub result: Option<CallResult>,
    /// The final SIP status given to the caller.
    pub sip_status: Option<i64>,
    /// Who hung up, when anyone did.
    pub hangup_side: Option<HangupSide>,
    /// The recording of the call, if any.
    pub recording_id: Option<String>,
    /// Why the call was refused or ended by ansim itself, when the result
    /// alone does not say (`no-caller-number`; `out-of-session`,
    /// `out-of-session-announced`, `out-of-session-forwarded`; `session-expired`,
    /// `session-refresh-failed`, `dialog-probe-failed`, `no-answer-in-ack`,
    /// `no-offer-in-2xx`).
    pub reason: Option<String>,
    /// The node that handled the call (`[node] id`); `""` for calls from
    /// before nodes existed.
    pub node: String,
}

type CallRow = (
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// One call record by id.
const CALL_SQL: &str = "SELECT id, session_id, direction, caller, dialled, invite_at, ring_at, \
        answer_at, end_at, result, sip_status, hangup_side, recording_id, reason, node \
     FROM calls WHERE id = $1";

impl Store {
    /// The calls of a session, oldest first.
    pub async fn list_calls(&self, session_id: &str) -> Result<Vec<CallRecord>, StoreError> {
        let rows: Vec<CallRow> = sqlx::query_as(
            "SELECT id, session_id, direction, caller, dialled, invite_at, ring_at, answer_at, \
                    end_at, result, sip_status, hangup_side, recording_id, reason, node \
             FROM calls WHERE session_id = $1 ORDER BY invite_at, id",
        )
        .bind(session_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(call).collect()
    }

    /// A page of a session's calls in `(invite_at, id)` order, after the
    /// call `after` (its `invite_at` in ms and id), at most `limit`.
    pub async fn list_calls_page(
        &self,
        session_id: &str,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let (at, id) = after.unwrap_or((i64::MIN, ""));
        let rows: Vec<CallRow> = sqlx::query_as(
            "SELECT id, session_id, direction, caller, dialled, invite_at, ring_at, answer_at, \
                    end_at, result, sip_status, hangup_side, recording_id, reason, node \
             FROM calls WHERE session_id = $1 AND (invite_at > $2 OR (invite_at = $2 AND id > $3)) \
             ORDER BY invite_at, id LIMIT $4",
        )
        .bind(session_id)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(call).collect()
    }

    /// One call record.
    pub async fn get_call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallRow> = sqlx::query_as(CALL_SQL)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(call).transpose()
    }
}

fn corrupt(e: super::UnknownValue) -> StoreError {
    StoreError::Corrupt {
        table: "calls",
        what: e.to_string(),
    }
}

fn call(r: CallRow) -> Result<CallRecord, StoreError> {
    let ts = |v: Option<i64>| v.map(Timestamp::from_millis);
    Ok(CallRecord {
        id: r.0,
        session_id: r.1,
        direction: r.2,
        // A call without a caller's number is stored with an empty one.
        caller: match r.3.as_str() {
            "" => None,
            raw => Some(parse_party("calls", raw)?),
        },
        dialled: parse_number("calls", &r.4)?,
        invite_at: Timestamp::from_millis(r.5),
        ring_at: ts(r.6),
        answer_at: ts(r.7),
        end_at: ts(r.8),
        result: r.9.map(|v| v.parse()).transpose().map_err(corrupt)?,
        sip_status: r.10,
        hangup_side: r.11.map(|v| v.parse()).transpose().map_err(corrupt)?,
        recording_id: r.12,
        reason: r.13,
        node: r.14,
    })
}

/// The start of a call record, written when the INVITE has been routed (or
/// refused).
#[derive(Debug, Clone)]
pub struct NewCall {
    /// `cal_…`.
    pub id: String,
    /// The session it belongs to; `None` for refused calls.
    pub session_id: Option<String>,
    /// `a_to_b`, `b_to_a` or `unrouted`.
    pub direction: &'static str,
    /// The caller's real number; `None` when the INVITE had none (stored
    /// as an empty text, which pseudonymisation leaves alone).
    pub caller: Option<E164>,
    /// The proxy number dialled.
    pub dialled: E164,
    /// When the INVITE arrived.
    pub invite_at: Timestamp,
    /// Why it was refused, when the result alone does not say
    /// (`no-caller-number`).
    pub reason: Option<&'static str>,
}

/// How a call ended, for its record.
#[derive(Debug, Clone)]
pub struct CallEnd {
    /// When.
    pub at: Timestamp,
    /// How it went.
    pub result: CallResult,
    /// The final SIP status the caller got.
    pub sip_status: u16,
    /// Who hung up, if someone did.
    pub hangup_side: Option<HangupSide>,
    /// Why ansim ended the call itself, if it did for a reason beyond a
    /// plain hang-up (written to [`CallRecord::reason`]; `None` keeps a
    /// reason the record already has).
    pub reason: Option<&'static str>,
}

/// A write to the call records: what the SIP switch asks for as a call
/// goes on. Applied in order; updates touch a record the first time only.
#[derive(Debug, Clone)]
pub enum CallWrite {
    /// A new record.
    Insert(NewCall),
    /// The callee rings.
    Ring(String, Timestamp),
    /// The callee answered.
    Answer(String, Timestamp),
    /// The call ended.
    End(String, CallEnd),
}

/// Runs one call-record write in `tx`; an end writes its `call.completed`
/// event in the same transaction.
pub(super) async fn apply(tx: &mut Tx, write: &CallWrite) -> Result<(), StoreError> {
    match write {
        CallWrite::Insert(c) => {
            // A second insert of one id in a batch: alone, as it fails.
            let started = super::call_batch::StartedCall {
                call: c,
                ring_at: None,
                answer_at: None,
                end: None,
            };
            super::call_batch::insert_started(tx, std::slice::from_ref(&started)).await?;
        }
        CallWrite::Ring(id, at) => {
            sqlx::query("UPDATE calls SET ring_at = $2 WHERE id = $1 AND ring_at IS NULL")
                .bind(id)
                .bind(at.as_millis())
                .execute(tx.conn())
                .await?;
        }
        CallWrite::Answer(id, at) => {
            sqlx::query("UPDATE calls SET answer_at = $2 WHERE id = $1 AND answer_at IS NULL")
                .bind(id)
                .bind(at.as_millis())
                .execute(tx.conn())
                .await?;
        }
        CallWrite::End(id, end) => {
            let done = sqlx::query(
                "UPDATE calls SET end_at = $2, result = $3, sip_status = $4, hangup_side = $5, \
                        reason = COALESCE($6, reason) \
                 WHERE id = $1 AND end_at IS NULL",
            )
            .bind(id)
            .bind(end.at.as_millis())
            .bind(end.result.as_str())
            .bind(i64::from(end.sip_status))
            .bind(end.hangup_side.map(HangupSide::as_str))
            .bind(end.reason)
            .execute(tx.conn())
            .await?;
            if done.rows_affected() == 1 {
                report_completed(tx, id, end.at).await?;
            }
        }
    }
    Ok(())
}

impl Store {
    /// Applies `writes` in order in one transaction: all or none, with
    /// their webhook events. This is how the SIP engine's write-behind
    /// writer stores a batch (one commit, one sync, for everything that
    /// queued up meanwhile).
    ///
    /// The batch is folded first (`call_batch.rs`): calls it starts are
    /// inserted with their later steps in one multi-row statement.
    pub async fn write_calls(&self, writes: &[CallWrite]) -> Result<(), StoreError> {
        self.write_rows(writes, &[]).await.map(drop)
    }

    /// Writes the start of a call record.
    pub async fn insert_call(&self, c: &NewCall) -> Result<(), StoreError> {
        self.write_calls(&[CallWrite::Insert(c.clone())]).await
    }

    /// Records when the callee started ringing (the first time only).
    pub async fn call_ringing(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        self.write_calls(&[CallWrite::Ring(id.to_owned(), at)])
            .await
    }

    /// Records when the callee answered (the first time only).
    pub async fn call_answered(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        self.write_calls(&[CallWrite::Answer(id.to_owned(), at)])
            .await
    }

    /// Records how the call ended (the first time only), with its
    /// `call.completed` event in the same transaction.
    pub async fn call_ended(&self, id: &str, end: &CallEnd) -> Result<(), StoreError> {
        self.write_calls(&[CallWrite::End(id.to_owned(), end.clone())])
            .await
    }

    /// Marks this node's calls left without an end (its earlier process
    /// died) as interrupted, and unowned ones from before nodes existed;
    /// other nodes' calls are theirs to end. Each gets its
    /// `call.completed` event in the same transaction.
    pub async fn interrupt_open_calls(&self, at: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let open: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM calls WHERE end_at IS NULL AND (node = $1 OR node = '')",
        )
        .bind(&*self.node)
        .fetch_all(tx.conn())
        .await?;
        let done = sqlx::query(
            "UPDATE calls SET end_at = $1, result = 'interrupted', hangup_side = 'system' \
             WHERE end_at IS NULL AND (node = $2 OR node = '')",
        )
        .bind(at.as_millis())
        .bind(&*self.node)
        .execute(tx.conn())
        .await?;
        for (id,) in &open {
            report_completed(&mut tx, id, at).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// Writes `call.completed` for call `id` (as it now reads) into `tx`.
pub(super) async fn report_completed(
    tx: &mut Tx,
    id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    if !tx.webhooks.wants("call.completed") {
        return Ok(());
    }
    let row: Option<CallRow> = sqlx::query_as(CALL_SQL)
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
    if let Some(c) = row.map(call).transpose()? {
        tx.enqueue_webhook(&WebhookEvent::CallCompleted(&c), now)
            .await?;
    }
    Ok(())
}
