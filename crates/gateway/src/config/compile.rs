//! Raw config → runtime form: addresses parsed, files loaded, templates inserted into the router, pools built,
//! metric handles resolved. Nothing on the request path parses configuration.

use super::raw::{self, RawConfig, RawModes, RawUpstream};
use super::{ConfigError, ConfigErrors, Source};
use crate::metrics::{Metrics, RouteCounters};
use crate::pipeline::{Mode, StageName};
use crate::server::tls::{MinVersion, TlsSpec};
use crate::stages::admit::{AdmitPolicy, TrustedProxies};
use crate::stages::inspect::{Field, InspectPolicy, Inspection, JsonLimits};
use crate::stages::route::{RouteSpec, Router};
use crate::upstream::circuit::{CircuitBreaker, CircuitPolicy};
use crate::upstream::{self, HealthPolicy, PassivePolicy, Target, Timeouts, Upstream};
use http::{HeaderValue, Method};
use ipnet::IpNet;
use serde_saphyr::Spanned;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What `methods: [ANY]` stands for.
const STANDARD_METHODS: [Method; 7] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];

pub struct Ctx<'a> {
    pub file: &'a str,
    pub base_dir: &'a Path,
    pub source: Source,
    pub metrics: &'a Metrics,
}

/// Per-stage modes of a route, after inheritance.
#[derive(Debug, Clone, Copy, Default)]
pub struct Modes {
    pub admit: Mode,
    pub identify: Mode,
    pub authorize: Mode,
    pub throttle: Mode,
    pub inspect: Mode,
    pub respond: Mode,
}

impl Modes {
    pub fn get(&self, stage: StageName) -> Mode {
        match stage {
            StageName::Admit => self.admit,
            StageName::Identify => self.identify,
            StageName::Authorize => self.authorize,
            StageName::Throttle => self.throttle,
            StageName::Inspect => self.inspect,
            StageName::Respond => self.respond,
            StageName::Route | StageName::Forward => Mode::Enforce,
        }
    }

    fn overlay(self, raw: &RawModes) -> Modes {
        Modes {
            admit: raw.admit.unwrap_or(self.admit),
            identify: raw.identify.unwrap_or(self.identify),
            authorize: raw.authorize.unwrap_or(self.authorize),
            throttle: raw.throttle.unwrap_or(self.throttle),
            inspect: raw.inspect.unwrap_or(self.inspect),
            respond: raw.respond.unwrap_or(self.respond),
        }
    }
}

/// A compiled route.
pub struct Route {
    pub id: Arc<str>,
    pub upstream: usize,
    pub max_body_bytes: u64,
    pub modes: Modes,
    pub counters: RouteCounters,
    /// The negative model for this route, or `None` where inspection is off.
    pub inspect: Inspection,
    pub cors: Option<Arc<crate::stages::cors::CorsPolicy>>,
    /// Who may call: `auth: none` or the accepted methods, with the 401 challenge.
    pub identify: crate::stages::identify::RouteIdentify,
    /// Roles, scopes, ownership and mass-assignment rules for identified callers.
    pub authorize: crate::stages::authorize::AuthzPolicy,
    /// The positive model: the route's OpenAPI operations, or `None` where the route has no spec.
    pub openapi: Option<Arc<crate::openapi::OpenApi>>,
    /// Response-body rules (redaction, exfiltration guard), or `None` where bodies always stream.
    pub response_body: Option<Arc<crate::stages::respond::body::BodyPolicy>>,
    /// Rate limits, quotas and distinct-value limits; `None` when the route has none.
    pub throttle: Option<Arc<crate::stages::throttle::ThrottlePolicy>>,
    /// Load shedding for the route.
    pub shed: Option<Arc<crate::stages::throttle::shed::Gate>>,
    /// A declared login route: the username in the body is counted by the brute-force lockout.
    pub login: Option<Arc<crate::stages::identify::login::LoginRoute>>,
}

/// A compiled listener.
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub tls: Option<TlsSpec>,
    /// Built from `tls` at load; rebuilt (re-reading the files) on reload.
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
    /// Answer every request with a redirect to HTTPS on this port.
    pub redirect_https: Option<u16>,
    pub h2c: bool,
    pub hsts: Option<HeaderValue>,
}

pub struct AdminSpec {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

/// Connection-level limits applied by the listeners.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub body_read_timeout: Duration,
}

