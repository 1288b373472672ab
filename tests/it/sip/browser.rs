//! The support web page in headless Chromium, on a real call: SIPp places
//! a 3-second call that ansim records; a support user signs in and asks
//! for access, a supervisor (in another browser) approves, the support user
//! plays and seeks the recording in the page's audio player, whose duration
//! must be within 100 ms of the call's, and the supervisor sees who
//! listened. Driven through chromedriver (WebDriver); screenshots go to
//! `$CARGO_TARGET_TMPDIR/browser/`.

use ansim::api::auth;
use ansim::store::Role;
use serde_json::{Value, json};

use super::recording::{finished_recording, tone, tone_scenario};
use super::*;
use crate::webdriver::{Driver, Session};

const TONE_MS: u64 = 3000;

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

/// Places a recorded 3-second call; answers its call record and recording.
async fn recorded_call(t: &SipTest) -> (ansim::store::CallRecord, String) {
    let (a_file, b_file) = (t.dir.path().join("a.ulaw"), t.dir.path().join("b.ulaw"));
    std::fs::write(&a_file, tone(440.0, TONE_MS)).unwrap();
    std::fs::write(&b_file, tone(880.0, TONE_MS)).unwrap();
    let uas_file = tone_scenario(t.dir.path(), "uas_tone.xml", &b_file, 0);
    let uac_file = tone_scenario(t.dir.path(), "uac_tone.xml", &a_file, TONE_MS);
    let mp = free_udp_port().to_string();
    let callee = Sipp::spawn(t.dir.path(), &uas_file, t.uas_port, &["-mp", &mp], "uas");
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let caller = uac(t, &uac_file, CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    let call = calls_of(t).await.remove(0);
    let rec = finished_recording(t, &call.id).await;
    (call, rec.id)
}

async fn add_staff(t: &SipTest, name: &str, role: Role) -> String {
    let token = auth::new_token();
    let now = SystemClock.now();
    t.store
        .add_staff(name, role, &auth::hash_token(&token), now)
        .await
        .unwrap();
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_and_supervisor_listen_to_a_call_in_the_page() {
    let t = SipTest::start("127.0.0.1/32").await;
    let (call, rec) = recorded_call(&t).await;
    let call_ms = (call.end_at.unwrap().as_millis() - call.answer_at.unwrap().as_millis()) as f64;
    let agent_token = add_staff(&t, "agent", Role::Support).await;
    let boss_token = add_staff(&t, "boss", Role::Supervisor).await;
    let base = format!("http://{}", t.api);
    let opened = reqwest::Client::new()
        .post(format!("{base}/v1/disputes"))
        .bearer_auth(&agent_token)
        .json(&json!({"call_ids": [call.id], "ticket": "CS-77", "reason": "no-show"}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201);
    let shots = shots();

    let driver = Driver::start().await;
    let agent = driver.session("agent").await;
    let boss = driver.session("boss").await;

    // The support user asks for access.
    sign_in(&agent, &base, &agent_token).await;
    let role = agent.exec("return document.getElementById('me-role').textContent;");
    assert_eq!(role.await, "support");
    open_first_dispute(&agent).await;
    agent
        .wait_until("!document.getElementById('request-grant').hidden")
        .await;
    agent.click("#request-grant").await;
    agent
        .wait_until("document.querySelector('#grants tbody').innerText.includes('pending')")
        .await;
    agent.screenshot(&shots.join("1-agent-requested.png")).await;
    let players = agent.exec("return document.querySelectorAll('#recordings audio').length;");
    assert_eq!(players.await, 0, "no player before approval");

    // The supervisor, in another browser, approves.
    sign_in(&boss, &base, &boss_token).await;
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
    eprintln!("audio element: {duration_ms:.1} ms; call (answer to end): {call_ms} ms");
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
               a.currentTime = 2.2;
             }).catch((e) => done({error: String(e)}));",
        )
        .await;
    let at = played["t"].as_f64();
    assert!(at.is_some_and(|t| (t - 2.2).abs() < 0.05), "{played}");
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

    let plays = t
        .store
        .audit_events_on("recording.play", &rec)
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
    t.stop().await;
}
