//! One small HTTP(S) GET for documents the gateway itself needs from an identity provider (a JWKS), over our
//! own hyper + rustls (aws-lc) stack: bounded in time and size, no redirects followed, no cookies, no proxy.

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest document accepted; a JWKS is a few kilobytes.
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

/// GETs `url` (http or https) within `timeout`, returning the body of a 200.
pub async fn get(url: &Uri, tls: &Arc<rustls::ClientConfig>, timeout: Duration) -> Result<Bytes, FetchError> {
    tokio::time::timeout(timeout, get_inner(url, tls)).await.map_err(|_| FetchError::Timeout)?
}

async fn get_inner(url: &Uri, tls: &Arc<rustls::ClientConfig>) -> Result<Bytes, FetchError> {
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
    let req = Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json, application/jwk-set+json")
        .header(http::header::USER_AGENT, "rampart")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    if https {
        let name = ServerName::try_from(bare_host.to_string()).map_err(|_| FetchError::Url)?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(FetchError::Tls)?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(tcp), req).await
    }
}

async fn send<T>(io: T, req: Request<Empty<Bytes>>) -> Result<Bytes, FetchError>
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
