//! HTTP Message Signatures (RFC 9421) with Content-Digest (RFC 9530): integrity of a request against parameter
//! tampering, and proof of who sent it, without a bearer secret on the wire.
//!
//! The client lists what it signed in `Signature-Input` (method, target URI, selected header fields, the body's
//! `Content-Digest`) and sends the signature in `Signature`. We rebuild the same signature base from the request
//! as it reached us and verify it with the key named by `keyid` — a key from our configuration, with the
//! algorithm our configuration says (never the one the message claims). On top of the cryptography:
//! - the signature must cover what the policy requires (by default the method and the target URI, and the
//!   `Content-Digest` whenever there is a body), otherwise a valid signature over `@authority` alone would let
//!   anything else be changed;
//! - `created` must be recent and `expires` not passed, so a captured request is only good for a short window;
//! - within that window the nonce is remembered ([`super::replay`]) so the request cannot be sent twice;
//! - the `Content-Digest` must match the body bytes, so a signature over the digest protects the body.
//!
//! Every failure is a [`SignatureError`] with a stable code (`auth.signature.*`) for the log; the client only
//! learns that authentication failed.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::{digest, hmac, signature as pk};
use base64::Engine;
use http::{HeaderMap, Method, StatusCode, Uri};
use sfv::{BareItem, Dictionary, FieldType, InnerList, Item, List, ListEntry, Parser, Version};

use super::replay::{Freshness, NonceStore};
use super::{AuthMethod, Identity};

/// Most signatures one request may carry: more is an attempt to make us parse and try keys.
const MAX_SIGNATURES: usize = 8;
/// Most components one signature may cover (RFC 9421 sets no bound; real signers cover a dozen at most).
const MAX_COMPONENTS: usize = 32;
/// Longest accepted nonce: it is stored for the whole window, so its size is memory an attacker controls.
const MAX_NONCE_LEN: usize = 256;
/// Shortest HMAC secret: below 256 bits an offline guess of the secret from one signed request gets feasible.
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// The algorithms we verify. The key decides the algorithm; a message's `alg` parameter may only confirm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    HmacSha256,
    Ed25519,
}

impl SignatureAlgorithm {
    /// The name from the HTTP Signature Algorithms registry, as it appears in `alg` and in config.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlgorithm::HmacSha256 => "hmac-sha256",
            SignatureAlgorithm::Ed25519 => "ed25519",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "hmac-sha256" => Some(SignatureAlgorithm::HmacSha256),
            "ed25519" => Some(SignatureAlgorithm::Ed25519),
            _ => None,
        }
    }
}

/// Why a configured key was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("HMAC secret is {0} bytes; at least {MIN_HMAC_SECRET_LEN} are required")]
    SecretTooShort(usize),
    #[error("key material is not valid base64 (standard or URL-safe) or PEM")]
    Encoding,
    #[error("not an Ed25519 public key (expected 32 raw bytes or an SPKI `PUBLIC KEY`)")]
    PublicKey,
}

enum KeyMaterial {
    /// Boxed: an aws-lc HMAC key holds its precomputed state inline (over 1 KiB).
    Hmac(Box<hmac::Key>),
    Ed25519(pk::ParsedPublicKey),
}

/// One verification key from the configured key set, with the consumer its signatures authenticate.
pub struct SignatureKey {
    material: KeyMaterial,
    consumer: Option<Arc<str>>,
    scopes: Vec<Arc<str>>,
    roles: Vec<Arc<str>>,
}

impl fmt::Debug for SignatureKey {
    // Never prints key material: an HMAC key is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureKey")
            .field("alg", &self.algorithm().as_str())
            .field("consumer", &self.consumer)
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .finish()
    }
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

