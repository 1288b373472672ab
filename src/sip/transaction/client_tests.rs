use std::time::Instant;

use rsip::{Header, Method, SipMessage};

use super::*;
use crate::sip::headers::{ViaInfo, tag_of, top_via};
use crate::sip::transaction::test_support::{invite, ms, request, response};

fn transmits(t: &mut ClientTransaction) -> Vec<SipMessage> {
    std::iter::from_fn(|| t.poll_transmit())
        .map(|t| t.message)
        .collect()
}

fn events(t: &mut ClientTransaction) -> Vec<ClientEvent> {
    std::iter::from_fn(|| t.poll_event()).collect()
}

/// Runs timers until `end`, returning the instants (ms after t0) at which
/// something was transmitted.
fn run_until(t: &mut ClientTransaction, t0: Instant, end: Instant) -> Vec<u128> {
    let mut sent = Vec::new();
    while let Some(at) = t.poll_timeout().filter(|at| *at <= end) {
        t.handle_timeout(at);
        for _ in transmits(t) {
            sent.push((at - t0).as_millis());
        }
    }
    sent
}

fn new_invite(t0: Instant, reliable: bool) -> ClientTransaction {
    ClientTransaction::new(invite(), t0, reliable, Timers::default()).unwrap()
}

#[test]
fn invite_timer_a_doubles_then_timer_b() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    assert_eq!(transmits(&mut t).len(), 1);
    assert_eq!(t.state(), ClientState::Calling);
    let sent = run_until(&mut t, t0, ms(t0, 40_000));
    assert_eq!(sent, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(
        events(&mut t),
        vec![ClientEvent::Timeout, ClientEvent::Terminated]
    );
    assert!(t.is_terminated());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn timer_b_fires_at_64_t1() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, true);
    transmits(&mut t);
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_000)));
    t.handle_timeout(ms(t0, 31_999));
    assert!(events(&mut t).is_empty());
    t.handle_timeout(ms(t0, 32_000));
    assert_eq!(
        events(&mut t),
        vec![ClientEvent::Timeout, ClientEvent::Terminated]
    );
}

#[test]
fn no_retransmission_over_reliable_transport() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, true);
    assert_eq!(transmits(&mut t).len(), 1);
    assert!(run_until(&mut t, t0, ms(t0, 40_000)).is_empty());
    assert!(t.is_terminated());
}

#[test]
fn provisional_stops_a_and_b() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    transmits(&mut t);
    let ringing = response(t.request(), 180);
    t.handle_response(ms(t0, 100), ringing.clone());
    assert_eq!(t.state(), ClientState::Proceeding);
    assert_eq!(events(&mut t), vec![ClientEvent::Provisional(ringing)]);
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn non_2xx_final_is_acked_and_timer_d() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    transmits(&mut t);
    let busy = response(t.request(), 486);
    t.handle_response(ms(t0, 200), busy.clone());
    assert_eq!(t.state(), ClientState::Completed);
    assert_eq!(events(&mut t), vec![ClientEvent::Final(busy.clone())]);
    let sent = transmits(&mut t);
    let [SipMessage::Request(ack)] = sent.as_slice() else {
        panic!("expected one ACK, got {sent:?}");
    };
    check_ack(ack, t.request());
    // A retransmitted final response makes the transaction re-send the ACK.
    t.handle_response(ms(t0, 1000), busy);
    assert_eq!(transmits(&mut t), vec![SipMessage::Request(ack.clone())]);
    assert!(events(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_200)));
    t.handle_timeout(ms(t0, 32_200));
    assert_eq!(events(&mut t), vec![ClientEvent::Terminated]);
}

fn check_ack(ack: &rsip::Request, invite: &rsip::Request) {
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    let branch = |r: &rsip::Request| {
        top_via(&r.headers)
            .and_then(ViaInfo::parse)
            .and_then(|v| v.branch())
            .map(str::to_owned)
    };
    assert_eq!(branch(ack), branch(invite));
    let vias = ack
        .headers
        .iter()
        .filter(|h| matches!(h, Header::Via(_)))
        .count();
    assert_eq!(vias, 1);
    let to = crate::sip::headers::core_values(&ack.headers).to.unwrap();
    assert_eq!(tag_of(to), Some("totag"));
    let cseq = crate::sip::headers::core_values(&ack.headers).cseq.unwrap();
    assert_eq!(cseq, "1 ACK");
    assert!(ack.headers.iter().any(|h| matches!(h, Header::Route(_))));
}

