//! Numbers the carrier's way, several trunks, failover and keep-alives,
//! through the switch on the bytes it transmits.

use std::time::Duration;

use rsip::Method;

use super::test_support::*;
use super::{CdrOp, RouteResult, SwitchConfig, SwitchEvent};
use crate::b2bua::test_support::reply_to;
use crate::b2bua::{PROBE_TIMEOUT, TrunkPeer};
use crate::config::Transport;
use crate::phone::{NumberFormat, NumberPlan};
use crate::transport::Flow;

const SECOND: &str = "192.0.2.60:5060";

fn korean() -> NumberPlan {
    NumberPlan {
        format: NumberFormat::National,
        country: Some("82".into()),
    }
}

/// The default config with its one trunk changed by `f`.
fn with_trunk(f: impl FnOnce(&mut TrunkPeer)) -> SwitchConfig {
    let mut c = cfg();
    f(&mut c.trunks[0]);
    c
}

/// Two UDP trunks: the default one, then [`SECOND`].
fn two_trunks() -> SwitchConfig {
    let mut c = cfg();
    c.trunks
        .push(TrunkPeer::udp("second", SECOND.parse().unwrap()));
    c
}

fn second() -> Flow {
    Flow::Udp {
        socket: 0,
        remote: SECOND.parse().unwrap(),
    }
}

/// The caller's INVITE with its Request-URI, From and identity headers
/// replaced (`identity` lines end in CRLF).
fn carrier_invite(uri: &str, from: &str, identity: &str) -> String {
    default_invite()
        .replace(
            "INVITE sip:+827070001111@198.51.100.10:5060 ",
            &format!("INVITE {uri} "),
        )
        .replace(
            "From: \"Kim Minsu\" <sip:+821012345678@10.9.8.7>;tag=atag-secret\r\n",
            &format!("From: {from};tag=atag-secret\r\n"),
        )
        .replace(
            "P-Asserted-Identity: \"Kim Minsu\" <sip:+821012345678@10.9.8.7>\r\n",
            identity,
        )
        .replace("Privacy: none\r\n", "")
}

/// The numbers of the one route lookup asked for.
fn looked_up(rig: &mut Rig) -> (super::LookupId, String, String) {
    let found: Vec<_> = rig
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            SwitchEvent::RouteLookup {
                id,
                caller,
                dialled,
            } => Some((id, caller.as_str().to_owned(), dialled.as_str().to_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "one route lookup");
    found.into_iter().next().unwrap()
}

fn user_of(uri: &str) -> &str {
    uri.trim_start_matches("sip:").split('@').next().unwrap()
}

#[test]
fn national_numbers_are_read_and_written_the_trunks_way() {
    let mut rig = Rig::with(with_trunk(|t| t.numbers = korean()));
    let invite = carrier_invite(
        "sip:05041239001@198.51.100.10:5060",
        "<sip:01055556666@192.0.2.10>",
        "",
    );
    rig.feed(&carrier(), &invite);
    let (id, caller, dialled) = looked_up(&mut rig);
    assert_eq!(
        (caller.as_str(), dialled.as_str()),
        ("+821055556666", "+825041239001")
    );
    rig.answer(id, routed()).expect("a call");
    let b_invite = rig.sent_to_trunk().remove(0);
    // The route's +821099990000 and +827070001111, written nationally.
    assert_eq!(user_of(&b_invite.uri.to_string()), "01099990000");
    let wire = crate::b2bua::test_support::text(b_invite);
    assert!(
        header(&wire, "From").starts_with("<sip:07070001111@ansim.example>"),
        "{wire}"
    );
    assert!(
        header(&wire, "To").starts_with("<sip:01099990000@192.0.2.50:5060>"),
        "{wire}"
    );
}

#[test]
fn an_anonymous_caller_is_routed_by_its_tel_pai_and_stays_hidden() {
    let mut rig = Rig::new();
    let invite = carrier_invite(
        "tel:+82-70-7000-1111",
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
        "P-Asserted-Identity: <tel:+82-10-1234-5678>\r\nPrivacy: id\r\n",
    );
    rig.feed(&carrier(), &invite);
    let (id, caller, dialled) = looked_up(&mut rig);
    assert_eq!(
        (caller.as_str(), dialled.as_str()),
        ("+821012345678", "+827070001111")
    );
    rig.answer(id, routed()).expect("a call");
    let wire = rig.sent_to(&trunk()).remove(0);
    for secret in [
        "1234-5678",
        "821012345678",
        "Privacy",
        "P-Asserted-Identity",
        "Remote-Party-ID",
        "nonymous",
        "tel:",
    ] {
        assert!(
            !wire.contains(secret),
            "{secret} reached the callee:\n{wire}"
        );
    }
    assert!(header(&wire, "From").starts_with("<sip:+827070001111@ansim.example>"));
}

#[test]
fn no_caller_number_is_an_unknown_caller_with_its_reason_recorded() {
    let mut rig = Rig::new();
    let invite = carrier_invite(
        "sip:+827070001111@198.51.100.10",
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
        "Privacy: id\r\n",
    );
    rig.feed(&carrier(), &invite);
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![404]);
    let records = rig.records();
    let insert = records.iter().find_map(|op| match op {
        CdrOp::Insert(c) => Some(c.clone()),
        _ => None,
    });
    let insert = insert.expect("a call record");
    assert_eq!(insert.caller, None);
    assert_eq!(insert.reason, Some("no-caller-number"));
    assert_eq!(insert.dialled.as_str(), "+827070001111");
    assert!(
        records
            .iter()
            .any(|op| matches!(op, CdrOp::End(_, e) if e.sip_status == 404))
    );
    assert!(rig.sent_to_trunk().is_empty());
}

