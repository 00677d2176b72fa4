//! The `identity` section and the per-route `auth`, `roles`, `scopes`, `owner` and `mass_assignment` fields:
//! raw shapes and their compilation into the identify and authorize stages' runtime form.

use super::compile::Errs;
use super::raw::{Dur, RawRoute};
use crate::stages::authorize::{AuthzPolicy, MassAssignmentRule, OwnerRule, OwnerSource, ScopeRule};
use crate::stages::identify::api_key::ApiKeys;
use crate::stages::identify::forward::{IdentityHeaders, NamePattern};
use crate::stages::identify::guard::Lockout;
use crate::stages::identify::introspect::answer::Rules;
use crate::stages::identify::introspect::{Introspector, Settings, Timing};
use crate::stages::identify::jwks::{KeySet, RemoteJwks, RemotePolicy};
use crate::stages::identify::jwt::{
    HmacKey, JwtIssuer, JwtVerifier, KeySource, DEFAULT_CACHE_ENTRIES, MIN_HMAC_SECRET_BYTES,
};
use crate::stages::identify::jwt_cache::{CacheCounters, VerifiedCache};

/// Most verified tokens one issuer may cache.
const MAX_CACHE_ENTRIES: usize = 10_000_000;
use crate::stages::identify::lockout::{LockoutPolicy, LockoutSettings};
use crate::stages::identify::mtls::{CertMatch, MtlsMap};
use crate::stages::identify::signature::{
    Component, NoncePolicy, SignatureAlgorithm, SignatureKey, SignatureSettings, SignatureVerifier,
};
use crate::stages::identify::{parse_method, AuthMethod, Identifier, RouteAuth, RouteIdentify};
use http::header::HeaderName;
use http::Method;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One value or a list of them (`audience: api` or `audience: [a, b]`; `jwt: {…}` or `jwt: [{…}, {…}]`),
/// read without buffering so spans inside keep their line and column.
#[derive(Debug)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value or a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                T::deserialize(s.into_deserializer()).map(OneOrMany::One)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `auth: none` or `auth: [jwt, api_key]`.
#[derive(Debug)]
pub enum RawAuth {
    None,
    Methods(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAuth;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`none` or a list of methods such as [jwt, api_key, mtls]")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawAuth, E> {
                if s.trim().eq_ignore_ascii_case("none") {
                    Ok(RawAuth::None)
                } else {
                    Err(E::custom(format!(
                        "auth: `{s}` is neither `none` nor a list; write `auth: none` or `auth: [{s}]`"
                    )))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawAuth, A::Error> {
                Vec::<Spanned<String>>::deserialize(SeqAccessDeserializer::new(seq)).map(RawAuth::Methods)
            }
        }
        d.deserialize_any(V)
    }
}

/// `scopes: [read]` (every method) or `scopes: { GET: [read], "POST|PUT|PATCH|DELETE": [write] }`.
#[derive(Debug)]
pub enum RawScopes {
    All(Vec<Spanned<String>>),
    PerMethod(Vec<(Spanned<String>, Vec<Spanned<String>>)>),
}

impl<'de> Deserialize<'de> for RawScopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawScopes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of scopes, or a map from methods to lists of scopes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawScopes, A::Error> {
                Vec::<Spanned<String>>::deserialize(SeqAccessDeserializer::new(seq)).map(RawScopes::All)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawScopes, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    out.push((k, map.next_value::<Vec<Spanned<String>>>()?));
                }
                Ok(RawScopes::PerMethod(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `login: { username: /username, form_field: username, failure_status: [401, 403] }`: a route whose upstream
/// checks passwords; the username in the body is counted by the brute-force lockout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    /// JSON pointer of the username in a JSON body.
    pub username: Spanned<String>,
    /// Its field name in a form body (default: the pointer's only segment).
    #[serde(default)]
    pub form_field: Option<Spanned<String>>,
    /// Upstream statuses that mean "wrong credentials" (default 401, 403).
    #[serde(default)]
    pub failure_status: Option<Vec<u16>>,
}

/// A route's `login:` section, compiled; it needs `identity.lockout` (where the counters and policies are).
pub(super) fn compile_login(
    errs: &mut Errs<'_>,
    raw: &Spanned<RawLogin>,
    identity: &Identifier,
) -> Option<Arc<crate::stages::identify::login::LoginRoute>> {
    if identity.lockout.is_none() {
        errs.at(
            raw,
            "a login route needs the brute-force lockout, which is not configured",
            Some(
                "add `identity: { lockout: {} }` for the defaults, or e.g. `lockout: { max_failures: 5, window: 15m }`",
            ),
        );
        return None;
    }
    let r = &raw.value;
    let built = crate::stages::identify::login::LoginRoute::new(
        &r.username.value,
        r.form_field.as_ref().map(|f| f.value.as_str()),
        r.failure_status.as_deref(),
    );
    match built {
        Ok(login) => Some(Arc::new(login)),
        Err(e) => {
            errs.at(
                raw,
                e.to_string(),
                Some("e.g. `login: { username: /username, failure_status: [401, 403] }` (username is a JSON pointer)"),
            );
            None
        }
    }
}

/// `owner: { param: id, claim: sub, override_roles: [admin] }` (or `query: user`, or `json: owner.id`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwner {
    #[serde(default)]
    pub param: Option<Spanned<String>>,
    #[serde(default)]
    pub query: Option<Spanned<String>>,
    #[serde(default)]
    pub json: Option<Spanned<String>>,
    #[serde(default)]
    pub claim: Option<String>,
    #[serde(default)]
    pub override_roles: Vec<String>,
}

