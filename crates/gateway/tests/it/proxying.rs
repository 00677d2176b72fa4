use crate::testkit::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_are_proxied_with_forwarding_headers() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "")).await;
    let got = get_with(
        gw.addr(),
        "/echo/a?x=1",
        &[("x-request-id", "req-42"), ("connection", "keep-alive, x-hop"), ("x-hop", "1")],
    )
    .await;
    assert_eq!(got.status, 200);
    let v = got.json();
    assert_eq!(v["path"], "/echo/a");
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["headers"]["x-request-id"], "req-42");
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    assert_eq!(v["headers"]["x-forwarded-host"], "localhost");
    assert!(v["headers"]["forwarded"].as_str().unwrap().starts_with("for=127.0.0.1;proto=http"));
    assert!(v["headers"].get("x-hop").is_none(), "hop-by-hop header named in Connection leaked: {v}");
    assert_eq!(got.headers["x-request-id"], "req-42");

    let body = vec![b'a'; 300_000];
    let got = post(gw.addr(), "/echo", body).await;
    assert_eq!(got.json()["body_len"], 300_000);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_stream() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "")).await;

    // Response: the first chunk arrives long before the last one is produced.
    let stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let req = Request::get("/stream?chunks=5&ms=300").header("host", "x").body(Full::new(Bytes::new())).unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"chunk0;");
    assert!(started.elapsed() < Duration::from_millis(1000), "first chunk took {:?}", started.elapsed());
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"chunk1;chunk2;chunk3;chunk4;");

    // Request: a chunked upload of unknown length is streamed through.
    let stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        for _ in 0..10 {
            let _ = tx.send(Ok(Frame::data(Bytes::from(vec![b'z'; 10_000])))).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let stream_body = StreamBody::new(crate::testkit_stream(move |cx| rx.poll_recv(cx)));
    let req = Request::post("/echo").header("host", "x").body(stream_body).unwrap();
    let got = read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(got.json()["body_len"], 100_000);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping over the tunnel").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 20 {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got[..], b"ping over the tunnel");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_for_is_replaced_unless_the_peer_is_trusted() {
    let up = TestUpstream::start().await;
    let spoof = [
        ("x-forwarded-for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
        ("x-real-ip", "6.6.6.6"),
        ("x-rampart-consumer", "admin"),
    ];
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "")).await;
    let v = get_with(gw.addr(), "/echo", &spoof).await.json();
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(!v["headers"]["forwarded"].as_str().unwrap().contains("6.6.6.6"));
    assert!(v["headers"].get("x-real-ip").is_none());
    assert!(v["headers"].get("x-rampart-consumer").is_none());
    gw.handle.shutdown().await;

    let gw =
        TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "trusted_proxies: [127.0.0.0/8]")).await;
    let v = get_with(gw.addr(), "/echo", &spoof).await.json();
    assert_eq!(v["headers"]["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let up = TestUpstream::start().await;
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), "")).await;
    let addr = gw.addr();
    let inflight = tokio::spawn(async move { get(addr, "/slow?ms=500").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    gw.handle.shutdown().await;
    let got = inflight.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "slow");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_keepalive_connections_without_waiting_for_the_drain_deadline() {
    let up = TestUpstream::start().await;
    // Idle timeout and drain deadline far beyond the guard below: only the shutdown signal can close it in time.
    let extra = "shutdown_timeout: 60s\nlimits: { idle_timeout: 120s }";
    let gw = TestGateway::start(&config(&one_upstream(&up.url()), all_routes(), extra)).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let stopping = tokio::spawn(async move { gw.handle.shutdown().await });
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("idle keep-alive connection left open by shutdown")
        .unwrap_or(0);
    assert_eq!(n, 0, "no more bytes, just the close");
    tokio::time::timeout(Duration::from_secs(20), stopping).await.expect("shutdown waited for the deadline").unwrap();
}
