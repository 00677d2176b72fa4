//! Cost of identifying a request: JWT verification with a cached key (RS256, ES256, EdDSA) — header read,
//! signature, claims, identity built — without the verified-token cache, then with it: a token seen for the
//! first time (hash, miss, full verification, insert) and the same token again (hash, shard lookup, time and key
//! re-check); the bare aws-lc signature checks as the floor; API-key lookup (hash, map, constant-time confirm)
//! among 10 000 keys, and an introspected token answered from the cache (hash, shard lookup, expiry check).
//!
//!     cargo bench -p rampart-gateway --bench identity

use gateway::stages::identify::api_key::{self, ApiKeys};
use gateway::stages::identify::jwks::KeySet;
use gateway::stages::identify::jwt::{JwtIssuer, JwtVerifier, KeySource};
use gateway::stages::identify::jwt_cache::{token_hash, CacheCounters, VerifiedCache};
use http::header::HeaderName;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

fn main() {
    divan::main();
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

const ISS: &str = "https://id.bench.example/";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> String {
    let t = now();
    serde_json::json!({ "iss": ISS, "aud": "orders-api", "sub": "alice", "scope": "read write",
        "roles": ["user"], "iat": t, "nbf": t, "exp": t + 3600 })
    .to_string()
}

/// A verifier with one issuer whose JWKS holds the three keys, and one token per algorithm.
struct Setup {
    verifier: JwtVerifier,
    jwks: serde_json::Value,
    rs256: String,
    es256: String,
    eddsa: String,
}

impl Setup {
    fn token(&self, alg: &str) -> String {
        match alg {
            "RS256" => self.rs256.clone(),
            "ES256" => self.es256.clone(),
            _ => self.eddsa.clone(),
        }
    }
}

/// `cache`: the verified-token cache's size (0: off).
fn setup(cache: usize) -> Setup {
    use aws_lc_rs::signature::KeyPair;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let ec =
        aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ed = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let p = ec.public_key().as_ref().to_vec();
    let jwks = serde_json::json!({ "keys": [
        { "kty": "RSA", "kid": "rsa-1", "alg": "RS256", "n": b64(rsa.public_key().modulus().big_endian_without_leading_zero()),
          "e": b64(rsa.public_key().exponent().big_endian_without_leading_zero()) },
        { "kty": "EC", "kid": "ec-1", "crv": "P-256", "alg": "ES256", "x": b64(&p[1..33]), "y": b64(&p[33..65]) },
        { "kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "alg": "EdDSA", "x": b64(ed.public_key().as_ref()) },
    ]});
    let (set, _) = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
    let jwks_doc = jwks.clone();
    let sign = |alg: &str, kid: &str, f: &dyn Fn(&[u8]) -> Vec<u8>| {
        let h = serde_json::json!({ "alg": alg, "typ": "JWT", "kid": kid }).to_string();
        let msg = format!("{}.{}", b64(h.as_bytes()), b64(claims().as_bytes()));
        format!("{msg}.{}", b64(&f(msg.as_bytes())))
    };
    let rs256 = sign("RS256", "rsa-1", &|m| {
        let mut sig = vec![0; rsa.public_modulus_len()];
        rsa.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, m, &mut sig).unwrap();
        sig
    });
    let es256 = sign("ES256", "ec-1", &|m| ec.sign(&rng, m).unwrap().as_ref().to_vec());
    let eddsa = sign("EdDSA", "ed-1", &|m| ed.sign(m).as_ref().to_vec());
    let algorithms =
        vec![jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::ES256, jsonwebtoken::Algorithm::EdDSA];
    let issuer = JwtIssuer {
        audience: vec!["orders-api".into()],
        cache: (cache > 0).then(|| VerifiedCache::new(cache)),
        issuer: ISS.into(),
        algorithms,
        keys: KeySource::File(Arc::new(set)),
        hmac: None,
        leeway: 30,
        required_claims: vec!["sub".into()],
        consumer_claim: "sub".into(),
        roles_claim: vec!["roles".into()],
    };
    Setup {
        verifier: JwtVerifier { issuers: vec![issuer], counters: CacheCounters::default() },
        jwks: jwks_doc,
        rs256,
        es256,
        eddsa,
    }
}

/// Runs a future that never waits (a file-backed key set): the measured cost is the verification alone.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("verification waited"),
    }
}

