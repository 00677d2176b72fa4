//! Paths and operations of a loaded document → the runtime form: a path-template router per spec, and per
//! operation its parameters (with their serialization style and a compiled schema), its request bodies by
//! media type and its JSON response schemas by status.

use super::load::{push_token, Docs, Loc};
use super::response::ResponseMode;
use super::schema::{convert, Direction};
use super::shape::Shapes;
use super::{validator, SpecError};
use http::{HeaderValue, Method};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Where a parameter is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
    Cookie,
}

impl In {
    pub fn as_str(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
            In::Header => "header",
            In::Cookie => "cookie",
        }
    }
}

/// The JSON type a parameter's text is read as before its schema checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Integer,
    Number,
    Boolean,
}

/// How a parameter's value is serialized (OpenAPI `style` + `explode`), decided at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamKind {
    Scalar(Scalar),
    /// `form` + explode: `a=1&a=2`; otherwise one value split on `delim` (`,` form/simple, ` ` space, `|` pipe).
    Array {
        item: Scalar,
        delim: char,
        explode: bool,
    },
    /// `deepObject`: `a[x]=1&a[y]=2`; `form` + explode: each property is its own query parameter; otherwise
    /// `x,1,y,2`.
    Object {
        style: ObjectStyle,
        props: HashMap<String, Scalar>,
    },
    /// A parameter declared with `content` (e.g. `application/json`): its text is parsed as JSON.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectStyle {
    Deep,
    Exploded,
    Flat,
}

/// One declared parameter.
pub struct Param {
    pub name: String,
    /// Header names are matched lower-case.
    pub lower: String,
    pub location: In,
    pub required: bool,
    pub allow_empty: bool,
    pub kind: ParamKind,
    pub validator: jsonschema::Validator,
}

/// What a request body of a media type is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Json,
    Form,
    /// `multipart/form-data`: each part is a property (see [`PartSpec`]).
    Multipart,
    /// Anything else (binary, XML): only the content type is checked.
    Other,
}

/// How a multipart part of a declared property is read before the schema sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartRead {
    /// A text field, typed like a form value.
    Text(Scalar),
    /// A file: the property is declared `format: binary` (or, in 3.1, with a `contentMediaType`).
    File,
    /// An object or array property without binary items: the part holds JSON (OpenAPI's default encoding).
    Json,
}

/// A declared multipart property: how its parts are read, and whether it takes several (an array).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSpec {
    pub read: PartRead,
    pub list: bool,
}

/// A compiled body schema: the validator and the declared-property tables.
pub struct BodySchema {
    pub validator: jsonschema::Validator,
    pub shapes: Shapes,
    /// For form and multipart bodies: how each declared property's values (parts) are read.
    pub parts: HashMap<String, PartSpec>,
    /// For multipart bodies: the `encoding` entries by property (content types, part headers).
    pub encodings: HashMap<String, super::encoding::PartEncoding>,
}

/// One media type of a request body (`application/json`, `application/*`, `*/*`).
pub struct Media {
    pub range: String,
    pub kind: MediaKind,
    pub schema: Option<BodySchema>,
}

pub struct RequestBody {
    pub required: bool,
    pub media: Vec<Media>,
}

/// A response key: `200`, `2XX` or `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKey {
    Exact(u16),
    Range(u16),
    Default,
}

/// One declared operation.
pub struct Operation {
    /// `operationId`, or `METHOD /template`.
    pub id: String,
    pub params: Vec<Param>,
    pub body: Option<RequestBody>,
    /// Declared responses; `None` where the response declares no JSON schema.
    pub responses: Vec<(StatusKey, Option<BodySchema>)>,
}

struct PathItem {
    ops: Vec<(Method, Arc<Operation>)>,
    allow: HeaderValue,
}

