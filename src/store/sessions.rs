//! Sessions and bindings: race-free assignment, close, expiry, route lookup.
//!
//! Correctness under concurrency rests on two things, not on luck:
//! 1. every assignment or release touching a participant first takes the
//!    row lock of that participant's slot in `assignment_locks` (slots in
//!    ascending order, so two transactions never wait on each other in a
//!    cycle), which serialises the read-check-insert of one participant;
//! 2. the partial unique index `bindings_active_key` on
//!    `(participant, proxy_number) WHERE released_at IS NULL` refuses a
//!    second active binding of the same pair, whatever the code above does.

use std::time::Duration;

use sqlx::{Any, Transaction};

use super::webhooks::{self, ClosedBecause, WebhookEvent, WebhookPolicy};
use super::{Store, StoreError, new_id, parse_number, parse_party};
use crate::clock::Timestamp;
use crate::phone::{E164, PartyNumber};
use crate::pool::{self as rules, NoProxy, PastBinding, PoolNumber};

/// Which participant of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The first participant (by convention the customer).
    A,
    /// The second participant (by convention the master).
    B,
}

impl Side {
    /// `"a"` or `"b"`, as in the API's field names.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// What is needed to open a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// First participant's real number.
    pub a: E164,
    /// Second participant's real number.
    pub b: E164,
    /// How long the session stays open unless closed earlier.
    pub ttl: Duration,
    /// Retention class of the session's recordings.
    pub retention_class: String,
    /// Whether calls of this session are recorded.
    pub record: bool,
}

/// One participant of a session as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Participant {
    /// The participant's real number, or its pseudonym once the session
    /// has been closed for longer than the personal-data retention period.
    pub number: PartyNumber,
    /// The safe number this participant dials to reach the other one, and
    /// sees as caller ID when the other one calls.
    pub proxy_number: E164,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseReason {
    /// Closed through the API or CLI.
    Closed,
    /// Its TTL ran out.
    Expired,
}

/// A session's status as the API filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Routing calls now.
    Open,
    /// Closed through the API or CLI.
    Closed,
    /// Its TTL ran out.
    Expired,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// `ses_…`.
    pub id: String,
    /// First participant.
    pub a: Participant,
    /// Second participant.
    pub b: Participant,
    /// Retention class of its recordings.
    pub retention_class: String,
    /// Whether its calls are recorded.
    pub record: bool,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it expires (or expired).
    pub expires_at: Timestamp,
    /// When it was closed or found expired, if it was.
    pub closed_at: Option<Timestamp>,
    /// Why it ended, if it did.
    pub close_reason: Option<CloseReason>,
}

