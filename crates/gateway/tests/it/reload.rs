use crate::testkit::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_good_configs_and_refuses_broken_ones() {
    let up = TestUpstream::start().await;
    let v1 = config(&one_upstream(&up.url()), "  - { path: /v1, methods: [GET], upstream: app, auth: none }", "");
    let gw = TestGateway::start(&v1).await;
    assert_eq!(get(gw.addr(), "/v1").await.status, 200);
    assert_eq!(get(gw.addr(), "/v2").await.status, 404);

    // A slow request started on v1 finishes on v1 even though v2 drops its route.
    let addr = gw.addr();
    let v1b = config(
        &one_upstream(&up.url()),
        "  - { path: /v1, methods: [GET], upstream: app, auth: none }\n  - { path: /slow, methods: [GET], upstream: app, auth: none }",
        "",
    );
    std::fs::write(&gw.config, &v1b).unwrap();
    gw.handle.reload().await.unwrap();
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=400").await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let v2 = config(&one_upstream(&up.url()), "  - { path: /v2, methods: [GET], upstream: app, auth: none }", "");
    std::fs::write(&gw.config, &v2).unwrap();
    gw.handle.reload().await.unwrap();
    assert_eq!(get(gw.addr(), "/v2").await.status, 200);
    assert_eq!(get(gw.addr(), "/v1").await.status, 404);
    assert_eq!(slow.await.unwrap().status, 200);

    // Broken YAML and a dangling reference: refused, v2 keeps serving.
    std::fs::write(&gw.config, "listen: [ { addr: oops\n").unwrap();
    assert!(gw.handle.reload().await.is_err());
    let dangling =
        config(&one_upstream(&up.url()), "  - { path: /v3, methods: [GET], upstream: nowhere, auth: none }", "");
    std::fs::write(&gw.config, &dangling).unwrap();
    let err = gw.handle.reload().await.unwrap_err().to_string();
    assert!(err.contains("unknown upstream `nowhere`"), "{err}");
    assert_eq!(get(gw.addr(), "/v2").await.status, 200);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_trigger_a_reload() {
    let up = TestUpstream::start().await;
    let v1 = config(&one_upstream(&up.url()), "  - { path: /v1, methods: [GET], upstream: app, auth: none }", "");
    let gw = TestGateway::start_in(TempDir::new(), &v1, true).await;
    let v2 = config(&one_upstream(&up.url()), "  - { path: /v2, methods: [GET], upstream: app, auth: none }", "");
    std::fs::write(&gw.config, &v2).unwrap();
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if get(gw.addr(), "/v2").await.status == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the file change was not picked up");
    gw.handle.shutdown().await;
}

#[test]
fn errors_point_at_file_line_and_column() {
    let dir = TempDir::new();
    let metrics = gateway::metrics::Metrics::new();
    let yaml = "listen:\n  - addr: \"127.0.0.1:0\"\nupstreams:\n  app: { targets: [\"ftp://x\"] }\nroutes:\n  - { path: /a, methods: [GET], upstream: ghost, auth: none }\n  - { path: b, methods: [FETCH!], upstream: app, auth: none }\n";
    let p = dir.write("bad.yaml", yaml);
    let Err(errs) = gateway::config::load_file(&p, &metrics) else { panic!("bad config accepted") };
    let text = errs.to_string();
    let file = p.display().to_string();
    assert!(text.contains(&format!("{file}:4:")), "{text}");
    assert!(text.contains("only http and https"), "{text}");
    assert!(text.contains(&format!("{file}:6:")), "{text}");

    let p = dir.write("unknown.yaml", "listen: []\nupstreams: {}\nroutes: []\nlisen: 1\n");
    let Err(e) = gateway::config::load_file(&p, &metrics) else { panic!("unknown field accepted") };
    let text = e.to_string();
    assert!(text.starts_with(&format!("{file_u}:4:1: ", file_u = p.display())), "{text}");
    assert!(text.contains("hint:"), "{text}");
}
