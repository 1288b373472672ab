//! Calls no open session routes (`[routing] out_of_session`): refused
//! with their reason, forwarded to the customer centre masked, or
//! answered by ansim with the out-of-session announcement.

use std::time::Duration;

use super::test_support::*;
use super::{CallRef, CdrOp, Fallback, RouteResult, SwitchConfig, SwitchEvent};
use crate::b2bua::test_support::{reply_to, text};
use crate::b2bua::{AnnounceMode, PLAYBACK_MARGIN};
use crate::media::g711::Codec;
use crate::phone::E164;

/// The customer centre of these tests.
const CENTRE: &str = "+8215001234";

fn forwarding() -> SwitchConfig {
    SwitchConfig {
        fallback: Some(Fallback {
            to: E164::parse(CENTRE).unwrap(),
            record: true,
        }),
        ..cfg()
    }
}

fn out_of_session(record: bool) -> RouteResult {
    RouteResult::OutOfSession {
        ports: PORTS,
        record,
    }
}

#[test]
fn a_refused_out_of_session_call_is_recorded_with_its_reason() {
    let mut rig = Rig::new();
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    assert!(rig.answer(id, RouteResult::Unknown).is_none());
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![404]);
    match &rig.records()[..] {
        [CdrOp::Insert(call), CdrOp::End(_, end)] => {
            assert_eq!(call.reason, Some("out-of-session"));
            assert_eq!((end.result.as_str(), end.sip_status), ("rejected", 404));
        }
        other => panic!("{other:?}"),
    }
    let stats = rig.sw.stats();
    assert_eq!(
        (
            stats.out_of_session_rejected,
            stats.out_of_session_forwarded
        ),
        (1, 0)
    );
}

#[test]
fn media_for_a_forward_without_a_fallback_is_refused_and_given_back() {
    let mut rig = Rig::new();
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    // No call: the driver stops the relay it opened.
    assert!(rig.answer(id, out_of_session(false)).is_none());
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![404]);
    assert!(rig.sent_to_trunk().is_empty());
    assert_eq!(rig.sw.stats().out_of_session_rejected, 1);
}

#[test]
fn a_forwarded_call_reaches_the_centre_from_the_safe_number_only() {
    let mut rig = Rig::with(forwarding());
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    let call = rig.answer(id, out_of_session(true));
    assert!(call.is_some());
    let wire = rig.sent_to(&trunk());
    assert_eq!(wire.len(), 1, "{wire:?}");
    let b_invite = request(&wire[0]);
    assert_eq!(b_invite.uri.to_string(), format!("sip:{CENTRE}@{TRUNK}"));
    let from = rsip::prelude::HeadersExt::from_header(&b_invite).unwrap();
    assert!(
        from.to_string().contains("sip:+827070001111@ansim.example"),
        "{from}"
    );
    // Nothing of the caller reaches the centre: its number, Call-ID, tag,
    // branch, addresses, identity headers.
    for secret in [
        "821012345678",
        "aleg-callid",
        "atag-secret",
        "z9hG4bK-aleg",
        "10.9.8.7",
        "Kim",
        "P-Asserted-Identity",
        "X-Caller-Real",
    ] {
        assert!(!wire[0].contains(secret), "{secret} leaked:\n{}", wire[0]);
    }
    match &rig.records()[..] {
        [CdrOp::Insert(call)] => {
            assert_eq!(call.session_id, None);
            assert_eq!(
                (call.direction, call.reason),
                ("unrouted", Some("out-of-session-forwarded"))
            );
            assert_eq!(
                call.caller.as_ref().map(|c| c.as_str()),
                Some("+821012345678")
            );
        }
        other => panic!("{other:?}"),
    }
    let stats = rig.sw.stats();
    assert_eq!(
        (stats.out_of_session_forwarded, stats.calls_relayed),
        (1, 1)
    );
    // The centre answers: the caller gets the 200 like any call's.
    let mut caller = Caller::default_one();
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![200]);
}

