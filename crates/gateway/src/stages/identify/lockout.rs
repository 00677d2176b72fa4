//! Brute-force protection: failed authentications are counted per client IP and per presented credential (API key
//! id, token subject, or the username field of a declared login route). `max_failures` failures within `window`
//! lock the IP or credential out; each lockout that follows soon after the previous one lasts twice as long, up to
//! `max_lockout`. A locked-out request is answered 429 with `Retry-After` *before* its credentials are checked,
//! so a locked-out attacker learns nothing from further guesses.
//!
//! Two counters because two attacks: one IP trying many passwords (caught per IP), and many IPs trying one
//! account (caught per credential). A success resets the credential's counter (its owner got in) but not the
//! IP's, so an attacker cannot clear their IP's count by interleaving logins to an account of their own.
//!
//! The state machine ([`LockoutCell`]) is pure arithmetic on millisecond timestamps, so the in-memory store here
//! and the Redis script (`state::redis_store::lockout`) apply exactly the same rules; the clock is injected.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use http::StatusCode;

use super::clock::Clock;

/// The stable code of a lockout rejection.
pub const LOCKOUT_CODE: &str = "auth.lockout";
/// Its status: 429, with `Retry-After`.
pub const LOCKOUT_STATUS: StatusCode = StatusCode::TOO_MANY_REQUESTS;

/// How many failures lock a key out, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that trigger a lockout.
    pub max_failures: u32,
    /// The counting window, starting at the first failure.
    pub window: Duration,
    /// The first lockout's length; each repeat doubles it.
    pub base_lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
    /// How long after a lockout ends a new one still counts as a repeat (and doubles).
    pub strike_memory: Duration,
    /// Whether a successful authentication clears the count (yes for credentials, no for IPs).
    pub reset_on_success: bool,
}

impl LockoutPolicy {
    /// Per IP: generous, since NAT puts many honest users behind one address.
    pub fn per_ip() -> Self {
        LockoutPolicy {
            max_failures: 20,
            window: Duration::from_secs(300),
            base_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
            strike_memory: Duration::from_secs(3600),
            reset_on_success: false,
        }
    }

    /// Per credential: strict, since one account sees few honest failures.
    pub fn per_credential() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window: Duration::from_secs(900),
            base_lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
            strike_memory: Duration::from_secs(86_400),
            reset_on_success: true,
        }
    }

    /// Checked at config load.
    pub fn validate(&self) -> Result<(), LockoutConfigError> {
        if self.max_failures == 0 {
            return Err(LockoutConfigError("max_failures must be at least 1".into()));
        }
        if self.window.is_zero() || self.base_lockout.is_zero() {
            return Err(LockoutConfigError("window and lockout must be longer than zero".into()));
        }
        if self.max_lockout < self.base_lockout {
            return Err(LockoutConfigError("max_lockout must not be shorter than the base lockout".into()));
        }
        Ok(())
    }

    /// The policy one of `replicas` instances applies on its own while the shared state is unreachable: the
    /// failures allowed are split between them (rounded up), so together they still allow about `max_failures`.
    pub fn scaled(&self, replicas: u32) -> LockoutPolicy {
        LockoutPolicy { max_failures: self.max_failures.div_ceil(replicas.max(1)).max(1), ..self.clone() }
    }

    /// The length of the `strike`-th consecutive lockout (1-based): base · 2^(strike−1), capped.
    pub fn lockout_for(&self, strike: u32) -> Duration {
        let factor = 1u32.checked_shl(strike.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_lockout.saturating_mul(factor).min(self.max_lockout)
    }
}

/// A lockout policy that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lockout: {0}")]
pub struct LockoutConfigError(pub String);

/// Whether a key may try to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutStatus {
    Open,
    Locked { retry_after: Duration },
}

impl LockoutStatus {
    /// The `Retry-After` value: whole seconds, rounded up, at least 1; `None` when open.
    pub fn retry_after_secs(self) -> Option<u64> {
        match self {
            LockoutStatus::Open => None,
            LockoutStatus::Locked { retry_after } => Some(retry_after.as_millis().div_ceil(1000).max(1) as u64),
        }
    }

