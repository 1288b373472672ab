//! Disputes and playback grants.

use super::{Store, StoreError, Tx, WebhookEvent, new_id};
use crate::clock::Timestamp;

/// A dispute on one or more calls.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Dispute {
    /// `dsp_…`.
    pub id: String,
    /// The support ticket it belongs to.
    pub ticket: String,
    /// Why it was opened.
    pub reason: String,
    /// Staff id of who opened it.
    pub opened_by: String,
    /// When.
    pub opened_at: Timestamp,
    /// The legal hold on its recordings, if they had any.
    pub hold_id: Option<String>,
    /// Staff id of who resolved it.
    pub resolved_by: Option<String>,
    /// When it was resolved.
    pub resolved_at: Option<Timestamp>,
    /// Its calls.
    pub call_ids: Vec<String>,
}

/// A request for playback of a dispute's recordings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Grant {
    /// `gnt_…`.
    pub id: String,
    /// The dispute it covers (and nothing else).
    pub dispute_id: String,
    /// Staff id of the requester (the only one who may use it).
    pub requested_by: String,
    /// When requested.
    pub requested_at: Timestamp,
    /// Staff id of the approver.
    pub approved_by: Option<String>,
    /// When approved.
    pub approved_at: Option<Timestamp>,
    /// When it stops working.
    pub expires_at: Option<Timestamp>,
}

type DisputeRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
);
type GrantRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// A dispute to open: its calls are named once each.
#[derive(Debug, Clone, Copy)]
pub struct NewDispute<'a> {
    /// The support ticket.
    pub ticket: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Staff id of who opens it.
    pub opened_by: &'a str,
    /// Its calls (which must exist), without duplicates.
    pub call_ids: &'a [String],
    /// Its legal hold, if its calls have recordings.
    pub hold_id: Option<&'a str>,
}

