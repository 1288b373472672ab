//! The API on a hostile network: `ansim serve` in-process, attacked over
//! real loopback sockets. Slowloris (half-open requests, over HTTP and
//! HTTPS) is cut off by `[api] header_timeout` while others are served at
//! once; connections beyond `[api] max_connections` are closed at accept;
//! bodies over `[api] body_limit` get the 413 problem; an address that
//! sends too many bad tokens gets 429 for all its tokens, others do not.
//!
//! Every wait is bounded; the only sleeps are short polls, for the server
//! to start listening and to notice that clients hung up.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use ansim::api::auth;
use ansim::clock::{Clock, SystemClock};
use ansim::config::Config;
use ansim::store::{Role, Store};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A request that never ends: its headers stop before the blank line.
const HALF_OPEN: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";

/// Media port blocks, one per server, so that servers never share ports.
static NEXT_MEDIA_BLOCK: AtomicU16 = AtomicU16::new(0);

/// A running `ansim serve` with an admin token, stopped gracefully by
/// [`Served::stop`].
struct Served {
    /// The API's address.
    api: SocketAddr,
    /// A valid admin token.
    admin: String,
    /// The self-signed certificate, when served over HTTPS.
    cert: Option<CertificateDer<'static>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ansim::server::ServeError>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts `ansim serve` with `api` added to its `[api]` table (and
    /// `[api.tls]` with a fresh certificate if `tls`), and waits until it
    /// answers `/healthz`.
    async fn start(api: &str, tls: bool) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let db = format!("sqlite://{d}/ansim.db");
        let store = Store::connect(&db).await.unwrap();
        store.migrate().await.unwrap();
        let admin = auth::new_token();
        store
            .add_staff(
                "ops",
                Role::Admin,
                &auth::hash_token(&admin),
                SystemClock.now(),
            )
            .await
            .unwrap();
        store.close().await;
        let mut cert = None;
        let mut tls_table = String::new();
        if tls {
            let certified =
                rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            std::fs::write(dir.path().join("api.crt"), certified.cert.pem()).unwrap();
            let key = certified.signing_key.serialize_pem();
            std::fs::write(dir.path().join("api.key"), key).unwrap();
            tls_table = format!("[api.tls]\ncert = \"{d}/api.crt\"\nkey = \"{d}/api.key\"\n");
            cert = Some(certified.cert.der().clone());
        }
        // A free port is picked, released and bound again by ansim: another
        // process may take it in between, so a failed start is retried.
        for _attempt in 0..5 {
            let port = crate::harness::free_tcp_port();
            let block = 12_000 + NEXT_MEDIA_BLOCK.fetch_add(1, Ordering::Relaxed) % 700 * 10;
            let toml = format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n\
                 [media]\nports = \"{block}-{}\"\n\
                 [store]\ndatabase_url = \"{db}\"\nrecordings = \"file://{d}/rec\"\n\
                 [keys]\nmaster_key_file = \"{d}/master.key\"\nstore = \"dir:{d}/keys\"\n\
                 [api]\nlisten = \"127.0.0.1:{port}\"\n{api}\n{tls_table}",
                block + 9
            );
            let config = Config::from_toml_str(&toml, Vec::new()).unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let mut task = tokio::spawn(ansim::server::run(config, async move {
                let _ = stopped.await;
            }));
            let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            tokio::select! {
                ended = &mut task => {
                    eprintln!("ansim did not start ({ended:?}); retrying on another port");
                    continue;
                }
                () = wait_until_listening(api) => {}
            }
            return Served {
                api,
                admin,
                cert,
                stop,
                task,
                _dir: dir,
            };
        }
        panic!("ansim could not start after 5 attempts");
    }

    fn base(&self) -> String {
        format!("http://{}", self.api)
    }

    /// A TLS connection to the API, handshake done.
    async fn tls_connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let cert = self.cert.clone().expect("served over HTTPS");
        let tcp = TcpStream::connect(self.api).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        crate::https::client(cert).connect(name, tcp).await.unwrap()
    }

    /// `/metrics` over a fresh connection.
    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the server and checks that it stopped cleanly within 15 s.
    async fn stop(self) {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        let ended = ended.expect("ansim stops within 15 s").unwrap();
        assert!(ended.is_ok(), "{ended:?}");
    }
}

/// Waits (at most 10 s) until `api` accepts connections.
async fn wait_until_listening(api: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(api).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the API did not listen on {api} within 10 s");
}

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

