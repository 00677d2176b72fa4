//! The configuration exactly as the operator writes it (YAML). Unknown fields are refused; the fields that later
//! checks may complain about are `Spanned` so the error can point at their line and column.

use crate::pipeline::Mode;
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Vec<RawListener>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// Worker threads, each with its own accept loop (`SO_REUSEPORT`) and upstream pool; 0 = one per core.
    #[serde(default)]
    pub workers: usize,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Shorthand: one route per OpenAPI spec (`{base_path}/*`, the spec deciding what exists under it).
    #[serde(default)]
    pub openapi: Vec<super::openapi_routes::RawOpenApiRoute>,
    #[serde(default)]
    pub access_log: Option<Spanned<String>>,
    #[serde(default)]
    pub modes: RawModes,
    #[serde(default)]
    pub shutdown_timeout: Option<Dur>,
    #[serde(default)]
    pub inspect: RawInspect,
    #[serde(default)]
    pub respond: RawRespond,
    /// Match literal path segments case-insensitively (default), so `/Login` cannot dodge `/login`'s protections.
    #[serde(default = "yes")]
    pub case_insensitive_paths: bool,
    /// Who callers are: API keys, JWT issuers, mTLS mappings, identity headers.
    #[serde(default)]
    pub identity: super::identity::RawIdentity,
    /// Where limit state lives: `memory` (default), a `redis://` URL, or `{ redis: URL, on_failure, timeout, replicas }`.
    #[serde(default)]
    pub state: Option<Spanned<super::raw_throttle::RawState>>,
    /// Cedar policies for every route that has none of its own.
    #[serde(default)]
    pub policies: Option<Spanned<super::policies::RawPolicies>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub addr: Spanned<String>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub redirect_https: Option<RawRedirect>,
    /// Accept HTTP/2 without TLS (prior knowledge). Off by default.
    #[serde(default)]
    pub h2c: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRedirect {
    Enabled(bool),
    Port { port: u16 },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    /// Extra certificates chosen by SNI; `cert`/`key` above is the default.
    #[serde(default)]
    pub sni: Vec<RawSniCert>,
    #[serde(default)]
    pub min_version: Option<Spanned<String>>,
    #[serde(default)]
    pub client_auth: Option<RawClientAuth>,
    /// `Strict-Transport-Security` max-age; `0s` turns HSTS off.
    #[serde(default)]
    pub hsts_max_age: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSniCert {
    pub hosts: Vec<Spanned<String>>,
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub ca: Spanned<String>,
    #[serde(default = "yes")]
    pub required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub addr: Spanned<String>,
    /// Environment variable holding the bearer token the admin API requires. Mandatory when `addr` is not loopback.
    #[serde(default)]
    pub token_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "d_max_conn")]
    pub max_connections: usize,
    #[serde(default = "d_max_conn_ip")]
    pub max_connections_per_ip: usize,
    #[serde(default = "d_header_timeout")]
    pub header_read_timeout: Dur,
    #[serde(default = "d_idle")]
    pub idle_timeout: Dur,
    #[serde(default = "d_header_bytes")]
    pub max_header_bytes: ByteSize,
    #[serde(default = "d_uri_bytes")]
    pub max_uri_bytes: ByteSize,
    #[serde(default = "d_body_bytes")]
    pub max_body_bytes: ByteSize,
    /// A body the gateway reads whole (for inspection) must arrive within this.
    #[serde(default = "d_body_timeout")]
    pub body_read_timeout: Dur,
    #[serde(default)]
    pub ip_allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub ip_deny: Vec<Spanned<String>>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_connections: d_max_conn(),
            max_connections_per_ip: d_max_conn_ip(),
            header_read_timeout: d_header_timeout(),
            idle_timeout: d_idle(),
            max_header_bytes: d_header_bytes(),
            max_uri_bytes: d_uri_bytes(),
            max_body_bytes: d_body_bytes(),
            body_read_timeout: d_body_timeout(),
            ip_allow: Vec::new(),
            ip_deny: Vec::new(),
        }
    }
}

fn d_max_conn() -> usize {
    10_000
}
fn d_max_conn_ip() -> usize {
    512
}
fn d_header_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn d_idle() -> Dur {
    Dur(Duration::from_secs(60))
}
fn d_header_bytes() -> ByteSize {
    ByteSize(16 * 1024)
}
fn d_uri_bytes() -> ByteSize {
    ByteSize(8 * 1024)
}
fn d_body_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}
fn d_body_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastInFlight,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub targets: Vec<Spanned<String>>,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Extra attempts on another target when connecting fails, for idempotent requests without a body.
    #[serde(default = "d_retries")]
    pub retries: u32,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub passive_ejection: RawPassive,
    #[serde(default)]
    pub circuit_breaker: RawCircuit,
    #[serde(default)]
    pub tls: Option<RawUpstreamTls>,
    /// Send the client's `Host` upstream instead of the target's authority.
    #[serde(default)]
    pub preserve_host: bool,
    #[serde(default)]
    pub pool: RawPool,
    /// Most requests in flight to this upstream, with a short queue.
    #[serde(default)]
    pub load_shedding: Option<super::raw_throttle::RawShed>,
}

