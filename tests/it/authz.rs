//! The authorisation matrix: every endpoint × every role, no token, an
//! unknown token and a disabled one; then the grant rules of playback
//! (pending, expired, another dispute's, a resolved dispute's, self-approval
//! under four-eyes) and the audio cookie's limits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ansim::store::{NewSession, Role};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{DAY, Db, T0, TestDb, n, pool_numbers};
use crate::on_both_databases;
use crate::playback::{grant, open_dispute};
use crate::rig::{Api, Rig};

/// One member per role, plus a second support user with no grant, and one
/// whose token gets disabled.
const STAFF: &[(&str, Role)] = &[
    ("app", Role::Provisioner),
    ("agent", Role::Support),
    ("boss", Role::Supervisor),
    ("aud", Role::Auditor),
    ("ops", Role::Admin),
    ("other", Role::Support),
    ("gone", Role::Support),
];

/// Who makes a request in the matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Role(&'static str, Role),
    NoToken,
    UnknownToken,
    Disabled,
}

/// The objects the requests act on.
struct World {
    api: Api,
    db: TestDb,
    session: String,
    recording: String,
    dispute: String,
    fresh: AtomicU32,
}

impl World {
    /// A number no one has used yet.
    fn fresh_number(&self, prefix: &str) -> String {
        format!("{prefix}{:04}", self.fresh.fetch_add(1, Ordering::Relaxed))
    }

    async fn fresh_dispute(&self) -> String {
        let new = ansim::store::NewDispute {
            ticket: "CS-1",
            reason: "x",
            opened_by: "stf_x",
            call_ids: &[],
            hold_id: None,
        };
        let mut tx = self.db.store.begin().await.unwrap();
        let d = tx.insert_dispute(&new, T0).await.unwrap();
        tx.commit().await.unwrap();
        d.id
    }
}

/// The endpoints of SPEC.md's table (and the page's), each with the roles
/// that may call it and the status they get.
#[derive(Debug, Clone, Copy)]
enum Ep {
    NumbersAdd,
    NumbersList,
    SessionCreate,
    SessionRead,
    SessionClose,
    Calls,
    Me,
    DisputeOpen,
    DisputeList,
    DisputeShow,
    GrantRequest,
    GrantApprove,
    Audio,
    Waveform,
    Resolve,
    SubjectShow,
    SubjectErase,
    Audit,
    Metrics,
    Healthz,
    Page,
    Script,
    Style,
    Messages,
}

const ALL: [Ep; 24] = [
    Ep::NumbersAdd,
    Ep::NumbersList,
    Ep::SessionCreate,
    Ep::SessionRead,
    Ep::SessionClose,
    Ep::Calls,
    Ep::Me,
    Ep::DisputeOpen,
    Ep::DisputeList,
    Ep::DisputeShow,
    Ep::GrantRequest,
    Ep::GrantApprove,
    Ep::Audio,
    Ep::Waveform,
    Ep::Resolve,
    Ep::SubjectShow,
    Ep::SubjectErase,
    Ep::Audit,
    Ep::Metrics,
    Ep::Healthz,
    Ep::Page,
    Ep::Script,
    Ep::Style,
    Ep::Messages,
];

impl Ep {
    /// Roles allowed (`None`: no authentication at all) and the success status.
    fn rule(self) -> (Option<&'static [Role]>, u16) {
        use Role::*;
        match self {
            Ep::NumbersAdd => (Some(&[Admin]), 201),
            Ep::NumbersList => (Some(&[Admin]), 200),
            Ep::SessionCreate => (Some(&[Provisioner]), 201),
            Ep::SessionRead | Ep::SessionClose => (Some(&[Provisioner]), 200),
            Ep::Calls => (Some(&[Provisioner, Support]), 200),
            Ep::Me => (
                Some(&[Provisioner, Support, Supervisor, Auditor, Admin]),
                200,
            ),
            Ep::DisputeOpen => (Some(&[Support]), 201),
            Ep::DisputeList | Ep::DisputeShow => (Some(&[Support, Supervisor]), 200),
            Ep::GrantRequest => (Some(&[Support, Supervisor]), 201),
            Ep::GrantApprove => (Some(&[Supervisor]), 200),
            // With a live grant of one's own: in the matrix only "agent" holds one.
            Ep::Audio | Ep::Waveform => (Some(&[Support, Supervisor]), 200),
            Ep::Resolve => (Some(&[Support, Supervisor]), 200),
            Ep::SubjectShow | Ep::SubjectErase => (Some(&[Admin]), 200),
            Ep::Audit => (Some(&[Auditor]), 200),
            Ep::Metrics | Ep::Healthz | Ep::Page | Ep::Script | Ep::Style | Ep::Messages => {
                (None, 200)
            }
        }
    }

