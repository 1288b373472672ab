//! Whole calls through the switch, checked on the bytes it transmits.

use std::time::Duration;

use rsip::Method;

use super::test_support::*;
use super::{CdrOp, SwitchEvent};
use crate::b2bua::test_support::reply_to;
use crate::b2bua::{Leg, MediaDirection};
use crate::store::Side;

/// Everything of the caller that must never reach the callee.
const CALLER_SECRETS: [&str; 13] = [
    "821012345678",
    "aleg-callid",
    "atag-secret",
    "z9hG4bK-aleg",
    "10.9.8.7",
    "40000",
    "Kim",
    "P-Asserted-Identity",
    "Remote-Party-ID",
    "User-Agent",
    "X-Caller-Real",
    "Organization",
    "192.0.2.10",
];

/// Everything of the callee that must never reach the caller.
const CALLEE_SECRETS: [&str; 8] = [
    "821099990000",
    "10.1.1.1",
    "50000",
    "btag-callee",
    "CalleePBX",
    "Callee Inc",
    "P-Asserted-Identity",
    "192.0.2.50",
];

fn assert_hidden(messages: &[String], secrets: &[&str]) {
    for m in messages {
        for secret in secrets {
            assert!(!m.contains(secret), "{secret} leaked:\n{m}");
        }
    }
}

fn ended(records: &[CdrOp]) -> Vec<(&'static str, u16, Option<&'static str>)> {
    records
        .iter()
        .filter_map(|op| match op {
            CdrOp::End(_, end) => Some((
                end.result.as_str(),
                end.sip_status,
                end.hangup_side.map(|h| h.as_str()),
            )),
            _ => None,
        })
        .collect()
}

fn ended_calls(events: &[SwitchEvent]) -> Vec<super::CallRef> {
    events
        .iter()
        .filter_map(|e| match e {
            SwitchEvent::Ended { call } => Some(*call),
            _ => None,
        })
        .collect()
}

#[test]
fn customer_calls_master_and_nothing_leaks() {
    let mut rig = Rig::new();
    rig.feed(&carrier(), &default_invite());
    let (id, caller, dialled) = match &rig.take_events()[..] {
        [
            SwitchEvent::RouteLookup {
                id,
                caller,
                dialled,
            },
        ] => (*id, caller.clone(), dialled.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (caller.as_str(), dialled.as_str()),
        ("+821012345678", "+827070001111")
    );
    assert!(rig.sent.is_empty(), "nothing is sent while routing");
    let call = rig.answer(id, routed()).unwrap();

    let to_trunk = rig.sent_to(&trunk());
    assert_eq!(to_trunk.len(), 1, "{to_trunk:?}");
    let wire = &to_trunk[0];
    assert!(wire.starts_with("INVITE sip:+821099990000@192.0.2.50:5060 SIP/2.0\r\n"));
    assert!(header(wire, "From").starts_with("<sip:+827070001111@ansim.example>;tag="));
    assert!(wire.contains("\r\nc=IN IP4 203.0.113.5\r\n") && wire.contains("m=audio 30002 "));
    let mut all_to_trunk = to_trunk.clone();
    let events = rig.take_events();
    let insert = events.iter().find_map(|e| match e {
        SwitchEvent::CallRecord(CdrOp::Insert(c)) => Some(c.clone()),
        _ => None,
    });
    let insert = insert.unwrap();
    assert_eq!(insert.direction, "a_to_b");
    assert_eq!(insert.session_id.as_deref(), Some("ses_test"));
    assert_eq!(insert.caller.unwrap().as_str(), "+821012345678");
    assert_eq!(insert.invite_at, rig.wall);
    assert!(events.iter().any(|e| matches!(e,
        SwitchEvent::Media { call: c, leg: Leg::A, remote, direction: MediaDirection::SendRecv }
            if *c == call && remote.to_string() == "10.9.8.7:40000")));

    let b_invite = request(wire);
    rig.callee_answers(&b_invite, 180, CALLEE_EXTRA, None);
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(codes(&to_caller), vec![180, 200]);
    assert!(to_caller[1].contains("Contact: <sip:ansim@198.51.100.10:5060>"));
    assert!(to_caller[1].contains("m=audio 30000 "));
    let mut all_to_caller = to_caller.clone();
    let acks = rig.sent_to_trunk();
    assert_eq!(methods(&acks), vec![Method::Ack]);
    all_to_trunk.extend(
        acks.iter()
            .map(|r| crate::b2bua::test_support::text(r.clone())),
    );
    let events = rig.take_events();
    let answered = events.iter().find_map(|e| match e {
        SwitchEvent::Answered {
            call: c,
            call_record,
        } if *c == call => Some(call_record.clone()),
        _ => None,
    });
    assert_eq!(answered.as_deref(), Some(insert.id.as_str()));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SwitchEvent::CallRecord(CdrOp::Ring(..))))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SwitchEvent::CallRecord(CdrOp::Answer(..))))
    );

    let mut caller = Caller::default_one();
    caller.our_tag = Some(
        crate::sip::headers::tag_of(header(&to_caller[1], "To"))
            .unwrap()
            .to_owned(),
    );
    rig.feed(&carrier(), &caller.request("ACK", 10, "z9hG4bK-ack", None));
    rig.feed(&carrier(), &caller.request("BYE", 11, "z9hG4bK-bye", None));
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(codes(&to_caller), vec![200]);
    all_to_caller.extend(to_caller);
    let byes = rig.sent_to_trunk();
    assert_eq!(methods(&byes), vec![Method::Bye]);
    all_to_trunk.push(crate::b2bua::test_support::text(byes[0].clone()));
    rig.callee_answers(&byes[0], 200, "", None);
    assert_eq!(
        ended(&rig.records()),
        vec![("answered", 200, Some("caller"))]
    );
    assert_eq!(ended_calls(&rig.take_events()), vec![call]);
    assert_hidden(&all_to_trunk, &CALLER_SECRETS);
    assert_hidden(&all_to_caller, &CALLEE_SECRETS);
}

