//! A batch of call-record writes, folded before it reaches the database.
//!
//! The SIP engine queues one [`CallWrite`] per step of a call (start,
//! ringing, answer, end) and the write-behind writer stores whatever has
//! queued up in one transaction. A short call often starts and ends within
//! one batch; written one by one, its four steps cost four statements,
//! each a round trip to the database (for SQLite, to its worker thread).
//! Folded, every call *started* in the batch becomes one row of one
//! multi-row `INSERT`, with whatever of its later steps came in the same
//! batch already filled in. The steps of calls started in an earlier
//! batch (most steps, once calls last longer than a batch) are `UPDATE`s,
//! but grouped too: all the ringings of a batch are one multi-row
//! `UPDATE … FROM (VALUES …)`, all the answers another, all the ends a
//! third (each touching a different column, so their order among
//! themselves does not matter; a second step of one kind for one call
//! never wins, as alone).
//!
//! Folding keeps what the one-by-one writes mean: each step touches a
//! record the first time only (the first ringing, answer and end count),
//! an end's reason replaces the one the record started with only if it has
//! one, and every end still writes its `call.completed` event in the same
//! transaction, after the row it reports on is complete.
//!
//! A batch may also carry recordings' row writes ([`RecordingWrite`]),
//! applied after the call records: so a recording's row, which refers to
//! its call's, never comes before it, and a thousand recordings a second
//! cost a few transactions rather than two thousand.

use std::collections::HashMap;

use super::calls::{CallEnd, CallWrite, NewCall};
use super::{Backend, RecordingEnd, RecordingFailure, RecordingRow, Store, StoreError, Tx};
use crate::clock::Timestamp;
use crate::store::HangupSide;

/// Rows of one `INSERT`, 14 parameters each. Far inside SQLite's (32,766)
/// and PostgreSQL's (65,535) limits. On SQLite the parameters are plain
/// `?`s ([`insert_sql`]): sqlx binds each numbered one by looking its name
/// up, a walk of the statement's parameter list, so numbered parameters
/// cost the square of their count (at 25 rows, a fifth of the writer
/// thread at 6,000 calls/s; at 200 rows a quarter of a core at 2,000/s).
const ROWS_PER_INSERT: usize = 25;

/// Calls one grouped `UPDATE` touches at most (6 parameters each at most).
const ROWS_PER_UPDATE: usize = 100;

/// A call started in this batch, with the steps of it the batch also holds.
#[derive(Debug)]
pub(super) struct StartedCall<'a> {
    /// The start.
    pub(super) call: &'a NewCall,
    /// The first ringing in the batch.
    pub(super) ring_at: Option<Timestamp>,
    /// The first answer in the batch.
    pub(super) answer_at: Option<Timestamp>,
    /// The first end in the batch.
    pub(super) end: Option<&'a CallEnd>,
}

/// A batch, folded: calls it starts, and the steps of older calls.
#[derive(Debug, Default)]
pub(super) struct Folded<'a> {
    /// Calls started in the batch, in the order they started.
    pub(super) started: Vec<StartedCall<'a>>,
    /// Steps of calls started in an earlier batch, in their order.
    pub(super) later: Vec<&'a CallWrite>,
}

/// Folds `writes` (in the order they were made).
pub(super) fn fold(writes: &[CallWrite]) -> Folded<'_> {
    let mut folded = Folded::default();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for write in writes {
        let started = match write {
            CallWrite::Insert(c) => {
                if index.contains_key(c.id.as_str()) {
                    // Inserted twice: the second fails as it would alone.
                    folded.later.push(write);
                } else {
                    index.insert(&c.id, folded.started.len());
                    folded.started.push(StartedCall {
                        call: c,
                        ring_at: None,
                        answer_at: None,
                        end: None,
                    });
                }
                continue;
            }
            CallWrite::Ring(id, _) | CallWrite::Answer(id, _) | CallWrite::End(id, _) => {
                index.get(id.as_str()).map(|&i| &mut folded.started[i])
            }
        };
        let Some(s) = started else {
            folded.later.push(write);
            continue;
        };
        match write {
            CallWrite::Ring(_, at) => {
                s.ring_at.get_or_insert(*at);
            }
            CallWrite::Answer(_, at) => {
                s.answer_at.get_or_insert(*at);
            }
            CallWrite::End(_, end) => {
                s.end.get_or_insert(end);
            }
            CallWrite::Insert(_) => {}
        }
    }
    folded
}

