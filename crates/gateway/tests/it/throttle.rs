//! Throttle stage end to end: limits that path spelling and spoofed headers cannot dodge, limits shared by two
//! gateways through a real Redis, Redis failures handled by the declared mode, blocks, quotas, load shedding.

use crate::testkit::*;
use gateway::state::{
    Blocks, CellKey, Counters, FailureMode, Gcra, Limits, Nonces, Offences, RateDecision, StateSpec, Store, Subject,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn limited(path: &str, limit: &str, extra: &str) -> String {
    format!("  - {{ path: \"{path}\", methods: [ANY], upstream: app, auth: none, limits: [{limit}] {extra} }}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_spelling_cannot_escape_a_route_limit() {
    let up = TestUpstream::start().await;
    let routes = limited("/login", "{ key: ip, rate: 5/min, burst: 4 }", "") + all_routes();
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), &routes, "")).await;
    let mut passed = 0;
    for spelling in
        ["/login", "/Login", "/login/", "/%6cogin", "/LOGIN", "/x/../login", "//login", "/%6C%6F%67%69%6E", "/./login"]
    {
        let got = get(gw.addr(), spelling).await;
        match got.status {
            200 => passed += 1,
            429 => {
                assert_eq!(got.code(), "throttle.rate_limited");
                assert!(got.headers.contains_key("retry-after"));
                assert_eq!(got.headers["ratelimit-policy"], "\"ip\";q=5;w=60");
                assert!(got.headers["ratelimit"].to_str().unwrap().starts_with("\"ip\";r=0;t="));
            }
            s => panic!("{spelling}: {s} {}", got.text()),
        }
    }
    assert_eq!(passed, 5, "every spelling counts against /login's limit");
    assert_eq!(up.hits(), 5);
    // Other paths are not limited.
    assert_eq!(get(gw.addr(), "/logout").await.status, 200);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_headers_from_an_untrusted_peer_change_nothing() {
    let up = TestUpstream::start().await;
    let routes = limited("/*", "{ key: ip, rate: 3/min, burst: 2 }", "");
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), &routes, "")).await;
    let mut passed = 0;
    for i in 0..12 {
        let ip = format!("198.51.100.{i}");
        let fwd = format!("for={ip}");
        let got = get_with(gw.addr(), "/x", &[("x-forwarded-for", &ip), ("x-real-ip", &ip), ("forwarded", &fwd)]).await;
        if got.status == 200 {
            let allowed = got.headers["ratelimit"].to_str().unwrap().to_string();
            assert!(allowed.starts_with("\"ip\";r="), "{allowed}");
            passed += 1;
        }
    }
    assert_eq!(passed, 3, "spoofed client addresses must not buy more requests");
    gw.handle.shutdown().await;

    // The control: behind a trusted proxy the forwarded address is the client, so each gets its own allowance.
    let extra = "trusted_proxies: [127.0.0.1/32]";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), &routes, extra)).await;
    let mut passed = 0;
    for i in 0..12 {
        let ip = format!("198.51.100.{i}");
        if get_with(gw.addr(), "/x", &[("x-forwarded-for", &ip)]).await.status == 200 {
            passed += 1;
        }
    }
    assert_eq!(passed, 12);
    gw.handle.shutdown().await;
}

