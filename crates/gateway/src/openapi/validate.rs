//! The request checks of one operation: parameters (read by their declared style, typed, then checked by
//! their compiled schema), the content type against the declared request bodies, and the body — parsed once
//! under the hostile-JSON limits with duplicate keys refused — against its schema, its `readOnly` properties
//! and, on strict routes, properties nobody declared. Rejections name the parameter or the JSON pointer and
//! the failing keyword, never the value.

use super::compile::{In, Media, MediaKind, ObjectStyle, Operation, Param, ParamKind, PartRead, PartSpec, Scalar};
use super::describe;
use super::multipart::multipart_object;
use crate::pipeline::{Code, Verdict};
use crate::stages::inspect::JsonLimits;
use detect::form_decode;
use http::header::{CONTENT_TYPE, COOKIE};
use http::request::Parts;
use serde::de::{DeserializeSeed, Error as _};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// What the body of a request needs, decided from its head.
pub enum BodyPlan<'a> {
    /// Nothing to read (no body, or a media type without a schema).
    Pass,
    /// Read the body whole and check it.
    Check(&'a Media),
    /// Refuse the request.
    Reject(Verdict),
}

fn schema_error(detail: String) -> Verdict {
    Verdict::reject(Code::InspectSchema, detail)
}

/// Headers OpenAPI says parameter definitions must ignore.
const IGNORED_HEADERS: &[&str] = &["accept", "content-type", "authorization"];

/// A checked body: the verdict, and the JSON document when the body was JSON and parsed, so the detection
/// engine can walk it instead of parsing the body a second time.
pub struct CheckedBody {
    pub verdict: Verdict,
    pub json: Option<Value>,
}

impl CheckedBody {
    fn rejected(verdict: Verdict) -> CheckedBody {
        CheckedBody { verdict, json: None }
    }
}

