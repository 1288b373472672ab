//! What is not a plain call: stateless answers, strays, retransmissions,
//! RFC 2543 callers, shared Call-IDs, TCP, reaping, shards.

use std::time::Duration;

use rsip::Method;

use super::test_support::*;
use super::{CdrOp, SwitchEvent};
use crate::b2bua::test_support::text;
use crate::transport::Flow;

/// An out-of-dialog request from the carrier.
fn stray(method: &str, extra: &str) -> String {
    format!(
        "{method} sip:x@198.51.100.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{method}\r\n\
         From: <sip:a@192.0.2.10>;tag=e1\r\nTo: <sip:b@198.51.100.10>{extra}\r\nCall-ID: edge-{method}@192.0.2.10\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn requests_outside_any_call_get_precise_answers() {
    let mut rig = Rig::new();
    for (method, extra, code) in [
        ("REGISTER", "", 405),
        ("OPTIONS", "", 200),
        ("BYE", "", 481),
        ("INFO", ";tag=nobody", 481),
        ("FROB", "", 501),
        ("SUBSCRIBE", "", 405),
    ] {
        rig.feed(&carrier(), &stray(method, extra));
        let answers = rig.sent_to(&carrier());
        assert_eq!(codes(&answers), vec![code], "{method}");
        assert!(header(&answers[0], "To").contains(";tag="), "{method}");
    }
    let bad_length = stray("INVITE", "").replace("Content-Length: 0", "Content-Length: 99");
    rig.feed(&carrier(), &bad_length);
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![400]);
    for junk in [
        "\u{0}\u{1} not sip",
        "SIP/2.0 200 OK\r\n\r\n",
        "INVITE\r\n\r\n",
    ] {
        rig.feed(&carrier(), junk);
    }
    assert!(rig.sent.is_empty() && rig.events.is_empty());
    // The answered ones live on to absorb retransmissions, then go.
    rig.feed(&carrier(), &stray("REGISTER", ""));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![405]);
    rig.advance(Duration::from_secs(33));
    assert_eq!(rig.sw.stats().transactions, 0);
}

#[test]
fn stray_acks_and_responses_are_dropped() {
    let mut rig = Rig::new();
    rig.feed(&carrier(), &stray("ACK", ";tag=nobody"));
    rig.feed(&carrier(), &stray("ACK", ""));
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKnone\r\n\
        From: <sip:a@x>;tag=t\r\nTo: <sip:b@x>;tag=u\r\nCall-ID: none\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    rig.feed(&trunk(), response);
    assert!(rig.sent.is_empty() && rig.events.is_empty());
    // An ACK in a live call is taken quietly too (a duplicate, say).
    let (caller, _, _) = rig.answered_call();
    rig.feed(
        &carrier(),
        &caller.request("ACK", 10, "z9hG4bK-ack-again", None),
    );
    assert!(rig.sent.is_empty() && rig.events.is_empty());
    assert_eq!(rig.sw.stats().calls_active, 1);
}

#[test]
fn a_retransmitted_invite_is_absorbed() {
    let mut rig = Rig::new();
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    rig.advance(Duration::from_millis(200));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![100]);
    rig.feed(&carrier(), &default_invite());
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![100]);
    assert!(rig.take_events().is_empty(), "no second lookup");
    rig.answer(id, routed()).unwrap();
    assert_eq!(methods(&rig.sent_to_trunk()), vec![Method::Invite]);
    rig.feed(&carrier(), &default_invite());
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![100]);
    assert!(rig.sent_to_trunk().is_empty() && rig.sw.stats().calls_active == 1);
}