/// Full verification, verified-token cache off.
#[divan::bench(args = ["RS256", "ES256", "EdDSA"])]
fn jwt_verify_cached_key(bencher: divan::Bencher, alg: &str) {
    let s = setup(0);
    let token = s.token(alg);
    let t = now();
    assert!(ready(s.verifier.verify_token(&token, t)).is_ok());
    bencher.bench_local(|| ready(s.verifier.verify_token(divan::black_box(&token), t)).is_ok());
}

/// The previous path, for a same-run comparison: the header and payload read into JSON maps, then
/// `jsonwebtoken` 12 decoding both again and checking the signature with a key it re-parses on every call.
#[divan::bench(args = ["RS256", "ES256"])]
fn jwt_previous_path(bencher: divan::Bencher, alg: &str) {
    use base64::Engine as _;
    let s = setup(0);
    let token = s.token(alg);
    let kid = if alg == "RS256" { "rsa-1" } else { "ec-1" };
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.jwks.clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(set.find(kid).unwrap()).unwrap();
    let algorithm: jsonwebtoken::Algorithm = alg.parse().unwrap();
    let mut v = jsonwebtoken::Validation::new(algorithm);
    v.set_issuer(&[ISS]);
    v.set_audience(&["orders-api"]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.validate_nbf = true;
    v.leeway = 30;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    bencher.bench_local(|| {
        let token = divan::black_box(&token);
        let mut segs = token.split('.');
        let (h, p) = (segs.next().unwrap(), segs.next().unwrap());
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&b64.decode(h).unwrap()).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&b64.decode(p).unwrap()).unwrap();
        divan::black_box((header, payload));
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).is_ok()
    });
}

/// Cache on, a token it has not seen: hash, miss, full verification, insert (the entry is dropped again after
/// each round, so every round is a first sight).
#[divan::bench(args = ["RS256", "ES256"])]
fn jwt_first_sight(bencher: divan::Bencher, alg: &str) {
    let s = setup(10_000);
    let token = s.token(alg);
    let hash = token_hash(&token);
    let cache = s.verifier.issuers[0].cache.as_ref().unwrap();
    let t = now();
    bencher.bench_local(|| {
        let ok = ready(s.verifier.verify_token(divan::black_box(&token), t)).is_ok();
        cache.remove(&hash);
        ok
    });
    assert_eq!(s.verifier.counters.hits.get(), 0);
}

/// Cache on, the same token again: hash, shard lookup, time claims and key re-checked.
#[divan::bench(args = ["RS256", "ES256"])]
fn jwt_repeat(bencher: divan::Bencher, alg: &str) {
    let s = setup(10_000);
    let token = s.token(alg);
    let t = now();
    assert!(ready(s.verifier.verify_token(&token, t)).is_ok());
    bencher.bench_local(|| ready(s.verifier.verify_token(divan::black_box(&token), t)).is_ok());
    assert!(s.verifier.counters.hits.get() > 0 && s.verifier.counters.misses.get() == 1);
}

#[divan::bench]
fn jwt_reject_alg_none(bencher: divan::Bencher) {
    let s = setup(10_000);
    let h = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let token = format!("{h}.{}.", b64(claims().as_bytes()));
    let t = now();
    bencher.bench_local(|| ready(s.verifier.verify_token(divan::black_box(&token), t)).is_err());
}

#[divan::bench(args = [1, 10_000])]
fn api_key_lookup(bencher: divan::Bencher, keys: usize) {
    let mut entries = Vec::with_capacity(keys);
    let mut secret = String::new();
    for i in 0..keys {
        let k = api_key::generate(&format!("consumer-{i}"), vec!["read".into()], vec![], None).unwrap();
        secret = k.secret;
        entries.push(k.entry);
    }
    let store = ApiKeys::from_entries("bench", &entries, HeaderName::from_static("x-api-key"), None).unwrap();
    let now = std::time::SystemTime::now();
    assert!(store.check(secret.as_bytes(), now).is_ok());
    bencher.bench_local(|| store.check(divan::black_box(secret.as_bytes()), now).is_ok());
}