impl Operation {
    /// Path, query, header and cookie parameters; with `strict_query`, a query parameter the operation does not
    /// declare is refused too (cookies and headers the spec does not list are ignored: browsers and proxies
    /// add their own).
    pub fn check_params(&self, parts: &Parts, path_params: &[(&str, &str)], strict_query: bool) -> Verdict {
        let strict_query = strict_query && parts.uri.query().is_some_and(|q| !q.is_empty());
        if self.params.is_empty() && !strict_query {
            return Verdict::Continue;
        }
        let query = parts.uri.query().map(query_pairs).unwrap_or_default();
        if strict_query {
            if let Some((k, _)) = query.iter().find(|(k, _)| !self.declares_query(k)) {
                let k: String = k.chars().take(64).collect();
                return schema_error(format!("query parameter `{k}` is not declared (strict)"));
            }
        }
        let cookies = cookie_pairs(parts);
        for p in &self.params {
            let values: Vec<Cow<'_, str>> = match p.location {
                In::Path => path_params
                    .iter()
                    .filter(|(k, _)| *k == p.name)
                    .map(|(_, v)| Cow::Owned(percent_decode(v)))
                    .collect(),
                In::Query => match &p.kind {
                    ParamKind::Object { style: ObjectStyle::Deep | ObjectStyle::Exploded, .. } => Vec::new(),
                    _ => query.iter().filter(|(k, _)| *k == p.name).map(|(_, v)| Cow::Borrowed(v.as_str())).collect(),
                },
                In::Header if IGNORED_HEADERS.contains(&p.lower.as_str()) => continue,
                In::Header => parts
                    .headers
                    .get_all(p.lower.as_str())
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()))
                    .collect(),
                In::Cookie => cookies.iter().filter(|(k, _)| *k == p.name).map(|(_, v)| Cow::Borrowed(*v)).collect(),
            };
            let value = match (&p.kind, p.location) {
                (ParamKind::Object { style: ObjectStyle::Deep, props }, In::Query) => {
                    deep_object(&query, &p.name, props)
                }
                (ParamKind::Object { style: ObjectStyle::Exploded, props }, In::Query) => {
                    exploded_object(&query, props)
                }
                _ if values.is_empty() => None,
                _ => match read_param(p, &values) {
                    Ok(v) => Some(v),
                    Err(why) => return schema_error(format!("{} parameter `{}`: {why}", p.location.as_str(), p.name)),
                },
            };
            let Some(value) = value else {
                if p.required {
                    return schema_error(format!("missing required {} parameter `{}`", p.location.as_str(), p.name));
                }
                continue;
            };
            if let Err(e) = p.validator.validate(&value) {
                return schema_error(format!("{} parameter `{}`: {}", p.location.as_str(), p.name, describe(&e)));
            }
        }
        Verdict::Continue
    }

    /// Whether a query key belongs to a declared query parameter: its name, `name[prop]` of a `deepObject`, or a
    /// property of an exploded object (any key, when that object lists no properties).
    fn declares_query(&self, key: &str) -> bool {
        self.params.iter().filter(|p| p.location == In::Query).any(|p| match &p.kind {
            ParamKind::Object { style: ObjectStyle::Deep, .. } => {
                key == p.name
                    || key.strip_prefix(p.name.as_str()).is_some_and(|r| r.starts_with('[') && r.ends_with(']'))
            }
            ParamKind::Object { style: ObjectStyle::Exploded, props } => props.is_empty() || props.contains_key(key),
            _ => key == p.name,
        })
    }

    /// What to do with the body, from the `Content-Type` and whether a body was sent.
    pub fn body_plan(&self, parts: &Parts, has_body: bool) -> BodyPlan<'_> {
        let Some(rb) = &self.body else {
            if has_body {
                return BodyPlan::Reject(Verdict::reject(
                    Code::InspectContentType,
                    format!("operation {} declares no request body", self.id),
                ));
            }
            return BodyPlan::Pass;
        };
        if !has_body {
            if rb.required {
                return BodyPlan::Reject(schema_error(format!("operation {} requires a body", self.id)));
            }
            return BodyPlan::Pass;
        }
        let mime = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .unwrap_or_default();
        let major = mime.split('/').next().unwrap_or("");
        let found = rb
            .media
            .iter()
            .find(|m| m.range == mime)
            .or_else(|| rb.media.iter().find(|m| m.range.strip_suffix("/*") == Some(major) && !major.is_empty()))
            .or_else(|| rb.media.iter().find(|m| m.range == "*/*"));
        let Some(media) = found.filter(|_| !mime.is_empty()) else {
            let ct: String = mime.chars().take(64).collect();
            return BodyPlan::Reject(Verdict::reject(
                Code::InspectContentType,
                format!("operation {} does not accept `{ct}`", self.id),
            ));
        };
        // A wildcard range accepts the type; the body is read by what it says it is.
        let kind = if media.range.contains('*') { super::compile::media_kind(&mime) } else { media.kind };
        match (&media.schema, kind) {
            (Some(_), MediaKind::Json | MediaKind::Form | MediaKind::Multipart) => BodyPlan::Check(media),
            _ => BodyPlan::Pass,
        }
    }

    /// Checks a buffered body against the media type's schema. `content_type` is the request's header (the
    /// multipart boundary is read from it).
    pub fn check_body(
        &self,
        media: &Media,
        content_type: &str,
        body: &[u8],
        limits: &JsonLimits,
        strict: bool,
    ) -> CheckedBody {
        self.check_body_parsed(media, content_type, body, limits, strict, None)
    }

    /// [`Operation::check_body`] with the JSON tree of `body` when the caller already parsed it with
    /// [`parse_json`] under the same `limits` (one parse for every check that reads the tree).
    pub fn check_body_parsed(
        &self,
        media: &Media,
        content_type: &str,
        body: &[u8],
        limits: &JsonLimits,
        strict: bool,
        parsed: Option<Value>,
    ) -> CheckedBody {
        let Some(schema) = &media.schema else { return CheckedBody { verdict: Verdict::Continue, json: parsed } };
        let (value, json) = match media.kind {
            MediaKind::Form => match form_object(body, &schema.parts, limits) {
                Ok(v) => (v, false),
                Err(e) => return CheckedBody::rejected(Verdict::reject(Code::InspectMalformedBody, e)),
            },
            MediaKind::Multipart => match multipart_object(content_type, body, schema, limits) {
                Ok(v) => (v, false),
                Err(verdict) => return CheckedBody::rejected(verdict),
            },
            _ => match parsed.map_or_else(|| parse_json(body, limits), Ok) {
                Ok(v) => (v, true),
                Err(e) => {
                    return CheckedBody::rejected(Verdict::reject(
                        Code::InspectMalformedBody,
                        format!("JSON body: {e}"),
                    ))
                }
            },
        };
        let undeclared = || if strict { schema.shapes.first_undeclared(&value) } else { None };
        let verdict = if let Err(e) = schema.validator.validate(&value) {
            schema_error(format!("body {}", describe(&e)))
        } else if let Some(pointer) = undeclared() {
            schema_error(format!("body `{pointer}` is not declared (mass assignment)"))
        } else {
            Verdict::Continue
        };
        CheckedBody { verdict, json: json.then_some(value) }
    }
}

