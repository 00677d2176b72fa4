//! mTLS identities: a client certificate the listener has already verified against its `client_auth` CA is
//! mapped to a consumer (and roles) by its SHA-256 fingerprint, a subject alternative name, or its subject.
//! A verified certificate with no mapping is refused: being signed by the CA is not enough to be someone.

use super::{AuthFailure, AuthMethod, IdentifyCode, Identity};
use crate::server::tls::PeerCert;
use std::collections::HashMap;
use std::sync::Arc;

/// How one mapping entry recognises a certificate.
#[derive(Debug, Clone)]
pub enum CertMatch {
    /// Hex SHA-256 of the DER certificate (pinning).
    Sha256(String),
    /// `DNS:name`, `email:addr` or `URI:uri`, as in [`PeerCert::sans`].
    San(String),
    /// RFC 4514 subject, compared with spaces after commas ignored.
    Subject(String),
}

/// The compiled `identity.mtls` list.
#[derive(Debug, Default)]
pub struct MtlsMap {
    by_sha256: HashMap<String, Arc<Identity>>,
    by_san: HashMap<String, Arc<Identity>>,
    by_subject: HashMap<String, Arc<Identity>>,
}

fn subject_key(s: &str) -> String {
    s.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

fn san_key(s: &str) -> String {
    match s.split_once(':') {
        // DNS names and email domains compare case-insensitively; URIs as written.
        Some((kind, v)) if kind.eq_ignore_ascii_case("dns") => format!("DNS:{}", v.to_ascii_lowercase()),
        Some((kind, v)) if kind.eq_ignore_ascii_case("email") => format!("email:{}", v.to_ascii_lowercase()),
        Some((kind, v)) if kind.eq_ignore_ascii_case("uri") => format!("URI:{v}"),
        _ => s.to_string(),
    }
}

impl MtlsMap {
    /// Adds a mapping; `false` when the same certificate matcher is mapped twice.
    pub fn add(&mut self, matcher: CertMatch, consumer: &str, roles: &[String], scopes: &[String]) -> bool {
        let identity = Arc::new(Identity {
            consumer: Arc::from(consumer),
            method: AuthMethod::Mtls,
            scopes: scopes.iter().map(|s| Arc::from(s.as_str())).collect(),
            roles: roles.iter().map(|s| Arc::from(s.as_str())).collect(),
            claims: serde_json::json!({ "sub": consumer }),
        });
        let (map, key) = match matcher {
            CertMatch::Sha256(h) => (&mut self.by_sha256, h.to_ascii_lowercase().replace(':', "")),
            CertMatch::San(s) => (&mut self.by_san, san_key(&s)),
            CertMatch::Subject(s) => (&mut self.by_subject, subject_key(&s)),
        };
        match map.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(identity);
                true
            }
        }
    }

    pub fn identify(&self, cert: &PeerCert) -> Result<Arc<Identity>, AuthFailure> {
        if let Some(id) = self.by_sha256.get(&cert.sha256) {
            return Ok(id.clone());
        }
        for san in &cert.sans {
            if let Some(id) = self.by_san.get(&san_key(san)) {
                return Ok(id.clone());
            }
        }
        if let Some(id) = self.by_subject.get(&subject_key(&cert.subject)) {
            return Ok(id.clone());
        }
        Err(AuthFailure::new(
            IdentifyCode::MtlsUnmapped,
            format!(
                "client certificate {} (sha256 {}) maps to no consumer",
                cert.subject,
                &cert.sha256[..16.min(cert.sha256.len())]
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_map_by_pin_san_or_subject() {
        let mut m = MtlsMap::default();
        assert!(m.add(CertMatch::San("DNS:Billing.Clients.Test".into()), "billing", &["service".into()], &[]));
        assert!(m.add(CertMatch::Subject("CN=reports, O=Example".into()), "reports", &[], &[]));
        assert!(!m.add(CertMatch::Subject("CN=reports,O=Example".into()), "other", &[], &[]));
        let cert = |subject: &str, sans: &[&str]| PeerCert {
            subject: subject.into(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            sha256: "00".repeat(32),
        };
        let b = m.identify(&cert("CN=x", &["DNS:billing.clients.test"])).unwrap();
        assert_eq!(&*b.consumer, "billing");
        assert!(b.has_role("service"));
        assert_eq!(&*m.identify(&cert("CN=reports,O=Example", &[])).unwrap().consumer, "reports");
        assert_eq!(m.identify(&cert("CN=nobody", &[])).unwrap_err().code, IdentifyCode::MtlsUnmapped);
    }
}
