//! Media: SDP rewriting on hold and early media, RTP through the relay.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_unhold_cross_with_our_addresses() {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.a.proxy_number.as_str();
    let (uac_log, uas_log) = run_call(
        &t,
        "uas_hold.xml",
        &scenario("uac_hold.xml"),
        CUSTOMER,
        proxy,
    )
    .await;
    // Both scenarios check the directions themselves (check_it); here: the
    // re-INVITEs and their answers carry ansim's address and ports only.
    let reinvites: Vec<_> = messages(&uas_log, "received")
        .into_iter()
        .filter(|m| m.starts_with("INVITE"))
        .collect();
    assert_eq!(reinvites.len(), 3, "initial INVITE and two re-INVITEs");
    let first_port = sdp_media(&reinvites[0]).1;
    for m in &reinvites {
        assert_eq!(sdp_media(m), ("127.0.0.1".to_owned(), first_port), "{m}");
    }
    assert!(reinvites[1].contains("a=sendonly") && reinvites[2].contains("a=sendrecv"));
    let answers: Vec<_> = messages(&uac_log, "received")
        .into_iter()
        .filter(|m| m.starts_with("SIP/2.0 200") && m.contains("m=audio"))
        .collect();
    assert_eq!(answers.len(), 3);
    let a_port = sdp_media(&answers[0]).1;
    assert_ne!(a_port, first_port, "each leg has its own relay port");
    for m in &answers {
        assert_eq!(sdp_media(m), ("127.0.0.1".to_owned(), a_port), "{m}");
    }
    let calls = calls_of(&t).await;
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_reaches_the_caller_through_our_ports() {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.a.proxy_number.as_str();
    let (uac_log, uas_log) = run_call(
        &t,
        "uas_early_media.xml",
        &scenario("uac_call.xml"),
        CUSTOMER,
        proxy,
    )
    .await;
    let early = received(&uac_log, "SIP/2.0 183");
    let (addr, port) = sdp_media(&early);
    assert_eq!(addr, "127.0.0.1");
    let callee_sent = messages(&uas_log, "sent")
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 183"))
        .unwrap();
    assert_ne!(
        port,
        sdp_media(&callee_sent).1,
        "the callee's own port must not reach the caller"
    );
    assert_eq!(
        sdp_media(&received(&uac_log, "SIP/2.0 200")).1,
        port,
        "the answer keeps the early-media port"
    );
    let calls = calls_of(&t).await;
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_flows_both_ways_through_ansim_unchanged() {
    const PACKETS: u16 = 50;
    let t = SipTest::start("127.0.0.1/32").await;
    let PhoneCall {
        phone_a,
        phone_b,
        relay_a,
        relay_b,
        caller,
        callee,
    } = call_with_test_phones(&t).await;

    let a_packets: Vec<_> = (0..PACKETS).map(|s| rtp_packet(s, 0xA, 0x55)).collect();
    let b_packets: Vec<_> = (0..PACKETS).map(|s| rtp_packet(s, 0xB, 0xAA)).collect();
    for p in &b_packets {
        phone_b.send_to(p, ("127.0.0.1", relay_b)).await.unwrap();
    }
    for p in &a_packets {
        phone_a.send_to(p, ("127.0.0.1", relay_a)).await.unwrap();
    }
    let at_b = receive_all(&phone_b, a_packets.len()).await;
    let at_a = receive_all(&phone_a, b_packets.len()).await;
    assert_eq!(
        at_b.len(),
        a_packets.len(),
        "packets from the caller reaching the callee"
    );
    assert_eq!(
        at_a.len(),
        b_packets.len(),
        "packets from the callee reaching the caller"
    );
    assert_eq!(
        at_b.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        a_packets,
        "payload bytes unchanged, in order"
    );
    assert_eq!(
        at_a.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        b_packets
    );
    // Each phone hears the other only from ansim's port on its own leg.
    assert!(
        at_b.iter().all(|(_, from)| from.port() == relay_b),
        "callee hears ansim's B-leg port"
    );
    assert!(
        at_a.iter().all(|(_, from)| from.port() == relay_a),
        "caller hears ansim's A-leg port"
    );

    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
    t.stop().await;
}

/// Phones behind NAT send from another address than their SDP's: with
/// `[media] source = "sdp"` they are strangers, with `"learn"` they are
/// latched in the window after the offer/answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natted_phones_are_heard_only_with_the_learn_policy() {
    for (policy, heard) in [("sdp", false), ("learn", true)] {
        let media = format!("source = \"{policy}\"");
        let t = SipTest::start_sections("127.0.0.1/32", "", &media, "").await;
        let call = call_with_phones_at(&t, "127.0.0.41", "127.0.0.42").await;
        // Until a natted phone has sent, nothing can reach it (its SDP
        // names an address it does not receive on): both say hello first.
        let hello = rtp_packet(999, 0xC, 0);
        call.phone_a
            .send_to(&hello, ("127.0.0.1", call.relay_a))
            .await
            .unwrap();
        call.phone_b
            .send_to(&hello, ("127.0.0.1", call.relay_b))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut buf = [0u8; 2048];
        while call.phone_a.try_recv_from(&mut buf).is_ok()
            || call.phone_b.try_recv_from(&mut buf).is_ok()
        {}
        let from_b: Vec<_> = (0..20).map(|s| rtp_packet(s, 0xB, 0xAA)).collect();
        let from_a: Vec<_> = (0..20).map(|s| rtp_packet(s, 0xA, 0x55)).collect();
        for p in &from_b {
            call.phone_b
                .send_to(p, ("127.0.0.1", call.relay_b))
                .await
                .unwrap();
        }
        for p in &from_a {
            call.phone_a
                .send_to(p, ("127.0.0.1", call.relay_a))
                .await
                .unwrap();
        }
        let at_b = receive_all(&call.phone_b, from_a.len()).await;
        let at_a = receive_all(&call.phone_a, from_b.len()).await;
        if heard {
            assert_eq!(
                at_b.len(),
                from_a.len(),
                "{policy}: callee hears the caller"
            );
            assert_eq!(
                at_a.len(),
                from_b.len(),
                "{policy}: caller hears the callee"
            );
        } else {
            assert!(
                at_a.is_empty() && at_b.is_empty(),
                "{policy}: strangers relayed"
            );
            let text = metrics_text(&t).await;
            assert!(metric(&text, "ansim_media_foreign_packets_total") >= 40);
        }
        let (uac_ok, uac_log) = call.caller.finish().await;
        let (uas_ok, uas_log) = call.callee.finish().await;
        assert!(uac_ok && uas_ok, "caller:\n{uac_log}\ncallee:\n{uas_log}");
        t.stop().await;
    }
}
