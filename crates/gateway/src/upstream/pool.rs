//! A lean upstream connection pool: HTTP/1.1 connections (plain or TLS) kept per worker thread and per target,
//! reused most-recently-used first. It replaces hyper-util's general pool, whose keyed map, locking and checkout
//! machinery cost about an eighth of the proxy's instructions per request in profiles; here the common case
//! is one uncontended lock and a `Vec::swap_remove`.

use crate::body::RequestBody;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect: {0}")]
    Connect(String),
    #[error(transparent)]
    Request(#[from] hyper::Error),
}

impl SendError {
    /// Nothing reached the upstream: safe to try another target.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// A failed exchange; `request` is the request itself when none of it left, so it can go elsewhere. Passed
/// boxed: it is rare, and large next to a response, whose moves it would otherwise make costlier.
pub struct Failed {
    pub error: SendError,
    pub request: Option<Request<RequestBody>>,
}

struct Idle {
    tx: SendRequest<RequestBody>,
    since: Instant,
}

/// How to reach one target.
pub struct Dialer {
    pub host: String,
    pub port: u16,
    pub tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    pub connect_timeout: Duration,
}

impl Dialer {
    pub(crate) async fn dial(&self) -> Result<SendRequest<RequestBody>, SendError> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let tcp = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
            Err(_) => return Err(SendError::Connect(format!("timed out after {:?}", self.connect_timeout))),
        };
        let _ = tcp.set_nodelay(true);
        let mut builder = http1::Builder::new();
        builder.title_case_headers(false);
        match &self.tls {
            None => {
                let (tx, conn) =
                    builder.handshake(TokioIo::new(tcp)).await.map_err(|e| SendError::Connect(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                });
                Ok(tx)
            }
            Some((connector, name)) => {
                let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| SendError::Connect("TLS handshake timed out".into()))?
                    .map_err(|e| SendError::Connect(format!("TLS: {e}")))?;
                let (tx, conn) =
                    builder.handshake(TokioIo::new(tls)).await.map_err(|e| SendError::Connect(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                });
                Ok(tx)
            }
        }
    }
}

/// The idle connections of one worker to one target.
pub struct ConnPool {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl ConnPool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        ConnPool { idle: Mutex::new(Vec::new()), max_idle, idle_timeout }
    }

    /// A ready pooled connection, if any. Closed and expired ones are dropped on the way; busy ones (a response
    /// still streaming) stay for later.
    fn take(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().ok()?;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &idle[i];
            if c.tx.is_closed() || c.since.elapsed() > self.idle_timeout {
                idle.swap_remove(i);
                continue;
            }
            if c.tx.is_ready() {
                return Some(idle.swap_remove(i).tx);
            }
        }
        None
    }

    fn put(&self, tx: SendRequest<RequestBody>) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(Idle { tx, since: Instant::now() });
            }
        }
    }

    /// Sends `req` on a pooled connection or a new one. A pooled connection that turns out not to be usable
    /// before the request left hands the request back, and a fresh connection is tried. On failure the request
    /// comes back too when nothing of it reached the upstream, so the caller can try another target.
    pub async fn send(
        &self,
        dialer: &Dialer,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, Box<Failed>> {
        if let Some(mut tx) = self.take() {
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    self.keep(tx, &resp);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(Box::new(Failed { error: SendError::Request(e.into_error()), request: None })),
                },
            }
        }
        // Boxed: dialing is the cold path, and its (large) state would otherwise be part of every exchange's
        // future, copied each time that future moves.
        Box::pin(self.send_fresh(dialer, req)).await
    }

    async fn send_fresh(&self, dialer: &Dialer, req: Request<RequestBody>) -> Result<Response<Incoming>, Box<Failed>> {
        let mut tx = match dialer.dial().await {
            Ok(tx) => tx,
            Err(error) => return Err(Box::new(Failed { error, request: Some(req) })),
        };
        match tx.try_send_request(req).await {
            Ok(resp) => {
                self.keep(tx, &resp);
                Ok(resp)
            }
            Err(mut e) => {
                let request = e.take_message();
                Err(Box::new(Failed { error: SendError::Request(e.into_error()), request }))
            }
        }
    }

    /// Pools the connection unless the exchange ends it (upgrade, `Connection: close`).
    fn keep(&self, tx: SendRequest<RequestBody>, resp: &Response<Incoming>) {
        let closing = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS
            || resp
                .headers()
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if !closing {
            self.put(tx);
        }
    }
}

/// Builds the dialer of a target.
pub fn dialer(
    target: &super::Target,
    tls: &Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
) -> Result<Dialer, String> {
    let host = target.authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let https = target.scheme == http::uri::Scheme::HTTPS;
    let port = target.authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tls = if https {
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("invalid TLS server name `{host}`: {e}"))?;
        let mut cfg = (**tls).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name))
    } else {
        None
    };
    Ok(Dialer { host, port, tls, connect_timeout })
}
