//! OAuth2 token introspection (RFC 7662) for opaque bearer tokens: the gateway asks the identity provider
//! whether a token is active, as a confidential client (HTTP Basic with credentials from the environment,
//! §2.1), and caches the answer by the token's SHA-256 — an active token until its `exp` (capped by `max_ttl`
//! so a revocation is seen within that time), a refused one for `inactive_ttl` — in a bounded cache with
//! single-flight per token. Every failure to get a proper answer (connection refused, timeout, a status other
//! than 200, a body that is not an RFC 7662 answer) fails closed with `auth.introspection.unavailable`; after
//! one, the provider is left alone for `min_interval` and cache misses fail at once, so a struggling provider
//! is not buried under retries. Tokens are never logged: details name a token by a prefix of its hash.

pub mod answer;
pub mod cache;

use super::fetch::{self, Call};
use super::{AuthFailure, IdentifyCode, Identity};
use answer::{Judged, Rules};
use arc_swap::ArcSwap;
use bytes::Bytes;
use cache::{Cached, Lookup, TokenCache, TokenHash};
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, Uri};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Longest token sent to the identity provider; opaque access tokens are tens of bytes, JWT ones 1–2 KB.
const MAX_TOKEN_BYTES: usize = 4096;

/// Timing and bounds of an introspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// One introspection call, connect to last byte.
    pub timeout: Duration,
    /// Longest an active answer is trusted without asking again, whatever its `exp`.
    pub max_ttl: Duration,
    /// How long a refusal (inactive, expired, wrong audience …) is remembered.
    pub inactive_ttl: Duration,
    /// After a failed call, how long cache misses fail closed without calling the provider.
    pub min_interval: Duration,
    /// Most tokens cached.
    pub cache_max: usize,
}

/// Everything an introspector is built from; equal settings share one introspector (and its cache) across
/// config reloads.
#[derive(Clone)]
pub struct Settings {
    pub endpoint: Uri,
    pub client_id: String,
    pub client_secret: String,
    pub rules: Rules,
    pub timing: Timing,
}

impl Settings {
    /// The registry key: the secret enters only as a hash.
    fn key(&self) -> String {
        let secret = hex::encode(Sha256::digest(self.client_secret.as_bytes()));
        format!("{}|{}|{secret}|{:?}|{:?}", self.endpoint, self.client_id, self.rules, self.timing)
    }
}

/// The introspection verifier for the `identity.introspection` section.
pub struct Introspector {
    endpoint: Uri,
    /// `Authorization: Basic …` (marked sensitive) and the form content type, built at load.
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: ArcSwap<rustls::ClientConfig>,
    rules: Rules,
    timing: Timing,
    cache: TokenCache,
    /// Reference point for `failed_at_ms`.
    epoch: Instant,
    /// Milliseconds after `epoch` of the last failed call, plus one; 0: none.
    failed_at_ms: AtomicU64,
}

