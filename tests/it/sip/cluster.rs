//! Several `ansim serve` processes on their own loopback addresses, on
//! one PostgreSQL database, one key directory and one recording store,
//! with one SIPp callee behind all of them (the trunk).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ansim::store::{CallRecord, RecordingRow, Role};

use super::*;
use crate::harness::{Db, TestDb};
use crate::s3::Garage;

/// One node: its id, addresses and environment; its process while up.
pub(crate) struct Node {
    /// `[node] id`.
    pub id: String,
    /// Where it takes SIP (UDP) on its own loopback address.
    pub sip: SocketAddr,
    /// Its HTTP API.
    pub api: SocketAddr,
    /// Its working directory (its logs).
    dir: PathBuf,
    /// Everything that configures it (`ANSIM_*`), kept for a restart.
    env: Vec<(String, String)>,
    /// The running process, if any (killed on drop).
    child: Option<tokio::process::Child>,
}

impl Node {
    /// Starts the process (again, with the same id and addresses) and
    /// waits until it answers OPTIONS.
    pub async fn start(&mut self) {
        self.child = Some(serve_process(&self.dir, &self.env));
        wait_for_options(self.sip).await;
    }

    /// `kill -9`, and waits until the process is gone.
    pub async fn kill_9(&mut self) {
        let mut child = self.child.take().expect("the node is running");
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
    }

    /// The URL of `path` on this node's API.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }
}

/// Nodes sharing one database, key directory and recording store.
pub(crate) struct Cluster {
    /// Shared files: the master key, the key directory, the recordings,
    /// and each node's working directory.
    pub dir: tempfile::TempDir,
    /// The one PostgreSQL database (dropped with the cluster).
    pub db: TestDb,
    /// The session CUSTOMER ↔ MASTER every call uses.
    pub session: SessionRecord,
    /// The nodes, `127.0.0.11`, `127.0.0.12`, ….
    pub nodes: Vec<Node>,
    /// The SIPp callee's port on 127.0.0.1: every node's trunk.
    pub uas_port: u16,
    /// API bearer tokens by staff name.
    tokens: BTreeMap<&'static str, String>,
    /// One HTTP client for every node.
    pub http: reqwest::Client,
    /// The one S3 server every node keeps its recordings in (bucket `rec`).
    pub garage: Garage,
}

/// The staff the cluster's API calls are made as.
const STAFF: &[(&str, Role)] = &[
    ("prov", Role::Provisioner),
    ("agent", Role::Support),
    ("boss", Role::Supervisor),
];

