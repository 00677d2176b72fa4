//! A request's limits decided together on Redis: all charged or none (see [`super::batch`]).
//!
//! Every key of a limit carries its subject as the Redis Cluster hash tag (`rampart:rl:{ip:…}:scope`,
//! `rampart:blk:{ip:…}`), so the limits of one request on **one subject** live in one slot, and one Lua script
//! ([`MULTI`]) checks all of them and then commits all of them, atomically.
//!
//! Limits on **different subjects** (`ip` and `global`, `consumer` and `header:X-Tenant`) cannot share a slot:
//! the tag must stay the subject so that every route and every replica counting that subject meets in the same
//! cell (hash-tagging them per request or per route instead would split one subject's cell in many). So:
//! - on a single Redis node, where scripts may touch any key, all the request's limits go to one script whatever
//!   their subjects — exact, no intermediate state;
//! - on a Redis Cluster, the limits are grouped by subject; the groups run one after the other, each atomic, and
//!   when a group refuses, the groups already committed are given back exactly by a compensating script
//!   ([`REFUND`]: the GCRA arrival time moved back by `cost × interval`, the quota counter decremented by `cost`,
//!   a distinct member this request added removed). Between the commit and the refund a concurrent request may
//!   see those cells fuller by one request — it can be refused where it would have passed, never let through
//!   where it should not — and nothing stays charged afterwards. If Redis stops answering in between, the
//!   refund is lost with it and the route's failure mode decides the request.

use super::batch::{Answer, Batch, Check, INLINE};
use super::memory::now_ns;
use super::redis_store::{block_key, epoch_ms, invoke, key, ms, query, RedisStore, BLOCK_INDEX};
use super::{DistinctDecision, FailureMode, QuotaDecision, RateDecision, Subject, Unavailable};
use redis::Script;
use smallvec::SmallVec;
use std::sync::LazyLock;
use std::time::Duration;