    /// The request, on objects made fresh where the call changes them.
    async fn request(self, w: &World) -> (Method, String, Option<Value>) {
        let get = |p: String| (Method::GET, p, None);
        let post = |p: String, b: Option<Value>| (Method::POST, p, b);
        match self {
            Ep::NumbersAdd => post(
                "/v1/numbers".into(),
                Some(json!({"numbers": [w.fresh_number("+82505100")]})),
            ),
            Ep::NumbersList => get("/v1/numbers".into()),
            Ep::SessionCreate => post(
                "/v1/sessions".into(),
                Some(json!({"a": w.fresh_number("+82102000"), "b": w.fresh_number("+82103000")})),
            ),
            Ep::SessionRead => get(format!("/v1/sessions/{}", w.session)),
            Ep::SessionClose => {
                let s = new_session(&w.db, &w.fresh_number("+82104000")).await;
                (Method::DELETE, format!("/v1/sessions/{s}"), None)
            }
            Ep::Calls => get(format!("/v1/calls?session={}", w.session)),
            Ep::Me => get("/v1/me".into()),
            Ep::DisputeOpen => {
                let call = w.db.store.find_recording(&w.recording).await.unwrap();
                let body =
                    json!({"call_ids": [call.unwrap().call_id], "ticket": "CS-2", "reason": "r"});
                post("/v1/disputes".into(), Some(body))
            }
            Ep::DisputeList => get("/v1/disputes".into()),
            Ep::DisputeShow => get(format!("/v1/disputes/{}", w.dispute)),
            // On a dispute of its own, so the matrix's grants stay apart.
            Ep::GrantRequest => post(
                format!("/v1/disputes/{}/grants", w.fresh_dispute().await),
                None,
            ),
            Ep::GrantApprove => {
                let mut tx = w.db.store.begin().await.unwrap();
                let g = tx
                    .insert_grant(&w.dispute, w.api.id("agent"), T0)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                post(format!("/v1/grants/{}/approve", g.id), None)
            }
            Ep::Audio => get(format!("/v1/recordings/{}/audio", w.recording)),
            Ep::Waveform => get(format!("/v1/recordings/{}/waveform", w.recording)),
            Ep::Resolve => post(
                format!("/v1/disputes/{}/resolve", w.fresh_dispute().await),
                None,
            ),
            Ep::SubjectShow => get("/v1/subjects/+821012345678".into()),
            Ep::SubjectErase => post(
                format!("/v1/subjects/{}/erase", w.fresh_number("+82109000")),
                None,
            ),
            Ep::Audit => get("/v1/audit".into()),
            Ep::Metrics => get("/metrics".into()),
            Ep::Healthz => get("/healthz".into()),
            Ep::Page => get("/".into()),
            Ep::Script => get("/assets/app.js".into()),
            Ep::Style => get("/assets/app.css".into()),
            Ep::Messages => get("/assets/i18n/ko.json".into()),
        }
    }

    /// The status and problem type `who` must get.
    fn expect(self, who: Who) -> (u16, Option<&'static str>) {
        let (roles, ok) = self.rule();
        let Some(roles) = roles else {
            return (ok, None);
        };
        match who {
            Who::NoToken => (401, Some("missing-token")),
            Who::UnknownToken => (401, Some("invalid-token")),
            Who::Disabled => (401, Some("token-disabled")),
            Who::Role(name, role) if roles.contains(&role) => match self {
                // Playback needs the grant too, which only "agent" has.
                Ep::Audio | Ep::Waveform if name != "agent" => (403, Some("no-grant")),
                _ => (ok, None),
            },
            Who::Role(..) => (403, Some("forbidden")),
        }
    }
}

