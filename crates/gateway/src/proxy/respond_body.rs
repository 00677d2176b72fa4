//! respond, buffered: a JSON or text response of a route with body rules is read whole (up to the route's cap),
//! decoded, redacted and counted for the exfiltration guard before any of it goes out. Responses the rules do not
//! cover never come here and keep streaming.

use super::Exit;
use crate::body::ResponseBody;
use crate::metrics::CodeLabel;
use crate::pipeline::{Code, Mode, Rejection};
use crate::stages::identify::Identity;
use crate::stages::record::{Outcome, RequestRecord};
use crate::stages::respond::body::{self, BodyPolicy, BodyType, Collected, OverLimit};
use crate::stages::respond::exfil::ExfilAction;
use http::header::{self, HeaderValue};
use http::Response;
use hyper::body::Incoming;

impl Exit<'_> {
    /// Records a response-stage finding that does not stop the response: security event, metric, `flagged`.
    fn note(&self, code: Code, mode: Mode, detail: &str, rec: &mut RequestRecord) {
        let mode_label = match mode {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        };
        // The same fields as `security_event`, with a message that does not claim a rejection.
        tracing::warn!(
            target: "rampart::security",
            code = code.as_str(),
            owasp = code.owasp().map_or("", |o| o.id()),
            mode = mode_label,
            request_id = self.request_id,
            client_ip = %rec.client_ip,
            route = rec.route.as_deref().unwrap_or(""),
            detail,
            "response finding"
        );
        self.shared.metrics.rejections.get_or_create(&CodeLabel { code: code.as_str(), mode: mode_label }).inc();
        rec.flagged.push(code);
    }
}

/// Everything about the exchange the buffered pass needs besides the response.
pub(super) struct BufferedCtx<'a> {
    pub policy: &'a BodyPolicy,
    pub ty: BodyType,
    pub mode: Mode,
    /// The exchange's total deadline, if the upstream has one.
    pub deadline: Option<tokio::time::Instant>,
    /// The caller, when identified: the exfiltration guard counts per consumer, else per client IP.
    pub identity: Option<&'a Identity>,
}

/// The exfiltration guard's counter key: route and caller (the consumer, or the client IP when anonymous).
/// Rendered only when a response has records to count, not on every buffered response.
fn exfil_key(route: &str, identity: Option<&Identity>, rec: &RequestRecord) -> String {
    match identity {
        Some(i) => format!("{route}\nconsumer:{}", i.consumer),
        None => format!("{route}\n{}", rec.client_ip),
    }
}

pub(super) async fn buffered(
    exit: &Exit<'_>,
    parts: http::response::Parts,
    incoming: Incoming,
    rec: Box<RequestRecord>,
    cx: BufferedCtx<'_>,
) -> Response<ResponseBody> {
    let policy = cx.policy;
    let read_by = tokio::time::Instant::now() + exit.rt.limits.body_read_timeout;
    let read_by = cx.deadline.map_or(read_by, |d| d.min(read_by));
    let raw = match body::collect(incoming, policy.max_body_bytes, read_by).await {
        Collected::Whole(b) => b,
        Collected::Over { prefix, rest } => {
            let detail = format!("response body over {} bytes", policy.max_body_bytes);
            let stream = ResponseBody::upstream_after(prefix, rest, cx.deadline);
            return uninspected(exit, parts, stream, rec, &cx, &detail);
        }
        Collected::Failed(e) => {
            return exit
                .reject(Rejection::new(Code::UpstreamBadResponse, format!("reading the response body: {e}")), rec)
        }
        Collected::TimedOut => {
            let detail = "response body not received within the read deadline";
            return exit.reject(Rejection::new(Code::UpstreamTimeout, detail), rec);
        }
    };
    inspect_whole(exit, parts, raw, rec, cx)
}

/// Decodes, redacts and counts a body already read whole (by [`buffered`], or by the OpenAPI response filter),
/// then sends it.
pub(super) fn inspect_whole(
    exit: &Exit<'_>,
    mut parts: http::response::Parts,
    raw: bytes::Bytes,
    mut rec: Box<RequestRecord>,
    cx: BufferedCtx<'_>,
) -> Response<ResponseBody> {
    let policy = cx.policy;
    let processed = match body::process(policy, cx.ty, &parts.headers, raw.clone()) {
        Ok(p) => p,
        Err(e) => return uninspected(exit, parts, ResponseBody::full(raw), rec, &cx, &e.to_string()),
    };
    if processed.report.total() > 0 {
        exit.note(Code::RespondRedacted, cx.mode, &processed.report.summary(), &mut rec);
    }
    if let (Some(guard), true) = (policy.exfiltration, processed.report.records > 0) {
        let key = exfil_key(rec.route.as_deref().unwrap_or(""), cx.identity, &rec);
        let total = policy.counter.add(&key, processed.report.records, guard.window);
        if total > guard.max_records {
            let detail = format!(
                "{total} records in {:?} (limit {}), {} in this response",
                guard.window, guard.max_records, processed.report.records
            );
            if guard.action == ExfilAction::Block && cx.mode == Mode::Enforce {
                return exit.reject(Rejection::new(Code::RespondExfiltration, detail), rec);
            }
            exit.note(Code::RespondExfiltration, Mode::Monitor, &detail, &mut rec);
        }
    }
    let out = if cx.mode == Mode::Enforce && processed.changed {
        if processed.decoded {
            parts.headers.remove(header::CONTENT_ENCODING);
        }
        for h in body::STALE_WHEN_CHANGED {
            parts.headers.remove(h);
        }
        processed.body
    } else {
        raw
    };
    // The usual clean body keeps the upstream's (hyper-checked) length; anything else gets the true one.
    let length_ok =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|t| t.parse::<usize>().ok())
            == Some(out.len());
    if !length_ok {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    }
    rec.outcome = Outcome::Pass;
    exit.finish(Response::from_parts(parts, ResponseBody::full(out)), rec)
}

/// A response that could not be inspected: sent as is (`pass`, or monitor mode) with an event, or refused.
fn uninspected(
    exit: &Exit<'_>,
    parts: http::response::Parts,
    body: ResponseBody,
    mut rec: Box<RequestRecord>,
    cx: &BufferedCtx<'_>,
    detail: &str,
) -> Response<ResponseBody> {
    if cx.policy.over_limit == OverLimit::Block && cx.mode == Mode::Enforce {
        return exit.reject(Rejection::new(Code::RespondUninspected, detail), rec);
    }
    exit.note(Code::RespondUninspected, Mode::Monitor, detail, &mut rec);
    rec.outcome = Outcome::Pass;
    exit.finish(Response::from_parts(parts, body), rec)
}
