//! Prometheus metrics. Handles that the request path touches are resolved at config load (per route), so a
//! request increments an atomic and never hashes a label set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamEvent {
    pub upstream: String,
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: &'static str,
}

/// All metrics of one gateway process.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RouteStatus, Counter>,
    pub rejections: Family<CodeLabel, Counter>,
    pub duration: Histogram,
    pub upstream_events: Family<UpstreamEvent, Counter>,
    pub connections_open: Gauge,
    pub connections_refused: Family<ReasonLabel, Counter>,
    pub reloads: Family<ResultLabel, Counter>,
    pub state_evictions: Family<ReasonLabel, Counter>,
    pub state_redis_up: Gauge,
    pub state_transitions: Family<EventLabel, Counter>,
    pub state_fallbacks: Family<ModeLabel, Counter>,
    pub jwt_cache: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rampart");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register("requests", "Requests answered, by route and status class", requests.clone());
        let rejections = Family::<CodeLabel, Counter>::default();
        registry.register(
            "rejections",
            "Requests rejected (or flagged in monitor mode), by stable code",
            rejections.clone(),
        );
        let duration =
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register("request_duration_seconds", "Time from request head to response head", duration.clone());
        let upstream_events = Family::<UpstreamEvent, Counter>::default();
        registry.register(
            "upstream_events",
            "Upstream failures and state changes (connect_error, timeout, ejected, circuit_open, circuit_closed)",
            upstream_events.clone(),
        );
        let connections_open = Gauge::default();
        registry.register("connections_open", "Client connections currently open", connections_open.clone());
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at accept by a limit",
            connections_refused.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register("config_reloads", "Configuration reloads by result", reloads.clone());
        let state_evictions = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "state_evictions",
            "Entries dropped from the bounded in-memory state (idle: expired; lru: least recently used)",
            state_evictions.clone(),
        );
        let state_redis_up = Gauge::default();
        registry.register(
            "state_redis_up",
            "1 while the Redis limit state answers, 0 while failure modes apply",
            state_redis_up.clone(),
        );
        let state_transitions = Family::<EventLabel, Counter>::default();
        registry.register(
            "state_transitions",
            "Redis state backend going down (degraded) and back (recovered)",
            state_transitions.clone(),
        );
        let state_fallbacks = Family::<ModeLabel, Counter>::default();
        registry.register(
            "state_fallbacks",
            "Limit decisions made by a route's failure mode while Redis was unreachable",
            state_fallbacks.clone(),
        );
        let jwt_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "jwt_cache",
            "JWT verifications answered from the verified-token cache (hit) or verified in full (miss)",
            jwt_cache.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            rejections,
            duration,
            upstream_events,
            connections_open,
            connections_refused,
            reloads,
            state_evictions,
            state_redis_up,
            state_transitions,
            state_fallbacks,
            jwt_cache,
        }
    }

    /// The verified-token cache counters, resolved once per config load.
    pub fn jwt_cache_counters(&self) -> crate::stages::identify::jwt_cache::CacheCounters {
        let hits = self.jwt_cache.get_or_create(&ResultLabel { result: "hit" }).clone();
        let misses = self.jwt_cache.get_or_create(&ResultLabel { result: "miss" }).clone();
        crate::stages::identify::jwt_cache::CacheCounters { hits, misses }
    }

    /// The handles the state backends update.
    pub fn state_metrics(&self) -> crate::state::StateMetrics {
        // One statement per handle: a family's read guard lives to the end of its statement, and a second
        // `get_or_create` in the same statement would wait on it forever.
        let eviction = |reason: &'static str| self.state_evictions.get_or_create(&ReasonLabel { reason }).clone();
        let transition = |event: &'static str| self.state_transitions.get_or_create(&EventLabel { event }).clone();
        let fallback = |mode: &'static str| self.state_fallbacks.get_or_create(&ModeLabel { mode }).clone();
        let evicted_idle = eviction("idle");
        let evicted_lru = eviction("lru");
        let degraded = transition("degraded");
        let recovered = transition("recovered");
        let fallback_local = fallback("local");
        let fallback_open = fallback("open");
        let fallback_closed = fallback("closed");
        crate::state::StateMetrics {
            evicted_idle,
            evicted_lru,
            redis_up: self.state_redis_up.clone(),
            degraded,
            recovered,
            fallback_local,
            fallback_open,
            fallback_closed,
        }
    }

    /// The per-status-class counters of one route, resolved once at config load.
    pub fn route_counters(&self, route: &str) -> RouteCounters {
        let get =
            |class: &'static str| self.requests.get_or_create(&RouteStatus { route: route.to_string(), class }).clone();
        RouteCounters { by_class: [get("1xx"), get("2xx"), get("3xx"), get("4xx"), get("5xx")] }
    }

    pub fn upstream_event(&self, upstream: &str, event: &'static str) {
        self.upstream_events.get_or_create(&UpstreamEvent { upstream: upstream.to_string(), event }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        }
        out
    }
}

/// Counters for one route, indexed by status class.
#[derive(Clone, Debug)]
pub struct RouteCounters {
    by_class: [Counter; 5],
}

impl RouteCounters {
    pub fn inc(&self, status: u16) {
        let i = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[i].inc();
    }
}