#[test]
fn master_calls_customer_back() {
    let mut rig = Rig::new();
    let invite = default_invite().replace("+821012345678", "+821098765432");
    rig.feed(&carrier(), &invite);
    let id = rig.lookup();
    let mut route = route();
    route.caller_side = Side::B;
    route.callee = crate::phone::E164::parse("+821012345678").unwrap();
    route.caller_id = crate::phone::E164::parse("+827070002222").unwrap();
    rig.answer(
        id,
        super::RouteResult::Routed {
            route,
            ports: PORTS,
        },
    );
    let wire = rig.sent_to(&trunk()).remove(0);
    assert!(
        wire.starts_with("INVITE sip:+821012345678@192.0.2.50:5060 "),
        "{wire}"
    );
    assert!(header(&wire, "From").contains("sip:+827070002222@ansim.example"));
    assert!(!wire.contains("821098765432"), "{wire}");
    let direction = rig.records().iter().find_map(|op| match op {
        CdrOp::Insert(c) => Some(c.direction),
        _ => None,
    });
    assert_eq!(direction, Some("b_to_a"));
}

#[test]
fn callee_hangs_up() {
    let mut rig = Rig::new();
    let (_, call, b_invite) = rig.answered_call();
    rig.feed(&trunk(), &callee_request(&b_invite, "BYE", 5, None));
    let to_trunk = rig.sent_to(&trunk());
    assert_eq!(codes(&to_trunk), vec![200]);
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(to_caller.len(), 1);
    let bye = request(&to_caller[0]);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:+821012345678@10.9.8.7:5099");
    assert_hidden(&to_caller, &CALLEE_SECRETS);
    let ok = reply_to(&bye, 200, "atag-secret", "", None);
    rig.feed(&carrier(), &crate::b2bua::test_support::text(ok));
    assert_eq!(
        ended(&rig.records()),
        vec![("answered", 200, Some("callee"))]
    );
    assert_eq!(ended_calls(&rig.take_events()), vec![call]);
}

#[test]
fn caller_cancels_before_answer() {
    let mut rig = Rig::new();
    let (call, b_invite) = rig.routed_call(&carrier(), &default_invite());
    let mut caller = Caller::default_one();
    rig.callee_answers(&b_invite, 180, "", None);
    rig.feed(
        &carrier(),
        &caller.request("CANCEL", 10, "z9hG4bK-aleg", None),
    );
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(codes(&to_caller), vec![180, 200]);
    assert_eq!(header(&to_caller[1], "CSeq"), "10 CANCEL");
    let cancels = rig.sent_to_trunk();
    assert_eq!(methods(&cancels), vec![Method::Cancel]);
    rig.callee_answers(&cancels[0], 200, "", None);
    rig.callee_answers(&b_invite, 487, "", None);
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(codes(&to_caller), vec![487]);
    assert_eq!(header(&to_caller[0], "CSeq"), "10 INVITE");
    assert_eq!(
        methods(&rig.sent_to_trunk()),
        vec![Method::Ack],
        "the 487 is ACKed"
    );
    assert_eq!(
        ended(&rig.records()),
        vec![("cancelled", 487, Some("caller"))]
    );
    assert_eq!(ended_calls(&rig.take_events()), vec![call]);
    // The caller ACKs the 487: absorbed by its transaction.
    caller.our_tag = crate::sip::headers::tag_of(header(&to_caller[0], "To")).map(str::to_owned);
    rig.feed(&carrier(), &caller.request("ACK", 10, "z9hG4bK-aleg", None));
    assert!(rig.sent.is_empty() && rig.events.is_empty());
}

