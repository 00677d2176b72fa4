//! Response deadlines of one worker's upstream exchanges. `tokio::time::timeout` arms an entry in the runtime's
//! timer wheel for every request and cancels it when the answer comes — about 900 instructions per proxied
//! request in callgrind profiles, for a timer that almost never fires. Here a deadline is a slot in its worker's
//! list, and one sweeper task per worker, ticking every [`TICK`] while any slot is in use (and asleep otherwise),
//! wakes the exchanges whose deadline has passed. A deadline fires at most one tick late.

use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;
// tokio's `Instant` is the std one, except under tokio's paused test clock, which the tests below use.
use tokio::time::Instant;

/// The sweep period while exchanges are in flight: how late a deadline may fire.
pub const TICK: Duration = Duration::from_millis(10);

/// The deadline passed before the exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// The deadlines of one worker thread.
#[derive(Default)]
pub struct Deadlines {
    slots: Mutex<Slots>,
    in_use: Notify,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Entry>,
    free: Vec<usize>,
    live: usize,
}

struct Entry {
    at: Instant,
    waker: Option<Waker>,
    expired: bool,
}

impl Deadlines {
    /// Never poisoned in practice (nothing panics while holding it); if it were, the list is still consistent.
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, at: Instant, waker: &Waker) -> usize {
        let mut s = self.lock();
        let entry = Entry { at, waker: Some(waker.clone()), expired: false };
        let id = match s.free.pop() {
            Some(i) => {
                s.entries[i] = entry;
                i
            }
            None => {
                s.entries.push(entry);
                s.entries.len() - 1
            }
        };
        s.live += 1;
        let first = s.live == 1;
        drop(s);
        if first {
            self.in_use.notify_one();
        }
        id
    }

    /// Whether the deadline has passed; otherwise makes sure the sweeper will wake `waker`.
    fn expired(&self, id: usize, waker: &Waker) -> bool {
        let mut s = self.lock();
        let Some(e) = s.entries.get_mut(id) else { return false };
        if e.expired {
            return true;
        }
        if !e.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            e.waker = Some(waker.clone());
        }
        false
    }

    fn release(&self, id: usize) {
        let mut s = self.lock();
        if let Some(e) = s.entries.get_mut(id) {
            e.waker = None;
            // A free slot reads as expired, so the sweeper passes over it.
            e.expired = true;
            s.free.push(id);
            s.live -= 1;
        }
    }

    /// Wakes the exchanges whose deadline is past `now`; returns how many slots are still in use.
    fn sweep_at(&self, now: Instant) -> usize {
        let mut s = self.lock();
        for e in s.entries.iter_mut() {
            if !e.expired && e.at <= now {
                e.expired = true;
                if let Some(w) = e.waker.take() {
                    w.wake();
                }
            }
        }
        s.live
    }

    /// The worker's sweeper: runs for the worker's lifetime, asleep while no deadline is set. One timer entry,
    /// re-armed each tick, serves every exchange of the worker.
    pub async fn sweep(&self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.lock().live == 0 {
                // `notify_one` leaves a permit when nobody waits, so a deadline set meanwhile is not missed.
                self.in_use.notified().await;
                tick.reset();
            }
            tick.tick().await;
            self.sweep_at(Instant::now());
        }
    }

    /// Runs `fut` until it ends or `at` passes (then it is dropped).
    pub async fn within<F: Future>(&self, at: Instant, fut: F) -> Result<F::Output, Elapsed> {
        struct Slot<'a> {
            list: &'a Deadlines,
            id: Option<usize>,
        }
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                if let Some(id) = self.id {
                    self.list.release(id);
                }
            }
        }
        let mut fut = pin!(fut);
        let mut slot = Slot { list: self, id: None };
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            match slot.id {
                None => slot.id = Some(self.register(at, cx.waker())),
                Some(id) => {
                    if self.expired(id, cx.waker()) {
                        return Poll::Ready(Err(Elapsed));
                    }
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A list and its sweeper task, as a worker has them.
    fn swept() -> (Arc<Deadlines>, tokio::task::JoinHandle<()>) {
        let list = Arc::new(Deadlines::default());
        let sweeper = tokio::spawn({
            let list = list.clone();
            async move { list.sweep().await }
        });
        (list, sweeper)
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_slow_future_is_cut_off_and_a_quick_one_is_not() {
        let (list, sweeper) = swept();
        let quick = list.within(Instant::now() + Duration::from_millis(200), async { 7 }).await;
        assert_eq!(quick, Ok(7));
        let slow =
            list.within(Instant::now() + Duration::from_millis(200), tokio::time::sleep(Duration::from_secs(60))).await;
        assert_eq!(slow, Err(Elapsed));
        // A pending future that finishes before its deadline passes, and frees its slot.
        let ok = list
            .within(Instant::now() + Duration::from_secs(5), async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                "done"
            })
            .await;
        assert_eq!(ok, Ok("done"));
        assert_eq!(list.lock().live, 0);
        assert_eq!(list.lock().entries.len(), 1, "slots are reused");
        sweeper.abort();
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn many_deadlines_fire_each_at_its_own_time() {
        let (list, sweeper) = swept();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..20u64 {
            let list = list.clone();
            tasks.push(tokio::spawn(async move {
                let wait = Duration::from_millis(if i % 2 == 0 { 30 } else { 1000 });
                let r = list.within(Instant::now() + Duration::from_millis(100), tokio::time::sleep(wait)).await;
                (i, r.is_ok(), start.elapsed())
            }));
        }
        for t in tasks {
            let (i, ok, took) = t.await.unwrap();
            assert_eq!(ok, i % 2 == 0, "task {i}");
            if !ok {
                assert!(
                    took >= Duration::from_millis(100) && took <= Duration::from_millis(100) + TICK * 2,
                    "{took:?}"
                );
            }
        }
        assert_eq!(list.lock().live, 0);
        sweeper.abort();
    }
}
