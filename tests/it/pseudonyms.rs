//! Personal-data retention: after the period, the real numbers of closed
//! sessions, their bindings and calls (and of old refused calls) are
//! replaced by keyed hashes; the rows stay. Each test on both databases.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ansim::clock::{ManualClock, SharedClock, Timestamp};
use ansim::keys::{DirKeyStore, KeyStore, MasterKey};
use ansim::phone::{E164, PartyNumber, is_pseudonym};
use ansim::recording::blob::{BlobStore, LocalBlobStore};
use ansim::recording::{Recorder, RecordingPolicy};
use ansim::retention::{NoFaults, PSEUDONYM_KEY_ID, pseudonym, sweep};
use ansim::store::{CallEnd, CreateSessionError, NewCall, NewSession, SessionRecord, Store};

use crate::harness::{DAY, Db, T0, TestDb, n, policy, pool_numbers};
use crate::on_both_databases;

const CUSTOMER: &str = "+821012345678";
const MASTER: &str = "+821098765432";
const OTHER: &str = "+821033334444";
const STRANGER: &str = "+821055556666";
const QUARANTINE: Duration = Duration::from_secs(30 * 86_400);

/// A recorder (the sweeper's context) with its own key store.
struct Rig {
    dir: tempfile::TempDir,
    recorder: Arc<Recorder>,
}

impl Rig {
    fn new(store: &Store, personal_data: Duration) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load(&dir.path().join("master.key"), true).unwrap();
        let keys: Arc<dyn KeyStore> =
            Arc::new(DirKeyStore::open(&dir.path().join("keys"), master).unwrap());
        let blobs: Arc<dyn BlobStore> =
            Arc::new(LocalBlobStore::new(&dir.path().join("rec")).unwrap());
        let policy = RecordingPolicy {
            classes: policy().classes,
            epoch: DAY,
            max_call: Duration::from_secs(4 * 3600),
            personal_data,
            quarantine: QUARANTINE,
        };
        let clock: SharedClock = Arc::new(ManualClock::new(T0));
        let recorder = Arc::new(Recorder::new(store.clone(), keys, blobs, policy, clock));
        Rig { dir, recorder }
    }

    /// The key store, if a sweep has created the pseudonym key in it.
    fn key(&self) -> Option<DirKeyStore> {
        let master = MasterKey::load(&self.dir.path().join("master.key"), false).unwrap();
        let store = DirKeyStore::open(&self.dir.path().join("keys"), master).unwrap();
        store.exists(PSEUDONYM_KEY_ID).unwrap().then_some(store)
    }

    async fn sweep(&self, now: Timestamp, dry_run: bool) -> usize {
        sweep(&self.recorder, now, dry_run, &NoFaults)
            .await
            .unwrap()
            .pseudonymised
    }
}

fn at(days: u64) -> Timestamp {
    T0.saturating_add(DAY * days as u32)
}

async fn open(store: &Store, a: &str, b: &str, now: Timestamp, ttl: Duration) -> SessionRecord {
    let new = NewSession {
        a: n(a),
        b: n(b),
        ttl,
        retention_class: "dispute-3y".into(),
        record: false,
    };
    store.create_session(&new, now, QUARANTINE).await.unwrap()
}

/// A call that lasted a minute from `invite_at`; returns its id.
async fn call(
    store: &Store,
    session: Option<&str>,
    caller: &str,
    dialled: &E164,
    invite_at: Timestamp,
) -> String {
    let id = ansim::store::new_id("cal");
    let c = NewCall {
        id: id.clone(),
        session_id: session.map(str::to_owned),
        direction: if session.is_some() {
            "a_to_b"
        } else {
            "unrouted"
        },
        caller: Some(n(caller)),
        reason: None,
        dialled: dialled.clone(),
        invite_at,
    };
    store.insert_call(&c).await.unwrap();
    let end = CallEnd {
        at: invite_at.saturating_add(Duration::from_secs(60)),
        result: ansim::store::CallResult::Answered,
        sip_status: 200,
        hangup_side: Some(ansim::store::HangupSide::Caller),
        reason: None,
    };
    store.call_ended(&id, &end).await.unwrap();
    id
}

/// One stored row that may hold numbers: its table, the session it belongs
/// to (the call id for a call without one) and its number columns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    table: &'static str,
    owner: String,
    numbers: Vec<String>,
}

/// Every number column of `sessions`, `bindings` and `calls`, read with
/// plain SQL (not through the store's types).
async fn dump(db: &TestDb) -> Vec<Row> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let mut rows = Vec::new();
    for (table, sql) in [
        ("sessions", "SELECT id, a_number, b_number FROM sessions"),
        (
            "bindings",
            "SELECT session_id, participant, counterpart FROM bindings",
        ),
        (
            "calls",
            "SELECT COALESCE(session_id, id), caller, caller FROM calls",
        ),
    ] {
        let got: Vec<(String, String, String)> =
            sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        for (owner, x, y) in got {
            let numbers = if table == "calls" {
                vec![x]
            } else {
                vec![x, y]
            };
            rows.push(Row {
                table,
                owner,
                numbers,
            });
        }
    }
    pool.close().await;
    rows.sort();
    rows
}

