//! API keys: a secret sent in a header (default `X-API-Key`) or, only when configured, a query parameter.
//! The keys file holds SHA-256 hashes, never secrets, so a leaked file or backup grants nothing. A request's key
//! is hashed once, looked up by hash, and confirmed with a constant-time comparison.
//!
//! The file is managed with `rampart keys add|list|revoke` (the functions at the end of this module) and is
//! reloaded with the configuration.

use super::{AuthFailure, AuthMethod, IdentifyCode, Identity};
use http::header::HeaderName;
use http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// Longest key accepted from a request; anything longer is not one of ours and is not hashed.
const MAX_KEY_BYTES: usize = 256;
/// Prefix of generated keys, so they are recognisable in secret scanners and leaked-credential reports.
pub const KEY_PREFIX: &str = "rk_";

/// The keys file as stored on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

/// One key's record: who it belongs to and what it grants. `sha256` is the hex SHA-256 of the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Public identifier, for `list`, `revoke` and logs.
    pub id: String,
    pub sha256: String,
    pub consumer: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// RFC 3339 time the key was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// RFC 3339 time after which the key is refused (`auth.key.expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Revoked keys stay in the file, so their use is reported as `auth.key.revoked` rather than unknown.
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: key `{id}`: {message}")]
    Entry { path: String, id: String, message: String },
    #[error("no key with id `{0}`")]
    UnknownId(String),
    #[error("cannot draw random bytes")]
    Random,
}

/// A loaded key: the hash to confirm against, the prepared identity, and its validity.
struct KeyRecord {
    id: Arc<str>,
    hash: [u8; 32],
    identity: Arc<Identity>,
    expires: Option<SystemTime>,
    disabled: bool,
}

/// The compiled API-key verifier.
pub struct ApiKeys {
    header: HeaderName,
    query: Option<String>,
    by_hash: HashMap<[u8; 32], KeyRecord>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").field("header", &self.header).field("keys", &self.by_hash.len()).finish()
    }
}

fn parse_hash(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).ok()?;
    bytes.try_into().ok()
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

/// Reads and parses a keys file (a missing file is an error: a route needing keys with no keys is a mistake).
pub fn read_file(path: &Path) -> Result<KeysFile, KeysError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read { path: p.clone(), source })?;
    if text.trim().is_empty() {
        return Ok(KeysFile::default());
    }
    serde_saphyr::from_str(&text).map_err(|e| KeysError::Parse { path: p, message: e.to_string() })
}

impl ApiKeys {
    /// Builds the verifier from a keys file; every entry is checked (hash shape, times, duplicates).
    pub fn load(path: &Path, header: HeaderName, query: Option<String>) -> Result<ApiKeys, KeysError> {
        let file = read_file(path)?;
        Self::from_entries(&path.display().to_string(), &file.keys, header, query)
    }