/// Inserts `calls` with as few statements as fit.
pub(super) async fn insert_started(
    tx: &mut Tx,
    calls: &[StartedCall<'_>],
) -> Result<(), StoreError> {
    let node = tx.node.clone();
    for rows in calls.chunks(ROWS_PER_INSERT) {
        // Only placeholders are generated; every value is bound.
        let sql = insert_sql(rows.len(), tx.backend);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in rows {
            let c = s.call;
            let end = s.end;
            q = q
                .bind(&c.id)
                .bind(c.session_id.as_deref())
                .bind(c.direction)
                .bind(c.caller.as_ref().map_or("", |n| n.as_str()))
                .bind(c.dialled.as_str())
                .bind(c.invite_at.as_millis())
                .bind(end.and_then(|e| e.reason).or(c.reason))
                .bind(&*node)
                .bind(s.ring_at.map(Timestamp::as_millis))
                .bind(s.answer_at.map(Timestamp::as_millis))
                .bind(end.map(|e| e.at.as_millis()))
                .bind(end.map(|e| e.result.as_str()))
                .bind(end.map(|e| i64::from(e.sip_status)))
                .bind(end.and_then(|e| e.hangup_side.map(HangupSide::as_str)));
        }
        q.execute(tx.conn()).await?;
    }
    Ok(())
}

/// The steps of calls started in earlier batches, grouped by kind (see
/// the module docs); a second insert of one id goes alone, and fails.
async fn apply_later(tx: &mut Tx, later: &[&CallWrite]) -> Result<(), StoreError> {
    let mut rings = FirstPerCall::default();
    let mut answers = FirstPerCall::default();
    let mut ends = FirstPerCall::default();
    for &write in later {
        match write {
            CallWrite::Insert(_) => super::calls::apply(tx, write).await?,
            CallWrite::Ring(id, at) => rings.add(id, *at),
            CallWrite::Answer(id, at) => answers.add(id, *at),
            CallWrite::End(id, end) => ends.add(id, end),
        }
    }
    for (column, steps) in [("ring_at", rings), ("answer_at", answers)] {
        for chunk in steps.0.chunks(ROWS_PER_UPDATE) {
            let sql = set_once_sql(column, chunk.len(), tx.backend);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, at) in chunk {
                q = q.bind(*id).bind(at.as_millis());
            }
            q.execute(tx.conn()).await?;
        }
    }
    for chunk in ends.0.chunks(ROWS_PER_UPDATE) {
        let sql = end_calls_sql(chunk.len(), tx.backend);
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for (id, end) in chunk {
            q = q
                .bind(*id)
                .bind(end.at.as_millis())
                .bind(end.result.as_str())
                .bind(i64::from(end.sip_status))
                .bind(end.hangup_side.map(HangupSide::as_str))
                .bind(end.reason);
        }
        // The calls whose end took effect (not ended before) are reported.
        let ended = q.fetch_all(tx.conn()).await?;
        if ended.is_empty() || !tx.webhooks.wants("call.completed") {
            continue;
        }
        let at: HashMap<&str, Timestamp> = chunk.iter().map(|(id, e)| (*id, e.at)).collect();
        for id in &ended {
            if let Some(&at) = at.get(id.as_str()) {
                super::calls::report_completed(tx, id, at).await?;
            }
        }
    }
    Ok(())
}

/// Ends recordings (`ends`, in their order) with one grouped `UPDATE`
/// per [`ROWS_PER_UPDATE`], each only while the recording is still
/// `recording`; for each end, whether it took effect (a second end of one
/// recording never does, as alone). Those that did write their
/// `recording.completed` event.
async fn finish_recordings(
    tx: &mut Tx,
    ends: &[(&str, &RecordingEnd)],
) -> Result<Vec<bool>, StoreError> {
    let mut first = FirstPerCall::default();
    for (i, (id, end)) in ends.iter().enumerate() {
        first.add(id, (i, *end));
    }
    let mut done = vec![false; ends.len()];
    for chunk in first.0.chunks(ROWS_PER_UPDATE) {
        let sql = end_recordings_sql(chunk.len(), tx.backend);
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for (id, (_, end)) in chunk {
            q = q
                .bind(*id)
                .bind(end.state.as_str())
                .bind(end.failure.map(RecordingFailure::as_str))
                .bind(end.ended_at.as_millis())
                .bind(end.duration_ms)
                .bind(end.expires_at.as_millis());
        }
        let ended: std::collections::HashSet<String> =
            q.fetch_all(tx.conn()).await?.into_iter().collect();
        for (id, (i, end)) in chunk {
            if ended.contains(*id) {
                done[*i] = true;
                super::recordings::report_recording_completed(tx, id, end).await?;
            }
        }
    }
    Ok(done)
}

