//! Delayed offer: an INVITE without SDP, the offer in the callee's 2xx,
//! the answer in the caller's ACK.

use rsip::{Method, Request};

use super::test_support::*;
use super::{Action, Call, CallEvent, CallResult, HangupSide, Leg};

/// The caller's INVITE without a body.
fn offerless() -> Request {
    let invite = text(a_invite());
    let head = invite.split("Content-Type:").next().unwrap_or_default();
    request(&format!("{head}Content-Length: 0\r\n\r\n"))
}

fn delayed() -> Harness {
    let (h, actions) = Harness::with(&offerless(), cfg());
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Media { .. })),
        "no caller media before its answer: {actions:?}"
    );
    h
}

fn media(actions: &[Action], on: Leg) -> Vec<std::net::SocketAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Media { leg, remote, .. } if *leg == on => Some(*remote),
            _ => None,
        })
        .collect()
}

#[test]
fn offer_in_2xx_answer_in_ack() {
    let mut h = delayed();
    let invite = h.b_invite.clone();
    assert!(invite.body.is_empty());
    assert!(!text(invite.clone()).contains("application/sdp"));

    let answer = h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    // The callee's ACK waits for the caller's answer.
    assert!(sent(&answer, Leg::B).is_empty(), "{answer:?}");
    assert_eq!(
        media(&answer, Leg::B),
        vec!["10.1.1.1:50000".parse().unwrap()]
    );
    let ok = responses(&answer, Leg::A);
    assert_eq!(codes(&ok), vec![200]);
    let offer = String::from_utf8(ok[0].body.clone()).unwrap();
    assert!(offer.contains("c=IN IP4 203.0.113.5\r\n"), "{offer}");
    assert!(offer.contains("m=audio 30000 RTP/AVP 0 101"), "{offer}");
    assert!(
        !offer.contains("10.1.1.1") && !offer.contains("callee"),
        "{offer}"
    );
    assert_eq!(events(&answer), vec![CallEvent::Answered]);

    // A retransmitted 2xx before the caller's ACK gets no ACK yet.
    assert!(sent(&h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP)), Leg::B).is_empty());

    let ack = h.a_request_with("ACK", 10, &body_text(Some(A_SDP)));
    h.caller_sends(ack);
    let actions = h.drain();
    assert_eq!(
        media(&actions, Leg::A),
        vec!["10.9.8.7:40000".parse().unwrap()]
    );
    let acks = sent(&actions, Leg::B);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].method, Method::Ack);
    assert_eq!(cseq_of(acks[0]), "1 ACK");
    let answer = String::from_utf8(acks[0].body.clone()).unwrap();
    assert!(answer.contains("c=IN IP4 203.0.113.5\r\n"), "{answer}");
    assert!(answer.contains("m=audio 30002 "), "{answer}");
    assert!(
        !answer.contains("10.9.8.7") && !answer.contains("+8210"),
        "{answer}"
    );
    assert!(text(acks[0].clone()).contains("Content-Type: application/sdp"));

    // The ACK retransmitted: nothing more; the 2xx again: the same ACK.
    let ack = h.a_request_with("ACK", 10, &body_text(Some(A_SDP)));
    h.caller_sends(ack);
    assert!(h.drain().is_empty());
    let again = h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    assert_eq!(sent(&again, Leg::B)[0].body, acks[0].body);
}

#[test]
fn recorded_delayed_offer_narrows_the_callee_offer() {
    let now = std::time::Instant::now();
    let mut recorded = routing();
    recorded.record = true;
    let mut call = Call::new(now, A_INVITE_TXN, &offerless(), recorded, PORTS, cfg()).unwrap();
    let b_invite = sent(&drain(&mut call), Leg::B)[0].clone();
    let g729 = B_SDP.replace("RTP/AVP 0 101", "RTP/AVP 18 0 101");
    call.handle_b_response(
        now,
        reply_to(&b_invite, 200, "btag", CALLEE_EXTRA, Some(&g729)),
    );
    let actions = drain(&mut call);
    let ok = responses(&actions, Leg::A);
    let offer = String::from_utf8(ok[0].body.clone()).unwrap();
    assert!(offer.contains("m=audio 30000 RTP/AVP 0 101\r\n"), "{offer}");
}

#[test]
fn ack_without_answer_hangs_up_both() {
    let mut h = delayed();
    let invite = h.b_invite.clone();
    h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    let ack = h.a_request("ACK", 10, None);
    h.caller_sends(ack);
    let actions = h.drain();
    let to_b = sent(&actions, Leg::B);
    let methods: Vec<_> = to_b.iter().map(|r| r.method).collect();
    assert_eq!(methods, vec![Method::Ack, Method::Bye]);
    assert!(to_b[0].body.is_empty());
    let to_a = sent(&actions, Leg::A);
    assert_eq!(to_a.len(), 1);
    assert_eq!(to_a[0].method, Method::Bye);
    let (bye_a, bye_b) = (to_a[0].clone(), to_b[1].clone());
    h.a_answer(&bye_a, 200, None);
    let done = h.b_answer(&bye_b, 200, "", None);
    assert_eq!(
        events(&done),
        vec![CallEvent::Ended {
            result: CallResult::Failed,
            hangup: Some(HangupSide::System),
            status: 200
        }]
    );
    assert_eq!(h.call.end_reason(), Some("no-answer-in-ack"));
}

#[test]
fn two_xx_without_offer_is_acked_and_byed() {
    let mut h = delayed();
    let invite = h.b_invite.clone();
    let actions = h.b_answer(&invite, 200, CALLEE_EXTRA, None);
    let to_b = sent(&actions, Leg::B);
    let methods: Vec<_> = to_b.iter().map(|r| r.method).collect();
    assert_eq!(methods, vec![Method::Ack, Method::Bye]);
    assert_eq!(answers_to(&actions, A_INVITE_TXN), vec![502]);
    let bye = to_b[1].clone();
    let done = h.b_answer(&bye, 200, "", None);
    assert_eq!(
        events(&done),
        vec![CallEvent::Ended {
            result: CallResult::Failed,
            hangup: Some(HangupSide::System),
            status: 502
        }]
    );
    assert_eq!(h.call.end_reason(), Some("no-offer-in-2xx"));
}

#[test]
fn caller_never_acks_callee_gets_ack_then_bye() {
    let mut h = delayed();
    let invite = h.b_invite.clone();
    h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    h.call
        .handle_transaction_timeout(h.now, Leg::A, Method::Invite);
    let actions = h.drain();
    let methods: Vec<_> = sent(&actions, Leg::B).iter().map(|r| r.method).collect();
    assert_eq!(methods, vec![Method::Ack, Method::Bye]);
    assert_eq!(sent(&actions, Leg::A)[0].method, Method::Bye);
}

#[test]
fn caller_hangs_up_before_its_ack() {
    let mut h = delayed();
    let invite = h.b_invite.clone();
    h.b_answer(&invite, 200, CALLEE_EXTRA, Some(B_SDP));
    let bye = h.a_request("BYE", 11, None);
    h.caller_sends(bye);
    let actions = h.drain();
    let methods: Vec<_> = sent(&actions, Leg::B).iter().map(|r| r.method).collect();
    assert_eq!(methods, vec![Method::Ack, Method::Bye]);
    // Its ACK arriving late changes nothing.
    let ack = h.a_request_with("ACK", 10, &body_text(Some(A_SDP)));
    h.caller_sends(ack);
    assert!(sent(&h.drain(), Leg::B).is_empty());
}
