//! Store tests, each on SQLite and on PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;

use ansim::store::{CloseReason, CreateSessionError, NewSession, Role, Side};

use crate::harness::{DAY, Db, T0, TestDb, n, pool_numbers};
use crate::on_both_databases;

fn new_session(a: &str, b: &str) -> NewSession {
    NewSession {
        a: n(a),
        b: n(b),
        ttl: DAY * 7,
        retention_class: "dispute-3y".into(),
        record: true,
    }
}

const CUSTOMER: &str = "+821012345678";
const MASTER: &str = "+821098765432";

async fn numbers_are_added_once(db: Db) {
    let db = TestDb::new(db).await;
    let pool = pool_numbers(3);
    let first = db.store.add_numbers(&pool[..2], T0).await.unwrap();
    assert_eq!(first.added, pool[..2].to_vec());
    let second = db.store.add_numbers(&pool, T0).await.unwrap();
    assert_eq!(second.added, vec![pool[2].clone()]);
    assert_eq!(second.existing, pool[..2].to_vec());
    let listed = db.store.list_numbers().await.unwrap();
    assert_eq!(
        listed.iter().map(|u| u.number.clone()).collect::<Vec<_>>(),
        pool
    );
    assert!(
        listed
            .iter()
            .all(|u| u.active_bindings == 0 && u.added_at == T0)
    );
}
on_both_databases!(numbers_are_added_once);

async fn session_round_trip_and_routes_both_ways(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(2), T0).await.unwrap();
    let q = DAY * 30;
    let s = db
        .store
        .create_session(&new_session(CUSTOMER, MASTER), T0, q)
        .await
        .unwrap();
    assert_eq!(
        db.store.get_session(&s.id).await.unwrap().as_ref(),
        Some(&s)
    );
    assert_eq!(s.expires_at, T0.saturating_add(DAY * 7));

    // The customer dials their proxy number and reaches the master, who
    // sees the number they hold as caller ID; and the other way round.
    let r = db
        .store
        .lookup_route(s.a.number.real().unwrap(), &s.a.proxy_number, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.callee.clone(), r.caller_id.clone(), r.caller_side),
        (n(MASTER), s.b.proxy_number.clone(), Side::A)
    );
    assert_eq!(r.session_id, s.id);
    assert!(r.record);
    let r = db
        .store
        .lookup_route(s.b.number.real().unwrap(), &s.b.proxy_number, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.callee, r.caller_id, r.caller_side),
        (n(CUSTOMER), s.a.proxy_number.clone(), Side::B)
    );
    // A stranger dialling the same number gets nothing.
    let stranger = n("+821055556666");
    assert!(
        db.store
            .lookup_route(&stranger, &s.a.proxy_number, T0)
            .await
            .unwrap()
            .is_none()
    );

    let usage = db.store.list_numbers().await.unwrap();
    assert_eq!(usage.iter().map(|u| u.active_bindings).sum::<i64>(), 2);

    let later = T0.saturating_add(DAY);
    let closed = db.store.close_session(&s.id, later).await.unwrap().unwrap();
    assert_eq!(
        (closed.closed_at, closed.close_reason),
        (Some(later), Some(CloseReason::Closed))
    );
    assert!(
        db.store
            .lookup_route(s.a.number.real().unwrap(), &s.a.proxy_number, later)
            .await
            .unwrap()
            .is_none()
    );
    // Closing again changes nothing; an unknown id is None.
    assert_eq!(
        db.store
            .close_session(&s.id, later.saturating_add(DAY))
            .await
            .unwrap(),
        Some(closed)
    );
    assert_eq!(
        db.store.close_session("ses_nope", later).await.unwrap(),
        None
    );
    assert!(db.store.list_calls(&s.id).await.unwrap().is_empty());
}
on_both_databases!(session_round_trip_and_routes_both_ways);

async fn expiry_stops_routing_and_is_recorded(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(1), T0).await.unwrap();
    let mut req = new_session(CUSTOMER, MASTER);
    req.ttl = std::time::Duration::from_secs(3600);
    let s = db.store.create_session(&req, T0, DAY).await.unwrap();
    let just_before = T0.saturating_add(std::time::Duration::from_secs(3599));
    assert!(
        db.store
            .lookup_route(s.a.number.real().unwrap(), &s.a.proxy_number, just_before)
            .await
            .unwrap()
            .is_some()
    );
    let at_expiry = s.expires_at;
    assert!(
        db.store
            .lookup_route(s.a.number.real().unwrap(), &s.a.proxy_number, at_expiry)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(db.store.count_open_sessions(at_expiry).await.unwrap(), 0);

    let ended = db
        .store
        .expire_due(at_expiry.saturating_add(DAY), 100)
        .await
        .unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].closed_at, ended[0].close_reason),
        (Some(s.expires_at), Some(CloseReason::Expired))
    );
    assert!(
        db.store
            .expire_due(at_expiry.saturating_add(DAY), 100)
            .await
            .unwrap()
            .is_empty()
    );
}
on_both_databases!(expiry_stops_routing_and_is_recorded);