impl SessionRecord {
    /// Whether calls can still be routed through it at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.closed_at.is_none() && self.expires_at > now
    }

    /// The routing keys `(participant, proxy)` this session serves (none
    /// for a pseudonymised participant: its session ended long ago).
    pub fn route_keys(&self) -> Vec<(E164, E164)> {
        [&self.a, &self.b]
            .into_iter()
            .filter_map(|p| Some((p.number.real()?.clone(), p.proxy_number.clone())))
            .collect()
    }

    /// The routes this session serves while open, each under its key
    /// `(caller, dialled)`: what [`Store::lookup_route`] answers for that
    /// key (none for a pseudonymised participant).
    pub fn routes(&self) -> Vec<((E164, E164), RouteRow)> {
        let sides = [(Side::A, &self.a, &self.b), (Side::B, &self.b, &self.a)];
        sides
            .into_iter()
            .filter_map(|(side, me, other)| {
                let route = RouteRow {
                    session_id: self.id.clone(),
                    caller_side: side,
                    callee: other.number.real()?.clone(),
                    caller_id: other.proxy_number.clone(),
                    expires_at: self.expires_at,
                    record: self.record,
                    retention_class: self.retention_class.clone(),
                };
                Some(((me.number.real()?.clone(), me.proxy_number.clone()), route))
            })
            .collect()
    }
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateSessionError {
    /// No number of the pool can serve one participant.
    #[error("no proxy number for participant {side:?}: {reason}")]
    NoProxy {
        /// Which participant.
        side: Side,
        /// Why.
        reason: NoProxy,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CreateSessionError {
    fn from(e: sqlx::Error) -> Self {
        CreateSessionError::Store(StoreError::Database(e))
    }
}

/// What a route lookup finds for `(caller, dialled)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    /// The session the call belongs to.
    pub session_id: String,
    /// Which side of the session is calling.
    pub caller_side: Side,
    /// The other participant's real number: where the B-leg goes.
    pub callee: E164,
    /// The proxy number the callee holds: the caller ID they see.
    pub caller_id: E164,
    /// The binding's expiry; routing stops then.
    pub expires_at: Timestamp,
    /// Whether the call is recorded.
    pub record: bool,
    /// Retention class for its recording.
    pub retention_class: String,
}

/// The route lookup: one probe of `bindings_active_key`, then two primary
/// key lookups (`plan_tests` checks SQLite's plan).
pub(super) const ROUTE_SQL: &str = "SELECT s.id, b.side, o.participant, o.proxy_number, \
        b.expires_at, s.record, s.retention_class \
     FROM bindings b \
     JOIN bindings o ON o.session_id = b.session_id AND o.side <> b.side \
     JOIN sessions s ON s.id = b.session_id \
     WHERE b.participant = $1 AND b.proxy_number = $2 AND b.released_at IS NULL \
       AND b.expires_at > $3";

/// Attempts before a create or close gives up on transient conflicts.
const MAX_ATTEMPTS: usize = 5;

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    a_number: String,
    a_proxy: String,
    b_number: String,
    b_proxy: String,
    retention_class: String,
    record: i64,
    created_at: i64,
    expires_at: i64,
    closed_at: Option<i64>,
    close_reason: Option<String>,
}

/// The `sessions` columns in [`SessionRow`] order (a macro so that queries
/// stay `&'static str`, which sqlx requires of SQL text).
macro_rules! session_columns {
    () => {
        "id, a_number, a_proxy, b_number, b_proxy, retention_class, record, created_at, \
         expires_at, closed_at, close_reason"
    };
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;
    fn try_from(r: SessionRow) -> Result<Self, StoreError> {
        let num = |raw: &str| parse_number("sessions", raw);
        let party = |raw: &str| parse_party("sessions", raw);
        let close_reason = match r.close_reason.as_deref() {
            None => None,
            Some("closed") => Some(CloseReason::Closed),
            Some("expired") => Some(CloseReason::Expired),
            Some(other) => {
                return Err(StoreError::Corrupt {
                    table: "sessions",
                    what: format!("close_reason '{other}'"),
                });
            }
        };
        Ok(SessionRecord {
            a: Participant {
                number: party(&r.a_number)?,
                proxy_number: num(&r.a_proxy)?,
            },
            b: Participant {
                number: party(&r.b_number)?,
                proxy_number: num(&r.b_proxy)?,
            },
            id: r.id,
            retention_class: r.retention_class,
            record: r.record != 0,
            created_at: Timestamp::from_millis(r.created_at),
            expires_at: Timestamp::from_millis(r.expires_at),
            closed_at: r.closed_at.map(Timestamp::from_millis),
            close_reason,
        })
    }
}

/// Whether a failed attempt may simply be tried again: a uniqueness race,
/// SQLite's busy lock, or PostgreSQL's deadlock/serialization failures.
fn is_transient(e: &StoreError) -> bool {
    if e.is_unique_violation() {
        return true;
    }
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => matches!(
            db.code().as_deref(),
            Some("5" | "6" | "517" | "40001" | "40P01")
        ),
        StoreError::Database(sqlx::Error::PoolTimedOut) => true,
        _ => false,
    }
}