async fn closed_sessions_lose_their_numbers_after_the_period(db: Db) {
    let db = TestDb::new(db).await;
    let store = &db.store;
    let pool = pool_numbers(3);
    store.add_numbers(&pool, T0).await.unwrap();
    let old = open(store, CUSTOMER, MASTER, T0, DAY * 7).await;
    let c1 = call(store, Some(&old.id), CUSTOMER, &old.a.proxy_number, T0).await;
    let c2 = call(store, Some(&old.id), MASTER, &old.b.proxy_number, T0).await;
    let refused_old = call(
        store,
        None,
        CUSTOMER,
        &pool[2],
        at(1).saturating_sub(Duration::from_secs(60)),
    )
    .await;
    store.close_session(&old.id, at(1)).await.unwrap();
    let open_s = open(store, OTHER, MASTER, at(10), DAY * 365).await;
    let recent = open(store, STRANGER, MASTER, at(100), DAY * 7).await;
    let recent = store
        .close_session(&recent.id, at(101))
        .await
        .unwrap()
        .unwrap();
    let refused_recent = call(store, None, STRANGER, &pool[2], at(150)).await;
    let rig = Rig::new(store, DAY * 180);
    let untouched = dump(&db).await;

    // On the dot of the period nothing is due yet; a dry run counts what
    // is due later and neither changes a row nor creates the key.
    assert_eq!(rig.sweep(at(181), false).await, 0);
    assert_eq!(
        rig.sweep(at(182), true).await,
        6,
        "1 session, 2 bindings, 3 calls"
    );
    assert!(rig.key().is_none());
    assert_eq!(dump(&db).await, untouched);

    assert_eq!(rig.sweep(at(182), false).await, 6);
    let key = rig
        .key()
        .expect("the pseudonym key is created on first use");
    let p = |number: &str| pseudonym(&key, &n(number)).unwrap();
    assert!(is_pseudonym(&p(CUSTOMER)) && p(CUSTOMER) != p(MASTER));

    // The store reads the hashed rows back, pseudonyms in place of numbers.
    let got = store.get_session(&old.id).await.unwrap().unwrap();
    assert_eq!(got.a.number, PartyNumber::Pseudonym(p(CUSTOMER)));
    assert_eq!(got.b.number, PartyNumber::Pseudonym(p(MASTER)));
    assert_eq!(
        (&got.a.proxy_number, &got.b.proxy_number, got.closed_at),
        (&old.a.proxy_number, &old.b.proxy_number, Some(at(1)))
    );
    assert!(got.route_keys().is_empty());
    let calls = store.list_calls(&old.id).await.unwrap();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.id.clone(), c.caller.as_ref().unwrap().as_str().to_owned()))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([(c1, p(CUSTOMER)), (c2, p(MASTER))])
    );
    assert!(
        calls
            .iter()
            .all(|c| c.result.map(|r| r.as_str()) == Some("answered"))
    );
    // The open and the recently closed sessions keep their numbers.
    assert_eq!(
        store.get_session(&open_s.id).await.unwrap(),
        Some(open_s.clone())
    );
    assert_eq!(
        store.get_session(&recent.id).await.unwrap(),
        Some(recent.clone())
    );

    // In the tables: the old rows hold only pseudonyms (the same number the
    // same pseudonym, in every table), the others only real numbers.
    let hashed_owners = [old.id.clone(), refused_old.clone()];
    let rows = dump(&db).await;
    let mut seen = BTreeSet::new();
    for row in &rows {
        if hashed_owners.contains(&row.owner) {
            for v in &row.numbers {
                assert!(is_pseudonym(v), "{row:?}");
                assert!(![CUSTOMER, MASTER].iter().any(|r| v.contains(&r[1..])));
                seen.insert(v.clone());
            }
        } else {
            assert!(
                row.numbers.iter().all(|v| E164::parse(v).is_ok()),
                "{row:?}"
            );
        }
    }
    assert_eq!(seen, BTreeSet::from([p(CUSTOMER), p(MASTER)]));
    let old_rows = |table: &str| {
        rows.iter()
            .filter(|r| r.table == table && r.owner == old.id)
            .count()
    };
    assert_eq!(
        (
            old_rows("sessions"),
            old_rows("bindings"),
            old_rows("calls")
        ),
        (1, 2, 2)
    );
    let refused: Vec<&Row> = rows.iter().filter(|r| r.owner == refused_old).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].numbers, vec![p(CUSTOMER)]);
    assert!(
        rows.iter()
            .any(|r| r.owner == refused_recent && r.numbers == [STRANGER])
    );

    // Idempotent: a second sweep finds nothing and changes nothing.
    assert_eq!(rig.sweep(at(182), false).await, 0);
    assert_eq!(dump(&db).await, rows);

    // When the recent session's turn comes, the shared master gets the
    // pseudonym it already has in the old session: statistics still group.
    assert_eq!(
        rig.sweep(at(331), false).await,
        3 + 1,
        "and the refused call"
    );
    let got = store.get_session(&recent.id).await.unwrap().unwrap();
    assert_eq!(got.b.number.as_str(), p(MASTER));
    assert_eq!(got.a.number.as_str(), p(STRANGER));
    assert_eq!(
        store.get_session(&open_s.id).await.unwrap(),
        Some(open_s),
        "an open session is never hashed"
    );
    assert!(
        rig.key().is_some(),
        "the sweep never destroys the pseudonym key"
    );
}
on_both_databases!(closed_sessions_lose_their_numbers_after_the_period);