/// A compiled spec and how a route applies it.
pub struct OpenApi {
    router: matchit::Router<usize>,
    paths: Vec<PathItem>,
    /// Refuse properties no schema declares (mass assignment).
    pub strict: bool,
    /// Refuse query parameters the operation does not declare.
    pub strict_query: bool,
    /// The spec file and every file its `$ref`s pulled in: a change to any of them reloads the config.
    pub files: Vec<std::path::PathBuf>,
    /// What happens to JSON responses whose schema does not declare every property.
    pub responses: ResponseMode,
    /// Largest JSON response buffered for the response filter.
    pub max_response_bytes: usize,
}

/// The operation a request addresses.
pub enum OperationMatch<'a> {
    Found(&'a Arc<Operation>, Vec<(&'a str, &'a str)>),
    MethodNotAllowed(HeaderValue),
    NotFound,
}

/// How a route applies its spec (from the config).
#[derive(Debug, Clone)]
pub struct Settings {
    pub strict: bool,
    pub strict_query: bool,
    pub base_path: String,
    pub responses: ResponseMode,
    pub max_response_bytes: usize,
}

const METHODS: [(&str, Method); 8] = [
    ("get", Method::GET),
    ("put", Method::PUT),
    ("post", Method::POST),
    ("delete", Method::DELETE),
    ("options", Method::OPTIONS),
    ("head", Method::HEAD),
    ("patch", Method::PATCH),
    ("trace", Method::TRACE),
];

impl OpenApi {
    /// Loads and compiles the spec at `path`.
    pub fn load(path: &Path, settings: Settings) -> Result<OpenApi, SpecError> {
        let docs = Docs::open(path)?;
        Self::compile(docs, settings)
    }

    /// Compiles a spec given as text (the demo embeds one).
    pub fn from_text(name: &Path, text: &str, settings: Settings) -> Result<OpenApi, SpecError> {
        Self::compile(Docs::from_text(name, text)?, settings)
    }