/// `mass_assignment: { fields: [role, is_admin], roles: [admin] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMassAssignment {
    pub fields: Spanned<Vec<String>>,
    /// Roles that may set these fields.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The top-level `identity` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default)]
    pub api_keys: Option<RawApiKeys>,
    #[serde(default)]
    pub jwt: Option<OneOrMany<RawJwtIssuer>>,
    #[serde(default)]
    pub mtls: Vec<RawMtlsEntry>,
    /// OAuth2 token introspection (RFC 7662) for opaque bearer tokens.
    #[serde(default)]
    pub introspection: Option<Spanned<RawIntrospection>>,
    /// Client-supplied identity headers removed before forwarding (`*` suffix = prefix); replaces the default.
    #[serde(default)]
    pub strip_headers: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub forward: Option<RawForward>,
    /// RFC 9421 signed requests (`auth: [signature]`).
    #[serde(default)]
    pub signatures: Option<Spanned<RawSignatures>>,
    /// Brute-force lockout: the flat fields are the per-credential policy, `ip:` the per-IP one.
    #[serde(default)]
    pub lockout: Option<Spanned<RawLockout>>,
}

/// `lockout: { max_failures: 5, window: 15m, base: 1m, max: 1h, ip: { max_failures: 20, … }, ipv6_prefix: 64,
/// on_failure: closed }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLockout {
    #[serde(default)]
    pub max_failures: Option<u32>,
    #[serde(default)]
    pub window: Option<Dur>,
    #[serde(default)]
    pub base: Option<Dur>,
    #[serde(default)]
    pub max: Option<Dur>,
    #[serde(default)]
    pub strike_memory: Option<Dur>,
    #[serde(default)]
    pub ip: Option<RawLockoutPolicy>,
    #[serde(default)]
    pub ipv6_prefix: Option<u8>,
    /// What the lockout does while Redis state cannot answer (`local`, `open`, `closed`); default
    /// `state.on_failure`.
    #[serde(default)]
    pub on_failure: Option<crate::state::FailureMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLockoutPolicy {
    /// Failures within `window` that lock out.
    #[serde(default)]
    pub max_failures: Option<u32>,
    #[serde(default)]
    pub window: Option<Dur>,
    /// The first lockout; each repeat within `strike_memory` doubles it, up to `max`.
    #[serde(default)]
    pub base: Option<Dur>,
    #[serde(default)]
    pub max: Option<Dur>,
    #[serde(default)]
    pub strike_memory: Option<Dur>,
}

/// `signatures: { keys: { id: { alg, public_key | secret, consumer, scopes, roles } }, window, clock_skew, … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignatures {
    pub keys: std::collections::BTreeMap<String, Spanned<RawSignatureKey>>,
    /// How old `created` may be.
    #[serde(default)]
    pub window: Option<Dur>,
    #[serde(default)]
    pub clock_skew: Option<Dur>,
    /// Components every signature must cover (default `@method`, `@target-uri`).
    #[serde(default)]
    pub require: Option<Vec<Spanned<String>>>,
    /// `required` (default) or `optional`.
    #[serde(default)]
    pub nonce: Option<Spanned<String>>,
    #[serde(default)]
    pub tag: Option<String>,
}

