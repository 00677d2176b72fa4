//! Shared test helpers: a real upstream server, a gateway started from a YAML file on disk, certificates made
//! with rcgen, and HTTP/1.1, HTTP/2 and TLS clients. Every test talks over real sockets on 127.0.0.1.

#![allow(dead_code)]

use bytes::Bytes;
use gateway::config::Source;
use gateway::server::{Gateway, GatewayHandle, StartOptions};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("rampart-test-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real upstream. Endpoints: `/echo…` (JSON of what it got), `…/cacheable` (`Cache-Control: public`), `/slow?ms=N`, `/stream?chunks=N&ms=M`,
/// `/status/NNN`, `/ws` (WebSocket-style upgrade that echoes bytes), anything else `200 upstream:<path>`.
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Opens `/secrets/gated` streams: the first chunk goes out at once, the rest only after `notify_one`.
    pub gate: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> UpBody {
    Full::new(b.into()).boxed()
}

fn query_num(q: &str, key: &str, default: u64) -> u64 {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

async fn upstream_handle(
    mut req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Notify>,
) -> Result<Response<UpBody>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if let Some(r) = leaky(&path, &query, gate) {
        return Ok(r);
    }
    if path.ends_with("/ranged") {
        return Ok(ranged(req.headers().get("range"), &query));
    }
    if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut().insert("connection", "upgrade".parse().unwrap());
        return Ok(r);
    }
    if path.ends_with("/cacheable") {
        let mut r = Response::new(full("shared and cacheable"));
        r.headers_mut().insert("cache-control", "public, max-age=600".parse().unwrap());
        r.headers_mut().insert("etag", "\"c1\"".parse().unwrap());
        return Ok(r);
    }
    if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_millis(query_num(&query, "ms", 1000))).await;
        return Ok(Response::new(full("slow")));
    }
    if path.starts_with("/stream") {
        let chunks = query_num(&query, "chunks", 3);
        let ms = query_num(&query, "ms", 10);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            for i in 0..chunks {
                if tx.send(Ok(Frame::data(Bytes::from(format!("chunk{i};"))))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        });
        let stream = tokio_stream_from(rx);
        return Ok(Response::new(StreamBody::new(stream).boxed()));
    }
    if path.starts_with("/leak") || path.ends_with("/leak") {
        let mut r = Response::new(full(
            "<html><title>OperationalError // Werkzeug Debugger</title><pre>Traceback (most recent call last):\n  File \"/srv/app/db.py\", line 12\nsqlite3.OperationalError: near \"'\": syntax error</pre><script>var SECRET = \"Yx4kq9GfWQ1cC0d3\";</script></html>",
        ));
        *r.status_mut() =
            StatusCode::from_u16(query_num(&query, "status", 500) as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = r.headers_mut();
        h.insert("server", "Werkzeug/2.2.3 Python/3.11.7".parse().unwrap());
        h.insert("x-powered-by", "Express".parse().unwrap());
        h.insert("x-aspnet-version", "4.0.30319".parse().unwrap());
        h.insert("x-debug-token", "a1b2c3".parse().unwrap());
        h.insert("retry-after", "7".parse().unwrap());
        h.insert("content-type", "text/html".parse().unwrap());
        return Ok(r);
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("status {code}")));
        *r.status_mut() =
            StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(r);
    }
    if path.starts_with("/echo") || path.contains("echo") {
        let method = req.method().to_string();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into())))
            .collect();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let v = serde_json::json!({ "method": method, "path": path, "query": query, "headers": headers, "body_len": body.len(),
            "body": String::from_utf8_lossy(&body[..body.len().min(256)]) });
        let mut r = Response::new(full(v.to_string()));
        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
        return Ok(r);
    }
    Ok(Response::new(full(format!("upstream:{path}"))))
}