/// Sends `total` requests from `workers` keep-alive connections spread over `addrs`; returns (passed, limited).
async fn load(addrs: &[std::net::SocketAddr], path: &str, total: usize, workers: usize) -> (usize, usize) {
    let ok = Arc::new(AtomicUsize::new(0));
    let limited = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let addr = addrs[w % addrs.len()];
        let (ok, limited, path) = (ok.clone(), limited.clone(), path.to_string());
        let n = total / workers;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            for _ in 0..n {
                match c.get(&path, &[]).await.status {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => limited.fetch_add(1, Ordering::Relaxed),
                    s => panic!("unexpected status {s}"),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_allow_the_configured_total() {
    let redis = TestRedis::start();
    let up = TestUpstream::start().await;
    // 500 per hour, all available at once: refill during the test is negligible, so the total is exact.
    let routes = limited("/*", "{ key: ip, rate: 500/h, burst: 499 }", "");
    let extra = format!("state: {{ redis: \"{}\", timeout: 500ms }}", redis.url());
    let a = TestGateway::start(&config(&one_upstream(&up.url()), &routes, &extra)).await;
    let b = TestGateway::start(&config(&one_upstream(&up.url()), &routes, &extra)).await;
    wait_state_healthy(&a).await;
    wait_state_healthy(&b).await;
    let (passed, refused) = load(&[a.addr(), b.addr()], "/items", 1200, 24).await;
    assert_eq!(passed + refused, 1200);
    assert!((490..=510).contains(&passed), "two replicas allowed {passed} of a shared 500 (±2%)");
    assert!(a.handle.runtime().state.healthy() && b.handle.runtime().state.healthy(), "Redis stayed up: no fallback");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_failure_applies_the_declared_mode_quickly_and_recovers() {
    let mut redis = TestRedis::start();
    let up = TestUpstream::start().await;
    let limit = "{ key: ip, rate: 2/h, burst: 1 }";
    let routes = limited("/open", limit, ", limits_on_failure: open")
        + &limited("/closed", limit, ", limits_on_failure: closed")
        + &limited("/local", limit, "");
    let timeout = Duration::from_millis(100);
    let extra = format!("state: {{ redis: \"{}\", timeout: 100ms, replicas: 2 }}", redis.url());
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), &routes, &extra)).await;
    wait_state_healthy(&gw).await;
    let statuses = |path: &'static str, n: usize| {
        let addr = gw.addr();
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                let got = get(addr, path).await;
                assert!(t.elapsed() < timeout + Duration::from_secs(1), "{path} took {:?}", t.elapsed());
                out.push(if got.status == 200 { "ok".to_string() } else { got.code() });
            }
            out
        }
    };
    for p in ["/open", "/closed", "/local"] {
        assert_eq!(statuses(p, 3).await, ["ok", "ok", "throttle.rate_limited"], "{p} with Redis up");
    }

    // Frozen Redis: connections stay open, nothing answers. No request waits past the timeout.
    redis.signal("-STOP");
    assert_eq!(statuses("/closed", 2).await, ["throttle.state_unavailable", "throttle.state_unavailable"]);
    assert!(!gw.handle.runtime().state.healthy());
    redis.signal("-CONT");
    wait_state_healthy(&gw).await;
    assert_eq!(statuses("/closed", 1).await, ["throttle.rate_limited"], "Redis state is back");

    // Killed Redis.
    redis.kill();
    assert_eq!(statuses("/open", 4).await, ["ok"; 4]);
    assert_eq!(statuses("/closed", 2).await, ["throttle.state_unavailable"; 2]);
    // local: this instance's share of 2 replicas: half the rate and half the burst (one at once).
    assert_eq!(statuses("/local", 3).await, ["ok", "throttle.rate_limited", "throttle.rate_limited"]);
    let metrics = gw.handle.metrics().encode();
    assert!(metrics.contains("rampart_state_redis_up 0"), "{metrics}");
    assert!(metrics.contains("rampart_state_transitions_total{event=\"degraded\"}"), "{metrics}");
    assert!(metrics.contains("rampart_state_fallbacks_total{mode=\"closed\"}"), "{metrics}");

    redis.restart();
    wait_state_healthy(&gw).await;
    // The restarted Redis is empty: shared limits start afresh.
    assert_eq!(statuses("/closed", 3).await, ["ok", "ok", "throttle.rate_limited"]);
    let metrics = gw.handle.metrics().encode();
    assert!(metrics.contains("rampart_state_redis_up 1"), "{metrics}");
    assert!(metrics.contains("rampart_state_transitions_total{event=\"recovered\"}"), "{metrics}");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_offenders_are_blocked_on_every_replica_and_the_admin_api_lifts_it() {
    let redis = TestRedis::start();
    let up = TestUpstream::start().await;
    std::env::set_var("THROTTLE_TEST_ADMIN_TOKEN", "0123456789abcdef0123");
    let routes = limited("/*", "{ key: ip, rate: 1/h, block: { after: 2, within: 1m, for: 10m } }", "");
    let extra = format!(
        "state: {{ redis: \"{}\", timeout: 500ms }}\nadmin: {{ addr: \"127.0.0.1:0\", token_env: THROTTLE_TEST_ADMIN_TOKEN }}",
        redis.url()
    );
    let a = TestGateway::start(&config(&one_upstream(&up.url()), &routes, &extra)).await;
    let b = TestGateway::start(&config(&one_upstream(&up.url()), &routes, &extra)).await;
    wait_state_healthy(&a).await;
    wait_state_healthy(&b).await;
    assert_eq!(get(a.addr(), "/x").await.status, 200);
    assert_eq!(get(a.addr(), "/x").await.code(), "throttle.rate_limited");
    assert_eq!(get(a.addr(), "/x").await.code(), "throttle.rate_limited");
    let got = get(b.addr(), "/x").await;
    assert_eq!(got.code(), "throttle.blocked", "the block is shared through Redis");
    assert!(got.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 500);

    let admin = b.handle.admin_addr.unwrap();
    let auth = ("authorization", "Bearer 0123456789abcdef0123");
    assert_eq!(get(admin, "/blocks").await.status, 401, "the admin token is required");
    let list = get_with(admin, "/blocks", &[auth]).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.json()["blocks"][0]["subject"], "ip:127.0.0.1/32");
    assert_eq!(call(admin, "DELETE", "/blocks/ip:127.0.0.1%2F32", &[], "").await.status, 401);
    let lifted = call(admin, "DELETE", "/blocks/ip:127.0.0.1%2F32", &[auth], "").await;
    assert_eq!(lifted.status, 200, "{}", lifted.text());
    assert_eq!(get_with(admin, "/blocks", &[auth]).await.json()["blocks"], serde_json::json!([]));
    assert_eq!(get(a.addr(), "/x").await.code(), "throttle.rate_limited", "no longer blocked, still limited");
    assert_eq!(call(admin, "DELETE", "/blocks/ip:127.0.0.1%2F32", &[auth], "").await.status, 404);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_costs_count_units() {
    let up = TestUpstream::start().await;
    let routes = limited("/report", "{ key: ip, quota: 10/day }", ", cost: 3")
        + &limited("/*", "{ key: ip, quota: 10/day, name: shared }", "");
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), &routes, "")).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        let got = get(gw.addr(), "/report").await;
        codes.push(got.status);
        if got.status == 429 {
            assert_eq!(got.code(), "throttle.quota_exceeded");
            let retry: u64 = got.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry > 0 && retry <= 86_400);
            assert!(got.headers["ratelimit"].to_str().unwrap().contains(";r=1;"), "{:?}", got.headers);
        }
    }
    assert_eq!(codes, [200, 200, 200, 429], "a cost of 3 against 10 units");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shedding_refuses_fast_beyond_in_flight_and_queue() {
    let up = TestUpstream::start().await;
    let routes = "  - { path: \"/*\", methods: [ANY], upstream: app, auth: none, load_shedding: { max_in_flight: 2, queue: 1, queue_timeout: 100ms } }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    let addr = gw.addr();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.push(tokio::spawn(async move { get(addr, "/slow?ms=800").await }));
    }
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        let got = t.await.unwrap();
        match got.status {
            200 => ok += 1,
            503 => {
                assert_eq!(got.code(), "throttle.overload");
                assert_eq!(got.headers["retry-after"], "1");
                shed += 1;
            }
            s => panic!("{s}"),
        }
    }
    assert_eq!((ok, shed), (2, 4), "two in flight; the queued one times out; the rest are refused at once");
    assert_eq!(get(addr, "/fast").await.status, 200, "places are given back");
    gw.handle.shutdown().await;
}

