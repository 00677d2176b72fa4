//! One small HTTP(S) exchange with an identity provider — a JWKS GET, a token-introspection POST — over our own
//! hyper + rustls (aws-lc) stack: bounded in time and size, no redirects followed, no cookies, no proxy.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest document accepted; a JWKS or an introspection answer is a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL")]
    Url,
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("status {0}")]
    Status(u16),
    #[error("timed out")]
    Timeout,
}

/// One request to an identity provider. Headers are prepared by the caller (at config load where possible).
pub struct Call<'a> {
    pub method: Method,
    pub url: &'a Uri,
    pub accept: &'static str,
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: Bytes,
}

/// GETs `url` (http or https) within `timeout`, returning the body of a 200.
pub async fn get(url: &Uri, tls: &Arc<rustls::ClientConfig>, timeout: Duration) -> Result<Bytes, FetchError> {
    let call = Call {
        method: Method::GET,
        url,
        accept: "application/json, application/jwk-set+json",
        headers: &[],
        body: Bytes::new(),
    };
    send_within(&call, tls, timeout).await
}

/// Sends `call` within `timeout` (connect, TLS, request and the whole body), returning the body of a 200; any
/// other status is an error.
pub async fn send_within(
    call: &Call<'_>,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    tokio::time::timeout(timeout, exchange(call, tls)).await.map_err(|_| FetchError::Timeout)?
}

async fn exchange(call: &Call<'_>, tls: &Arc<rustls::ClientConfig>) -> Result<Bytes, FetchError> {
    let url = call.url;
    let https = match url.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::Url),
    };
    let host = url.host().ok_or(FetchError::Url)?;
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare_host, port)).await.map_err(FetchError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let authority = url.authority().map(|a| a.as_str().to_string()).ok_or(FetchError::Url)?;
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = Request::builder()
        .method(call.method.clone())
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, call.accept)
        .header(http::header::USER_AGENT, "rampart");
    for (name, value) in call.headers {
        builder = builder.header(name, value);
    }
    let req = builder.body(Full::new(call.body.clone())).map_err(|e| FetchError::Http(e.to_string()))?;
    if https {
        let name = ServerName::try_from(bare_host.to_string()).map_err(|_| FetchError::Url)?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(FetchError::Tls)?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<T>(io: T, req: Request<Full<Bytes>>) -> Result<Bytes, FetchError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| FetchError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| FetchError::Http(e.to_string()))?;
        if resp.status() != http::StatusCode::OK {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let body = Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
        Ok(body.to_bytes())
    }
    .await;
    driver.abort();
    result
}
