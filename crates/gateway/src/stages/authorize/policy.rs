//! The request path's view of Cedar policies (`policies:` globally or per route): evaluated after the built-in
//! checks, a deny is 403 `authz.policy`. Without the `cedar` cargo feature the type is uninhabited, so a
//! configuration that asks for policies is refused at load and nothing here runs.

use crate::pipeline::Verdict;
use crate::stages::identify::Identity;
use std::net::IpAddr;
use std::path::Path;

/// One request as the policies see it: what the proxy has after routing and identify.
pub struct PolicyInput<'a> {
    pub identity: Option<&'a Identity>,
    pub route_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub params: &'a [(String, String)],
    pub query: Option<&'a str>,
    pub client_ip: IpAddr,
    pub tls: bool,
}

/// Loaded, validated Cedar policies for a route.
#[cfg(feature = "cedar")]
#[derive(Debug)]
pub struct RoutePolicies(super::cedar::CedarPolicies);

/// Built without Cedar: no value exists.
#[cfg(not(feature = "cedar"))]
#[derive(Debug)]
pub enum RoutePolicies {}

/// A policy or schema problem, located in its own file (line 0 when Cedar gives no location).
pub struct PolicyLoadError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl RoutePolicies {
    /// Reads and validates policy files (and an optional schema): done at config load, never on the request path.
    #[cfg(feature = "cedar")]
    pub fn load(files: &[&Path], schema: Option<&Path>, claims: &[String]) -> Result<Self, Vec<PolicyLoadError>> {
        super::cedar::CedarPolicies::load(files, schema, claims).map(RoutePolicies).map_err(|errs| {
            errs.into_iter()
                .map(|e| PolicyLoadError { file: e.file, line: e.line, column: e.column, message: e.message })
                .collect()
        })
    }

    #[cfg(not(feature = "cedar"))]
    pub fn load(_: &[&Path], _: Option<&Path>, _: &[String]) -> Result<Self, Vec<PolicyLoadError>> {
        Err(vec![PolicyLoadError {
            file: String::new(),
            line: 0,
            column: 0,
            message: "this build has no Cedar support: rebuild with the `cedar` feature (on by default)".into(),
        }])
    }

    /// Cedar's decision as a verdict: deny unless a `permit` matches and no `forbid` does.
    #[cfg(feature = "cedar")]
    pub fn check(&self, input: &PolicyInput<'_>) -> Verdict {
        let params: Vec<(&str, &str)> = input.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let decoded: Vec<(String, String)> = input
            .query
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let d = |s: &str| String::from_utf8_lossy(&detect::form_decode(s.as_bytes())).into_owned();
                (d(k), d(v))
            })
            .collect();
        let query: Vec<(&str, &str)> = decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let decision = self.0.decide(&super::cedar::PolicyRequest {
            identity: input.identity,
            route_id: input.route_id,
            method: input.method,
            path: input.path,
            path_params: &params,
            query: &query,
            client_ip: input.client_ip,
            tls: input.tls,
        });
        if !decision.errors.is_empty() {
            tracing::warn!(target: "rampart::security", route = input.route_id, errors = %decision.errors.join("; "), "cedar policies failed to evaluate (skipped)");
        }
        if decision.allowed {
            return Verdict::Continue;
        }
        let detail = if decision.policies.is_empty() {
            "denied by default: no policy permits this request".to_string()
        } else {
            format!("forbidden by policy {}", decision.policies.join(", "))
        };
        Verdict::Reject(crate::pipeline::Rejection::new(
            crate::pipeline::Code::Authorize(super::AuthzCode::Policy),
            detail,
        ))
    }

    #[cfg(not(feature = "cedar"))]
    pub fn check(&self, _: &PolicyInput<'_>) -> Verdict {
        match *self {}
    }
}
