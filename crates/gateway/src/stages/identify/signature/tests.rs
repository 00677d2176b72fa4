//! Signature verification against RFC 9421 appendix B and every rejection the verifier knows.

use super::*;
use crate::stages::identify::clock::ManualClock;
use crate::stages::identify::replay::{MemoryNonceStore, NonceFuture, NonceStoreError};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderValue;

// RFC 9421 B.1.4 (test-key-ed25519) and B.1.5 (test-shared-secret).
const RFC_ED25519_PRIVATE_PKCS8: &str = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
const RFC_ED25519_PUBLIC_PEM: &str =
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";
const RFC_SHARED_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
const RFC_CREATED: u64 = 1_618_884_473;
const RFC_BODY: &[u8] = br#"{"hello": "world"}"#;
const RFC_DIGEST: &str =
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

/// A request owned by the test, viewed as a [`SignedRequest`].
struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
    scheme: &'static str,
}

impl Req {
    fn view(&self) -> SignedRequest<'_> {
        SignedRequest {
            method: &self.method,
            uri: &self.uri,
            headers: &self.headers,
            body: &self.body,
            scheme: self.scheme,
        }
    }

    fn set(&mut self, name: &'static str, value: &str) {
        self.headers.insert(name, HeaderValue::from_str(value).unwrap());
    }
}

/// The RFC's test request (appendix B.2), as it reaches a server over HTTPS.
fn rfc_request() -> Req {
    let mut r = Req {
        method: Method::POST,
        uri: "/foo?param=Value&Pet=dog".parse().unwrap(),
        headers: HeaderMap::new(),
        body: RFC_BODY.to_vec(),
        scheme: "https",
    };
    r.set("host", "example.com");
    r.set("date", "Tue, 20 Apr 2021 02:07:55 GMT");
    r.set("content-type", "application/json");
    r.set("content-digest", RFC_DIGEST);
    r.set("content-length", "18");
    r
}

fn rfc_settings(key_id: &str, key: SignatureKey, required: &[&str]) -> SignatureSettings {
    SignatureSettings {
        keys: HashMap::from([(key_id.to_string(), key)]),
        required: required.iter().map(|c| Component::parse(c).unwrap()).collect(),
        digest_with_body: false,
        nonce: NoncePolicy::Optional,
        ..SignatureSettings::default()
    }
}

fn rfc_ed25519_public() -> SignatureKey {
    SignatureKey::from_text(SignatureAlgorithm::Ed25519, RFC_ED25519_PUBLIC_PEM).unwrap()
}

fn rfc_hmac() -> SignatureKey {
    SignatureKey::from_text(SignatureAlgorithm::HmacSha256, RFC_SHARED_SECRET).unwrap()
}

const B25_INPUT: &str = r#"("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
const B25_SIGNATURE: &str = ":pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:";
const B26_INPUT: &str = r#"("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
const B26_SIGNATURE: &str =
    ":wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";

fn with_signature(mut r: Req, label: &str, input: &str, signature: &str) -> Req {
    r.set("signature-input", &format!("{label}={input}"));
    r.set("signature", &format!("{label}={signature}"));
    r
}

#[test]
fn rfc_b25_hmac_sha256_vector_verifies() {
    let r = with_signature(rfc_request(), "sig-b25", B25_INPUT, B25_SIGNATURE);
    let base = signature_base_for(&r.view(), B25_INPUT).unwrap();
    assert_eq!(
        String::from_utf8(base).unwrap(),
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\
         \"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );
    let v = SignatureVerifier::new(rfc_settings("test-shared-secret", rfc_hmac(), &[])).unwrap();
    let ok = v.verify(&r.view(), RFC_CREATED).unwrap();
    assert_eq!(&*ok.keyid, "test-shared-secret");
    assert_eq!(ok.alg, SignatureAlgorithm::HmacSha256);
    assert_eq!(ok.created, RFC_CREATED);
    assert_eq!(ok.covered, ["date", "@authority", "content-type"]);
    assert!(ok.digest_verified, "the RFC request carries a Content-Digest, and it matches");
    assert_eq!(ok.nonce, None);
}

#[test]
fn rfc_b26_ed25519_vector_verifies() {
    let r = with_signature(rfc_request(), "sig-b26", B26_INPUT, B26_SIGNATURE);
    let v = SignatureVerifier::new(rfc_settings(
        "test-key-ed25519",
        rfc_ed25519_public(),
        &["@method", "@path", "@authority"],
    ))
    .unwrap();
    let ok = v.verify(&r.view(), RFC_CREATED + 10).unwrap();
    assert_eq!(ok.alg, SignatureAlgorithm::Ed25519);
    assert_eq!(&*ok.consumer, "test-key-ed25519", "the consumer defaults to the key id");
    let id = ok.identity();
    assert_eq!(id.method, AuthMethod::Signature);
}

#[test]
fn rfc_b26_private_key_yields_the_published_public_key() {
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&B64.decode(RFC_ED25519_PRIVATE_PKCS8).unwrap()).unwrap();
    let published = B64.decode("MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=").unwrap();
    assert_eq!(pair.public_key().as_ref(), &published[12..]);
}