async fn quarantine_keeps_a_number_from_a_new_counterpart(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(1), T0).await.unwrap();
    let q = DAY * 30;
    let first = db
        .store
        .create_session(&new_session(CUSTOMER, MASTER), T0, q)
        .await
        .unwrap();
    let closed_at = T0.saturating_add(DAY);
    db.store.close_session(&first.id, closed_at).await.unwrap();

    // A new master for the same customer: the only number is quarantined.
    let other_master = "+821033334444";
    let err = db
        .store
        .create_session(&new_session(CUSTOMER, other_master), closed_at, q)
        .await
        .unwrap_err();
    let CreateSessionError::NoProxy { side, reason } = err else {
        panic!("expected NoProxy, got {err:?}")
    };
    assert_eq!(side, Side::A);
    assert_eq!(
        (reason.pool_size, reason.held, reason.quarantined),
        (1, 0, 1)
    );
    assert_eq!(reason.next_free_at, Some(closed_at.saturating_add(q)));

    // The same pair may come back at once and gets the number they know.
    let again = db
        .store
        .create_session(&new_session(CUSTOMER, MASTER), closed_at, q)
        .await
        .unwrap();
    assert_eq!(again.a.proxy_number, first.a.proxy_number);
    db.store.close_session(&again.id, closed_at).await.unwrap();

    // Once the quarantine has run out, the new master may be served.
    let after = closed_at.saturating_add(q);
    let s = db
        .store
        .create_session(&new_session(CUSTOMER, other_master), after, q)
        .await
        .unwrap();
    assert_eq!(s.a.proxy_number, first.a.proxy_number);
}
on_both_databases!(quarantine_keeps_a_number_from_a_new_counterpart);

async fn expired_sessions_release_their_numbers_lazily(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(1), T0).await.unwrap();
    let q = DAY;
    db.store
        .create_session(&new_session(CUSTOMER, MASTER), T0, q)
        .await
        .unwrap();
    // Without any expiry job having run, a creation after the TTL + the
    // quarantine sees the old binding as ended.
    let later = T0.saturating_add(DAY * 7 + q);
    let s = db
        .store
        .create_session(&new_session(CUSTOMER, "+821033334444"), later, q)
        .await
        .unwrap();
    assert!(
        db.store
            .lookup_route(s.a.number.real().unwrap(), &s.a.proxy_number, later)
            .await
            .unwrap()
            .is_some()
    );
}
on_both_databases!(expired_sessions_release_their_numbers_lazily);

async fn one_number_serves_many_sessions(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(1), T0).await.unwrap();
    let mut sessions = Vec::new();
    for i in 0..5 {
        let s = db
            .store
            .create_session(
                &new_session(&format!("+8210111100{i:02}"), &format!("+8210222200{i:02}")),
                T0,
                DAY,
            )
            .await
            .unwrap();
        sessions.push(s);
    }
    let proxy = &sessions[0].a.proxy_number;
    for s in &sessions {
        assert_eq!(&s.a.proxy_number, proxy);
        let r = db
            .store
            .lookup_route(s.a.number.real().unwrap(), proxy, T0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.session_id, s.id);
        assert_eq!(s.b.number, r.callee);
    }
    assert_eq!(
        db.store.list_numbers().await.unwrap()[0].active_bindings,
        10
    );
}
on_both_databases!(one_number_serves_many_sessions);

async fn a_participant_never_holds_a_number_twice(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(2), T0).await.unwrap();
    let s1 = db
        .store
        .create_session(&new_session(CUSTOMER, "+821011110001"), T0, DAY)
        .await
        .unwrap();
    let s2 = db
        .store
        .create_session(&new_session(CUSTOMER, "+821011110002"), T0, DAY)
        .await
        .unwrap();
    assert_ne!(s1.a.proxy_number, s2.a.proxy_number);
    let err = db
        .store
        .create_session(&new_session(CUSTOMER, "+821011110003"), T0, DAY)
        .await
        .unwrap_err();
    let CreateSessionError::NoProxy { side, reason } = err else {
        panic!("expected NoProxy, got {err:?}")
    };
    assert_eq!((side, reason.held, reason.quarantined), (Side::A, 2, 0));
    // The refusal names the participant by side only; no number leaks.
    assert!(!reason.to_string().contains("1011110003"));
}
on_both_databases!(a_participant_never_holds_a_number_twice);

