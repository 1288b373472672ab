//! Call flows: who reaches whom, what each side sees, how calls end.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_calls_master_and_nothing_leaks() {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.a.proxy_number.as_str();
    let (uac_log, uas_log) = run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_call.xml"),
        CUSTOMER,
        proxy,
    )
    .await;

    // What the callee received: the master's number in the Request-URI, the
    // proxy number the master holds as caller ID, nothing of the caller.
    let invite = received(&uas_log, "INVITE ");
    assert!(
        invite.starts_with(&format!("INVITE sip:{MASTER}@")),
        "{invite}"
    );
    let from = invite.lines().find(|l| l.starts_with("From:")).unwrap();
    assert!(
        from.contains(&format!("sip:{}@", t.session.b.proxy_number.as_str())),
        "{from}"
    );
    let uac_invite = messages(&uac_log, "sent")
        .into_iter()
        .find(|m| m.starts_with("INVITE"))
        .unwrap();
    let a_call_id = header(&uac_invite, "Call-ID");
    let a_branch = uac_invite
        .split("branch=")
        .nth(1)
        .unwrap()
        .split(['\r', '\n', ';'])
        .next()
        .unwrap()
        .to_owned();
    let a_from_tag = header(&uac_invite, "From")
        .split("tag=")
        .nth(1)
        .unwrap()
        .to_owned();
    let a_contact = header(&uac_invite, "Contact");
    let a_hostport = a_contact
        .split('@')
        .nth(1)
        .unwrap()
        .trim_end_matches('>')
        .to_owned();
    for secret in [
        "821012345678",
        a_call_id.as_str(),
        a_branch.as_str(),
        a_from_tag.as_str(),
        a_hostport.as_str(),
        "Secret Caller",
        "CallerPhone",
    ] {
        assert!(
            !invite.contains(secret),
            "B-leg INVITE leaks {secret:?}:\n{invite}"
        );
    }
    for line in invite
        .lines()
        .filter(|l| l.starts_with("c=") || l.starts_with("o="))
    {
        assert!(
            line.ends_with("IN IP4 127.0.0.1"),
            "SDP address not ours: {line}"
        );
    }
    let m = invite.lines().find(|l| l.starts_with("m=audio")).unwrap();
    let port: u16 = m.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        (t.media_ports.0..=t.media_ports.1).contains(&port),
        "SDP port not from ansim's range: {m}"
    );

    // What the caller received in the 200: nothing of the callee.
    let ok = received(&uac_log, "SIP/2.0 200");
    for secret in [
        "821098765432",
        "CalleePBX",
        &format!("127.0.0.1:{}", t.uas_port),
    ] {
        assert!(
            !ok.contains(secret),
            "200 to the caller leaks {secret:?}:\n{ok}"
        );
    }

    let calls = calls_of(&t).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(
        (
            c.direction.as_str(),
            c.result.map(|r| r.as_str()),
            c.hangup_side.map(|h| h.as_str())
        ),
        ("a_to_b", Some("answered"), Some("caller"))
    );
    assert!(c.ring_at.is_some() && c.answer_at.is_some() && c.end_at >= c.answer_at);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_calls_customer_back() {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.b.proxy_number.as_str();
    let (_, uas_log) = run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_call.xml"),
        MASTER,
        proxy,
    )
    .await;
    let invite = received(&uas_log, "INVITE ");
    assert!(
        invite.starts_with(&format!("INVITE sip:{CUSTOMER}@")),
        "{invite}"
    );
    assert!(
        header(&invite, "From").contains(&format!("sip:{}@", t.session.a.proxy_number.as_str()))
    );
    assert!(!invite.contains("821098765432"));
    let calls = calls_of(&t).await;
    assert_eq!(calls[0].direction, "b_to_a");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_caller_gets_the_configured_status() {
    let t = SipTest::start("127.0.0.1/32").await;
    let stranger = "+821055556666";
    let caller = uac(
        &t,
        &refused_scenario(t.dir.path(), 404),
        stranger,
        t.session.a.proxy_number.as_str(),
        "uac",
    );
    let (ok, log) = caller.finish().await;
    assert!(ok, "expected 404:\n{log}");
    let text = metrics_text(&t).await;
    assert!(
        text.contains("ansim_out_of_session_total{outcome=\"rejected\"} 1"),
        "{text}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_not_allowed_gets_403() {
    let t = SipTest::start("127.0.0.2/32").await;
    let caller = uac(
        &t,
        &refused_scenario(t.dir.path(), 403),
        CUSTOMER,
        t.session.a.proxy_number.as_str(),
        "uac",
    );
    let (ok, log) = caller.finish().await;
    assert!(ok, "expected 403:\n{log}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_hangs_up() {
    let (t, c) = one_call("uas_hangup.xml", &scenario("uac_hungup.xml")).await;
    assert_eq!(
        (
            c.result.map(|r| r.as_str()),
            c.hangup_side.map(|h| h.as_str())
        ),
        (Some("answered"), Some("callee"))
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels_before_answer() {
    let (t, c) = one_call("uas_ring_cancel.xml", &scenario("uac_cancel.xml")).await;
    assert_eq!(
        (c.result.map(|r| r.as_str()), c.sip_status),
        (Some("cancelled"), Some(487))
    );
    assert!(c.ring_at.is_some() && c.answer_at.is_none());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_is_busy_for_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (t, c) = one_call("uas_busy.xml", &refused_scenario(dir.path(), 486)).await;
    assert_eq!(
        (c.result.map(|r| r.as_str()), c.sip_status),
        (Some("busy"), Some(486))
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_is_given_up_with_480() {
    let t = SipTest::start_with("127.0.0.1/32", "no_answer_timeout = \"1s\"").await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    run_call(
        &t,
        "uas_ring_cancel.xml",
        &refused_scenario(t.dir.path(), 480),
        CUSTOMER,
        &proxy,
    )
    .await;
    let calls = calls_of(&t).await;
    assert_eq!(
        (
            calls[0].result.map(|r| r.as_str()),
            calls[0].sip_status,
            calls[0].hangup_side.map(|h| h.as_str())
        ),
        (Some("no_answer"), Some(480), Some("system"))
    );
    t.stop().await;
}

/// With `[sip] shards = 2`, calls land on both switches (each B-leg
/// Call-ID hashes to the switch that made it), and every message of both
/// legs reaches the switch owning the call: all calls complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_two_shards_and_all_complete() {
    // 16 calls: all on one shard by chance once in 32,768 runs.
    const CALLS: usize = 16;
    let t = SipTest::start_with("127.0.0.1/32", "shards = 2").await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let (count, media) = (CALLS.to_string(), free_udp_port().to_string());
    let callee = Sipp::spawn(
        t.dir.path(),
        &scenario("uas_answer.xml"),
        t.uas_port,
        &["-mp", &media, "-m", &count],
        "uas",
    )
    .movable();
    let (target, caller_media) = (t.sip.to_string(), free_udp_port().to_string());
    let caller = Sipp::spawn(
        t.dir.path(),
        &scenario("uac_call.xml"),
        free_udp_port(),
        &[
            "-s",
            &proxy,
            "-key",
            "caller",
            CUSTOMER,
            "-mp",
            &caller_media,
            "-m",
            &count,
            &target,
        ],
        "uac",
    )
    .movable();
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    let mut per_shard = [0usize; 2];
    for invite in messages(&uas_log, "received")
        .iter()
        .filter(|m| m.starts_with("INVITE "))
    {
        per_shard[ansim::b2bua::shard_of(header(invite, "Call-ID"), 2)] += 1;
    }
    assert_eq!(per_shard.iter().sum::<usize>(), CALLS, "{per_shard:?}");
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    let calls = calls_of(&t).await;
    assert_eq!(calls.len(), CALLS);
    assert!(
        calls
            .iter()
            .all(|c| c.result.map(|r| r.as_str()) == Some("answered"))
    );
    t.stop().await;
}

/// With `[sip] shards = 1` the one switch takes the transports' queues
/// itself, with no hand-off: a call goes through as with more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_takes_the_transports_queues_itself() {
    let t = SipTest::start_with("127.0.0.1/32", "shards = 1").await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_call.xml"),
        CUSTOMER,
        &proxy,
    )
    .await;
    let calls = calls_of(&t).await;
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
    t.stop().await;
}
