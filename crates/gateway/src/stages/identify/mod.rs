//! identify: who is calling. The verified identity is what later stages key on — authorize (scopes, roles,
//! ownership), throttle (per-consumer limits), respond (no-store on authenticated responses, per-identity
//! exfiltration counts) and record (the consumer in events).

pub mod clock;
pub mod guard;
pub mod lockout;
pub mod login;
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

pub mod api_key;
mod fetch;
pub mod forward;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod jwt_cache;
mod jwt_claims;
pub mod mtls;

use crate::pipeline::{Code, Rejection};
use crate::server::tls::PeerCert;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use http::StatusCode;

/// Why a caller could not be identified. Every variant is a stable code in logs and metrics; the client only
/// ever sees `auth.failed` with status 401 (see [`IdentifyCode::client_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentifyCode {
    /// The route needs a credential and the request carries none of the accepted kinds.
    Missing,
    KeyInvalid,
    KeyExpired,
    /// The key's record is disabled (`rampart keys revoke`).
    KeyRevoked,
    /// Not a JWT: wrong shape, bad base64 or JSON, oversized.
    JwtMalformed,
    /// `alg` is `none` (any casing), not on the issuer's allow-list, or HMAC for an asymmetric issuer.
    JwtAlg,
    /// `jku`, `x5u`, `jwk`, `x5c` or `crit` in the header: keys named by the token are never fetched or trusted.
    JwtHeader,
    /// `kid` unknown after a refetch, or not a plain identifier (path or SQL payloads).
    JwtKid,
    JwtSignature,
    JwtExpired,
    /// `nbf` or `iat` in the future (beyond the leeway).
    JwtNotYetValid,
    JwtIssuer,
    JwtAudience,
    /// A required claim is missing or has the wrong type.
    JwtClaims,
    /// The issuer's JWKS has never been loaded (identity provider unreachable since start): fail closed.
    JwtKeysUnavailable,
    /// A verified client certificate that no `identity.mtls` entry maps to a consumer.
    MtlsUnmapped,
    /// A bearer token for introspection that is not an RFC 6750 token (bad characters, over 4 KiB), or sent twice.
    IntrospectionMalformed,
    /// The identity provider says the token is not active (unknown, revoked, expired there).
    IntrospectionInactive,
    /// Active per the provider, but its `exp` has passed here (beyond the leeway).
    IntrospectionExpired,
    /// `nbf` in the future (beyond the leeway).
    IntrospectionNotYetValid,
    IntrospectionIssuer,
    IntrospectionAudience,
    /// No usable consumer id (`sub` or `client_id`), a required claim missing, or a claim of the wrong type.
    IntrospectionClaims,
    /// The provider could not be asked or gave no proper answer (down, timeout, non-200, not RFC 7662 JSON):
    /// fail closed.
    IntrospectionUnavailable,
    /// Signed requests (RFC 9421): see [`signature::SignatureError`] for each.
    SignatureMissing,
    SignatureMalformed,
    SignatureUnknownKey,
    SignatureCoverage,
    SignatureInvalid,
    SignatureExpired,
    SignatureDigest,
    SignatureReplay,
    /// The nonce store could not answer: 503, fail closed.
    SignatureStoreUnavailable,
    /// Too many failed authentications from this IP or for this credential: 429 with `Retry-After`, before any
    /// verification.
    Lockout,
    /// The shared lockout counters (Redis state) did not answer and the lockout's failure mode is `closed`: 503.
    LockoutUnavailable,
}

