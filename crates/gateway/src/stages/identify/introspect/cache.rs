//! The introspection cache: answers keyed by the SHA-256 of the token (the token itself is never stored),
//! bounded, sharded so concurrent requests rarely meet on one lock, with least-recently-used eviction and
//! single-flight: while one request asks the identity provider about a token, others with the same token wait
//! for that answer instead of asking again.

use super::super::{AuthFailure, Identity};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// SHA-256 of a token.
pub type TokenHash = [u8; 32];

/// What the cache holds for a token.
#[derive(Debug, Clone)]
pub enum Cached {
    Active(Arc<Identity>),
    Refused(AuthFailure),
}

/// One in-flight introspection; every request for the token awaits the same cell. If the request running it
/// is cancelled, the next waiter runs it.
pub type Flight = tokio::sync::OnceCell<Cached>;

/// The result of a lookup.
pub enum Lookup {
    Hit(Cached),
    /// Not cached: await this flight (joined, or new).
    Miss(Arc<Flight>),
}

struct Entry {
    value: Cached,
    expires: Instant,
    /// The shard's use counter when this entry was last read: the eviction order.
    used: u64,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<TokenHash, Entry>,
    flights: HashMap<TokenHash, Arc<Flight>>,
    clock: u64,
}

impl Shard {
    /// Makes room for one entry: expired entries go first, then the least recently used eighth.
    fn make_room(&mut self, capacity: usize, now: Instant) {
        if self.entries.len() < capacity {
            return;
        }
        self.entries.retain(|_, e| e.expires > now);
        if self.entries.len() < capacity {
            return;
        }
        let evict = (capacity / 8).max(1);
        let mut ages: Vec<(u64, TokenHash)> = self.entries.iter().map(|(k, e)| (e.used, *k)).collect();
        ages.select_nth_unstable(evict - 1);
        for (_, k) in &ages[..evict] {
            self.entries.remove(k);
        }
    }
}

/// A bounded token cache.
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

const SHARDS: usize = 16;

impl TokenCache {
    /// A cache of at most `max` entries (at least one per shard).
    pub fn new(max: usize) -> TokenCache {
        let shards = SHARDS.min(max.max(1));
        let per_shard = max.max(1).div_ceil(shards);
        TokenCache { shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(), per_shard }
    }

    fn shard(&self, key: &TokenHash) -> &Mutex<Shard> {
        &self.shards[usize::from(key[0]) % self.shards.len()]
    }

    /// The cached answer, or the flight to await. Looking up and joining happen under one lock, so a token is
    /// never introspected twice at once.
    pub fn lookup(&self, key: &TokenHash, now: Instant) -> Lookup {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard.clock += 1;
        let clock = shard.clock;
        match shard.entries.get_mut(key) {
            Some(e) if e.expires > now => {
                e.used = clock;
                return Lookup::Hit(e.value.clone());
            }
            Some(_) => {
                shard.entries.remove(key);
            }
            None => {}
        }
        Lookup::Miss(shard.flights.entry(*key).or_default().clone())
    }