/// One verification key; its material comes from the environment (`${VAR}`), never from the file itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignatureKey {
    pub alg: Spanned<String>,
    /// `ed25519`: PEM-less base64 / base64url of the raw or DER public key.
    #[serde(default)]
    pub public_key: Option<Spanned<String>>,
    /// `hmac-sha256`: base64 of the shared secret (at least 32 bytes).
    #[serde(default)]
    pub secret: Option<Spanned<String>>,
    #[serde(default)]
    pub consumer: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    /// Keys file (SHA-256 hashes), managed with `rampart keys`.
    pub file: Spanned<String>,
    #[serde(default)]
    pub header: Option<Spanned<String>>,
    /// Also accept the key in this query parameter (off by default: URLs end up in logs and histories).
    #[serde(default)]
    pub query: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtIssuer {
    pub issuer: Spanned<String>,
    pub audience: OneOrMany<String>,
    /// JWKS URL (https, or http on loopback) or file path.
    #[serde(default)]
    pub jwks: Option<Spanned<String>>,
    /// CA bundle for the JWKS URL's certificate (default: system roots).
    #[serde(default)]
    pub jwks_ca: Option<Spanned<String>>,
    /// Environment variable holding the HMAC secret (HS256/384/512 only; at least 32 bytes).
    #[serde(default)]
    pub secret_env: Option<Spanned<String>>,
    pub algorithms: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub leeway: Option<Dur>,
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default)]
    pub consumer_claim: Option<String>,
    #[serde(default)]
    pub roles_claim: Option<String>,
    #[serde(default)]
    pub refresh: Option<Dur>,
    #[serde(default)]
    pub min_refetch: Option<Dur>,
    #[serde(default)]
    pub fetch_timeout: Option<Dur>,
    /// The verified-token cache: `cache: { max_entries: 10000 }` (the default); `0` turns it off.
    #[serde(default)]
    pub cache: Option<RawJwtCache>,
}

/// `cache: { max_entries: N }` of a JWT issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtCache {
    pub max_entries: Spanned<usize>,
}

/// `introspection: { url: …, client_id_env: …, client_secret_env: …, audience: …, … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    /// The provider's introspection endpoint (https, or http on loopback).
    pub url: Spanned<String>,
    /// Environment variables holding the gateway's client credentials (sent with HTTP Basic).
    pub client_id_env: Spanned<String>,
    pub client_secret_env: Spanned<String>,
    /// CA bundle for the endpoint's certificate (default: system roots).
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    /// Expected `iss`, checked when an answer carries one.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted audiences, checked when an answer carries `aud`.
    #[serde(default)]
    pub audience: Option<OneOrMany<String>>,
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default)]
    pub roles_claim: Option<String>,
    #[serde(default)]
    pub leeway: Option<Dur>,
    /// Most tokens cached.
    #[serde(default)]
    pub cache_max: Option<Spanned<usize>>,
    /// Longest an active answer is trusted (capped further by its `exp`).
    #[serde(default)]
    pub max_ttl: Option<Dur>,
    /// How long a refusal (inactive token …) is remembered.
    #[serde(default)]
    pub inactive_ttl: Option<Dur>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// After a failed call, how long cache misses fail closed without asking the provider.
    #[serde(default)]
    pub min_interval: Option<Dur>,
}

/// One certificate → consumer mapping: exactly one of `sha256`, `san`, `subject`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtlsEntry {
    pub consumer: Spanned<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub san: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Header names for the verified identity; an empty string leaves one out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    #[serde(default)]
    pub consumer: Option<Spanned<String>>,
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Option<Spanned<String>>,
    #[serde(default)]
    pub roles: Option<Spanned<String>>,
}

const ASYMMETRIC: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
const SYMMETRIC: [&str; 3] = ["HS256", "HS384", "HS512"];

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_relative() {
        base.join(p)
    } else {
        p
    }
}

fn header_name(errs: &mut Errs<'_>, s: &Spanned<String>) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.value.trim().to_ascii_lowercase().as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            errs.at(s, format!("invalid header name `{}`", s.value), None);
            None
        }
    }
}