/// The ends of `rows` recordings as one `UPDATE … FROM (VALUES (id,
/// state, failure, ended, duration, expires), …)`, each only while still
/// `recording`, returning the ids it ended.
fn end_recordings_sql(rows: usize, backend: Backend) -> String {
    let mut sql = String::from(
        "UPDATE recordings SET state = v.column2, failure = v.column3, ended_at = v.column4, \
         duration_ms = v.column5, expires_at = v.column6 FROM (VALUES ",
    );
    let mut params = Params::new(backend);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        params.push_row(&mut sql, 6, None);
    }
    sql.push_str(
        ") AS v WHERE recordings.id = v.column1 AND recordings.state = 'recording' RETURNING id",
    );
    sql
}

/// Steps of one kind, the first per call, in order.
struct FirstPerCall<'a, T>(Vec<(&'a str, T)>, std::collections::HashSet<&'a str>);

impl<T> Default for FirstPerCall<'_, T> {
    fn default() -> Self {
        FirstPerCall(Vec::new(), Default::default())
    }
}

impl<'a, T> FirstPerCall<'a, T> {
    fn add(&mut self, id: &'a str, step: T) {
        if self.1.insert(id) {
            self.0.push((id, step));
        }
    }
}

/// `UPDATE calls SET <column> = … FROM (VALUES (id, at), …)` for `rows`
/// calls, each only where `column` is not set yet (the first one counts).
fn set_once_sql(column: &str, rows: usize, backend: Backend) -> String {
    let mut sql = format!("UPDATE calls SET {column} = v.column2 FROM (VALUES ");
    let mut params = Params::new(backend);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        params.push_row(&mut sql, 2, None);
    }
    sql.push_str(&format!(
        ") AS v WHERE calls.id = v.column1 AND calls.{column} IS NULL"
    ));
    sql
}

/// The ends of `rows` calls as one `UPDATE … FROM (VALUES (id, at, result,
/// status, side, reason), …)`, each only where the call has not ended
/// yet, returning the ids it ended.
fn end_calls_sql(rows: usize, backend: Backend) -> String {
    let mut sql = String::from(
        "UPDATE calls SET end_at = v.column2, result = v.column3, sip_status = v.column4, \
         hangup_side = v.column5, reason = COALESCE(v.column6, calls.reason) FROM (VALUES ",
    );
    let mut params = Params::new(backend);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        params.push_row(&mut sql, 6, None);
    }
    sql.push_str(") AS v WHERE calls.id = v.column1 AND calls.end_at IS NULL RETURNING id");
    sql
}

/// Inserts recordings' rows (started, in `rows`' order) with as few
/// statements as fit, and points each one's call record at it (for one
/// row, [`super::recordings::insert_recording_in`]).
pub(super) async fn insert_recordings(
    tx: &mut Tx,
    rows: &[&RecordingRow],
) -> Result<(), StoreError> {
    let node = tx.node.clone();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_recordings_sql(chunk.len(), tx.backend);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.id)
                .bind(&r.call_id)
                .bind(&r.session_id)
                .bind(&r.retention_class)
                .bind(&r.epoch_id)
                .bind(&r.wrapped_dek)
                .bind(&r.blob)
                .bind(super::recordings::codec_text(r.codec))
                .bind(r.started_at.as_millis())
                .bind(&*node);
        }
        q.execute(tx.conn()).await?;
        let links = last_recording_per_call(chunk);
        let sql = link_calls_sql(links.len(), tx.backend);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (call, recording) in &links {
            q = q.bind(*call).bind(*recording);
        }
        for (call, _) in &links {
            q = q.bind(*call);
        }
        q.execute(tx.conn()).await?;
    }
    Ok(())
}