/// The user record of the leaky endpoints: legitimate fields and every kind of secret.
pub const LEAKY_USER: &str = include_str!("fixtures/user.json");
/// The same, brotli-compressed (made with `brotli -c user.json`).
pub const LEAKY_USER_BR: &[u8] = include_bytes!("fixtures/user.json.br");
/// Every secret of `LEAKY_USER` (and of the other leaky endpoints), as a client must never see it.
pub const LEAKY_SECRETS: &[&str] = &[
    "KIXQeH0x9yG3",
    "4111 1111 1111 1111",
    "4111111111111111",
    "DE89 3704",
    "123-45-6789",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI",
    "MIIEvQIBADAN",
    "AIzaSyDaGmWKa4",
    "b3BlbnNzaC1rZXkt",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
    "xoxb-1234",
    "ghp_abcdef",
    "hunter2",
    "Yx4kq9GfWQ1cC0d3",
];

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn typed(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<UpBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", content_type.parse().unwrap());
    r.headers_mut().insert("server", "Werkzeug/2.2.3 Python/3.11.7".parse().unwrap());
    r.headers_mut().insert("x-powered-by", "PHP/8.1.2".parse().unwrap());
    r
}

/// Framework debug pages (all with a secret in them), by framework.
pub const DEBUG_PAGES: &[(&str, &str, &str)] = &[
    ("werkzeug", "text/html", "<title>OperationalError // Werkzeug Debugger</title><pre>Traceback (most recent call last):\n  File \"/srv/app/db.py\", line 12\nsqlite3.OperationalError: near \"'\": syntax error</pre><script>var SECRET = \"Yx4kq9GfWQ1cC0d3\";</script>"),
    ("django", "text/html", "<title>ProgrammingError at /users/</title><h1>ProgrammingError</h1><pre>psycopg2.errors.SyntaxError</pre><table><tr><td>DATABASES</td><td>{'PASSWORD': 'hunter2'}</td></tr></table><p>You're seeing this error because you have DEBUG = True in your Django settings file.</p>"),
    ("rails", "text/html", "<h1>ActiveRecord::StatementInvalid in UsersController#show</h1><pre>PG::SyntaxError: ERROR: syntax error at or near \"'\"\napp/controllers/users_controller.rb:12:in `show'</pre><div>Rails.root: /srv/app</div>"),
    ("spring", "application/json", "{\"timestamp\":\"2024-01-15T12:30:00.000+00:00\",\"status\":500,\"error\":\"Internal Server Error\",\"trace\":\"java.sql.SQLSyntaxErrorException: You have an error in your SQL syntax\\n\\tat com.mysql.cj.jdbc.exceptions.SQLError.createSQLException(SQLError.java:120)\",\"path\":\"/users\"}"),
    ("aspnet", "text/html", "<title>Server Error in '/' Application.</title><h2><i>Invalid column name 'x'.</i></h2><b>Exception Details: </b>System.Data.SqlClient.SqlException<pre>[SqlException (0x80131904)]\n   at System.Data.SqlClient.SqlConnection.OnError()</pre><b>Version Information:</b> Microsoft .NET Framework Version:4.0.30319; ASP.NET Version:4.8.4465.0"),
    ("php", "text/html", "<br /><b>Fatal error</b>:  Uncaught PDOException: SQLSTATE[42000]: Syntax error in /var/www/html/db.php:7\nStack trace:\n#0 /var/www/html/db.php(7): PDO->query('SELECT * FROM u...')\n#1 {main}\n  thrown in <b>/var/www/html/db.php</b> on line <b>7</b><br />"),
];