/// Everything the request path needs, immutable once built; swapped whole on reload.
pub struct Runtime {
    pub source: Source,
    pub watch_files: Vec<PathBuf>,
    pub listeners: Vec<ListenerSpec>,
    pub admin: Option<AdminSpec>,
    pub workers: usize,
    pub limits: ConnLimits,
    pub admit: AdmitPolicy,
    pub trusted: TrustedProxies,
    pub router: Router,
    pub routes: Vec<Route>,
    pub upstreams: Vec<Arc<Upstream>>,
    pub upstream_tls: Vec<Arc<rustls::ClientConfig>>,
    pub access_log: String,
    pub base_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub modes: Modes,
    pub respond: crate::stages::respond::RespondPolicy,
    /// The identify stage's verifiers and identity-header policy.
    pub identity: crate::stages::identify::Identifier,
    /// The limit state backend; kept across reloads while `state:` is unchanged.
    pub state: crate::state::Store,
    pub state_spec: crate::state::StateSpec,
    /// Load shedding per upstream, indexed like `upstreams`.
    pub upstream_gates: Vec<Option<Arc<crate::stages::throttle::shed::Gate>>>,
}

impl Runtime {
    /// Keeps the running state backend (its cells, blocks and Redis connection) when a reload leaves `state:`
    /// as it was.
    pub fn adopt_state(&mut self, current: &Runtime) {
        // Lockout counters survive every reload: a reload must not unlock anyone.
        if let (Some(next), Some(running)) = (self.identity.lockout.as_mut(), current.identity.lockout.as_ref()) {
            next.adopt(running);
        }
        if self.state_spec == current.state_spec {
            self.state = current.state.clone();
        }
    }
}

pub(super) struct Errs<'a> {
    pub(super) file: &'a str,
    pub(super) list: Vec<ConfigError>,
}