/// A response whose head went back but whose body still streams keeps its place: the upstream is still busy.
/// The place comes back when the body ends, or when the client goes away mid-body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shedding_holds_places_until_the_response_body_ends() {
    use http_body_util::BodyExt;
    let up = TestUpstream::start().await;
    let routes = "  - { path: \"/*\", methods: [ANY], upstream: app, auth: none, load_shedding: { max_in_flight: 1, queue: 0 } }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    let addr = gw.addr();
    // 20 chunks 50 ms apart: the head comes at once, the body takes about a second.
    let streaming = get_head(addr, "/stream?chunks=20&ms=50").await;
    assert_eq!(streaming.status(), 200);
    let refused = get(addr, "/fast").await;
    assert_eq!((refused.status, refused.code()), (503, "throttle.overload".to_string()), "body still streaming");
    let body = streaming.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"chunk19;"), "the whole body went through");
    assert_eq!(wait_for_status(addr, "/fast", 200).await, 200, "the place comes back when the body ends");

    // A client that leaves mid-body gives its place back too.
    let mut streaming = get_head(addr, "/stream?chunks=200&ms=50").await;
    assert!(streaming.body_mut().frame().await.is_some());
    assert_eq!(get(addr, "/fast").await.status, 503);
    drop(streaming);
    assert_eq!(wait_for_status(addr, "/fast", 200).await, 200, "the place comes back when the client goes away");
    gw.handle.shutdown().await;
}

