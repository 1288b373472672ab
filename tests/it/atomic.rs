//! No action without its audit event, no event without its action: each
//! audited change commits in one transaction with its event.
//!
//! Two ways to show it. A commit hook fails the transaction of each
//! audited action after all its writes, just before the commit: neither
//! the change nor the event is visible afterwards, and doing it again
//! succeeds. And a real `kill -9` of `ansim serve` while clients open,
//! grant, approve and resolve disputes as fast as they can: afterwards
//! every action row has its event and every event its row.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ansim::clock::Clock;
use ansim::keys::epoch_end;
use ansim::retention::{NoFaults, sweep};
use ansim::store::{CommitHook, NewSession, Role, StoreError};
use serde_json::json;

use crate::harness::{DAY, Db, T0, TestDb, count, n, pool_numbers};
use crate::on_both_databases;
use crate::rig::Rig;

/// Fails the commit of any transaction that appends the audit action it
/// is set to.
#[derive(Default)]
struct FailCommitOf(Mutex<Option<&'static str>>);

impl FailCommitOf {
    fn fail(&self, action: &'static str) {
        *self.0.lock().unwrap() = Some(action);
    }
    fn clear(&self) {
        *self.0.lock().unwrap() = None;
    }
}

impl CommitHook for FailCommitOf {
    fn before_commit(&self, audited: &[String]) -> Result<(), StoreError> {
        match *self.0.lock().unwrap() {
            Some(a) if audited.iter().any(|x| x == a) => Err(StoreError::Injected(a.into())),
            _ => Ok(()),
        }
    }
}

async fn events(db: &TestDb, action: &str) -> i64 {
    count(
        db,
        &format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'"),
    )
    .await
}

async fn a_failure_before_commit_leaves_neither_the_action_nor_its_event(db: Db) {
    let db = TestDb::new(db).await;
    let hook = Arc::new(FailCommitOf::default());
    let rig = Rig::new(db.store.with_commit_hook(hook.clone()));
    db.store.add_numbers(&pool_numbers(1), T0).await.unwrap();
    let subject = "+821011112222";
    let session = NewSession {
        a: n(subject),
        b: n("+821055556666"),
        ttl: DAY,
        retention_class: "ad-6m".into(),
        record: true,
    };
    let s = db.store.create_session(&session, T0, DAY).await.unwrap();
    let rec = rig.record("ad-6m").await;
    let staff = [
        ("agent", Role::Support),
        ("boss", Role::Supervisor),
        ("admin", Role::Admin),
    ];
    let api = rig.api(&db, &staff, &[], true).await;

    // dispute.open: no dispute, no hold, nothing held.
    let body = json!({"call_ids": [rec.call_id], "ticket": "CS-1", "reason": "r"});
    hook.fail("dispute.open");
    api.post_ok("/v1/disputes", "agent", Some(body.clone()), 503)
        .await;
    for sql in [
        "SELECT COUNT(*) FROM disputes",
        "SELECT COUNT(*) FROM dispute_calls",
        "SELECT COUNT(*) FROM holds",
        "SELECT COUNT(*) FROM recordings WHERE held_by IS NOT NULL",
    ] {
        assert_eq!(count(&db, sql).await, 0, "{sql}");
    }
    assert_eq!(events(&db, "dispute.open").await, 0);
    hook.clear();
    let opened = api.post_ok("/v1/disputes", "agent", Some(body), 201).await;
    let dispute = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(events(&db, "dispute.open").await, 1);

    // grant.request, grant.approve.
    let grants = format!("/v1/disputes/{dispute}/grants");
    hook.fail("grant.request");
    api.post_ok(&grants, "agent", None, 503).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM grants").await, 0);
    assert_eq!(events(&db, "grant.request").await, 0);
    hook.clear();
    let g = api.post_ok(&grants, "agent", None, 201).await;
    let approve = format!("/v1/grants/{}/approve", g["id"].as_str().unwrap());
    hook.fail("grant.approve");
    api.post_ok(&approve, "boss", None, 503).await;
    let approved = "SELECT COUNT(*) FROM grants WHERE approved_at IS NOT NULL";
    assert_eq!(count(&db, approved).await, 0);
    assert_eq!(events(&db, "grant.approve").await, 0);
    hook.clear();
    api.post_ok(&approve, "boss", None, 200).await;

    // Reads: the listing and the audio go out only once their event is in.
    hook.fail("recording.list");
    let r = api
        .get(&format!("/v1/disputes/{dispute}"), "agent", &[])
        .await;
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v.get("recordings").is_none(),
        "no data without its event: {v}"
    );
    assert_eq!(events(&db, "recording.list").await, 0);
    hook.fail("recording.play");
    let audio = format!("/v1/recordings/{}/audio", rec.id);
    let r = api.get(&audio, "agent", &[]).await;
    assert_eq!(r.status(), 503);
    assert_ne!(r.headers()["content-type"], "audio/wav");
    assert_eq!(events(&db, "recording.play").await, 0);
    hook.clear();
    let r = api.get(&audio, "agent", &[]).await;
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(events(&db, "recording.play").await, 1);

    // dispute.resolve: still open, its hold's release not asked for.
    let resolve = format!("/v1/disputes/{dispute}/resolve");
    hook.fail("dispute.resolve");
    api.post_ok(&resolve, "agent", None, 503).await;
    let resolved = "SELECT COUNT(*) FROM disputes WHERE resolved_at IS NOT NULL";
    assert_eq!(count(&db, resolved).await, 0);
    let asked = "SELECT COUNT(*) FROM holds WHERE release_requested_at IS NOT NULL";
    assert_eq!(count(&db, asked).await, 0);
    assert_eq!(events(&db, "dispute.resolve").await, 0);
    // hold.release, the release's last step: resolved, not yet released.
    hook.fail("hold.release");
    api.post_ok(&resolve, "agent", None, 503).await;
    assert_eq!(count(&db, resolved).await, 1);
    let released = "SELECT COUNT(*) FROM holds WHERE released_at IS NOT NULL";
    assert_eq!(count(&db, released).await, 0);
    assert_eq!(events(&db, "hold.release").await, 0);
    hook.clear();
    api.post_ok(&resolve, "agent", None, 200).await;
    assert_eq!(count(&db, released).await, 1);
    assert_eq!(events(&db, "hold.release").await, 1);

    // subject.erase commits with the last step (the number replaced by
    // its pseudonym): neither happens, then both.
    let mine = rig.record_in(&s.id, "ad-6m").await;
    let erase = format!("/v1/subjects/{}/erase", subject.replace('+', "%2B"));
    hook.fail("subject.erase");
    api.post_ok(&erase, "admin", None, 503).await;
    let real = format!("SELECT COUNT(*) FROM sessions WHERE a_number = '{subject}'");
    assert_eq!(count(&db, &real).await, 1, "not pseudonymised");
    assert_eq!(events(&db, "subject.erase").await, 0);
    // Its recording was erased in a transaction of its own, with its event.
    assert!(db.store.find_tombstone(&mine.id).await.unwrap().is_some());
    assert_eq!(events(&db, "recording.erase").await, 1);
    hook.clear();
    api.post_ok(&erase, "admin", None, 200).await;
    assert_eq!(count(&db, &real).await, 0);
    assert_eq!(events(&db, "subject.erase").await, 1);

    // recording.erase in the sweep: the row, its tombstone and its blob stay.
    let back = db.store.find_recording(&rec.id).await.unwrap().unwrap();
    rig.clock.set(epoch_end(&back.epoch_id).unwrap().1);
    hook.fail("recording.erase");
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert!(r.erased.is_empty() && r.failures.len() == 1, "{r:?}");
    assert!(db.store.find_recording(&rec.id).await.unwrap().is_some());
    assert!(db.store.find_tombstone(&rec.id).await.unwrap().is_none());
    assert!(rig.blobs().contains(&rec.blob));
    assert_eq!(events(&db, "recording.erase").await, 1);
    hook.clear();
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    assert_eq!(r.erased.len(), 1, "{r:?}");
    assert_eq!(events(&db, "recording.erase").await, 2);
    assert!(ansim::audit::verify(&db.store).await.unwrap().is_ok());
}
on_both_databases!(a_failure_before_commit_leaves_neither_the_action_nor_its_event);

