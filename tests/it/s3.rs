//! Recordings in a real S3-compatible server: Garage, started here on
//! loopback ports in a temporary directory (no mock object store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ansim::config::S3Config;
use ansim::recording::RecordingCounters;
use ansim::recording::blob::BlobStore;
use ansim::recording::s3::{S3BlobStore, S3Location};

use crate::harness::{Db, TestDb, free_tcp_port};
use crate::rig::Rig;

/// A single-node Garage server with a key and a bucket `rec`; killed on
/// drop.
pub struct Garage {
    /// Its config, data and metadata.
    dir: tempfile::TempDir,
    /// The server process while it runs.
    child: Option<Child>,
    /// The S3 API's URL.
    pub endpoint: String,
    /// Access key id of the test key.
    pub key_id: String,
    /// Its secret.
    pub secret: String,
}

fn garage_bin() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let installed = home.join(".cargo/bin/garage");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("garage")
    }
}

fn cli(cfg: &Path, args: &[&str]) -> String {
    let out = Command::new(garage_bin())
        .arg("-c")
        .arg(cfg)
        .args(args)
        .output()
        .expect("garage not installed: run scripts/install-test-deps.sh");
    assert!(
        out.status.success(),
        "garage {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value after `label` on a line of `text`.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let s3 = free_tcp_port();
        let rpc = free_tcp_port();
        let secret: [u8; 32] = rand::random();
        let cfg = format!(
            "metadata_dir = \"{m}\"\ndata_dir = \"{d}\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\ncompression_level = \"none\"\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n",
            m = dir.path().join("meta").display(),
            d = dir.path().join("data").display(),
            secret = hex::encode(secret),
        );
        std::fs::write(dir.path().join("garage.toml"), cfg).unwrap();
        let mut g = Garage {
            dir,
            child: None,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: String::new(),
            secret: String::new(),
        };
        g.run();
        let cfg = g.cfg();
        let id = cli(&cfg, &["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or_default().to_string();
        cli(&cfg, &["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        cli(&cfg, &["layout", "apply", "--version", "1"]);
        let key = cli(&cfg, &["key", "create", "ansim-test"]);
        g.key_id = field(&key, "Key ID:");
        g.secret = field(&key, "Secret key:");
        cli(&cfg, &["bucket", "create", "rec"]);
        cli(
            &cfg,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                "rec",
                "--key",
                "ansim-test",
            ],
        );
        g
    }

    /// Where the server keeps object data (uncompressed: `compression_level
    /// = "none"`, so a scan for plaintext audio there means something).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cfg(&self) -> PathBuf {
        self.dir.path().join("garage.toml")
    }

    /// Starts the server and waits (at most 20 s) until its RPC answers.
    pub fn run(&mut self) {
        let child = Command::new(garage_bin())
            .arg("-c")
            .arg(self.cfg())
            .arg("server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("garage not installed: run scripts/install-test-deps.sh");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new(garage_bin())
                .arg("-c")
                .arg(self.cfg())
                .arg("status")
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(Instant::now() < until, "garage did not start in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A store on bucket `rec` spooling into `spool`.
    pub fn store(&self, spool: &Path, counters: Arc<RecordingCounters>) -> S3BlobStore {
        let loc = S3Location {
            bucket: "rec".into(),
            prefix: "calls".into(),
            settings: S3Config {
                endpoint: Some(self.endpoint.clone()),
                region: Some("garage".into()),
                path_style: true,
                spool: spool.to_path_buf(),
            },
        };
        S3BlobStore::open_with_key(&loc, counters, &self.key_id, &self.secret).unwrap()
    }

    /// Writes AWS profile files into `home/.aws`: a `default` profile with
    /// a key Garage does not know, and the profile `ansim` with the test
    /// key (its region in the config file, as `aws configure` writes it).
    pub fn write_profile_files(&self, home: &Path) {
        let aws = home.join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        let creds = format!(
            "# written by the test\n[default]\naws_access_key_id = GKnotakey\n\
             aws_secret_access_key = {wrong}\n\n[ansim]\n  aws_access_key_id = {id}\n  \
             aws_secret_access_key = {secret}   ; the test key\n",
            wrong = "0".repeat(64),
            id = self.key_id,
            secret = self.secret,
        );
        std::fs::write(aws.join("credentials"), creds).unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = us-east-1\n[profile ansim]\nregion = garage\n",
        )
        .unwrap();
    }

    /// A store on bucket `rec` whose credentials and region come only from
    /// the AWS chain over `env` (not the process environment), with no
    /// `[store.s3] region`.
    pub fn store_with_env(
        &self,
        spool: &Path,
        counters: Arc<RecordingCounters>,
        env: &BTreeMap<String, String>,
    ) -> Result<S3BlobStore, ansim::recording::blob::BlobError> {
        let loc = S3Location {
            bucket: "rec".into(),
            prefix: "calls".into(),
            settings: S3Config {
                endpoint: Some(self.endpoint.clone()),
                region: None,
                path_style: true,
                spool: spool.to_path_buf(),
            },
        };
        let lookup = |k: &str| env.get(k).cloned();
        S3BlobStore::open_with_env(&loc, counters, &lookup)
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spool_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The blobs `store` lists (off the async workers, as the server does).
async fn listed(store: &Arc<S3BlobStore>) -> Vec<String> {
    let s = Arc::clone(store);
    tokio::task::spawn_blocking(move || s.list())
        .await
        .unwrap()
        .unwrap()
}

/// Whether `hay` holds a run of 160 bytes of `b` (one packet's payload of
/// the rig's tone, in the clear).
fn has_plain(hay: &[u8], b: u8) -> bool {
    hay.windows(160).any(|w| w.iter().all(|x| *x == b))
}

/// A recorded call lands in the bucket, encrypted; the spool empties;
/// playback reads by ranges; erasure removes the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_uploaded_read_by_ranges_and_erased() {
    let garage = tokio::task::spawn_blocking(Garage::start).await.unwrap();
    let db = TestDb::new(Db::Sqlite).await;
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().join("spool");
    let counters = Arc::new(RecordingCounters::default());
    let s3 = Arc::new(garage.store(&spool_dir, Arc::clone(&counters)));
    let rig = Rig::with_blobs(db.store.clone(), s3.clone());
    // 30 s of audio: 15 chunks.
    let row = rig
        .record_media("ses_test", "ad-6m", 1500, |_| (0x11, 0x22))
        .await;
    assert!(spool_files(&spool_dir).is_empty(), "spool not emptied");
    assert_eq!(counters.uploaded.load(Ordering::Relaxed), 1);
    let names = listed(&s3).await;
    assert_eq!(names, vec![row.blob.clone()]);
    let object = {
        let (s, n) = (s3.clone(), row.blob.clone());
        tokio::task::spawn_blocking(move || s.read(&n))
            .await
            .unwrap()
            .unwrap()
    };
    assert!(object.len() > 400_000, "{} bytes", object.len());
    assert!(!has_plain(&object, 0x11) && !has_plain(&object, 0x22));

    // One second from the middle of the WAV.
    let (before, bytes_before) = s3.read_stats();
    let rec = Arc::clone(&rig.recorder);
    let id = row.id.clone();
    let wav: Vec<u8> = tokio::task::spawn_blocking(move || {
        let sealed = tokio::runtime::Handle::current()
            .block_on(rec.open_sealed(&id))
            .unwrap();
        let reader = sealed.reader().unwrap();
        let codec = ansim::recording::export::codec_of(&reader);
        let layout = ansim::recording::playback::WavLayout::new(&reader, codec).unwrap();
        let start = layout.len() / 2;
        layout
            .range(&reader, start, start + 32_000)
            .flat_map(|p| p.unwrap())
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(wav.len(), 32_000);
    let (after, bytes_after) = s3.read_stats();
    let (gets, fetched) = (after - before, bytes_after - bytes_before);
    // The header, one request per chunk's fields, then one or two chunks:
    // never the whole object.
    assert!(gets <= 2 + 15 + 2, "{gets} GETs");
    assert!(
        fetched < object.len() as u64 / 2,
        "{fetched} of {} bytes fetched",
        object.len()
    );
    eprintln!(
        "range read: {gets} GETs, {fetched} bytes of a {}-byte object",
        object.len()
    );

    let erased = {
        let (s, n) = (s3.clone(), row.blob.clone());
        tokio::task::spawn_blocking(move || s.delete(&n))
            .await
            .unwrap()
            .unwrap()
    };
    assert!(erased);
    let left = {
        let s = s3.clone();
        tokio::task::spawn_blocking(move || s.list())
            .await
            .unwrap()
            .unwrap()
    };
    assert!(left.is_empty(), "{left:?}");
}

/// An upload while the server is down stays in the spool, is counted,
/// and succeeds once the server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_is_retried_until_the_server_is_back() {
    let mut garage = tokio::task::spawn_blocking(Garage::start).await.unwrap();
    let db = TestDb::new(Db::Sqlite).await;
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().join("spool");
    let counters = Arc::new(RecordingCounters::default());
    let s3 = Arc::new(garage.store(&spool_dir, Arc::clone(&counters)));
    let rig = Rig::with_blobs(db.store.clone(), s3.clone());
    garage.stop();
    let row = rig.record("ad-6m").await;
    assert_eq!(spool_files(&spool_dir), vec![row.blob.clone()]);
    let failures = || {
        counters
            .upload_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(failures() >= 1);
    assert_eq!(s3.pending_uploads(), 1);
    let mut garage = tokio::task::spawn_blocking(move || {
        garage.run();
        garage
    })
    .await
    .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let uploaded = || counters.uploaded.load(Ordering::Relaxed);
    while !spool_files(&spool_dir).is_empty() || uploaded() == 0 {
        assert!(
            Instant::now() < until,
            "not uploaded 30 s after the server came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(uploaded(), 1);
    let names = listed(&s3).await;
    assert_eq!(names, vec![row.blob]);
    garage.stop();
}

/// A spool file a crash left behind (written, never published) is
/// uploaded by the next process's start-up step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_spool_files_are_uploaded_at_start_up() {
    let garage = tokio::task::spawn_blocking(Garage::start).await.unwrap();
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().join("spool");
    let counters = Arc::new(RecordingCounters::default());
    let first = garage.store(&spool_dir, Arc::clone(&counters));
    let mut w = first.create("left.crec").unwrap();
    w.append(&[7u8; 5000]).unwrap();
    w.sync().unwrap();
    // The process dies: nothing published.
    drop(w);
    drop(first);
    let second = Arc::new(garage.store(&spool_dir, Arc::clone(&counters)));
    let s = Arc::clone(&second);
    let queued = tokio::task::spawn_blocking(move || s.publish_leftovers())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued, 1);
    let until = Instant::now() + Duration::from_secs(20);
    while !spool_files(&spool_dir).is_empty() {
        assert!(Instant::now() < until, "leftover not uploaded in 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = Arc::clone(&second);
    let back = tokio::task::spawn_blocking(move || s.read("left.crec"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, vec![7u8; 5000]);
}

/// Credentials only from the AWS profile files: with `AWS_PROFILE=ansim`
/// (and no `AWS_ACCESS_KEY_ID` in the environment the chain sees) a call
/// is recorded, uploaded and decrypted back from the bucket; the region
/// comes from the profile too (Garage refuses any other). The `default`
/// profile's unknown key is refused by the server, and a profile in
/// neither file stops the store from opening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_aws_profile_files() {
    let garage = tokio::task::spawn_blocking(Garage::start).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    garage.write_profile_files(home.path());
    let mut env = BTreeMap::from([
        ("HOME".to_string(), home.path().display().to_string()),
        ("AWS_PROFILE".to_string(), "ansim".to_string()),
    ]);
    let db = TestDb::new(Db::Sqlite).await;
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().join("spool");
    let counters = Arc::new(RecordingCounters::default());
    let s3 = Arc::new(
        garage
            .store_with_env(&spool_dir, Arc::clone(&counters), &env)
            .unwrap(),
    );
    let rig = Rig::with_blobs(db.store.clone(), s3.clone());
    let row = rig
        .record_media("ses_test", "ad-6m", 100, |_| (0x11, 0x22))
        .await;
    assert_eq!(counters.uploaded.load(Ordering::Relaxed), 1);
    assert!(spool_files(&spool_dir).is_empty(), "spool not emptied");
    assert_eq!(listed(&s3).await, vec![row.blob.clone()]);
    let rec = Arc::clone(&rig.recorder);
    let id = row.id.clone();
    let audio = tokio::task::spawn_blocking(move || {
        tokio::runtime::Handle::current()
            .block_on(rec.decrypt(&id))
            .unwrap()
    })
    .await
    .unwrap();
    assert!(audio.duration_ms() >= 1900, "{} ms", audio.duration_ms());
    assert!(audio.caller.iter().all(|b| *b == 0x11));
    assert!(audio.callee.iter().all(|b| *b == 0x22));

    // The default profile's key: the store opens, the server refuses it.
    env.remove("AWS_PROFILE");
    let other_spool = spool.path().join("other");
    let wrong = garage
        .store_with_env(&other_spool, Arc::new(RecordingCounters::default()), &env)
        .unwrap();
    let listing = tokio::task::spawn_blocking(move || wrong.list())
        .await
        .unwrap();
    assert!(listing.is_err(), "an unknown key listed the bucket");

    // A profile in neither file: no store, and no fall-through.
    env.insert("AWS_PROFILE".into(), "ghost".into());
    let err = garage
        .store_with_env(&other_spool, Arc::new(RecordingCounters::default()), &env)
        .err()
        .expect("a missing profile opened a store");
    let text = err.to_string();
    assert!(
        text.contains("\"ghost\"") && text.contains("credentials"),
        "{text}"
    );
    assert!(!text.contains(&garage.secret));
}

/// `ansim serve` itself, its credentials only in `$HOME/.aws` (every
/// `AWS_*` variable removed from its environment, region empty in its
/// config): a spool file an earlier run left is uploaded and verified at
/// start-up, signed with the profile's key for the profile's region, and
/// the log names the profile but no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_uploads_with_keys_from_the_profile_files() {
    let garage = tokio::task::spawn_blocking(Garage::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let home = d.join("home");
    garage.write_profile_files(&home);
    let spool_dir = d.join("spool");
    std::fs::create_dir_all(&spool_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&spool_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(spool_dir.join("left.crec"), [9u8; 3000]).unwrap();
    let log_path = d.join("serve.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ansim"));
    cmd.current_dir(d).arg("serve");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANSIM_") || k.starts_with("AWS_"))
    {
        cmd.env_remove(k);
    }
    let spool = spool_dir.display().to_string();
    cmd.envs([
        ("HOME", home.display().to_string()),
        ("AWS_PROFILE", "ansim".into()),
        ("ANSIM_LOG", "info".into()),
        ("ANSIM_API__LISTEN", "127.0.0.1:0".into()),
        ("ANSIM_SIP__LISTEN", "[\"udp:127.0.0.1:0\"]".into()),
        ("ANSIM_MEDIA__PORTS", "43900-43909".into()),
        ("ANSIM_STORE__RECORDINGS", "s3://rec/calls".into()),
        ("ANSIM_STORE__S3__ENDPOINT", garage.endpoint.clone()),
        ("ANSIM_STORE__S3__PATH_STYLE", "true".into()),
        ("ANSIM_STORE__S3__SPOOL", spool),
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !spool_files(&spool_dir).is_empty() {
        if Instant::now() >= until || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "leftover not uploaded:\n{}",
                std::fs::read_to_string(&log_path).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("S3 credentials: static keys"), "{log}");
    assert!(log.contains(r#"source=profile "ansim" in "#), "{log}");
    assert!(
        !log.contains(&garage.secret) && !log.contains(&garage.key_id),
        "{log}"
    );
    // Uploaded means written, then verified by HEAD and a ranged GET, all
    // signed with the profile's key (the object itself is gone by now: the
    // retention sweep removes a blob no recording row names).
    assert!(
        log.contains("recording uploaded and verified; spool file removed blob=left.crec"),
        "{log}"
    );
}
