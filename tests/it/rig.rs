//! A recorder rig shared by the retention, playback and support-access
//! tests: a store, a key store, a blob directory, a clock the test moves,
//! and calls recorded from synthetic RTP; plus the HTTP API served over it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ansim::clock::{Clock, ManualClock, SharedClock};
use ansim::keys::{DirKeyStore, KeyStore, MasterKey};
use ansim::media::{Leg, MediaTap, Packet, PacketKind};
use ansim::recording::blob::{BlobStore, LocalBlobStore};
use ansim::recording::{Recorder, RecordingMeta, RecordingPolicy};
use ansim::store::{NewCall, RecordingRow, Store};

use crate::harness::{DAY, T0, TestDb, n, policy};
use crate::softhsm::Token;

/// Which key store a rig's recorder uses.
#[derive(Debug, Clone)]
pub enum Keys {
    /// A key directory (`<rig dir>/keys`) under a master key (`<rig dir>/master.key`).
    Dir,
    /// A private SoftHSM2 token.
    SoftHsm(Token),
}

impl Keys {
    pub fn softhsm() -> Keys {
        Keys::SoftHsm(Token::create())
    }

    /// Opens the key store (again: each call is like a fresh process).
    pub fn open(&self, dir: &std::path::Path) -> Arc<dyn KeyStore> {
        match self {
            Keys::Dir => {
                let master = MasterKey::load(&dir.join("master.key"), true).unwrap();
                Arc::new(DirKeyStore::open(&dir.join("keys"), master).unwrap())
            }
            Keys::SoftHsm(token) => Arc::new(token.open()),
        }
    }
}

/// A recorder on `store` with its own key store and blob directory.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub clock: ManualClock,
    pub keys: Keys,
    pub recorder: Arc<Recorder>,
}

pub const MAX_CALL: Duration = Duration::from_secs(4 * 3600);

pub fn recorder_on(
    store: &Store,
    dir: &std::path::Path,
    rec_dir: &str,
    clock: &ManualClock,
    keys: &Keys,
) -> Arc<Recorder> {
    let blobs: Arc<dyn BlobStore> = Arc::new(LocalBlobStore::new(&dir.join(rec_dir)).unwrap());
    recorder_with(store, dir, blobs, clock, keys)
}

/// A recorder on `store` writing into `blobs`, with its own key store.
pub fn recorder_with(
    store: &Store,
    dir: &std::path::Path,
    blobs: Arc<dyn BlobStore>,
    clock: &ManualClock,
    keys: &Keys,
) -> Arc<Recorder> {
    let keys = keys.open(dir);
    let policy = RecordingPolicy {
        classes: policy().classes,
        epoch: DAY,
        max_call: MAX_CALL,
        personal_data: DAY * 180,
        quarantine: policy().quarantine,
    };
    let shared: SharedClock = Arc::new(clock.clone());
    Arc::new(Recorder::new(store.clone(), keys, blobs, policy, shared))
}

impl Rig {
    pub fn new(store: Store) -> Rig {
        Rig::with_keys(store, Keys::Dir)
    }

