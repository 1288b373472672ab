//! Process-wide counters, rendered in the Prometheus text format.
//!
//! Hand-written rather than a metrics framework: a few atomics and one map
//! keyed by route template, so nothing on a hot path takes more than a
//! short, uncontended lock.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::routing::RoutingCounters;

/// HTTP request counts by (method, route template, status).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Keyed by route template (`/v1/sessions/{id}`), never the raw path,
    /// so the label set stays bounded and carries no ids.
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Calls being relayed now (the SIP engine keeps it).
    pub calls_active: AtomicI64,
    /// Calls the engine started relaying.
    pub calls_relayed: AtomicU64,
    /// INVITEs refused (no session, source not allowed, no media ports).
    pub calls_refused: AtomicU64,
    /// RTP/RTCP port pairs handed out by the media pool now.
    pub media_pairs_in_use: AtomicI64,
    /// Recording chunks decrypted to serve playback: a Range request
    /// should add only the chunks it covers, which this makes visible.
    pub playback_chunks_decrypted: AtomicU64,
    /// API connections open now (TLS handshakes included).
    pub http_connections_open: AtomicI64,
    /// API connections closed at accept because `[api] max_connections`
    /// were open: a rising count means a flood, or a limit set too low.
    pub http_connections_refused: AtomicU64,
    /// Requests refused with 429 because their address sent too many bad
    /// tokens (`[api] auth_failures_per_minute`): someone is guessing.
    pub http_auth_throttled: AtomicU64,
    /// `[api] max_connections`, shown next to the open count so that an
    /// alert can compare the two; set when the API starts serving.
    pub limit_api_max_connections: AtomicI64,
}

/// Gauges read at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Sessions open now.
    pub open_sessions: i64,
    /// Numbers in the pool.
    pub pool_numbers: i64,
    /// Entries in the route cache.
    pub cached_routes: usize,
}

impl Metrics {
    /// Counts one answered HTTP request.
    pub fn count_http(&self, method: &str, route: &str, status: u16) {
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
    }

    /// The Prometheus exposition text.
    pub fn render(&self, routing: &RoutingCounters, gauges: Gauges) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "ansim_sessions_created_total",
            "Sessions opened.",
            load(&routing.sessions_created),
        );
        counter(
            &mut out,
            "ansim_sessions_refused_pool_total",
            "Session requests the pool could not serve.",
            load(&routing.pool_exhausted),
        );
        counter(
            &mut out,
            "ansim_route_cache_hits_total",
            "Route lookups answered from memory.",
            load(&routing.cache_hits),
        );
        counter(
            &mut out,
            "ansim_route_cache_misses_total",
            "Route lookups that queried the database.",
            load(&routing.cache_misses),
        );
        counter(
            &mut out,
            "ansim_calls_relayed_total",
            "Calls relayed to a callee.",
            load(&self.calls_relayed),
        );
        counter(
            &mut out,
            "ansim_calls_refused_total",
            "INVITEs refused.",
            load(&self.calls_refused),
        );
        counter(
            &mut out,
            "ansim_playback_chunks_decrypted_total",
            "Recording chunks decrypted for playback.",
            load(&self.playback_chunks_decrypted),
        );
        counter(
            &mut out,
            "ansim_http_connections_refused_total",
            "API connections closed at accept: max_connections were open.",
            load(&self.http_connections_refused),
        );
        counter(
            &mut out,
            "ansim_http_auth_throttled_total",
            "API requests refused because their address sent too many bad tokens.",
            load(&self.http_auth_throttled),
        );
        gauge(
            &mut out,
            "ansim_http_connections_open",
            "API connections open now.",
            self.http_connections_open.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "ansim_limit_api_max_connections",
            "Most API connections open at once ([api] max_connections).",
            self.limit_api_max_connections.load(Ordering::Relaxed),
        );
        let active = self.calls_active.load(Ordering::Relaxed);
        gauge(&mut out, "ansim_calls_active", "Calls in progress.", active);
        let pairs = self.media_pairs_in_use.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "ansim_media_port_pairs_in_use",
            "RTP/RTCP port pairs in use.",
            pairs,
        );
        gauge(
            &mut out,
            "ansim_sessions_open",
            "Sessions open now.",
            gauges.open_sessions,
        );
        gauge(
            &mut out,
            "ansim_pool_numbers",
            "Safe numbers in the pool.",
            gauges.pool_numbers,
        );
        gauge(
            &mut out,
            "ansim_route_cache_entries",
            "Entries in the route cache.",
            gauges.cached_routes as i64,
        );
        let _ = writeln!(
            out,
            "# HELP ansim_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE ansim_http_requests_total counter");
        let map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        for ((method, route, status), n) in map.iter() {
            let _ = writeln!(
                out,
                "ansim_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
        out
    }
}
