//! JWT bearer tokens (RFC 7519/7515), per issuer: keys from a JWKS (file or URL) or, for HS256/384/512 only, a
//! shared secret of at least 32 bytes from the environment; an algorithm allow-list; `iss`, `aud`, `exp`, `nbf`,
//! `iat` with a leeway; required claims.
//!
//! The header is read by us before anything else so every attack has its own code: `alg: none` in any casing
//! and algorithms off the issuer's list (`auth.jwt.alg`, which is also what HMAC-with-the-RSA-public-key key
//! confusion hits), `jku`/`x5u`/`jwk`/`x5c`/`crit` (`auth.jwt.header`, never fetched), `kid` values that are
//! not plain identifiers (`auth.jwt.kid`). The token is split, decoded and parsed once; the signature is
//! then checked with the key aws-lc parsed when the JWKS was loaded (aws-lc also refuses ECDSA signatures with
//! r = s = 0), and the registered claims by [`super::jwt_claims`] on the same parsed payload.
//!
//! A token that passed all of it is kept in the issuer's verified-token cache ([`super::jwt_cache`]), so a
//! client presenting the same token again costs a SHA-256 and a map lookup, with its time claims and its key
//! re-checked on every hit.

use super::jwks::{KeySet, Lookup, RemoteJwks, VerifyKey};
use super::jwt_cache::{self, CacheCounters, TokenHash, VerifiedBy, VerifiedCache};
use super::jwt_claims;
use super::{AuthFailure, AuthMethod, IdentifyCode, Identity};
use aws_lc_rs::hmac;
use http::header::AUTHORIZATION;
use http::request::Parts;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::str::FromStr;
use std::sync::Arc;

/// Longest token accepted; real access tokens are 1–2 KB.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `kid` accepted.
const MAX_KID_BYTES: usize = 256;
/// Header parameters that name or carry keys (RFC 7515 §4.1) or demand extensions we do not implement.
const FORBIDDEN_HEADERS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "crit"];
/// Smallest HMAC secret accepted (bytes): RFC 7518 §3.2 requires a key at least as long as the hash.
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Verified tokens cached per issuer unless configured otherwise.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// Where an issuer's asymmetric keys come from.
pub enum KeySource {
    /// No asymmetric keys (HMAC-only issuer).
    None,
    /// A JWKS file, read at config load.
    File(Arc<KeySet>),
    Remote(Arc<RemoteJwks>),
}

impl KeySource {
    /// Whether the current key set still holds `key` (a key a cached token was verified with).
    fn holds(&self, key: &Arc<VerifyKey>) -> bool {
        match self {
            KeySource::None => false,
            KeySource::File(set) => set.holds(key),
            KeySource::Remote(remote) => remote.holds(key),
        }
    }
}

/// An issuer's HMAC secret, prepared once for each HS algorithm.
pub struct HmacKey {
    hs256: hmac::Key,
    hs384: hmac::Key,
    hs512: hmac::Key,
}

impl HmacKey {
    pub fn new(secret: &[u8]) -> HmacKey {
        HmacKey {
            hs256: hmac::Key::new(hmac::HMAC_SHA256, secret),
            hs384: hmac::Key::new(hmac::HMAC_SHA384, secret),
            hs512: hmac::Key::new(hmac::HMAC_SHA512, secret),
        }
    }

    /// Constant-time check of an HS256/384/512 tag.
    fn verify(&self, alg: Algorithm, message: &[u8], tag: &[u8]) -> bool {
        let key = match alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::HS384 => &self.hs384,
            Algorithm::HS512 => &self.hs512,
            _ => return false,
        };
        hmac::verify(key, message, tag).is_ok()
    }
}

