//! Bulk exfiltration guard: records (JSON array elements) returned per caller per route in a sliding window,
//! counted in the configured state backend ([`crate::state::Store`]: memory, or Redis shared by every replica),
//! so counts add up across replicas and survive a config reload (the backend is kept while `state:` is
//! unchanged).
//!
//! The sliding window is two aligned fixed windows blended, the previous one weighted by how much of it still
//! overlaps the window that ends now: two plain windowed counters per caller ([`Counters::incr_window`]),
//! asked at once (pipelined on Redis), no new script.

use crate::state::{Counters, FailureMode, Unavailable};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// What the count is when the shared state cannot answer (the route's `limits_on_failure`, else
    /// `state.on_failure`): `local` counts in this instance, `open` counts nothing, `closed` is [`Unavailable`].
    pub on_failure: FailureMode,
}

/// Where `now_ms` falls: the aligned window's number and how far into it we are.
fn window_of(now_ms: u64, window_ms: u64) -> (u64, u64) {
    (now_ms / window_ms, now_ms % window_ms)
}

/// The sliding count: this window's records, plus the previous window's weighted by the part of it that still
/// lies within one window of now — rounded up, so a caller at the limit stays there until that window is gone.
fn blend(current: u64, previous: u64, into_window_ms: u64, window_ms: u64) -> u64 {
    let overlap = u128::from(window_ms - into_window_ms.min(window_ms));
    let w = u128::from(window_ms);
    current.saturating_add(((u128::from(previous) * overlap).div_ceil(w)).min(u128::from(u64::MAX)) as u64)
}

/// The counter key of one caller's window (`caller` is the route and the consumer or client IP).
fn cell(window_ms: u64, id: u64, caller: &str) -> String {
    format!("x:{window_ms}:{id}:{caller}")
}

/// Adds a response's `records` to the caller's count and returns the count in the sliding window that ends
/// now, across every instance sharing the state backend.
pub async fn count<C: Counters>(state: &C, caller: &str, records: u64, p: &ExfilPolicy) -> Result<u64, Unavailable> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    count_at(state, caller, records, p, now).await
}

async fn count_at<C: Counters>(
    state: &C,
    caller: &str,
    records: u64,
    p: &ExfilPolicy,
    now_ms: u64,
) -> Result<u64, Unavailable> {
    let w = (p.window.as_millis() as u64).max(1);
    let (id, into) = window_of(now_ms, w);
    // A window's counter must outlive the next window, where it is the previous one.
    let ttl = Duration::from_millis(w.saturating_mul(2));
    let (cur_key, prev_key) = (cell(w, id, caller), cell(w, id.saturating_sub(1), caller));
    let (current, previous) = tokio::join!(
        state.incr_window(&cur_key, records, ttl, p.on_failure),
        state.incr_window(&prev_key, 0, ttl, p.on_failure),
    );
    Ok(blend(current?, previous?, into, w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use crate::state::StateMetrics;

    fn policy() -> ExfilPolicy {
        ExfilPolicy {
            max_records: 100,
            window: Duration::from_secs(60),
            action: ExfilAction::Log,
            on_failure: FailureMode::Closed,
        }
    }

    #[test]
    fn the_previous_window_fades_out() {
        assert_eq!(blend(10, 40, 0, 60_000), 50);
        assert_eq!(blend(10, 40, 30_000, 60_000), 30, "half of the previous window still overlaps");
        assert_eq!(blend(10, 40, 59_999, 60_000), 11, "rounded up: the limit does not leak away early");
        assert_eq!(blend(10, 40, 60_000, 60_000), 10);
        assert_eq!(window_of(90_000, 60_000), (1, 30_000));
    }

    #[tokio::test]
    async fn counts_slide_and_callers_are_separate() {
        let m = MemoryStore::new(10_000, StateMetrics::default());
        let p = policy();
        assert_eq!(count_at(&m, "r\na", 40, &p, 61_000).await, Ok(40));
        assert_eq!(count_at(&m, "r\na", 40, &p, 62_000).await, Ok(80));
        assert_eq!(count_at(&m, "r\nb", 5, &p, 62_000).await, Ok(5));
        // Half-way into the next window half of the previous one still counts.
        assert_eq!(count_at(&m, "r\na", 10, &p, 150_000).await, Ok(10 + 40));
        // Two windows later nothing is left of it.
        assert_eq!(count_at(&m, "r\na", 1, &p, 250_000).await, Ok(1));
    }
}