impl Errs<'_> {
    pub(super) fn at<T>(&mut self, s: &Spanned<T>, msg: impl Into<String>, hint: Option<&str>) {
        self.list.push(ConfigError::at(self.file, s.referenced.line(), s.referenced.column(), msg, hint));
    }
    fn top(&mut self, msg: impl Into<String>, hint: Option<&str>) {
        self.list.push(ConfigError::at(self.file, 1, 1, msg, hint));
    }

    /// A secret read from the environment variable `var` names (secrets never sit in the file): at least `min`
    /// bytes, else `too_short` (message, hint) is reported at `var`; unset, `unset_hint` goes with the error.
    pub(super) fn env_secret(
        &mut self,
        var: &Spanned<String>,
        min: usize,
        too_short: (String, &str),
        unset_hint: &str,
    ) -> Option<String> {
        let name = var.value.trim();
        match std::env::var(name) {
            Ok(v) if v.len() >= min => Some(v),
            Ok(_) => {
                self.at(var, too_short.0, Some(too_short.1));
                None
            }
            Err(_) => {
                self.at(var, format!("environment variable `{name}` is not set"), Some(unset_hint));
                None
            }
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_relative() {
        base.join(p)
    } else {
        p
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn nets(errs: &mut Errs<'_>, list: &[Spanned<String>], what: &str) -> Vec<IpNet> {
    let mut out = Vec::new();
    for s in list {
        match parse_net(s.value.trim()) {
            Some(n) => out.push(n),
            None => errs.at(
                s,
                format!("invalid {what} `{}`", s.value),
                Some("write an IP or CIDR: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`"),
            ),
        }
    }
    out
}

fn parse_addr(errs: &mut Errs<'_>, s: &Spanned<String>) -> Option<SocketAddr> {
    match s.value.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.at(
                s,
                format!("invalid address `{}`", s.value),
                Some("write IP:port, e.g. `0.0.0.0:8443` or `[::]:8443`"),
            );
            None
        }
    }
}

pub fn compile(mut raw: RawConfig, ctx: &Ctx<'_>) -> Result<Runtime, ConfigErrors> {
    let mut errs = Errs { file: ctx.file, list: Vec::new() };
    let base = ctx.base_dir;
    let mut watch_files = Vec::new();
    if let Source::File(p) = &ctx.source {
        watch_files.push(p.clone());
    }

    // Listeners.
    if raw.listen.is_empty() {
        errs.top("no listener", Some("add `listen: [{ addr: 127.0.0.1:8080 }]`"));
    }
    let first_tls_port = raw
        .listen
        .iter()
        .find(|l| l.tls.is_some())
        .and_then(|l| l.addr.value.trim().parse::<SocketAddr>().ok())
        .map(|a| a.port());
    let mut listeners = Vec::new();
    let mut seen_addrs = HashSet::new();
    for l in &raw.listen {
        let Some(addr) = parse_addr(&mut errs, &l.addr) else {
            continue;
        };
        if addr.port() != 0 && !seen_addrs.insert(addr) {
            errs.at(&l.addr, format!("{addr} is listed twice"), None);
        }
        let redirect_https = match &l.redirect_https {
            None | Some(raw::RawRedirect::Enabled(false)) => None,
            Some(raw::RawRedirect::Enabled(true)) => Some(first_tls_port.unwrap_or(443)),
            Some(raw::RawRedirect::Port { port }) => Some(*port),
        };
        if redirect_https.is_some() && l.tls.is_some() {
            errs.at(
                &l.addr,
                "a TLS listener cannot also redirect to HTTPS",
                Some("put `redirect_https` on a plain HTTP listener"),
            );
        }
        let mut spec = ListenerSpec { addr, tls: None, tls_config: None, redirect_https, h2c: l.h2c, hsts: None };
        if let Some(t) = &l.tls {
            let min_version = match t.min_version.as_ref().map(|s| s.value.trim().to_string()).as_deref() {
                None | Some("1.2") => MinVersion::Tls12,
                Some("1.3") => MinVersion::Tls13,
                Some(other) => {
                    if let Some(s) = &t.min_version {
                        errs.at(
                            s,
                            format!("unsupported TLS version `{other}`"),
                            Some("use \"1.2\" or \"1.3\"; older versions are not offered"),
                        );
                    }
                    MinVersion::Tls12
                }
            };
            let tls = TlsSpec {
                cert: resolve(base, &t.cert.value),
                key: resolve(base, &t.key.value),
                sni: t
                    .sni
                    .iter()
                    .map(|s| {
                        (
                            s.hosts.iter().map(|h| h.value.clone()).collect(),
                            resolve(base, &s.cert.value),
                            resolve(base, &s.key.value),
                        )
                    })
                    .collect(),
                min_version,
                client_ca: t.client_auth.as_ref().map(|c| resolve(base, &c.ca.value)),
                client_required: t.client_auth.as_ref().is_none_or(|c| c.required),
            };
            match tls.build() {
                Ok(cfg) => spec.tls_config = Some(cfg),
                Err(e) => errs.at(
                    &t.cert,
                    e.to_string(),
                    Some("cert and key are PEM files; the key must match the first certificate"),
                ),
            }
            watch_files.extend(tls.files());
            let max_age = t.hsts_max_age.map_or(Duration::from_secs(31_536_000), |d| d.0);
            if !max_age.is_zero() {
                spec.hsts = HeaderValue::from_str(&format!("max-age={}; includeSubDomains", max_age.as_secs())).ok();
            }
            spec.tls = Some(tls);
        }
        listeners.push(spec);
    }

    // Admin.
    let admin = raw.admin.as_ref().and_then(|a| {
        let addr = parse_addr(&mut errs, &a.addr)?;
        let token = a.token_env.as_ref().and_then(|var| {
            errs.env_secret(
                var,
                16,
                (
                    format!("admin token in `{}` is shorter than 16 characters", var.value),
                    "use a long random token, e.g. `openssl rand -hex 32`",
                ),
                "export it before starting rampart",
            )
        });
        if token.is_none() && !addr.ip().is_loopback() {
            errs.at(
                &a.addr,
                "the admin API listens beyond loopback without a token",
                Some("bind it to 127.0.0.1 or set `token_env`"),
            );
        }
        Some(AdminSpec { addr, token })
    });

    let workers = if raw.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        raw.workers.min(256)
    };

    // Limits.
    let lim = &raw.limits;
    let limits = ConnLimits {
        max_connections: lim.max_connections.max(1),
        max_connections_per_ip: lim.max_connections_per_ip.max(1),
        header_read_timeout: lim.header_read_timeout.0,
        idle_timeout: lim.idle_timeout.0,
        max_header_bytes: lim.max_header_bytes.0 as usize,
        body_read_timeout: lim.body_read_timeout.0,
    };
    let admit = AdmitPolicy {
        max_uri_bytes: lim.max_uri_bytes.0 as usize,
        max_header_bytes: lim.max_header_bytes.0 as usize,
        ip_allow: nets(&mut errs, &lim.ip_allow, "allowed network"),
        ip_deny: nets(&mut errs, &lim.ip_deny, "denied network"),
    };
    let trusted = TrustedProxies::new(nets(&mut errs, &raw.trusted_proxies, "trusted proxy"));
    let (state_spec, default_on_failure) = super::compile_throttle::state(ctx.file, raw.state.as_ref(), &mut errs.list);

    // Upstreams.
    let mut upstream_index = HashMap::new();
    let mut upstreams = Vec::new();
    let mut upstream_tls = Vec::new();
    let mut upstream_gates = Vec::new();
    for (name, u) in &raw.upstreams {
        if let Some((up, tls)) = compile_upstream(&mut errs, base, name, u, workers, &mut watch_files) {
            upstream_index.insert(name.clone(), upstreams.len());
            upstreams.push(Arc::new(up));
            upstream_tls.push(tls);
            upstream_gates.push(
                u.load_shedding.as_ref().and_then(|s| {
                    super::compile_throttle::gate(ctx.file, format!("upstream {name}"), s, &mut errs.list)
                }),
            );
        }
    }

    // Inspection: the global policy, shared by every route that does not override it.
    let global_inspect = compile_inspect(&mut errs, &raw.inspect, None);
    let global_inspect_policy = global_inspect.as_ref().and_then(|c| c.build(&[]));

    // Identity (before routes, which name its methods).
    let identity = super::identity::compile_identity(
        &mut errs,
        base,
        &raw.identity,
        &mut watch_files,
        &ctx.metrics.jwt_cache_counters(),
    );
    let global_policies =
        raw.policies.as_ref().and_then(|p| super::policies::compile(&mut errs, base, p, &mut watch_files));
    let mtls_listener = raw.listen.iter().any(|l| l.tls.as_ref().is_some_and(|t| t.client_auth.is_some()));
    // Response bodies: the global redaction settings (exfiltration counts go to the state backend).
    let global_redact = compile_redact(&mut errs, &raw.respond.redact, None);

    // Routes.
    let global_modes = Modes::default().overlay(&raw.modes);
    let mut router = Router::new(raw.case_insensitive_paths);
    let mut routes = Vec::new();
    let mut ids = HashSet::new();
    // Specs shared by several routes are compiled once.
    let mut specs: SpecCache = HashMap::new();
    let shorthand = super::openapi_routes::expand(&mut errs, std::mem::take(&mut raw.openapi));
    for r in raw.routes.iter().chain(&shorthand) {
        let mut methods = Vec::new();
        let mut any = false;
        for m in &r.methods {
            let name = m.value.trim().to_ascii_uppercase();
            if name == "ANY" {
                any = true;
                continue;
            }
            match Method::from_bytes(name.as_bytes()) {
                Ok(method) if name.bytes().all(|b| b.is_ascii_uppercase()) => methods.push(method),
                _ => errs.at(
                    m,
                    format!("invalid method `{}`", m.value),
                    Some("use GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS … or ANY"),
                ),
            }
        }
        if r.methods.is_empty() {
            errs.at(
                &r.path,
                format!("route `{}` lists no methods", r.path.value),
                Some("list them, e.g. `methods: [GET, POST]`, or `methods: [ANY]` to accept every method"),
            );
        }
        if any {
            // ANY means the methods an API uses; TRACE (cross-site tracing) and CONNECT (tunnelling) must be
            // listed by name to be forwarded.
            let extra: Vec<Method> = methods.drain(..).filter(|m| !STANDARD_METHODS.contains(m)).collect();
            methods = STANDARD_METHODS.to_vec();
            methods.extend(extra);
        }
        let Some(&up) = upstream_index.get(r.upstream.value.trim()) else {
            if !raw.upstreams.contains_key(r.upstream.value.trim()) {
                let known: Vec<&str> = raw.upstreams.keys().map(String::as_str).collect();
                errs.at(
                    &r.upstream,
                    format!("unknown upstream `{}`", r.upstream.value),
                    Some(&format!("declared upstreams: {}", known.join(", "))),
                );
            }
            continue;
        };
        let mut id = r.id.as_ref().map_or_else(|| r.path.value.clone(), |s| s.value.clone());
        if r.id.is_none() {
            let mut n = 2;
            let base_id = id.clone();
            while ids.contains(&id) {
                id = format!("{base_id}#{n}");
                n += 1;
            }
        } else if ids.contains(&id) {
            if let Some(s) = &r.id {
                errs.at(s, format!("route id `{id}` is used twice"), None);
            }
        }
        ids.insert(id.clone());
        let hosts: Vec<String> = r.hosts.iter().map(|h| h.value.trim().to_ascii_lowercase()).collect();
        let route_id = routes.len();
        if let Err(e) =
            router.add(&RouteSpec { id: route_id, hosts: &hosts, path: r.path.value.trim(), methods: &methods })
        {
            errs.at(&r.path, e.to_string(), Some("templates look like `/users/{id}` or `/static/*`"));
            continue;
        }
        let route_inspect = match &global_inspect {
            Some(g) if r.inspect.is_empty() => global_inspect_policy.clone().filter(|_| g.enabled),
            Some(g) => compile_inspect(&mut errs, &r.inspect, Some(g)).and_then(|c| c.build(&g.exclude)),
            None => None,
        };
        let cors = r.cors.as_ref().and_then(|c| compile_cors(&mut errs, c, &methods));
        let (identify, mut authorize) =
            super::identity::compile_route(&mut errs, r, &methods, &identity, mtls_listener);
        authorize.policies = match &r.policies {
            Some(p) => super::policies::compile(&mut errs, base, p, &mut watch_files),
            None => global_policies.clone(),
        };
        let openapi =
            r.openapi.as_ref().and_then(|o| compile_openapi(&mut errs, base, o, &mut specs, &mut watch_files));
        let exfil_on_failure = r.limits_on_failure.unwrap_or(default_on_failure);
        let response_body = compile_body_policy(&mut errs, &global_redact, r, exfil_on_failure);
        let throttle = super::compile_throttle::route_policy(
            ctx.file,
            &id,
            &r.limits,
            r.cost.as_ref(),
            r.limits_on_failure.unwrap_or(default_on_failure),
            &mut errs.list,
        );
        let shed = r
            .load_shedding
            .as_ref()
            .and_then(|s| super::compile_throttle::gate(ctx.file, format!("route {id}"), s, &mut errs.list));
        let login = r.login.as_ref().and_then(|l| super::identity::compile_login(&mut errs, l, &identity));
        routes.push(Route {
            login,
            identify,
            authorize,
            openapi,
            response_body,
            throttle,
            shed,
            cors,
            inspect: route_inspect,
            counters: ctx.metrics.route_counters(&id),
            id: Arc::from(id.as_str()),
            upstream: up,
            max_body_bytes: r.max_body_bytes.map_or(lim.max_body_bytes.0, |b| b.0),
            modes: global_modes.overlay(&r.modes),
        });
    }

    let mut respond = crate::stages::respond::RespondPolicy {
        hide_upstream_errors: raw.respond.hide_upstream_errors,
        hide_client_errors: raw.respond.hide_client_errors,
        security_headers: raw.respond.security_headers,
        ..Default::default()
    };
    for h in &raw.respond.strip_headers {
        match http::HeaderName::from_bytes(h.value.trim().to_ascii_lowercase().as_bytes()) {
            Ok(n) => respond.strip.push(n),
            Err(_) => errs.at(h, format!("invalid header name `{}`", h.value), None),
        }
    }

    let access_log = raw.access_log.as_ref().map_or_else(|| "stdout".to_string(), |s| s.value.trim().to_string());
    if let Err(e) = crate::stages::record::LogSink::open(&access_log, Some(base)) {
        if let Some(s) = &raw.access_log {
            errs.at(
                s,
                format!("cannot open access log `{access_log}`: {e}"),
                Some("use stdout, stderr, off, or a writable file path"),
            );
        }
    }

    if !errs.list.is_empty() {
        return Err(ConfigErrors(errs.list));
    }
    let state = crate::state::Store::build(&state_spec, ctx.metrics.state_metrics()).map_err(|e| {
        let hint = Some("check `state:`; a Redis URL looks like `redis://10.0.0.5:6379`");
        let (line, col) = raw.state.as_ref().map_or((1, 1), |s| (s.referenced.line(), s.referenced.column()));
        ConfigErrors(vec![ConfigError::at(ctx.file, line, col, e, hint)])
    })?;
    Ok(Runtime {
        state,
        state_spec,
        upstream_gates,
        source: ctx.source.clone(),
        watch_files,
        listeners,
        admin,
        workers,
        limits,
        admit,
        trusted,
        router,
        routes,
        upstreams,
        upstream_tls,
        access_log,
        base_dir: base.to_path_buf(),
        shutdown_timeout: raw.shutdown_timeout.map_or(Duration::from_secs(30), |d| d.0),
        modes: global_modes,
        respond,
        identity,
    })
}