/// Compiles the `identity` section.
pub(super) fn compile_identity(
    errs: &mut Errs<'_>,
    base: &Path,
    raw: &RawIdentity,
    watch: &mut Vec<PathBuf>,
    jwt_counters: &CacheCounters,
) -> Identifier {
    let mut identifier = Identifier::default();
    if let Some(k) = &raw.api_keys {
        let header = match &k.header {
            Some(h) => header_name(errs, h),
            None => Some(HeaderName::from_static("x-api-key")),
        };
        let query = k.query.as_ref().map(|q| q.value.trim().to_string());
        if let Some(q) = &k.query {
            if q.value.trim().is_empty() || q.value.contains(['&', '=']) {
                errs.at(q, format!("invalid query parameter name `{}`", q.value), None);
            }
        }
        let path = resolve(base, k.file.value.trim());
        watch.push(path.clone());
        if let Some(header) = header {
            match ApiKeys::load(&path, header, query) {
                Ok(keys) => identifier.api_keys = Some(keys),
                Err(e) => errs.at(
                    &k.file,
                    e.to_string(),
                    Some("create it with `rampart keys add --file FILE --consumer NAME`"),
                ),
            }
        }
    }
    if let Some(jwt) = &raw.jwt {
        let mut issuers: Vec<JwtIssuer> = Vec::new();
        for i in jwt.as_slice() {
            if issuers.iter().any(|x| x.issuer == i.issuer.value) {
                errs.at(&i.issuer, format!("issuer `{}` is configured twice", i.issuer.value), None);
                continue;
            }
            if let Some(issuer) = compile_issuer(errs, base, i, watch) {
                issuers.push(issuer);
            }
        }
        identifier.jwt = Some(JwtVerifier { issuers, counters: jwt_counters.clone() });
    }
    if !raw.mtls.is_empty() {
        let mut map = MtlsMap::default();
        for e in &raw.mtls {
            let matcher = match (&e.sha256, &e.san, &e.subject) {
                (Some(h), None, None) => CertMatch::Sha256(h.clone()),
                (None, Some(s), None) => CertMatch::San(s.clone()),
                (None, None, Some(s)) => CertMatch::Subject(s.clone()),
                _ => {
                    errs.at(
                        &e.consumer,
                        "an mtls entry names its certificate by exactly one of sha256, san, subject",
                        Some("e.g. `{ san: \"DNS:billing.clients.example\", consumer: billing }`"),
                    );
                    continue;
                }
            };
            if e.consumer.value.trim().is_empty() || e.consumer.value.chars().any(char::is_control) {
                errs.at(&e.consumer, "consumer must be a plain non-empty name", None);
                continue;
            }
            if !map.add(matcher, e.consumer.value.trim(), &e.roles, &e.scopes) {
                errs.at(&e.consumer, "this certificate is already mapped", None);
            }
        }
        identifier.mtls = Some(map);
    }
    if let Some(i) = &raw.introspection {
        identifier.introspection = compile_introspection(errs, base, i, watch);
    }
    if let Some(sigs) = &raw.signatures {
        identifier.signatures = compile_signatures(errs, sigs);
    }
    if let Some(l) = &raw.lockout {
        let apply = |mut p: LockoutPolicy, r: &RawLockoutPolicy| {
            p.max_failures = r.max_failures.unwrap_or(p.max_failures);
            p.window = r.window.map_or(p.window, |d| d.0);
            p.base_lockout = r.base.map_or(p.base_lockout, |d| d.0);
            p.max_lockout = r.max.map_or(p.max_lockout, |d| d.0);
            p.strike_memory = r.strike_memory.map_or(p.strike_memory, |d| d.0);
            p
        };
        let settings = LockoutSettings {
            credential: apply(
                LockoutPolicy::per_credential(),
                &RawLockoutPolicy {
                    max_failures: l.value.max_failures,
                    window: l.value.window,
                    base: l.value.base,
                    max: l.value.max,
                    strike_memory: l.value.strike_memory,
                },
            ),
            ip: apply(LockoutPolicy::per_ip(), l.value.ip.as_ref().unwrap_or(&RawLockoutPolicy::default())),
            ipv6_prefix: l.value.ipv6_prefix.unwrap_or(64),
        };
        match Lockout::new(settings, l.value.on_failure) {
            Ok(lockout) => identifier.lockout = Some(lockout),
            Err(e) => {
                errs.at(l, e.to_string(), Some("e.g. `lockout: { max_failures: 5, window: 15m, base: 1m, max: 1h }`"))
            }
        }
    }
    let mut headers = IdentityHeaders::default();
    if let Some(list) = &raw.strip_headers {
        headers.strip = list
            .iter()
            .filter_map(|s| {
                let p = NamePattern::parse(&s.value);
                if p.is_none() {
                    errs.at(
                        s,
                        format!("invalid header pattern `{}`", s.value),
                        Some("write `x-consumer-*` or `x-user-id`"),
                    );
                }
                p
            })
            .collect();
    }
    if let Some(f) = &raw.forward {
        let mut pick = |s: &Option<Spanned<String>>, default: Option<HeaderName>| match s {
            None => default,
            Some(s) if s.value.trim().is_empty() => None,
            Some(s) => header_name(errs, s),
        };
        let d = headers.forward.clone();
        headers.forward.consumer = pick(&f.consumer, d.consumer);
        headers.forward.method = pick(&f.method, d.method);
        headers.forward.scopes = pick(&f.scopes, d.scopes);
        headers.forward.roles = pick(&f.roles, d.roles);
    }
    // A name we forward must not be one a client can also send and have survive.
    let f = &headers.forward;
    for name in [&f.consumer, &f.method, &f.scopes, &f.roles].into_iter().flatten() {
        if !headers.strip.iter().any(|p| match p {
            NamePattern::Exact(n) => n == name,
            NamePattern::Prefix(pre) => name.as_str().starts_with(pre.as_str()),
        }) {
            headers.strip.push(NamePattern::Exact(name.clone()));
        }
    }
    identifier.headers = headers;
    identifier
}

