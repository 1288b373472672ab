//! Two ansim nodes (127.0.0.11 and 127.0.0.12) behind Kamailio with the
//! shipped dispatcher config, on one PostgreSQL database, one key
//! directory and one recording store, with SIPp as the carrier sending
//! every call to Kamailio and as the callee trunk behind both nodes.
//! Prints its measurements (`cargo test … -- --nocapture`).

use std::time::Instant;

use super::cluster::{Cluster, Node};
use super::dispatcher::Dispatcher;
use super::recording::{assert_no_plaintext, tone, tone_scenario};
use super::*;

/// The dispatcher's OPTIONS probe interval in this test (seconds; the
/// shipped default is 5).
const PING_INTERVAL: &str = "PING_INTERVAL=1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_kamailio_share_calls_recordings_and_sessions() {
    let mut c = Cluster::start(&["n1", "n2"]).await;
    let k = Dispatcher::start_with(c.dir.path(), &c.sip_addrs(), &[PING_INTERVAL]).await;
    // Every call of the test, the killed node's long call included.
    let callee = c.callee(100, 120);
    let tone_a = tone(440.0, 20_000);
    let tone_file = c.dir.path().join("a.ulaw");
    std::fs::write(&tone_file, &tone_a).unwrap();

    calls_are_spread_over_both_nodes(&c, &k).await;
    a_recording_plays_with_a_range_through_the_other_node(&c, &k, &tone_file).await;
    after_kill_9_the_survivor_takes_the_calls(&mut c, &k, &tone_file).await;
    a_session_closed_on_one_node_stops_routing_on_the_other(&c).await;

    let mut dirs = c.recording_dirs();
    dirs.push(c.dir.path().join("keys"));
    let scanned = assert_no_plaintext(&dirs, &[&tone_a]);
    assert!(scanned >= 4, "scanned only {scanned} files");
    eprintln!(
        "two nodes: {scanned} files in the S3 server's data, the spools and the key store hold no plaintext audio"
    );
    k.stop().await;
    drop(callee);
}

/// A short call through the dispatcher; it must pass.
async fn short_call(c: &Cluster, k: &Dispatcher, log: &str) {
    let proxy = c.session.a.proxy_number.as_str();
    let caller = k.call(c.dir.path(), &scenario("uac_call.xml"), proxy, &[], log);
    let (ok, log) = caller.finish().await;
    assert!(ok, "caller failed:\n{log}");
}

/// A caller through the dispatcher playing `tone_file` for `call_ms`.
fn tone_call(c: &Cluster, k: &Dispatcher, tone_file: &Path, call_ms: u64, log: &str) -> Sipp {
    let uac = tone_scenario(c.dir.path(), "uac_tone.xml", tone_file, call_ms);
    let timeout = format!("{}s", call_ms / 1000 + 20);
    let proxy = c.session.a.proxy_number.as_str();
    k.call(c.dir.path(), &uac, proxy, &["-timeout", &timeout], log)
}

async fn calls_are_spread_over_both_nodes(c: &Cluster, k: &Dispatcher) {
    const CALLS: usize = 6;
    for i in 0..CALLS {
        short_call(c, k, &format!("spread{i}")).await;
    }
    c.ended_calls(CALLS).await;
    // What the platform sees: the same list, with `node`, from either node.
    let path = format!("/v1/calls?session={}&limit=100", c.session.id);
    let mut seen = Vec::new();
    for node in &c.nodes {
        let r = c.request(reqwest::Method::GET, node, &path, "prov");
        let page: serde_json::Value = r.send().await.unwrap().json().await.unwrap();
        let nodes: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["node"].as_str().unwrap().to_owned())
            .collect();
        seen.push(nodes);
    }
    assert_eq!(seen[0], seen[1], "both nodes list the same calls");
    let counts: Vec<usize> = ["n1", "n2"]
        .map(|id| seen[0].iter().filter(|n| *n == id).count())
        .to_vec();
    eprintln!(
        "two nodes: {CALLS} calls through the dispatcher: n1 took {}, n2 took {}",
        counts[0], counts[1]
    );
    assert_eq!(counts.iter().sum::<usize>(), CALLS, "{seen:?}");
    assert!(counts.iter().all(|n| *n >= 2), "round-robin: {seen:?}");
}

