//! State that outlives a request — rate-limit cells, quota and lockout counters, replay nonces, distinct-value
//! sets and temporary blocks — behind small traits with two backends: [`memory::MemoryStore`] (the default;
//! sharded, bounded, with counted eviction) and [`redis_store::RedisStore`] (one atomic Lua script per decision,
//! a short timeout and a declared behaviour when Redis cannot answer).
//!
//! Every operation takes the caller's [`FailureMode`]; the memory backend never fails, the Redis backend applies
//! the mode when Redis is unreachable: `local` answers from per-instance state with limits scaled down by the
//! configured replica count, `open` lets the request through, `closed` returns [`Unavailable`].

pub mod batch;
pub mod memory;
mod redis_batch;
mod redis_coalesce;
pub mod redis_store;
mod subject;

pub use subject::{Label, Subject};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What to do when the shared state cannot be reached within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Per-instance limits, each divided by the configured replica count (the default).
    #[default]
    Local,
    /// No limit while Redis is away.
    Open,
    /// Refuse what needs the state (503 `throttle.state_unavailable`).
    Closed,
}

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Local => "local",
            FailureMode::Open => "open",
            FailureMode::Closed => "closed",
        }
    }
}

/// The state backend could not decide (Redis unreachable and the failure mode is `closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("state backend unavailable")]
pub struct Unavailable;

/// Generic cell rate algorithm parameters, prepared at load: one request per `interval`, and up to
/// `tolerance / interval` more at once (the burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub interval_ns: u64,
    pub tolerance_ns: u64,
}

impl Gcra {
    /// `count` requests per `period`, plus `burst` at once.
    pub fn new(count: u64, period: Duration, burst: u64) -> Gcra {
        let interval_ns = (period.as_nanos() / u128::from(count.max(1))).max(1) as u64;
        Gcra { interval_ns, tolerance_ns: interval_ns.saturating_mul(burst) }
    }

    /// The same limit shared by `replicas` instances that cannot coordinate: each gets its share of the rate;
    /// the burst (a time tolerance) is split the same way.
    pub fn scaled(self, replicas: u32) -> Gcra {
        Gcra { interval_ns: self.interval_ns.saturating_mul(u64::from(replicas.max(1))), ..self }
    }

    /// One decision at `now` on a cell whose theoretical arrival time is `tat` (0 = fresh). Returns the decision
    /// and, when allowed, the new TAT to store.
    pub fn decide(self, tat: u64, now: u64, cost: u32) -> (RateDecision, Option<u64>) {
        let tat = tat.max(now);
        let new_tat = tat.saturating_add(self.interval_ns.saturating_mul(u64::from(cost)));
        let allow_at = new_tat.saturating_sub(self.tolerance_ns.saturating_add(self.interval_ns));
        if allow_at <= now {
            let remaining = (now - allow_at) / self.interval_ns;
            (RateDecision::Allowed { remaining, reset: Duration::from_nanos(new_tat - now) }, Some(new_tat))
        } else {
            (RateDecision::Limited { retry_after: Duration::from_nanos(allow_at - now), newly_blocked: false }, None)
        }
    }
}

/// Repeat offenders: `after` refusals within `within` block the subject for `block_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offences {
    pub after: u32,
    pub within: Duration,
    pub block_for: Duration,
}

/// The answer of a rate-limit cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Let through; `remaining` more would pass right now; the cell is full again after `reset`.
    Allowed { remaining: u64, reset: Duration },
    /// Over the limit; the next request passes after `retry_after`. `newly_blocked`: this refusal made the
    /// subject a repeat offender, now blocked.
    Limited { retry_after: Duration, newly_blocked: bool },
    /// The subject is blocked for `remaining` more.
    Blocked { remaining: Duration },
}

/// The answer of a fixed-window counter with a ceiling (quotas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    pub allowed: bool,
    /// Units left in the window after this request.
    pub remaining: u64,
    /// Until the window ends.
    pub reset: Duration,
}

/// The answer of a distinct-values check (identities per IP, IPs per identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistinctDecision {
    pub allowed: bool,
    /// Distinct values seen in the window, this one included when allowed.
    pub count: u32,
}

/// A temporary block, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockEntry {
    pub subject: String,
    pub remaining_ms: u64,
}

/// Names one cell: the limit it belongs to (`scope`) and who it counts.
#[derive(Debug, Clone, Copy)]
pub struct CellKey<'a> {
    pub scope: &'a str,
    pub subject: &'a Subject,
}