async fn new_session(db: &TestDb, a: &str) -> String {
    let new = NewSession {
        a: n(a),
        b: n("+821055556666"),
        ttl: DAY,
        retention_class: "ad-6m".into(),
        record: true,
    };
    db.store.create_session(&new, T0, DAY).await.unwrap().id
}

/// Sends `ep` as `who`; returns the status and the problem type's slug.
async fn send(w: &World, ep: Ep, who: Who) -> (u16, Option<String>) {
    let (method, path, body) = ep.request(w).await;
    let mut r = reqwest::Client::new().request(method, format!("{}{path}", w.api.base));
    r = match who {
        Who::Role(name, _) => r.bearer_auth(w.api.token(name)),
        Who::NoToken => r,
        Who::UnknownToken => r.bearer_auth("not-a-token-anyone-has"),
        Who::Disabled => r.bearer_auth(w.api.token("gone")),
    };
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let is_problem = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("problem+json"));
    let slug = if is_problem {
        let v: Value = resp.json().await.unwrap();
        v["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:ansim:problem:"))
            .map(str::to_owned)
    } else {
        let _ = resp.bytes().await;
        None
    };
    (status, slug)
}

async fn world(db: Db) -> (World, Rig) {
    let db = TestDb::new(db).await;
    db.store.add_numbers(&pool_numbers(40), T0).await.unwrap();
    let rig = Rig::new(db.store.clone());
    let session = new_session(&db, "+821011112222").await;
    let rec = rig.record_long(&session, "ad-6m", 100).await;
    let api = rig.api(&db, STAFF, &[], true).await;
    let gone = db.store.disable_staff(api.id("gone"), T0).await.unwrap();
    assert!(gone.is_some_and(|g| g.disabled_at.is_some()));
    let dispute = open_dispute(&api, &rec.call_id).await;
    grant(&api, &dispute, "agent", "boss").await;
    let w = World {
        api,
        db,
        session,
        recording: rec.id,
        dispute,
        fresh: AtomicU32::new(0),
    };
    (w, rig)
}

