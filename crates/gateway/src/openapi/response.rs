//! Response schema enforcement: a JSON response keeps only the properties its operation's response schema
//! declares for that status (`filter`), or is refused when it carries any other (`block`); `writeOnly`
//! properties (passwords) are always removed; a status the operation does not declare is reported.
//!
//! [`Operation::filter_response`] is the transform on a parsed body; the gateway itself filters the body's bytes
//! with [`Operation::response_shapes`] in the redaction pass (one pass, no tree: see
//! `Redactor::filter_redact_json`). [`read_bytes`] is the small buffering step in front of it.

use super::compile::{BodySchema, Operation, StatusKey};
use super::shape::{Filtered, Shapes};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_TYPE};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use serde_json::Value;

/// What a route does with JSON responses whose schema does not declare every property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// Responses stream through untouched.
    Off,
    /// Undeclared and `writeOnly` properties are removed.
    Filter,
    /// A response with undeclared properties is replaced by an error; `writeOnly` ones are removed.
    Block,
}

impl ResponseMode {
    pub fn parse(s: &str) -> Option<ResponseMode> {
        match s {
            "off" => Some(ResponseMode::Off),
            "filter" => Some(ResponseMode::Filter),
            "block" => Some(ResponseMode::Block),
            _ => None,
        }
    }
}

/// The outcome of checking one response body.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseCheck {
    /// Nothing to change.
    Clean,
    /// The body was changed (undeclared and/or `writeOnly` properties removed).
    Filtered(Filtered),
    /// The body carries undeclared properties and the mode is `block` (`writeOnly` ones are already removed).
    Block(Filtered),
    /// The operation declares no response for this status (nor a range or `default`); the body is unchanged.
    UndeclaredStatus,
}

impl Operation {
    /// The response schema for a status: exact, then `2XX`-style range, then `default`.
    fn response_schema(&self, status: u16) -> Option<Option<&BodySchema>> {
        let pick = |key: StatusKey| self.responses.iter().find(|(k, _)| *k == key).map(|(_, s)| s.as_ref());
        pick(StatusKey::Exact(status))
            .or_else(|| pick(StatusKey::Range(status / 100)))
            .or_else(|| pick(StatusKey::Default))
    }

    /// The property tables a response with `status` is filtered by, for the one-pass filter over the body's
    /// bytes ([`crate::stages::respond::redact::Redactor::filter_redact_json`]).
    pub fn response_shapes(&self, status: u16) -> ResponseShapes<'_> {
        match self.response_schema(status) {
            None => ResponseShapes::UndeclaredStatus,
            Some(None) => ResponseShapes::Free,
            Some(Some(s)) => ResponseShapes::Schema(&s.shapes),
        }
    }

    /// Applies the response schema of `status` to a parsed JSON body, in place.
    pub fn filter_response(&self, status: u16, body: &mut Value, mode: ResponseMode) -> ResponseCheck {
        if mode == ResponseMode::Off {
            return ResponseCheck::Clean;
        }
        let schema = match self.response_schema(status) {
            None => return ResponseCheck::UndeclaredStatus,
            // A declared response without a JSON schema says nothing about the body's properties.
            Some(None) => return ResponseCheck::Clean,
            Some(Some(s)) => s,
        };
        let f = schema.shapes.filter(body, mode == ResponseMode::Filter);
        if f.undeclared_count > 0 && mode == ResponseMode::Block {
            ResponseCheck::Block(f)
        } else if f.undeclared_count > 0 || f.write_only_removed > 0 {
            ResponseCheck::Filtered(f)
        } else {
            ResponseCheck::Clean
        }
    }
}

/// The schema side of one response, for the byte pass.
#[derive(Debug, Clone, Copy)]
pub enum ResponseShapes<'a> {
    /// The operation declares no response for this status: the body passes unfiltered, and it is logged.
    UndeclaredStatus,
    /// A declared response without a JSON schema: nothing to filter.
    Free,
    Schema(&'a Shapes),
}

/// Whether a response is one the filter reads: a JSON media type.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| super::compile::media_kind(ct) == super::compile::MediaKind::Json)
}

/// Why a JSON response could not be read for filtering; the route refuses it rather than let it through
/// unchecked.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("response encoded with `{0}` (the gateway asked for identity)")]
    Encoded(String),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("response body did not arrive before the deadline")]
    Timeout,
    #[error("reading the response body: {0}")]
    Body(String),
    #[error("response is not valid JSON: {0}")]
    Json(String),
}

/// Buffers a JSON response (up to `cap`, before `deadline`) without parsing it; one that came compressed
/// although the gateway asked for identity is refused.
pub async fn read_bytes(
    headers: &HeaderMap,
    body: Incoming,
    cap: usize,
    deadline: tokio::time::Instant,
) -> Result<Bytes, ReadError> {
    if let Some(enc) = headers.get(CONTENT_ENCODING) {
        let enc = String::from_utf8_lossy(enc.as_bytes()).trim().to_ascii_lowercase();
        if enc != "identity" {
            return Err(ReadError::Encoded(enc.chars().take(32).collect()));
        }
    }
    match tokio::time::timeout_at(deadline, collect_capped(body, cap)).await {
        Ok(r) => r,
        Err(_) => Err(ReadError::Timeout),
    }
}

/// The body's data frames, up to `cap` bytes. A body that arrives in one frame (the usual small response) is
/// kept as it came, without a copy; several are gathered into one buffer sized by the `Content-Length`.
async fn collect_capped(mut body: Incoming, cap: usize) -> Result<Bytes, ReadError> {
    let exact = body.size_hint().exact().map_or(0, |n| n.min(cap as u64) as usize);
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Body(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        len += data.len();
        if len > cap {
            return Err(ReadError::TooLarge(cap));
        }
        if first.is_none() && buf.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(f) = first.take() {
            buf.reserve(exact.max(len));
            buf.extend_from_slice(&f);
        }
        buf.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}