/// `(call id, recording id)` for each call in `rows`, with the recording
/// that came last: one by one, each insert would have overwritten the one
/// before it.
fn last_recording_per_call<'a>(rows: &[&'a RecordingRow]) -> Vec<(&'a str, &'a str)> {
    let mut seen = std::collections::HashSet::new();
    let mut links: Vec<_> = rows
        .iter()
        .rev()
        .filter(|r| seen.insert(r.call_id.as_str()))
        .map(|r| (r.call_id.as_str(), r.id.as_str()))
        .collect();
    links.reverse();
    links
}

/// Hands out a statement's parameters in order, numbered for PostgreSQL
/// and plain `?`s for SQLite (see [`ROWS_PER_INSERT`] for why).
struct Params {
    /// Which database's form.
    backend: Backend,
    /// Parameters handed out so far.
    count: usize,
}

impl Params {
    fn new(backend: Backend) -> Self {
        Params { backend, count: 0 }
    }

    /// Appends the next parameter to `sql`.
    fn push(&mut self, sql: &mut String) {
        self.count += 1;
        match self.backend {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => {
                sql.push('$');
                sql.push_str(&self.count.to_string());
            }
        }
    }

    /// Appends `(p, p, …)` of `n` parameters, with `fixed` put in after
    /// the first `at` of them.
    fn push_row(&mut self, sql: &mut String, n: usize, fixed: Option<(usize, &str)>) {
        sql.push('(');
        for col in 0..n {
            if col > 0 {
                sql.push_str(", ");
            }
            if let Some((_, text)) = fixed.filter(|(at, _)| *at == col) {
                sql.push_str(text);
                sql.push_str(", ");
            }
            self.push(sql);
        }
        sql.push(')');
    }
}

/// `INSERT INTO recordings (…) VALUES (…), (…)` for `rows` rows, each
/// starting in state `recording`.
fn insert_recordings_sql(rows: usize, backend: Backend) -> String {
    let mut sql = String::from(
        "INSERT INTO recordings (id, call_id, session_id, retention_class, epoch_id, \
         wrapped_dek, blob, codec, state, started_at, node) VALUES ",
    );
    let mut params = Params::new(backend);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        params.push_row(&mut sql, 10, Some((8, "'recording'")));
    }
    sql
}

/// `UPDATE calls SET recording_id = CASE id WHEN … THEN … END WHERE id IN
/// (…)` for `links` calls: pairs (call, recording) bound first, then the
/// calls again.
fn link_calls_sql(links: usize, backend: Backend) -> String {
    let mut sql = String::from("UPDATE calls SET recording_id = CASE id");
    let mut params = Params::new(backend);
    for _ in 0..links {
        sql.push_str(" WHEN ");
        params.push(&mut sql);
        sql.push_str(" THEN ");
        params.push(&mut sql);
    }
    sql.push_str(" END WHERE id IN ");
    params.push_row(&mut sql, links, None);
    sql
}

/// `INSERT INTO calls (…) VALUES (…), (…)` for `rows` rows: parameters
/// `$1…` for PostgreSQL, plain `?`s (bound in order, with no name to look
/// up) for SQLite.
fn insert_sql(rows: usize, backend: Backend) -> String {
    const COLUMNS: usize = 14;
    let mut sql = String::from(
        "INSERT INTO calls (id, session_id, direction, caller, dialled, invite_at, reason, \
         node, ring_at, answer_at, end_at, result, sip_status, hangup_side) VALUES ",
    );
    let mut params = Params::new(backend);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        params.push_row(&mut sql, COLUMNS, None);
    }
    sql
}

/// A write of a recording's row that goes in a batch of call records
/// (after them: a recording's row refers to its call's).
#[derive(Debug, Clone)]
pub enum RecordingWrite {
    /// [`Store::insert_recording`].
    Started(RecordingRow),
    /// [`Store::finish_recording`] of the recording with this id.
    Ended(String, RecordingEnd),
}

