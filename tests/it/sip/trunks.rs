//! Carrier interop: numbers the way trunks send them, B-legs over TCP and
//! TLS, several trunks with failover and keep-alives, and a call placed by
//! baresip (a second real user agent).

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::*;

/// A number of `+82…` written nationally (`0…`).
fn national(e164: &str) -> String {
    format!("0{}", e164.strip_prefix("+82").expect("a Korean number"))
}

/// `[trunk]` at the UAS port with more lines.
fn trunk_at(port: u16, extra: &str) -> String {
    format!("[trunk]\naddress = \"127.0.0.1:{port}\"\nallow = [\"127.0.0.1/32\"]\n{extra}")
}

/// A SIPp UAS on `port` over TCP (`-t t1`).
fn tcp_uas(t: &SipTest, file: &str, port: u16, log: &str) -> Sipp {
    let media = free_udp_port().to_string();
    Sipp::spawn(
        t.dir.path(),
        &scenario(file),
        port,
        &["-t", "t1", "-mp", &media],
        log,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_national_caller_and_dialled_number_are_routed_and_written_back_nationally() {
    let korean = "number_format = \"national\"\ncountry = \"82\"\n";
    let t = SipTest::start_trunks(|port, _| trunk_at(port, korean)).await;
    let dialled = national(t.session.a.proxy_number.as_str());
    let (_, uas_log) = run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_call.xml"),
        &national(CUSTOMER),
        &dialled,
    )
    .await;
    let invite = received(&uas_log, "INVITE ");
    let callee = national(MASTER);
    assert!(
        invite.starts_with(&format!("INVITE sip:{callee}@")),
        "{invite}"
    );
    let shown = national(t.session.b.proxy_number.as_str());
    assert!(
        header(&invite, "From").contains(&format!("sip:{shown}@")),
        "{invite}"
    );
    assert!(
        !invite.contains("+82"),
        "nothing in E.164 on a national trunk:\n{invite}"
    );
    let calls = calls_of(&t).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let caller = calls[0].caller.as_ref().map(|c| c.as_str().to_owned());
    assert_eq!(caller.as_deref(), Some(CUSTOMER), "stored in E.164");
    assert_eq!(calls[0].result, Some(ansim::store::CallResult::Answered));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_caller_with_a_tel_pai_is_routed_and_the_callee_sees_nothing_of_it() {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let tel_caller = "+82-10-1234-5678";
    let (_, uas_log) = run_call(
        &t,
        "uas_answer.xml",
        &scenario("uac_anonymous.xml"),
        tel_caller,
        &proxy,
    )
    .await;
    let invite = received(&uas_log, "INVITE ");
    assert!(
        invite.starts_with(&format!("INVITE sip:{MASTER}@")),
        "{invite}"
    );
    let shown = t.session.b.proxy_number.as_str();
    assert!(
        header(&invite, "From").contains(&format!("sip:{shown}@")),
        "{invite}"
    );
    for secret in [
        "1234-5678",
        "1012345678",
        "P-Asserted-Identity",
        "Privacy",
        "Remote-Party-ID",
        "nonymous",
        "tel:",
    ] {
        assert!(
            !invite.contains(secret),
            "{secret} reached the callee:\n{invite}"
        );
    }
    let calls = calls_of(&t).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let caller = calls[0].caller.as_ref().map(|c| c.as_str().to_owned());
    assert_eq!(caller.as_deref(), Some(CUSTOMER));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_any_number_is_an_unknown_caller_with_its_reason() {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let refused = refused_scenario(t.dir.path(), 404);
    let caller = uac(&t, &refused, "anonymous", &proxy, "uac");
    let (ok, log) = caller.finish().await;
    assert!(ok, "the caller gets the unknown caller's 404:\n{log}");
    // Refused calls have no session: read the record from the database.
    let db = format!("sqlite://{}/ansim.db", t.dir.path().display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    let mut rows: Vec<(String, String, Option<String>, Option<i64>)> = Vec::new();
    for _ in 0..100 {
        rows = sqlx::query_as("SELECT caller, dialled, reason, sip_status FROM calls")
            .fetch_all(&pool)
            .await
            .unwrap();
        if rows.iter().all(|r| r.3.is_some()) && !rows.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows,
        vec![(
            String::new(),
            proxy,
            Some("no-caller-number".to_owned()),
            Some(404)
        )]
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b_leg_over_tcp_reaches_a_sipp_uas() {
    let t = SipTest::start_trunks(|port, _| trunk_at(port, "transport = \"tcp\"\n")).await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let callee = tcp_uas(&t, "uas_hangup.xml", t.uas_port, "uas");
    let caller = uac(&t, &scenario("uac_hungup.xml"), CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    let invite = received(&uas_log, "INVITE ");
    assert!(
        header(&invite, "Via").starts_with("SIP/2.0/TCP "),
        "{invite}"
    );
    assert!(
        header(&invite, "Contact").contains("transport=tcp"),
        "{invite}"
    );
    // The callee's BYE came back on ansim's connection and was answered.
    assert!(
        messages(&uas_log, "received")
            .iter()
            .any(|m| m.starts_with("SIP/2.0 200"))
    );
    let calls = calls_of(&t).await;
    assert_eq!(calls[0].hangup_side, Some(ansim::store::HangupSide::Callee));
    t.stop().await;
}

/// A test CA and a certificate it signed for 127.0.0.1: (CA PEM, leaf
/// chain, leaf key).
fn test_pki() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    (ca.pem(), vec![leaf.der().clone()], key)
}

/// A TLS front for a SIPp TCP UAS (Debian's SIPp is built without TLS):
/// accepts TLS connections on a free port with `chain`/`key` and relays
/// each to `backend` over TCP. Returns its port and the count of
/// handshakes done.
async fn tls_front(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    backend: u16,
) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, done) = (acceptor.clone(), done.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                done.fetch_add(1, Ordering::SeqCst);
                let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                else {
                    let _ = tls.shutdown().await;
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut tcp).await;
            });
        }
    });
    (port, handshakes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_b_leg_over_tls_verified_by_the_trunks_ca_reaches_a_sipp_uas() {
    let (ca, chain, key) = test_pki();
    let backend = free_udp_port();
    let (front, handshakes) = tls_front(chain, key, backend).await;
    let t = SipTest::start_trunks(|_, dir| {
        let ca_file = dir.join("carrier-ca.pem");
        std::fs::write(&ca_file, &ca).unwrap();
        let tls = format!("transport = \"tls\"\ntls_ca = \"{}\"\n", ca_file.display());
        trunk_at(front, &tls)
    })
    .await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let callee = tcp_uas(&t, "uas_answer.xml", backend, "uas");
    let caller = uac(&t, &scenario("uac_call.xml"), CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    let invite = received(&uas_log, "INVITE ");
    assert!(
        header(&invite, "Via").starts_with("SIP/2.0/TLS "),
        "{invite}"
    );
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        1,
        "one connection, reused for the whole call"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_whose_certificate_the_ca_does_not_sign_gets_no_call() {
    let (_, chain, key) = test_pki();
    let (other_ca, _, _) = test_pki();
    let backend = free_udp_port();
    let (front, handshakes) = tls_front(chain, key, backend).await;
    let t = SipTest::start_trunks(|_, dir| {
        let ca_file = dir.join("other-ca.pem");
        std::fs::write(&ca_file, &other_ca).unwrap();
        let tls = format!("transport = \"tls\"\ntls_ca = \"{}\"\n", ca_file.display());
        trunk_at(front, &tls)
    })
    .await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    // The handshake fails on our side: a transport error, 408 to the
    // caller at once (no trunk to fail over to), nothing sent in clear.
    let refused = refused_scenario(t.dir.path(), 408);
    let caller = uac(&t, &refused, CUSTOMER, &proxy, "uac");
    let started = std::time::Instant::now();
    let (ok, log) = caller.finish().await;
    assert!(ok, "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not Timer B: {:?}",
        started.elapsed()
    );
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_answering_503_hands_the_call_to_the_next_trunk() {
    let second = free_udp_port();
    let t = SipTest::start_trunks(|port, _| {
        format!(
            "[[trunks]]\nname = \"primary\"\naddress = \"127.0.0.1:{port}\"\nallow = [\"127.0.0.1/32\"]\npriority = 1\n\
             [[trunks]]\nname = \"backup\"\naddress = \"127.0.0.1:{second}\"\nallow = [\"127.0.0.1/32\"]\npriority = 2\n"
        )
    })
    .await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let primary = uas(&t, &scenario("uas_unavailable.xml"), "primary");
    let media = free_udp_port().to_string();
    let backup = Sipp::spawn(
        t.dir.path(),
        &scenario("uas_answer.xml"),
        second,
        &["-mp", &media],
        "backup",
    );
    let caller = uac(&t, &scenario("uac_call.xml"), CUSTOMER, &proxy, "uac");
    let (uac_ok, uac_log) = caller.finish().await;
    let (primary_ok, primary_log) = primary.finish().await;
    let (backup_ok, backup_log) = backup.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    assert!(primary_ok, "primary failed:\n{primary_log}");
    assert!(backup_ok, "backup failed:\n{backup_log}");
    let first = received(&primary_log, "INVITE ");
    let again = received(&backup_log, "INVITE ");
    assert_eq!(header(&first, "Call-ID"), header(&again, "Call-ID"));
    assert!(
        !messages(&uac_log, "received")
            .iter()
            .any(|m| m.starts_with("SIP/2.0 503"))
    );
    let calls = calls_of(&t).await;
    assert_eq!(calls[0].result, Some(ansim::store::CallResult::Answered));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_show_each_trunks_state_in_metrics() {
    let dead = free_udp_port();
    let t = SipTest::start_trunks(|port, _| {
        format!(
            "[[trunks]]\nname = \"alive\"\naddress = \"127.0.0.1:{port}\"\nallow = [\"127.0.0.1/32\"]\nkeepalive = \"1s\"\n\
             [[trunks]]\nname = \"silent\"\naddress = \"127.0.0.1:{dead}\"\nallow = [\"127.0.0.1/32\"]\nkeepalive = \"1s\"\n"
        )
    })
    .await;
    let media = free_udp_port().to_string();
    let alive = Sipp::spawn(
        t.dir.path(),
        &scenario("uas_options.xml"),
        t.uas_port,
        &["-m", "3", "-mp", &media],
        "alive",
    );
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics_text(&t).await;
        if text.contains("ansim_trunk_up{trunk=\"alive\"} 1")
            && text.contains("ansim_trunk_up{trunk=\"silent\"} 0")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("ansim_trunk_up{trunk=\"alive\"} 1"), "{text}");
    assert!(
        text.contains("ansim_trunk_up{trunk=\"silent\"} 0"),
        "{text}"
    );
    let (ok, log) = alive.finish().await;
    assert!(ok, "SIPp answered three probes:\n{log}");
    let options = received(&log, "OPTIONS ");
    assert!(
        options.starts_with(&format!("OPTIONS sip:127.0.0.1:{} SIP/2.0", t.uas_port)),
        "{options}"
    );
    t.stop().await;
}

/// baresip's configuration for a caller on `port`: no sound card (ALSA's
/// null device both ways), PCMU, the menu for `/dial`.
const BARESIP_CONFIG: &str = "poll_method epoll\n\
    sip_listen 127.0.0.1:[port]\n\
    audio_player alsa,null\naudio_source alsa,null\naudio_alert alsa,null\n\
    module_path /usr/lib/baresip/modules\n\
    module g711.so\nmodule alsa.so\nmodule_app account.so\nmodule_app menu.so\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_places_a_call_through_ansim_to_sipp() {
    let t = SipTest::start("127.0.0.1/32").await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    let home = t.dir.path().join("baresip");
    std::fs::create_dir_all(&home).unwrap();
    let port = free_udp_port().to_string();
    std::fs::write(home.join("config"), BARESIP_CONFIG.replace("[port]", &port)).unwrap();
    let account = format!("<sip:{CUSTOMER}@127.0.0.1>;regint=0;audio_codecs=PCMU\n");
    std::fs::write(home.join("accounts"), account).unwrap();
    let callee = uas(&t, &scenario("uas_hangup.xml"), "uas");
    let dial = format!("/dial sip:{proxy}@{}", t.sip);
    let run = tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(&home)
        .args(["-n", "127.0.0.1", "-e", &dial, "-t", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("baresip quits by itself (-t 5)")
        .expect("baresip is installed (apt-get install baresip-core)");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uas_ok, "callee failed:\n{uas_log}\nbaresip said:\n{said}");
    assert!(said.contains("Call established"), "{said}");
    let invite = received(&uas_log, "INVITE ");
    assert!(
        invite.starts_with(&format!("INVITE sip:{MASTER}@")),
        "{invite}"
    );
    let contact = format!("127.0.0.1:{port}");
    for secret in ["baresip", "1012345678", &contact] {
        assert!(
            !invite.contains(secret),
            "{secret} reached the callee:\n{invite}"
        );
    }
    let calls = calls_of(&t).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].result, Some(ansim::store::CallResult::Answered));
    assert_eq!(calls[0].hangup_side, Some(ansim::store::HangupSide::Callee));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_tcp_connection_to_the_trunk_is_opened_again_for_the_next_call() {
    let t = SipTest::start_trunks(|port, _| trunk_at(port, "transport = \"tcp\"\n")).await;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    for round in 0..2 {
        // Each SIPp callee takes one call and exits, closing the connection.
        let callee = tcp_uas(&t, "uas_answer.xml", t.uas_port, &format!("uas{round}"));
        let log = format!("uac{round}");
        let caller = uac(&t, &scenario("uac_call.xml"), CUSTOMER, &proxy, &log);
        let (uac_ok, uac_log) = caller.finish().await;
        let (uas_ok, uas_log) = callee.finish().await;
        assert!(uac_ok, "caller {round} failed:\n{uac_log}");
        assert!(uas_ok, "callee {round} failed:\n{uas_log}");
    }
    let calls = calls_of(&t).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| c.result == Some(ansim::store::CallResult::Answered))
    );
    t.stop().await;
}