#[test]
fn cancel_racing_the_route_lookup_starts_nothing() {
    let mut rig = Rig::new();
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    let caller = Caller::default_one();
    rig.feed(
        &carrier(),
        &caller.request("CANCEL", 10, "z9hG4bK-aleg", None),
    );
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(codes(&to_caller), vec![200, 487]);
    assert_eq!(header(&to_caller[0], "CSeq"), "10 CANCEL");
    assert_eq!(header(&to_caller[1], "CSeq"), "10 INVITE");
    assert!(rig.answer(id, routed()).is_none());
    assert!(rig.sent.is_empty(), "no B-leg: {:?}", rig.sent);
    assert!(rig.records().is_empty());
    let stats = rig.sw.stats();
    assert_eq!((stats.calls_relayed, stats.calls_active), (0, 0));
    rig.advance(Duration::from_secs(40));
    assert_eq!(rig.sw.stats().transactions, 0);
}

#[test]
fn cancel_crossing_the_callees_200() {
    let mut rig = Rig::new();
    let (call, b_invite) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&b_invite, 183, CALLEE_EXTRA, Some(B_SDP));
    let caller = Caller::default_one();
    rig.feed(
        &carrier(),
        &caller.request("CANCEL", 10, "z9hG4bK-aleg", None),
    );
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![183, 200]);
    let cancel = rig.sent_to_trunk().remove(0);
    // The callee's 200 crosses our CANCEL.
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    rig.callee_answers(&cancel, 200, "", None);
    let to_trunk = rig.sent_to_trunk();
    assert_eq!(methods(&to_trunk), vec![Method::Ack, Method::Bye]);
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![487]);
    rig.callee_answers(&to_trunk[1], 200, "", None);
    assert_eq!(
        ended(&rig.records()),
        vec![("cancelled", 487, Some("caller"))]
    );
    assert_eq!(ended_calls(&rig.take_events()), vec![call]);
    assert!(rig.sent.is_empty());
}

#[test]
fn busy_callee_is_486() {
    let mut rig = Rig::new();
    let (call, b_invite) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&b_invite, 486, CALLEE_EXTRA, None);
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(codes(&to_caller), vec![486]);
    assert_hidden(&to_caller, &CALLEE_SECRETS);
    assert_eq!(methods(&rig.sent_to_trunk()), vec![Method::Ack]);
    assert_eq!(ended(&rig.records()), vec![("busy", 486, Some("callee"))]);
    assert_eq!(ended_calls(&rig.take_events()), vec![call]);
}

#[test]
fn no_answer_is_480_on_the_timer() {
    let mut rig = Rig::new();
    let (call, b_invite) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&b_invite, 180, "", None);
    rig.sent.clear();
    rig.advance(Duration::from_millis(59_999));
    assert!(rig.sent.is_empty(), "{:?}", rig.sent);
    rig.advance(Duration::from_millis(1));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![480]);
    let cancels = rig.sent_to_trunk();
    assert_eq!(methods(&cancels), vec![Method::Cancel]);
    rig.callee_answers(&cancels[0], 200, "", None);
    rig.callee_answers(&b_invite, 487, "", None);
    assert!(rig.sent_to(&carrier()).is_empty(), "the caller has its 480");
    assert_eq!(
        ended(&rig.records()),
        vec![("no_answer", 480, Some("system"))]
    );
    assert_eq!(ended_calls(&rig.take_events()), vec![call]);
}