impl SignatureKey {
    /// An `hmac-sha256` key from the raw shared secret (at least [`MIN_HMAC_SECRET_LEN`] bytes).
    pub fn hmac_sha256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        Ok(Self::with(KeyMaterial::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret)))))
    }

    /// An `ed25519` key from the 32-byte public key, raw or wrapped in DER SubjectPublicKeyInfo.
    pub fn ed25519(public_key: &[u8]) -> Result<Self, KeyError> {
        let raw = match public_key.len() {
            32 => public_key,
            44 if public_key[..12] == ED25519_SPKI_PREFIX => &public_key[12..],
            _ => return Err(KeyError::PublicKey),
        };
        let parsed = pk::ParsedPublicKey::new(&pk::ED25519, raw).map_err(|_| KeyError::PublicKey)?;
        Ok(Self::with(KeyMaterial::Ed25519(parsed)))
    }

    /// A key from its text form in config (usually a `${ENV}` reference): for `hmac-sha256` the base64 of the
    /// secret; for `ed25519` a PEM `PUBLIC KEY`, or the base64 / base64url of the raw or DER public key.
    pub fn from_text(alg: SignatureAlgorithm, text: &str) -> Result<Self, KeyError> {
        let bytes = decode_key_text(text)?;
        match alg {
            SignatureAlgorithm::HmacSha256 => Self::hmac_sha256(&bytes),
            SignatureAlgorithm::Ed25519 => Self::ed25519(&bytes),
        }
    }

    fn with(material: KeyMaterial) -> Self {
        SignatureKey { material, consumer: None, scopes: Vec::new(), roles: Vec::new() }
    }

    /// The consumer this key's signatures authenticate (defaults to the key id).
    pub fn with_consumer(mut self, consumer: impl Into<Arc<str>>) -> Self {
        self.consumer = Some(consumer.into());
        self
    }

    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<Arc<str>>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_roles(mut self, roles: impl IntoIterator<Item = impl Into<Arc<str>>>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    pub fn algorithm(&self) -> SignatureAlgorithm {
        match self.material {
            KeyMaterial::Hmac(_) => SignatureAlgorithm::HmacSha256,
            KeyMaterial::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    /// Constant-time for HMAC (`hmac::verify` compares tags in constant time).
    fn verifies(&self, base: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Hmac(key) => hmac::verify(key, base, signature).is_ok(),
            KeyMaterial::Ed25519(key) => key.verify_sig(base, signature).is_ok(),
        }
    }
}

fn decode_key_text(text: &str) -> Result<Vec<u8>, KeyError> {
    let text = text.trim();
    let body: String = if text.starts_with("-----BEGIN") {
        text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect()
    } else {
        text.to_string()
    };
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(body.as_bytes()).ok())
        .ok_or(KeyError::Encoding)
}

/// A covered component the policy can require. Header fields are named in lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Component {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
    Field(Box<str>),
}

impl Component {
    /// Parses a component name from config (`@method`, `content-digest`, …); `None` for derived components we
    /// do not support or names that are not lowercase field names.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "@method" => Component::Method,
            "@target-uri" => Component::TargetUri,
            "@authority" => Component::Authority,
            "@scheme" => Component::Scheme,
            "@request-target" => Component::RequestTarget,
            "@path" => Component::Path,
            "@query" => Component::Query,
            field if is_field_name(field) => Component::Field(field.into()),
            _ => return None,
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Component::Method => "@method",
            Component::TargetUri => "@target-uri",
            Component::Authority => "@authority",
            Component::Scheme => "@scheme",
            Component::RequestTarget => "@request-target",
            Component::Path => "@path",
            Component::Query => "@query",
            Component::Field(f) => f,
        }
    }
}

/// A lowercase HTTP field name (token characters): what RFC 9421 requires of a field component identifier.
fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a signature must carry a nonce. Without one, replay protection falls back to the signature value
/// itself (an identical request inside the window is a replay), which is weaker against signers that add
/// nothing unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoncePolicy {
    #[default]
    Required,
    Optional,
}

/// The signature policy as config states it; [`SignatureVerifier::new`] checks and compiles it.
#[derive(Debug)]
pub struct SignatureSettings {
    /// Keys by `keyid`.
    pub keys: HashMap<String, SignatureKey>,
    /// How old `created` may be.
    pub max_age: Duration,
    /// Tolerated clock difference with the signer (for `created` in the future and `expires`).
    pub clock_skew: Duration,
    /// Components every signature must cover. `@target-uri` is also satisfied by `@authority` with either
    /// `@request-target` or both `@path` and `@query` (the same information, as B.2.6-style signers send it).
    pub required: Vec<Component>,
    /// Require `content-digest` to be covered (and verified) whenever the request has a body.
    pub digest_with_body: bool,
    pub nonce: NoncePolicy,
    /// If set, only signatures with this `tag` are considered (an application profile, RFC 9421 §7.2.5).
    pub tag: Option<String>,
}

impl Default for SignatureSettings {
    fn default() -> Self {
        SignatureSettings {
            keys: HashMap::new(),
            max_age: Duration::from_secs(300),
            clock_skew: Duration::from_secs(30),
            required: vec![Component::Method, Component::TargetUri],
            digest_with_body: true,
            nonce: NoncePolicy::Required,
            tag: None,
        }
    }
}