/// Sends one `GET /healthz` on `io` and returns the answer's status line
/// and how long it took.
async fn healthz<I>(io: &mut I) -> (String, Duration)
where
    I: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let start = Instant::now();
    io.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut answer)).await;
    // Over TLS without close_notify the end may read as an error; the
    // answer is in by then.
    let _ = read.expect("an answer within 5 s");
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or("").to_owned();
    (status, start.elapsed())
}

/// Waits until the server closes `io` (end of stream or an error) and
/// returns when that was, or `None` if it is still open at `deadline`.
async fn closed_by_server<I: AsyncRead + Unpin>(mut io: I, deadline: Instant) -> Option<Instant> {
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            // A 408 or any other bytes before the close are allowed.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Makes sure this process may hold `needed` file descriptors (the test
/// holds both ends of every connection).
fn allow_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < needed {
            limit.rlim_cur = needed.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// What the slowloris tests measured.
struct Slowloris {
    /// How long opening the half-open connections took.
    opened_in: Duration,
    /// How long `/healthz` took on a fresh connection while they were open.
    healthz: Duration,
    /// The shortest and longest time from a half-open request being sent
    /// to the server closing its connection.
    lived: (Duration, Duration),
}

/// Sends a half-open request on each of `conns` (opened by `connect`),
/// then `/healthz` on one more, then waits for the server to close every
/// half-open one. Asserts that `/healthz` answered 200 within 500 ms while
/// all of them were still open, and that every one was closed within 10 s.
async fn measure_slowloris<I, C>(count: usize, connect: impl Fn() -> C) -> Slowloris
where
    I: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    C: Future<Output = I>,
{
    let start = Instant::now();
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count {
        let mut c = connect().await;
        c.write_all(HALF_OPEN).await.unwrap();
        c.flush().await.unwrap();
        conns.push((c, Instant::now()));
    }
    let opened_in = start.elapsed();
    let mut fresh = connect().await;
    let (status, healthz) = healthz(&mut fresh).await;
    let healthz_done = Instant::now();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        healthz < Duration::from_millis(500),
        "/healthz took {healthz:?} with {count} half-open connections"
    );
    // header_timeout is 1 s; allow 10 s for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut waiting = tokio::task::JoinSet::new();
    for (conn, sent) in conns {
        waiting.spawn(async move { (closed_by_server(conn, deadline).await, sent) });
    }
    let (mut shortest, mut longest) = (Duration::MAX, Duration::ZERO);
    let mut first_close = None::<Instant>;
    let mut open = 0;
    while let Some(joined) = waiting.join_next().await {
        match joined.unwrap() {
            (Some(closed), sent) => {
                shortest = shortest.min(closed - sent);
                longest = longest.max(closed - sent);
                first_close = Some(first_close.map_or(closed, |f| f.min(closed)));
            }
            (None, _) => open += 1,
        }
    }
    assert_eq!(
        open, 0,
        "{open} of {count} half-open connections still open"
    );
    assert!(
        first_close.is_some_and(|f| f > healthz_done),
        "/healthz must answer while every half-open connection is still open"
    );
    Slowloris {
        opened_in,
        healthz,
        lived: (shortest, longest),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_requests_are_cut_off_by_header_timeout() {
    const N: usize = 1000;
    allow_open_files(4 * N as u64 + 256);
    let served = Served::start("header_timeout = \"1s\"", false).await;
    let api = served.api;
    let m = measure_slowloris(N, || async move { TcpStream::connect(api).await.unwrap() }).await;
    eprintln!(
        "HTTP: {N} half-open connections opened in {:?}; /healthz answered in {:?} \
         meanwhile; each was closed {:?} to {:?} after its request began",
        m.opened_in, m.healthz, m.lived.0, m.lived.1
    );
    assert!(
        m.lived.0 >= Duration::from_millis(900),
        "closed by the timeout, not at once: {:?}",
        m.lived.0
    );
    let metrics = served.metrics().await;
    assert_eq!(metric(&metrics, "ansim_http_connections_refused_total"), 0);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_requests_over_https_are_cut_off_too() {
    const N: usize = 100;
    allow_open_files(4 * N as u64 + 256);
    let served = Served::start("header_timeout = \"1s\"", true).await;
    let m = measure_slowloris(N, || served.tls_connect()).await;
    eprintln!(
        "HTTPS: {N} half-open connections opened in {:?}; /healthz answered in {:?} \
         meanwhile; each was closed {:?} to {:?} after its request began",
        m.opened_in, m.healthz, m.lived.0, m.lived.1
    );
    assert!(m.lived.0 >= Duration::from_millis(900), "{:?}", m.lived.0);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_at_accept() {
    // Idle connections must outlive the test: a long header timeout.
    let served = Served::start("max_connections = 20\nheader_timeout = \"60s\"", false).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(served.api).await.unwrap());
    }
    // The kernel hands connections over in order: the 21st is accepted
    // after the 20 above have taken every place.
    let start = Instant::now();
    let mut extra = TcpStream::connect(served.api).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut got)).await;
    let refused_in = start.elapsed();
    assert!(read.is_ok(), "the 21st connection is closed, not left open");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(refused_in < Duration::from_secs(1), "{refused_in:?}");
    eprintln!("21st connection closed by the server in {refused_in:?}");

    // Five places freed: the server sees those clients hang up and a new
    // request gets through (polled: the server needs a moment to notice).
    idle.truncate(15);
    let started = Instant::now();
    let metrics = loop {
        match reqwest::get(format!("{}/metrics", served.base())).await {
            Ok(r) if r.status() == 200 => break r.text().await.unwrap(),
            _ if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("no place freed within 5 s: {other:?}"),
        }
    };
    assert!(metric(&metrics, "ansim_http_connections_refused_total") >= 1);
    assert_eq!(metric(&metrics, "ansim_limit_api_max_connections"), 20);
    let open = metric(&metrics, "ansim_http_connections_open");
    assert!((16..=20).contains(&open), "15 idle + this one: {open}");
    drop(idle);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_body_limit_get_the_413_problem() {
    let served = Served::start("body_limit = 4096", false).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/numbers", served.base());
    let numbers: Vec<String> = (0..400).map(|i| format!("+82505{i:08}")).collect();
    let big = serde_json::json!({ "numbers": numbers });
    assert!(serde_json::to_vec(&big).unwrap().len() > 4096);

    // Declared length over the limit: refused before the handler runs.
    let r = http
        .post(&url)
        .bearer_auth(&served.admin)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:ansim:problem:payload-too-large", "{p}");
    assert_eq!(p["status"], 413);
    assert!(p["detail"].as_str().unwrap().contains("4096"), "{p}");

    // A chunked body (no length declared) that grows past the limit.
    let mut tcp = TcpStream::connect(served.api).await.unwrap();
    let body = serde_json::to_vec(&big).unwrap();
    let mut req = format!(
        "POST /v1/numbers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        served.admin
    )
    .into_bytes();
    for chunk in body.chunks(1000) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before it has read everything.
    let _ = tcp.write_all(&req).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "answered within 5 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("urn:ansim:problem:payload-too-large"),
        "{answer}"
    );

    // Under the limit: processed as usual.
    let r = http
        .post(&url)
        .bearer_auth(&served.admin)
        .json(&serde_json::json!({ "numbers": ["+825050000001"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let metrics = served.metrics().await;
    assert!(
        metrics.contains(
            "ansim_http_requests_total{method=\"POST\",route=\"/v1/numbers\",status=\"413\"} 2"
        ),
        "{metrics}"
    );
    served.stop().await;
}

/// `GET /v1/me` with `token`, from `client`: the status and the
/// `Retry-After` header, if any.
async fn me(served: &Served, client: &reqwest::Client, token: &str) -> (u16, Option<u64>) {
    let r = client
        .get(format!("{}/v1/me", served.base()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (r.status().as_u16(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_throttle_their_address_and_no_other() {
    let served = Served::start("auth_failures_per_minute = 10", false).await;
    let from = |ip: &str| {
        reqwest::Client::builder()
            .local_address(ip.parse::<IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let (one, two) = (from("127.0.0.1"), from("127.0.0.2"));
    for i in 0..10 {
        let bad = auth::new_token();
        assert_eq!(me(&served, &one, &bad).await, (401, None), "attempt {i}");
    }
    let (status, retry) = me(&served, &one, &auth::new_token()).await;
    assert_eq!(status, 429);
    let retry = retry.expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    let r = one
        .get(format!("{}/v1/me", served.base()))
        .bearer_auth(&served.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the address is throttled, not the token");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:ansim:problem:too-many-auth-failures", "{p}");
    // Without a token there is nothing to throttle: the usual 401.
    let r = one
        .get(format!("{}/v1/me", served.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Another address is not affected, for good tokens or bad.
    assert_eq!(me(&served, &two, &served.admin).await, (200, None));
    assert_eq!(me(&served, &two, &auth::new_token()).await, (401, None));
    let metrics = served.metrics().await;
    assert_eq!(metric(&metrics, "ansim_http_auth_throttled_total"), 2);
    served.stop().await;
}
