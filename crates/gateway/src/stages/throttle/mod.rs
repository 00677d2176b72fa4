//! Throttle: per-route rate limits (GCRA), quotas over hours, days or months, limits on distinct identities per
//! IP and distinct IPs per identity, temporary blocks for repeat offenders, and load shedding ([`shed`]).
//!
//! Keys come from the caller as the gateway established it: the client IP only from the socket or from hops
//! added by `trusted_proxies` (`TrustedProxies::client_ip`), the consumer only from the identify stage. A limit
//! keyed by consumer, header or claim falls back to the client IP when the request has none, so leaving the
//! credential or header off never escapes a limit. The state lives in the configured [`Store`].

pub mod shed;
pub mod window;

use crate::pipeline::{Code, Rejection, Verdict};
use crate::stages::identify::Identity;
use crate::state::batch::{Answer, Batch, Check, INLINE};
use crate::state::{CellKey, FailureMode, Gcra, Offences, RateDecision, Store, Subject};
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::HeaderMap;
use smallvec::SmallVec;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What a limit counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// The identity's consumer; the client IP for anonymous requests.
    Consumer,
    /// The client IP, masked to the limit's prefixes.
    Ip,
    /// Every caller of the route together.
    Route,
    /// A request header's value (hashed); the client IP when the header is absent.
    Header(HeaderName),
    /// A claim of the identity (hashed); the client IP when absent.
    Claim(Box<str>),
    /// Every caller of every route that shares the limit's name.
    Global,
}

/// Which distinct values a `distinct` limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistinctOf {
    /// Consumers seen from one IP (credential stuffing, account rotation).
    Consumers,
    /// IPs one consumer calls from (a shared or stolen credential, a botnet).
    Ips,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LimitKind {
    /// `count` requests per `per`, with `gcra` prepared from it and the burst.
    Rate {
        gcra: Gcra,
        count: u64,
        per: Duration,
    },
    /// At most `max` cost units per calendar window (UTC).
    Quota {
        max: u64,
        period: window::Period,
    },
    Distinct {
        of: DistinctOf,
        max: u32,
        window: Duration,
    },
}

/// One entry of a route's `limits:`.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Names the limit's cells in the state: routes that give a limit the same name share it.
    pub scope: Arc<str>,
    pub key: KeySpec,
    pub kind: LimitKind,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub offences: Option<Offences>,
    /// The route's id, for `key: route`.
    pub route: Arc<str>,
    /// The name in `RateLimit` / `RateLimit-Policy`.
    pub policy_name: Arc<str>,
}

/// A route's throttle settings, compiled at load.
#[derive(Debug)]
pub struct ThrottlePolicy {
    pub limits: Vec<Limit>,
    /// Units each request of the route consumes.
    pub cost: u32,
    pub on_failure: FailureMode,
    /// `RateLimit-Policy`, built once.
    pub policy_header: Option<HeaderValue>,
}

/// Who is calling, as the earlier stages established it.
pub struct Caller<'a> {
    pub ip: IpAddr,
    pub identity: Option<&'a Identity>,
    pub headers: &'a HeaderMap,
}

/// A limit of the route with the subject (and, for `distinct`, the member) this request counts as.
struct Keyed {
    limit: usize,
    subject: Subject,
    member: Option<Subject>,
}

/// The decision and the `RateLimit` header for the response (the limit with the least room left).
pub struct Checked {
    pub verdict: Verdict,
    pub ratelimit: Option<HeaderValue>,
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Limit {
    fn ip_subject(&self, ip: IpAddr) -> Subject {
        Subject::ip(ip, self.ipv4_prefix, self.ipv6_prefix)
    }

    /// The subject this request counts against.
    pub fn subject(&self, caller: &Caller<'_>) -> Subject {
        match &self.key {
            KeySpec::Consumer => match caller.identity {
                Some(id) => Subject::consumer(&id.consumer),
                None => self.ip_subject(caller.ip),
            },
            KeySpec::Ip => self.ip_subject(caller.ip),
            KeySpec::Route => Subject::route(&self.route),
            KeySpec::Header(name) => match caller.headers.get(name) {
                Some(v) => Subject::header(name.as_str(), v.as_bytes()),
                None => self.ip_subject(caller.ip),
            },
            KeySpec::Claim(name) => match caller.identity.and_then(|id| id.claim(name)) {
                Some(v) => Subject::claim(name, &v),
                None => self.ip_subject(caller.ip),
            },
            KeySpec::Global => Subject::global(),
        }
    }

    /// For `distinct` limits: the value counted, or `None` when the request has none (anonymous).
    fn member(&self, of: DistinctOf, caller: &Caller<'_>) -> Option<Subject> {
        match of {
            DistinctOf::Consumers => caller.identity.map(|id| Subject::consumer(&id.consumer)),
            DistinctOf::Ips => Some(self.ip_subject(caller.ip)),
        }
    }
}

impl ThrottlePolicy {
    fn reject(&self, code: Code, detail: String, retry: Option<Duration>, ratelimit: Option<HeaderValue>) -> Checked {
        let mut rej = Rejection::new(code, detail);
        if let Some(r) = retry {
            rej = rej.with_header(RETRY_AFTER, HeaderValue::from(secs_ceil(r).max(1)));
        }
        if let Some(p) = &self.policy_header {
            rej = rej.with_header(RATELIMIT_POLICY, p.clone());
        }
        if let Some(r) = ratelimit {
            rej = rej.with_header(RATELIMIT, r);
        }
        Checked { verdict: Verdict::Reject(rej), ratelimit: None }
    }

