//! Inspect, positive model: an OpenAPI 3.0 or 3.1 document compiled at config load into per-operation
//! validators. A route that carries a spec answers only the operations the spec declares (404/405 otherwise),
//! and each request is checked against its operation: parameters, content type, JSON, form and multipart
//! bodies, `readOnly` properties and — on strict routes — properties and query parameters nobody declared
//! (mass assignment, parameter tampering). On the way back, JSON
//! responses lose the properties their response schema does not declare and every `writeOnly` one.
//!
//! - [`load`]: the document and the local files its `$ref`s name;
//! - [`schema`]: OpenAPI schemas → self-contained JSON Schema 2020-12 (refs, 3.0 dialect, directions);
//! - [`shape`]: declared-property tables for the strict check and the response filter ([`names`]: the name
//!   lookup they use);
//! - [`compile`]: paths and operations → [`OpenApi`];
//! - [`validate`]: the request checks ([`multipart`]: multipart bodies as objects, [`encoding`]: their parts'
//!   content types and headers); [`response`]: the response filter.

pub mod compile;
pub mod encoding;
pub mod load;
pub mod multipart;
pub mod names;
pub mod response;
pub mod schema;
pub mod shape;
pub mod validate;

pub use compile::{OpenApi, Operation, OperationMatch};
pub use response::{ResponseCheck, ResponseMode};

use std::fmt;
use std::path::Path;

/// A problem in a spec, located by file and JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: String,
    pub pointer: String,
    pub message: String,
}

impl SpecError {
    pub fn new(file: &Path, pointer: &str, message: impl Into<String>) -> SpecError {
        SpecError { file: file.display().to_string(), pointer: pointer.to_string(), message: message.into() }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}: {}", self.file, self.pointer, self.message)
    }
}

impl std::error::Error for SpecError {}

/// Compiles a converted schema. Formats are asserted (not just annotations), and `pattern` uses the linear-time
/// `regex` engine: the input is hostile, and a backtracking engine would hand it a denial of service.
pub fn validator(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(true)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(schema)
        .map_err(|e| e.to_string())
}

/// A validation failure for the log: where (JSON pointer) and which keyword, never the offending value.
pub fn describe(e: &jsonschema::ValidationError<'_>) -> String {
    let at = e.instance_path().as_str();
    let at = if at.is_empty() { "/" } else { at };
    match e.kind() {
        // The only `false` schemas are the ones conversion puts on `readOnly` properties of requests.
        jsonschema::error::ValidationErrorKind::FalseSchema => format!("`{at}` is read-only"),
        kind => format!("`{at}` fails `{}`", kind.keyword()),
    }
}

/// What the head of a request tells about its operation.
pub struct HeadCheck<'a> {
    /// The operation addressed, if the spec declares one.
    pub op: Option<&'a std::sync::Arc<Operation>>,
    /// The request body's declared media type, when its body must be read and checked.
    pub media: Option<&'a compile::Media>,
    pub verdict: crate::pipeline::Verdict,
}

/// The inspect stage's positive model before the body: find the operation (404/405 when the spec declares
/// none), check its parameters and the body's content type.
pub fn check_head<'a>(api: &'a OpenApi, parts: &http::request::Parts, path: &'a str, has_body: bool) -> HeadCheck<'a> {
    use crate::pipeline::{Code, Rejection, Verdict};
    let (op, params) = match api.find(&parts.method, path) {
        OperationMatch::Found(op, params) => (op, params),
        OperationMatch::MethodNotAllowed(allow) => {
            let rej = Rejection::new(
                Code::RouteMethodNotAllowed,
                format!("{} {path}: not in the OpenAPI spec", parts.method),
            )
            .with_header(http::header::ALLOW, allow);
            return HeadCheck { op: None, media: None, verdict: Verdict::Reject(rej) };
        }
        OperationMatch::NotFound => {
            let verdict =
                Verdict::reject(Code::RouteNotFound, format!("{} {path}: not in the OpenAPI spec", parts.method));
            return HeadCheck { op: None, media: None, verdict };
        }
    };
    let verdict = op.check_params(parts, &params, api.strict_query);
    if matches!(verdict, Verdict::Reject(_)) {
        return HeadCheck { op: Some(op), media: None, verdict };
    }
    match op.body_plan(parts, has_body) {
        validate::BodyPlan::Pass => HeadCheck { op: Some(op), media: None, verdict: Verdict::Continue },
        validate::BodyPlan::Check(media) => HeadCheck { op: Some(op), media: Some(media), verdict: Verdict::Continue },
        validate::BodyPlan::Reject(verdict) => HeadCheck { op: Some(op), media: None, verdict },
    }
}