impl Store {
    /// Opens a session: chooses a proxy number for each participant and
    /// stores the session and its two bindings, all in one transaction.
    pub async fn create_session(
        &self,
        new: &NewSession,
        now: Timestamp,
        quarantine: Duration,
    ) -> Result<SessionRecord, CreateSessionError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_create_session(new, now, quarantine).await {
                Err(CreateSessionError::Store(e)) if attempt < MAX_ATTEMPTS && is_transient(&e) => {
                    tracing::debug!(attempt, error = %e, "session creation conflicted; retrying");
                }
                other => return other,
            }
        }
    }

    async fn try_create_session(
        &self,
        new: &NewSession,
        now: Timestamp,
        quarantine: Duration,
    ) -> Result<SessionRecord, CreateSessionError> {
        let mut tx = self.pool().begin().await?;
        lock_participants(&mut tx, &[&new.a, &new.b]).await?;
        for p in [&new.a, &new.b] {
            let notify = self.backend == super::Backend::Postgres;
            expire_participant(&mut tx, (&self.webhooks, notify), p, now).await?;
        }
        let pool = load_pool(&mut tx).await?;
        let a_hist = load_history(&mut tx, &new.a, now.saturating_sub(quarantine)).await?;
        let a_proxy =
            rules::choose_proxy(&pool, &a_hist, &new.b, now, quarantine).map_err(|reason| {
                CreateSessionError::NoProxy {
                    side: Side::A,
                    reason,
                }
            })?;
        let b_hist = load_history(&mut tx, &new.b, now.saturating_sub(quarantine)).await?;
        let b_proxy =
            rules::choose_proxy(&pool, &b_hist, &new.a, now, quarantine).map_err(|reason| {
                CreateSessionError::NoProxy {
                    side: Side::B,
                    reason,
                }
            })?;

        let record = SessionRecord {
            id: new_id("ses"),
            a: Participant {
                number: new.a.clone().into(),
                proxy_number: a_proxy,
            },
            b: Participant {
                number: new.b.clone().into(),
                proxy_number: b_proxy,
            },
            retention_class: new.retention_class.clone(),
            record: new.record,
            created_at: now,
            expires_at: now.saturating_add(new.ttl),
            closed_at: None,
            close_reason: None,
        };
        insert_session(&mut tx, &record).await?;
        let event = WebhookEvent::SessionOpened(&record);
        webhooks::enqueue(&mut tx, &self.webhooks, &event, now).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Reads a session by id.
    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1"
        );
        let row: Option<SessionRow> = sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.map(SessionRecord::try_from).transpose()
    }

    /// Closes a session now. Closing one already ended is not an error: the
    /// session is returned as it is. `None` if there is no such session.
    pub async fn close_session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.close_session_as(id, now, false).await
    }

    /// As [`Store::close_session`]; `erased`: because its participant's
    /// data is being erased, which `session.closed` then says.
    pub async fn close_session_as(
        &self,
        id: &str,
        now: Timestamp,
        erased: bool,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_close_session(id, now, erased).await {
                Err(e) if attempt < MAX_ATTEMPTS && is_transient(&e) => continue,
                other => return other,
            }
        }
    }

    async fn try_close_session(
        &self,
        id: &str,
        now: Timestamp,
        erased: bool,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let Some(session) = self.get_session(id).await? else {
            return Ok(None);
        };
        if session.closed_at.is_some() {
            return Ok(Some(session));
        }
        // Only ended sessions are ever pseudonymised.
        let (Some(a), Some(b)) = (session.a.number.real(), session.b.number.real()) else {
            return Err(StoreError::Corrupt {
                table: "sessions",
                what: format!("open session {id} has a pseudonymised number"),
            });
        };
        let mut tx = self.pool().begin().await?;
        lock_participants(&mut tx, &[a, b]).await?;
        let (at, reason) = if session.expires_at <= now {
            (session.expires_at, CloseReason::Expired)
        } else {
            (now, CloseReason::Closed)
        };
        let because = match reason {
            CloseReason::Closed if erased => ClosedBecause::Erased,
            other => other.into(),
        };
        let notify = self.backend == super::Backend::Postgres;
        end_session(
            &mut tx,
            (&self.webhooks, notify),
            id,
            (at, reason, because),
            now,
        )
        .await?;
        tx.commit().await?;
        self.get_session(id).await
    }

    /// Ends every open session whose TTL has run out by `now` (at most
    /// `limit` of them) and returns them, so that caches can drop their keys.
    pub async fn expire_due(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE closed_at IS NULL AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2"
        );
        let rows: Vec<SessionRow> = sqlx::query_as(sql)
            .bind(now.as_millis())
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let mut ended = Vec::with_capacity(rows.len());
        for row in rows {
            let session = SessionRecord::try_from(row)?;
            if let Some(s) = self.close_session(&session.id, now).await? {
                ended.push(s);
            }
        }
        Ok(ended)
    }

    /// Finds the open session routed by `(caller, dialled)` at `now`. One
    /// indexed lookup (`bindings_active_key`), never a scan.
    pub async fn lookup_route(
        &self,
        caller: &E164,
        dialled: &E164,
        now: Timestamp,
    ) -> Result<Option<RouteRow>, StoreError> {
        let row: Option<(String, String, String, String, i64, i64, String)> =
            sqlx::query_as(ROUTE_SQL)
                .bind(caller.as_str())
                .bind(dialled.as_str())
                .bind(now.as_millis())
                .fetch_optional(self.pool())
                .await?;
        let Some((session_id, side, callee, caller_id, expires_at, record, retention_class)) = row
        else {
            return Ok(None);
        };
        Ok(Some(RouteRow {
            session_id,
            caller_side: if side == "a" { Side::A } else { Side::B },
            callee: parse_number("bindings", &callee)?,
            caller_id: parse_number("bindings", &caller_id)?,
            expires_at: Timestamp::from_millis(expires_at),
            record: record != 0,
            retention_class,
        }))
    }

    /// A page of sessions in `(created_at, id)` order after the session
    /// `after` (its `created_at` in ms and id), at most `limit`; only those
    /// of `participant` (a real number, either side) and in `status` at
    /// `now`, when given.
    pub async fn list_sessions(
        &self,
        participant: Option<&E164>,
        status: Option<SessionStatus>,
        now: Timestamp,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let status_sql = match status {
            None => "",
            Some(SessionStatus::Open) => " AND closed_at IS NULL AND expires_at > $4",
            Some(SessionStatus::Closed) => " AND close_reason = 'closed'",
            Some(SessionStatus::Expired) => {
                " AND (close_reason = 'expired' OR (closed_at IS NULL AND expires_at <= $4))"
            }
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM sessions \
             WHERE (created_at > $1 OR (created_at = $1 AND id > $2)) \
               AND ($3 = '' OR a_number = $3 OR b_number = $3) \
               AND $4 = $4{status_sql} \
             ORDER BY created_at, id LIMIT $5",
            session_columns!()
        ));
        let (at, id) = after.unwrap_or((i64::MIN, ""));
        let rows: Vec<SessionRow> = sqlx::query_as(sql)
            .bind(at)
            .bind(id)
            .bind(participant.map_or("", E164::as_str))
            .bind(now.as_millis())
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(SessionRecord::try_from).collect()
    }

    /// Counts sessions open at `now` (for metrics).
    pub async fn count_open_sessions(&self, now: Timestamp) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sessions WHERE closed_at IS NULL AND expires_at > $1",
        )
        .bind(now.as_millis())
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }
}

