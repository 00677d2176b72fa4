//! identify: who is calling. The verified identity is what later stages key on — authorize (scopes, roles,
//! ownership), throttle (per-consumer limits), respond (no-store on authenticated responses, per-identity
//! exfiltration counts) and record (the consumer in events).

pub mod clock;
pub mod lockout;
pub mod replay;
pub mod signature;

use std::sync::Arc;

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey,
    Jwt,
    Introspection,
    Mtls,
    Signature,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Introspection => "introspection",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Signature => "signature",
        }
    }
}

/// A verified caller. Built once per request by the identify stage and shared read-only by the stages after it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The stable consumer id (API-key owner, token subject, certificate mapping): the key for limits and logs.
    pub consumer: Arc<str>,
    pub method: AuthMethod,
    /// Granted scopes (`scope`/`scp` claims, key metadata).
    pub scopes: Vec<Arc<str>>,
    /// Granted roles (`roles` claim, key metadata, certificate mapping).
    pub roles: Vec<Arc<str>>,
    /// Verified claims (JWT payload, introspection answer) for ownership checks and claim-keyed limits;
    /// `Null` when the method has none.
    pub claims: serde_json::Value,
}

impl Identity {
    /// A claim as text: strings as they are, numbers and booleans rendered; `None` when absent or structured.
    pub fn claim(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        match self.claims.get(name)? {
            serde_json::Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
            serde_json::Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
            serde_json::Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| &**r == role)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }
}