#[test]
fn rfc_b26_under_the_default_policy_lacks_query_and_digest_coverage() {
    let r = with_signature(rfc_request(), "sig-b26", B26_INPUT, B26_SIGNATURE);
    let mut settings = rfc_settings("test-key-ed25519", rfc_ed25519_public(), &[]);
    settings.required = SignatureSettings::default().required;
    let v = SignatureVerifier::new(settings).unwrap();
    let err = v.verify(&r.view(), RFC_CREATED).unwrap_err();
    assert_eq!(err, SignatureError::Coverage("@target-uri".into()));
    assert_eq!(err.code(), "auth.signature.coverage");

    let mut settings = rfc_settings("test-key-ed25519", rfc_ed25519_public(), &["@method"]);
    settings.digest_with_body = true;
    let v = SignatureVerifier::new(settings).unwrap();
    assert_eq!(v.verify(&r.view(), RFC_CREATED).unwrap_err(), SignatureError::Coverage("content-digest".into()));
}

#[test]
fn rfc_vectors_fail_when_any_covered_part_changes() {
    let v = SignatureVerifier::new(rfc_settings("test-key-ed25519", rfc_ed25519_public(), &[])).unwrap();
    let tamper: [fn(&mut Req); 5] = [
        |r| r.set("date", "Tue, 20 Apr 2021 02:07:56 GMT"),
        |r| r.method = Method::PUT,
        |r| r.uri = "/fooo?param=Value&Pet=dog".parse().unwrap(),
        |r| r.set("host", "evil.example"),
        |r| r.set("content-length", "19"),
    ];
    for (i, t) in tamper.iter().enumerate() {
        let mut r = with_signature(rfc_request(), "sig-b26", B26_INPUT, B26_SIGNATURE);
        t(&mut r);
        let err = v.verify(&r.view(), RFC_CREATED).unwrap_err();
        assert!(matches!(err, SignatureError::Invalid(_)), "tamper #{i}: {err:?}");
        assert_eq!(err.code(), "auth.signature.invalid");
    }
    // The query is not covered by B.2.6: changing it still verifies — which is why the default policy requires
    // @target-uri (or @query).
    let mut r = with_signature(rfc_request(), "sig-b26", B26_INPUT, B26_SIGNATURE);
    r.uri = "/foo?param=Other".parse().unwrap();
    assert!(v.verify(&r.view(), RFC_CREATED).is_ok());
}

#[test]
fn a_valid_signature_with_the_wrong_key_is_invalid() {
    let other = Ed25519KeyPair::generate().unwrap();
    let key = SignatureKey::ed25519(other.public_key().as_ref()).unwrap();
    let v = SignatureVerifier::new(rfc_settings("test-key-ed25519", key, &[])).unwrap();
    let r = with_signature(rfc_request(), "sig-b26", B26_INPUT, B26_SIGNATURE);
    assert!(matches!(v.verify(&r.view(), RFC_CREATED), Err(SignatureError::Invalid(_))));

    let wrong_secret = SignatureKey::hmac_sha256(&[7u8; 64]).unwrap();
    let v = SignatureVerifier::new(rfc_settings("test-shared-secret", wrong_secret, &[])).unwrap();
    let r = with_signature(rfc_request(), "sig-b25", B25_INPUT, B25_SIGNATURE);
    assert!(matches!(v.verify(&r.view(), RFC_CREATED), Err(SignatureError::Invalid(_))));
}

// ---- our own signer, for the full default policy ----

