//! RFC 9421 signed requests over real sockets: hmac-sha256 and ed25519 keys, tampering, unknown keys, expiry,
//! replay (in memory, and across two gateways sharing a real Redis), and the shipped example.

use crate::testkit::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-billing";

struct Keys {
    ed: HttpSigner,
    mac: HttpSigner,
    identity: String,
}

fn keys() -> Keys {
    let (ed, public) = HttpSigner::ed25519();
    let (mac, secret) = HttpSigner::hmac(SECRET);
    let identity = format!(
        "identity:\n  signatures:\n    keys:\n      partner-a: {{ alg: ed25519, public_key: \"{public}\", consumer: partner-a, scopes: [orders:write] }}\n      billing: {{ alg: hmac-sha256, secret: \"{secret}\", roles: [service] }}\n    window: 5m\n    clock_skew: 30s\n"
    );
    Keys { ed, mac, identity }
}

fn routes() -> &'static str {
    "  - { path: /echo/orders, methods: [GET, POST], upstream: app, auth: [signature] }"
}

async fn gateway(up: &TestUpstream, k: &Keys, extra: &str) -> TestGateway {
    let extra = format!("admin: {{ addr: \"127.0.0.1:0\" }}\n{}{extra}", k.identity);
    TestGateway::start(&config(&one_upstream(&up.url()), routes(), &extra)).await
}

async fn send_signed(gw: &TestGateway, method: &str, path: &str, headers: &[(String, String)], body: &str) -> Got {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    call(gw.addr(), method, path, &h, body).await
}

/// Sends the (not yet started) request and checks it was refused with 401 and counted under `code`.
async fn refused(gw: &TestGateway, request: impl std::future::Future<Output = Got>, code: &str) {
    let before = rejections(gw.handle.admin_addr.unwrap(), code).await;
    expect_401(gw, request.await, code, before).await;
}

