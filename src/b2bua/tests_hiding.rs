//! Identity and topology hiding, checked on the serialised bytes.

use rsip::Method;

use super::test_support::*;
use super::{Action, Leg};

/// Everything of the caller that must never reach the callee.
const CALLER_SECRETS: [&str; 17] = [
    "821012345678",
    "aleg-callid",
    "atag-secret",
    "z9hG4bK-aleg",
    "10.9.8.7",
    "40000",
    "40001",
    "5099",
    "Kim",
    "P-Asserted-Identity",
    "Remote-Party-ID",
    "Privacy",
    "Diversion",
    "History-Info",
    "User-Agent",
    "Organization",
    "X-Caller-Real",
];

/// Everything of the callee that must never reach the caller.
const CALLEE_SECRETS: [&str; 10] = [
    "821099990000",
    "10.1.1.1",
    "50000",
    "btag-callee",
    "CalleePBX",
    "Callee Inc",
    "P-Asserted-Identity",
    "Server",
    "RSeq",
    "callee",
];

fn assert_hidden(wire: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!wire.contains(secret), "{secret} leaked:\n{wire}");
    }
}

fn wire_of(actions: &[Action], leg: Leg) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { leg: l, request } if *l == leg => Some(text(request.clone())),
            Action::Respond {
                leg: l, response, ..
            } if *l == leg => Some(text(response.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn b_leg_invite_hides_the_caller() {
    let (h, _) = Harness::new();
    let wire = text(h.b_invite.clone());
    assert_hidden(&wire, &CALLER_SECRETS);
    assert!(wire.contains("\r\nc=IN IP4 203.0.113.5\r\n"), "{wire}");
    assert!(wire.contains("\r\no=ansim "), "{wire}");
    assert!(wire.contains(" IN IP4 203.0.113.5\r\ns=-\r\n"), "{wire}");
    assert!(
        wire.contains("\r\nm=audio 30002 RTP/AVP 0 8 101\r\n"),
        "{wire}"
    );
    assert!(wire.contains("a=rtpmap:101 telephone-event/8000"));
    assert!(wire.contains("Content-Type: application/sdp"));
    assert_ne!(h.call.b_call_id(), h.call.a_call_id());
}

#[test]
fn whole_call_never_leaks_the_caller_to_the_callee() {
    let (mut h, mut all) = Harness::new();
    let invite = h.b_invite.clone();
    all.extend(h.b_answer(&invite, 180, CALLEE_EXTRA, None));
    all.extend(h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP)));
    let ack = h.a_request("ACK", 10, None);
    h.caller_sends(ack);
    let reinvite = h.a_request("INVITE", 11, Some(A_SDP));
    h.caller_sends(reinvite);
    let relayed = h.drain();
    let sent_b = sent(&relayed, Leg::B)[0].clone();
    all.extend(relayed);
    all.extend(h.b_answer(&sent_b, 200, CALLEE_EXTRA, Some(B_SDP)));
    let bye = h.a_request("BYE", 12, None);
    h.caller_sends(bye);
    all.extend(h.drain());
    for wire in wire_of(&all, Leg::B) {
        assert_hidden(&wire, &CALLER_SECRETS);
    }
}

#[test]
fn caller_never_sees_the_callee() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    let mut all = h.b_answer(&invite, 180, CALLEE_EXTRA, None);
    all.extend(h.b_answer(&invite, 183, CALLEE_EXTRA, Some(B_SDP)));
    all.extend(h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP)));
    let ok = responses(&all, Leg::A).last().map(|r| text((*r).clone()));
    let ok = ok.unwrap();
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    assert!(ok.contains("Contact: <sip:ansim@198.51.100.10:5060>"));
    assert!(ok.contains("\r\nc=IN IP4 203.0.113.5\r\n") && ok.contains("\r\nm=audio 30000 "));
    // A re-INVITE and a BYE from the callee reach the caller clean too.
    let hold = B_SDP.replace("a=sendrecv", "a=sendonly");
    let reinvite = h.b_request("INVITE", 3, Some(&hold));
    h.callee_sends(reinvite);
    let relayed = h.drain();
    let to_a = sent(&relayed, Leg::A)[0].clone();
    all.extend(relayed);
    all.extend(h.a_answer(&to_a, 200, Some(A_SDP)));
    let bye = h.b_request("BYE", 4, None);
    h.callee_sends(bye);
    all.extend(h.drain());
    let wires = wire_of(&all, Leg::A);
    assert!(wires.len() >= 6);
    for wire in wires {
        assert_hidden(&wire, &CALLEE_SECRETS);
    }
}

#[test]
fn identity_free_error_responses() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    let extra = "Warning: 399 10.1.1.1 \"callee busy\"\r\nRetry-After: 60\r\n";
    let actions = h.b_answer(&invite, 486, &format!("{CALLEE_EXTRA}{extra}"), None);
    let wire = text(responses(&actions, Leg::A)[0].clone());
    assert_hidden(&wire, &CALLEE_SECRETS);
    assert!(wire.contains("Retry-After: 60"));
    assert!(
        sent(&actions, Leg::B)
            .iter()
            .all(|r| r.method != Method::Ack)
    );
}

#[test]
fn the_b_leg_call_id_belongs_to_the_shard_of_the_call() {
    for index in 0..3 {
        let mut cfg = cfg();
        cfg.shard = super::Shard::new(index, 3);
        let call =
            super::Call::new(h_now(), A_INVITE_TXN, &a_invite(), routing(), PORTS, cfg).unwrap();
        assert_eq!(super::shard_of(call.b_call_id(), 3), index);
    }
}

fn h_now() -> std::time::Instant {
    std::time::Instant::now()
}
