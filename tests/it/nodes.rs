//! Several nodes on one database: the node lease, and reconciliation that
//! touches only the node's own calls and recordings.

use ansim::store::{NewCall, Store, StoreError};

use crate::harness::{DAY, Db, T0, TestDb, count, execute, n, pool_numbers, routing_on};
use crate::on_both_databases;
use crate::rig::Rig;

fn open_call(id: &str) -> NewCall {
    NewCall {
        id: id.into(),
        session_id: None,
        direction: "unrouted",
        caller: Some(n("+821012345678")),
        dialled: n("+8250500000001"),
        invite_at: T0,
        reason: None,
    }
}

async fn a_second_process_with_the_same_node_id_is_refused(db: Db) {
    let db = TestDb::new(db).await;
    // Two processes: two pools on one database.
    let other = Store::connect(&db.url).await.unwrap();
    let first = db.store.with_node("n1").lease_node().await.unwrap();
    let again = other.with_node("n1").lease_node().await;
    let neighbour = other.with_node("n2").lease_node().await.unwrap();
    match db.store.backend() {
        ansim::store::Backend::Postgres => {
            let e = again.unwrap_err();
            assert!(matches!(e, StoreError::NodeTaken { ref node } if node == "n1"));
            assert!(e.to_string().contains("node id 'n1' is in use"), "{e}");
            // Once the first process gives the id up, it can be taken.
            first.release().await.unwrap();
            let taken = other.with_node("n1").lease_node().await.unwrap();
            taken.release().await.unwrap();
        }
        // One file, one machine: one node by construction, no lease.
        ansim::store::Backend::Sqlite => {
            again.unwrap().release().await.unwrap();
            first.release().await.unwrap();
        }
    }
    neighbour.release().await.unwrap();
    other.close().await;
}
on_both_databases!(a_second_process_with_the_same_node_id_is_refused);

async fn start_up_reconciliation_leaves_other_nodes_calls_alone(db: Db) {
    let db = TestDb::new(db).await;
    let (n1, n2) = (db.store.with_node("n1"), db.store.with_node("n2"));
    n1.insert_call(&open_call("cal_n1")).await.unwrap();
    n2.insert_call(&open_call("cal_n2")).await.unwrap();
    // A call from before nodes existed belongs to nobody in particular.
    db.store.insert_call(&open_call("cal_old")).await.unwrap();
    assert_eq!(n1.get_call("cal_n1").await.unwrap().unwrap().node, "n1");

    // n2 restarts after a crash.
    assert_eq!(n2.interrupt_open_calls(T0).await.unwrap(), 2);
    let ended = |id: &'static str| {
        let n1 = n1.clone();
        async move { n1.get_call(id).await.unwrap().unwrap().end_at.is_some() }
    };
    assert!(ended("cal_n2").await && ended("cal_old").await);
    assert!(!ended("cal_n1").await, "n1's live call is n1's to end");
    assert_eq!(n1.interrupt_open_calls(T0).await.unwrap(), 1);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM calls WHERE end_at IS NULL").await,
        0
    );
}
on_both_databases!(start_up_reconciliation_leaves_other_nodes_calls_alone);

async fn recording_reconciliation_leaves_other_nodes_recordings_alone(db: Db) {
    let db = TestDb::new(db).await;
    let (a, b) = (
        Rig::new(db.store.with_node("n1")),
        Rig::new(db.store.with_node("n2")),
    );
    let mut live = Vec::new();
    for rig in [&a, &b] {
        let mut row = rig.record("ad-6m").await;
        row.id = uuid::Uuid::new_v4().to_string();
        row.blob = format!("{}.crec", row.id);
        rig.store.insert_recording(&row).await.unwrap();
        live.push(row.id);
    }
    let sql = format!(
        "SELECT COUNT(*) FROM recordings WHERE id = '{}' AND node = 'n1'",
        live[0]
    );
    assert_eq!(count(&db, &sql).await, 1);
    // n2 has no writer for either: it may end only its own.
    b.clock.set(T0.saturating_add(DAY));
    let truncated = b.recorder.reconcile().await.unwrap();
    assert_eq!(
        truncated.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![live[1].clone()]
    );
    let first = db.store.find_recording(&live[0]).await.unwrap().unwrap();
    assert_eq!(first.state.as_str(), "recording", "n1's writer is alive");
    // Rows from before nodes existed are anyone's.
    execute(
        &db,
        &format!("UPDATE recordings SET node = '' WHERE id = '{}'", live[0]),
    )
    .await;
    assert_eq!(b.recorder.reconcile().await.unwrap().len(), 1);
}
on_both_databases!(recording_reconciliation_leaves_other_nodes_recordings_alone);

