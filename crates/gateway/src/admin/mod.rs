//! The admin listener (loopback by default): `/healthz` (the process is up), `/readyz` (every upstream has a
//! target that can take traffic) and `/metrics` (Prometheus). When a token is configured, `/metrics` requires it.
//! `GET /blocks` lists temporary blocks and `DELETE /blocks/{subject}` lifts one; both need the token like
//! `/metrics`.

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
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
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

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    let rt = shared.runtime.load_full();
    if req.uri().path() == "/blocks" || req.uri().path().starts_with("/blocks/") {
        let token = rt.admin.as_ref().and_then(|a| a.token.as_deref());
        if !authorized(&req, token) {
            return text(StatusCode::UNAUTHORIZED, "text/plain", "admin token required\n".into());
        }
        return blocks(&rt.state, &req).await;
    }
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

/// `GET /blocks` → `{"blocks":[{"subject":"ip:203.0.113.7/32","remaining_ms":…}]}`;
/// `DELETE /blocks/{subject}` (the subject as listed, percent-encoded or not) → 200 when lifted, 404 if none.
async fn blocks(state: &crate::state::Store, req: &Request<Incoming>) -> Response<ResponseBody> {
    use crate::state::{Blocks, Subject};
    let unavailable = || {
        text(StatusCode::SERVICE_UNAVAILABLE, "application/json", "{\"error\":\"state backend unreachable\"}\n".into())
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/blocks") => match state.list_blocks().await {
            Ok(list) => text(StatusCode::OK, "application/json", serde_json::json!({ "blocks": list }).to_string()),
            Err(_) => unavailable(),
        },
        (&Method::DELETE, path) => {
            let raw = path.strip_prefix("/blocks/").unwrap_or("");
            let label = percent_decode(raw);
            let Some(subject) = label.as_deref().and_then(Subject::parse) else {
                return text(StatusCode::BAD_REQUEST, "text/plain", "invalid subject\n".into());
            };
            match state.unblock(&subject).await {
                Ok(true) => {
                    tracing::warn!(target: "rampart::security", event = "throttle.unblock", subject = %subject, "block lifted through the admin API");
                    text(
                        StatusCode::OK,
                        "application/json",
                        serde_json::json!({ "lifted": &*subject.label() }).to_string(),
                    )
                }
                Ok(false) => text(StatusCode::NOT_FOUND, "application/json", "{\"error\":\"no such block\"}\n".into()),
                Err(_) => unavailable(),
            }
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET /blocks or DELETE /blocks/{subject}\n".into()),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