#[test]
fn an_rfc_2543_caller_gets_its_answers() {
    // Its Via branch lacks the z9hG4bK cookie (or is missing): the INVITE's
    // transaction has a Legacy key, which no response can rebuild.
    let plain = default_invite();
    let no_cookie = plain.replace("branch=z9hG4bK-aleg", "branch=aleg2543");
    let no_branch = plain.replace(";branch=z9hG4bK-aleg", "");
    for invite in [no_cookie, no_branch] {
        let mut rig = Rig::new();
        let (call, b_invite) = rig.routed_call(&carrier(), &invite);
        rig.callee_answers(&b_invite, 180, CALLEE_EXTRA, None);
        rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
        let mut caller = Caller::default_one();
        assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![180, 200]);
        let ack = caller
            .request("ACK", 10, "x", None)
            .replace(";branch=x", "");
        rig.feed(&carrier(), &ack);
        rig.advance(Duration::from_secs(2));
        assert!(
            rig.sent_to(&carrier()).is_empty(),
            "the ACK stopped the 200"
        );
        let bye = caller
            .request("BYE", 11, "x", None)
            .replace(";branch=x", "");
        rig.feed(&carrier(), &bye);
        assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![200]);
        let byes = rig.sent_to_trunk();
        assert_eq!(methods(&byes), vec![Method::Ack, Method::Bye]);
        rig.callee_answers(&byes[1], 200, "", None);
        let ended = rig.take_events();
        assert!(
            ended
                .iter()
                .any(|e| matches!(e, SwitchEvent::Ended { call: c } if *c == call))
        );
    }
}

#[test]
fn two_dialogs_sharing_a_call_id_stay_apart() {
    let mut rig = Rig::new();
    let call_id = "shared@192.0.2.10";
    let mut callers = Vec::new();
    let mut b_invites = Vec::new();
    for tag in ["first", "second"] {
        let invite = invite(call_id, tag, &format!("z9hG4bK-{tag}"));
        let (call, b_invite) = rig.routed_call(&carrier(), &invite);
        let caller = Caller {
            call_id: call_id.into(),
            tag: tag.into(),
            our_tag: None,
        };
        callers.push((caller, call));
        b_invites.push(b_invite);
    }
    let b_call_ids: Vec<String> = b_invites
        .iter()
        .map(|r| header(&text(r.clone()), "Call-ID").to_owned())
        .collect();
    assert_ne!(b_call_ids[0], b_call_ids[1]);
    for ((caller, _), b_invite) in callers.iter_mut().zip(&b_invites) {
        rig.callee_answers(b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
        assert_eq!(rig.codes_to(&carrier(), caller), vec![200]);
        rig.feed(
            &carrier(),
            &caller.request("ACK", 10, &format!("z9hG4bK-ack-{}", caller.tag), None),
        );
    }
    assert_ne!(callers[0].0.our_tag, callers[1].0.our_tag);
    rig.sent_to_trunk();
    rig.take_events();
    for (i, (caller, call)) in callers.iter_mut().enumerate() {
        rig.feed(
            &carrier(),
            &caller.request("BYE", 11, &format!("z9hG4bK-bye-{}", caller.tag), None),
        );
        let ok = rig.sent_to(&carrier());
        assert_eq!(codes(&ok), vec![200]);
        assert!(header(&ok[0], "From").contains(&caller.tag));
        let byes = rig.sent_to_trunk();
        assert_eq!(methods(&byes), vec![Method::Bye]);
        assert_eq!(header(&text(byes[0].clone()), "Call-ID"), b_call_ids[i]);
        rig.callee_answers(&byes[0], 200, "", None);
        let events = rig.take_events();
        let ended: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SwitchEvent::Ended { call } => Some(*call),
                _ => None,
            })
            .collect();
        assert_eq!(ended, vec![*call]);
        assert_eq!(rig.sw.stats().calls_active, 1 - i);
    }
}

