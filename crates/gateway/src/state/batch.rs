//! All the limits of one request, decided together: either every limit passes and every one is charged, or the
//! request is refused and **none** is charged (only the refusing rate limit counts an offence toward a block).
//! Charging the limits that passed before a later one refused would let an attacker who trips one limit drain
//! the others — a shared `global` or `consumer` limit emptied by requests that were refused anyway — and would
//! make legitimate totals drift.
//!
//! - memory ([`super::memory::MemoryStore::check_all_at`]): the shards the request touches are locked in index
//!   order (no deadlock), every limit is applied in order with an undo record, and on a refusal the undo records
//!   are replayed before the locks are released — nobody ever sees the intermediate state;
//! - Redis ([`super::redis_batch`]): one Lua script checks then commits every limit whose keys share a hash tag;
//!   limits on different subjects in a Redis Cluster get a compensating refund (see there).

use super::{CellKey, DistinctDecision, FailureMode, Gcra, Offences, QuotaDecision, RateDecision, Store, Subject};
use super::{Limits, Unavailable};
use smallvec::SmallVec;
use std::time::Duration;

/// Limits of one request kept inline; a route with more spills to the heap.
pub const INLINE: usize = 4;

/// One limit of a request.
#[derive(Debug, Clone, Copy)]
pub enum Check<'a> {
    Rate { key: CellKey<'a>, gcra: Gcra, offences: Option<Offences> },
    Quota { key: CellKey<'a>, window_id: u64, max: u64, reset: Duration },
    Distinct { key: CellKey<'a>, member: &'a Subject, max: u32, window: Duration },
}

impl<'a> Check<'a> {
    pub fn key(&self) -> CellKey<'a> {
        match *self {
            Check::Rate { key, .. } | Check::Quota { key, .. } | Check::Distinct { key, .. } => key,
        }
    }

    /// The same check with its share of the limit, for one of `replicas` instances that cannot coordinate.
    pub fn scaled(self, replicas: u32) -> Check<'a> {
        let replicas = replicas.max(1);
        match self {
            Check::Rate { key, gcra, offences } => Check::Rate { key, gcra: gcra.scaled(replicas), offences },
            Check::Quota { key, window_id, max, reset } => {
                Check::Quota { key, window_id, max: (max / u64::from(replicas)).max(1), reset }
            }
            Check::Distinct { key, member, max, window } => {
                Check::Distinct { key, member, max: max.div_ceil(replicas), window }
            }
        }
    }

    /// What the check says when the failure mode is `open`.
    pub fn open_answer(&self) -> Answer {
        match *self {
            Check::Rate { .. } => Answer::Rate(RateDecision::Allowed { remaining: 0, reset: Duration::ZERO }),
            Check::Quota { reset, .. } => Answer::Quota(QuotaDecision { allowed: true, remaining: 0, reset }),
            Check::Distinct { .. } => Answer::Distinct(DistinctDecision { allowed: true, count: 0 }),
        }
    }
}

/// One limit's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Rate(RateDecision),
    Quota(QuotaDecision),
    Distinct(DistinctDecision),
}

impl Answer {
    pub fn allowed(&self) -> bool {
        match self {
            Answer::Rate(r) => matches!(r, RateDecision::Allowed { .. }),
            Answer::Quota(q) => q.allowed,
            Answer::Distinct(d) => d.allowed,
        }
    }
}

/// The decision on a request's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// Every limit passed and was charged; one answer per check, in order.
    Passed(SmallVec<[Answer; INLINE]>),
    /// `checks[index]` refused (the first that did, in order); nothing was charged.
    Refused { index: usize, answer: Answer },
}

impl Store {
    /// Decides every check together for `cost` units: all charged, or none (see the module docs).
    pub async fn check_all(&self, checks: &[Check<'_>], cost: u32, mode: FailureMode) -> Result<Batch, Unavailable> {
        match self {
            Store::Memory(m) => Ok(m.check_all_at(checks, cost, super::memory::now_ns())),
            Store::Redis(r) => r.check_all(checks, cost, mode).await,
        }
    }

    /// One check on its own, through the backend's single-limit path (no batching cost for one-limit routes).
    pub async fn check_one(&self, check: &Check<'_>, cost: u32, mode: FailureMode) -> Result<Answer, Unavailable> {
        Ok(match *check {
            Check::Rate { key, gcra, offences } => Answer::Rate(self.rate(key, gcra, cost, offences, mode).await?),
            Check::Quota { key, window_id, max, reset } => {
                Answer::Quota(self.quota(key, window_id, max, u64::from(cost), reset, mode).await?)
            }
            Check::Distinct { key, member, max, window } => {
                Answer::Distinct(self.distinct(key, member, max, window, mode).await?)
            }
        })
    }
}
