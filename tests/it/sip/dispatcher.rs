//! Kamailio with the shipped `deploy/kamailio/kamailio.cfg` in front of
//! ansim nodes, and SIPp callers that reach the nodes through it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CUSTOMER, Sipp, free_udp_port};

/// Kamailio with the shipped config on loopback, in front of some nodes.
pub(crate) struct Dispatcher {
    /// Where callers send their INVITEs.
    pub addr: SocketAddr,
    /// The running kamailio (killed on drop).
    child: tokio::process::Child,
}

impl Dispatcher {
    /// Kamailio dispatching to `nodes` (set 1, in this order), with the
    /// config's defaults.
    pub async fn start(dir: &Path, nodes: &[SocketAddr]) -> Dispatcher {
        Dispatcher::start_with(dir, nodes, &[]).await
    }

    /// As [`Dispatcher::start`], with `NAME=value` defines (`-A`) that
    /// replace the config's `#!trydef` defaults, e.g. `PING_INTERVAL=1`.
    pub async fn start_with(dir: &Path, nodes: &[SocketAddr], defines: &[&str]) -> Dispatcher {
        let list = dir.join("dispatcher.list");
        let lines: String = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| format!("1 sip:{node} 0 0 duid=n{i}\n"))
            .collect();
        std::fs::write(&list, lines).unwrap();
        let port = free_udp_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kamailio/kamailio.cfg");
        let mut cmd = tokio::process::Command::new("kamailio");
        cmd.current_dir(dir)
            .args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(&cfg)
            .args(["-A", &format!("LISTEN=udp:{addr}")])
            .args(["-A", &format!("DISPATCHER_LIST=\"{}\"", list.display())])
            .args(["-A", "CHILDREN=1"]);
        for define in defines {
            cmd.args(["-A", define]);
        }
        let child = cmd
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("kamailio.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("kamailio is installed");
        super::wait_for_options(addr).await;
        Dispatcher { addr, child }
    }

    /// SIGTERM (kamailio's main process then ends its children; SIGKILL
    /// would leave them), and waits for it.
    pub async fn stop(mut self) {
        self.terminate();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    fn terminate(&self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: a signal to our own child, by its id.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }

    /// A SIPp caller (CUSTOMER) dialling `proxy` through the dispatcher,
    /// with `scenario_file` made to follow the Record-Route (as a real
    /// phone does); `extra` are more SIPp arguments, `log` names its log.
    pub fn call(
        &self,
        dir: &Path,
        scenario_file: &Path,
        proxy: &str,
        extra: &[&str],
        log: &str,
    ) -> Sipp {
        let routed = routed(dir, scenario_file);
        let media = free_udp_port().to_string();
        let target = self.addr.to_string();
        let mut args = vec!["-s", proxy, "-key", "caller", CUSTOMER, "-mp", &media];
        args.extend_from_slice(extra);
        args.push(&target);
        Sipp::spawn(dir, &routed, free_udp_port(), &args, log).movable()
    }
}

impl Drop for Dispatcher {
    /// A test that failed half-way still ends kamailio's children.
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A copy of the UAC `scenario_file` that, as a real phone, sends its ACK
/// and BYE to the 200's Contact along its Record-Route (the shipped
/// scenarios send both straight to the address they called).
pub(crate) fn routed(dir: &Path, scenario_file: &Path) -> PathBuf {
    let text = std::fs::read_to_string(scenario_file)
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
    let name = scenario_file.file_name().unwrap().to_string_lossy();
    let path = dir.join(format!("routed_{name}"));
    std::fs::write(&path, text).unwrap();
    path
}