impl Cluster {
    /// Starts one node per id, one after the other, on a fresh database.
    pub async fn start(ids: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(Db::Postgres).await;
        let session = open_session(&db.store).await;
        let mut tokens = BTreeMap::new();
        for (name, role) in STAFF {
            let token = ansim::api::auth::new_token();
            let hash = ansim::api::auth::hash_token(&token);
            db.store
                .add_staff(name, *role, &hash, SystemClock.now())
                .await
                .unwrap();
            tokens.insert(*name, token);
        }
        // One master key for all: what an operator provisions on each node.
        let master = dir.path().join("master.key");
        ansim::keys::MasterKey::load(&master, true).unwrap();
        let uas_port = free_udp_port();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dir,
            db,
            session,
            uas_port,
            tokens,
            http: reqwest::Client::new(),
            garage: Garage::start(),
        };
        for (i, id) in ids.iter().enumerate() {
            let mut node = cluster.node(id, &format!("127.0.0.{}", 11 + i));
            node.start().await;
            cluster.nodes.push(node);
        }
        cluster
    }

    /// Where node `id` spools its recordings while they are written;
    /// each finished one is uploaded to the bucket and removed from here.
    pub fn spool(&self, id: &str) -> PathBuf {
        self.dir.path().join(id).join("spool")
    }

    /// Every place a recording's bytes can be: the S3 server's data and
    /// each node's spool.
    pub fn recording_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.garage.data_dir()];
        dirs.extend(self.nodes.iter().map(|n| self.spool(&n.id)));
        dirs
    }

    /// The settings every node has in common.
    fn shared_env(&self) -> Vec<(String, String)> {
        let d = self.dir.path().display();
        [
            ("ANSIM_STORE__DATABASE_URL", self.db.url.clone()),
            ("ANSIM_STORE__RECORDINGS", "s3://rec/calls".into()),
            ("ANSIM_STORE__S3__ENDPOINT", self.garage.endpoint.clone()),
            ("ANSIM_STORE__S3__REGION", "garage".into()),
            ("ANSIM_STORE__S3__PATH_STYLE", "true".into()),
            ("AWS_ACCESS_KEY_ID", self.garage.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.garage.secret.clone()),
            ("ANSIM_KEYS__MASTER_KEY_FILE", format!("{d}/master.key")),
            ("ANSIM_KEYS__STORE", format!("dir:{d}/keys")),
            ("ANSIM_KEYS__DEV", "false".into()),
            (
                "ANSIM_TRUNK__ADDRESS",
                format!("127.0.0.1:{}", self.uas_port),
            ),
            // The dispatcher and the test's own direct calls.
            ("ANSIM_TRUNK__ALLOW", "[\"127.0.0.1/32\"]".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Node `id` on loopback address `ip`: SIP, API and media there.
    fn node(&self, id: &str, ip: &str) -> Node {
        let sip_port = std::net::UdpSocket::bind((ip, 0))
            .expect("127.0.0.0/8 is loopback")
            .local_addr()
            .unwrap()
            .port();
        let api_port = std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sip: SocketAddr = format!("{ip}:{sip_port}").parse().unwrap();
        let api: SocketAddr = format!("{ip}:{api_port}").parse().unwrap();
        let mut env = self.shared_env();
        env.extend(
            [
                ("ANSIM_NODE__ID", id.to_owned()),
                (
                    "ANSIM_STORE__S3__SPOOL",
                    self.spool(id).display().to_string(),
                ),
                ("ANSIM_SIP__LISTEN", format!("[\"udp:{sip}\"]")),
                ("ANSIM_API__LISTEN", api.to_string()),
                ("ANSIM_MEDIA__BIND", ip.to_owned()),
                ("ANSIM_MEDIA__ADVERTISE", ip.to_owned()),
                // Other tests' relays bind 127.0.0.1: no clash on this IP.
                ("ANSIM_MEDIA__PORTS", "42000-42099".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let dir = self.dir.path().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        Node {
            id: id.to_owned(),
            sip,
            api,
            dir,
            env,
            child: None,
        }
    }

    /// The SIP addresses of the nodes, for the dispatcher's list.
    pub fn sip_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.sip).collect()
    }

    /// The node called `id`.
    pub fn node_named(&self, id: &str) -> &Node {
        self.nodes.iter().find(|n| n.id == id).unwrap()
    }

    /// The callee behind every node's trunk: answers up to `calls` calls
    /// and waits for each BYE, for at most `secs` seconds in all.
    pub fn callee(&self, calls: usize, secs: u64) -> Sipp {
        let (count, timeout) = (calls.to_string(), format!("{secs}s"));
        let media = free_udp_port().to_string();
        let args = ["-m", &count, "-timeout", &timeout, "-mp", &media];
        Sipp::spawn(
            self.dir.path(),
            &scenario("uas_answer.xml"),
            self.uas_port,
            &args,
            "uas",
        )
    }

    /// The session's call records, oldest first.
    pub async fn calls(&self) -> Vec<CallRecord> {
        self.db.store.list_calls(&self.session.id).await.unwrap()
    }

    /// Waits (at most 10 s) until the session has `count` calls, all
    /// ended, and returns them.
    pub async fn ended_calls(&self, count: usize) -> Vec<CallRecord> {
        for _ in 0..200 {
            let calls = self.calls().await;
            if calls.len() >= count && calls.iter().all(|c| c.end_at.is_some()) {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not {count} ended calls: {:?}", self.calls().await);
    }

    /// The call record `id` once it has ended (at most 10 s).
    pub async fn ended_call(&self, id: &str) -> CallRecord {
        for _ in 0..200 {
            let found = self.db.store.get_call(id).await.unwrap();
            if let Some(call) = found.filter(|c| c.end_at.is_some()) {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the call {id} never ended");
    }

    /// The recording of `call_id` once it has left state `recording`
    /// (at most 30 s: the host may be busy).
    pub async fn finished_recording(&self, call_id: &str) -> RecordingRow {
        for _ in 0..600 {
            let found = self.db.store.find_recording(call_id).await.unwrap();
            if let Some(r) = found.filter(|r| r.state.as_str() != "recording") {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let row = self.db.store.find_recording(call_id).await.unwrap();
        panic!("the recording of {call_id} never finished: {row:?}");
    }

    /// An API request to `node` as staff member `who`.
    pub fn request(
        &self,
        method: reqwest::Method,
        node: &Node,
        path: &str,
        who: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, node.url(path))
            .bearer_auth(&self.tokens[who])
    }

    /// `POST path` on `node` as `who`; the JSON answer, which must have
    /// status `want`.
    pub async fn post(
        &self,
        node: &Node,
        path: &str,
        who: &str,
        body: serde_json::Value,
        want: u16,
    ) -> serde_json::Value {
        let r = self.request(reqwest::Method::POST, node, path, who);
        let r = r.json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, want, "POST {path} on {}: {text}", node.id);
        serde_json::from_str(&text).unwrap()
    }

    /// Opens a dispute on `call_id` through `node` and has a grant for it
    /// asked (agent) and approved (boss) there: the agent may then play
    /// the call's recording.
    pub async fn grant_playback(&self, node: &Node, call_id: &str) {
        let body =
            serde_json::json!({"call_ids": [call_id], "ticket": "CS-16", "reason": "no-show"});
        let dispute = self.post(node, "/v1/disputes", "agent", body, 201).await;
        let path = format!("/v1/disputes/{}/grants", dispute["id"].as_str().unwrap());
        let grant = self
            .post(node, &path, "agent", serde_json::json!({}), 201)
            .await;
        let path = format!("/v1/grants/{}/approve", grant["id"].as_str().unwrap());
        self.post(node, &path, "boss", serde_json::json!({}), 200)
            .await;
    }

    /// `GET /v1/recordings/{id}/audio` on `node` as the agent, with an
    /// optional `Range`; the status and the body.
    pub async fn audio(&self, node: &Node, rec_id: &str, range: Option<&str>) -> (u16, Vec<u8>) {
        let path = format!("/v1/recordings/{rec_id}/audio");
        let mut r = self.request(reqwest::Method::GET, node, &path, "agent");
        if let Some(range) = range {
            r = r.header("range", range);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }

    /// A metric's value (no labels) in `node`'s `/metrics`.
    pub async fn metric(&self, node: &Node, name: &str) -> i64 {
        let r = self.http.get(node.url("/metrics")).send().await.unwrap();
        metric(&r.text().await.unwrap(), name)
    }
}