    pub fn is_locked(self) -> bool {
        matches!(self, LockoutStatus::Locked { .. })
    }

    /// The more restrictive of two answers (the longer wait).
    pub fn max(self, other: LockoutStatus) -> LockoutStatus {
        match (self, other) {
            (LockoutStatus::Open, o) | (o, LockoutStatus::Open) => o,
            (LockoutStatus::Locked { retry_after: a }, LockoutStatus::Locked { retry_after: b }) => {
                LockoutStatus::Locked { retry_after: a.max(b) }
            }
        }
    }
}

/// The counting state of one key. Pure: every transition takes the time as an argument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockoutCell {
    pub failures: u32,
    pub window_start_ms: u64,
    /// End of the current or last lockout (0: never locked).
    pub locked_until_ms: u64,
    /// Consecutive lockouts (reset once `strike_memory` passes without one).
    pub strikes: u32,
    /// After this the cell carries no information and may be dropped.
    pub forget_at_ms: u64,
}

impl LockoutCell {
    pub fn status(&self, now_ms: u64) -> LockoutStatus {
        if self.locked_until_ms > now_ms {
            LockoutStatus::Locked { retry_after: Duration::from_millis(self.locked_until_ms - now_ms) }
        } else {
            LockoutStatus::Open
        }
    }

    /// Counts one failure. Returns the status after it, and whether this failure started a lockout.
    pub fn on_failure(&mut self, policy: &LockoutPolicy, now_ms: u64) -> (LockoutStatus, bool) {
        let status = self.status(now_ms);
        if status.is_locked() {
            // Credentials are not even checked while locked; a failure reported anyway does not extend the lock.
            return (status, false);
        }
        let window = ms(policy.window);
        if self.strikes > 0 && now_ms >= self.locked_until_ms.saturating_add(ms(policy.strike_memory)) {
            self.strikes = 0;
        }
        if self.failures == 0 || now_ms.saturating_sub(self.window_start_ms) >= window {
            self.failures = 0;
            self.window_start_ms = now_ms;
        }
        self.failures += 1;
        let mut started = false;
        if self.failures >= policy.max_failures {
            self.strikes = self.strikes.saturating_add(1);
            self.locked_until_ms = now_ms.saturating_add(ms(policy.lockout_for(self.strikes)));
            self.failures = 0;
            started = true;
        }
        self.forget_at_ms = self.forget_at(policy);
        (self.status(now_ms), started)
    }

    pub fn on_success(&mut self, policy: &LockoutPolicy) {
        if policy.reset_on_success {
            self.failures = 0;
            self.strikes = 0;
            self.forget_at_ms = self.forget_at(policy);
        }
    }

    fn forget_at(&self, policy: &LockoutPolicy) -> u64 {
        let counting = if self.failures > 0 { self.window_start_ms.saturating_add(ms(policy.window)) } else { 0 };
        let striking = if self.strikes > 0 { self.locked_until_ms.saturating_add(ms(policy.strike_memory)) } else { 0 };
        counting.max(striking).max(self.locked_until_ms)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What kind of credential a failure was made with; part of the key so a key id and a username never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    ApiKeyId,
    TokenSubject,
    SignatureKeyId,
    /// The username field of a declared login route; compared case-insensitively, since logins usually are.
    Username,
}

impl CredentialKind {
    fn tag(self) -> &'static [u8] {
        match self {
            CredentialKind::ApiKeyId => b"api_key",
            CredentialKind::TokenSubject => b"sub",
            CredentialKind::SignatureKeyId => b"sig_key",
            CredentialKind::Username => b"user",
        }
    }
}

/// Which counter a lockout came from: for the security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutScope {
    Ip,
    Credential,
}

/// A counter's key: 128 bits of SHA-256 over the kind and the value. Fixed-size (no allocation per request), the
/// same on every replica (a Redis key), and usernames never sit in the store in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockoutKey([u8; 16]);

