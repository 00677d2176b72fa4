//! JWKS: an issuer's public keys, from a file (reloaded with the config) or a URL. A URL's keys are cached and
//! refreshed in the background; a token with an unknown `kid` triggers one refetch, single-flight and at most
//! once per `min_refetch` interval, so a flood of made-up `kid`s cannot hammer the identity provider; when the
//! provider is down the last good keys stay in use. Keys named by a token (`jku`, `x5u`, `jwk`, `x5c`) are never
//! fetched — only the configured source is.

use super::fetch;
use arc_swap::ArcSwapOption;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use http::Uri;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Smallest RSA modulus accepted (bits); shorter keys are skipped with a warning.
const MIN_RSA_BITS: usize = 2048;
/// Most keys kept from one JWKS; a provider publishing more is misconfigured or hostile.
const MAX_KEYS: usize = 64;

/// What kind of public key a JWK is, so a token's `alg` can only ever be checked with a key of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    /// The algorithms a key of this kind can check.
    fn algorithms(self) -> &'static [Algorithm] {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => &[RS256, RS384, RS512, PS256, PS384, PS512],
            KeyKind::P256 => &[ES256],
            KeyKind::P384 => &[ES384],
            KeyKind::Ed25519 => &[EdDSA],
        }
    }
}

fn rsa_params(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// One verification key, parsed once when the JWKS is loaded: into aws-lc's own form, once per algorithm it
/// may check, so a verification never decodes or re-parses key material.
pub struct VerifyKey {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    pub alg: Option<Algorithm>,
    pub kind: KeyKind,
    prepared: Vec<(Algorithm, ParsedPublicKey)>,
    /// SHA-256 of the JWK's JSON: a refreshed JWKS keeps the same `Arc` for an unchanged key, so tokens cached
    /// under it stay valid across refreshes while a removed or changed key invalidates them.
    fingerprint: [u8; 32],
}

impl VerifyKey {
    /// Whether `signature` is this key's `alg` signature over `message` (false for an algorithm the key was
    /// not prepared for). ECDSA signatures are fixed-size `r‖s`; aws-lc refuses r = 0 or s = 0.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.prepared.iter().find(|(a, _)| *a == alg).is_some_and(|(_, k)| k.verify_sig(message, signature).is_ok())
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("alg", &self.alg).field("kind", &self.kind).finish()
    }
}

/// The result of looking a token's key up.
pub enum Lookup<'a> {
    Found(&'a Arc<VerifyKey>),
    UnknownKid,
    /// No `kid` in the token and more than one key that could fit.
    Ambiguous,
}

/// A parsed JWKS.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerifyKey>>>,
    all: Vec<Arc<VerifyKey>>,
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

fn b64url_len(s: &str) -> usize {
    s.trim_end_matches('=').len() * 3 / 4
}

fn parse_key(v: &serde_json::Value) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(v.clone()).map_err(|e| format!("not a usable JWK: {e}"))?;
    let kid = jwk.common.key_id.clone();
    let name = kid.as_deref().unwrap_or("(no kid)").to_string();
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))) {
        return Err(format!("{name}: not a signing key (use)"));
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(key_algorithm(a).ok_or_else(|| format!("{name}: algorithm {a:?} is not accepted"))?),
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = p.n.trim_start_matches('A');
            if b64url_len(n) * 8 < MIN_RSA_BITS - 8 {
                return Err(format!("{name}: RSA key shorter than {MIN_RSA_BITS} bits"));
            }
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return Err(format!("{name}: curve {:?} is not accepted", p.curve)),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => KeyKind::Ed25519,
        // Symmetric keys never come from a JWKS: HMAC secrets are configured, not published.
        AlgorithmParameters::OctetKey(_) => return Err(format!("{name}: symmetric (oct) keys are never trusted")),
        _ => return Err(format!("{name}: key type not accepted")),
    };
    if let Some(a) = alg {
        if !kind.fits(a) {
            return Err(format!("{name}: alg {a:?} does not match the key type"));
        }
    }
    let prepared = prepare(&jwk.algorithm, kind, alg).map_err(|e| format!("{name}: {e}"))?;
    let fingerprint = super::jwt_cache::token_hash(&v.to_string());
    Ok(VerifyKey { kid, alg, kind, prepared, fingerprint })
}