    fn compile(mut docs: Docs, settings: Settings) -> Result<OpenApi, SpecError> {
        let file = docs.path(0).to_path_buf();
        let version = docs.root().get("openapi").and_then(Value::as_str).unwrap_or("").to_string();
        let v30 = if version.starts_with("3.0") {
            true
        } else if version.starts_with("3.1") {
            false
        } else {
            return Err(SpecError::new(
                &file,
                "/openapi",
                format!("unsupported OpenAPI version `{version}`; 3.0.x and 3.1.x are supported"),
            ));
        };
        let base = settings.base_path.trim_end_matches('/').to_string();
        let mut api = OpenApi {
            router: matchit::Router::new(),
            paths: Vec::new(),
            strict: settings.strict,
            strict_query: settings.strict_query,
            files: Vec::new(),
            responses: settings.responses,
            max_response_bytes: settings.max_response_bytes,
        };
        let templates: Vec<String> = match docs.root().get("paths") {
            Some(Value::Object(p)) => p.keys().cloned().collect(),
            Some(_) => return Err(SpecError::new(&file, "/paths", "`paths` must be an object")),
            None => Vec::new(),
        };
        for template in templates {
            let item_loc = Loc { doc: 0, pointer: push_token("/paths", &template) };
            let (item_loc, item) = docs.follow(item_loc)?;
            let shared = item.get("parameters").cloned();
            let mut ops = Vec::new();
            for (key, method) in &METHODS {
                let Some(op) = item.get(*key) else { continue };
                let op_loc = Loc { doc: item_loc.doc, pointer: push_token(&item_loc.pointer, key) };
                let operation =
                    compile_operation(&mut docs, v30, &template, method, &item_loc, shared.as_ref(), &op_loc, op)?;
                ops.push((method.clone(), Arc::new(operation)));
            }
            if ops.is_empty() {
                continue;
            }
            let allow = ops.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", ");
            let full = format!("{base}{template}");
            api.router
                .insert(full.clone(), api.paths.len())
                .map_err(|e| SpecError::new(&file, &item_loc.pointer, format!("path template `{full}`: {e}")))?;
            api.paths
                .push(PathItem { ops, allow: HeaderValue::from_str(&allow).unwrap_or(HeaderValue::from_static("")) });
        }
        if api.paths.is_empty() {
            return Err(SpecError::new(&file, "/paths", "the spec declares no operation"));
        }
        api.files = docs.files();
        Ok(api)
    }

    /// The operation for a request (its path already normalized), with the path parameters.
    pub fn find<'a>(&'a self, method: &Method, path: &'a str) -> OperationMatch<'a> {
        let Ok(m) = self.router.at(path) else { return OperationMatch::NotFound };
        let item = &self.paths[*m.value];
        // HEAD is answered like GET where the spec declares only GET.
        let op = item.ops.iter().find(|(om, _)| om == method).or_else(|| {
            (*method == Method::HEAD).then(|| item.ops.iter().find(|(om, _)| *om == Method::GET)).flatten()
        });
        match op {
            Some((_, op)) => OperationMatch::Found(op, m.params.iter().collect()),
            None => OperationMatch::MethodNotAllowed(item.allow.clone()),
        }
    }

    /// Number of operations, for the load log.
    pub fn operations(&self) -> usize {
        self.paths.iter().map(|p| p.ops.len()).sum()
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_operation(
    docs: &mut Docs,
    v30: bool,
    template: &str,
    method: &Method,
    item_loc: &Loc,
    shared: Option<&Value>,
    op_loc: &Loc,
    op: &Value,
) -> Result<Operation, SpecError> {
    let id =
        op.get("operationId").and_then(Value::as_str).map_or_else(|| format!("{method} {template}"), str::to_string);
    // Operation parameters override path-item ones with the same name and location.
    let mut locs: Vec<Loc> = Vec::new();
    for (base, list) in [(item_loc, shared), (op_loc, op.get("parameters"))] {
        for (i, _) in list.and_then(Value::as_array).into_iter().flatten().enumerate() {
            locs.push(Loc { doc: base.doc, pointer: format!("{}/{i}", push_token(&base.pointer, "parameters")) });
        }
    }
    let mut params: Vec<Param> = Vec::new();
    for loc in locs {
        let p = compile_param(docs, v30, loc)?;
        params.retain(|q| !(q.location == p.location && q.lower == p.lower));
        params.push(p);
    }
    let body = match op.get("requestBody") {
        Some(_) => Some(compile_request_body(
            docs,
            v30,
            Loc { doc: op_loc.doc, pointer: push_token(&op_loc.pointer, "requestBody") },
        )?),
        None => None,
    };
    let mut responses = Vec::new();
    if let Some(Value::Object(rs)) = op.get("responses") {
        for key in rs.keys() {
            let status = match key.as_str() {
                "default" => StatusKey::Default,
                k if k.len() == 3 && (k.ends_with("XX") || k.ends_with("xx")) => match k.as_bytes()[0] {
                    d @ b'1'..=b'5' => StatusKey::Range(u16::from(d - b'0')),
                    _ => continue,
                },
                k => match k.parse::<u16>() {
                    Ok(n) if (100..600).contains(&n) => StatusKey::Exact(n),
                    _ => continue,
                },
            };
            let rloc = Loc { doc: op_loc.doc, pointer: push_token(&push_token(&op_loc.pointer, "responses"), key) };
            let (rloc, resp) = docs.follow(rloc)?;
            let schema = match json_media(&resp) {
                Some(mt) => {
                    let sloc = Loc {
                        doc: rloc.doc,
                        pointer: push_token(&push_token(&push_token(&rloc.pointer, "content"), &mt), "schema"),
                    };
                    if docs.get(&sloc).is_ok() {
                        Some(body_schema(docs, v30, &sloc, Direction::Response)?)
                    } else {
                        None
                    }
                }
                None => None,
            };
            responses.push((status, schema));
        }
    }
    Ok(Operation { id, params, body, responses })
}

/// The first JSON media type a response declares.
fn json_media(resp: &Value) -> Option<String> {
    resp.get("content")?.as_object()?.keys().find(|k| media_kind(k) == MediaKind::Json).cloned()
}

pub fn media_kind(range: &str) -> MediaKind {
    let m = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if m == "application/json" || m.ends_with("+json") {
        MediaKind::Json
    } else if m == "application/x-www-form-urlencoded" {
        MediaKind::Form
    } else if m == "multipart/form-data" {
        MediaKind::Multipart
    } else {
        MediaKind::Other
    }
}

fn body_schema(docs: &mut Docs, v30: bool, loc: &Loc, dir: Direction) -> Result<BodySchema, SpecError> {
    let converted = convert(docs, loc, v30, dir)?;
    let validator = validator(&converted)
        .map_err(|e| SpecError::new(docs.path(loc.doc), &loc.pointer, format!("schema does not compile: {e}")))?;
    let parts = properties(&converted)
        .map(|props| props.iter().map(|(k, s)| (k.clone(), part_spec(&converted, s))).collect())
        .unwrap_or_default();
    Ok(BodySchema { validator, shapes: Shapes::build(&converted), parts, encodings: HashMap::new() })
}

/// How the parts of one multipart property are read, from its converted schema.
fn part_spec(root: &Value, s: &Value) -> PartSpec {
    let s = deref(root, s);
    let read = |s: &Value| {
        let s = deref(root, s);
        let binary = s.get("format").and_then(Value::as_str) == Some("binary")
            || (s.get("contentMediaType").is_some() && s.get("contentEncoding").is_none());
        if binary {
            PartRead::File
        } else if matches!(type_at(root, s), Some("object" | "array")) {
            PartRead::Json
        } else {
            PartRead::Text(scalar(root, s))
        }
    };
    if type_at(root, s) == Some("array") {
        match s.get("items").map(read) {
            Some(item @ (PartRead::File | PartRead::Text(_))) => PartSpec { read: item, list: true },
            Some(PartRead::Json) => PartSpec { read: PartRead::Json, list: true },
            None => PartSpec { read: PartRead::Text(Scalar::String), list: true },
        }
    } else {
        PartSpec { read: read(s), list: false }
    }
}

fn compile_request_body(docs: &mut Docs, v30: bool, loc: Loc) -> Result<RequestBody, SpecError> {
    let (loc, rb) = docs.follow(loc)?;
    let mut media = Vec::new();
    for range in
        rb.get("content").and_then(Value::as_object).map(|c| c.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
    {
        let kind = media_kind(&range);
        let sloc = Loc {
            doc: loc.doc,
            pointer: push_token(&push_token(&push_token(&loc.pointer, "content"), &range), "schema"),
        };
        let mut schema = if kind != MediaKind::Other && docs.get(&sloc).is_ok() {
            Some(body_schema(docs, v30, &sloc, Direction::Request)?)
        } else {
            None
        };
        if let Some(s) = schema.as_mut().filter(|_| kind == MediaKind::Multipart) {
            let eloc = Loc {
                doc: loc.doc,
                pointer: push_token(&push_token(&push_token(&loc.pointer, "content"), &range), "encoding"),
            };
            s.encodings = super::encoding::compile(docs, v30, &eloc, &s.parts)?;
        }
        let range = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        media.push(Media { range, kind, schema });
    }
    Ok(RequestBody { required: rb.get("required").and_then(Value::as_bool).unwrap_or(false), media })
}

fn compile_param(docs: &mut Docs, v30: bool, loc: Loc) -> Result<Param, SpecError> {
    let (loc, p) = docs.follow(loc)?;
    let file = docs.path(loc.doc).to_path_buf();
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| SpecError::new(&file, &loc.pointer, "parameter without `name`"))?
        .to_string();
    let location = match p.get("in").and_then(Value::as_str) {
        Some("path") => In::Path,
        Some("query") => In::Query,
        Some("header") => In::Header,
        Some("cookie") => In::Cookie,
        other => {
            return Err(SpecError::new(&file, &loc.pointer, format!("parameter `{name}`: unknown location {other:?}")));
        }
    };
    let required = location == In::Path || p.get("required").and_then(Value::as_bool).unwrap_or(false);
    let (schema_loc, json) = match p.get("content").and_then(Value::as_object).and_then(|c| c.keys().next().cloned()) {
        Some(mt) => (
            Loc { doc: loc.doc, pointer: push_token(&push_token(&push_token(&loc.pointer, "content"), &mt), "schema") },
            true,
        ),
        None => (Loc { doc: loc.doc, pointer: push_token(&loc.pointer, "schema") }, false),
    };
    let converted = if docs.get(&schema_loc).is_ok() {
        convert(docs, &schema_loc, v30, Direction::Request)?
    } else {
        serde_json::json!({ "type": "string" })
    };
    let validator = validator(&converted)
        .map_err(|e| SpecError::new(&file, &schema_loc.pointer, format!("schema does not compile: {e}")))?;
    let default_style = match location {
        In::Query | In::Cookie => "form",
        In::Path | In::Header => "simple",
    };
    let style = p.get("style").and_then(Value::as_str).unwrap_or(default_style);
    let explode = p.get("explode").and_then(Value::as_bool).unwrap_or(style == "form");
    let kind = if json {
        ParamKind::Json
    } else {
        match type_of(&converted) {
            Some("array") => {
                let item = items(&converted).map_or(Scalar::String, |i| scalar(&converted, i));
                let delim = match style {
                    "spaceDelimited" => ' ',
                    "pipeDelimited" => '|',
                    _ => ',',
                };
                ParamKind::Array { item, delim, explode: explode && style == "form" }
            }
            Some("object") => {
                let props = properties(&converted)
                    .map(|ps| ps.iter().map(|(k, s)| (k.clone(), scalar(&converted, s))).collect())
                    .unwrap_or_default();
                let style = match (style, explode) {
                    ("deepObject", _) => ObjectStyle::Deep,
                    ("form", true) => ObjectStyle::Exploded,
                    _ => ObjectStyle::Flat,
                };
                ParamKind::Object { style, props }
            }
            _ => ParamKind::Scalar(scalar(&converted, &converted)),
        }
    };
    Ok(Param {
        lower: if location == In::Header { name.to_ascii_lowercase() } else { name.clone() },
        name,
        location,
        required,
        allow_empty: p.get("allowEmptyValue").and_then(Value::as_bool).unwrap_or(false),
        kind,
        validator,
    })
}

/// Follows a converted schema's `$ref`s (into its `$defs`) and single-branch `allOf`s to the schema that
/// states a type.
fn deref<'a>(root: &'a Value, mut s: &'a Value) -> &'a Value {
    for _ in 0..32 {
        if let Some(name) = s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            match root.get("$defs").and_then(|d| d.get(name)) {
                Some(next) => {
                    s = next;
                    continue;
                }
                None => return s,
            }
        }
        if s.get("type").is_none() {
            if let Some(first) = s
                .get("allOf")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x.get("type").is_some() || x.get("$ref").is_some()))
            {
                s = first;
                continue;
            }
        }
        return s;
    }
    s
}

fn type_of(root: &Value) -> Option<&str> {
    type_at(root, root)
}

/// The type a (sub)schema of `root` states, `null` aside.
fn type_at<'a>(root: &'a Value, s: &'a Value) -> Option<&'a str> {
    let s = deref(root, s);
    match s.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn scalar(root: &Value, s: &Value) -> Scalar {
    let s = deref(root, s);
    let t = match s.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    };
    match t {
        Some("integer") => Scalar::Integer,
        Some("number") => Scalar::Number,
        Some("boolean") => Scalar::Boolean,
        _ => Scalar::String,
    }
}

/// The scalar type a whole converted schema states (for values read from text, like part headers).
pub(super) fn scalar_of(root: &Value) -> Scalar {
    scalar(root, root)
}

fn items(root: &Value) -> Option<&Value> {
    deref(root, root).get("items")
}

fn properties(root: &Value) -> Option<&serde_json::Map<String, Value>> {
    deref(root, root).get("properties").and_then(Value::as_object)
}
