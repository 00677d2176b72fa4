//! Respond, baseline: upstream error bodies (stack traces, SQL errors, framework debug pages) are replaced by a
//! generic problem+json before they reach the client, fingerprinting headers are stripped, and security headers
//! are added to every response the gateway sends. Secrets in JSON and text bodies are redacted ([`redact`],
//! [`secrets`]), compressed bodies decoded under a cap ([`decode`]), and bulk reads counted ([`exfil`]).

pub mod decode;
pub mod exfil;
pub mod redact;
pub mod secrets;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

/// Headers that tell an attacker what runs behind the gateway.
pub const FINGERPRINT_HEADERS: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-runtime",
    "x-generator",
    "x-drupal-cache",
    "via",
];

/// Prefixes of debug headers frameworks add (`X-Debug-Token`, `X-Debug-Token-Link`, …).
pub const DEBUG_PREFIXES: &[&str] = &["x-debug-", "x-sourcefiles"];

/// The compiled response policy.
#[derive(Debug, Clone)]
pub struct RespondPolicy {
    /// Replace upstream 5xx bodies with a generic problem+json.
    pub hide_upstream_errors: bool,
    /// Also replace upstream 4xx bodies.
    pub hide_client_errors: bool,
    /// Header names removed from upstream responses (fingerprinting ones plus configured ones).
    pub strip: Vec<HeaderName>,
    pub strip_prefixes: Vec<String>,
    /// Add `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy` and a restrictive
    /// `Content-Security-Policy` (unless the upstream set its own) to every response.
    pub security_headers: bool,
}

impl Default for RespondPolicy {
    fn default() -> Self {
        RespondPolicy {
            hide_upstream_errors: true,
            hide_client_errors: false,
            strip: FINGERPRINT_HEADERS.iter().map(|h| HeaderName::from_static(h)).collect(),
            strip_prefixes: DEBUG_PREFIXES.iter().map(|p| p.to_string()).collect(),
            security_headers: true,
        }
    }
}

const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const DENY: HeaderValue = HeaderValue::from_static("DENY");
const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
const API_CSP: HeaderValue = HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'");

impl RespondPolicy {
    /// Whether an upstream answer with this status has its body replaced.
    pub fn hides(&self, status: StatusCode) -> bool {
        (status.is_server_error() && self.hide_upstream_errors) || (status.is_client_error() && self.hide_client_errors)
    }

    /// Removes fingerprinting and debug headers from an upstream response.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| {
                self.strip.contains(n) || self.strip_prefixes.iter().any(|p| n.as_str().starts_with(p.as_str()))
            })
            .cloned()
            .collect();
        for n in doomed {
            headers.remove(n);
        }
    }

    /// Adds the security headers to any response (the gateway's own included).
    pub fn secure(&self, headers: &mut HeaderMap) {
        if !self.security_headers {
            return;
        }
        headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        headers.insert(http::header::X_FRAME_OPTIONS, DENY);
        headers.insert(http::header::REFERRER_POLICY, NO_REFERRER);
        if !headers.contains_key(http::header::CONTENT_SECURITY_POLICY) {
            headers.insert(http::header::CONTENT_SECURITY_POLICY, API_CSP);
        }
    }
}

/// Largest part of a hidden error body read to describe it in the log (the rest is drained unread).
const DESCRIBE_BYTES: usize = 64 * 1024;

/// Reads (and so frees the upstream connection of) a hidden error body and logs what it was — its size, type
/// and a hash prefix, never its content, which may hold secrets.
pub async fn log_hidden_body(
    body: Incoming,
    status: StatusCode,
    content_type: Option<HeaderValue>,
    request_id: String,
) {
    let limited = http_body_util::Limited::new(body, DESCRIBE_BYTES);
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), limited.collect()).await;
    let (len, hash) = match read {
        Ok(Ok(c)) => {
            let b: Bytes = c.to_bytes();
            (b.len().to_string(), hex::encode(&Sha256::digest(&b)[..8]))
        }
        _ => (format!("> {DESCRIBE_BYTES} or unreadable"), String::new()),
    };
    tracing::warn!(
        target: "rampart::upstream",
        request_id,
        status = status.as_u16(),
        content_type = content_type.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
        bytes = %len,
        sha256_prefix = %hash,
        "upstream error body hidden from the client"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fingerprints_and_adds_security_headers() {
        let p = RespondPolicy::default();
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("Werkzeug/2.2.3 Python/3.11.7"));
        h.insert("x-powered-by", HeaderValue::from_static("Express"));
        h.insert("x-debug-token", HeaderValue::from_static("abc"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("content-security-policy", HeaderValue::from_static("default-src 'self'"));
        p.strip(&mut h);
        p.secure(&mut h);
        assert!(h.get("server").is_none() && h.get("x-powered-by").is_none() && h.get("x-debug-token").is_none());
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["content-security-policy"], "default-src 'self'", "the upstream's own CSP is kept");
        assert_eq!(h["content-type"], "application/json");
    }

    #[test]
    fn hides_5xx_by_default_and_4xx_on_request() {
        let mut p = RespondPolicy::default();
        assert!(p.hides(StatusCode::INTERNAL_SERVER_ERROR) && p.hides(StatusCode::BAD_GATEWAY));
        assert!(!p.hides(StatusCode::NOT_FOUND) && !p.hides(StatusCode::OK));
        p.hide_client_errors = true;
        assert!(p.hides(StatusCode::NOT_FOUND));
    }
}