fn connection_use(events: &[SwitchEvent]) -> Vec<(u64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            SwitchEvent::ConnectionUse { conn, in_use } => Some((*conn, *in_use)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_caller_over_tcp_holds_its_connection_while_used() {
    let mut rig = Rig::new();
    let tcp = Flow::Tcp {
        conn: 7,
        remote: CARRIER.parse().unwrap(),
    };
    rig.feed(&tcp, &default_invite());
    let events = rig.take_events();
    assert_eq!(connection_use(&events), vec![(7, true)]);
    let id = events
        .iter()
        .find_map(|e| match e {
            SwitchEvent::RouteLookup { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    rig.answer(id, routed()).unwrap();
    let b_invite = rig.sent_to_trunk().remove(0);
    rig.callee_answers(&b_invite, 180, CALLEE_EXTRA, None);
    rig.callee_answers(&b_invite, 200, CALLEE_EXTRA, Some(B_SDP));
    let mut caller = Caller::default_one();
    assert_eq!(rig.codes_to(&tcp, &mut caller), vec![180, 200]);
    assert!(rig.sent_to(&carrier()).is_empty());
    rig.feed(&tcp, &caller.request("ACK", 10, "z9hG4bK-ack", None));
    // The callee hangs up: our BYE goes to the caller over its connection.
    rig.feed(&trunk(), &callee_request(&b_invite, "BYE", 5, None));
    let bye = rig.sent_to(&tcp);
    assert_eq!(request(&bye[0]).method, Method::Bye);
    let ok = crate::b2bua::test_support::reply_to(&request(&bye[0]), 200, "atag-secret", "", None);
    rig.feed(&tcp, &text(ok));
    let events = rig.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SwitchEvent::Ended { .. }))
    );
    assert!(
        connection_use(&events).is_empty(),
        "the INVITE's transaction lingers"
    );
    rig.advance(Duration::from_secs(32));
    assert_eq!(connection_use(&rig.take_events()), vec![(7, false)]);
    assert!(rig.sw.connections.is_empty());
}

#[test]
fn every_transaction_and_timer_is_reaped_after_calls() {
    let mut rig = Rig::new();
    // An answered call hung up by the caller, and a busy one.
    let (caller, _, _) = rig.answered_call();
    rig.feed(&carrier(), &caller.request("BYE", 11, "z9hG4bK-bye", None));
    let byes = rig.sent_to_trunk();
    rig.callee_answers(&byes[0], 200, "", None);
    let busy = invite("busy@192.0.2.10", "busy", "z9hG4bK-busy");
    let (_, b_invite) = rig.routed_call(&carrier(), &busy);
    rig.callee_answers(&b_invite, 486, "", None);
    let stats = rig.sw.stats();
    assert_eq!(stats.calls_active, 0);
    assert_eq!(stats.transactions, 1, "only the 486, waiting for its ACK");
    assert!(stats.lingering > 0, "some linger to absorb retransmissions");
    rig.advance(Duration::from_secs(64));
    let sw = &rig.sw;
    assert_eq!(sw.stats().transactions, 0);
    assert!(sw.servers.is_empty() && sw.server_keys.is_empty());
    assert!(sw.lingering.is_empty() && sw.stats().lingering_evicted == 0);
    assert!(sw.clients.is_empty() && sw.client_keys.is_empty());
    assert!(sw.calls.is_empty() && sw.dialogs.is_empty() && sw.lookups.is_empty());
    assert_eq!((sw.timers.len(), sw.poll_timeout()), (0, None));
}

#[test]
fn b_leg_call_ids_hash_to_the_shard_that_owns_the_call() {
    for shard in 0..3 {
        let mut rig = Rig::sharded(shard, 3, cfg());
        assert_eq!(rig.sw.shard().index(), shard);
        let (_, b_invite) = rig.routed_call(&carrier(), &default_invite());
        let wire = text(b_invite.clone());
        assert_eq!(crate::b2bua::shard_of(header(&wire, "Call-ID"), 3), shard);
        // So the callee's answers, routed by their Call-ID, come back here.
        let answer = crate::b2bua::test_support::reply_to(&b_invite, 486, "btag-callee", "", None);
        assert_eq!(
            crate::b2bua::shard_of_message(text(answer).as_bytes(), 3),
            shard
        );
    }
}

#[test]
fn shutdown_ends_every_call_interrupted() {
    let mut rig = Rig::new();
    let (_, call, _) = rig.answered_call();
    rig.sw.shutdown(rig.wall);
    rig.collect();
    let records = rig.records();
    assert!(
        matches!(&records[..], [CdrOp::End(_, end)] if end.result == crate::store::CallResult::Interrupted)
    );
    let events = rig.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SwitchEvent::Ended { call: c } if *c == call))
    );
    assert_eq!(rig.sw.stats().calls_active, 0);
}
