//! Session timers (RFC 4028) on each leg, and the in-dialog probe, with
//! simulated time.

use std::time::Duration;

use rsip::{Method, Request};

use super::message::header_value;
use super::test_support::*;
use super::{Action, CallEvent, CallResult, DialogTimers, HangupSide, Leg};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn failed() -> CallEvent {
    CallEvent::Ended {
        result: CallResult::Failed,
        hangup: Some(HangupSide::System),
        status: 200,
    }
}

/// A call answered by a callee agreeing to `callee_timer` (the 2xx's
/// extra headers), the caller's ACK in.
fn answered_with(
    caller: &Request,
    cfg: super::CallConfig,
    callee_timer: &str,
) -> (Harness, Vec<Action>) {
    let (mut h, _) = Harness::with(caller, cfg);
    let invite = h.b_invite.clone();
    let extra = format!("{CALLEE_EXTRA}{callee_timer}");
    let answer = h.b_answer(&invite, 200, &extra, Some(B_SDP));
    let ack = h.a_request("ACK", 10, None);
    h.caller_sends(ack);
    assert!(h.drain().is_empty());
    (h, answer)
}

/// Moves time to `at` after the start and fires the call's timers.
fn at(h: &mut Harness, start: std::time::Instant, secs: u64) -> Vec<Action> {
    h.now = start + SECS(secs);
    h.call.handle_timeout(h.now);
    h.drain()
}

fn methods(actions: &[Action], leg: Leg) -> Vec<Method> {
    sent(actions, leg).iter().map(|r| r.method).collect()
}

/// Ends the call whose BYEs went out in `actions`; returns the events.
fn finish_byes(h: &mut Harness, actions: &[Action]) -> Vec<CallEvent> {
    let bye_a = sent(actions, Leg::A)
        .into_iter()
        .find(|r| r.method == Method::Bye)
        .cloned();
    let bye_b = sent(actions, Leg::B)
        .into_iter()
        .find(|r| r.method == Method::Bye)
        .cloned();
    let (bye_a, bye_b) = (
        bye_a.expect("BYE to the caller"),
        bye_b.expect("BYE to the callee"),
    );
    let mut done = h.a_answer(&bye_a, 200, None);
    done.extend(h.b_answer(&bye_b, 200, "", None));
    events(&done)
}

#[test]
fn both_legs_negotiate_their_own_timer() {
    let (h, answer) = answered_with(&a_invite(), cfg(), "Session-Expires: 120;refresher=uac\r\n");
    let b = &h.b_invite.headers;
    assert_eq!(header_value(b, "Supported").as_deref(), Some("timer"));
    assert_eq!(
        header_value(b, "Session-Expires").as_deref(),
        Some("1800;refresher=uac")
    );
    assert_eq!(header_value(b, "Min-SE").as_deref(), Some("90"));
    let ok = responses(&answer, Leg::A)[0];
    // The caller said `Supported: timer` and asked nothing: we refresh it.
    assert_eq!(
        header_value(&ok.headers, "Session-Expires").as_deref(),
        Some("1800;refresher=uas")
    );
    assert_eq!(header_value(&ok.headers, "Require"), None);
    // B refreshes at 60 s, A at 900 s.
    assert_eq!(h.call.poll_timeout(), Some(h.now + SECS(60)));
}

#[test]
fn refreshes_at_half_the_interval_with_the_same_sdp() {
    let (mut h, _) = answered_with(&a_invite(), cfg(), "Session-Expires: 120;refresher=uac\r\n");
    let start = h.now;
    let first_sdp = h.b_invite.body.clone();
    let mut due = 60;
    for _ in 0..2 {
        assert!(at(&mut h, start, due - 1).is_empty());
        let actions = at(&mut h, start, due);
        let refresh = sent(&actions, Leg::B);
        assert_eq!(refresh.len(), 1, "{actions:?}");
        let refresh = refresh[0].clone();
        assert_eq!(refresh.method, Method::Invite);
        assert_eq!(
            refresh.body, first_sdp,
            "the refresh re-offers the same SDP"
        );
        assert_eq!(
            header_value(&refresh.headers, "Session-Expires").as_deref(),
            Some("120;refresher=uac")
        );
        assert!(text(refresh.clone()).contains(";tag=btag-callee"));
        assert!(
            sent(&actions, Leg::A).is_empty(),
            "nothing reaches the caller"
        );
        // Nothing fires while the refresh is in flight.
        assert!(at(&mut h, start, due + 1).is_empty());
        let extra = "Session-Expires: 120;refresher=uac\r\n";
        let answer = h.b_answer(&refresh, 200, extra, Some(B_SDP));
        assert_eq!(methods(&answer, Leg::B), vec![Method::Ack]);
        assert!(responses(&answer, Leg::A).is_empty());
        due += 61;
        assert_eq!(h.call.poll_timeout(), Some(start + SECS(due)));
    }
    assert!(!h.call.is_finished());
}