fn d_retries() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default = "d_connect")]
    pub connect: Dur,
    /// Until the upstream's response headers arrive.
    #[serde(default = "d_response")]
    pub response: Dur,
    /// Whole exchange including the response body; unset = no limit beyond `response` (streams may be long).
    #[serde(default)]
    pub total: Option<Dur>,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts { connect: d_connect(), response: d_response(), total: None }
    }
}

fn d_connect() -> Dur {
    Dur(Duration::from_secs(3))
}
fn d_response() -> Dur {
    Dur(Duration::from_secs(30))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(default = "d_hc_path")]
    pub path: String,
    #[serde(default = "d_hc_interval")]
    pub interval: Dur,
    #[serde(default = "d_hc_timeout")]
    pub timeout: Dur,
    /// Consecutive successes before an unhealthy target serves again.
    #[serde(default = "d_two")]
    pub healthy_after: u32,
    /// Consecutive failures before a target is taken out.
    #[serde(default = "d_two")]
    pub unhealthy_after: u32,
}

fn d_hc_path() -> String {
    "/".into()
}
fn d_hc_interval() -> Dur {
    Dur(Duration::from_secs(5))
}
fn d_hc_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}
fn d_two() -> u32 {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPassive {
    /// Consecutive connect failures or 5xx-free transport errors before a target is ejected; 0 disables.
    #[serde(default = "d_passive_failures")]
    pub failures: u32,
    #[serde(default = "d_eject")]
    pub eject_for: Dur,
}

impl Default for RawPassive {
    fn default() -> Self {
        RawPassive { failures: d_passive_failures(), eject_for: d_eject() }
    }
}

fn d_passive_failures() -> u32 {
    3
}
fn d_eject() -> Dur {
    Dur(Duration::from_secs(10))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuit {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Share of failed exchanges (transport errors, timeouts, 5xx) in a window that opens the circuit.
    #[serde(default = "d_ratio")]
    pub failure_ratio: f64,
    /// Fewest exchanges in a window before the ratio is trusted.
    #[serde(default = "d_min_requests")]
    pub min_requests: u32,
    #[serde(default = "d_window")]
    pub window: Dur,
    #[serde(default = "d_open_for")]
    pub open_for: Dur,
}

impl Default for RawCircuit {
    fn default() -> Self {
        RawCircuit {
            enabled: true,
            failure_ratio: d_ratio(),
            min_requests: d_min_requests(),
            window: d_window(),
            open_for: d_open_for(),
        }
    }
}

fn d_ratio() -> f64 {
    0.5
}
fn d_min_requests() -> u32 {
    20
}
fn d_window() -> Dur {
    Dur(Duration::from_secs(10))
}
fn d_open_for() -> Dur {
    Dur(Duration::from_secs(15))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// CA bundle that signs the upstream's certificate; default: the system roots.
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    #[serde(default)]
    pub client_cert: Option<Spanned<String>>,
    #[serde(default)]
    pub client_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    #[serde(default = "d_pool_idle")]
    pub idle_timeout: Dur,
    #[serde(default = "d_pool_max")]
    pub max_idle_per_target: usize,
}

impl Default for RawPool {
    fn default() -> Self {
        RawPool { idle_timeout: d_pool_idle(), max_idle_per_target: d_pool_max() }
    }
}

fn d_pool_idle() -> Dur {
    Dur(Duration::from_secs(60))
}
fn d_pool_max() -> usize {
    256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub id: Option<Spanned<String>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    pub upstream: Spanned<String>,
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    #[serde(default)]
    pub modes: RawModes,
    /// Overrides of the global `inspect` settings for this route; `exclude` adds to the global list.
    #[serde(default)]
    pub inspect: RawInspect,
    /// Cross-origin access for browsers; none unless listed.
    #[serde(default)]
    pub cors: Option<RawCors>,
    /// Required: `none` for a public route, or the accepted methods (any-of): `[jwt]`, `[api_key, jwt]`, `[mtls]`.
    #[serde(default)]
    pub auth: Option<Spanned<super::identity::RawAuth>>,
    /// Function level: the caller needs one of these roles.
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    /// Scopes the caller needs, for every method or per method.
    #[serde(default)]
    pub scopes: Option<Spanned<super::identity::RawScopes>>,
    /// Object level: an id in the request must belong to the caller.
    #[serde(default)]
    pub owner: Option<Spanned<super::identity::RawOwner>>,
    /// Identity-sensitive body fields only some roles may set.
    #[serde(default)]
    pub mass_assignment: Option<Spanned<super::identity::RawMassAssignment>>,
    /// The positive model: only the operations of this OpenAPI document pass, each checked against it.
    #[serde(default)]
    pub openapi: Option<RawOpenApi>,
    /// Overrides of `respond.redact` for this route (rules and fields merge over the global ones).
    #[serde(default)]
    pub redact: Option<RawRedact>,
    /// Bulk exfiltration guard: JSON records returned per caller per window.
    #[serde(default)]
    pub exfiltration: Option<RawExfiltration>,
    /// Rate limits, quotas and distinct-value limits, checked in order.
    #[serde(default)]
    pub limits: Vec<super::raw_throttle::RawLimit>,
    /// Units of every limit one request of this route consumes (default 1).
    #[serde(default)]
    pub cost: Option<Spanned<u32>>,
    /// Overrides `state.on_failure` for this route's limits.
    #[serde(default)]
    pub limits_on_failure: Option<crate::state::FailureMode>,
    /// Most requests in flight on this route, with a short queue.
    #[serde(default)]
    pub load_shedding: Option<super::raw_throttle::RawShed>,
    /// Cedar policies for this route (replace the global ones).
    #[serde(default)]
    pub policies: Option<Spanned<super::policies::RawPolicies>>,
    /// A login route: the username in the body is counted by the brute-force lockout.
    #[serde(default)]
    pub login: Option<Spanned<super::identity::RawLogin>>,
}

/// A route's OpenAPI document and how it is applied.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenApi {
    /// Path of the OpenAPI 3.0/3.1 document (YAML or JSON), relative to the config file.
    pub spec: Spanned<String>,
    /// Refuse request-body properties the schema does not declare (mass assignment) and query parameters the
    /// operation does not declare. Default: true.
    #[serde(default = "yes")]
    pub strict: bool,
    /// Overrides `strict` for query parameters only (e.g. `false` to let tracking parameters through while
    /// bodies stay strict).
    #[serde(default)]
    pub strict_query: Option<bool>,
    /// Prefix of every path in the spec as the gateway sees it (e.g. `/v1`); default none.
    #[serde(default)]
    pub base_path: Option<Spanned<String>>,
    /// JSON responses: `filter` (default) removes undeclared properties, `block` refuses such responses,
    /// `off` streams them untouched. `writeOnly` properties are removed in `filter` and `block`.
    #[serde(default)]
    pub responses: Option<Spanned<String>>,
    /// Largest JSON response buffered for the filter (default 4MiB); a bigger one is refused.
    #[serde(default)]
    pub max_response_bytes: Option<ByteSize>,
}

/// Secret and PII redaction in JSON and text response bodies. Every field is optional so the same shape serves
/// as global settings (`respond.redact`) and as a route's overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedact {
    /// On by default for JSON and text responses.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// What each detector does: `mask`, `remove` or `off`.
    #[serde(default)]
    pub rules: RawRedactRules,
    /// Sensitive field names (replaces the default list); `*suffix` and `prefix*` patterns allowed.
    #[serde(default)]
    pub fields: Option<Vec<Spanned<String>>>,
    /// More field names on top of `fields` (or the defaults).
    #[serde(default)]
    pub extra_fields: Vec<Spanned<String>>,
    /// Largest response body read for redaction (compressed and decoded).
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    /// Past the cap: `pass` (send unredacted, record an event) or `block` (502).
    #[serde(default)]
    pub over_limit: Option<crate::stages::respond::body::OverLimit>,
}