/// Repeats `GET path` until it answers `want` (at most 5 s), returning the last status.
async fn wait_for_status(addr: std::net::SocketAddr, path: &str, want: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = get(addr, path).await.status;
        if status == want || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_example_serves_and_limits_with_memory_and_redis() {
    let redis = TestRedis::start();
    let up = TestUpstream::start().await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rate-limit.yaml");
    std::env::set_var("RAMPART_LISTEN", "127.0.0.1:0");
    std::env::set_var("RAMPART_UPSTREAM", up.url());
    std::env::set_var("RAMPART_IP_RATE", "3/min");
    std::env::set_var("RAMPART_IP_BURST", "2");
    for state in ["memory".to_string(), redis.url()] {
        std::env::set_var("RAMPART_STATE", &state);
        let handle = gateway::server::Gateway::start(gateway::config::Source::File(file.clone()), Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rt = handle.runtime();
        assert_eq!(rt.state.kind(), if state == "memory" { "memory" } else { "redis" });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !rt.state.healthy() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let addr = handle.addrs[0];
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(call(addr, "GET", "/api/items", &[("host", "api.example.test")], "").await.status);
        }
        assert_eq!(statuses, [200, 200, 200, 429], "state {state}");
        handle.shutdown().await;
    }
}

/// A Redis state spec that fails closed, with a short timeout (for tests of the state API itself).
fn closed_redis(urls: Vec<String>, cluster: bool) -> StateSpec {
    StateSpec::Redis(gateway::state::RedisSpec {
        urls,
        cluster,
        timeout: Duration::from_millis(500),
        on_failure: FailureMode::Closed,
        replicas: 1,
        max_entries: 10_000,
    })
}

/// The state API the identity stage reuses (nonces, lockout counters, blocks), the same on both backends — one
/// Redis and a three-node cluster (each key's slot picks its node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_operations_behave_the_same_on_memory_and_redis() {
    let redis = TestRedis::start();
    let cluster = TestRedisCluster::start();
    let metrics = gateway::metrics::Metrics::new();
    let stores = [
        Store::build(&StateSpec::Memory { max_entries: 10_000 }, metrics.state_metrics()).unwrap(),
        Store::build(&closed_redis(vec![redis.url()], false), metrics.state_metrics()).unwrap(),
        Store::build(&closed_redis(vec![cluster.seed()], true), metrics.state_metrics()).unwrap(),
    ];
    let m = FailureMode::Closed;
    for s in &stores {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.healthy() {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kind = s.kind();
        let nonce = format!("nonce-{kind}");
        assert!(s.set_if_absent(&nonce, Duration::from_millis(300), m).await.unwrap(), "{kind}");
        assert!(!s.set_if_absent(&nonce, Duration::from_millis(300), m).await.unwrap(), "{kind}: replay");
        assert_eq!(s.incr_window("fail:bob", 1, Duration::from_millis(300), m).await.unwrap(), 1, "{kind}");
        assert_eq!(s.incr_window("fail:bob", 2, Duration::from_millis(300), m).await.unwrap(), 3, "{kind}");
        let bob = Subject::consumer("bob");
        assert_eq!(s.blocked(&bob, m).await.unwrap(), None);
        s.block(&bob, Duration::from_millis(300), m).await.unwrap();
        assert!(s.blocked(&bob, m).await.unwrap().is_some(), "{kind}");
        let list = s.list_blocks().await.unwrap();
        assert_eq!(list.iter().map(|b| b.subject.as_str()).collect::<Vec<_>>(), ["consumer:bob"], "{kind}");
        let ip = Subject::ip("192.0.2.1".parse().unwrap(), 32, 64);
        let key = CellKey { scope: "t", subject: &ip };
        let w = Duration::from_secs(60);
        assert!(s.distinct(key, &Subject::consumer("a"), 2, w, m).await.unwrap().allowed);
        assert!(s.distinct(key, &Subject::consumer("b"), 2, w, m).await.unwrap().allowed);
        assert!(s.distinct(key, &Subject::consumer("a"), 2, w, m).await.unwrap().allowed, "{kind}: known");
        assert!(!s.distinct(key, &Subject::consumer("c"), 2, w, m).await.unwrap().allowed, "{kind}: third");
        let g = Gcra::new(1, Duration::from_secs(60), 1);
        let o = Some(Offences { after: 1, within: w, block_for: Duration::from_millis(300) });
        let rkey = CellKey { scope: "r", subject: &ip };
        assert!(
            matches!(s.rate(rkey, g, 2, o, m).await.unwrap(), RateDecision::Allowed { remaining: 0, .. }),
            "{kind}"
        );
        assert!(
            matches!(s.rate(rkey, g, 1, o, m).await.unwrap(), RateDecision::Limited { newly_blocked: true, .. }),
            "{kind}"
        );
        assert!(matches!(s.rate(rkey, g, 1, o, m).await.unwrap(), RateDecision::Blocked { .. }), "{kind}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(s.set_if_absent(&nonce, Duration::from_millis(300), m).await.unwrap(), "{kind}: expired");
        assert_eq!(s.incr_window("fail:bob", 1, Duration::from_millis(300), m).await.unwrap(), 1, "{kind}: new window");
        assert_eq!(s.blocked(&bob, m).await.unwrap(), None, "{kind}: block ended");
        assert!(s.list_blocks().await.unwrap().is_empty(), "{kind}");
        s.block(&bob, Duration::from_secs(60), m).await.unwrap();
        assert!(s.unblock(&bob).await.unwrap());
        assert!(!s.unblock(&bob).await.unwrap());
    }
}

/// Three masters, the client given one seed: limits, quotas, distinct sets, blocks and a route whose limits sit
/// on different nodes (all-or-nothing across them), through real sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_quotas_and_blocks_work_on_a_three_node_redis_cluster() {
    let cluster = TestRedisCluster::start();
    // Subjects whose keys the test needs on different nodes (the slot comes from the `{…}` tag).
    let tenant_tag = |t: &str| {
        let label = Subject::header("x-tenant", t.as_bytes()).label().to_string();
        cluster.node_of(&format!("{{{label}}}"))
    };
    let ip_node = cluster.node_of("{ip:127.0.0.1/32}");
    let global_node = cluster.node_of("{global}");
    let tenants: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
    let far = |n: usize| tenants.iter().find(|t| tenant_tag(t) != n).unwrap().clone();
    // t1's cells and the pool's are on different nodes; t2's are not on the IP's node.
    let (t1, t2) = (far(global_node), far(ip_node));

    let up = TestUpstream::start().await;
    let routes = limited("/r", "{ key: ip, rate: 2/h, burst: 1, block: { after: 1, within: 1m, for: 1m } }", "")
        + &limited("/q", "{ key: \"header:X-Tenant\", quota: 2/day }", "")
        + &limited(
            "/both",
            "{ key: global, rate: 3/h, burst: 2, name: pool }, { key: \"header:X-Tenant\", rate: 1/h, name: each }",
            "",
        );
    let extra = format!("state: {{ redis_cluster: [\"{}\"], timeout: 500ms, on_failure: closed }}", cluster.seed());
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), &routes, &extra)).await;
    wait_state_healthy(&gw).await;
    let addr = gw.addr();
    let code = |got: Got| if got.status == 200 { "ok".to_string() } else { got.code() };

    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(code(get(addr, "/r").await));
    }
    assert_eq!(codes, ["ok", "ok", "throttle.rate_limited", "throttle.blocked"]);

    let mut codes = Vec::new();
    for t in [&t1, &t2, &t1, &t2, &t1] {
        codes.push(code(get_with(addr, "/q", &[("x-tenant", t)]).await));
    }
    assert_eq!(codes, ["ok", "ok", "ok", "ok", "throttle.quota_exceeded"], "one quota per tenant");

    // `pool` (tag {global}) and `each` (tag {header:…}) sit on different nodes: a request refused by `each` must
    // not keep the `pool` unit it took first.
    assert_eq!(code(get_with(addr, "/both", &[("x-tenant", &t1)]).await), "ok");
    for _ in 0..4 {
        assert_eq!(code(get_with(addr, "/both", &[("x-tenant", &t1)]).await), "throttle.rate_limited");
    }
    assert_eq!(code(get_with(addr, "/both", &[("x-tenant", &t2)]).await), "ok", "the pool was not drained");
    assert_eq!(code(get_with(addr, "/both", &[("x-tenant", "other")]).await), "ok");
    assert_eq!(code(get_with(addr, "/both", &[("x-tenant", "fourth")]).await), "throttle.rate_limited", "pool: 3");

    let keys = cluster.keys_by_node("rampart:*");
    let used = keys.iter().filter(|k| k.contains("rampart:")).count();
    assert!(used >= 2, "keys on at least two nodes: {keys:?}");
    assert!(keys[ip_node].contains("rampart:blk:{ip:127.0.0.1/32}"), "hash-tagged block key on its node");
    gw.handle.shutdown().await;
}