async fn a_recording_plays_with_a_range_through_the_other_node(
    c: &Cluster,
    k: &Dispatcher,
    tone_file: &Path,
) {
    let before = c.calls().await.len();
    let (ok, log) = tone_call(c, k, tone_file, 3000, "recorded").finish().await;
    assert!(ok, "caller failed:\n{log}");
    let call = c.ended_calls(before + 1).await.pop().unwrap();
    let rec = c.finished_recording(&call.id).await;
    assert_eq!(rec.state.as_str(), "complete");
    let owner = c.node_named(&call.node);
    let other = c.nodes.iter().find(|n| n.id != call.node).unwrap();
    c.grant_playback(owner, &call.id).await;
    // One second from the middle of the call, through the other node.
    let (start, end) = (44 + 1000 * 32, 44 + 2000 * 32);
    let range = format!("bytes={start}-{}", end - 1);
    let started = Instant::now();
    let (status, part) = c.audio(other, &rec.id, Some(&range)).await;
    let ranged_ms = started.elapsed().as_millis();
    assert_eq!(status, 206);
    let (status, full) = c.audio(owner, &rec.id, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        part,
        full[start..end],
        "the other node serves the same audio"
    );
    // The caller's tone is on the left: every other 16-bit sample.
    let left = part
        .chunks_exact(4)
        .map(|s| i16::from_le_bytes([s[0], s[1]]));
    assert!(left.map(i16::unsigned_abs).max() > Some(2000), "silence");
    eprintln!(
        "two nodes: recording made on {} ({} bytes as WAV) played on {}: Range {range} -> 206, \
         {} bytes in {ranged_ms} ms, equal to the owner's",
        owner.id,
        full.len(),
        other.id,
        part.len()
    );
}

