//! Load shedding: at most `max_in_flight` requests per route and per upstream; a few more wait in a short queue
//! for at most `queue_timeout`; the rest are refused at once with 503 `throttle.overload` rather than piling up
//! until everything times out. A request holds its places until the last byte of its response body went out (or
//! the client went away): a slow, large response occupies the upstream as much as a slow response head does, so
//! releasing at the head would let the next requests pile onto an upstream that is still busy.

use crate::pipeline::{Code, Rejection};
use http::header::{HeaderValue, RETRY_AFTER};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One concurrency limit with its queue.
#[derive(Debug)]
pub struct Gate {
    /// `route /login` or `upstream users`, for the log.
    pub name: String,
    pub max_in_flight: usize,
    /// Shared with the permits, which travel with the response body rather than borrowing the gate.
    sem: Arc<Semaphore>,
    queued: AtomicUsize,
    queue: usize,
    queue_timeout: Duration,
}

impl Gate {
    pub fn new(name: String, max_in_flight: usize, queue: usize, queue_timeout: Duration) -> Gate {
        let max_in_flight = max_in_flight.max(1);
        Gate {
            name,
            max_in_flight,
            sem: Arc::new(Semaphore::new(max_in_flight)),
            queued: AtomicUsize::new(0),
            queue,
            queue_timeout,
        }
    }

    fn overload(&self, why: &str) -> Rejection {
        Rejection::new(Code::ThrottleOverload, format!("{}: {why} ({} in flight)", self.name, self.max_in_flight))
            .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// A place, at once or after queueing; a refusal when the queue is full or the wait too long.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Rejection> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(self.overload("queue full"));
        }
        let waited = tokio::time::timeout(self.queue_timeout, self.sem.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(p)) => Ok(p),
            _ => Err(self.overload("no place within the queue timeout")),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.sem.available_permits()
    }
}

/// Places held by one request: the route's and the upstream's. Owned, so the proxy can hand them to the response
/// body, which drops them when it ends.
pub struct Places {
    _route: Option<OwnedSemaphorePermit>,
    _upstream: Option<OwnedSemaphorePermit>,
}

impl Places {
    /// `true` when neither the route nor the upstream has a gate: nothing to hold.
    pub fn is_empty(&self) -> bool {
        self._route.is_none() && self._upstream.is_none()
    }
}

/// Enters the route's gate, then the upstream's.
pub async fn enter(route: Option<&Gate>, upstream: Option<&Gate>) -> Result<Places, Rejection> {
    let r = match route {
        Some(g) => Some(g.enter().await?),
        None => None,
    };
    let u = match upstream {
        Some(g) => Some(g.enter().await?),
        None => None,
    };
    Ok(Places { _route: r, _upstream: u })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_queues_briefly_then_is_refused() {
        let g = Gate::new("route t".into(), 1, 1, Duration::from_millis(50));
        let first = g.enter().await.unwrap();
        assert_eq!(g.in_flight(), 1);
        // One may wait; it times out because nobody leaves.
        let waited = g.enter().await.unwrap_err();
        assert_eq!(waited.code, Code::ThrottleOverload);
        drop(first);
        let again = g.enter().await.unwrap();
        // A queued request gets the place when it frees up.
        let (a, ()) = tokio::join!(g.enter(), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(again);
        });
        assert!(a.is_ok());
    }
}
