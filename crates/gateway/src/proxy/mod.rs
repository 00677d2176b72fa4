//! The request path: one function walks a request through admit → route → forward → respond → record.
//! Every exit — a rejection, an upstream failure, a redirect or a proxied response — leaves through
//! [`finish`], which adds the common response headers and attaches the access-log record.

mod headers;
mod respond_body;

use crate::body::{RequestBody, ResponseBody};
use crate::config::raw::Balance;
use crate::config::Runtime;
use crate::metrics::{CodeLabel, Metrics};
use crate::openapi::{OpenApi, Operation, ResponseMode};
use crate::pipeline::{Code, Mode, Rejection, StageName, Verdict};
use crate::problem;
use crate::server::tls::PeerCert;
use crate::stages::admit;
use crate::stages::authorize::policy::PolicyInput;
use crate::stages::cors::{CorsPolicy, Preflight};
use crate::stages::identify::{guard, signature, AuthMethod, AuthRequest, Identity, RouteAuth};
use crate::stages::inspect::BodyKind;
use crate::stages::normalize::normalize;
use crate::stages::record::{security_event, AccessLog, Outcome, RequestRecord};
use crate::stages::route::RouteMatch;
use crate::stages::throttle::{shed, Caller, RATELIMIT, RATELIMIT_POLICY};
use crate::upstream::circuit::{Admission, Transition};
use crate::upstream::deadline::Elapsed;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// State shared by every worker for the life of the process.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub metrics: Arc<Metrics>,
    pub access_log: Arc<AccessLog>,
    pub conns: Arc<crate::stages::admit::ConnTracker>,
    /// Upstream response deadlines, one list per worker (each swept by a task of its worker).
    pub deadlines: Vec<crate::upstream::deadline::Deadlines>,
}

/// What the request path knows about the connection a request came on. The peer's address is rendered once
/// per connection, not once per request.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    pub client_cert: Option<Arc<PeerCert>>,
    pub worker: usize,
    pub listener: usize,
    /// The peer IP as text (`X-Forwarded-For`, access log).
    pub peer_text: Arc<str>,
    peer_header: HeaderValue,
    /// `for=<peer>;proto=<scheme>`, the start of our `Forwarded` element.
    forwarded_for: String,
    /// The last `Forwarded` element built on this connection and the `Host` it was built for: a client sends
    /// the same host on every request of a connection, so the element is made once, not per request.
    forwarded_last: std::sync::Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl ConnInfo {
    pub fn new(
        peer: SocketAddr,
        tls: bool,
        client_cert: Option<Arc<PeerCert>>,
        worker: usize,
        listener: usize,
    ) -> Self {
        let ip = crate::stages::admit::canonical(peer.ip());
        let peer_text: Arc<str> = Arc::from(ip.to_string());
        let peer_header = HeaderValue::from_str(&peer_text).unwrap_or(HeaderValue::from_static("unknown"));
        let forwarded_for = format!("for={};proto={}", headers::forwarded_node(ip), if tls { "https" } else { "http" });
        ConnInfo {
            peer,
            tls,
            client_cert,
            worker,
            listener,
            peer_text,
            peer_header,
            forwarded_for,
            forwarded_last: std::sync::Mutex::new(None),
        }
    }
}

use headers::{
    is_upgrade, request_id, set_forwarded, strip_hop_by_hop, strip_hop_by_hop_and, strip_reserved, X_REQUEST_ID,
};

fn host_value(parts: &http::request::Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    }
}

fn host_of(parts: &http::request::Parts) -> Option<&str> {
    parts.uri.authority().map(|a| a.as_str()).or_else(|| parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()))
}

/// Everything `finish` needs besides the response.
struct Exit<'a> {
    shared: &'a Shared,
    conn: &'a ConnInfo,
    rt: &'a Runtime,
    request_id: &'a str,
    /// The same id as a header value.
    request_id_value: &'a HeaderValue,
}