fn compile_upstream(
    errs: &mut Errs<'_>,
    base: &Path,
    name: &str,
    u: &RawUpstream,
    workers: usize,
    watch: &mut Vec<PathBuf>,
) -> Option<(Upstream, Arc<rustls::ClientConfig>)> {
    let before = errs.list.len();
    if u.targets.is_empty() {
        errs.top(format!("upstream `{name}` has no targets"), Some("add `targets: [\"http://127.0.0.1:9000\"]`"));
    }
    if u.targets.len() > 64 {
        errs.at(&u.targets[64], format!("upstream `{name}` has more than 64 targets"), None);
    }
    let mut targets = Vec::new();
    for t in &u.targets {
        match Target::new(t.value.trim()) {
            Ok(target) => targets.push(Arc::new(target)),
            Err(e) => errs.at(t, e, Some("write e.g. `http://10.0.0.5:8080` or `https://api.internal`")),
        }
    }
    let c = &u.circuit_breaker;
    if !(c.failure_ratio > 0.0 && c.failure_ratio <= 1.0) {
        errs.top(format!("upstream `{name}`: circuit_breaker.failure_ratio must be in (0, 1]"), None);
    }
    let need_roots = targets.iter().any(|t| t.scheme == http::uri::Scheme::HTTPS);
    let (ca, cc) = match &u.tls {
        Some(t) => {
            let ca = t.ca.as_ref().map(|c| resolve(base, &c.value));
            let cc = match (&t.client_cert, &t.client_key) {
                (Some(c), Some(k)) => Some((resolve(base, &c.value), resolve(base, &k.value))),
                (None, None) => None,
                (Some(s), None) | (None, Some(s)) => {
                    errs.at(s, "client_cert and client_key go together", None);
                    None
                }
            };
            (ca, cc)
        }
        None => (None, None),
    };
    watch.extend(ca.clone());
    if let Some((c, k)) = &cc {
        watch.push(c.clone());
        watch.push(k.clone());
    }
    let tls =
        match upstream::client_tls(ca.as_deref(), cc.as_ref().map(|(c, k)| (c.as_path(), k.as_path())), need_roots) {
            Ok(t) => t,
            Err(e) => {
                errs.top(format!("upstream `{name}`: {e}"), None);
                return None;
            }
        };
    if errs.list.len() > before {
        return None;
    }
    let settings = upstream::ClientSettings {
        tls: tls.clone(),
        connect_timeout: u.timeouts.connect.0,
        pool_idle: u.pool.idle_timeout.0,
        pool_max_idle: u.pool.max_idle_per_target,
        workers,
    };
    let circuit = c.enabled.then(|| {
        CircuitBreaker::new(CircuitPolicy {
            failure_ratio: c.failure_ratio,
            min_requests: c.min_requests.max(1),
            window_ms: c.window.0.as_millis() as u64,
            open_ms: c.open_for.0.as_millis() as u64,
        })
    });
    let health = u.health_check.as_ref().map(|h| HealthPolicy {
        path: if h.path.starts_with('/') { h.path.clone() } else { format!("/{}", h.path) },
        interval: h.interval.0.max(Duration::from_millis(100)),
        timeout: h.timeout.0,
        healthy_after: h.healthy_after,
        unhealthy_after: h.unhealthy_after,
    });
    let up = Upstream::new(
        name.to_string(),
        targets,
        u.balance,
        &settings,
        Timeouts {
            connect: u.timeouts.connect.0,
            response: u.timeouts.response.0,
            total: u.timeouts.total.map(|d| d.0),
        },
        u.retries.min(5),
        PassivePolicy {
            failures: u.passive_ejection.failures,
            eject_ms: u.passive_ejection.eject_for.0.as_millis() as u64,
        },
        circuit,
        u.preserve_host,
        health,
    );
    match up {
        Ok(up) => Some((up, tls)),
        Err(e) => {
            errs.top(format!("upstream `{name}`: {e}"), None);
            None
        }
    }
}

