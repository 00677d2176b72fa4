//! Cedar policies over real sockets: evaluated after the built-in checks for anonymous and identified callers,
//! 403 `authz.policy` on a deny, reloaded with the config, and a bad policy refused at load.

use crate::testkit::*;

const POLICIES: &str = r#"
@id("read-all")
permit(principal, action == Action::"GET", resource);

@id("partners-write")
permit(principal, action == Action::"POST", resource == Route::"orders")
when { principal.scopes.contains("orders:write") };

@id("no-delete")
forbid(principal, action == Action::"DELETE", resource);
"#;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-policies";

struct Setup {
    gw: TestGateway,
    up: TestUpstream,
    ed: HttpSigner,
    mac: HttpSigner,
}

async fn setup() -> Setup {
    let up = TestUpstream::start().await;
    let (ed, public) = HttpSigner::ed25519();
    let (mac, secret) = HttpSigner::hmac(SECRET);
    let dir = TempDir::new();
    dir.write("orders.cedar", POLICIES);
    let extra = format!(
        "identity:\n  signatures:\n    keys:\n      partner-a: {{ alg: ed25519, public_key: \"{public}\", scopes: [orders:write] }}\n      billing: {{ alg: hmac-sha256, secret: \"{secret}\" }}\npolicies: {{ files: [orders.cedar] }}\n"
    );
    let routes = "  - { id: public, path: /echo/public, methods: [GET, POST], upstream: app, auth: none }\n  - { id: orders, path: /echo/orders, methods: [GET, POST, DELETE], upstream: app, auth: [signature] }";
    let gw = TestGateway::start_in(dir, &config(&one_upstream(&up.url()), routes, &extra), false).await;
    Setup { gw, up, ed, mac }
}

async fn signed(s: &Setup, signer: &HttpSigner, keyid: &str, method: &str, nonce: &str) -> Got {
    let h = signer.sign(keyid, method, "/echo/orders", &[], b"", now(), nonce);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    call(s.gw.addr(), method, "/echo/orders", &h, "").await
}

fn denied(got: &Got) {
    assert_eq!(got.status, 403, "{}", got.text());
    assert_eq!(got.code(), "authz.policy");
}

#[tokio::test]
async fn policies_permit_and_deny_anonymous_and_identified_callers() {
    let s = setup().await;
    assert_eq!(get(s.gw.addr(), "/echo/public").await.status, 200, "anonymous GET is permitted");
    denied(&post(s.gw.addr(), "/echo/public", "x").await); // no permit for an anonymous POST: default deny
    assert_eq!(signed(&s, &s.ed, "partner-a", "POST", "p1").await.status, 200, "scope orders:write may POST");
    denied(&signed(&s, &s.mac, "billing", "POST", "p2").await); // no such scope
    denied(&signed(&s, &s.ed, "partner-a", "DELETE", "p3").await); // forbid wins
    assert_eq!(signed(&s, &s.mac, "billing", "GET", "p4").await.status, 200);
    assert_eq!(s.up.hits(), 3, "denied requests never reach the upstream");
}

#[tokio::test]
async fn policies_reload_with_the_config_and_a_bad_policy_keeps_the_old_ones() {
    let s = setup().await;
    assert_eq!(get(s.gw.addr(), "/echo/public").await.status, 200);
    // A policy that does not parse: the reload is refused, the running policies stay.
    s.gw.dir.write("orders.cedar", "permit(principal, action, resource) when { oops");
    let err = s.gw.handle.reload().await.expect_err("a broken policy must refuse the reload");
    assert!(err.to_string().contains("orders.cedar"), "{err}");
    assert_eq!(get(s.gw.addr(), "/echo/public").await.status, 200);
    // A valid change applies on reload.
    s.gw.dir.write(
        "orders.cedar",
        &format!("{POLICIES}\n@id(\"no-public\")\nforbid(principal, action, resource == Route::\"public\");\n"),
    );
    s.gw.handle.reload().await.expect("reload");
    denied(&get(s.gw.addr(), "/echo/public").await);
    assert_eq!(signed(&s, &s.mac, "billing", "GET", "r1").await.status, 200);
}
