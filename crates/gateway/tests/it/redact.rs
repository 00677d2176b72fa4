//! Response protection against a leaky upstream: secrets never reach the client, legitimate data arrives
//! unchanged, compressed bodies are decoded, large bodies follow the route's choice, streams keep streaming,
//! and bulk reads are counted.

use crate::testkit::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Duration;

fn assert_clean(got: &Got, what: &str) {
    let text = got.text();
    for s in LEAKY_SECRETS {
        assert!(!text.contains(s), "{what}: `{s}` reached the client: {text}");
    }
    for h in ["server", "x-powered-by"] {
        assert!(got.headers.get(h).is_none(), "{what}: {h} leaked");
    }
}

fn routes() -> &'static str {
    concat!(
        "  - { path: \"/*\", methods: [ANY], upstream: app, auth: none }\n",
        "  - { path: /plain/*, methods: [GET], upstream: app, auth: none, redact: { enabled: false } }\n",
        "  - { path: /watch/*, methods: [GET], upstream: app, auth: none, modes: { respond: monitor } }\n",
        "  - { path: /strict/*, methods: [GET], upstream: app, auth: none, redact: { max_body_bytes: 64KiB, over_limit: block, rules: { jwt: remove, field: remove } } }\n",
        "  - { path: /small/*, methods: [GET], upstream: app, auth: none, redact: { max_body_bytes: 64KiB } }\n",
    )
}

