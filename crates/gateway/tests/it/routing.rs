use crate::testkit::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_routes_and_methods_are_refused_with_problem_json() {
    let up = TestUpstream::start().await;
    let routes = "  - { path: \"/users/{id}\", methods: [GET], upstream: app, auth: none }\n  - { path: /public/*, methods: [GET], upstream: app, auth: none }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    assert_eq!(get(gw.addr(), "/users/7").await.text(), "upstream:/users/7");
    assert_eq!(get(gw.addr(), "/public/a/b.css").await.status, 200);

    let got = get(gw.addr(), "/admin").await;
    assert_eq!(got.status, 404);
    assert_eq!(got.code(), "route.not_found");
    assert!(!got.json()["request_id"].as_str().unwrap().is_empty());

    let got = post(gw.addr(), "/users/7", "x").await;
    assert_eq!(got.status, 405);
    assert_eq!(got.code(), "route.method_not_allowed");
    assert_eq!(got.headers["allow"], "GET");
    assert_eq!(up.hits(), 2, "refused requests must not reach the upstream");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_spelling_cannot_dodge_a_route() {
    let up = TestUpstream::start().await;
    // /login has a tiny body cap; everything else is open. Every spelling of /login must hit the cap.
    let routes = "  - { path: /login, methods: [POST], upstream: app, auth: none, max_body_bytes: 10 }\n  - { path: \"/*\", methods: [ANY], upstream: app, auth: none }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    for spelling in [
        "/login",
        "/Login",
        "/LOGIN",
        "/login/",
        "//login",
        "/%6cogin",
        "/%6C%6F%67%69%6E",
        "/x/../login",
        "/./login",
        "/x/%2e%2e/login",
    ] {
        let got = post(gw.addr(), spelling, "a body longer than ten bytes").await;
        assert_eq!(got.status, 413, "{spelling} escaped the /login route: {}", got.text());
        assert_eq!(got.code(), "admit.body_too_large");
    }
    // Ambiguous spellings are refused outright.
    for bad in ["/..%2flogin", "/a%5c..%5clogin", "/..;/login", "/%252e%252e/login", "/../login"] {
        let got = post(gw.addr(), bad, "x").await;
        assert_eq!(got.status, 400, "{bad}: {}", got.text());
        assert_eq!(got.code(), "admit.bad_path");
    }
    assert_eq!(up.hits(), 0);
    // ANY does not include TRACE (cross-site tracing) or CONNECT.
    let got = call(gw.addr(), "TRACE", "/anything", &[], "").await;
    assert_eq!((got.status, got.code()), (405, "route.method_not_allowed".to_string()));
    // The upstream sees the canonical path.
    assert_eq!(get(gw.addr(), "/a/./b//c/../%64").await.text(), "upstream:/a/b/d");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_select_routes() {
    let up = TestUpstream::start().await;
    let routes = "  - { path: /a, hosts: [api.example.com], methods: [GET], upstream: app, auth: none }\n  - { path: /b, hosts: [\"*.tenant.test\"], methods: [GET], upstream: app, auth: none }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    let got = send_host(gw.addr(), "/a", "API.example.com:8080").await;
    assert_eq!(got.status, 200);
    assert_eq!(send_host(gw.addr(), "/a", "other.example.com").await.status, 404);
    assert_eq!(send_host(gw.addr(), "/b", "x.tenant.test").await.status, 200);
    assert_eq!(send_host(gw.addr(), "/b", "tenant.test").await.status, 404);
    gw.handle.shutdown().await;
}

async fn send_host(addr: std::net::SocketAddr, path: &str, host: &str) -> Got {
    call(addr, "GET", path, &[("host", host)], "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_sends_clients_to_https() {
    let dir = TempDir::new();
    let yaml = "listen:\n  - { addr: \"127.0.0.1:0\", redirect_https: { port: 8443 } }\naccess_log: off\nupstreams:\n  app: { targets: [\"http://127.0.0.1:9\"] }\nroutes:\n  - { path: \"/*\", methods: [ANY], upstream: app, auth: none }\n";
    let gw = TestGateway::start_in(dir, yaml, false).await;
    let got = send_host(gw.addr(), "/users/1?x=2", "api.example.com").await;
    assert_eq!(got.status, 308);
    assert_eq!(got.headers["location"], "https://api.example.com:8443/users/1?x=2");
    let got = raw(gw.addr(), b"GET / HTTP/1.1\r\nHost: evil.com\r\n\tx\r\n\r\n", Duration::from_millis(500)).await;
    assert!(!got.contains("evil.com\r\n\t"), "{got}");
    gw.handle.shutdown().await;
}
