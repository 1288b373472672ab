//! The webhook outbox on both databases: events commit with their change
//! or not at all, a claim is held by one worker until its lease runs out,
//! a real receiver gets each event signed, retried with backoff, and the
//! deliveries list pages without skipping or repeating.

use std::sync::Arc;
use std::time::Duration;

use ansim::clock::Clock;
use ansim::clock::{ManualClock, SharedClock};
use ansim::config::webhooks::{RawWebhooks, WebhooksConfig};
use ansim::routing::{Routing, SessionRequest};
use ansim::store::{Store, WebhookPolicy};
use ansim::webhooks::Deliverer;

use crate::harness::{Db, T0, TestDb, count, n, pool_numbers, routing_on};
use crate::hook_receiver::{Mode, Receiver, secret_file};
use crate::on_both_databases;

fn all_events() -> WebhookPolicy {
    WebhookPolicy {
        enabled: true,
        events: None,
        include_numbers: false,
    }
}

async fn open(store: &Store, a: &str, b: &str) -> String {
    let (routing, _) = routing_on(store);
    open_on(&routing, a, b).await
}

async fn open_on(routing: &Routing, a: &str, b: &str) -> String {
    let req = SessionRequest {
        a: n(a),
        b: n(b),
        ttl: None,
        retention_class: None,
        record: None,
    };
    routing.create_session(req).await.unwrap().id
}

on_both_databases!(events_commit_with_their_change_and_only_the_wanted_ones);
async fn events_commit_with_their_change_and_only_the_wanted_ones(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(4), T0).await.unwrap();
    // Without a policy (webhooks off) nothing is written.
    open(&db.store, "+821000000001", "+821000000002").await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM webhook_outbox").await, 0);

    let only_closed = WebhookPolicy {
        events: Some(vec!["session.closed".into()]),
        ..all_events()
    };
    let store = db.store.with_webhooks(only_closed);
    let id = open(&store, "+821000000003", "+821000000004").await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM webhook_outbox").await, 0);
    store.close_session(&id, T0).await.unwrap();
    // Closing again changes nothing and reports nothing.
    store.close_session(&id, T0).await.unwrap();
    let sql = "SELECT COUNT(*) FROM webhook_outbox WHERE event_type = 'session.closed'";
    assert_eq!(count(&db, sql).await, 1);

    // A transaction that rolls back leaves no event.
    let store = db.store.with_webhooks(all_events());
    let mut tx = store.begin().await.unwrap();
    let d = ansim::store::NewDispute {
        ticket: "T",
        reason: "r",
        opened_by: "stf_x",
        call_ids: &[],
        hold_id: None,
    };
    tx.insert_dispute(&d, T0).await.unwrap();
    drop(tx);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM webhook_outbox").await, 1);
}

on_both_databases!(a_claim_is_held_until_its_lease_runs_out);
async fn a_claim_is_held_until_its_lease_runs_out(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(8), T0).await.unwrap();
    let store = db.store.with_webhooks(all_events());
    for i in 0..5 {
        open(
            &store,
            &format!("+8210000001{i:02}"),
            &format!("+8210000002{i:02}"),
        )
        .await;
    }
    let lease = T0.saturating_add(Duration::from_secs(10));
    // Two workers at once take disjoint rows.
    let (a, b) = tokio::join!(
        store.claim_webhooks(T0, lease, 3),
        store.claim_webhooks(T0, lease, 3)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 5, "{a:?} {b:?}");
    assert!(a.iter().all(|x| b.iter().all(|y| x.id != y.id)));
    assert!(
        store
            .claim_webhooks(T0, lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A worker that died: after the lease every row is due again.
    let again = store.claim_webhooks(lease, lease, 10).await.unwrap();
    assert_eq!(again.len(), 5);
    store
        .webhook_delivered(&again[0].id, 204, lease)
        .await
        .unwrap();
    let retry = lease.saturating_add(Duration::from_secs(2));
    store
        .webhook_failed(
            &again[1].id,
            Some(500),
            "receiver answered 500",
            lease,
            Some(retry),
        )
        .await
        .unwrap();
    store
        .webhook_failed(&again[2].id, None, "connect: refused", lease, None)
        .await
        .unwrap();
    let later = lease.saturating_add(Duration::from_secs(60));
    let due = store.claim_webhooks(later, later, 10).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "delivered and given-up rows are not claimed");
    assert!(ids.contains(&again[1].id.as_str()));
    assert_eq!(
        due.iter().find(|c| c.id == again[1].id).unwrap().attempts,
        1
    );
    let list = store.list_webhooks(None, 10).await.unwrap();
    let state = |id: &str| list.iter().find(|d| d.id == id).unwrap().state;
    assert_eq!(state(&again[0].id), "delivered");
    assert_eq!(state(&again[2].id), "failed");
    assert_eq!(state(&again[3].id), "pending");
}

fn config(port: u16, secret: &std::path::Path) -> WebhooksConfig {
    let raw = RawWebhooks {
        url: format!("http://127.0.0.1:{port}/hooks"),
        secret_file: secret.display().to_string(),
        retry_initial: "1s".into(),
        retry_max: "4s".into(),
        ..RawWebhooks::default()
    };
    ansim::config::webhooks::validate_raw(raw).unwrap()
}

