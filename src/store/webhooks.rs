//! The webhook outbox: events written in the same transaction as the
//! change they report, and the delivery bookkeeping (claim with a lease,
//! success, retry, give up).
//!
//! Any store write that reports an event calls [`enqueue`] with the
//! connection of its own transaction (`&mut **tx` for a sqlx transaction,
//! [`Tx::enqueue_webhook`] for a [`Tx`]): the event exists if and only if
//! the change committed. Which events are written, and whether real phone
//! numbers go into them, is the [`WebhookPolicy`] the server gives the
//! store ([`Store::with_webhooks`]); a store without one writes none.
//!
//! Delivery claims due rows by setting `lease_until`; a worker that dies
//! mid-delivery (`kill -9`) leaves the lease to expire, and the row is
//! claimed again. The claim re-checks the lease in the `UPDATE` itself, so
//! two nodes never both hold one row (PostgreSQL re-evaluates the
//! condition on the locked row; SQLite has one writer).

use serde_json::{Value, json};
use sqlx::AnyConnection;

use super::{
    CallRecord, CloseReason, Dispute, RecordingState, SessionRecord, Store, StoreError, Tx, new_id,
};
use crate::clock::Timestamp;

/// Every event type, as named in `[webhooks] events` and in `type`.
pub const EVENT_TYPES: &[&str] = &[
    "session.opened",
    "session.closed",
    "call.completed",
    "recording.completed",
    "recording.erased",
    "dispute.opened",
    "dispute.resolved",
];

/// What the store writes into the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Whether webhooks are configured at all; without, nothing is written.
    pub enabled: bool,
    /// The event types wanted; `None`: all of them.
    pub events: Option<Vec<String>>,
    /// Whether participants' and callers' real numbers go into payloads.
    pub include_numbers: bool,
}

impl WebhookPolicy {
    /// Whether an event of type `kind` is written.
    pub fn wants(&self, kind: &str) -> bool {
        self.enabled
            && self
                .events
                .as_ref()
                .is_none_or(|e| e.iter().any(|k| k == kind))
    }
}

/// Why a session ended, as `session.closed` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBecause {
    /// Closed through the API or CLI.
    Closed,
    /// Its TTL ran out.
    Expired,
    /// Its participant's data was erased.
    Erased,
}

impl From<CloseReason> for ClosedBecause {
    fn from(r: CloseReason) -> Self {
        match r {
            CloseReason::Closed => ClosedBecause::Closed,
            CloseReason::Expired => ClosedBecause::Expired,
        }
    }
}

/// One event to report.
#[derive(Debug, Clone, Copy)]
pub enum WebhookEvent<'a> {
    /// A session was opened.
    SessionOpened(&'a SessionRecord),
    /// A session ended.
    SessionClosed(&'a SessionRecord, ClosedBecause),
    /// A call ended (its record).
    CallCompleted(&'a CallRecord),
    /// A recording ended: id, call, session, state, duration (never audio).
    RecordingCompleted {
        /// `rec_…`.
        id: &'a str,
        /// Its call.
        call_id: &'a str,
        /// Its session.
        session_id: &'a str,
        /// How it ended.
        state: RecordingState,
        /// Audio written, when known.
        duration_ms: Option<i64>,
    },
    /// A recording was erased.
    RecordingErased {
        /// `rec_…`.
        id: &'a str,
        /// Its call.
        call_id: &'a str,
        /// Its session.
        session_id: &'a str,
        /// Why (`retention`, `subject-request`, …).
        reason: &'a str,
    },
    /// A dispute was opened.
    DisputeOpened(&'a Dispute),
    /// A dispute was resolved.
    DisputeResolved {
        /// `dsp_…`.
        id: &'a str,
        /// Staff id of who resolved it.
        by: &'a str,
    },
}

impl WebhookEvent<'_> {
    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            WebhookEvent::SessionOpened(_) => "session.opened",
            WebhookEvent::SessionClosed(..) => "session.closed",
            WebhookEvent::CallCompleted(_) => "call.completed",
            WebhookEvent::RecordingCompleted { .. } => "recording.completed",
            WebhookEvent::RecordingErased { .. } => "recording.erased",
            WebhookEvent::DisputeOpened(_) => "dispute.opened",
            WebhookEvent::DisputeResolved { .. } => "dispute.resolved",
        }
    }

    /// The event's `data`; real numbers only if `numbers`.
    pub fn data(&self, numbers: bool, now: Timestamp) -> Value {
        match *self {
            WebhookEvent::SessionOpened(s) => session(s, numbers, now, None),
            WebhookEvent::SessionClosed(s, why) => session(s, numbers, now, Some(why)),
            WebhookEvent::CallCompleted(c) => call(c, numbers),
            WebhookEvent::RecordingCompleted {
                id,
                call_id,
                session_id,
                state,
                duration_ms,
            } => json!({
                "id": id, "call_id": call_id, "session_id": session_id,
                "state": state.as_str(), "duration_ms": duration_ms,
            }),
            WebhookEvent::RecordingErased {
                id,
                call_id,
                session_id,
                reason,
            } => json!({
                "id": id, "call_id": call_id, "session_id": session_id, "reason": reason,
            }),
            WebhookEvent::DisputeOpened(d) => json!({
                "id": d.id, "ticket": d.ticket, "reason": d.reason, "opened_by": d.opened_by,
                "opened_at": d.opened_at, "hold_id": d.hold_id, "call_ids": d.call_ids,
            }),
            WebhookEvent::DisputeResolved { id, by } => json!({
                "id": id, "resolved_by": by, "resolved_at": now,
            }),
        }
    }
}

