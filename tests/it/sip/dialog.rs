//! Delayed offer and session timers end to end with SIPp: an offerless
//! INVITE bridged with media and a two-channel recording, a session
//! refreshed on both legs, a refused refresh ending the call on both
//! sides, and a dead dialog found by the in-dialog OPTIONS probe.
//!
//! The session-timer tests use a 6 s session interval, below the RFC 4028
//! floor of 90 s, with `min_session_expires = "2s"`: ansim accepts it (and
//! warns that it is for tests only), so a refresh happens every 3 s
//! instead of every 45 s.

use super::recording::{
    audible_ms, dominated_by, export, finished_recording, read_wav, tone, tone_scenario,
};
use super::*;

const TONE_MS: u64 = 3000;
const SHORT_TIMERS: &str = "session_expires = \"6s\"\nmin_session_expires = \"2s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_offer_call_has_media_both_ways_and_a_two_channel_recording() {
    let t = SipTest::start("127.0.0.1/32").await;
    let (a_tone, b_tone) = (tone(440.0, TONE_MS), tone(880.0, TONE_MS));
    let (a_file, b_file) = (t.dir.path().join("a.ulaw"), t.dir.path().join("b.ulaw"));
    std::fs::write(&a_file, &a_tone).unwrap();
    std::fs::write(&b_file, &b_tone).unwrap();
    let uas_file = tone_scenario(t.dir.path(), "uas_delayed_tone.xml", &b_file, 0);
    let uac_file = tone_scenario(t.dir.path(), "uac_delayed_tone.xml", &a_file, TONE_MS + 300);
    let callee = uas(&t, &uas_file, "uas");
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let caller = uac(&t, &uac_file, CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");

    // The callee got no SDP in the INVITE and ours in the ACK; the caller
    // got ours in the 200.
    let invite = received(&uas_log, "INVITE");
    assert!(!invite.contains("m=audio"), "{invite}");
    let ack = received(&uas_log, "ACK");
    let (addr, port) = sdp_media(&ack);
    assert_eq!(addr, "127.0.0.1");
    assert!((t.media_ports.0..=t.media_ports.1).contains(&port), "{ack}");
    assert!(!ack.contains("caller") && !ack.contains(CUSTOMER), "{ack}");
    let ok = received(&uac_log, "SIP/2.0 200");
    let (_, port) = sdp_media(&ok);
    assert!((t.media_ports.0..=t.media_ports.1).contains(&port), "{ok}");
    assert!(!ok.contains("callee") && !ok.contains("CalleePBX"), "{ok}");

    let call = calls_of(&t).await.remove(0);
    assert_eq!(call.result.map(|r| r.as_str()), Some("answered"));
    let rec = finished_recording(&t, &call.id).await;
    assert_eq!(rec.state.as_str(), "complete");
    let out = t.dir.path().join("call.wav");
    let (code, stderr) = export(&t, &call.id, &out);
    assert_eq!(code, Some(0), "{stderr}");
    let (left, right) = read_wav(&out);
    assert!(
        dominated_by(&left, 440.0, 880.0),
        "left is not the caller's 440 Hz"
    );
    assert!(
        dominated_by(&right, 880.0, 440.0),
        "right is not the callee's 880 Hz"
    );
    for (side, ch) in [("caller", &left), ("callee", &right)] {
        let heard = audible_ms(ch);
        assert!(
            heard.abs_diff(TONE_MS) <= 150,
            "{side}: {heard} ms of audio, sent {TONE_MS} ms"
        );
    }
    t.stop().await;
}

/// `uac_timer.xml` holding `hold_ms` after its second refresh.
fn timer_caller(dir: &Path, hold_ms: u32) -> PathBuf {
    let text = std::fs::read_to_string(scenario("uac_timer.xml"))
        .unwrap()
        .replace("HOLD_MS", &hold_ms.to_string());
    let path = dir.join("uac_timer.xml");
    std::fs::write(&path, text).unwrap();
    path
}

