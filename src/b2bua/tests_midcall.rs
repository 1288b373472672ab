//! Mid-call scenarios: hold, early media, INFO, OPTIONS, glare, strays.

use rsip::Method;

use super::test_support::*;
use super::{Action, Leg, MediaDirection};

fn media(actions: &[Action]) -> Vec<(Leg, String, MediaDirection)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Media {
                leg,
                remote,
                direction,
            } => Some((*leg, remote.to_string(), *direction)),
            _ => None,
        })
        .collect()
}

fn body(message: impl Into<rsip::SipMessage>) -> String {
    let wire = text(message);
    wire.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn hold_from_caller() {
    let mut h = Harness::answered();
    let before = body(h.b_invite.clone());
    let hold = A_SDP.replace("a=sendrecv", "a=sendonly");
    let reinvite = h.a_request("INVITE", 11, Some(&hold));
    let reinvite_txn = h.caller_sends(reinvite);
    let actions = h.drain();
    assert_eq!(
        media(&actions),
        vec![(Leg::A, "10.9.8.7:40000".into(), MediaDirection::SendOnly)]
    );
    let to_b = sent(&actions, Leg::B)[0].clone();
    assert_eq!(to_b.method, Method::Invite);
    assert_eq!(cseq_of(&to_b), "2 INVITE");
    assert_eq!(to_b.uri.to_string(), "sip:+821099990000@10.1.1.1:5060");
    let sdp = body(to_b.clone());
    assert!(sdp.contains("m=audio 30002 ") && sdp.contains("a=sendonly"));
    let version = |s: &str| s.lines().find(|l| l.starts_with("o=")).map(str::to_owned);
    assert_ne!(
        version(&sdp),
        version(&before),
        "origin version must change"
    );

    let answer = B_SDP.replace("a=sendrecv", "a=recvonly");
    let actions = h.b_answer(&to_b, 200, CALLEE_EXTRA, Some(&answer));
    let ack = sent(&actions, Leg::B)[0];
    assert_eq!(
        (ack.method, cseq_of(ack)),
        (Method::Ack, "2 ACK".to_owned())
    );
    assert_eq!(
        media(&actions),
        vec![(Leg::B, "10.1.1.1:50000".into(), MediaDirection::RecvOnly)]
    );
    let ok = responses(&actions, Leg::A)[0].clone();
    assert_eq!(ok.status_code.code(), 200);
    assert_eq!(answers_to(&actions, reinvite_txn), vec![200]);
    let sdp = body(ok);
    assert!(sdp.contains("m=audio 30000 ") && sdp.contains("a=recvonly"));
    let ack = h.a_request("ACK", 11, None);
    h.caller_sends(ack);
    assert!(h.drain().is_empty());
}

#[test]
fn hold_from_callee_with_zero_address() {
    let mut h = Harness::answered();
    let hold = B_SDP.replace("c=IN IP4 10.1.1.1", "c=IN IP4 0.0.0.0");
    let reinvite = h.b_request("INVITE", 3, Some(&hold));
    h.callee_sends(reinvite);
    let actions = h.drain();
    assert_eq!(
        media(&actions),
        vec![(Leg::B, "0.0.0.0:50000".into(), MediaDirection::SendOnly)]
    );
    let to_a = sent(&actions, Leg::A)[0].clone();
    assert_eq!(cseq_of(&to_a), "1 INVITE");
    let sdp = body(to_a.clone());
    assert!(sdp.contains("c=IN IP4 203.0.113.5") && sdp.contains("a=sendonly"));
    assert!(sdp.contains("m=audio 30000 "));
    let actions = h.a_answer(&to_a, 200, Some(&A_SDP.replace("a=sendrecv", "a=recvonly")));
    let ack = sent(&actions, Leg::A)[0];
    assert_eq!(ack.method, Method::Ack);
    let ok = responses(&actions, Leg::B)[0].clone();
    assert!(body(ok).contains("m=audio 30002 "));
}

#[test]
fn early_media_183_is_rewritten() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    let actions = h.b_answer(&invite, 183, CALLEE_EXTRA, Some(B_SDP));
    let progress = responses(&actions, Leg::A)[0].clone();
    assert_eq!(progress.status_code.code(), 183);
    let sdp = body(progress);
    assert!(sdp.contains("m=audio 30000 ") && !sdp.contains("10.1.1.1"));
    assert_eq!(
        media(&actions),
        vec![(Leg::B, "10.1.1.1:50000".into(), MediaDirection::SendRecv)]
    );
    // A 200 without SDP reuses the early answer.
    let actions = h.b_answer(&invite, 200, CALLEE_EXTRA, None);
    let ok = responses(&actions, Leg::A)[0].clone();
    assert_eq!(ok.status_code.code(), 200);
    assert!(body(ok).contains("m=audio 30000 "));
}

#[test]
fn answer_without_any_sdp_fails_cleanly() {
    let (mut h, _) = Harness::new();
    let invite = h.b_invite.clone();
    let actions = h.b_answer(&invite, 200, CALLEE_EXTRA, None);
    let methods: Vec<_> = sent(&actions, Leg::B).iter().map(|r| r.method).collect();
    assert_eq!(methods, vec![Method::Ack, Method::Bye]);
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![502]);
}

#[test]
fn info_is_relayed_both_ways() {
    let mut h = Harness::answered();
    let dtmf = "Signal=5\r\nDuration=160\r\n";
    let tail = format!(
        "Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{dtmf}",
        dtmf.len()
    );
    let info = h.a_request_with("INFO", 11, &tail);
    h.caller_sends(info);
    let actions = h.drain();
    let to_b = sent(&actions, Leg::B)[0].clone();
    assert_eq!(
        (to_b.method, cseq_of(&to_b)),
        (Method::Info, "2 INFO".to_owned())
    );
    let wire = text(to_b.clone());
    assert!(wire.contains("Content-Type: application/dtmf-relay") && wire.ends_with(dtmf));
    let actions = h.b_answer(&to_b, 200, CALLEE_EXTRA, None);
    assert!(sent(&actions, Leg::B).is_empty());
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![200]);
}

