//! The verified-token cache (what Envoy's `jwt_cache_config` does): clients send the same bearer token on many
//! requests, so once a token has been fully verified its identity is kept, keyed by the SHA-256 of the whole
//! token text — any change to header, payload or signature is another key. Only successes are stored, so a
//! forged or probing token never gets in and always pays the full verification.
//!
//! An entry is only as good as what made the token valid, so every hit re-checks it: the time claims against
//! the current clock (an entry never outlives the token's `exp` plus leeway) and, through the caller, that the
//! key which verified it is still in the issuer's current key set (a JWKS rotation that drops a key drops the
//! tokens it signed).
//!
//! Bounded in entries and sharded: a hit takes one shard's read lock (concurrent hits never wait on each
//! other), an insert that shard's write lock; when a shard is full, expired entries go first, then the least
//! recently used eighth.

use super::jwks::VerifyKey;
use super::Identity;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// SHA-256 of a token's text.
pub type TokenHash = [u8; 32];

/// The SHA-256 of a token (the token itself is never stored).
pub fn token_hash(token: &str) -> TokenHash {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The key that verified a cached token.
#[derive(Clone)]
pub enum VerifiedBy {
    /// The issuer's HMAC secret: it changes only with a config reload, which builds a new verifier and cache.
    Hmac,
    /// A JWKS key: the entry is good while the issuer's current key set still holds this very key.
    Key(Arc<VerifyKey>),
}

/// When a verified token is valid, in seconds since the epoch (leeway not applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not before: the later of `nbf` and `iat` (0 when neither is present).
    pub from: u64,
    /// `exp` (always present: it is a required claim).
    pub until: u64,
}

impl Validity {
    /// The same rule verification applies: expired when `exp < now - leeway`, too early when `nbf` (or `iat`)
    /// `> now + leeway`.
    pub fn holds(&self, now: u64, leeway: u64) -> bool {
        self.until >= now.saturating_sub(leeway) && self.from <= now.saturating_add(leeway)
    }
}

/// One verified token.
pub struct Entry {
    pub identity: Arc<Identity>,
    pub validity: Validity,
    pub key: VerifiedBy,
    /// The shard's use counter when this entry was last read: the eviction order.
    used: AtomicU64,
}

/// The result of a lookup.
pub enum Lookup {
    Hit(Arc<Identity>),
    /// Present but no longer valid (expired, key rotated out): the caller verifies afresh.
    Stale,
    Miss,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<TokenHash, Entry>,
    clock: AtomicU64,
}

impl Shard {
    /// Makes room for one entry: expired entries first, then the least recently used eighth.
    fn make_room(&mut self, capacity: usize, now: u64, leeway: u64) {
        if self.entries.len() < capacity {
            return;
        }
        self.entries.retain(|_, e| e.validity.until >= now.saturating_sub(leeway));
        if self.entries.len() < capacity {
            return;
        }
        let evict = (capacity / 8).max(1);
        let mut ages: Vec<(u64, TokenHash)> =
            self.entries.iter().map(|(k, e)| (e.used.load(Ordering::Relaxed), *k)).collect();
        ages.select_nth_unstable(evict - 1);
        for (_, k) in &ages[..evict] {
            self.entries.remove(k);
        }
    }
}

/// Hit and miss counters (`rampart_jwt_cache_total{result=…}`), one of each per verification whatever the
/// number of issuers.
#[derive(Clone, Default)]
pub struct CacheCounters {
    pub hits: Counter,
    pub misses: Counter,
}

/// A bounded cache of verified tokens for one issuer.
pub struct VerifiedCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
}

const SHARDS: usize = 16;

impl VerifiedCache {
    /// A cache of at most `max` entries (`max` ≥ 1; a disabled cache is no cache).
    pub fn new(max: usize) -> VerifiedCache {
        let max = max.max(1);
        let shards = SHARDS.min(max);
        VerifiedCache { shards: (0..shards).map(|_| RwLock::new(Shard::default())).collect(), per_shard: max / shards }
    }

    fn shard(&self, key: &TokenHash) -> &RwLock<Shard> {
        &self.shards[usize::from(key[0]) % self.shards.len()]
    }

