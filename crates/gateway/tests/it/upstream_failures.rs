use crate::testkit::*;
use std::time::Duration;

/// An address nobody listens on.
async fn dead_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_is_a_502_problem_and_then_503_once_ejected() {
    let dead = dead_addr().await;
    let ups = format!("  app: {{ targets: [\"http://{dead}\"], retries: 0, passive_ejection: {{ failures: 2, eject_for: 30s }}, circuit_breaker: {{ enabled: false }} }}");
    let gw = TestGateway::start(&config(&ups, all_routes(), "")).await;
    for _ in 0..2 {
        let got = get(gw.addr(), "/x").await;
        assert_eq!((got.status, got.code()), (502, "upstream.unreachable".to_string()));
        assert!(!got.text().contains("127.0.0.1"), "internals leaked: {}", got.text());
    }
    let got = get(gw.addr(), "/x").await;
    assert_eq!((got.status, got.code()), (503, "upstream.unavailable".to_string()));
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_a_504() {
    let up = TestUpstream::start().await;
    let ups = format!("  app: {{ targets: [\"{}\"], timeouts: {{ response: 300ms }} }}", up.url());
    let gw = TestGateway::start(&config(&ups, all_routes(), "")).await;
    let got = get(gw.addr(), "/slow?ms=2000").await;
    assert_eq!((got.status, got.code()), (504, "upstream.timeout".to_string()));
    assert_eq!(get(gw.addr(), "/slow?ms=10").await.status, 200);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_retry_on_another_target_and_balance() {
    let a = TestUpstream::start().await;
    let b = TestUpstream::start().await;
    let dead = dead_addr().await;
    let ups = format!("  app: {{ targets: [\"http://{dead}\", \"{}\", \"{}\"], retries: 2 }}", a.url(), b.url());
    let gw = TestGateway::start(&config(&ups, all_routes(), "")).await;
    for _ in 0..12 {
        assert_eq!(get(gw.addr(), "/x").await.status, 200);
    }
    assert!(a.hits() >= 4 && b.hits() >= 4, "unbalanced: a={} b={}", a.hits(), b.hits());
    gw.handle.shutdown().await;
}

/// Least-in-flight balancing counts a response whose body still streams as in flight: while one target sends a
/// long body, new requests go to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_in_flight_counts_responses_until_their_body_ends() {
    use http_body_util::BodyExt;
    let a = TestUpstream::start().await;
    let b = TestUpstream::start().await;
    let ups = format!("  app: {{ targets: [\"{}\", \"{}\"], balance: least_in_flight }}", a.url(), b.url());
    let gw = TestGateway::start(&config(&ups, all_routes(), "")).await;
    // 20 chunks 50 ms apart: the head comes at once, the body takes about a second.
    let streaming = get_head(gw.addr(), "/stream?chunks=20&ms=50").await;
    assert_eq!(streaming.status(), 200);
    let (busy, idle) = if a.hits() == 1 { (&a, &b) } else { (&b, &a) };
    assert_eq!((busy.hits(), idle.hits()), (1, 0));
    for _ in 0..6 {
        assert_eq!(get(gw.addr(), "/fast").await.status, 200);
    }
    assert_eq!((busy.hits(), idle.hits()), (1, 6), "every request while the body streams goes to the idle target");
    let body = streaming.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"chunk19;"));
    // Both idle again: ties are broken in turn, so both targets take requests.
    for _ in 0..6 {
        assert_eq!(get(gw.addr(), "/fast").await.status, 200);
    }
    assert!(busy.hits() >= 3 && idle.hits() >= 9, "a={} b={}", a.hits(), b.hits());
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_dead_targets_out_and_readyz_reports_it() {
    let a = TestUpstream::start().await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = l.local_addr().unwrap();
    let b = TestUpstream::serve(l);
    let ups = format!(
        "  app: {{ targets: [\"{}\", \"http://{b_addr}\"], health_check: {{ path: /ok, interval: 100ms, timeout: 200ms, unhealthy_after: 1, healthy_after: 1 }}, passive_ejection: {{ failures: 0 }} }}",
        a.url()
    );
    let gw = TestGateway::start(&config(&ups, all_routes(), "admin: { addr: \"127.0.0.1:0\" }")).await;
    let admin = gw.handle.admin_addr.unwrap();
    assert_eq!(get(admin, "/readyz").await.status, 200);
    drop(b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(get(gw.addr(), "/x").await.status, 200);
    }
    assert!(a.hits() - before >= 10, "requests went to the dead target");
    drop(a);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = get(admin, "/readyz").await;
    assert_eq!(got.status, 503);
    assert_eq!(got.json()["upstreams_without_targets"][0], "app");
    assert_eq!(get(gw.addr(), "/x").await.code(), "upstream.unavailable");
    let metrics = get(admin, "/metrics").await.text();
    assert!(metrics.contains("rampart_rejections_total{code=\"upstream.unavailable\",mode=\"enforce\"}"), "{metrics}");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_opens_on_upstream_errors() {
    let up = TestUpstream::start().await;
    let ups = format!(
        "  app: {{ targets: [\"{}\"], circuit_breaker: {{ min_requests: 4, failure_ratio: 0.5, open_for: 30s }} }}",
        up.url()
    );
    let gw = TestGateway::start(&config(&ups, all_routes(), "")).await;
    for _ in 0..4 {
        assert_eq!(get(gw.addr(), "/status/500").await.status, 500);
    }
    let hits = up.hits();
    let got = get(gw.addr(), "/x").await;
    assert_eq!((got.status, got.code()), (503, "upstream.unavailable".to_string()));
    assert_eq!(up.hits(), hits, "open circuit still sent traffic");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_is_verified_and_can_require_a_client_certificate() {
    let dir = TempDir::new();
    let pki = Pki::new(dir.path(), "up");
    let (cert, key) = pki.leaf("upstream", &["localhost"], false);
    let (ccert, ckey) = pki.leaf("gateway-client", &["gateway.test"], true);
    let up = TestUpstream::start_tls(&cert, &key, Some(&pki.ca_path)).await;
    let url = format!("https://localhost:{}", up.addr.port());

    // Trusted CA + client certificate: proxied.
    let ups = format!(
        "  app: {{ targets: [\"{url}\"], tls: {{ ca: {}, client_cert: {}, client_key: {} }} }}",
        pki.ca_path.display(),
        ccert.display(),
        ckey.display()
    );
    let gw =
        TestGateway::start(&config(&ups, "  - { path: \"/*\", methods: [ANY], upstream: app, auth: none }", "")).await;
    let got = get(gw.addr(), "/echo/tls").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["headers"]["host"], format!("localhost:{}", up.addr.port()));
    gw.handle.shutdown().await;

    // Without the client certificate the upstream refuses; with the system roots its certificate is not trusted.
    for tls in [format!("tls: {{ ca: {} }}", pki.ca_path.display()), String::new()] {
        let ups = format!("  app: {{ targets: [\"{url}\"], retries: 0, {tls} }}");
        let gw =
            TestGateway::start(&config(&ups, "  - { path: \"/*\", methods: [ANY], upstream: app, auth: none }", ""))
                .await;
        let got = get(gw.addr(), "/echo/tls").await;
        assert_eq!(got.status, 502, "{tls}: {}", got.text());
        assert_eq!(got.code(), "upstream.unreachable");
        gw.handle.shutdown().await;
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_is_served_when_enabled() {
    let up = TestUpstream::start().await;
    let yaml = format!(
        "listen: [{{ addr: \"127.0.0.1:0\", h2c: true }}]\naccess_log: off\nupstreams:\n{}\nroutes:\n  - {{ path: \"/*\", methods: [ANY], upstream: app, auth: none }}\n",
        one_upstream(&up.url())
    );
    let gw = TestGateway::start(&yaml).await;
    let stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/echo/h2c", gw.addr()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let got = read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["path"], "/echo/h2c");
    // HTTP/1.1 still works on the same listener.
    assert_eq!(get(gw.addr(), "/echo").await.status, 200);
    gw.handle.shutdown().await;
}
