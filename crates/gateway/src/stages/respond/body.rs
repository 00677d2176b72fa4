//! The buffered response pass: which responses are read whole (JSON and text of routes with redaction or an
//! exfiltration guard), reading them under a cap and a deadline, decoding them, and redacting them. Everything
//! else streams through untouched.

use super::decode::{self, DecodeError};
use super::exfil::ExfilPolicy;
use super::redact::{Malformed, Redactor, Report};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

/// What a route does with a response body it cannot inspect (over the cap, an unknown or corrupt encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverLimit {
    /// Send it as the upstream sent it, unredacted, and record a `respond.uninspected` event.
    Pass,
    /// Answer 502 `respond.uninspected` instead.
    Block,
}

/// A route's compiled body rules.
pub struct BodyPolicy {
    /// Off (finds nothing) when the route only has an exfiltration guard.
    pub redactor: Redactor,
    /// Largest body read for inspection, before and after decoding.
    pub max_body_bytes: usize,
    pub over_limit: OverLimit,
    pub exfiltration: Option<ExfilPolicy>,
}

/// How a response body is treated, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Text,
    /// Binary or a stream (`text/event-stream`): never buffered.
    Other,
}

impl BodyType {
    /// JSON: `application/json`, `*/*+json`, `text/json`. Text: `text/*`, XML, JavaScript, forms, NDJSON, YAML.
    /// Server-sent events, binary types and unlabelled bodies (downloads, long polls) stream.
    /// Compared case-insensitively in place: this runs on every response.
    pub fn of(content_type: Option<&HeaderValue>) -> BodyType {
        let Some(ct) = content_type.map(HeaderValue::as_bytes) else { return BodyType::Other };
        // Byte scans, not `str::split`: its searcher costs more than the whole comparison on a 16-byte value.
        let essence = ct.iter().position(|&b| b == b';').map_or(ct, |i| &ct[..i]).trim_ascii();
        let (top, sub) = match essence.iter().position(|&b| b == b'/') {
            Some(i) => (&essence[..i], &essence[i + 1..]),
            None => (essence, &[][..]),
        };
        let ends_with = |s: &[u8], suffix: &str| {
            s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        };
        if sub.eq_ignore_ascii_case(b"json") || ends_with(sub, "+json") {
            return BodyType::Json;
        }
        if top.eq_ignore_ascii_case(b"text") {
            return if sub.eq_ignore_ascii_case(b"event-stream") { BodyType::Other } else { BodyType::Text };
        }
        let text_app = ["xml", "javascript", "x-www-form-urlencoded", "x-ndjson", "yaml", "x-yaml"];
        if (top.eq_ignore_ascii_case(b"application") && text_app.iter().any(|t| sub.eq_ignore_ascii_case(t.as_bytes())))
            || ends_with(sub, "+xml")
        {
            return BodyType::Text;
        }
        BodyType::Other
    }
}

impl BodyPolicy {
    /// Whether a response with these headers is read whole. Only JSON is read for the exfiltration guard alone.
    pub fn inspects(&self, headers: &HeaderMap) -> Option<BodyType> {
        match BodyType::of(headers.get(header::CONTENT_TYPE)) {
            BodyType::Other => None,
            BodyType::Text if self.redactor.is_off() => None,
            t => Some(t),
        }
    }
}

/// A response body read for inspection.
pub enum Collected {
    Whole(Bytes),
    /// Past the cap: what was read, and the rest still on the wire.
    Over {
        prefix: Bytes,
        rest: Incoming,
    },
    /// The upstream failed while sending it.
    Failed(String),
    TimedOut,
}

