//! respond, buffered: a JSON or text response of a route with body rules is read whole (up to the route's cap),
//! decoded, redacted and counted for the exfiltration guard before any of it goes out; on routes with an
//! OpenAPI spec, JSON responses are filtered against the response schema in the same pass over the bytes.
//! Responses the rules do not cover never come here and keep streaming.

use super::Exit;
use crate::body::ResponseBody;
use crate::metrics::CodeLabel;
use crate::openapi::response::{self, ResponseShapes};
use crate::openapi::shape::Filtered;
use crate::openapi::{OpenApi, Operation, ResponseMode};
use crate::pipeline::Verdict;
use crate::pipeline::{Code, Mode, Rejection};
use crate::stages::identify::Identity;
use crate::stages::record::{Outcome, RequestRecord};
use crate::stages::respond::body::{self, BodyPolicy, BodyType, Collected, OverLimit};
use crate::stages::respond::exfil::{self, ExfilAction};
use crate::stages::respond::redact::{Malformed, Redactor, Report, ShapeFilter};
use crate::state::Unavailable;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Response;
use hyper::body::Incoming;

impl Exit<'_> {
    /// Records a response-stage finding that does not stop the response: security event, metric, `flagged`.
    fn note(&self, code: Code, mode: Mode, detail: &dyn std::fmt::Display, rec: &mut RequestRecord) {
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
            detail = %detail,
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
    inspect_whole(exit, parts, raw, rec, cx).await
}

/// Decodes, redacts and counts a body already read whole, then sends it.
async fn inspect_whole(
    exit: &Exit<'_>,
    parts: http::response::Parts,
    raw: bytes::Bytes,
    rec: Box<RequestRecord>,
    cx: BufferedCtx<'_>,
) -> Response<ResponseBody> {
    let processed = match body::process(cx.policy, cx.ty, &parts.headers, raw.clone()) {
        Ok(p) => p,
        Err(e) => return uninspected(exit, parts, ResponseBody::full(raw), rec, &cx, &e.to_string()),
    };
    let rewritten = (cx.mode == Mode::Enforce && processed.changed).then_some(processed.body);
    let out = Outgoing { raw, rewritten, decoded: processed.decoded, report: processed.report };
    deliver(exit, parts, out, rec, Some(cx.policy), cx.mode, cx.identity).await
}

/// A buffered body on its way out: what the upstream sent, what replaces it (if anything), and what was found.
struct Outgoing {
    raw: Bytes,
    rewritten: Option<Bytes>,
    /// The content coding was removed (the rewritten body is the decoded one).
    decoded: bool,
    report: Report,
}

/// The common end of the buffered passes: the redaction event, the exfiltration count, headers that fit the
/// bytes sent, and out.
async fn deliver(
    exit: &Exit<'_>,
    mut parts: http::response::Parts,
    out: Outgoing,
    mut rec: Box<RequestRecord>,
    policy: Option<&BodyPolicy>,
    mode: Mode,
    identity: Option<&Identity>,
) -> Response<ResponseBody> {
    if out.report.total() > 0 {
        exit.note(Code::RespondRedacted, mode, &out.report, &mut rec);
    }
    if let (Some(guard), true) = (policy.and_then(|p| p.exfiltration), out.report.records > 0) {
        let key = exfil_key(rec.route.as_deref().unwrap_or(""), identity, &rec);
        match exfil::count(&exit.rt.state, &key, out.report.records, &guard).await {
            Ok(total) if total > guard.max_records => {
                let detail = format!(
                    "{total} records in {:?} (limit {}), {} in this response",
                    guard.window, guard.max_records, out.report.records
                );
                if guard.action == ExfilAction::Block && mode == Mode::Enforce {
                    return exit.reject(Rejection::new(Code::RespondExfiltration, detail), rec);
                }
                exit.note(Code::RespondExfiltration, Mode::Monitor, &detail, &mut rec);
            }
            Ok(_) => {}
            // Closed failure mode and the shared state is away: a blocking guard cannot vouch for the response.
            Err(Unavailable) => {
                let detail = "exfiltration count: state backend unavailable (on_failure: closed)";
                if guard.action == ExfilAction::Block && mode == Mode::Enforce {
                    return exit.reject(Rejection::new(Code::ThrottleStateUnavailable, detail), rec);
                }
                exit.note(Code::ThrottleStateUnavailable, Mode::Monitor, &detail, &mut rec);
            }
        }
    }
    let body = match out.rewritten {
        Some(b) => {
            if out.decoded {
                parts.headers.remove(header::CONTENT_ENCODING);
            }
            for h in body::STALE_WHEN_CHANGED {
                parts.headers.remove(h);
            }
            b
        }
        None => out.raw,
    };
    // The usual clean body keeps the upstream's (hyper-checked) length; anything else gets the true one.
    let length_ok =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|t| t.parse::<usize>().ok())
            == Some(body.len());
    if !length_ok {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    rec.outcome = Outcome::Pass;
    exit.finish(Response::from_parts(parts, ResponseBody::full(body)), rec)
}

