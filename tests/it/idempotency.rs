//! `Idempotency-Key` on POST, on both databases: concurrent retries with
//! one key open one session; a replay is the first response; another body
//! is refused; keys are per staff member; expired keys are purged.

use std::sync::Arc;
use std::time::Duration;

use ansim::api::{self, AppState, auth};
use ansim::clock::Clock;
use ansim::store::Role;
use serde_json::{Value, json};

use crate::harness::{Db, T0, TestDb, count, pool_numbers, routing_on};
use crate::on_both_databases;

struct Served {
    base: String,
    tokens: Vec<String>,
    clock: ansim::clock::ManualClock,
    http: reqwest::Client,
}

async fn serve(db: &TestDb) -> Served {
    db.store.add_numbers(&pool_numbers(4), T0).await.unwrap();
    let mut tokens = Vec::new();
    for name in ["p1", "p2"] {
        let t = auth::new_token();
        db.store
            .add_staff(name, Role::Provisioner, &auth::hash_token(&t), T0)
            .await
            .unwrap();
        tokens.push(t);
    }
    let (routing, clock) = routing_on(&db.store);
    let state = AppState::new(routing, Arc::new(ansim::metrics::Metrics::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let limits = api::ConnectionLimits::default();
    tokio::spawn(api::serve(listener, state, limits, std::future::pending()));
    Served {
        base,
        tokens,
        clock,
        http: reqwest::Client::new(),
    }
}

impl Served {
    async fn create(
        &self,
        who: usize,
        key: &str,
        body: &Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .bearer_auth(&self.tokens[who])
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }
}

on_both_databases!(concurrent_retries_with_one_key_open_one_session);
async fn concurrent_retries_with_one_key_open_one_session(db: Db) {
    let db = TestDb::new(db).await;
    let s = serve(&db).await;
    let body = json!({ "a": "+821000000001", "b": "+821000000002" });
    let s = Arc::new(s);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (s, body) = (s.clone(), body.clone());
        set.spawn(async move { s.create(0, "k-1", &body).await });
    }
    let tries: Vec<_> = set.join_all().await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sessions").await, 1);
    let created: Vec<&(u16, Value, _)> = tries.iter().filter(|t| t.0 == 201).collect();
    assert!(!created.is_empty(), "{tries:?}");
    for (status, v, _) in &tries {
        match status {
            201 => assert_eq!(v["id"], created[0].1["id"]),
            409 => assert_eq!(v["type"], "urn:ansim:problem:idempotency-key-in-use"),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    // Afterwards a retry is the first response, Location included.
    let (status, v, h) = s.create(0, "k-1", &body).await;
    assert_eq!((status, &v), (201, &created[0].1));
    assert_eq!(h["idempotency-replayed"], "true");
    assert_eq!(h["location"], created[0].2["location"]);
    // Another body with the key: refused, nothing created.
    let other = json!({ "a": "+821000000003", "b": "+821000000004" });
    let (status, v, _) = s.create(0, "k-1", &other).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["type"], "urn:ansim:problem:idempotency-key-reused");
    // Keys are per staff member: p2's k-1 is its own.
    let (status, v2, _) = s.create(1, "k-1", &other).await;
    assert_eq!(status, 201, "{v2}");
    assert_ne!(v2["id"], v["id"]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sessions").await, 2);
    // A bad key is a problem naming the header.
    let (status, v, _) = s.create(0, &"x".repeat(300), &body).await;
    assert_eq!(
        (status, v["field"].as_str()),
        (422, Some("idempotency-key"))
    );
    // Kept 24 h, then purged: the key is free again.
    s.clock.advance(Duration::from_secs(24 * 3600));
    let purged = db.store.purge_idempotency(s.clock.now()).await.unwrap();
    assert_eq!(purged, 2);
    let (status, v, h) = s.create(0, "k-1", &other).await;
    assert_ne!(status, 422, "the key is free again: {v}");
    assert!(h.get("idempotency-replayed").is_none());
}