/// Inspection settings after defaults, before they become a shared policy.
#[derive(Clone)]
struct InspectSettings {
    enabled: bool,
    level: detect::Level,
    headers: Vec<http::HeaderName>,
    exclude: Vec<(Field, String)>,
    max_body_bytes: u64,
    json: JsonLimits,
}

impl InspectSettings {
    fn build(&self, inherited: &[(Field, String)]) -> Inspection {
        if !self.enabled {
            return None;
        }
        Some(Arc::new(InspectPolicy {
            detector: detect::Detector::new(self.level),
            headers: self.headers.clone(),
            exclude: inherited.iter().chain(self.exclude.iter()).cloned().collect(),
            max_body_bytes: self.max_body_bytes,
            json: self.json,
        }))
    }
}

impl super::raw::RawInspect {
    fn is_empty(&self) -> bool {
        self.enabled.is_none()
            && self.level.is_none()
            && self.headers.is_none()
            && self.exclude.is_empty()
            && self.max_body_bytes.is_none()
            && self.json.is_none()
    }
}

/// Resolves inspect settings over `base` (the global settings) or the built-in defaults. Returns `None` only
/// when errors were recorded.
fn compile_inspect(
    errs: &mut Errs<'_>,
    raw: &super::raw::RawInspect,
    base: Option<&InspectSettings>,
) -> Option<InspectSettings> {
    let defaults = InspectSettings {
        enabled: true,
        level: detect::Level::L1,
        headers: vec![http::header::USER_AGENT, http::header::REFERER, http::header::COOKIE],
        exclude: Vec::new(),
        max_body_bytes: 1024 * 1024,
        json: JsonLimits::default(),
    };
    let base = base.cloned().unwrap_or(defaults);
    let before = errs.list.len();
    let level = match raw.level.as_ref().map(|l| (l, l.value)) {
        None => base.level,
        Some((_, 1)) => detect::Level::L1,
        Some((_, 2)) => detect::Level::L2,
        Some((_, 3)) => detect::Level::L3,
        Some((l, other)) => {
            errs.at(l, format!("inspect level {other} does not exist"), Some("use 1 (default), 2 or 3"));
            base.level
        }
    };
    let headers = match &raw.headers {
        None => base.headers.clone(),
        Some(list) => list
            .iter()
            .filter_map(|h| match http::HeaderName::from_bytes(h.value.trim().to_ascii_lowercase().as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    errs.at(h, format!("invalid header name `{}`", h.value), None);
                    None
                }
            })
            .collect(),
    };
    let mut exclude = Vec::new();
    for e in &raw.exclude {
        match e.value.split_once(':').and_then(|(f, name)| Field::parse(f.trim()).map(|f| (f, name.trim().to_string())))
        {
            Some((Field::Header, name)) => exclude.push((Field::Header, name.to_ascii_lowercase())),
            Some(x) if !x.1.is_empty() => exclude.push(x),
            _ => errs.at(
                e,
                format!("invalid exclusion `{}`", e.value),
                Some("write PLACE:NAME with PLACE one of query, json, form, header, cookie, path, body"),
            ),
        }
    }
    if errs.list.len() > before {
        return None;
    }
    Some(InspectSettings {
        enabled: raw.enabled.unwrap_or(base.enabled),
        level,
        headers,
        exclude,
        max_body_bytes: raw.max_body_bytes.map_or(base.max_body_bytes, |b| b.0),
        json: match &raw.json {
            None => base.json,
            Some(j) => JsonLimits {
                max_depth: j.max_depth.unwrap_or(base.json.max_depth).clamp(1, 128),
                max_string_bytes: j.max_string_bytes.map_or(base.json.max_string_bytes, |b| b.0 as usize),
                max_array_items: j.max_array_items.unwrap_or(base.json.max_array_items),
                max_object_keys: j.max_object_keys.unwrap_or(base.json.max_object_keys),
            },
        },
    })
}

