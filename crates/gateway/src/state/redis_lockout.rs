//! Brute-force lockout cells in Redis, so every replica counts the same failures. One cell is one hash
//! (`rampart:lo:{<128-bit key hex>}`, hash-tagged so a Redis Cluster runs each script on one node) and every
//! check, failure and success is one atomic Lua script applying exactly the rules of
//! [`LockoutCell`](crate::stages::identify::lockout::LockoutCell): the same fields, the same arithmetic on
//! millisecond timestamps, the same expiry (the cell lives until it carries no information). Time is Redis's own
//! (`TIME`), so replicas with skewed clocks agree on when a lockout ends.
//!
//! A child of `redis_store` so it shares that backend's connection, timeout and "mark down" handling; what the
//! caller does when Redis cannot answer (its failure mode) is decided by the lockout guard, which owns the
//! per-process fallback cells.

use super::{invoke, RedisStore, PREFIX};
use crate::stages::identify::lockout::{LockoutCell, LockoutPolicy, LockoutStatus};
use redis::Script;
use std::sync::LazyLock;
use std::time::Duration;

/// KEYS: the cell. ARGV: op (`status`, `fail`, `ok`), max_failures, window ms, base lockout ms, max lockout ms,
/// strike memory ms, reset_on_success (1/0), now ms (0: Redis `TIME`). Returns {retry_after ms, started (1/0),
/// failures, window_start ms, locked_until ms, strikes} after the operation.
///
/// Numbers are Lua doubles: exact below 2^53, which the caller guarantees by capping durations at 2^50 ms.
/// Values are written with `%.0f` (Lua's default `%.14g` would round 16-digit timestamps).
pub const LOCKOUT_SCRIPT: &str = r"
local now = tonumber(ARGV[8]) or 0
if now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local c = redis.call('HMGET', KEYS[1], 'f', 'ws', 'lu', 's')
local f = tonumber(c[1]) or 0
local ws = tonumber(c[2]) or 0
local lu = tonumber(c[3]) or 0
local s = tonumber(c[4]) or 0
local window = tonumber(ARGV[3])
local memory = tonumber(ARGV[6])
local op = ARGV[1]
local started = 0
local write = false
if op == 'fail' and lu <= now then
  if s > 0 and now >= lu + memory then s = 0 end
  if f == 0 or now - ws >= window then
    f = 0
    ws = now
  end
  f = f + 1
  if f >= tonumber(ARGV[2]) then
    s = s + 1
    local factor = 4294967295
    if s - 1 < 32 then factor = 2 ^ (s - 1) end
    local len = tonumber(ARGV[4]) * factor
    local cap = tonumber(ARGV[5])
    if len > cap then len = cap end
    lu = now + len
    f = 0
    started = 1
  end
  write = true
elseif op == 'ok' and ARGV[7] == '1' then
  f = 0
  s = 0
  write = true
end
if write then
  local forget = lu
  if f > 0 and ws + window > forget then forget = ws + window end
  if s > 0 and lu + memory > forget then forget = lu + memory end
  if forget <= now then
    redis.call('DEL', KEYS[1])
  else
    redis.call('HSET', KEYS[1], 'f', string.format('%.0f', f), 'ws', string.format('%.0f', ws),
      'lu', string.format('%.0f', lu), 's', string.format('%.0f', s))
    redis.call('PEXPIRE', KEYS[1], string.format('%.0f', forget - now))
  end
end
local left = 0
if lu > now then left = lu - now end
return {left, started, f, ws, lu, s}
";

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOCKOUT_SCRIPT));

/// Longest duration sent to the script: keeps every sum of timestamps exact in Lua's doubles (≈ 35 000 years).
const MAX_MS: u64 = 1 << 50;

/// What the script is asked to do to a cell, under which policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutOp<'p> {
    /// Read only.
    Status,
    /// Count a failed authentication.
    Failure(&'p LockoutPolicy),
    /// A successful one (clears the count when the policy says so).
    Success(&'p LockoutPolicy),
}

/// The cell after the script ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutReply {
    pub status: LockoutStatus,
    /// This failure started a lockout.
    pub started: bool,
    /// The cell's fields (`forget_at_ms` is the key's expiry in Redis, not returned).
    pub cell: LockoutCell,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).min(MAX_MS)
}

/// The cell's Redis key for a 128-bit lockout key in hex.
fn cell_key(key_hex: &str) -> String {
    format!("{PREFIX}lo:{{{key_hex}}}")
}

impl RedisStore {
    /// Runs one lockout operation on the cell of `key_hex` within the state timeout. `now_ms` 0 takes Redis's
    /// clock (what the gateway does); a test passes its own to replay a sequence against [`LockoutCell`].
    /// `None`: Redis could not answer (and the backend is now marked down); the caller applies its failure mode.
    pub async fn lockout_at(&self, key_hex: &str, op: LockoutOp<'_>, now_ms: u64) -> Option<LockoutReply> {
        let key = cell_key(key_hex);
        let answer: Option<(i64, i64, i64, i64, i64, i64)> = self
            .call(|conn| {
                let (name, policy) = match op {
                    LockoutOp::Status => ("status", None),
                    LockoutOp::Failure(p) => ("fail", Some(p)),
                    LockoutOp::Success(p) => ("ok", Some(p)),
                };
                let mut inv = SCRIPT.prepare_invoke();
                inv.key(&key).arg(name);
                match policy {
                    Some(p) => inv
                        .arg(p.max_failures)
                        .arg(ms(p.window))
                        .arg(ms(p.base_lockout))
                        .arg(ms(p.max_lockout))
                        .arg(ms(p.strike_memory))
                        .arg(u8::from(p.reset_on_success)),
                    None => inv.arg(1).arg(0).arg(0).arg(0).arg(0).arg(0),
                };
                inv.arg(now_ms);
                invoke(conn, inv)
            })
            .await;
        let (left, started, failures, window_start, locked_until, strikes) = answer?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let status = match n(left) {
            0 => LockoutStatus::Open,
            left => LockoutStatus::Locked { retry_after: Duration::from_millis(left) },
        };
        Some(LockoutReply {
            status,
            started: started == 1,
            cell: LockoutCell {
                failures: u32::try_from(failures).unwrap_or(0),
                window_start_ms: n(window_start),
                locked_until_ms: n(locked_until),
                strikes: u32::try_from(strikes).unwrap_or(0),
                forget_at_ms: 0,
            },
        })
    }

    /// Counts a fallback to `mode` (the state's `fallback_*` metrics) and returns it: the lockout guard applies
    /// the mode itself, with its own per-process cells.
    pub fn lockout_fallback(&self, mode: super::FailureMode) -> super::FailureMode {
        self.fallback(mode)
    }
}
