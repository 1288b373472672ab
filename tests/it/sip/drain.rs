//! SIGTERM with `[sip] drain_timeout`: new calls and OPTIONS get 503 (so a
//! dispatcher moves them to another node) while the call in progress
//! finishes normally; then ansim stops.

use super::*;

/// Sends one OPTIONS to `sip` and returns the status line of the answer.
async fn probe(sip: SocketAddr) -> String {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:ping@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-drain\r\n\
         From: <sip:probe@{local}>;tag=d\r\nTo: <sip:ping@{sip}>\r\nCall-ID: drain@{local}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), sip).await.unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an answer to OPTIONS")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_answers_503_while_its_call_finishes() {
    let mut t = SipTest::start_with("127.0.0.1/32", "drain_timeout = \"20s\"").await;
    assert!(probe(t.sip).await.starts_with("SIP/2.0 200"));
    // A call that stays up for 3 s after it is answered.
    let long = std::fs::read_to_string(scenario("uac_call.xml"))
        .unwrap()
        .replace(
            "<pause milliseconds=\"300\"/>",
            "<pause milliseconds=\"3000\"/>",
        );
    let long_file = t.dir.path().join("uac_long.xml");
    std::fs::write(&long_file, long).unwrap();
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let callee = uas(&t, &scenario("uas_answer.xml"), "uas");
    let caller = uac(&t, &long_file, CUSTOMER, &proxy, "uac");
    let answered = async {
        loop {
            let calls = t.store.list_calls(&t.session.id).await.unwrap();
            if calls.iter().any(|c| c.answer_at.is_some()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answered)
        .await
        .expect("the call was answered");

    t.begin_stop();
    let mut status = String::new();
    for _ in 0..50 {
        status = probe(t.sip).await;
        if status.starts_with("SIP/2.0 503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(status.starts_with("SIP/2.0 503"), "{status}");
    // The call in progress ends as its parties end it.
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    assert!(
        t.stopped_within(Duration::from_secs(5)).await,
        "ansim stops once its last call has ended, long before drain_timeout"
    );
    let calls = t.store.list_calls(&t.session.id).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].result.map(|r| r.as_str()),
        Some("answered"),
        "{calls:?}"
    );
}
