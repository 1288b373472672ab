//! Calls no open session routes (`[routing] out_of_session`): refused
//! with their reason, or forwarded to the customer centre masked.

use super::test_support::*;
use super::{CdrOp, Fallback, RouteResult, SwitchConfig};
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