impl Tx {
    /// Opens a dispute on `d.call_ids`. A call named twice violates the
    /// primary key of `dispute_calls`: callers collapse duplicates first.
    pub async fn insert_dispute(
        &mut self,
        d: &NewDispute<'_>,
        now: Timestamp,
    ) -> Result<Dispute, StoreError> {
        let id = new_id("dsp");
        sqlx::query(
            "INSERT INTO disputes (id, ticket, reason, opened_by, opened_at, hold_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(d.ticket)
        .bind(d.reason)
        .bind(d.opened_by)
        .bind(now.as_millis())
        .bind(d.hold_id)
        .execute(self.conn())
        .await?;
        for c in d.call_ids {
            sqlx::query("INSERT INTO dispute_calls (dispute_id, call_id) VALUES ($1, $2)")
                .bind(&id)
                .bind(c)
                .execute(self.conn())
                .await?;
        }
        let mut call_ids = d.call_ids.to_vec();
        call_ids.sort();
        let dispute = Dispute {
            id,
            ticket: d.ticket.to_owned(),
            reason: d.reason.to_owned(),
            opened_by: d.opened_by.to_owned(),
            opened_at: now,
            hold_id: d.hold_id.map(str::to_owned),
            resolved_by: None,
            resolved_at: None,
            call_ids,
        };
        self.enqueue_webhook(&WebhookEvent::DisputeOpened(&dispute), now)
            .await?;
        Ok(dispute)
    }

    /// Marks a dispute resolved; `false` if it already was.
    pub async fn mark_dispute_resolved(
        &mut self,
        id: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE disputes SET resolved_by = $2, resolved_at = $3 \
             WHERE id = $1 AND resolved_at IS NULL",
        )
        .bind(id)
        .bind(by)
        .bind(now.as_millis())
        .execute(self.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.enqueue_webhook(&WebhookEvent::DisputeResolved { id, by }, now)
            .await?;
        Ok(true)
    }

    /// Requests a grant on a dispute.
    pub async fn insert_grant(
        &mut self,
        dispute_id: &str,
        requested_by: &str,
        now: Timestamp,
    ) -> Result<Grant, StoreError> {
        let id = new_id("gnt");
        sqlx::query(
            "INSERT INTO grants (id, dispute_id, requested_by, requested_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(dispute_id)
        .bind(requested_by)
        .bind(now.as_millis())
        .execute(self.conn())
        .await?;
        Ok(Grant {
            id,
            dispute_id: dispute_id.to_owned(),
            requested_by: requested_by.to_owned(),
            requested_at: now,
            approved_by: None,
            approved_at: None,
            expires_at: None,
        })
    }

    /// Approves grant `g` (once) until `expires_at`: the approved grant,
    /// or `None` if it was approved before.
    pub async fn approve_grant(
        &mut self,
        g: &Grant,
        by: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Option<Grant>, StoreError> {
        let done = sqlx::query(
            "UPDATE grants SET approved_by = $2, approved_at = $3, expires_at = $4 \
             WHERE id = $1 AND approved_at IS NULL",
        )
        .bind(&g.id)
        .bind(by)
        .bind(now.as_millis())
        .bind(expires_at.as_millis())
        .execute(self.conn())
        .await?;
        Ok((done.rows_affected() == 1).then(|| Grant {
            approved_by: Some(by.to_owned()),
            approved_at: Some(now),
            expires_at: Some(expires_at),
            ..g.clone()
        }))
    }
}

/// `FROM … WHERE … ORDER BY … LIMIT` of a page of disputes, newest first
/// ($1: include resolved, $2/$3: before (opened_at, id), $4: limit).
macro_rules! dispute_page {
    () => {
        "FROM disputes \
         WHERE (($1 = 1 AND resolved_at IS NULL) OR ($2 = 1 AND resolved_at IS NOT NULL)) \
         AND lower(ticket) LIKE $3 ESCAPE '\\' \
         AND (opened_at < $4 OR (opened_at = $4 AND id < $5)) \
         ORDER BY opened_at DESC, id DESC LIMIT $6"
    };
}

impl Store {
    /// A dispute with its calls.
    pub async fn get_dispute(&self, id: &str) -> Result<Option<Dispute>, StoreError> {
        let row: Option<DisputeRow> = sqlx::query_as(
            "SELECT id, ticket, reason, opened_by, opened_at, hold_id, resolved_by, resolved_at \
             FROM disputes WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let calls: Vec<(String,)> = sqlx::query_as(
            "SELECT call_id FROM dispute_calls WHERE dispute_id = $1 ORDER BY call_id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(Some(Dispute {
            id: r.0,
            ticket: r.1,
            reason: r.2,
            opened_by: r.3,
            opened_at: Timestamp::from_millis(r.4),
            hold_id: r.5,
            resolved_by: r.6,
            resolved_at: r.7.map(Timestamp::from_millis),
            call_ids: calls.into_iter().map(|(c,)| c).collect(),
        }))
    }

    /// Whether a call exists.
    pub async fn call_exists(&self, id: &str) -> Result<bool, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM calls WHERE id = $1")
            .bind(id)
            .fetch_one(self.pool())
            .await?;
        Ok(n > 0)
    }

    /// A grant.
    pub async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let row: Option<GrantRow> = sqlx::query_as(
            "SELECT id, dispute_id, requested_by, requested_at, approved_by, approved_at, expires_at \
             FROM grants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(grant))
    }
}

const GRANT_COLUMNS: &str = "g.id, g.dispute_id, g.requested_by, g.requested_at, g.approved_by, g.approved_at, g.expires_at";

fn grant(r: GrantRow) -> Grant {
    Grant {
        id: r.0,
        dispute_id: r.1,
        requested_by: r.2,
        requested_at: Timestamp::from_millis(r.3),
        approved_by: r.4,
        approved_at: r.5.map(Timestamp::from_millis),
        expires_at: r.6.map(Timestamp::from_millis),
    }
}

/// A grant a staff member holds on a call, and whether its dispute is
/// still open (a resolved dispute gives no more access).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantOnCall {
    /// The grant.
    pub grant: Grant,
    /// Whether its dispute has been resolved.
    pub dispute_resolved: bool,
}