/// Another pseudonym key (another deployment) gives other pseudonyms.
async fn the_pseudonym_depends_on_the_key(db: Db) {
    let mut seen = Vec::new();
    for _ in 0..2 {
        let db = TestDb::new(db).await;
        db.store.add_numbers(&pool_numbers(2), T0).await.unwrap();
        let s = open(&db.store, CUSTOMER, MASTER, T0, DAY).await;
        db.store.close_session(&s.id, at(1)).await.unwrap();
        let rig = Rig::new(&db.store, DAY * 180);
        assert_eq!(rig.sweep(at(200), false).await, 3);
        let got = db.store.get_session(&s.id).await.unwrap().unwrap();
        let key = rig.key().unwrap();
        assert_eq!(
            got.a.number.as_str(),
            pseudonym(&key, &n(CUSTOMER)).unwrap()
        );
        seen.push(got.a.number);
    }
    assert_ne!(seen[0], seen[1]);
}
on_both_databases!(the_pseudonym_depends_on_the_key);

/// With a personal-data period shorter than the quarantine, the sweep waits
/// for the quarantine: a binding inside it keeps its real numbers, and the
/// quarantine keeps working.
async fn quarantine_outlasts_a_shorter_personal_data_period(db: Db) {
    let db = TestDb::new(db).await;
    let store = &db.store;
    store.add_numbers(&pool_numbers(1), T0).await.unwrap();
    let first = open(store, CUSTOMER, MASTER, T0, DAY * 7).await;
    store.close_session(&first.id, at(1)).await.unwrap();
    let rig = Rig::new(store, DAY);

    let now = at(11);
    assert_eq!(rig.sweep(now, false).await, 0);
    let err = store
        .create_session(
            &NewSession {
                a: n(CUSTOMER),
                b: n(OTHER),
                ttl: DAY,
                retention_class: "dispute-3y".into(),
                record: false,
            },
            now,
            QUARANTINE,
        )
        .await
        .unwrap_err();
    let CreateSessionError::NoProxy { reason, .. } = err else {
        panic!("expected NoProxy, got {err:?}")
    };
    assert_eq!(reason.quarantined, 1);

    // Once the quarantine is over, the sweep hashes the old session and the
    // number serves the new pair.
    let after = at(31).saturating_add(Duration::from_millis(1));
    assert_eq!(rig.sweep(after, false).await, 3);
    let got = store.get_session(&first.id).await.unwrap().unwrap();
    assert!(got.a.number.is_pseudonym() && got.b.number.is_pseudonym());
    let s = open(store, CUSTOMER, OTHER, after, DAY).await;
    assert_eq!(s.a.proxy_number, first.a.proxy_number);
    assert_eq!(s.a.number, n(CUSTOMER));
}
on_both_databases!(quarantine_outlasts_a_shorter_personal_data_period);

/// A call refused for `no-caller-number` is stored without a caller and
/// with its reason; reading it gives both back, and pseudonymisation
/// passes it by (nothing to hash) while it still hashes the others.
async fn a_call_without_a_caller_keeps_its_reason(db: Db) {
    let db = TestDb::new(db).await;
    let dialled = n("+82505000001");
    let id = ansim::store::new_id("cal");
    let c = NewCall {
        id: id.clone(),
        session_id: None,
        direction: "unrouted",
        caller: None,
        reason: Some("no-caller-number"),
        dialled: dialled.clone(),
        invite_at: T0,
    };
    db.store.insert_call(&c).await.unwrap();
    let end = CallEnd {
        at: T0,
        result: ansim::store::CallResult::Rejected,
        sip_status: 404,
        hangup_side: None,
        reason: None,
    };
    db.store.call_ended(&id, &end).await.unwrap();
    let other = call(&db.store, None, STRANGER, &dialled, T0).await;
    let got = db.store.get_call(&id).await.unwrap().unwrap();
    assert_eq!(
        (got.caller, got.reason.as_deref()),
        (None, Some("no-caller-number"))
    );
    let report = db
        .store
        .pseudonymise_closed(at(200), |_| format!("h:{}", "0".repeat(64)))
        .await
        .unwrap();
    assert_eq!(report.calls, 1, "only the call with a caller");
    let got = db.store.get_call(&id).await.unwrap().unwrap();
    assert_eq!(got.caller, None);
    let hashed = db.store.get_call(&other).await.unwrap().unwrap();
    assert!(matches!(hashed.caller, Some(PartyNumber::Pseudonym(_))));
    assert_eq!(hashed.reason, None);
}
on_both_databases!(a_call_without_a_caller_keeps_its_reason);