    pub fn with_keys(store: Store, keys: Keys) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let recorder = recorder_on(&store, dir.path(), "rec", &clock, &keys);
        Rig {
            dir,
            store,
            clock,
            keys,
            recorder,
        }
    }

    /// Records one second of a call (tones both ways) of `class`.
    pub async fn record(&self, class: &str) -> RecordingRow {
        self.record_in("ses_test", class).await
    }

    /// As [`Rig::record`], for a call of session `session`.
    pub async fn record_in(&self, session: &str, class: &str) -> RecordingRow {
        self.record_media(session, class, 50, |_| (0x11, 0x22))
            .await
    }

    /// Records a call of `packets` × 20 ms whose record says it was
    /// answered now and ended that long after. Each packet's payload is
    /// one byte repeated, different for each 20 ms and each side, so any
    /// offset of the audio is recognisable.
    pub async fn record_long(&self, session: &str, class: &str, packets: u16) -> RecordingRow {
        let r = self
            .record_media(session, class, packets, |i| {
                ((i % 97) as u8 + 1, (i % 89) as u8 + 128)
            })
            .await;
        let answered = self.clock.now();
        self.store
            .call_answered(&r.call_id, answered)
            .await
            .unwrap();
        let end = ansim::store::CallEnd {
            at: answered.saturating_add(Duration::from_millis(20 * u64::from(packets))),
            result: ansim::store::CallResult::Answered,
            sip_status: 200,
            hangup_side: Some(ansim::store::HangupSide::Caller),
            reason: None,
        };
        self.store.call_ended(&r.call_id, &end).await.unwrap();
        r
    }

    /// A rig whose recorder writes into `blobs` (e.g. one that fails).
    pub fn with_blobs(store: Store, blobs: Arc<dyn BlobStore>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let recorder = recorder_with(&store, dir.path(), blobs, &clock, &Keys::Dir);
        Rig {
            dir,
            store,
            clock,
            keys: Keys::Dir,
            recorder,
        }
    }

    /// Records `packets` RTP packets each way through the recorder, with
    /// payload bytes `fill(seq)` (caller, callee), and waits until the
    /// recording is complete.
    pub async fn record_media(
        &self,
        session: &str,
        class: &str,
        packets: u16,
        fill: impl Fn(u16) -> (u8, u8),
    ) -> RecordingRow {
        let row = self
            .record_packets(session, class, packets, |i| {
                let (a, b) = fill(i);
                (packet(i, a), packet(i, b))
            })
            .await;
        assert_eq!(row.state.as_str(), "complete", "{row:?}");
        row
    }

    /// Feeds `packets` pairs `make(seq)` (caller's, callee's datagram)
    /// through a tap to the recorder, switches the tap off and waits until
    /// the recording has left state `recording`; returns its row.
    pub async fn record_packets(
        &self,
        session: &str,
        class: &str,
        packets: u16,
        make: impl Fn(u16) -> (Vec<u8>, Vec<u8>),
    ) -> RecordingRow {
        let call_id = ansim::store::new_id("cal");
        let call = NewCall {
            id: call_id.clone(),
            // A real session when there is one (the call's foreign key).
            session_id: (session != "ses_test").then(|| session.to_owned()),
            direction: "a_to_b",
            caller: Some(n("+821012345678")),
            reason: None,
            dialled: n("+82505000001"),
            invite_at: self.clock.now(),
        };
        self.store.insert_call(&call).await.unwrap();
        let meta = RecordingMeta {
            call_id: call_id.clone(),
            session_id: session.into(),
            retention_class: class.into(),
        };
        // The tap as the relay worker would drive it.
        let mut tap = self.recorder.begin(meta);
        let start = Instant::now();
        for i in 0..packets {
            let at = start + Duration::from_millis(20 * u64::from(i));
            let (a, b) = make(i);
            // As the relay would: parsed once, handed on parsed.
            for (leg, datagram) in [(Leg::A, &a), (Leg::B, &b)] {
                if let Some(packet) = Packet::parse(PacketKind::Rtp, datagram) {
                    tap.on_packet(leg, packet, at);
                }
            }
        }
        tap.close(start + Duration::from_millis(20 * u64::from(packets)));
        drop(tap);
        self.finished(&call_id).await
    }

    /// Waits until the recording of `call_id` exists and has left state
    /// `recording` (its writer is done); returns its row.
    pub async fn finished(&self, call_id: &str) -> RecordingRow {
        for _ in 0..500 {
            if let Some(r) = self
                .store
                .find_recording(call_id)
                .await
                .unwrap()
                .filter(|r| r.state.as_str() != "recording" && self.recorder.writers().is_empty())
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("recording of {call_id} did not finish");
    }

    pub fn blobs(&self) -> Vec<String> {
        LocalBlobStore::new(&self.dir.path().join("rec"))
            .unwrap()
            .list()
            .unwrap()
    }

    pub fn keks(&self) -> Vec<String> {
        self.keys.open(self.dir.path()).list().unwrap()
    }
}

