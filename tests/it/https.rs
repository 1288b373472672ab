//! `ansim serve` with `[api.tls]`: the API answers over HTTPS (rustls,
//! ALPN http/1.1) and a plain-HTTP request on that port gets no answer.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const BIN: &str = env!("CARGO_BIN_EXE_ansim");

fn client(cert: rustls::pki_types::CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn the_api_serves_https_with_api_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(d.join("api.crt"), certified.cert.pem()).unwrap();
    std::fs::write(d.join("api.key"), certified.signing_key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(BIN)
        .current_dir(d)
        .arg("serve")
        .env("ANSIM_API__LISTEN", &listen)
        .env("ANSIM_API__TLS__CERT", d.join("api.crt"))
        .env("ANSIM_API__TLS__KEY", d.join("api.key"))
        .env("ANSIM_SIP__LISTEN", "[\"udp:127.0.0.1:0\"]")
        .env("ANSIM_MEDIA__PORTS", "41900-41909")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        log.push_str(&line);
        log.push('\n');
        if line.contains("API listening") {
            break;
        }
    }
    assert!(log.contains("HTTPS API listening"), "{log}");

    let tcp = TcpStream::connect(&listen).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = client(certified.cert.der().clone())
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"database\":\"ok\""), "{answer}");

    // Plain HTTP on the HTTPS port: no HTTP answer, only a TLS alert or a
    // closed connection.
    let mut plain = TcpStream::connect(&listen).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server closes a plain-HTTP connection");
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    child.kill().await.unwrap();
}