#[tokio::test]
async fn valid_hmac_and_ed25519_requests_pass_with_their_identity() {
    let up = TestUpstream::start().await;
    let k = keys();
    let gw = gateway(&up, &k, "").await;
    let body = r#"{"item":"book","qty":1}"#;
    let h = k.ed.sign("partner-a", "POST", "/echo/orders?dry_run=false", &[], body.as_bytes(), now(), "n-ed-1");
    let got = send_signed(&gw, "POST", "/echo/orders?dry_run=false", &h, body).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let j = got.json();
    assert_eq!(j["headers"]["x-rampart-consumer"], "partner-a");
    assert_eq!(j["headers"]["x-rampart-auth-method"], "signature");
    assert_eq!(j["body"], body, "the body read for the digest is forwarded unchanged");

    let h = k.mac.sign("billing", "GET", "/echo/orders", &[], b"", now(), "n-mac-1");
    let got = send_signed(&gw, "GET", "/echo/orders", &h, "").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["headers"]["x-rampart-consumer"], "billing");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn tampered_unknown_expired_and_replayed_requests_are_refused_with_their_codes() {
    let up = TestUpstream::start().await;
    let k = keys();
    let gw = gateway(&up, &k, "").await;

    // No signature at all on a signature-only route.
    refused(&gw, call(gw.addr(), "GET", "/echo/orders", &[], ""), "auth.missing").await;

    // Body changed after signing: the digest no longer matches.
    let h = k.ed.sign("partner-a", "POST", "/echo/orders", &[], b"{\"qty\":1}", now(), "t1");
    refused(&gw, send_signed(&gw, "POST", "/echo/orders", &h, "{\"qty\":9}"), "auth.signature.digest").await;

    // Body and digest both replaced: the signature over the digest fails.
    let mut h = k.ed.sign("partner-a", "POST", "/echo/orders", &[], b"{\"qty\":1}", now(), "t2");
    let forged = k.ed.sign("partner-a", "POST", "/echo/orders", &[], b"{\"qty\":9}", now(), "x");
    let digest = forged.iter().find(|(n, _)| n == "content-digest").unwrap().1.clone();
    h.iter_mut().find(|(n, _)| n == "content-digest").unwrap().1 = digest;
    refused(&gw, send_signed(&gw, "POST", "/echo/orders", &h, "{\"qty\":9}"), "auth.signature.invalid").await;

    // Query (part of @target-uri) changed.
    let h = k.mac.sign("billing", "GET", "/echo/orders?limit=1", &[], b"", now(), "t3");
    refused(&gw, send_signed(&gw, "GET", "/echo/orders?limit=1000", &h, ""), "auth.signature.invalid").await;

    // A covered header changed.
    let mut h = k.mac.sign("billing", "GET", "/echo/orders", &[("x-tenant", "acme")], b"", now(), "t4");
    h.iter_mut().find(|(n, _)| n == "x-tenant").unwrap().1 = "globex".into();
    refused(&gw, send_signed(&gw, "GET", "/echo/orders", &h, ""), "auth.signature.invalid").await;

    // Signed with a key id the gateway does not know.
    let (stranger, _) = HttpSigner::ed25519();
    let h = stranger.sign("partner-z", "GET", "/echo/orders", &[], b"", now(), "t5");
    refused(&gw, send_signed(&gw, "GET", "/echo/orders", &h, ""), "auth.signature.unknown_key").await;

    // A known key id, signed with another key.
    let h = stranger.sign("partner-a", "GET", "/echo/orders", &[], b"", now(), "t6");
    refused(&gw, send_signed(&gw, "GET", "/echo/orders", &h, ""), "auth.signature.invalid").await;

    // Created an hour ago (window 5m).
    let h = k.ed.sign("partner-a", "GET", "/echo/orders", &[], b"", now() - 3600, "t7");
    refused(&gw, send_signed(&gw, "GET", "/echo/orders", &h, ""), "auth.signature.expired").await;

    // Garbage headers.
    let h = vec![("signature-input".to_string(), "sig1=oops".to_string()), ("signature".into(), "sig1=:AA==:".into())];
    refused(&gw, send_signed(&gw, "GET", "/echo/orders", &h, ""), "auth.signature.malformed").await;

    // The same signed request twice: the second is a replay.
    let h = k.ed.sign("partner-a", "POST", "/echo/orders", &[], b"{\"qty\":1}", now(), "once");
    let first = send_signed(&gw, "POST", "/echo/orders", &h, "{\"qty\":1}").await;
    assert_eq!(first.status, 200, "{}", first.text());
    refused(&gw, send_signed(&gw, "POST", "/echo/orders", &h, "{\"qty\":1}"), "auth.signature.replay").await;
    assert_eq!(up.hits(), 1, "nothing refused reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_used_on_one_gateway_is_a_replay_on_another_sharing_redis() {
    let mut redis = TestRedis::start();
    let up = TestUpstream::start().await;
    let k = keys();
    let state = format!("state: {{ redis: \"{}\", timeout: 500ms }}\n", redis.url());
    let a = gateway(&up, &k, &state).await;
    let b = gateway(&up, &k, &state).await;
    wait_state_healthy(&a).await;
    wait_state_healthy(&b).await;
    let h = k.mac.sign("billing", "POST", "/echo/orders", &[], b"{\"qty\":2}", now(), "shared-nonce");
    let got = send_signed(&a, "POST", "/echo/orders", &h, "{\"qty\":2}").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(redis.command("KEYS *shared-nonce*").contains("shared-nonce"), "the nonce is kept in Redis");
    refused(&b, send_signed(&b, "POST", "/echo/orders", &h, "{\"qty\":2}"), "auth.signature.replay").await;
    // A fresh nonce on the other gateway passes.
    let h = k.mac.sign("billing", "POST", "/echo/orders", &[], b"{\"qty\":2}", now(), "other-nonce");
    assert_eq!(send_signed(&b, "POST", "/echo/orders", &h, "{\"qty\":2}").await.status, 200);

    // Redis gone: freshness cannot be established, so signed requests are refused (503), not let through.
    redis.kill();
    let h = k.mac.sign("billing", "POST", "/echo/orders", &[], b"{\"qty\":3}", now(), "while-down");
    let admin = a.handle.admin_addr.unwrap();
    let before = rejections(admin, "auth.signature.store_unavailable").await;
    let got = send_signed(&a, "POST", "/echo/orders", &h, "{\"qty\":3}").await;
    assert_eq!(got.status, 503, "{}", got.text());
    assert_eq!(rejections(admin, "auth.signature.store_unavailable").await, before + 1);
    assert_eq!(up.hits(), 2);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test]
async fn the_signed_requests_example_loads_and_verifies() {
    let up = TestUpstream::start().await;
    let (ed, public) = HttpSigner::ed25519();
    let (mac, secret) = HttpSigner::hmac(SECRET);
    let yaml = example(
        "signed-requests.yaml",
        &[
            ("RAMPART_LISTEN", "127.0.0.1:0".to_string()),
            ("RAMPART_UPSTREAM", up.url()),
            ("PARTNER_A_PUBKEY", public),
            ("BILLING_HMAC_SECRET", secret),
        ],
    );
    let gw = TestGateway::start(&yaml).await;
    let body = r#"{"item":"book"}"#;
    let h =
        ed.sign("partner-a", "POST", "/orders", &[("content-type", "application/json")], body.as_bytes(), now(), "ex1");
    let got = send_signed(&gw, "POST", "/orders", &h, body).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let h = mac.sign("billing", "GET", "/orders", &[], b"", now(), "ex2");
    assert_eq!(send_signed(&gw, "GET", "/orders", &h, "").await.status, 200);
    let h = mac.sign("billing", "GET", "/orders", &[], b"", now() - 3600, "ex3");
    assert_eq!(send_signed(&gw, "GET", "/orders", &h, "").await.status, 401);
}