/// Parses the key material once per algorithm the key may check (only its own `alg` when it pins one).
fn prepare(
    params: &AlgorithmParameters,
    kind: KeyKind,
    pinned: Option<Algorithm>,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, String> {
    let b64 = |field: &str, v: &str| super::jwt::b64url_decode(v).ok_or_else(|| format!("`{field}` is not base64url"));
    let algs = kind.algorithms().iter().copied().filter(|a| pinned.is_none_or(|p| p == *a));
    let bad = |e: aws_lc_rs::error::KeyRejected| format!("unusable key: {e}");
    match params {
        AlgorithmParameters::RSA(p) => {
            let (n, e) = (b64("n", &p.n)?, b64("e", &p.e)?);
            let components = RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() };
            algs.filter_map(|a| rsa_params(a).map(|params| (a, params)))
                .map(|(a, params)| components.to_parsed_public_key(params).map(|k| (a, k)).map_err(bad))
                .collect()
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (x, y) = (b64("x", &p.x)?, b64("y", &p.y)?);
            let (verifier, size): (&'static dyn sig::VerificationAlgorithm, usize) = match kind {
                KeyKind::P256 => (&sig::ECDSA_P256_SHA256_FIXED, 32),
                _ => (&sig::ECDSA_P384_SHA384_FIXED, 48),
            };
            if x.len() != size || y.len() != size {
                return Err(format!("EC coordinates must be {size} bytes"));
            }
            let point: Vec<u8> = [&[0x04][..], &x, &y].concat();
            algs.map(|a| ParsedPublicKey::new(verifier, &point).map(|k| (a, k)).map_err(bad)).collect()
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            let x = b64("x", &p.x)?;
            algs.map(|a| ParsedPublicKey::new(&sig::ED25519, &x).map(|k| (a, k)).map_err(bad)).collect()
        }
        _ => Err("key type not accepted".into()),
    }
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot be used are skipped and named in the second value, so one odd
    /// key (an encryption key, an unsupported curve) does not take the others down.
    pub fn parse(json: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        KeySet::parse_reusing(json, None)
    }

    /// Like [`KeySet::parse`], keeping `previous`'s `Arc` for every key whose JWK is unchanged, so the tokens
    /// the verified-token cache holds for it survive a refresh.
    pub fn parse_reusing(json: &[u8], previous: Option<&KeySet>) -> Result<(KeySet, Vec<String>), String> {
        let doc: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let list = doc.get("keys").and_then(|k| k.as_array()).ok_or("no `keys` array")?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for v in list.iter().take(MAX_KEYS) {
            match parse_key(v) {
                Ok(k) => {
                    let k = previous
                        .and_then(|p| p.all.iter().find(|old| old.fingerprint == k.fingerprint))
                        .cloned()
                        .unwrap_or_else(|| Arc::new(k));
                    if let Some(kid) = &k.kid {
                        set.by_kid.entry(kid.clone()).or_default().push(k.clone());
                    }
                    set.all.push(k);
                }
                Err(e) => skipped.push(e),
            }
        }
        if list.len() > MAX_KEYS {
            skipped.push(format!("{} keys beyond the first {MAX_KEYS} ignored", list.len() - MAX_KEYS));
        }
        if set.all.is_empty() {
            return Err(format!("no usable signing key ({})", skipped.join("; ")));
        }
        Ok((set, skipped))
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Whether this set holds this very key (the one a cached token was verified with).
    pub fn holds(&self, key: &Arc<VerifyKey>) -> bool {
        self.all.iter().any(|k| Arc::ptr_eq(k, key))
    }

    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The key for a token: by `kid` (several keys may share one across families), or — without a `kid` — the
    /// only key that fits the algorithm.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(keys) => keys
                    .iter()
                    .find(|k| k.kind.fits(alg) && k.alg.is_none_or(|a| a == alg))
                    .or_else(|| keys.first())
                    .map_or(Lookup::UnknownKid, Lookup::Found),
                None => Lookup::UnknownKid,
            },
            None => {
                let mut fitting = self.all.iter().filter(|k| k.kind.fits(alg) && k.alg.is_none_or(|a| a == alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Found(k),
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                    (None, _) => Lookup::UnknownKid,
                }
            }
        }
    }
}

/// Timing of a remote JWKS.
#[derive(Debug, Clone, Copy)]
pub struct RemotePolicy {
    /// Background refresh interval.
    pub refresh: Duration,
    /// Fewest time between two fetches caused by unknown `kid`s.
    pub min_refetch: Duration,
    pub timeout: Duration,
}

