use std::time::Instant;

use rsip::{SipMessage, StatusCode};

use super::*;
use crate::sip::transaction::test_support::{invite, ms, request, response};
use crate::sip::transaction::{TransactionKey, TwoXxEvent, TwoXxRetransmitter};

fn transmits(t: &mut ServerTransaction) -> Vec<SipMessage> {
    std::iter::from_fn(|| t.poll_transmit())
        .map(|t| t.message)
        .collect()
}

fn events(t: &mut ServerTransaction) -> Vec<ServerEvent> {
    std::iter::from_fn(|| t.poll_event()).collect()
}

fn codes(messages: &[SipMessage]) -> Vec<u16> {
    messages
        .iter()
        .filter_map(|m| match m {
            SipMessage::Response(r) => Some(r.status_code.code()),
            SipMessage::Request(_) => None,
        })
        .collect()
}

fn run_until(t: &mut ServerTransaction, t0: Instant, end: Instant) -> Vec<u128> {
    let mut sent = Vec::new();
    while let Some(at) = t.poll_timeout().filter(|at| *at <= end) {
        t.handle_timeout(at);
        for _ in transmits(t) {
            sent.push((at - t0).as_millis());
        }
    }
    sent
}

fn new_invite(t0: Instant, reliable: bool) -> ServerTransaction {
    ServerTransaction::new(invite(), t0, reliable, Timers::default()).unwrap()
}

#[test]
fn trying_sent_after_200ms_if_tu_silent() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    assert!(transmits(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), Some(ms(t0, 200)));
    t.handle_timeout(ms(t0, 200));
    assert_eq!(codes(&transmits(&mut t)), vec![100]);
    // A retransmitted INVITE gets the 100 again.
    t.handle_request(ms(t0, 500), invite());
    assert_eq!(codes(&transmits(&mut t)), vec![100]);
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn no_automatic_trying_if_tu_answers_first() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    t.send_response(ms(t0, 50), response(t.request(), 180))
        .unwrap();
    t.handle_timeout(ms(t0, 200));
    assert_eq!(codes(&transmits(&mut t)), vec![180]);
}

#[test]
fn zero_trying_delay_sends_at_once() {
    let timers = Timers {
        trying_delay: std::time::Duration::ZERO,
        ..Timers::default()
    };
    let mut t = ServerTransaction::new(invite(), Instant::now(), true, timers).unwrap();
    assert_eq!(codes(&transmits(&mut t)), vec![100]);
}

#[test]
fn retransmitted_invite_gets_last_provisional() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    t.send_response(t0, response(t.request(), 183)).unwrap();
    transmits(&mut t);
    t.handle_request(ms(t0, 500), invite());
    assert_eq!(codes(&transmits(&mut t)), vec![183]);
    assert!(events(&mut t).is_empty());
}

#[test]
fn non_2xx_retransmitted_by_g_until_timer_h() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    t.send_response(t0, response(t.request(), 486)).unwrap();
    assert_eq!(t.state(), ServerState::Completed);
    assert_eq!(codes(&transmits(&mut t)), vec![486]);
    let sent = run_until(&mut t, t0, ms(t0, 40_000));
    assert_eq!(
        sent,
        vec![
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(
        events(&mut t),
        vec![ServerEvent::Timeout, ServerEvent::Terminated]
    );
}

#[test]
fn retransmitted_invite_in_completed_gets_final() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    t.send_response(t0, response(t.request(), 404)).unwrap();
    transmits(&mut t);
    t.handle_request(ms(t0, 100), invite());
    assert_eq!(codes(&transmits(&mut t)), vec![404]);
}

#[test]
fn ack_stops_g_and_timer_i_terminates() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    t.send_response(t0, response(t.request(), 486)).unwrap();
    transmits(&mut t);
    t.handle_timeout(ms(t0, 500));
    assert_eq!(transmits(&mut t).len(), 1);
    t.handle_request(ms(t0, 700), request("ACK", "z9hG4bKinv"));
    assert_eq!(t.state(), ServerState::Confirmed);
    assert!(events(&mut t).is_empty(), "ACK for non-2xx is absorbed");
    assert_eq!(t.poll_timeout(), Some(ms(t0, 5_700)));
    t.handle_request(ms(t0, 800), request("ACK", "z9hG4bKinv"));
    assert!(transmits(&mut t).is_empty());
    t.handle_timeout(ms(t0, 5_700));
    assert_eq!(events(&mut t), vec![ServerEvent::Terminated]);
}

#[test]
fn reliable_non_2xx_no_g_and_ack_terminates() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, true);
    t.send_response(t0, response(t.request(), 486)).unwrap();
    transmits(&mut t);
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_000)), "only timer H");
    t.handle_request(ms(t0, 10), request("ACK", "z9hG4bKinv"));
    assert_eq!(events(&mut t), vec![ServerEvent::Terminated]);
}

#[test]
fn two_xx_goes_to_accepted_then_timer_l() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    let ok = response(t.request(), 200);
    t.send_response(t0, ok.clone()).unwrap();
    assert_eq!(t.state(), ServerState::Accepted);
    assert_eq!(codes(&transmits(&mut t)), vec![200]);
    // Retransmitted INVITE: absorbed (no resend) but reported.
    t.handle_request(ms(t0, 500), invite());
    assert!(transmits(&mut t).is_empty());
    assert_eq!(
        events(&mut t),
        vec![ServerEvent::InviteRetransmission(invite())]
    );
    // The TU may pass 2xx retransmissions through the transaction.
    t.send_response(ms(t0, 500), ok).unwrap();
    assert_eq!(codes(&transmits(&mut t)), vec![200]);
    // A matching ACK is passed up.
    let ack = request("ACK", "z9hG4bKinv");
    t.handle_request(ms(t0, 600), ack.clone());
    assert_eq!(events(&mut t), vec![ServerEvent::Ack(ack)]);
    assert!(
        t.send_response(ms(t0, 700), response(t.request(), 486))
            .is_err()
    );
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_000)));
    t.handle_timeout(ms(t0, 32_000));
    assert_eq!(events(&mut t), vec![ServerEvent::Terminated]);
}

