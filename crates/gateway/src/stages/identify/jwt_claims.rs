//! The registered claims of a JWT whose signature has been checked (RFC 7519 §4.1): `exp`, `nbf`, `aud` (and
//! `iss`, which picked the issuer), read from the one parsed payload. The rules and their codes are the ones
//! `jsonwebtoken` 12 applied when it did this step: `exp`, `iss` and `aud` required; a NumericDate is a
//! non-negative integer or a finite non-negative number (rounded); expired when `exp < now - leeway`, too early
//! when `nbf > now + leeway`; `aud` a string or an array of strings, one of which must be accepted.

use super::jwt_cache::Validity;
use super::{AuthFailure, IdentifyCode};
use serde_json::Value;

/// A NumericDate claim as read.
enum Numeric {
    Absent,
    At(u64),
    /// Present but not a usable number (null, negative, text …).
    Invalid,
}

fn numeric(v: Option<&Value>) -> Numeric {
    match v {
        None => Numeric::Absent,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Numeric::At(u),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Numeric::At(f.round() as u64),
            _ => Numeric::Invalid,
        },
        Some(_) => Numeric::Invalid,
    }
}

fn fail(code: IdentifyCode, detail: impl Into<String>) -> AuthFailure {
    AuthFailure::new(code, detail)
}

/// Whether `aud` (already known to be a string or an array of strings) names one of `accepted`.
fn audience_matches(aud: &Value, accepted: &[String]) -> bool {
    match aud {
        Value::String(s) => accepted.iter().any(|a| a == s),
        Value::Array(list) => list.iter().filter_map(Value::as_str).any(|s| accepted.iter().any(|a| a == s)),
        _ => false,
    }
}

fn is_audience_shape(aud: &Value) -> bool {
    match aud {
        Value::String(_) => true,
        Value::Array(list) => list.iter().all(Value::is_string),
        _ => false,
    }
}

/// Checks `exp`, `nbf` and `aud` of `claims` (an object) at `now`, and returns when the token is valid (the
/// time claims, for the verified-token cache; `iat` is added by the caller).
pub fn check(claims: &Value, audience: &[String], now: u64, leeway: u64) -> Result<Validity, AuthFailure> {
    let exp = match numeric(claims.get("exp")) {
        Numeric::At(t) => t,
        Numeric::Absent | Numeric::Invalid => return Err(fail(IdentifyCode::JwtClaims, "no usable `exp` claim")),
    };
    if !claims.get("iss").is_some_and(Value::is_string) {
        return Err(fail(IdentifyCode::JwtClaims, "no `iss` claim"));
    }
    let Some(aud) = claims.get("aud").filter(|a| is_audience_shape(a)) else {
        return Err(fail(IdentifyCode::JwtClaims, "no usable `aud` claim"));
    };
    let nbf = match numeric(claims.get("nbf")) {
        Numeric::Absent => None,
        Numeric::At(t) => Some(t),
        Numeric::Invalid => return Err(fail(IdentifyCode::JwtClaims, "`nbf` is not a NumericDate")),
    };
    let validity = Validity { from: nbf.unwrap_or(0), until: exp };
    if exp < now.saturating_sub(leeway) {
        return Err(fail(IdentifyCode::JwtExpired, format!("expired at {exp} (now {now}, leeway {leeway}s)")));
    }
    if validity.from > now.saturating_add(leeway) {
        return Err(fail(IdentifyCode::JwtNotYetValid, format!("not valid before {} (now {now})", validity.from)));
    }
    if !audience_matches(aud, audience) {
        return Err(fail(IdentifyCode::JwtAudience, "audience not accepted"));
    }
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn code(claims: Value) -> Option<IdentifyCode> {
        check(&claims, &["api".to_string(), "other".to_string()], NOW, 30).err().map(|e| e.code)
    }

    fn base() -> Value {
        json!({ "iss": "i", "aud": "api", "exp": NOW + 60 })
    }

    fn with(k: &str, v: Value) -> Value {
        let mut c = base();
        if v.is_null() && k != "nbf" && k != "exp" {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        c
    }

    #[test]
    fn claims_are_checked_as_jsonwebtoken_did() {
        assert_eq!(code(base()), None);
        assert_eq!(check(&base(), &["api".into()], NOW, 30).unwrap(), Validity { from: 0, until: NOW + 60 });
        // exp: required, a NumericDate, with leeway.
        assert_eq!(code(json!({ "iss": "i", "aud": "api" })), Some(IdentifyCode::JwtClaims));
        for bad in [json!(null), json!("soon"), json!(-5), json!(true)] {
            assert_eq!(code(with("exp", bad.clone())), Some(IdentifyCode::JwtClaims), "{bad}");
        }
        assert_eq!(code(with("exp", json!(NOW - 30))), None);
        assert_eq!(code(with("exp", json!(NOW - 31))), Some(IdentifyCode::JwtExpired));
        assert_eq!(code(with("exp", json!((NOW + 10) as f64 + 0.4))), None);
        // nbf: optional, with leeway.
        assert_eq!(code(with("nbf", json!(NOW + 30))), None);
        assert_eq!(code(with("nbf", json!(NOW + 31))), Some(IdentifyCode::JwtNotYetValid));
        assert_eq!(code(with("nbf", json!(null))), Some(IdentifyCode::JwtClaims));
        // aud: required, a string or an array of strings, one of them accepted.
        assert_eq!(code(with("aud", json!(null))), Some(IdentifyCode::JwtClaims));
        assert_eq!(code(with("aud", json!(7))), Some(IdentifyCode::JwtClaims));
        assert_eq!(code(with("aud", json!(["x", 7]))), Some(IdentifyCode::JwtClaims));
        assert_eq!(code(with("aud", json!("x"))), Some(IdentifyCode::JwtAudience));
        assert_eq!(code(with("aud", json!([]))), Some(IdentifyCode::JwtAudience));
        assert_eq!(code(with("aud", json!(["x", "other"]))), None);
        assert_eq!(code(with("iss", json!(null))), Some(IdentifyCode::JwtClaims));
    }
}