/// The leaky endpoints: `/secrets/user` (JSON full of secrets), `/secrets/user.gz` and `.br` (the same,
/// compressed whatever the client asked for), `/secrets/text` (a text page with secrets), `/secrets/list?n=N`
/// (a JSON array of N records), `/secrets/big?kb=N` (a chunked JSON body of N KiB with a card number at the
/// end), `/secrets/bomb` (a gzip bomb), `/secrets/gated?type=T` (two chunks of a body typed T, the second sent
/// only once the test opens the gate), `/secrets/split` (chunked JSON whose card number straddles two chunks),
/// `/debug-page/<framework>` (a 500 debug page); under any path prefix.
fn leaky(path: &str, query: &str, gate: Arc<tokio::sync::Notify>) -> Option<Response<UpBody>> {
    if let Some(fw) = path.find("/debug-page/").map(|i| &path[i + 12..]) {
        let (_, ct, page) = DEBUG_PAGES.iter().find(|(name, _, _)| *name == fw)?;
        return Some(typed(500, ct, *page));
    }
    let name = path.find("/secrets/").map(|i| &path[i + 9..])?;
    let chunked = |chunks: Vec<Bytes>, ct: &str, gate: Option<Arc<tokio::sync::Notify>>| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            for (i, c) in chunks.into_iter().enumerate() {
                if i == 1 {
                    if let Some(g) = &gate {
                        g.notified().await;
                    }
                }
                if tx.send(Ok(Frame::data(c))).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let mut r = Response::new(StreamBody::new(tokio_stream_from(rx)).boxed());
        r.headers_mut().insert("content-type", ct.parse().unwrap());
        r
    };
    Some(match name {
        "user" => {
            let mut r = typed(200, "application/json", LEAKY_USER);
            r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
            r
        }
        "user.gz" => {
            let mut r = typed(200, "application/json", gzip(LEAKY_USER.as_bytes()));
            r.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        "user.br" => {
            let mut r = typed(200, "application/json; charset=utf-8", LEAKY_USER_BR);
            r.headers_mut().insert("content-encoding", "br".parse().unwrap());
            r
        }
        "text" => typed(
            200,
            "text/plain",
            "deploy log\nDB_PASSWORD=hunter2 host=db\ncard on file: 4111-1111-1111-1111\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\ndone\n",
        ),
        "list" => {
            let n = query_num(query, "n", 3);
            let items: Vec<serde_json::Value> = (0..n).map(|i| serde_json::json!({"id": i, "name": format!("user{i}")})).collect();
            typed(200, "application/json", serde_json::Value::Array(items).to_string())
        }
        "big" => {
            let kb = query_num(query, "kb", 256) as usize;
            let mut chunks = vec![Bytes::from_static(b"{\"filler\":\"")];
            chunks.extend((0..kb).map(|_| Bytes::from(vec![b'a'; 1024])));
            chunks.push(Bytes::from_static(b"\",\"card\":\"4111 1111 1111 1111\"}"));
            chunked(chunks, "application/json", None)
        }
        "bomb" => {
            let mut r = typed(200, "application/json", gzip(&vec![b' '; 8 << 20]));
            r.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        "gated" => {
            let ct = if query.contains("type=json") { "application/json" } else { "application/octet-stream" };
            chunked(vec![Bytes::from_static(b"[{\"id\":1},"), Bytes::from_static(b"{\"id\":2}]")], ct, Some(gate))
        }
        "split" => chunked(
            vec![Bytes::from_static(b"{\"name\":\"Ada\",\"card\":\"4111 1111 11"), Bytes::from_static(b"11 1111\"}")],
            "application/json",
            None,
        ),
        _ => return None,
    })
}

/// The JSON document `/ranged` serves; its card number spans bytes 17..36.
pub const RANGED_DOC: &str = r#"{"id":1,"card":"4111 1111 1111 1111","name":"Ada Lovelace"}"#;

/// `/ranged` (under any prefix): [`RANGED_DOC`] with `Accept-Ranges: bytes`, or the slice a `Range: bytes=A-B`
/// asks for as a 206; with `?always` a 206 of the first 20 bytes whatever was asked (a misbehaving upstream).
fn ranged(range: Option<&http::HeaderValue>, query: &str) -> Response<UpBody> {
    let doc = RANGED_DOC.as_bytes();
    let asked = range
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?.min(doc.len() - 1))));
    let asked = asked.or(query.contains("always").then_some((0, 19)));
    let mut r = match asked {
        Some((a, b)) if a <= b => {
            let mut r = typed(206, "application/json", Bytes::copy_from_slice(&doc[a..=b]));
            let cr = format!("bytes {a}-{b}/{}", doc.len());
            r.headers_mut().insert("content-range", cr.parse().unwrap());
            r
        }
        _ => typed(200, "application/json", RANGED_DOC),
    };
    r.headers_mut().insert("accept-ranges", "bytes".parse().unwrap());
    r
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send {
    crate::testkit_stream(move |cx| rx.poll_recv(cx))
}