/// One trusted issuer, compiled.
pub struct JwtIssuer {
    pub issuer: String,
    /// Accepted `aud` values (a token must name one).
    pub audience: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySource,
    /// The HMAC key, only when an HS algorithm is allowed (and then from a secret of ≥ 32 bytes).
    pub hmac: Option<HmacKey>,
    pub leeway: u64,
    /// Claims that must be present on top of `iss`, `aud` and `exp`.
    pub required_claims: Vec<String>,
    /// The claim whose value is the consumer id (default `sub`).
    pub consumer_claim: String,
    /// Dotted path of the roles claim (default `roles`; e.g. `realm_access.roles`).
    pub roles_claim: Vec<String>,
    /// Tokens of this issuer already verified (`None`: `cache: { max_entries: 0 }`).
    pub cache: Option<VerifiedCache>,
}

impl JwtIssuer {
    /// Whether a cached entry still stands: its time claims at `now` and the key that verified it.
    fn still_valid(&self, e: &jwt_cache::Entry, now: u64) -> bool {
        e.validity.holds(now, self.leeway)
            && match &e.key {
                VerifiedBy::Hmac => self.hmac.is_some(),
                VerifiedBy::Key(k) => self.keys.holds(k),
            }
    }
}

/// The compiled JWT verifier: one or more issuers, picked by the token's `iss`.
pub struct JwtVerifier {
    pub issuers: Vec<JwtIssuer>,
    /// Verified-token cache hits and misses (all issuers).
    pub counters: CacheCounters,
}

fn fail(code: IdentifyCode, detail: impl Into<String>) -> AuthFailure {
    AuthFailure::new(code, detail)
}

/// Strict unpadded base64url (RFC 7515 §2): no padding, no whitespace, and the unused low bits of the last
/// character must be zero, so one byte string has exactly one encoding.
pub(super) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        match chunk.len() {
            2 if n & 0xffff != 0 => return None,
            3 if n & 0xff != 0 => return None,
            _ => {}
        }
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// A `kid` is a lookup key, nothing more; anything that looks like a path, a query or markup is refused before
/// it gets near a lookup or a log line.
fn plain_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_BYTES
        && !kid.contains("..")
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'/' | b'='))
}

fn claim_path<'a>(claims: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(claims, |v, seg| v.get(seg))
}

fn strings(v: Option<&Value>, split: bool) -> Vec<Arc<str>> {
    match v {
        Some(Value::String(s)) if split => s.split_whitespace().map(Arc::from).collect(),
        Some(Value::String(s)) => vec![Arc::from(s.as_str())],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str()).map(Arc::from).collect(),
        _ => Vec::new(),
    }
}

/// A token split and read once, before verification: the header checked, the payload parsed.
struct Unverified<'t> {
    alg: Algorithm,
    kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    signed: &'t str,
    signature: &'t str,
    /// The payload, a JSON object.
    claims: Value,
}

impl Unverified<'_> {
    fn iss(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

/// What a full verification yields.
struct Verified<'i> {
    issuer: &'i JwtIssuer,
    identity: Arc<Identity>,
    validity: jwt_cache::Validity,
    by: VerifiedBy,
}

impl JwtVerifier {
    pub fn presented(&self, parts: &Parts) -> bool {
        bearer(parts).is_some()
    }

    /// Verifies the request's bearer token.
    pub async fn verify(&self, parts: &Parts) -> Result<Arc<Identity>, AuthFailure> {
        let Some(token) = bearer(parts) else { return Err(fail(IdentifyCode::Missing, "no bearer token")) };
        if parts.headers.get_all(AUTHORIZATION).iter().count() > 1 {
            return Err(fail(IdentifyCode::JwtMalformed, "several Authorization headers"));
        }
        self.verify_token(token, jsonwebtoken::get_current_timestamp()).await
    }