/// Why a signature policy cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("no signature keys configured")]
    NoKeys,
    #[error("the signature window (max_age) must be at least one second")]
    ZeroWindow,
    #[error("key id {0:?} is empty or not printable ASCII")]
    BadKeyId(String),
}

/// The request as the signature sees it: plain inputs, so the verifier runs the same in the proxy, the CLI and
/// tests.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a Method,
    /// Origin-form (`/path?q`) or absolute-form; the authority comes from here or from `Host`.
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The body bytes exactly as received (empty when none).
    pub body: &'a [u8],
    /// `https` when the request came over TLS, else `http`: the scheme the client addressed.
    pub scheme: &'a str,
}

/// A signature that verified: who signed, and the parameters later stages and the log may want.
#[derive(Debug, Clone)]
pub struct VerifiedSignature {
    /// The configured key id (ours, not an echo of client text).
    pub keyid: Arc<str>,
    pub consumer: Arc<str>,
    pub alg: SignatureAlgorithm,
    pub label: String,
    /// Unix seconds.
    pub created: u64,
    pub expires: Option<u64>,
    pub nonce: Option<String>,
    pub tag: Option<String>,
    /// Covered component names in signed order.
    pub covered: Vec<String>,
    /// Whether a `Content-Digest` was checked against the body.
    pub digest_verified: bool,
    /// How long the signature remains acceptable from now: the time its nonce must be remembered.
    pub replay_ttl: Duration,
    /// The key under which freshness is tracked: keyid + nonce, or keyid + signature value without a nonce.
    pub replay_key: String,
    scopes: Vec<Arc<str>>,
    roles: Vec<Arc<str>>,
}

impl VerifiedSignature {
    /// The identity later stages key on.
    pub fn identity(&self) -> Identity {
        Identity {
            consumer: self.consumer.clone(),
            method: AuthMethod::Signature,
            scopes: self.scopes.clone(),
            roles: self.roles.clone(),
            claims: serde_json::Value::Null,
        }
    }
}

/// Why a signed request was refused. [`SignatureError::code`] is the stable code for the log; the detail is for
/// operators (it never contains key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Signature-Input / Signature header")]
    Missing,
    #[error("malformed signature: {0}")]
    Malformed(String),
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    #[error("signature does not cover {0}")]
    Coverage(String),
    #[error("signature invalid: {0}")]
    Invalid(String),
    #[error("signature outside its validity window: {0}")]
    Expired(String),
    #[error("content-digest: {0}")]
    Digest(String),
    #[error("nonce already used")]
    Replay,
    #[error("{0}")]
    StoreUnavailable(String),
}

impl SignatureError {
    /// The stable code: never renamed once shipped.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "auth.signature.missing",
            SignatureError::Malformed(_) => "auth.signature.malformed",
            SignatureError::UnknownKey(_) => "auth.signature.unknown_key",
            SignatureError::Coverage(_) => "auth.signature.coverage",
            SignatureError::Invalid(_) => "auth.signature.invalid",
            SignatureError::Expired(_) => "auth.signature.expired",
            SignatureError::Digest(_) => "auth.signature.digest",
            SignatureError::Replay => "auth.signature.replay",
            SignatureError::StoreUnavailable(_) => "auth.signature.store_unavailable",
        }
    }

    /// 401 for every authentication failure; 503 when freshness cannot be established (fail closed, but not
    /// the client's fault).
    pub fn status(&self) -> StatusCode {
        match self {
            SignatureError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Every code, for the README table.
    pub const CODES: &'static [&'static str] = &[
        "auth.signature.missing",
        "auth.signature.malformed",
        "auth.signature.unknown_key",
        "auth.signature.coverage",
        "auth.signature.invalid",
        "auth.signature.expired",
        "auth.signature.digest",
        "auth.signature.replay",
        "auth.signature.store_unavailable",
    ];
}

fn malformed(what: impl Into<String>) -> SignatureError {
    SignatureError::Malformed(what.into())
}

