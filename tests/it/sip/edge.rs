//! What is not a plain call: malformed input, other transports, counters.

use super::*;

/// Sends `msg` over UDP to ansim and returns the first response line, or
/// `None` if nothing comes back within a second.
async fn exchange(sip: SocketAddr, msg: &[u8]) -> Option<String> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(msg, sip).await.unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .map(str::to_owned)
}

fn request(method_line: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method_line}\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-edge-{}\r\n\
         From: <sip:a@127.0.0.1>;tag=e1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: edge-{}@127.0.0.1\r\n\
         CSeq: 1 {}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple(),
        method_line.split(' ').next().unwrap()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_precise_answer_and_never_a_crash() {
    let t = SipTest::start("127.0.0.1/32").await;
    // An unknown method: 501, with the request's headers copied.
    let r = exchange(t.sip, &request("FROB sip:x@127.0.0.1 SIP/2.0", "")).await;
    assert_eq!(r.as_deref(), Some("SIP/2.0 501 Not Implemented"));
    // A request whose headers can be read but is otherwise malformed: 400.
    let bad_len = String::from_utf8(request("INVITE sip:+82505@127.0.0.1 SIP/2.0", ""))
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 99");
    let r = exchange(t.sip, bad_len.as_bytes()).await;
    assert_eq!(r.as_deref().map(|l| &l[..11]), Some("SIP/2.0 400"), "{r:?}");
    // A REGISTER: we are no registrar.
    let r = exchange(t.sip, &request("REGISTER sip:127.0.0.1 SIP/2.0", "")).await;
    assert_eq!(r.as_deref(), Some("SIP/2.0 405 Method Not Allowed"));
    // A BYE for no dialog: 481.
    let r = exchange(t.sip, &request("BYE sip:x@127.0.0.1 SIP/2.0", "")).await;
    assert!(
        r.as_deref().unwrap_or("").starts_with("SIP/2.0 481"),
        "{r:?}"
    );
    // Garbage that names nobody to answer: silence.
    for junk in [
        &b"\x00\x01\x02 not sip"[..],
        b"SIP/2.0 200 OK\r\n\r\n",
        &[0xff; 1400],
    ] {
        assert_eq!(exchange(t.sip, junk).await, None);
    }
    // And ansim still works: a real call goes through.
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_call.xml"),
        CUSTOMER,
        &proxy,
    )
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_on_tcp_reaches_a_callee_on_udp() {
    let t = SipTest::start("127.0.0.1/32").await;
    let callee = uas(&t, &scenario("uas_answer.xml"), "uas");
    let target = t.sip.to_string();
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    // Its first port is taken already (as another process may take a port
    // between picking and binding): SIPp must start again on a fresh one.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let caller = Sipp::spawn(
        t.dir.path(),
        &scenario("uac_call.xml"),
        taken.local_addr().unwrap().port(),
        &[
            "-t",
            "t1",
            "-s",
            &proxy,
            "-key",
            "caller",
            CUSTOMER,
            "-mp",
            &free_udp_port().to_string(),
            &target,
        ],
        "uac",
    )
    .movable();
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller over TCP failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    assert!(uac_log.contains("TCP message received"), "{uac_log}");
    assert!(received(&uas_log, "INVITE ").starts_with(&format!("INVITE sip:{MASTER}@")));
    let calls = calls_of(&t).await;
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
    t.stop().await;
}

/// After calls of every kind, nothing is left in use: no call, no port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_and_calls_are_released_however_calls_end() {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_call.xml"),
        CUSTOMER,
        &proxy,
    )
    .await;
    run_call(
        &t,
        "uas_ring_cancel.xml",
        &scenario("uac_cancel.xml"),
        CUSTOMER,
        &proxy,
    )
    .await;
    run_call(
        &t,
        "uas_busy.xml",
        &refused_scenario(t.dir.path(), 486),
        CUSTOMER,
        &proxy,
    )
    .await;
    let stranger = uac(
        &t,
        &refused_scenario(t.dir.path(), 404),
        "+821055556666",
        &proxy,
        "stranger",
    );
    assert!(stranger.finish().await.0);

    let http = reqwest::Client::new();
    let mut text = String::new();
    for _ in 0..100 {
        text = http
            .get(format!("http://{}/metrics", t.api))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|l| l == "ansim_media_port_pairs_in_use 0")
            && text.lines().any(|l| l == "ansim_calls_active 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for line in [
        "ansim_calls_relayed_total 3",
        "ansim_calls_refused_total 1",
        "ansim_calls_active 0",
        "ansim_media_port_pairs_in_use 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    t.stop().await;
}