enum Signer {
    Ed(Ed25519KeyPair),
    Hmac(Box<hmac::Key>),
}

impl Signer {
    fn sign(&self, base: &[u8]) -> Vec<u8> {
        match self {
            Signer::Ed(k) => k.sign(base).as_ref().to_vec(),
            Signer::Hmac(k) => hmac::sign(k, base).as_ref().to_vec(),
        }
    }
}

const NOW: u64 = 1_700_000_000;
const SECRET: [u8; 32] = *b"0123456789abcdef0123456789abcdef";

fn ed_pair() -> (Ed25519KeyPair, SignatureKey) {
    let pair = Ed25519KeyPair::generate().unwrap();
    let key = SignatureKey::ed25519(pair.public_key().as_ref()).unwrap();
    (pair, key)
}

/// A default-policy verifier with two keys: `ed` (Ed25519) and `mac` (HMAC-SHA256).
fn default_verifier() -> (SignatureVerifier, Signer, Signer) {
    let (pair, ed_key) = ed_pair();
    let settings = SignatureSettings {
        keys: HashMap::from([
            ("ed".to_string(), ed_key.with_consumer("partner-a").with_scopes(["orders:write"])),
            ("mac".to_string(), SignatureKey::hmac_sha256(&SECRET).unwrap()),
        ]),
        ..SignatureSettings::default()
    };
    (
        SignatureVerifier::new(settings).unwrap(),
        Signer::Ed(pair),
        Signer::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, &SECRET))),
    )
}

fn order_request(body: &[u8]) -> Req {
    let mut r = Req {
        method: Method::POST,
        uri: "/orders?dry_run=false".parse().unwrap(),
        headers: HeaderMap::new(),
        body: body.to_vec(),
        scheme: "https",
    };
    r.set("host", "api.example.com");
    r.set("content-type", "application/json");
    let d = digest::digest(&digest::SHA256, body);
    r.set("content-digest", &format!("sha-256=:{}:", B64.encode(d.as_ref())));
    r
}

/// Signs `r` with Signature-Input member `input` under `label`.
fn sign(mut r: Req, label: &str, input: &str, signer: &Signer) -> Req {
    let base = signature_base_for(&r.view(), input).unwrap();
    let sig = signer.sign(&base);
    r.set("signature-input", &format!("{label}={input}"));
    r.set("signature", &format!("{label}=:{}:", B64.encode(sig)));
    r
}

fn full_input(keyid: &str, nonce: &str) -> String {
    format!(
        r#"("@method" "@target-uri" "content-type" "content-digest");created={NOW};keyid="{keyid}";nonce="{nonce}""#
    )
}

