//! `ansim serve` with `[api.tls]`: the API answers over HTTPS (rustls,
//! ALPN http/1.1) and a plain-HTTP request on that port gets no answer.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS client that trusts only `cert` and offers ALPN http/1.1.
pub(crate) fn client(cert: rustls::pki_types::CertificateDer<'static>) -> TlsConnector {
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
    let port = crate::harness::free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let (cert, key) = (d.join("api.crt"), d.join("api.key"));
    let served = crate::harness::start_serve(
        d,
        &["serve"],
        &[
            ("ANSIM_API__LISTEN", listen.as_ref()),
            ("ANSIM_API__TLS__CERT", cert.as_os_str()),
            ("ANSIM_API__TLS__KEY", key.as_os_str()),
            ("ANSIM_SIP__LISTEN", "[\"udp:127.0.0.1:0\"]".as_ref()),
            ("ANSIM_MEDIA__PORTS", "41900-41909".as_ref()),
        ],
    )
    .await;
    let (mut child, log) = (served.child, served.log);
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
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{answer}"
    );

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
