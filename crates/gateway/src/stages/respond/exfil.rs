//! Bulk exfiltration guard: records (JSON array elements) returned per caller per route in a sliding window.
//! The counter sits behind [`RecordCounter`] so a shared backend (Redis) can replace the in-memory one.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What happens when a caller goes over `max_records` in `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExfilAction {
    /// Record a `respond.exfiltration` security event; the response goes out.
    Log,
    /// Record the event and answer 429 instead of the response.
    Block,
}

/// A route's guard.
#[derive(Debug, Clone, Copy)]
pub struct ExfilPolicy {
    pub max_records: u64,
    pub window: Duration,
    pub action: ExfilAction,
}

/// Adds records to a caller's count and returns the count in the window that ends now.
pub trait RecordCounter: Send + Sync {
    fn add(&self, key: &str, records: u64, window: Duration) -> u64;
}

/// Two fixed windows blended into a sliding one (the previous window weighted by how much of it still overlaps).
#[derive(Debug, Clone, Copy)]
struct Cell {
    window_start_ms: u64,
    current: u64,
    previous: u64,
}

/// One lock's worth of callers.
type Shard = Mutex<HashMap<Box<str>, Cell>>;

/// In-memory counter: sharded maps (a caller's lock is never contended by most others), each bounded; a full
/// shard first drops expired callers, then the one with the oldest window.
pub struct MemoryCounter {
    shards: Box<[Shard]>,
    max_per_shard: usize,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
}

impl MemoryCounter {
    pub fn new(shards: usize, max_keys: usize) -> MemoryCounter {
        let shards = shards.max(1);
        MemoryCounter {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            max_per_shard: (max_keys / shards).max(1),
            epoch: Instant::now(),
            hasher: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn add_at(&self, key: &str, records: u64, window: Duration, now_ms: u64) -> u64 {
        let w = (window.as_millis() as u64).max(1);
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % self.shards.len()];
        let mut map = match shard.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let start = now_ms - now_ms % w;
        if !map.contains_key(key) && map.len() >= self.max_per_shard {
            map.retain(|_, c| c.window_start_ms + 2 * w > now_ms);
            if map.len() >= self.max_per_shard {
                if let Some(oldest) = map.iter().min_by_key(|(_, c)| c.window_start_ms).map(|(k, _)| k.clone()) {
                    map.remove(&oldest);
                }
            }
        }
        let cell = map.entry(key.into()).or_insert(Cell { window_start_ms: start, current: 0, previous: 0 });
        if cell.window_start_ms != start {
            cell.previous = if cell.window_start_ms + w == start { cell.current } else { 0 };
            cell.current = 0;
            cell.window_start_ms = start;
        }
        cell.current = cell.current.saturating_add(records);
        let overlap = w - (now_ms - start);
        cell.current + cell.previous * overlap / w
    }
}

impl RecordCounter for MemoryCounter {
    fn add(&self, key: &str, records: u64, window: Duration) -> u64 {
        self.add_at(key, records, window, self.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_and_callers_are_separate() {
        let c = MemoryCounter::new(4, 1000);
        let w = Duration::from_secs(60);
        assert_eq!(c.add_at("a", 40, w, 1_000), 40);
        assert_eq!(c.add_at("a", 40, w, 2_000), 80);
        assert_eq!(c.add_at("b", 5, w, 2_000), 5);
        // Half-way into the next window half of the previous one still counts.
        assert_eq!(c.add_at("a", 10, w, 90_000), 10 + 40);
        // Two windows later nothing is left.
        assert_eq!(c.add_at("a", 1, w, 200_000), 1);
    }

    #[test]
    fn bounded_in_keys() {
        let c = MemoryCounter::new(2, 10);
        for i in 0..1000 {
            c.add_at(&format!("k{i}"), 1, Duration::from_secs(60), 1_000 + i);
        }
        let total: usize = c.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= 10, "{total}");
    }
}