impl LockoutKey {
    /// The key of a client address. IPv6 clients are counted per prefix (`ipv6_prefix` bits, usually 64): one host
    /// usually owns a whole /64 and could otherwise rotate addresses between guesses.
    pub fn ip(ip: IpAddr, ipv6_prefix: u8) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => Self::hash(&[b"ip4", &v4.octets()]),
            IpAddr::V6(v6) => {
                let prefix = u32::from(ipv6_prefix.min(128));
                let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
                let masked = u128::from(v6) & mask;
                Self::hash(&[b"ip6", &masked.to_be_bytes(), &[ipv6_prefix]])
            }
        }
    }

    pub fn credential(kind: CredentialKind, id: &str) -> Self {
        match kind {
            CredentialKind::Username => {
                let folded = id.trim().to_lowercase();
                Self::hash(&[kind.tag(), folded.as_bytes()])
            }
            _ => Self::hash(&[kind.tag(), id.as_bytes()]),
        }
    }

    fn hash(parts: &[&[u8]]) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for p in parts {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        let d = ctx.finish();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d.as_ref()[..16]);
        LockoutKey(out)
    }

    /// Hex, for a Redis key.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The store could not answer. The caller decides: the guard's callers fail closed by default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lockout store unavailable: {0}")]
pub struct LockoutStoreError(pub String);

/// A boxed future so the store can sit behind `dyn` and a Redis backend can await its round-trip.
pub type LockoutFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LockoutStoreError>> + Send + 'a>>;

/// Where lockout cells live: process memory, or Redis so all replicas count together.
pub trait LockoutStore: Send + Sync {
    fn status(&self, key: LockoutKey) -> LockoutFuture<'_, LockoutStatus>;
    /// Counts a failure atomically; returns the new status and whether it started a lockout.
    fn record_failure<'a>(
        &'a self,
        key: LockoutKey,
        policy: &'a LockoutPolicy,
    ) -> LockoutFuture<'a, (LockoutStatus, bool)>;
    fn record_success<'a>(&'a self, key: LockoutKey, policy: &'a LockoutPolicy) -> LockoutFuture<'a, ()>;
}

const SHARDS: usize = 16;

/// In-memory lockout cells: sharded, bounded. Cells that carry no information any more are dropped when a shard
/// fills; if a shard is full of live cells the one to be forgotten first is evicted and counted (an attacker
/// spraying from many addresses then loses state before honest clients do).
#[derive(Debug)]
pub struct MemoryLockoutStore {
    shards: Box<[Mutex<HashMap<LockoutKey, LockoutCell>>]>,
    hasher: RandomState,
    per_shard: usize,
    clock: Arc<dyn Clock>,
    evictions: AtomicU64,
}

impl MemoryLockoutStore {
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        MemoryLockoutStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            per_shard,
            clock,
            evictions: AtomicU64::new(0),
        }
    }

    /// Live cells evicted because a shard was full, since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &LockoutKey) -> std::sync::MutexGuard<'_, HashMap<LockoutKey, LockoutCell>> {
        let idx = (self.hasher.hash_one(key) as usize) % self.shards.len();
        // A poisoned lock means a panic elsewhere; the map itself is intact (each update is one insert).
        match self.shards[idx].lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn status_now(&self, key: LockoutKey) -> LockoutStatus {
        let now = self.clock.now_ms();
        self.shard(&key).get(&key).map_or(LockoutStatus::Open, |c| c.status(now))
    }

    pub fn record_failure_now(&self, key: LockoutKey, policy: &LockoutPolicy) -> (LockoutStatus, bool) {
        let now = self.clock.now_ms();
        let mut shard = self.shard(&key);
        if !shard.contains_key(&key) && shard.len() >= self.per_shard {
            shard.retain(|_, c| c.forget_at_ms > now);
            if shard.len() >= self.per_shard {
                // Evict a batch (1/16 of the shard) of the soonest-forgotten cells, so that a flood of new keys
                // pays this O(n) pass once per batch rather than once per request.
                let batch = (self.per_shard / 16).max(1);
                let mut order: Vec<(u64, LockoutKey)> = shard.iter().map(|(k, c)| (c.forget_at_ms, *k)).collect();
                order.select_nth_unstable(batch - 1);
                for (_, victim) in &order[..batch] {
                    shard.remove(victim);
                }
                self.evictions.fetch_add(batch as u64, Ordering::Relaxed);
            }
        }
        shard.entry(key).or_default().on_failure(policy, now)
    }

    pub fn record_success_now(&self, key: LockoutKey, policy: &LockoutPolicy) {
        let mut shard = self.shard(&key);
        if let Some(cell) = shard.get_mut(&key) {
            cell.on_success(policy);
            if policy.reset_on_success && cell.forget_at_ms <= self.clock.now_ms() {
                shard.remove(&key);
            }
        }
    }
}

