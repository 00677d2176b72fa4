//! RFC 9421 verification never panics on any Signature-Input / Signature / Content-Digest / target / body, and a
//! forged request is never accepted: without the private key nothing can verify.
#![no_main]
use std::collections::HashMap;
use std::sync::OnceLock;

use gateway::stages::identify::signature::{
    signature_base_for, verify_content_digest, NoncePolicy, SignatureKey, SignatureSettings, SignatureVerifier,
    SignedRequest,
};
use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static SignatureVerifier {
    static V: OnceLock<SignatureVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let keys = HashMap::from([
            ("k".to_string(), SignatureKey::hmac_sha256(&[7u8; 32]).unwrap()),
            (
                "e".to_string(),
                SignatureKey::ed25519(&[
                    38, 180, 11, 143, 147, 255, 243, 216, 151, 17, 47, 126, 188, 88, 43, 35, 45, 189, 114, 81, 125, 8,
                    47, 232, 60, 251, 48, 221, 206, 67, 209, 187,
                ])
                .unwrap(),
            ),
        ]);
        let settings = SignatureSettings {
            keys,
            required: vec![],
            digest_with_body: false,
            nonce: NoncePolicy::Optional,
            ..SignatureSettings::default()
        };
        SignatureVerifier::new(settings).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xFF: Signature-Input, Signature, Content-Digest, target, extra header, body.
    let mut parts = data.split(|b| *b == 0xFF);
    let input = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let digest = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let extra = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let uri: Uri =
        std::str::from_utf8(target).ok().and_then(|t| t.parse().ok()).unwrap_or_else(|| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    for (name, value) in
        [("signature-input", input), ("signature", signature), ("content-digest", digest), ("x-extra", extra)]
    {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(name, v);
        }
    }
    let req = SignedRequest { method: &Method::POST, uri: &uri, headers: &headers, body, scheme: "https" };
    assert!(verifier().verify(&req, 1_700_000_000).is_err(), "a forged signature verified");
    if let Ok(member) = std::str::from_utf8(input) {
        let _ = signature_base_for(&req, member);
    }
    let _ = verify_content_digest(digest, body);
});