type Registry = Mutex<HashMap<String, Weak<Introspector>>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Standard base64 with padding (HTTP Basic).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Authorization` value for client authentication: Basic over the form-encoded id and secret (RFC 6749
/// §2.3.1, which RFC 7662 §2.1 refers to).
pub fn basic_credentials(client_id: &str, client_secret: &str) -> Option<HeaderValue> {
    let raw = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    let mut v = HeaderValue::from_str(&format!("Basic {}", base64(raw.as_bytes()))).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Whether `token` is an RFC 6750 `b64token` of acceptable length: anything else is refused before it reaches
/// the identity provider.
fn plain_token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// How a token is named in logs: a prefix of its SHA-256.
fn hash_prefix(hash: &TokenHash) -> String {
    format!("token sha256:{}", hex::encode(&hash[..6]))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A request's place in a flight; leaving it (answered, or cancelled by a client that went away) lets the
/// cache drop a flight nobody waits for any more.
struct Seat<'a> {
    cache: &'a TokenCache,
    key: &'a TokenHash,
    flight: Arc<cache::Flight>,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.cache.leave(self.key, &self.flight);
    }
}

impl Introspector {
    /// The introspector for `settings`, reusing a live one (and its cache) when a reload did not change them.
    pub fn shared(settings: Settings, tls: Arc<rustls::ClientConfig>) -> Option<Arc<Introspector>> {
        let key = settings.key();
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = reg.get(&key).and_then(Weak::upgrade) {
            existing.tls.store(tls);
            return Some(existing);
        }
        let me = Arc::new(Introspector::new(settings, tls)?);
        reg.insert(key, Arc::downgrade(&me));
        Some(me)
    }

    /// A fresh introspector; `None` when the credentials cannot go into a header.
    pub fn new(settings: Settings, tls: Arc<rustls::ClientConfig>) -> Option<Introspector> {
        let basic = basic_credentials(&settings.client_id, &settings.client_secret)?;
        Some(Introspector {
            endpoint: settings.endpoint,
            headers: vec![
                (AUTHORIZATION, basic),
                (CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded")),
            ],
            tls: ArcSwap::new(tls),
            rules: settings.rules,
            cache: TokenCache::new(settings.timing.cache_max),
            timing: settings.timing,
            epoch: Instant::now(),
            failed_at_ms: AtomicU64::new(0),
        })
    }

    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// Tokens currently cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Verifies the request's bearer token.
    pub async fn verify(&self, parts: &Parts) -> Result<Arc<Identity>, AuthFailure> {
        let Some(token) = super::jwt::bearer(parts) else {
            return Err(AuthFailure::new(IdentifyCode::Missing, "no bearer token"));
        };
        if parts.headers.get_all(AUTHORIZATION).iter().count() > 1 {
            return Err(AuthFailure::new(IdentifyCode::IntrospectionMalformed, "several Authorization headers"));
        }
        self.verify_token(token).await
    }

    /// Verifies one token (without the `Bearer ` prefix): from the cache, or by asking the provider.
    pub async fn verify_token(&self, token: &str) -> Result<Arc<Identity>, AuthFailure> {
        if !plain_token(token) {
            return Err(AuthFailure::new(
                IdentifyCode::IntrospectionMalformed,
                format!("not a bearer token ({} bytes, or characters outside RFC 6750 b64token)", token.len()),
            ));
        }
        let hash: TokenHash = Sha256::digest(token.as_bytes()).into();
        let cached = match self.cache.lookup(&hash, Instant::now()) {
            Lookup::Hit(c) => c,
            Lookup::Miss(flight) => {
                let seat = Seat { cache: &self.cache, key: &hash, flight };
                seat.flight.get_or_init(|| self.introspect(token, &hash, &seat.flight)).await.clone()
            }
        };
        match cached {
            Cached::Active(id) => Ok(id),
            Cached::Refused(f) => Err(f),
        }
    }

    /// Asks the provider (unless it failed within `min_interval`), judges the answer, caches what may be
    /// cached and ends the flight.
    async fn introspect(&self, token: &str, hash: &TokenHash, flight: &Arc<cache::Flight>) -> Cached {
        let who = hash_prefix(hash);
        let (outcome, ttl) = match self.backing_off() {
            Some(ago) => {
                (self.unavailable(&who, format!("provider failed {}ms ago; not asked", ago.as_millis())), None)
            }
            None => self.ask(token, &who).await,
        };
        let now = Instant::now();
        self.cache.land(hash, flight, ttl.map(|t| (outcome.clone(), now + t)), now);
        outcome
    }

    /// The call and its judgement, with how long the outcome may be cached.
    async fn ask(&self, token: &str, who: &str) -> (Cached, Option<Duration>) {
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let call = Call {
            method: Method::POST,
            url: &self.endpoint,
            accept: "application/json",
            headers: &self.headers,
            body: Bytes::from(body),
        };
        let tls = self.tls.load_full();
        let answer = match fetch::send_within(&call, &tls, self.timing.timeout).await {
            Ok(b) => b,
            Err(e) => return (self.failed(who, format!("introspection call to {}: {e}", self.endpoint)), None),
        };
        let now = unix_now();
        match answer::judge(&answer, &self.rules, now, who) {
            Err(e) => (self.failed(who, format!("{}: {e}", self.endpoint)), None),
            Ok(Judged::Active { identity, exp }) => {
                let ttl = match exp {
                    Some(exp) => Duration::from_secs(exp.saturating_sub(now)).min(self.timing.max_ttl),
                    None => self.timing.max_ttl,
                };
                (Cached::Active(identity), Some(ttl))
            }
            Ok(Judged::Refused(f)) => (Cached::Refused(f), Some(self.timing.inactive_ttl)),
            Ok(Judged::NotYet(f)) => (Cached::Refused(f), None),
        }
    }

    /// Since when the provider is being left alone, if it is.
    fn backing_off(&self) -> Option<Duration> {
        let at = self.failed_at_ms.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        let ago = self.epoch.elapsed().saturating_sub(Duration::from_millis(at - 1));
        (ago < self.timing.min_interval).then_some(ago)
    }

    /// Records a failed call and answers with `unavailable`.
    fn failed(&self, who: &str, detail: String) -> Cached {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.failed_at_ms.store(ms + 1, Ordering::Relaxed);
        tracing::warn!(target: "rampart", endpoint = %self.endpoint, error = %detail, "token introspection failed; failing closed");
        self.unavailable(who, detail)
    }

    fn unavailable(&self, who: &str, detail: String) -> Cached {
        Cached::Refused(AuthFailure::new(IdentifyCode::IntrospectionUnavailable, format!("{who}: {detail}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_are_form_encoded_then_base64() {
        // RFC 6749 §2.3.1 / RFC 7617 example shapes.
        assert_eq!(base64(b"Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(form_encode("a b+c/d=é"), "a+b%2Bc%2Fd%3D%C3%A9");
        let v = basic_credentials("gateway", "s3cr:t").unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v.to_str().unwrap(), format!("Basic {}", base64(b"gateway:s3cr%3At")));
    }

    #[test]
    fn only_b64tokens_are_sent() {
        assert!(plain_token("2YotnFZFEjr1zCsicMWpAA"));
        assert!(plain_token("abc.def-ghi_jkl~mno+p/q=="));
        for bad in ["", "a b", "a\"b", "a\r\nx-injected: 1", "ä", "==", &"a".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(!plain_token(bad), "{bad:?}");
        }
    }
}
