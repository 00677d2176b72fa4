//! OAuth2 token introspection (RFC 7662) over real sockets, against a real local introspection endpoint
//! ([`IntrospectionServer`]) that checks the gateway's HTTP Basic client credentials: active, inactive, expired,
//! wrong audience or issuer, the provider down, failing or slow (fail closed), the cache (counted at the
//! provider), single-flight, and routes that accept both JWTs and opaque tokens.

use crate::testkit::*;
use serde_json::json;
use std::sync::atomic::Ordering;

const ISS: &str = "https://id.test.example/";
const AUD: &str = "orders-api";

fn credentials_in_env() {
    std::env::set_var("RAMPART_TEST_INTROSPECT_ID", INTROSPECT_CLIENT_ID);
    std::env::set_var("RAMPART_TEST_INTROSPECT_SECRET", INTROSPECT_CLIENT_SECRET);
    std::env::set_var("RAMPART_TEST_INTROSPECT_WRONG", "not-the-secret");
}

fn active(sub: &str, scope: &str) -> serde_json::Value {
    let t = now();
    json!({ "active": true, "sub": sub, "client_id": "web-app", "scope": scope, "iss": ISS, "aud": AUD,
        "iat": t, "nbf": t - 5, "exp": t + 600, "token_type": "Bearer" })
}

/// A gateway whose `identity.introspection` points at `url`; `tuning` adds lines to that section.
async fn gateway(up: &TestUpstream, url: &str, tuning: &str) -> TestGateway {
    credentials_in_env();
    let routes = concat!(
        "  - { path: /echo/*, methods: [GET], upstream: app, auth: [introspection] }\n",
        "  - { path: /orders/*, methods: [GET], upstream: app, auth: [introspection], scopes: [orders:read] }\n",
        "  - { path: /open, methods: [GET], upstream: app, auth: none }",
    );
    let extra = format!(
        "admin: {{ addr: \"127.0.0.1:0\" }}\nidentity:\n  introspection:\n    url: \"{url}\"\n    client_id_env: RAMPART_TEST_INTROSPECT_ID\n    client_secret_env: RAMPART_TEST_INTROSPECT_SECRET\n    issuer: \"{ISS}\"\n    audience: {AUD}\n{tuning}"
    );
    TestGateway::start(&config(&one_upstream(&up.url()), routes, &extra)).await
}