/// Hundreds of concurrent creations for one customer with distinct masters:
/// the customer can hold each number once, so exactly `pool` succeed, the
/// rest are refused cleanly, and no (participant, number) pair is doubled.
async fn concurrent_creations_never_conflict(db: Db) {
    const POOL: usize = 120;
    const REQUESTS: usize = 200;
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(POOL), T0).await.unwrap();
    let store = Arc::new(db.store.clone());
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let req = new_session(CUSTOMER, &format!("+82109{i:07}"));
            store.create_session(&req, T0, DAY).await
        }));
    }
    let (mut ok, mut refused) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(s) => ok.push(s),
            Err(CreateSessionError::NoProxy {
                side: Side::A,
                reason,
            }) => {
                assert_eq!(reason.held, POOL);
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok.len(), refused), (POOL, REQUESTS - POOL));
    let distinct: HashSet<_> = ok.iter().map(|s| s.a.proxy_number.clone()).collect();
    assert_eq!(distinct.len(), POOL, "the customer got a number twice");
    let active: i64 = db
        .store
        .list_numbers()
        .await
        .unwrap()
        .iter()
        .map(|u| u.active_bindings)
        .sum();
    assert_eq!(active, 2 * POOL as i64);
    for s in &ok {
        let r = db
            .store
            .lookup_route(s.a.number.real().unwrap(), &s.a.proxy_number, T0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.session_id, s.id);
    }
}
on_both_databases!(concurrent_creations_never_conflict);

/// Many pairs created and closed at once across a small pool: afterwards
/// every open session routes to itself and nothing is doubled.
async fn concurrent_mixed_traffic_stays_consistent(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(4), T0).await.unwrap();
    let store = Arc::new(db.store.clone());
    let mut tasks = Vec::new();
    for i in 0..150usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // 10 customers x 15 masters: customers hold up to 4 sessions.
            let req = new_session(
                &format!("+82101000{:04}", i % 10),
                &format!("+82102000{:04}", i),
            );
            let s = store.create_session(&req, T0, DAY).await;
            if let (Ok(s), 0) = (&s, i % 3) {
                store.close_session(&s.id, T0).await.unwrap();
            }
            s.map(|s| s.id)
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(id) => open.push(id),
            Err(CreateSessionError::NoProxy { .. }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    let mut keys = HashSet::new();
    for id in open {
        let s = db.store.get_session(&id).await.unwrap().unwrap();
        if !s.is_open(T0) {
            continue;
        }
        for (who, proxy) in s.route_keys() {
            assert!(keys.insert((who.clone(), proxy.clone())), "key doubled");
            let r = db
                .store
                .lookup_route(&who, &proxy, T0)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(r.session_id, s.id);
        }
    }
    assert!(!keys.is_empty());
}
on_both_databases!(concurrent_mixed_traffic_stays_consistent);

async fn staff_tokens_are_found_by_hash_and_disabled(db: Db) {
    let db = TestDb::new(db).await;
    let m = db
        .store
        .add_staff("alice", Role::Support, "abc123", T0)
        .await
        .unwrap();
    assert_eq!(
        db.store.staff_by_token_hash("abc123").await.unwrap(),
        Some(m.clone())
    );
    assert_eq!(db.store.staff_by_token_hash("other").await.unwrap(), None);
    let dup = db
        .store
        .add_staff("alice", Role::Admin, "def", T0)
        .await
        .unwrap_err();
    assert!(dup.is_unique_violation(), "{dup:?}");
    let disabled = db.store.disable_staff("alice", T0).await.unwrap().unwrap();
    assert_eq!(disabled.disabled_at, Some(T0));
    assert_eq!(db.store.list_staff().await.unwrap(), vec![disabled]);
    assert_eq!(db.store.disable_staff("bob", T0).await.unwrap(), None);
}
on_both_databases!(staff_tokens_are_found_by_hash_and_disabled);

