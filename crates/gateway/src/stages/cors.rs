//! CORS from an explicit allow-list per route: preflights are answered by the gateway (the upstream never sees
//! them), actual responses get the `Access-Control-*` headers only for allowed origins, and a wildcard origin
//! can never be combined with credentials (config validation refuses it).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// Exact origins (`https://app.example.com`), or `None` for any origin (`*`).
    pub origins: Option<Vec<String>>,
    pub methods: Vec<Method>,
    /// Request headers a preflight may ask for (lower case).
    pub headers: Vec<HeaderName>,
    pub expose: Vec<HeaderName>,
    pub credentials: bool,
    pub max_age_secs: u64,
}

/// The answer to a preflight.
pub enum Preflight {
    Allowed(HeaderMap),
    Denied(String),
}

impl CorsPolicy {
    fn origin_allowed(&self, origin: &str) -> bool {
        match &self.origins {
            None => true,
            Some(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.origins.is_none() && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// Answers a preflight for `origin` asking for `method` and `requested` headers.
    pub fn preflight(&self, origin: &HeaderValue, method: &Method, requested: Option<&HeaderValue>) -> Preflight {
        let Ok(o) = origin.to_str() else { return Preflight::Denied("origin is not text".into()) };
        if !self.origin_allowed(o) {
            return Preflight::Denied(format!("origin {o} not allowed"));
        }
        if !self.methods.contains(method) {
            return Preflight::Denied(format!("method {method} not allowed for CORS"));
        }
        if let Some(req) = requested.and_then(|v| v.to_str().ok()) {
            for h in req.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()) {
                if !self.headers.iter().any(|a| a.as_str() == h) {
                    return Preflight::Denied(format!("request header {h} not allowed for CORS"));
                }
            }
        }
        let mut out = HeaderMap::new();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin));
        let methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if !self.headers.is_empty() {
            let hs: Vec<&str> = self.headers.iter().map(HeaderName::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&hs.join(", ")) {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if self.credentials {
            out.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age_secs));
        out.insert(
            header::VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        );
        Preflight::Allowed(out)
    }

    /// Adds the CORS headers of an actual response when the request's origin is allowed; otherwise removes any
    /// the upstream set, so the allow-list here is the only one that counts.
    pub fn apply(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        for h in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
        ] {
            headers.remove(h);
        }
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin else { return };
        if !origin.to_str().is_ok_and(|o| self.origin_allowed(o)) {
            return;
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin));
        if self.credentials {
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        if !self.expose.is_empty() {
            let hs: Vec<&str> = self.expose.iter().map(HeaderName::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&hs.join(", ")) {
                headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CorsPolicy {
        CorsPolicy {
            origins: Some(vec!["https://app.example.com".into()]),
            methods: vec![Method::GET, Method::POST],
            headers: vec![header::CONTENT_TYPE, header::AUTHORIZATION],
            expose: vec![HeaderName::from_static("x-request-id")],
            credentials: true,
            max_age_secs: 600,
        }
    }

    #[test]
    fn preflight_checks_origin_method_and_headers() {
        let p = policy();
        let o = HeaderValue::from_static("https://app.example.com");
        let Preflight::Allowed(h) = p.preflight(&o, &Method::POST, Some(&HeaderValue::from_static("Content-Type")))
        else {
            panic!("denied")
        };
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert!(matches!(
            p.preflight(&HeaderValue::from_static("https://evil.example"), &Method::POST, None),
            Preflight::Denied(_)
        ));
        assert!(matches!(p.preflight(&o, &Method::DELETE, None), Preflight::Denied(_)));
        assert!(matches!(
            p.preflight(&o, &Method::GET, Some(&HeaderValue::from_static("x-admin"))),
            Preflight::Denied(_)
        ));
    }

    #[test]
    fn responses_carry_cors_only_for_allowed_origins_and_never_the_upstreams() {
        let p = policy();
        let mut h = HeaderMap::new();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        p.apply(Some(&HeaderValue::from_static("https://evil.example")), &mut h);
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        let mut h = HeaderMap::new();
        p.apply(Some(&HeaderValue::from_static("https://app.example.com")), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
        let any = CorsPolicy { origins: None, credentials: false, ..policy() };
        let mut h = HeaderMap::new();
        any.apply(Some(&HeaderValue::from_static("https://x.example")), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }
}
