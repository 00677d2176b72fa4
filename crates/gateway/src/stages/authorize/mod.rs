//! authorize: least privilege for an identified caller, per route.
//!
//! - **function level** (`roles:`): the caller needs one of the roles (admin routes) → 403 `authz.function`;
//! - **scopes** (`scopes:`, for the whole route or per method): the caller needs every listed scope; a method the
//!   map does not cover is refused at config load, so nothing is open by omission → 403 `authz.scope`;
//! - **object level** (`owner:`): a path parameter, query parameter or JSON body field must equal an identity
//!   claim (or be in a claim list) unless the caller has an override role → 403 `authz.object` (BOLA);
//! - **mass assignment** (`mass_assignment:`): identity-sensitive body fields (`role`, `is_admin`, `owner_id`
//!   …, at any depth, any letter case) are refused unless the caller has a role that may set them → 403
//!   `authz.mass_assignment`.
//!
//! Checks that need the body run after it is read (the same buffered read inspection uses).

#[cfg(feature = "cedar")]
pub mod cedar;
pub mod policy;

use crate::pipeline::{Code, Owasp, Rejection, Verdict};
use crate::stages::identify::Identity;
use crate::stages::inspect::BodyKind;
use http::Method;
use serde_json::Value;
use std::sync::Arc;

/// Why an identified caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthzCode {
    Scope,
    Function,
    Object,
    MassAssignment,
    /// A Cedar policy denied the request.
    Policy,
}

impl AuthzCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzCode::Scope => "authz.scope",
            AuthzCode::Function => "authz.function",
            AuthzCode::Object => "authz.object",
            AuthzCode::MassAssignment => "authz.mass_assignment",
            AuthzCode::Policy => "authz.policy",
        }
    }

    pub fn owasp(self) -> Owasp {
        match self {
            AuthzCode::Scope | AuthzCode::Function | AuthzCode::Policy => Owasp::Api5BrokenFunctionLevelAuthorization,
            AuthzCode::Object => Owasp::Api1BrokenObjectLevelAuthorization,
            AuthzCode::MassAssignment => Owasp::Api3BrokenObjectPropertyLevelAuthorization,
        }
    }
}

fn deny(code: AuthzCode, detail: impl Into<String>) -> Verdict {
    Verdict::Reject(Rejection::new(Code::Authorize(code), detail))
}

/// Required scopes: the same for every method, or per method (every method of the route covered).
#[derive(Debug, Clone, Default)]
pub enum ScopeRule {
    #[default]
    None,
    All(Vec<Arc<str>>),
    PerMethod(Vec<(Method, Vec<Arc<str>>)>),
}

