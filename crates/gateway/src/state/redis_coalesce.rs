//! Rate checks of one Redis cell that are in flight at once share one script call.
//!
//! A hot subject — one consumer, one address behind a NAT, one `global` limit — sends many requests at once, and
//! each used to be its own script call: Redis, and the gateway's side of every call (key rendering, command
//! encoding, the hop to the connection's thread), worked once per request. Now the first check of a cell calls
//! Redis alone, as before; checks of the same cell (same scope, subject, rate, cost and offence settings) that
//! arrive while that call is in flight queue behind it, and when it returns the whole queue goes to Redis as
//! **one** call of [`super::redis_store`]'s GCRA script that charges N requests atomically and answers how many
//! it admitted. New arrivals queue behind that call in turn, so a cell has at most one call in flight and the
//! calls it costs follow the round trips, not the requests.
//!
//! Exactness: at one instant GCRA admits a prefix of N equal requests. With the cell's arrival time `tat` (at
//! least `now`), the i-th request of cost c passes iff `tat + i·c·T − τ − T ≤ now`, and a refused request does
//! not move `tat`; so the first k pass and the rest are refused — the answers, in arrival order, that N single
//! calls at that instant would get. Offences are counted per refusal as single calls count them: the refusal
//! that reaches `after` blocks the subject, the ones after it find the block. Across replicas nothing changes:
//! every call is still one atomic script on the cell's key with Redis' clock.
//!
//! Waiting: a queued check waits at most the Redis timeout from its arrival; past that it takes the route's
//! failure mode, like a call that timed out (its charge may still land, as a lost answer's does). A call that
//! fails hands `None` to every check it carried, and each applies its own route's mode.

use super::redis_store::{Inner, RateCall};
use super::{CellKey, Gcra, Offences, RateDecision};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

const SHARDS: usize = 16;

/// Where a queued check's decision goes; `None` when Redis did not answer.
pub(super) type Reply = oneshot::Sender<Option<RateDecision>>;

/// A cell with a call in flight and the checks waiting for the next one.
struct Slot {
    /// The call in flight, whose cell and parameters a check must match to join.
    call: Arc<RateCall>,
    queue: Vec<Reply>,
}

/// Keys are keyed SipHash fingerprints already: the memory store's pass-through hasher.
type Slots = HashMap<u64, Slot, BuildHasherDefault<super::memory::Passthrough>>;

/// The cells with a call in flight, sharded so that checks of different cells rarely share a lock.
pub(super) struct Coalescer {
    shards: Box<[Mutex<Slots>]>,
    hasher: RandomState,
}

/// What a check does.
pub(super) enum Join {
    /// No call for the cell is in flight: call Redis now (holding [`Lead`]).
    Lead(u64, Arc<RateCall>),
    /// A call is in flight: the decision comes from the next one.
    Wait(oneshot::Receiver<Option<RateDecision>>),
    /// A call with other parameters holds the cell's place (two limits sharing a name, or a fingerprint
    /// collision): call alone.
    Alone(Arc<RateCall>),
}

impl Default for Coalescer {
    fn default() -> Coalescer {
        Coalescer { shards: (0..SHARDS).map(|_| Mutex::new(Slots::default())).collect(), hasher: RandomState::new() }
    }
}

impl Coalescer {
    fn fp(&self, k: CellKey<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(k.subject.as_bytes());
        h.write_u8(0xff);
        h.write(k.scope.as_bytes());
        h.finish()
    }

    fn shard(&self, fp: u64) -> MutexGuard<'_, Slots> {
        self.shards[(fp >> 59) as usize % SHARDS].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the cell's place when it is free, or queues behind the call in flight. `call` is built only when
    /// this check leads.
    pub(super) fn join(
        &self,
        k: CellKey<'_>,
        gcra: Gcra,
        cost: u32,
        offences: Option<Offences>,
        call: impl FnOnce() -> Arc<RateCall>,
    ) -> Join {
        let fp = self.fp(k);
        let mut shard = self.shard(fp);
        match shard.get_mut(&fp) {
            Some(slot) if slot.call.is_for(k, gcra, cost, offences) => {
                let (tx, rx) = oneshot::channel();
                slot.queue.push(tx);
                Join::Wait(rx)
            }
            Some(_) => {
                drop(shard);
                Join::Alone(call())
            }
            None => {
                let c = call();
                shard.insert(fp, Slot { call: c.clone(), queue: Vec::new() });
                Join::Lead(fp, c)
            }
        }
    }

    /// After a call for the cell: the checks that queued meanwhile (they lead the next call together), or `None`
    /// when nobody did and the place is free again.
    pub(super) fn hand_off(&self, fp: u64) -> Option<Vec<Reply>> {
        let mut shard = self.shard(fp);
        let slot = shard.get_mut(&fp)?;
        if slot.queue.is_empty() {
            shard.remove(&fp);
            return None;
        }
        Some(std::mem::take(&mut slot.queue))
    }

    /// Frees the cell's place, dropping what queued (each of those checks then applies its failure mode).
    fn release(&self, fp: u64) {
        self.shard(fp).remove(&fp);
    }
}

/// The place a leading check holds while its call is in flight. Dropped — when the call returned, or when the
/// request went away mid-call — it passes the queue on to a task that calls for it, so no check waits on a
/// call that nobody makes.
pub(super) struct Lead {
    pub(super) inner: Arc<Inner>,
    pub(super) fp: u64,
    pub(super) call: Arc<RateCall>,
}

impl Drop for Lead {
    fn drop(&mut self) {
        let Some(queue) = self.inner.coalesce.hand_off(self.fp) else { return };
        let drain = Drain { inner: self.inner.clone(), fp: self.fp, call: self.call.clone(), done: false };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(drain.run(queue));
            }
            // No runtime (shutting down): nobody can call; the queued checks apply their failure mode.
            Err(_) => drop(queue),
        }
    }
}

/// Calls for queued checks until the cell's queue stays empty through a call.
struct Drain {
    inner: Arc<Inner>,
    fp: u64,
    call: Arc<RateCall>,
    /// The queue stayed empty and the place was freed (possibly taken since by a new lead).
    done: bool,
}

impl Drain {
    async fn run(mut self, mut queue: Vec<Reply>) {
        loop {
            let n = queue.len() as u32;
            let answer = self.inner.rate_call(&self.call, n).await;
            for (i, tx) in queue.drain(..).enumerate() {
                // A check that gave up waiting has dropped its receiver: nothing to tell it.
                let _ = tx.send(answer.and_then(|a| self.call.decision(a, i as u64)));
            }
            match self.inner.coalesce.hand_off(self.fp) {
                Some(next) => queue = next,
                None => {
                    self.done = true;
                    return;
                }
            }
        }
    }
}

impl Drop for Drain {
    /// A drain dropped mid-call (runtime shutdown) frees the place; one that finished already has.
    fn drop(&mut self) {
        if !self.done {
            self.inner.coalesce.release(self.fp);
        }
    }
}