impl TestUpstream {
    pub async fn start() -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    pub fn serve(listener: TcpListener) -> TestUpstream {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let h = hits.clone();
        let g = gate.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                let g = g.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| upstream_handle(req, h.clone(), g.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        TestUpstream { addr, hits, gate, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same upstream behind TLS; with `client_ca`, it requires a client certificate signed by it.
    pub async fn start_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> TestUpstream {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let b = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).unwrap() {
                    roots.add(c.unwrap()).unwrap();
                }
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap();
                b.with_client_cert_verifier(v)
            }
            None => b.with_no_client_auth(),
        };
        let cfg = Arc::new(b.with_single_cert(certs, key).unwrap());
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let h = hits.clone();
        let g = gate.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let h = h.clone();
                let g = g.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(s).await else { return };
                    let svc = service_fn(move |req| upstream_handle(req, h.clone(), g.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TestUpstream { addr, hits, gate, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A gateway started from YAML written to a file in its own temp dir.
pub struct TestGateway {
    pub handle: GatewayHandle,
    pub dir: TempDir,
    pub config: PathBuf,
}

impl TestGateway {
    pub async fn start(yaml: &str) -> TestGateway {
        Self::start_in(TempDir::new(), yaml, false).await
    }

    pub async fn start_in(dir: TempDir, yaml: &str, watch: bool) -> TestGateway {
        let config = dir.write("rampart.yaml", yaml);
        let handle = Gateway::start(Source::File(config.clone()), StartOptions { watch })
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        TestGateway { handle, dir, config }
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addrs[0]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }
}

/// A config with one plain listener on an ephemeral port, an access log that stays quiet, and the given
/// upstreams and routes (YAML fragments).
pub fn config(upstreams: &str, routes: &str, extra: &str) -> String {
    format!("listen: [{{ addr: \"127.0.0.1:0\" }}]\nworkers: 2\naccess_log: off\n{extra}\nupstreams:\n{upstreams}\nroutes:\n{routes}\n")
}

/// One catch-all route to the upstream `app`.
pub fn all_routes() -> &'static str {
    "  - { path: \"/*\", methods: [ANY], upstream: app, auth: none }"
}

pub fn one_upstream(url: &str) -> String {
    format!("  app: {{ targets: [\"{url}\"], timeouts: {{ connect: 500ms, response: 2s }} }}")
}

/// A response read whole.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The stable code of a problem+json answer.
    pub fn code(&self) -> String {
        assert_eq!(
            self.headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        self.json()["code"].as_str().unwrap_or("").to_string()
    }
}

pub async fn read(resp: Response<Incoming>) -> Got {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Got { status: parts.status.as_u16(), headers: parts.headers, body }
}

/// Sends one HTTP/1.1 request on a fresh connection.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let resp = sender.send_request(req).await.unwrap();
    read(resp).await
}

/// Sends `GET path` on a fresh connection and returns once the response head arrived; the body is left to the
/// caller to read, hold or drop (a client that goes away mid-body).
pub async fn get_head(addr: SocketAddr, path: &str) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    sender.send_request(req).await.unwrap()
}

/// Sends `method path` with the given headers (a `host` of `localhost` unless one is given) and body.
pub async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "localhost");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Got {
    send(addr, Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut b = Request::get(path).header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(Full::new(Bytes::new())).unwrap()).await
}

pub async fn post(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Got {
    send(addr, Request::post(path).header("host", "localhost").body(Full::new(body.into())).unwrap()).await
}

/// Writes raw bytes and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A test PKI: one CA, leaves signed by it, written as PEM files.
pub struct Pki {
    pub ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_path: PathBuf,
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Pki { ca, ca_path, dir: dir.to_path_buf() }
    }

    /// Issues a leaf for `names`; writes `<file>.pem` and `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str], client: bool) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or(file));
        params.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let cp = self.dir.join(format!("{file}.pem"));
        let kp = self.dir.join(format!("{file}.key"));
        std::fs::write(&cp, cert.pem()).unwrap();
        std::fs::write(&kp, key.serialize_pem()).unwrap();
        (cp, kp)
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

/// A TLS client trusting `ca`, offering `alpn`, optionally presenting a client certificate.
pub fn tls_client(
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
    client: Option<(&Path, &Path)>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((c, k)) => {
            use rustls_pki_types::pem::PemObject;
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(c).unwrap().map(|c| c.unwrap()).collect();
            let key = PrivateKeyDer::from_pem_file(k).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

pub async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector.connect(ServerName::try_from(sni.to_string()).unwrap(), tcp).await
}

/// The certificate the server presented on a TLS connection.
pub fn server_cert(s: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// How many times the gateway refused with `code` (enforce mode), from its admin `/metrics`. Identification
/// failures all read `auth.failed` to the client; the precise code is visible here and in the log.
pub async fn rejections(admin: SocketAddr, code: &str) -> u64 {
    let text = get(admin, "/metrics").await.text();
    let prefix = format!("rampart_rejections_total{{code=\"{code}\",mode=\"enforce\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// A counter from the gateway's admin `/metrics`: `series` is the name with its labels, e.g.
/// `rampart_jwt_cache_total{result="hit"}`; 0 when absent.
pub async fn metric(admin: SocketAddr, series: &str) -> u64 {
    let text = get(admin, "/metrics").await.text();
    let prefix = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// Asserts a 401 with the generic body and a challenge, and that the gateway logged `code` for it.
pub async fn expect_401(gw: &TestGateway, got: Got, code: &str, before: u64) {
    assert_eq!(got.status, 401, "{code}: {}", got.text());
    assert_eq!(got.code(), "auth.failed", "{code}");
    assert!(got.headers.contains_key("www-authenticate"), "{code}: no challenge");
    let admin = gw.handle.admin_addr.expect("the test config needs an admin listener");
    assert_eq!(rejections(admin, code).await, before + 1, "expected {code}");
}

/// base64url without padding (JWT segments).
pub fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

enum Signer {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(aws_lc_rs::signature::EcdsaKeyPair),
    Ed(aws_lc_rs::signature::Ed25519KeyPair),
}

/// A signing key made in the test (aws-lc), its JWK, and a token signer that can also forge headers.
pub struct JwtKey {
    pub kid: String,
    pub alg: &'static str,
    signer: Signer,
}

impl JwtKey {
    pub fn rsa(kid: &str) -> JwtKey {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        JwtKey { kid: kid.into(), alg: "RS256", signer: Signer::Rsa(kp) }
    }
    pub fn ec(kid: &str) -> JwtKey {
        let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .unwrap();
        JwtKey { kid: kid.into(), alg: "ES256", signer: Signer::Ec(kp) }
    }
    pub fn ed(kid: &str) -> JwtKey {
        let kp = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        JwtKey { kid: kid.into(), alg: "EdDSA", signer: Signer::Ed(kp) }
    }

    /// The public JWK.
    pub fn jwk(&self) -> serde_json::Value {
        use aws_lc_rs::signature::KeyPair as _;
        match &self.signer {
            Signer::Rsa(kp) => {
                let pk = kp.public_key();
                let (n, e) = (pk.modulus(), pk.exponent());
                serde_json::json!({ "kty": "RSA", "kid": self.kid, "alg": self.alg, "use": "sig",
                    "n": b64(n.big_endian_without_leading_zero()), "e": b64(e.big_endian_without_leading_zero()) })
            }
            Signer::Ec(kp) => {
                let p = kp.public_key().as_ref();
                serde_json::json!({ "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": self.alg,
                    "x": b64(&p[1..33]), "y": b64(&p[33..65]) })
            }
            Signer::Ed(kp) => serde_json::json!({ "kty": "OKP", "kid": self.kid, "crv": "Ed25519", "alg": self.alg,
                "x": b64(kp.public_key().as_ref()) }),
        }
    }

    /// The public key as DER SubjectPublicKeyInfo bytes (what a key-confusion attacker HMACs with).
    pub fn public_der(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair as _;
        match &self.signer {
            Signer::Rsa(kp) => kp.public_key().as_der().unwrap().as_ref().to_vec(),
            Signer::Ec(kp) => kp.public_key().as_ref().to_vec(),
            Signer::Ed(kp) => kp.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `claims` under `header` (given fields win; `alg` and `kid` are added when missing).
    pub fn sign(&self, header: serde_json::Value, claims: &serde_json::Value) -> String {
        let mut h = serde_json::json!({ "alg": self.alg, "typ": "JWT", "kid": self.kid });
        for (k, v) in header.as_object().unwrap() {
            if v.is_null() {
                h.as_object_mut().unwrap().remove(k);
            } else {
                h[k] = v.clone();
            }
        }
        let msg = format!("{}.{}", b64(h.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = match &self.signer {
            Signer::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg.as_bytes(), &mut sig).unwrap();
                sig
            }
            Signer::Ec(kp) => kp.sign(&rng, msg.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(kp) => kp.sign(msg.as_bytes()).as_ref().to_vec(),
        };
        format!("{msg}.{}", b64(&sig))
    }

    pub fn token(&self, claims: &serde_json::Value) -> String {
        self.sign(serde_json::json!({}), claims)
    }
}

/// An unsigned token with any header (for `alg: none` and HMAC forgeries).
pub fn forge(header: &serde_json::Value, claims: &serde_json::Value, sig: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()), b64(sig))
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&k, msg).as_ref().to_vec()
}

pub fn jwks(keys: &[&JwtKey]) -> String {
    serde_json::json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A real identity provider's JWKS endpoint: serves the current document at `/jwks.json`, counts fetches,
/// and can be taken down (503) and brought back.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub doc: Arc<std::sync::Mutex<String>>,
    pub hits: Arc<AtomicUsize>,
    pub up: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    pub async fn start(doc: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let doc = Arc::new(std::sync::Mutex::new(doc));
        let hits = Arc::new(AtomicUsize::new(0));
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (d, h, u) = (doc.clone(), hits.clone(), up.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let (d, h, u) = (d.clone(), h.clone(), u.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let mut r = Response::new(full(d.lock().unwrap().clone()));
                        if !u.load(Ordering::SeqCst) {
                            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        JwksServer { addr, doc, hits, up, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A shipped example config (`examples/NAME`) with `${VAR}`s filled from `vars` (then their defaults), so tests
/// run the file as operators do without touching the process environment.
pub fn example(name: &str, vars: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let lookup = |v: &str| vars.iter().find(|(k, _)| *k == v).map(|(_, x)| x.clone());
    gateway::config::env::substitute(name, &text, &lookup).unwrap()
}

/// A real `redis-server` on a free loopback port, without persistence, killed when dropped.
pub struct TestRedis {
    pub port: u16,
    child: Option<std::process::Child>,
    dir: TempDir,
    cluster: bool,
    /// The cluster bus port, picked free like `port` (the default, port + 10000, may not exist).
    bus: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestRedis {
    pub fn start() -> TestRedis {
        let mut r = TestRedis { port: free_port(), child: None, dir: TempDir::new(), cluster: false, bus: 0 };
        r.restart();
        r
    }

    /// A cluster-enabled node owning no slot yet.
    fn start_cluster_node() -> TestRedis {
        let mut r = TestRedis { port: free_port(), child: None, dir: TempDir::new(), cluster: true, bus: free_port() };
        r.restart();
        r
    }

    /// Sends one inline command and returns what came back first.
    pub fn command(&self, cmd: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(if self.cluster {
                vec!["--cluster-enabled".to_string(), "yes".into(), "--cluster-port".into(), self.bus.to_string()]
            } else {
                vec![]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): install it with `apt-get install -y redis-server` (.ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "redis-server on port {} did not come up", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: connections stay open but nothing answers.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

/// A Redis Cluster of three masters on loopback, the 16384 slots split in three ranges (as `redis-cli --cluster
/// create` would, without needing redis-cli): keys with different hash tags land on different nodes, so the
/// client must route by slot and follow the cluster's answers.
pub struct TestRedisCluster {
    pub nodes: Vec<TestRedis>,
}

impl TestRedisCluster {
    pub fn start() -> TestRedisCluster {
        let nodes: Vec<TestRedis> = (0..3).map(|_| TestRedis::start_cluster_node()).collect();
        for (node, (from, to)) in nodes.iter().zip([(0, 5460), (5461, 10922), (10923, 16383)]) {
            let ok = node.command(&format!("CLUSTER ADDSLOTSRANGE {from} {to}"));
            assert!(ok.starts_with("+OK"), "{ok}");
        }
        for other in &nodes[1..] {
            let ok = nodes[0].command(&format!("CLUSTER MEET 127.0.0.1 {} {}", other.port, other.bus));
            assert!(ok.starts_with("+OK"), "{ok}");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = node.command("CLUSTER INFO");
                if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "the test cluster did not become ready: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        TestRedisCluster { nodes }
    }

    /// One seed node's URL: the client must discover the other two from it.
    pub fn seed(&self) -> String {
        self.nodes[0].url()
    }

    /// Which node (0, 1, 2) holds `key`'s slot.
    pub fn node_of(&self, key: &str) -> usize {
        let answer = self.nodes[0].command(&format!("CLUSTER KEYSLOT {key}"));
        let slot: u32 = answer.trim().trim_start_matches(':').parse().unwrap();
        match slot {
            0..=5460 => 0,
            5461..=10922 => 1,
            _ => 2,
        }
    }

    /// The keys each node holds (`KEYS pattern`, raw RESP).
    pub fn keys_by_node(&self, pattern: &str) -> Vec<String> {
        self.nodes.iter().map(|n| n.command(&format!("KEYS {pattern}"))).collect()
    }
}

/// Waits until the gateway's state backend answers (Redis connected), or panics after 10 s.
pub async fn wait_state_healthy(gw: &TestGateway) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.handle.runtime().state.healthy() {
        assert!(std::time::Instant::now() < deadline, "state backend did not become healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 keep-alive connection for many requests (load tests).
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { sender }
    }

    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Got {
        let mut b = Request::get(path).header("host", "localhost");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(b.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        read(resp).await
    }
}

/// Percent-decoding of one `application/x-www-form-urlencoded` value.
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let s = s.trim_end_matches('=');
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        acc = (acc << 6) | A.iter().position(|x| *x == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The client credentials an [`IntrospectionServer`] accepts (the secret has characters that must be
/// form-encoded before Basic, RFC 6749 §2.3.1).
pub const INTROSPECT_CLIENT_ID: &str = "rampart-gw";
pub const INTROSPECT_CLIENT_SECRET: &str = "s3cret:with+odd chars";

/// A real OAuth2 introspection endpoint (RFC 7662) at any path: checks the HTTP Basic client credentials (401
/// otherwise, counted in `bad_auth`), the form body (`token`, `token_type_hint=access_token`; 400 otherwise),
/// and answers from `answers` (unknown tokens: `{"active": false}`). It can fail on demand (`status` other
/// than 200, `malformed` bodies), hold every answer until `release` (to pile requests up), and counts calls.
pub struct IntrospectionServer {
    pub addr: SocketAddr,
    pub answers: Arc<std::sync::Mutex<std::collections::HashMap<String, serde_json::Value>>>,
    pub hits: Arc<AtomicUsize>,
    pub bad_auth: Arc<AtomicUsize>,
    pub status: Arc<std::sync::atomic::AtomicU16>,
    pub malformed: Arc<std::sync::atomic::AtomicBool>,
    held: Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for IntrospectionServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct IdpState {
    answers: Arc<std::sync::Mutex<std::collections::HashMap<String, serde_json::Value>>>,
    hits: Arc<AtomicUsize>,
    bad_auth: Arc<AtomicUsize>,
    status: Arc<std::sync::atomic::AtomicU16>,
    malformed: Arc<std::sync::atomic::AtomicBool>,
    held: Arc<tokio::sync::watch::Sender<bool>>,
}

async fn introspection_handle(req: Request<Incoming>, st: IdpState) -> Result<Response<UpBody>, Infallible> {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let reply = |status: u16, body: String| {
        let mut r = Response::new(full(body));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
        Ok(r)
    };
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(base64_decode)
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let authed = basic.as_deref().and_then(|b| b.split_once(':')).is_some_and(|(id, secret)| {
        form_decode(id) == INTROSPECT_CLIENT_ID && form_decode(secret) == INTROSPECT_CLIENT_SECRET
    });
    let form = req.headers().get("content-type").is_some_and(|v| v == "application/x-www-form-urlencoded");
    let post = req.method() == http::Method::POST;
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if !authed {
        st.bad_auth.fetch_add(1, Ordering::SeqCst);
        return reply(401, r#"{"error":"invalid_client"}"#.into());
    }
    let fields: Vec<(String, String)> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (Some(token), Some("access_token")) = (field("token"), field("token_type_hint").as_deref()) else {
        return reply(400, r#"{"error":"invalid_request"}"#.into());
    };
    if !post || !form {
        return reply(400, r#"{"error":"invalid_request"}"#.into());
    }
    let _ = st.held.subscribe().wait_for(|held| !*held).await;
    let status = st.status.load(Ordering::SeqCst);
    if status != 200 {
        return reply(status, r#"{"error":"server_error"}"#.into());
    }
    if st.malformed.load(Ordering::SeqCst) {
        return reply(200, "<html>maintenance</html>".into());
    }
    let answer = st.answers.lock().unwrap().get(&token).cloned().unwrap_or(serde_json::json!({ "active": false }));
    reply(200, answer.to_string())
}

impl IntrospectionServer {
    pub async fn start() -> IntrospectionServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = IdpState {
            answers: Default::default(),
            hits: Default::default(),
            bad_auth: Default::default(),
            status: Arc::new(std::sync::atomic::AtomicU16::new(200)),
            malformed: Default::default(),
            held: Arc::new(tokio::sync::watch::channel(false).0),
        };
        let s2 = st.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { continue };
                let st = s2.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| introspection_handle(req, st.clone()));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        let IdpState { answers, hits, bad_auth, status, malformed, held } = st;
        IntrospectionServer { addr, answers, hits, bad_auth, status, malformed, held, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/oauth2/introspect", self.addr)
    }

    /// Makes `token` answer `answer`.
    pub fn answer(&self, token: &str, answer: serde_json::Value) {
        self.answers.lock().unwrap().insert(token.to_string(), answer);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Holds every answer until [`release`](Self::release).
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    pub fn release(&self) {
        self.held.send_replace(false);
    }
}

/// An RFC 9421 signer for tests: signs with the gateway's own signature base so tests exercise what real
/// clients send (`@method`, `@target-uri`, listed headers, `content-digest` when there is a body).
pub enum HttpSigner {
    Ed(aws_lc_rs::signature::Ed25519KeyPair),
    Hmac(Box<aws_lc_rs::hmac::Key>),
}

impl HttpSigner {
    /// A fresh Ed25519 key pair and the base64 of its raw public key (what config takes).
    pub fn ed25519() -> (HttpSigner, String) {
        use aws_lc_rs::signature::KeyPair;
        use base64::Engine;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        let public = base64::engine::general_purpose::STANDARD.encode(pair.public_key().as_ref());
        (HttpSigner::Ed(pair), public)
    }

    /// An HMAC-SHA256 signer and the base64 of its secret (what config takes).
    pub fn hmac(secret: &[u8]) -> (HttpSigner, String) {
        use base64::Engine;
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        (HttpSigner::Hmac(Box::new(key)), base64::engine::general_purpose::STANDARD.encode(secret))
    }

    /// The headers that sign `method path_and_query` with `body` as sent with `host: localhost` over plain
    /// HTTP: `content-digest` (with a body), `signature-input`, `signature`, plus `extra` (also covered).
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &self,
        keyid: &str,
        method: &str,
        path_and_query: &str,
        extra: &[(&str, &str)],
        body: &[u8],
        created: u64,
        nonce: &str,
    ) -> Vec<(String, String)> {
        use base64::Engine;
        use gateway::stages::identify::signature::{signature_base_for, SignedRequest};
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out: Vec<(String, String)> = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut covered = vec!["\"@method\"".to_string(), "\"@target-uri\"".to_string()];
        covered.extend(extra.iter().map(|(k, _)| format!("\"{}\"", k.to_ascii_lowercase())));
        if !body.is_empty() {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
            out.push(("content-digest".into(), format!("sha-256=:{}:", b64.encode(d.as_ref()))));
            covered.push("\"content-digest\"".into());
        }
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "localhost".parse().unwrap());
        for (k, v) in &out {
            headers.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let params = format!("({});created={created};keyid=\"{keyid}\";nonce=\"{nonce}\"", covered.join(" "));
        let method: http::Method = method.parse().unwrap();
        let uri: http::Uri = path_and_query.parse().unwrap();
        let req = SignedRequest { method: &method, uri: &uri, headers: &headers, body, scheme: "http" };
        let base = signature_base_for(&req, &params).unwrap();
        let sig = match self {
            HttpSigner::Ed(k) => k.sign(&base).as_ref().to_vec(),
            HttpSigner::Hmac(k) => aws_lc_rs::hmac::sign(k, &base).as_ref().to_vec(),
        };
        out.push(("signature-input".into(), format!("sig1={params}")));
        out.push(("signature".into(), format!("sig1=:{}:", b64.encode(sig))));
        out
    }
}

/// Runs `futures` in the calling task, polling each in order on every wake, and returns their outputs in order.
/// Every one is polled once before any can have been answered by a server, so they are in flight at once, in a
/// known order (tests of what a backend does with concurrent calls).
pub async fn join_in_order<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

impl TestRedis {
    /// How many times this server ran `command` (`INFO commandstats`, e.g. `evalsha`).
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.command("INFO commandstats");
        let tag = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(tag.as_str()))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}