impl Exit<'_> {
    /// Common response headers, the record, and out.
    fn finish(&self, mut resp: Response<ResponseBody>, mut rec: Box<RequestRecord>) -> Response<ResponseBody> {
        let headers = resp.headers_mut();
        // Room for the id and the security headers at once, rather than a rehash per growth step.
        headers.reserve(8);
        headers.insert(X_REQUEST_ID, self.request_id_value.clone());
        self.rt.respond.secure(headers);
        if self.conn.tls {
            if let Some(hsts) = self.rt.listeners.get(self.conn.listener).and_then(|l| l.hsts.clone()) {
                headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts);
            }
        }
        rec.status = resp.status().as_u16();
        self.shared.metrics.duration.observe(rec.start.elapsed().as_secs_f64());
        resp.body_mut().set_on_end(rec);
        resp
    }

    fn reject(&self, rejection: Rejection, mut rec: Box<RequestRecord>) -> Response<ResponseBody> {
        let code = rejection.code;
        if code.is_security() {
            security_event(
                code,
                Mode::Enforce,
                self.request_id,
                rec.client_ip,
                rec.route.as_deref(),
                &rejection.detail,
            );
        } else {
            tracing::warn!(target: "rampart::upstream", code = code.as_str(), request_id = self.request_id, route = rec.route.as_deref().unwrap_or(""), detail = %rejection.detail, "request failed");
        }
        self.shared.metrics.rejections.get_or_create(&CodeLabel { code: code.as_str(), mode: "enforce" }).inc();
        rec.code = Some(code);
        rec.outcome = if code.is_security() { Outcome::Reject } else { Outcome::Error };
        self.finish(problem::response(&rejection, self.request_id), rec)
    }

    /// Applies a stage's verdict in the stage's mode: `Some` is a rejection to send; a monitor-mode rejection
    /// is recorded (event, metric, `flagged` in the access log) and the request carries on.
    fn verdict(&self, mode: Mode, verdict: Verdict, rec: &mut Box<RequestRecord>) -> Option<Rejection> {
        let Verdict::Reject(rejection) = verdict else { return None };
        match mode {
            Mode::Enforce => Some(rejection),
            Mode::Monitor => {
                security_event(
                    rejection.code,
                    Mode::Monitor,
                    self.request_id,
                    rec.client_ip,
                    rec.route.as_deref(),
                    &rejection.detail,
                );
                self.shared
                    .metrics
                    .rejections
                    .get_or_create(&CodeLabel { code: rejection.code.as_str(), mode: "monitor" })
                    .inc();
                rec.flagged.push(rejection.code);
                None
            }
        }
    }
}