/// Client text in a log line: bounded and printable.
fn loggable(text: &str) -> String {
    text.chars().take(64).map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

/// The compiled signature policy: verifies requests against the key set.
#[derive(Debug)]
pub struct SignatureVerifier {
    keys: HashMap<Box<str>, (Arc<str>, SignatureKey)>,
    max_age: u64,
    clock_skew: u64,
    required: Vec<Component>,
    digest_with_body: bool,
    nonce: NoncePolicy,
    tag: Option<String>,
}

impl SignatureVerifier {
    pub fn new(settings: SignatureSettings) -> Result<Self, SettingsError> {
        if settings.keys.is_empty() {
            return Err(SettingsError::NoKeys);
        }
        if settings.max_age.as_secs() == 0 {
            return Err(SettingsError::ZeroWindow);
        }
        let mut keys = HashMap::with_capacity(settings.keys.len());
        for (id, key) in settings.keys {
            if id.is_empty() || !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(SettingsError::BadKeyId(id));
            }
            let id: Arc<str> = Arc::from(id);
            keys.insert(Box::from(&*id), (id, key));
        }
        Ok(SignatureVerifier {
            keys,
            max_age: settings.max_age.as_secs(),
            clock_skew: settings.clock_skew.as_secs(),
            required: settings.required,
            digest_with_body: settings.digest_with_body,
            nonce: settings.nonce,
            tag: settings.tag,
        })
    }

    /// Verifies the request's signature at `now` (Unix seconds): parsing, key, coverage, time window,
    /// cryptography, then the body digest. Freshness (replay) is [`Self::verify_fresh`]'s job.
    pub fn verify(&self, req: &SignedRequest<'_>, now: u64) -> Result<VerifiedSignature, SignatureError> {
        let input_header = joined_header(req.headers, "signature-input");
        let signature_header = joined_header(req.headers, "signature");
        let (input_header, signature_header) = match (input_header, signature_header) {
            (None, None) => return Err(SignatureError::Missing),
            (Some(i), Some(s)) => (i, s),
            (Some(_), None) => return Err(malformed("Signature-Input without Signature")),
            (None, Some(_)) => return Err(malformed("Signature without Signature-Input")),
        };
        let inputs = parse_dictionary(&input_header, "Signature-Input")?;
        let signatures = parse_dictionary(&signature_header, "Signature")?;
        if inputs.len() > MAX_SIGNATURES || signatures.len() > MAX_SIGNATURES {
            return Err(malformed(format!("more than {MAX_SIGNATURES} signatures")));
        }

        let (label, params, key_id, key) = self.select(&inputs)?;
        let signed = SignatureInput::parse(params)?;

        let Some(ListEntry::Item(Item { bare_item: BareItem::ByteSequence(signature), .. })) = signatures.get(label)
        else {
            return Err(malformed(format!("no byte-sequence Signature for label {:?}", loggable(label))));
        };
        if let Some(alg) = &signed.alg {
            if SignatureAlgorithm::parse(alg) != Some(key.algorithm()) {
                return Err(SignatureError::Invalid(format!(
                    "alg {:?} does not match key {:?} ({})",
                    loggable(alg),
                    &*key_id,
                    key.algorithm().as_str()
                )));
            }
        }

        self.check_coverage(&signed, !req.body.is_empty())?;
        let replay_ttl = self.check_time(&signed, now)?;
        if self.nonce == NoncePolicy::Required && signed.nonce.is_none() {
            return Err(malformed("nonce parameter required"));
        }

        let base = signature_base(req, params, &signed.components)?;
        if !key.verifies(&base, signature) {
            return Err(SignatureError::Invalid(format!("does not verify with key {:?}", &*key_id)));
        }

        let digest_verified = match joined_header(req.headers, "content-digest") {
            Some(value) => {
                verify_content_digest(&value, req.body)?;
                true
            }
            None => false,
        };

        let replay_key = match &signed.nonce {
            Some(nonce) => format!("{key_id}\0n\0{nonce}"),
            None => format!("{key_id}\0s\0{}", hex::encode(signature)),
        };
        Ok(VerifiedSignature {
            consumer: key.consumer.clone().unwrap_or_else(|| key_id.clone()),
            keyid: key_id,
            alg: key.algorithm(),
            label: label.to_string(),
            created: signed.created,
            expires: signed.expires,
            nonce: signed.nonce,
            tag: signed.tag,
            covered: signed.components.iter().map(|c| c.name.clone()).collect(),
            digest_verified,
            replay_ttl,
            replay_key,
            scopes: key.scopes.clone(),
            roles: key.roles.clone(),
        })
    }

    /// The configured key id the request's signature claims (the one [`Self::verify`] would check), unverified:
    /// the brute-force guard's counter key. `None` when the headers do not name a configured key.
    pub fn claimed_keyid(&self, headers: &HeaderMap) -> Option<String> {
        let input_header = joined_header(headers, "signature-input")?;
        let inputs = parse_dictionary(&input_header, "Signature-Input").ok()?;
        if inputs.len() > MAX_SIGNATURES {
            return None;
        }
        self.select(&inputs).ok().map(|(_, _, id, _)| id.to_string())
    }

    /// [`Self::verify`], then the nonce checked and remembered in `store`. Only authentic signatures reach the
    /// store, so forged requests cannot fill it.
    pub async fn verify_fresh(
        &self,
        req: &SignedRequest<'_>,
        now: u64,
        store: &dyn NonceStore,
    ) -> Result<VerifiedSignature, SignatureError> {
        let verified = self.verify(req, now)?;
        match store.check_and_remember(&verified.replay_key, verified.replay_ttl).await {
            Ok(Freshness::Fresh) => Ok(verified),
            Ok(Freshness::Replayed) => Err(SignatureError::Replay),
            Err(e) => Err(SignatureError::StoreUnavailable(e.to_string())),
        }
    }

    /// The first signature (in header order) whose `keyid` we know and whose `tag` matches the profile.
    fn select<'d>(
        &self,
        inputs: &'d Dictionary,
    ) -> Result<(&'d str, &'d InnerList, Arc<str>, &SignatureKey), SignatureError> {
        let mut first_unknown: Option<String> = None;
        let mut without_keyid = false;
        for (label, entry) in inputs {
            let ListEntry::InnerList(list) = entry else {
                return Err(malformed(format!("Signature-Input {:?} is not an inner list", loggable(label.as_str()))));
            };
            if let Some(tag) = &self.tag {
                if string_param(list, "tag")?.as_deref() != Some(tag.as_str()) {
                    continue;
                }
            }
            match string_param(list, "keyid")? {
                None => without_keyid = true,
                Some(keyid) => match self.keys.get(keyid.as_str()) {
                    Some((id, key)) => return Ok((label.as_str(), list, id.clone(), key)),
                    None => {
                        first_unknown.get_or_insert(keyid);
                    }
                },
            }
        }
        match first_unknown {
            Some(keyid) => Err(SignatureError::UnknownKey(loggable(&keyid))),
            None if without_keyid => Err(malformed("keyid parameter required")),
            None => Err(malformed("no signature matches the configured tag")),
        }
    }

    fn check_coverage(&self, signed: &SignatureInput, has_body: bool) -> Result<(), SignatureError> {
        let covers = |name: &str| signed.components.iter().any(|c| c.name == name);
        for required in &self.required {
            let ok = match required {
                Component::TargetUri => {
                    covers("@target-uri")
                        || (covers("@authority")
                            && (covers("@request-target") || (covers("@path") && covers("@query"))))
                }
                other => covers(other.name()),
            };
            if !ok {
                return Err(SignatureError::Coverage(required.name().to_string()));
            }
        }
        if self.digest_with_body && has_body && !covers("content-digest") {
            return Err(SignatureError::Coverage("content-digest".into()));
        }
        Ok(())
    }

    /// Checks `created`/`expires` against `now` and returns how long the signature stays acceptable.
    fn check_time(&self, signed: &SignatureInput, now: u64) -> Result<Duration, SignatureError> {
        let created = signed.created;
        if created > now.saturating_add(self.clock_skew) {
            return Err(SignatureError::Expired(format!("created {created} is in the future (now {now})")));
        }
        let mut deadline = created.saturating_add(self.max_age);
        if let Some(expires) = signed.expires {
            if expires <= created {
                return Err(malformed("expires is not after created"));
            }
            deadline = deadline.min(expires);
        }
        let deadline = deadline.saturating_add(self.clock_skew);
        if now > deadline {
            return Err(SignatureError::Expired(match signed.expires {
                Some(e) if e.saturating_add(self.clock_skew) < now => format!("expired at {e} (now {now})"),
                _ => format!("created {created} is older than {}s (now {now})", self.max_age),
            }));
        }
        Ok(Duration::from_secs(deadline - now + 1))
    }
}

