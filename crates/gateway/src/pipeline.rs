//! The vocabulary every stage speaks: a stage either lets the request continue or rejects it with a
//! [`Rejection`] that carries a stable code, an HTTP status and an OWASP API Security Top 10 category.

use http::StatusCode;
use serde::Deserialize;
use std::fmt;

/// What a stage decided about a request.
#[derive(Debug)]
pub enum Verdict {
    /// The request may go on to the next stage.
    Continue,
    /// The request must stop here (or, in monitor mode, be recorded as if it had).
    Reject(Rejection),
}

impl Verdict {
    pub fn reject(code: Code, detail: impl Into<String>) -> Verdict {
        Verdict::Reject(Rejection::new(code, detail))
    }
}

/// The stages of the pipeline, in the order a request meets them. Used to pick a stage's mode and to label
/// rejections in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageName {
    Admit,
    Route,
    Identify,
    Authorize,
    Throttle,
    Inspect,
    Forward,
    Respond,
}

impl StageName {
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Admit => "admit",
            StageName::Route => "route",
            StageName::Identify => "identify",
            StageName::Authorize => "authorize",
            StageName::Throttle => "throttle",
            StageName::Inspect => "inspect",
            StageName::Forward => "forward",
            StageName::Respond => "respond",
        }
    }
}

/// Whether a stage's rejections stop the request (`enforce`) or are only recorded (`monitor`), so a policy can
/// be rolled out safely before it bites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Monitor,
}

/// OWASP API Security Top 10 (2023): the category every rejection is filed under, so security events can be
/// grouped the way auditors think.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owasp {
    Api1BrokenObjectLevelAuthorization,
    Api2BrokenAuthentication,
    Api3BrokenObjectPropertyLevelAuthorization,
    Api4UnrestrictedResourceConsumption,
    Api5BrokenFunctionLevelAuthorization,
    Api6UnrestrictedAccessToSensitiveBusinessFlows,
    Api7ServerSideRequestForgery,
    Api8SecurityMisconfiguration,
    Api9ImproperInventoryManagement,
    Api10UnsafeConsumptionOfApis,
}

impl Owasp {
    /// The short identifier used in logs and the rejection-code table, e.g. `API4:2023`.
    pub fn id(self) -> &'static str {
        match self {
            Owasp::Api1BrokenObjectLevelAuthorization => "API1:2023",
            Owasp::Api2BrokenAuthentication => "API2:2023",
            Owasp::Api3BrokenObjectPropertyLevelAuthorization => "API3:2023",
            Owasp::Api4UnrestrictedResourceConsumption => "API4:2023",
            Owasp::Api5BrokenFunctionLevelAuthorization => "API5:2023",
            Owasp::Api6UnrestrictedAccessToSensitiveBusinessFlows => "API6:2023",
            Owasp::Api7ServerSideRequestForgery => "API7:2023",
            Owasp::Api8SecurityMisconfiguration => "API8:2023",
            Owasp::Api9ImproperInventoryManagement => "API9:2023",
            Owasp::Api10UnsafeConsumptionOfApis => "API10:2023",
        }
    }
}