async fn every_endpoint_checks_every_role(db: Db) {
    let (w, _rig) = world(db).await;
    let mut callers: Vec<Who> = STAFF[..5]
        .iter()
        .map(|(name, role)| Who::Role(name, *role))
        .collect();
    callers.extend([
        Who::Role("other", Role::Support),
        Who::NoToken,
        Who::UnknownToken,
        Who::Disabled,
    ]);
    let mut wrong = Vec::new();
    for ep in ALL {
        for who in &callers {
            let want = ep.expect(*who);
            let got = send(&w, ep, *who).await;
            if got.0 != want.0 || want.1.is_some_and(|s| got.1.as_deref() != Some(s)) {
                wrong.push(format!("{ep:?} as {who:?}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
on_both_databases!(every_endpoint_checks_every_role);

/// The rules of a grant, each with its own answer.
async fn grants_are_narrow(db: Db) {
    let (w, rig) = world(db).await;
    let audio = format!("/v1/recordings/{}/audio", w.recording);
    let slug = |v: Value| {
        v["type"]
            .as_str()
            .unwrap_or("")
            .replace("urn:ansim:problem:", "")
    };

    // Self-approval under four-eyes, and support approving at all.
    let own = w
        .api
        .post_ok(
            &format!("/v1/disputes/{}/grants", w.dispute),
            "boss",
            None,
            201,
        )
        .await;
    let own = own["id"].as_str().unwrap().to_owned();
    let v = w
        .api
        .post_ok(&format!("/v1/grants/{own}/approve"), "boss", None, 403)
        .await;
    assert!(v["detail"].as_str().unwrap().contains("four-eyes"), "{v}");
    let pending = w
        .api
        .post_ok(
            &format!("/v1/disputes/{}/grants", w.dispute),
            "other",
            None,
            201,
        )
        .await;
    let pending = pending["id"].as_str().unwrap().to_owned();
    w.api
        .post_ok(&format!("/v1/grants/{pending}/approve"), "agent", None, 403)
        .await;

    // A grant not yet approved.
    let r = w.api.get(&audio, "other", &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(slug(r.json().await.unwrap()), "grant-pending");

    // A grant for another dispute (on another call) covers nothing here.
    let elsewhere = rig.record_long("ses_test", "ad-6m", 50).await;
    let d2 = open_dispute(&w.api, &elsewhere.call_id).await;
    grant(&w.api, &d2, "other", "boss").await;
    let r = w.api.get(&audio, "other", &[]).await;
    assert_eq!(slug(r.json().await.unwrap()), "grant-pending");
    let r = w
        .api
        .get(
            &format!("/v1/recordings/{}/audio", elsewhere.id),
            "other",
            &[],
        )
        .await;
    assert_eq!(r.status(), 200, "that grant works on its own dispute");
    let r = w
        .api
        .get(
            &format!("/v1/recordings/{}/audio", elsewhere.id),
            "agent",
            &[],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(slug(r.json().await.unwrap()), "no-grant");

    // The browser's audio cookie: accepted for audio only, never elsewhere.
    let cookie = format!("ansim_token={}", w.api.token("agent"));
    let http = reqwest::Client::new();
    let with_cookie = |m: Method, p: &str| {
        http.request(m, format!("{}{p}", w.api.base))
            .header("cookie", cookie.clone())
            .send()
    };
    assert_eq!(
        with_cookie(Method::GET, &audio).await.unwrap().status(),
        200
    );
    assert_eq!(
        with_cookie(Method::GET, "/v1/disputes")
            .await
            .unwrap()
            .status(),
        401
    );
    let p = format!("/v1/disputes/{}/grants", w.dispute);
    assert_eq!(with_cookie(Method::POST, &p).await.unwrap().status(), 401);

    // Expiry: four hours after approval the grant stops working.
    assert_eq!(w.api.get(&audio, "agent", &[]).await.status(), 200);
    w.api.clock.advance(Duration::from_secs(4 * 3600));
    let r = w.api.get(&audio, "agent", &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(slug(r.json().await.unwrap()), "grant-expired");

    // A new grant works again, until its dispute is resolved.
    grant(&w.api, &w.dispute, "agent", "boss").await;
    assert_eq!(w.api.get(&audio, "agent", &[]).await.status(), 200);
    w.api
        .post_ok(
            &format!("/v1/disputes/{}/resolve", w.dispute),
            "boss",
            None,
            200,
        )
        .await;
    let r = w.api.get(&audio, "agent", &[]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(slug(r.json().await.unwrap()), "dispute-resolved");
    // "other"'s request from before can no longer be approved.
    let v = w
        .api
        .post_ok(&format!("/v1/grants/{pending}/approve"), "boss", None, 409)
        .await;
    assert_eq!(slug(v), "dispute-resolved");
    assert!(ansim::audit::verify(&w.db.store).await.unwrap().is_ok());
}
on_both_databases!(grants_are_narrow);

/// Without four-eyes, a request is its own approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_four_eyes_a_request_is_approved_at_once() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    let rec = rig.record_long("ses_test", "ad-6m", 50).await;
    let api = rig.api(&db, STAFF, &[], false).await;
    let d = open_dispute(&api, &rec.call_id).await;
    let v = api
        .post_ok(&format!("/v1/disputes/{d}/grants"), "agent", None, 201)
        .await;
    assert_eq!(v["status"], "approved", "{v}");
    let r = api
        .get(&format!("/v1/recordings/{}/audio", rec.id), "agent", &[])
        .await;
    assert_eq!(r.status(), 200);
}

/// A bad query parameter is a problem naming it, not plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_named() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    let api = rig.api(&db, STAFF, &[], true).await;
    for (path, who, field) in [
        ("/v1/disputes?all=maybe", "agent", "all"),
        ("/v1/disputes?al=true", "agent", "al"),
        ("/v1/audit?limit=lots", "aud", "limit"),
    ] {
        let r = api.get(path, who, &[]).await;
        assert_eq!(r.status(), 422, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["field"], field, "{path}: {v}");
    }
}

/// The page and its assets come from the binary, under a strict policy:
/// no inline script can run, nothing can frame it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_under_a_strict_policy() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    let api = rig.api(&db, STAFF, &[], true).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let r = reqwest::get(format!("{}{path}", api.base)).await.unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = r.text().await.unwrap();
        if path == "/" {
            assert!(body.contains("<script src=\"/assets/app.js\" defer></script>"));
            assert_eq!(body.matches("<script").count(), 1, "no inline script");
        }
    }
}