/// Serves one request.
pub async fn handle(shared: &Shared, conn: &ConnInfo, req: Request<Incoming>) -> Response<ResponseBody> {
    let start = Instant::now();
    let rt = shared.runtime.load_full();
    let (mut parts, body) = req.into_parts();
    let request_id_value = request_id(&parts.headers);
    // Only ASCII letters, digits and `-_.` (see `request_id`).
    let request_id = request_id_value.to_str().unwrap_or("");
    let client_ip = rt.trusted.client_ip(conn.peer.ip(), &parts.headers);
    let exit = Exit { shared, conn, rt: &rt, request_id, request_id_value: &request_id_value };
    let mut rec = Box::new(RequestRecord {
        log: shared.access_log.clone(),
        start,
        request_id: request_id_value.clone(),
        client_ip,
        client_text: (client_ip == crate::stages::admit::canonical(conn.peer.ip())).then(|| conn.peer_text.clone()),
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        route: None,
        status: 0,
        upstream_us: None,
        outcome: Outcome::Pass,
        code: None,
        flagged: Vec::new(),
        counters: None,
    });

    if let Some(port) = rt.listeners.get(conn.listener).and_then(|l| l.redirect_https) {
        return match redirect(&parts, port) {
            Some(resp) => {
                rec.outcome = Outcome::Redirect;
                exit.finish(resp, rec)
            }
            None => exit.reject(Rejection::new(Code::AdmitBadRequest, "redirect: missing or invalid Host"), rec),
        };
    }

    // admit
    if let Some(rej) = exit.verdict(rt.modes.admit, rt.admit.check(&parts, client_ip), &mut rec) {
        return exit.reject(rej, rec);
    }
    let path = match normalize(parts.uri.path()) {
        Ok(p) => p,
        Err(e) => return exit.reject(Rejection::new(Code::AdmitBadPath, format!("{e}: {}", parts.uri.path())), rec),
    };

    // CORS preflight: answered here for routes that declare CORS, never forwarded.
    if parts.method == Method::OPTIONS {
        rec = match preflight(&exit, &rt, &parts, &path, rec) {
            Ok(resp) => return resp,
            Err(rec) => rec,
        };
    }

    // route
    let (route_idx, params) = match rt.router.find(host_of(&parts), &parts.method, &path) {
        RouteMatch::Found { route, params } => (route, params),
        RouteMatch::MethodNotAllowed { allow } => {
            return exit.reject(
                Rejection::new(Code::RouteMethodNotAllowed, format!("{} {}", parts.method, path))
                    .with_header(header::ALLOW, allow),
                rec,
            )
        }
        RouteMatch::NotFound => {
            return exit.reject(Rejection::new(Code::RouteNotFound, format!("{} {}", parts.method, path)), rec)
        }
    };
    let route = &rt.routes[route_idx];
    rec.route = Some(route.id.clone());
    rec.counters = Some(route.counters.clone());

    // identify, then authorize and throttle, which key on the identity. Public routes (`auth: none`) have none.
    let mut body = Some(body);
    let mut pre_read: Option<Bytes> = None;
    let identity: Option<Arc<Identity>> = match &route.identify.auth {
        RouteAuth::Public => None,
        RouteAuth::AnyOf(methods) => {
            // Brute-force lockout: a locked IP or credential is refused before anything is verified.
            let lockout = rt.identity.lockout.as_ref();
            let credential = lockout.and_then(|_| guard::presented(&rt.identity, &parts, methods));
            let attempt = guard::attempt(client_ip, &credential);
            if let Some(l) = lockout {
                if let Some(rej) = l.check(&rt.state, &attempt).await {
                    if let Some(rej) =
                        exit.verdict(route.modes.get(StageName::Identify), Verdict::Reject(rej), &mut rec)
                    {
                        return exit.reject(rej, rec);
                    }
                }
            }
            // A signed request covers its body (`Content-Digest`): it is read once, here, and inspect reuses it.
            if methods.contains(&AuthMethod::Signature)
                && rt.identity.signatures.is_some()
                && signature::presented(&parts.headers)
            {
                if let Some(incoming) = body.take_if(|b| !b.is_end_stream()) {
                    match read_body(&rt, incoming, route.max_body_bytes, route.max_body_bytes).await {
                        Ok(bytes) => pre_read = Some(bytes),
                        Err(rej) => return exit.reject(rej, rec),
                    }
                }
            }
            let request = AuthRequest {
                parts: &parts,
                client_cert: conn.client_cert.as_deref(),
                body: pre_read.as_deref().unwrap_or_default(),
                tls: conn.tls,
                state: &rt.state,
            };
            let result = rt.identity.identify(methods, &request).await;
            if let Some(l) = lockout {
                l.report(&rt.state, &attempt, result.as_ref().err().map(|f| f.code), request_id).await;
            }
            match result {
                Ok(id) => Some(id),
                Err(failure) => {
                    let verdict = Verdict::Reject(route.identify.rejection(failure));
                    if let Some(rej) = exit.verdict(route.modes.get(StageName::Identify), verdict, &mut rec) {
                        return exit.reject(rej, rec);
                    }
                    None
                }
            }
        }
    };
    // authorize: what the request head shows (roles, scopes, ownership by path or query); body rules below.
    let authz_mode = route.modes.get(StageName::Authorize);
    if let Some(id) = &identity {
        let verdict = route.authorize.check_head(id, &parts.method, &params, parts.uri.query());
        if let Some(rej) = exit.verdict(authz_mode, verdict, &mut rec) {
            return exit.reject(rej, rec);
        }
    }
    // Cedar policies, after the built-in checks: for every caller, anonymous ones included.
    if let Some(policies) = &route.authorize.policies {
        let input = PolicyInput {
            identity: identity.as_deref(),
            route_id: &route.id,
            method: parts.method.as_str(),
            path: &path,
            params: &params,
            query: parts.uri.query(),
            client_ip,
            tls: conn.tls,
        };
        if let Some(rej) = exit.verdict(authz_mode, policies.check(&input), &mut rec) {
            return exit.reject(rej, rec);
        }
    }
    let authz_body = identity.as_deref().filter(|_| route.authorize.needs_body());

    // throttle
    let mut ratelimit: Option<(HeaderValue, HeaderValue)> = None;
    if let Some(policy) = &route.throttle {
        let caller = Caller { ip: client_ip, identity: identity.as_deref(), headers: &parts.headers };
        let checked = policy.check(&rt.state, &caller).await;
        ratelimit = policy.policy_header.clone().zip(checked.ratelimit);
        if let Some(rej) = exit.verdict(route.modes.get(StageName::Throttle), checked.verdict, &mut rec) {
            return exit.reject(rej, rec);
        }
    }

    // admit, route-level: body size
    let mut body_limit = route.max_body_bytes;
    let size_hint = match (&body, &pre_read) {
        (Some(b), _) => b.size_hint().lower(),
        (None, Some(bytes)) => bytes.len() as u64,
        (None, None) => 0,
    };
    let has_body =
        body.as_ref().is_some_and(|b| !b.is_end_stream()) || pre_read.as_ref().is_some_and(|b| !b.is_empty());
    let body_verdict = admit::check_body(&parts, size_hint, route.max_body_bytes);
    let admit_mode = route.modes.get(StageName::Admit);
    if matches!(body_verdict, Verdict::Reject(_)) {
        match exit.verdict(admit_mode, body_verdict, &mut rec) {
            Some(rej) => return exit.reject(rej, rec),
            None => body_limit = u64::MAX,
        }
    }

    // inspect: the positive model (the route's OpenAPI operation) first, then the detection engine.
    let mut buffered: Option<Bytes> = None;
    let inspect_mode = route.modes.get(StageName::Inspect);
    let (mut operation, mut check_media) = (None, None);
    if let Some(api) = &route.openapi {
        let head = crate::openapi::check_head(api, &parts, &path, has_body);
        (operation, check_media) = (head.op.cloned(), head.media);
        if let Some(rej) = exit.verdict(inspect_mode, head.verdict, &mut rec) {
            return exit.reject(rej, rec);
        }
    }
    let policy = route.inspect.as_ref();
    if let Some(policy) = policy {
        if let Some(rej) = exit.verdict(inspect_mode, policy.scan_head(&parts, &path), &mut rec) {
            return exit.reject(rej, rec);
        }
    }
    {
        let kind = BodyKind::of(&parts);
        let scanned = policy.is_some() && kind != BodyKind::Opaque;
        if !has_body {
            if let Some(id) = authz_body {
                if let Some(rej) = exit.verdict(authz_mode, route.authorize.check_body(id, &kind, &[]), &mut rec) {
                    return exit.reject(rej, rec);
                }
            }
        }
        let readable = has_body && (scanned || check_media.is_some() || authz_body.is_some() || route.login.is_some());
        let cap = policy.map_or(body_limit, |p| p.max_body_bytes.min(body_limit));
        let bytes = match (pre_read.take(), body.take_if(|_| readable)) {
            (Some(bytes), _) if readable && bytes.len() as u64 > cap => {
                let code = if cap < body_limit { Code::InspectBodyTooLarge } else { Code::AdmitBodyTooLarge };
                return exit.reject(Rejection::new(code, format!("body over {cap} bytes")), rec);
            }
            (Some(bytes), _) => Some(bytes),
            (None, Some(incoming)) => match read_body(&rt, incoming, cap, body_limit).await {
                Ok(bytes) => Some(bytes),
                Err(rej) => return exit.reject(rej, rec),
            },
            (None, None) => None,
        };
        if let Some(bytes) = bytes {
            // One JSON parse (under the hostile-JSON limits) for every check that reads the tree: ownership and
            // mass-assignment rules, the spec's schema, the detection engine's walk. A body that does not parse
            // leaves each check to read it its own way (and refuse it).
            let limits = policy.map_or_else(Default::default, |p| p.json);
            let mut tree = (kind == BodyKind::Json && (authz_body.is_some() || check_media.is_some()))
                .then(|| crate::openapi::validate::parse_json(&bytes, &limits).ok())
                .flatten();
            if let Some(id) = authz_body {
                let verdict = route.authorize.check_body_parsed(id, &kind, &bytes, tree.as_ref());
                if let Some(rej) = exit.verdict(authz_mode, verdict, &mut rec) {
                    return exit.reject(rej, rec);
                }
            }
            if let (Some(op), Some(media), Some(api)) = (&operation, check_media, &route.openapi) {
                let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let checked = op.check_body_parsed(media, ct, &bytes, &limits, api.strict, tree.take());
                if let Some(rej) = exit.verdict(inspect_mode, checked.verdict, &mut rec) {
                    return exit.reject(rej, rec);
                }
                tree = checked.json;
            }
            if let Some(policy) = policy.filter(|_| scanned) {
                let verdict = match (&tree, &kind) {
                    (Some(tree), BodyKind::Json) => policy.scan_json_tree(tree),
                    _ => policy.scan_body(kind.clone(), &bytes),
                };
                if let Some(rej) = exit.verdict(inspect_mode, verdict, &mut rec) {
                    return exit.reject(rej, rec);
                }
            }
            buffered = Some(bytes);
        }
    }

    // login routes: the username in the body is a credential; a locked one (or IP) is refused before forwarding.
    let login = route.login.as_deref().zip(rt.identity.lockout.as_ref());
    let login = login.map(|(l, lockout)| l.attempt(lockout, client_ip, &parts, buffered.as_deref()));
    if let Some(login) = &login {
        if let Some(rej) = login.check(&rt.state).await {
            if let Some(rej) = exit.verdict(route.modes.get(StageName::Identify), Verdict::Reject(rej), &mut rec) {
                return exit.reject(rej, rec);
            }
        }
    }

    // load shedding: places held until the response body ends (or the client goes away)
    let upstream_gate = rt.upstream_gates.get(route.upstream).and_then(|g| g.as_deref());
    let mut places = match shed::enter(route.shed.as_deref(), upstream_gate).await {
        Ok(p) => Some(p),
        Err(rej) => return exit.reject(rej, rec),
    };

    // forward
    let upstream = &rt.upstreams[route.upstream];
    let upgrade = is_upgrade(&parts.headers);
    let client_upgrade = if upgrade { parts.extensions.remove::<hyper::upgrade::OnUpgrade>() } else { None };
    let host_header = host_value(&parts);
    let origin = route.cors.as_ref().and_then(|_| parts.headers.get(header::ORIGIN).cloned());
    let mut headers = std::mem::take(&mut parts.headers);
    // Room for the forwarding headers, the request id and `Host` at once, rather than a rehash per growth step.
    headers.reserve(8);
    let over_limit = Arc::new(AtomicBool::new(false));
    strip_hop_by_hop(&mut headers, upgrade);
    strip_reserved(&mut headers);
    rt.identity.headers.strip(&mut headers, rt.identity.api_keys.as_ref().map(|k| k.header()));
    if let Some(id) = &identity {
        rt.identity.headers.forward(id, &mut headers);
    }
    set_forwarded(&mut headers, conn, rt.trusted.is_trusted(conn.peer.ip()), host_header.as_ref());
    headers.insert(X_REQUEST_ID, request_id_value.clone());
    // Routes whose response bodies are read (schema filter, redaction) ask for them uncompressed; one that comes
    // compressed anyway is decoded by the redaction pass.
    let schema =
        route.openapi.as_deref().zip(operation.as_deref()).filter(|(api, _)| api.responses != ResponseMode::Off);
    if schema.is_some() || route.response_body.is_some() {
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        // The whole representation or nothing: slices fetched with `Range` would each pass inspection while
        // together they carry what it removes (a card number split across two ranges).
        headers.remove(header::RANGE);
        headers.remove(header::IF_RANGE);
    }
    if !upstream.preserve_host {
        headers.remove(header::HOST);
    } else if !headers.contains_key(header::HOST) {
        // HTTP/2 clients send `:authority`, not `Host`; an HTTP/1.1 upstream needs the header.
        if let Some(h) = host_header.clone() {
            headers.insert(header::HOST, h);
        }
    }
    let body = match (buffered, body) {
        (Some(bytes), _) => RequestBody::buffered(bytes),
        (None, Some(b)) if !b.is_end_stream() => RequestBody::limited(b, body_limit, over_limit.clone()),
        _ => RequestBody::empty(),
    };
    let mut up_req = Request::new(body);
    *up_req.method_mut() = parts.method.clone();
    *up_req.version_mut() = Version::HTTP_11;
    *up_req.headers_mut() = headers;
    let query = parts.uri.query();
    // The client's path was already canonical: its parsed path-and-query can be reused (a reference count, no
    // re-parse) wherever the target adds no base path.
    let canonical_pq = matches!(path, std::borrow::Cow::Borrowed(_)).then(|| parts.uri.path_and_query()).flatten();

    let mut tried = 0u64;
    let mut attempt = 0u32;
    let mut last_failure: Option<String> = None;
    loop {
        let admission = upstream.circuit.as_ref().map_or(Admission::Closed, |c| c.admit());
        if admission == Admission::Open {
            return exit.reject(
                Rejection::new(Code::UpstreamUnavailable, format!("circuit open for upstream {}", upstream.name)),
                rec,
            );
        }
        let Some((idx, target)) = upstream.pick(tried) else {
            release_probe(upstream, admission);
            // After a failed attempt, the failure is the answer; with no attempt, nothing could take it.
            let rejection = match last_failure.take() {
                Some(detail) => Rejection::new(Code::UpstreamUnreachable, detail),
                None => Rejection::new(
                    Code::UpstreamUnavailable,
                    format!("no available target in upstream {}", upstream.name),
                ),
            };
            return exit.reject(rejection, rec);
        };
        tried |= 1u64 << (idx % 64);
        let Some(uri) = build_uri(target, &path, query, canonical_pq) else {
            return exit.reject(Rejection::new(Code::AdmitBadRequest, "cannot build upstream URI"), rec);
        };
        *up_req.uri_mut() = uri;
        if !upstream.preserve_host {
            up_req.headers_mut().insert(header::HOST, target.host_header.clone());
        }
        let in_flight = upstream.begin(target);
        let sent = Instant::now();
        let exchange = upstream.send(conn.worker, idx, up_req);
        let result = match shared.deadlines.get(conn.worker) {
            Some(list) => {
                list.within(tokio::time::Instant::from_std(sent) + upstream.timeouts.response, exchange).await
            }
            None => tokio::time::timeout(upstream.timeouts.response, exchange).await.map_err(|_| Elapsed),
        };
        rec.upstream_us = Some(sent.elapsed().as_micros() as u64);
        let failed = match result {
            Ok(Ok(resp)) => {
                upstream.record_transport(target, true);
                if let Some(login) = &login {
                    login.report(&rt.state, resp.status(), request_id).await;
                }
                circuit_record(shared, upstream, admission, resp.status().as_u16() < 500);
                let cors = route.cors.as_deref().map(|c| (c, origin.as_ref()));
                let ctx = RespondCtx {
                    mode: route.modes.get(StageName::Respond),
                    cors,
                    identity: identity.as_deref(),
                    body: route.response_body.as_deref(),
                    schema,
                    head: parts.method == Method::HEAD,
                };
                let mut resp = respond(&exit, resp, rec, client_upgrade, upstream, ctx).await;
                if let Some((policy, current)) = ratelimit {
                    resp.headers_mut().insert(RATELIMIT_POLICY, policy);
                    resp.headers_mut().insert(RATELIMIT, current);
                }
                // Shedding places, and for least-in-flight balancing the target's count, are held until the body
                // ends: a response still streaming still occupies the upstream.
                let places = places.take().filter(|p| !p.is_empty());
                match (places, upstream.balance == Balance::LeastInFlight) {
                    (Some(places), true) => resp.body_mut().hold_until_end((places, in_flight)),
                    (Some(places), false) => resp.body_mut().hold_until_end(places),
                    (None, true) => resp.body_mut().hold_until_end(in_flight),
                    (None, false) => drop(in_flight),
                }
                return resp;
            }
            Ok(Err(failed)) => failed,
            Err(_) => {
                shared.metrics.upstream_event(&upstream.name, "timeout");
                circuit_record(shared, upstream, admission, false);
                let detail =
                    format!("{} {}: no response within {:?}", upstream.name, target.url, upstream.timeouts.response);
                return exit.reject(Rejection::new(Code::UpstreamTimeout, detail), rec);
            }
        };
        if over_limit.load(Ordering::Relaxed) {
            release_probe(upstream, admission);
            let rej = Rejection::new(
                Code::AdmitBodyTooLarge,
                format!("streamed body exceeded {} bytes", route.max_body_bytes),
            );
            return exit.reject(rej, rec);
        }
        let connect = failed.error.is_connect();
        shared.metrics.upstream_event(&upstream.name, if connect { "connect_error" } else { "transport_error" });
        if upstream.record_transport(target, false) {
            shared.metrics.upstream_event(&upstream.name, "ejected");
            tracing::warn!(target: "rampart::upstream", upstream = %upstream.name, target = %target.url, "target ejected after consecutive failures");
        }
        circuit_record(shared, upstream, admission, false);
        match failed.request {
            // Nothing reached the upstream (connect failure): the same request can go to another target.
            Some(req) if attempt < upstream.retries => {
                up_req = req;
                attempt += 1;
                last_failure = Some(format!("{} {}: {}", upstream.name, target.url, error_chain(&failed.error)));
            }
            _ => {
                let detail = format!("{} {}: {}", upstream.name, target.url, error_chain(&failed.error));
                return exit.reject(Rejection::new(Code::UpstreamUnreachable, detail), rec);
            }
        }
    }
}