#[test]
fn refresh_refused_ends_both_legs() {
    let (mut h, _) = answered_with(&a_invite(), cfg(), "Session-Expires: 90;refresher=uac\r\n");
    let start = h.now;
    let actions = at(&mut h, start, 45);
    let refresh = sent(&actions, Leg::B)[0].clone();
    let actions = h.b_answer(&refresh, 500, "", None);
    assert_eq!(methods(&actions, Leg::A), vec![Method::Bye]);
    assert_eq!(methods(&actions, Leg::B), vec![Method::Bye]);
    assert_eq!(finish_byes(&mut h, &actions), vec![failed()]);
    assert_eq!(h.call.end_reason(), Some("session-refresh-failed"));
}

#[test]
fn refresh_timeout_ends_both_legs() {
    let (mut h, _) = answered_with(&a_invite(), cfg(), "Session-Expires: 90;refresher=uac\r\n");
    let start = h.now;
    at(&mut h, start, 45);
    h.call
        .handle_transaction_timeout(h.now, Leg::B, Method::Invite);
    let actions = h.drain();
    assert_eq!(methods(&actions, Leg::A), vec![Method::Bye]);
    assert_eq!(methods(&actions, Leg::B), vec![Method::Bye]);
    assert_eq!(finish_byes(&mut h, &actions), vec![failed()]);
}

#[test]
fn refresh_answered_422_is_retried_with_the_larger_interval() {
    let (mut h, _) = answered_with(&a_invite(), cfg(), "Session-Expires: 90;refresher=uac\r\n");
    let start = h.now;
    let refresh = sent(&at(&mut h, start, 45), Leg::B)[0].clone();
    let actions = h.b_answer(&refresh, 422, "Min-SE: 600\r\n", None);
    let retry = sent(&actions, Leg::B);
    assert_eq!(retry.len(), 1);
    assert_eq!(
        header_value(&retry[0].headers, "Session-Expires").as_deref(),
        Some("600;refresher=uac")
    );
    assert_ne!(cseq_of(retry[0]), cseq_of(&refresh));
    assert!(!h.call.is_finished() && sent(&actions, Leg::A).is_empty());
}

#[test]
fn callee_refresher_that_goes_quiet_is_hung_up() {
    let (mut h, _) = answered_with(&a_invite(), cfg(), "Session-Expires: 90;refresher=uas\r\n");
    let start = h.now;
    // Given up at 90 - min(32, 30) = 60 s, unless refreshed.
    assert_eq!(h.call.poll_timeout(), Some(start + SECS(60)));
    h.now = start + SECS(40);
    let reinvite = h.b_request("INVITE", 2, Some(B_SDP));
    let txn = h.callee_sends(reinvite);
    let to_a = sent(&h.drain(), Leg::A)[0].clone();
    let answer = h.a_answer(&to_a, 200, Some(A_SDP));
    assert_eq!(answers_to(&answer, txn), vec![200]);
    assert_eq!(h.call.poll_timeout(), Some(start + SECS(100)));
    assert!(at(&mut h, start, 99).is_empty());
    let actions = at(&mut h, start, 100);
    assert_eq!(methods(&actions, Leg::A), vec![Method::Bye]);
    assert_eq!(methods(&actions, Leg::B), vec![Method::Bye]);
    assert_eq!(finish_byes(&mut h, &actions), vec![failed()]);
    assert_eq!(h.call.end_reason(), Some("session-expired"));
}

#[test]
fn caller_refresher_gets_require_and_its_refresh_answered_with_timer() {
    let caller = text(a_invite()).replace(
        "Supported: 100rel, timer\r\n",
        "Supported: timer\r\nSession-Expires: 600;refresher=uac\r\nMin-SE: 120\r\n",
    );
    let (mut h, answer) = answered_with(&request(&caller), cfg(), "");
    let ok = responses(&answer, Leg::A)[0];
    assert_eq!(
        header_value(&ok.headers, "Require").as_deref(),
        Some("timer")
    );
    assert_eq!(
        header_value(&ok.headers, "Session-Expires").as_deref(),
        Some("600;refresher=uac")
    );
    let tail = format!(
        "Session-Expires: 600;refresher=uac\r\n{}",
        body_text(Some(A_SDP))
    );
    let refresh = h.a_request_with("INVITE", 11, &tail);
    let txn = h.caller_sends(refresh);
    let to_b = sent(&h.drain(), Leg::B)[0].clone();
    let answer = h.b_answer(&to_b, 200, CALLEE_EXTRA, Some(B_SDP));
    let ok = responses(&answer, Leg::A);
    assert_eq!(answers_to(&answer, txn), vec![200]);
    assert_eq!(
        header_value(&ok[0].headers, "Session-Expires").as_deref(),
        Some("600;refresher=uac")
    );
}

