//! OpenAPI schema objects → self-contained JSON Schema 2020-12 documents, one per use (a parameter, a request
//! body, a response body), ready for the `jsonschema` compiler:
//! - every `$ref` (inside the document or to a local file) becomes `#/$defs/…` of the output, each target
//!   converted once, so reference cycles stay cycles instead of recursing forever;
//! - OpenAPI 3.0 dialect is rewritten: `nullable`, boolean `exclusiveMinimum`/`exclusiveMaximum`;
//! - direction: in a request a `readOnly` property must be absent (its schema becomes `false` and it leaves
//!   `required`); in a response a `writeOnly` property leaves `required` (it is removed from responses anyway);
//! - integers get the bounds of their format (`int32`, `int64`; `int64` when none is given), so a number that
//!   would overflow the upstream's integer type is refused here.

use super::load::{push_token, Docs, Loc};
use super::SpecError;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// Which way a schema's data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// Most distinct `$ref` targets one converted schema may pull in.
const MAX_DEFS: usize = 10_000;
/// Deepest nesting of inline schemas converted.
const MAX_NESTING: usize = 128;
/// Prefix of the `$defs` names the converter creates, distinct from any the author wrote.
const DEF_PREFIX: &str = "rampart.";

/// Keywords whose value is one subschema.
const ONE: &[&str] = &[
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
];
/// Keywords whose value is a list of subschemas.
const LIST: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const MAP: &[&str] = &["patternProperties", "dependentSchemas", "$defs", "definitions"];
/// OpenAPI-only or location-changing keywords that must not reach the JSON Schema compiler.
const DROP: &[&str] =
    &["$id", "$schema", "$anchor", "$dynamicAnchor", "discriminator", "xml", "externalDocs", "example"];

struct Converter<'d> {
    docs: &'d mut Docs,
    v30: bool,
    dir: Direction,
    names: BTreeMap<Loc, String>,
    queue: VecDeque<(Loc, String)>,
}

/// Converts the schema at `loc` (inline or a `$ref`) into a self-contained JSON Schema 2020-12 document.
pub fn convert(docs: &mut Docs, loc: &Loc, v30: bool, dir: Direction) -> Result<Value, SpecError> {
    let mut c = Converter { docs, v30, dir, names: BTreeMap::new(), queue: VecDeque::new() };
    let root_value = c.docs.get(loc)?.clone();
    let mut root = c.schema(loc, &root_value, 0)?;
    let mut defs = Map::new();
    while let Some((target, name)) = c.queue.pop_front() {
        let v = c.docs.get(&target)?.clone();
        let converted = c.schema(&target, &v, 0)?;
        defs.insert(name, converted);
    }
    match &mut root {
        Value::Object(o) => {
            if !defs.is_empty() {
                let slot = o.entry("$defs").or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(existing) = slot {
                    existing.extend(defs);
                }
            }
            o.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        }
        Value::Bool(b) => {
            let keep = *b;
            let mut o = Map::new();
            if !keep {
                o.insert("not".into(), json!({}));
            }
            if !defs.is_empty() {
                o.insert("$defs".into(), Value::Object(defs));
            }
            root = Value::Object(o);
        }
        _ => {}
    }
    Ok(root)
}

/// Whether the schema at `loc` (after `$ref`s) carries `flag: true` (`readOnly`, `writeOnly`).
pub fn has_flag(docs: &mut Docs, loc: &Loc, flag: &str) -> bool {
    let mut loc = loc.clone();
    for _ in 0..32 {
        let Ok(v) = docs.get(&loc) else { return false };
        if v.get(flag).and_then(Value::as_bool) == Some(true) {
            return true;
        }
        let Some(r) = v.get("$ref").and_then(Value::as_str).map(str::to_string) else { return false };
        match docs.resolve(&loc, &r) {
            Ok(next) => loc = next,
            Err(_) => return false,
        }
    }
    false
}

