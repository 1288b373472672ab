//! Masked calling end to end: real SIPp as the carrier, ansim between.
//!
//! Each test starts `ansim serve` in-process on its own ports and SQLite
//! file, opens a session through the store, then runs a SIPp UAS as the
//! callee behind the trunk and a SIPp UAC as the caller. SIPp's message
//! logs are kept, so a test can read exactly what each side received.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use ansim::clock::{Clock, SystemClock};
use ansim::config::Config;
use ansim::routing::{Routing, SessionRequest};
use ansim::store::{SessionRecord, Store};

use crate::harness::{n, policy, pool_numbers};

const CUSTOMER: &str = "+821012345678";
const MASTER: &str = "+821098765432";

/// Media port ranges: each test gets its own block.
static NEXT_MEDIA_BLOCK: AtomicU16 = AtomicU16::new(0);

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct SipTest {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub sip: SocketAddr,
    pub uas_port: u16,
    pub session: SessionRecord,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl SipTest {
    /// ansim with a session CUSTOMER ↔ MASTER; `allow` is `[trunk] allow`.
    pub async fn start(allow: &str) -> SipTest {
        SipTest::start_with(allow, "").await
    }

    /// As [`SipTest::start`], with more `[sip]` settings (TOML lines).
    pub async fn start_with(allow: &str, sip_extra: &str) -> SipTest {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}/ansim.db", dir.path().display());
        let sip_port = free_udp_port();
        let uas_port = free_udp_port();
        let block = 40_000 + NEXT_MEDIA_BLOCK.fetch_add(1, Ordering::Relaxed) * 40;
        let toml = format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:{sip_port}\", \"tcp:127.0.0.1:{sip_port}\"]\n{sip_extra}\n\
             [trunk]\naddress = \"127.0.0.1:{uas_port}\"\nallow = [\"{allow}\"]\n\
             [media]\nports = \"{block}-{}\"\n\
             [store]\ndatabase_url = \"{db}\"\nrecordings = \"file://{}/rec\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n",
            block + 39,
            dir.path().display()
        );
        let config = Config::from_toml_str(&toml, Vec::new()).unwrap();
        let store = Store::connect(&db).await.unwrap();
        store.migrate().await.unwrap();
        store
            .add_numbers(&pool_numbers(1), SystemClock.now())
            .await
            .unwrap();
        let routing = Routing::new(store.clone(), std::sync::Arc::new(SystemClock), policy());
        let req = SessionRequest {
            a: n(CUSTOMER),
            b: n(MASTER),
            ttl: None,
            retention_class: None,
            record: None,
        };
        let session = routing.create_session(req).await.unwrap();

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            ansim::server::run(config, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
        wait_for_options(sip).await;
        SipTest {
            dir,
            store,
            sip,
            uas_port,
            session,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

/// Waits until ansim answers OPTIONS (readiness without sleeping blindly).
async fn wait_for_options(sip: SocketAddr) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    for i in 0..100 {
        let msg = format!(
            "OPTIONS sip:ping@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{i}\r\n\
             From: <sip:probe@{local}>;tag=r{i}\r\nTo: <sip:ping@{sip}>\r\nCall-ID: ready-{i}@{local}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), sip).await.unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await
        {
            let text = String::from_utf8_lossy(&buf[..len]);
            // 200, or 403 where the test forbids our own address.
            assert!(
                text.starts_with("SIP/2.0 200") || text.starts_with("SIP/2.0 403"),
                "{text}"
            );
            return;
        }
    }
    panic!("ansim never answered OPTIONS on {sip}");
}

/// A SIPp run: the scenario file, its arguments, where its logs go.
pub struct Sipp {
    pub messages: PathBuf,
    child: tokio::process::Child,
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

impl Sipp {
    /// Starts SIPp with `scenario` on `port`, logging messages to `log`.
    pub fn spawn(dir: &Path, scenario_file: &Path, port: u16, extra: &[&str], log: &str) -> Sipp {
        let messages = dir.join(format!("{log}_messages.log"));
        let mut cmd = tokio::process::Command::new("sipp");
        cmd.current_dir(dir)
            .arg("-sf")
            .arg(scenario_file)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "1",
                "-nostdin",
            ])
            .args([
                "-timeout",
                "15s",
                "-timeout_error",
                "-trace_msg",
                "-trace_err",
            ])
            .arg("-message_file")
            .arg(&messages)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .expect("sipp is installed (apt-get install sip-tester)");
        Sipp { messages, child }
    }

    /// Waits for SIPp to finish; returns whether every call passed (exit 0).
    pub async fn finish(mut self) -> (bool, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("sipp hung")
            .unwrap();
        let log = std::fs::read_to_string(&self.messages).unwrap_or_default();
        (status.success(), log)
    }
}

/// The UAC placing a call from `caller` to `dialled` through ansim.
fn uac(t: &SipTest, scenario_file: &Path, caller: &str, dialled: &str, log: &str) -> Sipp {
    let target = t.sip.to_string();
    Sipp::spawn(
        t.dir.path(),
        scenario_file,
        free_udp_port(),
        &[
            "-s",
            dialled,
            "-key",
            "caller",
            caller,
            "-mp",
            &free_udp_port().to_string(),
            &target,
        ],
        log,
    )
}

/// The UAS answering as the callee behind the trunk.
fn uas(t: &SipTest, scenario_file: &Path, log: &str) -> Sipp {
    Sipp::spawn(
        t.dir.path(),
        scenario_file,
        t.uas_port,
        &["-mp", &free_udp_port().to_string()],
        log,
    )
}

/// The messages of a SIPp log that were `received` or `sent`, in order.
fn messages(log: &str, what: &str) -> Vec<String> {
    log.split("----------------------------------------------- ")
        .filter(|chunk| chunk.contains(&format!("message {what}")))
        .filter_map(|chunk| {
            chunk
                .split_once("\n\n")
                .map(|(_, body)| body.trim().to_owned())
        })
        .collect()
}

/// The first message in a SIPp log received that starts with `start_line`.
fn received(log: &str, start_line: &str) -> String {
    messages(log, "received")
        .into_iter()
        .find(|m| m.starts_with(start_line))
        .unwrap_or_else(|| panic!("no received message starting {start_line:?} in\n{log}"))
}

/// A refused-call scenario expecting `status`.
fn refused_scenario(dir: &Path, status: u16) -> PathBuf {
    let text = std::fs::read_to_string(scenario("uac_refused.xml"))
        .unwrap()
        .replace("[status]", &status.to_string());
    let path = dir.join(format!("uac_refused_{status}.xml"));
    std::fs::write(&path, text).unwrap();
    path
}

async fn calls_of(t: &SipTest) -> Vec<ansim::store::CallRecord> {
    // Call records are written by a background task: wait for the end.
    for _ in 0..100 {
        let calls = t.store.list_calls(&t.session.id).await.unwrap();
        if !calls.is_empty() && calls.iter().all(|c| c.end_at.is_some()) {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.store.list_calls(&t.session.id).await.unwrap()
}

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
        (40_000..41_000).contains(&port),
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
            c.result.as_deref(),
            c.hangup_side.as_deref()
        ),
        ("a_to_b", Some("answered"), Some("caller"))
    );
    assert!(c.ring_at.is_some() && c.answer_at.is_some() && c.end_at >= c.answer_at);
    t.stop().await;
}

fn header(msg: &str, name: &str) -> String {
    msg.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
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

/// Runs the callee `uas_file` behind the trunk and the caller `uac_file`
/// from `caller` to `dialled`; both must pass. Returns their message logs.
async fn run_call(
    t: &SipTest,
    uas_file: &str,
    uac_file: &Path,
    caller: &str,
    dialled: &str,
) -> (String, String) {
    let callee = uas(t, &scenario(uas_file), "uas");
    let caller = uac(t, uac_file, caller, dialled, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    (uac_log, uas_log)
}

/// Runs one call with the given scenarios and returns its call record.
async fn one_call(uas_file: &str, uac_file: &Path) -> (SipTest, ansim::store::CallRecord) {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    run_call(&t, uas_file, uac_file, CUSTOMER, &proxy).await;
    let mut calls = calls_of(&t).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    (t, calls.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_hangs_up() {
    let (t, c) = one_call("uas_hangup.xml", &scenario("uac_hungup.xml")).await;
    assert_eq!(
        (c.result.as_deref(), c.hangup_side.as_deref()),
        (Some("answered"), Some("callee"))
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels_before_answer() {
    let (t, c) = one_call("uas_ring_cancel.xml", &scenario("uac_cancel.xml")).await;
    assert_eq!(
        (c.result.as_deref(), c.sip_status),
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
        (c.result.as_deref(), c.sip_status),
        (Some("busy"), Some(486))
    );
    t.stop().await;
}

/// The SDP `m=audio` port and `c=` address of a message.
fn sdp_media(msg: &str) -> (String, u16) {
    let c = msg
        .lines()
        .find(|l| l.starts_with("c="))
        .unwrap_or_else(|| panic!("no c= in {msg}"));
    let m = msg
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_else(|| panic!("no m= in {msg}"));
    let addr = c.rsplit(' ').next().unwrap().to_owned();
    (addr, m.split(' ').nth(1).unwrap().parse().unwrap())
}

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
    assert_eq!(calls[0].result.as_deref(), Some("answered"));
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
    assert_eq!(calls[0].result.as_deref(), Some("answered"));
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
            calls[0].result.as_deref(),
            calls[0].sip_status,
            calls[0].hangup_side.as_deref()
        ),
        (Some("no_answer"), Some(480), Some("system"))
    );
    t.stop().await;
}

/// A scenario copy whose SDP offers `[rtp_port]` (set with `-key`) instead
/// of SIPp's own media port, so that the test's sockets are the phones.
fn with_test_rtp_port(dir: &Path, name: &str, pause_ms: u32) -> PathBuf {
    let text = std::fs::read_to_string(scenario(name))
        .unwrap()
        .replace("m=audio [media_port]", "m=audio [rtp_port]")
        .replace(
            "<pause milliseconds=\"300\"/>",
            &format!("<pause milliseconds=\"{pause_ms}\"/>"),
        );
    let path = dir.join(format!("rtp_{name}"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until SIPp's message log has a received message starting with
/// `start`, and returns the SDP media port of it.
async fn port_in_log(log: &Path, start: &str) -> u16 {
    for _ in 0..250 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(m) = messages(&text, "received")
            .into_iter()
            .find(|m| m.starts_with(start) && m.contains("m=audio"))
        {
            return sdp_media(&m).1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {start} with SDP in {}", log.display());
}

fn rtp_packet(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| fill ^ (i as u8) ^ (seq as u8)));
    p
}

async fn receive_all(sock: &tokio::net::UdpSocket, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < count {
        match tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => got.push((buf[..n].to_vec(), from)),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_flows_both_ways_through_ansim_unchanged() {
    const PACKETS: u16 = 50;
    let t = SipTest::start("127.0.0.1/32").await;
    let phone_a = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (port_a, port_b) = (
        phone_a.local_addr().unwrap().port(),
        phone_b.local_addr().unwrap().port(),
    );
    let uas_file = with_test_rtp_port(t.dir.path(), "uas_answer.xml", 300);
    let uac_file = with_test_rtp_port(t.dir.path(), "uac_call.xml", 2500);
    let callee = Sipp::spawn(
        t.dir.path(),
        &uas_file,
        t.uas_port,
        &["-key", "rtp_port", &port_b.to_string()],
        "uas",
    );
    let target = t.sip.to_string();
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let caller = Sipp::spawn(
        t.dir.path(),
        &uac_file,
        free_udp_port(),
        &[
            "-s",
            &proxy,
            "-key",
            "caller",
            CUSTOMER,
            "-key",
            "rtp_port",
            &port_a.to_string(),
            &target,
        ],
        "uac",
    );
    // ansim's port for each phone, from the SDP each phone received.
    let relay_a = port_in_log(&caller.messages, "SIP/2.0 200").await;
    let relay_b = port_in_log(&callee.messages, "INVITE").await;

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
