//! Several nodes on one database: the node lease, and reconciliation that
//! touches only the node's own calls and recordings.

use ansim::store::{NewCall, Store, StoreError};

use crate::harness::{DAY, Db, T0, TestDb, count, execute, n};
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