/// Every reason the gateway answers a request itself. Each variant has one stable code: clients, dashboards and
/// alert rules key on it, so a code is never renamed once shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    AdmitUriTooLong,
    AdmitHeadersTooLarge,
    AdmitBodyTooLarge,
    AdmitIpDenied,
    AdmitBadPath,
    AdmitBadRequest,
    AdmitBodyTimeout,
    RouteNotFound,
    RouteMethodNotAllowed,
    /// A CORS preflight from an origin, for a method or with headers the route's allow-list does not grant.
    CorsDenied,
    /// The detection engine found an attack of this family in a value.
    Inspect(detect::Family),
    InspectMalformedBody,
    InspectBodyTooLarge,
    UpstreamUnreachable,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamBadResponse,
    /// The upstream answered with an error whose body was replaced (the upstream's status is kept).
    UpstreamError,
    /// The caller could not be identified (401); the precise reason is logged, the client sees `auth.failed`.
    Identify(crate::stages::identify::IdentifyCode),
    /// The identified caller may not do this (403).
    Authorize(crate::stages::authorize::AuthzCode),
    /// The request does not match its OpenAPI operation: a parameter, the body, a `readOnly` property, or
    /// (strict routes) a property nobody declared.
    InspectSchema,
    /// The body's media type is not one the operation declares.
    InspectContentType,
    /// A JSON response carried properties its response schema does not declare (route in `block` mode), or
    /// could not be read for filtering.
    RespondSchema,
    /// Secrets or personal data were redacted from a response body (recorded; the response goes out).
    RespondRedacted,
    /// A response that should have been inspected could not be (over the cap, unknown or corrupt encoding).
    RespondUninspected,
    /// A caller received more records than the route's exfiltration guard allows in its window.
    RespondExfiltration,
    /// A rate limit of the route refused the request.
    ThrottleRateLimited,
    /// A quota (per hour, day or month) is used up.
    ThrottleQuotaExceeded,
    /// The caller is temporarily blocked as a repeat offender.
    ThrottleBlocked,
    /// Too many distinct identities from one IP (credential stuffing, account rotation).
    ThrottleDistinctIdentities,
    /// One identity from too many distinct IPs (shared or stolen credential, botnet).
    ThrottleDistinctIps,
    /// Load shedding: the route or upstream has its maximum in flight and the queue is full or too slow.
    ThrottleOverload,
    /// The shared limit state is unreachable and the route's `limits_on_failure` is `closed`.
    ThrottleStateUnavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::AdmitUriTooLong => "admit.uri_too_long",
            Code::AdmitHeadersTooLarge => "admit.headers_too_large",
            Code::AdmitBodyTooLarge => "admit.body_too_large",
            Code::AdmitIpDenied => "admit.ip_denied",
            Code::AdmitBadPath => "admit.bad_path",
            Code::AdmitBadRequest => "admit.bad_request",
            Code::AdmitBodyTimeout => "admit.body_timeout",
            Code::RouteNotFound => "route.not_found",
            Code::RouteMethodNotAllowed => "route.method_not_allowed",
            Code::CorsDenied => "cors.denied",
            Code::Inspect(f) => f.code(),
            Code::InspectMalformedBody => "inspect.malformed_body",
            Code::InspectBodyTooLarge => "inspect.body_too_large",
            Code::UpstreamUnreachable => "upstream.unreachable",
            Code::UpstreamTimeout => "upstream.timeout",
            Code::UpstreamUnavailable => "upstream.unavailable",
            Code::UpstreamBadResponse => "upstream.bad_response",
            Code::UpstreamError => "upstream.error",
            Code::Identify(c) => c.as_str(),
            Code::Authorize(c) => c.as_str(),
            Code::InspectSchema => "inspect.schema",
            Code::InspectContentType => "inspect.content_type",
            Code::RespondSchema => "respond.schema",
            Code::RespondRedacted => "respond.redacted",
            Code::RespondUninspected => "respond.uninspected",
            Code::RespondExfiltration => "respond.exfiltration",
            Code::ThrottleRateLimited => "throttle.rate_limited",
            Code::ThrottleQuotaExceeded => "throttle.quota_exceeded",
            Code::ThrottleBlocked => "throttle.blocked",
            Code::ThrottleDistinctIdentities => "throttle.distinct_identities",
            Code::ThrottleDistinctIps => "throttle.distinct_ips",
            Code::ThrottleOverload => "throttle.overload",
            Code::ThrottleStateUnavailable => "throttle.state_unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::AdmitBadPath | Code::AdmitBadRequest => StatusCode::BAD_REQUEST,
            Code::AdmitUriTooLong => StatusCode::URI_TOO_LONG,
            Code::AdmitBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::AdmitHeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::AdmitBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::AdmitIpDenied | Code::Inspect(_) | Code::CorsDenied => StatusCode::FORBIDDEN,
            Code::InspectMalformedBody | Code::InspectSchema => StatusCode::BAD_REQUEST,
            Code::InspectContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::RespondSchema => StatusCode::BAD_GATEWAY,
            Code::InspectBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RouteNotFound => StatusCode::NOT_FOUND,
            Code::RouteMethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::UpstreamUnreachable | Code::UpstreamBadResponse => StatusCode::BAD_GATEWAY,
            Code::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Code::UpstreamError => StatusCode::INTERNAL_SERVER_ERROR,
            Code::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Identify(c) => c.status(),
            Code::Authorize(_) => StatusCode::FORBIDDEN,
            Code::RespondRedacted => StatusCode::OK,
            Code::RespondUninspected => StatusCode::BAD_GATEWAY,
            Code::RespondExfiltration => StatusCode::TOO_MANY_REQUESTS,
            Code::ThrottleRateLimited
            | Code::ThrottleQuotaExceeded
            | Code::ThrottleBlocked
            | Code::ThrottleDistinctIdentities
            | Code::ThrottleDistinctIps => StatusCode::TOO_MANY_REQUESTS,
            Code::ThrottleOverload | Code::ThrottleStateUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The OWASP category, or `None` for availability failures that are not an attack (a dead upstream).
    pub fn owasp(self) -> Option<Owasp> {
        match self {
            Code::AdmitUriTooLong | Code::AdmitHeadersTooLarge | Code::AdmitBodyTooLarge | Code::AdmitBodyTimeout => {
                Some(Owasp::Api4UnrestrictedResourceConsumption)
            }
            Code::AdmitIpDenied | Code::AdmitBadPath | Code::AdmitBadRequest => {
                Some(Owasp::Api8SecurityMisconfiguration)
            }
            Code::RouteNotFound | Code::RouteMethodNotAllowed => Some(Owasp::Api9ImproperInventoryManagement),
            Code::CorsDenied => Some(Owasp::Api8SecurityMisconfiguration),
            Code::Inspect(detect::Family::Ssrf) => Some(Owasp::Api7ServerSideRequestForgery),
            Code::Inspect(detect::Family::ProtoPollution) => Some(Owasp::Api3BrokenObjectPropertyLevelAuthorization),
            Code::Inspect(_) | Code::InspectMalformedBody => Some(Owasp::Api8SecurityMisconfiguration),
            Code::InspectBodyTooLarge => Some(Owasp::Api4UnrestrictedResourceConsumption),
            Code::InspectSchema | Code::RespondSchema => Some(Owasp::Api3BrokenObjectPropertyLevelAuthorization),
            Code::InspectContentType => Some(Owasp::Api8SecurityMisconfiguration),
            Code::UpstreamUnreachable
            | Code::UpstreamTimeout
            | Code::UpstreamUnavailable
            | Code::UpstreamBadResponse
            | Code::UpstreamError => None,
            Code::Identify(_) => Some(Owasp::Api2BrokenAuthentication),
            Code::Authorize(c) => Some(c.owasp()),
            Code::RespondRedacted | Code::RespondUninspected | Code::RespondExfiltration => {
                Some(Owasp::Api3BrokenObjectPropertyLevelAuthorization)
            }
            Code::ThrottleRateLimited
            | Code::ThrottleQuotaExceeded
            | Code::ThrottleBlocked
            | Code::ThrottleOverload => Some(Owasp::Api4UnrestrictedResourceConsumption),
            Code::ThrottleDistinctIdentities | Code::ThrottleDistinctIps => Some(Owasp::Api2BrokenAuthentication),
            Code::ThrottleStateUnavailable => None,
        }
    }

    /// The stage that emits this code.
    pub fn stage(self) -> StageName {
        match self {
            Code::AdmitUriTooLong
            | Code::AdmitHeadersTooLarge
            | Code::AdmitBodyTooLarge
            | Code::AdmitIpDenied
            | Code::AdmitBadPath
            | Code::AdmitBadRequest
            | Code::AdmitBodyTimeout => StageName::Admit,
            Code::RouteNotFound | Code::RouteMethodNotAllowed | Code::CorsDenied => StageName::Route,
            Code::Inspect(_)
            | Code::InspectMalformedBody
            | Code::InspectBodyTooLarge
            | Code::InspectSchema
            | Code::InspectContentType => StageName::Inspect,
            Code::UpstreamUnreachable
            | Code::UpstreamTimeout
            | Code::UpstreamUnavailable
            | Code::UpstreamBadResponse => StageName::Forward,
            Code::Identify(_) => StageName::Identify,
            Code::Authorize(_) => StageName::Authorize,
            Code::UpstreamError
            | Code::RespondSchema
            | Code::RespondRedacted
            | Code::RespondUninspected
            | Code::RespondExfiltration => StageName::Respond,
            Code::ThrottleRateLimited
            | Code::ThrottleQuotaExceeded
            | Code::ThrottleBlocked
            | Code::ThrottleDistinctIdentities
            | Code::ThrottleDistinctIps
            | Code::ThrottleOverload
            | Code::ThrottleStateUnavailable => StageName::Throttle,
        }
    }

    /// Whether this is a security decision (recorded as a security event) rather than an availability failure.
    pub fn is_security(self) -> bool {
        self.owasp().is_some()
    }

    /// The code the client sees in the problem body. Identification failures all read `auth.failed` so a
    /// client cannot probe which check its credential failed (expired, unknown key, bad signature …); the
    /// precise code goes to the log and metrics.
    pub fn client_str(self) -> &'static str {
        match self {
            Code::Identify(c) => c.client_str(),
            other => other.as_str(),
        }
    }

    /// Every code, for the README table and tests that check it stays complete.
    pub const ALL: &'static [Code] = &[
        Code::AdmitUriTooLong,
        Code::AdmitHeadersTooLarge,
        Code::AdmitBodyTooLarge,
        Code::AdmitIpDenied,
        Code::AdmitBadPath,
        Code::AdmitBadRequest,
        Code::AdmitBodyTimeout,
        Code::RouteNotFound,
        Code::RouteMethodNotAllowed,
        Code::CorsDenied,
        Code::Inspect(detect::Family::Sqli),
        Code::Inspect(detect::Family::Nosqli),
        Code::Inspect(detect::Family::Xss),
        Code::Inspect(detect::Family::Cmdi),
        Code::Inspect(detect::Family::PathTraversal),
        Code::Inspect(detect::Family::Ssrf),
        Code::Inspect(detect::Family::Xxe),
        Code::Inspect(detect::Family::Ssti),
        Code::Inspect(detect::Family::Jndi),
        Code::Inspect(detect::Family::Ldap),
        Code::Inspect(detect::Family::Xpath),
        Code::Inspect(detect::Family::Crlf),
        Code::Inspect(detect::Family::ProtoPollution),
        Code::Inspect(detect::Family::Deserialization),
        Code::InspectMalformedBody,
        Code::InspectBodyTooLarge,
        Code::UpstreamUnreachable,
        Code::UpstreamTimeout,
        Code::UpstreamUnavailable,
        Code::UpstreamBadResponse,
        Code::UpstreamError,
        Code::Identify(crate::stages::identify::IdentifyCode::Missing),
        Code::Identify(crate::stages::identify::IdentifyCode::KeyInvalid),
        Code::Identify(crate::stages::identify::IdentifyCode::KeyExpired),
        Code::Identify(crate::stages::identify::IdentifyCode::KeyRevoked),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtMalformed),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtAlg),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtHeader),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtKid),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtSignature),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtExpired),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtNotYetValid),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtIssuer),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtAudience),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtClaims),
        Code::Identify(crate::stages::identify::IdentifyCode::JwtKeysUnavailable),
        Code::Identify(crate::stages::identify::IdentifyCode::MtlsUnmapped),
        Code::Identify(crate::stages::identify::IdentifyCode::IntrospectionMalformed),
        Code::Identify(crate::stages::identify::IdentifyCode::IntrospectionInactive),
        Code::Identify(crate::stages::identify::IdentifyCode::IntrospectionExpired),
        Code::Identify(crate::stages::identify::IdentifyCode::IntrospectionNotYetValid),
        Code::Identify(crate::stages::identify::IdentifyCode::IntrospectionIssuer),
        Code::Identify(crate::stages::identify::IdentifyCode::IntrospectionAudience),
        Code::Identify(crate::stages::identify::IdentifyCode::IntrospectionClaims),
        Code::Identify(crate::stages::identify::IdentifyCode::IntrospectionUnavailable),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureMissing),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureMalformed),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureUnknownKey),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureCoverage),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureInvalid),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureExpired),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureDigest),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureReplay),
        Code::Identify(crate::stages::identify::IdentifyCode::SignatureStoreUnavailable),
        Code::Identify(crate::stages::identify::IdentifyCode::Lockout),
        Code::Identify(crate::stages::identify::IdentifyCode::LockoutUnavailable),
        Code::Authorize(crate::stages::authorize::AuthzCode::Scope),
        Code::Authorize(crate::stages::authorize::AuthzCode::Function),
        Code::Authorize(crate::stages::authorize::AuthzCode::Object),
        Code::Authorize(crate::stages::authorize::AuthzCode::MassAssignment),
        Code::Authorize(crate::stages::authorize::AuthzCode::Policy),
        Code::InspectSchema,
        Code::InspectContentType,
        Code::RespondSchema,
        Code::RespondRedacted,
        Code::RespondUninspected,
        Code::RespondExfiltration,
        Code::ThrottleRateLimited,
        Code::ThrottleQuotaExceeded,
        Code::ThrottleBlocked,
        Code::ThrottleDistinctIdentities,
        Code::ThrottleDistinctIps,
        Code::ThrottleOverload,
        Code::ThrottleStateUnavailable,
    ];
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was stopped. `detail` is for the operator's log only; the client sees the code and a generic
/// title, never internals.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub code: Code,
    pub detail: String,
    /// Extra response headers the client needs to act (e.g. `Allow` on a 405).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Rejection {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Rejection { code, detail: detail.into(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detection_family_has_a_code() {
        for f in detect::Family::ALL {
            assert!(Code::ALL.contains(&Code::Inspect(f)), "{f:?}");
        }
    }

    #[test]
    fn readme_lists_every_code_with_its_status() {
        let readme = include_str!("../../../README.md");
        for code in Code::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
            assert!(readme.contains(&row), "README's code table lacks `{row}`");
            if let Some(o) = code.owasp() {
                assert!(readme.lines().any(|l| l.starts_with(&row) && l.contains(o.id())), "{code}: OWASP id missing");
            }
        }
    }
}
