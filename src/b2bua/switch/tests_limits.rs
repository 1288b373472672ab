//! Refusals: unknown callers, failed lookups, no media, `max_calls`,
//! `max_transactions`, INVITEs that cannot be relayed.

use rsip::Method;

use super::test_support::*;
use super::{CdrOp, RouteResult, SwitchConfig, SwitchEvent};

fn refused(result: RouteResult) -> (Rig, Vec<String>) {
    let mut rig = Rig::new();
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    assert!(rig.answer(id, result).is_none());
    let to_caller = rig.sent_to(&carrier());
    assert!(rig.sent_to_trunk().is_empty());
    (rig, to_caller)
}

#[test]
fn an_unknown_caller_gets_the_configured_status_and_a_record() {
    let mut cfg = cfg();
    cfg.unknown_caller_status = 403;
    let mut rig = Rig::with(cfg);
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    rig.answer(id, RouteResult::Unknown);
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![403]);
    match &rig.records()[..] {
        [CdrOp::Insert(call), CdrOp::End(id, end)] => {
            assert_eq!(
                (call.direction, call.session_id.as_deref()),
                ("unrouted", None)
            );
            assert_eq!(&call.id, id);
            assert_eq!((end.result.as_str(), end.sip_status), ("rejected", 403));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rig.sw.stats().calls_refused, 1);
    // A caller without a number is refused without a lookup, and recorded
    // with its reason (its PAI is no telephone number: no user=phone).
    let anonymous = invite("anon@192.0.2.10", "anon", "z9hG4bK-anon").replace(
        "sip:+821012345678@10.9.8.7>;tag",
        "sip:anonymous@10.9.8.7>;tag",
    );
    rig.feed(&carrier(), &anonymous);
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![403]);
    match &rig.take_events()[..] {
        [
            SwitchEvent::CallRecord(CdrOp::Insert(call)),
            SwitchEvent::CallRecord(CdrOp::End(..)),
        ] => {
            assert_eq!(
                (call.caller.as_ref(), call.reason),
                (None, Some("no-caller-number"))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_lookup_is_503() {
    let (mut rig, to_caller) = refused(RouteResult::Failed);
    assert_eq!(codes(&to_caller), vec![503]);
    assert!(rig.records().is_empty());
    assert_eq!(rig.sw.stats().calls_refused, 1);
}

#[test]
fn no_media_ports_is_503() {
    let (rig, to_caller) = refused(RouteResult::NoMedia);
    assert_eq!(codes(&to_caller), vec![503]);
    assert_eq!(rig.sw.stats().calls_refused, 1);
}

#[test]
fn an_invite_that_cannot_be_relayed_is_refused() {
    let mut rig = Rig::new();
    let offerless = default_invite()
        .split("Content-Type")
        .next()
        .unwrap()
        .to_owned()
        + "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    rig.feed(&carrier(), &offerless);
    let id = rig.lookup();
    assert!(rig.answer(id, routed()).is_none());
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![488]);
    assert!(rig.sent_to_trunk().is_empty() && rig.records().is_empty());
}

fn assert_unavailable(message: &str) {
    assert_eq!(codes(&[message.to_owned()]), vec![503], "{message}");
    assert_eq!(header(message, "Retry-After"), "5", "{message}");
}

#[test]
fn beyond_max_calls_an_invite_gets_503_with_retry_after() {
    let mut rig = Rig::with(SwitchConfig {
        max_calls: 1,
        ..cfg()
    });
    // The first call, still being routed, counts already.
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    let second = invite("second@192.0.2.10", "second", "z9hG4bK-second");
    rig.feed(&carrier(), &second);
    let refused = rig.sent_to(&carrier());
    assert_eq!(refused.len(), 1);
    assert_unavailable(&refused[0]);
    assert!(rig.take_events().is_empty(), "no lookup for it");
    rig.answer(id, routed()).unwrap();
    assert_eq!(methods(&rig.sent_to_trunk()), vec![Method::Invite]);
    let third = invite("third@192.0.2.10", "third", "z9hG4bK-third");
    rig.feed(&carrier(), &third);
    assert_unavailable(&rig.sent_to(&carrier())[0]);
    let stats = rig.sw.stats();
    assert_eq!((stats.calls_over_limit, stats.calls_refused), (2, 2));
    assert_eq!((stats.calls_relayed, stats.calls_active), (1, 1));
    // The refused caller's ACK is absorbed by its transaction.
    let caller = Caller {
        call_id: "third@192.0.2.10".into(),
        tag: "third".into(),
        our_tag: Some("x".into()),
    };
    let ack = caller.request("ACK", 10, "z9hG4bK-third", None).replace(
        "sip:ansim@198.51.100.10:5060",
        "sip:+827070001111@198.51.100.10:5060",
    );
    rig.feed(&carrier(), &ack);
    assert!(rig.sent.is_empty(), "{:?}", rig.sent);
}

#[test]
fn a_full_transaction_table_refuses_new_requests_but_never_dialogs() {
    let mut rig = Rig::with(SwitchConfig {
        max_transactions: 2,
        ..cfg()
    });
    // A call ringing: its INVITE's server and client transactions: full.
    let (_, b_invite) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&b_invite, 180, CALLEE_EXTRA, None);
    assert_eq!(rig.sw.stats().transactions, 2);
    rig.sent.clear();
    rig.take_events();
    let options = "OPTIONS sip:x@198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-o\r\n\
        From: <sip:a@192.0.2.10>;tag=o\r\nTo: <sip:b@198.51.100.10>\r\nCall-ID: o@192.0.2.10\r\n\
        CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    rig.feed(&carrier(), options);
    assert_unavailable(&rig.sent_to(&carrier())[0]);
    rig.feed(&carrier(), &invite("new@192.0.2.10", "new", "z9hG4bK-new"));
    assert_unavailable(&rig.sent_to(&carrier())[0]);
    assert!(rig.take_events().is_empty());
    assert_eq!(rig.sw.stats().transactions, 2, "stateless refusals");
    // The call in progress can still be answered and end.
    let mut caller = Caller::default_one();
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![200]);
    rig.feed(
        &carrier(),
        &caller.request("ACK", 10, "z9hG4bK-ack10", None),
    );
    assert_eq!(
        rig.sw.stats().transactions,
        0,
        "lingering ones do not count"
    );
    assert_eq!(methods(&rig.sent_to_trunk()), vec![Method::Ack]);
    rig.feed(&carrier(), &caller.request("BYE", 11, "z9hG4bK-bye", None));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200]);
    let byes = rig.sent_to_trunk();
    assert_eq!(methods(&byes), vec![Method::Bye]);
    rig.callee_answers(&byes[0], 200, "", None);
    assert_eq!(rig.sw.stats().calls_active, 0);
}

#[test]
fn a_draining_switch_refuses_new_calls_and_probes_but_finishes_its_calls() {
    let mut rig = Rig::with(cfg());
    let (caller, _, _) = rig.answered_call();
    rig.sw.begin_drain();
    assert!(!rig.sw.is_idle());
    let options = "OPTIONS sip:x@198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-o\r\n\
        From: <sip:a@192.0.2.10>;tag=o\r\nTo: <sip:b@198.51.100.10>\r\nCall-ID: o@192.0.2.10\r\n\
        CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    rig.feed(&carrier(), options);
    assert_unavailable(&rig.sent_to(&carrier())[0]);
    rig.feed(&carrier(), &invite("new@192.0.2.10", "new", "z9hG4bK-new"));
    assert_unavailable(&rig.sent_to(&carrier())[0]);
    assert!(rig.take_events().is_empty(), "no lookup for a new call");
    // The call in progress ends normally; then the node is idle.
    rig.feed(&carrier(), &caller.request("BYE", 11, "z9hG4bK-bye", None));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200]);
    let byes = rig.sent_to_trunk();
    rig.callee_answers(&byes[0], 200, "", None);
    assert!(rig.sw.is_idle());
}
