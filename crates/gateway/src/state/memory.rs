//! The in-memory backend: 64 shards, each a mutex around a map from a 64-bit fingerprint to an entry, so two
//! requests contend only when their keys share a shard. Memory is bounded: a shard that reaches its share of
//! `max_entries` first drops entries whose time is up (an expired rate cell is the same as no cell), then the
//! least recently used tenth; both are counted in `rampart_state_evictions` and logged (at most every 10 s).

use super::batch::{Answer, Batch, Check, INLINE};
use super::{
    BlockEntry, Blocks, CellKey, Counters, DistinctDecision, FailureMode, Gcra, Limits, Nonces, Offences,
    QuotaDecision, RateDecision, StateMetrics, Subject, Unavailable,
};
use smallvec::SmallVec;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const SHARDS: usize = 64;

/// Nanoseconds on a process-wide monotonic clock; never 0.
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Keys are already SipHash fingerprints with a per-process random key; hashing them again would be waste.
#[derive(Default)]
pub(super) struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

enum Value {
    /// GCRA theoretical arrival time.
    Tat(u64),
    Count(u64),
    Flag,
    /// A block, with the label the admin API shows.
    Block(Box<str>),
    /// Fingerprints of the distinct members seen.
    Members(Vec<u64>),
}

struct Entry {
    /// When the entry stops mattering (ns on [`now_ns`]'s clock).
    expires: u64,
    /// Shard tick of the last use, for LRU eviction.
    used: u64,
    value: Value,
}

#[derive(Default)]
struct Shard {
    map: HashMap<u64, Entry, BuildHasherDefault<Passthrough>>,
    tick: u64,
}

/// The default backend: per-instance, sharded, bounded.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    cap_per_shard: usize,
    metrics: StateMetrics,
    /// Blocks created and not yet lifted or swept; lets rate checks skip the block lookup when there are none.
    blocks: AtomicUsize,
    last_eviction_log: AtomicU64,
}

/// The shard from middle bits of the fingerprint: the shard's hash map indexes its buckets by the low bits and
/// tags them with the top 7, so picking shards by the top bits (as before) left every key of a shard with the
/// same tag and made each lookup compare keys that only looked alike.
fn shard_of(fp: u64) -> usize {
    (fp >> 32) as usize % SHARDS
}

/// A change a batch made under its locks, taken back when a later check refuses.
enum Undo {
    /// The entry was created: remove it.
    Remove,
    /// The entry had this expiry and value.
    Restore { expires: u64, value: Prev },
    /// A member was pushed onto the set.
    PopMember,
}

enum Prev {
    Tat(u64),
    Count(u64),
}

/// What a fingerprint is of, so a cell, its block and its offence counter never collide.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Tag {
    Rate = 1,
    Quota,
    Distinct,
    Offence,
    Block,
    Nonce,
    Counter,
}

impl MemoryStore {
    pub fn new(max_entries: usize, metrics: StateMetrics) -> MemoryStore {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect::<Vec<_>>().into_boxed_slice();
        MemoryStore {
            shards,
            hasher: RandomState::new(),
            cap_per_shard: (max_entries / SHARDS).max(16),
            metrics,
            blocks: AtomicUsize::new(0),
            last_eviction_log: AtomicU64::new(0),
        }
    }

    /// The keyed SipHash of `tag, scope, 0xff, subject` and, for quotas only, `extra` (the window; every other
    /// tag has none, and leaving its 8 bytes out saves a SipHash round per check). The scope is UTF-8, which has
    /// no 0xff byte, and `extra` has a fixed width, so the encoding is unambiguous per tag. SipHash streams, so
    /// one write of the bytes laid end to end gives the same value as several writes — and costs one call's
    /// overhead instead of several (this runs on every limit check). Collisions: the key is random per process,
    /// so nobody can aim one, and among a million live cells the chance that any two share a fingerprint is
    /// about 3 in 100 million.
    #[inline]
    fn fp(&self, tag: Tag, scope: &[u8], subject: &[u8], extra: u64) -> u64 {
        let mut h = self.hasher.build_hasher();
        let tail = if matches!(tag, Tag::Quota) { 8 } else { 0 };
        let len = scope.len() + subject.len() + 2 + tail;
        let mut buf = [0u8; 96];
        if len <= buf.len() {
            buf[0] = tag as u8;
            let (s, rest) = buf[1..].split_at_mut(scope.len());
            s.copy_from_slice(scope);
            rest[0] = 0xff;
            let (j, rest) = rest[1..].split_at_mut(subject.len());
            j.copy_from_slice(subject);
            rest[..tail].copy_from_slice(&extra.to_ne_bytes()[..tail]);
            h.write(&buf[..len]);
        } else {
            h.write_u8(tag as u8);
            h.write(scope);
            h.write_u8(0xff);
            h.write(subject);
            if tail > 0 {
                h.write_u64(extra);
            }
        }
        h.finish()
    }