fn session(s: &SessionRecord, numbers: bool, now: Timestamp, why: Option<ClosedBecause>) -> Value {
    let party = |p: &super::Participant| {
        let mut v = json!({ "proxy_number": p.proxy_number });
        if numbers {
            v["number"] = json!(p.number);
        }
        v
    };
    let status = match (s.is_open(now), why) {
        (true, None) => "open",
        (_, Some(ClosedBecause::Expired)) => "expired",
        (false, None) if s.close_reason == Some(CloseReason::Expired) => "expired",
        _ => "closed",
    };
    let mut v = json!({
        "id": s.id, "a": party(&s.a), "b": party(&s.b), "status": status,
        "record": s.record, "retention_class": s.retention_class,
        "created_at": s.created_at, "expires_at": s.expires_at, "closed_at": s.closed_at,
    });
    if let Some(why) = why {
        v["reason"] = json!(match why {
            ClosedBecause::Closed => "closed",
            ClosedBecause::Expired => "expired",
            ClosedBecause::Erased => "erased",
        });
    }
    v
}

fn call(c: &CallRecord, numbers: bool) -> Value {
    let duration_ms = match (c.answer_at, c.end_at) {
        (Some(a), Some(e)) => Some(e.as_millis() - a.as_millis()),
        _ => None,
    };
    let mut v = json!({
        "id": c.id, "session_id": c.session_id, "direction": c.direction,
        "dialled": c.dialled, "invite_at": c.invite_at, "ring_at": c.ring_at,
        "answer_at": c.answer_at, "end_at": c.end_at,
        "result": c.result.map(|r| r.as_str()), "sip_status": c.sip_status,
        "hangup_side": c.hangup_side.map(|h| h.as_str()), "duration_ms": duration_ms,
        "recording_id": c.recording_id, "node": c.node, "reason": c.reason,
    });
    if numbers {
        v["caller"] = json!(c.caller);
    }
    v
}

/// Writes `event` into the outbox on `conn` (the connection of the
/// transaction that makes the change it reports), if `policy` wants it.
/// The row's id is the `webhook-id` every delivery of it carries; its body
/// is fixed here, so a redelivery signs the same bytes.
pub async fn enqueue(
    conn: &mut AnyConnection,
    policy: &WebhookPolicy,
    event: &WebhookEvent<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let kind = event.kind();
    if !policy.wants(kind) {
        return Ok(());
    }
    let body = json!({
        "type": kind,
        "timestamp": now,
        "data": event.data(policy.include_numbers, now),
    });
    sqlx::query(
        "INSERT INTO webhook_outbox (id, event_type, payload, created_at, next_attempt_at, \
            attempts) VALUES ($1, $2, $3, $4, $4, 0)",
    )
    .bind(new_id("msg"))
    .bind(kind)
    .bind(body.to_string())
    .bind(now.as_millis())
    .execute(conn)
    .await?;
    Ok(())
}

impl Tx {
    /// [`enqueue`] in this transaction, with the store's policy.
    pub async fn enqueue_webhook(
        &mut self,
        event: &WebhookEvent<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let policy = self.webhooks.clone();
        enqueue(self.conn(), &policy, event, now).await
    }
}

/// An outbox row claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// `msg_…`: the `webhook-id`.
    pub id: String,
    /// The body, exactly as signed.
    pub payload: String,
    /// When the event was written.
    pub created_at: Timestamp,
    /// Deliveries tried before this one.
    pub attempts: i64,
}