// ---- out_of_session = "announce": ansim answers the caller itself ----

/// The announcement of these tests: 10 packets of 20 ms.
const LENGTH: Duration = Duration::from_millis(200);

fn announcing(early: bool) -> SwitchConfig {
    SwitchConfig {
        announce: Some(AnnounceMode {
            early,
            length: LENGTH,
        }),
        ..cfg()
    }
}

/// The default caller's INVITE, routed to nowhere and announced: the
/// caller (with our tag from the response it got) and the call.
fn announced_call(rig: &mut Rig, expect: u16) -> (Caller, CallRef) {
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    let call = rig
        .answer(id, out_of_session(false))
        .expect("an announced call");
    let mut caller = Caller::default_one();
    let sent = rig.sent_to(&carrier());
    let last = sent.last().expect("a response to the caller").clone();
    rig.sent = sent.into_iter().map(|m| (carrier(), m)).collect();
    let codes = rig.codes_to(&carrier(), &mut caller);
    assert_eq!(codes.last(), Some(&expect), "{codes:?}");
    // Our SDP answer: our address and A-side port, one codec (PCMU),
    // nothing of the caller's SDP identity.
    let body = last.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.contains("c=IN IP4 203.0.113.5"), "{body}");
    assert!(body.contains("m=audio 30000 RTP/AVP 0\r\n"), "{body}");
    assert!(
        !body.contains("10.9.8.7") && !body.contains("821012345678"),
        "{body}"
    );
    assert!(
        header(&last, "Contact").contains("ansim@198.51.100.10"),
        "{last}"
    );
    // No B-leg, ever.
    assert!(rig.sent_to_trunk().is_empty());
    (caller, call)
}

/// The `Play` events taken from the rig's events (the others stay), by
/// call.
fn plays(rig: &mut Rig) -> Vec<(CallRef, Codec)> {
    let (plays, rest): (Vec<_>, Vec<_>) = rig
        .take_events()
        .into_iter()
        .partition(|e| matches!(e, SwitchEvent::Play { .. }));
    rig.events = rest;
    plays
        .into_iter()
        .filter_map(|e| match e {
            SwitchEvent::Play { call, codec } => Some((call, codec)),
            _ => None,
        })
        .collect()
}

/// Whether `call` was reported ended (its media freed) among the events.
fn ended(events: &[SwitchEvent], call: CallRef) -> bool {
    events
        .iter()
        .any(|e| matches!(e, SwitchEvent::Ended { call: c } if *c == call))
}

/// The call record's end, from the writes taken.
fn record_end(records: &[CdrOp]) -> (&'static str, u16, Option<&'static str>) {
    let end = records
        .iter()
        .find_map(|op| match op {
            CdrOp::End(_, end) => Some(end),
            _ => None,
        })
        .expect("the record ends");
    let side = end.hangup_side.map(|s| s.as_str());
    (end.result.as_str(), end.sip_status, side)
}