    /// Verifies one token (without the `Bearer ` prefix) at time `now` (seconds since the epoch): from the
    /// verified-token cache when an issuer holds it and it still stands, otherwise fully (and then cached).
    pub async fn verify_token(&self, token: &str, now: u64) -> Result<Arc<Identity>, AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(fail(IdentifyCode::JwtMalformed, format!("token of {} bytes", token.len())));
        }
        let hash = self.issuers.iter().any(|i| i.cache.is_some()).then(|| jwt_cache::token_hash(token));
        if let Some(hash) = &hash {
            if let Some(identity) = self.cached(hash, now) {
                self.counters.hits.inc();
                return Ok(identity);
            }
            self.counters.misses.inc();
        }
        let v = self.verify_fully(token, now).await?;
        if let (Some(hash), Some(cache)) = (hash, &v.issuer.cache) {
            cache.insert(hash, v.identity.clone(), v.validity, v.by, now, v.issuer.leeway);
        }
        Ok(v.identity)
    }

    /// The identity of an already verified token that still stands; a stale entry is dropped.
    fn cached(&self, hash: &TokenHash, now: u64) -> Option<Arc<Identity>> {
        for issuer in &self.issuers {
            let Some(cache) = &issuer.cache else { continue };
            match cache.lookup(hash, |e| issuer.still_valid(e, now)) {
                jwt_cache::Lookup::Hit(identity) => return Some(identity),
                jwt_cache::Lookup::Stale => cache.remove(hash),
                jwt_cache::Lookup::Miss => {}
            }
        }
        None
    }

    async fn verify_fully(&self, token: &str, now: u64) -> Result<Verified<'_>, AuthFailure> {
        let u = read_unverified(token)?;
        let issuer = match u.iss() {
            Some(iss) => self
                .issuers
                .iter()
                .find(|i| i.issuer == iss)
                .ok_or_else(|| fail(IdentifyCode::JwtIssuer, format!("untrusted issuer `{}`", truncate(iss))))?,
            None => return Err(fail(IdentifyCode::JwtClaims, "no `iss` claim")),
        };
        if !issuer.algorithms.contains(&u.alg) {
            return Err(fail(
                IdentifyCode::JwtAlg,
                format!("alg {:?} not allowed for issuer {}", u.alg, issuer.issuer),
            ));
        }
        let key = self.key_for(issuer, &u).await?;
        let signature =
            b64url_decode(u.signature).ok_or_else(|| fail(IdentifyCode::JwtMalformed, "signature is not base64url"))?;
        let good = match &key {
            KeyRef::Hmac(k) => k.verify(u.alg, u.signed.as_bytes(), &signature),
            KeyRef::Asymmetric(k) => k.verify(u.alg, u.signed.as_bytes(), &signature),
        };
        if !good {
            return Err(fail(
                IdentifyCode::JwtSignature,
                format!("invalid signature (issuer {}, kid {:?})", issuer.issuer, u.kid),
            ));
        }
        let mut validity = jwt_claims::check(&u.claims, &issuer.audience, now, issuer.leeway)?;
        let (identity, iat) = identity(issuer, u.claims, now)?;
        validity.from = validity.from.max(iat);
        let by = match key {
            KeyRef::Hmac(_) => VerifiedBy::Hmac,
            KeyRef::Asymmetric(k) => VerifiedBy::Key(k),
        };
        Ok(Verified { issuer, identity, validity, by })
    }

    async fn key_for<'i>(&self, issuer: &'i JwtIssuer, u: &Unverified<'_>) -> Result<KeyRef<'i>, AuthFailure> {
        if matches!(u.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return match &issuer.hmac {
                Some(k) => Ok(KeyRef::Hmac(k)),
                None => Err(fail(IdentifyCode::JwtAlg, "HMAC token for an issuer without a secret")),
            };
        }
        let kid = u.kid.as_deref();
        let pick = |set: &KeySet| -> Result<Option<Arc<VerifyKey>>, AuthFailure> {
            match set.find(kid, u.alg) {
                Lookup::Found(k) => Ok(Some(k.clone())),
                Lookup::UnknownKid => Ok(None),
                Lookup::Ambiguous => Err(fail(IdentifyCode::JwtKid, "no kid and several keys fit")),
            }
        };
        let found = match &issuer.keys {
            KeySource::None => None,
            KeySource::File(set) => pick(set)?,
            KeySource::Remote(remote) => {
                let first = match remote.current() {
                    Some(set) => pick(&set)?,
                    None => None,
                };
                match first {
                    Some(k) => Some(k),
                    None => {
                        // Unknown kid (a rotation the cache has not seen yet) or nothing loaded: one refetch,
                        // rate-limited and single-flight.
                        remote.refetch(kid, false).await;
                        match remote.current() {
                            Some(set) => pick(&set)?,
                            None => {
                                return Err(fail(
                                    IdentifyCode::JwtKeysUnavailable,
                                    format!("JWKS {} never loaded", remote.url()),
                                ))
                            }
                        }
                    }
                }
            }
        };
        let key = found.ok_or_else(|| fail(IdentifyCode::JwtKid, format!("unknown kid {:?}", kid)))?;
        if !key.kind.fits(u.alg) || key.alg.is_some_and(|a| a != u.alg) {
            return Err(fail(IdentifyCode::JwtAlg, format!("alg {:?} does not match key {:?}", u.alg, key.kid)));
        }
        Ok(KeyRef::Asymmetric(key))
    }
}