/// Reads a body up to `cap` bytes, before `deadline`.
pub async fn collect(mut body: Incoming, cap: usize, deadline: tokio::time::Instant) -> Collected {
    let exact = body.size_hint().exact();
    if exact.is_some_and(|n| n > cap as u64) {
        return Collected::Over { prefix: Bytes::new(), rest: body };
    }
    // A body that arrives in one frame (the usual small response) is kept as is, without a copy.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    loop {
        let frame = tokio::select! {
            biased;
            f = body.frame() => f,
            _ = &mut sleep => return Collected::TimedOut,
        };
        let data = match frame {
            None => return Collected::Whole(first.unwrap_or_else(|| buf.freeze())),
            Some(Err(e)) => return Collected::Failed(e.to_string()),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        if first.is_none() && buf.is_empty() {
            first = Some(data);
        } else {
            if let Some(f) = first.take() {
                buf.reserve(exact.map_or(f.len() + data.len(), |n| n as usize));
                buf.extend_from_slice(&f);
            }
            buf.extend_from_slice(&data);
        }
        let len = first.as_ref().map_or(buf.len(), Bytes::len);
        if len > cap {
            let prefix = match first.take() {
                Some(f) => f,
                None => buf.freeze(),
            };
            return Collected::Over { prefix, rest: body };
        }
    }
}

/// The result of the buffered pass over a whole body.
pub struct Processed {
    /// The body to send: redacted and decoded, or the original bytes when nothing changed.
    pub body: Bytes,
    /// The body differs from what the upstream sent (redacted, or decoded).
    pub changed: bool,
    /// The content coding was removed.
    pub decoded: bool,
    pub report: Report,
}

/// Decodes (if the upstream compressed anyway) and redacts a whole body. `Err`: it cannot be inspected.
pub fn process(policy: &BodyPolicy, ty: BodyType, headers: &HeaderMap, raw: Bytes) -> Result<Processed, DecodeError> {
    let codings = decode::codings(headers.get(header::CONTENT_ENCODING))?;
    let plain: Bytes = if codings.is_empty() {
        raw.clone()
    } else {
        Bytes::from(decode::decode(&raw, &codings, policy.max_body_bytes)?)
    };
    let decoded = !codings.is_empty();
    let mut report = Report::default();
    let redacted = match ty {
        BodyType::Json => match policy.redactor.redact_json(&plain, &mut report) {
            Ok(r) => r,
            Err(Malformed(_)) => policy.redactor.redact_text(&plain, &mut report),
        },
        _ => policy.redactor.redact_text(&plain, &mut report),
    };
    let changed = redacted.is_some() || decoded;
    let body = match redacted {
        Some(v) => Bytes::from(v),
        None if decoded => plain,
        None => raw,
    };
    Ok(Processed { body, changed, decoded, report })
}

/// Headers that describe bytes we no longer send once a body is rewritten.
pub const STALE_WHEN_CHANGED: [header::HeaderName; 4] = [
    header::ETAG,
    header::HeaderName::from_static("content-md5"),
    header::HeaderName::from_static("content-digest"),
    header::HeaderName::from_static("digest"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let t = |s: &'static str| BodyType::of(Some(&HeaderValue::from_static(s)));
        assert_eq!(t("application/json; charset=utf-8"), BodyType::Json);
        assert_eq!(t("application/problem+json"), BodyType::Json);
        assert_eq!(t("application/vnd.api+json"), BodyType::Json);
        assert_eq!(t("text/html"), BodyType::Text);
        assert_eq!(t("application/xml"), BodyType::Text);
        assert_eq!(t("text/event-stream"), BodyType::Other);
        assert_eq!(t("image/png"), BodyType::Other);
        assert_eq!(t("application/octet-stream"), BodyType::Other);
        assert_eq!(BodyType::of(None), BodyType::Other);
        assert_eq!(t("Application/JSON"), BodyType::Json);
        assert_eq!(t("TEXT/Event-Stream"), BodyType::Other);
        assert_eq!(t("image/svg+XML"), BodyType::Text);
        assert_eq!(t("APPLICATION/x-www-form-urlencoded"), BodyType::Text);
        assert_eq!(t(" text/plain ; charset=utf-8"), BodyType::Text);
    }
}