    pub fn from_entries(
        path: &str,
        entries: &[KeyEntry],
        header: HeaderName,
        query: Option<String>,
    ) -> Result<ApiKeys, KeysError> {
        let mut by_hash = HashMap::with_capacity(entries.len());
        for e in entries {
            let bad = |message: &str| KeysError::Entry { path: path.into(), id: e.id.clone(), message: message.into() };
            let hash = parse_hash(&e.sha256).ok_or_else(|| bad("sha256 is not 64 hex digits"))?;
            let expires = match &e.expires {
                Some(t) => Some(parse_time(t).ok_or_else(|| bad("expires is not an RFC 3339 time"))?),
                None => None,
            };
            if e.consumer.trim().is_empty() || e.consumer.chars().any(char::is_control) {
                return Err(bad("consumer must be a non-empty name without control characters"));
            }
            let identity = Arc::new(Identity {
                consumer: Arc::from(e.consumer.as_str()),
                method: AuthMethod::ApiKey,
                scopes: e.scopes.iter().map(|s| Arc::from(s.as_str())).collect(),
                roles: e.roles.iter().map(|s| Arc::from(s.as_str())).collect(),
                claims: serde_json::json!({ "sub": e.consumer, "key_id": e.id }),
            });
            let record = KeyRecord { id: Arc::from(e.id.as_str()), hash, identity, expires, disabled: e.disabled };
            if by_hash.insert(hash, record).is_some() {
                return Err(bad("the same secret hash appears twice"));
            }
        }
        Ok(ApiKeys { header, query, by_hash })
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn query_key<'a>(&self, parts: &'a Parts) -> Option<&'a str> {
        let name = self.query.as_deref()?;
        parts.uri.query()?.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
    }

    pub fn presented(&self, parts: &Parts) -> bool {
        parts.headers.contains_key(&self.header) || self.query_key(parts).is_some()
    }

    /// Verifies the request's key: hash, look up, confirm in constant time, then revocation and expiry.
    pub fn verify(&self, parts: &Parts) -> Result<Arc<Identity>, AuthFailure> {
        let mut values = parts.headers.get_all(&self.header).iter();
        let key: &[u8] = match (values.next(), values.next()) {
            (Some(v), None) => v.as_bytes(),
            (Some(_), Some(_)) => return Err(AuthFailure::new(IdentifyCode::KeyInvalid, "several API key headers")),
            (None, _) => match self.query_key(parts) {
                Some(q) => q.as_bytes(),
                None => return Err(AuthFailure::new(IdentifyCode::Missing, "no API key")),
            },
        };
        self.check(key, SystemTime::now())
    }

    /// The lookup itself, separate from request parsing so it can be measured.
    pub fn check(&self, key: &[u8], now: SystemTime) -> Result<Arc<Identity>, AuthFailure> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(AuthFailure::new(IdentifyCode::KeyInvalid, format!("key of {} bytes", key.len())));
        }
        let hash: [u8; 32] = Sha256::digest(key).into();
        let Some(record) = self.by_hash.get(&hash) else {
            return Err(AuthFailure::new(
                IdentifyCode::KeyInvalid,
                format!("unknown key (sha256 prefix {})", hex::encode(&hash[..4])),
            ));
        };
        if !bool::from(record.hash.ct_eq(&hash)) {
            return Err(AuthFailure::new(IdentifyCode::KeyInvalid, "unknown key"));
        }
        if record.disabled {
            return Err(AuthFailure::new(IdentifyCode::KeyRevoked, format!("key {} is revoked", record.id)));
        }
        if record.expires.is_some_and(|t| now >= t) {
            return Err(AuthFailure::new(IdentifyCode::KeyExpired, format!("key {} has expired", record.id)));
        }
        Ok(record.identity.clone())
    }
}

/// A fresh key: `rk_` and 32 random bytes (base64url), its id and its hash. The secret is returned once and
/// stored nowhere.
pub struct NewKey {
    pub secret: String,
    pub entry: KeyEntry,
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Makes a new key for `consumer` with a CSPRNG (aws-lc).
pub fn generate(
    consumer: &str,
    scopes: Vec<String>,
    roles: Vec<String>,
    expires: Option<SystemTime>,
) -> Result<NewKey, KeysError> {
    let mut secret_bytes = [0u8; 32];
    let mut id_bytes = [0u8; 6];
    aws_lc_rs::rand::fill(&mut secret_bytes).map_err(|_| KeysError::Random)?;
    aws_lc_rs::rand::fill(&mut id_bytes).map_err(|_| KeysError::Random)?;
    let secret = format!("{KEY_PREFIX}{}", b64url(&secret_bytes));
    let entry = KeyEntry {
        id: format!("k_{}", hex::encode(id_bytes)),
        sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        consumer: consumer.to_string(),
        scopes,
        roles,
        created: Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string()),
        expires: expires.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        disabled: false,
    };
    Ok(NewKey { secret, entry })
}

const FILE_HEADER: &str = "# Rampart API keys: SHA-256 hashes of the secrets, never the secrets themselves.\n\
# Manage with `rampart keys add|list|revoke --file <this file>`.\n";