fn release_probe(upstream: &Upstream, admission: Admission) {
    if admission == Admission::Probe {
        if let Some(c) = &upstream.circuit {
            c.record(admission, false);
        }
    }
}

fn circuit_record(shared: &Shared, upstream: &Upstream, admission: Admission, ok: bool) {
    let Some(c) = &upstream.circuit else { return };
    match c.record(admission, ok) {
        Some(Transition::Opened) => {
            shared.metrics.upstream_event(&upstream.name, "circuit_open");
            tracing::warn!(target: "rampart::upstream", upstream = %upstream.name, "circuit opened: too many failures");
        }
        Some(Transition::Closed) => {
            shared.metrics.upstream_event(&upstream.name, "circuit_closed");
            tracing::info!(target: "rampart::upstream", upstream = %upstream.name, "circuit closed: probe succeeded");
        }
        None => {}
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn build_uri(
    target: &crate::upstream::Target,
    path: &str,
    query: Option<&str>,
    canonical: Option<&http::uri::PathAndQuery>,
) -> Option<Uri> {
    if let Some(pq) = canonical.filter(|_| target.base_path.is_empty()) {
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(pq.clone());
        return Uri::from_parts(parts).ok();
    }
    let mut pq = String::with_capacity(target.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(&target.base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    // Origin form: the connection is already to the target, which gets its authority in `Host`.
    Uri::try_from(pq).ok()
}

/// Reads a whole request body, at most `cap` bytes (`limit` is the route's own limit: over it is 413
/// `admit.body_too_large`, over a smaller inspect cap `inspect.body_too_large`), within the body read timeout.
async fn read_body(rt: &Runtime, incoming: Incoming, cap: u64, limit: u64) -> Result<Bytes, Rejection> {
    let read = tokio::time::timeout(rt.limits.body_read_timeout, Limited::new(incoming, cap as usize).collect());
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            let code = if cap < limit { Code::InspectBodyTooLarge } else { Code::AdmitBodyTooLarge };
            Err(Rejection::new(code, format!("body over {cap} bytes")))
        }
        Ok(Err(e)) => Err(Rejection::new(Code::AdmitBadRequest, format!("reading the body: {e}"))),
        Err(_) => {
            let detail = format!("body not received within {:?}", rt.limits.body_read_timeout);
            Err(Rejection::new(Code::AdmitBodyTimeout, detail))
        }
    }
}

/// What `respond` needs to know about the route and the caller.
struct RespondCtx<'a> {
    mode: Mode,
    cors: Option<(&'a CorsPolicy, Option<&'a HeaderValue>)>,
    identity: Option<&'a Identity>,
    /// The route's body rules; `None`: bodies stream.
    body: Option<&'a crate::stages::respond::body::BodyPolicy>,
    /// The route's OpenAPI operation when its JSON responses are checked against the spec.
    schema: Option<(&'a OpenApi, &'a Operation)>,
    head: bool,
}

/// respond: the upstream's answer on its way back — hop-by-hop headers removed, upgrades bridged, JSON and text
/// bodies of routes with body rules read, filtered against the OpenAPI response schema and redacted, every other body streamed under the total deadline.
async fn respond(
    exit: &Exit<'_>,
    resp: Response<Incoming>,
    mut rec: Box<RequestRecord>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    upstream: &Upstream,
    ctx: RespondCtx<'_>,
) -> Response<ResponseBody> {
    let RespondCtx { mode, cors, identity, body: body_policy, schema, head } = ctx;
    let (mut parts, body) = resp.into_parts();
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    strip_hop_by_hop_and(&mut parts.headers, switching, exit.rt.respond.stripper());
    if identity.is_some() {
        // An authenticated answer is for this caller only: no shared or browser cache may keep it.
        parts.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some((policy, origin)) = cors {
        policy.apply(origin, &mut parts.headers);
    }
    if exit.rt.respond.hides(parts.status) {
        match mode {
            Mode::Enforce => {
                tokio::spawn(crate::stages::respond::log_hidden_body(
                    body,
                    parts.status,
                    parts.headers.clone(),
                    exit.request_id.to_string(),
                    exit.rt.respond.log_redactor.clone(),
                ));
                let mut resp =
                    problem::with_status(&Rejection::new(Code::UpstreamError, ""), exit.request_id, parts.status);
                // A problem body: only the status survives of the upstream's answer.
                for (name, value) in parts.headers.iter() {
                    // Only the status, Retry-After and our CORS decision survive of the upstream's answer.
                    if name == header::RETRY_AFTER
                        || name.as_str().starts_with("access-control-")
                        || name == header::VARY
                    {
                        resp.headers_mut().append(name.clone(), value.clone());
                    }
                }
                rec.code = Some(Code::UpstreamError);
                rec.outcome = Outcome::Pass;
                return exit.finish(resp, rec);
            }
            Mode::Monitor => rec.flagged.push(Code::UpstreamError),
        }
    }
    if switching {
        match (client_upgrade, parts.extensions.remove::<hyper::upgrade::OnUpgrade>()) {
            (Some(client), Some(server)) => {
                tokio::spawn(async move {
                    if let (Ok(c), Ok(s)) = tokio::join!(client, server) {
                        let mut c = hyper_util::rt::TokioIo::new(c);
                        let mut s = hyper_util::rt::TokioIo::new(s);
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                    }
                });
            }
            _ => {
                return exit.reject(Rejection::new(Code::UpstreamBadResponse, "101 without an upgrade request"), rec);
            }
        }
        rec.outcome = Outcome::Pass;
        let resp = Response::from_parts(parts, ResponseBody::empty());
        return exit.finish(resp, rec);
    }
    let deadline = upstream.timeouts.total.map(|t| tokio::time::Instant::from_std(rec.start) + t);
    let bodiless = head || parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED;
    if body_policy.is_some() || schema.is_some() {
        // Ranges were not asked for (see `handle`); a slice of a body the rules read cannot be inspected.
        if let Some(rej) = respond_body::partial(exit, &mut parts, body_policy, schema.is_some(), mode, &mut rec) {
            return exit.reject(rej, rec);
        }
    }
    if let Some((api, op)) = schema.filter(|_| !bodiless && crate::openapi::response::is_json(&parts.headers)) {
        let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + upstream.timeouts.response);
        // Schema filter, redaction and the exfiltration count: one read, one pass over the bytes.
        let sx = respond_body::SchemaCtx { api, op, body: body_policy, mode, until, identity };
        return respond_body::schema_filtered(exit, parts, body, rec, sx).await;
    }
    if let Some(policy) = body_policy.filter(|_| !bodiless && !body.is_end_stream()) {
        if let Some(ty) = policy.inspects(&parts.headers) {
            let cx = respond_body::BufferedCtx { policy, ty, mode, deadline, identity };
            return respond_body::buffered(exit, parts, body, rec, cx).await;
        }
    }
    let resp = Response::from_parts(parts, ResponseBody::upstream(body, deadline));
    rec.outcome = Outcome::Pass;
    exit.finish(resp, rec)
}

/// Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) for a route that
/// declares CORS; otherwise the record comes back and the request goes on to normal routing.
fn preflight(
    exit: &Exit<'_>,
    rt: &Runtime,
    parts: &http::request::Parts,
    path: &str,
    mut rec: Box<RequestRecord>,
) -> Result<Response<ResponseBody>, Box<RequestRecord>> {
    let (Some(origin), Some(wanted)) =
        (parts.headers.get(header::ORIGIN), parts.headers.get(header::ACCESS_CONTROL_REQUEST_METHOD))
    else {
        return Err(rec);
    };
    let Ok(method) = Method::from_bytes(wanted.as_bytes()) else { return Err(rec) };
    let RouteMatch::Found { route, .. } = rt.router.find(host_of(parts), &method, path) else { return Err(rec) };
    let route = &rt.routes[route];
    let Some(cors) = route.cors.as_ref() else { return Err(rec) };
    rec.route = Some(route.id.clone());
    rec.counters = Some(route.counters.clone());
    Ok(match cors.preflight(origin, &method, parts.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS)) {
        Preflight::Allowed(headers) => {
            let mut resp = Response::new(ResponseBody::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp.headers_mut().extend(headers);
            exit.finish(resp, rec)
        }
        Preflight::Denied(detail) => exit.reject(Rejection::new(Code::CorsDenied, detail), rec),
    })
}

/// The answer of a `redirect_https` listener: 308 to the same host and path on the HTTPS port. The host is
/// checked to be a plain host name so the redirect cannot be bent into a header injection.
fn redirect(parts: &http::request::Parts, port: u16) -> Option<Response<ResponseBody>> {
    let host = host_of(parts)?;
    let name = if host.starts_with('[') { &host[..=host.find(']')?] } else { host.split(':').next().unwrap_or(host) };
    if name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
    {
        return None;
    }
    let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 { format!("https://{name}{pq}") } else { format!("https://{name}:{port}{pq}") };
    let mut resp = Response::new(ResponseBody::full(Bytes::new()));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).ok()?);
    resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Some(resp)
}
