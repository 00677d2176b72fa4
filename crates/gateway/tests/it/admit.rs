use crate::testkit::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_limits_answer_with_their_codes() {
    let up = TestUpstream::start().await;
    let extra = "limits: { max_uri_bytes: 200, max_header_bytes: 2KiB, max_body_bytes: 1KiB }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), extra)).await;
    let long = format!("/x?{}", "a".repeat(300));
    let got = get(gw.addr(), &long).await;
    assert_eq!((got.status, got.code()), (414, "admit.uri_too_long".to_string()));
    let big = "b".repeat(3000);
    let got = get_with(gw.addr(), "/x", &[("x-big", &big)]).await;
    assert_eq!((got.status, got.code()), (431, "admit.headers_too_large".to_string()));
    let got = post(gw.addr(), "/x", vec![b'c'; 2000]).await;
    assert_eq!((got.status, got.code()), (413, "admit.body_too_large".to_string()));
    // A chunked body without Content-Length is cut off when it crosses the cap.
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    for _ in 0..4 {
        let _ = s.write_all(b"200\r\n").await;
        let _ = s.write_all(&[b'd'; 0x200]).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_deny_list_and_monitor_mode() {
    let up = TestUpstream::start().await;
    let gw =
        TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "limits: { ip_deny: [127.0.0.0/8] }")).await;
    let got = get(gw.addr(), "/x").await;
    assert_eq!((got.status, got.code()), (403, "admit.ip_denied".to_string()));
    gw.handle.shutdown().await;

    let gw = TestGateway::start(&config(
        &one_upstream(&up.url()),
        all_routes(),
        "limits: { ip_allow: [10.0.0.0/8] }\nmodes: { admit: monitor }",
    ))
    .await;
    assert_eq!(get(gw.addr(), "/x").await.status, 200, "monitor mode must let the request through");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_while_normal_clients_are_served() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "limits: { header_read_timeout: 1s }"))
        .await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        // One header line every 300 ms: never finishes the head.
        for i in 0..30 {
            if slow.write_all(format!("X-{i}: y\r\n").as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), slow.read_to_end(&mut buf)).await;
        buf
    });
    for _ in 0..5 {
        assert_eq!(get(gw.addr(), "/ok").await.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = drip.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "slow client held the connection for {:?}", started.elapsed());
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_timeout_does_not_count_keepalive_pauses() {
    // The header-read clock runs only while a head is arriving: a keep-alive client that pauses between
    // requests for longer than the timeout keeps its connection.
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(
        &one_upstream(&up.url()),
        all_routes(),
        "limits: { header_read_timeout: 500ms, idle_timeout: 30s }",
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    // A head started and left unfinished is still cut off.
    s.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.expect("stalled head not cut off");
    assert_eq!(n.unwrap_or(0), 0);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connections_are_closed() {
    let up = TestUpstream::start().await;
    let gw =
        TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "limits: { idle_timeout: 300ms }")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("idle connection not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(250));
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_capped() {
    let up = TestUpstream::start().await;
    let gw =
        TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "limits: { max_connections_per_ip: 3 }"))
            .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 1024];
        let _ = s.read(&mut buf).await.unwrap();
        held.push(s);
    }
    let got = raw(gw.addr(), b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(2)).await;
    assert_eq!(got, "", "a fourth connection from the same IP was served");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(gw.addr(), "/ok").await.status, 200);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_shapes_are_refused() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "")).await;
    let wait = Duration::from_secs(2);
    // Content-Length and Transfer-Encoding together, with a second request hidden after the chunked body.
    let got = raw(
        gw.addr(),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        wait,
    )
    .await;
    assert!(!got.contains("upstream:/smuggled"), "a smuggled request reached the upstream: {got}");
    // Two different Content-Length values.
    let got =
        raw(gw.addr(), b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", wait)
            .await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // An unknown transfer coding.
    let got =
        raw(gw.addr(), b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked2\r\n\r\n0\r\n\r\n", wait)
            .await;
    assert!(got.starts_with("HTTP/1.1 4") || got.starts_with("HTTP/1.1 501"), "{got}");
    // Two Host headers.
    let got =
        raw(gw.addr(), b"GET /echo HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n", wait)
            .await;
    assert!(got.starts_with("HTTP/1.1 400") && got.contains("admit.bad_request"), "{got}");
    let hits = up.hits();
    assert!(hits <= 1, "upstream saw {hits} requests");
    gw.handle.shutdown().await;
}