#[test]
fn hold_and_unhold_are_relayed() {
    let mut rig = Rig::new();
    let (caller, call, _) = rig.answered_call();
    for (cseq, (ours, theirs)) in [
        (11, ("a=sendonly", "a=recvonly")),
        (12, ("a=sendrecv", "a=sendrecv")),
    ] {
        let offer = caller_sdp(ours);
        rig.feed(
            &carrier(),
            &caller.request("INVITE", cseq, &format!("z9hG4bK-re{cseq}"), Some(&offer)),
        );
        let to_trunk = rig.sent_to_trunk();
        assert_eq!(methods(&to_trunk), vec![Method::Invite]);
        let wire = crate::b2bua::test_support::text(to_trunk[0].clone());
        assert!(
            wire.contains(ours) && wire.contains("m=audio 30002 "),
            "{wire}"
        );
        assert_hidden(&[wire], &CALLER_SECRETS);
        let direction = if ours == "a=sendonly" {
            MediaDirection::SendOnly
        } else {
            MediaDirection::SendRecv
        };
        let events = rig.take_events();
        assert!(events.iter().any(|e| matches!(e,
            SwitchEvent::Media { call: c, leg: Leg::A, direction: d, .. } if *c == call && *d == direction)));
        let answer = B_SDP.replace("a=sendrecv", theirs);
        rig.callee_answers(&to_trunk[0], 200, CALLEE_EXTRA, Some(&answer));
        assert_eq!(methods(&rig.sent_to_trunk()), vec![Method::Ack]);
        let to_caller = rig.sent_to(&carrier());
        assert_eq!(codes(&to_caller), vec![200]);
        assert!(to_caller[0].contains(theirs) && to_caller[0].contains("m=audio 30000 "));
        assert_eq!(header(&to_caller[0], "CSeq"), format!("{cseq} INVITE"));
        assert_hidden(&to_caller, &CALLEE_SECRETS);
        rig.feed(
            &carrier(),
            &caller.request("ACK", cseq, &format!("z9hG4bK-ack{cseq}"), None),
        );
    }
    // Both 200s were ACKed: nothing is retransmitted.
    rig.advance(Duration::from_secs(5));
    assert!(rig.sent_to(&carrier()).is_empty());
}

#[test]
fn early_media_183_reaches_the_caller_rewritten() {
    let mut rig = Rig::new();
    let (call, b_invite) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&b_invite, 183, CALLEE_EXTRA, Some(B_SDP));
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(codes(&to_caller), vec![183]);
    assert!(
        to_caller[0].contains("m=audio 30000 ") && to_caller[0].contains("c=IN IP4 203.0.113.5")
    );
    assert_hidden(&to_caller, &CALLEE_SECRETS);
    let events = rig.take_events();
    assert!(events.iter().any(|e| matches!(e,
        SwitchEvent::Media { call: c, leg: Leg::B, remote, .. }
            if *c == call && remote.to_string() == "10.1.1.1:50000")));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SwitchEvent::CallRecord(CdrOp::Ring(..))))
    );
}

#[test]
fn a_2xx_is_retransmitted_until_the_ack() {
    let mut rig = Rig::new();
    let (_, b_invite) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    let mut caller = Caller::default_one();
    assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![200]);
    rig.advance(Duration::from_millis(499));
    assert!(rig.sent_to(&carrier()).is_empty());
    rig.advance(Duration::from_millis(1));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200]);
    rig.advance(Duration::from_secs(1));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200], "T1, then 2*T1");
    rig.feed(&carrier(), &caller.request("ACK", 10, "z9hG4bK-ack", None));
    rig.advance(Duration::from_secs(30));
    assert!(rig.sent_to(&carrier()).is_empty());
}

#[test]
fn a_2xx_never_acked_ends_the_call() {
    let mut rig = Rig::new();
    let (call, b_invite) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    rig.sent.clear();
    rig.advance(Duration::from_millis(31_999));
    // T1, 2*T1, 4*T1, then every T2 (4 s): 0.5, 1.5, 3.5, 7.5, … 31.5 s.
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200; 10]);
    assert!(rig.sent_to_trunk().is_empty());
    rig.advance(Duration::from_millis(1));
    let byes = rig.sent_to_trunk();
    assert_eq!(methods(&byes), vec![Method::Bye]);
    let to_caller = rig.sent_to(&carrier());
    assert_eq!(request(&to_caller[0]).method, Method::Bye);
    rig.callee_answers(&byes[0], 200, "", None);
    // The caller is gone: its BYE times out.
    rig.advance(Duration::from_secs(33));
    assert_eq!(
        ended(&rig.records()),
        vec![("answered", 200, Some("system"))]
    );
    assert_eq!(ended_calls(&rig.take_events()), vec![call]);
}
