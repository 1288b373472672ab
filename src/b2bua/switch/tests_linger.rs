//! Lingering transactions: outside `max_transactions`, still answering
//! retransmissions (RFC 3261 §17.2, RFC 6026), bounded on their own.

use std::time::Duration;

use rsip::Method;

use super::bench_support::SwitchBench;
use super::test_support::*;
use super::{SwitchConfig, SwitchEvent};

#[test]
fn sixty_seconds_at_1500_calls_a_second_with_the_default_limits_get_no_503() {
    let rate = 1_500u32;
    let mut bench = SwitchBench::with_default_limits(rate);
    let calls = u64::from(rate) * 60;
    for n in 0..calls {
        if let Err(e) = bench.call(n) {
            panic!("call {n} of {calls} failed: {e}");
        }
    }
    let stats = bench.stats();
    assert_eq!(stats.calls_refused, 0);
    assert_eq!(stats.calls_relayed, calls);
    assert!(stats.transactions < 10, "live: {}", stats.transactions);
    // Per call: the INVITE's (L) and the BYE's (J) for 32 s, our BYE's
    // (K) for 5 s: about 1,500 × 69 here, far past max_transactions.
    assert!(
        stats.lingering > 90_000 && stats.lingering < 110_000,
        "lingering: {}",
        stats.lingering
    );
    assert_eq!(stats.lingering_evicted, 0);
    let bytes = bench.lingering_bytes_per_entry();
    println!("lingering: {} entries, {bytes} bytes each", stats.lingering);
    assert!(bytes < 600, "{bytes} bytes per lingering entry");
}

#[test]
fn a_retransmitted_bye_after_the_call_gets_the_stored_200_until_timer_j() {
    let mut rig = Rig::new();
    let (caller, _, _) = rig.answered_call();
    let bye = caller.request("BYE", 11, "z9hG4bK-bye", None);
    rig.feed(&carrier(), &bye);
    let first = rig.sent_to(&carrier());
    let byes = rig.sent_to_trunk();
    rig.callee_answers(&byes[0], 200, "", None);
    assert_eq!(
        (rig.sw.stats().calls_active, rig.sw.stats().transactions),
        (0, 0)
    );
    rig.take_events();
    rig.advance(Duration::from_secs(20));
    rig.feed(&carrier(), &bye);
    assert_eq!(
        rig.sent_to(&carrier()),
        first,
        "the same 200, byte for byte"
    );
    assert!(rig.sent_to_trunk().is_empty() && rig.take_events().is_empty());
    // After Timer J the BYE is a request for a dialog that is gone.
    rig.advance(Duration::from_secs(13));
    rig.feed(&carrier(), &bye);
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![481]);
}

#[test]
fn a_retransmitted_invite_after_the_2xx_is_absorbed_and_the_2xx_retransmitted_until_acked() {
    let mut rig = Rig::new();
    let (_, b_invite) = rig.routed_call(&carrier(), &default_invite());
    let mut caller = Caller::default_one();
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![200]);
    rig.take_events();
    rig.sent.clear();
    assert_eq!(
        (rig.sw.stats().transactions, rig.sw.stats().lingering),
        (0, 1)
    );
    // RFC 6026 Accepted: the INVITE again starts nothing and gets no
    // response from the transaction...
    rig.feed(&carrier(), &default_invite());
    assert!(rig.sent.is_empty() && rig.take_events().is_empty());
    assert_eq!(rig.sw.stats().calls_active, 1);
    // ...the UAS core retransmits its 2xx (Timer G doubling) until the ACK.
    rig.advance(Duration::from_millis(600));
    assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![200]);
    rig.feed(
        &carrier(),
        &caller.request("ACK", 10, "z9hG4bK-ack10", None),
    );
    rig.advance(Duration::from_secs(8));
    assert!(rig.sent_to(&carrier()).is_empty(), "ACKed: no more 2xx");
}

#[test]
fn a_cancel_after_the_2xx_gets_200_and_no_487() {
    let mut rig = Rig::new();
    let (_, b_invite) = rig.routed_call(&carrier(), &default_invite());
    let mut caller = Caller::default_one();
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![200]);
    rig.sent.clear();
    let cancel = caller.request("CANCEL", 10, "z9hG4bK-aleg", None);
    rig.feed(&carrier(), &cancel);
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200]);
    assert_eq!(rig.sw.stats().calls_active, 1, "the answered call goes on");
}

#[test]
fn a_retransmitted_final_error_from_the_callee_gets_our_ack_again() {
    let mut rig = Rig::new();
    let (_, b_invite) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&b_invite, 486, "", None);
    assert_eq!(methods(&rig.sent_to_trunk()), vec![Method::Ack]);
    assert_eq!(rig.sw.stats().lingering, 1, "Timer D");
    rig.advance(Duration::from_secs(10));
    rig.callee_answers(&b_invite, 486, "", None);
    assert_eq!(methods(&rig.sent_to_trunk()), vec![Method::Ack]);
    rig.callee_answers(&b_invite, 180, "", None);
    assert!(rig.sent_to_trunk().is_empty(), "a late 1xx is absorbed");
}

fn options(n: u32) -> String {
    format!(
        "OPTIONS sip:x@198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-o{n}\r\n\
         From: <sip:a@192.0.2.10>;tag=o\r\nTo: <sip:b@198.51.100.10>\r\nCall-ID: o{n}@192.0.2.10\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_flood_of_distinct_transactions_is_bounded_live_and_lingering() {
    let mut rig = Rig::with(SwitchConfig {
        max_calls: 1_000,
        max_transactions: 50,
        max_lingering: 100,
        ..cfg()
    });
    // Answered at once, OPTIONS linger (Timer J): the table evicts.
    for n in 0..1_000 {
        rig.feed(&carrier(), &options(n));
        assert!(rig.sw.stats().lingering <= 100);
    }
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200; 1_000], "no 503");
    let stats = rig.sw.stats();
    assert_eq!((stats.lingering, stats.lingering_evicted), (100, 900));
    // INVITEs whose lookups never come back stay live: the cap 503s.
    for n in 0..60 {
        let call = format!("flood{n}@192.0.2.10");
        rig.feed(&carrier(), &invite(&call, "f", &format!("z9hG4bK-f{n}")));
    }
    let sent = rig.sent_to(&carrier());
    let refused = sent.iter().filter(|m| m.starts_with("SIP/2.0 503")).count();
    assert_eq!((refused, rig.sw.stats().transactions), (10, 50));
    let lookups = rig.take_events();
    let lookups = lookups
        .iter()
        .filter(|e| matches!(e, SwitchEvent::RouteLookup { .. }));
    assert_eq!(lookups.count(), 50);
}