/// All lines of a header joined with `, ` (RFC 9110 §5.3); `None` when absent.
fn joined_header(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let mut out = trim_ows(first.as_bytes()).to_vec();
    for v in values {
        out.extend_from_slice(b", ");
        out.extend_from_slice(trim_ows(v.as_bytes()));
    }
    Some(out)
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(start, |e| e + 1);
    &v[start..end]
}

fn parse_dictionary(value: &[u8], what: &str) -> Result<Dictionary, SignatureError> {
    Parser::new(value)
        .with_version(Version::Rfc8941)
        .parse::<Dictionary>()
        .map_err(|e| malformed(format!("{what} is not a structured dictionary: {e}")))
}

fn string_param(list: &InnerList, name: &str) -> Result<Option<String>, SignatureError> {
    match list.params.get(name) {
        None => Ok(None),
        Some(BareItem::String(s)) => Ok(Some(s.as_str().to_string())),
        Some(_) => Err(malformed(format!("{name} must be a string"))),
    }
}

fn integer_param(list: &InnerList, name: &str) -> Result<Option<u64>, SignatureError> {
    match list.params.get(name) {
        None => Ok(None),
        Some(BareItem::Integer(i)) => {
            u64::try_from(i64::from(*i)).map(Some).map_err(|_| malformed(format!("{name} is negative")))
        }
        Some(_) => Err(malformed(format!("{name} must be an integer"))),
    }
}

