//! The clock the replay store and the lockout counters read. A trait so tests can move time by hand instead of
//! sleeping, and so every piece of identify state measures time the same way.

use std::sync::atomic::{AtomicU64, Ordering};

/// Milliseconds on a clock that never goes backwards.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

/// The process's monotonic clock ([`crate::upstream::clock::now_ms`]): what the gateway runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        crate::upstream::clock::now_ms()
    }
}

/// A clock that only moves when told to: for tests of expiry, windows and back-off without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        ManualClock(AtomicU64::new(start_ms))
    }

    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