/// Routes `key` on `routing` and says whether it found a session.
async fn routes(
    routing: &ansim::routing::Routing,
    key: &(ansim::phone::E164, ansim::phone::E164),
) -> bool {
    routing.route(&key.0, &key.1, T0).await.unwrap().is_some()
}

async fn a_session_closed_on_one_node_stops_routing_on_every_node_within_1s(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(2), T0).await.unwrap();
    let other = Store::connect(&db.url).await.unwrap();
    let (here, _) = routing_on(&db.store.with_node("n1"));
    let (there, _) = routing_on(&other.with_node("n2"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // SQLite: one node; there is no other cache to tell.
    let follower = other
        .session_ends()
        .await
        .unwrap()
        .map(|ends| tokio::spawn(there.clone().follow_session_ends(ends, stopped)));
    let request = ansim::routing::SessionRequest {
        a: n("+821012345678"),
        b: n("+821098765432"),
        ttl: None,
        retention_class: None,
        record: None,
    };
    let s = here.create_session(request).await.unwrap();
    let key = s.route_keys()[0].clone();
    assert!(routes(&there, &key).await && routes(&here, &key).await);
    assert_eq!(there.cached_routes(), 1);

    here.close_session(&s.id).await.unwrap();
    assert!(!routes(&here, &key).await, "the closing node stops at once");
    if follower.is_some() {
        // Within 1 s on the other node, far inside its 30 s cache TTL.
        let dropped = async {
            while there.cached_routes() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(1), dropped)
            .await
            .expect("the other node's cache dropped the closed session within 1 s");
        assert!(!routes(&there, &key).await);
    }
    let _ = stop.send(true);
    if let Some(f) = follower {
        f.await.unwrap();
    }
    other.close().await;
}
on_both_databases!(a_session_closed_on_one_node_stops_routing_on_every_node_within_1s);

async fn two_nodes_sweeping_at_once_erase_each_recording_once(db: Db) {
    use ansim::retention::{NoFaults, sweep};
    let db = TestDb::new(db).await;
    let a = Rig::new(db.store.with_node("n1"));
    let mut rows = Vec::new();
    for _ in 0..3 {
        rows.push(a.record("ad-6m").await);
    }
    // The second node: its own pool, the same key directory and blobs
    // (the supported shared deployment).
    let other = Store::connect(&db.url).await.unwrap().with_node("n2");
    let b = crate::rig::recorder_on(&other, a.dir.path(), "rec", &a.clock, &a.keys);
    let due = rows.iter().filter_map(|r| r.expires_at).max().unwrap();
    a.clock.set(due);
    let (ra, rb) = tokio::join!(
        sweep(&a.recorder, due, false, &NoFaults),
        sweep(&b, due, false, &NoFaults)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra.failures.is_empty() && rb.failures.is_empty(),
        "{ra:?} {rb:?}"
    );
    assert_eq!(ra.erased.len() + rb.erased.len(), 3, "{ra:?} {rb:?}");
    assert_eq!(ra.keys_destroyed.len() + rb.keys_destroyed.len(), 1);
    let audited = "SELECT COUNT(*) FROM audit_events WHERE action = 'recording.erase'";
    assert_eq!(count(&db, audited).await, 3);
    // While one node holds the sweep's turn, the other's sweep is skipped.
    if db.store.backend() == ansim::store::Backend::Postgres {
        let turn = other
            .try_job_lock("retention-sweep")
            .await
            .unwrap()
            .unwrap();
        let r = sweep(&a.recorder, due, false, &NoFaults).await.unwrap();
        assert!(r.skipped);
        turn.release().await.unwrap();
        assert!(
            !sweep(&a.recorder, due, false, &NoFaults)
                .await
                .unwrap()
                .skipped
        );
    }
    other.close().await;
}
// PostgreSQL only: the sweep's turn is a PostgreSQL advisory lock. SQLite
// is one node by construction (README, "Several nodes"); two sweepers on
// one SQLite file race on the epoch key (both report destroying it), which
// is not a supported deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sweeping_at_once_erase_each_recording_once_postgres() {
    two_nodes_sweeping_at_once_erase_each_recording_once(crate::harness::Db::Postgres).await
}