/// Rate limits, quotas and distinct-value sets.
pub trait Limits {
    /// One GCRA decision for `cost` units; refusals count toward `offences` when given, and a blocked subject is
    /// refused before its cell is touched.
    fn rate(
        &self,
        key: CellKey<'_>,
        gcra: Gcra,
        cost: u32,
        offences: Option<Offences>,
        mode: FailureMode,
    ) -> impl Future<Output = Result<RateDecision, Unavailable>> + Send;

    /// Adds `cost` to the counter of the current window (`window_id` names it, `reset` is its remaining life)
    /// unless that would pass `max`.
    fn quota(
        &self,
        key: CellKey<'_>,
        window_id: u64,
        max: u64,
        cost: u64,
        reset: Duration,
        mode: FailureMode,
    ) -> impl Future<Output = Result<QuotaDecision, Unavailable>> + Send;

    /// Records `member` in the subject's set for `window` unless the set already holds `max` other members.
    fn distinct(
        &self,
        key: CellKey<'_>,
        member: &Subject,
        max: u32,
        window: Duration,
        mode: FailureMode,
    ) -> impl Future<Output = Result<DistinctDecision, Unavailable>> + Send;
}

/// Replay protection: remember a value for a while, and say whether it was new.
pub trait Nonces {
    /// `true` when `key` was not present (it now is, for `ttl`); `false` for a replay.
    fn set_if_absent(
        &self,
        key: &str,
        ttl: Duration,
        mode: FailureMode,
    ) -> impl Future<Output = Result<bool, Unavailable>> + Send;
}

/// Counters over a window (failed logins for lockout).
pub trait Counters {
    /// Adds `by` and returns the total of the window, which starts with the first increment and lasts `window`.
    fn incr_window(
        &self,
        key: &str,
        by: u64,
        window: Duration,
        mode: FailureMode,
    ) -> impl Future<Output = Result<u64, Unavailable>> + Send;
}

/// Temporary blocks of a subject, shared by every instance on the same backend.
pub trait Blocks {
    fn block(
        &self,
        subject: &Subject,
        ttl: Duration,
        mode: FailureMode,
    ) -> impl Future<Output = Result<(), Unavailable>> + Send;
    /// The time left on the subject's block, if any.
    fn blocked(
        &self,
        subject: &Subject,
        mode: FailureMode,
    ) -> impl Future<Output = Result<Option<Duration>, Unavailable>> + Send;
    fn list_blocks(&self) -> impl Future<Output = Result<Vec<BlockEntry>, Unavailable>> + Send;
    /// `true` when a block was lifted.
    fn unblock(&self, subject: &Subject) -> impl Future<Output = Result<bool, Unavailable>> + Send;
}

/// Metric handles the backends update, resolved once from [`crate::metrics::Metrics`].
#[derive(Clone, Debug, Default)]
pub struct StateMetrics {
    pub evicted_idle: Counter,
    pub evicted_lru: Counter,
    pub redis_up: Gauge,
    pub degraded: Counter,
    pub recovered: Counter,
    pub fallback_local: Counter,
    pub fallback_open: Counter,
    pub fallback_closed: Counter,
}

