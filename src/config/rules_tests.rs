//! One test per validation rule: each error names its `section.key`.

use std::path::Path;
use std::time::Duration;

use super::tests::{SHIPPED, assert_rejected, err, no_env, with_env};
use super::*;

#[test]
fn bad_listen_string() {
    assert_rejected(
        "[sip]\nlisten = [\"udp:0.0.0.0\"]",
        "sip.listen",
        "udp:0.0.0.0",
    );
    assert_rejected(
        "[sip]\nlisten = [\"sctp:0.0.0.0:5060\"]",
        "sip.listen",
        "sctp",
    );
    assert_rejected("[sip]\nlisten = []", "sip.listen", "at least one");
    let twice = "[sip]\nlisten = [\"udp:0.0.0.0:5060\", \"udp:0.0.0.0:5060\"]";
    assert_rejected(twice, "sip.listen", "twice");
}

#[test]
fn tls_listen_needs_sip_tls() {
    let toml = "[sip]\nlisten = [\"tls:0.0.0.0:5061\"]";
    assert_rejected(toml, "sip.listen", "needs [sip.tls]");
    let ok = format!("{toml}\n[sip.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"");
    let c = Config::from_toml_str(&ok, no_env()).unwrap();
    assert_eq!(c.sip.listen[0].transport, Transport::Tls);
    assert_rejected(
        &format!("{toml}\n[sip.tls]\ncert = \"c.pem\""),
        "sip.tls.key",
        "required",
    );
}

#[test]
fn bad_sip_domain() {
    assert_rejected(
        "[sip]\ndomain = \"\"",
        "sip.domain",
        "not a valid SIP domain",
    );
}

#[test]
fn bad_sip_call_timers() {
    assert_rejected(
        "[sip]\nno_answer_timeout = \"0s\"",
        "sip.no_answer_timeout",
        "more than 0",
    );
    assert_rejected(
        "[sip]\nmax_call_duration = \"forever\"",
        "sip.max_call_duration",
        "",
    );
}

#[test]
fn session_timer_settings() {
    let c = Config::from_toml_str(
        "[sip]\nsession_expires = \"10m\"\nmin_session_expires = \"2s\"\n\
         dialog_probe_interval = \"30s\"",
        no_env(),
    )
    .unwrap();
    assert_eq!(c.sip.session_expires, Duration::from_secs(600));
    assert_eq!(c.sip.min_session_expires, Duration::from_secs(2));
    assert_eq!(c.sip.dialog_probe_interval, Duration::from_secs(30));
    let key = "sip.session_expires";
    assert_rejected("[sip]\nsession_expires = \"60s\"", key, "between");
    assert_rejected("[sip]\nsession_expires = \"2d\"", key, "between");
    assert_rejected("[sip]\nsession_expires = \"1500ms\"", key, "whole seconds");
    assert_rejected("[sip]\nsession_expires = \"soon\"", key, "");
    let key = "sip.min_session_expires";
    assert_rejected("[sip]\nmin_session_expires = \"0s\"", key, "at least 1s");
    let key = "sip.dialog_probe_interval";
    assert_rejected("[sip]\ndialog_probe_interval = \"2d\"", key, "at most 1d");
    let e = err("[sip]\nsession_expire = \"90s\"");
    assert!(e.to_string().contains("session_expire"), "{e}");
}

#[test]
fn bad_trunk_address() {
    assert_rejected(
        "[trunk]\naddress = \"trunk.example:5060\"",
        "trunk.address",
        "invalid",
    );
    assert_rejected(
        "[trunk]\naddress = \"0.0.0.0:5060\"",
        "trunk.address",
        "destination",
    );
}

#[test]
fn bad_cidr() {
    assert_rejected(
        "[trunk]\nallow = [\"10.0.0.0/33\"]",
        "trunk.allow",
        "10.0.0.0/33",
    );
    let c = Config::from_toml_str("[trunk]\nallow = [\"10.0.0.1\", \"::1\"]", no_env()).unwrap();
    assert_eq!(c.trunks[0].allow[0].to_string(), "10.0.0.1/32");
    assert_eq!(c.trunks[0].allow[1].to_string(), "::1/128");
}

#[test]
fn bad_media_addresses() {
    assert_rejected("[media]\nbind = \"localhost\"", "media.bind", "localhost");
    assert_rejected("[media]\nadvertise = \"0.0.0.0\"", "media.advertise", "SDP");
}

#[test]
fn bad_port_range() {
    assert_rejected("[media]\nports = \"30000-20000\"", "media.ports", "greater");
    assert_rejected("[media]\nports = \"1000-2000\"", "media.ports", "1024");
    assert_rejected(
        "[media]\nports = \"20000-20002\"",
        "media.ports",
        "at least 4",
    );
    assert_rejected("[media]\nports = \"20000\"", "media.ports", "not a range");
}

#[test]
fn announcement_path() {
    let c = Config::from_toml_str("[media]\nannouncement = \"a.wav\"", no_env()).unwrap();
    assert_eq!(c.media.announcement.as_deref(), Some(Path::new("a.wav")));
}

#[test]
fn out_of_session_modes() {
    let c = Config::from_toml_str("", no_env()).unwrap();
    assert_eq!(c.routing.out_of_session, OutOfSession::Reject);
    let toml = "[routing]\nout_of_session = \"announce\"\nout_of_session_announcement = \"o.wav\"\n\
                out_of_session_announce = \"early\"";
    let c = Config::from_toml_str(toml, no_env()).unwrap();
    let announce = OutOfSession::Announce {
        announcement: "o.wav".into(),
        early: true,
    };
    assert_eq!(c.routing.out_of_session, announce);
    let toml = "[routing]\nout_of_session = \"forward\"\nfallback_number = \"+8215001234\"";
    let c = Config::from_toml_str(toml, no_env()).unwrap();
    let OutOfSession::Forward {
        to,
        announcement,
        record,
    } = c.routing.out_of_session
    else {
        panic!("not forward: {:?}", c.routing.out_of_session);
    };
    assert_eq!(
        (to.as_str(), announcement, record),
        ("+8215001234", None, true)
    );
    let vars = [
        ("ANSIM_ROUTING__OUT_OF_SESSION", "forward"),
        ("ANSIM_ROUTING__FALLBACK_NUMBER", "+8215001234"),
        ("ANSIM_ROUTING__FALLBACK_RECORD", "false"),
    ];
    let c = with_env("", &vars).unwrap();
    assert!(matches!(
        c.routing.out_of_session,
        OutOfSession::Forward { record: false, .. }
    ));
}

#[test]
fn out_of_session_needs_what_its_mode_uses() {
    let r = "[routing]\n";
    assert_rejected(
        &format!("{r}out_of_session = \"announce\""),
        "routing.out_of_session_announcement",
        "needs",
    );
    assert_rejected(
        &format!("{r}out_of_session = \"forward\""),
        "routing.fallback_number",
        "needs",
    );
    let bad = format!("{r}out_of_session = \"forward\"\nfallback_number = \"015001234\"");
    assert_rejected(&bad, "routing.fallback_number", "E.164");
    assert_rejected(
        &format!("{r}out_of_session = \"drop\""),
        "routing.out_of_session",
        "drop",
    );
    let bad = format!("{r}out_of_session_announce = \"ring\"");
    assert_rejected(&bad, "routing.out_of_session_announce", "ring");
}

#[test]
fn status_out_of_range() {
    let key = "routing.unknown_caller_status";
    assert_rejected("[routing]\nunknown_caller_status = 200", key, "400..=699");
    assert_rejected("[routing]\nunknown_caller_status = 700", key, "400..=699");
    assert_rejected("[routing]\nunknown_caller_status = -1", key, "400..=699");
    assert_rejected("[routing]\nunknown_caller_status = 70000", key, "400..=699");
}

#[test]
fn bad_duration_for_each_duration_key() {
    let keys = [
        ("routing", "quarantine"),
        ("routing", "default_ttl"),
        ("routing", "max_ttl"),
        ("routing", "route_cache_ttl"),
        ("retention", "epoch"),
        ("retention", "sweep_interval"),
        ("retention", "personal_data"),
        ("api", "grant_ttl"),
        ("api", "header_timeout"),
    ];
    for (section, key) in keys {
        let toml = format!("[{section}]\n{key} = \"7 days\"");
        assert_rejected(
            &toml,
            &format!("{section}.{key}"),
            "invalid duration '7 days'",
        );
    }
    let class = "[retention]\nclasses = { ad-6m = \"6 months\", dispute-3y = \"3y\" }";
    assert_rejected(class, "retention.classes.ad-6m", "invalid duration");
}

#[test]
fn ttl_rules() {
    let key = "routing.default_ttl";
    assert_rejected("[routing]\ndefault_ttl = \"0s\"", key, "greater than 0s");
    assert_rejected(
        "[routing]\nmax_ttl = \"0s\"",
        "routing.max_ttl",
        "greater than 0s",
    );
    assert_rejected(
        "[routing]\ndefault_ttl = \"400d\"",
        key,
        "longer than routing.max_ttl",
    );
    let c = Config::from_toml_str("[routing]\nroute_cache_ttl = \"0s\"", no_env()).unwrap();
    assert_eq!(c.routing.route_cache_ttl, Duration::ZERO);
}

#[test]
fn unsupported_db_scheme() {
    let e = err("[store]\ndatabase_url = \"mysql://u@h/db\"");
    assert_eq!(
        e.to_string(),
        "store.database_url: unsupported scheme 'mysql', expected sqlite:// or postgres://"
    );
}

#[test]
fn bad_recordings_url() {
    let key = "store.recordings";
    assert_rejected("[store]\nrecordings = \"gs://b/p\"", key, "file://");
    assert_rejected("[store]\nrecordings = \"s3://\"", key, "bucket");
    let c = Config::from_toml_str("[store]\nrecordings = \"s3://rec/ansim/\"", no_env()).unwrap();
    let expected = BlobLocation::S3 {
        bucket: "rec".into(),
        prefix: "ansim".into(),
    };
    assert_eq!(c.store.recordings, expected);
}

#[test]
fn bad_key_store_string() {
    assert_rejected("[keys]\nstore = \"vault:x\"", "keys.store", "dir:");
    assert_rejected("[keys]\nstore = \"pkcs11:/m.so\"", "keys.store", "slot");
    assert_rejected(
        "[keys]\nmaster_key_file = \"\"",
        "keys.master_key_file",
        "empty",
    );
    let toml =
        "[keys]\nstore = \"pkcs11:/usr/lib/softhsm/libsofthsm2.so?slot=0&pin-file=/run/pin\"";
    let c = Config::from_toml_str(toml, no_env()).unwrap();
    assert!(matches!(
        c.keys.store,
        KeyStoreLocation::Pkcs11 { slot: 0, .. }
    ));
}

#[test]
fn default_class_not_a_class() {
    let e = err("[retention]\ndefault_class = \"forever\"");
    assert_eq!(e.key().as_deref(), Some("retention.default_class"));
    assert!(e.to_string().contains("'forever' is not a class"), "{e}");
    assert!(
        e.to_string().contains("ad-6m, contract-5y, dispute-3y"),
        "{e}"
    );
}

#[test]
fn legally_required_unknown_class() {
    let toml = "[retention]\nlegally_required = [\"contract-5y\", \"tax-10y\"]";
    assert_rejected(
        toml,
        "retention.legally_required",
        "'tax-10y' is not a class",
    );
}

#[test]
fn bad_class_name() {
    let toml = "[retention]\nclasses = { Ad = \"1d\" }\ndefault_class = \"Ad\"";
    assert_rejected(toml, "retention.classes.Ad", "a-z");
}

#[test]
fn epoch_below_one_second() {
    assert_rejected(
        "[retention]\nepoch = \"500ms\"",
        "retention.epoch",
        "at least 1s",
    );
    let c = Config::from_toml_str("[retention]\nepoch = \"1s\"", no_env()).unwrap();
    assert_eq!(c.retention.epoch, Duration::from_secs(1));
}

#[test]
fn plain_http_on_public_address_refused_unless_allowed() {
    let toml = "[api]\nlisten = \"0.0.0.0:8080\"";
    assert_rejected(toml, "api.listen", "allow_plain_http");
    let allowed = format!("{toml}\nallow_plain_http = true");
    assert!(Config::from_toml_str(&allowed, no_env()).is_ok());
    let with_tls = format!("{toml}\n[api.tls]\ncert = \"c\"\nkey = \"k\"");
    assert!(Config::from_toml_str(&with_tls, no_env()).is_ok());
    assert!(Config::from_toml_str("[api]\nlisten = \"[::1]:8080\"", no_env()).is_ok());
    let e = with_env("", &[("ANSIM_API__LISTEN", "0.0.0.0:8080")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_API__LISTEN"));
}

#[test]
fn api_limits_reject_values_that_make_no_sense() {
    let key = "api.header_timeout";
    assert_rejected("[api]\nheader_timeout = \"0s\"", key, "greater than 0s");
    let key = "api.body_limit";
    assert_rejected("[api]\nbody_limit = 0", key, "from 1024");
    assert_rejected("[api]\nbody_limit = 1023", key, "not 1023");
    let key = "api.max_connections";
    assert_rejected("[api]\nmax_connections = 0", key, "from 1");
    assert_rejected("[api]\nmax_connections = -5", key, "not -5");
    let key = "api.auth_failures_per_minute";
    assert_rejected("[api]\nauth_failures_per_minute = 0", key, "from 1");
    let e = with_env("", &[("ANSIM_API__BODY_LIMIT", "12")]).unwrap_err();
    assert_eq!(e.env_var(), Some("ANSIM_API__BODY_LIMIT"));

    let toml = "[api]\nheader_timeout = \"1s\"\nbody_limit = 1024\n\
                max_connections = 1\nauth_failures_per_minute = 1";
    let c = Config::from_toml_str(toml, no_env()).unwrap();
    assert_eq!(c.api.header_timeout, Duration::from_secs(1));
    assert_eq!(
        (
            c.api.body_limit,
            c.api.max_connections,
            c.api.auth_failures_per_minute
        ),
        (1024, 1, 1)
    );
}

#[test]
fn api_tls_needs_cert() {
    assert_rejected("[api.tls]\nkey = \"k\"", "api.tls.cert", "required");
}

#[test]
fn mangled_shipped_file_never_panics() {
    let boundaries = (0..=SHIPPED.len()).filter(|i| SHIPPED.is_char_boundary(*i));
    for end in boundaries {
        let _ = Config::from_toml_str(&SHIPPED[..end], no_env());
    }
    let lines: Vec<&str> = SHIPPED.lines().collect();
    for skip in 0..lines.len() {
        let mut text = lines.clone();
        text.remove(skip);
        let _ = Config::from_toml_str(&text.join("\n"), no_env());
    }
    for value in [
        "",
        "0",
        "-1",
        "\"x\"",
        "[]",
        "{}",
        "true",
        "\u{1F600}",
        "1.5",
        "1979-05-27",
    ] {
        for var in [
            "ANSIM_SIP__LISTEN",
            "ANSIM_RETENTION__CLASSES",
            "ANSIM_API__TLS",
            "ANSIM_X__Y",
        ] {
            let _ = with_env(SHIPPED, &[(var, value)]);
        }
    }
}

#[test]
fn media_source_policy() {
    let c = Config::from_toml_str(
        "[media]\nsource = \"learn\"\nlearn_window = \"3s\"",
        no_env(),
    )
    .unwrap();
    assert_eq!(
        c.media.source,
        crate::media::SourcePolicy::Learn {
            window: Duration::from_secs(3)
        }
    );
    assert_eq!(
        Config::default_dev().media.source,
        crate::media::SourcePolicy::Sdp
    );
    assert_rejected("[media]\nsource = \"any\"", "media.source", "sdp or learn");
    assert_rejected(
        "[media]\nlearn_window = \"0s\"",
        "media.learn_window",
        "greater than 0s",
    );
}

#[test]
fn media_io_is_epoll_unless_io_uring_is_asked_for() {
    assert_eq!(Config::default_dev().media.io, crate::media::MediaIo::Epoll);
    let c = Config::from_toml_str("[media]\nio = \"io_uring\"", no_env()).unwrap();
    assert_eq!(c.media.io, crate::media::MediaIo::IoUring);
    assert_rejected("[media]\nio = \"uring\"", "media.io", "epoll or io_uring");
}

#[test]
fn max_calls_defaults_to_what_the_ports_carry_and_no_more() {
    let c = Config::from_toml_str("[media]\nports = \"30000-30399\"", no_env()).unwrap();
    assert_eq!(c.limits.max_calls, 100, "400 ports, 4 a call");
    let c = Config::from_toml_str(
        "[media]\nports = \"30000-30399\"\n[limits]\nmax_calls = 60",
        no_env(),
    )
    .unwrap();
    assert_eq!(c.limits.max_calls, 60);
    let e = err("[media]\nports = \"30000-30399\"\n[limits]\nmax_calls = 101");
    assert_eq!(e.key().as_deref(), Some("limits.max_calls"));
    assert!(e.to_string().contains("carries 100 calls"), "{e}");
    assert_rejected(
        "[limits]\nmax_calls = 0",
        "limits.max_calls",
        "must be from",
    );
}

#[test]
fn edge_limits_are_bounded() {
    for (toml, key) in [
        (
            "[sip]\noutsider_replies_per_second = -1",
            "sip.outsider_replies_per_second",
        ),
        (
            "[sip]\noutsider_replies_per_second = 1001",
            "sip.outsider_replies_per_second",
        ),
        ("[sip]\nmax_tcp_connections = 0", "sip.max_tcp_connections"),
        ("[sip]\nmax_message_size = 100", "sip.max_message_size"),
        ("[limits]\nmax_transactions = 1", "limits.max_transactions"),
        ("[limits]\ninbound_queue = 0", "limits.inbound_queue"),
    ] {
        assert_rejected(toml, key, "must be from");
    }
    assert_rejected(
        "[sip]\ntcp_idle_timeout = \"0s\"",
        "sip.tcp_idle_timeout",
        "greater than 0s",
    );
    let c = Config::from_toml_str("[sip]\noutsider_replies_per_second = 0", no_env()).unwrap();
    assert_eq!(c.sip.outsider_replies_per_second, 0, "0 means never answer");
}

#[test]
fn call_timers_are_bounded_so_the_engine_never_overflows() {
    assert_rejected(
        "[sip]\nmax_call_duration = \"100000d\"",
        "sip.max_call_duration",
        "at most 1d",
    );
    assert_rejected(
        "[sip]\nno_answer_timeout = \"2h\"",
        "sip.no_answer_timeout",
        "at most 1h",
    );
    let c = Config::from_toml_str("[sip]\nmax_call_duration = \"24h\"", no_env()).unwrap();
    assert_eq!(c.sip.max_call_duration, Duration::from_secs(86_400));
}

#[test]
fn a_default_naming_a_removed_class_is_dropped_but_an_explicit_one_is_checked() {
    // Classes of one's own without contract-5y: the default that names it
    // is left out (with a warning), not an error on a key never written.
    let own = "[retention]\nclasses = { short = \"30d\" }\ndefault_class = \"short\"";
    let c = Config::from_toml_str(own, no_env()).unwrap();
    assert!(c.retention.legally_required.is_empty());
    assert!(!c.retention.is_legally_required("contract-5y"));
    // Where the class exists, the default applies.
    assert!(
        Config::default_dev()
            .retention
            .is_legally_required("contract-5y")
    );
    // Written explicitly, a name that is no class is still an error.
    assert_rejected(
        &format!("{own}\nlegally_required = [\"contract-5y\"]"),
        "retention.legally_required",
        "not a class",
    );
}

#[test]
fn several_trunks_sorted_by_priority() {
    let toml = r#"
[[trunks]]
name = "backup"
address = "192.0.2.2:5060"
allow = ["192.0.2.2"]
priority = 20
keepalive = "30s"

[[trunks]]
name = "main"
address = "192.0.2.1:5061"
allow = ["192.0.2.0/28"]
transport = "tls"
tls_ca = "ca.pem"
number_format = "national"
country = "82"
priority = 10
"#;
    let c = Config::from_toml_str(toml, no_env()).unwrap();
    let names: Vec<&str> = c.trunks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["main", "backup"]);
    let main = &c.trunks[0];
    assert_eq!(main.transport, Transport::Tls);
    assert_eq!(main.tls_ca.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(main.numbers.format, crate::phone::NumberFormat::National);
    assert_eq!(main.numbers.country.as_deref(), Some("82"));
    assert_eq!(main.keepalive, None);
    assert_eq!(c.trunks[1].keepalive, Some(Duration::from_secs(30)));
    assert_eq!(c.trunk_allow().len(), 2);
}

#[test]
fn one_trunk_form_keeps_its_defaults() {
    let c = Config::from_toml_str("[trunk]\naddress = \"192.0.2.9:5060\"", no_env()).unwrap();
    assert_eq!(c.trunks.len(), 1);
    let t = &c.trunks[0];
    assert_eq!((t.name.as_str(), t.transport), ("trunk", Transport::Udp));
    assert_eq!(t.numbers, crate::phone::NumberPlan::default());
    assert_eq!(t.keepalive, None);
}

#[test]
fn trunk_and_trunks_together_is_an_error() {
    let toml = "[trunk]\naddress = \"192.0.2.9:5060\"\n[[trunks]]\nname = \"a\"";
    assert_rejected(toml, "trunks", "not both");
    assert_rejected("trunks = []", "trunks", "at least one");
}

#[test]
fn bad_trunk_entries_name_their_index() {
    let one = |body: &str| format!("[[trunks]]\nname = \"a\"\n{body}");
    assert_rejected(
        "[[trunks]]\naddress = \"192.0.2.1:5060\"",
        "trunks[0].name",
        "required",
    );
    assert_rejected("[[trunks]]\nname = \"a b\"", "trunks[0].name", "letters");
    let twice = "[[trunks]]\nname = \"a\"\n[[trunks]]\nname = \"a\"";
    assert_rejected(twice, "trunks[1].name", "two trunks");
    assert_rejected(&one("transport = \"sctp\""), "trunks[0].transport", "sctp");
    assert_rejected(&one("transport = \"tls\""), "trunks[0].tls_ca", "CA file");
    assert_rejected(&one("tls_ca = \"ca.pem\""), "trunks[0].tls_ca", "only used");
    let national = one("number_format = \"national\"");
    assert_rejected(&national, "trunks[0].country", "country code");
    assert_rejected(
        &one("number_format = \"e.164\""),
        "trunks[0].number_format",
        "e.164",
    );
    assert_rejected(&one("country = \"082\""), "trunks[0].country", "082");
    assert_rejected(&one("priority = -1"), "trunks[0].priority", "-1");
    assert_rejected(
        &one("keepalive = \"100ms\""),
        "trunks[0].keepalive",
        "too short",
    );
    assert_rejected(
        &one("address = \"0.0.0.0:5060\""),
        "trunks[0].address",
        "destination",
    );
    assert_rejected("[trunk]\ntransport = \"tls\"", "trunk.tls_ca", "CA file");
}
