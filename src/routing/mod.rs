//! Sessions, the number pool and call routing.
//!
//! [`Routing`] is the service the API, the CLI and the SIP layer share. It
//! applies the configured policy (TTLs, quarantine, retention classes) on
//! top of the store, and answers [`Routing::route`] for every INVITE from an
//! in-memory cache in front of one indexed query.
//!
//! Cache consistency: a session created or closed through this process
//! invalidates its keys at once; entries carry the binding's expiry and are
//! never served past it; a session ended through another node (several
//! nodes share PostgreSQL) is announced by a `NOTIFY` at its commit, which
//! [`Routing::follow_session_ends`] applies here within milliseconds; and a
//! positive entry lives at most `[routing] route_cache_ttl`, the bound for
//! a notification missed all the same.
//! Misses are cached too (negative entries), for at most
//! [`NEGATIVE_TTL`] and [`NEGATIVE_ENTRIES`] of them: a session opened
//! through this process drops its keys' negative entries at once, and one
//! opened through another node is routable here within [`NEGATIVE_TTL`].

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::time::Duration;

use crate::clock::{SharedClock, Timestamp};
use crate::phone::E164;
use crate::store::{CreateSessionError, NewSession, RouteRow, SessionRecord, Store, StoreError};

/// Policy the routing service applies (from `[routing]` and `[retention]`).
#[derive(Debug, Clone)]
pub struct RoutingPolicy {
    /// Session lifetime when the request gives none.
    pub default_ttl: Duration,
    /// Longest lifetime a request may ask for.
    pub max_ttl: Duration,
    /// How long a released (participant, number) pair stays quarantined.
    pub quarantine: Duration,
    /// How long a positive route lookup may be served from memory.
    pub route_cache_ttl: Duration,
    /// Retention class when the request names none.
    pub default_class: String,
    /// Known retention classes and their periods.
    pub classes: BTreeMap<String, Duration>,
}

/// A request to open a session, before policy is applied.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// First participant.
    pub a: E164,
    /// Second participant.
    pub b: E164,
    /// Lifetime; the policy's default when `None`.
    pub ttl: Option<Duration>,
    /// Retention class; the policy's default when `None`.
    pub retention_class: Option<String>,
    /// Whether to record; `true` when `None`.
    pub record: Option<bool>,
}

/// Why a session request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A field of the request is invalid; `field` names it.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The pool cannot serve the session (or the database failed).
    #[error(transparent)]
    Create(#[from] CreateSessionError),
}

/// Where a call goes: the answer to [`Routing::route`].
pub type Route = RouteRow;

/// How long "no session routes this" is served from memory at most.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// Negative entries kept at most: a caller trying many numbers (a scan)
/// cannot grow the cache without bound; beyond, misses go uncached.
pub const NEGATIVE_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
struct CacheEntry {
    /// The route, or `None` for a negative entry (no session routes it).
    route: Option<Route>,
    /// When this entry stops being trusted (fetch time + cache TTL).
    stale_at: Timestamp,
}

/// The cache: entries, how many of them are negative, and which keys
/// each session's positive entries are under.
#[derive(Debug, Default)]
struct Cache {
    /// `(caller, dialled)` → what the lookup said.
    entries: HashMap<(E164, E164), CacheEntry>,
    /// How many of `entries` are negative (bounded by [`NEGATIVE_ENTRIES`]).
    negative: usize,
    /// Session id → the keys of its positive entries, so that a session
    /// ended on another node (known only by its id) is dropped at once.
    by_session: HashMap<String, Vec<(E164, E164)>>,
}

impl Cache {
    fn insert(&mut self, key: (E164, E164), entry: CacheEntry) {
        match &entry.route {
            None if self.negative >= NEGATIVE_ENTRIES => return,
            None => self.negative += 1,
            Some(route) => {
                let keys = self.by_session.entry(route.session_id.clone()).or_default();
                if !keys.contains(&key) {
                    keys.push(key.clone());
                }
            }
        }
        if let Some(old) = self.entries.insert(key.clone(), entry) {
            self.unlink(&key, &old);
        }
    }

    fn remove(&mut self, key: &(E164, E164)) {
        if let Some(old) = self.entries.remove(key) {
            self.unlink(key, &old);
        }
    }