/// Waits (at most 10 s) until `count` calls are answered and still up,
/// and returns them in the order they were placed.
async fn calls_up(c: &Cluster, count: usize) -> Vec<ansim::store::CallRecord> {
    for _ in 0..200 {
        let up: Vec<_> = c
            .calls()
            .await
            .into_iter()
            .filter(|x| x.answer_at.is_some() && x.end_at.is_none())
            .collect();
        if up.len() >= count {
            return up;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not {count} calls up: {:?}", c.calls().await);
}

/// Waits (at most 30 s: the host may be busy) until the recording of
/// `call_id` has at least `bytes` in its node's spool.
async fn recorded_at_least(c: &Cluster, call_id: &str, bytes: u64) {
    let mut spool = None;
    for _ in 0..600 {
        if let Some(rec) = c.db.store.find_recording(call_id).await.unwrap() {
            let node = c.db.store.get_call(call_id).await.unwrap().unwrap().node;
            let dir = c.spool(&node);
            let path = dir.join(&rec.blob);
            if std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) >= bytes {
                return;
            }
            spool = Some(dir);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let files: Vec<_> = spool
        .and_then(|d| std::fs::read_dir(d).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    let row = c.db.store.find_recording(call_id).await.unwrap();
    panic!("the recording of {call_id} never reached {bytes} bytes: {row:?} {files:?}");
}

async fn after_kill_9_the_survivor_takes_the_calls(
    c: &mut Cluster,
    k: &Dispatcher,
    tone_file: &Path,
) {
    // One long call on each node (the dispatcher alternates).
    // Long enough to outlast the failover and the restart below.
    let first = tone_call(c, k, tone_file, 24_000, "long0");
    calls_up(c, 1).await;
    let second = tone_call(c, k, tone_file, 24_000, "long1");
    let up = calls_up(c, 2).await;
    assert_ne!(up[0].node, up[1].node, "one long call on each node: {up:?}");
    let (doomed, kept) = (up[0].clone(), up[1].clone());
    // Two chunks of the doomed call's recording are on disk.
    recorded_at_least(c, &doomed.id, 2 * 2 * 16_000 + 200).await;

    let victim = c.nodes.iter().position(|n| n.id == doomed.node).unwrap();
    let killed_at = Instant::now();
    c.nodes[victim].kill_9().await;
    drop(first);
    let direct = failover_until_direct(c, k, killed_at).await;
    let after_kill = c.calls().await.into_iter();
    let late: Vec<_> = after_kill
        .filter(|x| x.id != doomed.id && x.id != kept.id)
        .rev()
        .take(direct)
        .collect();
    assert!(late.iter().all(|x| x.node == kept.node), "{late:?}");
    let still = c.db.store.get_call(&kept.id).await.unwrap().unwrap();
    assert!(
        still.end_at.is_none(),
        "the survivor's call is up: {still:?}"
    );

    // The killed node comes back with the same id: it ends its own.
    let restarted_at = Instant::now();
    c.nodes[victim].start().await;
    let rec = c.finished_recording(&doomed.id).await;
    eprintln!(
        "two nodes: {} restarted in {} ms; its interrupted recording is {}",
        doomed.node,
        restarted_at.elapsed().as_millis(),
        rec.state.as_str()
    );
    assert_eq!(rec.state.as_str(), "truncated");
    let ended = c.db.store.get_call(&doomed.id).await.unwrap().unwrap();
    assert_eq!(ended.result.map(|r| r.as_str()), Some("interrupted"));
    let theirs = c.db.store.get_call(&kept.id).await.unwrap().unwrap();
    assert!(theirs.end_at.is_none(), "left alone: {theirs:?}");
    let theirs = c.db.store.find_recording(&kept.id).await.unwrap().unwrap();
    assert_eq!(theirs.state.as_str(), "recording", "left alone");

    // The survivor's call goes on to its end, and is recorded whole.
    let (ok, log) = second.finish().await;
    assert!(ok, "the survivor's long call failed:\n{log}");
    let done = c.ended_call(&kept.id).await;
    assert_eq!(done.result.map(|r| r.as_str()), Some("answered"));
    assert_eq!(
        c.finished_recording(&kept.id).await.state.as_str(),
        "complete"
    );
    // The truncated recording plays through the node that did not make it.
    let survivor = c.node_named(&kept.node);
    c.grant_playback(survivor, &doomed.id).await;
    let (status, wav) = c.audio(survivor, &rec.id, None).await;
    assert_eq!(status, 200);
    assert!(wav.len() >= 44 + 2 * 2 * 16_000, "{} bytes", wav.len());
}

/// After a node was killed at `killed_at`: short calls one after the other
/// until three in a row are set up without a detour (under 1.5 s, where
/// one tried on the dead node first takes the 2 s `FR_TIMER` more). Every
/// call must pass. Returns how many calls were placed.
async fn failover_until_direct(c: &Cluster, k: &Dispatcher, killed_at: Instant) -> usize {
    let mut took = Vec::new();
    let mut direct_run = 0;
    while direct_run < 3 {
        assert!(took.len() < 20, "the dispatcher never settled: {took:?}");
        let started = Instant::now();
        short_call(c, k, &format!("after{}", took.len())).await;
        let ms = started.elapsed().as_millis();
        took.push((started.duration_since(killed_at).as_millis(), ms));
        direct_run = if ms < 1500 { direct_run + 1 } else { 0 };
    }
    let settled = took[took.len() - 3].0;
    let detours = took.iter().filter(|(_, ms)| *ms >= 1500).count();
    eprintln!(
        "two nodes: after kill -9, {} calls all passed ({detours} via a 2 s failover); \
         calls went straight to the survivor from {settled} ms after the kill \
         (probe interval 1 s); (start ms after kill, call ms): {took:?}",
        took.len()
    );
    took.len()
}

async fn a_session_closed_on_one_node_stops_routing_on_the_other(c: &Cluster) {
    let (here, there): (&Node, &Node) = (&c.nodes[0], &c.nodes[1]);
    // A direct call to `there` caches the route there.
    let proxy = c.session.a.proxy_number.as_str().to_owned();
    let direct = |file: &Path, log: &str| {
        let media = free_udp_port().to_string();
        let target = there.sip.to_string();
        let args = [
            "-s", &proxy, "-key", "caller", CUSTOMER, "-mp", &media, &target,
        ];
        Sipp::spawn(c.dir.path(), file, free_udp_port(), &args, log).movable()
    };
    let (ok, log) = direct(&scenario("uac_call.xml"), "cached").finish().await;
    assert!(ok, "{log}");
    let entries = "ansim_route_cache_entries";
    assert!(c.metric(there, entries).await >= 1, "the route is cached");

    let path = format!("/v1/sessions/{}", c.session.id);
    let r = c.request(reqwest::Method::DELETE, here, &path, "prov");
    assert!(r.send().await.unwrap().status().is_success());
    let closed_at = Instant::now();
    while c.metric(there, entries).await > 0 {
        assert!(closed_at.elapsed() < Duration::from_secs(1), "still cached");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dropped_ms = closed_at.elapsed().as_millis();
    let refused = refused_scenario(c.dir.path(), 404);
    let (ok, log) = direct(&refused, "closed").finish().await;
    assert!(
        ok,
        "the closed session's caller gets 404 on the other node:\n{log}"
    );
    eprintln!(
        "two nodes: session closed on {} -> dropped from {}'s route cache in {dropped_ms} ms; \
         a call there {} ms after the close got 404",
        here.id,
        there.id,
        closed_at.elapsed().as_millis()
    );
}
