//! Optional Cedar policies: fine-grained authorization for rules the built-in scope, role and ownership checks
//! cannot express ("partners may only POST orders from their registered network during business hours").
//!
//! Policies (and an optional schema) are read and checked when the configuration loads; a policy that does not
//! parse, or does not validate against the schema, refuses the configuration with `file:line:col`. On the request
//! path a request is turned into Cedar's vocabulary:
//!
//! | Cedar | from the request |
//! |---|---|
//! | principal | `Consumer::"<consumer id>"` with `scopes`, `roles` (sets of strings), `auth_method`, `claims` (the claims named in config); parents `Role::"<role>"` for each role, so `principal in Role::"admin"` works. `Anonymous::"anonymous"` on a public route. |
//! | action | `Action::"<METHOD>"` |
//! | resource | `Route::"<route id>"` with `path` and `params` (the path parameters) |
//! | context | `ip` (an `ipaddr`), `method`, `path`, `query` (first value of each parameter), `tls` |
//!
//! Cedar's answer is deny unless a `permit` matches and no `forbid` does. The ids of the deciding policies go to
//! the log: each policy's `@id("…")` annotation, or `file:line` where it starts.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use http::StatusCode;
use miette::Diagnostic;

use crate::stages::identify::Identity;

/// The stable code of a Cedar deny.
pub const CEDAR_DENY_CODE: &str = "authz.policy";
/// Its status.
pub const CEDAR_DENY_STATUS: StatusCode = StatusCode::FORBIDDEN;

/// A policy or schema problem found at load, located in its file where Cedar gives a location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct CedarLoadError {
    pub file: String,
    /// 1-based; 0 when Cedar gives no location (the lead maps these to the config line that names the file).
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Loaded, validated policies, ready to evaluate.
#[derive(Debug)]
pub struct CedarPolicies {
    policies: PolicySet,
    authorizer: Authorizer,
    claims: Vec<String>,
    consumer_type: EntityTypeName,
    anonymous_type: EntityTypeName,
    role_type: EntityTypeName,
    action_type: EntityTypeName,
    route_type: EntityTypeName,
}

/// One request as Cedar sees it: plain inputs the proxy already has after routing and identify.
#[derive(Debug, Clone, Copy)]
pub struct PolicyRequest<'a> {
    pub identity: Option<&'a Identity>,
    pub route_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub path_params: &'a [(&'a str, &'a str)],
    /// Decoded query parameters in order; the first value of a repeated name is the one Cedar sees.
    pub query: &'a [(&'a str, &'a str)],
    pub client_ip: IpAddr,
    pub tls: bool,
}

/// Cedar's answer, with what the log needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CedarDecision {
    pub allowed: bool,
    /// The policies that decided: the matching permits on allow, the matching forbids on deny (empty on a
    /// default deny — nothing permitted it).
    pub policies: Vec<String>,
    /// Policies that failed to evaluate for this request (they are skipped, which can only deny more).
    pub errors: Vec<String>,
}

