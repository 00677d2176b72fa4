//! Declared login routes (`login:` on a route): the upstream checks the password, the gateway counts the guesses.
//! The username is read from the buffered request body — a JSON pointer in a JSON body, a field in a form body —
//! and is the credential the brute-force guard keys on (hashed, case-folded; never logged). A locked username or
//! IP is refused with 429 `auth.lockout` before the request is forwarded; an upstream answer with one of the
//! route's failure statuses counts a failure, a 2xx clears the username's count (its owner got in). A body that
//! cannot be read as JSON or a form simply has no username: the IP counter still applies.

use super::guard::Lockout;
use super::lockout::{Attempt, CredentialKind};
use crate::pipeline::Rejection;
use crate::stages::inspect::BodyKind;
use crate::state::Store;
use http::request::Parts;
use http::StatusCode;
use std::net::IpAddr;

/// Longest username counted; a longer value is not a username (the IP counter still applies).
const MAX_USERNAME_BYTES: usize = 1024;

/// A login route's rules, compiled from `login: { username: /username, form_field: username, failure_status: [401] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRoute {
    /// JSON pointer (RFC 6901) of the username in a JSON body.
    pointer: String,
    /// Field name of the username in an `application/x-www-form-urlencoded` body.
    form_field: Option<String>,
    /// Upstream statuses that mean "wrong credentials".
    failure_status: Vec<StatusCode>,
}

/// A `login:` section that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("login: {0}")]
pub struct LoginConfigError(pub String);