fn with_interval(sipp_args: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = sipp_args.iter().map(|a| a.to_string()).collect();
    args.extend(["-key", "interval", "6", "-timeout", "30s"].map(String::from));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timer_call_is_refreshed_twice_on_each_leg() {
    let t = SipTest::start_with("127.0.0.1/32", SHORT_TIMERS).await;
    let mp = free_udp_port().to_string();
    let callee_args = with_interval(&["-mp", &mp]);
    let callee_args: Vec<&str> = callee_args.iter().map(String::as_str).collect();
    let callee = Sipp::spawn(
        t.dir.path(),
        &scenario("uas_timer.xml"),
        t.uas_port,
        &callee_args,
        "uas",
    );
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let target = t.sip.to_string();
    let mp = free_udp_port().to_string();
    let caller_args = with_interval(&[
        "-s", &proxy, "-key", "caller", CUSTOMER, "-mp", &mp, &target,
    ]);
    let caller_args: Vec<&str> = caller_args.iter().map(String::as_str).collect();
    let file = timer_caller(t.dir.path(), 1500);
    let caller = Sipp::spawn(t.dir.path(), &file, free_udp_port(), &caller_args, "uac").movable();
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");

    let invite = received(&uas_log, "INVITE");
    assert_eq!(header(&invite, "Session-Expires"), "6;refresher=uac");
    assert_eq!(header(&invite, "Min-SE"), "2");
    let ok = received(&uac_log, "SIP/2.0 200");
    assert_eq!(header(&ok, "Session-Expires"), "6;refresher=uas");
    for (side, log) in [("caller", &uac_log), ("callee", &uas_log)] {
        let refreshes: Vec<String> = messages(log, "received")
            .into_iter()
            .filter(|m| m.starts_with("INVITE"))
            .skip(usize::from(side == "callee"))
            .collect();
        assert_eq!(refreshes.len(), 2, "{side} refreshes:\n{log}");
        for r in &refreshes {
            assert_eq!(header(r, "Session-Expires"), "6;refresher=uac", "{r}");
            let (addr, port) = sdp_media(r);
            assert_eq!(addr, "127.0.0.1");
            assert!((t.media_ports.0..=t.media_ports.1).contains(&port), "{r}");
        }
    }
    let calls = calls_of(&t).await;
    let c = &calls[0];
    assert_eq!(
        (
            c.result.map(|r| r.as_str()),
            c.hangup_side.map(|h| h.as_str())
        ),
        (Some("answered"), Some("caller"))
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_refresh_hangs_up_both_sides() {
    let t = SipTest::start_with("127.0.0.1/32", SHORT_TIMERS).await;
    let mp = free_udp_port().to_string();
    let callee_args = with_interval(&["-mp", &mp]);
    let callee_args: Vec<&str> = callee_args.iter().map(String::as_str).collect();
    let callee = Sipp::spawn(
        t.dir.path(),
        &scenario("uas_timer_refuse.xml"),
        t.uas_port,
        &callee_args,
        "uas",
    );
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    // The caller knows no session timers: it only gets ansim's BYE.
    let caller = uac(&t, &scenario("uac_hungup.xml"), CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    let bye = received(&uac_log, "BYE");
    assert!(!bye.contains("callee") && !bye.contains(MASTER), "{bye}");
    let calls = calls_of(&t).await;
    let c = &calls[0];
    assert_eq!(
        (
            c.result.map(|r| r.as_str()),
            c.hangup_side.map(|h| h.as_str())
        ),
        (Some("failed"), Some("system"))
    );
    assert_eq!(c.reason.as_deref(), Some("session-refresh-failed"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_probe_answered_481_hangs_up_both_sides() {
    let t = SipTest::start_with("127.0.0.1/32", "dialog_probe_interval = \"1s\"\n").await;
    let callee = uas(&t, &scenario("uas_probe_481.xml"), "uas");
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    // Neither side knows session timers: both legs are probed.
    let caller = uac(&t, &scenario("uac_probed.xml"), CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    let probe = received(&uac_log, "OPTIONS");
    assert!(
        !probe.contains("callee") && !probe.contains(MASTER),
        "{probe}"
    );
    let calls = calls_of(&t).await;
    let c = &calls[0];
    assert_eq!(
        (
            c.result.map(|r| r.as_str()),
            c.hangup_side.map(|h| h.as_str())
        ),
        (Some("failed"), Some("system"))
    );
    assert_eq!(c.reason.as_deref(), Some("dialog-probe-failed"));
    t.stop().await;
}
