//! `deploy/kamailio/kamailio.cfg`, the dispatcher shipped for several
//! nodes: Kamailio itself must accept it.

use std::path::Path;

/// `kamailio -c` on the shipped config, listening on loopback, with the
/// shipped node list.
#[test]
fn the_shipped_dispatcher_config_is_accepted_by_kamailio() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kamailio");
    let list = format!(
        "DISPATCHER_LIST=\"{}\"",
        dir.join("dispatcher.list").display()
    );
    let out = std::process::Command::new("kamailio")
        .arg("-c")
        .arg("-f")
        .arg(dir.join("kamailio.cfg"))
        .args(["-A", "LISTEN=udp:127.0.0.1:15060", "-A", &list])
        .output()
        .expect("kamailio is installed (the kamailio package)");
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kamailio -c refused the config:\n{log}"
    );
    assert!(log.contains("config file ok"), "{log}");
    assert!(log.contains("127.0.0.1 [127.0.0.1]:15060"), "{log}");
}

/// Kamailio with the shipped config on loopback, in front of `node`.
struct Dispatcher {
    /// Where callers send their INVITEs.
    addr: std::net::SocketAddr,
    /// The running kamailio (killed on drop).
    child: tokio::process::Child,
}

impl Dispatcher {
    async fn start(dir: &Path, nodes: &[std::net::SocketAddr]) -> Dispatcher {
        let list = dir.join("dispatcher.list");
        let lines: String = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| format!("1 sip:{node} 0 0 duid=n{i}\n"))
            .collect();
        std::fs::write(&list, lines).unwrap();
        let port = super::free_udp_port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kamailio/kamailio.cfg");
        let child = tokio::process::Command::new("kamailio")
            .current_dir(dir)
            .args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(&cfg)
            .args(["-A", &format!("LISTEN=udp:{addr}")])
            .args(["-A", &format!("DISPATCHER_LIST=\"{}\"", list.display())])
            .args(["-A", "CHILDREN=1", "-P"])
            .arg(dir.join("kamailio.pid"))
            .args(["-Y"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("kamailio is installed");
        super::wait_for_options(addr).await;
        Dispatcher { addr, child }
    }

    /// SIGTERM (kamailio's main process then ends its children; SIGKILL
    /// would leave them), and waits for it.
    async fn stop(mut self) {
        self.terminate();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.child.wait()).await;
    }

    fn terminate(&self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: a signal to our own child, by its id.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

impl Drop for Dispatcher {
    /// A test that failed half-way still ends kamailio's children.
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A call placed through Kamailio reaches the callee through ansim, and
/// its ACK and BYE (in-dialog) reach the node that owns the dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_dispatcher_reaches_the_callee_and_ends() {
    let t = super::SipTest::start("127.0.0.1/32").await;
    let k = Dispatcher::start(t.dir.path(), &[t.sip]).await;
    call_through(&t, &k).await;
    k.stop().await;
    t.stop().await;
}

/// With a dead node first in the list, every call still reaches the live
/// one: the dispatcher fails over on no answer (and then probes the dead
/// one out of the set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_fails_over_from_a_dead_node() {
    let t = super::SipTest::start("127.0.0.1/32").await;
    // A port nobody answers on: bound, never read.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let k = Dispatcher::start(t.dir.path(), &[dead.local_addr().unwrap(), t.sip]).await;
    call_through(&t, &k).await;
    // The dead node was tried first: its INVITE is waiting in the socket.
    dead.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 8192];
    let mut tried = false;
    while let Ok(len) = dead.recv(&mut buf) {
        tried |= buf[..len].starts_with(b"INVITE ");
    }
    assert!(tried, "the dead node got the INVITE first");
    k.stop().await;
    t.stop().await;
}

/// One SIPp call through `k` to the callee behind `t`.
async fn call_through(t: &super::SipTest, k: &Dispatcher) {
    use super::*;
    let proxy = t.session.a.proxy_number.as_str().to_owned();
    // A caller that, as a real phone, sends its ACK and BYE to the 200's
    // Contact along its Record-Route (the shipped scenario ignores both).
    let routed = std::fs::read_to_string(scenario("uac_call.xml"))
        .unwrap()
        .replace(
            "<recv response=\"200\" rtd=\"true\"/>",
            "<recv response=\"200\" rtd=\"true\" rrs=\"true\"/>",
        )
        .replace(
            "ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
            "ACK [next_url] SIP/2.0\n      [routes]",
        )
        .replace(
            "BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0",
            "BYE [next_url] SIP/2.0\n      [routes]",
        );
    let routed_file = t.dir.path().join("uac_routed.xml");
    std::fs::write(&routed_file, routed).unwrap();
    let callee = uas(t, &scenario("uas_answer.xml"), "uas");
    let caller = Sipp::spawn(
        t.dir.path(),
        &routed_file,
        free_udp_port(),
        &[
            "-s",
            &proxy,
            "-key",
            "caller",
            CUSTOMER,
            "-mp",
            &free_udp_port().to_string(),
            &k.addr.to_string(),
        ],
        "uac",
    )
    .movable();
    let (uac_ok, uac_log) = caller.finish().await;
    let (uas_ok, uas_log) = callee.finish().await;
    assert!(uac_ok, "caller failed:\n{uac_log}");
    assert!(uas_ok, "callee failed:\n{uas_log}");
    let bye = messages(&uac_log, "sent")
        .into_iter()
        .find(|m| m.starts_with("BYE"))
        .unwrap();
    assert!(
        bye.contains("Route: <sip:127.0.0.1:"),
        "via the dispatcher: {bye}"
    );
    let invite = received(&uas_log, "INVITE ");
    assert!(
        invite.starts_with(&format!("INVITE sip:{MASTER}@")),
        "{invite}"
    );
    let calls = calls_of(t).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].result.map(|r| r.as_str()), Some("answered"));
}