/// KEYS per check: rate → cell, block, offences; quota → counter; distinct → set. ARGV[1] = number of checks,
/// then per check its kind and arguments: `r` interval µs, tolerance µs, cost, offences-before-block (0 = never),
/// offence window ms, block ms; `q` cost, max, ttl ms; `d` member, max, window ms.
/// Every check is evaluated in order against the stored values plus this script's pending charges (two checks
/// on one cell add up); the first refusal returns `{state, index (1-based), a, b}` with nothing written but its
/// offence count — state 0 rate limited (a = retry µs, b = newly blocked), 2 blocked (a = block left µs), 3 quota
/// refused (a = remaining), 4 distinct refused (a = count). When all pass, every charge is written and
/// `{1, a1, b1, a2, b2, …}` returned — rate: remaining, reset µs; quota: remaining, 0; distinct: count, added.
const MULTI_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local k, a = 1, 2
local pending, writes, out = {}, {}, {1}
for i = 1, n do
  local kind = ARGV[a]
  if kind == 'r' then
    local cell, blk, off = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    local interval, tol, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local after = tonumber(ARGV[a + 4])
    local bl = redis.call('PTTL', blk)
    if bl > 0 then return {2, i, bl * 1000, 0} end
    local tat = pending[cell] or tonumber(redis.call('GET', cell) or '0') or 0
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    local allow_at = new_tat - tol - interval
    if allow_at > now then
      local blocked = 0
      if after > 0 then
        local c = redis.call('INCR', off)
        if c == 1 then redis.call('PEXPIRE', off, ARGV[a + 5]) end
        if c >= after then
          redis.call('SET', blk, '1', 'PX', ARGV[a + 6])
          redis.call('DEL', off)
          blocked = 1
        end
      end
      return {0, i, allow_at - now, blocked}
    end
    pending[cell] = new_tat
    writes[#writes + 1] = {'r', cell, new_tat}
    out[#out + 1] = math.floor((now - allow_at) / interval)
    out[#out + 1] = new_tat - now
    k, a = k + 3, a + 7
  elseif kind == 'q' then
    local key = KEYS[k]
    local cost, max = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local used = pending[key] or tonumber(redis.call('GET', key) or '0') or 0
    if used + cost > max then return {3, i, max - used, 0} end
    pending[key] = used + cost
    writes[#writes + 1] = {'q', key, cost, ARGV[a + 3]}
    out[#out + 1] = max - used - cost
    out[#out + 1] = 0
    k, a = k + 1, a + 4
  else
    local key, member, max = KEYS[k], ARGV[a + 1], tonumber(ARGV[a + 2])
    local count = pending[key] or redis.call('SCARD', key)
    if pending[key .. '\0' .. member] or redis.call('SISMEMBER', key, member) == 1 then
      out[#out + 1] = count
      out[#out + 1] = 0
    else
      if count >= max then return {4, i, count, 0} end
      pending[key] = count + 1
      pending[key .. '\0' .. member] = true
      writes[#writes + 1] = {'d', key, member, ARGV[a + 3]}
      out[#out + 1] = count + 1
      out[#out + 1] = 1
    end
    k, a = k + 1, a + 4
  end
end
for _, w in ipairs(writes) do
  if w[1] == 'r' then
    redis.call('SET', w[2], string.format('%.0f', w[3]), 'PX', math.floor((w[3] - now) / 1000) + 1)
  elseif w[1] == 'q' then
    if redis.call('INCRBY', w[2], w[3]) == w[3] then redis.call('PEXPIRE', w[2], w[4]) end
  else
    if redis.call('SADD', w[2], w[3]) == 1 and redis.call('SCARD', w[2]) == 1 then
      redis.call('PEXPIRE', w[2], w[4])
    end
  end
end
return out
";

/// Gives back what [`MULTI`] charged. KEYS: one per charge. ARGV: per charge its kind and amount — `r` µs to
/// move the arrival time back (cost × interval), `q` units to take off the counter, `d` the member to remove.
const REFUND_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local kind, v = ARGV[2 * i - 1], ARGV[2 * i]
  if kind == 'r' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or '')
    if tat then
      tat = tat - tonumber(v)
      if tat <= now then
        redis.call('DEL', KEYS[i])
      else
        redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1)
      end
    end
  elseif kind == 'q' then
    local used = tonumber(redis.call('GET', KEYS[i]) or '')
    if used then
      if used <= tonumber(v) then redis.call('DEL', KEYS[i]) else redis.call('DECRBY', KEYS[i], v) end
    end
  else
    redis.call('SREM', KEYS[i], v)
  end
end
return 1
";

static MULTI: LazyLock<Script> = LazyLock::new(|| Script::new(MULTI_LUA));
static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(REFUND_LUA));

/// The keys and arguments of [`REFUND`] for one committed group.
#[derive(Default)]
struct Refund {
    keys: Vec<String>,
    args: Vec<String>,
}

enum GroupAnswer {
    /// Every check of the group passed: its answers, and what to give back if a later group refuses.
    Passed(SmallVec<[Answer; INLINE]>, Refund),
    /// `group[at]` refused.
    Refused { at: usize, answer: Answer },
}

fn us(v: i64) -> Duration {
    Duration::from_micros(v.max(0) as u64)
}

impl RedisStore {
    /// Every check of one request, all charged or none.
    pub(super) async fn check_all(
        &self,
        checks: &[Check<'_>],
        cost: u32,
        mode: FailureMode,
    ) -> Result<Batch, Unavailable> {
        let mut answers: SmallVec<[Option<Answer>; INLINE]> = SmallVec::from_elem(None, checks.len());
        let mut committed: SmallVec<[Refund; 2]> = SmallVec::new();
        for group in groups(checks, self.spec().cluster) {
            match self.run_group(checks, &group, cost).await {
                Some(GroupAnswer::Passed(items, refund)) => {
                    for (&i, a) in group.iter().zip(items) {
                        answers[i] = Some(a);
                    }
                    committed.push(refund);
                }
                Some(GroupAnswer::Refused { at, answer }) => {
                    self.refund(committed).await;
                    let index = group[at];
                    if let Answer::Rate(RateDecision::Limited { newly_blocked: true, .. }) = answer {
                        if let Check::Rate { key, offences: Some(o), .. } = checks[index] {
                            self.index_block(key.subject, o.block_for).await;
                        }
                    }
                    return Ok(Batch::Refused { index, answer });
                }
                None => {
                    self.refund(committed).await;
                    return self.batch_fallback(checks, cost, mode);
                }
            }
        }
        let mut out = SmallVec::new();
        for (a, c) in answers.into_iter().zip(checks) {
            out.push(a.unwrap_or_else(|| c.open_answer()));
        }
        Ok(Batch::Passed(out))
    }

    fn batch_fallback(&self, checks: &[Check<'_>], cost: u32, mode: FailureMode) -> Result<Batch, Unavailable> {
        match self.fallback(mode) {
            FailureMode::Local => {
                let scaled: SmallVec<[Check<'_>; INLINE]> = checks.iter().map(|c| c.scaled(self.replicas())).collect();
                Ok(self.local().check_all_at(&scaled, cost, now_ns()))
            }
            FailureMode::Open => Ok(Batch::Passed(checks.iter().map(|c| c.open_answer()).collect())),
            FailureMode::Closed => Err(Unavailable),
        }
    }

    /// One [`MULTI`] call over `group` (indices into `checks`); `None` when Redis did not answer.
    async fn run_group(&self, checks: &[Check<'_>], group: &[usize], cost: u32) -> Option<GroupAnswer> {
        let mut keys: SmallVec<[String; 8]> = SmallVec::new();
        let mut args: SmallVec<[String; 16]> = SmallVec::new();
        args.push(group.len().to_string());
        let mut refund = Refund::default();
        for &i in group {
            match checks[i] {
                Check::Rate { key: k, gcra, offences } => {
                    keys.push(key("rl", k));
                    keys.push(block_key(k.subject));
                    keys.push(key("off", k));
                    let o = offences.map_or((0, 1, 1), |o| (o.after, ms(o.within), ms(o.block_for)));
                    let interval = (gcra.interval_ns / 1000).max(1);
                    args.extend([
                        "r".to_string(),
                        interval.to_string(),
                        (gcra.tolerance_ns / 1000).to_string(),
                        cost.to_string(),
                        o.0.to_string(),
                        o.1.to_string(),
                        o.2.to_string(),
                    ]);
                    refund.keys.push(key("rl", k));
                    refund.args.extend(["r".to_string(), (interval * u64::from(cost)).to_string()]);
                }
                Check::Quota { key: k, window_id, max, reset } => {
                    let counter = format!("{}:{window_id}", key("q", k));
                    keys.push(counter.clone());
                    args.extend(["q".to_string(), cost.to_string(), max.to_string(), (ms(reset) + 1000).to_string()]);
                    refund.keys.push(counter);
                    refund.args.extend(["q".to_string(), cost.to_string()]);
                }
                Check::Distinct { key: k, member, max, window } => {
                    keys.push(key("d", k));
                    let member = member.label().to_string();
                    args.extend(["d".to_string(), member, max.to_string(), ms(window).to_string()]);
                    // Given back only if this request added the member (known from the answer).
                }
            }
        }
        let v: Vec<i64> = self
            .call(|conn| {
                let mut inv = MULTI.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                for a in &args {
                    inv.arg(a);
                }
                invoke(conn, inv)
            })
            .await?;
        let (&state, rest) = v.split_first()?;
        if state == 1 {
            let mut items = SmallVec::new();
            for (j, &i) in group.iter().enumerate() {
                let (a, b) = (rest.get(2 * j).copied()?, rest.get(2 * j + 1).copied()?);
                items.push(match checks[i] {
                    Check::Rate { .. } => {
                        Answer::Rate(RateDecision::Allowed { remaining: a.max(0) as u64, reset: us(b) })
                    }
                    Check::Quota { reset, .. } => {
                        Answer::Quota(QuotaDecision { allowed: true, remaining: a.max(0) as u64, reset })
                    }
                    Check::Distinct { key: k, member, .. } => {
                        if b == 1 {
                            refund.keys.push(key("d", k));
                            refund.args.extend(["d".to_string(), member.label().to_string()]);
                        }
                        Answer::Distinct(DistinctDecision { allowed: true, count: a.max(0) as u32 })
                    }
                });
            }
            return Some(GroupAnswer::Passed(items, refund));
        }
        let (&at, rest) = rest.split_first()?;
        let at = usize::try_from(at).ok()?.checked_sub(1).filter(|&at| at < group.len())?;
        let (a, b) = (rest.first().copied().unwrap_or(0), rest.get(1).copied().unwrap_or(0));
        let answer = match (state, checks[group[at]]) {
            (2, _) => Answer::Rate(RateDecision::Blocked { remaining: us(a) }),
            (3, Check::Quota { reset, .. }) => {
                Answer::Quota(QuotaDecision { allowed: false, remaining: a.max(0) as u64, reset })
            }
            (4, _) => Answer::Distinct(DistinctDecision { allowed: false, count: a.max(0) as u32 }),
            _ => Answer::Rate(RateDecision::Limited { retry_after: us(a), newly_blocked: b == 1 }),
        };
        Some(GroupAnswer::Refused { at, answer })
    }

    /// Gives back what committed groups charged (best effort: a Redis that stopped answering keeps them).
    async fn refund(&self, committed: SmallVec<[Refund; 2]>) {
        for r in committed {
            if r.keys.is_empty() {
                continue;
            }
            let done: Option<i64> = self
                .call(|conn| {
                    let mut inv = REFUND.prepare_invoke();
                    for k in &r.keys {
                        inv.key(k);
                    }
                    for a in &r.args {
                        inv.arg(a);
                    }
                    invoke(conn, inv)
                })
                .await;
            if done.is_none() {
                tracing::warn!(target: "rampart::state", keys = r.keys.len(), "could not give back the limits a refused request charged: Redis did not answer");
            }
        }
    }

    /// Lists a block the script just set, for the admin API.
    async fn index_block(&self, subject: &Subject, block_for: Duration) {
        let expiry = epoch_ms() + ms(block_for);
        let label = subject.label().to_string();
        self.call(|conn| query::<i64>(conn, redis::cmd("ZADD").arg(BLOCK_INDEX).arg(expiry).arg(label).clone())).await;
    }
}

/// The checks that one script may run together: all of them on a single node; per subject (one hash tag, one
/// slot) on a cluster. In first-appearance order.
fn groups(checks: &[Check<'_>], cluster: bool) -> SmallVec<[SmallVec<[usize; INLINE]>; 2]> {
    let mut out: SmallVec<[SmallVec<[usize; INLINE]>; 2]> = SmallVec::new();
    if !cluster {
        out.push((0..checks.len()).collect());
        return out;
    }
    for (i, c) in checks.iter().enumerate() {
        let subject = c.key().subject;
        match out.iter_mut().find(|g| checks[g[0]].key().subject == subject) {
            Some(g) => g.push(i),
            None => out.push(std::iter::once(i).collect()),
        }
    }
    out
}