impl CedarPolicies {
    /// Reads policy files and an optional schema (Cedar syntax, or JSON when the file ends in `.json`).
    pub fn load(
        policy_files: &[&Path],
        schema_file: Option<&Path>,
        claims: &[String],
    ) -> Result<Self, Vec<CedarLoadError>> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| {
                vec![CedarLoadError { file: p.display().to_string(), line: 0, column: 0, message: e.to_string() }]
            })
        };
        let mut sources = Vec::with_capacity(policy_files.len());
        for p in policy_files {
            sources.push((p.display().to_string(), read(p)?));
        }
        let schema = match schema_file {
            Some(p) => Some((p.display().to_string(), read(p)?)),
            None => None,
        };
        let sources: Vec<(&str, &str)> = sources.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        Self::from_sources(&sources, schema.as_ref().map(|(n, t)| (n.as_str(), t.as_str())), claims)
    }

    /// As [`Self::load`], from (name, text) pairs.
    pub fn from_sources(
        policy_sources: &[(&str, &str)],
        schema_source: Option<(&str, &str)>,
        claims: &[String],
    ) -> Result<Self, Vec<CedarLoadError>> {
        let mut errors = Vec::new();
        let mut policies = PolicySet::new();
        let mut texts: HashMap<PolicyId, (&str, &str)> = HashMap::new();
        for (file, text) in policy_sources {
            let parsed = match PolicySet::from_str(text) {
                Ok(set) => set,
                Err(e) => {
                    errors.extend(located(file, text, &e));
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                errors.push(CedarLoadError {
                    file: file.to_string(),
                    line: 0,
                    column: 0,
                    message: "policy templates (?principal, ?resource) are not supported; write static policies".into(),
                });
                continue;
            }
            for policy in parsed.policies() {
                let id = match policy.annotation("id") {
                    Some(id) => id.to_string(),
                    None => {
                        let line = policy.to_cedar().and_then(|t| text.find(&t)).map_or(0, |at| line_col(text, at).0);
                        format!("{file}:{line}")
                    }
                };
                let policy = policy.new_id(PolicyId::new(&id));
                texts.insert(policy.id().clone(), (file, text));
                if let Err(e) = policies.add(policy) {
                    errors.push(CedarLoadError {
                        file: file.to_string(),
                        line: 0,
                        column: 0,
                        message: format!("policy id {id:?}: {e}"),
                    });
                }
            }
        }
        if let Some((file, text)) = schema_source {
            match parse_schema(file, text) {
                Ok(schema) => {
                    let result = Validator::new(schema).validate(&policies, ValidationMode::Strict);
                    for e in result.validation_errors() {
                        let (file, text) = texts.get(e.policy_id()).copied().unwrap_or((file, ""));
                        errors.extend(located(file, text, e));
                    }
                }
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let name = |n: &str| EntityTypeName::from_str(n).map_err(|e| vec![plain("(built-in)", e.to_string())]);
        Ok(CedarPolicies {
            policies,
            authorizer: Authorizer::new(),
            claims: claims.to_vec(),
            consumer_type: name("Consumer")?,
            anonymous_type: name("Anonymous")?,
            role_type: name("Role")?,
            action_type: name("Action")?,
            route_type: name("Route")?,
        })
    }

    /// Number of loaded policies.
    pub fn len(&self) -> usize {
        self.policies.policies().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evaluates one request. A request that cannot even be expressed in Cedar (which the shapes above rule out)
    /// is denied, with the reason in `errors`.
    pub fn decide(&self, req: &PolicyRequest<'_>) -> CedarDecision {
        match self.build(req) {
            Ok((request, entities)) => {
                let response = self.authorizer.is_authorized(&request, &self.policies, &entities);
                let diagnostics = response.diagnostics();
                let mut policies: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
                policies.sort();
                CedarDecision {
                    allowed: response.decision() == Decision::Allow,
                    policies,
                    errors: diagnostics.errors().map(ToString::to_string).collect(),
                }
            }
            Err(e) => CedarDecision { allowed: false, policies: Vec::new(), errors: vec![e] },
        }
    }

    fn build(&self, req: &PolicyRequest<'_>) -> Result<(Request, Entities), String> {
        let strings = |v: &[std::sync::Arc<str>]| {
            RestrictedExpression::new_set(v.iter().map(|s| RestrictedExpression::new_string(s.to_string())))
        };
        let mut entities = Vec::with_capacity(2);
        let principal = match req.identity {
            Some(identity) => {
                let uid = EntityUid::from_type_name_and_id(
                    self.consumer_type.clone(),
                    EntityId::new(identity.consumer.as_ref()),
                );
                let claims = self
                    .claims
                    .iter()
                    .filter_map(|name| identity.claims.get(name).and_then(json_to_cedar).map(|v| (name.clone(), v)));
                let claims = RestrictedExpression::new_record(claims).map_err(|e| e.to_string())?;
                let attrs = HashMap::from([
                    ("scopes".to_string(), strings(&identity.scopes)),
                    ("roles".to_string(), strings(&identity.roles)),
                    ("auth_method".to_string(), RestrictedExpression::new_string(identity.method.as_str().into())),
                    ("claims".to_string(), claims),
                ]);
                let parents: HashSet<EntityUid> = identity
                    .roles
                    .iter()
                    .map(|r| EntityUid::from_type_name_and_id(self.role_type.clone(), EntityId::new(r.as_ref())))
                    .collect();
                entities.push(Entity::new(uid.clone(), attrs, parents).map_err(|e| e.to_string())?);
                uid
            }
            None => EntityUid::from_type_name_and_id(self.anonymous_type.clone(), EntityId::new("anonymous")),
        };
        let action = EntityUid::from_type_name_and_id(self.action_type.clone(), EntityId::new(req.method));
        let resource = EntityUid::from_type_name_and_id(self.route_type.clone(), EntityId::new(req.route_id));
        let params = pairs_record(req.path_params)?;
        entities.push(
            Entity::new(
                resource.clone(),
                HashMap::from([
                    ("path".to_string(), RestrictedExpression::new_string(req.path.to_string())),
                    ("params".to_string(), params),
                ]),
                HashSet::new(),
            )
            .map_err(|e| e.to_string())?,
        );
        let context = Context::from_pairs([
            ("ip".to_string(), RestrictedExpression::new_ip(req.client_ip.to_string())),
            ("method".to_string(), RestrictedExpression::new_string(req.method.to_string())),
            ("path".to_string(), RestrictedExpression::new_string(req.path.to_string())),
            ("query".to_string(), pairs_record(req.query)?),
            ("tls".to_string(), RestrictedExpression::new_bool(req.tls)),
        ])
        .map_err(|e| e.to_string())?;
        let request = Request::new(principal, action, resource, context, None).map_err(|e| e.to_string())?;
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

/// A record of string values; the first occurrence of a repeated name wins.
fn pairs_record(pairs: &[(&str, &str)]) -> Result<RestrictedExpression, String> {
    let mut seen = HashSet::with_capacity(pairs.len());
    let fields: Vec<(String, RestrictedExpression)> = pairs
        .iter()
        .filter(|(k, _)| seen.insert(*k))
        .map(|(k, v)| (k.to_string(), RestrictedExpression::new_string(v.to_string())))
        .collect();
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

/// A claim in Cedar terms: strings, integers, booleans and arrays of them; anything else is left out.
fn json_to_cedar(value: &serde_json::Value) -> Option<RestrictedExpression> {
    Some(match value {
        serde_json::Value::String(s) => RestrictedExpression::new_string(s.clone()),
        serde_json::Value::Bool(b) => RestrictedExpression::new_bool(*b),
        serde_json::Value::Number(n) => RestrictedExpression::new_long(n.as_i64()?),
        serde_json::Value::Array(items) => RestrictedExpression::new_set(items.iter().filter_map(json_to_cedar)),
        _ => return None,
    })
}

fn parse_schema(file: &str, text: &str) -> Result<Schema, Vec<CedarLoadError>> {
    if file.ends_with(".json") {
        Schema::from_json_str(text).map_err(|e| located(file, text, &e))
    } else {
        Schema::from_cedarschema_str(text).map(|(schema, _warnings)| schema).map_err(|e| located(file, text, &e))
    }
}

fn plain(file: &str, message: String) -> CedarLoadError {
    CedarLoadError { file: file.to_string(), line: 0, column: 0, message }
}

/// One error per diagnostic (Cedar bundles several parse errors into one), each at its first labelled span.
fn located(file: &str, text: &str, diagnostic: &dyn Diagnostic) -> Vec<CedarLoadError> {
    let mut out = Vec::new();
    let related: Vec<&dyn Diagnostic> = diagnostic.related().map(|r| r.collect()).unwrap_or_default();
    let all: Vec<&dyn Diagnostic> = if related.is_empty() { vec![diagnostic] } else { related };
    for d in all {
        let offset = d.labels().and_then(|mut labels| labels.next()).map(|l| l.offset());
        let (line, column) = offset.map_or((0, 0), |o| line_col(text, o));
        let mut message = d.to_string();
        if let Some(help) = d.help() {
            message.push_str(&format!(" (hint: {help})"));
        }
        out.push(CedarLoadError { file: file.to_string(), line, column, message });
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (u64, u64) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() as u64 + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::identify::AuthMethod;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    const POLICIES: &str = r#"// Partners may read orders.
@id("partners-read")
permit(principal, action == Action::"GET", resource == Route::"orders")
when { principal.scopes.contains("orders:read") };

// Writers may create orders, from the partner network, over TLS.
permit(principal, action == Action::"POST", resource == Route::"orders")
when { principal.scopes.contains("orders:write") && context.ip.isInRange(ip("10.0.0.0/8")) && context.tls };

// Users may read only their own profile; admins any.
@id("own-profile")
permit(principal, action == Action::"GET", resource == Route::"user")
when { principal.claims has sub && resource.params.id == principal.claims.sub };
@id("admins")
permit(principal in Role::"admin", action, resource);

// Nobody deletes through the gateway, and dry runs are never billed.
@id("no-delete")
forbid(principal, action == Action::"DELETE", resource);
@id("tenant-query")
forbid(principal, action, resource == Route::"orders")
when { context.query has tenant && principal.claims has tenant && context.query.tenant != principal.claims.tenant };
"#;

    fn policies() -> CedarPolicies {
        CedarPolicies::from_sources(&[("policies/orders.cedar", POLICIES)], None, &["sub".into(), "tenant".into()])
            .unwrap()
    }

    fn identity(consumer: &str, scopes: &[&str], roles: &[&str], claims: serde_json::Value) -> Identity {
        Identity {
            consumer: Arc::from(consumer),
            method: AuthMethod::Jwt,
            scopes: scopes.iter().map(|s| Arc::from(*s)).collect(),
            roles: roles.iter().map(|s| Arc::from(*s)).collect(),
            claims,
        }
    }

    fn request<'a>(id: Option<&'a Identity>, route: &'a str, method: &'a str) -> PolicyRequest<'a> {
        PolicyRequest {
            identity: id,
            route_id: route,
            method,
            path: "/orders",
            path_params: &[],
            query: &[],
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            tls: true,
        }
    }

    #[test]
    fn permits_name_the_deciding_policy() {
        let p = policies();
        assert_eq!(p.len(), 6);
        let reader = identity("partner-a", &["orders:read"], &[], serde_json::Value::Null);
        let d = p.decide(&request(Some(&reader), "orders", "GET"));
        assert_eq!(d, CedarDecision { allowed: true, policies: vec!["partners-read".into()], errors: vec![] });
        // Without the scope: default deny, no deciding policy.
        let nobody = identity("partner-b", &[], &[], serde_json::Value::Null);
        let d = p.decide(&request(Some(&nobody), "orders", "GET"));
        assert!(!d.allowed);
        assert!(d.policies.is_empty());
        // Anonymous callers match no permit.
        assert!(!p.decide(&request(None, "orders", "GET")).allowed);
    }

    #[test]
    fn context_ip_and_tls_are_evaluated_and_unnamed_policies_are_file_and_line() {
        let p = policies();
        let writer = identity("partner-a", &["orders:write"], &[], serde_json::Value::Null);
        let ok = p.decide(&request(Some(&writer), "orders", "POST"));
        assert!(ok.allowed);
        assert_eq!(ok.policies, ["policies/orders.cedar:7"]);
        let outside = PolicyRequest {
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            ..request(Some(&writer), "orders", "POST")
        };
        assert!(!p.decide(&outside).allowed);
        let plain_http = PolicyRequest { tls: false, ..request(Some(&writer), "orders", "POST") };
        assert!(!p.decide(&plain_http).allowed);
    }

    #[test]
    fn path_params_and_claims_give_object_level_rules() {
        let p = policies();
        let alice = identity("alice", &[], &[], serde_json::json!({"sub": "u-1", "email": "a@example.com"}));
        let own = PolicyRequest { path_params: &[("id", "u-1")], ..request(Some(&alice), "user", "GET") };
        assert!(p.decide(&own).allowed);
        let other = PolicyRequest { path_params: &[("id", "u-2")], ..request(Some(&alice), "user", "GET") };
        assert!(!p.decide(&other).allowed);
        // Admins through the role hierarchy.
        let admin = identity("root", &[], &["admin"], serde_json::json!({"sub": "u-9"}));
        let d = p.decide(&PolicyRequest { path_params: &[("id", "u-2")], ..request(Some(&admin), "user", "GET") });
        assert_eq!(d.policies, ["admins"]);
    }

    #[test]
    fn forbid_overrides_permit_and_is_named() {
        let p = policies();
        let admin = identity("root", &[], &["admin"], serde_json::Value::Null);
        let d = p.decide(&request(Some(&admin), "orders", "DELETE"));
        assert!(!d.allowed);
        assert_eq!(d.policies, ["no-delete"]);
        let tenant = identity("t", &["orders:read"], &[], serde_json::json!({"tenant": "acme"}));
        let own = PolicyRequest { query: &[("tenant", "acme")], ..request(Some(&tenant), "orders", "GET") };
        assert!(p.decide(&own).allowed);
        let other = PolicyRequest {
            query: &[("tenant", "globex"), ("tenant", "acme")],
            ..request(Some(&tenant), "orders", "GET")
        };
        let d = p.decide(&other);
        assert!(!d.allowed, "the first value of a repeated parameter is the one evaluated");
        assert_eq!(d.policies, ["tenant-query"]);
    }

    #[test]
    fn parse_errors_point_at_file_line_and_column() {
        let bad = "permit(principal, action, resource);\n\npermit(principal, action resource);\n";
        let errs = CedarPolicies::from_sources(&[("p.cedar", bad)], None, &[]).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].file.as_str(), errs[0].line), ("p.cedar", 3), "{errs:?}");
        assert!(errs[0].column > 1, "{errs:?}");
        assert!(errs[0].to_string().starts_with("p.cedar:3:"), "{}", errs[0]);
    }

    #[test]
    fn templates_and_duplicate_ids_are_refused() {
        let t = "permit(principal == ?principal, action, resource);";
        assert!(CedarPolicies::from_sources(&[("t.cedar", t)], None, &[]).is_err());
        let dup = "@id(\"x\") permit(principal, action, resource);\n@id(\"x\") forbid(principal, action, resource);";
        let errs = CedarPolicies::from_sources(&[("d.cedar", dup)], None, &[]).unwrap_err();
        assert!(errs[0].message.contains("\"x\""), "{errs:?}");
    }

    const SCHEMA: &str = r#"
entity Role;
entity Anonymous;
entity Consumer in [Role] { scopes: Set<String>, roles: Set<String>, auth_method: String, claims: {} };
entity Route { path: String, params: {} };
action "GET", "POST", "DELETE" appliesTo { principal: [Consumer, Anonymous], resource: [Route], context: {} };
"#;

    #[test]
    fn policies_are_validated_against_a_schema_with_locations() {
        let ok = "permit(principal is Consumer, action == Action::\"GET\", resource) when { principal.scopes.contains(\"r\") };";
        let r = CedarPolicies::from_sources(&[("ok.cedar", ok)], Some(("s.cedarschema", SCHEMA)), &[]);
        assert!(r.is_ok(), "{:?}", r.err());
        let typo = "// a typo\npermit(principal is Consumer, action == Action::\"GET\", resource)\n  when { principal.scopez.contains(\"r\") };";
        let errs =
            CedarPolicies::from_sources(&[("typo.cedar", typo)], Some(("s.cedarschema", SCHEMA)), &[]).unwrap_err();
        assert_eq!(errs[0].file, "typo.cedar");
        assert_eq!(errs[0].line, 3, "{errs:?}");
        assert!(errs[0].message.contains("scopez"), "{errs:?}");
        let bad_schema = "entity Consumer {";
        let errs =
            CedarPolicies::from_sources(&[("ok.cedar", ok)], Some(("s.cedarschema", bad_schema)), &[]).unwrap_err();
        assert_eq!(errs[0].file, "s.cedarschema");
        assert_eq!(errs[0].line, 1, "{errs:?}");
    }

    #[test]
    fn load_reads_files_and_reports_missing_ones() {
        let dir = std::env::temp_dir().join(format!("rampart-cedar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.cedar");
        std::fs::write(&file, POLICIES).unwrap();
        let p = CedarPolicies::load(&[file.as_path()], None, &[]).unwrap();
        assert_eq!(p.len(), 6);
        let missing = dir.join("nope.cedar");
        let errs = CedarPolicies::load(&[missing.as_path()], None, &[]).unwrap_err();
        assert!(errs[0].file.ends_with("nope.cedar"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 99), (2, 3));
    }
}
