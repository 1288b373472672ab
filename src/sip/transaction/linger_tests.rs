use std::time::{Duration, Instant};

use super::*;
use crate::sip::transaction::test_support::{invite, request, response};
use crate::sip::transaction::{ClientTransaction, ServerTransaction, Timers};

fn key(branch: &str) -> TransactionKey {
    TransactionKey::server(&request("OPTIONS", branch)).expect("key")
}

fn absorb(until: Instant) -> Linger {
    let answer = LingerAnswer::Absorb;
    Linger { until, answer }
}

#[test]
fn a_completed_non_invite_server_lingers_with_its_final_response() {
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bKbye");
    let mut txn = ServerTransaction::new(bye.clone(), t0, false, Timers::default()).expect("txn");
    assert_eq!(txn.linger(), None, "nothing answered yet");
    txn.send_response(t0, response(&bye, 200)).expect("200");
    let linger = txn.linger().expect("lingers");
    assert_eq!(linger.until, t0 + Duration::from_secs(32), "Timer J");
    let LingerAnswer::Resend(bytes) = linger.answer else {
        panic!("a non-INVITE re-sends its final response");
    };
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("SIP/2.0 200"), "{text}");
    assert!(text.contains("CSeq: 1 BYE"), "{text}");
}

#[test]
fn an_accepted_invite_lingers_passing_acks_and_a_proceeding_one_does_not() {
    let t0 = Instant::now();
    let mut txn = ServerTransaction::new(invite(), t0, false, Timers::default()).expect("txn");
    txn.send_response(t0, response(&invite(), 180))
        .expect("180");
    assert_eq!(txn.linger(), None, "still Proceeding");
    txn.send_response(t0, response(&invite(), 200))
        .expect("200");
    let expected = Linger {
        until: t0 + Duration::from_secs(32),
        answer: LingerAnswer::PassAck,
    };
    assert_eq!(txn.linger(), Some(expected), "RFC 6026 Accepted, Timer L");
}

#[test]
fn a_rejected_invite_lingers_only_once_confirmed() {
    let t0 = Instant::now();
    let mut txn = ServerTransaction::new(invite(), t0, false, Timers::default()).expect("txn");
    txn.send_response(t0, response(&invite(), 486))
        .expect("486");
    assert_eq!(txn.linger(), None, "Completed: it still retransmits (G)");
    txn.handle_request(t0, request("ACK", "z9hG4bKinv"));
    assert_eq!(
        txn.linger(),
        Some(absorb(t0 + Duration::from_secs(5))),
        "Confirmed, Timer I"
    );
}

#[test]
fn an_invite_client_lingers_with_its_ack_for_the_non_2xx() {
    let t0 = Instant::now();
    let inv = invite();
    let mut txn = ClientTransaction::new(inv.clone(), t0, false, Timers::default()).expect("txn");
    assert_eq!(txn.linger(), None);
    txn.handle_response(t0, response(&inv, 503));
    let linger = txn.linger().expect("Completed, Timer D");
    assert_eq!(linger.until, t0 + Duration::from_secs(32));
    let LingerAnswer::Resend(bytes) = linger.answer else {
        panic!("re-ACKs a retransmitted non-2xx");
    };
    assert!(String::from_utf8_lossy(&bytes).starts_with("ACK sip:"));
}

#[test]
fn entries_are_found_until_their_deadline_then_expire_in_order() {
    let t0 = Instant::now();
    let mut table = LingerTable::new(10);
    let long = t0 + Duration::from_secs(32);
    let short = t0 + Duration::from_secs(5);
    assert_eq!(table.insert(t0, &key("z9hG4bK1"), absorb(long), 1), None);
    assert_eq!(table.insert(t0, &key("z9hG4bK2"), absorb(short), 2), None);
    assert_eq!(table.get(&key("z9hG4bK1")).map(|(_, v)| *v), Some(1));
    assert!(!table.contains(&key("z9hG4bK3")));
    assert_eq!(table.next_deadline(), Some(short));
    assert_eq!(table.expire(t0 + Duration::from_secs(4)), Vec::<i32>::new());
    assert_eq!(table.expire(short), vec![2]);
    assert_eq!(table.next_deadline(), Some(long));
    assert_eq!(table.expire(long), vec![1]);
    assert!(table.is_empty() && table.next_deadline().is_none());
}

