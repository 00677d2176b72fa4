//! TLS termination: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only, AEAD suites only, certificates
//! chosen by SNI, optional client-certificate verification (mTLS). Configs are rebuilt on reload and swapped in
//! for new connections; established connections keep the session they negotiated.

use rustls::crypto::aws_lc_rs;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS setting could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}: {source}")]
    Cert { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("no certificate in {0}")]
    NoCert(PathBuf),
    #[error("cannot read private key file {path}: {source}")]
    Key { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("certificate {cert} and key {key} do not belong together or the key type is unsupported: {source}")]
    Pair { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("invalid CA bundle {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The one crypto provider, restricted to AEAD suites with forward secrecy.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    p.cipher_suites.retain(|s| {
        use rustls::CipherSuite::*;
        matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS13_AES_256_GCM_SHA384
                | TLS13_CHACHA20_POLY1305_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    });
    Arc::new(p)
}

/// Lowest protocol version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

impl MinVersion {
    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => &BOTH,
            MinVersion::Tls13 => &ONLY13,
        }
    }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.to_path_buf()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Key { path: path.to_path_buf(), source })
}

pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Ca { path: path.to_path_buf(), reason: e.to_string() })?;
    }
    Ok(roots)
}

fn certified_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert)?;
    let der = load_key(key)?;
    let ck = CertifiedKey::from_der(chain, der, provider).map_err(|source| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(ck))
}

/// Picks the certificate for the SNI name the client sent; unknown or absent names get the default.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            if let Some(ck) = self.by_name.get(&name) {
                return Some(ck.clone());
            }
            for (suffix, ck) in &self.wildcard {
                if name.ends_with(suffix.as_str()) && !name[..name.len() - suffix.len()].contains('.') {
                    return Some(ck.clone());
                }
            }
        }
        Some(self.default.clone())
    }
}

/// Everything needed to build a listener's TLS config; files are re-read on every build (that is the reload).
#[derive(Debug, Clone)]
pub struct TlsSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub sni: Vec<(Vec<String>, PathBuf, PathBuf)>,
    pub min_version: MinVersion,
    pub client_ca: Option<PathBuf>,
    pub client_required: bool,
}

impl TlsSpec {
    /// Files a change to which should trigger a reload.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert.clone(), self.key.clone()];
        for (_, c, k) in &self.sni {
            v.push(c.clone());
            v.push(k.clone());
        }
        v.extend(self.client_ca.clone());
        v
    }

    pub fn build(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let default = certified_key(&self.cert, &self.key, &provider)?;
        let mut by_name = HashMap::new();
        let mut wildcard = Vec::new();
        for (hosts, cert, key) in &self.sni {
            let ck = certified_key(cert, key, &provider)?;
            for h in hosts {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(suffix) => wildcard.push((suffix.to_string(), ck.clone())),
                    None => {
                        by_name.insert(h, ck.clone());
                    }
                }
            }
        }
        let resolver = Arc::new(SniResolver { by_name, wildcard, default });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.min_version.versions())?;
        let mut config = match &self.client_ca {
            Some(ca) => {
                let roots = Arc::new(load_roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if self.client_required { verifier } else { verifier.allow_unauthenticated() };
                let verifier =
                    verifier.build().map_err(|e| TlsError::Ca { path: ca.clone(), reason: e.to_string() })?;
                builder.with_client_cert_verifier(verifier).with_cert_resolver(resolver)
            }
            None => builder.with_no_client_auth().with_cert_resolver(resolver),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The verified client certificate of an mTLS connection, as later stages (identify) see it.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// RFC 4514 subject, e.g. `CN=billing,O=Example`.
    pub subject: String,
    /// DNS, email and URI subject alternative names.
    pub sans: Vec<String>,
    /// SHA-256 of the DER certificate, hex.
    pub sha256: String,
}

impl PeerCert {
    pub fn from_der(der: &[u8]) -> PeerCert {
        let sha256 = hex::encode(Sha256::digest(der));
        let (subject, sans) = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                let mut sans = Vec::new();
                if let Ok(Some(ext)) = cert.subject_alternative_name() {
                    use x509_parser::extensions::GeneralName;
                    for n in &ext.value.general_names {
                        match n {
                            GeneralName::DNSName(s) => sans.push(format!("DNS:{s}")),
                            GeneralName::RFC822Name(s) => sans.push(format!("email:{s}")),
                            GeneralName::URI(s) => sans.push(format!("URI:{s}")),
                            _ => {}
                        }
                    }
                }
                (cert.subject().to_string(), sans)
            }
            Err(_) => (String::new(), Vec::new()),
        };
        PeerCert { subject, sans, sha256 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_identity_is_read_from_the_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["billing.clients.test".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "billing");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let peer = PeerCert::from_der(cert.der());
        assert!(peer.subject.contains("CN=billing") && peer.subject.contains("O=Example"), "{}", peer.subject);
        assert_eq!(peer.sans, vec!["DNS:billing.clients.test".to_string()]);
        assert_eq!(peer.sha256.len(), 64);
    }

    #[test]
    fn only_aead_suites_with_forward_secrecy() {
        for s in &provider().cipher_suites {
            let name = format!("{:?}", s.suite());
            assert!(name.contains("GCM") || name.contains("CHACHA20"), "{name}");
            assert!(name.starts_with("TLS13_") || name.contains("ECDHE"), "{name}");
        }
    }
}