impl LockoutStore for MemoryLockoutStore {
    fn status(&self, key: LockoutKey) -> LockoutFuture<'_, LockoutStatus> {
        Box::pin(std::future::ready(Ok(self.status_now(key))))
    }

    fn record_failure<'a>(
        &'a self,
        key: LockoutKey,
        policy: &'a LockoutPolicy,
    ) -> LockoutFuture<'a, (LockoutStatus, bool)> {
        Box::pin(std::future::ready(Ok(self.record_failure_now(key, policy))))
    }

    fn record_success<'a>(&'a self, key: LockoutKey, policy: &'a LockoutPolicy) -> LockoutFuture<'a, ()> {
        self.record_success_now(key, policy);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Lockout as config states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutSettings {
    pub ip: LockoutPolicy,
    pub credential: LockoutPolicy,
    /// IPv6 clients are counted per this prefix length.
    pub ipv6_prefix: u8,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        LockoutSettings { ip: LockoutPolicy::per_ip(), credential: LockoutPolicy::per_credential(), ipv6_prefix: 64 }
    }
}

/// One authentication attempt as the guard sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub ip: IpAddr,
    /// The credential presented, when one could be read (a key id, a token's subject, a login's username).
    pub credential: Option<(CredentialKind, &'a str)>,
}

/// The outcome of a counted failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    pub status: LockoutStatus,
    /// Set when this failure started a lockout: record a security event.
    pub started: Option<LockoutScope>,
}

/// The identify stage's brute-force guard: ask [`Self::check`] before verifying credentials, then report the
/// result with [`Self::failed`] or [`Self::succeeded`]. The store is passed per call: the configured state backend
/// (memory or Redis) can change on reload while the policies stay.
#[derive(Debug, Clone)]
pub struct BruteForceGuard {
    settings: LockoutSettings,
}

impl BruteForceGuard {
    pub fn new(settings: LockoutSettings) -> Result<Self, LockoutConfigError> {
        settings.ip.validate()?;
        settings.credential.validate()?;
        if settings.ipv6_prefix > 128 {
            return Err(LockoutConfigError("ipv6_prefix must be 0..=128".into()));
        }
        Ok(BruteForceGuard { settings })
    }

    fn keys(&self, attempt: &Attempt<'_>) -> (LockoutKey, Option<LockoutKey>) {
        (
            LockoutKey::ip(attempt.ip, self.settings.ipv6_prefix),
            attempt.credential.map(|(kind, id)| LockoutKey::credential(kind, id)),
        )
    }

    /// Whether the attempt may proceed: locked if its IP or its credential is (the longer wait wins).
    pub async fn check(
        &self,
        store: &dyn LockoutStore,
        attempt: &Attempt<'_>,
    ) -> Result<LockoutStatus, LockoutStoreError> {
        let (ip, cred) = self.keys(attempt);
        let mut status = store.status(ip).await?;
        if let Some(cred) = cred {
            status = status.max(store.status(cred).await?);
        }
        Ok(status)
    }

    /// Counts a failed authentication against the IP and the credential.
    pub async fn failed(
        &self,
        store: &dyn LockoutStore,
        attempt: &Attempt<'_>,
    ) -> Result<FailureOutcome, LockoutStoreError> {
        let (ip, cred) = self.keys(attempt);
        let (mut status, ip_started) = store.record_failure(ip, &self.settings.ip).await?;
        let mut started = ip_started.then_some(LockoutScope::Ip);
        if let Some(cred) = cred {
            let (cred_status, cred_started) = store.record_failure(cred, &self.settings.credential).await?;
            status = status.max(cred_status);
            if cred_started {
                started = Some(LockoutScope::Credential);
            }
        }
        Ok(FailureOutcome { status, started })
    }

