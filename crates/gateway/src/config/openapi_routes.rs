//! The top-level `openapi:` shorthand: protect a whole API from its spec in a few lines. Each entry becomes one
//! route — `{base_path}/*`, every standard method, the spec as its positive model — so the spec alone decides
//! what exists under it, and the entry carries the route-level options (upstream, auth, modes, inspect, CORS,
//! roles, scopes, redaction …). `auth` stays mandatory: a spec does not say who may call the API.
//!
//! ```yaml
//! openapi:
//!   - spec: specs/users.yaml
//!     upstream: users
//!     auth: [jwt]
//! ```

use super::compile::Errs;
use super::raw::{ByteSize, RawCors, RawExfiltration, RawInspect, RawModes, RawOpenApi, RawRedact, RawRoute};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One `openapi:` entry as written: the spec settings of a route's `openapi:` and the route-level options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenApiRoute {
    /// Path of the OpenAPI 3.0/3.1 document, relative to the config file.
    pub spec: Spanned<String>,
    pub upstream: Spanned<String>,
    /// Required: `none`, or the accepted methods (`[jwt]`, `[api_key, jwt]`, `[mtls]`).
    #[serde(default)]
    pub auth: Option<Spanned<super::identity::RawAuth>>,
    /// Route id in logs and metrics; default `openapi:<spec>`.
    #[serde(default)]
    pub id: Option<Spanned<String>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    pub strict: bool,
    #[serde(default)]
    pub strict_query: Option<bool>,
    /// The spec's paths live under this prefix as the gateway sees them; the route is `{base_path}/*`.
    #[serde(default)]
    pub base_path: Option<Spanned<String>>,
    #[serde(default)]
    pub responses: Option<Spanned<String>>,
    #[serde(default)]
    pub max_response_bytes: Option<ByteSize>,
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    #[serde(default)]
    pub modes: RawModes,
    #[serde(default)]
    pub inspect: RawInspect,
    #[serde(default)]
    pub cors: Option<RawCors>,
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub scopes: Option<Spanned<super::identity::RawScopes>>,
    #[serde(default)]
    pub mass_assignment: Option<Spanned<super::identity::RawMassAssignment>>,
    #[serde(default)]
    pub redact: Option<RawRedact>,
    #[serde(default)]
    pub exfiltration: Option<RawExfiltration>,
    /// Rate limits, quotas and distinct-value limits for the whole API, checked in order.
    #[serde(default)]
    pub limits: Vec<super::raw_throttle::RawLimit>,
    #[serde(default)]
    pub cost: Option<Spanned<u32>>,
    #[serde(default)]
    pub limits_on_failure: Option<crate::state::FailureMode>,
    #[serde(default)]
    pub load_shedding: Option<super::raw_throttle::RawShed>,
    /// Cedar policies for this API (replacing the global `policies:`).
    #[serde(default)]
    pub policies: Option<Spanned<super::policies::RawPolicies>>,
}

fn yes() -> bool {
    true
}

/// The routes the entries stand for. An entry without `auth` is reported (at its `spec:` line) and makes no
/// route: the gateway stays closed rather than guess.
pub(super) fn expand(errs: &mut Errs<'_>, entries: Vec<RawOpenApiRoute>) -> Vec<RawRoute> {
    let mut routes = Vec::with_capacity(entries.len());
    // Default ids: `openapi:<spec>`, numbered when one spec serves several entries (e.g. two base paths).
    let mut ids = std::collections::HashSet::new();
    for e in entries {
        if e.auth.is_none() {
            errs.at(
                &e.spec,
                format!("the API of `{}` does not say who may call it", e.spec.value),
                Some(
                    "add `auth: none` for a public API, or the accepted methods, e.g. `auth: [jwt]`, `auth: [api_key]`",
                ),
            );
            continue;
        }
        // Synthesized fields point at the entry's `spec:` line, so errors about the route land there.
        let (referenced, defined) = (e.spec.referenced, e.spec.defined);
        let at = |value: String| Spanned::new(value, referenced, defined);
        let base = e.base_path.as_ref().map_or("", |b| b.value.trim().trim_end_matches('/'));
        let path = at(format!("{base}/*"));
        let methods = vec![at("ANY".to_string())];
        let id = e.id.unwrap_or_else(|| {
            let base_id = format!("openapi:{}", e.spec.value.trim());
            let mut id = base_id.clone();
            let mut n = 2;
            while !ids.insert(id.clone()) {
                id = format!("{base_id}#{n}");
                n += 1;
            }
            at(id)
        });
        routes.push(RawRoute {
            id: Some(id),
            hosts: e.hosts,
            path,
            methods,
            upstream: e.upstream,
            max_body_bytes: e.max_body_bytes,
            modes: e.modes,
            inspect: e.inspect,
            cors: e.cors,
            auth: e.auth,
            roles: e.roles,
            scopes: e.scopes,
            owner: None,
            mass_assignment: e.mass_assignment,
            openapi: Some(RawOpenApi {
                spec: e.spec,
                strict: e.strict,
                strict_query: e.strict_query,
                base_path: e.base_path,
                responses: e.responses,
                max_response_bytes: e.max_response_bytes,
            }),
            redact: e.redact,
            exfiltration: e.exfiltration,
            limits: e.limits,
            cost: e.cost,
            limits_on_failure: e.limits_on_failure,
            load_shedding: e.load_shedding,
            policies: e.policies,
            login: None,
        });
    }
    routes
}