#[test]
fn a_key_already_lingering_keeps_its_first_entry() {
    let t0 = Instant::now();
    let mut table = LingerTable::new(10);
    let until = t0 + Duration::from_secs(32);
    assert_eq!(table.insert(t0, &key("z9hG4bK1"), absorb(until), 1), None);
    assert_eq!(
        table.insert(t0, &key("z9hG4bK1"), absorb(until), 2),
        Some(2)
    );
    assert_eq!((table.len(), table.expire(until)), (1, vec![1]));
}

#[test]
fn a_full_table_evicts_the_entry_nearest_its_deadline_and_counts_it() {
    let t0 = Instant::now();
    let mut table = LingerTable::new(3);
    let at = |s| t0 + Duration::from_secs(s);
    table.insert(t0, &key("z9hG4bK1"), absorb(at(32)), 1);
    table.insert(t0, &key("z9hG4bK2"), absorb(at(5)), 2);
    table.insert(t0, &key("z9hG4bK3"), absorb(at(32)), 3);
    assert_eq!(
        table.insert(t0, &key("z9hG4bK4"), absorb(at(32)), 4),
        Some(2)
    );
    assert_eq!(
        table.insert(t0, &key("z9hG4bK5"), absorb(at(32)), 5),
        Some(1)
    );
    assert_eq!((table.len(), table.evicted()), (3, 2));
    assert!(table.contains(&key("z9hG4bK5")) && !table.contains(&key("z9hG4bK1")));
}

#[test]
fn a_flood_of_distinct_keys_stays_within_the_bound() {
    let t0 = Instant::now();
    let mut table = LingerTable::new(1_000);
    for i in 0..10_000u64 {
        let now = t0 + Duration::from_millis(i);
        let until = now + Duration::from_secs(32);
        table.insert(now, &key(&format!("z9hG4bK{i}")), absorb(until), i);
        assert!(table.len() <= 1_000);
    }
    assert_eq!(table.evicted(), 9_000);
    assert!(table.contains(&key("z9hG4bK9999")) && !table.contains(&key("z9hG4bK8999")));
}

#[test]
fn spans_out_of_order_still_expire_in_deadline_order() {
    let t0 = Instant::now();
    let mut table = LingerTable::new(100);
    // More distinct spans than queues, some inserted behind later ones.
    for s in [20u64, 3, 11, 7, 19, 2, 13, 5, 17, 1, 12] {
        let until = t0 + Duration::from_secs(s);
        table.insert(t0, &key(&format!("z9hG4bK{s}")), absorb(until), s);
    }
    let mut order = Vec::new();
    for s in 0..=20 {
        order.extend(table.expire(t0 + Duration::from_secs(s)));
    }
    assert_eq!(order, vec![1, 2, 3, 5, 7, 11, 12, 13, 17, 19, 20]);
}

/// Filling the table to its bound never grows (rehashes) it, and a queue
/// emptied by expiry keeps its room for the next span rather than being
/// dropped and grown again.
#[test]
fn a_table_makes_room_for_its_bound_up_front_and_keeps_it() {
    let t0 = Instant::now();
    let mut table = LingerTable::new(5_000);
    let room = table.slots.capacity();
    assert!(room >= 5_000, "room for {room}");
    let long = t0 + Duration::from_secs(32);
    for i in 0..5_000u64 {
        table.insert(t0, &key(&format!("z9hG4bK{i}")), absorb(long), i);
    }
    assert_eq!((table.len(), table.evicted()), (5_000, 0));
    assert_eq!(table.slots.capacity(), room, "no rehash while filling");
    let queued = table.queues[0].order.capacity();
    assert!(queued >= 5_000);

    assert_eq!(table.expire(long).len(), 5_000);
    let short = long + Duration::from_secs(5);
    table.insert(long, &key("z9hG4bK-next"), absorb(short), 0);
    assert_eq!(table.queues.len(), 1, "the emptied queue took the new span");
    assert_eq!(table.queues[0].order.capacity(), queued);
    assert_eq!(table.next_deadline(), Some(short));
}