/// One covered component as the signer listed it.
#[derive(Debug)]
struct CoveredComponent {
    name: String,
    /// The identifier serialized as it goes into the signature base (`"name";param`).
    identifier: String,
    sf: bool,
    bs: bool,
    key: Option<String>,
}

/// The parsed parameters of the chosen signature.
#[derive(Debug)]
struct SignatureInput {
    components: Vec<CoveredComponent>,
    created: u64,
    expires: Option<u64>,
    nonce: Option<String>,
    alg: Option<String>,
    tag: Option<String>,
}

impl SignatureInput {
    fn parse(list: &InnerList) -> Result<Self, SignatureError> {
        if list.items.len() > MAX_COMPONENTS {
            return Err(malformed(format!("more than {MAX_COMPONENTS} covered components")));
        }
        let mut components: Vec<CoveredComponent> = Vec::with_capacity(list.items.len());
        for item in &list.items {
            let BareItem::String(name) = &item.bare_item else {
                return Err(malformed("component identifiers must be strings"));
            };
            let name = name.as_str();
            let derived = name.starts_with('@');
            if derived {
                if !matches!(
                    name,
                    "@method" | "@target-uri" | "@authority" | "@scheme" | "@request-target" | "@path" | "@query"
                ) {
                    return Err(malformed(format!("unsupported derived component {:?}", loggable(name))));
                }
            } else if !is_field_name(name) {
                return Err(malformed(format!("component {:?} is not a lowercase field name", loggable(name))));
            }
            let (mut sf, mut bs, mut key) = (false, false, None);
            for (param, value) in &item.params {
                match (param.as_str(), value) {
                    ("sf", BareItem::Boolean(true)) if !derived => sf = true,
                    ("bs", BareItem::Boolean(true)) if !derived => bs = true,
                    ("key", BareItem::String(k)) if !derived => key = Some(k.as_str().to_string()),
                    (p, _) => {
                        return Err(malformed(format!(
                            "unsupported parameter {:?} on component {:?}",
                            loggable(p),
                            loggable(name)
                        )))
                    }
                }
            }
            if bs && (sf || key.is_some()) {
                return Err(malformed("bs cannot be combined with sf or key"));
            }
            let identifier = item.serialize();
            if components.iter().any(|c| c.identifier == identifier) {
                return Err(malformed(format!("component {:?} listed twice", loggable(&identifier))));
            }
            components.push(CoveredComponent { name: name.to_string(), identifier, sf, bs, key });
        }
        let created = integer_param(list, "created")?.ok_or_else(|| malformed("created parameter required"))?;
        let nonce = string_param(list, "nonce")?;
        if let Some(n) = &nonce {
            if n.is_empty() || n.len() > MAX_NONCE_LEN {
                return Err(malformed(format!("nonce must be 1..={MAX_NONCE_LEN} characters")));
            }
        }
        Ok(SignatureInput {
            components,
            created,
            expires: integer_param(list, "expires")?,
            nonce,
            alg: string_param(list, "alg")?,
            tag: string_param(list, "tag")?,
        })
    }
}