/// One dialog of a raw caller: its Call-ID, its From tag and the `To` it
/// sends (with our tag once it is known).
struct RawDialog<'a> {
    call_id: &'a str,
    tag: &'a str,
    to: &'a str,
}

/// A request of the raw caller at `from` in `d`.
fn caller_request(method: &str, t: &SipTest, from: SocketAddr, d: &RawDialog, cseq: u32) -> String {
    let proxy = t.session.a.proxy_number.as_str();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let body = if method == "INVITE" { sdp } else { "" };
    let content_type = if method == "INVITE" {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    let (call_id, tag, to) = (d.call_id, d.tag, d.to);
    format!(
        "{method} sip:{proxy}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{method}-{tag}\r\n\
         From: <sip:{CUSTOMER}@{from}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\nContact: <sip:{CUSTOMER}@{from}>\r\nMax-Forwards: 70\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        sip = t.sip
    )
}

/// Waits for a final response to the request whose From tag is `tag`.
async fn final_for(sock: &tokio::net::UdpSocket, tag: &str, method: &str) -> String {
    let mut buf = [0u8; 8192];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no final response to the {method} of {tag}"))
            .unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let is_final = !msg.starts_with("SIP/2.0 1");
        if is_final && header(&msg, "From").contains(tag) && header(&msg, "CSeq").ends_with(method)
        {
            return msg;
        }
    }
}

/// Two callers' INVITEs with one Call-ID (different From tags) are two
/// dialogs: each call is set up, ACKed and hung up on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dialogs_sharing_a_call_id_stay_apart() {
    let t = SipTest::start("127.0.0.1/32").await;
    let callee = Sipp::spawn(
        t.dir.path(),
        &scenario("uas_answer.xml"),
        t.uas_port,
        &["-mp", &free_udp_port().to_string(), "-m", "2"],
        "uas",
    );
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let call_id = format!("shared-{}@127.0.0.1", uuid::Uuid::new_v4().simple());
    let to = format!("<sip:{}@{}>", t.session.a.proxy_number.as_str(), t.sip);
    let mut dialogs = Vec::new();
    for tag in ["first", "second"] {
        let d = RawDialog {
            call_id: &call_id,
            tag,
            to: &to,
        };
        let invite = caller_request("INVITE", &t, me, &d, 1);
        sock.send_to(invite.as_bytes(), t.sip).await.unwrap();
    }
    for tag in ["first", "second"] {
        let ok = final_for(&sock, tag, "INVITE").await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        dialogs.push((tag, header(&ok, "To")));
    }
    assert_ne!(
        dialogs[0].1, dialogs[1].1,
        "each dialog has its own tag of ours"
    );
    for (tag, to) in &dialogs {
        let d = RawDialog {
            call_id: &call_id,
            tag,
            to,
        };
        let ack = caller_request("ACK", &t, me, &d, 1);
        sock.send_to(ack.as_bytes(), t.sip).await.unwrap();
    }
    // Hang up the first only, then the second: each BYE ends its own call.
    for (tag, to) in &dialogs {
        let d = RawDialog {
            call_id: &call_id,
            tag,
            to,
        };
        let bye = caller_request("BYE", &t, me, &d, 2);
        sock.send_to(bye.as_bytes(), t.sip).await.unwrap();
        let ok = final_for(&sock, tag, "BYE").await;
        assert!(ok.starts_with("SIP/2.0 200"), "BYE of {tag}: {ok}");
    }
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uas_ok, "callee:\n{uas_log}");
    let calls = calls_of(&t).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        assert_eq!(
            (
                c.result.map(|r| r.as_str()),
                c.hangup_side.map(|h| h.as_str())
            ),
            (Some("answered"), Some("caller")),
            "{c:?}"
        );
    }
    t.stop().await;
}
