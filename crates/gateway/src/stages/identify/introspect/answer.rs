//! Reading an introspection answer (RFC 7662 §2.2): `active` first, then the claims the gateway checks itself
//! when the identity provider sends them (`exp`, `nbf`, `iss`, `aud`), then the identity — consumer from `sub`
//! (or `client_id` for client-credentials tokens), scopes from `scope`, roles from a configured claim.

use super::super::{AuthFailure, AuthMethod, IdentifyCode, Identity};
use serde_json::Value;
use std::sync::Arc;

/// What the gateway checks in an answer, compiled from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Expected `iss`, checked when the answer carries one.
    pub issuer: Option<String>,
    /// Accepted audiences, checked when the answer carries `aud`; empty: not checked.
    pub audience: Vec<String>,
    /// Claims that must be present (e.g. `aud` to refuse answers without one).
    pub required_claims: Vec<String>,
    /// Dotted path of the roles claim.
    pub roles_claim: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub leeway: u64,
}

/// A well-formed answer, judged.
#[derive(Debug)]
pub enum Judged {
    /// An active token and its identity; `exp` (seconds since the epoch) when the answer gave one.
    Active { identity: Arc<Identity>, exp: Option<u64> },
    /// The token may not be used: inactive, expired, for another audience or issuer, or without a consumer.
    Refused(AuthFailure),
    /// Active, but only from `nbf` on: refused now, not cached (it becomes usable soon).
    NotYet(AuthFailure),
}

/// An answer that is not what RFC 7662 describes (not a JSON object, `active` missing or not a boolean): the
/// identity provider is misbehaving, so the request fails closed as if it were down.
#[derive(Debug, thiserror::Error)]
#[error("malformed introspection answer: {0}")]
pub struct Malformed(pub &'static str);

fn refuse(code: IdentifyCode, detail: String) -> Judged {
    Judged::Refused(AuthFailure::new(code, detail))
}

fn number(claims: &Value, name: &str) -> Result<Option<u64>, ()> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| Some(f as u64)).ok_or(()),
    }
}

fn plain_id(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) => Some(s),
        _ => None,
    }
}