/// A JWKS fetched from a URL, shared across config reloads (keyed by URL and policy) so a reload neither
/// refetches nor forgets the last good keys.
pub struct RemoteJwks {
    url: Uri,
    policy: RemotePolicy,
    tls: Arc<rustls::ClientConfig>,
    keys: ArcSwapOption<KeySet>,
    /// When the last fetch started; held across a fetch, which makes fetches single-flight.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

type Registry = Mutex<HashMap<String, Weak<RemoteJwks>>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl RemoteJwks {
    /// The cache for `url`, reusing a live one. Starts the background refresh when called inside a Tokio
    /// runtime (not in `rampart validate`).
    pub fn shared(url: Uri, policy: RemotePolicy, tls: Arc<rustls::ClientConfig>) -> Arc<RemoteJwks> {
        let key = format!("{url}|{:?}|{:?}|{:?}", policy.refresh, policy.min_refetch, policy.timeout);
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = reg.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let jwks = Arc::new(RemoteJwks {
            url,
            policy,
            tls,
            keys: ArcSwapOption::empty(),
            last_fetch: tokio::sync::Mutex::new(None),
        });
        reg.insert(key, Arc::downgrade(&jwks));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(refresh_loop(Arc::downgrade(&jwks)));
        }
        jwks
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// Whether the keys in use hold `key` (without taking a reference to the set).
    pub fn holds(&self, key: &Arc<VerifyKey>) -> bool {
        self.keys.load().as_ref().is_some_and(|set| set.holds(key))
    }

    /// The keys in use, or `None` when none were ever loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    async fn fetch_and_store(&self) -> Result<usize, String> {
        let body = fetch::get(&self.url, &self.tls, self.policy.timeout).await.map_err(|e| e.to_string())?;
        let (set, skipped) = KeySet::parse_reusing(&body, self.current().as_deref())?;
        if !skipped.is_empty() {
            tracing::warn!(target: "rampart", jwks = %self.url, skipped = %skipped.join("; "), "JWKS keys skipped");
        }
        let n = set.len();
        self.keys.store(Some(Arc::new(set)));
        Ok(n)
    }

    /// Fetches now unless another fetch ran within `min_refetch` (or `force`); waits for a fetch in progress
    /// instead of starting a second one.
    pub async fn refetch(&self, wanted_kid: Option<&str>, force: bool) {
        let mut last = self.last_fetch.lock().await;
        if let (Some(kid), Some(keys)) = (wanted_kid, self.current()) {
            if keys.contains_kid(kid) {
                return; // fetched by someone else while we waited
            }
        }
        if !force && last.is_some_and(|t| t.elapsed() < self.policy.min_refetch) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch_and_store().await {
            Ok(n) => tracing::info!(target: "rampart", jwks = %self.url, keys = n, "JWKS loaded"),
            Err(e) => {
                tracing::warn!(target: "rampart", jwks = %self.url, error = %e, "JWKS fetch failed; keeping the last good keys")
            }
        }
    }
}

/// Refreshes while anyone still uses the cache: at once, then every `refresh` (every `min_refetch` while no
/// keys were ever loaded).
async fn refresh_loop(weak: Weak<RemoteJwks>) {
    loop {
        let wait = {
            let Some(jwks) = weak.upgrade() else { return };
            jwks.refetch(None, true).await;
            if jwks.current().is_some() {
                jwks.policy.refresh
            } else {
                jwks.policy.min_refetch
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_jwk(kid: &str) -> serde_json::Value {
        // A 2048-bit modulus shape (the value need not be a real key to be parsed).
        serde_json::json!({ "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": format!("{}w", "x".repeat(341)), "e": "AQAB" })
    }

    #[test]
    fn odd_keys_are_skipped_and_symmetric_keys_never_trusted() {
        let doc = serde_json::json!({ "keys": [
            rsa_jwk("rsa-1"),
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "RSA", "kid": "short", "n": "x".repeat(100), "e": "AQAB" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "x".repeat(342), "e": "AQAB" },
        ]});
        let (set, skipped) = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(matches!(set.find(Some("rsa-1"), Algorithm::RS256), Lookup::Found(_)));
        assert!(matches!(set.find(Some("hmac"), Algorithm::HS256), Lookup::UnknownKid));
        assert!(matches!(set.find(None, Algorithm::RS256), Lookup::Found(_)));
        assert!(KeySet::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        assert!(KeySet::parse(b"[]").is_err());
    }
}
