//! Process-wide counters, rendered in the Prometheus text format.
//!
//! Hand-written rather than a metrics framework: a few atomics and one map
//! keyed by route template, so nothing on a hot path takes more than a
//! short, uncontended lock.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::media::RelayTotals;
use crate::recording::RecordingCounters;
use crate::routing::RoutingCounters;
use crate::transport::TransportCounters;

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
    /// The media relay's port pool, read when scraped for the pairs in
    /// use (set once the relay runs; 0 before).
    pub media_pool: std::sync::OnceLock<crate::media::PortPool>,
    /// Recording chunks decrypted to serve playback: a Range request
    /// should add only the chunks it covers, which this makes visible.
    pub playback_chunks_decrypted: AtomicU64,
    /// Items retention sweeps could not finish (a recording whose blob
    /// cannot be read, a key the key store would not destroy, a hold that
    /// could not be completed). Each is tried again by the next sweep, so
    /// a count that keeps rising means the same items keep failing.
    pub retention_erase_failures: AtomicU64,
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
    /// INVITEs refused with `503` because `[limits] max_calls` were up.
    pub calls_over_limit: AtomicU64,
    /// Call-record batches committed by the write-behind writer.
    pub cdr_batches: AtomicU64,
    /// Call-record writes dropped because the writer's queue was full.
    pub cdr_dropped: AtomicU64,
    /// Call-record writes that failed (the database refused them).
    pub cdr_failed: AtomicU64,
    /// Received SIP requests that would open something new, dropped
    /// because the queue of the switch owning their Call-ID was full.
    pub sip_shard_dropped: AtomicU64,
    /// SIP transactions (server and client) open now.
    pub sip_transactions: AtomicI64,
    /// SIP transactions lingering now, only to absorb retransmissions.
    pub sip_lingering: AtomicI64,
    /// Lingering SIP transactions evicted because their table was full.
    pub sip_lingering_evicted: AtomicU64,
    /// The configured limits, shown so a dashboard can relate usage to
    /// them (set once at start-up).
    pub limits: Limits,
    /// What the SIP transports did (outsiders, connections, shedding).
    pub transport: Arc<TransportCounters>,
    /// What the media relays did (foreign packets).
    pub media: Arc<RelayTotals>,
    /// How recordings ended.
    pub recording: Arc<RecordingCounters>,
    /// Each trunk's name and whether it is up (its keep-alive probes
    /// answer), as the SIP engine last saw them.
    trunks: Mutex<Vec<(String, bool)>>,
    /// Webhook deliveries the receiver accepted (2xx).
    pub webhooks_delivered: AtomicU64,
    /// Webhook delivery tries that failed (each is retried).
    pub webhooks_failed_attempts: AtomicU64,
    /// Webhook events given up after `[webhooks] give_up_after`.
    pub webhooks_given_up: AtomicU64,
    /// Calls no open session routes, by what became of them.
    pub out_of_session: OutOfSessionCounters,
}

/// `ansim_out_of_session_total{outcome=…}`: calls no open session routes
/// (`[routing] out_of_session`).
#[derive(Debug, Default)]
pub struct OutOfSessionCounters {
    /// Refused with `unknown_caller_status` (`outcome="rejected"`).
    pub rejected: AtomicU64,
    /// Forwarded to `fallback_number` (`outcome="forwarded"`).
    pub forwarded: AtomicU64,
    /// Answered by ansim with `out_of_session_announcement`, or played it
    /// as early media (`outcome="announced"`).
    pub announced: AtomicU64,
}

/// The configured capacity limits, as gauges.
#[derive(Debug, Default)]
pub struct Limits {
    /// `[limits] max_calls`.
    pub max_calls: AtomicI64,
    /// `[limits] max_transactions`.
    pub max_transactions: AtomicI64,
    /// `[limits] inbound_queue`.
    pub inbound_queue: AtomicI64,
    /// `[sip] max_tcp_connections`.
    pub max_tcp_connections: AtomicI64,
    /// Media port pairs in the pool.
    pub media_port_pairs: AtomicI64,
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