/// The key a token is checked with.
enum KeyRef<'i> {
    Hmac(&'i HmacKey),
    Asymmetric(Arc<VerifyKey>),
}

fn truncate(s: &str) -> String {
    s.chars().take(80).flat_map(char::escape_default).collect()
}

/// The bearer token of the request's `Authorization` header, if it has one.
pub(super) fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The `sub` a JWT claims, read without verifying (bounded): only a key for the brute-force counters.
pub(super) fn claimed_subject(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1).filter(|p| p.len() <= MAX_TOKEN_BYTES)?;
    let claims: serde_json::Value = serde_json::from_slice(&b64url_decode(payload)?).ok()?;
    claims.get("sub")?.as_str().filter(|s| !s.is_empty() && s.len() <= 256).map(str::to_string)
}

/// Whether a bearer token has a JWT's shape: three segments whose first is base64url JSON with an `alg`. Used
/// to send tokens to `jwt` or `introspection` on routes that accept both; a token of the wrong shape for its
/// verifier is refused there.
pub(super) fn looks_like_jwt(token: &str) -> bool {
    let mut segs = token.split('.');
    let (Some(h), Some(_), Some(_), None) = (segs.next(), segs.next(), segs.next(), segs.next()) else {
        return false;
    };
    h.len() <= MAX_TOKEN_BYTES
        && b64url_decode(h)
            .and_then(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).ok())
            .is_some_and(|m| m.contains_key("alg"))
}

fn read_unverified(token: &str) -> Result<Unverified<'_>, AuthFailure> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(fail(IdentifyCode::JwtMalformed, format!("token of {} bytes", token.len())));
    }
    let malformed = || fail(IdentifyCode::JwtMalformed, "not three dot-separated parts (JWE is not accepted)");
    let (signed, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
    let (h, p) = signed.split_once('.').ok_or_else(malformed)?;
    if p.contains('.') {
        return Err(malformed());
    }
    let header: serde_json::Map<String, Value> = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| fail(IdentifyCode::JwtMalformed, "header is not base64url JSON"))?;
    if let Some(name) = FORBIDDEN_HEADERS.iter().find(|n| header.contains_key(**n)) {
        return Err(fail(IdentifyCode::JwtHeader, format!("`{name}` header present (never trusted)")));
    }
    let alg_text = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if alg_text.eq_ignore_ascii_case("none") || alg_text.is_empty() {
        return Err(fail(IdentifyCode::JwtAlg, format!("alg `{}`", truncate(alg_text))));
    }
    let alg = Algorithm::from_str(alg_text)
        .map_err(|_| fail(IdentifyCode::JwtAlg, format!("unknown alg `{}`", truncate(alg_text))))?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if plain_kid(k) => Some(k.clone()),
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.to_string(), str::to_string);
            return Err(fail(IdentifyCode::JwtKid, format!("kid `{}` is not a plain identifier", truncate(&shown))));
        }
    };
    let claims: Value = b64url_decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(Value::is_object)
        .ok_or_else(|| fail(IdentifyCode::JwtMalformed, "payload is not a base64url JSON object"))?;
    Ok(Unverified { alg, kid, signed, signature, claims })
}

