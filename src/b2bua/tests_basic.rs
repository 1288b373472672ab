//! Call setup and teardown scenarios.

use std::time::Duration;

use rsip::Method;

use super::test_support::*;
use super::{Action, CallEvent, CallResult, HangupSide, Leg};

fn ended(result: CallResult, hangup: Option<HangupSide>, status: u16) -> CallEvent {
    CallEvent::Ended {
        result,
        hangup,
        status,
    }
}

#[test]
fn basic_call_caller_hangs_up() {
    let (mut h, actions) = Harness::new();
    let invite = h.b_invite.clone();
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.uri.to_string(), "sip:+821099990000@192.0.2.50:5060");
    let wire = text(invite.clone());
    assert!(wire.contains("From: <sip:+827070001111@ansim.example>;tag="));
    assert!(wire.contains("To: <sip:+821099990000@192.0.2.50:5060>\r\n"));
    assert!(wire.contains("Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK"));
    assert!(wire.contains("Contact: <sip:ansim@198.51.100.10:5060>"));
    assert!(wire.contains("CSeq: 1 INVITE") && wire.contains("Max-Forwards: 70"));
    assert!(actions.contains(&Action::Media {
        leg: Leg::A,
        remote: "10.9.8.7:40000".parse().unwrap(),
        direction: super::MediaDirection::SendRecv,
    }));

    let ringing = h.b_answer(&invite, 180, CALLEE_EXTRA, None);
    assert_eq!(codes(&responses(&ringing, Leg::A)), vec![180]);
    assert_eq!(answers_to(&ringing, A_INVITE_TXN), vec![180]);
    assert_eq!(events(&ringing), vec![CallEvent::Ringing]);

    let answer = h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    let acks = sent(&answer, Leg::B);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].method, Method::Ack);
    assert_eq!(acks[0].uri.to_string(), "sip:+821099990000@10.1.1.1:5060");
    assert_eq!(cseq_of(acks[0]), "1 ACK");
    let ok = responses(&answer, Leg::A);
    assert_eq!(codes(&ok), vec![200]);
    assert_eq!(answers_to(&answer, A_INVITE_TXN), vec![200]);
    let ok_wire = text(ok[0].clone());
    assert!(ok_wire.contains(&format!(";tag={}", h.a_tag())));
    assert!(ok_wire.contains("Record-Route: <sip:10.9.8.7:5099;lr>"));
    assert_eq!(events(&answer), vec![CallEvent::Answered]);
    assert!(answer.contains(&Action::Media {
        leg: Leg::B,
        remote: "10.1.1.1:50000".parse().unwrap(),
        direction: super::MediaDirection::SendRecv,
    }));

    let ack = h.a_request("ACK", 10, None);
    h.caller_sends(ack);
    assert!(h.drain().is_empty());

    let bye = h.a_request("BYE", 11, None);
    let bye_txn = h.caller_sends(bye);
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![200]);
    assert_eq!(answers_to(&actions, bye_txn), vec![200]);
    let byes = sent(&actions, Leg::B);
    assert_eq!(byes[0].method, Method::Bye);
    assert_eq!(byes[0].uri.to_string(), "sip:+821099990000@10.1.1.1:5060");
    assert_eq!(cseq_of(byes[0]), "2 BYE");
    let bye_wire = text(byes[0].clone());
    assert!(bye_wire.contains("Route: <sip:10.1.1.1;lr>"));
    assert!(bye_wire.contains(";tag=btag-callee"));
    assert!(!h.call.is_finished());

    let bye = byes[0].clone();
    let done = h.b_answer(&bye, 200, "", None);
    assert_eq!(
        events(&done),
        vec![ended(CallResult::Answered, Some(HangupSide::Caller), 200)]
    );
    assert!(h.call.is_finished());
}

#[test]
fn callee_hangs_up() {
    let mut h = Harness::answered();
    let bye = h.b_request("BYE", 5, None);
    let bye_txn = h.callee_sends(bye);
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::B)), vec![200]);
    assert_eq!(answers_to(&actions, bye_txn), vec![200]);
    let byes = sent(&actions, Leg::A);
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].uri.to_string(), "sip:+821012345678@10.9.8.7:5099");
    let wire = text(byes[0].clone());
    assert!(wire.contains("Route: <sip:10.9.8.7:5099;lr>"));
    assert!(wire.contains("To: \"Kim Minsu\" <sip:+821012345678@10.9.8.7>;tag=atag-secret"));
    assert!(wire.contains("Call-ID: aleg-callid@10.9.8.7") && wire.contains("CSeq: 1 BYE"));
    let bye = byes[0].clone();
    let done = h.a_answer(&bye, 200, None);
    assert_eq!(
        events(&done),
        vec![ended(CallResult::Answered, Some(HangupSide::Callee), 200)]
    );
    // A late request is refused.
    let info = h.a_request("INFO", 12, None);
    h.caller_sends(info);
    assert_eq!(codes(&responses(&h.drain(), Leg::A)), vec![481]);
}

