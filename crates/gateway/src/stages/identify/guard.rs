//! The brute-force guard on the request path: which credential a request presents (read *before* verifying, so
//! a locked caller is refused without any verification), which failures count, and keeping the counters across
//! config reloads. The counting rules themselves are [`super::lockout`].
//!
//! Counters are per process (in memory): replicas each count on their own, so behind N replicas an attacker gets
//! up to N times the configured failures before every replica has locked them out.

use super::clock::MonotonicClock;
use super::lockout::{Attempt, BruteForceGuard, CredentialKind, LockoutSettings, LockoutStatus, MemoryLockoutStore};
use super::{jwt, signature, AuthMethod, IdentifyCode};
use crate::pipeline::{Code, Rejection};
use http::header::{HeaderValue, RETRY_AFTER};
use http::request::Parts;
use std::net::IpAddr;
use std::sync::Arc;

/// Most IP and credential cells remembered (≈ 100 bytes each).
const CAPACITY: usize = 200_000;

/// The compiled `identity.lockout` section with its store.
#[derive(Debug)]
pub struct Lockout {
    store: Arc<MemoryLockoutStore>,
    settings: LockoutSettings,
    guard: BruteForceGuard,
}

impl Lockout {
    pub fn new(settings: LockoutSettings) -> Result<Self, super::lockout::LockoutConfigError> {
        let store = Arc::new(MemoryLockoutStore::new(CAPACITY, Arc::new(MonotonicClock)));
        let guard = BruteForceGuard::new(store.clone(), settings.clone())?;
        Ok(Lockout { store, settings, guard })
    }

    /// Keeps the running counters across a reload (new limits apply to them): a reload must not unlock anyone.
    pub fn adopt(&mut self, current: &Lockout) {
        if let Ok(guard) = BruteForceGuard::new(current.store.clone(), self.settings.clone()) {
            self.store = current.store.clone();
            self.guard = guard;
        }
    }

    /// The 429 for a locked caller, or `None` to go on and verify. Checked before any credential is verified.
    pub async fn check(&self, attempt: &Attempt<'_>) -> Option<Rejection> {
        match self.guard.check(attempt).await {
            Ok(status @ LockoutStatus::Locked { .. }) => {
                let secs = status.retry_after_secs().unwrap_or(1);
                Some(
                    Rejection::new(Code::Identify(IdentifyCode::Lockout), format!("locked out for {secs}s"))
                        .with_header(RETRY_AFTER, HeaderValue::from(secs)),
                )
            }
            // The in-memory store always answers.
            Ok(LockoutStatus::Open) | Err(_) => None,
        }
    }

    /// Reports the result of verifying: failures that are guesses count; a success clears the credential's count.
    pub async fn report(&self, attempt: &Attempt<'_>, failed: Option<IdentifyCode>, request_id: &str) {
        match failed {
            None => {
                let _ = self.guard.succeeded(attempt).await;
            }
            Some(code) if counts(code) => {
                if let Ok(outcome) = self.guard.failed(attempt).await {
                    if let Some(scope) = outcome.started {
                        tracing::warn!(target: "rampart::security", code = "auth.lockout", request_id, client_ip = %attempt.ip, scope = ?scope, retry_after = outcome.status.retry_after_secs().unwrap_or(0), "too many failed authentications: locked out");
                    }
                }
            }
            Some(_) => {}
        }
    }
}

/// Whether a failure is a guess: not a missing credential, and not the gateway's own trouble (keys, provider or
/// store unavailable), which would otherwise lock honest callers out during an outage.
fn counts(code: IdentifyCode) -> bool {
    !matches!(
        code,
        IdentifyCode::Missing
            | IdentifyCode::JwtKeysUnavailable
            | IdentifyCode::IntrospectionUnavailable
            | IdentifyCode::SignatureStoreUnavailable
            | IdentifyCode::Lockout
    )
}

/// The credential a request presents for one of the route's methods, as claimed (unverified: it is only a
/// counter's key): a signature's `keyid`, a JWT's `sub`. API keys are random secrets with no id before lookup,
/// so their guesses count against the IP only.
pub fn presented(
    identifier: &super::Identifier,
    parts: &Parts,
    methods: &[AuthMethod],
) -> Option<(CredentialKind, String)> {
    if let Some(v) = identifier.signatures.as_ref().filter(|_| methods.contains(&AuthMethod::Signature)) {
        if signature::presented(&parts.headers) {
            return v.claimed_keyid(&parts.headers).map(|k| (CredentialKind::SignatureKeyId, k));
        }
    }
    if methods.contains(&AuthMethod::Jwt) || methods.contains(&AuthMethod::Introspection) {
        if let Some(sub) = jwt::bearer(parts).and_then(jwt::claimed_subject) {
            return Some((CredentialKind::TokenSubject, sub));
        }
    }
    None
}

/// The attempt the guard keys on.
pub fn attempt(ip: IpAddr, credential: &Option<(CredentialKind, String)>) -> Attempt<'_> {
    Attempt { ip, credential: credential.as_ref().map(|(k, v)| (*k, v.as_str())) }
}