impl IdentifyCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifyCode::Missing => "auth.missing",
            IdentifyCode::KeyInvalid => "auth.key.invalid",
            IdentifyCode::KeyExpired => "auth.key.expired",
            IdentifyCode::KeyRevoked => "auth.key.revoked",
            IdentifyCode::JwtMalformed => "auth.jwt.malformed",
            IdentifyCode::JwtAlg => "auth.jwt.alg",
            IdentifyCode::JwtHeader => "auth.jwt.header",
            IdentifyCode::JwtKid => "auth.jwt.kid",
            IdentifyCode::JwtSignature => "auth.jwt.signature",
            IdentifyCode::JwtExpired => "auth.jwt.expired",
            IdentifyCode::JwtNotYetValid => "auth.jwt.not_yet_valid",
            IdentifyCode::JwtIssuer => "auth.jwt.issuer",
            IdentifyCode::JwtAudience => "auth.jwt.audience",
            IdentifyCode::JwtClaims => "auth.jwt.claims",
            IdentifyCode::JwtKeysUnavailable => "auth.jwt.keys_unavailable",
            IdentifyCode::MtlsUnmapped => "auth.mtls.unmapped",
            IdentifyCode::IntrospectionMalformed => "auth.introspection.malformed",
            IdentifyCode::IntrospectionInactive => "auth.introspection.inactive",
            IdentifyCode::IntrospectionExpired => "auth.introspection.expired",
            IdentifyCode::IntrospectionNotYetValid => "auth.introspection.not_yet_valid",
            IdentifyCode::IntrospectionIssuer => "auth.introspection.issuer",
            IdentifyCode::IntrospectionAudience => "auth.introspection.audience",
            IdentifyCode::IntrospectionClaims => "auth.introspection.claims",
            IdentifyCode::IntrospectionUnavailable => "auth.introspection.unavailable",
            IdentifyCode::SignatureMissing => "auth.signature.missing",
            IdentifyCode::SignatureMalformed => "auth.signature.malformed",
            IdentifyCode::SignatureUnknownKey => "auth.signature.unknown_key",
            IdentifyCode::SignatureCoverage => "auth.signature.coverage",
            IdentifyCode::SignatureInvalid => "auth.signature.invalid",
            IdentifyCode::SignatureExpired => "auth.signature.expired",
            IdentifyCode::SignatureDigest => "auth.signature.digest",
            IdentifyCode::SignatureReplay => "auth.signature.replay",
            IdentifyCode::SignatureStoreUnavailable => "auth.signature.store_unavailable",
            IdentifyCode::Lockout => "auth.lockout",
            IdentifyCode::LockoutUnavailable => "auth.lockout.unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            IdentifyCode::SignatureStoreUnavailable | IdentifyCode::LockoutUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            IdentifyCode::Lockout => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The code for a signature failure (the verifier's own codes, one to one).
    pub fn of_signature(e: &signature::SignatureError) -> Self {
        use signature::SignatureError as E;
        match e {
            E::Missing => IdentifyCode::SignatureMissing,
            E::Malformed(_) => IdentifyCode::SignatureMalformed,
            E::UnknownKey(_) => IdentifyCode::SignatureUnknownKey,
            E::Coverage(_) => IdentifyCode::SignatureCoverage,
            E::Invalid(_) => IdentifyCode::SignatureInvalid,
            E::Expired(_) => IdentifyCode::SignatureExpired,
            E::Digest(_) => IdentifyCode::SignatureDigest,
            E::Replay => IdentifyCode::SignatureReplay,
            E::StoreUnavailable(_) => IdentifyCode::SignatureStoreUnavailable,
        }
    }

    /// What the client is told: one code for every identification failure; a lockout says what it is (the
    /// client must know to wait, and it reveals nothing about the credential).
    pub fn client_str(self) -> &'static str {
        match self {
            IdentifyCode::Lockout => "auth.lockout",
            _ => "auth.failed",
        }
    }
}

/// A failed identification: the code and the operator's detail (never a secret or a whole token).
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub code: IdentifyCode,
    pub detail: String,
}

impl AuthFailure {
    pub fn new(code: IdentifyCode, detail: impl Into<String>) -> Self {
        AuthFailure { code, detail: detail.into() }
    }
}

/// What a route accepts: no credential at all (`auth: none`), or any one of a list of methods. There is no
/// "unset": config validation refuses a route that does not say (closed by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    Public,
    AnyOf(Vec<AuthMethod>),
}

/// The request as the verifiers see it.
pub struct AuthRequest<'a> {
    pub parts: &'a Parts,
    pub client_cert: Option<&'a PeerCert>,
    /// The body as received, when it was read before identify (signed requests cover it with `Content-Digest`).
    pub body: &'a [u8],
    /// The request came over TLS (the `@scheme` a signature covers).
    pub tls: bool,
    /// The state backend: nonces of signed requests are remembered there.
    pub state: &'a crate::state::Store,
}

/// The compiled `identity` section: one verifier per configured method, shared by every route.
#[derive(Default)]
pub struct Identifier {
    pub api_keys: Option<api_key::ApiKeys>,
    pub jwt: Option<jwt::JwtVerifier>,
    pub mtls: Option<mtls::MtlsMap>,
    /// Token introspection (shared across reloads, with its cache).
    pub introspection: Option<Arc<introspect::Introspector>>,
    /// Client-supplied identity headers to strip and the verified identity's headers to add.
    pub headers: forward::IdentityHeaders,
    /// RFC 9421 signed requests.
    pub signatures: Option<signature::SignatureVerifier>,
    /// Brute-force lockout (`identity.lockout`).
    pub lockout: Option<guard::Lockout>,
}

