//! The support web page in headless Chromium, on a real call: SIPp places
//! an 8-second call that ansim records, the caller's tone in its first two
//! seconds and the callee's from 4 s to 7 s. A support user whose browser
//! speaks Korean signs in (the page is in Korean) and asks for access, a
//! supervisor (in another, English browser) approves, and the support user
//! works the recording: the waveform shows each tone on its own channel at
//! its time (the endpoint's numbers and the canvas's pixels), a click on it
//! seeks, the keyboard shortcuts play, pause, skip and pick a side, the
//! caller alone plays as a mono file, the speed changes with pitch kept;
//! axe-core finds no serious violation at 1280 and 768 px; a dispute is
//! opened from the session's list of calls and found by its ticket; the
//! supervisor sees who listened. Driven through chromedriver (WebDriver);
//! screenshots go to `$CARGO_TARGET_TMPDIR/browser/`.

use ansim::api::auth;
use ansim::store::Role;
use serde_json::{Value, json};

use super::recording::{finished_recording, tone, tone_scenario};
use super::*;
use crate::webdriver::{Driver, Session};

const CALL_MS: u64 = 8000;
/// The caller's tone: 0 to 2 s of the call.
const CALLER_TONE: (u64, u64) = (0, 2000);
/// The callee's tone: 4 to 7 s.
const CALLEE_TONE: (u64, u64) = (4000, 7000);
/// How far the recording's timeline may be from the tone files' (the
/// streams start when each side has the answer).
const SLACK_MS: i64 = 300;

const LEFT: &str = "\u{E012}";
const RIGHT: &str = "\u{E014}";
const ESCAPE: &str = "\u{E00C}";

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A message of the page's catalogue for `lang`.
fn message(lang: &str, key: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("src/api/web/i18n/{lang}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no message {key}"))
        .to_owned()
}

async fn text_of(s: &Session<'_>, css: &str) -> Value {
    s.exec_with(
        "return document.querySelector(arguments[0]).textContent;",
        json!([css]),
    )
    .await
}

async fn sign_in(s: &Session<'_>, base: &str, token: &str) {
    s.goto(base).await;
    s.wait_until("document.body.dataset.ready === 'true'").await;
    s.type_into("#token", token).await;
    s.click("#signin").await;
    s.wait_until("!document.getElementById('disputes-panel').hidden")
        .await;
}

async fn open_first_dispute(s: &Session<'_>) {
    s.wait_until("document.querySelector('#disputes tbody tr button.link') !== null")
        .await;
    s.click("#disputes tbody tr button.link").await;
    s.wait_until("!document.getElementById('dispute-panel').hidden")
        .await;
}

/// The player's audio element, as the page script sees it.
const AUDIO: &str = "document.querySelector('#recordings audio')";

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

async fn current_time(s: &Session<'_>) -> f64 {
    s.exec(&format!("return {AUDIO}.currentTime;"))
        .await
        .as_f64()
        .expect("a time")
}

/// `ms` of silence in μ-law.
fn silence(ms: u64) -> Vec<u8> {
    vec![0xFF; (ms * 8) as usize]
}