impl LoginRoute {
    /// `form_field` defaults to the pointer's only segment (`/username` → `username`); a deeper pointer matches
    /// JSON bodies only unless a field is named. `failure_status` defaults to 401 and 403.
    pub fn new(
        pointer: &str,
        form_field: Option<&str>,
        failure_status: Option<&[u16]>,
    ) -> Result<LoginRoute, LoginConfigError> {
        let pointer = pointer.trim();
        let segments: Vec<&str> = pointer.strip_prefix('/').map(|p| p.split('/').collect()).unwrap_or_default();
        if segments.is_empty() || segments.iter().any(|s| s.is_empty()) {
            return Err(LoginConfigError(format!("`username: {pointer}` is not a JSON pointer to a field")));
        }
        if segments.iter().any(|s| bad_escape(s)) {
            return Err(LoginConfigError(format!("`username: {pointer}`: `~` must be followed by 0 or 1")));
        }
        let form_field = match form_field.map(str::trim) {
            Some("") => return Err(LoginConfigError("`form_field` is empty".into())),
            Some(f) => Some(f.to_string()),
            None if segments.len() == 1 => Some(segments[0].replace("~1", "/").replace("~0", "~")),
            None => None,
        };
        let failure_status = match failure_status {
            None => vec![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN],
            Some([]) => return Err(LoginConfigError("`failure_status` lists no status".into())),
            Some(list) => list
                .iter()
                .map(|s| match StatusCode::from_u16(*s) {
                    Ok(code) if code.is_client_error() || code.is_server_error() => Ok(code),
                    _ => Err(LoginConfigError(format!("`failure_status: {s}` is not a 4xx or 5xx status"))),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(LoginRoute { pointer: pointer.to_string(), form_field, failure_status })
    }

    /// The username the body presents, if it has one: a non-empty string at the pointer (JSON) or the field's
    /// first value (form).
    pub fn username(&self, parts: &Parts, body: Option<&[u8]>) -> Option<String> {
        let body = body.filter(|b| !b.is_empty())?;
        let name = match BodyKind::of(parts) {
            BodyKind::Json => {
                let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
                doc.pointer(&self.pointer)?.as_str()?.to_string()
            }
            BodyKind::Form => {
                let field = self.form_field.as_deref()?;
                body.split(|b| *b == b'&').find_map(|pair| {
                    let mut kv = pair.splitn(2, |b| *b == b'=');
                    let key = detect::form_decode(kv.next().unwrap_or_default());
                    (key == field.as_bytes()).then(|| {
                        String::from_utf8_lossy(&detect::form_decode(kv.next().unwrap_or_default())).into_owned()
                    })
                })?
            }
            _ => return None,
        };
        (!name.trim().is_empty() && name.len() <= MAX_USERNAME_BYTES).then_some(name)
    }

    /// What an upstream status says about the login.
    pub fn outcome(&self, status: StatusCode) -> LoginOutcome {
        if self.failure_status.contains(&status) {
            LoginOutcome::Failed
        } else if status.is_success() {
            LoginOutcome::Succeeded
        } else {
            LoginOutcome::Unknown
        }
    }

    /// The attempt one request makes on this route.
    pub fn attempt<'a>(
        &'a self,
        lockout: &'a Lockout,
        ip: IpAddr,
        parts: &Parts,
        body: Option<&[u8]>,
    ) -> LoginAttempt<'a> {
        LoginAttempt { route: self, lockout, ip, username: self.username(parts, body) }
    }
}

fn bad_escape(segment: &str) -> bool {
    let b = segment.as_bytes();
    b.iter().enumerate().any(|(i, c)| *c == b'~' && !matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// What the upstream's answer means for the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// One of the route's failure statuses: a guess.
    Failed,
    /// 2xx: the owner got in.
    Succeeded,
    /// Anything else (redirects, other errors): not counted.
    Unknown,
}

/// One request on a login route: checked before forwarding, reported when the upstream answers.
pub struct LoginAttempt<'a> {
    route: &'a LoginRoute,
    lockout: &'a Lockout,
    ip: IpAddr,
    username: Option<String>,
}

impl LoginAttempt<'_> {
    fn as_attempt(&self) -> Attempt<'_> {
        Attempt { ip: self.ip, credential: self.username.as_deref().map(|u| (CredentialKind::Username, u)) }
    }

    /// 429 `auth.lockout` when the IP or the username is locked out (503 when the shared state is unreachable
    /// and the lockout fails closed), or `None` to forward.
    pub async fn check(&self, state: &Store) -> Option<Rejection> {
        self.lockout.check(state, &self.as_attempt()).await
    }

    /// Counts the upstream's answer.
    pub async fn report(&self, state: &Store, status: StatusCode, request_id: &str) {
        match self.route.outcome(status) {
            LoginOutcome::Failed => self.lockout.failed(state, &self.as_attempt(), request_id).await,
            LoginOutcome::Succeeded => self.lockout.succeeded(state, &self.as_attempt()).await,
            LoginOutcome::Unknown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(ct: &str) -> Parts {
        http::Request::post("/login").header("content-type", ct).body(()).unwrap().into_parts().0
    }

    #[test]
    fn usernames_are_read_from_json_and_form_bodies() {
        let r = LoginRoute::new("/username", None, None).unwrap();
        let json = parts("application/json");
        assert_eq!(r.username(&json, Some(br#"{"username":"Alice","password":"x"}"#)).as_deref(), Some("Alice"));
        assert_eq!(r.username(&json, Some(br#"{"username":42}"#)), None, "not a string");
        assert_eq!(r.username(&json, Some(br#"{"username":"  "}"#)), None, "blank");
        assert_eq!(r.username(&json, Some(b"{not json")), None);
        assert_eq!(r.username(&json, None), None);
        let form = parts("application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(r.username(&form, Some(b"password=p%26w&username=bob%40x.io")).as_deref(), Some("bob@x.io"));
        assert_eq!(r.username(&form, Some(b"user=bob")), None);
        assert_eq!(r.username(&parts("text/plain"), Some(b"username=bob")), None);
        let long = format!(r#"{{"username":"{}"}}"#, "a".repeat(MAX_USERNAME_BYTES + 1));
        assert_eq!(r.username(&json, Some(long.as_bytes())), None);

        let nested = LoginRoute::new("/user/email", None, None).unwrap();
        assert_eq!(nested.username(&json, Some(br#"{"user":{"email":"c@d"}}"#)).as_deref(), Some("c@d"));
        assert_eq!(nested.username(&form, Some(b"email=c@d")), None, "no form field unless named");
        let named = LoginRoute::new("/user/email", Some("email"), None).unwrap();
        assert_eq!(named.username(&form, Some(b"email=c@d")).as_deref(), Some("c@d"));
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let r = LoginRoute::new("/u", None, None).unwrap();
        assert_eq!(r.outcome(StatusCode::UNAUTHORIZED), LoginOutcome::Failed);
        assert_eq!(r.outcome(StatusCode::FORBIDDEN), LoginOutcome::Failed);
        assert_eq!(r.outcome(StatusCode::OK), LoginOutcome::Succeeded);
        assert_eq!(r.outcome(StatusCode::NO_CONTENT), LoginOutcome::Succeeded);
        assert_eq!(r.outcome(StatusCode::FOUND), LoginOutcome::Unknown);
        assert_eq!(r.outcome(StatusCode::BAD_GATEWAY), LoginOutcome::Unknown);
        let r = LoginRoute::new("/u", None, Some(&[422])).unwrap();
        assert_eq!(r.outcome(StatusCode::UNPROCESSABLE_ENTITY), LoginOutcome::Failed);
        assert_eq!(r.outcome(StatusCode::UNAUTHORIZED), LoginOutcome::Unknown);
    }

    #[test]
    fn bad_login_sections_are_refused() {
        for p in ["username", "/", "/a//b", "", "/a~2"] {
            assert!(LoginRoute::new(p, None, None).is_err(), "{p:?}");
        }
        assert!(LoginRoute::new("/u", Some(" "), None).is_err());
        assert!(LoginRoute::new("/u", None, Some(&[])).is_err());
        assert!(LoginRoute::new("/u", None, Some(&[200])).is_err());
        assert!(LoginRoute::new("/u", None, Some(&[99])).is_err());
        assert_eq!(LoginRoute::new("/a~1b", None, None).unwrap().form_field.as_deref(), Some("a/b"));
    }
}