    /// Reports a successful authentication (clears what the policies say success clears).
    pub async fn succeeded(&self, store: &dyn LockoutStore, attempt: &Attempt<'_>) -> Result<(), LockoutStoreError> {
        let (ip, cred) = self.keys(attempt);
        store.record_success(ip, &self.settings.ip).await?;
        if let Some(cred) = cred {
            store.record_success(cred, &self.settings.credential).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::identify::clock::ManualClock;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn policy(max_failures: u32) -> LockoutPolicy {
        LockoutPolicy {
            max_failures,
            window: Duration::from_secs(60),
            base_lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(80),
            strike_memory: Duration::from_secs(600),
            reset_on_success: true,
        }
    }

    #[test]
    fn n_failures_within_the_window_lock_out() {
        let p = policy(3);
        let mut c = LockoutCell::default();
        assert_eq!(c.on_failure(&p, 1_000), (LockoutStatus::Open, false));
        assert_eq!(c.on_failure(&p, 2_000), (LockoutStatus::Open, false));
        let (status, started) = c.on_failure(&p, 3_000);
        assert!(started);
        assert_eq!(status, LockoutStatus::Locked { retry_after: Duration::from_secs(10) });
        assert_eq!(status.retry_after_secs(), Some(10));
        assert_eq!(c.status(12_999).retry_after_secs(), Some(1), "rounded up, never 0");
        assert_eq!(c.status(13_000), LockoutStatus::Open);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock_out() {
        let p = policy(3);
        let mut c = LockoutCell::default();
        for i in 0..10u64 {
            // Two failures per minute, each pair in a fresh window.
            assert_eq!(c.on_failure(&p, i * 61_000).0, LockoutStatus::Open);
            assert_eq!(c.on_failure(&p, i * 61_000 + 1).0, LockoutStatus::Open);
        }
    }

    #[test]
    fn repeat_lockouts_double_up_to_the_cap_and_are_forgotten_later() {
        let p = policy(2);
        let mut c = LockoutCell::default();
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..6 {
            c.on_failure(&p, now);
            let (status, started) = c.on_failure(&p, now + 1);
            assert!(started);
            lengths.push(status.retry_after_secs().unwrap());
            now = c.locked_until_ms; // retry right when the lock ends
        }
        assert_eq!(lengths, [10, 20, 40, 80, 80, 80]);
        // After strike_memory without a lockout, the next one starts from the base again.
        now += 600_000;
        c.on_failure(&p, now);
        assert_eq!(c.on_failure(&p, now + 1).0.retry_after_secs(), Some(10));
    }

    #[test]
    fn failures_while_locked_neither_count_nor_extend() {
        let p = policy(2);
        let mut c = LockoutCell::default();
        c.on_failure(&p, 0);
        c.on_failure(&p, 1);
        let until = c.locked_until_ms;
        for t in 2..100 {
            assert!(!c.on_failure(&p, t).1);
        }
        assert_eq!(c.locked_until_ms, until);
        assert_eq!(c.strikes, 1);
    }

    #[test]
    fn success_resets_only_where_the_policy_says() {
        let mut p = policy(3);
        let mut c = LockoutCell::default();
        c.on_failure(&p, 0);
        c.on_failure(&p, 1);
        c.on_success(&p);
        assert_eq!(c.on_failure(&p, 2).0, LockoutStatus::Open, "count restarted");
        p.reset_on_success = false;
        let mut c = LockoutCell::default();
        c.on_failure(&p, 0);
        c.on_failure(&p, 1);
        c.on_success(&p);
        assert!(c.on_failure(&p, 2).0.is_locked(), "an IP's count survives a success");
    }

    #[test]
    fn lockout_lengths_saturate_instead_of_overflowing() {
        let p = LockoutPolicy { max_lockout: Duration::MAX, ..policy(1) };
        assert_eq!(p.lockout_for(1), Duration::from_secs(10));
        assert_eq!(p.lockout_for(3), Duration::from_secs(40));
        assert!(p.lockout_for(u32::MAX) >= Duration::from_secs(10 * u64::from(u32::MAX)));
    }

    #[test]
    fn policies_are_validated() {
        assert!(LockoutPolicy { max_failures: 0, ..policy(1) }.validate().is_err());
        assert!(LockoutPolicy { window: Duration::ZERO, ..policy(1) }.validate().is_err());
        assert!(LockoutPolicy { max_lockout: Duration::from_secs(1), ..policy(1) }.validate().is_err());
        assert!(policy(1).validate().is_ok());
        let bad = LockoutSettings { ipv6_prefix: 129, ..LockoutSettings::default() };
        assert!(BruteForceGuard::new(bad).is_err());
        let p = policy(5);
        assert_eq!(p.scaled(2).max_failures, 3, "rounded up");
        assert_eq!(p.scaled(10).max_failures, 1, "never zero");
        assert_eq!(p.scaled(0), p);
    }

    #[test]
    fn keys_separate_kinds_fold_usernames_and_group_ipv6_prefixes() {
        assert_ne!(
            LockoutKey::credential(CredentialKind::ApiKeyId, "alice"),
            LockoutKey::credential(CredentialKind::Username, "alice")
        );
        assert_eq!(
            LockoutKey::credential(CredentialKind::Username, " Alice "),
            LockoutKey::credential(CredentialKind::Username, "alice")
        );
        assert_ne!(
            LockoutKey::credential(CredentialKind::TokenSubject, "Alice"),
            LockoutKey::credential(CredentialKind::TokenSubject, "alice"),
            "subjects are exact"
        );
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(LockoutKey::ip(a, 64), LockoutKey::ip(b, 64));
        assert_ne!(LockoutKey::ip(a, 64), LockoutKey::ip(c, 64));
        assert_ne!(LockoutKey::ip(a, 128), LockoutKey::ip(b, 128));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(LockoutKey::ip(mapped, 64), LockoutKey::ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 64));
        assert_ne!(
            LockoutKey::ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 64),
            LockoutKey::ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 64)
        );
        assert_eq!(LockoutKey::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), 0), LockoutKey::ip(a, 0));
        assert_eq!(LockoutKey::ip(a, 64).to_hex().len(), 32);
    }

    fn guard(clock: Arc<ManualClock>) -> (Arc<MemoryLockoutStore>, BruteForceGuard) {
        let store = Arc::new(MemoryLockoutStore::new(1_000, clock));
        let settings = LockoutSettings {
            ip: LockoutPolicy { max_failures: 5, reset_on_success: false, ..policy(5) },
            credential: policy(3),
            ipv6_prefix: 64,
        };
        (store, BruteForceGuard::new(settings).unwrap())
    }

    #[tokio::test]
    async fn the_guard_locks_a_credential_attacked_from_many_ips() {
        let clock = Arc::new(ManualClock::new(1_000));
        let (s, g) = guard(clock.clone());
        for i in 1..=2u8 {
            let a = Attempt {
                ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                credential: Some((CredentialKind::Username, "bob")),
            };
            assert_eq!(g.failed(&*s, &a).await.unwrap().started, None);
        }
        let a =
            Attempt { ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)), credential: Some((CredentialKind::Username, "BOB")) };
        let out = g.failed(&*s, &a).await.unwrap();
        assert_eq!(out.started, Some(LockoutScope::Credential));
        assert_eq!(out.status.retry_after_secs(), Some(10));
        // A fresh IP trying bob is refused; the same IP trying someone else is not.
        let fresh =
            Attempt { ip: IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), credential: Some((CredentialKind::Username, "bob")) };
        assert!(g.check(&*s, &fresh).await.unwrap().is_locked());
        let other = Attempt { credential: Some((CredentialKind::Username, "carol")), ..a };
        assert_eq!(g.check(&*s, &other).await.unwrap(), LockoutStatus::Open);
        clock.advance_ms(10_000);
        assert_eq!(g.check(&*s, &fresh).await.unwrap(), LockoutStatus::Open);
    }

    #[tokio::test]
    async fn the_guard_locks_an_ip_spraying_many_credentials() {
        let clock = Arc::new(ManualClock::new(1_000));
        let (s, g) = guard(clock.clone());
        let ip = IpAddr::V6("2001:db8::1".parse().unwrap());
        let names = ["a", "b", "c", "d", "e"];
        let mut outcomes = Vec::new();
        for (i, name) in names.iter().enumerate() {
            // Rotating addresses inside one /64 does not help.
            let ip = if i % 2 == 0 { ip } else { IpAddr::V6("2001:db8::ff".parse().unwrap()) };
            outcomes.push(
                g.failed(&*s, &Attempt { ip, credential: Some((CredentialKind::ApiKeyId, name)) }).await.unwrap(),
            );
        }
        assert!(outcomes[..4].iter().all(|o| o.started.is_none()));
        assert_eq!(outcomes[4].started, Some(LockoutScope::Ip));
        let anyone = Attempt { ip, credential: None };
        assert_eq!(g.check(&*s, &anyone).await.unwrap().retry_after_secs(), Some(10));
        // A success from that IP (its own valid key) does not clear the IP's lock or count.
        g.succeeded(&*s, &Attempt { ip, credential: Some((CredentialKind::ApiKeyId, "own")) }).await.unwrap();
        assert!(g.check(&*s, &anyone).await.unwrap().is_locked());
    }

    #[tokio::test]
    async fn a_success_clears_the_credential_count() {
        let clock = Arc::new(ManualClock::new(1_000));
        let (s, g) = guard(clock);
        let a = Attempt { ip: IpAddr::V4(Ipv4Addr::LOCALHOST), credential: Some((CredentialKind::TokenSubject, "u1")) };
        g.failed(&*s, &a).await.unwrap();
        g.failed(&*s, &a).await.unwrap();
        g.succeeded(&*s, &a).await.unwrap();
        assert_eq!(g.failed(&*s, &a).await.unwrap().started, None, "count restarted after the owner got in");
        assert_eq!(g.failed(&*s, &a).await.unwrap().started, None);
        assert_eq!(g.failed(&*s, &a).await.unwrap().started, Some(LockoutScope::Credential));
    }

    /// `n` credential keys that land in the same shard of `store`.
    fn same_shard(store: &MemoryLockoutStore, n: usize) -> Vec<LockoutKey> {
        let shard_of = |k: &LockoutKey| (store.hasher.hash_one(k) as usize) % SHARDS;
        let first = LockoutKey::credential(CredentialKind::Username, "k0");
        (0..100_000)
            .map(|i| LockoutKey::credential(CredentialKind::Username, &format!("k{i}")))
            .filter(|k| shard_of(k) == shard_of(&first))
            .take(n)
            .collect()
    }

    #[test]
    fn the_memory_store_is_bounded_and_drops_dead_cells_first() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryLockoutStore::new(SHARDS * 2, clock.clone()); // two cells per shard
        let keys = same_shard(&store, 5);
        let p = policy(100);
        store.record_failure_now(keys[0], &p);
        store.record_failure_now(keys[1], &p);
        // Once their window has passed, the old cells are dead and make room without an eviction.
        clock.advance_ms(61_000);
        store.record_failure_now(keys[2], &p);
        assert_eq!(store.evictions(), 0);
        assert_eq!(store.len(), 1);
        store.record_failure_now(keys[3], &p);
        // The shard is full of live cells: one is evicted, and counted.
        store.record_failure_now(keys[4], &p);
        assert_eq!(store.evictions(), 1);
        assert_eq!(store.len(), 2);
        // Many more keys never grow the store past its bound.
        for i in 0..(SHARDS * 20) {
            store.record_failure_now(LockoutKey::credential(CredentialKind::Username, &format!("f{i}")), &p);
        }
        assert!(store.len() <= SHARDS * 2);
    }

    #[test]
    fn a_locked_cell_outlives_a_flood_of_short_lived_ones() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryLockoutStore::new(SHARDS * 2, clock);
        let locked = LockoutKey::credential(CredentialKind::Username, "victim");
        let p = LockoutPolicy {
            max_lockout: Duration::from_secs(3600),
            base_lockout: Duration::from_secs(3600),
            ..policy(1)
        };
        assert!(store.record_failure_now(locked, &p).0.is_locked());
        let short = policy(100);
        for i in 0..(SHARDS * 50) {
            store.record_failure_now(LockoutKey::credential(CredentialKind::Username, &format!("f{i}")), &short);
        }
        assert!(store.status_now(locked).is_locked(), "the soonest-forgotten cells are evicted first");
    }
}