async fn call_end_reason_is_kept(db: Db) {
    let db = TestDb::new(db).await;
    // (id, reason at the start, reason at the end, reason stored)
    for (id, start, end, want) in [
        (
            "cal_reason",
            None,
            Some("session-refresh-failed"),
            Some("session-refresh-failed"),
        ),
        ("cal_plain", None, None, None),
        (
            "cal_refused",
            Some("no-caller-number"),
            None,
            Some("no-caller-number"),
        ),
    ] {
        let call = ansim::store::NewCall {
            id: id.into(),
            session_id: None,
            direction: "unrouted",
            caller: Some(n(CUSTOMER)),
            dialled: n(MASTER),
            invite_at: T0,
            reason: start,
        };
        db.store.insert_call(&call).await.unwrap();
        let end = ansim::store::CallEnd {
            at: T0,
            result: ansim::store::CallResult::Failed,
            sip_status: 200,
            hangup_side: Some(ansim::store::HangupSide::System),
            reason: end,
        };
        db.store.call_ended(id, &end).await.unwrap();
        let stored = db.store.get_call(id).await.unwrap().unwrap();
        assert_eq!(stored.reason.as_deref(), want, "{id}");
    }
}
on_both_databases!(call_end_reason_is_kept);

/// A batch of call-record writes is folded (a call started in the batch
/// becomes one row of one multi-row insert); what is stored must be what
/// the same writes store one at a time: first ringing, answer and end
/// win, an end's reason replaces the start's only if it has one, and the
/// steps of a call started in an earlier batch still apply.
async fn a_folded_batch_stores_what_single_writes_store(db: Db) {
    use ansim::store::{CallEnd, CallResult, CallWrite, HangupSide, NewCall};
    let db = TestDb::new(db).await;
    let at = |ms: i64| ansim::clock::Timestamp::from_millis(T0.as_millis() + ms);
    let steps = |id: &str, reason: Option<&'static str>| -> Vec<CallWrite> {
        let end = |ms, result, status, reason| CallEnd {
            at: at(ms),
            result,
            sip_status: status,
            hangup_side: Some(HangupSide::Caller),
            reason,
        };
        vec![
            CallWrite::Insert(NewCall {
                id: id.into(),
                session_id: None,
                direction: "unrouted",
                caller: Some(n(CUSTOMER)),
                dialled: n(MASTER),
                invite_at: at(0),
                reason,
            }),
            CallWrite::Ring(id.into(), at(10)),
            CallWrite::Ring(id.into(), at(11)),
            CallWrite::Answer(id.into(), at(20)),
            CallWrite::End(id.into(), end(30, CallResult::Answered, 200, None)),
            CallWrite::End(id.into(), end(40, CallResult::Failed, 500, Some("late"))),
        ]
    };
    // One batch holding two whole calls, and one call's start only.
    let mut batch = steps("cal_fold_a", Some("no-caller-number"));
    batch.extend(steps("cal_fold_b", None));
    let open = steps("cal_fold_c", None);
    batch.push(open[0].clone());
    db.store.write_calls(&batch).await.unwrap();
    // The rest of the third call comes in a later batch.
    db.store.write_calls(&open[1..]).await.unwrap();
    // The same writes, one at a time.
    for (id, reason) in [
        ("cal_single_a", Some("no-caller-number")),
        ("cal_single_b", None),
        ("cal_single_c", None),
    ] {
        for w in steps(id, reason) {
            db.store
                .write_calls(std::slice::from_ref(&w))
                .await
                .unwrap();
        }
    }
    for x in ["a", "b", "c"] {
        let mut folded = db
            .store
            .get_call(&format!("cal_fold_{x}"))
            .await
            .unwrap()
            .unwrap();
        let single = db
            .store
            .get_call(&format!("cal_single_{x}"))
            .await
            .unwrap()
            .unwrap();
        folded.id = single.id.clone();
        assert_eq!(folded, single, "call {x}");
        assert_eq!(single.ring_at, Some(at(10)));
        assert_eq!(single.end_at, Some(at(30)));
    }
    let a = db.store.get_call("cal_single_a").await.unwrap().unwrap();
    assert_eq!(a.reason.as_deref(), Some("no-caller-number"));
    // More calls than one statement takes.
    let many: Vec<CallWrite> = (0..450)
        .flat_map(|i| steps(&format!("cal_many_{i}"), None))
        .collect();
    db.store.write_calls(&many).await.unwrap();
    let last = db.store.get_call("cal_many_449").await.unwrap().unwrap();
    assert_eq!((last.answer_at, last.end_at), (Some(at(20)), Some(at(30))));
    // The steps of many calls started in an earlier batch, interleaved
    // (every call's first ringing, then every call's second, …): grouped
    // updates, more calls than one statement takes, first step wins.
    let calls: Vec<Vec<CallWrite>> = (0..250)
        .map(|i| steps(&format!("cal_later_{i}"), None))
        .collect();
    let starts: Vec<CallWrite> = calls.iter().map(|c| c[0].clone()).collect();
    db.store.write_calls(&starts).await.unwrap();
    let rest: Vec<CallWrite> = (1..6)
        .flat_map(|k| calls.iter().map(move |c| c[k].clone()))
        .collect();
    db.store.write_calls(&rest).await.unwrap();
    let single = db.store.get_call("cal_single_b").await.unwrap().unwrap();
    for i in [0, 99, 100, 249] {
        let mut later = db
            .store
            .get_call(&format!("cal_later_{i}"))
            .await
            .unwrap()
            .unwrap();
        later.id = single.id.clone();
        assert_eq!(later, single, "call {i} ended in a later batch");
    }
}
on_both_databases!(a_folded_batch_stores_what_single_writes_store);