#[test]
fn options_answered_locally_and_strays_refused() {
    let mut h = Harness::answered();
    let options = h.a_request("OPTIONS", 11, None);
    h.caller_sends(options);
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![200]);
    assert!(sent(&actions, Leg::B).is_empty());

    let mut stray = h.b_request("INFO", 9, None);
    stray
        .headers
        .retain(|x| !matches!(x, rsip::Header::CallId(_)));
    stray
        .headers
        .push(rsip::Header::CallId(rsip::headers::CallId::from("other")));
    h.callee_sends(stray);
    assert_eq!(codes(&responses(&h.drain(), Leg::B)), vec![481]);

    let old = h.a_request("INFO", 5, None);
    h.caller_sends(old);
    assert_eq!(codes(&responses(&h.drain(), Leg::A)), vec![500]);

    let refer = h.a_request("REFER", 12, None);
    h.caller_sends(refer);
    assert_eq!(codes(&responses(&h.drain(), Leg::A)), vec![405]);

    // A stray response is ignored.
    let stray = reply_to(&h.b_invite, 200, "x", "", None);
    let mut stray = stray;
    stray
        .headers
        .retain(|x| !matches!(x, rsip::Header::CSeq(_)));
    h.call.handle_b_response(h.now, stray);
    assert!(h.drain().is_empty());
}

#[test]
fn glare_gets_491_and_errors_pass_back() {
    let mut h = Harness::answered();
    let from_b = h.b_request("INVITE", 3, Some(B_SDP));
    let b_txn = h.callee_sends(from_b);
    let to_a = sent(&h.drain(), Leg::A)[0].clone();
    let from_a = h.a_request("INVITE", 11, Some(A_SDP));
    let a_txn = h.caller_sends(from_a);
    let refused = h.drain();
    assert_eq!(codes(&responses(&refused, Leg::A)), vec![491]);
    assert_eq!(answers_to(&refused, a_txn), vec![491]);
    let actions = h.a_answer(&to_a, 491, None);
    assert_eq!(codes(&responses(&actions, Leg::B)), vec![491]);
    assert_eq!(answers_to(&actions, b_txn), vec![491]);
    assert!(
        sent(&actions, Leg::A).is_empty(),
        "no ACK from us for a non-2xx"
    );
}

#[test]
fn bad_sdp_in_reinvite_is_488() {
    let mut h = Harness::answered();
    let reinvite = h.a_request("INVITE", 11, Some("garbage"));
    h.caller_sends(reinvite);
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![488]);
    assert!(sent(&actions, Leg::B).is_empty());
}

#[test]
fn relayed_request_timeout_hangs_up() {
    let mut h = Harness::answered();
    let update = h.a_request("UPDATE", 11, Some(A_SDP));
    let update_txn = h.caller_sends(update);
    let to_b = sent(&h.drain(), Leg::B)[0].clone();
    assert_eq!(to_b.method, Method::Update);
    h.call
        .handle_transaction_timeout(h.now, Leg::B, Method::Update);
    let actions = h.drain();
    assert_eq!(codes(&responses(&actions, Leg::A)), vec![408]);
    assert_eq!(answers_to(&actions, update_txn), vec![408]);
    assert_eq!(sent(&actions, Leg::A)[0].method, Method::Bye);
    assert_eq!(sent(&actions, Leg::B)[0].method, Method::Bye);
}

#[test]
fn new_refuses_garbage() {
    let mut invite = a_invite();
    invite.body = b"not sdp".to_vec();
    let err =
        super::Call::new(h_now(), A_INVITE_TXN, &invite, routing(), PORTS, cfg()).unwrap_err();
    assert_eq!(err.status(), 488);
    let mut options = a_invite();
    options.method = Method::Options;
    let err =
        super::Call::new(h_now(), A_INVITE_TXN, &options, routing(), PORTS, cfg()).unwrap_err();
    assert_eq!(err.status(), 400);
}

fn h_now() -> std::time::Instant {
    std::time::Instant::now()
}

#[test]
fn a_recorded_call_offers_only_what_can_be_recorded() {
    use super::test_support::{A_SDP, PORTS, a_invite, cfg, routing, sent, text};
    let now = std::time::Instant::now();
    // The caller offers G.729 first, then the G.711 pair and DTMF.
    let mut invite = a_invite();
    let offer = A_SDP
        .replace("RTP/AVP 0 8 101", "RTP/AVP 18 0 8 101")
        .replace("a=rtpmap:0", "a=rtpmap:18 G729/8000\r\na=rtpmap:0");
    invite.body = offer.clone().into_bytes();
    for (record, g729) in [(true, false), (false, true)] {
        let mut r = routing();
        r.record = record;
        let mut call = super::Call::new(now, A_INVITE_TXN, &invite, r, PORTS, cfg()).unwrap();
        let actions: Vec<_> = std::iter::from_fn(|| call.poll_action()).collect();
        let b_invite = text(sent(&actions, Leg::B)[0].clone());
        assert_eq!(
            b_invite.contains("G729"),
            g729,
            "record={record}: {b_invite}"
        );
        let formats = if record {
            "RTP/AVP 0 8 101"
        } else {
            "RTP/AVP 18 0 8 101"
        };
        assert!(b_invite.contains(formats), "{b_invite}");
    }
}
