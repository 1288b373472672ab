//! Tests of SIP over TLS: real sockets on 127.0.0.1 and a self-signed
//! certificate made at test time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{
    Flow, InboundReceiver, Shared, TransportError, TransportSettings, Transports, inbound_queues,
    tls,
};
use crate::config::{ListenAddr, TlsFiles, Transport};

const WAIT: Duration = Duration::from_secs(5);

const OPTIONS: &[u8] = b"OPTIONS sip:ansim.local SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-tls-1\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@example.com>;tag=a1\r\n\
To: <sip:ansim.local>\r\n\
Call-ID: tls-test-1@127.0.0.1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-tls-1\r\n\
From: <sip:probe@example.com>;tag=a1\r\n\
To: <sip:ansim.local>;tag=b2\r\n\
Call-ID: tls-test-1@127.0.0.1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

/// A self-signed certificate for localhost/127.0.0.1 in PEM files.
struct Cert {
    _dir: TempDir,
    files: TlsFiles,
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn make_cert() -> Cert {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("sip.crt");
    let key = dir.path().join("sip.key");
    let cert_pem = certified.cert.pem();
    let key_pem = certified.signing_key.serialize_pem();
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    Cert {
        _dir: dir,
        files: TlsFiles { cert, key },
        der: certified.cert.der().clone(),
        cert_pem,
        key_pem,
    }
}

fn listen(transport: Transport) -> ListenAddr {
    ListenAddr {
        transport,
        addr: "127.0.0.1:0".parse().unwrap(),
    }
}

struct Running {
    transports: Transports,
    inbound: InboundReceiver,
    _stop: watch::Sender<bool>,
    tls_addr: SocketAddr,
}

async fn bind(files: &TlsFiles) -> Result<Running, TransportError> {
    let (tx, inbound) = inbound_queues(16, Arc::default());
    let (stop_tx, stop) = watch::channel(false);
    let addrs = [listen(Transport::Udp), listen(Transport::Tls)];
    let settings = TransportSettings::loopback_for_tests();
    let transports = Transports::bind(&addrs, Some(files), settings, tx, stop).await?;
    let tls_addr = transports.tls_local_addrs()[0];
    Ok(Running {
        transports,
        inbound,
        _stop: stop_tx,
        tls_addr,
    })
}

fn bind_error(result: Result<Running, TransportError>) -> TransportError {
    match result {
        Ok(_) => panic!("bind should have failed"),
        Err(e) => e,
    }
}

async fn connect(addr: SocketAddr, cert: &CertificateDer<'static>) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connect = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    tokio::time::timeout(WAIT, connect).await.unwrap().unwrap()
}

/// Sends OPTIONS in two writes, checks the engine gets exactly it on a TLS
/// flow, answers through `Transports::send` and checks the client reads it.
async fn round_trip(run: &mut Running, client: &mut TlsStream<TcpStream>) {
    let (first, second) = OPTIONS.split_at(OPTIONS.len() / 2);
    client.write_all(first).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.write_all(second).await.unwrap();
    client.flush().await.unwrap();

    let got = tokio::time::timeout(WAIT, run.inbound.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data, OPTIONS, "{}", String::from_utf8_lossy(&got.data));
    let local = client.get_ref().0.local_addr().unwrap();
    assert!(
        matches!(got.flow, Flow::Tls { remote, .. } if remote == local),
        "{:?}",
        got.flow
    );
    assert!(got.flow.is_reliable());
    assert_eq!(got.flow.remote(), local);
    assert!(run.inbound.try_recv().is_none(), "exactly one message");

    run.transports.send(&got.flow, RESPONSE.to_vec());
    let mut answer = vec![0u8; RESPONSE.len()];
    tokio::time::timeout(WAIT, client.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, RESPONSE);
}

#[tokio::test]
async fn message_split_across_writes_arrives_whole_and_is_answered() {
    let cert = make_cert();
    let mut run = bind(&cert.files).await.unwrap();
    let mut client = connect(run.tls_addr, &cert.der).await;
    round_trip(&mut run, &mut client).await;
    // The connection stays usable for a second exchange.
    round_trip(&mut run, &mut client).await;
}

#[tokio::test]
async fn plain_tcp_client_is_closed_and_listener_keeps_accepting() {
    let cert = make_cert();
    let mut run = bind(&cert.files).await.unwrap();

    let mut plain = TcpStream::connect(run.tls_addr).await.unwrap();
    plain.write_all(OPTIONS).await.unwrap();
    let mut sink = Vec::new();
    // The server gives up on the handshake and closes (maybe after an
    // alert, maybe with a reset): either way the read ends.
    let closed = tokio::time::timeout(WAIT, plain.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "plain TCP connection was not closed");
    assert!(
        !sink.starts_with(b"SIP/2.0"),
        "no SIP answer over plain TCP"
    );

    let mut client = connect(run.tls_addr, &cert.der).await;
    round_trip(&mut run, &mut client).await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_handshake_timeout() {
    let cert = make_cert();
    let acceptor = tls::acceptor(&cert.files).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut inbound) = inbound_queues(16, Arc::default());
    let (_stop_tx, stop) = watch::channel(false);
    let settings = TransportSettings::loopback_for_tests();
    let shared = Shared {
        conns: super::tcp::Connections::new(settings.max_connections),
        settings,
        inbound: tx,
    };
    let timeout = Duration::from_millis(300);
    tokio::spawn(tls::accept_loop(listener, acceptor, timeout, shared, stop));

    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Meanwhile a proper client is served.
    let mut client = connect(addr, &cert.der).await;
    client.write_all(OPTIONS).await.unwrap();
    client.flush().await.unwrap();
    let got = tokio::time::timeout(WAIT, inbound.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data, OPTIONS);

    let mut sink = Vec::new();
    let closed = tokio::time::timeout(WAIT, silent.read_to_end(&mut sink)).await;
    assert!(
        closed.is_ok(),
        "silent connection outlived the handshake timeout"
    );
}

#[tokio::test]
async fn missing_cert_file_is_named() {
    let cert = make_cert();
    let missing = cert.files.cert.with_file_name("absent.crt");
    let files = TlsFiles {
        cert: missing.clone(),
        key: cert.files.key.clone(),
    };
    let e = bind_error(bind(&files).await);
    assert!(matches!(&e, TransportError::Tls { path, .. } if *path == missing));
    let text = e.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("cannot read the certificate file"), "{text}");
}

