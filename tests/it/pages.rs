//! One shape for every list, on both databases: `limit` and an opaque
//! `cursor`, `{"items", "next_cursor"}`. Each list is read over several
//! pages while rows are added between pages: nothing is skipped or
//! repeated, the order is stable, the last page says `null`.

use std::sync::Arc;
use std::time::Duration;

use ansim::api::{self, AppState, auth};
use ansim::audit::Event;
use ansim::clock::{ManualClock, SharedClock, Timestamp};
use ansim::routing::{Routing, SessionRequest};
use ansim::store::{NewCall, Role, Store, WebhookPolicy};
use serde_json::Value;

use crate::harness::{Db, T0, TestDb, n, policy, pool_numbers};
use crate::on_both_databases;

struct Lists {
    base: String,
    tokens: std::collections::HashMap<Role, String>,
    http: reqwest::Client,
    store: Store,
    routing: Arc<Routing>,
    clock: ManualClock,
}

impl Lists {
    async fn get(&self, path: &str, role: Role) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.tokens[&role])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Reads `path` a page of `limit` at a time, calling `between` after
    /// each page; answers every item's `key` in the order seen.
    async fn read_all(
        &self,
        path: &str,
        role: Role,
        limit: usize,
        key: &str,
        mut between: impl AsyncFnMut(usize),
    ) -> Vec<String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut cursor: Option<String> = None;
        let mut seen = Vec::new();
        for page in 0..100 {
            let c = cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default();
            let (status, v) = self
                .get(&format!("{path}{sep}limit={limit}{c}"), role)
                .await;
            assert_eq!(status, 200, "{path}: {v}");
            let items = v["items"].as_array().unwrap();
            assert!(items.len() <= limit, "{v}");
            seen.extend(items.iter().map(|i| i[key].to_string()));
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => {
                    assert!(v["next_cursor"].is_null(), "{v}");
                    assert!(page > 0, "{path}: more than one page");
                    return seen;
                }
            }
            between(page).await;
        }
        panic!("{path}: no last page");
    }

    async fn session(&self, i: usize) -> String {
        self.clock.advance(Duration::from_millis(1));
        let req = SessionRequest {
            a: n(&format!("+8210000{i:05}")),
            b: n(&format!("+8210001{i:05}")),
            ttl: None,
            retention_class: None,
            record: None,
        };
        self.routing.create_session(req).await.unwrap().id
    }

    async fn call(&self, session: &str, i: i64) -> String {
        let c = NewCall {
            id: format!("cal_{i:04}"),
            session_id: Some(session.to_owned()),
            direction: "a_to_b",
            caller: Some(n("+821000000001")),
            dialled: n("+8250500000001"),
            // Two calls per millisecond: the id breaks the tie.
            invite_at: Timestamp::from_millis(T0.as_millis() + i / 2),
            reason: None,
        };
        self.store.insert_call(&c).await.unwrap();
        c.id
    }
}

