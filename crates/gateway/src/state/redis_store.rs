//! The Redis backend (single node or Redis Cluster). Each decision is one atomic Lua script on keys that share a
//! hash tag — the subject, e.g. `rampart:rl:{ip:203.0.113.7/32}:login` and `rampart:blk:{ip:203.0.113.7/32}` —
//! so a cluster runs it on one node. Time comes from Redis (`TIME`), so replicas with skewed clocks agree.
//!
//! Connections live on a dedicated thread with its own runtime; workers pipeline their calls over one
//! multiplexed connection. Every call is bounded by the configured timeout. The first failure marks the backend
//! down (metric, `rampart::security` event) and from then on requests get the route's failure mode at once,
//! without waiting, while the supervisor reconnects with exponential back-off and marks it up again.

use super::memory::{now_ns, MemoryStore};
use super::redis_coalesce::{Coalescer, Join, Lead};
use super::{
    BlockEntry, Blocks, CellKey, Counters, DistinctDecision, FailureMode, Gcra, Limits, Nonces, Offences,
    QuotaDecision, RateDecision, RedisSpec, StateMetrics, Subject, Unavailable,
};
use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisResult, Script};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, Notify};

#[path = "redis_lockout.rs"]
pub mod lockout;

const PREFIX: &str = "rampart:";
pub(super) const BLOCK_INDEX: &str = "rampart:blocks";

/// KEYS: cell, block, offences. ARGV: interval µs, tolerance µs, cost, offences-before-block (0 = never),
/// offence window ms, block ms, N (requests charged together, see [`super::redis_coalesce`]). The N requests
/// are decided in order at one instant: the first k pass (k = how many fit), the rest are refused, each refusal
/// counting an offence. Returns {2, 0, block left µs, 0} when the subject is blocked (all N refused), else
/// {1, k, tat − now µs (tat: the cell's arrival time before them, at least now), b}: b = 0, or the 1-based
/// refusal that reached `after` and set the block (the refusals after it find the block).
/// Time comes from Redis (`TIME`), not from the gateway: replicas whose clocks disagree by a few milliseconds
/// would otherwise move one cell's arrival time back and forth and let more through than the limit.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local bl = redis.call('PTTL', KEYS[2])
if bl > 0 then return {2, 0, bl * 1000, 0} end
local interval = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local step = tonumber(ARGV[3]) * interval
local n = tonumber(ARGV[7])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local slack = now - tat + tol + interval
local k = n
if step > 0 then
  k = math.floor(slack / step)
  if k > n then k = n elseif k < 0 then k = 0 end
end
while k > 0 and k * step > slack do k = k - 1 end
while k < n and (k + 1) * step <= slack do k = k + 1 end
if k > 0 then
  local new_tat = tat + k * step
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
end
local blocked = 0
local refused = n - k
local after = tonumber(ARGV[4])
if refused > 0 and after > 0 then
  local c = redis.call('INCRBY', KEYS[3], refused)
  if c >= after then
    redis.call('SET', KEYS[2], '1', 'PX', ARGV[6])
    redis.call('DEL', KEYS[3])
    blocked = math.max(after - (c - refused), 1)
  elseif c == refused then
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
  end
end
return {1, k, tat - now, blocked}
";

/// KEYS: counter. ARGV: cost, max, window ms. Returns {allowed, remaining}.
const QUOTA: &str = r"
local cost = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if used + cost > max then return {0, max - used} end
used = redis.call('INCRBY', KEYS[1], cost)
if used == cost then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, max - used}
";

/// KEYS: set. ARGV: member, max, window ms. Returns {allowed, count}. The set never grows past `max`.
const DISTINCT: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {1, redis.call('SCARD', KEYS[1])} end
local n = redis.call('SCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
redis.call('SADD', KEYS[1], ARGV[1])
if n == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, n + 1}
";

/// KEYS: counter. ARGV: by, window ms. Returns the total.
const INCR_WINDOW: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
";

#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