/// A refused request charges none of the route's limits, through real sockets, with memory and Redis state:
/// a tenant over its own limit cannot drain the shared pool that comes first in the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_charges_none_of_the_route_limits() {
    let redis = TestRedis::start();
    let up = TestUpstream::start().await;
    let routes = limited(
        "/*",
        "{ key: global, rate: 3/h, burst: 2, name: pool }, { key: \"header:X-Tenant\", quota: 1/day, name: each }",
        "",
    );
    for state in ["memory".to_string(), redis.url()] {
        let extra = format!("state: \"{state}\"");
        let gw = TestGateway::start(&config(&one_upstream(&up.url()), &routes, &extra)).await;
        wait_state_healthy(&gw).await;
        let addr = gw.addr();
        assert_eq!(get_with(addr, "/x", &[("x-tenant", "a")]).await.status, 200);
        for _ in 0..5 {
            let got = get_with(addr, "/x", &[("x-tenant", "a")]).await;
            assert_eq!(got.code(), "throttle.quota_exceeded", "{state}");
        }
        for t in ["b", "c"] {
            let got = get_with(addr, "/x", &[("x-tenant", t)]).await;
            assert_eq!(got.status, 200, "{state}: tenant {t} must find the pool untouched by a's refusals");
        }
        assert_eq!(get_with(addr, "/x", &[("x-tenant", "d")]).await.code(), "throttle.rate_limited", "{state}");
        gw.handle.shutdown().await;
    }
}