fn compile_cors(
    errs: &mut Errs<'_>,
    c: &super::raw::RawCors,
    route_methods: &[Method],
) -> Option<Arc<crate::stages::cors::CorsPolicy>> {
    let before = errs.list.len();
    let wildcard = c.origins.value.iter().any(|o| o.trim() == "*");
    if c.origins.value.is_empty() {
        errs.at(
            &c.origins,
            "cors.origins is empty",
            Some("list the origins allowed, e.g. [\"https://app.example.com\"]"),
        );
    }
    if wildcard && c.credentials {
        errs.at(
            &c.origins,
            "cors allows any origin (`*`) with credentials",
            Some("list the exact origins, or set credentials: false"),
        );
    }
    if wildcard && c.origins.value.len() > 1 {
        errs.at(&c.origins, "`*` cannot be mixed with explicit origins", None);
    }
    let mut origins = Vec::new();
    for o in c.origins.value.iter().map(|o| o.trim()).filter(|o| *o != "*") {
        let ok = o.parse::<http::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some()
                && u.path() == "/"
                && !o.ends_with('/')
        });
        if ok {
            origins.push(o.to_string());
        } else {
            errs.at(
                &c.origins,
                format!("`{o}` is not an origin"),
                Some("write scheme://host[:port], no path: https://app.example.com"),
            );
        }
    }
    let methods: Vec<Method> = if c.methods.is_empty() {
        route_methods.to_vec()
    } else {
        c.methods
            .iter()
            .filter_map(|m| match Method::from_bytes(m.value.trim().to_ascii_uppercase().as_bytes()) {
                Ok(m) => Some(m),
                Err(_) => {
                    errs.at(m, format!("invalid method `{}`", m.value), None);
                    None
                }
            })
            .collect()
    };
    let names = |errs: &mut Errs<'_>, list: &[Spanned<String>]| -> Vec<http::HeaderName> {
        list.iter()
            .filter_map(|h| match http::HeaderName::from_bytes(h.value.trim().to_ascii_lowercase().as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    errs.at(h, format!("invalid header name `{}`", h.value), None);
                    None
                }
            })
            .collect()
    };
    let headers = names(errs, &c.headers);
    let expose = names(errs, &c.expose);
    if errs.list.len() > before {
        return None;
    }
    Some(Arc::new(crate::stages::cors::CorsPolicy {
        origins: if wildcard { None } else { Some(origins) },
        methods,
        headers,
        expose,
        credentials: c.credentials,
        max_age_secs: c.max_age.map_or(600, |d| d.0.as_secs()),
    }))
}