    /// Decides every limit of the route together: all pass and all are charged, or the request is refused and
    /// none is (only the refusing rate limit counts an offence toward a block). See [`crate::state::batch`].
    pub async fn check(&self, store: &Store, caller: &Caller<'_>) -> Checked {
        // The subjects first, on the stack: the checks borrow them.
        let mut keyed: SmallVec<[Keyed; INLINE]> = SmallVec::new();
        for (i, limit) in self.limits.iter().enumerate() {
            let member = match &limit.kind {
                // Anonymous requests are not counted by distinct limits.
                LimitKind::Distinct { of, .. } => match (caller.identity, limit.member(*of, caller)) {
                    (Some(_), Some(m)) => Some(m),
                    _ => continue,
                },
                _ => None,
            };
            keyed.push(Keyed { limit: i, subject: limit.subject(caller), member });
        }
        let mut checks: SmallVec<[Check<'_>; INLINE]> = SmallVec::new();
        for k in &keyed {
            let limit = &self.limits[k.limit];
            let key = CellKey { scope: &limit.scope, subject: &k.subject };
            checks.push(match (&limit.kind, &k.member) {
                (LimitKind::Rate { gcra, .. }, _) => Check::Rate { key, gcra: *gcra, offences: limit.offences },
                (LimitKind::Quota { max, period }, _) => {
                    let (window_id, reset) = period.current();
                    Check::Quota { key, window_id, max: *max, reset }
                }
                // `keyed` holds a member for every distinct limit; the subject stands in only to keep the
                // checks aligned with `keyed`.
                (LimitKind::Distinct { max, window, .. }, member) => {
                    Check::Distinct { key, member: member.as_ref().unwrap_or(&k.subject), max: *max, window: *window }
                }
            });
        }
        let batch = match checks.as_slice() {
            [] => return Checked { verdict: Verdict::Continue, ratelimit: None },
            // One limit: the backend's single-limit path, nothing to keep together.
            [one] => store.check_one(one, self.cost, self.on_failure).await.map(|answer| {
                if answer.allowed() {
                    Batch::Passed(smallvec::smallvec![answer])
                } else {
                    Batch::Refused { index: 0, answer }
                }
            }),
            all => store.check_all(all, self.cost, self.on_failure).await,
        };
        let answers = match batch {
            Ok(Batch::Passed(answers)) => answers,
            Ok(Batch::Refused { index, answer }) => return self.refusal(&keyed[index], answer),
            Err(_) => return self.unavailable(&self.limits[keyed[0].limit].scope),
        };
        // (name, remaining, reset) of the limit with the least room.
        let mut tightest: Option<(&str, u64, Duration)> = None;
        for (k, answer) in keyed.iter().zip(&answers) {
            let room = match *answer {
                Answer::Rate(RateDecision::Allowed { remaining, reset }) => Some((remaining, reset)),
                Answer::Quota(q) => Some((q.remaining, q.reset)),
                _ => None,
            };
            if let Some((remaining, reset)) = room {
                if tightest.is_none_or(|(_, r, _)| remaining < r) {
                    tightest = Some((&self.limits[k.limit].policy_name, remaining, reset));
                }
            }
        }
        Checked { verdict: Verdict::Continue, ratelimit: tightest.and_then(|(n, r, t)| ratelimit_value(n, r, t)) }
    }

    /// The rejection for the limit that refused.
    fn refusal(&self, k: &Keyed, answer: Answer) -> Checked {
        let limit = &self.limits[k.limit];
        let subject = &k.subject;
        match (answer, &limit.kind) {
            (Answer::Rate(RateDecision::Blocked { remaining }), _) => {
                let detail = format!("{subject} is blocked for {}s more", secs_ceil(remaining));
                self.reject(Code::ThrottleBlocked, detail, Some(remaining), None)
            }
            (Answer::Quota(q), LimitKind::Quota { max, period }) => {
                let header = ratelimit_value(&limit.policy_name, q.remaining, q.reset);
                let detail = format!("quota `{}` of {max} per {} used up by {subject}", limit.scope, period.as_str());
                self.reject(Code::ThrottleQuotaExceeded, detail, Some(q.reset), header)
            }
            (Answer::Distinct(d), LimitKind::Distinct { of, max, window }) => {
                let (code, what) = match of {
                    DistinctOf::Consumers => (Code::ThrottleDistinctIdentities, "identities"),
                    DistinctOf::Ips => (Code::ThrottleDistinctIps, "IPs"),
                };
                let member = k.member.map(|m| m.label().to_string()).unwrap_or_default();
                let detail = format!(
                    "{subject} already used {} distinct {what} (max {max}) in {window:?}; refused {member}",
                    d.count
                );
                self.reject(code, detail, Some(*window), None)
            }
            (answer, _) => {
                let retry_after = match answer {
                    Answer::Rate(RateDecision::Limited { retry_after, newly_blocked }) => {
                        if let (true, Some(o)) = (newly_blocked, limit.offences) {
                            tracing::warn!(target: "rampart::security", event = "throttle.block", subject = %subject, limit = %limit.scope, block_secs = o.block_for.as_secs(), "repeat offender blocked");
                        }
                        retry_after
                    }
                    _ => Duration::from_secs(1),
                };
                let header = ratelimit_value(&limit.policy_name, 0, retry_after);
                let detail = format!("limit `{}` on {subject}: retry in {retry_after:?}", limit.scope);
                self.reject(Code::ThrottleRateLimited, detail, Some(retry_after), header)
            }
        }
    }

    fn unavailable(&self, scope: &str) -> Checked {
        let detail = format!("limit `{scope}`: state backend unreachable and on_failure is closed");
        self.reject(Code::ThrottleStateUnavailable, detail, Some(Duration::from_secs(1)), None)
    }
}

/// `RateLimit: "name";r=REMAINING;t=SECONDS` (draft-ietf-httpapi-ratelimit-headers).
pub fn ratelimit_value(name: &str, remaining: u64, reset: Duration) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{name}\";r={remaining};t={}", secs_ceil(reset))).ok()
}