#[test]
fn bye_without_answer_times_out() {
    let mut h = Harness::answered();
    let bye = h.a_request("BYE", 11, None);
    h.caller_sends(bye);
    h.drain();
    h.call
        .handle_transaction_timeout(h.now, Leg::B, Method::Bye);
    assert_eq!(
        events(&h.drain()),
        vec![ended(CallResult::Answered, Some(HangupSide::Caller), 200)]
    );
}

#[test]
fn cancel_before_answer() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    h.b_answer(&invite, 180, "", None);
    let cancel_txn = h.caller_sends(a_cancel());
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![200]);
    assert_eq!(answers_to(&actions, cancel_txn), vec![200]);
    let cancels = sent(&actions, Leg::B);
    assert_eq!(cancels[0].method, Method::Cancel);
    assert_eq!(cseq_of(cancels[0]), "1 CANCEL");
    assert_eq!(cancels[0].uri, invite.uri);
    let branch = |r: &rsip::Request| crate::sip::headers::top_via(&r.headers).map(str::to_owned);
    assert_eq!(branch(cancels[0]), branch(&invite));
    let done = h.b_answer(&invite, 487, "", None);
    assert_eq!(codes(&responses(&done, Leg::A)), vec![487]);
    assert_eq!(answers_to(&done, A_INVITE_TXN), vec![487]);
    assert_eq!(
        events(&done),
        vec![ended(CallResult::Cancelled, Some(HangupSide::Caller), 487)]
    );
}

#[test]
fn cancel_waits_for_a_provisional() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    h.caller_sends(a_cancel());
    assert!(sent(&h.drain(), Leg::B).is_empty());
    let trying = h.b_answer(&invite, 100, "", None);
    assert_eq!(sent(&trying, Leg::B)[0].method, Method::Cancel);
    assert!(responses(&trying, Leg::A).is_empty());
}

#[test]
fn cancel_200_race() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    h.b_answer(&invite, 183, CALLEE_EXTRA, Some(B_SDP));
    h.caller_sends(a_cancel());
    h.drain();
    let race = h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    let to_b = sent(&race, Leg::B);
    let methods: Vec<_> = to_b.iter().map(|r| r.method).collect();
    assert_eq!(methods, vec![Method::Ack, Method::Bye]);
    assert_eq!(codes(&responses(&race, Leg::A)), vec![487]);
    let bye = to_b[1].clone();
    let done = h.b_answer(&bye, 200, "", None);
    assert_eq!(
        events(&done),
        vec![ended(CallResult::Cancelled, Some(HangupSide::Caller), 487)]
    );
    // The CANCEL's own 200 and the B-leg 487 are absorbed silently now.
    let late = h.b_answer(&invite, 487, "", None);
    assert!(late.is_empty());
}

fn rejected(code: u16, extra: &str) -> (u16, Vec<CallEvent>, String) {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    let actions = h.b_answer(&invite, code, extra, None);
    let to_a = responses(&actions, Leg::A);
    assert_eq!(to_a.len(), 1);
    assert!(h.call.is_finished());
    (
        to_a[0].status_code.code(),
        events(&actions),
        text(to_a[0].clone()),
    )
}

#[test]
fn busy_is_486() {
    let (code, events, _) = rejected(486, "");
    assert_eq!(code, 486);
    assert_eq!(
        events,
        vec![ended(CallResult::Busy, Some(HangupSide::Callee), 486)]
    );
}

#[test]
fn server_error_is_502() {
    let (code, events, _) = rejected(503, "Retry-After: 30\r\n");
    assert_eq!(code, 502);
    assert_eq!(
        events,
        vec![ended(CallResult::Failed, Some(HangupSide::Callee), 502)]
    );
}

#[test]
fn redirect_is_480_without_contact() {
    let (code, events, wire) = rejected(302, "Contact: <sip:+821055556666@10.1.1.1>\r\n");
    assert_eq!(code, 480);
    assert_eq!(
        events,
        vec![ended(CallResult::Rejected, Some(HangupSide::Callee), 480)]
    );
    assert!(
        !wire.contains("Contact") && !wire.contains("821055556666") && !wire.contains("10.1.1.1")
    );
}

#[test]
fn no_answer_timeout() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    h.b_answer(&invite, 180, "", None);
    let deadline = h.call.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(60));
    h.call.handle_timeout(deadline - Duration::from_millis(1));
    assert!(h.drain().is_empty());
    h.now = deadline;
    h.call.handle_timeout(deadline);
    let actions = h.drain();
    assert_eq!(sent(&actions, Leg::B)[0].method, Method::Cancel);
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![480]);
    let done = h.b_answer(&invite, 487, "", None);
    assert!(responses(&done, Leg::A).is_empty());
    assert_eq!(
        events(&done),
        vec![ended(CallResult::NoAnswer, Some(HangupSide::System), 480)]
    );
}

