//! The HTTP API through real HTTP: statuses, problem bodies, auth.

use std::sync::Arc;

use ansim::api::{self, AppState, auth};
use ansim::keys::{DirKeyStore, KeyStore, MasterKey};
use ansim::metrics::Metrics;
use ansim::phone::E164;
use ansim::retention::pseudonym;
use ansim::store::{NewCall, Role};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{DAY, Db, T0, TestDb, routing};
use crate::on_both_databases;

struct Api {
    base: String,
    http: Client,
    tokens: std::collections::HashMap<Role, String>,
    _db: TestDb,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Api {
    async fn start(db: Db) -> Api {
        let db = TestDb::new(db).await;
        let (routing, _clock) = routing(&db);
        let mut tokens = std::collections::HashMap::new();
        for role in Role::ALL {
            let token = auth::new_token();
            db.store
                .add_staff(role.as_str(), role, &auth::hash_token(&token), T0)
                .await
                .unwrap();
            tokens.insert(role, token);
        }
        let state = AppState {
            legally_required: Arc::new(vec!["contract-5y".to_owned()]),
            ..AppState::new(routing, Arc::new(Metrics::default()))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let limits = api::ConnectionLimits::default();
        tokio::spawn(api::serve(listener, state, limits, async move {
            let _ = stopped.await;
        }));
        Api {
            base,
            http: Client::new(),
            tokens,
            _db: db,
            _stop: stop,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        role: Option<Role>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(role) = role {
            req = req.bearer_auth(&self.tokens[&role]);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                ctype.as_deref(),
                Some("application/problem+json"),
                "{path}: {value}"
            );
            assert_eq!(value["status"], status.as_u16(), "{value}");
        }
        (status, value)
    }
}

fn problem_type(v: &Value) -> &str {
    v["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:ansim:problem:")
}

const C: &str = "+821012345678";
const M: &str = "+821098765432";

async fn sessions_lifecycle_over_http(db: Db) {
    let api = Api::start(db).await;
    let (st, body) = api
        .call(
            Method::POST,
            "/v1/numbers",
            Some(Role::Admin),
            Some(json!({"numbers": ["+82 505 000 0001"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["added"], json!(["+825050000001"]));
    let (st, _) = api
        .call(
            Method::POST,
            "/v1/numbers",
            Some(Role::Admin),
            Some(json!({"numbers": ["+825050000001"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let (st, s) = api
        .call(
            Method::POST,
            "/v1/sessions",
            Some(Role::Provisioner),
            Some(json!({"a": C, "b": M, "ttl": "2d", "retention_class": "ad-6m", "record": false})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{s}");
    assert_eq!(
        (s["a"]["number"].as_str(), s["b"]["number"].as_str()),
        (Some(C), Some(M))
    );
    assert_eq!(s["a"]["proxy_number"], "+825050000001");
    assert_eq!(
        (
            s["status"].as_str(),
            s["record"].as_bool(),
            s["retention_class"].as_str()
        ),
        (Some("open"), Some(false), Some("ad-6m"))
    );
    assert!(s["expires_at"].as_str().unwrap().ends_with('Z'));
    let id = s["id"].as_str().unwrap().to_owned();

    let (st, read) = api
        .call(
            Method::GET,
            &format!("/v1/sessions/{id}"),
            Some(Role::Provisioner),
            None,
        )
        .await;
    assert_eq!((st, &read), (StatusCode::OK, &s));

    let (st, numbers) = api
        .call(Method::GET, "/v1/numbers", Some(Role::Admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            numbers["total"].as_i64(),
            numbers["numbers"][0]["active_bindings"].as_i64()
        ),
        (Some(1), Some(2))
    );

    let (st, calls) = api
        .call(
            Method::GET,
            &format!("/v1/calls?session={id}"),
            Some(Role::Support),
            None,
        )
        .await;
    assert_eq!((st, calls["items"].clone()), (StatusCode::OK, json!([])));

    let (st, closed) = api
        .call(
            Method::DELETE,
            &format!("/v1/sessions/{id}"),
            Some(Role::Provisioner),
            None,
        )
        .await;
    assert_eq!(
        (st, closed["status"].as_str()),
        (StatusCode::OK, Some("closed"))
    );
    assert!(closed["closed_at"].is_string());
    let (st, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/sessions/{id}"),
            Some(Role::Provisioner),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "closing twice is idempotent");

    let (st, p) = api
        .call(
            Method::GET,
            "/v1/sessions/ses_missing",
            Some(Role::Provisioner),
            None,
        )
        .await;
    assert_eq!((st, problem_type(&p)), (StatusCode::NOT_FOUND, "not-found"));
}
on_both_databases!(sessions_lifecycle_over_http);

/// After the personal-data period the API shows pseudonyms where the
/// numbers were, and a closed, pseudonymised session reads as before.
async fn pseudonymised_sessions_and_calls_read_through_the_api(db: Db) {
    let api = Api::start(db).await;
    let store = api._db.store.clone();
    let proxy = "+825050000001";
    let (st, _) = api
        .call(
            Method::POST,
            "/v1/numbers",
            Some(Role::Admin),
            Some(json!({"numbers": [proxy]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, s) = api
        .call(
            Method::POST,
            "/v1/sessions",
            Some(Role::Provisioner),
            Some(json!({"a": C, "b": M})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{s}");
    let id = s["id"].as_str().unwrap().to_owned();
    let call = NewCall {
        id: ansim::store::new_id("cal"),
        session_id: Some(id.clone()),
        direction: "a_to_b",
        caller: Some(E164::parse(C).unwrap()),
        reason: None,
        dialled: E164::parse(proxy).unwrap(),
        invite_at: T0,
    };
    store.insert_call(&call).await.unwrap();
    let (st, _) = api
        .call(
            Method::DELETE,
            &format!("/v1/sessions/{id}"),
            Some(Role::Provisioner),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let key_dir = tempfile::tempdir().unwrap();
    let master = MasterKey::load(&key_dir.path().join("master.key"), true).unwrap();
    let key = DirKeyStore::open(&key_dir.path().join("keys"), master).unwrap();
    key.create(ansim::retention::PSEUDONYM_KEY_ID).unwrap();
    let done = store
        .pseudonymise_closed(T0.saturating_add(DAY * 181), |n| {
            pseudonym(&key, n).unwrap()
        })
        .await
        .unwrap();
    assert_eq!((done.sessions, done.bindings, done.calls), (1, 2, 1));
    let (pc, pm) = (
        pseudonym(&key, &E164::parse(C).unwrap()).unwrap(),
        pseudonym(&key, &E164::parse(M).unwrap()).unwrap(),
    );

    let path = format!("/v1/sessions/{id}");
    let (st, read) = api
        .call(Method::GET, &path, Some(Role::Provisioner), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{read}");
    assert_eq!(
        (read["a"]["number"].as_str(), read["b"]["number"].as_str()),
        (Some(pc.as_str()), Some(pm.as_str()))
    );
    assert_eq!(
        (read["a"]["proxy_number"].as_str(), read["status"].as_str()),
        (Some(proxy), Some("closed"))
    );
    let text = read.to_string();
    assert!(!text.contains(C) && !text.contains(M), "{text}");
    let (st, again) = api
        .call(Method::DELETE, &path, Some(Role::Provisioner), None)
        .await;
    assert_eq!((st, &again), (StatusCode::OK, &read));

    let calls = format!("/v1/calls?session={id}");
    let (st, list) = api
        .call(Method::GET, &calls, Some(Role::Provisioner), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["items"][0]["caller"].as_str(), Some(pc.as_str()));
    let (st, list) = api
        .call(Method::GET, &calls, Some(Role::Support), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert!(list["items"][0].get("caller").is_none(), "{list}");
    assert_eq!(list["items"][0]["dialled"].as_str(), Some(proxy));
}
on_both_databases!(pseudonymised_sessions_and_calls_read_through_the_api);

async fn bad_input_names_the_field(db: Db) {
    let api = Api::start(db).await;
    api.call(
        Method::POST,
        "/v1/numbers",
        Some(Role::Admin),
        Some(json!({"numbers": ["+825050000001"]})),
    )
    .await;
    let post = |body: Value| {
        api.call(
            Method::POST,
            "/v1/sessions",
            Some(Role::Provisioner),
            Some(body),
        )
    };

    let cases = [
        (json!({"b": M}), "a"),
        (json!({"a": "01012345678", "b": M}), "a"),
        (json!({"a": C, "b": 12}), "b"),
        (json!({"a": C, "b": M, "ttl": "soon"}), "ttl"),
        (json!({"a": C, "b": M, "ttl": "400d"}), "ttl"),
        (
            json!({"a": C, "b": M, "retention_class": "forever"}),
            "retention_class",
        ),
        (json!({"a": C, "b": M, "record": "yes"}), "record"),
        (json!({"a": C, "b": C}), "b"),
    ];
    for (body, field) in cases {
        let (st, p) = post(body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {p}");
        assert_eq!(
            (problem_type(&p), p["field"].as_str()),
            ("invalid-field", Some(field)),
            "{body} -> {p}"
        );
        assert!(p["detail"].as_str().unwrap().starts_with(field), "{p}");
    }
    let (st, p) = post(json!({"a": C, "b": M, "colour": "red"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p["detail"].as_str().unwrap().contains("colour"), "{p}");

    let (st, p) = api
        .call(
            Method::POST,
            "/v1/numbers",
            Some(Role::Admin),
            Some(json!({"numbers": ["+825050000002", "nope"]})),
        )
        .await;
    assert_eq!(
        (st, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("numbers[1]"))
    );
    let (st, p) = api
        .call(
            Method::POST,
            "/v1/numbers",
            Some(Role::Admin),
            Some(json!({"numbers": []})),
        )
        .await;
    assert_eq!(
        (st, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("numbers"))
    );

    // Not JSON at all, and JSON with the wrong content type.
    let raw = |ctype: &'static str, body: &'static str| {
        api.http
            .post(format!("{}/v1/sessions", api.base))
            .bearer_auth(&api.tokens[&Role::Provisioner])
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let r = raw("application/json", "{\"a\": ").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = raw("text/plain", "{}").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (st, p) = api
        .call(Method::GET, "/v1/calls", Some(Role::Provisioner), None)
        .await;
    assert_eq!(
        (st, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("session"))
    );
    let (st, _) = api
        .call(
            Method::GET,
            "/v1/calls?session=ses_x",
            Some(Role::Provisioner),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, p) = api.call(Method::GET, "/v2/nothing", None, None).await;
    assert_eq!((st, problem_type(&p)), (StatusCode::NOT_FOUND, "not-found"));
}
on_both_databases!(bad_input_names_the_field);

async fn exhausted_pool_is_a_conflict_naming_the_participant(db: Db) {
    let api = Api::start(db).await;
    api.call(
        Method::POST,
        "/v1/numbers",
        Some(Role::Admin),
        Some(json!({"numbers": ["+825050000001"]})),
    )
    .await;
    let post = |b: &str| {
        api.call(
            Method::POST,
            "/v1/sessions",
            Some(Role::Provisioner),
            Some(json!({"a": C, "b": b})),
        )
    };
    assert_eq!(post(M).await.0, StatusCode::CREATED);
    let (st, p) = post("+821033334444").await;
    assert_eq!(
        (st, problem_type(&p), p["field"].as_str()),
        (StatusCode::CONFLICT, "no-proxy-number", Some("a"))
    );
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("participant a: ") && detail.contains("held in other open sessions"),
        "{detail}"
    );
    assert!(
        !detail.contains("12345678"),
        "no real number in the problem: {detail}"
    );
}
on_both_databases!(exhausted_pool_is_a_conflict_naming_the_participant);

#[tokio::test]
async fn authentication_and_roles() {
    let api = Api::start(Db::Sqlite).await;
    let url = format!("{}/v1/numbers", api.base);

    let r = api.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let p: Value = r.json().await.unwrap();
    assert_eq!(problem_type(&p), "missing-token");

    let r = api
        .http
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = api
        .http
        .get(&url)
        .bearer_auth("ansim_0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem_type(&r.json().await.unwrap()), "invalid-token");

    // Each endpoint refuses every role it does not name (403), before it
    // looks at the body.
    let endpoints: [(Method, &str, &[Role]); 6] = [
        (Method::POST, "/v1/numbers", &[Role::Admin]),
        (Method::GET, "/v1/numbers", &[Role::Admin]),
        (Method::POST, "/v1/sessions", &[Role::Provisioner]),
        (Method::GET, "/v1/sessions/ses_x", &[Role::Provisioner]),
        (Method::DELETE, "/v1/sessions/ses_x", &[Role::Provisioner]),
        (
            Method::GET,
            "/v1/calls?session=ses_x",
            &[Role::Provisioner, Role::Support],
        ),
    ];
    for (method, path, allowed) in endpoints {
        for role in Role::ALL {
            let body = (method == Method::POST).then(|| json!({"garbage": true}));
            let (st, p) = api.call(method.clone(), path, Some(role), body).await;
            if allowed.contains(&role) {
                assert_ne!(st, StatusCode::FORBIDDEN, "{method} {path} as {role}: {p}");
                assert_ne!(
                    st,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} as {role}: {p}"
                );
            } else {
                assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path} as {role}: {p}");
                assert_eq!(problem_type(&p), "forbidden");
            }
        }
        let (st, _) = api.call(method.clone(), path, None, None).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
    }

    // A disabled token stops working at once.
    api._db.store.disable_staff("admin", T0).await.unwrap();
    let (st, p) = api
        .call(Method::GET, "/v1/numbers", Some(Role::Admin), None)
        .await;
    assert_eq!(
        (st, problem_type(&p)),
        (StatusCode::UNAUTHORIZED, "token-disabled")
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let api = Api::start(Db::Sqlite).await;
    let (st, h) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((st, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    api.call(
        Method::POST,
        "/v1/numbers",
        Some(Role::Admin),
        Some(json!({"numbers": ["+825050000001", "+825050000002"]})),
    )
    .await;
    let (_, s) = api
        .call(
            Method::POST,
            "/v1/sessions",
            Some(Role::Provisioner),
            Some(json!({"a": C, "b": M})),
        )
        .await;
    let id = s["id"].as_str().unwrap();
    api.call(
        Method::GET,
        &format!("/v1/sessions/{id}"),
        Some(Role::Provisioner),
        None,
    )
    .await;
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "ansim_sessions_created_total 1",
        "ansim_sessions_open 1",
        "ansim_pool_numbers 2",
        "ansim_http_requests_total{method=\"POST\",route=\"/v1/sessions\",status=\"201\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let by_template = "route=\"/v1/sessions/{id}\",status=\"200\"} 1";
    assert!(
        text.contains(by_template),
        "labels carry the route template:\n{text}"
    );
    assert!(!text.contains(id), "no ids in metric labels");
}