/// Where the object id an ownership check compares comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerSource {
    PathParam(String),
    Query(String),
    /// A JSON body field, as a dotted path (`owner.id`).
    Json(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct OwnerRule {
    pub source: OwnerSource,
    pub claim: String,
    pub override_roles: Vec<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct MassAssignmentRule {
    /// Lower-cased field names.
    pub fields: Vec<String>,
    /// Roles that may set them.
    pub roles: Vec<Arc<str>>,
}

/// A route's compiled authorization policy.
#[derive(Debug, Clone, Default)]
pub struct AuthzPolicy {
    pub roles: Vec<Arc<str>>,
    pub scopes: ScopeRule,
    pub owner: Option<OwnerRule>,
    pub mass_assignment: Option<MassAssignmentRule>,
    /// Cedar policies (`policies:`), evaluated after the checks above, for every caller (anonymous ones too).
    pub policies: Option<Arc<policy::RoutePolicies>>,
}

impl AuthzPolicy {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
            && matches!(self.scopes, ScopeRule::None)
            && self.owner.is_none()
            && self.mass_assignment.is_none()
            && self.policies.is_none()
    }

    /// Whether a check needs the request body.
    pub fn needs_body(&self) -> bool {
        self.mass_assignment.is_some() || self.owner.as_ref().is_some_and(|o| matches!(o.source, OwnerSource::Json(_)))
    }

    /// Everything decidable from the request head: roles, scopes, and ownership by path or query parameter.
    pub fn check_head(
        &self,
        id: &Identity,
        method: &Method,
        params: &[(String, String)],
        query: Option<&str>,
    ) -> Verdict {
        if !self.roles.is_empty() && !self.roles.iter().any(|r| id.has_role(r)) {
            return deny(
                AuthzCode::Function,
                format!("consumer {} lacks a role of {}", id.consumer, list(&self.roles)),
            );
        }
        let required: &[Arc<str>] = match &self.scopes {
            ScopeRule::None => &[],
            ScopeRule::All(s) => s,
            ScopeRule::PerMethod(m) => match m.iter().find(|(mm, _)| mm == method) {
                Some((_, s)) => s,
                None => return deny(AuthzCode::Scope, format!("no scope rule for {method}")),
            },
        };
        if let Some(missing) = required.iter().find(|s| !id.has_scope(s)) {
            return deny(AuthzCode::Scope, format!("consumer {} lacks scope {missing} for {method}", id.consumer));
        }
        if let Some(owner) = &self.owner {
            if owner.override_roles.iter().any(|r| id.has_role(r)) {
                return Verdict::Continue;
            }
            match &owner.source {
                OwnerSource::PathParam(name) => {
                    let value = params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
                    return owner.compare(id, value.into_iter().map(std::borrow::Cow::Borrowed).collect());
                }
                OwnerSource::Query(name) => {
                    let values: Vec<std::borrow::Cow<'_, str>> = query
                        .unwrap_or("")
                        .split('&')
                        .filter_map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                            (detect::form_decode(k.as_bytes()) == name.as_bytes()).then(|| {
                                std::borrow::Cow::Owned(
                                    String::from_utf8_lossy(&detect::form_decode(v.as_bytes())).into_owned(),
                                )
                            })
                        })
                        .collect();
                    return owner.compare(id, values);
                }
                OwnerSource::Json(_) => {}
            }
        }
        Verdict::Continue
    }

    /// The checks that read the body (JSON, or urlencoded form for mass assignment).
    pub fn check_body(&self, id: &Identity, kind: &BodyKind, body: &[u8]) -> Verdict {
        self.check_body_parsed(id, kind, body, None)
    }

    /// [`AuthzPolicy::check_body`] with the JSON tree of `body` when the caller already parsed it (the
    /// inspect stage's parse refuses duplicate keys too, so both checks see the one value the application
    /// will); without it the body is parsed here.
    pub fn check_body_parsed(&self, id: &Identity, kind: &BodyKind, body: &[u8], parsed: Option<&Value>) -> Verdict {
        let owner_json = self
            .owner
            .as_ref()
            .filter(|o| matches!(o.source, OwnerSource::Json(_)) && !o.override_roles.iter().any(|r| id.has_role(r)));
        let mass = self.mass_assignment.as_ref().filter(|m| !m.roles.iter().any(|r| id.has_role(r)));
        if owner_json.is_none() && mass.is_none() {
            return Verdict::Continue;
        }
        if body.is_empty() {
            // Nothing is being set; but a missing object id is not permission.
            return match owner_json {
                Some(_) => deny(AuthzCode::Object, "no body to find the owner in"),
                None => Verdict::Continue,
            };
        }
        match kind {
            BodyKind::Json => {
                let owned;
                let doc = match parsed {
                    Some(v) => v,
                    None => match strict_json(body) {
                        Ok(v) => {
                            owned = v;
                            &owned
                        }
                        Err(e) => {
                            let code = if owner_json.is_some() { AuthzCode::Object } else { AuthzCode::MassAssignment };
                            return deny(code, format!("body cannot be checked: {e}"));
                        }
                    },
                };
                if let Some(m) = mass {
                    if let Some(field) = find_key(doc, &m.fields, 0) {
                        return deny(
                            AuthzCode::MassAssignment,
                            format!("consumer {} may not set `{field}`", id.consumer),
                        );
                    }
                }
                if let Some(owner) = owner_json {
                    let OwnerSource::Json(path) = &owner.source else { return Verdict::Continue };
                    let value = path.iter().try_fold(doc, |v, seg| v.get(seg));
                    let text = match value {
                        Some(Value::String(s)) => Some(std::borrow::Cow::Borrowed(s.as_str())),
                        Some(Value::Number(n)) => Some(std::borrow::Cow::Owned(n.to_string())),
                        _ => None,
                    };
                    return owner.compare(id, text.into_iter().collect());
                }
                Verdict::Continue
            }
            BodyKind::Form if owner_json.is_none() => {
                let Some(m) = mass else { return Verdict::Continue };
                for pair in body.split(|b| *b == b'&') {
                    let key = pair.split(|b| *b == b'=').next().unwrap_or(&[]);
                    let key = String::from_utf8_lossy(&detect::form_decode(key)).to_ascii_lowercase();
                    // `role`, `user[role]`, `user.role`: every segment of the name counts.
                    if let Some(hit) = key.split(['[', ']', '.']).find(|seg| m.fields.iter().any(|f| f == seg)) {
                        return deny(
                            AuthzCode::MassAssignment,
                            format!("consumer {} may not set `{hit}`", id.consumer),
                        );
                    }
                }
                Verdict::Continue
            }
            _ => {
                let code = if owner_json.is_some() { AuthzCode::Object } else { AuthzCode::MassAssignment };
                deny(code, "body type cannot be checked (JSON expected)")
            }
        }
    }
}

