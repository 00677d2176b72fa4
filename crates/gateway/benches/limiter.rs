//! The local limiter check: one GCRA decision on the sharded in-memory store. The realistic path builds the
//! subject from the client address on every call (IPv4 /32, IPv6 /64), as a request of a route with
//! `key: ip` does with memory state; `throttle_stage_*` runs the whole stage (`ThrottlePolicy::check`: subject,
//! check, `RateLimit` header value). Target < 100 ns/op for the check with the subject built per call.

use divan::{black_box, Bencher};
use gateway::stages::throttle::{Caller, KeySpec, Limit, LimitKind, ThrottlePolicy};
use gateway::state::memory::{now_ns, MemoryStore};
use gateway::state::{CellKey, FailureMode, Gcra, StateMetrics, Store, Subject};
use http::HeaderMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

fn main() {
    divan::main();
}

/// A limit that never trips (the whole-proxy benchmark's setting), over 1024 clients.
fn setup() -> (MemoryStore, Gcra, Vec<IpAddr>, Vec<IpAddr>) {
    let store = MemoryStore::new(1_000_000, StateMetrics::default());
    let g = Gcra::new(1_000_000_000, Duration::from_secs(1), 1000);
    let v4: Vec<IpAddr> = (0..1024u32).map(|i| IpAddr::from((0xc000_0200u32 + i).to_be_bytes())).collect();
    let v6: Vec<IpAddr> =
        (0..1024u128).map(|i| IpAddr::from(((0x2001_0db8u128 << 96) + (i << 64) + i * 7).to_be_bytes())).collect();
    // Every client seen once before measuring: the steady state of a busy gateway, not the first request of
    // each client (which allocates its cell).
    for ip in v4.iter().chain(&v6) {
        let subject = Subject::ip(*ip, 32, 64);
        store.rate_at(CellKey { scope: "api#0", subject: &subject }, g, 1, None, now_ns());
    }
    (store, g, v4, v6)
}

// 1000 samples: with divan's default 100 the first benchmark of a run is dominated by the machine warming up.
#[divan::bench(sample_count = 1000)]
fn gcra_check_prepared_subject(b: Bencher) {
    let (store, g, ips, _) = setup();
    let subjects: Vec<Subject> = ips.iter().map(|ip| Subject::ip(*ip, 32, 64)).collect();
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) & 1023;
        let key = CellKey { scope: "api#0", subject: &subjects[i] };
        black_box(store.rate_at(key, g, 1, None, now_ns()))
    });
}

// 1000 samples: with divan's default 100 the first benchmark of a run is dominated by the machine warming up.
#[divan::bench(sample_count = 1000)]
fn gcra_check_from_client_ipv4(b: Bencher) {
    let (store, g, ips, _) = setup();
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) & 1023;
        let subject = Subject::ip(black_box(ips[i]), 32, 64);
        let key = CellKey { scope: "api#0", subject: &subject };
        black_box(store.rate_at(key, g, 1, None, now_ns()))
    });
}

// 1000 samples: with divan's default 100 the first benchmark of a run is dominated by the machine warming up.
#[divan::bench(sample_count = 1000)]
fn gcra_check_from_client_ipv6(b: Bencher) {
    let (store, g, _, ips) = setup();
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) & 1023;
        let subject = Subject::ip(black_box(ips[i]), 32, 64);
        let key = CellKey { scope: "api#0", subject: &subject };
        black_box(store.rate_at(key, g, 1, None, now_ns()))
    });
}

#[divan::bench(threads = [2])]
fn gcra_check_contended(b: Bencher) {
    let (store, g, ips, _) = setup();
    b.bench(|| {
        let i = fastrand_index();
        let subject = Subject::ip(black_box(ips[i]), 32, 64);
        let key = CellKey { scope: "api#0", subject: &subject };
        black_box(store.rate_at(key, g, 1, None, now_ns()))
    });
}

fn policy(limits: usize) -> ThrottlePolicy {
    let gcra = Gcra::new(1_000_000_000, Duration::from_secs(1), 1000);
    let limits: Vec<Limit> = (0..limits)
        .map(|n| Limit {
            scope: format!("api#{n}").into(),
            key: if n == 0 { KeySpec::Ip } else { KeySpec::Global },
            kind: LimitKind::Rate { gcra, count: 1_000_000_000, per: Duration::from_secs(1) },
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            offences: None,
            route: "api".into(),
            policy_name: "ip".into(),
        })
        .collect();
    ThrottlePolicy { policy_header: None, limits, cost: 1, on_failure: FailureMode::Local }
}

/// The whole throttle stage on memory state; the store answers without waiting, so one poll completes it.
fn stage(b: Bencher, limits: usize, v6: bool) {
    let (store, _, v4s, v6s) = setup();
    let ips = if v6 { v6s } else { v4s };
    let store = Store::Memory(Arc::new(store));
    let policy = policy(limits);
    let headers = HeaderMap::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) & 1023;
        let caller = Caller { ip: black_box(ips[i]), identity: None, headers: &headers };
        let fut = std::pin::pin!(policy.check(&store, &caller));
        match fut.poll(&mut cx) {
            Poll::Ready(checked) => black_box(checked.ratelimit),
            Poll::Pending => unreachable!("memory state never waits"),
        }
    });
}

#[divan::bench]
fn throttle_stage_one_ip_limit_v4(b: Bencher) {
    stage(b, 1, false);
}

#[divan::bench]
fn throttle_stage_one_ip_limit_v6(b: Bencher) {
    stage(b, 1, true);
}

#[divan::bench]
fn throttle_stage_ip_and_global_limits(b: Bencher) {
    stage(b, 2, false);
}

fn fastrand_index() -> usize {
    use std::cell::Cell;
    thread_local!(static X: Cell<u32> = const { Cell::new(0x9e37_79b9) });
    X.with(|x| {
        let mut v = x.get();
        v ^= v << 13;
        v ^= v >> 17;
        v ^= v << 5;
        x.set(v);
        (v & 1023) as usize
    })
}