impl Converter<'_> {
    fn def_ref(&mut self, from: &Loc, reference: &str) -> Result<Value, SpecError> {
        let target = self.docs.resolve(from, reference)?;
        let name = match self.names.get(&target) {
            Some(n) => n.clone(),
            None => {
                if self.names.len() >= MAX_DEFS {
                    return Err(SpecError::new(self.docs.path(from.doc), &from.pointer, "too many `$ref` targets"));
                }
                let n = format!("{DEF_PREFIX}{}", self.names.len());
                self.names.insert(target.clone(), n.clone());
                self.queue.push_back((target, n.clone()));
                n
            }
        };
        Ok(json!({ "$ref": format!("#/$defs/{name}") }))
    }

    fn schema(&mut self, loc: &Loc, v: &Value, depth: usize) -> Result<Value, SpecError> {
        if depth > MAX_NESTING {
            return Err(SpecError::new(self.docs.path(loc.doc), &loc.pointer, "schema nested too deeply"));
        }
        let obj = match v {
            Value::Bool(_) => return Ok(v.clone()),
            Value::Object(o) => o,
            _ => {
                return Err(SpecError::new(self.docs.path(loc.doc), &loc.pointer, "a schema must be an object"));
            }
        };
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            let reference = self.def_ref(loc, r)?;
            // 3.0: siblings of `$ref` are ignored; 3.1 (JSON Schema 2020-12): they apply alongside it.
            if self.v30 || obj.len() == 1 {
                return Ok(reference);
            }
            let mut rest = obj.clone();
            rest.remove("$ref");
            let sibling = self.schema(loc, &Value::Object(rest), depth + 1)?;
            return Ok(json!({ "allOf": [reference, sibling] }));
        }
        let mut out = Map::new();
        let mut required: Option<Vec<Value>> = obj.get("required").and_then(Value::as_array).cloned();
        for (k, val) in obj {
            let key = k.as_str();
            let here = Loc { doc: loc.doc, pointer: push_token(&loc.pointer, key) };
            if DROP.contains(&key) || key == "required" || key == "nullable" {
                continue;
            }
            if key == "properties" {
                let Some(props) = val.as_object() else { continue };
                let mut conv = Map::new();
                for (name, ps) in props {
                    let ploc = Loc { doc: here.doc, pointer: push_token(&here.pointer, name) };
                    let hidden = match self.dir {
                        Direction::Request => has_flag(self.docs, &ploc, "readOnly"),
                        Direction::Response => has_flag(self.docs, &ploc, "writeOnly"),
                    };
                    if hidden {
                        if let Some(req) = required.as_mut() {
                            req.retain(|r| r.as_str() != Some(name));
                        }
                    }
                    let converted = if hidden && self.dir == Direction::Request {
                        Value::Bool(false)
                    } else {
                        self.schema(&ploc, ps, depth + 1)?
                    };
                    conv.insert(name.clone(), converted);
                }
                out.insert("properties".into(), Value::Object(conv));
            } else if ONE.contains(&key) && (val.is_object() || val.is_boolean()) {
                out.insert(k.clone(), self.schema(&here, val, depth + 1)?);
            } else if LIST.contains(&key) && val.is_array() {
                let mut list = Vec::new();
                for (i, s) in val.as_array().into_iter().flatten().enumerate() {
                    let iloc = Loc { doc: here.doc, pointer: push_token(&here.pointer, &i.to_string()) };
                    list.push(self.schema(&iloc, s, depth + 1)?);
                }
                out.insert(k.clone(), Value::Array(list));
            } else if MAP.contains(&key) && val.is_object() {
                let mut m = Map::new();
                for (name, s) in val.as_object().into_iter().flatten() {
                    let nloc = Loc { doc: here.doc, pointer: push_token(&here.pointer, name) };
                    m.insert(name.clone(), self.schema(&nloc, s, depth + 1)?);
                }
                out.insert(if key == "definitions" { "$defs".into() } else { k.clone() }, Value::Object(m));
            } else {
                out.insert(k.clone(), val.clone());
            }
        }
        if let Some(req) = required {
            if !req.is_empty() {
                out.insert("required".into(), Value::Array(req));
            }
        }
        if self.v30 {
            rewrite_30(obj, &mut out);
        }
        integer_bounds(&mut out);
        Ok(Value::Object(out))
    }
}

/// OpenAPI 3.0's differences from JSON Schema: `nullable: true` adds `null` to `type` (and `enum`), and
/// `exclusiveMinimum`/`exclusiveMaximum` are booleans modifying `minimum`/`maximum`.
fn rewrite_30(src: &Map<String, Value>, out: &mut Map<String, Value>) {
    if src.get("nullable").and_then(Value::as_bool) == Some(true) {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(e)) = out.get_mut("enum") {
            if !e.contains(&Value::Null) {
                e.push(Value::Null);
            }
        }
    }
    for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        match out.get(flag) {
            Some(Value::Bool(true)) => {
                out.remove(flag);
                if let Some(b) = out.remove(bound) {
                    out.insert(flag.into(), b);
                }
            }
            Some(Value::Bool(false)) => {
                out.remove(flag);
            }
            _ => {}
        }
    }
}