/// The signature base (RFC 9421 §2.5) for `params` — one Signature-Input member — over `req`. Public so signers
/// (tests, the CLI, a client library) build exactly what we verify.
pub fn signature_base_for(req: &SignedRequest<'_>, signature_input_member: &str) -> Result<Vec<u8>, SignatureError> {
    let list: List = Parser::new(signature_input_member)
        .with_version(Version::Rfc8941)
        .parse()
        .map_err(|e| malformed(format!("signature input: {e}")))?;
    let [ListEntry::InnerList(params)] = list.as_slice() else {
        return Err(malformed("expected one inner list"));
    };
    let signed = SignatureInput::parse(params)?;
    signature_base(req, params, &signed.components)
}

fn signature_base(
    req: &SignedRequest<'_>,
    params: &InnerList,
    components: &[CoveredComponent],
) -> Result<Vec<u8>, SignatureError> {
    let mut base = Vec::with_capacity(256);
    for c in components {
        base.extend_from_slice(c.identifier.as_bytes());
        base.extend_from_slice(b": ");
        component_value(req, c, &mut base)?;
        base.push(b'\n');
    }
    base.extend_from_slice(b"\"@signature-params\": ");
    let serialized = serialize_inner_list(params).ok_or_else(|| malformed("signature parameters do not serialize"))?;
    base.extend_from_slice(serialized.as_bytes());
    Ok(base)
}

fn component_value(req: &SignedRequest<'_>, c: &CoveredComponent, out: &mut Vec<u8>) -> Result<(), SignatureError> {
    let path = match req.uri.path() {
        "" => "/",
        p => p,
    };
    match c.name.as_str() {
        "@method" => out.extend_from_slice(req.method.as_str().as_bytes()),
        "@scheme" => out.extend_from_slice(req.scheme.to_ascii_lowercase().as_bytes()),
        "@authority" => out.extend_from_slice(authority(req)?.as_bytes()),
        "@path" => out.extend_from_slice(path.as_bytes()),
        "@query" => {
            out.push(b'?');
            out.extend_from_slice(req.uri.query().unwrap_or("").as_bytes());
        }
        "@request-target" => {
            out.extend_from_slice(path.as_bytes());
            if let Some(q) = req.uri.query() {
                out.push(b'?');
                out.extend_from_slice(q.as_bytes());
            }
        }
        "@target-uri" => {
            out.extend_from_slice(req.scheme.to_ascii_lowercase().as_bytes());
            out.extend_from_slice(b"://");
            out.extend_from_slice(authority(req)?.as_bytes());
            out.extend_from_slice(path.as_bytes());
            if let Some(q) = req.uri.query() {
                out.push(b'?');
                out.extend_from_slice(q.as_bytes());
            }
        }
        field => {
            let lines: Vec<&[u8]> = req.headers.get_all(field).iter().map(|v| trim_ows(v.as_bytes())).collect();
            if lines.is_empty() {
                return Err(SignatureError::Invalid(format!("covered field {field:?} is absent")));
            }
            if c.bs {
                for (i, line) in lines.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.push(b':');
                    out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(line).as_bytes());
                    out.push(b':');
                }
                return Ok(());
            }
            let joined = lines.join(&b", "[..]);
            if let Some(member) = &c.key {
                let dict = parse_dictionary(&joined, field)
                    .map_err(|_| SignatureError::Invalid(format!("covered field {field:?} is not a dictionary")))?;
                let value = match dict.get(member.as_str()) {
                    Some(ListEntry::Item(item)) => item.serialize(),
                    Some(ListEntry::InnerList(list)) => {
                        serialize_inner_list(list).ok_or_else(|| malformed("dictionary member does not serialize"))?
                    }
                    None => {
                        return Err(SignatureError::Invalid(format!(
                            "covered member {:?} of {field:?} is absent",
                            loggable(member)
                        )))
                    }
                };
                out.extend_from_slice(value.as_bytes());
            } else if c.sf {
                out.extend_from_slice(strict_serialization(&joined, field)?.as_bytes());
            } else {
                out.extend_from_slice(&joined);
            }
        }
    }
    Ok(())
}

/// An inner list with its parameters in canonical form (what `@signature-params` and `;key` members sign).
fn serialize_inner_list(list: &InnerList) -> Option<String> {
    let mut ser = sfv::ListSerializer::new();
    let mut inner = ser.inner_list();
    inner.items(&list.items);
    let _ = inner.finish().parameters(&list.params);
    ser.finish()
}