pub fn packet(seq: u16, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, u32::from(fill) as u8]);
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

/// Staff members of an API under test: name → (token, staff id).
pub type Staff = std::collections::HashMap<&'static str, (String, String)>;

/// The HTTP API served over a rig, with its staff and its clock.
pub struct Api {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Staff members by name.
    pub staff: Staff,
    /// The API's clock (grant approval and expiry).
    pub clock: ManualClock,
    /// Counters the API keeps (`/metrics`).
    pub metrics: Arc<ansim::metrics::Metrics>,
    http: reqwest::Client,
}

impl Api {
    /// The token of staff member `who`.
    pub fn token(&self, who: &str) -> &str {
        &self.staff[who].0
    }

    /// The staff id of `who`.
    pub fn id(&self, who: &str) -> &str {
        &self.staff[who].1
    }

    /// `POST path` as `who`, with an optional JSON body.
    pub async fn post(
        &self,
        path: &str,
        who: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token(who));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    /// `GET path` as `who`, with extra headers.
    pub async fn get(&self, path: &str, who: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token(who));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    /// `POST path` as `who`, answering the JSON body; panics unless the
    /// status is `want`.
    pub async fn post_ok(
        &self,
        path: &str,
        who: &str,
        body: Option<serde_json::Value>,
        want: u16,
    ) -> serde_json::Value {
        let r = self.post(path, who, body).await;
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(status, want, "POST {path} as {who}: {v}");
        v
    }
}

impl Rig {
    /// Serves the HTTP API over this rig's recorder, with these staff
    /// members; returns its base URL and their tokens and ids.
    pub async fn serve_api(
        &self,
        db: &TestDb,
        staff: &[(&'static str, ansim::store::Role)],
        legally_required: &[&str],
    ) -> (String, Staff) {
        let api = self.api(db, staff, legally_required, true).await;
        (api.base, api.staff)
    }

    /// As [`Rig::serve_api`], with `four_eyes` chosen, answering an [`Api`].
    pub async fn api(
        &self,
        db: &TestDb,
        staff: &[(&'static str, ansim::store::Role)],
        legally_required: &[&str],
        four_eyes: bool,
    ) -> Api {
        let faults = Arc::new(ansim::retention::NoFaults);
        self.api_with(db, staff, legally_required, four_eyes, faults)
            .await
    }

    /// As [`Rig::api`], with the holds of disputes stopped where `faults`
    /// says. The API works on the rig's store (which may carry a commit
    /// hook), staff are added through `db`'s.
    pub async fn api_with(
        &self,
        db: &TestDb,
        staff: &[(&'static str, ansim::store::Role)],
        legally_required: &[&str],
        four_eyes: bool,
        faults: Arc<dyn ansim::retention::FaultPoint>,
    ) -> Api {
        use ansim::api::{self, AppState, auth};
        let mut members = Staff::new();
        for (name, role) in staff {
            let t = auth::new_token();
            let m = db
                .store
                .add_staff(name, *role, &auth::hash_token(&t), T0)
                .await
                .unwrap();
            members.insert(name, (t, m.id));
        }
        let (routing, clock) = crate::harness::routing_on(&self.store);
        let metrics = Arc::new(ansim::metrics::Metrics::default());
        let state = AppState {
            recorder: Some(self.recorder.clone()),
            legally_required: Arc::new(legally_required.iter().map(|c| c.to_string()).collect()),
            four_eyes,
            grant_ttl: Duration::from_secs(4 * 3600),
            body_limit: 1 << 20,
            // The authorisation matrix sends hundreds of unknown and
            // disabled tokens from 127.0.0.1 on purpose.
            auth_throttle: Arc::new(api::throttle::AuthThrottle::new(1_000_000)),
            retention_faults: faults,
            ..AppState::new(routing, metrics.clone())
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let limits = api::ConnectionLimits::default();
        tokio::spawn(api::serve(listener, state, limits, std::future::pending()));
        Api {
            base,
            staff: members,
            clock,
            metrics,
            http: reqwest::Client::new(),
        }
    }
}