/// Writes the keys file atomically (temp file + rename), readable by its owner only.
pub fn write_file(path: &Path, file: &KeysFile) -> Result<(), KeysError> {
    let p = path.display().to_string();
    let text =
        serde_saphyr::to_string(file).map_err(|e| KeysError::Parse { path: p.clone(), message: e.to_string() })?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, format!("{FILE_HEADER}{text}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| KeysError::Write { path: p, source })
}

/// `rampart keys add`: appends a new key to the file (created if missing) and returns it.
pub fn add(
    path: &Path,
    consumer: &str,
    scopes: Vec<String>,
    roles: Vec<String>,
    expires: Option<SystemTime>,
) -> Result<NewKey, KeysError> {
    let mut file = if path.exists() { read_file(path)? } else { KeysFile::default() };
    let key = generate(consumer, scopes, roles, expires)?;
    file.keys.push(key.entry.clone());
    // Refuse to write a file the gateway would then refuse to load.
    ApiKeys::from_entries(&path.display().to_string(), &file.keys, HeaderName::from_static("x-api-key"), None)?;
    write_file(path, &file)?;
    Ok(key)
}

/// `rampart keys revoke`: marks a key disabled (kept, so its later use is logged as revoked).
pub fn revoke(path: &Path, id: &str) -> Result<(), KeysError> {
    let mut file = read_file(path)?;
    let entry = file.keys.iter_mut().find(|k| k.id == id).ok_or_else(|| KeysError::UnknownId(id.to_string()))?;
    entry.disabled = true;
    write_file(path, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entries: Vec<KeyEntry>) -> ApiKeys {
        ApiKeys::from_entries("t", &entries, HeaderName::from_static("x-api-key"), None).unwrap()
    }

    #[test]
    fn generated_keys_verify_and_nothing_else_does() {
        let k = generate("billing", vec!["read".into()], vec![], None).unwrap();
        assert!(k.secret.starts_with("rk_") && k.secret.len() == 3 + 43, "{}", k.secret);
        assert!(!k.entry.sha256.contains(&k.secret));
        let ks = keys(vec![k.entry.clone()]);
        let id = ks.check(k.secret.as_bytes(), SystemTime::now()).unwrap();
        assert_eq!(&*id.consumer, "billing");
        assert!(id.has_scope("read"));
        assert_eq!(id.claim("sub").as_deref(), Some("billing"));
        let wrong = format!("{}x", k.secret);
        assert_eq!(ks.check(wrong.as_bytes(), SystemTime::now()).unwrap_err().code, IdentifyCode::KeyInvalid);
        assert_eq!(ks.check(&[b'a'; 300], SystemTime::now()).unwrap_err().code, IdentifyCode::KeyInvalid);
    }

    #[test]
    fn revoked_and_expired_keys_have_their_own_codes() {
        let mut revoked = generate("a", vec![], vec![], None).unwrap();
        revoked.entry.disabled = true;
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        let expired = generate("b", vec![], vec![], Some(past)).unwrap();
        let ks = keys(vec![revoked.entry.clone(), expired.entry.clone()]);
        let now = SystemTime::now();
        assert_eq!(ks.check(revoked.secret.as_bytes(), now).unwrap_err().code, IdentifyCode::KeyRevoked);
        assert_eq!(ks.check(expired.secret.as_bytes(), now).unwrap_err().code, IdentifyCode::KeyExpired);
    }

    #[test]
    fn bad_entries_are_refused_with_the_key_id() {
        let mut e = generate("a", vec![], vec![], None).unwrap().entry;
        e.sha256 = "xyz".into();
        let err = ApiKeys::from_entries("keys.yaml", &[e], HeaderName::from_static("x-api-key"), None).unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
    }

    #[test]
    fn base64url_matches_the_rfc_alphabet() {
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
        assert_eq!(b64url(b"foobar"), "Zm9vYmFy");
    }
}