#[test]
fn a_503_moves_the_b_leg_to_the_next_trunk() {
    let mut rig = Rig::with(two_trunks());
    let (_, first) = rig.routed_call(&carrier(), &default_invite());
    assert!(first.uri.to_string().ends_with("@192.0.2.50:5060"));
    rig.callee_answers(&first, 503, "", None);
    assert_eq!(
        methods(&rig.sent_to_trunk()),
        vec![Method::Ack],
        "the 503 is ACKed"
    );
    let again: Vec<_> = rig.sent_to(&second()).iter().map(|m| request(m)).collect();
    assert_eq!(methods(&again), vec![Method::Invite]);
    let retry = &again[0];
    assert!(
        retry.uri.to_string().ends_with("@192.0.2.60:5060"),
        "{}",
        retry.uri
    );
    let (c1, c2) = (
        crate::sip::headers::core_values(&first.headers),
        crate::sip::headers::core_values(&retry.headers),
    );
    assert_eq!(c1.call_id, c2.call_id, "one B dialog, as a proxy forks");
    assert_eq!(c1.from, c2.from);
    assert_ne!(
        crate::sip::headers::top_via(&first.headers),
        crate::sip::headers::top_via(&retry.headers)
    );
    assert!(
        codes(&rig.sent_to(&carrier())).is_empty(),
        "the caller hears nothing of it"
    );
    let ok = reply_to(retry, 200, "btag-second", CALLEE_EXTRA, Some(B_SDP));
    rig.feed(&second(), &crate::b2bua::test_support::text(ok));
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![200]);
    assert_eq!(
        methods(
            &rig.sent_to(&second())
                .iter()
                .map(|m| request(m))
                .collect::<Vec<_>>()
        ),
        vec![Method::Ack]
    );
}

#[test]
fn an_offerless_call_fails_over_without_a_body() {
    let mut rig = Rig::with(two_trunks());
    let head = default_invite();
    let head = head.split("Content-Type:").next().unwrap_or_default();
    let offerless = format!("{head}Content-Length: 0\r\n\r\n");
    let (_, first) = rig.routed_call(&carrier(), &offerless);
    assert!(first.body.is_empty(), "a delayed offer goes out offerless");
    rig.callee_answers(&first, 503, "", None);
    let again: Vec<_> = rig.sent_to(&second()).iter().map(|m| request(m)).collect();
    assert_eq!(methods(&again), vec![Method::Invite]);
    let retry = &again[0];
    assert!(retry.body.is_empty(), "no SDP on the next trunk either");
    assert_eq!(
        header_of(retry, "Content-Type"),
        None,
        "no empty application/sdp"
    );
    assert_eq!(header_of(retry, "Content-Length").as_deref(), Some("0"));
    // The callee's 2xx carries the offer, as on the first trunk.
    let ok = reply_to(retry, 200, "btag-second", CALLEE_EXTRA, Some(B_SDP));
    rig.feed(&second(), &crate::b2bua::test_support::text(ok));
    let to_caller = rig.sent_to(&carrier());
    assert!(
        to_caller
            .iter()
            .any(|m| m.starts_with("SIP/2.0 200") && m.contains("m=audio "))
    );
    assert!(
        rig.sent_to(&second()).is_empty(),
        "the ACK waits for the caller's answer"
    );
}