    /// Forgets `old`, just taken out from under `key`, in the counts and
    /// the session index (unless `key` holds the same session again).
    fn unlink(&mut self, key: &(E164, E164), old: &CacheEntry) {
        let Some(route) = &old.route else {
            self.negative -= 1;
            return;
        };
        let same = self
            .entries
            .get(key)
            .and_then(|e| e.route.as_ref())
            .is_some_and(|r| r.session_id == route.session_id);
        if same {
            return;
        }
        if let Some(keys) = self.by_session.get_mut(&route.session_id) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_session.remove(&route.session_id);
            }
        }
    }

    /// Drops the positive entries of session `id`.
    fn remove_session(&mut self, id: &str) {
        for key in self.by_session.remove(id).unwrap_or_default() {
            self.entries.remove(&key);
        }
    }

    /// Drops every positive entry (a notification may have been missed).
    fn remove_routes(&mut self) {
        self.entries.retain(|_, e| e.route.is_none());
        self.by_session.clear();
    }
}

/// Counters the metrics endpoint reports.
#[derive(Debug, Default)]
pub struct RoutingCounters {
    /// Lookups answered from memory.
    pub cache_hits: std::sync::atomic::AtomicU64,
    /// Lookups that went to the database.
    pub cache_misses: std::sync::atomic::AtomicU64,
    /// Sessions opened.
    pub sessions_created: std::sync::atomic::AtomicU64,
    /// Session requests refused because the pool could not serve them.
    pub pool_exhausted: std::sync::atomic::AtomicU64,
}

/// The routing service. Share it behind an `Arc`.
pub struct Routing {
    /// Where sessions live.
    store: Store,
    /// Source of `now` for API-driven operations.
    clock: SharedClock,
    /// TTLs, quarantine, retention classes.
    policy: RoutingPolicy,
    /// `(caller, dialled)` → route; see the module docs for consistency.
    cache: RwLock<Cache>,
    /// For `/metrics`.
    pub counters: RoutingCounters,
}

impl Routing {
    /// A routing service over `store`.
    pub fn new(store: Store, clock: SharedClock, policy: RoutingPolicy) -> Self {
        Routing {
            store,
            clock,
            policy,
            cache: RwLock::new(Cache::default()),
            counters: RoutingCounters::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current time of this service's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The clock routing reads (the same one for everything that shares it).
    pub fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    /// Validates a request against the policy and opens the session.
    pub async fn create_session(&self, req: SessionRequest) -> Result<SessionRecord, SessionError> {
        let new = self.check_request(req)?;
        let now = self.clock.now();
        let result = self
            .store
            .create_session(&new, now, self.policy.quarantine)
            .await;
        match &result {
            Ok(s) => {
                bump(&self.counters.sessions_created);
                self.remember(s, now);
                tracing::info!(session = %s.id, a = %s.a.number, b = %s.b.number,
                    a_proxy = %s.a.proxy_number, b_proxy = %s.b.proxy_number, "session opened");
            }
            Err(CreateSessionError::NoProxy { side, reason }) => {
                bump(&self.counters.pool_exhausted);
                tracing::warn!(side = side.as_str(), %reason, "session refused");
            }
            Err(CreateSessionError::Store(_)) => {}
        }
        Ok(result?)
    }

    fn check_request(&self, req: SessionRequest) -> Result<NewSession, SessionError> {
        if req.a == req.b {
            return Err(SessionError::Invalid {
                field: "b",
                reason: "must differ from a".into(),
            });
        }
        let ttl = req.ttl.unwrap_or(self.policy.default_ttl);
        if ttl.is_zero() || ttl > self.policy.max_ttl {
            return Err(SessionError::Invalid {
                field: "ttl",
                reason: format!(
                    "must be more than 0 and at most {}",
                    crate::duration::format_duration(self.policy.max_ttl)
                ),
            });
        }
        let class = req
            .retention_class
            .unwrap_or_else(|| self.policy.default_class.clone());
        if !self.policy.classes.contains_key(&class) {
            let known: Vec<&str> = self.policy.classes.keys().map(String::as_str).collect();
            return Err(SessionError::Invalid {
                field: "retention_class",
                reason: format!(
                    "unknown class '{class}', expected one of: {}",
                    known.join(", ")
                ),
            });
        }
        Ok(NewSession {
            a: req.a,
            b: req.b,
            ttl,
            retention_class: class,
            record: req.record.unwrap_or(true),
        })
    }

    /// Reads a session.
    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.store.get_session(id).await
    }

    /// Closes a session and stops routing it at once.
    pub async fn close_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.close_session_as(id, false).await
    }

    /// As [`Routing::close_session`]; `erased`: because its participant's
    /// data is being erased (the `session.closed` webhook says so).
    pub async fn close_session_as(
        &self,
        id: &str,
        erased: bool,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let closed = self
            .store
            .close_session_as(id, self.clock.now(), erased)
            .await?;
        if let Some(s) = &closed {
            self.invalidate(&s.route_keys());
            tracing::info!(session = %s.id, "session closed");
        }
        Ok(closed)
    }