/// The call record's insert: unrouted, no session, announced.
fn assert_announced_insert(records: &[CdrOp]) {
    match records.first() {
        Some(CdrOp::Insert(call)) => {
            assert_eq!(call.session_id, None);
            assert_eq!(
                (call.direction, call.reason),
                ("unrouted", Some("out-of-session-announced"))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_answered_announcement_plays_after_the_ack_then_hangs_up() {
    let mut rig = Rig::with(announcing(false));
    let (caller, call) = announced_call(&mut rig, 200);
    // Nothing plays before the ACK: the caller may not hear yet.
    let media: Vec<_> = rig
        .events
        .iter()
        .filter(|e| matches!(e, SwitchEvent::Media { .. }))
        .collect();
    assert_eq!(media.len(), 1, "the caller's SDP address for the relay");
    assert!(plays(&mut rig).is_empty());
    rig.feed(
        &carrier(),
        &caller.request("ACK", 10, "z9hG4bK-ack10", None),
    );
    assert_eq!(plays(&mut rig), vec![(call, Codec::Pcmu)]);
    // Until the announcement is over, nothing; then our BYE.
    rig.advance(LENGTH);
    assert!(rig.sent_to(&carrier()).is_empty());
    rig.advance(PLAYBACK_MARGIN);
    let sent = rig.sent_to(&carrier());
    assert_eq!(sent.len(), 1, "{sent:?}");
    let bye = request(&sent[0]);
    assert_eq!(bye.method, rsip::Method::Bye);
    assert!(sent[0].contains(";tag=atag-secret"), "{}", sent[0]);
    rig.feed(
        &carrier(),
        &text(reply_to(&bye, 200, "atag-secret", "", None)),
    );
    let events = rig.take_events();
    assert!(ended(&events, call), "{events:?}");
    rig.events = events;
    let records = rig.records();
    assert_announced_insert(&records);
    assert!(records.iter().any(|op| matches!(op, CdrOp::Answer(..))));
    assert_eq!(record_end(&records), ("answered", 200, Some("system")));
    let stats = rig.sw.stats();
    assert_eq!(
        (
            stats.out_of_session_announced,
            stats.calls_relayed,
            stats.calls_active
        ),
        (1, 0, 0)
    );
}

#[test]
fn an_early_announcement_plays_at_the_183_then_the_status_and_absorbs_the_ack() {
    let mut rig = Rig::with(announcing(true));
    let (caller, call) = announced_call(&mut rig, 183);
    assert_eq!(plays(&mut rig), vec![(call, Codec::Pcmu)]);
    rig.advance(LENGTH);
    assert!(rig.sent_to(&carrier()).is_empty());
    rig.advance(PLAYBACK_MARGIN);
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![404]);
    let events = rig.take_events();
    assert!(ended(&events, call), "{events:?}");
    rig.events = events;
    let records = rig.records();
    assert_announced_insert(&records);
    assert!(!records.iter().any(|op| matches!(op, CdrOp::Answer(..))));
    assert_eq!(record_end(&records), ("rejected", 404, Some("system")));
    // The ACK of the 404 ends its transaction: no retransmission after.
    rig.feed(&carrier(), &caller.request("ACK", 10, "z9hG4bK-aleg", None));
    rig.advance(Duration::from_secs(40));
    assert!(rig.sent_to(&carrier()).is_empty());
    assert_eq!(rig.sw.stats().transactions, 0);
}

#[test]
fn a_cancel_during_early_media_gets_200_and_the_invite_487() {
    let mut rig = Rig::with(announcing(true));
    let (caller, call) = announced_call(&mut rig, 183);
    rig.advance(Duration::from_millis(50));
    rig.feed(
        &carrier(),
        &caller.request("CANCEL", 10, "z9hG4bK-aleg", None),
    );
    let mut sent = codes(&rig.sent_to(&carrier()));
    sent.sort_unstable();
    assert_eq!(sent, vec![200, 487]);
    let events = rig.take_events();
    assert!(ended(&events, call), "{events:?}");
    rig.events = events;
    assert_eq!(
        record_end(&rig.records()),
        ("cancelled", 487, Some("caller"))
    );
    // The playback's end finds nothing to do.
    rig.advance(LENGTH + PLAYBACK_MARGIN);
    assert!(rig.sent_to(&carrier()).is_empty());
}

#[test]
fn a_bye_during_the_answered_announcement_ends_it_at_once() {
    let mut rig = Rig::with(announcing(false));
    let (caller, call) = announced_call(&mut rig, 200);
    rig.feed(
        &carrier(),
        &caller.request("ACK", 10, "z9hG4bK-ack10", None),
    );
    rig.advance(Duration::from_millis(60));
    rig.take_events();
    rig.feed(
        &carrier(),
        &caller.request("BYE", 11, "z9hG4bK-bye11", None),
    );
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200]);
    let events = rig.take_events();
    assert!(ended(&events, call), "the media stops now: {events:?}");
    rig.events = events;
    assert_eq!(
        record_end(&rig.records()),
        ("answered", 200, Some("caller"))
    );
    rig.advance(LENGTH + PLAYBACK_MARGIN);
    assert!(
        rig.sent_to(&carrier()).is_empty(),
        "no BYE of ours after theirs"
    );
    assert_eq!(rig.sw.stats().calls_active, 0);
}

#[test]
fn a_caller_that_never_acks_gets_the_200_again_until_timer_h_then_bye() {
    let mut rig = Rig::with(announcing(false));
    let (_caller, call) = announced_call(&mut rig, 200);
    rig.take_events();
    // Timer G: 0.5, 1, 2, 4, 4, … s; Timer H: 64 × T1 = 32 s.
    rig.advance(Duration::from_millis(31_900));
    let again = codes(&rig.sent_to(&carrier()));
    assert!(
        again.len() >= 8 && again.iter().all(|c| *c == 200),
        "{again:?}"
    );
    assert!(plays(&mut rig).is_empty(), "nothing played without the ACK");
    rig.advance(Duration::from_millis(200));
    let sent = rig.sent_to(&carrier());
    let byes: Vec<_> = sent.iter().filter(|m| m.starts_with("BYE ")).collect();
    assert_eq!(byes.len(), 1, "{sent:?}");
    let bye = request(byes[0]);
    rig.feed(
        &carrier(),
        &text(reply_to(&bye, 200, "atag-secret", "", None)),
    );
    let events = rig.take_events();
    assert!(ended(&events, call), "{events:?}");
    rig.events = events;
    assert_eq!(record_end(&rig.records()), ("failed", 200, Some("system")));
}

#[test]
fn announced_calls_count_against_max_calls() {
    let mut rig = Rig::with(SwitchConfig {
        max_calls: 1,
        ..announcing(false)
    });
    let (caller, _call) = announced_call(&mut rig, 200);
    rig.feed(
        &carrier(),
        &caller.request("ACK", 10, "z9hG4bK-ack10", None),
    );
    rig.take_events();
    // A second stranger while the first hears the announcement: 503.
    rig.feed(&carrier(), &invite("second@10.9.8.7", "tag-2", "z9hG4bK-2"));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![503]);
    assert!(
        rig.take_events()
            .iter()
            .all(|e| !matches!(e, SwitchEvent::RouteLookup { .. }))
    );
    // Once the first is over, the next is taken.
    rig.feed(
        &carrier(),
        &caller.request("BYE", 11, "z9hG4bK-bye11", None),
    );
    rig.sent.clear();
    rig.feed(&carrier(), &invite("third@10.9.8.7", "tag-3", "z9hG4bK-3"));
    rig.lookup();
    let stats = rig.sw.stats();
    assert_eq!(
        (stats.calls_over_limit, stats.out_of_session_announced),
        (1, 1)
    );
}

#[test]
fn an_offer_without_pcmu_or_pcma_is_refused_and_recorded() {
    let mut rig = Rig::with(announcing(false));
    let g729 = default_invite()
        .replace("RTP/AVP 0 8 101", "RTP/AVP 18 101")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:18 G729/8000\r\n")
        .replace("a=rtpmap:8 PCMA/8000\r\n", "");
    let g729 = fix_length(&g729);
    rig.feed(&carrier(), &g729);
    let id = rig.lookup();
    assert!(rig.answer(id, out_of_session(false)).is_none());
    let sent = codes(&rig.sent_to(&carrier()));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0] >= 400, "{sent:?}");
    let records = rig.records();
    assert_eq!(record_end(&records).0, "rejected");
    let stats = rig.sw.stats();
    assert_eq!(
        (
            stats.out_of_session_rejected,
            stats.out_of_session_announced
        ),
        (1, 0)
    );
}

/// `message` with its Content-Length set to its body's length.
fn fix_length(message: &str) -> String {
    let (head, body) = message.split_once("\r\n\r\n").unwrap();
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| match l.strip_prefix("Content-Length:") {
            Some(_) => format!("Content-Length: {}", body.len()),
            None => l.to_owned(),
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n"))
}