/// Which backend, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateSpec {
    Memory { max_entries: usize },
    Redis(RedisSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSpec {
    /// One URL, or the seed nodes of a Redis Cluster.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub timeout: Duration,
    pub on_failure: FailureMode,
    pub replicas: u32,
    /// Size of the per-instance fallback used in `local` mode.
    pub max_entries: usize,
}

/// The configured backend. An enum rather than a trait object so calls need no boxing.
#[derive(Clone)]
pub enum Store {
    Memory(Arc<memory::MemoryStore>),
    Redis(Arc<redis_store::RedisStore>),
}

impl Store {
    pub fn build(spec: &StateSpec, metrics: StateMetrics) -> Result<Store, String> {
        Ok(match spec {
            StateSpec::Memory { max_entries } => {
                Store::Memory(Arc::new(memory::MemoryStore::new(*max_entries, metrics)))
            }
            StateSpec::Redis(r) => Store::Redis(Arc::new(redis_store::RedisStore::start(r.clone(), metrics)?)),
        })
    }

    /// `true` unless this is Redis and Redis is currently unreachable.
    pub fn healthy(&self) -> bool {
        match self {
            Store::Memory(_) => true,
            Store::Redis(r) => r.is_up(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }
}

impl Limits for Store {
    async fn rate(
        &self,
        key: CellKey<'_>,
        gcra: Gcra,
        cost: u32,
        offences: Option<Offences>,
        mode: FailureMode,
    ) -> Result<RateDecision, Unavailable> {
        match self {
            Store::Memory(m) => m.rate(key, gcra, cost, offences, mode).await,
            Store::Redis(r) => r.rate(key, gcra, cost, offences, mode).await,
        }
    }

    async fn quota(
        &self,
        key: CellKey<'_>,
        window_id: u64,
        max: u64,
        cost: u64,
        reset: Duration,
        mode: FailureMode,
    ) -> Result<QuotaDecision, Unavailable> {
        match self {
            Store::Memory(m) => m.quota(key, window_id, max, cost, reset, mode).await,
            Store::Redis(r) => r.quota(key, window_id, max, cost, reset, mode).await,
        }
    }

    async fn distinct(
        &self,
        key: CellKey<'_>,
        member: &Subject,
        max: u32,
        window: Duration,
        mode: FailureMode,
    ) -> Result<DistinctDecision, Unavailable> {
        match self {
            Store::Memory(m) => m.distinct(key, member, max, window, mode).await,
            Store::Redis(r) => r.distinct(key, member, max, window, mode).await,
        }
    }
}

impl Nonces for Store {
    async fn set_if_absent(&self, key: &str, ttl: Duration, mode: FailureMode) -> Result<bool, Unavailable> {
        match self {
            Store::Memory(m) => m.set_if_absent(key, ttl, mode).await,
            Store::Redis(r) => r.set_if_absent(key, ttl, mode).await,
        }
    }
}

impl Counters for Store {
    async fn incr_window(&self, key: &str, by: u64, window: Duration, mode: FailureMode) -> Result<u64, Unavailable> {
        match self {
            Store::Memory(m) => m.incr_window(key, by, window, mode).await,
            Store::Redis(r) => r.incr_window(key, by, window, mode).await,
        }
    }
}

impl Blocks for Store {
    async fn block(&self, subject: &Subject, ttl: Duration, mode: FailureMode) -> Result<(), Unavailable> {
        match self {
            Store::Memory(m) => m.block(subject, ttl, mode).await,
            Store::Redis(r) => r.block(subject, ttl, mode).await,
        }
    }
    async fn blocked(&self, subject: &Subject, mode: FailureMode) -> Result<Option<Duration>, Unavailable> {
        match self {
            Store::Memory(m) => m.blocked(subject, mode).await,
            Store::Redis(r) => r.blocked(subject, mode).await,
        }
    }
    async fn list_blocks(&self) -> Result<Vec<BlockEntry>, Unavailable> {
        match self {
            Store::Memory(m) => m.list_blocks().await,
            Store::Redis(r) => r.list_blocks().await,
        }
    }
    async fn unblock(&self, subject: &Subject) -> Result<bool, Unavailable> {
        match self {
            Store::Memory(m) => m.unblock(subject).await,
            Store::Redis(r) => r.unblock(subject).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_spaces_requests_and_allows_the_burst() {
        let g = Gcra::new(10, Duration::from_secs(1), 2); // 100 ms apart, 3 at once
        let mut tat = 0;
        let now = 1_000_000_000;
        for i in 0..3 {
            let (d, next) = g.decide(tat, now, 1);
            assert!(matches!(d, RateDecision::Allowed { remaining, .. } if remaining == 2 - i), "{i}: {d:?}");
            tat = next.unwrap();
        }
        let (d, next) = g.decide(tat, now, 1);
        assert_eq!(d, RateDecision::Limited { retry_after: Duration::from_millis(100), newly_blocked: false });
        assert!(next.is_none());
        let (d, _) = g.decide(tat, now + 100_000_000, 1);
        assert!(matches!(d, RateDecision::Allowed { remaining: 0, .. }));
        // A cost of 3 needs the whole burst.
        assert!(matches!(g.decide(0, now, 3).0, RateDecision::Allowed { remaining: 0, .. }));
        assert!(matches!(g.decide(0, now, 4).0, RateDecision::Limited { .. }));
        // Scaled across 2 replicas: half the rate each.
        assert_eq!(g.scaled(2).interval_ns, 200_000_000);
    }
}