/// Takes the assignment locks of the participants' slots, in slot order.
async fn lock_participants(
    tx: &mut Transaction<'_, Any>,
    participants: &[&E164],
) -> Result<(), StoreError> {
    let mut slots: Vec<i64> = participants.iter().map(|p| rules::lock_slot(p)).collect();
    slots.sort_unstable();
    slots.dedup();
    for slot in slots {
        sqlx::query(
            "INSERT INTO assignment_locks (slot, version) VALUES ($1, 1) \
             ON CONFLICT (slot) DO UPDATE SET version = assignment_locks.version + 1",
        )
        .bind(slot)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Ends the participant's sessions whose TTL has run out, so that their
/// bindings stop counting as held and start their quarantine.
async fn expire_participant(
    tx: &mut Transaction<'_, Any>,
    (hooks, notify): (&WebhookPolicy, bool),
    participant: &E164,
    now: Timestamp,
) -> Result<(), StoreError> {
    let due: Vec<(String, i64)> = sqlx::query_as(
        "SELECT session_id, expires_at FROM bindings \
         WHERE participant = $1 AND released_at IS NULL AND expires_at <= $2",
    )
    .bind(participant.as_str())
    .bind(now.as_millis())
    .fetch_all(&mut **tx)
    .await?;
    for (session_id, expires_at) in due {
        let at = Timestamp::from_millis(expires_at);
        let end = (at, CloseReason::Expired, ClosedBecause::Expired);
        end_session(tx, (hooks, notify), &session_id, end, now).await?;
    }
    Ok(())
}

/// Marks a session ended at `at` for `reason` and releases both of its
/// bindings; `session.closed` goes into the outbox in the same transaction,
/// and, when `notify` (PostgreSQL), a notification that tells every node's
/// route cache at the commit ([`super::nodes`]).
async fn end_session(
    tx: &mut Transaction<'_, Any>,
    (hooks, notify): (&WebhookPolicy, bool),
    id: &str,
    (at, why, because): (Timestamp, CloseReason, ClosedBecause),
    now: Timestamp,
) -> Result<(), StoreError> {
    let reason = match why {
        CloseReason::Closed => "closed",
        CloseReason::Expired => "expired",
    };
    let ended = sqlx::query(
        "UPDATE sessions SET closed_at = $2, close_reason = $3 WHERE id = $1 AND closed_at IS NULL",
    )
    .bind(id)
    .bind(at.as_millis())
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE bindings SET released_at = $2 WHERE session_id = $1 AND released_at IS NULL",
    )
    .bind(id)
    .bind(at.as_millis())
    .execute(&mut **tx)
    .await?;
    if ended.rows_affected() == 1 && notify {
        super::nodes::notify_session_ended(tx, id).await?;
    }
    if ended.rows_affected() == 1 && hooks.wants("session.closed") {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1"
        );
        let row: SessionRow = sqlx::query_as(sql).bind(id).fetch_one(&mut **tx).await?;
        let session = SessionRecord::try_from(row)?;
        let event = WebhookEvent::SessionClosed(&session, because);
        webhooks::enqueue(tx, hooks, &event, now).await?;
    }
    Ok(())
}