#[test]
fn b_invite_timeout_is_408() {
    let (mut h, _) = Harness::new();
    h.call
        .handle_transaction_timeout(h.now, Leg::B, Method::Invite);
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![408]);
    assert_eq!(
        events(&actions),
        vec![ended(CallResult::Timeout, Some(HangupSide::System), 408)]
    );
    assert!(h.call.is_finished() && h.call.poll_timeout().is_none());
}

#[test]
fn max_duration_hangs_up_both() {
    let mut h = Harness::answered();
    let deadline = h.now + Duration::from_secs(3600);
    assert_eq!(h.call.max_duration_at, Some(deadline));
    h.call.handle_timeout(deadline);
    let actions = h.drain();
    let (to_a, to_b) = (sent(&actions, Leg::A), sent(&actions, Leg::B));
    assert_eq!((to_a[0].method, to_b[0].method), (Method::Bye, Method::Bye));
    let (bye_a, bye_b) = (to_a[0].clone(), to_b[0].clone());
    assert!(events(&h.a_answer(&bye_a, 200, None)).is_empty());
    assert_eq!(
        events(&h.b_answer(&bye_b, 481, "", None)),
        vec![ended(CallResult::Answered, Some(HangupSide::System), 200)]
    );
}

#[test]
fn reliable_provisional_is_pracked_and_relayed_unreliably() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    let extra = "Require: 100rel\r\nRSeq: 7\r\nContact: <sip:callee@10.1.1.1:5060>\r\n";
    let actions = h.b_answer(&invite, 183, extra, Some(B_SDP));
    let prack = sent(&actions, Leg::B);
    assert_eq!(prack[0].method, Method::PRack);
    let wire = text(prack[0].clone());
    assert!(wire.contains("RAck: 7 1 INVITE") && wire.contains("CSeq: 2 PRACK"));
    assert!(wire.contains(";tag=btag-callee"));
    let to_a = responses(&actions, Leg::A);
    let relayed = text(to_a[0].clone());
    assert!(!relayed.contains("RSeq") && !relayed.contains("100rel"));
    assert!(relayed.contains("m=audio 30000 "));
    // A retransmission is neither PRACKed nor relayed again.
    assert!(h.b_answer(&invite, 183, extra, Some(B_SDP)).is_empty());
}

#[test]
fn unacked_2xx_hangs_up() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    h.call
        .handle_transaction_timeout(h.now, Leg::A, Method::Invite);
    let actions = h.drain();
    assert_eq!(sent(&actions, Leg::A)[0].method, Method::Bye);
    assert_eq!(sent(&actions, Leg::B)[0].method, Method::Bye);
}

#[test]
fn retransmitted_2xx_is_acked_again() {
    let mut h = Harness::answered();
    let invite = h.b_invite.clone();
    let actions = h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    assert_eq!(actions.len(), 1);
    assert_eq!(sent(&actions, Leg::B)[0].method, Method::Ack);
}

#[test]
fn early_bye_from_caller_cancels() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    h.b_answer(&invite, 180, CALLEE_EXTRA, None);
    let bye = h.a_request("BYE", 11, None);
    let bye_txn = h.caller_sends(bye);
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![200, 487]);
    assert_eq!(answers_to(&actions, bye_txn), vec![200]);
    assert_eq!(answers_to(&actions, A_INVITE_TXN), vec![487]);
    assert_eq!(sent(&actions, Leg::B)[0].method, Method::Cancel);
    let done = h.b_answer(&invite, 487, "", None);
    assert!(responses(&done, Leg::A).is_empty());
    assert_eq!(
        events(&done),
        vec![ended(CallResult::Cancelled, Some(HangupSide::Caller), 487)]
    );
}

#[test]
fn cancel_after_answer_only_gets_200() {
    let mut h = Harness::answered();
    h.caller_sends(a_cancel());
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![200]);
    assert!(sent(&actions, Leg::B).is_empty() && events(&actions).is_empty());
}

#[test]
fn unbounded_timers_never_overflow() {
    // Validation bounds them; a call built with any duration still never
    // panics on `Instant + Duration`.
    let mut cfg = super::test_support::cfg();
    cfg.no_answer_timeout = Duration::MAX;
    cfg.max_duration = Duration::MAX;
    let now = std::time::Instant::now();
    let mut call = super::Call::new(now, A_INVITE_TXN, &a_invite(), routing(), PORTS, cfg).unwrap();
    while call.poll_action().is_some() {}
    call.handle_timeout(now + Duration::from_secs(86_400));
    assert!(!call.is_finished());
}
