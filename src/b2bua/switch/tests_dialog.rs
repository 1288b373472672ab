//! Delayed offer and session timers through the switch: bytes in, bytes
//! out, time simulated.

use std::time::Duration;

use rsip::Method;

use super::SwitchEvent;
use super::test_support::*;
use crate::b2bua::Leg;

#[test]
fn too_brief_session_interval_is_422_before_any_lookup() {
    let mut rig = Rig::new();
    let invite = default_invite().replace(
        "Supported: 100rel, timer\r\n",
        "Supported: timer\r\nSession-Expires: 30\r\n",
    );
    rig.feed(&carrier(), &invite);
    let answers = rig.sent_to(&carrier());
    let last = answers.last().expect("an answer");
    assert_eq!(codes(&answers).last(), Some(&422));
    assert_eq!(header(last, "Min-SE"), "90");
    assert!(
        !rig.take_events()
            .iter()
            .any(|e| matches!(e, SwitchEvent::RouteLookup { .. }))
    );
    assert_eq!(rig.sw.stats().calls_refused, 1);
}

#[test]
fn delayed_offer_through_the_switch() {
    let mut rig = Rig::new();
    let offerless = default_invite();
    let head = offerless.split("Content-Type:").next().unwrap_or_default();
    let (_, b_invite) = rig.routed_call(&carrier(), &format!("{head}Content-Length: 0\r\n\r\n"));
    assert!(b_invite.body.is_empty());
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    assert!(
        rig.sent_to_trunk().is_empty(),
        "the ACK waits for the caller's"
    );
    let mut caller = Caller::default_one();
    let to_caller = rig.sent_to(&carrier());
    assert!(to_caller[0].contains("m=audio 30000 "), "{}", to_caller[0]);
    rig.sent
        .extend(to_caller.into_iter().map(|m| (carrier(), m)));
    assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![200]);
    rig.events.clear();
    let answer = caller_sdp("a=sendrecv");
    rig.feed(
        &carrier(),
        &caller.request("ACK", 10, "z9hG4bK-ack10", Some(&answer)),
    );
    let acks = rig.sent_to_trunk();
    assert_eq!(methods(&acks), vec![Method::Ack]);
    assert!(String::from_utf8_lossy(&acks[0].body).contains("m=audio 30002 "));
    assert!(
        rig.take_events()
            .iter()
            .any(|e| matches!(e, SwitchEvent::Media { leg: Leg::A, .. }))
    );
    // The 2xx retransmission stopped with the ACK.
    rig.advance(Duration::from_secs(5));
    assert!(rig.sent_to(&carrier()).is_empty());
}

#[test]
fn session_refresh_goes_out_at_half_the_interval_and_a_lost_one_ends_the_call() {
    let mut rig = Rig::new();
    let (call, b_invite) = rig.routed_call(&carrier(), &default_invite());
    let extra = format!("{CALLEE_EXTRA}Session-Expires: 120;refresher=uac\r\n");
    rig.callee_answers(&b_invite, 200, &extra, Some(B_SDP));
    let mut caller = Caller::default_one();
    rig.codes_to(&carrier(), &mut caller);
    rig.feed(
        &carrier(),
        &caller.request("ACK", 10, "z9hG4bK-ack10", None),
    );
    rig.sent.clear();
    rig.advance(Duration::from_millis(59_999));
    assert!(rig.sent_to_trunk().is_empty());
    rig.advance(Duration::from_millis(1));
    let refresh = rig.sent_to_trunk();
    assert_eq!(methods(&refresh), vec![Method::Invite]);
    assert_eq!(refresh[0].body, b_invite.body);
    // Unanswered: retransmitted, then Timer B (64 * T1) ends the call.
    rig.advance(Duration::from_secs(32));
    let to_trunk = rig.sent_to_trunk();
    assert_eq!(methods(&to_trunk).last(), Some(&Method::Bye));
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(
        request(to_caller.last().expect("a BYE")).method,
        Method::Bye
    );
    rig.callee_answers(to_trunk.last().expect("a BYE"), 200, "", None);
    rig.advance(Duration::from_secs(33));
    assert!(rig.take_events().iter().any(|e| matches!(
        e,
        SwitchEvent::Ended { call: c } if *c == call
    )));
}
