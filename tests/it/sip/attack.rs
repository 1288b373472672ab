//! Attacks from outside, on loopback: strangers on other 127.0.0.x
//! addresses (Linux routes all of 127.0.0.0/8 to `lo`) spray RTP, flood
//! SIP and hold connections half-open, while the trunk (127.0.0.1) places
//! real calls with SIPp. Every attack has a bounded count and time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ansim::media::g711::{Codec, encode_all};
use ansim::recording::wav::goertzel_power;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::recording::{export, finished_recording, read_wav, tone, tone_scenario};
use super::*;

/// A loopback address of a stranger (never in `[trunk] allow`).
fn stranger_ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, host)
}

/// 20 ms PCMU packets of a `freq` tone, as an attacker would inject.
fn tone_packets(freq: f64, count: u16) -> Vec<Vec<u8>> {
    let pcm: Vec<i16> = (0..usize::from(count) * 160)
        .map(|i| (12000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
        .collect();
    let payload = encode_all(Codec::Pcmu, &pcm);
    (0..count)
        .map(|seq| {
            let mut p = vec![0x80, 0x00];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
            let at = usize::from(seq) * 160;
            p.extend_from_slice(&payload[at..at + 160]);
            p
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_spraying_rtp_is_neither_heard_nor_recorded() {
    const TONE_MS: u64 = 3000;
    const INTRUDER_HZ: f64 = 1500.0;
    let t = SipTest::start("127.0.0.1/32").await;
    let (first, last) = t.media_ports;

    // The intruder sprays valid RTP at every port of the range, every
    // 20 ms, from before the call until after it, and listens for anything.
    let intruder = tokio::net::UdpSocket::bind((stranger_ip(66), 0))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let heard = Arc::new(AtomicU64::new(0));
    let spray = {
        let (stop, heard) = (stop.clone(), heard.clone());
        tokio::spawn(async move {
            let packets = tone_packets(INTRUDER_HZ, 500); // at most 10 s
            let mut buf = [0u8; 2048];
            let mut sent = 0u64;
            for packet in &packets {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for port in first..=last {
                    if intruder.send_to(packet, ("127.0.0.1", port)).await.is_ok() {
                        sent += 1;
                    }
                }
                while let Ok((n, _)) = intruder.try_recv_from(&mut buf) {
                    if n > 0 {
                        heard.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (a_file, b_file) = (t.dir.path().join("a.ulaw"), t.dir.path().join("b.ulaw"));
    std::fs::write(&a_file, tone(440.0, TONE_MS)).unwrap();
    std::fs::write(&b_file, tone(880.0, TONE_MS)).unwrap();
    let uas_file = tone_scenario(t.dir.path(), "uas_tone.xml", &b_file, 0);
    let uac_file = tone_scenario(t.dir.path(), "uac_tone.xml", &a_file, TONE_MS + 300);
    let callee = Sipp::spawn(
        t.dir.path(),
        &uas_file,
        t.uas_port,
        &["-mp", &free_udp_port().to_string()],
        "uas",
    );
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let caller = uac(&t, &uac_file, CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let sprayed = spray.await.unwrap();

    assert!(
        sprayed >= 4 * 40 * 50,
        "the intruder sprayed only {sprayed} packets"
    );
    assert_eq!(
        heard.load(Ordering::Relaxed),
        0,
        "the intruder heard the call"
    );
    let foreign = metric(&metrics_text(&t).await, "ansim_media_foreign_packets_total");
    assert!(foreign > 100, "only {foreign} foreign packets were counted");

    let call_id = calls_of(&t).await.remove(0).id;
    let rec = finished_recording(&t, &call_id).await;
    assert_eq!(rec.state.as_str(), "complete");
    let out = t.dir.path().join("call.wav");
    let (code, stderr) = export(&t, &call_id, &out);
    assert_eq!(code, Some(0), "{stderr}");
    let (left, right) = read_wav(&out);
    for (side, samples, own) in [("caller", &left, 440.0), ("callee", &right, 880.0)] {
        let p_own = goertzel_power(samples, 8000, own);
        let p_intruder = goertzel_power(samples, 8000, INTRUDER_HZ);
        assert!(
            p_own > 1000.0 * p_intruder,
            "{side}: the intruder's {INTRUDER_HZ} Hz is in the recording ({p_intruder} vs {p_own})"
        );
        let heard = super::recording::audible_ms(samples);
        assert!(
            heard.abs_diff(TONE_MS) <= 100,
            "{side}: {heard} ms of its own audio, sent {TONE_MS} ms"
        );
    }
    t.stop().await;
}

/// An OPTIONS or INVITE from `from`, numbered `i`.
fn probe(i: u64, from: SocketAddr, to: SocketAddr) -> Vec<u8> {
    let method = if i.is_multiple_of(2) {
        "OPTIONS"
    } else {
        "INVITE"
    };
    format!(
        "{method} sip:+82505000001@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-flood-{i}\r\n\
         From: <sip:+821055550000@{from}>;tag=f{i}\r\nTo: <sip:+82505000001@{to}>\r\n\
         Call-ID: flood-{i}@{from}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_outside_gets_a_few_replies_and_does_not_stop_the_trunk() {
    const FLOOD: Duration = Duration::from_secs(3);
    let t = SipTest::start("127.0.0.1/32").await;
    let sip = t.sip;
    let flooder = std::net::UdpSocket::bind((stranger_ip(77), 0)).unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let flood = tokio::task::spawn_blocking(move || {
        let from = flooder.local_addr().unwrap();
        let (mut sent, mut replies) = (0u64, Vec::new());
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < FLOOD {
            for _ in 0..64 {
                if flooder.send_to(&probe(sent, from, sip), sip).is_ok() {
                    sent += 1;
                }
            }
            flooder.set_nonblocking(true).unwrap();
            while let Ok((n, _)) = flooder.recv_from(&mut buf) {
                replies.push(
                    String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            flooder.set_nonblocking(false).unwrap();
        }
        // Late replies.
        while let Ok((n, _)) = flooder.recv_from(&mut buf) {
            replies.push(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            );
        }
        (sent, replies, start.elapsed())
    });
    // Meanwhile the trunk places a call; it must connect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let started = Instant::now();
    run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_call.xml"),
        CUSTOMER,
        &proxy,
    )
    .await;
    let call_took = started.elapsed();
    let (sent, replies, flooded) = flood.await.unwrap();

    assert!(
        sent > 20_000,
        "the flood sent only {sent} requests in {flooded:?}"
    );
    let allowed = 2 + 2 * flooded.as_secs() as usize + 2;
    assert!(
        !replies.is_empty() && replies.len() <= allowed,
        "{} replies to {sent} requests (at most {allowed}): {replies:?}",
        replies.len()
    );
    assert!(
        replies.iter().all(|r| r.starts_with("SIP/2.0 403")),
        "{replies:?}"
    );
    let text = metrics_text(&t).await;
    let dropped = metric(&text, "ansim_sip_outsider_dropped_total");
    assert!(
        dropped > 10_000,
        "only {dropped} outsider requests were dropped"
    );
    assert_eq!(
        metric(&text, "ansim_sip_outsider_replies_total"),
        replies.len() as i64
    );
    // The flood can overflow ansim's socket buffer and lose the callee's
    // 200 to our BYE; SIPp's callee has exited by then, so the B-leg BYE
    // ends only at Timer F (32 s) and the record with it.
    let calls = calls_within(&t, 800).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
    eprintln!(
        "flood: {sent} requests in {flooded:?}, {} replies, {dropped} dropped; the trunk's call took {call_took:?}",
        replies.len()
    );
    t.stop().await;
}

/// Connects from `ip` to `to` and writes half a request.
async fn half_sent(ip: Ipv4Addr, to: SocketAddr) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(ip.into(), 0)).ok()?;
    let mut stream = socket.connect(to).await.ok()?;
    let half = b"INVITE sip:+82505000001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.99:5060;branch=z9hG4bK-half\r\nContent-Length: 100\r\n";
    let _ = stream.write_all(half).await;
    Some(stream)
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_over_tcp_from_outside_are_closed_and_cost_nothing() {
    const CONNECTIONS: usize = 2000;
    let t = SipTest::start("127.0.0.1/32").await;
    let before = rss_kib();
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        // Spread over a few source addresses, as a botnet would.
        let ip = stranger_ip(100 + (i % 8) as u8);
        if let Some(s) = half_sent(ip, t.sip).await {
            streams.push(s);
        }
    }
    assert_eq!(streams.len(), CONNECTIONS, "connections refused by the OS");
    let mut closed = 0;
    for s in &mut streams {
        if closed_by_server(s, Duration::from_secs(5)).await {
            closed += 1;
        }
    }
    let after = rss_kib();
    assert_eq!(closed, CONNECTIONS, "connections from outside left open");
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "memory grew by {} KiB for {CONNECTIONS} half-sent requests",
        after.saturating_sub(before)
    );
    let text = metrics_text(&t).await;
    assert_eq!(
        metric(&text, "ansim_sip_outsider_connections_total"),
        CONNECTIONS as i64
    );
    assert_eq!(metric(&text, "ansim_sip_connections_open"), 0);
    drop(streams);
    // The trunk still calls.
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_call.xml"),
        CUSTOMER,
        &proxy,
    )
    .await;
    eprintln!("{CONNECTIONS} half-sent requests: RSS {before} KiB before, {after} KiB after");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_connections_are_capped_and_closed_when_idle_but_not_while_a_call_uses_them() {
    let t = SipTest::start_with(
        "127.0.0.1/32",
        "max_tcp_connections = 4\ntcp_idle_timeout = \"1s\"",
    )
    .await;
    // Four idle connections from the trunk fill the cap; a fifth is closed
    // at once.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(half_sent(Ipv4Addr::LOCALHOST, t.sip).await.unwrap());
    }
    let mut fifth = half_sent(Ipv4Addr::LOCALHOST, t.sip).await.unwrap();
    assert!(closed_by_server(&mut fifth, Duration::from_millis(500)).await);
    // The idle ones (a half-sent request is no message) go after ~1 s.
    let started = Instant::now();
    for s in &mut idle {
        assert!(
            closed_by_server(s, Duration::from_secs(3)).await,
            "idle connection kept"
        );
    }
    let idle_closed_after = started.elapsed();
    assert!(
        idle_closed_after >= Duration::from_millis(700),
        "{idle_closed_after:?}"
    );
    let text = metrics_text(&t).await;
    assert_eq!(metric(&text, "ansim_sip_connections_over_limit_total"), 1);
    assert_eq!(metric(&text, "ansim_sip_connections_idle_closed_total"), 4);

    // A call over TCP that stays up 2.5 s (longer than the idle timeout)
    // keeps its connection: the BYE at the end arrives on it.
    let uac_file = with_test_rtp_port(t.dir.path(), "uac_call.xml", 2500);
    let callee = uas(&t, &scenario("uas_answer.xml"), "uas");
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let caller = Sipp::spawn(
        t.dir.path(),
        &uac_file,
        free_udp_port(),
        &[
            "-t",
            "t1",
            "-s",
            &proxy,
            "-key",
            "caller",
            CUSTOMER,
            "-key",
            "rtp_port",
            "4000",
            "-mp",
            &free_udp_port().to_string(),
            &t.sip.to_string(),
        ],
        "uac",
    )
    .movable();
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller over TCP failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    let calls = calls_of(&t).await;
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
    assert_eq!(calls[0].hangup_side.map(|h| h.as_str()), Some("caller"));
    eprintln!("idle trunk connections closed after {idle_closed_after:?}");
    t.stop().await;
}

/// Sends `msg` over UDP from a fresh socket and returns the first reply.
async fn first_reply(sock: &tokio::net::UdpSocket, msg: &[u8], to: SocketAddr) -> String {
    sock.send_to(msg, to).await.unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_calls_an_invite_gets_503_and_nothing_leaks() {
    let t = SipTest::start_sections("127.0.0.1/32", "", "", "[limits]\nmax_calls = 1\n").await;
    // One call in progress for 2.5 s.
    let phones = call_with_test_phones(&t).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let invite = format!(
        "INVITE sip:{proxy}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-over-1\r\n\
         From: <sip:{CUSTOMER}@{local}>;tag=over1\r\nTo: <sip:{proxy}@{sip}>\r\n\
         Call-ID: over-limit@{local}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: 54\r\n\r\n\
         v=0\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
        sip = t.sip
    );
    let reply = first_reply(&sock, invite.as_bytes(), t.sip).await;
    assert!(reply.starts_with("SIP/2.0 503"), "{reply}");
    assert!(
        header(&reply, "Retry-After").parse::<u32>().is_ok(),
        "{reply}"
    );
    // ACK the 503 (RFC 3261 §17.1.1.3), as a caller does.
    let to = header(&reply, "To");
    let ack = format!(
        "ACK sip:{proxy}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-over-1\r\n\
         From: <sip:{CUSTOMER}@{local}>;tag=over1\r\nTo: {to}\r\nCall-ID: over-limit@{local}\r\n\
         CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip = t.sip
    );
    sock.send_to(ack.as_bytes(), t.sip).await.unwrap();
    let text = metrics_text(&t).await;
    assert_eq!(metric(&text, "ansim_calls_over_limit_total"), 1);
    assert_eq!(metric(&text, "ansim_limit_max_calls"), 1);
    assert_eq!(
        metric(&text, "ansim_media_port_pairs_in_use"),
        2,
        "only the first call's"
    );

    let (uac_ok, uac_log) = phones.caller.finish().await;
    let (uas_ok, uas_log) = phones.callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    // Everything goes back: calls and ports at once, transactions when
    // their RFC 3261 timers end (Timer J of the BYE: 32 s on UDP).
    let deadline = Instant::now() + Duration::from_secs(45);
    let text = loop {
        let text = metrics_text(&t).await;
        let idle = metric(&text, "ansim_calls_active") == 0
            && metric(&text, "ansim_media_port_pairs_in_use") == 0
            && metric(&text, "ansim_sip_transactions") == 0;
        if idle || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for name in [
        "ansim_calls_active",
        "ansim_media_port_pairs_in_use",
        "ansim_sip_transactions",
    ] {
        assert_eq!(metric(&text, name), 0, "{name} left in use");
    }
    // And a call is possible again.
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