/// `RateLimit-Policy: "name";q=QUOTA;w=WINDOW, …` for the route's rate limits and quotas, built at load.
pub fn policy_value(limits: &[Limit]) -> Option<HeaderValue> {
    let items: Vec<String> = limits
        .iter()
        .filter_map(|l| match &l.kind {
            LimitKind::Rate { count, per, .. } => {
                Some(format!("\"{}\";q={count};w={}", l.policy_name, per.as_secs().max(1)))
            }
            LimitKind::Quota { max, period } => {
                Some(format!("\"{}\";q={max};w={}", l.policy_name, period.nominal().as_secs()))
            }
            LimitKind::Distinct { .. } => None,
        })
        .collect();
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use crate::state::StateMetrics;

    fn limit(key: KeySpec, kind: LimitKind) -> Limit {
        Limit {
            scope: "r:0".into(),
            key,
            kind,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            offences: None,
            route: "r".into(),
            policy_name: "ip".into(),
        }
    }

    #[tokio::test]
    async fn anonymous_consumer_and_missing_header_fall_back_to_the_client_ip() {
        let headers = HeaderMap::new();
        let caller = Caller { ip: "192.0.2.5".parse().unwrap(), identity: None, headers: &headers };
        let l = limit(
            KeySpec::Consumer,
            LimitKind::Rate { gcra: Gcra::new(1, Duration::from_secs(1), 0), count: 1, per: Duration::from_secs(1) },
        );
        assert_eq!(&*l.subject(&caller).label(), "ip:192.0.2.5/32");
        let l = limit(KeySpec::Header(HeaderName::from_static("x-tenant")), l.kind.clone());
        assert_eq!(&*l.subject(&caller).label(), "ip:192.0.2.5/32");
        let id = Identity {
            consumer: "alice".into(),
            method: crate::stages::identify::AuthMethod::ApiKey,
            scopes: vec![],
            roles: vec![],
            claims: serde_json::json!({}),
        };
        let caller = Caller { identity: Some(&id), ..caller };
        let l = limit(KeySpec::Consumer, l.kind.clone());
        assert_eq!(&*l.subject(&caller).label(), "consumer:alice");
    }

    #[tokio::test]
    async fn refusals_carry_retry_after_and_ratelimit_headers() {
        let store = Store::Memory(Arc::new(MemoryStore::new(1000, StateMetrics::default())));
        let l = limit(
            KeySpec::Ip,
            LimitKind::Rate { gcra: Gcra::new(2, Duration::from_secs(60), 0), count: 2, per: Duration::from_secs(60) },
        );
        let policy = ThrottlePolicy {
            policy_header: policy_value(std::slice::from_ref(&l)),
            limits: vec![l],
            cost: 1,
            on_failure: FailureMode::Local,
        };
        assert_eq!(policy.policy_header.as_ref().unwrap(), "\"ip\";q=2;w=60");
        let headers = HeaderMap::new();
        let caller = Caller { ip: "2001:db8::1".parse().unwrap(), identity: None, headers: &headers };
        let first = policy.check(&store, &caller).await;
        assert!(matches!(first.verdict, Verdict::Continue));
        assert_eq!(first.ratelimit.unwrap(), "\"ip\";r=0;t=30");
        // Another address in the same /64 is the same client.
        let caller = Caller { ip: "2001:db8::2".parse().unwrap(), ..caller };
        let Verdict::Reject(rej) = policy.check(&store, &caller).await.verdict else { panic!("not limited") };
        assert_eq!(rej.code, Code::ThrottleRateLimited);
        let get =
            |n: &HeaderName| rej.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(get(&RETRY_AFTER).as_deref(), Some("30"));
        assert_eq!(get(&RATELIMIT).as_deref(), Some("\"ip\";r=0;t=30"));
        assert!(get(&RATELIMIT_POLICY).is_some());
    }
}