#[test]
fn non_2xx_over_reliable_terminates_at_once() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, true);
    transmits(&mut t);
    let busy = response(t.request(), 486);
    t.handle_response(t0, busy.clone());
    assert_eq!(transmits(&mut t).len(), 1);
    assert_eq!(
        events(&mut t),
        vec![ClientEvent::Final(busy), ClientEvent::Terminated]
    );
}

#[test]
fn invite_2xx_is_passed_up_and_terminates() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    transmits(&mut t);
    let ok = response(t.request(), 200);
    t.handle_response(ms(t0, 300), ok.clone());
    assert_eq!(
        events(&mut t),
        vec![ClientEvent::Final(ok.clone()), ClientEvent::Terminated]
    );
    assert!(
        transmits(&mut t).is_empty(),
        "no ACK for 2xx from the transaction"
    );
    t.handle_response(ms(t0, 400), ok);
    assert!(events(&mut t).is_empty());
}

#[test]
fn mismatched_response_is_ignored() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    let other = request("INVITE", "z9hG4bKother");
    t.handle_response(t0, response(&other, 200));
    assert!(!t.is_terminated());
}

fn new_options(t0: Instant, reliable: bool) -> ClientTransaction {
    ClientTransaction::new(
        request("OPTIONS", "z9hG4bKopt"),
        t0,
        reliable,
        Timers::default(),
    )
    .unwrap()
}

#[test]
fn timer_e_capped_at_t2_then_timer_f() {
    let t0 = Instant::now();
    let mut t = new_options(t0, false);
    assert_eq!(t.state(), ClientState::Trying);
    transmits(&mut t);
    let sent = run_until(&mut t, t0, ms(t0, 40_000));
    // Intervals 0.5, 1, 2, 4, 4, 4 … seconds.
    assert_eq!(
        sent,
        vec![
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(
        events(&mut t),
        vec![ClientEvent::Timeout, ClientEvent::Terminated]
    );
}

#[test]
fn timer_e_is_t2_after_provisional() {
    let t0 = Instant::now();
    let mut t = new_options(t0, false);
    transmits(&mut t);
    let trying = response(t.request(), 100);
    t.handle_response(ms(t0, 100), trying.clone());
    assert_eq!(t.state(), ClientState::Proceeding);
    assert_eq!(events(&mut t), vec![ClientEvent::Provisional(trying)]);
    let sent = run_until(&mut t, t0, ms(t0, 13_000));
    assert_eq!(sent, vec![500, 4500, 8500, 12500]);
}

#[test]
fn non_invite_final_then_timer_k() {
    let t0 = Instant::now();
    let mut t = new_options(t0, false);
    transmits(&mut t);
    let ok = response(t.request(), 200);
    t.handle_response(ms(t0, 700), ok.clone());
    assert_eq!(t.state(), ClientState::Completed);
    assert_eq!(events(&mut t), vec![ClientEvent::Final(ok.clone())]);
    t.handle_response(ms(t0, 800), ok);
    assert!(events(&mut t).is_empty(), "retransmitted final absorbed");
    assert_eq!(t.poll_timeout(), Some(ms(t0, 5_700)));
    t.handle_timeout(ms(t0, 5_700));
    assert_eq!(events(&mut t), vec![ClientEvent::Terminated]);
    assert!(transmits(&mut t).is_empty());
}

#[test]
fn non_invite_reliable_terminates_on_final() {
    let t0 = Instant::now();
    let mut t = new_options(t0, true);
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_000)));
    let ok = response(t.request(), 404);
    t.handle_response(t0, ok.clone());
    assert_eq!(
        events(&mut t),
        vec![ClientEvent::Final(ok), ClientEvent::Terminated]
    );
}

#[test]
fn transport_error_terminates() {
    let t0 = Instant::now();
    let mut t = new_options(t0, false);
    t.handle_transport_error(t0);
    assert_eq!(
        events(&mut t),
        vec![ClientEvent::TransportError, ClientEvent::Terminated]
    );
    t.handle_transport_error(t0);
    assert!(events(&mut t).is_empty());
}

#[test]
fn ack_cannot_start_a_transaction() {
    let ack = request("ACK", "z9hG4bKx");
    let err = ClientTransaction::new(ack, Instant::now(), false, Timers::default()).unwrap_err();
    assert_eq!(err, LocalError::AckTransaction);
}