/// What the OpenAPI response pass needs besides the response.
pub(super) struct SchemaCtx<'a> {
    pub api: &'a OpenApi,
    pub op: &'a Operation,
    /// The route's redaction and exfiltration rules, applied in the same pass.
    pub body: Option<&'a BodyPolicy>,
    pub mode: Mode,
    /// When the body must have arrived.
    pub until: tokio::time::Instant,
    pub identity: Option<&'a Identity>,
}

/// A JSON response of a route with an OpenAPI spec: read whole, then filtered against the response schema of
/// its status, redacted and counted in one pass over its bytes (no tree, no serialization), and sent — the
/// original bytes when nothing changed.
pub(super) async fn schema_filtered(
    exit: &Exit<'_>,
    parts: http::response::Parts,
    incoming: Incoming,
    mut rec: Box<RequestRecord>,
    sx: SchemaCtx<'_>,
) -> Response<ResponseBody> {
    let (api, op, mode) = (sx.api, sx.op, sx.mode);
    let raw = match response::read_bytes(&parts.headers, incoming, api.max_response_bytes, sx.until).await {
        Ok(b) => b,
        Err(e) => return unreadable(exit, parts, rec, mode, format!("operation {}: {e}", op.id)),
    };
    let out = Outgoing { raw, rewritten: None, decoded: false, report: Report::default() };
    if out.raw.iter().all(u8::is_ascii_whitespace) {
        return deliver(exit, parts, out, rec, None, mode, sx.identity).await;
    }
    let status = parts.status.as_u16();
    let shapes = match op.response_shapes(status) {
        ResponseShapes::Schema(s) => Some(s),
        ResponseShapes::Free => None,
        ResponseShapes::UndeclaredStatus => {
            tracing::warn!(target: "rampart::security", code = "respond.undeclared_status", request_id = exit.request_id, route = rec.route.as_deref().unwrap_or(""), operation = %op.id, status, "the upstream answered with a status the OpenAPI spec does not declare");
            None
        }
    };
    let off = Redactor::none();
    let redactor = sx.body.map_or(off, |p| &p.redactor);
    let mut report = Report::default();
    // The pointers go into a rejection's detail (monitor, block) or the `respond.filtered` event (filter).
    let pointers_read = mode == Mode::Monitor
        || api.responses == ResponseMode::Block
        || tracing::enabled!(target: "rampart::security", tracing::Level::INFO);
    let mut filtered = Filtered { skip_pointers: !pointers_read, ..Filtered::default() };
    let pass = if mode == Mode::Enforce {
        let filter = ShapeFilter { shapes, drop_undeclared: api.responses == ResponseMode::Filter };
        redactor.filter_redact_json(&out.raw, filter, &mut report, &mut filtered)
    } else {
        // Monitor: `writeOnly` properties still go; undeclared ones and secrets are only recorded.
        let filter = ShapeFilter { shapes, drop_undeclared: false };
        off.filter_redact_json(&out.raw, filter, &mut Report::default(), &mut filtered).inspect(|w| {
            // Findings (and records) of what is sent; the bytes stay as they are.
            let _ = redactor.redact_json(w.as_deref().unwrap_or(&out.raw), &mut report);
        })
    };
    let rewritten = match pass {
        Ok(w) => w.map(Bytes::from),
        Err(Malformed(at)) => {
            let detail = format!("operation {}: response is not valid JSON (byte {at})", op.id);
            return unreadable(exit, parts, rec, mode, detail);
        }
    };
    if filtered.undeclared_count > 0 {
        if mode == Mode::Monitor || api.responses == ResponseMode::Block {
            let detail = format!(
                "operation {}: {} undeclared properties: {}",
                op.id,
                filtered.undeclared_count,
                filtered.undeclared.join(", ")
            );
            if let Some(rej) = exit.verdict(mode, Verdict::reject(Code::RespondSchema, detail), &mut rec) {
                return exit.reject(rej, rec);
            }
        } else {
            tracing::info!(target: "rampart::security", code = "respond.filtered", request_id = exit.request_id, route = rec.route.as_deref().unwrap_or(""), operation = %op.id, removed = filtered.undeclared_count, write_only = filtered.write_only_removed, pointers = %filtered.undeclared.join(", "), "undeclared response properties removed");
        }
    }
    let out = Outgoing { rewritten, report, ..out };
    deliver(exit, parts, out, rec, sx.body, mode, sx.identity).await
}

