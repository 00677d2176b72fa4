//! identify and authorize over real sockets: API keys, JWT (JWKS from a file and from a real HTTP server),
//! mTLS mappings; scopes, roles, ownership (BOLA) and mass assignment; identity headers.

use crate::testkit::*;
use gateway::stages::identify::api_key;
use serde_json::json;

const ISS: &str = "https://id.test.example/";
const AUD: &str = "orders-api";

fn claims(sub: &str, scope: &str) -> serde_json::Value {
    let t = now();
    json!({ "iss": ISS, "aud": AUD, "sub": sub, "scope": scope, "iat": t, "nbf": t - 5, "exp": t + 600 })
}

fn with(mut c: serde_json::Value, k: &str, v: serde_json::Value) -> serde_json::Value {
    if v.is_null() {
        c.as_object_mut().unwrap().remove(k);
    } else {
        c[k] = v;
    }
    c
}

/// JWT routes in the shape of examples/jwt.yaml, plus an echo route to see what the upstream gets.
fn jwt_routes() -> &'static str {
    r#"  - { path: /health, methods: [GET], upstream: app, auth: none }
  - { path: /echo/*, methods: [GET], upstream: app, auth: [jwt] }
  - path: /api/*
    methods: [GET, POST, PUT, PATCH, DELETE]
    upstream: app
    auth: [jwt]
    scopes: { GET: [read], "POST|PUT|PATCH|DELETE": [write] }
  - path: "/api/users/{id}/*"
    methods: [GET, POST, PUT, PATCH, DELETE]
    upstream: app
    auth: [jwt]
    scopes: { GET: [read], ANY: [write] }
    owner: { param: id, claim: sub, override_roles: [admin] }
    mass_assignment: { fields: [role, is_admin], roles: [admin] }
  - path: /api/transfers
    methods: [POST]
    upstream: app
    auth: [jwt]
    owner: { json: from.account, claim: accounts }
  - path: /api/reports
    methods: [GET]
    upstream: app
    auth: [jwt]
    owner: { query: user, claim: sub }
  - { path: /admin/*, methods: [ANY], upstream: app, auth: [jwt], roles: [admin] }"#
}

fn jwt_config(up: &str, jwks: &str, extra_issuer: &str) -> String {
    config(
        &one_upstream(up),
        jwt_routes(),
        &format!(
            "admin: {{ addr: \"127.0.0.1:0\" }}\nidentity:\n  jwt:\n    issuer: \"{ISS}\"\n    audience: {AUD}\n    jwks: \"{jwks}\"\n    algorithms: [RS256, ES256, EdDSA]\n    leeway: 5s\n{extra_issuer}"
        ),
    )
}

async fn bearer(gw: &TestGateway, method: &str, path: &str, token: &str, body: &str) -> Got {
    let auth = format!("Bearer {token}");
    let mut h = vec![("authorization", auth.as_str())];
    if !body.is_empty() {
        h.push(("content-type", "application/json"));
    }
    call(gw.addr(), method, path, &h, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_attacks_are_refused_each_with_its_code() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let (rsa, ec, ed, evil) = (JwtKey::rsa("rsa-1"), JwtKey::ec("ec-1"), JwtKey::ed("ed-1"), JwtKey::rsa("rsa-1"));
    dir.write("jwks.json", &jwks(&[&rsa, &ec, &ed]));
    let gw = TestGateway::start_in(dir, &jwt_config(&up.url(), "jwks.json", ""), false).await;
    let admin = gw.handle.admin_addr.unwrap();

    // Happy paths: three key types; the upstream gets the verified identity, not the client's claims.
    for key in [&rsa, &ec, &ed] {
        let got = call(
            gw.addr(),
            "GET",
            "/echo/me",
            &[
                ("authorization", &format!("Bearer {}", key.token(&claims("alice", "read write")))),
                ("x-consumer-id", "admin"),
                ("x-user-role", "admin"),
            ],
            "",
        )
        .await;
        assert_eq!(
            got.status,
            200,
            "{}: {} {}",
            key.alg,
            got.text(),
            get(admin, "/metrics")
                .await
                .text()
                .lines()
                .filter(|l| l.contains("rejections_total{"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let h = &got.json()["headers"];
        assert_eq!(h["x-rampart-consumer"], "alice");
        assert_eq!(h["x-rampart-auth-method"], "jwt");
        assert_eq!(h["x-rampart-scopes"], "read write");
        assert!(h.get("x-consumer-id").is_none() && h.get("x-user-role").is_none(), "{h}");
    }
    assert_eq!(get(gw.addr(), "/health").await.status, 200);

    let good = rsa.token(&claims("alice", "read"));
    let (h, p, _) = {
        let mut it = good.split('.');
        (it.next().unwrap().to_string(), it.next().unwrap().to_string(), it.next().unwrap().to_string())
    };
    let t = now();
    let mut cases: Vec<(&str, String, &str)> = vec![
        ("no token", String::new(), "auth.missing"),
        ("garbage", "abc.def.ghi".into(), "auth.jwt.malformed"),
        ("JWE shape", "a.b.c.d.e".into(), "auth.jwt.malformed"),
    ];
    for alg in ["none", "None", "NONE", "nOnE"] {
        cases.push((
            "alg none",
            forge(&json!({ "alg": alg, "typ": "JWT" }), &claims("alice", "read write"), b""),
            "auth.jwt.alg",
        ));
    }
    // Key confusion: HS256 "signed" with the RSA public key.
    let conf_head = json!({ "alg": "HS256", "typ": "JWT", "kid": "rsa-1" });
    let conf_msg =
        format!("{}.{}", b64(conf_head.to_string().as_bytes()), b64(claims("alice", "read").to_string().as_bytes()));
    let conf = format!("{conf_msg}.{}", b64(&hmac_sha256(&rsa.public_der(), conf_msg.as_bytes())));
    cases.push(("HS256 with the RSA public key", conf, "auth.jwt.alg"));
    cases.push(("alg not allowed", rsa.sign(json!({ "alg": "RS512" }), &claims("alice", "read")), "auth.jwt.alg"));
    cases.push(("RS alg on an EC key", ec.sign(json!({ "alg": "RS256" }), &claims("alice", "read")), "auth.jwt.alg"));
    cases.push((
        "expired",
        rsa.token(&with(with(claims("alice", "read"), "exp", json!(t - 3600)), "iat", json!(t - 7200))),
        "auth.jwt.expired",
    ));
    cases.push((
        "nbf in the future",
        rsa.token(&with(claims("alice", "read"), "nbf", json!(t + 3600))),
        "auth.jwt.not_yet_valid",
    ));
    cases.push((
        "iat in the future",
        rsa.token(&with(claims("alice", "read"), "iat", json!(t + 3600))),
        "auth.jwt.not_yet_valid",
    ));
    cases.push((
        "wrong audience",
        rsa.token(&with(claims("alice", "read"), "aud", json!("other-api"))),
        "auth.jwt.audience",
    ));
    cases.push((
        "wrong issuer",
        rsa.token(&with(claims("alice", "read"), "iss", json!("https://evil.example/"))),
        "auth.jwt.issuer",
    ));
    cases.push(("no exp", rsa.token(&with(claims("alice", "read"), "exp", json!(null))), "auth.jwt.claims"));
    cases.push(("no sub", rsa.token(&with(claims("alice", "read"), "sub", json!(null))), "auth.jwt.claims"));
    let tampered = format!(
        "{h}.{}.{}",
        b64(claims("admin", "read write").to_string().as_bytes()),
        good.rsplit('.').next().unwrap()
    );
    cases.push(("tampered payload", tampered, "auth.jwt.signature"));
    cases.push(("stripped signature", format!("{h}.{p}."), "auth.jwt.signature"));
    cases.push(("untrusted key, trusted kid", evil.token(&claims("alice", "read")), "auth.jwt.signature"));
    let es = ec.token(&claims("alice", "read"));
    let es_msg = es.rsplit_once('.').unwrap().0;
    cases.push(("psychic signature r=s=0", format!("{es_msg}.{}", b64(&[0u8; 64])), "auth.jwt.signature"));
    cases.push(("unknown kid", rsa.sign(json!({ "kid": "rsa-9" }), &claims("alice", "read")), "auth.jwt.kid"));
    cases.push((
        "kid path traversal",
        rsa.sign(json!({ "kid": "../../../../dev/null" }), &claims("alice", "read")),
        "auth.jwt.kid",
    ));
    cases.push((
        "kid sql",
        rsa.sign(json!({ "kid": "x' UNION SELECT 'key" }), &claims("alice", "read")),
        "auth.jwt.kid",
    ));
    for header in ["jku", "x5u"] {
        cases.push((
            header,
            evil.sign(json!({ header: format!("http://{}/jwks.json", up.addr) }), &claims("alice", "read")),
            "auth.jwt.header",
        ));
    }
    cases.push(("embedded jwk", evil.sign(json!({ "jwk": evil.jwk() }), &claims("alice", "read")), "auth.jwt.header"));
    cases.push(("x5c", evil.sign(json!({ "x5c": ["MIIB"] }), &claims("alice", "read")), "auth.jwt.header"));
    cases.push(("crit", rsa.sign(json!({ "crit": ["exp"] }), &claims("alice", "read")), "auth.jwt.header"));
    let hits = up.hits();
    for (name, token, code) in cases {
        let before = rejections(admin, code).await;
        let got = if token.is_empty() {
            get(gw.addr(), "/api/orders").await
        } else {
            bearer(&gw, "GET", "/api/orders", &token, "").await
        };
        assert_eq!(got.status, 401, "{name}: {}", got.text());
        assert!(!got.text().contains(code) || code == "auth.failed", "{name}: the precise code leaked to the client");
        expect_401(&gw, got, code, before).await;
    }
    assert_eq!(up.hits(), hits, "a refused request reached the upstream");
    assert_eq!(up.hits(), hits);

    // authorize
    let reader = rsa.token(&claims("alice", "read"));
    let writer = rsa.token(&claims("alice", "read write"));
    let admin_tok = rsa.token(&with(claims("carol", "read write"), "roles", json!(["admin"])));
    let expect = |want: u16, code: &'static str| {
        move |got: Got| {
            assert_eq!(got.status, want, "{}", got.text());
            if want == 403 {
                assert_eq!(got.code(), code);
            }
        }
    };
    expect(200, "")(bearer(&gw, "GET", "/api/orders", &reader, "").await);
    expect(403, "authz.scope")(bearer(&gw, "POST", "/api/orders", &reader, r#"{"item":"w"}"#).await);
    expect(200, "")(bearer(&gw, "POST", "/api/orders", &writer, r#"{"item":"w"}"#).await);
    expect(403, "authz.object")(bearer(&gw, "GET", "/api/users/bob/profile", &reader, "").await);
    expect(200, "")(bearer(&gw, "GET", "/api/users/alice/profile", &reader, "").await);
    expect(200, "")(bearer(&gw, "GET", "/api/users/%61lice/profile", &reader, "").await);
    expect(200, "")(bearer(&gw, "GET", "/api/users/bob/profile", &admin_tok, "").await);
    expect(403, "authz.function")(bearer(&gw, "GET", "/admin/stats", &reader, "").await);
    expect(200, "")(bearer(&gw, "GET", "/admin/stats", &admin_tok, "").await);
    expect(403, "authz.mass_assignment")(
        bearer(&gw, "PATCH", "/api/users/alice/profile", &writer, r#"{"name":"a","profile":{"Role":"admin"}}"#).await,
    );
    expect(200, "")(bearer(&gw, "PATCH", "/api/users/alice/profile", &writer, r#"{"name":"a"}"#).await);
    expect(200, "")(bearer(&gw, "PATCH", "/api/users/bob/profile", &admin_tok, r#"{"role":"admin"}"#).await);
    expect(403, "authz.object")(bearer(&gw, "GET", "/api/reports?user=bob", &reader, "").await);
    expect(403, "authz.object")(bearer(&gw, "GET", "/api/reports?user=alice&user=bob", &reader, "").await);
    expect(200, "")(bearer(&gw, "GET", "/api/reports?user=alice", &reader, "").await);
    let acct = rsa.token(&with(claims("alice", ""), "accounts", json!(["acc-1", "acc-2"])));
    expect(200, "")(bearer(&gw, "POST", "/api/transfers", &acct, r#"{"from":{"account":"acc-2"},"amount":5}"#).await);
    expect(403, "authz.object")(
        bearer(&gw, "POST", "/api/transfers", &acct, r#"{"from":{"account":"acc-9"},"amount":5}"#).await,
    );
    expect(403, "authz.object")(
        bearer(&gw, "POST", "/api/transfers", &acct, r#"{"from":{"account":"acc-9","account":"acc-1"}}"#).await,
    );
    expect(403, "authz.object")(bearer(&gw, "POST", "/api/transfers", &acct, r#"{"amount":5}"#).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_rotation_unknown_kid_rate_limit_and_idp_down() {
    let up = TestUpstream::start().await;
    let old = JwtKey::rsa("k-old");
    let new = JwtKey::ec("k-new");
    let idp = JwksServer::start(jwks(&[&old])).await;
    let issuer = "    min_refetch: 300ms\n    refresh: 1h\n    fetch_timeout: 1s\n";
    let gw = TestGateway::start_in(TempDir::new(), &jwt_config(&up.url(), &idp.url(), issuer), true).await;
    let admin = gw.handle.admin_addr.unwrap();
    let ok = |got: Got| assert_eq!(got.status, 200, "{}", got.text());
    ok(bearer(&gw, "GET", "/api/orders", &old.token(&claims("alice", "read")), "").await);

    // Rotation: the IdP starts signing with a new key; the first token with its kid triggers one refetch.
    *idp.doc.lock().unwrap() = jwks(&[&old, &new]);
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    ok(bearer(&gw, "GET", "/api/orders", &new.token(&claims("alice", "read")), "").await);

    // A flood of made-up kids costs the IdP at most one fetch per min_refetch.
    let hits = idp.hits();
    for i in 0..20 {
        let before = rejections(admin, "auth.jwt.kid").await;
        let got = bearer(
            &gw,
            "GET",
            "/api/orders",
            &old.sign(json!({ "kid": format!("made-up-{i}") }), &claims("a", "read")),
            "",
        )
        .await;
        expect_401(&gw, got, "auth.jwt.kid", before).await;
    }
    assert!(idp.hits() - hits <= 2, "unknown kids fetched the JWKS {} times", idp.hits() - hits);

    // The IdP goes down: the last good keys keep working, across a config reload too.
    idp.up.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let _ = bearer(&gw, "GET", "/api/orders", &old.sign(json!({ "kid": "other" }), &claims("a", "read")), "").await;
    gw.handle.reload().await.unwrap();
    ok(bearer(&gw, "GET", "/api/orders", &new.token(&claims("alice", "read")), "").await);
    ok(bearer(&gw, "GET", "/api/orders", &old.token(&claims("alice", "read")), "").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_never_loaded_fails_closed() {
    let up = TestUpstream::start().await;
    let key = JwtKey::rsa("k1");
    let idp = JwksServer::start(jwks(&[&key])).await;
    idp.up.store(false, std::sync::atomic::Ordering::SeqCst);
    let issuer = "    min_refetch: 50ms\n    fetch_timeout: 1s\n";
    let gw = TestGateway::start_in(TempDir::new(), &jwt_config(&up.url(), &idp.url(), issuer), false).await;
    let before = rejections(gw.handle.admin_addr.unwrap(), "auth.jwt.keys_unavailable").await;
    let got = bearer(&gw, "GET", "/api/orders", &key.token(&claims("alice", "read")), "").await;
    expect_401(&gw, got, "auth.jwt.keys_unavailable", before).await;
    idp.up.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let got = bearer(&gw, "GET", "/api/orders", &key.token(&claims("alice", "read")), "").await;
    assert_eq!(got.status, 200, "{}", got.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_issuer_needs_a_long_secret_from_the_environment() {
    let up = TestUpstream::start().await;
    std::env::set_var("RAMPART_TEST_HS_SECRET", "0123456789abcdef0123456789abcdef-long-enough");
    std::env::set_var("RAMPART_TEST_HS_SHORT", "short");
    let yaml = |var: &str| {
        config(
            &one_upstream(&up.url()),
            "  - { path: /api/*, methods: [GET], upstream: app, auth: [jwt] }",
            &format!("admin: {{ addr: \"127.0.0.1:0\" }}\nidentity:\n  jwt: [{{ issuer: \"{ISS}\", audience: [{AUD}], secret_env: {var}, algorithms: [HS256] }}]\n"),
        )
    };
    let dir = TempDir::new();
    let p = dir.write("short.yaml", &yaml("RAMPART_TEST_HS_SHORT"));
    let Err(e) = gateway::config::load_file(&p, &gateway::metrics::Metrics::new()) else {
        panic!("short secret accepted")
    };
    assert!(e.to_string().contains("shorter than 32 bytes"), "{e}");
    let gw = TestGateway::start(&yaml("RAMPART_TEST_HS_SECRET")).await;
    let head = json!({ "alg": "HS256", "typ": "JWT" });
    let msg = format!("{}.{}", b64(head.to_string().as_bytes()), b64(claims("svc", "").to_string().as_bytes()));
    let tok = |secret: &[u8]| format!("{msg}.{}", b64(&hmac_sha256(secret, msg.as_bytes())));
    assert_eq!(
        bearer(&gw, "GET", "/api/x", &tok(b"0123456789abcdef0123456789abcdef-long-enough"), "").await.status,
        200
    );
    let before = rejections(gw.handle.admin_addr.unwrap(), "auth.jwt.signature").await;
    expect_401(&gw, bearer(&gw, "GET", "/api/x", &tok(b"guessed"), "").await, "auth.jwt.signature", before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_verify_expire_revoke_and_scope() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let keys = dir.path().join("keys.yaml");
    let good = api_key::add(&keys, "billing", vec!["orders:read".into()], vec![], None).unwrap();
    let other = api_key::add(&keys, "catalog", vec!["products:read".into()], vec![], None).unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    let expired = api_key::add(&keys, "old", vec!["orders:read".into()], vec![], Some(past)).unwrap();
    let doomed = api_key::add(&keys, "leaked", vec!["orders:read".into()], vec![], None).unwrap();
    let text = std::fs::read_to_string(&keys).unwrap();
    for k in [&good, &other, &expired, &doomed] {
        assert!(!text.contains(&k.secret), "a secret was stored");
    }
    let routes = "  - { path: /orders/*, methods: [GET], upstream: app, auth: [api_key], scopes: [orders:read] }\n  - { path: /echo/*, methods: [GET], upstream: app, auth: [api_key] }\n  - { path: /open, methods: [GET], upstream: app, auth: none }";
    let yaml = config(
        &one_upstream(&up.url()),
        routes,
        "admin: { addr: \"127.0.0.1:0\" }\nidentity:\n  api_keys: { file: keys.yaml }\n",
    );
    let gw = TestGateway::start_in(dir, &yaml, false).await;
    let admin = gw.handle.admin_addr.unwrap();
    let with_key = |k: &str| vec![("x-api-key".to_string(), k.to_string())];
    let send_key = |path: &'static str, k: String| {
        let addr = gw.addr();
        async move {
            let h = with_key(&k);
            let h: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            call(addr, "GET", path, &h, "").await
        }
    };
    let got = send_key("/echo/me", good.secret.clone()).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let h = &got.json()["headers"];
    assert_eq!(h["x-rampart-consumer"], "billing");
    assert_eq!(h["x-rampart-auth-method"], "api_key");
    assert!(h.get("x-api-key").is_none(), "the secret went upstream");
    assert_eq!(send_key("/orders/1", good.secret.clone()).await.status, 200);
    assert_eq!(get(gw.addr(), "/open").await.status, 200);
    let got = send_key("/orders/1", other.secret.clone()).await;
    assert_eq!((got.status, got.code()), (403, "authz.scope".to_string()));

    for (key, code) in [
        (String::new(), "auth.missing"),
        ("rk_made_up".to_string(), "auth.key.invalid"),
        (expired.secret.clone(), "auth.key.expired"),
    ] {
        let before = rejections(admin, code).await;
        let got = if key.is_empty() { get(gw.addr(), "/orders/1").await } else { send_key("/orders/1", key).await };
        assert!(
            got.headers["www-authenticate"].to_str().unwrap().contains("X-API-Key")
                || got.headers["www-authenticate"].to_str().unwrap().contains("x-api-key")
        );
        expect_401(&gw, got, code, before).await;
    }
    // The key in the query string is not accepted unless configured.
    let before = rejections(admin, "auth.missing").await;
    expect_401(&gw, get(gw.addr(), &format!("/orders/1?api_key={}", good.secret)).await, "auth.missing", before).await;

    // Revocation takes effect on reload and is reported as such.
    assert_eq!(send_key("/orders/1", doomed.secret.clone()).await.status, 200);
    api_key::revoke(&keys_path(&gw), &doomed.entry.id).unwrap();
    gw.handle.reload().await.unwrap();
    let before = rejections(admin, "auth.key.revoked").await;
    expect_401(&gw, send_key("/orders/1", doomed.secret.clone()).await, "auth.key.revoked", before).await;
}

fn keys_path(gw: &TestGateway) -> std::path::PathBuf {
    gw.dir.path().join("keys.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_certificates_map_to_consumers() {
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let pki = Pki::new(dir.path(), "m");
    let (cert, key) = pki.leaf("server", &["api.test"], false);
    let (billing_c, billing_k) = pki.leaf("billing", &["billing.clients.test"], true);
    let (stranger_c, stranger_k) = pki.leaf("stranger", &["stranger.clients.test"], true);
    let yaml = format!(
        "listen:\n  - addr: \"127.0.0.1:0\"\n    tls: {{ cert: {}, key: {}, client_auth: {{ ca: {}, required: true }} }}\naccess_log: off\nadmin: {{ addr: \"127.0.0.1:0\" }}\nidentity:\n  mtls:\n    - {{ san: \"DNS:billing.clients.test\", consumer: billing, roles: [service] }}\nupstreams:\n{}\nroutes:\n  - {{ path: /echo/*, methods: [GET], upstream: app, auth: [mtls], roles: [service] }}\n",
        cert.display(),
        key.display(),
        pki.ca_path.display(),
        one_upstream(&up.url())
    );
    let gw = TestGateway::start_in(dir, &yaml, false).await;
    let fetch = |c: std::path::PathBuf, k: std::path::PathBuf| {
        let ca = pki.ca_der();
        let addr = gw.addr();
        async move {
            let connector = tls_client(&ca, &[b"http/1.1"], Some((&c, &k)));
            let s = tls_connect(&connector, addr, "api.test").await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
            tokio::spawn(conn);
            let req = http::Request::get("/echo/who")
                .header("host", "api.test")
                .header("x-consumer-id", "root")
                .body(Full::new(bytes::Bytes::new()))
                .unwrap();
            read(sender.send_request(req).await.unwrap()).await
        }
    };
    let got = fetch(billing_c, billing_k).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["headers"]["x-rampart-consumer"], "billing");
    assert_eq!(got.json()["headers"]["x-rampart-auth-method"], "mtls");
    assert!(got.json()["headers"].get("x-consumer-id").is_none());
    let before = rejections(gw.handle.admin_addr.unwrap(), "auth.mtls.unmapped").await;
    expect_401(&gw, fetch(stranger_c, stranger_k).await, "auth.mtls.unmapped", before).await;
}

#[test]
fn routes_must_say_who_may_call_them() {
    let dir = TempDir::new();
    let yaml = "listen: [{ addr: \"127.0.0.1:0\" }]\nupstreams:\n  app: { targets: [\"http://127.0.0.1:9\"] }\nroutes:\n  - { path: /open, methods: [GET], upstream: app, auth: none }\n  - { path: /forgot, methods: [GET], upstream: app }\n  - { path: /bad, methods: [GET], upstream: app, auth: [jwt] }\n  - { path: /x, methods: [GET, POST], upstream: app, auth: none, roles: [admin] }\n";
    let p = dir.write("r.yaml", yaml);
    let Err(e) = gateway::config::load_file(&p, &gateway::metrics::Metrics::new()) else { panic!("accepted") };
    let text = e.to_string();
    assert!(text.contains("r.yaml:6:") && text.contains("route `/forgot` does not say who may call it"), "{text}");
    assert!(text.contains("add `auth: none` for a public route"), "{text}");
    assert!(text.contains("r.yaml:7:") && text.contains("`jwt` is not configured"), "{text}");
    assert!(text.contains("is public (`auth: none`) but has authorization rules"), "{text}");
    // Scopes per method must cover every method of the route.
    let yaml = "listen: [{ addr: \"127.0.0.1:0\" }]\nidentity: { api_keys: { file: k.yaml } }\nupstreams:\n  app: { targets: [\"http://127.0.0.1:9\"] }\nroutes:\n  - { path: /o, methods: [GET, DELETE], upstream: app, auth: [api_key], scopes: { GET: [read] } }\n";
    dir.write("k.yaml", "keys: []\n");
    let p = dir.write("s.yaml", yaml);
    let Err(e) = gateway::config::load_file(&p, &gateway::metrics::Metrics::new()) else { panic!("accepted") };
    assert!(e.to_string().contains("scopes do not cover DELETE"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_example_config_works_as_shipped() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let (rsa, ec) = (JwtKey::rsa("rsa-1"), JwtKey::ec("ec-1"));
    let jwks_file = dir.write("jwks.json", &jwks(&[&rsa, &ec]));
    let yaml = example(
        "jwt.yaml",
        &[
            ("RAMPART_LISTEN", "127.0.0.1:0".into()),
            ("RAMPART_UPSTREAM", up.url()),
            ("RAMPART_JWKS", jwks_file.display().to_string()),
            ("RAMPART_JWT_ISSUER", ISS.into()),
            ("RAMPART_JWT_AUDIENCE", AUD.into()),
        ],
    );
    let gw = TestGateway::start_in(dir, &yaml, false).await;
    let reader = rsa.token(&claims("alice", "read"));
    let writer = ec.token(&claims("alice", "read write"));
    let admin = rsa.token(&with(claims("carol", "read"), "roles", json!(["admin"])));
    let none = forge(&json!({ "alg": "none" }), &claims("alice", "read write"), b"");
    let hs = rsa.sign(json!({ "alg": "HS256" }), &claims("alice", "read"));
    for (method, path, token, want) in [
        ("GET", "/health", "", 200),
        ("GET", "/api/orders", "", 401),
        ("GET", "/api/orders", reader.as_str(), 200),
        ("GET", "/api/orders", none.as_str(), 401),
        ("GET", "/api/orders", hs.as_str(), 401),
        ("POST", "/api/orders", reader.as_str(), 403),
        ("POST", "/api/orders", writer.as_str(), 200),
        ("GET", "/api/users/bob/profile", reader.as_str(), 403),
        ("GET", "/api/users/alice/profile", reader.as_str(), 200),
        ("GET", "/api/users/bob/profile", admin.as_str(), 200),
        ("GET", "/admin/stats", reader.as_str(), 403),
        ("GET", "/admin/stats", admin.as_str(), 200),
    ] {
        let got = if token.is_empty() {
            call(gw.addr(), method, path, &[], "").await
        } else {
            bearer(&gw, method, path, token, if method == "POST" { r#"{"item":"w"}"# } else { "" }).await
        };
        assert_eq!(got.status, want, "{method} {path}: {}", got.text());
    }
    let got = bearer(&gw, "PATCH", "/api/users/alice/profile", &writer, r#"{"is_admin":true}"#).await;
    assert_eq!((got.status, got.code()), (403, "authz.mass_assignment".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_example_config_works_as_shipped() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let keys = dir.path().join("partner-keys.yaml");
    let partner = api_key::add(&keys, "partner-a", vec!["orders:read".into()], vec![], None).unwrap();
    let billing =
        api_key::add(&keys, "billing", vec!["orders:read".into(), "orders:write".into()], vec!["billing".into()], None)
            .unwrap();
    let yaml = example(
        "api-keys.yaml",
        &[
            ("RAMPART_LISTEN", "127.0.0.1:0".into()),
            ("RAMPART_UPSTREAM", up.url()),
            ("RAMPART_API_KEYS", keys.display().to_string()),
        ],
    );
    let gw = TestGateway::start_in(dir, &yaml, false).await;
    let k = |s: &str| vec![("x-api-key", s.to_string())];
    let send = |method: &'static str, path: &'static str, key: Vec<(&'static str, String)>, body: &'static str| {
        let addr = gw.addr();
        async move {
            let mut h: Vec<(&str, &str)> = key.iter().map(|(a, b)| (*a, b.as_str())).collect();
            h.push(("content-type", "application/json"));
            call(addr, method, path, &h, body).await
        }
    };
    assert_eq!(send("GET", "/health", vec![], "").await.status, 200);
    assert_eq!(send("GET", "/orders", vec![], "").await.status, 401);
    assert_eq!(send("GET", "/orders", k("rk_wrong"), "").await.status, 401);
    assert_eq!(send("GET", "/orders", k(&partner.secret), "").await.status, 200);
    assert_eq!(send("POST", "/orders", k(&partner.secret), r#"{"item":"w"}"#).await.code(), "authz.scope");
    let got = send("POST", "/orders", k(&billing.secret), r#"{"item":"w","paid":true}"#).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(send("GET", "/partners/partner-a/orders", k(&partner.secret), "").await.status, 200);
    assert_eq!(send("GET", "/partners/partner-b/orders", k(&partner.secret), "").await.code(), "authz.object");
    assert_eq!(send("GET", "/admin/keys", k(&billing.secret), "").await.code(), "authz.function");
    let got =
        send("GET", "/orders", vec![("x-api-key", partner.secret.clone()), ("x-partner-tier", "gold".into())], "")
            .await;
    assert_eq!(got.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_records_identity_and_authorization_failures_without_blocking() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let key = JwtKey::ec("ec-1");
    dir.write("jwks.json", &jwks(&[&key]));
    let routes = "  - { path: /try/*, methods: [GET], upstream: app, auth: [jwt], roles: [admin], modes: { identify: monitor, authorize: monitor } }\n  - { path: /enforced/*, methods: [GET], upstream: app, auth: [jwt] }";
    let extra = format!("admin: {{ addr: \"127.0.0.1:0\" }}\nidentity:\n  jwt: {{ issuer: \"{ISS}\", audience: {AUD}, jwks: jwks.json, algorithms: [ES256] }}\n");
    let gw = TestGateway::start_in(dir, &config(&one_upstream(&up.url()), routes, &extra), false).await;
    let admin = gw.handle.admin_addr.unwrap();
    let monitored = |code: &'static str| async move {
        let text = get(admin, "/metrics").await.text();
        let prefix = format!("rampart_rejections_total{{code=\"{code}\",mode=\"monitor\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    assert_eq!(get(gw.addr(), "/try/x").await.status, 200);
    assert_eq!(monitored("auth.missing").await, 1);
    assert_eq!(bearer(&gw, "GET", "/try/x", &key.token(&claims("alice", "")), "").await.status, 200);
    assert_eq!(monitored("authz.function").await, 1);
    assert_eq!(get(gw.addr(), "/enforced/x").await.status, 401);
    // mtls needs a listener that asks for client certificates.
    let d = TempDir::new();
    let p = d.write("m.yaml", "listen: [{ addr: \"127.0.0.1:0\" }]\nidentity: { mtls: [{ san: \"DNS:a.test\", consumer: a }] }\nupstreams:\n  app: { targets: [\"http://127.0.0.1:9\"] }\nroutes:\n  - { path: /m, methods: [GET], upstream: app, auth: [mtls] }\n");
    let Err(e) = gateway::config::load_file(&p, &gateway::metrics::Metrics::new()) else { panic!("accepted") };
    assert!(e.to_string().contains("needs a listener that asks for client certificates"), "{e}");
}
