//! Replay protection for signed requests: a signature stays valid for its whole time window, so without a memory
//! of what was already accepted an eavesdropper (or a retrying proxy) could send the same signed request again.
//! The store remembers each accepted nonce until the signature it came with would have expired anyway.
//!
//! The trait is deliberately one call wide so a Redis backend is a single `SET key 1 NX PX ttl`.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::Clock;

/// Whether a nonce was seen before within its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// First time: it is now remembered.
    Fresh,
    /// Already remembered and not yet expired: the request is a replay.
    Replayed,
}

/// The store could not answer (Redis unreachable, timed out). Callers fail closed: a request whose freshness
/// cannot be established is not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nonce store unavailable: {0}")]
pub struct NonceStoreError(pub String);

/// The future [`NonceStore::check_and_remember`] returns: boxed so the trait can sit behind `dyn` and a Redis
/// backend can await its round-trip.
pub type NonceFuture<'a> = Pin<Box<dyn Future<Output = Result<Freshness, NonceStoreError>> + Send + 'a>>;

/// Remembers nonces for a while and tells whether one was already seen.
pub trait NonceStore: Send + Sync + std::fmt::Debug {
    /// Atomically: if `nonce` is remembered and unexpired, [`Freshness::Replayed`]; otherwise remember it for
    /// `ttl` and answer [`Freshness::Fresh`]. Two concurrent calls with the same nonce get one `Fresh` at most.
    fn check_and_remember<'a>(&'a self, nonce: &'a str, ttl: Duration) -> NonceFuture<'a>;
}

/// Shards of the in-memory store: enough that concurrent requests rarely meet on one lock.
const SHARDS: usize = 16;

/// The in-memory nonce store: sharded by a randomly keyed hash (so a client cannot aim all its nonces at one
/// shard), bounded in entries, expired entries dropped as new ones arrive.
///
/// When a shard is full the entry closest to its expiry is evicted and counted: under a flood of valid
/// signatures, the oldest nonces lose their protection first, and the eviction count tells the operator to raise
/// `capacity` or move to Redis. Refusing new requests instead would let the flood deny service to everyone.
#[derive(Debug)]
pub struct MemoryNonceStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    per_shard: usize,
    clock: Arc<dyn Clock>,
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct Shard {
    /// nonce → expiry (ms on the store's clock).
    expiry: HashMap<Arc<str>, u64>,
    /// (expiry, nonce), oldest first: what to purge and what to evict.
    by_expiry: BTreeSet<(u64, Arc<str>)>,
}

impl MemoryNonceStore {
    /// A store remembering at most about `capacity` nonces (rounded up to a multiple of the shard count).
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        MemoryNonceStore { shards, hasher: RandomState::new(), per_shard, clock, evictions: AtomicU64::new(0) }
    }

    /// Unexpired nonces evicted because a shard was full, since start: should stay 0; if it grows, the window
    /// of replay protection is shorter than the signature window.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Nonces currently remembered (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|s| s.expiry.len()).unwrap_or(0)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous core of [`NonceStore::check_and_remember`].
    pub fn check_and_remember_now(&self, nonce: &str, ttl: Duration) -> Freshness {
        let now = self.clock.now_ms();
        let expires = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)).max(now + 1);
        let idx = (self.hasher.hash_one(nonce) as usize) % self.shards.len();
        // A poisoned shard only means another thread panicked mid-update; its maps are still consistent enough to
        // keep protecting (each update below leaves both maps in agreement before anything can panic).
        let mut shard = match self.shards[idx].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(&seen_until) = shard.expiry.get(nonce) {
            if seen_until > now {
                return Freshness::Replayed;
            }
        }
        shard.purge_expired(now);
        if shard.expiry.len() >= self.per_shard {
            if let Some(oldest) = shard.by_expiry.pop_first() {
                shard.expiry.remove(&oldest.1);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        let key: Arc<str> = Arc::from(nonce);
        shard.by_expiry.insert((expires, key.clone()));
        shard.expiry.insert(key, expires);
        Freshness::Fresh
    }
}

impl Shard {
    fn purge_expired(&mut self, now: u64) {
        while let Some((exp, _)) = self.by_expiry.first() {
            if *exp > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.expiry.remove(&key);
            }
        }
    }
}

