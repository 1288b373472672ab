//! `GET /openapi.json`: an OpenAPI 3.1 document that names every route the
//! router serves (read from `src/api/mod.rs`), whose references all
//! resolve, and that `openapi-spec-validator` accepts.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::harness::{Db, TestDb, routing_on};

/// `(METHOD, path)` of every `.route(…)` in the router.
fn routed() -> BTreeSet<(String, String)> {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs")).unwrap();
    let mut out = BTreeSet::new();
    for chunk in src.split(".route(").skip(1) {
        let chunk = chunk.trim_start().strip_prefix('"').unwrap();
        let (path, rest) = chunk.split_once('"').unwrap();
        // The route's own text ends where the next call of the chain starts.
        let call = &rest[..rest.find("\n        .").unwrap_or(rest.len())];
        for method in ["get", "post", "delete", "put", "patch"] {
            if call.contains(&format!("{method}(")) {
                out.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    out
}

async fn document() -> Value {
    let db = TestDb::new(Db::Sqlite).await;
    let (routing, _) = routing_on(&db.store);
    let state = ansim::api::AppState::new(routing, Arc::new(ansim::metrics::Metrics::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let limits = ansim::api::ConnectionLimits::default();
    tokio::spawn(ansim::api::serve(
        listener,
        state,
        limits,
        std::future::pending(),
    ));
    let r = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_covers_every_route_and_validates() {
    let doc = document().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let routes = routed();
    assert!(routes.len() > 20, "{routes:?}");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    assert_eq!(routes, documented, "routes and the document differ");
    // Every reference resolves; the bearer scheme is there.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["paths"]["/v1/sessions"]["post"]["requestBody"].is_object());
    // A call's reason, in the record and in call.completed.
    let reason = doc["components"]["schemas"]["CallView"]["properties"]["reason"]["description"]
        .as_str()
        .unwrap_or_default();
    for why in [
        "out-of-session",
        "out-of-session-announced",
        "out-of-session-forwarded",
    ] {
        assert!(reason.contains(&format!("`{why}`")), "{why}: {reason}");
    }
    let completed = &doc["components"]["schemas"]["CallCompleted"];
    assert_eq!(
        completed["properties"]["data"]["$ref"], "#/components/schemas/CallView",
        "{completed}"
    );
    assert_eq!(completed["properties"]["type"]["example"], "call.completed");
    let problem = doc["paths"]["/v1/calls"]["get"]["responses"]["default"]["description"]
        .as_str()
        .unwrap();
    for slug in ansim::api::problem::SLUGS {
        assert!(problem.contains(slug), "{slug}");
    }

    // openapi-spec-validator (scripts/install-test-deps.sh puts it in target/).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let validator = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/openapi-venv/bin/openapi-spec-validator"
    );
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(validator).arg(&file).output(),
    )
    .await
    .expect("the validator finished in time")
    .unwrap_or_else(|e| panic!("{validator}: {e} (run scripts/install-test-deps.sh)"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every problem slug the API's code names is in `problem::SLUGS`.
#[test]
fn every_problem_slug_is_listed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for chunk in text.split("Problem::new(").skip(1) {
            // The slug is the second argument's string literal.
            if let Some(slug) = chunk.split('"').nth(1).filter(|s| !s.contains(' ')) {
                found.insert(slug.to_owned());
            }
        }
        for chunk in text.split("Problem::unauthorized(").skip(1) {
            if let Some(slug) = chunk.split('"').nth(1) {
                found.insert(slug.to_owned());
            }
        }
    }
    let listed: BTreeSet<String> = ansim::api::problem::SLUGS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let missing: Vec<_> = found.difference(&listed).collect();
    assert!(missing.is_empty(), "not in SLUGS: {missing:?}");
}
