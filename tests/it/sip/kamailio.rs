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