#[divan::bench]
fn api_key_unknown(bencher: divan::Bencher) {
    let entries: Vec<_> =
        (0..1000).map(|i| api_key::generate(&format!("c{i}"), vec![], vec![], None).unwrap().entry).collect();
    let store = ApiKeys::from_entries("bench", &entries, HeaderName::from_static("x-api-key"), None).unwrap();
    let now = std::time::SystemTime::now();
    let wrong = "rk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    bencher.bench_local(|| store.check(divan::black_box(wrong.as_bytes()), now).is_err());
}

#[divan::bench(args = ["parsed", "unparsed"])]
fn raw_es256_verify(bencher: divan::Bencher, how: &str) {
    use aws_lc_rs::signature::{KeyPair, ParsedPublicKey, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ec =
        aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let msg = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    let sig = ec.sign(&rng, msg).unwrap().as_ref().to_vec();
    let point = ec.public_key().as_ref().to_vec();
    let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).unwrap();
    if how == "parsed" {
        bencher.bench_local(|| parsed.verify_sig(divan::black_box(msg), &sig).is_ok());
    } else {
        bencher.bench_local(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).verify(divan::black_box(msg), &sig).is_ok()
        });
    }
}

/// The floor for RS256: the bare aws-lc check with a pre-parsed 2048-bit key.
#[divan::bench]
fn raw_rs256_verify(bencher: divan::Bencher) {
    use aws_lc_rs::signature::{KeyPair, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let msg = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    let mut sig = vec![0; rsa.public_modulus_len()];
    rsa.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
    let (n, e) = (rsa.public_key().modulus(), rsa.public_key().exponent());
    let parsed =
        RsaPublicKeyComponents { n: n.big_endian_without_leading_zero(), e: e.big_endian_without_leading_zero() }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .unwrap();
    bencher.bench_local(|| parsed.verify_sig(divan::black_box(msg), &sig).is_ok());
}

/// An introspector whose cache already holds `active` and `inactive` answers, filled through a real
/// introspection call to a one-shot local endpoint (the hit path is then measured without I/O).
fn introspector() -> gateway::stages::identify::introspect::Introspector {
    use gateway::stages::identify::introspect::{answer::Rules, Introspector, Settings, Timing};
    use std::io::{Read, Write};
    use std::time::Duration;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&req).contains("token_type_hint") {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            let body = if String::from_utf8_lossy(&req).contains("token=2YotnFZFEjr1zCsicMWpAA") {
                serde_json::json!({ "active": true, "sub": "alice", "scope": "read write", "aud": "orders-api",
                    "exp": now() + 3600 })
                .to_string()
            } else {
                r#"{"active":false}"#.to_string()
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let settings = Settings {
        endpoint: format!("http://{addr}/introspect").parse().unwrap(),
        client_id: "bench".into(),
        client_secret: "secret".into(),
        rules: Rules {
            issuer: None,
            audience: vec!["orders-api".into()],
            required_claims: vec![],
            roles_claim: vec!["roles".into()],
            leeway: 30,
        },
        timing: Timing {
            timeout: Duration::from_secs(2),
            max_ttl: Duration::from_secs(600),
            inactive_ttl: Duration::from_secs(600),
            min_interval: Duration::from_secs(1),
            cache_max: 10_000,
        },
    };
    let tls = gateway::upstream::client_tls(None, None, false).unwrap();
    let intro = Introspector::new(settings, tls).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert!(intro.verify_token("2YotnFZFEjr1zCsicMWpAA").await.is_ok());
        assert!(intro.verify_token("revoked-8xKq2mZ0").await.is_err());
    });
    intro
}

#[divan::bench(args = ["active", "inactive"])]
fn introspection_cached(bencher: divan::Bencher, answer: &str) {
    let intro = introspector();
    let token = if answer == "active" { "2YotnFZFEjr1zCsicMWpAA" } else { "revoked-8xKq2mZ0" };
    bencher.bench_local(|| ready(intro.verify_token(divan::black_box(token))).is_ok());
}