on_both_databases!(a_receiver_that_fails_gets_the_event_again_with_backoff);
async fn a_receiver_that_fails_gets_the_event_again_with_backoff(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(2), T0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let receiver = Receiver::start_on(0, Mode::Fail).await;
    let store = db.store.with_webhooks(all_events());
    // The receiver checks timestamps against its own (real) clock.
    let clock = ManualClock::new(ansim::clock::SystemClock.now());
    let shared: SharedClock = Arc::new(clock.clone());
    let routing = Routing::new(store.clone(), shared.clone(), crate::harness::policy());
    let metrics = Arc::new(ansim::metrics::Metrics::default());
    let cfg = config(receiver.addr.port(), &secret);
    let d = Deliverer::new(&cfg, store.clone(), shared, metrics.clone())
        .unwrap()
        .unwrap();
    open_on(&routing, "+821000000001", "+821000000002").await;
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    // Not due again before its backoff (1 s, then 2 s, 4 s, 4 s …).
    for (wait, tries) in [(1, 2), (2, 3), (4, 4), (4, 5)] {
        clock.advance(Duration::from_millis(wait * 1000 - 1));
        assert_eq!(d.deliver_due().await.unwrap(), 0, "early after {wait}s");
        clock.advance(Duration::from_millis(1));
        assert_eq!(d.deliver_due().await.unwrap(), 1, "due after {wait}s");
        let id = store.list_webhooks(None, 1).await.unwrap().remove(0).id;
        assert_eq!(receiver.tries(&id), tries);
    }
    receiver.set_mode(Mode::Accept);
    clock.advance(Duration::from_secs(4));
    assert_eq!(d.deliver_due().await.unwrap(), 1);
    let got = receiver.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, "session.opened");
    let row = store.list_webhooks(None, 1).await.unwrap().remove(0);
    assert_eq!(
        (row.state, row.attempts, row.id.as_str()),
        ("delivered", 6, got[0].id.as_str())
    );
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(metrics.webhooks_failed_attempts.load(Relaxed), 5);
    assert_eq!(metrics.webhooks_delivered.load(Relaxed), 1);
    // A day and more later, an event nobody accepts is given up.
    receiver.set_mode(Mode::Fail);
    open_on(&routing, "+821000000003", "+821000000004").await;
    d.deliver_due().await.unwrap();
    clock.advance(Duration::from_secs(73 * 3600));
    d.deliver_due().await.unwrap();
    let list = store.list_webhooks(None, 10).await.unwrap();
    assert_eq!(list[1].state, "failed", "{list:?}");
    assert_eq!(metrics.webhooks_given_up.load(Relaxed), 1);
}

on_both_databases!(https_receivers_are_checked_against_the_ca_file);
async fn https_receivers_are_checked_against_the_ca_file(db: Db) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(2), T0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (ca, wrong_ca) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    std::fs::write(&wrong_ca, other.cert.pem()).unwrap();
    let receiver = Receiver::start_tls(
        &certified.cert.pem(),
        &certified.signing_key.serialize_pem(),
    )
    .await;
    let store = db.store.with_webhooks(all_events());
    let clock = ManualClock::new(ansim::clock::SystemClock.now());
    let shared: SharedClock = Arc::new(clock.clone());
    let routing = Routing::new(store.clone(), shared.clone(), crate::harness::policy());
    let metrics = Arc::new(ansim::metrics::Metrics::default());
    let deliverer = |ca_file: &std::path::Path| {
        let raw = RawWebhooks {
            url: format!("https://localhost:{}/hooks", receiver.addr.port()),
            secret_file: secret.display().to_string(),
            ca_file: ca_file.display().to_string(),
            ..RawWebhooks::default()
        };
        let cfg = ansim::config::webhooks::validate_raw(raw).unwrap();
        Deliverer::new(&cfg, store.clone(), shared.clone(), metrics.clone())
            .unwrap()
            .unwrap()
    };
    open_on(&routing, "+821000000001", "+821000000002").await;
    // A receiver whose certificate the CA file does not vouch for gets nothing.
    assert_eq!(deliverer(&wrong_ca).deliver_due().await.unwrap(), 1);
    let row = store.list_webhooks(None, 1).await.unwrap().remove(0);
    assert_eq!(row.state, "pending");
    assert!(
        row.last_error.as_deref().unwrap().starts_with("TLS"),
        "{row:?}"
    );
    assert!(receiver.accepted().is_empty());
    // With the right CA it is delivered over TLS, signed.
    clock.advance(Duration::from_secs(10));
    assert_eq!(deliverer(&ca).deliver_due().await.unwrap(), 1);
    let got = receiver.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, row.id);
    assert_eq!(receiver.bad_signatures(), 0);
    // A CA file without a certificate is refused at start-up.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let raw = RawWebhooks {
        url: "https://localhost/hooks".into(),
        secret_file: secret.display().to_string(),
        ca_file: empty.display().to_string(),
        ..RawWebhooks::default()
    };
    let cfg = ansim::config::webhooks::validate_raw(raw).unwrap();
    let refused = Deliverer::new(&cfg, store.clone(), shared, metrics)
        .err()
        .unwrap();
    assert!(refused.to_string().contains("no usable CA"), "{refused}");
}