/// The upstream serves its leaky endpoints under any prefix, so one upstream serves every route above.
async fn gw(up: &TestUpstream) -> TestGateway {
    TestGateway::start(&config(&one_upstream(&up.url()), routes(), "")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_json_text_and_compressed_bodies_never_reach_the_client() {
    let up = TestUpstream::start().await;
    let gw = gw(&up).await;
    let original: serde_json::Value = serde_json::from_str(LEAKY_USER).unwrap();
    for path in ["/secrets/user", "/secrets/user.gz", "/secrets/user.br"] {
        let got = get_with(gw.addr(), path, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(got.status, 200, "{path}");
        assert_clean(&got, path);
        assert!(got.headers.get("content-encoding").is_none(), "{path}: sent uncompressed");
        assert!(got.headers.get("etag").is_none(), "{path}: the ETag described other bytes");
        assert_eq!(got.headers["content-length"], got.body.len().to_string().as_str());
        let v = got.json();
        // The legitimate parts arrive unchanged.
        for k in ["id", "username", "email", "plan", "recent_orders", "created"] {
            assert_eq!(v[k], original[k], "{path}: {k}");
        }
        assert_eq!(v["gcp"]["type"], "service_account");
        assert_eq!(v["card"], "**** **** **** 1111", "{path}: cards keep their last four digits");
        assert_eq!(v["password"], "[redacted]");
        assert_eq!(v["session"], "[redacted:jwt]");
    }
    let got = get(gw.addr(), "/secrets/text").await;
    assert_clean(&got, "text");
    assert!(got.text().starts_with("deploy log\nDB_PASSWORD=[redacted] host=db\n"), "{}", got.text());

    // A card number split across two chunks of a chunked body is still found.
    let got = get(gw.addr(), "/secrets/split").await;
    assert_eq!(got.json(), serde_json::json!({"name": "Ada", "card": "**** **** **** 1111"}));

    // Per-route rules: remove instead of mask.
    let got = get(gw.addr(), "/strict/secrets/user").await;
    assert_clean(&got, "strict");
    let v = got.json();
    assert!(v.get("session").is_none() && v.get("password").is_none(), "{v}");
    assert_eq!(v["username"], "alice");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_off_and_monitor_mode_let_bodies_through_unchanged() {
    let up = TestUpstream::start().await;
    let gw = gw(&up).await;
    for path in ["/plain/secrets/user", "/watch/secrets/user"] {
        let got = get(gw.addr(), path).await;
        assert_eq!(got.text(), LEAKY_USER, "{path}");
        assert!(got.headers.get("x-powered-by").is_none(), "{path}: headers are still hardened");
    }
    // The upstream is asked for identity encoding only where bodies are inspected.
    let echoed = get_with(gw.addr(), "/echo", &[("accept-encoding", "gzip")]).await.json();
    assert_eq!(echoed["headers"]["accept-encoding"], "identity");
    let echoed = get_with(gw.addr(), "/plain/echo", &[("accept-encoding", "gzip")]).await.json();
    assert_eq!(echoed["headers"]["accept-encoding"], "gzip");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_cap_pass_or_block_per_route_and_bombs_are_contained() {
    let up = TestUpstream::start().await;
    let gw = gw(&up).await;
    // `pass`: streamed through as the upstream sent it (the event is in the security log).
    let got = get(gw.addr(), "/small/secrets/big?kb=200").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), 200 * 1024 + "{\"filler\":\"\",\"card\":\"4111 1111 1111 1111\"}".len());
    assert!(got.text().ends_with("\"card\":\"4111 1111 1111 1111\"}"));
    // `block`: 502 with a problem body.
    let got = get(gw.addr(), "/strict/secrets/big?kb=200").await;
    assert_eq!((got.status, got.code()), (502, "respond.uninspected".to_string()));
    // Under the cap the same body is redacted.
    let got = get(gw.addr(), "/small/secrets/big?kb=16").await;
    assert_eq!(got.json()["card"], "**** **** **** 1111");
    // A gzip bomb (8 MiB of spaces in a few KiB) is never expanded past the cap.
    let got = get(gw.addr(), "/strict/secrets/bomb").await;
    assert_eq!((got.status, got.code()), (502, "respond.uninspected".to_string()));
    let got = get(gw.addr(), "/small/secrets/bomb").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-encoding"], "gzip", "passed as sent");
    gw.handle.shutdown().await;
}

/// Routes and types without rules keep streaming: the client gets the first chunk while the upstream is still
/// holding back the second (it sends it only once the test has the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninspected_responses_keep_streaming() {
    let up = TestUpstream::start().await;
    let gw = gw(&up).await;
    for path in ["/secrets/gated?type=bin", "/plain/secrets/gated?type=json"] {
        let stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path).header("host", "x").body(Full::new(Bytes::new())).unwrap();
        let mut body = sender.send_request(req).await.unwrap().into_body();
        let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap_or_else(|_| panic!("{path}: the first chunk was held back"))
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(&first[..], b"[{\"id\":1},", "{path}");
        up.gate.notify_one();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"{\"id\":2}]", "{path}");
    }
    // The same JSON stream on an inspected route is read whole before it goes out.
    up.gate.notify_one();
    let got = get(gw.addr(), "/secrets/gated?type=json").await;
    assert_eq!(got.json(), serde_json::json!([{"id": 1}, {"id": 2}]));
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_debug_pages_never_reach_the_client() {
    let up = TestUpstream::start().await;
    let gw = gw(&up).await;
    for (fw, _, page) in DEBUG_PAGES {
        let got = get(gw.addr(), &format!("/debug-page/{fw}")).await;
        assert_eq!((got.status, got.code()), (500, "upstream.error".to_string()), "{fw}");
        let text = got.text();
        for marker in ["Traceback", "Exception", "SQL", "/srv/", "/var/www", "Stack trace", "Version", "Error in"] {
            assert!(!text.contains(marker), "{fw}: {marker} leaked: {text}");
        }
        assert!(!text.contains(&page[..20]), "{fw}");
        assert_clean(&got, fw);
    }
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exfiltration_guard_counts_records_per_caller_and_window() {
    let up = TestUpstream::start().await;
    let routes = concat!(
        "  - { path: /block/*, methods: [GET], upstream: app, auth: none, exfiltration: { max_records: 5, window: 1m, action: block } }\n",
        "  - { path: /log/*, methods: [GET], upstream: app, auth: none, exfiltration: { max_records: 5 } }\n",
        "  - { path: /count-only/*, methods: [GET], upstream: app, auth: none, redact: { enabled: false }, exfiltration: { max_records: 2, action: block } }\n",
    );
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    assert_eq!(get(gw.addr(), "/block/secrets/list?n=3").await.status, 200);
    assert_eq!(get(gw.addr(), "/block/secrets/list?n=2").await.status, 200, "5 records: at the limit");
    let got = get(gw.addr(), "/block/secrets/list?n=1").await;
    assert_eq!((got.status, got.code()), (429, "respond.exfiltration".to_string()));
    // `log` lets every response through.
    for _ in 0..3 {
        let got = get(gw.addr(), "/log/secrets/list?n=4").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json().as_array().unwrap().len(), 4);
    }
    // The guard works without redaction too.
    assert_eq!(get(gw.addr(), "/count-only/secrets/list?n=2").await.status, 200);
    assert_eq!(get(gw.addr(), "/count-only/secrets/list?n=1").await.status, 429);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_point_at_the_field() {
    let up = TestUpstream::start().await;
    let bad = config(
        &one_upstream(&up.url()),
        "  - { path: /x, methods: [GET], upstream: app, auth: none, redact: { extra_fields: [\"a*b\"] }, exfiltration: { max_records: 0 } }",
        "",
    );
    let dir = TempDir::new();
    let path = dir.write("rampart.yaml", &bad);
    let err = match gateway::config::load_file(&path, &gateway::metrics::Metrics::new()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("`a*b` is not a field name pattern") && err.contains("max_records"), "{err}");
    let bad_rule = config(
        &one_upstream(&up.url()),
        "  - { path: /x, methods: [GET], upstream: app, auth: none, redact: { rules: { jwt: hide } } }",
        "",
    );
    let path = dir.write("rampart2.yaml", &bad_rule);
    assert!(gateway::config::load_file(&path, &gateway::metrics::Metrics::new()).is_err());
}
