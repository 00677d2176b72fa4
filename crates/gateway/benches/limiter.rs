//! The local limiter check: one GCRA decision on the sharded in-memory store, and the same with the subject
//! derived from a client IP first (what a request pays for `key: ip` with memory state). Target < 100 ns/op.

use divan::{black_box, Bencher};
use gateway::state::memory::{now_ns, MemoryStore};
use gateway::state::{CellKey, Gcra, StateMetrics, Subject};
use std::net::IpAddr;
use std::time::Duration;

fn main() {
    divan::main();
}

/// A limit that never trips (the whole-proxy benchmark's setting), over 1024 clients.
fn setup() -> (MemoryStore, Gcra, Vec<IpAddr>) {
    let store = MemoryStore::new(1_000_000, StateMetrics::default());
    let g = Gcra::new(1_000_000_000, Duration::from_secs(1), 1000);
    let ips = (0..1024u32).map(|i| IpAddr::from((0xc000_0200u32 + i).to_be_bytes())).collect();
    (store, g, ips)
}

#[divan::bench]
fn gcra_check_prepared_subject(b: Bencher) {
    let (store, g, ips) = setup();
    let subjects: Vec<Subject> = ips.iter().map(|ip| Subject::ip(*ip, 32, 64)).collect();
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) & 1023;
        let key = CellKey { scope: "api#0", subject: &subjects[i] };
        black_box(store.rate_at(key, g, 1, None, now_ns()))
    });
}

#[divan::bench]
fn gcra_check_from_client_ip(b: Bencher) {
    let (store, g, ips) = setup();
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
    let (store, g, ips) = setup();
    let subjects: Vec<Subject> = ips.iter().map(|ip| Subject::ip(*ip, 32, 64)).collect();
    b.bench(|| {
        let i = fastrand_index();
        let key = CellKey { scope: "api#0", subject: &subjects[i] };
        black_box(store.rate_at(key, g, 1, None, now_ns()))
    });
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