    /// Publishes the trunks' states (`ansim_trunk_up`).
    pub fn set_trunks(&self, states: Vec<(String, bool)>) {
        *self.trunks.lock().unwrap_or_else(|p| p.into_inner()) = states;
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
            "ansim_retention_erase_failures_total",
            "Items retention sweeps could not finish (retried by the next sweep).",
            load(&self.retention_erase_failures),
        );
        self.render_edge(&mut out);
        for (name, help, v) in [
            (
                "ansim_webhook_deliveries_total",
                "Webhook events the receiver accepted.",
                &self.webhooks_delivered,
            ),
            (
                "ansim_webhook_delivery_failures_total",
                "Webhook delivery tries that failed (each is retried).",
                &self.webhooks_failed_attempts,
            ),
            (
                "ansim_webhook_given_up_total",
                "Webhook events given up after [webhooks] give_up_after.",
                &self.webhooks_given_up,
            ),
        ] {
            counter(&mut out, name, help, load(v));
        }
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
        let pairs = self.media_pool.get().map_or(0, |p| p.in_use() as i64);
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
        drop(map);
        self.render_trunks(&mut out);
        self.render_out_of_session(&mut out);
        out
    }

    /// `ansim_out_of_session_total{outcome}`: every outcome, zeros too, so
    /// a rate can be taken from the first scrape.
    fn render_out_of_session(&self, out: &mut String) {
        let c = &self.out_of_session;
        let _ = writeln!(
            out,
            "# HELP ansim_out_of_session_total Calls no open session routes, by outcome.\n\
             # TYPE ansim_out_of_session_total counter"
        );
        let outcomes = [
            ("rejected", &c.rejected),
            ("forwarded", &c.forwarded),
            ("announced", &c.announced),
        ];
        for (outcome, v) in outcomes {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "ansim_out_of_session_total{{outcome=\"{outcome}\"}} {v}"
            );
        }
    }

    /// `ansim_trunk_up{trunk="name"}`: 1 while the trunk answers its
    /// keep-alives (always, for a trunk without them). Names are checked
    /// at start-up to be letters, digits, `-` and `_`.
    fn render_trunks(&self, out: &mut String) {
        let trunks = self.trunks.lock().unwrap_or_else(|p| p.into_inner());
        if trunks.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP ansim_trunk_up Whether the trunk answers its OPTIONS keep-alives.\n\
             # TYPE ansim_trunk_up gauge"
        );
        for (name, up) in trunks.iter() {
            let _ = writeln!(out, "ansim_trunk_up{{trunk=\"{name}\"}} {}", u8::from(*up));
        }
    }

    /// The hostile-network counters and the limits.
    fn render_edge(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let loadi = |c: &AtomicI64| c.load(Ordering::Relaxed);
        let t = &self.transport;
        let r = &self.recording;
        let counters: [(&str, &str, u64); 22] = [
            (
                "ansim_media_rtcp_unscrubbable_total",
                "RTCP datagrams dropped because they could not be scrubbed of identity.",
                load(&self.media.rtcp_unscrubbable),
            ),
            (
                "ansim_recordings_complete_total",
                "Recordings finished complete.",
                load(&r.complete),
            ),
            (
                "ansim_recordings_failed_write_error_total",
                "Recordings ended failed: writing failed (keys, database, blob, full disk).",
                load(&r.failed_write_error),
            ),
            (
                "ansim_recordings_failed_unsupported_codec_total",
                "Recordings ended failed: the call's codec cannot be recorded.",
                load(&r.failed_unsupported_codec),
            ),
            (
                "ansim_recordings_truncated_total",
                "Recordings found without a writer and marked truncated.",
                load(&r.truncated),
            ),
            (
                "ansim_recordings_uploaded_total",
                "Recordings uploaded to the object store and verified.",
                load(&r.uploaded),
            ),
            (
                "ansim_recordings_upload_failures_total",
                "Recording upload tries that failed (each is retried with backoff).",
                load(&r.upload_failures),
            ),
            (
                "ansim_sip_outsider_dropped_total",
                "Datagrams from sources outside [trunk] allow dropped unanswered.",
                load(&t.outsider_dropped),
            ),
            (
                "ansim_sip_outsider_replies_total",
                "403s sent to sources outside [trunk] allow.",
                load(&t.outsider_replies),
            ),
            (
                "ansim_sip_outsider_connections_total",
                "TCP/TLS connections from outside [trunk] allow closed at accept.",
                load(&t.outsider_connections),
            ),
            (
                "ansim_sip_connections_over_limit_total",
                "TCP/TLS connections closed at accept: [sip] max_tcp_connections open.",
                load(&t.connections_over_limit),
            ),
            (
                "ansim_sip_connections_idle_closed_total",
                "TCP/TLS connections closed after [sip] tcp_idle_timeout.",
                load(&t.connections_idle_closed),
            ),
            (
                "ansim_sip_connections_bad_framing_total",
                "TCP/TLS connections closed: unframeable or oversized message.",
                load(&t.connections_bad_framing),
            ),
            (
                "ansim_sip_inbound_shed_total",
                "New SIP requests dropped because their queue was full.",
                load(&t.inbound_shed),
            ),
            (
                "ansim_calls_over_limit_total",
                "INVITEs answered 503 because [limits] max_calls were in progress.",
                load(&self.calls_over_limit),
            ),
            (
                "ansim_cdr_batches_total",
                "Call-record batches committed (one transaction each).",
                load(&self.cdr_batches),
            ),
            (
                "ansim_cdr_dropped_total",
                "Call-record writes dropped because the database fell behind.",
                load(&self.cdr_dropped),
            ),
            (
                "ansim_cdr_failed_total",
                "Call-record writes the database refused.",
                load(&self.cdr_failed),
            ),
            (
                "ansim_sip_lingering_evicted_total",
                "Lingering SIP transactions evicted early because [limits] max_lingering_transactions were lingering.",
                load(&self.sip_lingering_evicted),
            ),
            (
                "ansim_sip_shard_dropped_total",
                "New SIP requests dropped because their switch's queue was full.",
                load(&self.sip_shard_dropped),
            ),
            (
                "ansim_media_foreign_packets_total",
                "Media datagrams dropped because they came from a source the leg does not admit.",
                load(&self.media.foreign_packets),
            ),
            (
                "ansim_media_ring_starved_total",
                "Times an io_uring media worker ran out of receive buffers (datagrams waited in the socket).",
                load(&self.media.ring_starved),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let l = &self.limits;
        let gauges: [(&str, &str, i64); 8] = [
            (
                "ansim_sip_connections_open",
                "SIP TCP/TLS connections open.",
                t.open_connections(),
            ),
            (
                "ansim_sip_transactions",
                "SIP transactions open.",
                loadi(&self.sip_transactions),
            ),
            (
                "ansim_sip_lingering_transactions",
                "SIP transactions lingering only to absorb retransmissions (outside max_transactions).",
                loadi(&self.sip_lingering),
            ),
            (
                "ansim_limit_max_calls",
                "[limits] max_calls.",
                loadi(&l.max_calls),
            ),
            (
                "ansim_limit_max_transactions",
                "[limits] max_transactions.",
                loadi(&l.max_transactions),
            ),
            (
                "ansim_limit_inbound_queue",
                "[limits] inbound_queue (each of the two SIP queues).",
                loadi(&l.inbound_queue),
            ),
            (
                "ansim_limit_max_tcp_connections",
                "[sip] max_tcp_connections.",
                loadi(&l.max_tcp_connections),
            ),
            (
                "ansim_limit_media_port_pairs",
                "RTP/RTCP port pairs in [media] ports.",
                loadi(&l.media_port_pairs),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    }
}
