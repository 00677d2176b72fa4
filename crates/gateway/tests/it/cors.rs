use crate::testkit::*;

async fn options(addr: std::net::SocketAddr, path: &str, origin: &str, method: &str, headers: Option<&str>) -> Got {
    let mut h = vec![("host", "api.test"), ("origin", origin), ("access-control-request-method", method)];
    if let Some(req) = headers {
        h.push(("access-control-request-headers", req));
    }
    call(addr, "OPTIONS", path, &h, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_are_answered_by_the_gateway_from_the_allow_list() {
    let up = TestUpstream::start().await;
    let routes = "  - path: /echo/*\n    methods: [GET, POST]\n    upstream: app\n    auth: none\n    cors: { origins: [\"https://app.example.com\"], headers: [content-type], expose: [x-request-id], credentials: true }\n  - { path: /private, methods: [GET], upstream: app, auth: none }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    let a = gw.addr();
    let got = options(a, "/echo/x", "https://app.example.com", "POST", Some("Content-Type")).await;
    assert_eq!(got.status, 204);
    assert_eq!(got.headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(got.headers["access-control-allow-credentials"], "true");
    assert_eq!(got.headers["access-control-allow-methods"], "GET, POST");
    for (origin, method, hdrs) in [
        ("https://evil.example", "POST", None),
        ("https://app.example.com", "DELETE", None),
        ("https://app.example.com", "POST", Some("x-admin")),
    ] {
        let got = options(a, "/echo/x", origin, method, hdrs).await;
        if method == "DELETE" {
            // No route for DELETE at all: routing answers.
            assert_eq!(got.status, 405, "{}", got.text());
        } else {
            assert_eq!((got.status, got.code()), (403, "cors.denied".to_string()));
        }
    }
    // A route without CORS: no CORS headers, the preflight is not granted.
    let got = options(a, "/private", "https://app.example.com", "GET", None).await;
    assert!(got.headers.get("access-control-allow-origin").is_none());
    assert_eq!(up.hits(), 0, "preflights must not reach the upstream");

    // Actual requests: headers only for the allowed origin.
    let ok = get_with(a, "/echo/x", &[("origin", "https://app.example.com")]).await;
    assert_eq!(ok.headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(ok.headers["access-control-expose-headers"], "x-request-id");
    let evil = get_with(a, "/echo/x", &[("origin", "https://evil.example")]).await;
    assert!(evil.headers.get("access-control-allow-origin").is_none());
    gw.handle.shutdown().await;
}

#[test]
fn wildcard_with_credentials_is_refused_at_load() {
    let dir = TempDir::new();
    let yaml = config(
        &one_upstream("http://127.0.0.1:9"),
        "  - { path: /a, methods: [GET], upstream: app, auth: none, cors: { origins: [\"*\"], credentials: true } }\n  - { path: /b, methods: [GET], upstream: app, auth: none, cors: { origins: [\"https://x.example/path\"] } }",
        "",
    );
    let p = dir.write("cors.yaml", &yaml);
    let Err(e) = gateway::config::load_file(&p, &gateway::metrics::Metrics::new()) else { panic!("accepted") };
    let text = e.to_string();
    assert!(text.contains("any origin (`*`) with credentials"), "{text}");
    assert!(text.contains("is not an origin"), "{text}");
}
