//! Respond, baseline: upstream error bodies (stack traces, SQL errors, framework debug pages) are replaced by a
//! generic problem+json before they reach the client, fingerprinting headers are stripped, and security headers
//! are added to every response the gateway sends. Secrets in JSON and text bodies are redacted ([`redact`],
//! [`secrets`]), compressed bodies decoded under a cap ([`decode`]), and bulk reads counted ([`exfil`]).

pub mod body;
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
    /// Redacts the excerpt of a hidden error body before it is logged (built-in detectors and field names).
    pub log_redactor: std::sync::Arc<redact::Redactor>,
}

impl Default for RespondPolicy {
    fn default() -> Self {
        RespondPolicy {
            hide_upstream_errors: true,
            hide_client_errors: false,
            strip: FINGERPRINT_HEADERS.iter().map(|h| HeaderName::from_static(h)).collect(),
            strip_prefixes: DEBUG_PREFIXES.iter().map(|p| p.to_string()).collect(),
            security_headers: true,
            log_redactor: std::sync::Arc::new(redact::Redactor::default()),
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

    /// Whether a response header is a fingerprinting or debug header.
    pub fn strips(&self, name: &HeaderName) -> bool {
        self.strip.contains(name) || self.strip_prefixes.iter().any(|p| name.as_str().starts_with(p.as_str()))
    }

    /// [`strips`](Self::strips) for the request path's one pass over the upstream's headers: names whose first
    /// byte starts no stripped name or prefix (most of them: `content-*`, `date`, `cache-control` …) are passed
    /// after one bit test.
    pub fn stripper(&self) -> impl Fn(&HeaderName) -> bool + '_ {
        let mut first = 0u128;
        for n in self.strip.iter().map(|n| n.as_str()).chain(self.strip_prefixes.iter().map(String::as_str)) {
            first |= n.as_bytes().first().map_or(0, |&b| 1u128 << (b & 127));
        }
        move |name| {
            let b = name.as_str().as_bytes().first().copied().unwrap_or(0);
            first & (1u128 << (b & 127)) != 0 && self.strips(name)
        }
    }

    /// Removes fingerprinting and debug headers from an upstream response.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let doomed: Vec<HeaderName> = headers.keys().filter(|n| self.strips(n)).cloned().collect();
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

/// Longest excerpt of a hidden error body written to the log, after redaction.
pub const EXCERPT_BYTES: usize = 1024;

/// What the log may show of a hidden error body: decoded if compressed, redacted as a whole (so no secret is
/// cut in half and half-shown), then cut to [`EXCERPT_BYTES`] on a character boundary.
pub fn excerpt(body: &[u8], content_encoding: Option<&HeaderValue>, redactor: &redact::Redactor) -> String {
    let decoded = decode::codings(content_encoding).and_then(|c| decode::decode(body, &c, DESCRIBE_BYTES));
    let plain: &[u8] = match &decoded {
        Ok(d) => d,
        Err(_) => body,
    };
    let mut report = redact::Report::default();
    let redacted = redactor.redact_text(plain, &mut report);
    let text = String::from_utf8_lossy(redacted.as_deref().unwrap_or(plain));
    let mut cut = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = text[..cut].to_string();
    if cut < text.len() {
        out.push('…');
    }
    out
}

/// Reads (and so frees the upstream connection of) a hidden error body and logs what it was: its size, type,
/// a hash prefix and a redacted, truncated excerpt — stack traces help the operator; secrets in them must not
/// reach the log.
pub async fn log_hidden_body(
    body: Incoming,
    status: StatusCode,
    headers: HeaderMap,
    request_id: String,
    redactor: std::sync::Arc<redact::Redactor>,
) {
    let limited = http_body_util::Limited::new(body, DESCRIBE_BYTES);
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), limited.collect()).await;
    let (len, hash, excerpt) = match read {
        Ok(Ok(c)) => {
            let b: Bytes = c.to_bytes();
            let ex = excerpt(&b, headers.get(http::header::CONTENT_ENCODING), &redactor);
            (b.len().to_string(), hex::encode(&Sha256::digest(&b)[..8]), ex)
        }
        _ => (format!("> {DESCRIBE_BYTES} or unreadable"), String::new(), String::new()),
    };
    tracing::warn!(
        target: "rampart::upstream",
        request_id,
        status = status.as_u16(),
        content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or(""),
        bytes = %len,
        sha256_prefix = %hash,
        excerpt = %excerpt,
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
        let stripper = p.stripper();
        for (name, gone) in
            [("server", true), ("x-debug-token-link", true), ("via", true), ("date", false), ("x-kept", false)]
        {
            assert_eq!(stripper(&HeaderName::from_static(name)), gone, "{name}");
        }
    }