type SpecCache = HashMap<(PathBuf, String), Arc<crate::openapi::OpenApi>>;

/// Loads and compiles a route's OpenAPI document (once per file and settings); spec errors name the spec's
/// file and JSON pointer, reported at the config line that names the spec.
fn compile_openapi(
    errs: &mut Errs<'_>,
    base: &Path,
    o: &raw::RawOpenApi,
    cache: &mut SpecCache,
    watch: &mut Vec<PathBuf>,
) -> Option<Arc<crate::openapi::OpenApi>> {
    use crate::openapi::compile::Settings;
    use crate::openapi::ResponseMode;
    let responses = match o.responses.as_ref() {
        None => ResponseMode::Filter,
        Some(s) => match ResponseMode::parse(s.value.trim()) {
            Some(m) => m,
            None => {
                errs.at(s, format!("unknown response mode `{}`", s.value), Some("use filter (default), block or off"));
                return None;
            }
        },
    };
    let base_path = o.base_path.as_ref().map_or(String::new(), |b| b.value.trim().to_string());
    if !base_path.is_empty() && !base_path.starts_with('/') {
        if let Some(b) = &o.base_path {
            errs.at(b, "base_path starts with `/`", Some("write e.g. `/v1`"));
        }
        return None;
    }
    let settings = Settings {
        strict: o.strict,
        strict_query: o.strict_query.unwrap_or(o.strict),
        base_path,
        responses,
        max_response_bytes: o.max_response_bytes.map_or(4 * 1024 * 1024, |b| b.0 as usize),
    };
    let path = resolve(base, o.spec.value.trim());
    let key = (path.clone(), format!("{settings:?}"));
    if let Some(api) = cache.get(&key) {
        return Some(api.clone());
    }
    match crate::openapi::OpenApi::load(&path, settings) {
        Ok(api) => {
            // The spec and every file its `$ref`s pulled in: editing any of them reloads.
            watch.extend(api.files.iter().filter(|f| !watch.contains(f)).cloned().collect::<Vec<_>>());
            let api = Arc::new(api);
            cache.insert(key, api.clone());
            Some(api)
        }
        Err(e) => {
            errs.at(
                &o.spec,
                format!("OpenAPI spec: {e}"),
                Some("the location after `#` is a JSON pointer into that file"),
            );
            None
        }
    }
}

