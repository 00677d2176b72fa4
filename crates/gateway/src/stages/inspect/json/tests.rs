//! The fast walk against the serde walk: on random, mutated and hostile bodies, under loose and tight limits,
//! `scan` (fast walk, serde walk where it gives up) must give exactly the serde walk's verdict, detail included.

use super::*;
use crate::stages::inspect::JsonLimits;
use detect::{Detector, Level};

fn policy(json: JsonLimits) -> InspectPolicy {
    InspectPolicy {
        detector: Detector::new(Level::L1),
        headers: Vec::new(),
        exclude: Default::default(),
        max_body_bytes: 1 << 20,
        json,
    }
}

fn policies() -> Vec<InspectPolicy> {
    vec![
        policy(JsonLimits::default()),
        policy(JsonLimits { max_depth: 3, max_string_bytes: 12, max_array_items: 3, max_object_keys: 3 }),
        policy(JsonLimits { max_depth: 128, ..JsonLimits::default() }),
    ]
}

/// The serde walk alone, as `scan` would call it.
fn reference(p: &InspectPolicy, body: &[u8]) -> String {
    let verdict = match std::str::from_utf8(body) {
        Ok(text) => serde_walk::walk(p, text, &mut CleanKeys::new()),
        Err(_) => scan(p, body),
    };
    format!("{verdict:?}")
}

/// Which walker answered, for the test's own coverage check.
fn fast_answered(p: &InspectPolicy, body: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(body).ok()?;
    match fast::walk(p, text, &mut CleanKeys::new()) {
        fast::Outcome::Clean => Some(false),
        fast::Outcome::Found(_) => Some(true),
        fast::Outcome::GaveUp => None,
    }
}

const STRINGS: &[&str] = &[
    "",
    "Ada",
    "Siobhán O'Connor",
    "12 Merrion Sq N",
    "KB-101/US",
    "union was a great select",
    "' OR '1'='1' --",
    "<img src=x onerror=alert(1)>",
    "${jndi:ldap://x.example/a}",
    "../../../etc/passwd",
    "日本語のテキスト",
    "a\\nb",
    "quote \\\" inside",
    "\\u00e9t\\u00E9",
    "\\ud83d\\ude00 smile",
    "\\ud83d alone",
    "\\ude00 trailing",
    "\\ud83d\\u0041",
    "\\x41",
    "\\u12",
    "tab\there",
    "nul\u{0}byte",
    "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e",
    "\\/\\b\\f\\r\\t\\\\",
    "1' UNION SELECT password FROM users--",
];

const KEYS: &[&str] =
    &["id", "name", "email", "sku", "qty", "note", "a", "b", "\\u0061", "$where", "__proto__", "", "k\\\"q", "tags"];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "42",
    "-17",
    "1.5",
    "89.90",
    "01",
    "1.",
    ".5",
    "-",
    "1e5",
    "1E400",
    "1e-400",
    "12345678901234567",
    "123456789012345678",
    "18446744073709551616",
    "-9223372036854775809",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "99999999999999999999999999999999.5",
    "0.000000000000000000000000001",
    "+1",
    "NaN",
    "Infinity",
];

const WS: &[&str] = &["", "", "", " ", "\n  ", "\t", "\r\n", "\u{c}", "\u{a0}"];

fn pick<'a>(rng: &mut fastrand::Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.usize(..xs.len())]
}

fn value(rng: &mut fastrand::Rng, out: &mut String, depth: usize) {
    out.push_str(pick(rng, WS));
    match rng.u8(..if depth > 5 { 6 } else { 9 }) {
        0..=2 => {
            out.push('"');
            out.push_str(pick(rng, STRINGS));
            out.push('"');
        }
        3 => out.push_str(pick(rng, NUMBERS)),
        4 => out.push_str(pick(rng, &["true", "false", "null", "tru", "nul", "falsey"])),
        5 => {
            out.push('"');
            for _ in 0..rng.usize(0..40) {
                out.push(rng.choice(['a', 'é', ' ', '\'', '<', '"', '\\', '\u{1}', '/', '-', 'Z']).unwrap_or('a'));
            }
            out.push('"');
        }
        6 | 7 => {
            out.push('{');
            let n = rng.usize(0..6);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(pick(rng, WS));
                out.push('"');
                out.push_str(pick(rng, KEYS));
                out.push('"');
                out.push_str(pick(rng, WS));
                out.push(':');
                value(rng, out, depth + 1);
            }
            out.push_str(pick(rng, WS));
            out.push('}');
        }
        _ => {
            out.push('[');
            let n = rng.usize(0..6);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                value(rng, out, depth + 1);
            }
            out.push(']');
        }
    }
    out.push_str(pick(rng, WS));
}