async fn lists(db: &TestDb) -> Lists {
    db.store.add_numbers(&pool_numbers(40), T0).await.unwrap();
    let store = db.store.with_webhooks(WebhookPolicy {
        enabled: true,
        events: None,
        include_numbers: false,
    });
    let mut tokens = std::collections::HashMap::new();
    for role in [Role::Provisioner, Role::Support, Role::Auditor, Role::Admin] {
        let t = auth::new_token();
        let m = store
            .add_staff(role.as_str(), role, &auth::hash_token(&t), T0)
            .await
            .unwrap();
        assert!(!m.id.is_empty());
        tokens.insert(role, t);
    }
    let clock = ManualClock::new(T0);
    let shared: SharedClock = Arc::new(clock.clone());
    let routing = Arc::new(Routing::new(store.clone(), shared, policy()));
    let state = AppState::new(
        routing.clone(),
        Arc::new(ansim::metrics::Metrics::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api::serve(
        listener,
        state,
        api::ConnectionLimits::default(),
        std::future::pending(),
    ));
    Lists {
        base,
        tokens,
        http: reqwest::Client::new(),
        store,
        routing,
        clock,
    }
}

fn quoted(ids: &[String]) -> Vec<String> {
    ids.iter().map(|i| format!("\"{i}\"")).collect()
}

on_both_databases!(every_list_pages_without_skipping_or_repeating);
async fn every_list_pages_without_skipping_or_repeating(db: Db) {
    let db = TestDb::new(db).await;
    let l = lists(&db).await;

    // Sessions, oldest first; new ones appear at the end.
    let mut sessions = Vec::new();
    for i in 0..5 {
        sessions.push(l.session(i).await);
    }
    let mut added = Vec::new();
    let seen = l
        .read_all("/v1/sessions", Role::Provisioner, 2, "id", async |p| {
            if p < 2 {
                added.push(l.session(100 + p).await);
            }
        })
        .await;
    sessions.extend(added);
    assert_eq!(seen, quoted(&sessions));
    // Filters: a participant's sessions, and by status.
    let one = "/v1/sessions?participant=%2B821000000003";
    assert_eq!(
        l.get(one, Role::Provisioner).await.1["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    l.routing.close_session(&sessions[0]).await.unwrap();
    let (_, closed) = l.get("/v1/sessions?status=closed", Role::Provisioner).await;
    assert_eq!(closed["items"][0]["id"], sessions[0].as_str());
    assert_eq!(closed["items"].as_array().unwrap().len(), 1);
    let (_, open) = l
        .get("/v1/sessions?status=open&limit=500", Role::Provisioner)
        .await;
    assert_eq!(open["items"].as_array().unwrap().len(), sessions.len() - 1);
    let (status, v) = l.get("/v1/sessions?status=gone", Role::Provisioner).await;
    assert_eq!((status, v["field"].as_str()), (422, Some("status")));

    // Calls of a session in (invite_at, id) order, ties included.
    let s = &sessions[1];
    let mut calls = Vec::new();
    for i in 0..5 {
        calls.push(l.call(s, i).await);
    }
    let mut added = Vec::new();
    let path = format!("/v1/calls?session={s}");
    let seen = l
        .read_all(&path, Role::Support, 2, "id", async |p| {
            if p == 0 {
                added.push(l.call(s, 10).await);
            }
        })
        .await;
    calls.extend(added);
    assert_eq!(seen, quoted(&calls));

    // Disputes, newest first: those opened meanwhile are before the cursor.
    let mut disputes = Vec::new();
    for (i, c) in calls.iter().enumerate().take(5) {
        l.clock.advance(Duration::from_millis(1));
        let body =
            serde_json::json!({ "call_ids": [c], "ticket": format!("T-{i}"), "reason": "r" });
        let r = l
            .http
            .post(format!("{}/v1/disputes", l.base))
            .bearer_auth(&l.tokens[&Role::Support])
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["call_ids"][0],
            c.as_str(),
            "a dispute is returned as itself: {v}"
        );
        disputes.push(v["id"].as_str().unwrap().to_owned());
    }
    disputes.reverse();
    let seen = l
        .read_all("/v1/disputes", Role::Support, 2, "id", async |_| {
            l.clock.advance(Duration::from_millis(1));
        })
        .await;
    assert_eq!(seen, quoted(&disputes));
    let (_, first) = l.get("/v1/disputes?limit=1", Role::Support).await;
    assert_eq!(first["items"][0]["call_ids"].as_array().unwrap().len(), 1);

    // Audit events in chain order; events appended meanwhile come last.
    let seqs = l
        .read_all("/v1/audit", Role::Auditor, 2, "seq", async |p| {
            let e = Event::recordings_listed(T0, "stf_x", &format!("obj{p}"), 1);
            ansim::audit::record(&l.store, &e).await.unwrap();
        })
        .await;
    let nums: Vec<i64> = seqs.iter().map(|s| s.parse().unwrap()).collect();
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "{nums:?}");
    let total = crate::harness::count(&db, "SELECT COUNT(*) FROM audit_events").await;
    assert_eq!(nums.len() as i64, total, "every event, once");

    // Webhook deliveries, oldest first.
    let seen = l
        .read_all("/v1/webhooks/deliveries", Role::Admin, 3, "id", async |p| {
            if p == 0 {
                l.session(200).await;
            }
        })
        .await;
    let total = crate::harness::count(&db, "SELECT COUNT(*) FROM webhook_outbox").await;
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len() as i64, unique.len()), (total, seen.len()));

    // Limits and cursors are checked.
    for bad in ["limit=0", "limit=501", "cursor=%25%25"] {
        let (status, v) = l
            .get(&format!("/v1/sessions?{bad}"), Role::Provisioner)
            .await;
        assert_eq!(status, 422, "{bad}: {v}");
    }
}
