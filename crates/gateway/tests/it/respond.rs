use crate::testkit::*;

fn routes() -> &'static str {
    "  - { path: \"/*\", methods: [ANY], upstream: app, auth: none }\n  - { path: /debug/*, methods: [GET], upstream: app, auth: none, modes: { respond: monitor } }"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_and_fingerprints_never_reach_the_client() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes(), "")).await;
    for (path, status) in [("/leak", 500), ("/leak?status=503", 503)] {
        let got = get(gw.addr(), path).await;
        assert_eq!(got.status, status);
        assert_eq!(got.code(), "upstream.error");
        assert_eq!(got.json()["status"], status);
        let text = got.text();
        for leak in ["Traceback", "Werkzeug", "sqlite3", "SECRET", "Yx4kq9GfWQ1cC0d3", "/srv/app"] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
        for h in ["server", "x-powered-by", "x-aspnet-version", "x-debug-token"] {
            assert!(got.headers.get(h).is_none(), "{h} leaked");
        }
        assert_eq!(got.headers["retry-after"], "7");
        assert_eq!(got.headers["x-content-type-options"], "nosniff");
        assert_eq!(got.headers["x-frame-options"], "DENY");
        assert!(got.headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    }
    // 4xx bodies pass by default; successful bodies always do, with the security headers added.
    let got = get(gw.addr(), "/leak?status=404").await;
    assert_eq!(got.status, 404);
    assert!(got.text().contains("Traceback"));
    assert!(got.headers.get("server").is_none());
    let got = get(gw.addr(), "/echo").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["referrer-policy"], "no-referrer");
    // Gateway-generated answers carry them too.
    assert_eq!(get(gw.addr(), "/nope/../../x").await.headers["x-content-type-options"], "nosniff");
    // Monitor mode on a route: the body passes (flagged in the access log), headers are still stripped.
    let got = get(gw.addr(), "/debug/leak").await;
    assert_eq!(got.status, 500);
    assert!(got.text().contains("Traceback"));
    assert!(got.headers.get("x-powered-by").is_none());
    gw.handle.shutdown().await;

    let gw = TestGateway::start(&config(
        &one_upstream(&up.url()),
        routes(),
        "respond: { hide_client_errors: true, strip_headers: [retry-after], security_headers: false }",
    ))
    .await;
    let got = get(gw.addr(), "/leak?status=404").await;
    assert_eq!((got.status, got.code()), (404, "upstream.error".to_string()));
    assert!(got.headers.get("retry-after").is_none());
    assert!(got.headers.get("x-frame-options").is_none());
    gw.handle.shutdown().await;
}