impl NonceStore for MemoryNonceStore {
    fn check_and_remember<'a>(&'a self, nonce: &'a str, ttl: Duration) -> NonceFuture<'a> {
        let answer = self.check_and_remember_now(nonce, ttl);
        Box::pin(std::future::ready(Ok(answer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::identify::clock::ManualClock;

    fn store(capacity: usize) -> (Arc<ManualClock>, MemoryNonceStore) {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryNonceStore::new(capacity, clock.clone());
        (clock, store)
    }

    #[tokio::test]
    async fn a_nonce_is_fresh_once_then_replayed() {
        let (_, s) = store(100);
        let ttl = Duration::from_secs(60);
        assert_eq!(s.check_and_remember("k1\0n1", ttl).await, Ok(Freshness::Fresh));
        assert_eq!(s.check_and_remember("k1\0n1", ttl).await, Ok(Freshness::Replayed));
        assert_eq!(s.check_and_remember("k1\0n2", ttl).await, Ok(Freshness::Fresh));
        assert_eq!(s.check_and_remember("k2\0n1", ttl).await, Ok(Freshness::Fresh), "nonces are per key");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn a_nonce_is_forgotten_after_its_ttl_and_only_then() {
        let (clock, s) = store(100);
        let ttl = Duration::from_secs(10);
        assert_eq!(s.check_and_remember_now("n", ttl), Freshness::Fresh);
        clock.advance_ms(9_999);
        assert_eq!(s.check_and_remember_now("n", ttl), Freshness::Replayed);
        clock.advance_ms(1);
        assert_eq!(s.check_and_remember_now("n", ttl), Freshness::Fresh);
        assert_eq!(s.check_and_remember_now("n", ttl), Freshness::Replayed);
    }

    #[test]
    fn expired_entries_are_purged_as_new_ones_arrive() {
        let (clock, s) = store(SHARDS * 400);
        for i in 0..200 {
            s.check_and_remember_now(&format!("old{i}"), Duration::from_secs(1));
        }
        assert_eq!(s.len(), 200);
        clock.advance_ms(2_000);
        // Every shard receives a new nonce eventually; each arrival purges its shard's expired entries.
        for i in 0..2_000 {
            s.check_and_remember_now(&format!("new{i}"), Duration::from_secs(60));
        }
        assert_eq!(s.len(), 2_000);
        assert_eq!(s.evictions(), 0, "purging expired entries is not eviction");
    }

    #[test]
    fn a_full_store_evicts_the_soonest_expiring_and_counts_it() {
        let (_, s) = store(SHARDS); // one entry per shard
        for i in 0..(SHARDS * 4) {
            s.check_and_remember_now(&format!("n{i}"), Duration::from_secs(60));
        }
        assert!(s.len() <= SHARDS, "bounded: {} entries", s.len());
        assert_eq!(s.evictions() as usize + s.len(), SHARDS * 4, "every insert beyond capacity evicted one");
        // Within one shard, the long-lived entry survives and the short-lived one is the eviction victim.
        let (_, s) = store(2 * SHARDS); // two per shard
        let h = |n: &str| (s.hasher.hash_one(n) as usize) % SHARDS;
        let target = h("long");
        let same: Vec<String> = (0..10_000).map(|i| format!("x{i}")).filter(|n| h(n) == target).take(2).collect();
        s.check_and_remember_now("long", Duration::from_secs(600));
        s.check_and_remember_now(&same[0], Duration::from_secs(5));
        s.check_and_remember_now(&same[1], Duration::from_secs(60));
        assert_eq!(s.evictions(), 1);
        assert_eq!(s.check_and_remember_now("long", Duration::from_secs(600)), Freshness::Replayed);
        assert_eq!(s.check_and_remember_now(&same[1], Duration::from_secs(60)), Freshness::Replayed);
    }

    #[test]
    fn concurrent_callers_get_one_fresh_answer() {
        let (_, s) = store(10_000);
        let s = Arc::new(s);
        let fresh = Arc::new(AtomicU64::new(0));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let (s, fresh) = (s.clone(), fresh.clone());
                scope.spawn(move || {
                    for i in 0..500 {
                        if s.check_and_remember_now(&format!("n{i}"), Duration::from_secs(60)) == Freshness::Fresh {
                            fresh.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(fresh.load(Ordering::Relaxed), 500);
    }
}