#[test]
fn b_invite_answered_422_is_sent_again_with_the_callee_min_se() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    let actions = h.b_answer(&invite, 422, "Min-SE: 3600\r\n", None);
    assert!(
        responses(&actions, Leg::A).is_empty(),
        "the caller sees no 422"
    );
    let retry = sent(&actions, Leg::B)[0].clone();
    assert_eq!(retry.method, Method::Invite);
    assert_eq!(cseq_of(&retry), "2 INVITE");
    assert_eq!(retry.body, invite.body);
    assert_eq!(
        header_value(&retry.headers, "Session-Expires").as_deref(),
        Some("3600;refresher=uac")
    );
    assert_eq!(
        header_value(&retry.headers, "Min-SE").as_deref(),
        Some("3600")
    );
    let answer = h.b_answer(&retry, 200, CALLEE_EXTRA, Some(B_SDP));
    let acks = sent(&answer, Leg::B);
    assert_eq!(cseq_of(acks[0]), "2 ACK");
    assert_eq!(answers_to(&answer, A_INVITE_TXN), vec![200]);
    // A second 422 with no larger Min-SE is the caller's failure.
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    let actions = h.b_answer(&invite, 422, "Min-SE: 90\r\n", None);
    assert!(sent(&actions, Leg::B).is_empty());
    assert_eq!(answers_to(&actions, A_INVITE_TXN), vec![502]);
}

fn probing() -> super::CallConfig {
    let mut c = cfg();
    c.dialog_timers = DialogTimers {
        probe_interval: SECS(30),
        ..DialogTimers::default()
    };
    c
}

fn without_timer() -> Request {
    request(&text(a_invite()).replace("Supported: 100rel, timer\r\n", ""))
}

#[test]
fn probe_without_timer_and_481_ends_the_call() {
    let (mut h, answer) = answered_with(&without_timer(), probing(), "");
    assert_eq!(
        header_value(&responses(&answer, Leg::A)[0].headers, "Session-Expires"),
        None
    );
    let start = h.now;
    let actions = at(&mut h, start, 30);
    assert_eq!(methods(&actions, Leg::A), vec![Method::Options]);
    assert_eq!(methods(&actions, Leg::B), vec![Method::Options]);
    let (to_a, to_b) = (
        sent(&actions, Leg::A)[0].clone(),
        sent(&actions, Leg::B)[0].clone(),
    );
    // A 405 or 200 shows the dialog is there: probe again later.
    assert!(h.a_answer(&to_a, 405, None).is_empty());
    assert_eq!(h.call.poll_timeout(), Some(start + SECS(60)));
    let actions = h.b_answer(&to_b, 481, "", None);
    assert_eq!(methods(&actions, Leg::A), vec![Method::Bye]);
    assert_eq!(methods(&actions, Leg::B), vec![Method::Bye]);
    assert_eq!(finish_byes(&mut h, &actions), vec![failed()]);
    assert_eq!(h.call.end_reason(), Some("dialog-probe-failed"));
}

#[test]
fn probe_timeout_ends_the_call() {
    let (mut h, _) = answered_with(&without_timer(), probing(), "");
    let start = h.now;
    at(&mut h, start, 30);
    h.call
        .handle_transaction_timeout(h.now, Leg::A, Method::Options);
    let actions = h.drain();
    assert_eq!(methods(&actions, Leg::A), vec![Method::Bye]);
    assert_eq!(methods(&actions, Leg::B), vec![Method::Bye]);
}

#[test]
fn no_probe_when_off_and_no_timer() {
    let (h, _) = answered_with(&without_timer(), cfg(), "");
    // Only the maximum duration is left.
    assert_eq!(h.call.poll_timeout(), Some(h.now + SECS(3600)));
}

#[test]
fn a_reinvite_crossing_our_refresh_gets_491() {
    let (mut h, _) = answered_with(&a_invite(), cfg(), "Session-Expires: 90;refresher=uac\r\n");
    let start = h.now;
    assert_eq!(
        methods(&at(&mut h, start, 45), Leg::B),
        vec![Method::Invite]
    );
    let reinvite = h.b_request("INVITE", 2, Some(B_SDP));
    let txn = h.callee_sends(reinvite);
    let actions = h.drain();
    assert_eq!(answers_to(&actions, txn), vec![491]);
    assert!(sent(&actions, Leg::A).is_empty());
}

#[test]
fn a_callee_asking_for_a_tiny_interval_is_refreshed_at_our_floor() {
    let (h, _) = answered_with(&a_invite(), cfg(), "Session-Expires: 1;refresher=uac\r\n");
    assert_eq!(h.call.poll_timeout(), Some(h.now + SECS(45)));
}
