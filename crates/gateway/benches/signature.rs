//! Cost of verifying an RFC 9421 signed request (parse Signature-Input, rebuild the signature base, verify,
//! check Content-Digest) with hmac-sha256 and ed25519, and of the state checks around it (nonce store, lockout).
//!
//! Run: `cargo bench -p rampart-gateway --bench signature`

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use divan::{black_box, Bencher};
use gateway::stages::identify::clock::MonotonicClock;
use gateway::stages::identify::lockout::{CredentialKind, LockoutKey, LockoutPolicy, MemoryLockoutStore};
use gateway::stages::identify::replay::MemoryNonceStore;
use gateway::stages::identify::signature::{
    signature_base_for, SignatureKey, SignatureSettings, SignatureVerifier, SignedRequest,
};
use http::{HeaderMap, HeaderValue, Method, Uri};

fn main() {
    divan::main();
}

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const BODY: &[u8] = br#"{"order_id":"ord_123","items":[{"sku":"A-1","qty":2}],"note":"leave at door"}"#;

struct Fixture {
    verifier: SignatureVerifier,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Fixture {
    fn request(&self) -> SignedRequest<'_> {
        SignedRequest { method: &self.method, uri: &self.uri, headers: &self.headers, body: BODY, scheme: "https" }
    }
}

/// A default-policy verifier and a request signed with `alg` over method, target URI, content type and digest.
fn fixture(alg: &str) -> Fixture {
    let pair = Ed25519KeyPair::generate().unwrap();
    let keys = HashMap::from([
        ("ed".to_string(), SignatureKey::ed25519(pair.public_key().as_ref()).unwrap()),
        ("mac".to_string(), SignatureKey::hmac_sha256(SECRET).unwrap()),
    ]);
    let verifier = SignatureVerifier::new(SignatureSettings { keys, ..SignatureSettings::default() }).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let d = digest::digest(&digest::SHA256, BODY);
    headers.insert("content-digest", format!("sha-256=:{}:", B64.encode(d.as_ref())).parse().unwrap());
    let mut f = Fixture { verifier, method: Method::POST, uri: "/orders?dry_run=false".parse().unwrap(), headers };
    let keyid = if alg == "ed25519" { "ed" } else { "mac" };
    let input = format!(
        r#"("@method" "@target-uri" "content-type" "content-digest");created={NOW};keyid="{keyid}";nonce="b3k2pp5k7z-50gnwp""#
    );
    let base = signature_base_for(&f.request(), &input).unwrap();
    let sig = if alg == "ed25519" {
        pair.sign(&base).as_ref().to_vec()
    } else {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), &base).as_ref().to_vec()
    };
    f.headers.insert("signature-input", format!("sig1={input}").parse().unwrap());
    f.headers.insert("signature", format!("sig1=:{}:", B64.encode(sig)).parse().unwrap());
    assert!(f.verifier.verify(&f.request(), NOW).is_ok());
    f
}

/// Full verification of a signed POST with an 80-byte JSON body.
#[divan::bench(args = ["hmac-sha256", "ed25519"])]
fn verify_signed_request(bencher: Bencher, alg: &str) {
    let f = fixture(alg);
    bencher.bench_local(|| black_box(f.verifier.verify(black_box(&f.request()), NOW)).is_ok());
}

/// The cryptographic step alone, for comparison with the full verification.
#[divan::bench(args = ["hmac-sha256", "ed25519"])]
fn crypto_only(bencher: Bencher, alg: &str) {
    let base = vec![b'x'; 200];
    if alg == "ed25519" {
        let pair = Ed25519KeyPair::generate().unwrap();
        let sig = pair.sign(&base);
        let key =
            aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ED25519, pair.public_key().as_ref())
                .unwrap();
        bencher.bench_local(|| black_box(key.verify_sig(black_box(&base), sig.as_ref())).is_ok());
    } else {
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
        let tag = hmac::sign(&key, &base);
        bencher.bench_local(|| black_box(hmac::verify(&key, black_box(&base), tag.as_ref())).is_ok());
    }
}

/// Remembering a new nonce in the in-memory store (100k entries, steady state).
#[divan::bench]
fn nonce_store_fresh(bencher: Bencher) {
    let store = MemoryNonceStore::new(100_000, Arc::new(MonotonicClock));
    let mut i = 0u64;
    let mut key = String::with_capacity(32);
    bencher.bench_local(|| {
        i += 1;
        key.clear();
        use std::fmt::Write;
        let _ = write!(key, "ed\0n\0{i}");
        black_box(store.check_and_remember_now(&key, Duration::from_secs(300)))
    });
}

/// The per-request lockout check (key derivation + lookup) for an IP and a credential.
#[divan::bench]
fn lockout_check(bencher: Bencher) {
    let store = MemoryLockoutStore::new(100_000, Arc::new(MonotonicClock));
    let p = LockoutPolicy::per_credential();
    for i in 0..1_000 {
        store.record_failure_now(LockoutKey::credential(CredentialKind::Username, &format!("u{i}")), &p);
    }
    bencher.bench_local(|| {
        let ip = LockoutKey::ip(black_box(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))), 64);
        let cred = LockoutKey::credential(CredentialKind::Username, black_box("u17"));
        black_box((store.status_now(ip), store.status_now(cred)))
    });
}