fn compile_signatures(errs: &mut Errs<'_>, raw: &Spanned<RawSignatures>) -> Option<SignatureVerifier> {
    let mut settings = SignatureSettings::default();
    let before = errs.list.len();
    for (id, k) in &raw.value.keys {
        let Some(alg) = SignatureAlgorithm::parse(k.value.alg.value.trim()) else {
            errs.at(
                &k.value.alg,
                format!("unknown signature algorithm `{}`", k.value.alg.value),
                Some("use ed25519 or hmac-sha256"),
            );
            continue;
        };
        let text = match (alg, &k.value.public_key, &k.value.secret) {
            (SignatureAlgorithm::Ed25519, Some(t), None) | (SignatureAlgorithm::HmacSha256, None, Some(t)) => t,
            _ => {
                errs.at(
                    k,
                    format!("key `{id}`: ed25519 takes `public_key`, hmac-sha256 takes `secret` (exactly one)"),
                    Some("e.g. `{ alg: ed25519, public_key: \"${PARTNER_PUBKEY}\" }`"),
                );
                continue;
            }
        };
        // The error names the key, never its material.
        match SignatureKey::from_text(alg, text.value.trim()) {
            Ok(mut key) => {
                if let Some(c) = &k.value.consumer {
                    key = key.with_consumer(c.trim());
                }
                key = key
                    .with_scopes(k.value.scopes.iter().map(|s| s.trim()))
                    .with_roles(k.value.roles.iter().map(|s| s.trim()));
                settings.keys.insert(id.clone(), key);
            }
            Err(e) => {
                errs.at(text, format!("key `{id}`: {e}"), Some("put the key in the environment and write `${VAR}`"))
            }
        }
    }
    if let Some(w) = raw.value.window {
        settings.max_age = w.0;
    }
    if let Some(s) = raw.value.clock_skew {
        settings.clock_skew = s.0;
    }
    if let Some(list) = &raw.value.require {
        let mut required = Vec::new();
        for c in list {
            match Component::parse(c.value.trim()) {
                Some(comp) => required.push(comp),
                None => errs.at(
                    c,
                    format!("unsupported component `{}`", c.value),
                    Some("e.g. \"@method\", \"@target-uri\", \"content-type\""),
                ),
            }
        }
        settings.required = required;
    }
    if let Some(n) = &raw.value.nonce {
        settings.nonce = match n.value.trim() {
            "required" => NoncePolicy::Required,
            "optional" => NoncePolicy::Optional,
            other => {
                errs.at(n, format!("nonce must be `required` or `optional`, not `{other}`"), None);
                NoncePolicy::Required
            }
        };
    }
    settings.tag = raw.value.tag.clone();
    if errs.list.len() != before {
        return None;
    }
    match SignatureVerifier::new(settings) {
        Ok(v) => Some(v),
        Err(e) => {
            errs.at(raw, e.to_string(), Some("configure at least one key under `signatures.keys`"));
            None
        }
    }
}