enum Client {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

struct Scripts {
    gcra: Script,
    quota: Script,
    distinct: Script,
    incr_window: Script,
}

pub(super) struct Inner {
    spec: RedisSpec,
    client: Client,
    conn: ArcSwapOption<Conn>,
    up: AtomicBool,
    wake: Notify,
    /// Per-instance state for `local` mode.
    local: MemoryStore,
    metrics: StateMetrics,
    scripts: Scripts,
    /// Rate checks of one cell in flight at once, sharing a call.
    pub(super) coalesce: Coalescer,
}

/// Shared state in Redis, with a declared behaviour while Redis is away.
pub struct RedisStore {
    inner: Arc<Inner>,
    /// Dropping it stops the supervisor thread and closes the connection.
    _stop: oneshot::Sender<()>,
}

/// What [`GCRA`] answers: state, admitted, arrival time offset µs, the refusal that blocked.
pub(super) type GcraAnswer = (i64, i64, i64, i64);

/// One cell's [`GCRA`] call, rendered once for every call made for it (a lead's, and the coalesced ones after).
pub(super) struct RateCall {
    cell: String,
    blk: String,
    off: String,
    interval_us: u64,
    tolerance_us: u64,
    cost: u32,
    after: u32,
    within_ms: u64,
    block_ms: u64,
    /// What the call is for, so a check joins only a call for its own cell with its own parameters.
    subject: Subject,
    /// Where the scope starts in `cell`.
    scope_at: usize,
    gcra: Gcra,
    offences: Option<Offences>,
}

impl RateCall {
    pub(super) fn new(k: CellKey<'_>, gcra: Gcra, cost: u32, offences: Option<Offences>) -> RateCall {
        let cell = key("rl", k);
        let o = offences.unwrap_or(Offences { after: 0, within: Duration::ZERO, block_for: Duration::ZERO });
        RateCall {
            scope_at: cell.len() - k.scope.len(),
            cell,
            blk: block_key(k.subject),
            off: key("off", k),
            interval_us: (gcra.interval_ns / 1000).max(1),
            tolerance_us: gcra.tolerance_ns / 1000,
            cost,
            after: o.after,
            within_ms: ms(o.within),
            block_ms: ms(o.block_for),
            subject: *k.subject,
            gcra,
            offences,
        }
    }

    pub(super) fn is_for(&self, k: CellKey<'_>, gcra: Gcra, cost: u32, offences: Option<Offences>) -> bool {
        self.subject == *k.subject
            && self.cell.get(self.scope_at..) == Some(k.scope)
            && self.gcra == gcra
            && self.cost == cost
            && self.offences == offences
    }

