//! A small JSON API — users, orders, products — that `rampart demo` puts behind the gateway, and that tests use
//! as a real upstream. It is deliberately naive (no auth, an internal debug endpoint, verbose errors), the way
//! many services are, so the demo can show what the gateway stops.
#![forbid(unsafe_code)]

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Binds `addr` and serves the sample API until the task is dropped. Returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn json_response(status: StatusCode, v: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

fn users() -> Value {
    json!([
        { "id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "role": "admin" },
        { "id": 2, "name": "Seán O'Brien", "email": "sean@example.com", "role": "user" },
        { "id": 3, "name": "Zhang Wei", "email": "zhang@example.com", "role": "user" }
    ])
}

fn orders() -> Value {
    json!([
        { "id": 100, "user_id": 2, "product_id": 10, "quantity": 1, "status": "shipped" },
        { "id": 101, "user_id": 3, "product_id": 11, "quantity": 3, "status": "pending" }
    ])
}

fn products() -> Value {
    json!([
        { "id": 10, "sku": "KB-104/US", "name": "Keyboard", "price": 49.5 },
        { "id": 11, "sku": "MS-2000", "name": "Mouse", "price": 19.0 }
    ])
}

fn find(list: Value, id: &str) -> Response<Full<Bytes>> {
    let found = list
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"].as_u64().is_some_and(|n| id.parse::<u64>() == Ok(n))).cloned());
    match found {
        Some(v) => json_response(StatusCode::OK, v),
        None => json_response(StatusCode::NOT_FOUND, json!({ "error": "not found" })),
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resp = match (&method, segs.as_slice()) {
        (&Method::GET, ["health"]) => json_response(StatusCode::OK, json!({ "status": "ok" })),
        (&Method::GET, ["users"]) => json_response(StatusCode::OK, users()),
        (&Method::GET, ["users", id]) => find(users(), id),
        (&Method::POST, ["users"]) | (&Method::PATCH, ["users", _]) => match serde_json::from_slice::<Value>(&body) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.entry("id").or_insert(json!(4));
                }
                let status = if method == Method::POST { StatusCode::CREATED } else { StatusCode::OK };
                json_response(status, v)
            }
            Err(e) => json_response(StatusCode::BAD_REQUEST, json!({ "error": format!("invalid JSON: {e}") })),
        },
        (&Method::GET, ["orders"]) => json_response(StatusCode::OK, orders()),
        (&Method::GET, ["orders", id]) => find(orders(), id),
        (&Method::GET, ["products"]) => json_response(StatusCode::OK, products()),
        (&Method::GET, ["products", id]) => find(products(), id),
        // What the gateway must never expose: an internal endpoint that echoes everything it gets.
        (_, ["internal", "debug"]) => json_response(
            StatusCode::OK,
            json!({ "method": method.as_str(), "path": path, "query": query, "headers": headers, "body_bytes": body.len(),
                    "env": { "DB_PASSWORD": "hunter2" } }),
        ),
        _ => json_response(StatusCode::NOT_FOUND, json!({ "error": "no such endpoint", "path": path })),
    };
    Ok(resp)
}
