//! The redaction engine on a 2 KB JSON API response: clean (the common case: nothing to change), with secrets,
//! as text, and through a parsed `serde_json::Value` for comparison. `cargo bench -p rampart-gateway --bench redact`

use divan::{black_box, Bencher};
use gateway::stages::respond::redact::{Redactor, Report};

fn main() {
    divan::main();
}

/// A list response of ~2 KB: ids, names, emails, dates, amounts, SKUs, free text — no secrets.
fn clean_2k() -> String {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        items.push(serde_json::json!({
            "id": format!("usr_{i:05}x8Kq"), "name": "Ada Lovelace", "email": format!("ada{i}@example.com"),
            "created": "2024-01-15T12:30:00Z", "amount": 1999 + i, "currency": "EUR", "sku": "KB-104/US",
            "note": "Delivered to the front desk; signed by J. Smith (reception).", "active": true
        }));
        let doc = serde_json::json!({ "items": items, "total": i + 1, "next_page_token": "c2Vjb25kLXBhZ2U" });
        let s = doc.to_string();
        if s.len() >= 2000 {
            return s;
        }
        i += 1;
    }
}

/// The same with a card number, a JWT, a bcrypt hash and a password field in it.
fn dirty_2k() -> String {
    clean_2k()
        .replacen("Ada Lovelace", "4111 1111 1111 1111", 1)
        .replacen("KB-104/US", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2ln", 1)
        .replacen("\"active\":true", "\"password\":\"$2b$12$KIXQeH0x9yG3.3rXbQp0yOkUq3O3kYQm0pWl1n6t3yqM4uVv6h9eW\"", 1)
}

#[divan::bench]
fn json_2k_clean(b: Bencher) {
    let r = Redactor::default();
    let body = clean_2k();
    b.counter(divan::counter::BytesCount::new(body.len())).bench(|| {
        let mut rep = Report::default();
        black_box(r.redact_json(black_box(body.as_bytes()), &mut rep).ok());
    });
}

#[divan::bench]
fn json_2k_with_secrets(b: Bencher) {
    let r = Redactor::default();
    let body = dirty_2k();
    b.counter(divan::counter::BytesCount::new(body.len())).bench(|| {
        let mut rep = Report::default();
        black_box(r.redact_json(black_box(body.as_bytes()), &mut rep).ok());
    });
}

#[divan::bench]
fn text_2k_clean(b: Bencher) {
    let r = Redactor::default();
    let body = clean_2k();
    b.counter(divan::counter::BytesCount::new(body.len())).bench(|| {
        let mut rep = Report::default();
        black_box(r.redact_text(black_box(body.as_bytes()), &mut rep));
    });
}

/// For comparison: parse into a `Value`, redact in place (what a pass sharing the schema filter does).
#[divan::bench]
fn json_2k_clean_via_value(b: Bencher) {
    let r = Redactor::default();
    let body = clean_2k();
    b.counter(divan::counter::BytesCount::new(body.len())).bench(|| {
        let mut v: serde_json::Value = serde_json::from_slice(black_box(body.as_bytes())).unwrap_or_default();
        let mut rep = Report::default();
        r.redact_value(&mut v, &mut rep);
        black_box(v);
    });
}

/// Adversarial input: 64 KiB of near-misses for every detector.
#[divan::bench(args = ["4111 ", "$2b$12$", "eyJhbGciOi.", "-----BEGIN ", "AKIA", "password=", "GB82 "])]
fn adversarial_64k(b: Bencher, unit: &str) {
    let r = Redactor::default();
    let body = unit.repeat(65536 / unit.len());
    b.counter(divan::counter::BytesCount::new(body.len())).bench(|| {
        let mut rep = Report::default();
        black_box(r.redact_text(black_box(body.as_bytes()), &mut rep));
    });
}