    /// The decision of the `i`-th (0-based) of the requests a call charged, from the call's answer: the first
    /// `k` passed, each taking one more step of the cell; the others were refused in order (see [`GCRA`]).
    pub(super) fn decision(&self, answer: GcraAnswer, i: u64) -> Option<RateDecision> {
        let us = |v: i128| Duration::from_micros(v.clamp(0, i128::from(u64::MAX)) as u64);
        let (state, k, d, blocked) = answer;
        match state {
            2 => Some(RateDecision::Blocked { remaining: us(i128::from(d)) }),
            1 => {
                let (interval, tol) = (i128::from(self.interval_us), i128::from(self.tolerance_us));
                let step = interval * i128::from(self.cost);
                let (k, d, i) = (i128::from(k.max(0)), i128::from(d), i128::from(i));
                if i < k {
                    let taken = (i + 1) * step;
                    let remaining = ((tol + interval - d - taken) / interval).max(0) as u64;
                    return Some(RateDecision::Allowed { remaining, reset: us(d + taken) });
                }
                let retry_after = us(d + (k + 1) * step - tol - interval);
                let refusal = i - k + 1;
                let blocked = i128::from(blocked);
                Some(if blocked == 0 || refusal < blocked {
                    RateDecision::Limited { retry_after, newly_blocked: false }
                } else if refusal == blocked {
                    RateDecision::Limited { retry_after, newly_blocked: true }
                } else {
                    RateDecision::Blocked { remaining: Duration::from_millis(self.block_ms) }
                })
            }
            _ => None,
        }
    }
}

pub(super) fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

pub(super) fn key(kind: &str, k: CellKey<'_>) -> String {
    let label = k.subject.label();
    let mut s = String::with_capacity(PREFIX.len() + kind.len() + label.len() + k.scope.len() + 4);
    s.push_str(PREFIX);
    s.push_str(kind);
    s.push_str(":{");
    s.push_str(&label);
    s.push_str("}:");
    s.push_str(k.scope);
    s
}

pub(super) fn block_key(subject: &Subject) -> String {
    format!("{PREFIX}blk:{{{subject}}}")
}

pub(super) fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl RedisStore {
    /// Validates the URLs and starts the supervisor thread, which connects in the background; until it has,
    /// requests get the failure mode.
    pub fn start(spec: RedisSpec, metrics: StateMetrics) -> Result<RedisStore, String> {
        let client = if spec.cluster {
            let b = redis::cluster::ClusterClient::builder(spec.urls.clone())
                .connection_timeout(Duration::from_secs(1))
                .response_timeout(spec.timeout.max(Duration::from_millis(1)));
            Client::Cluster(Box::new(b.build().map_err(|e| format!("invalid Redis Cluster nodes: {e}"))?))
        } else {
            let url = spec.urls.first().ok_or("no Redis URL")?;
            Client::Single(redis::Client::open(url.as_str()).map_err(|e| format!("invalid Redis URL: {e}"))?)
        };
        let inner = Arc::new(Inner {
            local: MemoryStore::new(spec.max_entries, metrics.clone()),
            spec,
            client,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            wake: Notify::new(),
            metrics,
            scripts: Scripts {
                gcra: Script::new(GCRA),
                quota: Script::new(QUOTA),
                distinct: Script::new(DISTINCT),
                incr_window: Script::new(INCR_WINDOW),
            },
            coalesce: Coalescer::default(),
        });
        let (stop, stopped) = oneshot::channel();
        let sup = inner.clone();
        std::thread::Builder::new()
            .name("rampart-redis".into())
            .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(supervise(sup, stopped)),
                Err(e) => tracing::error!(target: "rampart::state", error = %e, "cannot start the Redis runtime"),
            })
            .map_err(|e| format!("cannot start the Redis thread: {e}"))?;
        Ok(RedisStore { inner, _stop: stop })
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    pub fn spec(&self) -> &RedisSpec {
        &self.inner.spec
    }

    /// Runs one call within the timeout; `None` when Redis could not answer (and it is now marked down).
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.inner.call(f).await
    }

    pub(super) fn fallback(&self, mode: FailureMode) -> FailureMode {
        let m = &self.inner.metrics;
        match mode {
            FailureMode::Local => m.fallback_local.inc(),
            FailureMode::Open => m.fallback_open.inc(),
            FailureMode::Closed => m.fallback_closed.inc(),
        };
        mode
    }

    pub(super) fn replicas(&self) -> u32 {
        self.inner.spec.replicas.max(1)
    }

    /// The per-instance state used in `local` mode.
    pub(super) fn local(&self) -> &MemoryStore {
        &self.inner.local
    }
}

pub(super) async fn invoke<T: FromRedisValue>(mut conn: Conn, inv: redis::ScriptInvocation<'_>) -> RedisResult<T> {
    match &mut conn {
        Conn::Single(c) => inv.invoke_async(c).await,
        Conn::Cluster(c) => inv.invoke_async(c).await,
    }
}

pub(super) async fn query<T: FromRedisValue>(mut conn: Conn, cmd: redis::Cmd) -> RedisResult<T> {
    match &mut conn {
        Conn::Single(c) => cmd.query_async(c).await,
        Conn::Cluster(c) => cmd.query_async(c).await,
    }
}

