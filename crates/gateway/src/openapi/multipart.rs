//! `multipart/form-data` bodies as the object their schema describes (OpenAPI's reading: each part is the
//! property its name says; an array property takes repeated parts; object properties arrive as JSON). A file
//! part (one with a file name) is accepted only for a property declared as a file — `format: binary`, or in
//! 3.1 a `contentMediaType` — so an upload cannot land in a field the API reads as text. Text fields obey the
//! hostile-JSON string limit, parts count as object keys, and the shared reader refuses malformed bodies. Each
//! part of a declared property is checked against its `encoding` (content type, headers; see [`super::encoding`]).

use super::compile::{BodySchema, PartRead, Scalar};
use super::validate::{parse_json, push_field, typed};
use crate::multipart::{self, Limits};
use crate::pipeline::{Code, Verdict};
use crate::stages::inspect::JsonLimits;
use serde_json::{Map, Value};

/// Reads the parts of `body` into an object for the schema; a malformed body or a part past a limit is
/// `inspect.malformed_body`, a file where the schema expects text is `inspect.schema`.
pub fn multipart_object(
    content_type: &str,
    body: &[u8],
    schema: &BodySchema,
    limits: &JsonLimits,
) -> Result<Value, Verdict> {
    let malformed = |d: String| Verdict::reject(Code::InspectMalformedBody, format!("multipart body: {d}"));
    let boundary = multipart::boundary(content_type);
    let bounds = Limits { max_parts: limits.max_object_keys, ..Limits::default() };
    let parts = multipart::parse(body, boundary.as_bytes(), bounds).map_err(|e| malformed(e.to_string()))?;
    let mut o = Map::new();
    for part in parts {
        let name: String = part.name.chars().take(64).collect();
        let spec = schema.parts.get(&part.name).copied();
        let read = match (spec, &part.filename) {
            (Some(s), _) => s.read,
            (None, Some(_)) => PartRead::File,
            (None, None) => PartRead::Text(Scalar::String),
        };
        if part.filename.is_some() && read != PartRead::File {
            return Err(Verdict::reject(
                Code::InspectSchema,
                format!("multipart part `{name}` is a file; the schema does not declare it `format: binary`"),
            ));
        }
        if spec.is_some() {
            super::encoding::check_part(&part, read, schema.encodings.get(&part.name))?;
        }
        let value = match read {
            // The schema sees the file as a string (lengths and patterns rarely apply to files); its bytes are
            // not required to be text.
            PartRead::File => Value::String(String::from_utf8_lossy(part.content).into_owned()),
            PartRead::Json => parse_json(part.content, limits).map_err(|e| malformed(format!("part `{name}`: {e}")))?,
            PartRead::Text(scalar) => {
                if part.content.len() > limits.max_string_bytes {
                    return Err(malformed(format!("part `{name}` over {} bytes", limits.max_string_bytes)));
                }
                match std::str::from_utf8(part.content) {
                    Ok(text) => typed(text, scalar),
                    Err(_) => return Err(malformed(format!("part `{name}` is not UTF-8 text"))),
                }
            }
        };
        push_field(&mut o, part.name, value, spec.is_some_and(|s| s.list));
    }
    Ok(Value::Object(o))
}
