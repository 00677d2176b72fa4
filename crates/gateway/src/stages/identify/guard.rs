//! The brute-force guard on the request path: which credential a request presents (read *before* verifying, so
//! a locked caller is refused without any verification), which failures count, where the counters live, and
//! keeping them across config reloads. The counting rules themselves are [`super::lockout`].
//!
//! The counters go through the configured `state` backend. With `state: memory` they are per process (the
//! sharded, bounded [`MemoryLockoutStore`]). With Redis every replica counts in the same cells (one Lua script
//! per check, failure and success, within `state.timeout`); while Redis cannot answer, the failure mode
//! (`identity.lockout.on_failure`, default `state.on_failure`) decides: `local` counts in this process's cells
//! with `max_failures` split across `state.replicas`, `open` skips the lockout (credentials are still verified),
//! `closed` refuses with 503 `auth.lockout.unavailable`. Locks taken locally during an outage still hold after
//! Redis is back.

use super::clock::MonotonicClock;
use super::lockout::{
    Attempt, BruteForceGuard, CredentialKind, LockoutFuture, LockoutKey, LockoutPolicy, LockoutSettings, LockoutStatus,
    LockoutStore, LockoutStoreError, MemoryLockoutStore,
};
use super::{jwt, signature, AuthMethod, IdentifyCode};
use crate::pipeline::{Code, Rejection};
use crate::state::redis_store::lockout::LockoutOp;
use crate::state::redis_store::RedisStore;
use crate::state::{FailureMode, Store};
use http::header::{HeaderValue, RETRY_AFTER};
use http::request::Parts;
use std::net::IpAddr;
use std::sync::Arc;

/// Most IP and credential cells remembered per process (≈ 100 bytes each).
const CAPACITY: usize = 200_000;

/// The compiled `identity.lockout` section with its per-process cells.
#[derive(Debug)]
pub struct Lockout {
    /// The cells with `state: memory`; with Redis, the fallback of `on_failure: local`.
    local: Arc<MemoryLockoutStore>,
    guard: BruteForceGuard,
    /// Overrides `state.on_failure` for the lockout.
    on_failure: Option<FailureMode>,
}

impl Lockout {
    pub fn new(
        settings: LockoutSettings,
        on_failure: Option<FailureMode>,
    ) -> Result<Self, super::lockout::LockoutConfigError> {
        let local = Arc::new(MemoryLockoutStore::new(CAPACITY, Arc::new(MonotonicClock)));
        let guard = BruteForceGuard::new(settings)?;
        Ok(Lockout { local, guard, on_failure })
    }

    /// Keeps the running counters across a reload (new limits apply to them): a reload must not unlock anyone.
    pub fn adopt(&mut self, current: &Lockout) {
        self.local = current.local.clone();
    }

    fn cells<'a>(&'a self, state: &'a Store) -> Cells<'a> {
        match state {
            Store::Memory(_) => Cells::Local(&self.local),
            Store::Redis(redis) => {
                Cells::Shared { redis, local: &self.local, mode: self.on_failure.unwrap_or(redis.spec().on_failure) }
            }
        }
    }

    /// The 429 for a locked caller (503 when the shared state is unreachable and the mode is `closed`), or
    /// `None` to go on and verify. Checked before any credential is verified.
    pub async fn check(&self, state: &Store, attempt: &Attempt<'_>) -> Option<Rejection> {
        match self.guard.check(&self.cells(state), attempt).await {
            Ok(status @ LockoutStatus::Locked { .. }) => {
                let secs = status.retry_after_secs().unwrap_or(1);
                Some(
                    Rejection::new(Code::Identify(IdentifyCode::Lockout), format!("locked out for {secs}s"))
                        .with_header(RETRY_AFTER, HeaderValue::from(secs)),
                )
            }
            Ok(LockoutStatus::Open) => None,
            Err(e) => Some(
                Rejection::new(Code::Identify(IdentifyCode::LockoutUnavailable), e.to_string())
                    .with_header(RETRY_AFTER, HeaderValue::from_static("1")),
            ),
        }
    }

    /// Reports the result of verifying: failures that are guesses count; a success clears the credential's count.
    pub async fn report(&self, state: &Store, attempt: &Attempt<'_>, failed: Option<IdentifyCode>, request_id: &str) {
        match failed {
            None => self.succeeded(state, attempt).await,
            Some(code) if counts(code) => self.failed(state, attempt, request_id).await,
            Some(_) => {}
        }
    }