/// One action per detector; unset ones inherit.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedactRules {
    #[serde(default)]
    pub card: Option<RuleAction>,
    #[serde(default)]
    pub iban: Option<RuleAction>,
    #[serde(default)]
    pub ssn: Option<RuleAction>,
    #[serde(default)]
    pub private_key: Option<RuleAction>,
    #[serde(default)]
    pub cloud_key: Option<RuleAction>,
    #[serde(default)]
    pub jwt: Option<RuleAction>,
    #[serde(default)]
    pub password_hash: Option<RuleAction>,
    #[serde(default)]
    pub field: Option<RuleAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Mask,
    Remove,
    Off,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExfiltration {
    pub max_records: Spanned<u64>,
    #[serde(default = "d_exfil_window")]
    pub window: Dur,
    #[serde(default = "d_exfil_action")]
    pub action: crate::stages::respond::exfil::ExfilAction,
}

fn d_exfil_window() -> Dur {
    Dur(Duration::from_secs(60))
}
fn d_exfil_action() -> crate::stages::respond::exfil::ExfilAction {
    crate::stages::respond::exfil::ExfilAction::Log
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Exact origins (`https://app.example.com`), or `["*"]` for any origin (never with credentials).
    pub origins: Spanned<Vec<String>>,
    /// Methods a cross-origin request may use; default: the route's methods.
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    /// Request headers a cross-origin request may send.
    #[serde(default)]
    pub headers: Vec<Spanned<String>>,
    /// Response headers a browser script may read.
    #[serde(default)]
    pub expose: Vec<Spanned<String>>,
    #[serde(default)]
    pub credentials: bool,
    #[serde(default)]
    pub max_age: Option<Dur>,
}

