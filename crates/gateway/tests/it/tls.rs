use crate::testkit::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;

fn tls_config(pki: &Pki, upstream: &str, extra_tls: &str) -> String {
    let (cert, key) = pki.leaf("server", &["api.test", "localhost"], false);
    let (ocert, okey) = pki.leaf("other", &["other.test"], false);
    format!(
        "listen:\n  - addr: \"127.0.0.1:0\"\n    tls:\n      cert: {}\n      key: {}\n      sni: [{{ hosts: [other.test], cert: {}, key: {} }}]\n{extra_tls}\naccess_log: off\nupstreams:\n{}\nroutes:\n  - {{ path: \"/*\", methods: [ANY], upstream: app, auth: none }}\n",
        cert.display(),
        key.display(),
        ocert.display(),
        okey.display(),
        one_upstream(upstream)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_with_sni_and_hsts() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let pki = Pki::new(dir.path(), "t");
    let yaml = tls_config(&pki, &up.url(), "");
    let gw = TestGateway::start_in(dir, &yaml, false).await;

    let connector = tls_client(&pki.ca_der(), &[b"h2"], None);
    let stream = tls_connect(&connector, gw.addr(), "api.test").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://api.test/echo/h2").body(Full::new(Bytes::new())).unwrap();
    let got = read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["headers"]["x-forwarded-proto"], "https");
    assert!(got.headers["strict-transport-security"].to_str().unwrap().starts_with("max-age="));

    // SNI picks the certificate.
    let s1 = tls_connect(&connector, gw.addr(), "other.test").await.unwrap();
    let s2 = tls_connect(&connector, gw.addr(), "api.test").await.unwrap();
    assert_ne!(server_cert(&s1), server_cert(&s2));
    let der = server_cert(&s1);
    let parsed = x509_parser::parse_x509_certificate(der.as_ref()).unwrap().1;
    assert!(parsed.subject().to_string().contains("other.test"));

    // TLS 1.1 and below are not offered; a 1.2-only client still works.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der()).unwrap();
    let cfg =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let c12 = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let s = tls_connect(&c12, gw.addr(), "api.test").await.unwrap();
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_accepts_known_clients_and_rejects_others() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let pki = Pki::new(dir.path(), "srv");
    let clients = Pki::new(dir.path(), "clients");
    let rogue = Pki::new(dir.path(), "rogue");
    let extra = format!("      client_auth: {{ ca: {} }}", clients.ca_path.display());
    let yaml = tls_config(&pki, &up.url(), &extra);
    let (ccert, ckey) = clients.leaf("billing", &["billing.clients.test"], true);
    let (rcert, rkey) = rogue.leaf("mallory", &["mallory.test"], true);
    let gw = TestGateway::start_in(dir, &yaml, false).await;

    let good = tls_client(&pki.ca_der(), &[b"http/1.1"], Some((&ccert, &ckey)));
    let stream = tls_connect(&good, gw.addr(), "api.test").await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let got = read(
        sender
            .send_request(Request::get("/echo").header("host", "api.test").body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);

    for connector in [
        tls_client(&pki.ca_der(), &[b"http/1.1"], Some((&rcert, &rkey))),
        tls_client(&pki.ca_der(), &[b"http/1.1"], None),
    ] {
        let refused = match tls_connect(&connector, gw.addr(), "api.test").await {
            Err(_) => true,
            // TLS 1.3: the client finishes first; the server's alert arrives on the first read.
            Ok(stream) => match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Err(_) => true,
                Ok((mut sender, conn)) => {
                    tokio::spawn(conn);
                    sender
                        .send_request(
                            Request::get("/echo").header("host", "api.test").body(Full::new(Bytes::new())).unwrap(),
                        )
                        .await
                        .is_err()
                }
            },
        };
        assert!(refused, "a client without a trusted certificate was served");
    }
    assert_eq!(up.hits(), 1);
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_open_connections() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    let pki = Pki::new(dir.path(), "r");
    let yaml = tls_config(&pki, &up.url(), "");
    let gw = TestGateway::start_in(dir, &yaml, true).await;
    let connector = tls_client(&pki.ca_der(), &[b"http/1.1"], None);

    let held = tls_connect(&connector, gw.addr(), "api.test").await.unwrap();
    let before = server_cert(&held);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(held)).await.unwrap();
    tokio::spawn(conn);
    let req = || Request::get("/echo").header("host", "api.test").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(read(sender.send_request(req()).await.unwrap()).await.status, 200);

    // Re-issue the certificate in place (same paths); the file watcher reloads it.
    pki.leaf("server", &["api.test", "localhost"], false);
    let mut changed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = tls_connect(&connector, gw.addr(), "api.test").await.unwrap();
        if server_cert(&fresh) != before {
            changed = true;
            break;
        }
    }
    assert!(changed, "new connections still get the old certificate");
    // The connection opened before the reload still works.
    assert_eq!(read(sender.send_request(req()).await.unwrap()).await.status, 200);
    gw.handle.shutdown().await;
}