/// Re-serializes a structured field (`;sf`): tried as a dictionary, then as a list (an item serializes the same
/// as a one-member list).
fn strict_serialization(value: &[u8], field: &str) -> Result<String, SignatureError> {
    let parser = || Parser::new(value).with_version(Version::Rfc8941);
    let serialized = match parser().parse::<Dictionary>() {
        Ok(dict) => dict.serialize(),
        Err(_) => parser().parse::<List>().ok().and_then(|l| l.serialize()),
    };
    serialized.ok_or_else(|| SignatureError::Invalid(format!("covered field {field:?} is not a structured field")))
}

/// `@authority`: the URI's authority (HTTP/2, absolute-form) or `Host`, lowercased, default port removed.
fn authority(req: &SignedRequest<'_>) -> Result<String, SignatureError> {
    let raw = match req.uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => {
            let host = req.headers.get(http::header::HOST).ok_or_else(|| malformed("no Host for @authority"))?;
            host.to_str().map_err(|_| malformed("Host is not ASCII"))?.trim().to_string()
        }
    };
    let mut a = raw.to_ascii_lowercase();
    let default_port = match req.scheme {
        "https" => ":443",
        _ => ":80",
    };
    if a.ends_with(default_port) {
        a.truncate(a.len() - default_port.len());
    }
    Ok(a)
}

/// Checks an RFC 9530 `Content-Digest` against the body: every `sha-256`/`sha-512` member must match, at least one
/// must be present; other algorithms (some insecure, like `md5`) are ignored rather than trusted.
pub fn verify_content_digest(header: &[u8], body: &[u8]) -> Result<(), SignatureError> {
    let dict = Parser::new(header)
        .with_version(Version::Rfc8941)
        .parse::<Dictionary>()
        .map_err(|e| SignatureError::Digest(format!("not a structured dictionary: {e}")))?;
    let mut checked = 0;
    for (alg, entry) in &dict {
        let algorithm = match alg.as_str() {
            "sha-256" => &digest::SHA256,
            "sha-512" => &digest::SHA512,
            _ => continue,
        };
        let ListEntry::Item(Item { bare_item: BareItem::ByteSequence(expected), .. }) = entry else {
            return Err(SignatureError::Digest(format!("{} is not a byte sequence", alg.as_str())));
        };
        let actual = digest::digest(algorithm, body);
        if actual.as_ref() != expected.as_slice() {
            return Err(SignatureError::Digest(format!("{} does not match the body", alg.as_str())));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(SignatureError::Digest("no sha-256 or sha-512 member".into()));
    }
    Ok(())
}

/// Whether the request carries a signature at all (either header): then `signature` is the method it chose.
pub fn presented(headers: &HeaderMap) -> bool {
    headers.contains_key("signature-input") || headers.contains_key("signature")
}

/// The identify step for `auth: [signature]`: verify at wall-clock now (`created` is wall time), then the nonce
/// in the shared state backend.
pub(super) async fn identify(
    verifier: &SignatureVerifier,
    req: &super::AuthRequest<'_>,
) -> Result<Arc<Identity>, super::AuthFailure> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let signed = SignedRequest {
        method: &req.parts.method,
        uri: &req.parts.uri,
        headers: &req.parts.headers,
        body: req.body,
        scheme: if req.tls { "https" } else { "http" },
    };
    let nonces = StateNonces(req.state);
    match verifier.verify_fresh(&signed, now, &nonces).await {
        Ok(v) => Ok(Arc::new(v.identity())),
        Err(e) => Err(super::AuthFailure::new(super::IdentifyCode::of_signature(&e), e.to_string())),
    }
}

/// The state backend as a nonce store: memory by default, Redis (shared by every replica) when `state:` says so.
/// Fails closed: a nonce that cannot be checked refuses the request rather than risk a replay.
struct StateNonces<'a>(&'a crate::state::Store);

impl fmt::Debug for StateNonces<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateNonces({})", self.0.kind())
    }
}

impl NonceStore for StateNonces<'_> {
    fn check_and_remember<'a>(&'a self, nonce: &'a str, ttl: Duration) -> super::replay::NonceFuture<'a> {
        use crate::state::Nonces;
        Box::pin(async move {
            let key = format!("sig:{nonce}");
            match self.0.set_if_absent(&key, ttl, crate::state::FailureMode::Closed).await {
                Ok(true) => Ok(Freshness::Fresh),
                Ok(false) => Ok(Freshness::Replayed),
                Err(_) => Err(super::replay::NonceStoreError("state backend unavailable".into())),
            }
        })
    }
}

#[cfg(test)]
mod tests;