/// Injection detection settings (the inspect stage's negative model). Every field is optional so the same
/// shape serves as global defaults and as a route's overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInspect {
    /// Inspection on (default) or off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Sensitivity 1 (default, fewest false positives), 2 or 3.
    #[serde(default)]
    pub level: Option<Spanned<u8>>,
    /// Request headers whose values are scanned; `cookie` is split into its pairs.
    #[serde(default)]
    pub headers: Option<Vec<Spanned<String>>>,
    /// Fields never scanned: `query:NAME`, `json:NAME`, `form:NAME`, `header:NAME`, `cookie:NAME`.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Largest JSON, form or XML body read for inspection; bigger ones are refused with 413.
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    /// Hostile-JSON limits for inspected bodies.
    #[serde(default)]
    pub json: Option<RawJsonLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonLimits {
    #[serde(default)]
    pub max_depth: Option<usize>,
    #[serde(default)]
    pub max_string_bytes: Option<ByteSize>,
    #[serde(default)]
    pub max_array_items: Option<usize>,
    #[serde(default)]
    pub max_object_keys: Option<usize>,
}

/// Response hardening (all on by default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    /// Replace upstream 5xx bodies with a generic problem+json (the status is kept).
    #[serde(default = "yes")]
    pub hide_upstream_errors: bool,
    /// Also replace upstream 4xx bodies.
    #[serde(default)]
    pub hide_client_errors: bool,
    /// More response headers to remove, on top of `Server`, `X-Powered-By`, `X-AspNet-Version` … and `X-Debug-*`.
    #[serde(default)]
    pub strip_headers: Vec<Spanned<String>>,
    /// Add `X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy` and an API `Content-Security-Policy`.
    #[serde(default = "yes")]
    pub security_headers: bool,
    /// Secret/PII redaction in response bodies (on by default); routes override it with their own `redact`.
    #[serde(default)]
    pub redact: RawRedact,
}

impl Default for RawRespond {
    fn default() -> Self {
        RawRespond {
            hide_upstream_errors: true,
            hide_client_errors: false,
            strip_headers: Vec::new(),
            security_headers: true,
            redact: RawRedact::default(),
        }
    }
}

/// Per-stage enforce/monitor switches; unset stages inherit (route → global → enforce).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModes {
    #[serde(default)]
    pub admit: Option<Mode>,
    #[serde(default)]
    pub identify: Option<Mode>,
    #[serde(default)]
    pub authorize: Option<Mode>,
    #[serde(default)]
    pub throttle: Option<Mode>,
    #[serde(default)]
    pub inspect: Option<Mode>,
    #[serde(default)]
    pub respond: Option<Mode>,
}

/// A duration written as `250ms`, `10s`, `5m`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Secs(u64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Repr::Text(t) => humantime::parse_duration(t.trim()).map(Dur).map_err(|e| {
                serde::de::Error::custom(format!("invalid duration `{t}` ({e}); write e.g. `250ms`, `10s`, `5m`"))
            }),
        }
    }
}

/// A size written as a number of bytes or with a unit: `512`, `16KiB`, `1MiB`, `10MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Option<u64> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" | "k" => 1024,
            "mb" => 1_000_000,
            "mib" | "m" => 1024 * 1024,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1024 * 1024 * 1024,
            _ => return None,
        };
        n.checked_mul(mult)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bytes(u64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Bytes(b) => Ok(ByteSize(b)),
            Repr::Text(t) => ByteSize::parse(&t).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!("invalid size `{t}`; write e.g. `512`, `16KiB`, `1MiB`"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("512"), Some(512));
        assert_eq!(ByteSize::parse("16KiB"), Some(16384));
        assert_eq!(ByteSize::parse("1 MiB"), Some(1 << 20));
        assert_eq!(ByteSize::parse("10MB"), Some(10_000_000));
        assert_eq!(ByteSize::parse("lots"), None);
        assert_eq!(ByteSize::parse("99999999999999999999GiB"), None);
    }
}
