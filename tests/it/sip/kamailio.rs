//! `deploy/kamailio/kamailio.cfg`, the dispatcher shipped for several
//! nodes: Kamailio itself must accept it.

use std::path::Path;

use super::dispatcher::Dispatcher;

/// `kamailio -c` on the shipped config, listening on loopback, with the
/// shipped node list.
#[test]
fn the_shipped_dispatcher_config_is_accepted_by_kamailio() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kamailio");
    let list = format!(
        "DISPATCHER_LIST=\"{}\"",
        dir.join("dispatcher.list").display()
    );
    let out = std::process::Command::new("kamailio")
        .arg("-c")
        .arg("-f")
        .arg(dir.join("kamailio.cfg"))
        .args(["-A", "LISTEN=udp:127.0.0.1:15060", "-A", &list])
        .output()
        .expect("kamailio is installed (the kamailio package)");
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kamailio -c refused the config:\n{log}"
    );
    assert!(log.contains("config file ok"), "{log}");
    assert!(log.contains("127.0.0.1 [127.0.0.1]:15060"), "{log}");
}

/// A call placed through Kamailio reaches the callee through ansim, and
/// its ACK and BYE (in-dialog) reach the node that owns the dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_dispatcher_reaches_the_callee_and_ends() {
    let t = super::SipTest::start("127.0.0.1/32").await;
    let k = Dispatcher::start(t.dir.path(), &[t.sip]).await;
    call_through(&t, &k).await;
    k.stop().await;
    t.stop().await;
}

/// With a dead node first in the list, every call still reaches the live
/// one: the dispatcher fails over on no answer (and then probes the dead
/// one out of the set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_fails_over_from_a_dead_node() {
    let t = super::SipTest::start("127.0.0.1/32").await;
    // A port nobody answers on: bound, never read.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let k = Dispatcher::start(t.dir.path(), &[dead.local_addr().unwrap(), t.sip]).await;
    call_through(&t, &k).await;
    // The dead node was tried first: its INVITE is waiting in the socket.
    dead.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8192];
    let mut tried = false;
    while let Ok(len) = dead.recv(&mut buf) {
        tried |= buf[..len].starts_with(b"INVITE ");
    }
    assert!(tried, "the dead node got the INVITE first");
    k.stop().await;
    t.stop().await;
}

/// One SIPp call through `k` to the callee behind `t`.
async fn call_through(t: &super::SipTest, k: &Dispatcher) {
    use super::*;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let callee = uas(t, &scenario("uas_answer.xml"), "uas");
    let caller = k.call(t.dir.path(), &scenario("uac_call.xml"), &proxy, &[], "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    let bye = messages(&uac_log, "sent")
        .into_iter()
        .find(|m| m.starts_with("BYE"))
        .unwrap();
    assert!(
        bye.contains("Route: <sip:127.0.0.1:"),
        "via the dispatcher: {bye}"
    );
    let invite = received(&uas_log, "INVITE ");
    assert!(
        invite.starts_with(&format!("INVITE sip:{MASTER}@")),
        "{invite}"
    );
    let calls = calls_of(t).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
}

/// `tests/sipp/uac_routed.xml`, the carrier of the README's docker-compose
/// call, is `uac_call.xml` as the harness routes it (ACK and BYE along the
/// Record-Route): the shipped copy cannot drift from what the tests use.
#[test]
fn the_shipped_routed_scenario_is_the_harness_one() {
    let dir = tempfile::tempdir().unwrap();
    let made = super::dispatcher::routed(dir.path(), &super::scenario("uac_call.xml"));
    let made = std::fs::read_to_string(made).unwrap();
    let shipped = std::fs::read_to_string(super::scenario("uac_routed.xml")).unwrap();
    assert_eq!(shipped, made, "regenerate tests/sipp/uac_routed.xml");
    assert!(made.contains("ACK [next_url]") && made.contains("BYE [next_url]"));
}