/// A byte-level change: delete, insert a JSON-significant or odd byte, duplicate a span, truncate.
fn mutate(rng: &mut fastrand::Rng, body: &mut Vec<u8>) {
    if body.is_empty() {
        return;
    }
    let at = rng.usize(..body.len());
    match rng.u8(..5) {
        0 => {
            body.remove(at);
        }
        1 => body.insert(at, *rng.choice(b"{}[]\",:\\u0 1e-.tx\x00\x7f\xc3\xff").unwrap_or(&b'x')),
        2 => {
            let end = (at + rng.usize(1..12)).min(body.len());
            let span = body[at..end].to_vec();
            body.splice(at..at, span);
        }
        3 => body.truncate(at),
        _ => body[at] = *rng.choice(b"\"\\,:}]0a").unwrap_or(&b'x'),
    }
}

#[test]
fn the_fast_walk_answers_as_the_serde_walk_does() {
    let mut rng = fastrand::Rng::with_seed(0x5ca1ab1e);
    let policies = policies();
    let (mut bodies, mut fast_clean, mut fast_found) = (0usize, 0usize, 0usize);
    for round in 0..12_000 {
        let mut body = String::new();
        value(&mut rng, &mut body, 0);
        let mut body = body.into_bytes();
        if round % 2 == 1 {
            for _ in 0..rng.usize(1..4) {
                mutate(&mut rng, &mut body);
            }
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        for p in &policies {
            bodies += 1;
            let got = format!("{:?}", scan(p, &body));
            assert_eq!(got, reference(p, &body), "body: {}", String::from_utf8_lossy(&body));
            match fast_answered(p, &body) {
                Some(true) => fast_found += 1,
                Some(false) => fast_clean += 1,
                None => {}
            }
        }
    }
    // The fast walk must have answered often, both ways, for the comparison to mean something.
    assert!(
        fast_clean > bodies / 10 && fast_found > bodies / 20,
        "{bodies} bodies: {fast_clean} clean, {fast_found} found"
    );
}

/// Hand-picked edges: nesting at serde_json's own depth limit, limits met exactly and passed, escapes that only
/// some readers accept, duplicates spelled with escapes, findings before and after a syntax error.
#[test]
fn edges_agree() {
    let mut cases: Vec<String> = vec![
        r#"{"a":1,"a":2}"#.into(),
        r#"{"a":1,"\u0061":2}"#.into(),
        r#"{"$where":1,"$where":2}"#.into(),
        r#"{"$where" 1}"#.into(),
        r#"{"a":"<script>alert(1)</script>" x}"#.into(),
        r#"{"a":1 x "b":"<script>alert(1)</script>"}"#.into(),
        r#"["\ud800"]"#.into(),
        r#"["\udc00"]"#.into(),
        r#"["\ud800\ud800"]"#.into(),
        r#"["\ud800\udc00"]"#.into(),
        r#"["\u0000"]"#.into(),
        r#"["\uD83D\uDE00"]"#.into(),
        "[\"a\u{7f}b\"]".into(),
        "[1,]".into(),
        "[,1]".into(),
        r#"{"a":1,}"#.into(),
        r#"{,"a":1}"#.into(),
        "\u{feff}{}".into(),
        "{} ".into(),
        "{} x".into(),
        "-0".into(),
        "\"lone\"".into(),
        "\"' OR '1'='1' --\"".into(),
        "[1,2,3]".into(),
        "[1,2,3,4]".into(),
        r#"{"a":1,"b":2,"c":3}"#.into(),
        r#"{"a":1,"b":2,"c":3,"d":4}"#.into(),
        r#"{"a":1,"b":2,"c":3,"$where":4}"#.into(),
        r#"{"s":"123456789012"}"#.into(),
        r#"{"s":"1234567890123"}"#.into(),
        r#"{"s":"12345678901\n"}"#.into(),
        r#"{"s":"1234567890\n\n"}"#.into(),
    ];
    for n in [2, 3, 4, 126, 127, 128, 129] {
        cases.push(format!("{}{}", "[".repeat(n), "]".repeat(n)));
        cases.push(format!("{}\"x\"{}", "{\"k\":".repeat(n), "}".repeat(n)));
    }
    for n in [SMALL_OBJECT, SMALL_OBJECT + 1, 40] {
        let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":1")).collect();
        cases.push(format!("{{{}}}", keys.join(",")));
        cases.push(format!("{{{},\"k{}\":2}}", keys.join(","), n / 2));
        cases.push(format!("{{{},\"\\u006b0\":2}}", keys.join(",")));
    }
    for p in policies() {
        for case in &cases {
            assert_eq!(format!("{:?}", scan(&p, case.as_bytes())), reference(&p, case.as_bytes()), "body: {case}");
        }
    }
}

#[test]
fn plain_run_stops_at_the_first_special_byte() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let len = rng.usize(0..40);
        let b: Vec<u8> = (0..len).map(|_| *rng.choice(b"ab \"\\\x01\x1f\x20\x7f\x80\xff").unwrap_or(&b'a')).collect();
        let from = rng.usize(0..=len);
        let want = (from..len).find(|&i| b[i] == b'"' || b[i] == b'\\' || b[i] < 0x20).unwrap_or(len);
        assert_eq!(fast::plain_run(&b, from), want, "{b:?} from {from}");
    }
}