/// Recordings' rows in a batch go in as multi-row statements; what is
/// stored must be what one-at-a-time writes store: each row in state
/// `recording` until its end, the call pointing at its last recording,
/// an end after its start in the same batch taking effect, and more
/// rows than one statement takes.
async fn recordings_in_a_batch_store_what_single_writes_store(db: Db) {
    use ansim::store::{
        CallWrite, NewCall, RecordingEnd, RecordingRow, RecordingState, RecordingWrite,
    };
    let db = TestDb::new(db).await;
    let call = |id: String| {
        CallWrite::Insert(NewCall {
            id,
            session_id: None,
            direction: "unrouted",
            caller: Some(n(CUSTOMER)),
            dialled: n(MASTER),
            invite_at: T0,
            reason: None,
        })
    };
    let row = |id: String, call_id: String| RecordingRow {
        id,
        call_id,
        session_id: "ses_batch".into(),
        retention_class: "dispute-3y".into(),
        epoch_id: "epoch".into(),
        wrapped_dek: vec![7; 40],
        blob: "b.crec".into(),
        codec: None,
        state: RecordingState::Recording,
        failure: None,
        started_at: T0,
        ended_at: None,
        duration_ms: None,
        expires_at: None,
        held_by: None,
    };
    let end = RecordingEnd {
        state: RecordingState::Complete,
        failure: None,
        ended_at: T0,
        duration_ms: Some(1_000),
        expires_at: T0,
    };
    // 60 calls, one recording each, the first call a second one too.
    let calls: Vec<_> = (0..60).map(|i| call(format!("cal_rb_{i}"))).collect();
    let mut writes: Vec<_> = (0..60)
        .map(|i| RecordingWrite::Started(row(format!("rec_rb_{i}"), format!("cal_rb_{i}"))))
        .collect();
    writes.insert(30, RecordingWrite::Ended("rec_rb_3".into(), end.clone()));
    writes.push(RecordingWrite::Started(row(
        "rec_rb_0b".into(),
        "cal_rb_0".into(),
    )));
    let refs: Vec<_> = writes.iter().collect();
    let done = db.store.write_rows(&calls, &refs).await.unwrap();
    assert!(done.iter().all(|d| *d), "{done:?}");
    for i in 1..60 {
        let c = db
            .store
            .get_call(&format!("cal_rb_{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.recording_id, Some(format!("rec_rb_{i}")), "call {i}");
        let r = db
            .store
            .find_recording(&format!("rec_rb_{i}"))
            .await
            .unwrap()
            .unwrap();
        let want = if i == 3 {
            RecordingState::Complete
        } else {
            RecordingState::Recording
        };
        assert_eq!(
            (r.call_id.as_str(), r.state),
            (c.id.as_str(), want),
            "recording {i}"
        );
    }
    let first = db.store.get_call("cal_rb_0").await.unwrap().unwrap();
    assert_eq!(first.recording_id.as_deref(), Some("rec_rb_0b"));
    // A row whose call is not there fails the batch, as it does alone.
    let orphan = RecordingWrite::Started(row("rec_rb_x".into(), "cal_none".into()));
    assert!(db.store.write_rows(&[], &[&orphan]).await.is_err());
    assert!(db.store.find_recording("rec_rb_x").await.unwrap().is_none());
}
on_both_databases!(recordings_in_a_batch_store_what_single_writes_store);