#[cfg(test)]
mod distinct_tests {
    use super::*;
    use crate::stages::identify::AuthMethod;
    use crate::state::memory::MemoryStore;
    use crate::state::StateMetrics;

    fn id(name: &str) -> Identity {
        Identity {
            consumer: name.into(),
            method: AuthMethod::ApiKey,
            scopes: vec![],
            roles: vec![],
            claims: serde_json::json!({}),
        }
    }

    fn policy(key: KeySpec, of: DistinctOf) -> ThrottlePolicy {
        let l = Limit {
            scope: "d".into(),
            key,
            kind: LimitKind::Distinct { of, max: 2, window: Duration::from_secs(3600) },
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            offences: None,
            route: "r".into(),
            policy_name: "d".into(),
        };
        ThrottlePolicy { policy_header: None, limits: vec![l], cost: 1, on_failure: FailureMode::Local }
    }

    fn code(c: Checked) -> Option<Code> {
        match c.verdict {
            Verdict::Continue => None,
            Verdict::Reject(r) => Some(r.code),
        }
    }

    #[tokio::test]
    async fn identities_per_ip_and_ips_per_identity_have_their_own_codes() {
        let store = Store::Memory(Arc::new(MemoryStore::new(1000, StateMetrics::default())));
        let headers = HeaderMap::new();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let p = policy(KeySpec::Ip, DistinctOf::Consumers);
        let (a, b, c) = (id("a"), id("b"), id("c"));
        for who in [&a, &b, &a] {
            assert_eq!(code(p.check(&store, &Caller { ip, identity: Some(who), headers: &headers }).await), None);
        }
        let third = p.check(&store, &Caller { ip, identity: Some(&c), headers: &headers }).await;
        assert_eq!(code(third), Some(Code::ThrottleDistinctIdentities));
        assert_eq!(code(p.check(&store, &Caller { ip, identity: None, headers: &headers }).await), None, "anonymous");

        let p = policy(KeySpec::Consumer, DistinctOf::Ips);
        for last in [1, 2, 1] {
            let ip = IpAddr::from([198, 51, 100, last]);
            assert_eq!(code(p.check(&store, &Caller { ip, identity: Some(&a), headers: &headers }).await), None);
        }
        let ip = IpAddr::from([198, 51, 100, 3]);
        assert_eq!(
            code(p.check(&store, &Caller { ip, identity: Some(&a), headers: &headers }).await),
            Some(Code::ThrottleDistinctIps)
        );
    }
}