#[test]
fn two_xx_retransmitter_schedule_and_ack() {
    let t0 = Instant::now();
    let ok = response(&invite(), 200);
    let mut r = TwoXxRetransmitter::new(ok.clone(), t0, Timers::default());
    assert!(
        r.poll_transmit().is_none(),
        "first 2xx goes through the transaction"
    );
    let mut sent = Vec::new();
    while let Some(at) = r.poll_timeout().filter(|at| *at <= ms(t0, 12_000)) {
        r.handle_timeout(at);
        while let Some(tx) = r.poll_transmit() {
            assert_eq!(tx.message, SipMessage::Response(ok.clone()));
            sent.push((at - t0).as_millis());
        }
    }
    assert_eq!(sent, vec![500, 1500, 3500, 7500, 11500]);
    r.ack_received();
    assert!(r.is_finished());
    assert_eq!(r.poll_timeout(), None);
    r.handle_timeout(ms(t0, 40_000));
    assert!(r.poll_transmit().is_none());
    assert!(r.poll_event().is_none());
}

#[test]
fn two_xx_retransmitter_gives_up_at_64_t1() {
    let t0 = Instant::now();
    let mut r = TwoXxRetransmitter::new(response(&invite(), 200), t0, Timers::default());
    let mut last = t0;
    while let Some(at) = r.poll_timeout() {
        r.handle_timeout(at);
        last = at;
    }
    assert_eq!(last, ms(t0, 32_000));
    assert_eq!(r.poll_event(), Some(TwoXxEvent::AckTimeout));
    assert!(r.is_finished());
}

#[test]
fn cancel_after_200_does_not_touch_the_invite() {
    let t0 = Instant::now();
    let mut inv = new_invite(t0, false);
    inv.send_response(t0, response(inv.request(), 200)).unwrap();
    transmits(&mut inv);
    let cancel = request("CANCEL", "z9hG4bKinv");
    let cancel_key = TransactionKey::server(&cancel).unwrap();
    assert_ne!(&cancel_key, inv.key());
    assert_eq!(cancel_key.cancel_target().as_ref(), Some(inv.key()));
    // The INVITE transaction ignores the CANCEL even if handed it.
    inv.handle_request(ms(t0, 10), cancel.clone());
    assert_eq!(inv.state(), ServerState::Accepted);
    assert!(transmits(&mut inv).is_empty() && events(&mut inv).is_empty());
    // The B2BUA answers the CANCEL with 200 on its own transaction, no 487.
    let mut c = ServerTransaction::new(cancel, ms(t0, 10), false, Timers::default()).unwrap();
    c.send_response(ms(t0, 10), response(c.request(), 200))
        .unwrap();
    assert_eq!(codes(&transmits(&mut c)), vec![200]);
    assert_eq!(inv.state(), ServerState::Accepted);
}

#[test]
fn non_invite_absorbs_retransmits_and_timer_j() {
    let t0 = Instant::now();
    let mut t =
        ServerTransaction::new(request("BYE", "z9hG4bKbye"), t0, false, Timers::default()).unwrap();
    assert_eq!(t.state(), ServerState::Trying);
    assert_eq!(t.poll_timeout(), None, "no automatic 100 for non-INVITE");
    t.handle_request(ms(t0, 100), request("BYE", "z9hG4bKbye"));
    assert!(transmits(&mut t).is_empty(), "nothing to resend in Trying");
    t.send_response(ms(t0, 200), response(t.request(), 200))
        .unwrap();
    assert_eq!(t.state(), ServerState::Completed);
    assert_eq!(codes(&transmits(&mut t)), vec![200]);
    t.handle_request(ms(t0, 300), request("BYE", "z9hG4bKbye"));
    assert_eq!(codes(&transmits(&mut t)), vec![200]);
    let second_final = t.send_response(ms(t0, 400), response(t.request(), 500));
    assert!(matches!(second_final, Err(LocalError::InvalidState { .. })));
    assert_eq!(t.poll_timeout(), Some(ms(t0, 32_200)));
    t.handle_timeout(ms(t0, 32_200));
    assert_eq!(events(&mut t), vec![ServerEvent::Terminated]);
}

#[test]
fn non_invite_reliable_terminates_on_final() {
    let t0 = Instant::now();
    let mut t = ServerTransaction::new(request("OPTIONS", "z9hG4bKo"), t0, true, Timers::default())
        .unwrap();
    t.send_response(t0, response(t.request(), 100)).unwrap();
    assert_eq!(t.state(), ServerState::Proceeding);
    t.send_response(t0, response(t.request(), 200)).unwrap();
    assert_eq!(codes(&transmits(&mut t)), vec![100, 200]);
    assert_eq!(events(&mut t), vec![ServerEvent::Terminated]);
}

#[test]
fn invalid_status_and_transport_error() {
    let t0 = Instant::now();
    let mut t = new_invite(t0, false);
    let bad = rsip::Response {
        status_code: StatusCode::Other(99, "x".into()),
        ..response(t.request(), 200)
    };
    assert_eq!(t.send_response(t0, bad), Err(LocalError::InvalidStatus(99)));
    t.handle_transport_error(t0);
    assert_eq!(
        events(&mut t),
        vec![ServerEvent::TransportError, ServerEvent::Terminated]
    );
}
