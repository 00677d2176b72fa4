//! Brute-force lockout over real sockets: failed authentications counted per credential (a signature's key id)
//! and per client IP lock the caller out with 429 `auth.lockout` + `Retry-After`, before any verification.

use crate::testkit::*;
use std::time::Duration;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-lockout";

async fn gateway(up: &TestUpstream, lockout: &str) -> (TestGateway, HttpSigner, HttpSigner) {
    let (yaml, ed, mac) = signed_config(up, lockout, "");
    (TestGateway::start(&yaml).await, ed, mac)
}

/// A config whose `/echo/orders` needs a signature (keys `partner-a`, ed25519, and `billing`, HMAC), with the
/// given `identity.lockout` and `extra` top-level settings (e.g. `state:`), and its two signers.
fn signed_config(up: &TestUpstream, lockout: &str, extra: &str) -> (String, HttpSigner, HttpSigner) {
    let (ed, public) = HttpSigner::ed25519();
    let (mac, secret) = HttpSigner::hmac(SECRET);
    let extra = format!(
        "admin: {{ addr: \"127.0.0.1:0\" }}\n{extra}\nidentity:\n  signatures:\n    keys:\n      partner-a: {{ alg: ed25519, public_key: \"{public}\" }}\n      billing: {{ alg: hmac-sha256, secret: \"{secret}\" }}\n  lockout: {lockout}\n"
    );
    let routes = "  - { path: /echo/orders, methods: [GET], upstream: app, auth: [signature] }";
    (config(&one_upstream(&up.url()), routes, &extra), ed, mac)
}

async fn signed_get(gw: &TestGateway, signer: &HttpSigner, keyid: &str, nonce: &str) -> Got {
    let h = signer.sign(keyid, "GET", "/echo/orders", &[], b"", now(), nonce);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    call(gw.addr(), "GET", "/echo/orders", &h, "").await
}

fn assert_locked(got: &Got) -> u64 {
    assert_eq!(got.status, 429, "{}", got.text());
    assert_eq!(got.code(), "auth.lockout");
    let secs: u64 = got.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    secs
}

