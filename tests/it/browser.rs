//! The support web page in headless Chromium, driven through chromedriver:
//! a support user signs in and asks for access, a supervisor (another
//! browser) approves, the support user plays and seeks the recording, and
//! the supervisor sees who listened. Screenshots go to
//! `$CARGO_TARGET_TMPDIR/browser/`.

use std::path::PathBuf;

use ansim::store::Role;
use serde_json::Value;

use crate::harness::{Db, TestDb};
use crate::playback::open_dispute;
use crate::rig::Rig;
use crate::webdriver::{Driver, Session};

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn sign_in(s: &Session<'_>, base: &str, token: &str) {
    s.goto(base).await;
    s.type_into("#token", token).await;
    s.click("#signin").await;
    s.wait_until("!document.getElementById('disputes-panel').hidden")
        .await;
}

async fn open_first_dispute(s: &Session<'_>) {
    s.click("#disputes tbody tr").await;
    s.wait_until("!document.getElementById('dispute-panel').hidden")
        .await;
}

/// Waits for the page's audio element to load its metadata; answers its
/// duration in seconds.
async fn audio_duration(s: &Session<'_>) -> f64 {
    let v = s
        .exec_async(
            "const done = arguments[0];
             const a = document.querySelector('#recordings audio');
             const report = () => done({duration: a.duration, error: a.error ? a.error.code : null});
             if (a.readyState >= 1) report();
             else { a.addEventListener('loadedmetadata', report); a.addEventListener('error', report); }",
        )
        .await;
    assert_eq!(v["error"], Value::Null, "the audio element failed: {v}");
    v["duration"].as_f64().expect("a duration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_and_supervisor_use_the_page_to_listen() {
    let db = TestDb::new(Db::Sqlite).await;
    let rig = Rig::new(db.store.clone());
    // A 5-second call.
    let rec = rig.record_long("ses_test", "ad-6m", 250).await;
    let staff = [("agent", Role::Support), ("boss", Role::Supervisor)];
    let api = rig.api(&db, &staff, &[], true).await;
    let dispute = open_dispute(&api, &rec.call_id).await;
    let shots = shots();

    let driver = Driver::start().await;
    let agent = driver.session("agent").await;
    let boss = driver.session("boss").await;

    // The support user asks for access.
    sign_in(&agent, &api.base, api.token("agent")).await;
    assert_eq!(
        agent
            .exec("return document.getElementById('me-role').textContent;")
            .await,
        "support"
    );
    open_first_dispute(&agent).await;
    agent
        .wait_until("!document.getElementById('request-grant').hidden")
        .await;
    agent.click("#request-grant").await;
    agent
        .wait_until("document.querySelector('#grants tbody').innerText.includes('pending')")
        .await;
    agent.screenshot(&shots.join("1-agent-requested.png")).await;
    assert_eq!(
        agent
            .exec("return document.querySelectorAll('#recordings audio').length;")
            .await,
        0,
        "no player before approval"
    );

    // The supervisor, in another browser, approves.
    sign_in(&boss, &api.base, api.token("boss")).await;
    open_first_dispute(&boss).await;
    boss.click("#grants button.approve").await;
    boss.wait_until("document.querySelector('#grants tbody').innerText.includes('approved')")
        .await;
    boss.screenshot(&shots.join("2-boss-approved.png")).await;

    // The support user plays the recording and seeks into it.
    open_first_dispute(&agent).await;
    agent
        .wait_until("document.querySelector('#recordings audio') !== null")
        .await;
    let duration_ms = audio_duration(&agent).await * 1000.0;
    let detail: Value = api
        .get(&format!("/v1/disputes/{dispute}"), "agent", &[])
        .await
        .json()
        .await
        .unwrap();
    let call_ms = detail["calls"][0]["duration_ms"].as_f64().unwrap();
    assert_eq!(call_ms, 5000.0);
    assert!(
        (duration_ms - call_ms).abs() <= 100.0,
        "the player says {duration_ms} ms, the call lasted {call_ms} ms"
    );
    let played = agent
        .exec_async(
            "const done = arguments[0];
             const a = document.querySelector('#recordings audio');
             a.play().then(() => {
               a.addEventListener('seeked', () => done({t: a.currentTime}), {once: true});
               a.currentTime = 3.2;
             }).catch((e) => done({error: String(e)}));",
        )
        .await;
    assert!(
        played["t"].as_f64().is_some_and(|t| (t - 3.2).abs() < 0.05),
        "{played}"
    );
    agent
        .exec("document.querySelector('#recordings audio').scrollIntoView(); return 0;")
        .await;
    agent.screenshot(&shots.join("3-agent-playing.png")).await;

    // The supervisor sees who listened.
    open_first_dispute(&boss).await;
    boss.wait_until("document.querySelector('.listeners').innerText.includes('agent')")
        .await;
    boss.exec("document.querySelector('.listeners').scrollIntoView(); return 0;")
        .await;
    boss.screenshot(&shots.join("4-boss-sees-listener.png"))
        .await;

    let plays = db
        .store
        .audit_events_on("recording.play", &rec.id)
        .await
        .unwrap();
    assert!(!plays.is_empty(), "playback is audited");
    for name in [
        "1-agent-requested.png",
        "2-boss-approved.png",
        "3-agent-playing.png",
        "4-boss-sees-listener.png",
    ] {
        let len = std::fs::metadata(shots.join(name)).unwrap().len();
        assert!(len > 1000, "{name} is {len} bytes");
    }
    eprintln!("screenshots in {}", shots.display());
    agent.close().await;
    boss.close().await;
}