/// Places a recorded call (the tones above); answers its call record and
/// recording.
async fn recorded_call(t: &SipTest) -> (ansim::store::CallRecord, String) {
    let (a_file, b_file) = (t.dir.path().join("a.ulaw"), t.dir.path().join("b.ulaw"));
    let caller = [tone(440.0, CALLER_TONE.1), silence(CALL_MS - CALLER_TONE.1)].concat();
    let callee = [
        silence(CALLEE_TONE.0),
        tone(880.0, CALLEE_TONE.1 - CALLEE_TONE.0),
        silence(CALL_MS - CALLEE_TONE.1),
    ]
    .concat();
    std::fs::write(&a_file, caller).unwrap();
    std::fs::write(&b_file, callee).unwrap();
    let uas_file = tone_scenario(t.dir.path(), "uas_tone.xml", &b_file, 0);
    let uac_file = tone_scenario(t.dir.path(), "uac_tone.xml", &a_file, CALL_MS);
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

/// One stretch of speech near `(from, to)`.
fn assert_speech(side: &str, speech: &Value, (from, to): (u64, u64)) {
    let s = speech
        .as_array()
        .unwrap_or_else(|| panic!("{side}: {speech}"));
    assert_eq!(s.len(), 1, "{side} speaks once: {speech}");
    let (a, b) = (s[0][0].as_i64().unwrap(), s[0][1].as_i64().unwrap());
    assert!(
        (a - from as i64).abs() <= SLACK_MS && (b - to as i64).abs() <= SLACK_MS,
        "{side} speaks {a}..{b} ms, its tone was {from}..{to} ms"
    );
}

/// The waveform endpoint shows each tone on its own channel, at its time.
async fn check_waveform(base: &str, token: &str, rec: &str) {
    let w: Value = reqwest::Client::new()
        .get(format!("{base}/v1/recordings/{rec}/waveform?bucket_ms=50"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!(
        "waveform: caller speech {}, callee speech {}",
        w["caller"]["speech"], w["callee"]["speech"]
    );
    assert_speech("caller", &w["caller"]["speech"], CALLER_TONE);
    assert_speech("callee", &w["callee"]["speech"], CALLEE_TONE);
    let peak = |side: &str, ms: usize| w[side]["max"][ms / 50].as_i64().unwrap();
    // 12000 is the tones' amplitude; line silence is a few units.
    assert!(peak("caller", 1000) > 8000, "{}", peak("caller", 1000));
    assert!(peak("caller", 5500) < 500, "{}", peak("caller", 5500));
    assert!(peak("callee", 5500) > 8000, "{}", peak("callee", 5500));
    assert!(peak("callee", 1000) < 500, "{}", peak("callee", 1000));
}

/// The canvas is drawn: in each channel's half, the columns over its tone
/// hold far more of the wave's colour than the columns over its silence.
async fn check_canvas(s: &Session<'_>) {
    let ink = s
        .exec(
            "const c = document.querySelector('#recordings canvas.wave');
             const g = c.getContext('2d');
             const d = g.getImageData(0, 0, c.width, c.height).data;
             const dur = document.querySelector('#recordings audio').duration * 1000;
             const count = (ms0, ms1, top) => {
               let n = 0;
               const x0 = Math.floor(ms0 / dur * c.width), x1 = Math.floor(ms1 / dur * c.width);
               for (let y = top; y < top + c.height / 2; y++)
                 for (let x = x0; x < x1; x++) {
                   const i = (y * c.width + x) * 4;
                   if (d[i] === 31 && d[i + 1] === 58 && d[i + 2] === 95) n++;
                 }
               return n;
             };
             const half = c.height / 2;
             return {callerTone: count(500, 1500, 0), callerQuiet: count(4500, 6500, 0),
                     calleeTone: count(4500, 6500, half), calleeQuiet: count(500, 1500, half)};",
        )
        .await;
    eprintln!("canvas ink: {ink}");
    let n = |k: &str| ink[k].as_f64().unwrap_or(0.0);
    assert!(n("callerTone") > 5.0 * n("callerQuiet").max(1.0), "{ink}");
    assert!(n("calleeTone") > 5.0 * n("calleeQuiet").max(1.0), "{ink}");
}

/// A click a quarter of the way along the waveform seeks to a quarter of
/// the recording, and the position is drawn there.
async fn click_seeks(s: &Session<'_>, duration: f64) {
    let width = s
        .exec("return document.querySelector('#recordings canvas.wave').getBoundingClientRect().width;")
        .await
        .as_f64()
        .unwrap();
    let dx = -(width / 4.0).round() as i64;
    s.click_at("#recordings canvas.wave", dx, 0).await;
    s.wait_until(&format!(
        "Math.abs({AUDIO}.currentTime - {}) < 0.2",
        duration / 4.0
    ))
    .await;
    let marked = s
        .exec(
            "const c = document.querySelector('#recordings canvas.wave');
             const x = Math.round(c.width / 4);
             const d = c.getContext('2d').getImageData(x - 3, 20, 7, 1).data;
             for (let i = 0; i < d.length; i += 4)
               if (d[i] === 179 && d[i + 1] === 38 && d[i + 2] === 30) return true;
             return false;",
        )
        .await;
    assert_eq!(
        marked, true,
        "the position line is drawn where the click seeked"
    );
}

/// The caller alone: the page's player now loads a mono WAV with the
/// caller's tone and not the callee's, and plays it.
async fn check_caller_only(s: &Session<'_>) {
    let v = s
        .exec_async(
            "const done = arguments[0];
             const a = document.querySelector('#recordings audio');
             fetch(a.currentSrc, {credentials: 'same-origin'})
               .then((r) => r.arrayBuffer())
               .then((buf) => {
                 const v = new DataView(buf);
                 const rms = (ms0, ms1) => {
                   let sum = 0, n = 0;
                   for (let i = ms0 * 8; i < ms1 * 8; i++) { const x = v.getInt16(44 + 2 * i, true); sum += x * x; n++; }
                   return Math.sqrt(sum / n);
                 };
                 const channels = v.getUint16(22, true);
                 const result = {channels, tone: rms(500, 1500), other: rms(4500, 6500)};
                 const t0 = a.currentTime;
                 a.addEventListener('timeupdate', function on() {
                   if (a.currentTime > t0 + 0.2) { a.removeEventListener('timeupdate', on); a.pause();
                     result.played = a.currentTime - t0; done(result); }
                 });
                 a.play().catch((e) => done({error: String(e)}));
               })
               .catch((e) => done({error: String(e)}));",
        )
        .await;
    eprintln!("caller only: {v}");
    assert_eq!(v["channels"], 1, "{v}");
    let (tone, other) = (v["tone"].as_f64().unwrap(), v["other"].as_f64().unwrap());
    assert!(tone > 5000.0 && other < 300.0, "{v}");
    assert!(v["played"].as_f64().is_some(), "it plays: {v}");
}

async fn check_shortcuts(s: &Session<'_>, shots: &Path) {
    // The canvas has the focus after the click.
    s.keys(&[" "]).await;
    s.wait_until(&format!("!{AUDIO}.paused")).await;
    s.keys(&[" "]).await;
    s.wait_until(&format!("{AUDIO}.paused")).await;
    s.exec(&format!("{AUDIO}.currentTime = 1.5; return 0;"))
        .await;
    s.wait_until(&format!("Math.abs({AUDIO}.currentTime - 1.5) < 0.01"))
        .await;
    s.keys(&[RIGHT]).await;
    s.wait_until(&format!("Math.abs({AUDIO}.currentTime - 6.5) < 0.05"))
        .await;
    s.keys(&[LEFT]).await;
    s.wait_until(&format!("Math.abs({AUDIO}.currentTime - 1.5) < 0.05"))
        .await;
    // 1: the caller alone, at the same place.
    s.keys(&["1"]).await;
    s.wait_until(&format!(
        "{AUDIO}.currentSrc.endsWith('?channels=caller') && {AUDIO}.readyState >= 1 \
         && document.querySelector('#recordings input[value=caller]').checked"
    ))
    .await;
    s.wait_until(&format!("Math.abs({AUDIO}.currentTime - 1.5) < 0.05"))
        .await;
    s.screenshot(&shots.join("5-agent-caller-only.png")).await;
    check_caller_only(s).await;
    // 2 then 3 at once: both sides again, still at the same place.
    let at = current_time(s).await;
    s.keys(&["2", "3"]).await;
    s.wait_until(&format!(
        "{AUDIO}.currentSrc.endsWith('/audio') && {AUDIO}.readyState >= 1 \
         && Math.abs({AUDIO}.currentTime - {at}) < 0.05"
    ))
    .await;
    // ?: the help, which Escape closes.
    s.keys(&["?"]).await;
    s.wait_until("document.getElementById('help').open").await;
    let title = text_of(s, "#help-title").await;
    assert_eq!(title, message("ko", "help.title"));
    s.screenshot(&shots.join("6-agent-help.png")).await;
    s.keys(&[ESCAPE]).await;
    s.wait_until("!document.getElementById('help').open").await;
    // Speed, pitch kept.
    s.click("#recordings select.speed option[value='1.5']")
        .await;
    s.wait_until(&format!(
        "{AUDIO}.playbackRate === 1.5 && {AUDIO}.preservesPitch === true"
    ))
    .await;
}

/// axe-core finds nothing serious or critical, at 1280 and at 768 px, and
/// at 768 px nothing is wider than the window.
async fn check_accessibility(s: &Session<'_>, shots: &Path) {
    let found = s.accessibility_violations().await;
    assert!(found.is_empty(), "axe at 1280 px: {found:#?}");
    s.resize(768, 1000).await;
    s.wait_until("window.innerWidth <= 768").await;
    let wide = s
        .exec("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        wide.as_f64().is_some_and(|w| w <= 1.0),
        "wider than 768 px by {wide}"
    );
    let found = s.accessibility_violations().await;
    assert!(found.is_empty(), "axe at 768 px: {found:#?}");
    s.exec("document.querySelector('#recordings canvas').scrollIntoView(); return 0;")
        .await;
    s.screenshot(&shots.join("7-agent-768px.png")).await;
    s.resize(1280, 1000).await;
}

/// Opens a dispute from the session's list of calls, then finds the first
/// one by its ticket.
async fn open_from_session_and_search(s: &Session<'_>, session: &str, shots: &Path) {
    s.click("#open-dispute summary").await;
    s.type_into("#open-session", session).await;
    s.click("#list-calls").await;
    s.wait_until("document.querySelectorAll('#session-calls tbody input.pick').length === 1")
        .await;
    let text = s
        .exec("return document.getElementById('session-calls').innerText;")
        .await;
    let digits = CUSTOMER.trim_start_matches('+');
    assert!(!text.to_string().contains(digits), "no real number: {text}");
    s.click("#session-calls tbody input.pick").await;
    s.type_into("#open-ticket", "CS-88").await;
    s.type_into("#open-reason", "price").await;
    s.click("#open-submit").await;
    s.wait_until("document.getElementById('d-title').textContent.includes('CS-88')")
        .await;
    s.wait_until("document.querySelectorAll('#disputes tbody tr').length === 2")
        .await;
    s.type_into("#search-ticket", "cs-77").await;
    s.click("#search").await;
    s.wait_until(
        "document.querySelectorAll('#disputes tbody tr').length === 1 && \
         document.querySelector('#disputes tbody tr').dataset.ticket === 'CS-77'",
    )
    .await;
    s.screenshot(&shots.join("8-agent-search.png")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_and_supervisor_work_a_call_in_the_page() {
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
    let agent = driver.session_in("agent", "ko-KR").await;
    let boss = driver.session("boss").await;

    // The agent's browser speaks Korean: so does the page.
    agent.goto(&base).await;
    agent
        .wait_until("document.body.dataset.ready === 'true'")
        .await;
    assert_eq!(
        agent.exec("return document.documentElement.lang;").await,
        "ko"
    );
    assert_eq!(
        text_of(&agent, "#signin").await,
        message("ko", "signin.submit")
    );
    agent
        .screenshot(&shots.join("1-agent-korean-signin.png"))
        .await;

    // The support user asks for access.
    sign_in(&agent, &base, &agent_token).await;
    assert_eq!(text_of(&agent, "#me-role").await, "support");
    assert_eq!(
        text_of(&agent, "#disputes-title").await,
        message("ko", "disputes.title")
    );
    open_first_dispute(&agent).await;
    agent
        .wait_until("!document.getElementById('request-grant').hidden")
        .await;
    agent.click("#request-grant").await;
    agent
        .wait_until("document.querySelector('#grants tbody tr[data-status=pending]') !== null")
        .await;
    let status = text_of(&agent, "#grants tbody tr td:nth-child(3)").await;
    assert_eq!(status, message("ko", "grant.pending"));
    agent.screenshot(&shots.join("2-agent-requested.png")).await;
    let players = agent.exec("return document.querySelectorAll('#recordings audio').length;");
    assert_eq!(players.await, 0, "no player before approval");

    // The supervisor, in another (English) browser, approves.
    sign_in(&boss, &base, &boss_token).await;
    assert_eq!(text_of(&boss, "#disputes-title").await, "Disputes");
    open_first_dispute(&boss).await;
    boss.click("#grants button.approve").await;
    boss.wait_until("document.querySelector('#grants tbody tr[data-status=approved]') !== null")
        .await;
    boss.screenshot(&shots.join("3-boss-approved.png")).await;

    // The support user has the player: the waveform, drawn.
    open_first_dispute(&agent).await;
    agent
        .wait_until("document.querySelector('#recordings canvas.wave[data-drawn=true]') !== null")
        .await;
    let duration = audio_duration(&agent).await;
    let duration_ms = duration * 1000.0;
    eprintln!("audio element: {duration_ms:.1} ms; call (answer to end): {call_ms} ms");
    assert!(
        (duration_ms - call_ms).abs() <= 100.0,
        "the player says {duration_ms} ms, the call lasted {call_ms} ms"
    );
    check_waveform(&base, &agent_token, &rec).await;
    check_canvas(&agent).await;
    agent
        .exec("document.querySelector('#recordings .player').scrollIntoView(); return 0;")
        .await;
    click_seeks(&agent, duration).await;
    agent.screenshot(&shots.join("4-agent-waveform.png")).await;
    let at = current_time(&agent).await;
    assert!((at - duration / 4.0).abs() < 0.2, "{at}");
    check_shortcuts(&agent, &shots).await;
    check_accessibility(&agent, &shots).await;

    // The viewer switches to English.
    agent.click("#lang option[value=en]").await;
    agent
        .wait_until("document.documentElement.lang === 'en' && document.getElementById('d-title').textContent.startsWith('Dispute')")
        .await;
    open_from_session_and_search(&agent, &t.session.id, &shots).await;

    // The supervisor sees who listened.
    open_first_dispute(&boss).await;
    boss.wait_until("document.querySelector('.listeners').innerText.includes('agent')")
        .await;
    boss.exec("document.querySelector('.listeners').scrollIntoView(); return 0;")
        .await;
    boss.screenshot(&shots.join("9-boss-sees-listener.png"))
        .await;

    for action in ["recording.play", "recording.waveform"] {
        let events = t.store.audit_events_on(action, &rec).await.unwrap();
        assert!(!events.is_empty(), "{action} is audited");
    }
    for name in [
        "1-agent-korean-signin.png",
        "2-agent-requested.png",
        "3-boss-approved.png",
        "4-agent-waveform.png",
        "5-agent-caller-only.png",
        "6-agent-help.png",
        "7-agent-768px.png",
        "8-agent-search.png",
        "9-boss-sees-listener.png",
    ] {
        let len = std::fs::metadata(shots.join(name)).unwrap().len();
        assert!(len > 1000, "{name} is {len} bytes");
    }
    eprintln!("screenshots in {}", shots.display());
    agent.close().await;
    boss.close().await;
    t.stop().await;
}