    #[test]
    fn hides_5xx_by_default_and_4xx_on_request() {
        let mut p = RespondPolicy::default();
        assert!(p.hides(StatusCode::INTERNAL_SERVER_ERROR) && p.hides(StatusCode::BAD_GATEWAY));
        assert!(!p.hides(StatusCode::NOT_FOUND) && !p.hides(StatusCode::OK));
        p.hide_client_errors = true;
        assert!(p.hides(StatusCode::NOT_FOUND));
    }

    /// Debug pages of the common frameworks, each with a secret in it: the log excerpt keeps the shape of the
    /// error and none of the secrets, and is cut to size.
    #[test]
    fn error_excerpts_are_redacted_and_truncated() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl";
        let pages = [
            ("werkzeug", "<title>OperationalError // Werkzeug Debugger</title><pre>Traceback (most recent call last):\n  File \"/srv/app.py\"</pre><script>var SECRET = \"Yx4kq9GfWQ1cC0d3\";</script>".to_string(), "Yx4kq9GfWQ1cC0d3"),
            ("django", "<title>DatabaseError at /users/</title>\nDATABASES = {'default': {'PASSWORD': 's3cr3t-db-pw'}}\nSECRET_KEY = 'django-insecure-abc123'".to_string(), "s3cr3t-db-pw"),
            ("rails", "ActiveRecord::StatementInvalid (PG::SyntaxError)\napp/models/user.rb:12\nsecret_key_base: 9f8e7d6c5b4a\nAuthorization: Bearer TOKEN".replace("TOKEN", jwt), jwt),
            ("spring", "Whitelabel Error Page\njava.sql.SQLException: Access denied for user 'app'@'db' (using password: YES)\n\tat com.example.UserRepo.find(UserRepo.java:42)\nspring.datasource.password=hunter2".to_string(), "hunter2"),
            ("aspnet", "<title>Server Error in '/' Application.</title>System.Data.SqlClient.SqlException\nconnectionString=\"Server=db;User Id=sa;Password=P@ssw0rd!\"".to_string(), "P@ssw0rd!"),
            ("php", "<b>Fatal error</b>: Uncaught PDOException: SQLSTATE[HY000] [1045] in /var/www/db.php:7\n$password = 'php-secret-9'; card 4111111111111111".to_string(), "4111111111111111"),
        ];
        let r = redact::Redactor::default();
        for (name, page, secret) in pages {
            let page = format!("{page}\n{}", "padding line\n".repeat(200));
            let ex = excerpt(page.as_bytes(), None, &r);
            assert!(!ex.contains(secret), "{name}: {secret} in {ex}");
            assert!(ex.len() <= EXCERPT_BYTES + 3 && ex.ends_with('…'), "{name}: not truncated");
        }
        // Compressed error bodies are decoded before redaction.
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"boom password=hunter2").unwrap();
        let ex = excerpt(&gz.finish().unwrap(), Some(&HeaderValue::from_static("gzip")), &r);
        assert_eq!(ex, "boom password=[redacted]");
    }
}