/// The value of the first header called `name` in `req`, if any.
fn header_of(req: &rsip::Request, name: &str) -> Option<String> {
    req.to_string()
        .split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
}

#[test]
fn the_last_trunks_failure_reaches_the_caller() {
    let mut rig = Rig::with(two_trunks());
    let (_, first) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&first, 503, "", None);
    let retry = request(&rig.sent_to(&second()).remove(0));
    let busy = reply_to(&retry, 503, "btag-second", "", None);
    rig.feed(&second(), &crate::b2bua::test_support::text(busy));
    // As for one trunk: a 503 reaches the caller as 502 (RFC 3261 §16.7).
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![502]);
}

#[test]
fn a_486_does_not_fail_over() {
    let mut rig = Rig::with(two_trunks());
    let (_, first) = rig.routed_call(&carrier(), &default_invite());
    rig.callee_answers(&first, 486, "", None);
    assert!(rig.sent_to(&second()).is_empty());
    assert_eq!(codes(&rig.sent_to(&carrier())), vec![486]);
}

#[test]
fn a_transport_error_toward_a_tcp_trunk_fails_over_at_once() {
    let mut c = two_trunks();
    c.trunks[0].transport = Transport::Tcp;
    let mut rig = Rig::with(c);
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    rig.answer(id, routed()).expect("a call");
    let tcp = Flow::Trunk {
        trunk: 0,
        remote: TRUNK.parse().unwrap(),
        tls: false,
    };
    let sent = rig.sent_to(&tcp);
    assert_eq!(sent.len(), 1);
    assert!(
        header(&sent[0], "Via").starts_with("SIP/2.0/TCP "),
        "{}",
        sent[0]
    );
    assert!(header(&sent[0], "Contact").contains(";transport=tcp"));
    let (now, wall) = (rig.now, rig.wall);
    rig.sw.handle_trunk_failure(now, wall, 0);
    rig.collect();
    let again = rig.sent_to(&second());
    assert_eq!(again.len(), 1, "{:?}", rig.sent);
    assert!(header(&again[0], "Via").starts_with("SIP/2.0/UDP "));
}

#[test]
fn keepalives_mark_a_silent_trunk_down_and_calls_try_it_last() {
    let mut c = two_trunks();
    c.trunks[0].keepalive = Some(Duration::from_secs(30));
    let mut rig = Rig::with(c);
    rig.sw.start_keepalives(rig.now);
    rig.advance(Duration::ZERO);
    let probes = rig.sent_to(&trunk());
    assert_eq!(probes.len(), 1);
    assert!(probes[0].starts_with("OPTIONS sip:192.0.2.50:5060 SIP/2.0"));
    // Answered: up, and the answer goes nowhere else.
    let answer = reply_to(&request(&probes[0]), 200, "t", "", None);
    rig.feed(&trunk(), &crate::b2bua::test_support::text(answer));
    assert!(rig.sent.is_empty() && rig.events.is_empty());
    let up = vec![("carrier".to_owned(), true), ("second".to_owned(), true)];
    assert_eq!(rig.sw.trunk_states(), up);
    // The next probe is not answered: down after the probe timeout.
    rig.advance(Duration::from_secs(30));
    assert_eq!(rig.sent_to(&trunk()).len(), 1);
    rig.advance(PROBE_TIMEOUT);
    assert_eq!(rig.sw.trunk_states()[0], ("carrier".to_owned(), false));
    // A new call goes to the second trunk first.
    rig.feed(&carrier(), &default_invite());
    let id = rig.lookup();
    rig.answer(
        id,
        RouteResult::Routed {
            route: route(),
            ports: PORTS,
        },
    );
    assert_eq!(rig.sent_to(&second()).len(), 1);
    assert!(rig.sent_to(&trunk()).is_empty());
}
