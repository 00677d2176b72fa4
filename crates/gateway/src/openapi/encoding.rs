//! OpenAPI `encoding` objects of `multipart/form-data` bodies: which content types a part may declare and which
//! headers it must carry. Compiled at load next to the body schema; checked per part by the multipart reader of
//! the validator ([`super::multipart`]).
//!
//! A part's type is what its `Content-Type` header says; a part without one is `text/plain` (RFC 7578 §4.4).
//! With an explicit `contentType` (a comma-separated list of media types or ranges such as `image/*`) a part of
//! another type is refused. Without one, OpenAPI's default for the property applies to parts that declare a
//! type: `application/json` (or `*+json`) for objects and arrays, `text/plain` for primitives; a part that
//! declares none is read by that default (clients rarely label text fields). A file property (`format: binary`,
//! `contentMediaType`) without an `encoding` takes any type: its default, `application/octet-stream`, means
//! arbitrary bytes, and browsers label uploads by their file type.

use super::compile::{PartRead, Scalar};
use super::load::{push_token, Docs, Loc};
use super::schema::{convert, Direction};
use super::validate::typed;
use super::{describe, validator, SpecError};
use crate::multipart::Part;
use crate::pipeline::{Code, Verdict};
use serde_json::Value;
use std::collections::HashMap;

/// The `encoding` entry of one multipart property.
pub struct PartEncoding {
    /// Media types or ranges the part may declare (lower-case, parameters dropped); empty: the default for the
    /// property's type.
    pub content_types: Vec<String>,
    /// Headers the part may or must carry (`Content-Type` aside, which `content_types` governs).
    pub headers: Vec<PartHeader>,
}

/// One header declared for a part.
pub struct PartHeader {
    /// Lower-case name.
    pub name: String,
    pub required: bool,
    pub scalar: Scalar,
    pub validator: jsonschema::Validator,
}

/// Compiles `encoding` at `loc` (a multipart media type object's `encoding` map). Entries for names that are
/// not properties are ignored, as OpenAPI says.
pub fn compile(
    docs: &mut Docs,
    v30: bool,
    loc: &Loc,
    properties: &HashMap<String, super::compile::PartSpec>,
) -> Result<HashMap<String, PartEncoding>, SpecError> {
    let Ok(Value::Object(map)) = docs.get(loc).cloned() else { return Ok(HashMap::new()) };
    let mut out = HashMap::new();
    for (name, enc) in map {
        if !properties.contains_key(&name) {
            continue;
        }
        let eloc = Loc { doc: loc.doc, pointer: push_token(&loc.pointer, &name) };
        let content_types = match enc.get("contentType") {
            None => Vec::new(),
            Some(Value::String(list)) => {
                let types: Vec<String> = list
                    .split(',')
                    .map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
                    .filter(|t| !t.is_empty())
                    .collect();
                if types.iter().any(|t| !t.contains('/')) {
                    return Err(SpecError::new(
                        docs.path(loc.doc),
                        &push_token(&eloc.pointer, "contentType"),
                        format!("`{list}` is not a list of media types (e.g. `image/png, image/*`)"),
                    ));
                }
                types
            }
            Some(_) => {
                return Err(SpecError::new(
                    docs.path(loc.doc),
                    &push_token(&eloc.pointer, "contentType"),
                    "`contentType` must be a string",
                ))
            }
        };
        let mut headers = Vec::new();
        let names: Vec<String> =
            enc.get("headers").and_then(Value::as_object).map(|h| h.keys().cloned().collect()).unwrap_or_default();
        for header in names {
            // OpenAPI: a `Content-Type` entry here is ignored (`contentType` says it).
            if header.eq_ignore_ascii_case("content-type") {
                continue;
            }
            let hloc = Loc { doc: eloc.doc, pointer: push_token(&push_token(&eloc.pointer, "headers"), &header) };
            let (hloc, h) = docs.follow(hloc)?;
            let sloc = Loc { doc: hloc.doc, pointer: push_token(&hloc.pointer, "schema") };
            let converted = if docs.get(&sloc).is_ok() {
                convert(docs, &sloc, v30, Direction::Request)?
            } else {
                serde_json::json!({ "type": "string" })
            };
            let validator = validator(&converted).map_err(|e| {
                SpecError::new(docs.path(sloc.doc), &sloc.pointer, format!("schema does not compile: {e}"))
            })?;
            headers.push(PartHeader {
                name: header.to_ascii_lowercase(),
                required: h.get("required").and_then(Value::as_bool).unwrap_or(false),
                scalar: super::compile::scalar_of(&converted),
                validator,
            });
        }
        out.insert(name, PartEncoding { content_types, headers });
    }
    Ok(out)
}

/// True when a media range (`image/png`, `image/*`, `*/*`) admits `media` (lower-case, no parameters).
fn admits(range: &str, media: &str) -> bool {
    range == media
        || range == "*/*"
        || range.strip_suffix("/*").is_some_and(|major| media.split('/').next() == Some(major))
}

/// Checks one part of a declared property against its encoding (or the default for its type): a type the
/// encoding does not allow is `415 inspect.content_type`; a required header missing, or a header that fails
/// its schema, is `400 inspect.schema`.
pub fn check_part(part: &Part<'_>, read: PartRead, encoding: Option<&PartEncoding>) -> Result<(), Verdict> {
    let name: String = part.name.chars().take(64).collect();
    let declared = part.content_type.as_deref();
    let allowed = match encoding.filter(|e| !e.content_types.is_empty()) {
        Some(e) => {
            let media = declared.unwrap_or("text/plain");
            e.content_types.iter().any(|r| admits(r, media))
        }
        None => match (read, declared) {
            (PartRead::File, _) | (_, None) => true,
            (PartRead::Json, Some(t)) => t == "application/json" || t.ends_with("+json"),
            (PartRead::Text(_), Some(t)) => t == "text/plain",
        },
    };
    if !allowed {
        let t: String = declared.unwrap_or("text/plain (none given)").chars().take(64).collect();
        return Err(Verdict::reject(
            Code::InspectContentType,
            format!("multipart part `{name}`: content type `{t}` is not what its encoding allows"),
        ));
    }
    for h in encoding.map(|e| e.headers.as_slice()).unwrap_or_default() {
        match part.header(&h.name) {
            None if h.required => {
                return Err(Verdict::reject(
                    Code::InspectSchema,
                    format!("multipart part `{name}`: required header `{}` missing", h.name),
                ))
            }
            None => {}
            Some(v) => {
                if let Err(e) = h.validator.validate(&typed(&v, h.scalar)) {
                    return Err(Verdict::reject(
                        Code::InspectSchema,
                        format!("multipart part `{name}`: header `{}`: {}", h.name, describe(&e)),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::admits;

    #[test]
    fn media_ranges() {
        assert!(admits("image/png", "image/png"));
        assert!(admits("image/*", "image/jpeg"));
        assert!(admits("*/*", "text/html"));
        assert!(!admits("image/*", "imagex/png"));
        assert!(!admits("image/png", "image/svg+xml"));
        assert!(!admits("text/*", "application/json"));
    }
}