    /// Counts a failed authentication (a guess) against the attempt's IP and credential; a lockout it starts
    /// is a security event (with the IP, never the credential).
    pub async fn failed(&self, state: &Store, attempt: &Attempt<'_>, request_id: &str) {
        match self.guard.failed(&self.cells(state), attempt).await {
            Ok(outcome) => {
                if let Some(scope) = outcome.started {
                    tracing::warn!(target: "rampart::security", code = "auth.lockout", request_id, client_ip = %attempt.ip, scope = ?scope, retry_after = outcome.status.retry_after_secs().unwrap_or(0), "too many failed authentications: locked out");
                }
            }
            Err(e) => {
                tracing::debug!(target: "rampart::state", request_id, error = %e, "failed authentication not counted")
            }
        }
    }

    /// A successful authentication: clears what the policies say success clears (the credential's count).
    pub async fn succeeded(&self, state: &Store, attempt: &Attempt<'_>) {
        if let Err(e) = self.guard.succeeded(&self.cells(state), attempt).await {
            tracing::debug!(target: "rampart::state", error = %e, "successful authentication not recorded");
        }
    }
}

/// Where one request's lockout cells are: this process's, or Redis's with this process's as the fallback.
enum Cells<'a> {
    Local(&'a MemoryLockoutStore),
    Shared { redis: &'a RedisStore, local: &'a MemoryLockoutStore, mode: FailureMode },
}

fn unavailable() -> LockoutStoreError {
    LockoutStoreError("Redis did not answer and the lockout's failure mode is `closed`".into())
}

impl Cells<'_> {
    fn replicas(redis: &RedisStore) -> u32 {
        redis.spec().replicas.max(1)
    }
}

impl LockoutStore for Cells<'_> {
    fn status(&self, key: LockoutKey) -> LockoutFuture<'_, LockoutStatus> {
        Box::pin(async move {
            match *self {
                Cells::Local(local) => Ok(local.status_now(key)),
                Cells::Shared { redis, local, mode } => {
                    let here = local.status_now(key);
                    match redis.lockout_at(&key.to_hex(), LockoutOp::Status, 0).await {
                        Some(reply) => Ok(reply.status.max(here)),
                        None => match redis.lockout_fallback(mode) {
                            FailureMode::Local => Ok(here),
                            FailureMode::Open => Ok(LockoutStatus::Open),
                            FailureMode::Closed => Err(unavailable()),
                        },
                    }
                }
            }
        })
    }

    fn record_failure<'a>(
        &'a self,
        key: LockoutKey,
        policy: &'a LockoutPolicy,
    ) -> LockoutFuture<'a, (LockoutStatus, bool)> {
        Box::pin(async move {
            match *self {
                Cells::Local(local) => Ok(local.record_failure_now(key, policy)),
                Cells::Shared { redis, local, mode } => {
                    match redis.lockout_at(&key.to_hex(), LockoutOp::Failure(policy), 0).await {
                        Some(reply) => Ok((reply.status, reply.started)),
                        None => match redis.lockout_fallback(mode) {
                            FailureMode::Local => {
                                Ok(local.record_failure_now(key, &policy.scaled(Self::replicas(redis))))
                            }
                            FailureMode::Open => Ok((LockoutStatus::Open, false)),
                            FailureMode::Closed => Err(unavailable()),
                        },
                    }
                }
            }
        })
    }

    fn record_success<'a>(&'a self, key: LockoutKey, policy: &'a LockoutPolicy) -> LockoutFuture<'a, ()> {
        Box::pin(async move {
            match *self {
                Cells::Local(local) => {
                    local.record_success_now(key, policy);
                    Ok(())
                }
                Cells::Shared { redis, local, mode } => {
                    local.record_success_now(key, policy);
                    match redis.lockout_at(&key.to_hex(), LockoutOp::Success(policy), 0).await {
                        Some(_) => Ok(()),
                        None => match redis.lockout_fallback(mode) {
                            FailureMode::Local | FailureMode::Open => Ok(()),
                            FailureMode::Closed => Err(unavailable()),
                        },
                    }
                }
            }
        })
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
            | IdentifyCode::LockoutUnavailable
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