async fn load_pool(tx: &mut Transaction<'_, Any>) -> Result<Vec<PoolNumber>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT n.number, (SELECT COUNT(*) FROM bindings b \
                           WHERE b.proxy_number = n.number AND b.released_at IS NULL) \
         FROM numbers n",
    )
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(number, active)| {
            Ok(PoolNumber {
                number: parse_number("numbers", &number)?,
                active,
            })
        })
        .collect()
}

/// The participant's active bindings and those released after `since`.
async fn load_history(
    tx: &mut Transaction<'_, Any>,
    participant: &E164,
    since: Timestamp,
) -> Result<Vec<PastBinding>, StoreError> {
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT proxy_number, counterpart, released_at FROM bindings \
         WHERE participant = $1 AND (released_at IS NULL OR released_at > $2)",
    )
    .bind(participant.as_str())
    .bind(since.as_millis())
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(number, counterpart, released_at)| {
            Ok(PastBinding {
                number: parse_number("bindings", &number)?,
                counterpart: parse_number("bindings", &counterpart)?,
                released_at: released_at.map(Timestamp::from_millis),
            })
        })
        .collect()
}

async fn insert_session(
    tx: &mut Transaction<'_, Any>,
    s: &SessionRecord,
) -> Result<(), StoreError> {
    let sql = concat!(
        "INSERT INTO sessions (",
        session_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL)"
    );
    sqlx::query(sql)
        .bind(&s.id)
        .bind(s.a.number.as_str())
        .bind(s.a.proxy_number.as_str())
        .bind(s.b.number.as_str())
        .bind(s.b.proxy_number.as_str())
        .bind(&s.retention_class)
        .bind(i64::from(s.record))
        .bind(s.created_at.as_millis())
        .bind(s.expires_at.as_millis())
        .execute(&mut **tx)
        .await?;
    for (side, me, other) in [(Side::A, &s.a, &s.b), (Side::B, &s.b, &s.a)] {
        sqlx::query(
            "INSERT INTO bindings (session_id, side, participant, proxy_number, counterpart, \
                                   expires_at, released_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(&s.id)
        .bind(side.as_str())
        .bind(me.number.as_str())
        .bind(me.proxy_number.as_str())
        .bind(other.number.as_str())
        .bind(s.expires_at.as_millis())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
