//! Brute-force lockout over real sockets: failed authentications counted per credential (a signature's key id)
//! and per client IP lock the caller out with 429 `auth.lockout` + `Retry-After`, before any verification.

use crate::testkit::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-lockout";

async fn gateway(up: &TestUpstream, lockout: &str) -> (TestGateway, HttpSigner, HttpSigner) {
    let (ed, public) = HttpSigner::ed25519();
    let (mac, secret) = HttpSigner::hmac(SECRET);
    let extra = format!(
        "admin: {{ addr: \"127.0.0.1:0\" }}\nidentity:\n  signatures:\n    keys:\n      partner-a: {{ alg: ed25519, public_key: \"{public}\" }}\n      billing: {{ alg: hmac-sha256, secret: \"{secret}\" }}\n  lockout: {lockout}\n"
    );
    let routes = "  - { path: /echo/orders, methods: [GET], upstream: app, auth: [signature] }";
    (TestGateway::start(&config(&one_upstream(&up.url()), routes, &extra)).await, ed, mac)
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