fn write(cert: &Cert, name: &str, contents: &str) -> PathBuf {
    let path = cert.files.cert.with_file_name(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn key_file_without_a_key_says_so() {
    let cert = make_cert();
    let key = write(&cert, "only-cert.pem", &cert.cert_pem);
    let files = TlsFiles {
        cert: cert.files.cert.clone(),
        key: key.clone(),
    };
    let e = bind_error(bind(&files).await);
    assert!(matches!(&e, TransportError::Tls { path, .. } if *path == key));
    let text = e.to_string();
    assert!(text.contains("no private key"), "{text}");
    assert!(text.contains(&key.display().to_string()), "{text}");
}

#[tokio::test]
async fn cert_file_without_a_certificate_says_so() {
    let cert = make_cert();
    let bad = write(&cert, "only-key.pem", &cert.key_pem);
    let files = TlsFiles {
        cert: bad.clone(),
        key: cert.files.key.clone(),
    };
    let e = bind_error(bind(&files).await);
    assert!(matches!(&e, TransportError::Tls { path, .. } if *path == bad));
    assert!(e.to_string().contains("no certificate"), "{e}");
}

#[tokio::test]
async fn key_of_another_certificate_is_refused() {
    let cert = make_cert();
    let other = make_cert();
    let files = TlsFiles {
        cert: cert.files.cert.clone(),
        key: other.files.key.clone(),
    };
    let e = bind_error(bind(&files).await);
    assert!(
        matches!(&e, TransportError::Tls { path, .. } if *path == other.files.key),
        "{e}"
    );
}

#[tokio::test]
async fn tls_listener_without_files_is_refused() {
    let (tx, _inbound) = inbound_queues(1, Arc::default());
    let (_stop_tx, stop) = watch::channel(false);
    let addrs = [listen(Transport::Udp), listen(Transport::Tls)];
    let settings = TransportSettings::loopback_for_tests();
    let result = Transports::bind(&addrs, None, settings, tx, stop).await;
    assert!(matches!(result, Err(TransportError::NoTlsFiles(_))));
}