    /// Ends the flight for `key`, caching its answer until `expires` when given.
    pub fn land(&self, key: &TokenHash, flight: &Arc<Flight>, value: Option<(Cached, Instant)>, now: Instant) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if let Some((value, expires)) = value.filter(|(_, exp)| *exp > now) {
            shard.make_room(self.per_shard, now);
            shard.clock += 1;
            let used = shard.clock;
            shard.entries.insert(*key, Entry { value, expires, used });
        }
        if shard.flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            shard.flights.remove(key);
        }
    }

    /// A request holding `flight` is done with it (answered or cancelled). If it was the last one and the flight
    /// never landed (its runner was cancelled), the flight is dropped, so abandoned requests cannot pile flights
    /// up. Clones are only made under the shard lock, so the count read under it is exact.
    pub fn leave(&self, key: &TokenHash, flight: &Arc<Flight>) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) && Arc::strong_count(flight) <= 2 {
            shard.flights.remove(key);
        }
    }

    /// Flights in progress (or abandoned and not yet cleaned up).
    pub fn flights(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).flights.len()).sum()
    }

    /// Entries held (expired ones included until they are evicted or looked up).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len()).sum()
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
    use super::super::super::{AuthMethod, IdentifyCode};
    use super::*;
    use std::time::Duration;

    fn key(i: u32) -> TokenHash {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k[0] = 0; // one shard, so eviction order is observable
        k[31] = 1;
        k
    }

    fn active(name: &str) -> Cached {
        Cached::Active(Arc::new(Identity {
            consumer: Arc::from(name),
            method: AuthMethod::Introspection,
            scopes: vec![],
            roles: vec![],
            claims: serde_json::Value::Null,
        }))
    }

    /// Looks up (joining the flight) and lands the flight.
    fn land(cache: &TokenCache, i: u32, value: Option<(Cached, Instant)>, now: Instant) {
        let flight = match cache.lookup(&key(i), now) {
            Lookup::Miss(f) => f,
            Lookup::Hit(_) => Arc::new(Flight::new()),
        };
        cache.land(&key(i), &flight, value, now);
    }

    #[test]
    fn entries_expire_and_the_least_recently_used_go_first() {
        let cache = TokenCache::new(16 * 8);
        assert_eq!(cache.capacity(), 128);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(60);
        for i in 0..8 {
            assert!(matches!(cache.lookup(&key(i), t0), Lookup::Miss(_)));
            land(&cache, i, Some((active("a"), later)), t0);
        }
        // Reading 0 makes 1 the least recently used.
        assert!(matches!(cache.lookup(&key(0), t0), Lookup::Hit(_)));
        land(&cache, 100, Some((active("b"), later)), t0);
        assert!(matches!(cache.lookup(&key(1), t0), Lookup::Miss(_)), "1 was evicted");
        assert!(matches!(cache.lookup(&key(0), t0), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(&key(100), t0), Lookup::Hit(_)));
        assert!(cache.len() <= 8);
        // Past its expiry an entry is a miss.
        assert!(matches!(cache.lookup(&key(0), later), Lookup::Miss(_)));
        // Refusals are cached too; nothing is cached with an expiry in the past.
        let refused = Cached::Refused(AuthFailure::new(IdentifyCode::IntrospectionInactive, "t"));
        land(&cache, 7, Some((refused, t0 + Duration::from_secs(1))), t0);
        assert!(matches!(cache.lookup(&key(7), t0), Lookup::Hit(Cached::Refused(_))));
        land(&cache, 200, Some((active("c"), t0)), t0);
        assert!(matches!(cache.lookup(&key(200), t0), Lookup::Miss(_)));
    }

    #[test]
    fn concurrent_misses_share_one_flight() {
        let cache = TokenCache::new(10);
        let t0 = Instant::now();
        let (Lookup::Miss(a), Lookup::Miss(b)) = (cache.lookup(&key(1), t0), cache.lookup(&key(1), t0)) else {
            panic!("hit")
        };
        assert!(Arc::ptr_eq(&a, &b));
        cache.land(&key(1), &a, None, t0);
        let Lookup::Miss(c) = cache.lookup(&key(1), t0) else { panic!("hit") };
        assert!(!Arc::ptr_eq(&a, &c), "a landed flight is not reused");
        // A stale flight landing does not end the new one.
        cache.land(&key(1), &a, None, t0);
        assert_eq!(cache.flights(), 1);
        // The last request leaving an unlanded flight drops it; one with company keeps it.
        let Lookup::Miss(d) = cache.lookup(&key(1), t0) else { panic!("hit") };
        cache.leave(&key(1), &c);
        assert_eq!(cache.flights(), 1, "d still waits");
        drop(c);
        cache.leave(&key(1), &d);
        assert_eq!(cache.flights(), 0);
    }
}