#[test]
fn default_policy_accepts_ed25519_and_hmac_signatures_with_digest() {
    let (v, ed, mac) = default_verifier();
    let r = sign(order_request(br#"{"qty":1}"#), "sig1", &full_input("ed", "n-1"), &ed);
    let ok = v.verify(&r.view(), NOW + 3).unwrap();
    assert_eq!(&*ok.consumer, "partner-a");
    assert_eq!(ok.identity().scopes, vec![Arc::<str>::from("orders:write")]);
    assert!(ok.digest_verified);
    assert_eq!(ok.nonce.as_deref(), Some("n-1"));
    assert_eq!(ok.replay_ttl, Duration::from_secs(300 + 30 - 3 + 1));

    let r = sign(order_request(br#"{"qty":1}"#), "sig1", &full_input("mac", "n-2"), &mac);
    assert_eq!(v.verify(&r.view(), NOW).unwrap().alg, SignatureAlgorithm::HmacSha256);
}

#[test]
fn target_uri_is_built_from_scheme_host_path_and_query() {
    let r = order_request(b"");
    let base =
        signature_base_for(&r.view(), r#"("@target-uri" "@request-target" "@path" "@query" "@scheme");created=1"#)
            .unwrap();
    let text = String::from_utf8(base).unwrap();
    assert!(text.starts_with(
        "\"@target-uri\": https://api.example.com/orders?dry_run=false\n\"@request-target\": /orders?dry_run=false\n\
         \"@path\": /orders\n\"@query\": ?dry_run=false\n\"@scheme\": https\n"
    ));
    // The default port of the scheme is dropped and the host lowercased; an absolute-form URI wins over Host.
    let mut r = order_request(b"");
    r.set("host", "API.Example.com:443");
    r.uri = "/x".parse().unwrap();
    let base = signature_base_for(&r.view(), r#"("@authority" "@query");created=1"#).unwrap();
    assert!(String::from_utf8(base).unwrap().starts_with("\"@authority\": api.example.com\n\"@query\": ?\n"));
    r.uri = "https://other.example:8443/x".parse().unwrap();
    let base = signature_base_for(&r.view(), r#"("@authority");created=1"#).unwrap();
    assert!(String::from_utf8(base).unwrap().starts_with("\"@authority\": other.example:8443\n"));
}

#[test]
fn a_tampered_query_or_body_is_rejected() {
    let (v, ed, _) = default_verifier();
    let mut r = sign(order_request(br#"{"qty":1}"#), "sig1", &full_input("ed", "n"), &ed);
    r.uri = "/orders?dry_run=true".parse().unwrap();
    assert!(matches!(v.verify(&r.view(), NOW), Err(SignatureError::Invalid(_))));

    // Body swapped, digest left: the signature is fine, the digest is not.
    let mut r = sign(order_request(br#"{"qty":1}"#), "sig1", &full_input("ed", "n"), &ed);
    r.body = br#"{"qty":1000}"#.to_vec();
    let err = v.verify(&r.view(), NOW).unwrap_err();
    assert!(matches!(err, SignatureError::Digest(_)), "{err:?}");
    assert_eq!(err.code(), "auth.signature.digest");

    // Body and digest swapped together: the signed digest no longer matches.
    let mut r = sign(order_request(br#"{"qty":1}"#), "sig1", &full_input("ed", "n"), &ed);
    let forged = order_request(br#"{"qty":1000}"#);
    r.body = forged.body.clone();
    r.set("content-digest", forged.headers["content-digest"].to_str().unwrap());
    assert!(matches!(v.verify(&r.view(), NOW), Err(SignatureError::Invalid(_))));
}

#[test]
fn missing_headers_give_missing_and_half_pairs_are_malformed() {
    let (v, ed, _) = default_verifier();
    let r = order_request(b"");
    let err = v.verify(&r.view(), NOW).unwrap_err();
    assert_eq!(err, SignatureError::Missing);
    assert_eq!(err.code(), "auth.signature.missing");
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);

    let mut r = sign(order_request(b""), "s", &full_input("ed", "n"), &ed);
    r.headers.remove("signature");
    assert!(matches!(v.verify(&r.view(), NOW), Err(SignatureError::Malformed(_))));
    let mut r = sign(order_request(b""), "s", &full_input("ed", "n"), &ed);
    r.headers.remove("signature-input");
    assert!(matches!(v.verify(&r.view(), NOW), Err(SignatureError::Malformed(_))));
}

fn assert_malformed(v: &SignatureVerifier, input: &str, signature: &str, why: &str) {
    let mut r = order_request(b"");
    r.set("signature-input", input);
    r.set("signature", signature);
    let err = v.verify(&r.view(), NOW).unwrap_err();
    assert!(matches!(err, SignatureError::Malformed(_)), "{why}: {err:?}");
    assert_eq!(err.code(), "auth.signature.malformed", "{why}");
}

#[test]
fn malformed_inputs_are_rejected_before_any_cryptography() {
    let (v, _, _) = default_verifier();
    let sig = "s=:AAAA:";
    let ok_params = format!(r#";created={NOW};keyid="ed";nonce="n""#);
    assert_malformed(&v, "s=(\"@method\"", sig, "unterminated inner list");
    assert_malformed(&v, "S=(\"@method\");created=1", sig, "uppercase label is not a dictionary key");
    assert_malformed(&v, &format!("s=\"@method\"{ok_params}"), sig, "not an inner list");
    assert_malformed(&v, &format!("s=(\"@method\" \"@target-uri\"){ok_params}"), "s=\"AAAA\"", "signature not bytes");
    assert_malformed(&v, &format!("s=(\"@method\" \"@target-uri\"){ok_params}"), "t=:AAAA:", "label mismatch");
    assert_malformed(&v, r#"s=("@method" "@target-uri");keyid="ed";nonce="n""#, sig, "no created");
    assert_malformed(&v, r#"s=("@method" "@target-uri");created=-5;keyid="ed";nonce="n""#, sig, "negative created");
    assert_malformed(&v, r#"s=("@method" "@target-uri");created="1";keyid="ed";nonce="n""#, sig, "created a string");
    assert_malformed(&v, &format!(r#"s=("@method" "@target-uri");created={NOW};keyid="ed""#), sig, "no nonce");
    assert_malformed(&v, &format!(r#"s=("@method" "@target-uri");created={NOW};keyid=ed"#), sig, "keyid a token");
    assert_malformed(&v, &format!(r#"s=("@method" "@target-uri");created={NOW}"#), sig, "no keyid");
    assert_malformed(&v, &format!("s=(\"@method\" \"@method\" \"@target-uri\"){ok_params}"), sig, "duplicate");
    assert_malformed(&v, &format!("s=(\"@method\" \"@status\" \"@target-uri\"){ok_params}"), sig, "@status");
    assert_malformed(&v, &format!("s=(\"@method\" \"@target-uri\" \"Host\"){ok_params}"), sig, "uppercase field");
    assert_malformed(&v, &format!("s=(\"@method\" \"@target-uri\" date){ok_params}"), sig, "token component");
    assert_malformed(&v, &format!("s=(\"@method\";sf \"@target-uri\"){ok_params}"), sig, "sf on derived");
    assert_malformed(&v, &format!("s=(\"@method\" \"@target-uri\" \"date\";req){ok_params}"), sig, "req param");
    assert_malformed(&v, &format!("s=(\"@method\" \"@target-uri\" \"x\";bs;sf){ok_params}"), sig, "bs with sf");
    let long_nonce = "n".repeat(MAX_NONCE_LEN + 1);
    assert_malformed(
        &v,
        &format!(r#"s=("@method" "@target-uri");created={NOW};keyid="ed";nonce="{long_nonce}""#),
        sig,
        "nonce too long",
    );
    let many: Vec<String> = (0..=MAX_SIGNATURES).map(|i| format!("s{i}=(\"@method\"){ok_params}")).collect();
    assert_malformed(&v, &many.join(", "), sig, "too many signatures");
    let components: String = (0..=MAX_COMPONENTS).map(|i| format!("\"h{i}\" ")).collect();
    assert_malformed(&v, &format!("s=({components}){ok_params}"), sig, "too many components");
    assert_malformed(
        &v,
        &format!(r#"s=("@method" "@target-uri");created={NOW};expires={NOW};keyid="ed";nonce="n""#),
        sig,
        "expires not after created",
    );
}

#[test]
fn an_unknown_key_id_is_its_own_code_and_a_known_one_later_is_chosen() {
    let (v, ed, _) = default_verifier();
    let r = sign(order_request(b""), "s", &full_input("nobody", "n"), &ed);
    let err = v.verify(&r.view(), NOW).unwrap_err();
    assert_eq!(err, SignatureError::UnknownKey("nobody".into()));
    assert_eq!(err.code(), "auth.signature.unknown_key");

    // Two signatures: a foreign one first, ours second. Ours is verified.
    let mut r = sign(order_request(b""), "mine", &full_input("ed", "n"), &ed);
    let input = r.headers["signature-input"].to_str().unwrap().to_string();
    let signature = r.headers["signature"].to_str().unwrap().to_string();
    r.set("signature-input", &format!("{}, {input}", r#"proxy=("@method");created=1;keyid="their-key""#));
    r.set("signature", &format!("proxy=:AAAA:, {signature}"));
    assert_eq!(v.verify(&r.view(), NOW).unwrap().label, "mine");
}

#[test]
fn a_tag_profile_ignores_signatures_for_other_applications() {
    let (pair, key) = ed_pair();
    let settings = SignatureSettings {
        keys: HashMap::from([("ed".to_string(), key)]),
        tag: Some("rampart".into()),
        ..SignatureSettings::default()
    };
    let v = SignatureVerifier::new(settings).unwrap();
    let signer = Signer::Ed(pair);
    let tagged = format!("{};tag=\"rampart\"", full_input("ed", "n"));
    assert!(v.verify(&sign(order_request(b""), "s", &tagged, &signer).view(), NOW).is_ok());
    let other = format!("{};tag=\"other-app\"", full_input("ed", "n"));
    let err = v.verify(&sign(order_request(b""), "s", &other, &signer).view(), NOW).unwrap_err();
    assert!(matches!(err, SignatureError::Malformed(_)), "{err:?}");
}

#[test]
fn coverage_requirements_are_enforced() {
    let (v, ed, _) = default_verifier();
    let no_method = format!(r#"("@target-uri");created={NOW};keyid="ed";nonce="n""#);
    let err = v.verify(&sign(order_request(b""), "s", &no_method, &ed).view(), NOW).unwrap_err();
    assert_eq!(err, SignatureError::Coverage("@method".into()));
    // A body not covered by a digest.
    let no_digest = format!(r#"("@method" "@target-uri");created={NOW};keyid="ed";nonce="n""#);
    let err = v.verify(&sign(order_request(b"{}"), "s", &no_digest, &ed).view(), NOW).unwrap_err();
    assert_eq!(err, SignatureError::Coverage("content-digest".into()));
    // Without a body the digest is not required.
    assert!(v.verify(&sign(order_request(b""), "s", &no_digest, &ed).view(), NOW).is_ok());
    // @authority + @path + @query stands in for @target-uri; @authority + @path alone does not.
    let split = format!(r#"("@method" "@authority" "@path" "@query");created={NOW};keyid="ed";nonce="n""#);
    assert!(v.verify(&sign(order_request(b""), "s", &split, &ed).view(), NOW).is_ok());
    let partial = format!(r#"("@method" "@authority" "@path");created={NOW};keyid="ed";nonce="n""#);
    let err = v.verify(&sign(order_request(b""), "s", &partial, &ed).view(), NOW).unwrap_err();
    assert_eq!(err, SignatureError::Coverage("@target-uri".into()));
    // A required header field.
    let (pair, key) = ed_pair();
    let settings = SignatureSettings {
        keys: HashMap::from([("ed".to_string(), key)]),
        required: vec![Component::Method, Component::parse("x-tenant").unwrap()],
        ..SignatureSettings::default()
    };
    let v = SignatureVerifier::new(settings).unwrap();
    let err = v.verify(
        &sign(order_request(b""), "s", &no_method.replace("@target-uri", "@method"), &Signer::Ed(pair)).view(),
        NOW,
    );
    assert_eq!(err.unwrap_err(), SignatureError::Coverage("x-tenant".into()));
}

#[test]
fn a_covered_header_that_is_absent_or_changed_is_invalid() {
    let (v, ed, _) = default_verifier();
    let mut r = order_request(b"");
    r.set("x-tenant", "t1");
    let mut r = sign(r, "s", &full_input("ed", "n").replace("content-digest", "x-tenant"), &ed);
    assert!(v.verify(&r.view(), NOW).is_ok());
    r.set("x-tenant", "t2");
    assert!(matches!(v.verify(&r.view(), NOW), Err(SignatureError::Invalid(_))));
    r.headers.remove("x-tenant");
    let err = v.verify(&r.view(), NOW).unwrap_err();
    assert_eq!(err, SignatureError::Invalid("covered field \"x-tenant\" is absent".into()));
}

#[test]
fn an_alg_parameter_must_match_the_key() {
    let (v, ed, mac) = default_verifier();
    let good = format!("{};alg=\"ed25519\"", full_input("ed", "n"));
    assert!(v.verify(&sign(order_request(b""), "s", &good, &ed).view(), NOW).is_ok());
    // The message claims HMAC for an Ed25519 key: refused whatever the bytes (no algorithm confusion).
    let confused = format!("{};alg=\"hmac-sha256\"", full_input("ed", "n"));
    let err = v.verify(&sign(order_request(b""), "s", &confused, &mac).view(), NOW).unwrap_err();
    assert!(matches!(err, SignatureError::Invalid(_)), "{err:?}");
}

#[test]
fn time_window_created_and_expires() {
    let (v, ed, _) = default_verifier();
    let r = sign(order_request(b""), "s", &full_input("ed", "n"), &ed);
    assert!(v.verify(&r.view(), NOW + 300 + 30).is_ok(), "max_age plus skew is the edge");
    let err = v.verify(&r.view(), NOW + 300 + 31).unwrap_err();
    assert!(matches!(err, SignatureError::Expired(_)), "{err:?}");
    assert_eq!(err.code(), "auth.signature.expired");
    assert!(v.verify(&r.view(), NOW - 30).is_ok(), "created within the skew ahead of us");
    assert!(matches!(v.verify(&r.view(), NOW - 31), Err(SignatureError::Expired(_))), "created in the future");

    let with_expiry = format!("{};expires={}", full_input("ed", "n"), NOW + 10);
    let r = sign(order_request(b""), "s", &with_expiry, &ed);
    let ok = v.verify(&r.view(), NOW + 5).unwrap();
    assert_eq!(ok.expires, Some(NOW + 10));
    assert_eq!(ok.replay_ttl, Duration::from_secs(10 + 30 - 5 + 1), "remembered until expires + skew");
    assert!(matches!(v.verify(&r.view(), NOW + 41), Err(SignatureError::Expired(_))));
}

#[test]
fn content_digest_checks() {
    let body = br#"{"hello": "world"}"#;
    assert!(verify_content_digest(RFC_DIGEST.as_bytes(), body).is_ok());
    let sha256 = format!("sha-256=:{}:", B64.encode(digest::digest(&digest::SHA256, body).as_ref()));
    assert!(verify_content_digest(sha256.as_bytes(), body).is_ok());
    // Unknown algorithms are ignored, but at least one known one must be present and all known ones must match.
    assert!(verify_content_digest(format!("md5=:AAAA:, {sha256}").as_bytes(), body).is_ok());
    let cases: [(&str, &[u8]); 5] = [
        (RFC_DIGEST, b"{\"hello\": \"world!\"}"),
        ("md5=:AAAA:", body),
        ("sha-256=\"abc\"", body),
        ("sha-256", body),
        ("not a dictionary!", body),
    ];
    for (header, b) in cases {
        let err = verify_content_digest(header.as_bytes(), b).unwrap_err();
        assert_eq!(err.code(), "auth.signature.digest", "{header}");
    }
    let mixed = format!("{sha256}, sha-512=:AAAA:");
    assert!(verify_content_digest(mixed.as_bytes(), body).is_err(), "one wrong known digest fails");
}

#[test]
fn structured_field_parameters_sf_key_and_bs() {
    let mut r = order_request(b"");
    r.set("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)");
    r.headers.append("x-multi", HeaderValue::from_static("one "));
    r.headers.append("x-multi", HeaderValue::from_static(" two"));
    let input = r#"("example-dict" "example-dict";sf "example-dict";key="b" "example-dict";key="c" "x-multi" "x-multi";bs);created=1"#;
    let base = String::from_utf8(signature_base_for(&r.view(), input).unwrap()).unwrap();
    let lines: Vec<&str> = base.lines().collect();
    assert_eq!(lines[0], "\"example-dict\": a=1,    b=2;x=1;y=2,   c=(a   b   c)");
    assert_eq!(lines[1], "\"example-dict\";sf: a=1, b=2;x=1;y=2, c=(a b c)");
    assert_eq!(lines[2], "\"example-dict\";key=\"b\": 2;x=1;y=2");
    assert_eq!(lines[3], "\"example-dict\";key=\"c\": (a b c)");
    assert_eq!(lines[4], "\"x-multi\": one, two");
    assert_eq!(lines[5], format!("\"x-multi\";bs: :{}:, :{}:", B64.encode("one"), B64.encode("two")));
    assert!(matches!(
        signature_base_for(&r.view(), r#"("example-dict";key="zz");created=1"#),
        Err(SignatureError::Invalid(_))
    ));
}

#[derive(Debug)]
struct BrokenStore;

impl NonceStore for BrokenStore {
    fn check_and_remember<'a>(&'a self, _: &'a str, _: Duration) -> NonceFuture<'a> {
        Box::pin(std::future::ready(Err(NonceStoreError("connection refused".into()))))
    }
}

#[tokio::test]
async fn a_replayed_nonce_is_rejected_and_an_unavailable_store_fails_closed() {
    let (v, ed, _) = default_verifier();
    let store = MemoryNonceStore::new(1_000, Arc::new(ManualClock::new(1)));
    let r = sign(order_request(b"{}"), "s", &full_input("ed", "once"), &ed);
    assert!(v.verify_fresh(&r.view(), NOW, &store).await.is_ok());
    let err = v.verify_fresh(&r.view(), NOW + 1, &store).await.unwrap_err();
    assert_eq!(err, SignatureError::Replay);
    assert_eq!(err.code(), "auth.signature.replay");
    // Another nonce is fresh; a forged request never reaches the store.
    let r2 = sign(order_request(b"{}"), "s", &full_input("ed", "twice"), &ed);
    assert!(v.verify_fresh(&r2.view(), NOW, &store).await.is_ok());
    let mut forged = sign(order_request(b"{}"), "s", &full_input("ed", "forged"), &ed);
    forged.method = Method::DELETE;
    assert!(matches!(v.verify_fresh(&forged.view(), NOW, &store).await, Err(SignatureError::Invalid(_))));
    assert_eq!(store.len(), 2);

    let err = v.verify_fresh(&r.view(), NOW, &BrokenStore).await.unwrap_err();
    assert_eq!(err.code(), "auth.signature.store_unavailable");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn without_a_nonce_the_signature_value_is_the_replay_key() {
    let (pair, key) = ed_pair();
    let settings = SignatureSettings {
        keys: HashMap::from([("ed".to_string(), key)]),
        nonce: NoncePolicy::Optional,
        ..SignatureSettings::default()
    };
    let v = SignatureVerifier::new(settings).unwrap();
    let store = MemoryNonceStore::new(1_000, Arc::new(ManualClock::new(1)));
    let input = format!(r#"("@method" "@target-uri");created={NOW};keyid="ed""#);
    let r = sign(order_request(b""), "s", &input, &Signer::Ed(pair));
    assert!(v.verify_fresh(&r.view(), NOW, &store).await.is_ok());
    assert_eq!(v.verify_fresh(&r.view(), NOW, &store).await.unwrap_err(), SignatureError::Replay);
}

#[test]
fn keys_are_checked_at_load() {
    assert_eq!(SignatureKey::hmac_sha256(&[1u8; 31]).unwrap_err(), KeyError::SecretTooShort(31));
    assert_eq!(SignatureKey::ed25519(&[1u8; 31]).unwrap_err(), KeyError::PublicKey);
    assert_eq!(SignatureKey::from_text(SignatureAlgorithm::HmacSha256, "%%%").unwrap_err(), KeyError::Encoding);
    // base64url without padding of the raw key, and the DER SPKI in plain base64, are both accepted.
    let (pair, _) = ed_pair();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    assert_eq!(
        SignatureKey::from_text(SignatureAlgorithm::Ed25519, &raw).unwrap().algorithm(),
        SignatureAlgorithm::Ed25519
    );
    let spki = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";
    assert!(SignatureKey::from_text(SignatureAlgorithm::Ed25519, spki).is_ok());
    // The Debug form never shows the secret.
    let dbg = format!("{:?}", SignatureKey::hmac_sha256(&SECRET).unwrap());
    assert!(!dbg.contains("0123456789abcdef"), "{dbg}");

    assert_eq!(SignatureVerifier::new(SignatureSettings::default()).unwrap_err(), SettingsError::NoKeys);
    let zero = SignatureSettings {
        keys: HashMap::from([("k".to_string(), SignatureKey::hmac_sha256(&SECRET).unwrap())]),
        max_age: Duration::from_millis(500),
        ..SignatureSettings::default()
    };
    assert_eq!(SignatureVerifier::new(zero).unwrap_err(), SettingsError::ZeroWindow);
    let bad_id = SignatureSettings {
        keys: HashMap::from([("k\n".to_string(), SignatureKey::hmac_sha256(&SECRET).unwrap())]),
        ..SignatureSettings::default()
    };
    assert!(matches!(SignatureVerifier::new(bad_id), Err(SettingsError::BadKeyId(_))));
    assert_eq!(Component::parse("@status"), None);
    assert_eq!(Component::parse("Content-Digest"), None);
    assert_eq!(Component::parse("content-digest"), Some(Component::Field("content-digest".into())));
}

#[test]
fn every_code_is_listed_once() {
    let errors = [
        SignatureError::Missing,
        SignatureError::Malformed(String::new()),
        SignatureError::UnknownKey(String::new()),
        SignatureError::Coverage(String::new()),
        SignatureError::Invalid(String::new()),
        SignatureError::Expired(String::new()),
        SignatureError::Digest(String::new()),
        SignatureError::Replay,
        SignatureError::StoreUnavailable(String::new()),
    ];
    let codes: Vec<&str> = errors.iter().map(SignatureError::code).collect();
    assert_eq!(codes, SignatureError::CODES);
}