fn is_loopback_host(uri: &http::Uri) -> bool {
    match uri.host() {
        Some("localhost") => true,
        Some(h) => {
            h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

fn env_credential(errs: &mut Errs<'_>, var: &Spanned<String>) -> Option<String> {
    const HINT: &str = "export the gateway's client credentials before starting rampart";
    errs.env_secret(var, 1, (format!("environment variable `{}` is not set", var.value.trim()), HINT), HINT)
}

fn compile_introspection(
    errs: &mut Errs<'_>,
    base: &Path,
    spanned: &Spanned<RawIntrospection>,
    watch: &mut Vec<PathBuf>,
) -> Option<Arc<Introspector>> {
    let i = &spanned.value;
    let before = errs.list.len();
    let text = i.url.value.trim();
    let endpoint = match text.parse::<http::Uri>() {
        Ok(uri)
            if uri.scheme_str() == Some("https") || (uri.scheme_str() == Some("http") && is_loopback_host(&uri)) =>
        {
            Some(uri)
        }
        Ok(uri) if uri.scheme_str() == Some("http") => {
            errs.at(
                &i.url,
                "an introspection URL must be https (plain http only on loopback)",
                Some("the gateway's client secret and every token would cross the network in clear"),
            );
            None
        }
        _ => {
            errs.at(
                &i.url,
                format!("invalid introspection URL `{text}`"),
                Some("e.g. https://id.example.com/oauth2/introspect"),
            );
            None
        }
    };
    let client_id = env_credential(errs, &i.client_id_env);
    let client_secret = env_credential(errs, &i.client_secret_env);
    let cache_max = i.cache_max.as_ref().map_or(10_000, |c| c.value);
    if let Some(c) = &i.cache_max {
        if c.value == 0 {
            errs.at(c, "cache_max must be at least 1", Some("the default is 10000"));
        }
    }
    let ca = i.ca.as_ref().map(|c| resolve(base, c.value.trim()));
    watch.extend(ca.clone());
    let tls = match crate::upstream::client_tls(ca.as_deref(), None, true) {
        Ok(t) => Some(t),
        Err(e) => {
            errs.at(i.ca.as_ref().unwrap_or(&i.url), format!("introspection TLS: {e}"), None);
            None
        }
    };
    let audience: Vec<String> = i
        .audience
        .as_ref()
        .map(|a| a.as_slice().iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let timing = Timing {
        timeout: i.timeout.map_or(Duration::from_secs(2), |d| d.0),
        max_ttl: i.max_ttl.map_or(Duration::from_secs(300), |d| d.0),
        inactive_ttl: i.inactive_ttl.map_or(Duration::from_secs(30), |d| d.0),
        min_interval: i.min_interval.map_or(Duration::from_secs(1), |d| d.0),
        cache_max,
    };
    if timing.timeout.is_zero() {
        errs.at(spanned, "introspection timeout must be above zero", Some("e.g. `timeout: 2s`"));
    }
    let (Some(endpoint), Some(client_id), Some(client_secret), Some(tls)) = (endpoint, client_id, client_secret, tls)
    else {
        return None;
    };
    if errs.list.len() > before {
        return None;
    }
    let rules = Rules {
        issuer: i.issuer.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        audience,
        required_claims: i.required_claims.clone(),
        roles_claim: i.roles_claim.as_deref().unwrap_or("roles").split('.').map(str::to_string).collect(),
        leeway: i.leeway.map_or(30, |d| d.0.as_secs()),
    };
    let settings = Settings { endpoint, client_id, client_secret, rules, timing };
    let shared = Introspector::shared(settings, tls);
    if shared.is_none() {
        errs.at(&i.client_id_env, "the client credentials cannot be sent in an HTTP header", None);
    }
    shared
}

fn compile_issuer(errs: &mut Errs<'_>, base: &Path, i: &RawJwtIssuer, watch: &mut Vec<PathBuf>) -> Option<JwtIssuer> {
    let before = errs.list.len();
    let issuer = i.issuer.value.trim().to_string();
    if issuer.is_empty() {
        errs.at(&i.issuer, "issuer is empty", Some("write the exact `iss` value the tokens carry"));
    }
    let audience: Vec<String> =
        i.audience.as_slice().iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
    if audience.is_empty() {
        errs.at(&i.issuer, "no audience", Some("tokens for other APIs must not be accepted: set `audience`"));
    }
    let mut algorithms = Vec::new();
    for a in &i.algorithms.value {
        let name = a.value.trim();
        if SYMMETRIC.contains(&name) && i.secret_env.is_none() {
            errs.at(
                a,
                format!("{name} needs `secret_env`"),
                Some("HMAC algorithms are only allowed with a configured secret"),
            );
            continue;
        }
        if !ASYMMETRIC.contains(&name) && !SYMMETRIC.contains(&name) {
            errs.at(
                a,
                format!("algorithm `{name}` is not accepted"),
                Some("use RS256/384/512, PS256/384/512, ES256/384, EdDSA, or HS256/384/512 with secret_env"),
            );
            continue;
        }
        if let Ok(alg) = name.parse::<jsonwebtoken::Algorithm>() {
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
    }
    if i.algorithms.value.is_empty() {
        errs.at(&i.algorithms, "no algorithms", Some("list the ones your identity provider signs with, e.g. [RS256]"));
    }
    let wants_asymmetric = algorithms.iter().any(|a| {
        !matches!(a, jsonwebtoken::Algorithm::HS256 | jsonwebtoken::Algorithm::HS384 | jsonwebtoken::Algorithm::HS512)
    });
    let hmac = i.secret_env.as_ref().and_then(|var| {
        let too_short = (
            format!("the secret in `{}` is shorter than {MIN_HMAC_SECRET_BYTES} bytes", var.value),
            "use a long random secret, e.g. `openssl rand -base64 48`",
        );
        let secret = errs.env_secret(var, MIN_HMAC_SECRET_BYTES, too_short, "export it before starting rampart")?;
        Some(HmacKey::new(secret.as_bytes()))
    });
    if i.secret_env.is_some()
        && !algorithms.iter().any(|a| {
            matches!(
                a,
                jsonwebtoken::Algorithm::HS256 | jsonwebtoken::Algorithm::HS384 | jsonwebtoken::Algorithm::HS512
            )
        })
    {
        errs.at(&i.issuer, "secret_env is set but no HS algorithm is allowed", None);
    }
    let keys = match (&i.jwks, wants_asymmetric) {
        (None, false) => KeySource::None,
        (None, true) => {
            errs.at(&i.issuer, "asymmetric algorithms need `jwks`", Some("a JWKS URL (https) or file path"));
            KeySource::None
        }
        (Some(j), _) => {
            let text = j.value.trim();
            if text.starts_with("http://") || text.starts_with("https://") {
                match text.parse::<http::Uri>() {
                    Ok(uri) if uri.scheme_str() == Some("https") || is_loopback_host(&uri) => {
                        let ca = i.jwks_ca.as_ref().map(|c| resolve(base, c.value.trim()));
                        watch.extend(ca.clone());
                        match crate::upstream::client_tls(ca.as_deref(), None, true) {
                            Ok(tls) => KeySource::Remote(RemoteJwks::shared(
                                uri,
                                RemotePolicy {
                                    refresh: i
                                        .refresh
                                        .map_or(Duration::from_secs(300), |d| d.0)
                                        .max(Duration::from_secs(1)),
                                    min_refetch: i.min_refetch.map_or(Duration::from_secs(30), |d| d.0),
                                    timeout: i.fetch_timeout.map_or(Duration::from_secs(5), |d| d.0),
                                },
                                tls,
                            )),
                            Err(e) => {
                                errs.at(j, format!("JWKS TLS: {e}"), None);
                                KeySource::None
                            }
                        }
                    }
                    Ok(_) => {
                        errs.at(
                            j,
                            "a JWKS URL must be https (plain http only on loopback)",
                            Some("keys fetched over plain HTTP can be swapped in transit"),
                        );
                        KeySource::None
                    }
                    Err(_) => {
                        errs.at(j, format!("invalid JWKS URL `{text}`"), None);
                        KeySource::None
                    }
                }
            } else {
                let path = resolve(base, text);
                watch.push(path.clone());
                match std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| KeySet::parse(&b)) {
                    Ok((set, skipped)) => {
                        if !skipped.is_empty() {
                            tracing::warn!(target: "rampart", jwks = %path.display(), skipped = %skipped.join("; "), "JWKS keys skipped");
                        }
                        KeySource::File(Arc::new(set))
                    }
                    Err(e) => {
                        errs.at(
                            j,
                            format!("JWKS {}: {e}", path.display()),
                            Some("a JSON Web Key Set file: {\"keys\": [...]}"),
                        );
                        KeySource::None
                    }
                }
            }
        }
    };
    let cache_entries = i.cache.as_ref().map_or(DEFAULT_CACHE_ENTRIES, |c| c.max_entries.value);
    if let Some(c) = &i.cache {
        if c.max_entries.value > MAX_CACHE_ENTRIES {
            errs.at(
                &c.max_entries,
                format!("max_entries above {MAX_CACHE_ENTRIES}"),
                Some("each entry holds a verified identity; the default is 10000, 0 turns the cache off"),
            );
        }
    }
    if errs.list.len() > before {
        return None;
    }
    let leeway = i.leeway.map_or(30, |d| d.0.as_secs());
    Some(JwtIssuer {
        audience,
        cache: (cache_entries > 0).then(|| VerifiedCache::new(cache_entries)),
        issuer,
        algorithms,
        keys,
        hmac,
        leeway,
        required_claims: i.required_claims.clone(),
        consumer_claim: i.consumer_claim.clone().unwrap_or_else(|| "sub".into()),
        roles_claim: i.roles_claim.as_deref().unwrap_or("roles").split('.').map(str::to_string).collect(),
    })
}

fn template_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

fn arcs(list: &[String]) -> Vec<Arc<str>> {
    list.iter().map(|s| Arc::from(s.trim())).collect()
}

/// Compiles a route's `auth` and authorization fields.
pub(super) fn compile_route(
    errs: &mut Errs<'_>,
    r: &RawRoute,
    methods: &[Method],
    identifier: &Identifier,
    mtls_listener: bool,
) -> (RouteIdentify, AuthzPolicy) {
    let api_key_header = identifier.api_keys.as_ref().map_or("x-api-key", |k| k.header().as_str());
    let auth = match &r.auth {
        None => {
            errs.at(
                &r.path,
                format!("route `{}` does not say who may call it", r.path.value),
                Some("add `auth: none` for a public route, or the accepted methods, e.g. `auth: [jwt]`, `auth: [api_key, jwt]`, `auth: [mtls]`"),
            );
            RouteAuth::Public
        }
        Some(a) => match &a.value {
            RawAuth::None => RouteAuth::Public,
            RawAuth::Methods(list) => {
                let mut accepted = Vec::new();
                for m in list {
                    match parse_method(&m.value) {
                        None => errs.at(
                            m,
                            format!("unknown auth method `{}`", m.value),
                            Some("use api_key, jwt, introspection, mtls or signature, or `auth: none`"),
                        ),
                        Some(method) => {
                            let configured = match method {
                                AuthMethod::ApiKey => identifier.api_keys.is_some(),
                                AuthMethod::Jwt => identifier.jwt.as_ref().is_some_and(|j| !j.issuers.is_empty()),
                                AuthMethod::Mtls => identifier.mtls.is_some(),
                                AuthMethod::Introspection => identifier.introspection.is_some(),
                                AuthMethod::Signature => identifier.signatures.is_some(),
                            };
                            if !configured {
                                errs.at(m, format!("`{}` is not configured", m.value), Some(match method {
                                    AuthMethod::ApiKey => "add `identity: { api_keys: { file: keys.yaml } }`",
                                    AuthMethod::Jwt => "add `identity: { jwt: { issuer: …, audience: …, jwks: …, algorithms: [RS256] } }`",
                                    AuthMethod::Introspection => "add `identity: { introspection: { url: …, client_id_env: …, client_secret_env: … } }`",
                                    AuthMethod::Signature => "add `identity: { signatures: { keys: { partner: { alg: ed25519, public_key: \"${PARTNER_PUBKEY}\" } } } }`",
                                    _ => "add `identity: { mtls: [{ san: \"DNS:client.example\", consumer: name }] }`",
                                }));
                            } else if method == AuthMethod::Mtls && !mtls_listener {
                                errs.at(
                                    m,
                                    "`mtls` needs a listener that asks for client certificates",
                                    Some("add `tls.client_auth: { ca: … }` to a listener"),
                                );
                            }
                            if !accepted.contains(&method) {
                                accepted.push(method);
                            }
                        }
                    }
                }
                if list.is_empty() {
                    errs.at(a, "auth lists no methods", Some("write `auth: none` for a public route"));
                }
                RouteAuth::AnyOf(accepted)
            }
        },
    };
    let mut policy =
        AuthzPolicy { roles: arcs(&r.roles.iter().map(|s| s.value.clone()).collect::<Vec<_>>()), ..Default::default() };
    if let Some(s) = &r.scopes {
        policy.scopes = match &s.value {
            RawScopes::All(list) => ScopeRule::All(list.iter().map(|x| Arc::from(x.value.trim())).collect()),
            RawScopes::PerMethod(map) => {
                let mut rules: Vec<(Method, Vec<Arc<str>>)> = Vec::new();
                for (key, scopes) in map {
                    let names: Vec<String> = if key.value.trim().eq_ignore_ascii_case("any") {
                        methods.iter().filter(|m| !rules.iter().any(|(x, _)| x == *m)).map(|m| m.to_string()).collect()
                    } else {
                        key.value.split('|').map(|m| m.trim().to_ascii_uppercase()).collect()
                    };
                    for name in names {
                        match Method::from_bytes(name.as_bytes()) {
                            Ok(m) if methods.contains(&m) => {
                                if rules.iter().any(|(x, _)| *x == m) {
                                    errs.at(key, format!("scopes for {m} are given twice"), None);
                                } else {
                                    rules.push((m, scopes.iter().map(|x| Arc::from(x.value.trim())).collect()));
                                }
                            }
                            _ => errs.at(
                                key,
                                format!("`{name}` is not a method of this route"),
                                Some("keys are the route's methods, `GET|HEAD`, or ANY for the rest"),
                            ),
                        }
                    }
                }
                for m in methods {
                    if !rules.iter().any(|(x, _)| x == m) {
                        errs.at(
                            s,
                            format!("scopes do not cover {m}, which the route accepts"),
                            Some("add it (`ANY: [...]` covers the rest), or remove the method from the route"),
                        );
                    }
                }
                ScopeRule::PerMethod(rules)
            }
        };
    }
    if let Some(o) = &r.owner {
        let ov = &o.value;
        let source = match (&ov.param, &ov.query, &ov.json) {
            (Some(p), None, None) => {
                if !template_params(&r.path.value).contains(&p.value.trim()) {
                    errs.at(p, format!("the path `{}` has no parameter `{{{}}}`", r.path.value, p.value), None);
                }
                Some(OwnerSource::PathParam(p.value.trim().to_string()))
            }
            (None, Some(q), None) => Some(OwnerSource::Query(q.value.trim().to_string())),
            (None, None, Some(j)) => Some(OwnerSource::Json(j.value.trim().split('.').map(str::to_string).collect())),
            _ => {
                errs.at(
                    o,
                    "owner takes exactly one of param, query, json",
                    Some("e.g. `owner: { param: id, claim: sub }`"),
                );
                None
            }
        };
        policy.owner = source.map(|source| OwnerRule {
            source,
            claim: ov.claim.clone().unwrap_or_else(|| "sub".into()),
            override_roles: arcs(&ov.override_roles),
        });
    }
    if let Some(m) = &r.mass_assignment {
        if m.value.fields.value.is_empty() {
            errs.at(&m.value.fields, "mass_assignment lists no fields", None);
        }
        policy.mass_assignment = Some(MassAssignmentRule {
            fields: m.value.fields.value.iter().map(|f| f.trim().to_ascii_lowercase()).collect(),
            roles: arcs(&m.value.roles),
        });
    }
    if auth == RouteAuth::Public && r.auth.is_some() && !policy.is_empty() {
        errs.at(
            &r.path,
            format!("route `{}` is public (`auth: none`) but has authorization rules", r.path.value),
            Some("roles, scopes, owner and mass_assignment need an identity: list the accepted auth methods"),
        );
    }
    (RouteIdentify::new(auth, api_key_header), policy)
}
