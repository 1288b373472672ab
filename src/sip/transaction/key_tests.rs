use super::test_support::{invite, request, response};
use super::*;

#[test]
fn ack_matches_invite_server_key() {
    let inv = invite();
    let ack = request("ACK", "z9hG4bKinv");
    assert_eq!(TransactionKey::server(&inv), TransactionKey::server(&ack));
}

#[test]
fn cancel_is_its_own_transaction_but_targets_the_invite() {
    let inv_key = TransactionKey::server(&invite()).unwrap();
    let cancel_key = TransactionKey::server(&request("CANCEL", "z9hG4bKinv")).unwrap();
    assert_ne!(cancel_key, inv_key);
    assert_eq!(cancel_key.cancel_target(), Some(inv_key.clone()));
    assert_eq!(inv_key.cancel_target(), None);
}

#[test]
fn different_branch_or_sent_by_differs() {
    let a = TransactionKey::server(&request("BYE", "z9hG4bK1")).unwrap();
    let b = TransactionKey::server(&request("BYE", "z9hG4bK2")).unwrap();
    assert_ne!(a, b);
    let mut other_host = request("BYE", "z9hG4bK1");
    for h in other_host.headers.iter_mut() {
        if let rsip::Header::Via(v) = h {
            *v = rsip::headers::Via::from("SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK1");
        }
    }
    assert_ne!(a, TransactionKey::server(&other_host).unwrap());
}

#[test]
fn sent_by_is_case_insensitive() {
    let mut req = request("BYE", "z9hG4bK1");
    for h in req.headers.iter_mut() {
        if let rsip::Header::Via(v) = h {
            *v = rsip::headers::Via::from("SIP/2.0/UDP HOST.example.com;branch=z9hG4bK1");
        }
    }
    let TransactionKey::Server { sent_by, .. } = TransactionKey::server(&req).unwrap() else {
        panic!("expected server key");
    };
    assert_eq!(sent_by, "host.example.com");
}

#[test]
fn response_matches_client_key() {
    let inv = invite();
    let key = TransactionKey::client(&inv).unwrap();
    assert_eq!(
        TransactionKey::from_response(&response(&inv, 180)),
        Ok(key.clone())
    );
    let cancel = request("CANCEL", "z9hG4bKinv");
    assert_ne!(
        TransactionKey::from_response(&response(&cancel, 200)),
        Ok(key)
    );
}

#[test]
fn legacy_branch_falls_back_and_ack_matches() {
    let inv = request("INVITE", "oldbranch");
    let ack = request("ACK", "oldbranch");
    let key = TransactionKey::server(&inv).unwrap();
    assert!(matches!(key, TransactionKey::Legacy { .. }));
    assert_eq!(TransactionKey::server(&ack).unwrap(), key);
    assert_ne!(
        TransactionKey::server(&request("BYE", "oldbranch")).unwrap(),
        key
    );
}

#[test]
fn key_errors() {
    let mut req = invite();
    req.headers.retain(|h| !matches!(h, rsip::Header::Via(_)));
    assert_eq!(TransactionKey::server(&req), Err(KeyError::Via));
    assert_eq!(TransactionKey::client(&req), Err(KeyError::Via));
}
