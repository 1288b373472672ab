//! Masked calling end to end: real SIPp as the carrier, ansim between.
//!
//! Each test starts `ansim serve` in-process on its own ports and SQLite
//! file, opens a session through the store, then runs a SIPp UAS as the
//! callee behind the trunk and a SIPp UAC as the caller. SIPp's message
//! logs are kept, so a test can read exactly what each side received.

mod announcement;
mod attack;
mod browser;
mod calls;
mod cluster;
mod crash;
mod dialog;
mod dispatcher;
mod drain;
mod edge;
mod faults;
mod kamailio;
mod media;
mod out_of_session;
mod recording;
mod trunks;
mod two_nodes;
mod webhooks;

use std::net::SocketAddr;
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

/// Media port ranges: each test gets its own block, below the ephemeral
/// port range (as [`crate::harness::free_port`]'s picks) so that no socket
/// bound to port 0 takes one of them first.
static NEXT_MEDIA_BLOCK: AtomicU16 = AtomicU16::new(0);

fn free_udp_port() -> u16 {
    crate::harness::free_port()
}

pub(crate) struct SipTest {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub sip: SocketAddr,
    /// The HTTP API (for `/metrics`).
    pub api: SocketAddr,
    pub uas_port: u16,
    /// The media port range ansim relays on (first, last).
    pub media_ports: (u16, u16),
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
        SipTest::start_configured(allow, sip_extra, |_| String::new(), "").await
    }

    /// ansim with its trunks written by `trunks` (given the UAS port and
    /// the test's directory) instead of the one `[trunk]` at the UAS.
    pub async fn start_trunks(trunks: impl Fn(u16, &Path) -> String) -> SipTest {
        SipTest::start_full("", |_| String::new(), "", trunks).await
    }

    /// As [`SipTest::start_with`], with `[media]` lines and whole extra
    /// sections (e.g. `"[limits]\nmax_calls = 1\n"`) after the rest.
    pub async fn start_sections(
        allow: &str,
        sip_extra: &str,
        media_extra: &str,
        sections: &str,
    ) -> SipTest {
        let media_extra = format!("{media_extra}\n");
        SipTest::start_configured(allow, sip_extra, |_| media_extra, sections).await
    }

    /// As [`SipTest::start`], with `[media] announcement` naming a WAV of
    /// `samples` (16-bit mono, 8 kHz) written in the test's directory.
    pub async fn start_with_announcement(allow: &str, samples: &[i16]) -> SipTest {
        SipTest::start_configured(
            allow,
            "",
            |dir| {
                let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                let mut wav =
                    ansim::recording::wav::wav_header(1, 8000, data.len() as u32).to_vec();
                wav.extend(data);
                let path = dir.join("announcement.wav");
                std::fs::write(&path, wav).unwrap();
                format!("announcement = \"{}\"\n", path.display())
            },
            "",
        )
        .await
    }

    /// Starts ansim with more `[sip]` lines, the `[media]` lines that
    /// `media_extra` writes (given the test's directory) and whole
    /// `sections` at the end of the file.
    async fn start_configured(
        allow: &str,
        sip_extra: &str,
        media_extra: impl FnOnce(&Path) -> String,
        sections: &str,
    ) -> SipTest {
        let trunk = |uas_port: u16, _: &Path| {
            format!("[trunk]\naddress = \"127.0.0.1:{uas_port}\"\nallow = [\"{allow}\"]\n")
        };
        SipTest::start_full(sip_extra, media_extra, sections, trunk).await
    }

    /// As [`SipTest::start_configured`], the trunk sections written by
    /// `trunks` (given the UAS port and the test's directory).
    async fn start_full(
        sip_extra: &str,
        media_extra: impl FnOnce(&Path) -> String,
        sections: &str,
        trunks: impl Fn(u16, &Path) -> String,
    ) -> SipTest {
        let dir = tempfile::tempdir().unwrap();
        let media_extra = media_extra(dir.path());
        let db = format!("sqlite://{}/ansim.db", dir.path().display());
        let store = Store::connect(&db).await.unwrap();
        store.migrate().await.unwrap();
        let session = open_session(&store).await;

        // Free ports are picked, released and bound again by ansim: another
        // process may take one in between, so a failed start is retried on
        // fresh ports.
        for _attempt in 0..5 {
            let sip_port = free_udp_port();
            let uas_port = free_udp_port();
            let api_port = crate::harness::free_tcp_port();
            let block = 4_000 + NEXT_MEDIA_BLOCK.fetch_add(1, Ordering::Relaxed) % 200 * 40;
            let toml = format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:{sip_port}\", \"tcp:127.0.0.1:{sip_port}\"]\n{sip_extra}\n\
                 {}\
                 [media]\nports = \"{block}-{}\"\n{media_extra}\
                 [store]\ndatabase_url = \"{db}\"\nrecordings = \"file://{d}/rec\"\n\
                 [keys]\nmaster_key_file = \"{d}/master.key\"\nstore = \"dir:{d}/keys\"\n\
                 [api]\nlisten = \"127.0.0.1:{api_port}\"\n{sections}",
                trunks(uas_port, dir.path()),
                block + 39,
                d = dir.path().display()
            );
            let config = Config::from_toml_str(&toml, Vec::new()).unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let mut server = tokio::spawn(ansim::server::run(config, async move {
                let _ = stopped.await;
            }));
            let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
            tokio::select! {
                ended = &mut server => {
                    eprintln!("ansim did not start ({ended:?}); retrying on other ports");
                    continue;
                }
                () = wait_for_options(sip) => {}
            }
            let server = tokio::spawn(async move {
                if let Ok(Err(e)) = server.await {
                    panic!("ansim failed: {e}");
                }
            });
            let api = format!("127.0.0.1:{api_port}").parse().unwrap();
            return SipTest {
                dir,
                api,
                store,
                sip,
                uas_port,
                media_ports: (block, block + 39),
                session,
                stop: Some(stop),
                server: Some(server),
            };
        }
        panic!("ansim could not start after 5 attempts");
    }

    /// Stops ansim but keeps the test's files (returned) for a restart.
    pub async fn stop_keeping_files(mut self) -> tempfile::TempDir {
        self.shutdown().await;
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Tells ansim to stop (SIGTERM) without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Waits up to `limit` for ansim to have stopped; whether it has.
    pub async fn stopped_within(&mut self, limit: Duration) -> bool {
        let Some(mut h) = self.server.take() else {
            return true;
        };
        if tokio::time::timeout(limit, &mut h).await.is_ok() {
            return true;
        }
        self.server = Some(h);
        false
    }

    async fn shutdown(&mut self) {
        self.begin_stop();
        if let Some(h) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
}

/// Adds one pool number to `store` and opens the session CUSTOMER ↔
/// MASTER on it, as the platform would.
async fn open_session(store: &Store) -> SessionRecord {
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
    routing.create_session(req).await.unwrap()
}

/// `ansim serve` as a child process in `dir` with `env` added, logging
/// JSON to a fresh `serve-*.log` file there (killed on drop).
fn serve_process(dir: &Path, env: &[(String, String)]) -> tokio::process::Child {
    let log = dir.join(format!("serve-{}.log", uuid::Uuid::new_v4().simple()));
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ansim"))
        .current_dir(dir)
        .args(["--log-format", "json", "serve"])
        .env("ANSIM_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
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
pub(crate) struct Sipp {
    pub messages: PathBuf,
    child: tokio::process::Child,
    /// How it was started, to start it again on other ports.
    dir: PathBuf,
    scenario: PathBuf,
    extra: Vec<String>,
    /// Whether its ports were picked freely (a caller's), so a run that
    /// could not bind them may be repeated on fresh ones.
    movable: bool,
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

fn spawn_sipp(
    dir: &Path,
    scenario_file: &Path,
    port: u16,
    extra: &[String],
    messages: &Path,
) -> tokio::process::Child {
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
        .args(if extra.iter().any(|a| a == "-timeout") {
            &[][..]
        } else {
            &["-timeout", "15s"][..]
        })
        .args(["-timeout_error", "-trace_msg", "-trace_err"])
        .arg("-message_file")
        .arg(messages)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn()
        .expect("sipp is installed (apt-get install sip-tester)")
}

impl Sipp {
    /// Starts SIPp with `scenario` on `port`, logging messages to `log`.
    pub fn spawn(dir: &Path, scenario_file: &Path, port: u16, extra: &[&str], log: &str) -> Sipp {
        let messages = dir.join(format!("{log}_messages.log"));
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let child = spawn_sipp(dir, scenario_file, port, &extra, &messages);
        Sipp {
            messages,
            child,
            dir: dir.to_path_buf(),
            scenario: scenario_file.to_path_buf(),
            extra,
            movable: false,
        }
    }

    /// Marks a caller whose ports were picked freely: if another process
    /// takes one of them between picking and binding, SIPp starts again
    /// on fresh ports.
    pub fn movable(mut self) -> Sipp {
        self.movable = true;
        self
    }

    /// How long SIPp may run before it is taken to have hung: its own
    /// `-timeout` (default 15 s) and a margin.
    fn hang_guard(&self) -> Duration {
        let own = self
            .extra
            .iter()
            .position(|a| a == "-timeout")
            .and_then(|i| self.extra.get(i + 1))
            .and_then(|t| t.trim_end_matches('s').parse().ok())
            .unwrap_or(15);
        Duration::from_secs(own + 15)
    }

    /// Waits for SIPp to finish; returns whether every call passed (exit
    /// 0) and its message log (with its errors when it failed).
    pub async fn finish(mut self) -> (bool, String) {
        for attempt in 0.. {
            let child = std::mem::replace(&mut self.child, placeholder());
            let out = tokio::time::timeout(self.hang_guard(), child.wait_with_output())
                .await
                .expect("sipp hung")
                .unwrap();
            let log = std::fs::read_to_string(&self.messages).unwrap_or_default();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !self.may_move(&stderr, attempt) {
                let log = if out.status.success() {
                    log
                } else {
                    format!("{log}\n--- sipp stderr ---\n{stderr}")
                };
                return (out.status.success(), log);
            }
            self.respawn_elsewhere();
        }
        unreachable!("the loop returns")
    }

    /// Waits until SIPp's message log has a received message starting with
    /// `start` and returns the SDP media port of it. A movable SIPp that
    /// exits because another process took its ports is started again on
    /// fresh ones; any other exit fails the test with SIPp's errors.
    pub async fn port_in(&mut self, start: &str) -> u16 {
        let mut attempt = 0;
        for _ in 0..500 {
            let text = std::fs::read_to_string(&self.messages).unwrap_or_default();
            if let Some(m) = messages(&text, "received")
                .into_iter()
                .find(|m| m.starts_with(start) && m.contains("m=audio"))
            {
                return sdp_media(&m).1;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr = self.stderr().await;
                assert!(
                    self.may_move(&stderr, attempt),
                    "sipp exited ({status}) before a {start} with SDP:\n{text}\n--- sipp stderr ---\n{stderr}"
                );
                attempt += 1;
                self.respawn_elsewhere();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = std::fs::read_to_string(&self.messages).unwrap_or_default();
        panic!(
            "no {start} with SDP in 10 s in {}:\n{text}",
            self.messages.display()
        );
    }

    /// What an exited SIPp wrote to stderr.
    async fn stderr(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut err = Vec::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_end(&mut err).await;
        }
        String::from_utf8_lossy(&err).into_owned()
    }

    /// Whether a run that failed with `stderr` may be repeated elsewhere:
    /// its ports were taken, they were picked freely, and tries are left.
    fn may_move(&self, stderr: &str, attempt: usize) -> bool {
        stderr.contains("Unable to bind") && self.movable && attempt < 4
    }

    /// Starts SIPp again on fresh signalling and media ports.
    fn respawn_elsewhere(&mut self) {
        eprintln!("sipp could not bind its ports; again on fresh ones");
        for (i, arg) in self.extra.clone().iter().enumerate() {
            if arg == "-mp" && i + 1 < self.extra.len() {
                self.extra[i + 1] = free_udp_port().to_string();
            }
        }
        let _ = std::fs::remove_file(&self.messages);
        self.child = spawn_sipp(
            &self.dir,
            &self.scenario,
            free_udp_port(),
            &self.extra,
            &self.messages,
        );
    }
}

/// A finished process standing in for SIPp's while it is being replaced.
fn placeholder() -> tokio::process::Child {
    tokio::process::Command::new("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("true runs")
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
    .movable()
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
    calls_within(t, 100).await
}

/// The session's call records once all have ended, polling `tries` times
/// 50 ms apart (then whatever there is).
async fn calls_within(t: &SipTest, tries: usize) -> Vec<ansim::store::CallRecord> {
    // Call records are written by a background task: wait for the end.
    for _ in 0..tries {
        let calls = t.store.list_calls(&t.session.id).await.unwrap();
        if !calls.is_empty() && calls.iter().all(|c| c.end_at.is_some()) {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.store.list_calls(&t.session.id).await.unwrap()
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

/// A call between two phones that are the test's own UDP sockets (SIPp
/// only signals), with ansim's relay port for each.
pub(crate) struct PhoneCall {
    /// The caller's RTP socket.
    pub phone_a: tokio::net::UdpSocket,
    /// The callee's RTP socket.
    pub phone_b: tokio::net::UdpSocket,
    /// ansim's port for the caller's leg, from the 200 the caller got.
    pub relay_a: u16,
    /// ansim's port for the callee's leg, from the INVITE the callee got.
    pub relay_b: u16,
    /// The signalling caller (still in the call for 2.5 s).
    pub caller: Sipp,
    /// The signalling callee.
    pub callee: Sipp,
}

/// Places CUSTOMER → session's proxy with [`PhoneCall`] phones and waits
/// until both legs are set up.
pub(crate) async fn call_with_test_phones(t: &SipTest) -> PhoneCall {
    call_with_phones_at(t, "127.0.0.1", "127.0.0.1").await
}

/// As [`call_with_test_phones`], the phones' sockets on `ip_a` and `ip_b`
/// while the SDP still says 127.0.0.1 (phones behind NAT, when they differ).
pub(crate) async fn call_with_phones_at(t: &SipTest, ip_a: &str, ip_b: &str) -> PhoneCall {
    call_lasting(t, ip_a, ip_b, 2500).await
}

/// As [`call_with_phones_at`], the caller hanging up `call_ms` after the
/// answer (SIPp's own timeout grows with it).
pub(crate) async fn call_lasting(t: &SipTest, ip_a: &str, ip_b: &str, call_ms: u32) -> PhoneCall {
    call_edited(t, ip_a, ip_b, call_ms, |s| s).await
}

/// As [`call_lasting`], both scenarios' text passed through `edit` first
/// (e.g. to offer another codec).
pub(crate) async fn call_edited(
    t: &SipTest,
    ip_a: &str,
    ip_b: &str,
    call_ms: u32,
    edit: impl Fn(String) -> String,
) -> PhoneCall {
    let phone_a = tokio::net::UdpSocket::bind((ip_a, 0)).await.unwrap();
    let phone_b = tokio::net::UdpSocket::bind((ip_b, 0)).await.unwrap();
    let port_a = phone_a.local_addr().unwrap().port().to_string();
    let port_b = phone_b.local_addr().unwrap().port().to_string();
    let edited = |name: &str, pause_ms: u32| {
        let path = with_test_rtp_port(t.dir.path(), name, pause_ms);
        let text = edit(std::fs::read_to_string(&path).unwrap());
        std::fs::write(&path, text).unwrap();
        path
    };
    let uas_file = edited("uas_answer.xml", 300);
    let uac_file = edited("uac_call.xml", call_ms);
    let timeout = format!("{}s", call_ms / 1000 + 15);
    let mut callee = Sipp::spawn(
        t.dir.path(),
        &uas_file,
        t.uas_port,
        &["-key", "rtp_port", &port_b, "-timeout", &timeout],
        "uas",
    );
    let target = t.sip.to_string();
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let args = [
        "-s", &proxy, "-key", "caller", CUSTOMER, "-key", "rtp_port", &port_a, "-timeout",
        &timeout, &target,
    ];
    let mut caller = Sipp::spawn(t.dir.path(), &uac_file, free_udp_port(), &args, "uac").movable();
    let relay_a = caller.port_in("SIP/2.0 200").await;
    let relay_b = callee.port_in("INVITE").await;
    PhoneCall {
        phone_a,
        phone_b,
        relay_a,
        relay_b,
        caller,
        callee,
    }
}

/// The resident set size of this process (ansim runs in it), in KiB.
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// ansim's `/metrics` text.
pub(crate) async fn metrics_text(t: &SipTest) -> String {
    reqwest::get(format!("http://{}/metrics", t.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the metric line `name` (no labels) in `text`.
pub(crate) fn metric(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}