impl OwnerRule {
    /// Every occurrence must match, and there must be one: `?user=alice&user=bob` is not alice's request, and a
    /// missing id is not permission to see every object.
    fn compare(&self, id: &Identity, values: Vec<std::borrow::Cow<'_, str>>) -> Verdict {
        if values.is_empty() {
            return deny(AuthzCode::Object, format!("no object id ({:?})", self.source));
        }
        let owns = |v: &str| match id.claims.get(&self.claim) {
            Some(Value::String(s)) => s == v,
            Some(Value::Number(n)) => n.to_string() == v,
            Some(Value::Array(a)) => {
                a.iter().any(|x| x.as_str() == Some(v) || x.as_number().is_some_and(|n| n.to_string() == v))
            }
            _ => false,
        };
        match values.iter().find(|v| !owns(v)) {
            None => Verdict::Continue,
            Some(v) => deny(
                AuthzCode::Object,
                format!(
                    "consumer {} does not own `{}` ({} = {:?})",
                    id.consumer,
                    v.chars().take(64).collect::<String>(),
                    self.claim,
                    id.claim(&self.claim)
                ),
            ),
        }
    }
}

fn list(items: &[Arc<str>]) -> String {
    items.iter().map(|s| &**s).collect::<Vec<_>>().join(", ")
}

/// Depth beyond which a body is not searched further (inspection bounds depth already; this keeps the walk
/// bounded when inspection is off).
const MAX_DEPTH: usize = 64;

fn find_key<'a>(v: &'a Value, fields: &[String], depth: usize) -> Option<&'a str> {
    if depth > MAX_DEPTH {
        return None;
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if fields.iter().any(|f| f.eq_ignore_ascii_case(k)) {
                    return Some(k);
                }
                if let Some(hit) = find_key(child, fields, depth + 1) {
                    return Some(hit);
                }
            }
            None
        }
        Value::Array(items) => items.iter().find_map(|c| find_key(c, fields, depth + 1)),
        _ => None,
    }
}