fn read_param(p: &Param, values: &[Cow<'_, str>]) -> Result<Value, &'static str> {
    let one = || -> Result<&str, &'static str> {
        match values {
            [v] => Ok(v.as_ref()),
            _ => Err("given more than once"),
        }
    };
    match &p.kind {
        ParamKind::Scalar(s) => {
            let v = one()?;
            if v.is_empty() && !p.allow_empty && p.location == In::Query && *s != Scalar::String {
                return Err("empty");
            }
            Ok(typed(v, *s))
        }
        ParamKind::Array { item, delim, explode } => {
            let list: Vec<Value> = if *explode {
                values.iter().map(|v| typed(v, *item)).collect()
            } else {
                let v = one()?;
                if v.is_empty() {
                    Vec::new()
                } else {
                    v.split(*delim).map(|x| typed(x, *item)).collect()
                }
            };
            Ok(Value::Array(list))
        }
        ParamKind::Object { props, .. } => {
            // `x,1,y,2`: names and values alternate.
            let v = one()?;
            let parts: Vec<&str> = v.split(',').collect();
            if !parts.len().is_multiple_of(2) {
                return Err("not a list of name,value pairs");
            }
            let mut o = Map::new();
            for kv in parts.chunks(2) {
                let s = props.get(kv[0]).copied().unwrap_or(Scalar::String);
                o.insert(kv[0].to_string(), typed(kv[1], s));
            }
            Ok(Value::Object(o))
        }
        ParamKind::Json => serde_json::from_str(one()?).map_err(|_| "not valid JSON"),
    }
}

/// Text → the JSON the schema expects; text that does not parse stays a string and fails the type check.
pub(super) fn typed(v: &str, s: Scalar) -> Value {
    match s {
        Scalar::String => Value::String(v.to_string()),
        Scalar::Integer => match (v.parse::<i64>(), v.parse::<u64>()) {
            (Ok(n), _) => Value::Number(n.into()),
            (_, Ok(n)) => Value::Number(n.into()),
            _ => Value::String(v.to_string()),
        },
        Scalar::Number => match v.parse::<i64>() {
            Ok(n) => Value::Number(n.into()),
            Err(_) => v
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && !v.trim().is_empty() && v.trim() == v)
                .and_then(Number::from_f64)
                .map_or_else(|| Value::String(v.to_string()), Value::Number),
        },
        Scalar::Boolean => match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(v.to_string()),
        },
    }
}

fn deep_object(
    query: &[(String, String)],
    name: &str,
    props: &std::collections::HashMap<String, Scalar>,
) -> Option<Value> {
    let mut o = Map::new();
    for (k, v) in query {
        let Some(inner) = k.strip_prefix(name).and_then(|r| r.strip_prefix('[')).and_then(|r| r.strip_suffix(']'))
        else {
            continue;
        };
        let s = props.get(inner).copied().unwrap_or(Scalar::String);
        o.insert(inner.to_string(), typed(v, s));
    }
    (!o.is_empty()).then_some(Value::Object(o))
}

fn exploded_object(query: &[(String, String)], props: &std::collections::HashMap<String, Scalar>) -> Option<Value> {
    let mut o = Map::new();
    for (k, v) in query {
        if let Some(s) = props.get(k) {
            o.insert(k.clone(), typed(v, *s));
        }
    }
    (!o.is_empty()).then_some(Value::Object(o))
}

/// `a=b&c=d`, percent- and `+`-decoded.
fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                String::from_utf8_lossy(&form_decode(k.as_bytes())).into_owned(),
                String::from_utf8_lossy(&form_decode(v.as_bytes())).into_owned(),
            )
        })
        .collect()
}

fn cookie_pairs(parts: &Parts) -> Vec<(&str, &str)> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .collect()
}

fn percent_decode(s: &str) -> String {
    // Path segments: `%XX` only (`+` is a literal plus in a path).
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A form body as an object: each value read as its property's type; an array property collects its values
/// (one or several), another repeated name becomes an array (and fails its schema). The hostile-JSON limits
/// apply: pairs count as object keys, values as strings.
fn form_object(
    body: &[u8],
    props: &std::collections::HashMap<String, PartSpec>,
    limits: &JsonLimits,
) -> Result<Value, String> {
    let text = String::from_utf8_lossy(body);
    let mut o = Map::new();
    for (i, (k, v)) in query_pairs(&text).into_iter().enumerate() {
        if i >= limits.max_object_keys {
            return Err(format!("form body: more than {} fields", limits.max_object_keys));
        }
        if v.len() > limits.max_string_bytes || k.len() > limits.max_string_bytes {
            return Err(format!("form body: a field of more than {} bytes", limits.max_string_bytes));
        }
        let spec = props.get(&k).copied();
        let value = match spec.map(|p| p.read) {
            Some(PartRead::Text(s)) => typed(&v, s),
            _ => Value::String(v),
        };
        push_field(&mut o, k, value, spec.is_some_and(|p| p.list));
    }
    Ok(Value::Object(o))
}

/// Adds a field to a form-like object: a list property gathers its values in an array; another repeated name
/// becomes an array of its values too.
pub(super) fn push_field(o: &mut Map<String, Value>, k: String, value: Value, list: bool) {
    match o.get_mut(&k) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None if list => {
            o.insert(k, Value::Array(vec![value]));
        }
        None => {
            o.insert(k, value);
        }
    }
}