impl Identifier {
    /// Whether the request carries a credential of this kind (the first one present decides). A bearer token
    /// on a route that accepts both `jwt` and `introspection` goes by its shape: a JWS compact JWT (three
    /// segments, a JSON header with `alg`) to `jwt`, anything else to `introspection`. A route that accepts
    /// only one of them sends every bearer token there.
    fn presented(&self, method: AuthMethod, accepted: &[AuthMethod], req: &AuthRequest<'_>) -> bool {
        let both = || accepted.contains(&AuthMethod::Jwt) && accepted.contains(&AuthMethod::Introspection);
        let jwt_shaped = || jwt::bearer(req.parts).is_some_and(jwt::looks_like_jwt);
        match method {
            AuthMethod::ApiKey => self.api_keys.as_ref().is_some_and(|k| k.presented(req.parts)),
            AuthMethod::Jwt => self.jwt.as_ref().is_some_and(|j| j.presented(req.parts)) && (!both() || jwt_shaped()),
            AuthMethod::Introspection => {
                self.introspection.is_some() && jwt::bearer(req.parts).is_some() && (!both() || !jwt_shaped())
            }
            AuthMethod::Mtls => self.mtls.is_some() && req.client_cert.is_some(),
            AuthMethod::Signature => self.signatures.is_some() && signature::presented(&req.parts.headers),
        }
    }

    /// identify: of the route's accepted methods, the first whose credential the request carries is verified,
    /// and its answer is final (a bad API key is not rescued by a good token, nor the other way round).
    pub async fn identify(&self, accepted: &[AuthMethod], req: &AuthRequest<'_>) -> Result<Arc<Identity>, AuthFailure> {
        let Some(method) = accepted.iter().copied().find(|m| self.presented(*m, accepted, req)) else {
            let names: Vec<&str> = accepted.iter().map(|m| m.as_str()).collect();
            return Err(AuthFailure::new(IdentifyCode::Missing, format!("no credential of: {}", names.join(", "))));
        };
        match method {
            AuthMethod::ApiKey => match &self.api_keys {
                Some(k) => k.verify(req.parts),
                None => Err(AuthFailure::new(IdentifyCode::Missing, "api keys not configured")),
            },
            AuthMethod::Jwt => match &self.jwt {
                Some(j) => j.verify(req.parts).await,
                None => Err(AuthFailure::new(IdentifyCode::Missing, "jwt not configured")),
            },
            AuthMethod::Mtls => match (&self.mtls, req.client_cert) {
                (Some(m), Some(cert)) => m.identify(cert),
                _ => Err(AuthFailure::new(IdentifyCode::Missing, "no client certificate")),
            },
            AuthMethod::Introspection => match &self.introspection {
                Some(i) => i.verify(req.parts).await,
                None => Err(AuthFailure::new(IdentifyCode::Missing, "introspection not configured")),
            },
            AuthMethod::Signature => match &self.signatures {
                Some(v) => signature::identify(v, req).await,
                None => Err(AuthFailure::new(IdentifyCode::Missing, "signatures not configured")),
            },
        }
    }
}

/// A route's identify step, compiled: what it accepts and the `WWW-Authenticate` challenge its 401s carry.
#[derive(Debug, Clone)]
pub struct RouteIdentify {
    pub auth: RouteAuth,
    pub challenge: HeaderValue,
}

impl RouteIdentify {
    pub fn new(auth: RouteAuth, api_key_header: &str) -> Self {
        let mut parts = Vec::new();
        if let RouteAuth::AnyOf(methods) = &auth {
            for m in methods {
                match m {
                    AuthMethod::Jwt | AuthMethod::Introspection => parts.push("Bearer realm=\"rampart\"".to_string()),
                    AuthMethod::ApiKey => parts.push(format!("ApiKey realm=\"rampart\", header=\"{api_key_header}\"")),
                    AuthMethod::Mtls => parts.push("Mutual realm=\"rampart\"".to_string()),
                    AuthMethod::Signature => parts.push("Signature realm=\"rampart\"".to_string()),
                }
            }
        }
        parts.dedup();
        let challenge = HeaderValue::from_str(&parts.join(", ")).unwrap_or(HeaderValue::from_static("Bearer"));
        RouteIdentify { auth, challenge }
    }

    /// The 401 for a failure, with the route's challenge.
    pub fn rejection(&self, failure: AuthFailure) -> Rejection {
        Rejection::new(Code::Identify(failure.code), failure.detail)
            .with_header(WWW_AUTHENTICATE, self.challenge.clone())
    }
}

/// Parses a method name as written in `auth: [...]`.
pub fn parse_method(name: &str) -> Option<AuthMethod> {
    match name.trim().to_ascii_lowercase().as_str() {
        "api_key" | "apikey" | "api-key" => Some(AuthMethod::ApiKey),
        "jwt" => Some(AuthMethod::Jwt),
        "mtls" => Some(AuthMethod::Mtls),
        "introspection" => Some(AuthMethod::Introspection),
        "signature" | "signatures" => Some(AuthMethod::Signature),
        _ => None,
    }
}