    /// The cached identity for `key` if `valid` accepts its entry.
    pub fn lookup(&self, key: &TokenHash, valid: impl FnOnce(&Entry) -> bool) -> Lookup {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        match shard.entries.get(key) {
            None => Lookup::Miss,
            Some(e) if valid(e) => {
                e.used.store(shard.clock.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
                Lookup::Hit(e.identity.clone())
            }
            Some(_) => Lookup::Stale,
        }
    }

    /// Drops `key` (a stale entry).
    pub fn remove(&self, key: &TokenHash) {
        self.shard(key).write().unwrap_or_else(|e| e.into_inner()).entries.remove(key);
    }

    /// Stores a verified token's identity. `now`/`leeway` decide which entries count as expired when room is
    /// needed.
    pub fn insert(
        &self,
        key: TokenHash,
        identity: Arc<Identity>,
        validity: Validity,
        by: VerifiedBy,
        now: u64,
        leeway: u64,
    ) {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        if !shard.entries.contains_key(&key) {
            shard.make_room(self.per_shard, now, leeway);
        }
        let used = AtomicU64::new(shard.clock.fetch_add(1, Ordering::Relaxed) + 1);
        shard.entries.insert(key, Entry { identity, validity, key: by, used });
    }

    /// Entries held (expired ones included until evicted or looked up).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|e| e.into_inner()).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most entries the cache holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::AuthMethod;
    use super::*;

    fn identity(name: &str) -> Arc<Identity> {
        Arc::new(Identity {
            consumer: Arc::from(name),
            method: AuthMethod::Jwt,
            scopes: vec![],
            roles: vec![],
            claims: serde_json::Value::Null,
        })
    }

    const NOW: u64 = 1_700_000_000;
    const LONG: Validity = Validity { from: 0, until: NOW + 3600 };

    /// One shard, so the eviction order is observable.
    fn one_shard(per_shard: usize) -> VerifiedCache {
        VerifiedCache { shards: vec![RwLock::new(Shard::default())].into(), per_shard }
    }

    fn hit(cache: &VerifiedCache, k: &TokenHash) -> bool {
        matches!(cache.lookup(k, |e| e.validity.holds(NOW, 0)), Lookup::Hit(_))
    }

    #[test]
    fn the_bound_holds_and_the_least_recently_used_go_first() {
        for max in [1, 7, 16, 100, 1000] {
            let cache = VerifiedCache::new(max);
            assert!(cache.capacity() <= max && cache.capacity() >= 1, "{max}: {}", cache.capacity());
            for i in 0..(3 * max as u32 + 50) {
                cache.insert(token_hash(&i.to_string()), identity("a"), LONG, VerifiedBy::Hmac, NOW, 0);
                assert!(cache.len() <= cache.capacity(), "{max}: {} entries", cache.len());
            }
        }
        // One shard of 8: reading the first entry makes the second the least recently used.
        let cache = one_shard(8);
        let keys: Vec<TokenHash> = (0..9).map(|i| token_hash(&format!("k{i}"))).collect();
        for k in &keys[..8] {
            cache.insert(*k, identity("a"), LONG, VerifiedBy::Hmac, NOW, 0);
        }
        assert!(hit(&cache, &keys[0]));
        cache.insert(keys[8], identity("b"), LONG, VerifiedBy::Hmac, NOW, 0);
        assert!(!hit(&cache, &keys[1]), "the least recently used was evicted");
        assert!(hit(&cache, &keys[0]) && hit(&cache, &keys[8]));
        assert_eq!(cache.len(), 8);
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let cache = one_shard(4);
        let short = Validity { from: 0, until: NOW - 100 };
        for i in 0..3 {
            cache.insert(token_hash(&format!("old{i}")), identity("a"), short, VerifiedBy::Hmac, NOW - 200, 0);
        }
        cache.insert(token_hash("live"), identity("b"), LONG, VerifiedBy::Hmac, NOW, 0);
        cache.insert(token_hash("new"), identity("c"), LONG, VerifiedBy::Hmac, NOW, 0);
        assert_eq!(cache.len(), 2);
        assert!(hit(&cache, &token_hash("live")) && hit(&cache, &token_hash("new")));
    }

    #[test]
    fn validity_uses_the_leeway_both_ways() {
        let v = Validity { from: NOW + 10, until: NOW + 100 };
        assert!(!v.holds(NOW, 5));
        assert!(v.holds(NOW, 10));
        assert!(v.holds(NOW + 110, 10));
        assert!(!v.holds(NOW + 111, 10));
        let cache = VerifiedCache::new(10);
        cache.insert(token_hash("t"), identity("a"), v, VerifiedBy::Hmac, NOW, 10);
        assert!(matches!(cache.lookup(&token_hash("t"), |e| e.validity.holds(NOW + 50, 10)), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(&token_hash("t"), |e| e.validity.holds(NOW + 500, 10)), Lookup::Stale));
        assert!(matches!(cache.lookup(&token_hash("u"), |_| true), Lookup::Miss));
        cache.remove(&token_hash("t"));
        assert!(cache.is_empty());
    }
}
