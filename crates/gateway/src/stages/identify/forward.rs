//! Identity headers on the way upstream. Whatever a client says about who it is (`X-Consumer-*`, `X-User*`,
//! `X-Rampart-*` …) is removed on every route, so an upstream that trusts those headers can only ever see what
//! the gateway verified; the verified identity is then added under configurable names. The API key header is
//! removed too: the upstream needs the consumer, not the secret.

use super::Identity;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// A header-name pattern: an exact name, or a prefix when written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    Exact(HeaderName),
    Prefix(String),
}

impl NamePattern {
    /// Parses `x-consumer-*` or `x-user-id` (case-insensitive); `None` when not a valid header name.
    pub fn parse(text: &str) -> Option<NamePattern> {
        let t = text.trim().to_ascii_lowercase();
        match t.strip_suffix('*') {
            Some(prefix) if !prefix.is_empty() && HeaderName::from_bytes(prefix.as_bytes()).is_ok() => {
                Some(NamePattern::Prefix(prefix.to_string()))
            }
            Some(_) => None,
            None => HeaderName::from_bytes(t.as_bytes()).ok().map(NamePattern::Exact),
        }
    }

    fn matches(&self, name: &HeaderName) -> bool {
        match self {
            NamePattern::Exact(n) => n == name,
            NamePattern::Prefix(p) => name.as_str().starts_with(p.as_str()),
        }
    }
}

/// The default list of client-supplied identity headers stripped before forwarding.
pub const DEFAULT_STRIP: [&str; 3] = ["x-consumer-*", "x-rampart-*", "x-user*"];

/// Header names the verified identity is passed upstream under; `None` leaves one out.
#[derive(Debug, Clone)]
pub struct ForwardNames {
    pub consumer: Option<HeaderName>,
    pub method: Option<HeaderName>,
    pub scopes: Option<HeaderName>,
    pub roles: Option<HeaderName>,
}

impl Default for ForwardNames {
    fn default() -> Self {
        ForwardNames {
            consumer: Some(HeaderName::from_static("x-rampart-consumer")),
            method: Some(HeaderName::from_static("x-rampart-auth-method")),
            scopes: Some(HeaderName::from_static("x-rampart-scopes")),
            roles: Some(HeaderName::from_static("x-rampart-roles")),
        }
    }
}

/// The compiled header policy.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub strip: Vec<NamePattern>,
    pub forward: ForwardNames,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            strip: DEFAULT_STRIP.iter().filter_map(|p| NamePattern::parse(p)).collect(),
            forward: ForwardNames::default(),
        }
    }
}

fn join(items: &[std::sync::Arc<str>], sep: &str) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.iter().map(|s| &**s).collect::<Vec<_>>().join(sep)).ok()
}

impl IdentityHeaders {
    /// Removes client-supplied identity headers (and `extra`, e.g. the API key header). Scans names once and
    /// allocates nothing when there is nothing to remove.
    pub fn strip(&self, headers: &mut HeaderMap, extra: Option<&HeaderName>) {
        let doomed = |n: &HeaderName| extra == Some(n) || self.strip.iter().any(|p| p.matches(n));
        if !headers.keys().any(doomed) {
            return;
        }
        let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
        for n in names {
            headers.remove(n);
        }
    }

    /// Adds the verified identity. Values that cannot be a header value (never the case for identities the
    /// verifiers built, which refuse control characters) are left out rather than mangled.
    pub fn forward(&self, identity: &Identity, headers: &mut HeaderMap) {
        let f = &self.forward;
        if let (Some(n), Ok(v)) = (&f.consumer, HeaderValue::from_str(&identity.consumer)) {
            headers.insert(n.clone(), v);
        }
        if let Some(n) = &f.method {
            headers.insert(n.clone(), HeaderValue::from_static(identity.method.as_str()));
        }
        if let (Some(n), Some(v)) = (&f.scopes, join(&identity.scopes, " ")) {
            headers.insert(n.clone(), v);
        }
        if let (Some(n), Some(v)) = (&f.roles, join(&identity.roles, ",")) {
            headers.insert(n.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::identify::AuthMethod;
    use std::sync::Arc;

    #[test]
    fn client_identity_headers_go_and_the_verified_one_comes() {
        let h = IdentityHeaders::default();
        let mut m = HeaderMap::new();
        for (k, v) in [
            ("x-consumer-id", "admin"),
            ("x-userid", "root"),
            ("x-user-roles", "admin"),
            ("x-rampart-consumer", "forged"),
            ("x-api-key", "secret"),
            ("accept", "*/*"),
        ] {
            m.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h.strip(&mut m, Some(&HeaderName::from_static("x-api-key")));
        assert_eq!(m.len(), 1, "{m:?}");
        let id = Identity {
            consumer: Arc::from("alice"),
            method: AuthMethod::Jwt,
            scopes: vec![Arc::from("read"), Arc::from("write")],
            roles: vec![],
            claims: serde_json::Value::Null,
        };
        h.forward(&id, &mut m);
        assert_eq!(m["x-rampart-consumer"], "alice");
        assert_eq!(m["x-rampart-auth-method"], "jwt");
        assert_eq!(m["x-rampart-scopes"], "read write");
        assert!(!m.contains_key("x-rampart-roles"));
    }

    #[test]
    fn patterns_parse() {
        assert_eq!(NamePattern::parse("X-Consumer-*"), Some(NamePattern::Prefix("x-consumer-".into())));
        assert!(matches!(NamePattern::parse("x-user-id"), Some(NamePattern::Exact(_))));
        assert_eq!(NamePattern::parse("*"), None);
        assert_eq!(NamePattern::parse("bad header"), None);
    }
}
