//! The verified-token cache over real sockets: a repeated token is answered from it, an entry never outlives
//! its token's `exp`, a key dropped from a JWKS served by a real HTTP server drops the tokens it signed, a
//! tampered token never hits, and `max_entries: 0` turns it off.

use crate::testkit::*;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

const ISS: &str = "https://id.cache.example/";
const AUD: &str = "orders-api";

fn claims(sub: &str, exp_in: u64) -> serde_json::Value {
    let t = now();
    json!({ "iss": ISS, "aud": AUD, "sub": sub, "scope": "read", "iat": t, "nbf": t, "exp": t + exp_in })
}

fn yaml(up: &str, jwks: &str, issuer_extra: &str) -> String {
    config(
        &one_upstream(up),
        "  - { path: /api/*, methods: [GET], upstream: app, auth: [jwt], scopes: { GET: [read] } }",
        &format!(
            "admin: {{ addr: \"127.0.0.1:0\" }}\nidentity:\n  jwt:\n    issuer: \"{ISS}\"\n    audience: {AUD}\n    jwks: \"{jwks}\"\n    algorithms: [RS256, ES256]\n{issuer_extra}"
        ),
    )
}

async fn get_bearer(gw: &TestGateway, token: &str) -> Got {
    let auth = format!("Bearer {token}");
    get_with(gw.addr(), "/api/orders", &[("authorization", auth.as_str())]).await
}

/// (hits, misses) of the verified-token cache.
async fn cache_counts(admin: SocketAddr) -> (u64, u64) {
    (
        metric(admin, "rampart_jwt_cache_total{result=\"hit\"}").await,
        metric(admin, "rampart_jwt_cache_total{result=\"miss\"}").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_token_hits_until_its_exp_and_a_tampered_one_never_does() {
    let up = TestUpstream::start().await;
    let key = JwtKey::ec("ec-1");
    let dir = TempDir::new();
    let jwks_path = dir.write("jwks.json", &jwks(&[&key]));
    let gw =
        TestGateway::start_in(dir, &yaml(&up.url(), &jwks_path.display().to_string(), "    leeway: 0s\n"), false).await;
    let admin = gw.handle.admin_addr.unwrap();

    let token = key.token(&claims("alice", 3));
    assert_eq!(get_bearer(&gw, &token).await.status, 200);
    assert_eq!(cache_counts(admin).await, (0, 1), "first sight is a miss");
    assert_eq!(get_bearer(&gw, &token).await.status, 200);
    assert_eq!(cache_counts(admin).await, (1, 1), "the same token again is a hit");
    assert_eq!(up.hits(), 2);

    // The payload changed under the cached token's signature: another key, a miss, and the signature fails.
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let header = signed.split('.').next().unwrap();
    let forged = format!("{header}.{}.{sig}", b64(claims("mallory", 600).to_string().as_bytes()));
    let before = rejections(admin, "auth.jwt.signature").await;
    expect_401(&gw, get_bearer(&gw, &forged).await, "auth.jwt.signature", before).await;
    assert_eq!(cache_counts(admin).await, (1, 2));
    // Refusals are not cached: the same forgery is verified (and refused) again.
    let before = rejections(admin, "auth.jwt.signature").await;
    expect_401(&gw, get_bearer(&gw, &forged).await, "auth.jwt.signature", before).await;
    assert_eq!(cache_counts(admin).await, (1, 3));

    // The cached token's exp passes (leeway 0): refused as expired, although it is still in the cache.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let before = rejections(admin, "auth.jwt.expired").await;
    expect_401(&gw, get_bearer(&gw, &token).await, "auth.jwt.expired", before).await;
    assert_eq!(cache_counts(admin).await.0, 1, "an expired entry is not a hit");
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_out_of_the_jwks_takes_its_cached_tokens_with_it() {
    let up = TestUpstream::start().await;
    let old = JwtKey::rsa("k-old");
    let kept = JwtKey::ec("k-kept");
    let idp = JwksServer::start(jwks(&[&old, &kept])).await;
    let issuer = "    min_refetch: 300ms\n    refresh: 1h\n    fetch_timeout: 1s\n";
    let gw = TestGateway::start_in(TempDir::new(), &yaml(&up.url(), &idp.url(), issuer), false).await;
    let admin = gw.handle.admin_addr.unwrap();

    let by_old = old.token(&claims("alice", 600));
    let by_kept = kept.token(&claims("bob", 600));
    for t in [&by_old, &by_kept, &by_old, &by_kept] {
        assert_eq!(get_bearer(&gw, t).await.status, 200);
    }
    assert_eq!(cache_counts(admin).await, (2, 2));

    // The IdP drops the old key; a token with a kid the gateway does not know makes it refetch.
    *idp.doc.lock().unwrap() = jwks(&[&kept]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let fetches = idp.hits();
    let unknown = kept.sign(json!({ "kid": "k-next" }), &claims("carol", 600));
    let before = rejections(admin, "auth.jwt.kid").await;
    expect_401(&gw, get_bearer(&gw, &unknown).await, "auth.jwt.kid", before).await;
    assert_eq!(idp.hits(), fetches + 1, "the unknown kid refetched the JWKS");

    // The token signed with the removed key is refused although it was cached; the kept key's token still hits.
    let before = rejections(admin, "auth.jwt.kid").await;
    expect_401(&gw, get_bearer(&gw, &by_old).await, "auth.jwt.kid", before).await;
    let (hits, _) = cache_counts(admin).await;
    assert_eq!(get_bearer(&gw, &by_kept).await.status, 200);
    assert_eq!(cache_counts(admin).await.0, hits + 1, "an unchanged key keeps its cached tokens across a refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_entries_0_turns_the_cache_off() {
    let up = TestUpstream::start().await;
    let key = JwtKey::rsa("rsa-1");
    let dir = TempDir::new();
    let jwks_path = dir.write("jwks.json", &jwks(&[&key]));
    let extra = "    cache: { max_entries: 0 }\n";
    let gw = TestGateway::start_in(dir, &yaml(&up.url(), &jwks_path.display().to_string(), extra), false).await;
    let admin = gw.handle.admin_addr.unwrap();
    let token = key.token(&claims("alice", 600));
    for _ in 0..3 {
        assert_eq!(get_bearer(&gw, &token).await.status, 200);
    }
    assert_eq!(cache_counts(admin).await, (0, 0), "no cache, nothing counted");
    assert_eq!(up.hits(), 3);
}

#[test]
fn max_entries_is_bounded_in_config() {
    let dir = TempDir::new();
    let jwks_path = dir.write("jwks.json", &jwks(&[&JwtKey::ec("ec-1")]));
    let text =
        yaml("http://127.0.0.1:9", &jwks_path.display().to_string(), "    cache: { max_entries: 99999999999 }\n");
    let e = gateway::config::load_str("t.yaml", &text, dir.path(), &gateway::metrics::Metrics::new()).err().unwrap();
    assert!(e.to_string().contains("max_entries"), "{e}");
}