/// Parses JSON into a tree under the hostile-JSON limits: depth, string bytes, array items, object keys;
/// duplicate keys and non-finite numbers refused, trailing bytes refused.
pub fn parse_json(body: &[u8], limits: &JsonLimits) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = Tree { limits, depth: 0 }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

struct Tree<'l> {
    limits: &'l JsonLimits,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Tree<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Tree<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number out of range"))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        if v.len() > self.limits.max_string_bytes {
            return Err(E::custom(format!("a string of {} bytes", v.len())));
        }
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        if v.len() > self.limits.max_string_bytes {
            return Err(E::custom(format!("a string of {} bytes", v.len())));
        }
        Ok(Value::String(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth >= self.limits.max_depth {
            return Err(A::Error::custom(format!("nested deeper than {}", self.limits.max_depth)));
        }
        let mut list = Vec::new();
        while let Some(v) = seq.next_element_seed(Tree { limits: self.limits, depth: self.depth + 1 })? {
            if list.len() >= self.limits.max_array_items {
                return Err(A::Error::custom(format!("an array of more than {} items", self.limits.max_array_items)));
            }
            list.push(v);
        }
        Ok(Value::Array(list))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth >= self.limits.max_depth {
            return Err(A::Error::custom(format!("nested deeper than {}", self.limits.max_depth)));
        }
        let mut o = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if o.len() >= self.limits.max_object_keys {
                return Err(A::Error::custom(format!("an object of more than {} keys", self.limits.max_object_keys)));
            }
            if key.len() > self.limits.max_string_bytes {
                return Err(A::Error::custom(format!("a key of {} bytes", key.len())));
            }
            let v = map.next_value_seed(Tree { limits: self.limits, depth: self.depth + 1 })?;
            if o.contains_key(&key) {
                // Parsers disagree on which duplicate wins; checking one and forwarding both is a bypass.
                let shown: String = key.chars().take(64).collect();
                return Err(A::Error::custom(format!("duplicate key `{shown}`")));
            }
            o.insert(key, v);
        }
        Ok(Value::Object(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_json_is_refused_by_the_tree_parser() {
        let l = JsonLimits::default();
        assert!(parse_json(br#"{"a":[1,{"b":"c"}],"d":null,"e":1.5}"#, &l).is_ok());
        assert!(parse_json(br#"{"role":"user","role":"admin"}"#, &l).unwrap_err().contains("duplicate key"));
        assert!(parse_json(br#"{"n":1e999}"#, &l).is_err());
        assert!(parse_json(br#"{"a":1} x"#, &l).is_err());
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        assert!(parse_json(deep.as_bytes(), &l).unwrap_err().contains("deeper"));
        let tight = JsonLimits { max_depth: 4, max_string_bytes: 8, max_array_items: 3, max_object_keys: 2 };
        assert!(parse_json(br#"[1,2,3,4]"#, &tight).is_err());
        assert!(parse_json(br#"{"a":1,"b":2,"c":3}"#, &tight).is_err());
        assert!(parse_json(br#""123456789""#, &tight).is_err());
        assert!(
            parse_json(br#"{"k\u0061":1,"ka":2}"#, &l).unwrap_err().contains("duplicate"),
            "escaped duplicates too"
        );
    }

    #[test]
    fn parameter_text_is_typed_before_the_schema_sees_it() {
        assert_eq!(typed("42", Scalar::Integer), Value::from(42));
        assert_eq!(typed("4x", Scalar::Integer), Value::from("4x"));
        assert_eq!(typed("1.5", Scalar::Number), Value::from(1.5));
        assert_eq!(typed("NaN", Scalar::Number), Value::from("NaN"));
        assert_eq!(typed("true", Scalar::Boolean), Value::Bool(true));
        assert_eq!(
            query_pairs("a=1&b=x+y%21&c"),
            vec![("a".into(), "1".into()), ("b".into(), "x y!".into()), ("c".into(), "".into())]
        );
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