    /// Ends sessions whose TTL ran out (the background expiry job).
    pub async fn expire_due(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let ended = self.store.expire_due(now, 500).await?;
            for s in &ended {
                self.invalidate(&s.route_keys());
            }
            total += ended.len();
            if ended.len() < 500 {
                return Ok(total);
            }
        }
    }

    /// Where a call from `caller` to the proxy number `dialled` goes at
    /// `now`, or `None` if no open session routes it.
    pub async fn route(
        &self,
        caller: &E164,
        dialled: &E164,
        now: Timestamp,
    ) -> Result<Option<Route>, StoreError> {
        let key = (caller.clone(), dialled.clone());
        if let Some(hit) = self.cached(&key, now) {
            bump(&self.counters.cache_hits);
            return Ok(hit);
        }
        bump(&self.counters.cache_misses);
        let found = self.store.lookup_route(caller, dialled, now).await?;
        let ttl = self.policy.route_cache_ttl;
        if !ttl.is_zero() {
            let ttl = if found.is_some() {
                ttl
            } else {
                ttl.min(NEGATIVE_TTL)
            };
            let entry = CacheEntry {
                route: found.clone(),
                stale_at: now.saturating_add(ttl),
            };
            self.cache
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, entry);
        }
        Ok(found)
    }

    /// Where a call from `caller` to `dialled` goes at `now`, if the cache
    /// knows (counted as a hit): `Some(None)` for a fresh negative entry,
    /// `None` when only [`Routing::route`] (the database) can tell. Lets
    /// the SIP engine answer a hit in its own task, without a spawned
    /// lookup or a channel.
    pub fn route_cached(
        &self,
        caller: &E164,
        dialled: &E164,
        now: Timestamp,
    ) -> Option<Option<Route>> {
        let hit = self.cached(&(caller.clone(), dialled.clone()), now)?;
        bump(&self.counters.cache_hits);
        Some(hit)
    }

    /// A fresh cache entry for `key`: `Some(None)` for a fresh negative one.
    fn cached(&self, key: &(E164, E164), now: Timestamp) -> Option<Option<Route>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let entry = cache.entries.get(key)?;
        let alive = entry.route.as_ref().is_none_or(|r| r.expires_at > now);
        if entry.stale_at > now && alive {
            return Some(entry.route.clone());
        }
        drop(cache);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        None
    }

    /// Caches the routes of `session`, just opened through this process,
    /// in place of whatever its keys held (a negative entry, say): its
    /// first calls are answered from memory, not by the database. The
    /// entries are what the lookup would have fetched at `now`.
    fn remember(&self, session: &SessionRecord, now: Timestamp) {
        let ttl = self.policy.route_cache_ttl;
        if ttl.is_zero() {
            return self.invalidate(&session.route_keys());
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for (key, route) in session.routes() {
            let stale_at = now.saturating_add(ttl);
            cache.insert(
                key,
                CacheEntry {
                    route: Some(route),
                    stale_at,
                },
            );
        }
    }

    fn invalidate(&self, keys: &[(E164, E164)]) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            cache.remove(k);
        }
    }

    /// Stops routing session `id` from memory: it ended on some node.
    pub fn session_ended(&self, id: &str) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_session(id);
    }

    /// Drops every cached route: ends announced by other nodes may have
    /// been missed (the notification connection dropped).
    pub fn forget_routes(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_routes();
    }

    /// Applies the session ends every node announces (PostgreSQL `NOTIFY`,
    /// [`crate::store::SessionEnds`]) to this cache until `stop`; a lost
    /// connection drops every cached route, and `route_cache_ttl` stays the
    /// bound for anything missed anyway.
    pub async fn follow_session_ends(
        self: std::sync::Arc<Self>,
        mut ends: crate::store::SessionEnds,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let next = tokio::select! {
                next = ends.next() => next,
                _ = stop.wait_for(|s| *s) => return,
            };
            match next {
                Ok(crate::store::SessionEnd::Ended(id)) => self.session_ended(&id),
                Ok(crate::store::SessionEnd::Missed) => self.forget_routes(),
                Err(e) => {
                    self.forget_routes();
                    tracing::warn!(error = %e, "session-end notifications lost; retrying in 1s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    /// Positive entries in the route cache (for tests and metrics).
    pub fn cached_routes(&self) -> usize {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache.entries.len() - cache.negative
    }

    /// Negative entries in the route cache (for tests and metrics).
    pub fn cached_misses(&self) -> usize {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .negative
    }
}

fn bump(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