/// Judges the answer body at `now` (seconds since the epoch). `who` names the token in details (a hash prefix,
/// never the token).
pub fn judge(body: &[u8], rules: &Rules, now: u64, who: &str) -> Result<Judged, Malformed> {
    let claims: Value = serde_json::from_slice(body).map_err(|_| Malformed("not JSON"))?;
    if !claims.is_object() {
        return Err(Malformed("not a JSON object"));
    }
    match claims.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            return Ok(refuse(IdentifyCode::IntrospectionInactive, format!("{who}: inactive")));
        }
        _ => return Err(Malformed("`active` missing or not a boolean")),
    }
    let claims_err = |what: &str| refuse(IdentifyCode::IntrospectionClaims, format!("{who}: {what}"));
    let Ok(exp) = number(&claims, "exp") else { return Ok(claims_err("`exp` is not a number")) };
    let Ok(nbf) = number(&claims, "nbf") else { return Ok(claims_err("`nbf` is not a number")) };
    if let Some(exp) = exp {
        if exp.saturating_add(rules.leeway) <= now {
            return Ok(refuse(IdentifyCode::IntrospectionExpired, format!("{who}: active but exp {exp} has passed")));
        }
    }
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(rules.leeway) {
            return Ok(Judged::NotYet(AuthFailure::new(
                IdentifyCode::IntrospectionNotYetValid,
                format!("{who}: nbf {nbf} is in the future"),
            )));
        }
    }
    if let (Some(want), Some(got)) = (&rules.issuer, claims.get("iss")) {
        if got.as_str() != Some(want.as_str()) {
            let shown: String = got.to_string().chars().take(80).collect();
            return Ok(refuse(IdentifyCode::IntrospectionIssuer, format!("{who}: iss {shown}")));
        }
    }
    if let (false, Some(aud)) = (rules.audience.is_empty(), claims.get("aud")) {
        let fits = match aud {
            Value::String(a) => rules.audience.contains(a),
            Value::Array(list) => list.iter().filter_map(Value::as_str).any(|a| rules.audience.iter().any(|w| w == a)),
            _ => false,
        };
        if !fits {
            let shown: String = aud.to_string().chars().take(80).collect();
            return Ok(refuse(IdentifyCode::IntrospectionAudience, format!("{who}: aud {shown}")));
        }
    }
    if let Some(missing) = rules.required_claims.iter().find(|c| claims.get(c.as_str()).is_none_or(Value::is_null)) {
        return Ok(claims_err(&format!("required claim `{missing}` missing")));
    }
    let Some(consumer) = plain_id(claims.get("sub")).or_else(|| plain_id(claims.get("client_id"))) else {
        return Ok(claims_err("neither `sub` nor `client_id` is a usable consumer id"));
    };
    let consumer: Arc<str> = Arc::from(consumer);
    let scopes: Vec<Arc<str>> = match claims.get("scope") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(Arc::from).collect(),
        Some(_) => return Ok(claims_err("`scope` is not a string")),
    };
    let roles: Vec<Arc<str>> = match rules.roles_claim.iter().try_fold(&claims, |v, seg| v.get(seg)) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(Arc::from).collect(),
        Some(Value::String(s)) => vec![Arc::from(s.as_str())],
        _ => Vec::new(),
    };
    let identity = Identity { consumer, method: AuthMethod::Introspection, scopes, roles, claims };
    Ok(Judged::Active { identity: Arc::new(identity), exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> Rules {
        Rules {
            issuer: Some("https://id.example/".into()),
            audience: vec!["orders-api".into()],
            required_claims: vec![],
            roles_claim: vec!["realm".into(), "roles".into()],
            leeway: 5,
        }
    }

    fn code(body: serde_json::Value) -> Option<IdentifyCode> {
        match judge(body.to_string().as_bytes(), &rules(), 1000, "t").unwrap() {
            Judged::Active { .. } => None,
            Judged::Refused(f) | Judged::NotYet(f) => Some(f.code),
        }
    }

    #[test]
    fn active_answers_give_an_identity() {
        let body = json!({ "active": true, "sub": "alice", "scope": "read write", "exp": 2000,
            "aud": ["other", "orders-api"], "iss": "https://id.example/", "realm": { "roles": ["admin"] } });
        let Judged::Active { identity, exp } = judge(body.to_string().as_bytes(), &rules(), 1000, "t").unwrap() else {
            panic!("refused")
        };
        assert_eq!(&*identity.consumer, "alice");
        assert_eq!(exp, Some(2000));
        assert!(identity.has_scope("write") && identity.has_role("admin"));
        assert_eq!(identity.method, AuthMethod::Introspection);
        // client-credentials tokens have no `sub`.
        let Judged::Active { identity, exp } =
            judge(br#"{"active":true,"client_id":"svc-1"}"#, &rules(), 1000, "t").unwrap()
        else {
            panic!("refused")
        };
        assert_eq!((&*identity.consumer, exp), ("svc-1", None));
    }

    #[test]
    fn each_refusal_has_its_code() {
        assert_eq!(code(json!({ "active": false })), Some(IdentifyCode::IntrospectionInactive));
        assert_eq!(code(json!({ "active": true, "sub": "a", "exp": 990 })), Some(IdentifyCode::IntrospectionExpired));
        assert_eq!(code(json!({ "active": true, "sub": "a", "exp": 997 })), None, "within the leeway");
        assert_eq!(
            code(json!({ "active": true, "sub": "a", "nbf": 1100 })),
            Some(IdentifyCode::IntrospectionNotYetValid)
        );
        assert_eq!(
            code(json!({ "active": true, "sub": "a", "aud": "billing" })),
            Some(IdentifyCode::IntrospectionAudience)
        );
        assert_eq!(code(json!({ "active": true, "sub": "a", "aud": [] })), Some(IdentifyCode::IntrospectionAudience));
        assert_eq!(
            code(json!({ "active": true, "sub": "a", "iss": "https://evil/" })),
            Some(IdentifyCode::IntrospectionIssuer)
        );
        assert_eq!(code(json!({ "active": true })), Some(IdentifyCode::IntrospectionClaims));
        assert_eq!(code(json!({ "active": true, "sub": "a", "exp": "soon" })), Some(IdentifyCode::IntrospectionClaims));
        assert_eq!(
            code(json!({ "active": true, "sub": "a", "scope": ["x"] })),
            Some(IdentifyCode::IntrospectionClaims)
        );
        assert_eq!(code(json!({ "active": true, "sub": "a\u{0}b" })), Some(IdentifyCode::IntrospectionClaims));
        // Absent claims are not checked.
        assert_eq!(code(json!({ "active": true, "sub": "a" })), None);
    }

    #[test]
    fn answers_outside_the_rfc_are_malformed() {
        for body in [&b"<html>"[..], b"[]", b"{}", br#"{"active":"true"}"#, br#"{"active":1}"#] {
            assert!(judge(body, &rules(), 1000, "t").is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
