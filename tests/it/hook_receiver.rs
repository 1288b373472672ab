//! A real webhook receiver for the tests: an HTTP/1.1 server on loopback
//! that checks every request's Standard Webhooks signature (with its own
//! HMAC, not ansim's code) and records the events it accepted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::Sha256;

/// The secret the tests configure, in the `whsec_` form.
pub const SECRET_TEXT: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 204 to every well-signed event.
    Accept,
    /// 503 to everything (the backend is having a bad day).
    Fail,
    /// Reads the request and never answers (a hung backend).
    Hang,
}

/// One accepted delivery.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub kind: String,
    pub body: serde_json::Value,
    pub raw: String,
}

#[derive(Default)]
struct State {
    accepted: Vec<Received>,
    /// Requests per webhook-id, whatever the answer.
    tries: HashMap<String, usize>,
    bad_signatures: usize,
    mode: Option<Mode>,
}

/// The receiver; stops serving when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes the secret file into `dir` and returns its path.
pub fn secret_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("webhook.secret");
    std::fs::write(&p, format!("{SECRET_TEXT}\n")).unwrap();
    p
}

fn verify(id: &str, ts: &str, body: &[u8], sig: &str) -> bool {
    let key = STANDARD.decode(&SECRET_TEXT["whsec_".len()..]).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let want = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let fresh = ts.parse::<i64>().is_ok_and(|t| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now - t).abs() < 300
    });
    fresh && sig.split(' ').any(|s| s == want)
}

impl Receiver {
    /// A receiver on a free port, accepting.
    pub async fn start() -> Receiver {
        Receiver::start_on(0, Mode::Accept).await
    }

    /// A receiver on `port` (0: any), answering as `mode`.
    pub async fn start_on(port: u16, mode: Mode) -> Receiver {
        Receiver::serve(port, mode, None).await
    }

    /// A receiver speaking HTTPS with `cert`/`key` (PEM), accepting.
    pub async fn start_tls(cert: &str, key: &str) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Receiver::serve(0, Mode::Accept, Some(acceptor)).await
    }

    async fn serve(port: u16, mode: Mode, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            mode: Some(mode),
            ..State::default()
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (st, tls) = (st.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver { addr, state, task }
    }

    /// The `[webhooks]` section pointing at this receiver.
    pub fn section(&self, secret: &std::path::Path, extra: &str) -> String {
        section_for(self.addr.port(), secret, extra)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn tries(&self, id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .tries
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Requests received, whatever the answer.
    pub fn total_tries(&self) -> usize {
        self.state.lock().unwrap().tries.values().sum()
    }

    pub fn bad_signatures(&self) -> usize {
        self.state.lock().unwrap().bad_signatures
    }

    /// Waits (bounded) until `done` holds for the accepted events.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..600 {
            let got = self.accepted();
            if done(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let kinds: Vec<String> = self.accepted().iter().map(|r| r.kind.clone()).collect();
        panic!("receiver never saw {what}; it has {kinds:?}");
    }
}

/// The `[webhooks]` section for a receiver on `port`, with fast retries.
pub fn section_for(port: u16, secret: &std::path::Path, extra: &str) -> String {
    format!(
        "[webhooks]\nurl = \"http://127.0.0.1:{port}/hooks\"\nsecret_file = \"{}\"\n\
         retry_initial = \"100ms\"\nretry_max = \"500ms\"\ntimeout = \"1s\"\n{extra}\n",
        secret.display()
    )
}

async fn handle(
    st: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<String>, std::convert::Infallible> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let path_ok = req.uri().path() == "/hooks";
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mode = {
        let mut s = st.lock().unwrap();
        *s.tries.entry(id.clone()).or_default() += 1;
        s.mode.unwrap_or(Mode::Accept)
    };
    let answer = |status: u16| {
        let mut r = Response::new(String::new());
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        Ok(r)
    };
    match mode {
        Mode::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Mode::Fail => return answer(503),
        Mode::Accept => {}
    }
    if !path_ok || !verify(&id, &ts, &body, &sig) {
        st.lock().unwrap().bad_signatures += 1;
        return answer(401);
    }
    let raw = String::from_utf8(body.to_vec()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let kind = v["type"].as_str().unwrap_or("").to_owned();
    assert!(v["timestamp"].is_string() && v["data"].is_object(), "{raw}");
    st.lock().unwrap().accepted.push(Received {
        id,
        kind,
        body: v,
        raw,
    });
    answer(204)
}
