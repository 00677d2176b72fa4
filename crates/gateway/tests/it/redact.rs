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

/// Ranges cannot carve a secret into slices that each pass inspection: on routes with response rules the
/// upstream never sees `Range`/`If-Range` (the client gets the whole, redacted representation as a 200), and a
/// 206 it sends anyway is refused; routes without rules keep serving ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_cannot_slice_a_secret_past_inspection() {
    let up = TestUpstream::start().await;
    let routes = concat!(
        "  - { path: /r/*, methods: [GET], upstream: app, auth: none }\n",
        "  - { path: /raw/*, methods: [GET], upstream: app, auth: none, redact: { enabled: false } }\n",
    );
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), routes, "")).await;
    // The card spans bytes 17..36: two ranges would each hold half of it.
    for range in ["bytes=0-26", "bytes=27-60"] {
        let got = get_with(gw.addr(), "/r/ranged", &[("range", range), ("if-range", "\"v1\"")]).await;
        assert_eq!(got.status, 200, "{range}: the whole representation, not a slice");
        assert_eq!(got.json()["card"], "**** **** **** 1111", "{range}");
        assert_eq!(got.json()["name"], "Ada Lovelace");
        assert!(got.headers.get("accept-ranges").is_none() && got.headers.get("content-range").is_none());
    }
    // An upstream that answers 206 unasked: refused, never passed on unchecked.
    let got = get(gw.addr(), "/r/ranged?always").await;
    assert_eq!((got.status, got.code()), (502, "respond.uninspected".to_string()));
    assert!(!got.text().contains("4111"));
    // Without response rules ranges pass through as before.
    let got = get_with(gw.addr(), "/raw/ranged", &[("range", "bytes=0-26")]).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.text(), &RANGED_DOC[..27]);
    assert_eq!(got.headers["content-range"], format!("bytes 0-26/{}", RANGED_DOC.len()));
    assert_eq!(got.headers["accept-ranges"], "bytes");
    gw.handle.shutdown().await;
}

/// The exfiltration guard counts in the state backend: two replicas sharing Redis add up one caller's records,
/// and both refuse once the sum passes the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exfiltration_counts_add_up_across_replicas_sharing_redis() {
    let redis = TestRedis::start();
    let up = TestUpstream::start().await;
    let routes = concat!(
        "  - { path: /block/*, methods: [GET], upstream: app, auth: none, exfiltration: { max_records: 10, window: 1h, action: block } }\n",
        "  - { path: /log/*, methods: [GET], upstream: app, auth: none, exfiltration: { max_records: 3, window: 1h } }\n",
    );
    let extra = format!("state: {{ redis: \"{}\", timeout: 500ms }}", redis.url());
    let a = TestGateway::start(&config(&one_upstream(&up.url()), routes, &extra)).await;
    let b = TestGateway::start(&config(&one_upstream(&up.url()), routes, &extra)).await;
    wait_state_healthy(&a).await;
    wait_state_healthy(&b).await;
    // 4 + 4 + 2 = 10 records through two replicas: at the limit, each response passes alone.
    for (gw, n) in [(&a, 4), (&b, 4), (&a, 2)] {
        let got = get(gw.addr(), &format!("/block/secrets/list?n={n}")).await;
        assert_eq!((got.status, got.json().as_array().map(Vec::len)), (200, Some(n)), "{n} records");
    }
    // One more, on either replica: over the shared limit.
    for gw in [&b, &a] {
        let got = get(gw.addr(), "/block/secrets/list?n=1").await;
        assert_eq!((got.status, got.code()), (429, "respond.exfiltration".to_string()));
    }
    // `log`: 2 + 2 > 3 is an event on the second replica (its metric, a security event, `flagged`), and the data
    // still goes out.
    let events = |gw: &TestGateway| {
        let m = gw.handle.metrics();
        m.rejections.get_or_create(&gateway::metrics::CodeLabel { code: "respond.exfiltration", mode: "monitor" }).get()
    };
    for (gw, expected_events) in [(&a, 0), (&b, 1)] {
        let got = get(gw.addr(), "/log/secrets/list?n=2").await;
        assert_eq!(got.json().as_array().map(Vec::len), Some(2));
        assert_eq!(events(gw), expected_events);
    }
    // The counts are in Redis, not in either process.
    let keys = redis.command("KEYS rampart:c:x:*");
    assert!(keys.contains("block") && keys.contains("log"), "{keys}");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// Counts live in the state backend, which a reload keeps: a reload does not hand a caller a fresh allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exfiltration_counts_survive_a_reload() {
    let up = TestUpstream::start().await;
    let route = "  - { path: /block/*, methods: [GET], upstream: app, auth: none, exfiltration: { max_records: 5, window: 1h, action: block } }\n";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), route, "")).await;
    assert_eq!(get(gw.addr(), "/block/secrets/list?n=4").await.status, 200);
    let more = format!("{route}  - {{ path: /other, methods: [GET], upstream: app, auth: none }}\n");
    std::fs::write(&gw.config, config(&one_upstream(&up.url()), &more, "")).unwrap();
    gw.handle.reload().await.unwrap();
    assert_eq!(get(gw.addr(), "/other").await.status, 200, "the new config is live");
    let got = get(gw.addr(), "/block/secrets/list?n=2").await;
    assert_eq!((got.status, got.code()), (429, "respond.exfiltration".to_string()), "4 + 2 > 5 across the reload");
    gw.handle.shutdown().await;
}