/// Adds the range of the integer format (`int32`; `int64` by default) unless the author's bounds are tighter.
fn integer_bounds(out: &mut Map<String, Value>) {
    let is_integer = match out.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    };
    if !is_integer {
        return;
    }
    let (lo, hi): (i64, i64) = match out.get("format").and_then(Value::as_str) {
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    };
    let bounds = json!({ "minimum": lo, "maximum": hi });
    match out.get_mut("allOf") {
        Some(Value::Array(list)) => list.push(bounds),
        _ => {
            out.insert("allOf".into(), json!([bounds]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(dir: &std::path::Path, files: &[(&str, &str)]) -> Docs {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Docs::open(&dir.join(files[0].0)).unwrap()
    }

    fn tmp() -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("rampart-oas-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn valid(schema: &Value, instance: Value) -> bool {
        crate::openapi::validator(schema).unwrap().is_valid(&instance)
    }

    #[test]
    fn refs_local_and_to_files_with_cycles() {
        let dir = tmp();
        let mut d = docs(
            &dir,
            &[
                (
                    "api.yaml",
                    "openapi: 3.1.0\ncomponents:\n  schemas:\n    Node:\n      type: object\n      properties:\n        name: { type: string }\n        children: { type: array, items: { $ref: '#/components/schemas/Node' } }\n        owner: { $ref: 'common.yaml#/User' }\n",
                ),
                ("common.yaml", "User:\n  type: object\n  required: [id]\n  properties:\n    id: { type: integer, readOnly: true }\n    email: { type: string, format: email }\n"),
            ],
        );
        let loc = Loc { doc: 0, pointer: "/components/schemas/Node".into() };
        let s = convert(&mut d, &loc, false, Direction::Request).unwrap();
        assert!(valid(&s, json!({"name":"a","children":[{"name":"b","children":[]}],"owner":{"email":"a@b.example"}})));
        assert!(!valid(&s, json!({"children":[{"name":7}]})), "the cycle is followed");
        assert!(!valid(&s, json!({"owner":{"id":1}})), "readOnly in a request is refused");
        assert!(!valid(&s, json!({"owner":{"email":"not an email"}})), "formats are checked");
        let s = convert(&mut d, &loc, false, Direction::Response).unwrap();
        assert!(!valid(&s, json!({"owner":{}})), "readOnly stays required in a response");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn openapi_30_nullable_and_exclusive_bounds() {
        let dir = tmp();
        let mut d = docs(
            &dir,
            &[(
                "api.yaml",
                "openapi: 3.0.3\nx:\n  type: object\n  properties:\n    n: { type: integer, nullable: true, minimum: 0, exclusiveMinimum: true }\n    c: { type: string, enum: [red, blue], nullable: true }\n",
            )],
        );
        let s = convert(&mut d, &Loc { doc: 0, pointer: "/x".into() }, true, Direction::Request).unwrap();
        assert!(valid(&s, json!({"n": null, "c": null})));
        assert!(valid(&s, json!({"n": 1, "c": "red"})));
        assert!(!valid(&s, json!({"n": 0})), "exclusiveMinimum: true excludes the minimum");
        assert!(!valid(&s, json!({"c": "green"})));
        assert!(!valid(&s, json!({"n": 1.0e20})), "an integer past int64 overflows");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn openapi_31_type_arrays_and_ref_siblings() {
        let dir = tmp();
        let mut d = docs(
            &dir,
            &[(
                "api.yaml",
                "openapi: 3.1.0\nA: { type: [string, 'null'], maxLength: 3 }\nB: { $ref: '#/A', minLength: 2 }\nC: { type: integer, format: int32 }\n",
            )],
        );
        let a = convert(&mut d, &Loc { doc: 0, pointer: "/A".into() }, false, Direction::Request).unwrap();
        assert!(valid(&a, json!(null)) && valid(&a, json!("abc")) && !valid(&a, json!("abcd")));
        let b = convert(&mut d, &Loc { doc: 0, pointer: "/B".into() }, false, Direction::Request).unwrap();
        assert!(!valid(&b, json!("a")) && valid(&b, json!("ab")));
        let c = convert(&mut d, &Loc { doc: 0, pointer: "/C".into() }, false, Direction::Request).unwrap();
        assert!(valid(&c, json!(2147483647)) && !valid(&c, json!(2147483648u64)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_refs_name_the_file_and_pointer() {
        let dir = tmp();
        let mut d = docs(
            &dir,
            &[("api.yaml", "openapi: 3.1.0\nA: { $ref: '#/Missing' }\nB: { $ref: 'https://evil.example/x.json' }\n")],
        );
        let e = convert(&mut d, &Loc { doc: 0, pointer: "/A".into() }, false, Direction::Request).unwrap_err();
        assert!(e.to_string().contains("api.yaml#/A") && e.to_string().contains("names nothing"), "{e}");
        let e = convert(&mut d, &Loc { doc: 0, pointer: "/B".into() }, false, Direction::Request).unwrap_err();
        assert!(e.to_string().contains("outside the local files"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
