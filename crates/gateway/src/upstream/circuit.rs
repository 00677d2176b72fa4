//! Circuit breaker per upstream: when too many exchanges in a window fail, stop sending for a while so a sick
//! service can recover and clients get a fast 503 instead of piling up; then let one probe through (half-open).

use super::clock::now_ms;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

#[derive(Debug, Clone, Copy)]
pub struct CircuitPolicy {
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub window_ms: u64,
    pub open_ms: u64,
}

/// What the breaker says about sending a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Closed,
    /// The single trial request allowed while half-open.
    Probe,
    Open,
}

/// A state change worth an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    policy: CircuitPolicy,
    window_start: AtomicU64,
    total: AtomicU32,
    failures: AtomicU32,
    /// 0 = closed; otherwise the time the circuit may be probed again.
    open_until: AtomicU64,
    probing: AtomicBool,
}

impl CircuitBreaker {
    pub fn new(policy: CircuitPolicy) -> Self {
        CircuitBreaker {
            policy,
            window_start: AtomicU64::new(now_ms()),
            total: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }

    pub fn admit(&self) -> Admission {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admission::Closed;
        }
        if now_ms() < until {
            return Admission::Open;
        }
        if self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            Admission::Probe
        } else {
            Admission::Open
        }
    }

    /// Records the outcome of an exchange that was admitted as `admission`.
    pub fn record(&self, admission: Admission, ok: bool) -> Option<Transition> {
        let now = now_ms();
        if admission == Admission::Probe {
            self.probing.store(false, Ordering::Release);
            if ok {
                self.reset(now);
                self.open_until.store(0, Ordering::Release);
                return Some(Transition::Closed);
            }
            self.open_until.store(now + self.policy.open_ms, Ordering::Release);
            return None;
        }
        if self.is_open() {
            return None;
        }
        let start = self.window_start.load(Ordering::Acquire);
        if now.saturating_sub(start) > self.policy.window_ms
            && self.window_start.compare_exchange(start, now, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            self.total.store(0, Ordering::Release);
            self.failures.store(0, Ordering::Release);
        }
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        let failures =
            if ok { self.failures.load(Ordering::Acquire) } else { self.failures.fetch_add(1, Ordering::AcqRel) + 1 };
        if !ok
            && total >= self.policy.min_requests
            && f64::from(failures) / f64::from(total) >= self.policy.failure_ratio
            && self
                .open_until
                .compare_exchange(0, now + self.policy.open_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(Transition::Opened);
        }
        None
    }

    fn reset(&self, now: u64) {
        self.window_start.store(now, Ordering::Release);
        self.total.store(0, Ordering::Release);
        self.failures.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_on_failure_ratio_then_probes_and_closes() {
        let cb =
            CircuitBreaker::new(CircuitPolicy { failure_ratio: 0.5, min_requests: 4, window_ms: 60_000, open_ms: 0 });
        assert_eq!(cb.admit(), Admission::Closed);
        assert_eq!(cb.record(Admission::Closed, true), None);
        assert_eq!(cb.record(Admission::Closed, false), None);
        assert_eq!(cb.record(Admission::Closed, true), None);
        assert_eq!(cb.record(Admission::Closed, false), Some(Transition::Opened));
        // open_ms = 0: immediately half-open, exactly one probe at a time.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(cb.admit(), Admission::Probe);
        assert_eq!(cb.admit(), Admission::Open);
        assert_eq!(cb.record(Admission::Probe, true), Some(Transition::Closed));
        assert_eq!(cb.admit(), Admission::Closed);
    }

    #[test]
    fn stays_open_while_the_timer_runs() {
        let cb = CircuitBreaker::new(CircuitPolicy {
            failure_ratio: 0.1,
            min_requests: 1,
            window_ms: 60_000,
            open_ms: 60_000,
        });
        assert_eq!(cb.record(Admission::Closed, false), Some(Transition::Opened));
        assert_eq!(cb.admit(), Admission::Open);
    }
}