/// Checks what the registered-claim check does not (`iat`, extra required claims, a usable consumer id) and
/// builds the identity; also returns `iat` (rounded up, 0 when absent) for the cache's validity window.
fn identity(issuer: &JwtIssuer, claims: Value, now: u64) -> Result<(Arc<Identity>, u64), AuthFailure> {
    let iat = match claims.get("iat") {
        None => 0,
        Some(v) => match v.as_f64() {
            Some(iat) if iat <= (now + issuer.leeway) as f64 => iat.max(0.0).ceil() as u64,
            Some(_) => return Err(fail(IdentifyCode::JwtNotYetValid, "iat in the future")),
            None => return Err(fail(IdentifyCode::JwtClaims, "iat is not a number")),
        },
    };
    if let Some(missing) = issuer.required_claims.iter().find(|c| claims.get(c.as_str()).is_none_or(Value::is_null)) {
        return Err(fail(IdentifyCode::JwtClaims, format!("required claim `{missing}` missing")));
    }
    let consumer: Arc<str> = match claims.get(&issuer.consumer_claim) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) => {
            Arc::from(s.as_str())
        }
        _ => {
            return Err(fail(
                IdentifyCode::JwtClaims,
                format!("`{}` claim is not a usable consumer id", issuer.consumer_claim),
            ))
        }
    };
    let mut scopes = strings(claims.get("scope"), true);
    for s in strings(claims.get("scp"), true) {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    let roles = strings(claim_path(&claims, &issuer.roles_claim), false);
    Ok((Arc::new(Identity { consumer, method: AuthMethod::Jwt, scopes, roles, claims }), iat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_unpadded_text() {
        assert_eq!(b64url_decode("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
        assert_eq!(b64url_decode("-_8").unwrap(), b"\xfb\xff");
        assert!(b64url_decode("a").is_none());
        assert!(b64url_decode("ab=c").is_none());
    }

    #[test]
    fn kids_are_plain_identifiers() {
        for ok in ["rsa-1", "2024-06:key_1", "abc/def+ghi=", "a.b"] {
            assert!(plain_kid(ok), "{ok}");
        }
        for bad in ["../../../../dev/null", "x' UNION SELECT 'key", "", "a b", "k\u{0}", "a..b", "<script>"] {
            assert!(!plain_kid(bad), "{bad}");
        }
    }

    #[test]
    fn the_header_is_read_before_any_key_is_touched() {
        let enc = |h: &str, p: &str| {
            let b = |s: &str| super::super::api_key::b64url(s.as_bytes());
            format!("{}.{}.c2ln", b(h), b(p))
        };
        let code = |t: &str| read_unverified(t).err().map(|e| e.code);
        for alg in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(code(&enc(&format!(r#"{{"alg":"{alg}"}}"#), "{}")), Some(IdentifyCode::JwtAlg));
        }
        assert_eq!(code(&enc(r#"{"alg":"RS256","jku":"http://x"}"#, "{}")), Some(IdentifyCode::JwtHeader));
        assert_eq!(code(&enc(r#"{"alg":"RS256","x5c":["AA"]}"#, "{}")), Some(IdentifyCode::JwtHeader));
        assert_eq!(code(&enc(r#"{"alg":"RS256","kid":"../x"}"#, "{}")), Some(IdentifyCode::JwtKid));
        assert_eq!(code(&enc(r#"{"alg":"RS256","kid":7}"#, "{}")), Some(IdentifyCode::JwtKid));
        assert_eq!(code(&enc(r#"{"alg":"RS256"}"#, "[]")), Some(IdentifyCode::JwtMalformed));
        assert_eq!(code("abc.def.ghi"), Some(IdentifyCode::JwtMalformed));
        assert_eq!(code("a.b.c.d.e"), Some(IdentifyCode::JwtMalformed));
        assert!(code(&enc(r#"{"alg":"RS256","kid":"k1"}"#, r#"{"iss":"x"}"#)).is_none());
    }
}