/// Parses JSON refusing duplicate keys: with `{"owner_id":"bob","owner_id":"alice"}` the gateway and the
/// application could each believe a different one.
pub fn strict_json(body: &[u8]) -> Result<Value, String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    struct Strict;
    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Strict {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_string()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(Strict)? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(k) = map.next_key::<String>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate key `{}`",
                        k.chars().take(64).collect::<String>()
                    )));
                }
                let v = map.next_value_seed(Strict)?;
                out.insert(k, v);
            }
            Ok(Value::Object(out))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = Strict.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::identify::AuthMethod;

    fn who(sub: &str, scopes: &[&str], roles: &[&str]) -> Identity {
        Identity {
            consumer: Arc::from(sub),
            method: AuthMethod::Jwt,
            scopes: scopes.iter().map(|s| Arc::from(*s)).collect(),
            roles: roles.iter().map(|s| Arc::from(*s)).collect(),
            claims: serde_json::json!({ "sub": sub, "accounts": ["a1", "a2"] }),
        }
    }

    fn code(v: Verdict) -> Option<&'static str> {
        match v {
            Verdict::Continue => None,
            Verdict::Reject(r) => Some(r.code.as_str()),
        }
    }

    fn arcs(items: &[&str]) -> Vec<Arc<str>> {
        items.iter().map(|s| Arc::from(*s)).collect()
    }

    #[test]
    fn scopes_per_method_and_roles() {
        let p = AuthzPolicy {
            scopes: ScopeRule::PerMethod(vec![(Method::GET, arcs(&["read"])), (Method::POST, arcs(&["write"]))]),
            ..Default::default()
        };
        let reader = who("alice", &["read"], &[]);
        assert_eq!(code(p.check_head(&reader, &Method::GET, &[], None)), None);
        assert_eq!(code(p.check_head(&reader, &Method::POST, &[], None)), Some("authz.scope"));
        assert_eq!(code(p.check_head(&reader, &Method::DELETE, &[], None)), Some("authz.scope"));
        let admin = AuthzPolicy { roles: arcs(&["admin"]), ..Default::default() };
        assert_eq!(code(admin.check_head(&reader, &Method::GET, &[], None)), Some("authz.function"));
        assert_eq!(code(admin.check_head(&who("c", &[], &["admin"]), &Method::GET, &[], None)), None);
    }

    #[test]
    fn ownership_by_path_query_and_claim_list() {
        let owner = |source| AuthzPolicy {
            owner: Some(OwnerRule { source, claim: "sub".into(), override_roles: arcs(&["admin"]) }),
            ..Default::default()
        };
        let p = owner(OwnerSource::PathParam("id".into()));
        let alice = who("alice", &[], &[]);
        let params = |v: &str| vec![("id".to_string(), v.to_string())];
        assert_eq!(code(p.check_head(&alice, &Method::GET, &params("alice"), None)), None);
        assert_eq!(code(p.check_head(&alice, &Method::GET, &params("bob"), None)), Some("authz.object"));
        assert_eq!(code(p.check_head(&who("c", &[], &["admin"]), &Method::GET, &params("bob"), None)), None);
        let q = owner(OwnerSource::Query("user".into()));
        assert_eq!(code(q.check_head(&alice, &Method::GET, &[], Some("user=alice&x=1"))), None);
        assert_eq!(code(q.check_head(&alice, &Method::GET, &[], Some("user=alice&user=bob"))), Some("authz.object"));
        assert_eq!(code(q.check_head(&alice, &Method::GET, &[], Some("x=1"))), Some("authz.object"));
        assert_eq!(code(q.check_head(&alice, &Method::GET, &[], Some("us%65r=bob"))), Some("authz.object"));
        let list = AuthzPolicy {
            owner: Some(OwnerRule {
                source: OwnerSource::Json(vec!["account".into()]),
                claim: "accounts".into(),
                override_roles: vec![],
            }),
            ..Default::default()
        };
        assert_eq!(code(list.check_body(&alice, &BodyKind::Json, br#"{"account":"a2"}"#)), None);
        assert_eq!(code(list.check_body(&alice, &BodyKind::Json, br#"{"account":"b1"}"#)), Some("authz.object"));
        assert_eq!(
            code(list.check_body(&alice, &BodyKind::Json, br#"{"account":"b1","account":"a1"}"#)),
            Some("authz.object")
        );
    }

    #[test]
    fn mass_assignment_at_any_depth_and_in_forms() {
        let p = AuthzPolicy {
            mass_assignment: Some(MassAssignmentRule {
                fields: vec!["role".into(), "is_admin".into()],
                roles: arcs(&["admin"]),
            }),
            ..Default::default()
        };
        let alice = who("alice", &[], &[]);
        assert_eq!(code(p.check_body(&alice, &BodyKind::Json, br#"{"name":"a"}"#)), None);
        assert_eq!(code(p.check_body(&alice, &BodyKind::Json, b"")), None);
        assert_eq!(
            code(p.check_body(&alice, &BodyKind::Json, br#"{"name":"a","Role":"admin"}"#)),
            Some("authz.mass_assignment")
        );
        assert_eq!(
            code(p.check_body(&alice, &BodyKind::Json, br#"{"user":[{"is_admin":true}]}"#)),
            Some("authz.mass_assignment")
        );
        assert_eq!(
            code(p.check_body(&alice, &BodyKind::Form, b"name=a&user%5Brole%5D=admin")),
            Some("authz.mass_assignment")
        );
        assert_eq!(code(p.check_body(&alice, &BodyKind::Xml, b"<role>admin</role>")), Some("authz.mass_assignment"));
        assert_eq!(code(p.check_body(&who("c", &[], &["admin"]), &BodyKind::Json, br#"{"role":"x"}"#)), None);
    }
}