/// The batch API itself on memory, one Redis and a three-node cluster: a refusal by any limit leaves GCRA cells,
/// quota counters and distinct sets as they were — including limits on other subjects (other cluster nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_charge_all_or_nothing_on_every_backend() {
    use gateway::state::batch::{Answer, Batch, Check};
    let redis = TestRedis::start();
    let cluster = TestRedisCluster::start();
    let metrics = gateway::metrics::Metrics::new();
    let stores = [
        ("memory", Store::build(&StateSpec::Memory { max_entries: 10_000 }, metrics.state_metrics()).unwrap()),
        ("redis", Store::build(&closed_redis(vec![redis.url()], false), metrics.state_metrics()).unwrap()),
        ("cluster", Store::build(&closed_redis(vec![cluster.seed()], true), metrics.state_metrics()).unwrap()),
    ];
    let m = FailureMode::Closed;
    let day = Duration::from_secs(86_400);
    let hour = Duration::from_secs(3600);
    let once = Gcra::new(1, hour, 0);
    for (kind, s) in &stores {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.healthy() {
            assert!(Instant::now() < deadline, "{kind}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ip = Subject::ip("192.0.2.1".parse().unwrap(), 32, 64);
        let all = Subject::global();
        let (m1, m2) = (Subject::consumer("m1"), Subject::consumer("m2"));
        let d =
            |scope, member, max| Check::Distinct { key: CellKey { scope, subject: &ip }, member, max, window: hour };
        let q = |subject| Check::Quota { key: CellKey { scope: "q", subject }, window_id: 1, max: 2, reset: day };
        let r = |scope, subject| Check::Rate { key: CellKey { scope, subject }, gcra: once, offences: None };

        let first = s.check_all(&[d("d", &m1, 1), q(&all), r("r", &ip)], 1, m).await.unwrap();
        assert!(
            matches!(first, Batch::Passed(ref a) if a.len() == 3 && a.iter().all(Answer::allowed)),
            "{kind}: {first:?}"
        );
        // The distinct set is full (m2 refused first); then the rate limit refuses (last): nothing charged.
        let refused = s.check_all(&[d("d", &m2, 1), q(&all)], 1, m).await.unwrap();
        assert!(matches!(refused, Batch::Refused { index: 0, .. }), "{kind}: {refused:?}");
        let refused = s.check_all(&[q(&all), d("d", &m1, 1), r("r", &ip)], 1, m).await.unwrap();
        assert!(matches!(refused, Batch::Refused { index: 2, answer: Answer::Rate(_) }), "{kind}: {refused:?}");
        // The quota (on another subject, another node in the cluster) still has its second unit, then no more.
        let quota = s.check_all(&[q(&all), d("d", &m1, 1)], 1, m).await.unwrap();
        assert!(
            matches!(&quota, Batch::Passed(a) if a[0] == Answer::Quota(gateway::state::QuotaDecision { allowed: true, remaining: 0, reset: day })),
            "{kind}: {quota:?}"
        );
        // A member added before a refusal on another subject is taken out again.
        let g = r("g", &all);
        assert!(matches!(s.check_all(&[g, d("d2", &m1, 2)], 1, m).await.unwrap(), Batch::Passed(_)), "{kind}");
        let refused = s.check_all(&[d("d3", &m1, 1), g], 1, m).await.unwrap();
        assert!(matches!(refused, Batch::Refused { index: 1, .. }), "{kind}: {refused:?}");
        let other = s.check_all(&[d("d3", &m2, 1), r("r3", &ip)], 1, m).await.unwrap();
        assert!(matches!(other, Batch::Passed(_)), "{kind}: m1 must not hold d3's only place: {other:?}");
        // The rate cell a refused batch charged first is as it was: one more pass, then refused.
        let refused = s.check_all(&[r("r4", &all), r("r", &ip)], 1, m).await.unwrap();
        assert!(matches!(refused, Batch::Refused { index: 1, .. }), "{kind}: {refused:?}");
        assert!(matches!(s.check_all(&[r("r4", &all), r("r5", &ip)], 1, m).await.unwrap(), Batch::Passed(_)), "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_limit_state() {
    let up = TestUpstream::start().await;
    let routes = limited("/*", "{ key: ip, rate: 2/h, burst: 1 }", "");
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), &routes, "")).await;
    assert_eq!(get(gw.addr(), "/a").await.status, 200);
    assert_eq!(get(gw.addr(), "/a").await.status, 200);
    // Same `state:`, another route added: the cells survive the reload.
    let more = routes.clone() + "  - { path: /other, methods: [GET], upstream: app, auth: none }\n";
    std::fs::write(&gw.config, config(&one_upstream(&up.url()), &more, "")).unwrap();
    gw.handle.reload().await.unwrap();
    assert_eq!(get(gw.addr(), "/other").await.status, 200);
    assert_eq!(get(gw.addr(), "/a").await.code(), "throttle.rate_limited", "a reload must not reset limits");
    gw.handle.shutdown().await;
}