impl Inner {
    /// Runs one call within the timeout; `None` when Redis could not answer (and it is now marked down).
    pub(super) async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.up.load(Ordering::Acquire) {
            return None;
        }
        let conn = self.conn.load_full()?;
        match tokio::time::timeout(self.spec.timeout, f((*conn).clone())).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.degrade(&e.to_string());
                None
            }
            Err(_) => {
                self.degrade("no answer within the timeout");
                None
            }
        }
    }

    /// One [`GCRA`] call charging `n` requests of `c`'s cell.
    pub(super) async fn rate_call(&self, c: &RateCall, n: u32) -> Option<GcraAnswer> {
        let answer: (i64, i64, i64, i64) = self
            .call(|conn| {
                let mut inv = self.scripts.gcra.prepare_invoke();
                inv.key(&c.cell).key(&c.blk).key(&c.off);
                inv.arg(c.interval_us)
                    .arg(c.tolerance_us)
                    .arg(c.cost)
                    .arg(c.after)
                    .arg(c.within_ms)
                    .arg(c.block_ms)
                    .arg(n);
                invoke(conn, inv)
            })
            .await?;
        Some(answer)
    }

    fn degrade(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.conn.store(None);
            self.metrics.redis_up.set(0);
            self.metrics.degraded.inc();
            tracing::error!(target: "rampart::security", event = "state.degraded", backend = "redis", default_on_failure = self.spec.on_failure.as_str(), reason = why, "shared limit state unreachable: routes apply their declared failure mode until Redis answers again");
            self.wake.notify_one();
        }
    }

    async fn connect(&self) -> RedisResult<Conn> {
        let conn = match &self.client {
            Client::Single(c) => {
                let cfg = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(1)));
                Conn::Single(c.get_multiplexed_async_connection_with_config(&cfg).await?)
            }
            Client::Cluster(c) => Conn::Cluster(c.get_async_connection().await?),
        };
        let _: String = query(conn.clone(), redis::cmd("PING")).await?;
        for s in [&self.scripts.gcra, &self.scripts.quota, &self.scripts.distinct, &self.scripts.incr_window] {
            let mut c = conn.clone();
            match &mut c {
                Conn::Single(x) => {
                    s.prepare_invoke().load_async(x).await?;
                }
                Conn::Cluster(_) => {} // loaded per node on first use (NOSCRIPT → LOAD → retry)
            }
        }
        Ok(conn)
    }
}