impl Store {
    /// A page of disputes in `(opened_at, id)` order, newest first, before
    /// the dispute `before` (its `opened_at` in ms and id): two queries,
    /// whatever the page's size.
    pub async fn list_disputes_page(
        &self,
        search: &DisputeSearch<'_>,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<Dispute>, StoreError> {
        let (at, id) = before.unwrap_or((i64::MAX, ""));
        let (open, resolved) = match search.state {
            DisputeState::Open => (1i64, 0i64),
            DisputeState::Resolved => (0, 1),
            DisputeState::Any => (1, 1),
        };
        let pattern = search
            .ticket
            .map_or_else(|| "%".to_owned(), contains_pattern);
        let rows: Vec<DisputeRow> = sqlx::query_as(concat!(
            "SELECT id, ticket, reason, opened_by, opened_at, hold_id, resolved_by, resolved_at ",
            dispute_page!()
        ))
        .bind(open)
        .bind(resolved)
        .bind(&pattern)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let calls: Vec<(String, String)> = sqlx::query_as(concat!(
            "SELECT dispute_id, call_id FROM dispute_calls WHERE dispute_id IN (SELECT id ",
            dispute_page!(),
            ") ORDER BY dispute_id, call_id"
        ))
        .bind(open)
        .bind(resolved)
        .bind(&pattern)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut by_dispute: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for (d, c) in calls {
            by_dispute.entry(d).or_default().push(c);
        }
        Ok(rows
            .into_iter()
            .map(|r| Dispute {
                call_ids: by_dispute.remove(&r.0).unwrap_or_default(),
                id: r.0,
                ticket: r.1,
                reason: r.2,
                opened_by: r.3,
                opened_at: Timestamp::from_millis(r.4),
                hold_id: r.5,
                resolved_by: r.6,
                resolved_at: r.7.map(Timestamp::from_millis),
            })
            .collect())
    }

    /// The hold of the oldest open dispute that covers `call_id` with a
    /// hold other than `except`, if there is one.
    pub async fn other_open_hold(
        &self,
        call_id: &str,
        except: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT d.hold_id FROM disputes d JOIN dispute_calls dc ON dc.dispute_id = d.id \
             WHERE dc.call_id = $1 AND d.hold_id <> $2 AND d.resolved_at IS NULL \
             ORDER BY d.opened_at, d.id LIMIT 1",
        )
        .bind(call_id)
        .bind(except)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(h,)| h))
    }

    /// The grants of a dispute, oldest first.
    pub async fn grants_of_dispute(&self, dispute_id: &str) -> Result<Vec<Grant>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS} FROM grants g WHERE g.dispute_id = $1 \
             ORDER BY g.requested_at, g.id"
        ));
        let rows: Vec<GrantRow> = sqlx::query_as(sql)
            .bind(dispute_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(grant).collect())
    }

    /// The grants `staff_id` requested on any dispute that covers `call_id`.
    pub async fn grants_on_call(
        &self,
        staff_id: &str,
        call_id: &str,
    ) -> Result<Vec<GrantOnCall>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {GRANT_COLUMNS}, d.resolved_at FROM grants g \
             JOIN dispute_calls dc ON dc.dispute_id = g.dispute_id \
             JOIN disputes d ON d.id = g.dispute_id \
             WHERE g.requested_by = $1 AND dc.call_id = $2 ORDER BY g.requested_at, g.id"
        ));
        type Row = (
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let rows: Vec<Row> = sqlx::query_as(sql)
            .bind(staff_id)
            .bind(call_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| GrantOnCall {
                dispute_resolved: r.7.is_some(),
                grant: grant((r.0, r.1, r.2, r.3, r.4, r.5, r.6)),
            })
            .collect())
    }
}

/// Which disputes a search wants, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeState {
    /// Not resolved yet.
    Open,
    /// Resolved.
    Resolved,
    /// Either.
    Any,
}

/// A search of the disputes (`GET /v1/disputes?ticket=…&state=…`).
#[derive(Debug, Clone, Copy)]
pub struct DisputeSearch<'a> {
    /// Part of the ticket, case-insensitively (ASCII); `None` for any.
    pub ticket: Option<&'a str>,
    /// Open, resolved or either.
    pub state: DisputeState,
}

/// `text` as a LIKE pattern that matches it anywhere, its own `%`, `_` and
/// `\` taken literally (with `ESCAPE '\'`).
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}
