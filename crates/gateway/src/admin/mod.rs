//! The admin listener (loopback by default): `/healthz` (the process is up), `/readyz` (every upstream has a
//! target that can take traffic) and `/metrics` (Prometheus). When a token is configured, `/metrics` requires it.

use crate::body::ResponseBody;
use crate::proxy::Shared;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req)) }
                    });
                    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    b.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(5));
                    let _ = b.http1_only().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let Some(given) =
        req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    let rt = shared.runtime.load();
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "application/json", "{\"status\":\"ok\"}\n".into()),
        "/readyz" => {
            let mut down = Vec::new();
            for u in &rt.upstreams {
                if !u.any_available() {
                    down.push(u.name.clone());
                }
            }
            let body = serde_json::json!({ "ready": down.is_empty(), "upstreams_without_targets": down }).to_string();
            let status = if down.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(status, "application/json", body)
        }
        "/metrics" => {
            let token = rt.admin.as_ref().and_then(|a| a.token.as_deref());
            if !authorized(&req, token) {
                return text(StatusCode::UNAUTHORIZED, "text/plain", "admin token required\n".into());
            }
            text(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", shared.metrics.encode())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