/// Connects, and reconnects with exponential back-off (50 ms → 2 s, jittered) whenever a call marks Redis down.
async fn supervise(inner: Arc<Inner>, mut stop: oneshot::Receiver<()>) {
    let mut backoff = Duration::from_millis(50);
    let mut ever_up = false;
    loop {
        if inner.up.load(Ordering::Acquire) {
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = &mut stop => return,
            }
            continue;
        }
        let attempt = tokio::time::timeout(Duration::from_secs(2), inner.connect()).await;
        match attempt {
            Ok(Ok(conn)) => {
                inner.conn.store(Some(Arc::new(conn)));
                inner.up.store(true, Ordering::Release);
                inner.metrics.redis_up.set(1);
                backoff = Duration::from_millis(50);
                if ever_up {
                    inner.metrics.recovered.inc();
                    tracing::warn!(target: "rampart::security", event = "state.recovered", backend = "redis", "shared limit state reachable again: limits are cluster-wide again");
                } else {
                    tracing::info!(target: "rampart::state", backend = "redis", "connected to Redis");
                }
                ever_up = true;
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".to_string(),
                };
                tracing::debug!(target: "rampart::state", %error, retry_in = ?backoff, "cannot reach Redis");
                let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 4));
                tokio::select! {
                    _ = tokio::time::sleep(backoff + jitter) => {}
                    _ = &mut stop => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

impl Limits for RedisStore {
    async fn rate(
        &self,
        k: CellKey<'_>,
        gcra: Gcra,
        cost: u32,
        offences: Option<Offences>,
        mode: FailureMode,
    ) -> Result<RateDecision, Unavailable> {
        let inner = &self.inner;
        let answer = if !inner.up.load(Ordering::Acquire) {
            None
        } else {
            let call = || Arc::new(RateCall::new(k, gcra, cost, offences));
            match inner.coalesce.join(k, gcra, cost, offences, call) {
                Join::Lead(fp, call) => {
                    let lead = Lead { inner: inner.clone(), fp, call };
                    let answer = inner.rate_call(&lead.call, 1).await;
                    answer.and_then(|a| lead.call.decision(a, 0))
                    // `lead` drops here: the checks that queued meanwhile get their call.
                }
                Join::Alone(call) => inner.rate_call(&call, 1).await.and_then(|a| call.decision(a, 0)),
                // The queue's call is bounded by the timeout too, but it may start only when the call in flight
                // ends: the wait itself is bounded so that no request waits longer than the timeout.
                Join::Wait(rx) => {
                    tokio::time::timeout(inner.spec.timeout, rx).await.ok().and_then(Result::ok).flatten()
                }
            }
        };
        match answer {
            Some(decision) => {
                if let (RateDecision::Limited { newly_blocked: true, .. }, Some(o)) = (decision, offences) {
                    let expiry = epoch_ms() + ms(o.block_for);
                    let subject = k.subject.to_string();
                    self.call(|conn| {
                        query::<i64>(conn, redis::cmd("ZADD").arg(BLOCK_INDEX).arg(expiry).arg(subject).clone())
                    })
                    .await;
                }
                Ok(decision)
            }
            None => match self.fallback(mode) {
                FailureMode::Local => {
                    Ok(self.inner.local.rate_at(k, gcra.scaled(self.replicas()), cost, offences, now_ns()))
                }
                FailureMode::Open => Ok(RateDecision::Allowed { remaining: 0, reset: Duration::ZERO }),
                FailureMode::Closed => Err(Unavailable),
            },
        }
    }

    async fn quota(
        &self,
        k: CellKey<'_>,
        window_id: u64,
        max: u64,
        cost: u64,
        reset: Duration,
        mode: FailureMode,
    ) -> Result<QuotaDecision, Unavailable> {
        let counter = format!("{}:{window_id}", key("q", k));
        let script = &self.inner.scripts.quota;
        let answer: Option<(i64, i64)> = self
            .call(|conn| {
                let mut inv = script.prepare_invoke();
                inv.key(&counter).arg(cost).arg(max).arg(ms(reset) + 1000);
                invoke(conn, inv)
            })
            .await;
        match answer {
            Some((allowed, remaining)) => {
                Ok(QuotaDecision { allowed: allowed == 1, remaining: remaining.max(0) as u64, reset })
            }
            None => match self.fallback(mode) {
                FailureMode::Local => {
                    let share = (max / u64::from(self.replicas())).max(1);
                    Ok(self.inner.local.quota_at(k, window_id, share, cost, reset, now_ns()))
                }
                FailureMode::Open => Ok(QuotaDecision { allowed: true, remaining: 0, reset }),
                FailureMode::Closed => Err(Unavailable),
            },
        }
    }

    async fn distinct(
        &self,
        k: CellKey<'_>,
        member: &Subject,
        max: u32,
        window: Duration,
        mode: FailureMode,
    ) -> Result<DistinctDecision, Unavailable> {
        let set = key("d", k);
        let script = &self.inner.scripts.distinct;
        let answer: Option<(i64, i64)> = self
            .call(|conn| {
                let mut inv = script.prepare_invoke();
                inv.key(&set).arg(&*member.label()).arg(max).arg(ms(window));
                invoke(conn, inv)
            })
            .await;
        match answer {
            Some((allowed, count)) => Ok(DistinctDecision { allowed: allowed == 1, count: count.max(0) as u32 }),
            None => match self.fallback(mode) {
                FailureMode::Local => {
                    let share = max.div_ceil(self.replicas());
                    Ok(self.inner.local.distinct_at(k, member, share, window, now_ns()))
                }
                FailureMode::Open => Ok(DistinctDecision { allowed: true, count: 0 }),
                FailureMode::Closed => Err(Unavailable),
            },
        }
    }
}

impl Nonces for RedisStore {
    async fn set_if_absent(&self, key: &str, ttl: Duration, mode: FailureMode) -> Result<bool, Unavailable> {
        let k = format!("{PREFIX}n:{key}");
        let answer: Option<Option<String>> = self
            .call(|conn| query(conn, redis::cmd("SET").arg(&k).arg(1).arg("NX").arg("PX").arg(ms(ttl)).clone()))
            .await;
        match answer {
            Some(set) => Ok(set.is_some()),
            None => match self.fallback(mode) {
                FailureMode::Local => Ok(self.inner.local.set_if_absent_at(key, ttl, now_ns())),
                FailureMode::Open => Ok(true),
                FailureMode::Closed => Err(Unavailable),
            },
        }
    }
}

impl Counters for RedisStore {
    async fn incr_window(&self, key: &str, by: u64, window: Duration, mode: FailureMode) -> Result<u64, Unavailable> {
        let k = format!("{PREFIX}c:{key}");
        let script = &self.inner.scripts.incr_window;
        let answer: Option<i64> = self
            .call(|conn| {
                let mut inv = script.prepare_invoke();
                inv.key(&k).arg(by).arg(ms(window));
                invoke(conn, inv)
            })
            .await;
        match answer {
            Some(n) => Ok(n.max(0) as u64),
            None => match self.fallback(mode) {
                FailureMode::Local => Ok(self.inner.local.incr_window_at(key, by, window, now_ns())),
                FailureMode::Open => Ok(0),
                FailureMode::Closed => Err(Unavailable),
            },
        }
    }
}

impl Blocks for RedisStore {
    async fn block(&self, subject: &Subject, ttl: Duration, mode: FailureMode) -> Result<(), Unavailable> {
        let k = block_key(subject);
        let done: Option<String> =
            self.call(|conn| query(conn, redis::cmd("SET").arg(&k).arg(1).arg("PX").arg(ms(ttl)).clone())).await;
        if done.is_some() {
            let expiry = epoch_ms() + ms(ttl);
            let label = subject.to_string();
            self.call(|conn| query::<i64>(conn, redis::cmd("ZADD").arg(BLOCK_INDEX).arg(expiry).arg(label).clone()))
                .await;
            return Ok(());
        }
        match self.fallback(mode) {
            FailureMode::Local => {
                self.inner.local.block(subject, ttl, mode).await?;
                Ok(())
            }
            FailureMode::Open => Ok(()),
            FailureMode::Closed => Err(Unavailable),
        }
    }

    async fn blocked(&self, subject: &Subject, mode: FailureMode) -> Result<Option<Duration>, Unavailable> {
        let k = block_key(subject);
        let answer: Option<i64> = self.call(|conn| query(conn, redis::cmd("PTTL").arg(&k).clone())).await;
        match answer {
            Some(left) if left > 0 => Ok(Some(Duration::from_millis(left as u64))),
            Some(_) => Ok(None),
            None => match self.fallback(mode) {
                FailureMode::Local => self.inner.local.blocked(subject, mode).await,
                FailureMode::Open => Ok(None),
                FailureMode::Closed => Err(Unavailable),
            },
        }
    }

    async fn list_blocks(&self) -> Result<Vec<BlockEntry>, Unavailable> {
        let now = epoch_ms();
        let _ = self
            .call(|conn| {
                query::<i64>(conn, redis::cmd("ZREMRANGEBYSCORE").arg(BLOCK_INDEX).arg("-inf").arg(now).clone())
            })
            .await;
        let members: Vec<String> = self
            .call(|conn| query(conn, redis::cmd("ZRANGE").arg(BLOCK_INDEX).arg(0).arg(-1).clone()))
            .await
            .ok_or(Unavailable)?;
        let mut out = Vec::new();
        for m in members {
            let Some(subject) = Subject::parse(&m) else { continue };
            let k = block_key(&subject);
            let left: i64 =
                self.call(|conn| query(conn, redis::cmd("PTTL").arg(&k).clone())).await.ok_or(Unavailable)?;
            if left > 0 {
                out.push(BlockEntry { subject: m, remaining_ms: left as u64 });
            }
        }
        // Blocks made locally while Redis was away are listed too.
        out.extend(self.inner.local.list_blocks_at(now_ns()));
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out.dedup_by(|a, b| a.subject == b.subject);
        Ok(out)
    }

    async fn unblock(&self, subject: &Subject) -> Result<bool, Unavailable> {
        let k = block_key(subject);
        let label = subject.to_string();
        let removed: i64 = self.call(|conn| query(conn, redis::cmd("DEL").arg(&k).clone())).await.ok_or(Unavailable)?;
        self.call(|conn| query::<i64>(conn, redis::cmd("ZREM").arg(BLOCK_INDEX).arg(label).clone())).await;
        let local = self.inner.local.unblock_now(subject);
        Ok(removed > 0 || local)
    }
}