/// One outbox row as `GET /v1/webhooks/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// `msg_…`: the `webhook-id`.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: &'static str,
    /// When the event was written.
    pub created_at: Timestamp,
    /// Deliveries tried.
    pub attempts: i64,
    /// When the next try is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// When the receiver accepted it.
    pub delivered_at: Option<Timestamp>,
    /// When delivery was given up.
    pub failed_at: Option<Timestamp>,
    /// HTTP status of the last try, if the receiver answered.
    pub last_status: Option<i64>,
    /// Why the last try failed.
    pub last_error: Option<String>,
}

type DeliveryRow = (
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn delivery(r: DeliveryRow) -> Delivery {
    let ts = |v: Option<i64>| v.map(Timestamp::from_millis);
    let state = match (r.6, r.7) {
        (Some(_), _) => "delivered",
        (None, Some(_)) => "failed",
        (None, None) => "pending",
    };
    Delivery {
        id: r.0,
        kind: r.1,
        state,
        created_at: Timestamp::from_millis(r.2),
        attempts: r.3,
        next_attempt_at: (state == "pending").then(|| Timestamp::from_millis(r.4)),
        delivered_at: ts(r.6),
        failed_at: ts(r.7),
        last_status: r.5,
        last_error: r.8,
    }
}

/// The claim: due rows get a lease, re-checked in the `UPDATE` itself.
/// On PostgreSQL the inner select skips rows another node is claiming
/// (`$lock`), so concurrent claims take disjoint rows instead of waiting.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE webhook_outbox SET lease_until = $2 \
             WHERE id IN (SELECT id FROM webhook_outbox \
                          WHERE delivered_at IS NULL AND failed_at IS NULL \
                            AND next_attempt_at <= $1 \
                            AND (lease_until IS NULL OR lease_until <= $1) \
                          ORDER BY next_attempt_at, id LIMIT $3",
            $lock,
            ") AND delivered_at IS NULL AND failed_at IS NULL \
               AND (lease_until IS NULL OR lease_until <= $1) \
             RETURNING id, payload, created_at, attempts"
        )
    };
}

impl Store {
    /// The same store (same pool) writing webhook events as `policy` says.
    pub fn with_webhooks(&self, policy: WebhookPolicy) -> Store {
        Store {
            webhooks: std::sync::Arc::new(policy),
            ..self.clone()
        }
    }

    /// What this store writes into the outbox.
    pub fn webhook_policy(&self) -> &WebhookPolicy {
        &self.webhooks
    }

    /// Claims up to `limit` due rows (oldest first) until `lease_until`.
    pub async fn claim_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let sql = match self.backend() {
            super::Backend::Sqlite => claim_sql!(""),
            super::Backend::Postgres => claim_sql!(" FOR UPDATE SKIP LOCKED"),
        };
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(sql)
            .bind(now.as_millis())
            .bind(lease_until.as_millis())
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let mut out: Vec<Claimed> = rows
            .into_iter()
            .map(|(id, payload, created_at, attempts)| Claimed {
                id,
                payload,
                created_at: Timestamp::from_millis(created_at),
                attempts,
            })
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Records a successful delivery.
    pub async fn webhook_delivered(
        &self,
        id: &str,
        status: u16,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_outbox SET delivered_at = $2, attempts = attempts + 1, \
                last_status = $3, last_error = NULL, lease_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(now.as_millis())
        .bind(i64::from(status))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a failed try: retried at `retry_at`, or given up (`None`).
    pub async fn webhook_failed(
        &self,
        id: &str,
        status: Option<u16>,
        error: &str,
        now: Timestamp,
        retry_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_status = $2, \
                last_error = $3, lease_until = NULL, \
                next_attempt_at = COALESCE($4, next_attempt_at), \
                failed_at = CASE WHEN $4 IS NULL THEN $5 ELSE NULL END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.map(i64::from))
        .bind(error)
        .bind(retry_at.map(Timestamp::as_millis))
        .bind(now.as_millis())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes delivered or given-up rows that ended before `before`.
    pub async fn purge_webhooks(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM webhook_outbox WHERE COALESCE(delivered_at, failed_at) < $1")
                .bind(before.as_millis())
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }

    /// Outbox rows in `(created_at, id)` order after `after`, `limit` of them.
    pub async fn list_webhooks(
        &self,
        after: Option<(Timestamp, &str)>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (at, id) = after.map_or((i64::MIN, ""), |(t, i)| (t.as_millis(), i));
        let rows: Vec<DeliveryRow> = sqlx::query_as(
            "SELECT id, event_type, created_at, attempts, next_attempt_at, last_status, \
                    delivered_at, failed_at, last_error FROM webhook_outbox \
             WHERE created_at > $1 OR (created_at = $1 AND id > $2) \
             ORDER BY created_at, id LIMIT $3",
        )
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(delivery).collect())
    }
}