#[tokio::test]
async fn failures_for_one_key_id_lock_that_credential_out_before_verification() {
    let up = TestUpstream::start().await;
    let (gw, ed, mac) =
        gateway(&up, "{ max_failures: 3, window: 1m, base: 1m, max: 1h, ip: { max_failures: 100 } }").await;
    let (stranger, _) = HttpSigner::ed25519();
    for i in 0..3 {
        // Claims partner-a, signed with another key: a guess.
        let got = signed_get(&gw, &stranger, "partner-a", &format!("guess-{i}")).await;
        assert_eq!(got.status, 401, "{i}: {}", got.text());
    }
    // Now even the real partner-a is refused, without its signature being checked.
    assert_locked(&signed_get(&gw, &ed, "partner-a", "real").await);
    let admin = gw.handle.admin_addr.unwrap();
    assert!(rejections(admin, "auth.lockout").await >= 1);
    // The IP is not locked: another credential from the same address still gets in.
    assert_eq!(signed_get(&gw, &mac, "billing", "other").await.status, 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn failures_from_one_ip_lock_the_ip_out_and_missing_credentials_do_not_count() {
    let up = TestUpstream::start().await;
    let (gw, _ed, mac) = gateway(&up, "{ max_failures: 100, ip: { max_failures: 3, window: 1m, base: 1m } }").await;
    // No credential at all is not a guess.
    for _ in 0..5 {
        assert_eq!(call(gw.addr(), "GET", "/echo/orders", &[], "").await.status, 401);
    }
    assert_eq!(signed_get(&gw, &mac, "billing", "ok-1").await.status, 200);
    // Unknown key ids (no configured credential to count): the IP's counter.
    let (stranger, _) = HttpSigner::ed25519();
    for i in 0..3 {
        assert_eq!(signed_get(&gw, &stranger, &format!("k{i}"), &format!("g{i}")).await.status, 401);
    }
    assert_locked(&signed_get(&gw, &mac, "billing", "ok-2").await);
    assert_locked(&call(gw.addr(), "GET", "/echo/orders", &[], "").await);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_lockout_survives_a_reload() {
    let up = TestUpstream::start().await;
    let (gw, ed, _mac) = gateway(&up, "{ max_failures: 2, base: 1m }").await;
    let (stranger, _) = HttpSigner::ed25519();
    for i in 0..2 {
        assert_eq!(signed_get(&gw, &stranger, "partner-a", &format!("r{i}")).await.status, 401);
    }
    assert_locked(&signed_get(&gw, &ed, "partner-a", "r-real").await);
    gw.handle.reload().await.expect("reload");
    assert_locked(&signed_get(&gw, &ed, "partner-a", "r-after").await);
}

#[test]
fn a_bad_lockout_policy_is_a_config_error() {
    let dir = TempDir::new();
    let metrics = gateway::metrics::Metrics::new();
    let yaml = config(
        &one_upstream("http://127.0.0.1:9"),
        "  - { path: /x, methods: [GET], upstream: app, auth: none }",
        "identity:\n  lockout: { max_failures: 0 }\n",
    );
    let p = dir.write("lockout.yaml", &yaml);
    let Err(errs) = gateway::config::load_file(&p, &metrics) else { panic!("max_failures: 0 accepted") };
    let text = errs.to_string();
    assert!(text.contains("max_failures must be at least 1") && text.contains("lockout.yaml:"), "{text}");
}

// ---- shared through Redis -------------------------------------------------------------------------------------

/// Waits until `got()` is no longer locked out (the lockout's `Retry-After` has passed), at most 10 s.
async fn until_unlocked<F, Fut>(mut got: F) -> Got
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Got>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let g = got().await;
        if g.status != 429 {
            return g;
        }
        assert!(std::time::Instant::now() < deadline, "still locked out: {}", g.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_split_across_two_gateways_lock_out_on_both_through_redis() {
    let redis = TestRedis::start();
    let up = TestUpstream::start().await;
    let state = format!("state: {{ redis: \"{}\", timeout: 500ms, on_failure: closed }}", redis.url());
    let (yaml, ed, mac) = signed_config(
        &up,
        "{ max_failures: 3, window: 1m, base: 1s, max: 1h, ip: { max_failures: 5, window: 1m, base: 1s } }",
        &state,
    );
    let (a, b) = (TestGateway::start(&yaml).await, TestGateway::start(&yaml).await);
    wait_state_healthy(&a).await;
    wait_state_healthy(&b).await;
    let (stranger, _) = HttpSigner::ed25519();
    // Three guesses at partner-a, two through one replica and one through the other: neither saw three.
    assert_eq!(signed_get(&a, &stranger, "partner-a", "s1").await.status, 401);
    assert_eq!(signed_get(&b, &stranger, "partner-a", "s2").await.status, 401);
    assert_eq!(signed_get(&a, &stranger, "partner-a", "s3").await.status, 401);
    assert_locked(&signed_get(&a, &ed, "partner-a", "real-a").await);
    assert_locked(&signed_get(&b, &ed, "partner-a", "real-b").await);
    assert!(redis.command("KEYS rampart:lo:*").contains("rampart:lo:{"), "the cells are in Redis");
    // Other credentials from the same IP still get in on both (the IP has 3 of its 5).
    assert_eq!(signed_get(&a, &mac, "billing", "ok-a").await.status, 200);
    assert_eq!(signed_get(&b, &mac, "billing", "ok-b").await.status, 200);
    // The lockout lifts on both.
    let (ga, signer) = (&a, &ed);
    let mut n = 0;
    let got = until_unlocked(move || {
        n += 1;
        let nonce = format!("lift-a{n}");
        async move { signed_get(ga, signer, "partner-a", &nonce).await }
    })
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(signed_get(&b, &ed, "partner-a", "lift-b").await.status, 200);

    // Two unknown key ids, one through each replica, bring the IP to 5 failures: locked out everywhere.
    assert_eq!(signed_get(&a, &stranger, "nobody-1", "ip1").await.status, 401);
    assert_eq!(signed_get(&b, &stranger, "nobody-2", "ip2").await.status, 401);
    assert_locked(&signed_get(&a, &mac, "billing", "ip-a").await);
    assert_locked(&signed_get(&b, &mac, "billing", "ip-b").await);
    let (gb, signer) = (&b, &mac);
    let mut n = 0;
    let got = until_unlocked(move || {
        n += 1;
        let nonce = format!("ip-lift{n}");
        async move { signed_get(gb, signer, "billing", &nonce).await }
    })
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(signed_get(&a, &mac, "billing", "ip-lift-a").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_with_closed_lockout_answers_503_within_the_timeout_then_recovers() {
    let redis = TestRedis::start();
    let up = TestUpstream::start().await;
    // The nonce store falls back locally; only the lockout is closed.
    let state = format!("state: {{ redis: \"{}\", timeout: 200ms, on_failure: local }}", redis.url());
    let (yaml, _ed, mac) = signed_config(&up, "{ max_failures: 3, on_failure: closed }", &state);
    let gw = TestGateway::start(&yaml).await;
    wait_state_healthy(&gw).await;
    assert_eq!(signed_get(&gw, &mac, "billing", "c1").await.status, 200);
    // Frozen: connections stay open, nothing answers; the state timeout bounds the wait.
    redis.signal("-STOP");
    let got = signed_get(&gw, &mac, "billing", "c2").await;
    assert_eq!(got.status, 503, "{}", got.text());
    assert_eq!(got.headers["retry-after"], "1");
    let admin = gw.handle.admin_addr.unwrap();
    assert!(rejections(admin, "auth.lockout.unavailable").await >= 1);
    assert_eq!(up.hits(), 1);
    redis.signal("-CONT");
    wait_state_healthy(&gw).await;
    assert_eq!(signed_get(&gw, &mac, "billing", "c3").await.status, 200);
}

/// A config whose `/echo/orders` needs a JWT (EdDSA, from a JWKS file in `dir`), with the given lockout and
/// `extra` settings, and the issuer's key. JWTs need no state of their own, so only the lockout meets Redis.
fn jwt_config(dir: &TempDir, up: &TestUpstream, lockout: &str, extra: &str) -> (String, JwtKey) {
    let key = JwtKey::ed("k1");
    let path = dir.write("jwks.json", &jwks(&[&key]));
    let extra = format!(
        "admin: {{ addr: \"127.0.0.1:0\" }}\n{extra}\nidentity:\n  jwt: {{ issuer: \"{JWT_ISS}\", audience: api, jwks: \"{}\", algorithms: [EdDSA] }}\n  lockout: {lockout}\n",
        path.display()
    );
    let routes = "  - { path: /echo/orders, methods: [GET], upstream: app, auth: [jwt] }";
    (config(&one_upstream(&up.url()), routes, &extra), key)
}

const JWT_ISS: &str = "https://id.lockout.test/";

async fn bearer_get(gw: &TestGateway, key: &JwtKey, sub: &str) -> Got {
    let token = key.token(&serde_json::json!({ "iss": JWT_ISS, "aud": "api", "sub": sub, "exp": now() + 600 }));
    call(gw.addr(), "GET", "/echo/orders", &[("authorization", &format!("Bearer {token}"))], "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_local_lockout_counts_per_process_and_the_lock_outlives_recovery() {
    let mut redis = TestRedis::start();
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let state = format!("state: {{ redis: \"{}\", timeout: 200ms, on_failure: local, replicas: 2 }}", redis.url());
    // 4 failures cluster-wide; while Redis is away each of the 2 replicas allows half.
    let (yaml, key) = jwt_config(&dir, &up, "{ max_failures: 4, base: 1m, ip: { max_failures: 100 } }", &state);
    let gw = TestGateway::start(&yaml).await;
    wait_state_healthy(&gw).await;
    assert_eq!(bearer_get(&gw, &key, "alice").await.status, 200);
    redis.kill();
    // Tokens for alice signed by someone else: guesses at alice.
    let forger = JwtKey::ed("k1");
    assert_eq!(bearer_get(&gw, &forger, "alice").await.status, 401);
    assert_eq!(bearer_get(&gw, &forger, "alice").await.status, 401);
    assert_locked(&bearer_get(&gw, &key, "alice").await);
    assert_eq!(bearer_get(&gw, &key, "bob").await.status, 200);
    assert!(!gw.handle.runtime().state.healthy(), "Redis was away all along");
    redis.restart();
    wait_state_healthy(&gw).await;
    // Redis has never heard of it, but the lock taken during the outage still holds here.
    assert_locked(&bearer_get(&gw, &key, "alice").await);
    assert_eq!(bearer_get(&gw, &key, "bob").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_open_lockout_skips_it_then_shared_counting_resumes() {
    let mut redis = TestRedis::start();
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let state = format!("state: {{ redis: \"{}\", timeout: 200ms, on_failure: local }}", redis.url());
    let (yaml, key) =
        jwt_config(&dir, &up, "{ max_failures: 2, base: 1m, ip: { max_failures: 100 }, on_failure: open }", &state);
    let gw = TestGateway::start(&yaml).await;
    wait_state_healthy(&gw).await;
    redis.kill();
    let forger = JwtKey::ed("k1");
    for i in 0..4 {
        // Never locked while Redis is away; every guess is still verified (and refused).
        assert_eq!(bearer_get(&gw, &forger, "alice").await.status, 401, "{i}");
    }
    assert_eq!(bearer_get(&gw, &key, "alice").await.status, 200);
    redis.restart();
    wait_state_healthy(&gw).await;
    assert_eq!(bearer_get(&gw, &forger, "alice").await.status, 401);
    assert_eq!(bearer_get(&gw, &forger, "alice").await.status, 401);
    assert_locked(&bearer_get(&gw, &key, "alice").await);
}

/// The Lua script and [`LockoutCell`] (which the memory store runs) give the same answers and keep the same
/// fields for the same sequence of operations at the same times, over many random sequences and policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_script_applies_the_same_rules_as_lockout_cell() {
    use gateway::stages::identify::lockout::{LockoutCell, LockoutPolicy};
    use gateway::state::redis_store::lockout::LockoutOp;
    use gateway::state::{FailureMode, RedisSpec, StateSpec, Store};
    let redis = TestRedis::start();
    let metrics = gateway::metrics::Metrics::new();
    let spec = StateSpec::Redis(RedisSpec {
        urls: vec![redis.url()],
        cluster: false,
        timeout: Duration::from_secs(2),
        on_failure: FailureMode::Closed,
        replicas: 1,
        max_entries: 1_000,
    });
    let store = Store::build(&spec, metrics.state_metrics()).unwrap();
    let Store::Redis(r) = &store else { panic!("not Redis") };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !r.is_up() {
        assert!(std::time::Instant::now() < deadline, "Redis did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Whole seconds throughout, so a cell that is still alive in the model never expires in Redis (a TTL is
    // then at least 1 s of real time, far longer than a sequence takes).
    let secs = |n: u64| Duration::from_secs(n);
    let mut rng = fastrand::Rng::with_seed(0x10c0);
    let (mut failures, mut starts, mut locked_checks) = (0, 0, 0);
    for case in 0..60u32 {
        let base = rng.u64(1..30);
        let policy = LockoutPolicy {
            max_failures: rng.u32(1..5),
            window: secs(rng.u64(1..120)),
            base_lockout: secs(base),
            max_lockout: secs(base * rng.u64(1..10)),
            strike_memory: secs(rng.u64(1..300)),
            reset_on_success: rng.bool(),
        };
        let key = format!("{case:032x}");
        let mut model = LockoutCell::default();
        let mut now = 1_764_000_000_000u64;
        for step in 0..80 {
            now += 1000 * [0, 1, 2, 5, 30, 200][rng.usize(0..6)];
            let ctx = format!("case {case} step {step} policy {policy:?}");
            match rng.u8(0..10) {
                0..=5 => {
                    let reply = r.lockout_at(&key, LockoutOp::Failure(&policy), now).await.expect("redis");
                    let (status, started) = model.on_failure(&policy, now);
                    assert_eq!((reply.status, reply.started), (status, started), "{ctx}");
                    assert_eq!(reply.cell, LockoutCell { forget_at_ms: 0, ..model }, "{ctx}");
                    failures += 1;
                    starts += usize::from(started);
                }
                6..=7 => {
                    let reply = r.lockout_at(&key, LockoutOp::Status, now).await.expect("redis");
                    assert_eq!(reply.status, model.status(now), "{ctx}");
                    assert_eq!(reply.cell, LockoutCell { forget_at_ms: 0, ..model }, "{ctx}");
                    locked_checks += usize::from(reply.status.is_locked());
                }
                _ => {
                    r.lockout_at(&key, LockoutOp::Success(&policy), now).await.expect("redis");
                    // What the memory store does: apply, then drop a cell that carries nothing any more.
                    model.on_success(&policy);
                    if policy.reset_on_success && model.forget_at_ms <= now {
                        model = LockoutCell::default();
                    }
                }
            }
        }
    }
    // The sequences went through every branch.
    assert!(failures > 1000 && starts > 50 && locked_checks > 20, "{failures} {starts} {locked_checks}");
}

// ---- login routes -----------------------------------------------------------------------------------------------

/// A gateway whose `POST /status/*` is a login route (the test upstream answers with the status in the path).
async fn login_gateway(up: &TestUpstream, login: &str) -> TestGateway {
    let extra = "admin: { addr: \"127.0.0.1:0\" }\nidentity:\n  lockout: { max_failures: 3, window: 1m, base: 1m, ip: { max_failures: 8, window: 1m, base: 1m } }\n";
    let routes = format!("  - {{ path: \"/status/*\", methods: [POST], upstream: app, auth: none, login: {login} }}");
    TestGateway::start(&config(&one_upstream(&up.url()), &routes, extra)).await
}

async fn login(gw: &TestGateway, status: u16, body: &str) -> Got {
    call(gw.addr(), "POST", &format!("/status/{status}"), &[("content-type", "application/json")], body).await
}

#[tokio::test]
async fn a_login_route_counts_failures_per_username_and_a_success_resets_them() {
    let up = TestUpstream::start().await;
    let gw = login_gateway(&up, "{ username: /username, failure_status: [401, 403] }").await;
    let bob = r#"{"username":"bob","password":"guess"}"#;
    assert_eq!(login(&gw, 401, bob).await.status, 401);
    assert_eq!(login(&gw, 403, bob).await.status, 403);
    // bob gets in: his count starts again.
    assert_eq!(login(&gw, 200, bob).await.status, 200);
    assert_eq!(login(&gw, 401, bob).await.status, 401);
    assert_eq!(login(&gw, 401, bob).await.status, 401);
    // Statuses that are not failures (here 500) do not count.
    assert_eq!(login(&gw, 500, bob).await.status, 500);
    assert_eq!(login(&gw, 401, bob).await.status, 401);
    let hits = up.hits();
    // Locked, before forwarding — whatever the case, and in a form body too.
    assert_locked(&login(&gw, 200, bob).await);
    assert_locked(&login(&gw, 200, r#"{"username":"BOB ","password":"right"}"#).await);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_locked(&call(gw.addr(), "POST", "/status/200", &form, "password=x&username=bob").await);
    assert_eq!(up.hits(), hits, "locked attempts never reach the upstream");
    // Another user from the same address is not locked.
    assert_eq!(login(&gw, 200, r#"{"username":"alice","password":"right"}"#).await.status, 200);
    let admin = gw.handle.admin_addr.unwrap();
    assert!(rejections(admin, "auth.lockout").await >= 3);
}

#[tokio::test]
async fn a_login_route_counts_against_the_ip_when_the_body_has_no_username() {
    let up = TestUpstream::start().await;
    let gw = login_gateway(&up, "{ username: /user/name }").await;
    // 5 failures for five different users, then 3 whose body names nobody: the IP reaches 8.
    for i in 0..5 {
        let body = format!(r#"{{"user":{{"name":"u{i}"}}}}"#);
        assert_eq!(login(&gw, 401, &body).await.status, 401);
    }
    let nameless = [
        ("application/json", r#"{"user":{"name":7}}"#),
        ("application/x-www-form-urlencoded", "name=u9"),
        ("application/octet-stream", "\u{1}\u{2}"),
    ];
    for (ct, body) in nameless {
        assert_eq!(call(gw.addr(), "POST", "/status/401", &[("content-type", ct)], body).await.status, 401, "{ct}");
    }
    assert_locked(&login(&gw, 200, r#"{"user":{"name":"someone-else"}}"#).await);
    assert_locked(&login(&gw, 200, "").await);
}

#[test]
fn bad_login_sections_are_config_errors_with_a_position() {
    let dir = TempDir::new();
    let metrics = gateway::metrics::Metrics::new();
    let check = |extra: &str, login: &str, expect: &str| {
        let routes = format!("  - {{ path: /login, methods: [POST], upstream: app, auth: none, login: {login} }}");
        let p = dir.write("login.yaml", &config(&one_upstream("http://127.0.0.1:9"), &routes, extra));
        let Err(errs) = gateway::config::load_file(&p, &metrics) else { panic!("{login} accepted") };
        let text = errs.to_string();
        assert!(text.contains(expect) && text.contains("login.yaml:"), "{text}");
    };
    let lockout = "identity:\n  lockout: {}\n";
    check("", "{ username: /username }", "hint: add `identity: { lockout: {} }`");
    check(lockout, "{ username: username }", "not a JSON pointer");
    check(lockout, "{ username: /u, failure_status: [200] }", "not a 4xx or 5xx");
    check(lockout, "{ username: /u, password: /p }", "unknown field");
}