/// Each action row and its event, as `(rows without their event, events
/// without their row)` queries.
const PAIRS: &[(&str, &str, &str)] = &[
    ("dispute.open", "disputes", "TRUE"),
    ("dispute.resolve", "disputes", "x.resolved_at IS NOT NULL"),
    ("grant.request", "grants", "TRUE"),
    ("grant.approve", "grants", "x.approved_at IS NOT NULL"),
    ("hold.release", "holds", "x.released_at IS NOT NULL"),
];

/// `kill -9` of `ansim serve` in the middle of audited traffic.
async fn kill_9_never_separates_an_action_from_its_event(db: Db) {
    let db = TestDb::new(db).await;
    let rig = Rig::new(db.store.clone());
    let mut recordings = Vec::new();
    for _ in 0..4 {
        recordings.push(rig.record("ad-6m").await);
    }
    let mut tokens = Vec::new();
    for (name, role) in [("agent", Role::Support), ("boss", Role::Supervisor)] {
        let t = ansim::api::auth::new_token();
        let hash = ansim::api::auth::hash_token(&t);
        db.store.add_staff(name, role, &hash, T0).await.unwrap();
        tokens.push(t);
    }
    let d = rig.dir.path().display().to_string();
    let listen = format!("127.0.0.1:{}", crate::harness::free_tcp_port());
    let env: Vec<(&str, String)> = vec![
        ("ANSIM_STORE__DATABASE_URL", db.url.clone()),
        ("ANSIM_STORE__RECORDINGS", format!("file://{d}/rec")),
        ("ANSIM_KEYS__MASTER_KEY_FILE", format!("{d}/master.key")),
        ("ANSIM_KEYS__STORE", format!("dir:{d}/keys")),
        ("ANSIM_KEYS__DEV", "false".into()),
        ("ANSIM_API__LISTEN", listen.clone()),
        ("ANSIM_SIP__LISTEN", "[\"udp:127.0.0.1:0\"]".into()),
        ("ANSIM_MEDIA__PORTS", "42900-42909".into()),
    ];
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let served = crate::harness::start_serve(rig.dir.path(), &["serve"], &env).await;
    let mut child = served.child;
    let mut lines = served.lines;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let calls: Vec<String> = recordings.iter().map(|r| r.call_id.clone()).collect();
    let mut workers = Vec::new();
    for w in 0..4 {
        let (done, stop, calls) = (done.clone(), stop.clone(), calls.clone());
        let (agent, boss) = (tokens[0].clone(), tokens[1].clone());
        let base = format!("http://{listen}");
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let post = |path: String, token: &str, body: Option<serde_json::Value>| {
                let mut r = http.post(format!("{base}{path}")).bearer_auth(token);
                if let Some(b) = body {
                    r = r.json(&b);
                }
                async move {
                    let r = r.send().await.ok()?;
                    r.status().is_success().then_some(())?;
                    r.json::<serde_json::Value>().await.ok()
                }
            };
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (a, b) = (&calls[i % calls.len()], &calls[(i + 1) % calls.len()]);
                let body =
                    json!({"call_ids": [a, b, a], "ticket": format!("CS-{i}"), "reason": "r"});
                let Some(d) = post("/v1/disputes".into(), &agent, Some(body)).await else {
                    continue;
                };
                done.fetch_add(1, Ordering::Relaxed);
                let id = d["id"].as_str().unwrap_or_default().to_owned();
                if let Some(g) = post(format!("/v1/disputes/{id}/grants"), &agent, None).await {
                    let gid = g["id"].as_str().unwrap_or_default();
                    post(format!("/v1/grants/{gid}/approve"), &boss, None).await;
                }
                if i % 2 == 0 {
                    post(format!("/v1/disputes/{id}/resolve"), &agent, None).await;
                }
            }
        }));
    }
    // Let the traffic run, then kill in the middle of it.
    let started = std::time::Instant::now();
    while done.load(Ordering::Relaxed) < 40 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        done.load(Ordering::Relaxed) >= 40,
        "too little traffic before the kill"
    );

    for (action, table, which) in PAIRS {
        let without_event = format!(
            "SELECT COUNT(*) FROM {table} x WHERE {which} AND NOT EXISTS \
             (SELECT 1 FROM audit_events e WHERE e.action = '{action}' AND e.object = x.id)"
        );
        let without_row = format!(
            "SELECT COUNT(*) FROM audit_events e WHERE e.action = '{action}' AND NOT EXISTS \
             (SELECT 1 FROM {table} x WHERE x.id = e.object AND {which})"
        );
        assert_eq!(
            count(&db, &without_event).await,
            0,
            "{action}: row without event"
        );
        assert_eq!(
            count(&db, &without_row).await,
            0,
            "{action}: event without row"
        );
        let rows = count(
            &db,
            &format!("SELECT COUNT(*) FROM {table} x WHERE {which}"),
        )
        .await;
        assert_eq!(events(&db, action).await, rows, "{action}: exactly once");
    }
    for sql in [
        // No hold without its dispute, no dispute naming a missing hold.
        "SELECT COUNT(*) FROM holds h WHERE NOT EXISTS (SELECT 1 FROM disputes d WHERE d.hold_id = h.id)",
        "SELECT COUNT(*) FROM disputes d WHERE d.hold_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.id = d.hold_id)",
        "SELECT COUNT(*) FROM recordings r WHERE r.held_by IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.id = r.held_by)",
    ] {
        assert_eq!(count(&db, sql).await, 0, "{sql}");
    }
    assert!(ansim::audit::verify(&db.store).await.unwrap().is_ok());

    // Whatever hold operation the kill cut short, a sweep finishes it, and
    // every recording still plays.
    let r = sweep(&rig.recorder, rig.clock.now(), false, &NoFaults)
        .await
        .unwrap();
    eprintln!(
        "killed after {} disputes opened; {} events; the sweep finished {} hold placements \
         and {} releases",
        count(&db, "SELECT COUNT(*) FROM disputes").await,
        count(&db, "SELECT COUNT(*) FROM audit_events").await,
        r.holds_applied.len(),
        r.holds_released.len()
    );
    assert!(r.failures.is_empty(), "{r:?}");
    assert!(db.store.holds_to_apply().await.unwrap().is_empty());
    assert!(db.store.holds_to_release().await.unwrap().is_empty());
    for rec in &recordings {
        let row = db.store.find_recording(&rec.id).await.unwrap().unwrap();
        if let Some(h) = &row.held_by {
            assert_eq!(&row.epoch_id, h, "a held DEK is under its hold's key");
        }
        assert!(rig.recorder.decrypt(&rec.id).await.is_ok(), "{row:?}");
    }
}
on_both_databases!(kill_9_never_separates_an_action_from_its_event);
