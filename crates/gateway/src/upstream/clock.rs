//! A cheap monotonic millisecond clock shared by ejection, circuit breaking and idle tracking, so their state fits
//! in atomics.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call in this process; never 0 so that 0 can mean "unset".
pub fn now_ms() -> u64 {
    let start = *START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}