impl Store {
    /// Applies `calls` (folded, see the module docs) and then `recordings`
    /// in one transaction: all or none. For each recording write, whether
    /// it took effect (an end: whether the row was still `recording`).
    pub async fn write_rows(
        &self,
        calls: &[CallWrite],
        recordings: &[&RecordingWrite],
    ) -> Result<Vec<bool>, StoreError> {
        let folded = fold(calls);
        let mut tx = self.begin().await?;
        insert_started(&mut tx, &folded.started).await?;
        for started in &folded.started {
            if let Some(end) = started.end {
                super::calls::report_completed(&mut tx, &started.call.id, end.at).await?;
            }
        }
        apply_later(&mut tx, &folded.later).await?;
        // Every start goes in before any end: a recording's end never
        // comes before its own start, so each keeps its order.
        let mut starts: Vec<&RecordingRow> = Vec::new();
        let mut ends: Vec<(&str, &RecordingEnd)> = Vec::new();
        for write in recordings {
            match write {
                RecordingWrite::Started(row) => starts.push(row),
                RecordingWrite::Ended(id, end) => ends.push((id, end)),
            }
        }
        insert_recordings(&mut tx, &starts).await?;
        let mut ended = finish_recordings(&mut tx, &ends).await?.into_iter();
        let done = recordings
            .iter()
            .map(|w| match w {
                RecordingWrite::Started(_) => true,
                RecordingWrite::Ended(..) => ended.next().unwrap_or(false),
            })
            .collect();
        tx.commit().await?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CallResult;

    fn start(id: &str) -> CallWrite {
        CallWrite::Insert(NewCall {
            id: id.into(),
            session_id: None,
            direction: "unrouted",
            caller: None,
            dialled: "+82505000001".parse().unwrap(),
            invite_at: Timestamp::from_millis(1),
            reason: Some("out-of-session"),
        })
    }

    fn end(id: &str, at: i64) -> CallWrite {
        CallWrite::End(
            id.into(),
            CallEnd {
                at: Timestamp::from_millis(at),
                result: CallResult::Answered,
                sip_status: 200,
                hangup_side: Some(HangupSide::Caller),
                reason: None,
            },
        )
    }

    #[test]
    fn a_call_started_in_the_batch_is_one_row_with_its_first_steps() {
        let t = Timestamp::from_millis;
        let writes = [
            start("a"),
            CallWrite::Ring("old".into(), t(2)),
            CallWrite::Ring("a".into(), t(3)),
            CallWrite::Ring("a".into(), t(4)),
            CallWrite::Answer("a".into(), t(5)),
            start("b"),
            end("a", 6),
            end("a", 7),
            end("old", 8),
        ];
        let f = fold(&writes);
        assert_eq!(f.started.len(), 2);
        let a = &f.started[0];
        assert_eq!(
            (a.call.id.as_str(), a.ring_at, a.answer_at),
            ("a", Some(t(3)), Some(t(5)))
        );
        assert_eq!(a.end.map(|e| e.at), Some(t(6)));
        let b = &f.started[1];
        assert!(b.ring_at.is_none() && b.answer_at.is_none() && b.end.is_none());
        let later: Vec<_> = f.later.iter().map(|w| format!("{w:?}")).collect();
        assert_eq!(later.len(), 2, "{later:?}");
        assert!(later[0].starts_with("Ring(\"old\"") && later[1].starts_with("End(\"old\""));
    }

    #[test]
    fn a_second_insert_of_one_id_is_left_to_fail_on_its_own() {
        let writes = [start("a"), start("a")];
        let f = fold(&writes);
        assert_eq!((f.started.len(), f.later.len()), (1, 1));
    }

    #[test]
    fn the_statement_numbers_every_parameter_once() {
        let sql = insert_sql(2, Backend::Postgres);
        assert!(
            sql.ends_with("($15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)")
        );
        assert_eq!(sql.matches('$').count(), 28);
        // SQLite: the same statement with positional parameters only.
        let sqlite = insert_sql(2, Backend::Sqlite);
        assert!(!sqlite.contains('$'));
        assert_eq!(sqlite.matches('?').count(), 28);
        assert_eq!(
            sqlite.split(" VALUES ").next(),
            sql.split(" VALUES ").next()
        );
    }

    #[test]
    fn recordings_rows_keep_their_fixed_state_and_link_their_calls() {
        let sql = insert_recordings_sql(2, Backend::Postgres);
        assert!(
            sql.ends_with("($11, $12, $13, $14, $15, $16, $17, $18, 'recording', $19, $20)"),
            "{sql}"
        );
        let sqlite = insert_recordings_sql(2, Backend::Sqlite);
        assert_eq!(sqlite.matches('?').count(), 20);
        assert_eq!(
            link_calls_sql(2, Backend::Postgres),
            "UPDATE calls SET recording_id = CASE id WHEN $1 THEN $2 WHEN $3 THEN $4 END \
             WHERE id IN ($5, $6)"
        );
    }
}
