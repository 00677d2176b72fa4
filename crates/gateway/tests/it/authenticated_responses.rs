//! What respond does differently once a caller is identified: authenticated answers are never cacheable
//! (`Cache-Control: no-store` whatever the upstream said) while public routes keep the upstream's caching
//! headers, and the exfiltration guard keeps one budget per consumer rather than per client IP.

use crate::testkit::*;
use gateway::stages::identify::api_key;

async fn keyed(gw: &TestGateway, path: &str, key: &str) -> Got {
    get_with(gw.addr(), path, &[("x-api-key", key)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_responses_are_not_cacheable_and_public_ones_keep_their_headers() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let keys = dir.path().join("keys.yaml");
    let billing = api_key::add(&keys, "billing", vec![], vec![], None).unwrap();
    let routes = "  - { path: /private/*, methods: [GET], upstream: app, auth: [api_key] }\n  - { path: /public/*, methods: [GET], upstream: app, auth: none }";
    let yaml = config(&one_upstream(&up.url()), routes, "identity:\n  api_keys: { file: keys.yaml }\n");
    let gw = TestGateway::start_in(dir, &yaml, false).await;

    // The upstream says `public, max-age=600`; for an identified caller the gateway says otherwise.
    let got = keyed(&gw, "/private/cacheable", &billing.secret).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "shared and cacheable");
    let cc: Vec<_> = got.headers.get_all("cache-control").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert_eq!(cc, ["no-store"], "exactly one Cache-Control, and it forbids storing");
    // Also when the upstream sets none.
    let got = keyed(&gw, "/private/echo", &billing.secret).await;
    assert_eq!(got.headers["cache-control"], "no-store");

    // A public route passes the upstream's caching headers through.
    let got = get(gw.addr(), "/public/cacheable").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["cache-control"], "public, max-age=600");
    assert_eq!(got.headers["etag"], "\"c1\"");
    let got = get(gw.addr(), "/public/echo").await;
    assert!(got.headers.get("cache-control").is_none(), "{:?}", got.headers);

    // A refusal is no-store too (problem bodies are never cached).
    let got = keyed(&gw, "/private/cacheable", "rk_wrong").await;
    assert_eq!(got.status, 401);
    assert_eq!(got.headers["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exfiltration_guard_counts_per_consumer() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let keys = dir.path().join("keys.yaml");
    let alice = api_key::add(&keys, "alice", vec![], vec![], None).unwrap();
    let bob = api_key::add(&keys, "bob", vec![], vec![], None).unwrap();
    let routes = "  - { path: /users/*, methods: [GET], upstream: app, auth: [api_key], exfiltration: { max_records: 5, window: 1h, action: block } }";
    let yaml = config(&one_upstream(&up.url()), routes, "identity:\n  api_keys: { file: keys.yaml }\n");
    let gw = TestGateway::start_in(dir, &yaml, false).await;

    // Both consumers call from the same IP; each has a budget of five records.
    assert_eq!(keyed(&gw, "/users/secrets/list?n=3", &alice.secret).await.status, 200);
    assert_eq!(keyed(&gw, "/users/secrets/list?n=2", &alice.secret).await.status, 200, "alice at her limit");
    let got = keyed(&gw, "/users/secrets/list?n=1", &alice.secret).await;
    assert_eq!((got.status, got.code()), (429, "respond.exfiltration".to_string()));
    let got = keyed(&gw, "/users/secrets/list?n=4", &bob.secret).await;
    assert_eq!(got.status, 200, "bob's budget is his own: {}", got.text());
    assert_eq!(got.json().as_array().unwrap().len(), 4);
    assert_eq!(keyed(&gw, "/users/secrets/list?n=1", &bob.secret).await.status, 200, "bob at his limit");
    assert_eq!(keyed(&gw, "/users/secrets/list?n=1", &bob.secret).await.status, 429);
    assert_eq!(keyed(&gw, "/users/secrets/list?n=1", &alice.secret).await.status, 429, "alice still over");
}