    fn shard(&self, fp: u64) -> MutexGuard<'_, Shard> {
        let m = &self.shards[shard_of(fp)];
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live entry for `fp`, touched for LRU; an expired one is removed.
    fn live(shard: &mut Shard, fp: u64, now: u64) -> Option<&mut Entry> {
        shard.tick += 1;
        let tick = shard.tick;
        if shard.map.get(&fp).is_some_and(|e| e.expires <= now) {
            shard.map.remove(&fp);
            return None;
        }
        let e = shard.map.get_mut(&fp)?;
        e.used = tick;
        Some(e)
    }

    fn insert(&self, shard: &mut Shard, fp: u64, expires: u64, value: Value, now: u64) {
        if shard.map.len() >= self.cap_per_shard && !shard.map.contains_key(&fp) {
            self.evict(shard, now);
        }
        let used = shard.tick;
        shard.map.insert(fp, Entry { expires, used, value });
    }

    /// Makes room in a full shard: expired entries first, then the least recently used tenth (blocks last).
    fn evict(&self, shard: &mut Shard, now: u64) {
        let before = shard.map.len();
        let mut blocks_gone = 0;
        shard.map.retain(|_, e| {
            let keep = e.expires > now;
            if !keep && matches!(e.value, Value::Block(_)) {
                blocks_gone += 1;
            }
            keep
        });
        let idle = before - shard.map.len();
        let mut lru = 0;
        if shard.map.len() >= self.cap_per_shard * 9 / 10 {
            let mut ages: Vec<u64> =
                shard.map.values().filter(|e| !matches!(e.value, Value::Block(_))).map(|e| e.used).collect();
            let n = (self.cap_per_shard / 10).max(1).min(ages.len());
            if n > 0 {
                let (_, cut, _) = ages.select_nth_unstable(n - 1);
                let cut = *cut;
                let len = shard.map.len();
                shard.map.retain(|_, e| matches!(e.value, Value::Block(_)) || e.used > cut);
                lru = len - shard.map.len();
            }
            if shard.map.len() >= self.cap_per_shard {
                // Only blocks left: the oldest go too rather than growing without bound.
                let len = shard.map.len();
                let oldest = shard.map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    shard.map.remove(&k);
                }
                lru += len - shard.map.len();
                blocks_gone += len - shard.map.len();
            }
        }
        if blocks_gone > 0 {
            let _ =
                self.blocks.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(blocks_gone)));
        }
        self.metrics.evicted_idle.inc_by(idle as u64);
        self.metrics.evicted_lru.inc_by(lru as u64);
        let now_ms = now / 1_000_000;
        let last = self.last_eviction_log.load(Ordering::Relaxed);
        if (last == 0 || now_ms.saturating_sub(last) >= 10_000)
            && self
                .last_eviction_log
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(target: "rampart::state", idle, lru, per_shard = self.cap_per_shard, "memory state full: entries evicted (raise state.memory.max_entries if this repeats)");
        }
    }

    /// Entries held, across shards (for tests and the admin view).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |g| g.map.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn block_fp(&self, subject: &Subject) -> u64 {
        self.fp(Tag::Block, b"", subject.as_bytes(), 0)
    }

    fn block_left(&self, subject: &Subject, now: u64) -> Option<Duration> {
        if self.blocks.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let fp = self.block_fp(subject);
        let mut shard = self.shard(fp);
        Self::live(&mut shard, fp, now).map(|e| Duration::from_nanos(e.expires - now))
    }

    fn set_block(&self, subject: &Subject, ttl: Duration, now: u64) {
        let fp = self.block_fp(subject);
        let mut shard = self.shard(fp);
        let fresh = Self::live(&mut shard, fp, now).is_none();
        let expires = now.saturating_add(ttl.as_nanos() as u64);
        self.insert(&mut shard, fp, expires, Value::Block((*subject.label()).into()), now);
        if fresh {
            self.blocks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The rate decision at `now` (ns on [`now_ns`]'s clock); the benchmark and unit tests drive the clock.
    pub fn rate_at(
        &self,
        key: CellKey<'_>,
        gcra: Gcra,
        cost: u32,
        offences: Option<Offences>,
        now: u64,
    ) -> RateDecision {
        if let Some(remaining) = self.block_left(key.subject, now) {
            return RateDecision::Blocked { remaining };
        }
        let fp = self.fp(Tag::Rate, key.scope.as_bytes(), key.subject.as_bytes(), 0);
        let decision = {
            let mut shard = self.shard(fp);
            shard.tick += 1;
            let tick = shard.tick;
            match shard.map.get_mut(&fp) {
                Some(e) => {
                    // An expired cell is a fresh one: `decide` starts from `now` whatever lies in the past.
                    let tat = if let Value::Tat(t) = e.value { t } else { 0 };
                    let (decision, new_tat) = gcra.decide(tat, now, cost);
                    e.used = tick;
                    if let Some(t) = new_tat {
                        e.expires = t;
                        e.value = Value::Tat(t);
                    }
                    decision
                }
                None => {
                    let (decision, new_tat) = gcra.decide(0, now, cost);
                    if let Some(t) = new_tat {
                        self.insert(&mut shard, fp, t, Value::Tat(t), now);
                    }
                    decision
                }
            }
        };
        self.after_refusal(key, decision, offences, now)
    }

    /// Counts a rate refusal toward the subject's offences; the one that reaches `after` blocks it.
    fn after_refusal(
        &self,
        key: CellKey<'_>,
        decision: RateDecision,
        offences: Option<Offences>,
        now: u64,
    ) -> RateDecision {
        match (decision, offences) {
            (RateDecision::Limited { retry_after, .. }, Some(o)) => {
                let n = self.count_at(Tag::Offence, key.scope.as_bytes(), key.subject.as_bytes(), 1, o.within, now);
                if n >= u64::from(o.after) {
                    self.set_block(key.subject, o.block_for, now);
                    let ofp = self.fp(Tag::Offence, key.scope.as_bytes(), key.subject.as_bytes(), 0);
                    self.shard(ofp).map.remove(&ofp);
                    return RateDecision::Limited { retry_after, newly_blocked: true };
                }
                decision
            }
            _ => decision,
        }
    }

    /// Every check of one request at `now`, all charged or none (see [`super::batch`]). The shards involved are
    /// locked in index order; each check is applied in order with an undo record, and a refusal replays the undo
    /// records before the locks go, so no other request ever sees a charge that is taken back.
    pub fn check_all_at(&self, checks: &[Check<'_>], cost: u32, now: u64) -> Batch {
        // Blocks live in their own shards: looked up before the batch's locks are taken.
        for (index, c) in checks.iter().enumerate() {
            if let Check::Rate { key, .. } = c {
                if let Some(remaining) = self.block_left(key.subject, now) {
                    return Batch::Refused { index, answer: Answer::Rate(RateDecision::Blocked { remaining }) };
                }
            }
        }
        let fps: SmallVec<[u64; INLINE]> = checks
            .iter()
            .map(|c| match *c {
                Check::Rate { key, .. } => self.fp(Tag::Rate, key.scope.as_bytes(), key.subject.as_bytes(), 0),
                Check::Quota { key, window_id, .. } => {
                    self.fp(Tag::Quota, key.scope.as_bytes(), key.subject.as_bytes(), window_id)
                }
                Check::Distinct { key, .. } => self.fp(Tag::Distinct, key.scope.as_bytes(), key.subject.as_bytes(), 0),
            })
            .collect();
        let mut order: SmallVec<[usize; INLINE]> = fps.iter().map(|&fp| shard_of(fp)).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: SmallVec<[MutexGuard<'_, Shard>; INLINE]> =
            order.iter().map(|&i| self.shards[i].lock().unwrap_or_else(|p| p.into_inner())).collect();
        let mut undo: SmallVec<[(usize, u64, Undo); INLINE]> = SmallVec::new();
        let mut answers: SmallVec<[Answer; INLINE]> = SmallVec::new();
        let mut refused = None;
        for (index, (check, &fp)) in checks.iter().zip(fps.iter()).enumerate() {
            // Always found: `order` holds the shard of every check.
            let g = order.binary_search(&shard_of(fp)).unwrap_or(0);
            let shard = &mut *guards[g];
            let answer = match *check {
                Check::Rate { gcra, .. } => {
                    shard.tick += 1;
                    let tick = shard.tick;
                    match shard.map.get_mut(&fp) {
                        Some(e) => {
                            let tat = if let Value::Tat(t) = e.value { t } else { 0 };
                            let (decision, new_tat) = gcra.decide(tat, now, cost);
                            if let Some(t) = new_tat {
                                undo.push((g, fp, Undo::Restore { expires: e.expires, value: Prev::Tat(tat) }));
                                e.used = tick;
                                e.expires = t;
                                e.value = Value::Tat(t);
                            }
                            Answer::Rate(decision)
                        }
                        None => {
                            let (decision, new_tat) = gcra.decide(0, now, cost);
                            if let Some(t) = new_tat {
                                self.insert(shard, fp, t, Value::Tat(t), now);
                                undo.push((g, fp, Undo::Remove));
                            }
                            Answer::Rate(decision)
                        }
                    }
                }
                Check::Quota { max, reset, .. } => {
                    let cost = u64::from(cost);
                    match Self::live(shard, fp, now) {
                        Some(Entry { value: Value::Count(c), expires, .. }) => {
                            let used = *c;
                            if used.saturating_add(cost) > max {
                                Answer::Quota(QuotaDecision {
                                    allowed: false,
                                    remaining: max.saturating_sub(used),
                                    reset,
                                })
                            } else {
                                undo.push((g, fp, Undo::Restore { expires: *expires, value: Prev::Count(used) }));
                                *c = used + cost;
                                Answer::Quota(QuotaDecision { allowed: true, remaining: max - used - cost, reset })
                            }
                        }
                        _ if cost > max => Answer::Quota(QuotaDecision { allowed: false, remaining: max, reset }),
                        _ => {
                            let expires = now.saturating_add(reset.as_nanos() as u64);
                            self.insert(shard, fp, expires, Value::Count(cost), now);
                            undo.push((g, fp, Undo::Remove));
                            Answer::Quota(QuotaDecision { allowed: true, remaining: max - cost, reset })
                        }
                    }
                }
                Check::Distinct { member, max, window, .. } => {
                    let m = self.fp(Tag::Distinct, b"member", member.as_bytes(), 0);
                    match Self::live(shard, fp, now) {
                        Some(Entry { value: Value::Members(list), .. }) => {
                            if list.contains(&m) {
                                Answer::Distinct(DistinctDecision { allowed: true, count: list.len() as u32 })
                            } else if list.len() >= max as usize {
                                Answer::Distinct(DistinctDecision { allowed: false, count: list.len() as u32 })
                            } else {
                                list.push(m);
                                undo.push((g, fp, Undo::PopMember));
                                Answer::Distinct(DistinctDecision { allowed: true, count: list.len() as u32 })
                            }
                        }
                        _ if max == 0 => Answer::Distinct(DistinctDecision { allowed: false, count: 0 }),
                        _ => {
                            let expires = now.saturating_add(window.as_nanos() as u64);
                            self.insert(shard, fp, expires, Value::Members(vec![m]), now);
                            undo.push((g, fp, Undo::Remove));
                            Answer::Distinct(DistinctDecision { allowed: true, count: 1 })
                        }
                    }
                }
            };
            if !answer.allowed() {
                refused = Some((index, answer));
                break;
            }
            answers.push(answer);
        }
        let Some((index, answer)) = refused else { return Batch::Passed(answers) };
        for (g, fp, u) in undo.into_iter().rev() {
            let shard = &mut *guards[g];
            match u {
                Undo::Remove => {
                    shard.map.remove(&fp);
                }
                Undo::Restore { expires, value } => {
                    if let Some(e) = shard.map.get_mut(&fp) {
                        e.expires = expires;
                        e.value = match value {
                            Prev::Tat(t) => Value::Tat(t),
                            Prev::Count(c) => Value::Count(c),
                        };
                    }
                }
                Undo::PopMember => {
                    if let Some(Entry { value: Value::Members(list), .. }) = shard.map.get_mut(&fp) {
                        list.pop();
                    }
                }
            }
        }
        drop(guards);
        let answer = match (answer, checks[index]) {
            (Answer::Rate(d), Check::Rate { key, offences, .. }) => {
                Answer::Rate(self.after_refusal(key, d, offences, now))
            }
            _ => answer,
        };
        Batch::Refused { index, answer }
    }

    fn count_at(&self, tag: Tag, scope: &[u8], subject: &[u8], by: u64, window: Duration, now: u64) -> u64 {
        let fp = self.fp(tag, scope, subject, 0);
        let mut shard = self.shard(fp);
        match Self::live(&mut shard, fp, now) {
            Some(Entry { value: Value::Count(c), .. }) => {
                *c = c.saturating_add(by);
                *c
            }
            _ => {
                self.insert(&mut shard, fp, now.saturating_add(window.as_nanos() as u64), Value::Count(by), now);
                by
            }
        }
    }

    pub fn quota_at(
        &self,
        key: CellKey<'_>,
        window_id: u64,
        max: u64,
        cost: u64,
        reset: Duration,
        now: u64,
    ) -> QuotaDecision {
        let fp = self.fp(Tag::Quota, key.scope.as_bytes(), key.subject.as_bytes(), window_id);
        let mut shard = self.shard(fp);
        let used = match Self::live(&mut shard, fp, now) {
            Some(Entry { value: Value::Count(c), .. }) => *c,
            _ => 0,
        };
        if used.saturating_add(cost) > max {
            return QuotaDecision { allowed: false, remaining: max.saturating_sub(used), reset };
        }
        let total = used + cost;
        match Self::live(&mut shard, fp, now) {
            Some(e) => e.value = Value::Count(total),
            None => self.insert(&mut shard, fp, now.saturating_add(reset.as_nanos() as u64), Value::Count(total), now),
        }
        QuotaDecision { allowed: true, remaining: max - total, reset }
    }

    pub fn distinct_at(
        &self,
        key: CellKey<'_>,
        member: &Subject,
        max: u32,
        window: Duration,
        now: u64,
    ) -> DistinctDecision {
        let fp = self.fp(Tag::Distinct, key.scope.as_bytes(), key.subject.as_bytes(), 0);
        let m = self.fp(Tag::Distinct, b"member", member.as_bytes(), 0);
        let mut shard = self.shard(fp);
        match Self::live(&mut shard, fp, now) {
            Some(Entry { value: Value::Members(list), .. }) => {
                if list.contains(&m) {
                    return DistinctDecision { allowed: true, count: list.len() as u32 };
                }
                if list.len() >= max as usize {
                    return DistinctDecision { allowed: false, count: list.len() as u32 };
                }
                list.push(m);
                DistinctDecision { allowed: true, count: list.len() as u32 }
            }
            _ => {
                if max == 0 {
                    return DistinctDecision { allowed: false, count: 0 };
                }
                self.insert(&mut shard, fp, now.saturating_add(window.as_nanos() as u64), Value::Members(vec![m]), now);
                DistinctDecision { allowed: true, count: 1 }
            }
        }
    }

    pub fn set_if_absent_at(&self, key: &str, ttl: Duration, now: u64) -> bool {
        let fp = self.fp(Tag::Nonce, b"", key.as_bytes(), 0);
        let mut shard = self.shard(fp);
        if Self::live(&mut shard, fp, now).is_some() {
            return false;
        }
        self.insert(&mut shard, fp, now.saturating_add(ttl.as_nanos() as u64), Value::Flag, now);
        true
    }

    pub fn incr_window_at(&self, key: &str, by: u64, window: Duration, now: u64) -> u64 {
        self.count_at(Tag::Counter, b"", key.as_bytes(), by, window, now)
    }

    pub fn list_blocks_at(&self, now: u64) -> Vec<BlockEntry> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let shard = s.lock().unwrap_or_else(|p| p.into_inner());
            for e in shard.map.values() {
                if let Value::Block(label) = &e.value {
                    if e.expires > now {
                        out.push(BlockEntry {
                            subject: label.to_string(),
                            remaining_ms: (e.expires - now) / 1_000_000,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }

    pub fn unblock_now(&self, subject: &Subject) -> bool {
        let fp = self.block_fp(subject);
        let removed = self.shard(fp).map.remove(&fp).is_some();
        if removed {
            let _ = self.blocks.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(1)));
        }
        removed
    }
}

impl Limits for MemoryStore {
    async fn rate(
        &self,
        key: CellKey<'_>,
        gcra: Gcra,
        cost: u32,
        offences: Option<Offences>,
        _mode: FailureMode,
    ) -> Result<RateDecision, Unavailable> {
        Ok(self.rate_at(key, gcra, cost, offences, now_ns()))
    }

    async fn quota(
        &self,
        key: CellKey<'_>,
        window_id: u64,
        max: u64,
        cost: u64,
        reset: Duration,
        _mode: FailureMode,
    ) -> Result<QuotaDecision, Unavailable> {
        Ok(self.quota_at(key, window_id, max, cost, reset, now_ns()))
    }

    async fn distinct(
        &self,
        key: CellKey<'_>,
        member: &Subject,
        max: u32,
        window: Duration,
        _mode: FailureMode,
    ) -> Result<DistinctDecision, Unavailable> {
        Ok(self.distinct_at(key, member, max, window, now_ns()))
    }
}

impl Nonces for MemoryStore {
    async fn set_if_absent(&self, key: &str, ttl: Duration, _mode: FailureMode) -> Result<bool, Unavailable> {
        Ok(self.set_if_absent_at(key, ttl, now_ns()))
    }
}

impl Counters for MemoryStore {
    async fn incr_window(&self, key: &str, by: u64, window: Duration, _mode: FailureMode) -> Result<u64, Unavailable> {
        Ok(self.incr_window_at(key, by, window, now_ns()))
    }
}

impl Blocks for MemoryStore {
    async fn block(&self, subject: &Subject, ttl: Duration, _mode: FailureMode) -> Result<(), Unavailable> {
        self.set_block(subject, ttl, now_ns());
        Ok(())
    }
    async fn blocked(&self, subject: &Subject, _mode: FailureMode) -> Result<Option<Duration>, Unavailable> {
        Ok(self.block_left(subject, now_ns()))
    }
    async fn list_blocks(&self) -> Result<Vec<BlockEntry>, Unavailable> {
        Ok(self.list_blocks_at(now_ns()))
    }
    async fn unblock(&self, subject: &Subject) -> Result<bool, Unavailable> {
        Ok(self.unblock_now(subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn store(cap: usize) -> MemoryStore {
        MemoryStore::new(cap, StateMetrics::default())
    }

    #[test]
    fn repeat_offenders_are_blocked_then_listed_and_lifted() {
        let m = store(10_000);
        let ip = Subject::ip("198.51.100.9".parse().unwrap(), 32, 64);
        let key = CellKey { scope: "login", subject: &ip };
        let g = Gcra::new(1, Duration::from_secs(60), 0);
        let o = Offences { after: 2, within: Duration::from_secs(60), block_for: Duration::from_secs(600) };
        assert!(matches!(m.rate_at(key, g, 1, Some(o), S), RateDecision::Allowed { .. }));
        assert!(matches!(m.rate_at(key, g, 1, Some(o), S), RateDecision::Limited { newly_blocked: false, .. }));
        assert!(matches!(m.rate_at(key, g, 1, Some(o), S), RateDecision::Limited { newly_blocked: true, .. }));
        // Blocked even once the rate would allow it again.
        assert!(matches!(m.rate_at(key, g, 1, Some(o), 100 * S), RateDecision::Blocked { .. }));
        let list = m.list_blocks_at(100 * S);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].subject, "ip:198.51.100.9/32");
        assert!(m.unblock_now(&Subject::parse(&list[0].subject).unwrap()));
        assert!(matches!(m.rate_at(key, g, 1, Some(o), 100 * S), RateDecision::Allowed { .. }));
        // A block ends by itself.
        m.set_block(&ip, Duration::from_secs(1), 200 * S);
        assert!(m.block_left(&ip, 200 * S).is_some());
        assert!(m.block_left(&ip, 202 * S).is_none());
    }

    #[test]
    fn nonces_counters_quotas_and_distinct_sets_expire() {
        let m = store(10_000);
        assert!(m.set_if_absent_at("n1", Duration::from_secs(5), S));
        assert!(!m.set_if_absent_at("n1", Duration::from_secs(5), 2 * S), "replay");
        assert!(m.set_if_absent_at("n1", Duration::from_secs(5), 7 * S), "remembered for ttl only");
        assert_eq!(m.incr_window_at("fail:alice", 1, Duration::from_secs(10), S), 1);
        assert_eq!(m.incr_window_at("fail:alice", 2, Duration::from_secs(10), 2 * S), 3);
        assert_eq!(m.incr_window_at("fail:alice", 1, Duration::from_secs(10), 12 * S), 1, "new window");
        let c = Subject::consumer("acme");
        let key = CellKey { scope: "q", subject: &c };
        let day = Duration::from_secs(86_400);
        assert!(m.quota_at(key, 1, 3, 2, day, S).allowed);
        let d = m.quota_at(key, 1, 3, 2, day, S);
        assert_eq!((d.allowed, d.remaining), (false, 1));
        assert!(m.quota_at(key, 1, 3, 1, day, S).allowed);
        assert!(m.quota_at(key, 2, 3, 3, day, S).allowed, "next window starts afresh");
        let ip = Subject::ip("192.0.2.1".parse().unwrap(), 32, 64);
        let key = CellKey { scope: "d", subject: &ip };
        let w = Duration::from_secs(60);
        assert!(m.distinct_at(key, &Subject::consumer("a"), 2, w, S).allowed);
        assert!(m.distinct_at(key, &Subject::consumer("b"), 2, w, S).allowed);
        assert!(m.distinct_at(key, &Subject::consumer("a"), 2, w, S).allowed, "known member");
        assert!(!m.distinct_at(key, &Subject::consumer("c"), 2, w, S).allowed);
        assert!(m.distinct_at(key, &Subject::consumer("c"), 2, w, 100 * S).allowed, "window over");
    }

    #[test]
    fn memory_is_bounded_and_evictions_are_counted() {
        let metrics = StateMetrics::default();
        let m = MemoryStore::new(64 * 100, metrics.clone());
        let g = Gcra::new(1, Duration::from_secs(3600), 0);
        for i in 0..50_000u32 {
            let s = Subject::ip(std::net::IpAddr::from(i.to_be_bytes()), 32, 64);
            m.rate_at(CellKey { scope: "x", subject: &s }, g, 1, None, S + u64::from(i));
        }
        assert!(m.len() <= 64 * 100, "{}", m.len());
        assert!(metrics.evicted_lru.get() > 0);
        // Entries whose time is up go first.
        let m = MemoryStore::new(64 * 100, metrics.clone());
        let g = Gcra::new(1000, Duration::from_secs(1), 0);
        for i in 0..50_000u32 {
            let s = Subject::ip(std::net::IpAddr::from(i.to_be_bytes()), 32, 64);
            m.rate_at(CellKey { scope: "x", subject: &s }, g, 1, None, S + u64::from(i) * 10_000_000);
        }
        assert!(metrics.evicted_idle.get() > 0);
    }
}