async fn with_token(gw: &TestGateway, path: &str, token: &str) -> Got {
    get_with(gw.addr(), path, &[("authorization", &format!("Bearer {token}"))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_verifies_caches_and_refuses_each_with_its_code() {
    let up = TestUpstream::start().await;
    let idp = IntrospectionServer::start().await;
    let gw = gateway(&up, &idp.url(), "    inactive_ttl: 2s\n    min_interval: 10ms\n").await;
    let admin = gw.handle.admin_addr.unwrap();

    // Active: the upstream gets the verified identity; the answer is cached until `exp` (capped).
    idp.answer("2YotnFZFEjr1zCsicMWpAA", active("alice", "orders:read profile"));
    let got = get_with(
        gw.addr(),
        "/echo/me",
        &[("authorization", "Bearer 2YotnFZFEjr1zCsicMWpAA"), ("x-consumer-id", "root")],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let h = &got.json()["headers"];
    assert_eq!(h["x-rampart-consumer"], "alice");
    assert_eq!(h["x-rampart-auth-method"], "introspection");
    assert_eq!(h["x-rampart-scopes"], "orders:read profile");
    assert!(h.get("x-consumer-id").is_none(), "{h}");
    assert_eq!(got.headers["cache-control"], "no-store", "an authenticated answer");
    assert_eq!(idp.hits(), 1);
    for _ in 0..3 {
        assert_eq!(with_token(&gw, "/orders/1", "2YotnFZFEjr1zCsicMWpAA").await.status, 200);
    }
    assert_eq!(idp.hits(), 1, "served from the cache");

    // Scopes come from `scope`; a client-credentials token (no `sub`) is its `client_id`.
    idp.answer("profile-only", active("bob", "profile"));
    let got = with_token(&gw, "/orders/1", "profile-only").await;
    assert_eq!((got.status, got.code()), (403, "authz.scope".to_string()));
    idp.answer("svc-token", json!({ "active": true, "client_id": "svc-7", "scope": "orders:read", "exp": now() + 60 }));
    let got = with_token(&gw, "/echo/x", "svc-token").await;
    assert_eq!(got.json()["headers"]["x-rampart-consumer"], "svc-7");

    // Refusals, each with its code; none reaches the upstream.
    let t = now();
    let cases = [
        ("unknown-token", None, "auth.introspection.inactive"),
        ("revoked-token", Some(json!({ "active": false })), "auth.introspection.inactive"),
        (
            "expired-token",
            Some(json!({ "active": true, "sub": "alice", "exp": t - 3600 })),
            "auth.introspection.expired",
        ),
        (
            "later-token",
            Some(json!({ "active": true, "sub": "alice", "nbf": t + 3600 })),
            "auth.introspection.not_yet_valid",
        ),
        (
            "billing-token",
            Some(json!({ "active": true, "sub": "alice", "aud": ["billing-api"] })),
            "auth.introspection.audience",
        ),
        (
            "evil-token",
            Some(json!({ "active": true, "sub": "alice", "iss": "https://evil.example/" })),
            "auth.introspection.issuer",
        ),
        ("nobody-token", Some(json!({ "active": true, "scope": "orders:read" })), "auth.introspection.claims"),
    ];
    let upstream_before = up.hits();
    for (token, answer, code) in cases {
        if let Some(a) = answer {
            idp.answer(token, a);
        }
        let before = rejections(admin, code).await;
        expect_401(&gw, with_token(&gw, "/echo/x", token).await, code, before).await;
    }
    assert_eq!(up.hits(), upstream_before);

    // Not a bearer token: refused before the provider is asked.
    let hits = idp.hits();
    let before = rejections(admin, "auth.introspection.malformed").await;
    let got = with_token(&gw, "/echo/x", "a\"b<script>").await;
    expect_401(&gw, got, "auth.introspection.malformed", before).await;
    let before = rejections(admin, "auth.missing").await;
    expect_401(&gw, get(gw.addr(), "/echo/x").await, "auth.missing", before).await;
    assert_eq!(idp.hits(), hits);

    // An inactive answer is remembered briefly (`inactive_ttl`), then asked again.
    for _ in 0..2 {
        let before = rejections(admin, "auth.introspection.inactive").await;
        expect_401(&gw, with_token(&gw, "/echo/x", "never-issued").await, "auth.introspection.inactive", before).await;
    }
    assert_eq!(idp.hits(), hits + 1, "the inactive answer was cached");
    idp.answer("never-issued", active("carol", "orders:read"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(with_token(&gw, "/echo/x", "never-issued").await.status, 200);
    assert_eq!(idp.hits(), hits + 2);

    // Every call carried the right client credentials; public routes need none.
    assert_eq!(idp.bad_auth.load(Ordering::SeqCst), 0);
    assert_eq!(get(gw.addr(), "/open").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_fails_closed_when_the_provider_fails() {
    let up = TestUpstream::start().await;
    let idp = IntrospectionServer::start().await;
    idp.answer("good-token", active("alice", "orders:read"));
    let gw = gateway(&up, &idp.url(), "    min_interval: 10ms\n    timeout: 300ms\n").await;
    let admin = gw.handle.admin_addr.unwrap();
    let unavailable = |gw: &TestGateway, token: &'static str| {
        let gw_addr = gw.addr();
        async move {
            let before = rejections(admin, "auth.introspection.unavailable").await;
            let got = get_with(gw_addr, "/echo/x", &[("authorization", &format!("Bearer {token}"))]).await;
            (got, before)
        }
    };
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(30));

    // 500, a status other than 200, a body that is not an RFC 7662 answer, and a provider too slow: refused.
    for status in [500, 503, 404] {
        idp.status.store(status, Ordering::SeqCst);
        let (got, before) = unavailable(&gw, "good-token").await;
        expect_401(&gw, got, "auth.introspection.unavailable", before).await;
        pause().await;
    }
    idp.status.store(200, Ordering::SeqCst);
    idp.malformed.store(true, Ordering::SeqCst);
    let (got, before) = unavailable(&gw, "good-token").await;
    expect_401(&gw, got, "auth.introspection.unavailable", before).await;
    idp.malformed.store(false, Ordering::SeqCst);
    pause().await;
    idp.hold();
    let (got, before) = unavailable(&gw, "good-token").await;
    expect_401(&gw, got, "auth.introspection.unavailable", before).await;
    idp.release();
    pause().await;
    // Failures were not cached: the provider is back, so is the token.
    assert_eq!(with_token(&gw, "/echo/x", "good-token").await.status, 200);

    // The provider down (nothing listens): fail closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = gateway(&up, &format!("http://{closed}/introspect"), "").await;
    let admin_down = down.handle.admin_addr.unwrap();
    let before = rejections(admin_down, "auth.introspection.unavailable").await;
    expect_401(&down, with_token(&down, "/echo/x", "good-token").await, "auth.introspection.unavailable", before).await;

    // After a failure the provider is left alone for `min_interval`: misses fail at once, uncalled.
    let idp2 = IntrospectionServer::start().await;
    idp2.answer("good-token", active("alice", "orders:read"));
    let patient = gateway(&up, &idp2.url(), "    min_interval: 1h\n").await;
    idp2.status.store(500, Ordering::SeqCst);
    assert_eq!(with_token(&patient, "/echo/x", "good-token").await.status, 401);
    idp2.status.store(200, Ordering::SeqCst);
    assert_eq!(with_token(&patient, "/echo/x", "good-token").await.status, 401);
    assert_eq!(idp2.hits(), 1, "not asked again within min_interval");

    // Wrong client credentials: the provider refuses the gateway, and the gateway fails closed.
    let idp3 = IntrospectionServer::start().await;
    idp3.answer("good-token", active("alice", "orders:read"));
    let wrong = TestGateway::start(&config(
        &one_upstream(&up.url()),
        "  - { path: /echo/*, methods: [GET], upstream: app, auth: [introspection] }",
        &format!("identity:\n  introspection: {{ url: \"{}\", client_id_env: RAMPART_TEST_INTROSPECT_ID, client_secret_env: RAMPART_TEST_INTROSPECT_WRONG }}\n", idp3.url()),
    ))
    .await;
    assert_eq!(with_token(&wrong, "/echo/x", "good-token").await.status, 401);
    assert_eq!(idp3.bad_auth.load(Ordering::SeqCst), 1, "the server checked Basic auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_token_make_one_introspection_call() {
    let up = TestUpstream::start().await;
    let idp = IntrospectionServer::start().await;
    idp.answer("shared-token", active("alice", "orders:read"));
    let gw = gateway(&up, &idp.url(), "    timeout: 10s\n").await;
    idp.hold();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let addr = gw.addr();
            tokio::spawn(
                async move { get_with(addr, "/echo/x", &[("authorization", "Bearer shared-token")]).await.status },
            )
        })
        .collect();
    // Let all eight reach the gateway while the provider holds the first call.
    while idp.hits() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    idp.release();
    for c in calls {
        assert_eq!(c.await.unwrap(), 200);
    }
    assert_eq!(idp.hits(), 1, "single-flight: one call for eight requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_accepting_jwt_and_introspection_route_tokens_by_shape() {
    credentials_in_env();
    let up = TestUpstream::start().await;
    let idp = IntrospectionServer::start().await;
    idp.answer("opaque-token", active("alice", "read"));
    let dir = TempDir::new();
    let key = JwtKey::ec("ec-1");
    dir.write("jwks.json", &jwks(&[&key]));
    let extra = format!(
        "admin: {{ addr: \"127.0.0.1:0\" }}\nidentity:\n  jwt: {{ issuer: \"{ISS}\", audience: {AUD}, jwks: jwks.json, algorithms: [ES256] }}\n  introspection: {{ url: \"{}\", client_id_env: RAMPART_TEST_INTROSPECT_ID, client_secret_env: RAMPART_TEST_INTROSPECT_SECRET, audience: {AUD} }}\n",
        idp.url()
    );
    let routes = "  - { path: /both/*, methods: [GET], upstream: app, auth: [jwt, introspection] }\n  - { path: /opaque/*, methods: [GET], upstream: app, auth: [introspection] }";
    let gw = TestGateway::start_in(dir, &config(&one_upstream(&up.url()), routes, &extra), false).await;
    let admin = gw.handle.admin_addr.unwrap();
    let t = now();
    let jwt = key.token(&json!({ "iss": ISS, "aud": AUD, "sub": "bob", "iat": t, "exp": t + 600 }));

    // A JWT goes to the JWT verifier (the provider is not asked); an opaque token to introspection.
    let got = with_token(&gw, "/both/echo", &jwt).await;
    assert_eq!(got.json()["headers"]["x-rampart-auth-method"], "jwt");
    assert_eq!(idp.hits(), 0);
    let got = with_token(&gw, "/both/echo", "opaque-token").await;
    assert_eq!(got.json()["headers"]["x-rampart-auth-method"], "introspection");
    assert_eq!(idp.hits(), 1);
    // A forged JWT is judged as a JWT: it cannot buy a second chance at the provider.
    let forged = forge(&json!({ "alg": "none" }), &json!({ "iss": ISS, "aud": AUD, "sub": "admin" }), b"");
    let before = rejections(admin, "auth.jwt.alg").await;
    expect_401(&gw, with_token(&gw, "/both/echo", &forged).await, "auth.jwt.alg", before).await;
    assert_eq!(idp.hits(), 1);
    // A route with introspection alone sends every bearer token there, JWTs too.
    let got = with_token(&gw, "/opaque/x", &jwt).await;
    assert_eq!(got.status, 401);
    assert_eq!(idp.hits(), 2);
}

#[test]
fn introspection_config_is_checked_at_load() {
    credentials_in_env();
    let load = |identity: &str, auth: &str| {
        let d = TempDir::new();
        let p = d.write(
            "r.yaml",
            &format!("listen: [{{ addr: \"127.0.0.1:0\" }}]\n{identity}upstreams:\n  app: {{ targets: [\"http://127.0.0.1:9\"] }}\nroutes:\n  - {{ path: /x, methods: [GET], upstream: app, auth: {auth} }}\n"),
        );
        gateway::config::load_file(&p, &gateway::metrics::Metrics::new()).err().map(|e| e.to_string())
    };
    let ok = "identity:\n  introspection: { url: \"http://127.0.0.1:1/i\", client_id_env: RAMPART_TEST_INTROSPECT_ID, client_secret_env: RAMPART_TEST_INTROSPECT_SECRET }\n";
    assert_eq!(load(ok, "[introspection]"), None);
    let e = load("", "[introspection]").unwrap();
    assert!(e.contains("`introspection` is not configured"), "{e}");
    let e = load(&ok.replace("http://127.0.0.1:1", "http://id.example.com"), "[introspection]").unwrap();
    assert!(e.contains("must be https"), "{e}");
    let e = load(&ok.replace("RAMPART_TEST_INTROSPECT_SECRET", "RAMPART_TEST_INTROSPECT_UNSET_VAR"), "[introspection]")
        .unwrap();
    assert!(e.contains("RAMPART_TEST_INTROSPECT_UNSET_VAR") && e.contains("not set"), "{e}");
    let e = load(&ok.replace(" }\n", ", cache_max: 0 }\n"), "[introspection]").unwrap();
    assert!(e.contains("cache_max must be at least 1"), "{e}");
}