/// A JSON response the filter could not read (compressed, too big, not JSON, too slow): refused in enforce
/// mode (`respond.schema`), recorded in monitor mode — where what was read is gone, so the body is empty.
fn unreadable(
    exit: &Exit<'_>,
    mut parts: http::response::Parts,
    mut rec: Box<RequestRecord>,
    mode: Mode,
    detail: String,
) -> Response<ResponseBody> {
    if let Some(rej) = exit.verdict(mode, Verdict::reject(Code::RespondSchema, detail), &mut rec) {
        return exit.reject(rej, rec);
    }
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    parts.headers.remove(header::CONTENT_ENCODING);
    rec.outcome = Outcome::Pass;
    exit.finish(Response::from_parts(parts, ResponseBody::full(Bytes::new())), rec)
}

/// Ranges on a route with response rules: the gateway removes `Range`/`If-Range` from the upstream request, so
/// `Accept-Ranges` is not the client's to rely on (removed), and a 206 the upstream sends anyway is refused
/// (`respond.uninspected`, monitor mode: recorded and sent) when its body is of a type the rules read —
/// JSON, text, or `multipart/byteranges` (whose parts could be either). Binary slices were never inspected
/// and pass.
pub(super) fn partial(
    exit: &Exit<'_>,
    parts: &mut http::response::Parts,
    policy: Option<&BodyPolicy>,
    schema: bool,
    mode: Mode,
    rec: &mut Box<RequestRecord>,
) -> Option<Rejection> {
    parts.headers.remove(header::ACCEPT_RANGES);
    if parts.status != http::StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let ct = parts.headers.get(header::CONTENT_TYPE);
    let byteranges = ct
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().get(..20).is_some_and(|p| p.eq_ignore_ascii_case("multipart/byteranges")));
    let inspected = byteranges
        || policy.is_some_and(|p| p.inspects(&parts.headers).is_some())
        || (schema && crate::openapi::response::is_json(&parts.headers));
    if !inspected {
        return None;
    }
    let detail = "206 partial content on a route with response rules (the gateway did not ask for a range)";
    exit.verdict(mode, Verdict::reject(Code::RespondUninspected, detail), rec)
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
    exit.note(Code::RespondUninspected, Mode::Monitor, &detail, &mut rec);
    rec.outcome = Outcome::Pass;
    exit.finish(Response::from_parts(parts, body), rec)
}