/// Checks of one Redis cell in flight at once share script calls — one call charges the queued requests
/// together — and are decided exactly as one-by-one calls would be: the allowance and no more, each admitted
/// request one step further into the burst, offences and the block counted per refusal. On one Redis and on a
/// three-node cluster. A frozen Redis answers none of them within the timeout: each takes the failure mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_of_one_cell_share_calls_and_are_decided_exactly() {
    let redis = TestRedis::start();
    let cluster = TestRedisCluster::start();
    let metrics = gateway::metrics::Metrics::new();
    let stores = [
        ("redis", Store::build(&closed_redis(vec![redis.url()], false), metrics.state_metrics()).unwrap()),
        ("cluster", Store::build(&closed_redis(vec![cluster.seed()], true), metrics.state_metrics()).unwrap()),
    ];
    let script_calls = |kind: &str| match kind {
        "redis" => redis.calls("evalsha"),
        _ => cluster.nodes.iter().map(|n| n.calls("evalsha")).sum(),
    };
    let m = FailureMode::Closed;
    for (kind, s) in &stores {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.healthy() {
            assert!(Instant::now() < deadline, "{kind}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // 100 per hour, all at once; 400 checks in flight together.
        let ip = Subject::ip("192.0.2.7".parse().unwrap(), 32, 64);
        let key = CellKey { scope: "hot", subject: &ip };
        let g = Gcra::new(100, Duration::from_secs(3600), 99);
        let before = script_calls(kind);
        let decisions = join_in_order((0..400).map(|_| s.rate(key, g, 1, None, m)).collect()).await;
        let calls = script_calls(kind) - before;
        assert!(calls < 40, "{kind}: {calls} script calls for 400 concurrent checks of one cell");
        let mut remaining: Vec<u64> = decisions
            .iter()
            .filter_map(|d| match d {
                Ok(RateDecision::Allowed { remaining, .. }) => Some(*remaining),
                _ => None,
            })
            .collect();
        assert_eq!(remaining.len(), 100, "{kind}: exactly the allowance passes");
        assert!(decisions[..100].iter().all(|d| matches!(d, Ok(RateDecision::Allowed { .. }))), "{kind}: in order");
        assert!(decisions[100..].iter().all(|d| matches!(d, Ok(RateDecision::Limited { newly_blocked: false, .. }))));
        remaining.sort_unstable();
        assert_eq!(remaining, (0..100).collect::<Vec<u64>>(), "{kind}: one step further each");

        // Offences: the third refusal blocks; the refusals after it find the block — as on the memory store
        // one by one.
        let other = Subject::ip("192.0.2.8".parse().unwrap(), 32, 64);
        let key = CellKey { scope: "strict", subject: &other };
        let g = Gcra::new(1, Duration::from_secs(3600), 0);
        let o = Some(Offences { after: 3, within: Duration::from_secs(60), block_for: Duration::from_secs(600) });
        let kinds = |d: &Result<RateDecision, _>| match d {
            Ok(RateDecision::Allowed { .. }) => "allowed",
            Ok(RateDecision::Limited { newly_blocked: false, .. }) => "limited",
            Ok(RateDecision::Limited { newly_blocked: true, .. }) => "newly blocked",
            Ok(RateDecision::Blocked { .. }) => "blocked",
            Err(_) => "unavailable",
        };
        let memory = Store::build(&StateSpec::Memory { max_entries: 10_000 }, metrics.state_metrics()).unwrap();
        let mut one_by_one = Vec::new();
        for _ in 0..10 {
            one_by_one.push(kinds(&memory.rate(key, g, 1, o, m).await));
        }
        let together = join_in_order((0..10).map(|_| s.rate(key, g, 1, o, m)).collect()).await;
        assert_eq!(together.iter().map(kinds).collect::<Vec<_>>(), one_by_one, "{kind}");
        assert!(s.blocked(&other, m).await.unwrap().is_some(), "{kind}: the block is in Redis");
        let listed = s.list_blocks().await.unwrap();
        assert!(listed.iter().any(|b| b.subject == "ip:192.0.2.8/32"), "{kind}: {listed:?}");
    }

    // Frozen Redis: the call in flight times out, the checks queued behind it do not wait past the timeout.
    let (_, s) = &stores[0];
    let ip = Subject::ip("192.0.2.9".parse().unwrap(), 32, 64);
    let key = CellKey { scope: "frozen", subject: &ip };
    let g = Gcra::new(100, Duration::from_secs(3600), 99);
    redis.signal("-STOP");
    let t = Instant::now();
    let decisions = join_in_order((0..50).map(|_| s.rate(key, g, 1, None, m)).collect()).await;
    let took = t.elapsed();
    redis.signal("-CONT");
    assert!(decisions.iter().all(|d| d.is_err()), "closed: every check unavailable: {decisions:?}");
    assert!(took < Duration::from_millis(500) + Duration::from_secs(1), "took {took:?}");
}