/// Redaction settings after defaults and inheritance, before they become a route's policy.
#[derive(Clone)]
struct RedactSettings {
    enabled: bool,
    /// Per detector (`Kind::index`): `None` = off.
    actions: [Option<crate::stages::respond::redact::Action>; 8],
    fields: Vec<String>,
    max_body_bytes: u64,
    over_limit: crate::stages::respond::body::OverLimit,
}

fn compile_redact(errs: &mut Errs<'_>, raw: &raw::RawRedact, base: Option<&RedactSettings>) -> RedactSettings {
    use crate::stages::respond::redact::{Action, FieldNames, DEFAULT_FIELDS};
    use crate::stages::respond::secrets::Kind;
    let mut s = base.cloned().unwrap_or_else(|| RedactSettings {
        enabled: true,
        actions: [Some(Action::Mask); 8],
        fields: DEFAULT_FIELDS.iter().map(|f| f.to_string()).collect(),
        max_body_bytes: 1024 * 1024,
        over_limit: crate::stages::respond::body::OverLimit::Pass,
    });
    if let Some(e) = raw.enabled {
        s.enabled = e;
    }
    let r = &raw.rules;
    for (kind, rule) in [
        (Kind::Card, r.card),
        (Kind::Iban, r.iban),
        (Kind::Ssn, r.ssn),
        (Kind::PrivateKey, r.private_key),
        (Kind::CloudKey, r.cloud_key),
        (Kind::Jwt, r.jwt),
        (Kind::PasswordHash, r.password_hash),
        (Kind::Field, r.field),
    ] {
        if let Some(rule) = rule {
            s.actions[kind.index()] = match rule {
                raw::RuleAction::Mask => Some(Action::Mask),
                raw::RuleAction::Remove => Some(Action::Remove),
                raw::RuleAction::Off => None,
            };
        }
    }
    if let Some(list) = &raw.fields {
        s.fields.clear();
        s.fields.extend(list.iter().map(|f| f.value.trim().to_string()));
    }
    s.fields.extend(raw.extra_fields.iter().map(|f| f.value.trim().to_string()));
    for f in raw.fields.iter().flatten().chain(raw.extra_fields.iter()) {
        if let Err(e) = FieldNames::new([f.value.trim()]) {
            errs.at(f, e, Some("write a field name (`password`), `*suffix` or `prefix*`"));
        }
    }
    if let Some(b) = raw.max_body_bytes {
        s.max_body_bytes = b.0.max(1);
    }
    if let Some(o) = raw.over_limit {
        s.over_limit = o;
    }
    s
}

fn compile_body_policy(
    errs: &mut Errs<'_>,
    global: &RedactSettings,
    r: &raw::RawRoute,
    on_failure: crate::state::FailureMode,
) -> Option<Arc<crate::stages::respond::body::BodyPolicy>> {
    use crate::stages::respond::redact::{Action, FieldNames, Redactor};
    use crate::stages::respond::secrets::{Kind, KindSet};
    let settings = match &r.redact {
        Some(raw) => compile_redact(errs, raw, Some(global)),
        None => global.clone(),
    };
    let exfiltration = r.exfiltration.as_ref().and_then(|x| {
        if x.max_records.value == 0 {
            errs.at(&x.max_records, "exfiltration.max_records must be at least 1", None);
            return None;
        }
        Some(crate::stages::respond::exfil::ExfilPolicy {
            max_records: x.max_records.value,
            window: x.window.0.max(Duration::from_secs(1)),
            action: x.action,
            on_failure,
        })
    });
    let mut kinds = KindSet::empty();
    let mut actions = [Action::Mask; 8];
    for k in Kind::ALL {
        if let Some(a) = settings.actions[k.index()] {
            kinds = kinds.with(k);
            actions[k.index()] = a;
        }
    }
    let redactor = if settings.enabled {
        Redactor::new(kinds, actions, FieldNames::new(settings.fields.iter().map(String::as_str)).unwrap_or_default())
    } else {
        Redactor::off()
    };
    if redactor.is_off() && exfiltration.is_none() {
        return None;
    }
    Some(Arc::new(crate::stages::respond::body::BodyPolicy {
        redactor,
        max_body_bytes: settings.max_body_bytes.min(usize::MAX as u64) as usize,
        over_limit: settings.over_limit,
        exfiltration,
    }))
}