async fn two_nodes_expiring_at_once_end_each_session_once(db: Db) {
    use ansim::store::WebhookPolicy;
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(4), T0).await.unwrap();
    let hooks = WebhookPolicy {
        enabled: true,
        events: Some(vec!["session.closed".into()]),
        include_numbers: false,
    };
    let other = Store::connect(&db.url).await.unwrap();
    let (here, clock_here) = routing_on(&db.store.with_webhooks(hooks.clone()).with_node("n1"));
    let (there, clock_there) = routing_on(&other.with_webhooks(hooks).with_node("n2"));
    for i in 0..10 {
        let request = ansim::routing::SessionRequest {
            a: n(&format!("+8210000001{i:02}")),
            b: n(&format!("+8210000002{i:02}")),
            ttl: None,
            retention_class: None,
            record: None,
        };
        here.create_session(request).await.unwrap();
    }
    let later = T0.saturating_add(DAY * 8);
    clock_here.set(later);
    clock_there.set(later);
    let (a, b) = tokio::join!(here.expire_due(later), there.expire_due(later));
    assert!(a.unwrap() + b.unwrap() >= 10);
    let closed = "SELECT COUNT(*) FROM sessions WHERE closed_at IS NOT NULL";
    assert_eq!(count(&db, closed).await, 10);
    let events = "SELECT COUNT(*) FROM webhook_outbox WHERE event_type = 'session.closed'";
    assert_eq!(count(&db, events).await, 10, "one session.closed each");
    other.close().await;
}
on_both_databases!(two_nodes_expiring_at_once_end_each_session_once);

async fn two_nodes_claiming_the_outbox_at_once_take_each_event_once(db: Db) {
    use ansim::store::WebhookPolicy;
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(4), T0).await.unwrap();
    let hooks = WebhookPolicy {
        enabled: true,
        events: None,
        include_numbers: false,
    };
    let here = db.store.with_webhooks(hooks);
    let (routing, _) = routing_on(&here);
    for i in 0..10 {
        let request = ansim::routing::SessionRequest {
            a: n(&format!("+8210000001{i:02}")),
            b: n(&format!("+8210000002{i:02}")),
            ttl: None,
            retention_class: None,
            record: None,
        };
        routing.create_session(request).await.unwrap();
    }
    let other = Store::connect(&db.url).await.unwrap();
    let lease = T0.saturating_add(std::time::Duration::from_secs(60));
    // Each node's deliverer claims small batches until nothing is left.
    let drain = |store: Store| async move {
        let mut ids = Vec::new();
        loop {
            let batch = store.claim_webhooks(T0, lease, 2).await.unwrap();
            if batch.is_empty() {
                return ids;
            }
            ids.extend(batch.into_iter().map(|c| c.id));
        }
    };
    let (a, b) = tokio::join!(drain(here.clone()), drain(other.clone()));
    let mut all: Vec<String> = a.into_iter().chain(b).collect();
    let claimed = all.len();
    all.sort();
    all.dedup();
    assert_eq!((claimed, all.len()), (10, 10), "each event claimed once");
    other.close().await;
}
on_both_databases!(two_nodes_claiming_the_outbox_at_once_take_each_event_once);
