use crate::testkit::*;
use std::path::PathBuf;

fn sample_spec() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/specs/sample-api.yaml")
}

async fn json_call(a: std::net::SocketAddr, method: &str, path: &str, body: &str) -> Got {
    call(a, method, path, &[("content-type", "application/json")], body).await
}

/// The sample API behind the shipped sample spec: undeclared operations, parameters, content types,
/// bodies, readOnly and undeclared (mass-assignment) properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_declared_operations_with_valid_requests_reach_the_sample_api() {
    let (api, _task) = sample_api::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let routes = format!(
        "  - {{ path: \"/*\", methods: [ANY], upstream: app, auth: none, openapi: {{ spec: \"{}\" }} }}",
        sample_spec().display()
    );
    let gw = TestGateway::start(&config(&one_upstream(&format!("http://{api}")), &routes, "")).await;
    let a = gw.addr();
    let ok = |g: &Got, want: u16| assert_eq!(g.status, want, "{}", g.text());
    let rejected = |g: Got, status: u16, code: &str| {
        assert_eq!((g.status, g.code()), (status, code.to_string()), "{}", g.text());
    };
    ok(&get(a, "/users").await, 200);
    ok(&get(a, "/users?limit=2&role=admin").await, 200);
    ok(&get(a, "/users/2").await, 200);
    ok(&get(a, "/products?sku=KB-104%2FUS").await, 200);
    // Undeclared operations: the debug endpoint the sample API exposes, and a method the spec lacks.
    rejected(get(a, "/internal/debug").await, 404, "route.not_found");
    let got = call(a, "DELETE", "/users/1", &[], "").await;
    assert_eq!(got.headers["allow"], "GET, PATCH");
    rejected(got, 405, "route.method_not_allowed");
    // Parameters: type, minimum, int32 range, maximum, enum, pattern.
    rejected(get(a, "/users/abc").await, 400, "inspect.schema");
    rejected(get(a, "/users/0").await, 400, "inspect.schema");
    rejected(get(a, "/users/99999999999").await, 400, "inspect.schema");
    rejected(get(a, "/users?limit=500").await, 400, "inspect.schema");
    rejected(get(a, "/users?limit=ten").await, 400, "inspect.schema");
    rejected(get(a, "/users?role=root").await, 400, "inspect.schema");
    rejected(get(a, "/products?sku=DROP%20TABLE").await, 400, "inspect.schema");
    // Bodies.
    let good = r#"{"name":"Grace Hopper","email":"grace@example.com","password":"correct horse"}"#;
    let got = json_call(a, "POST", "/users", good).await;
    ok(&got, 201);
    let created = got.json();
    assert_eq!(created["name"], "Grace Hopper");
    assert_eq!(created["id"], 4);
    assert!(created.get("password").is_none(), "writeOnly password echoed back: {created}");
    rejected(call(a, "POST", "/users", &[("content-type", "text/plain")], good).await, 415, "inspect.content_type");
    rejected(call(a, "POST", "/users", &[], good).await, 415, "inspect.content_type");
    rejected(json_call(a, "POST", "/users", "").await, 400, "inspect.schema");
    rejected(
        json_call(a, "POST", "/users", r#"{"name":"G","email":"not-an-email","password":"correct horse"}"#).await,
        400,
        "inspect.schema",
    );
    rejected(json_call(a, "POST", "/users", r#"{"name":"G","email":"g@example.com"}"#).await, 400, "inspect.schema");
    // readOnly properties cannot be set, undeclared ones cannot be smuggled in (strict is the default).
    let promote = r#"{"name":"G","email":"g@example.com","password":"correct horse","role":"admin"}"#;
    rejected(json_call(a, "POST", "/users", promote).await, 400, "inspect.schema");
    rejected(json_call(a, "PATCH", "/users/2", r#"{"id":1}"#).await, 400, "inspect.schema");
    let smuggle = r#"{"name":"G","email":"g@example.com","password":"correct horse","is_admin":true}"#;
    rejected(json_call(a, "POST", "/users", smuggle).await, 400, "inspect.schema");
    ok(&json_call(a, "PATCH", "/users/2", r#"{"name":"Seán Ó Briain"}"#).await, 200);
    // Hostile JSON.
    rejected(json_call(a, "PATCH", "/users/2", r#"{"name":"a","name":"b"}"#).await, 400, "inspect.malformed_body");
    rejected(json_call(a, "PATCH", "/users/2", r#"{"name":1e999}"#).await, 400, "inspect.malformed_body");
    // The detection engine still runs on what the spec allows.
    rejected(json_call(a, "PATCH", "/users/2", r#"{"name":"x' OR '1'='1' --"}"#).await, 403, "inspect.sqli");
    gw.handle.shutdown().await;
}

const SPEC: &str = r##"openapi: 3.0.3
info: { title: test, version: "1" }
paths:
  /echo/items:
    get:
      parameters:
        - { name: ids, in: query, required: true, schema: { type: array, items: { type: integer } } }
        - { name: filter, in: query, style: deepObject, schema: { type: object, properties: { min: { type: integer }, q: { type: string } } } }
        - { name: X-Tenant, in: header, required: true, schema: { type: string, pattern: "^[a-z]{3,8}$" } }
        - { name: session, in: cookie, schema: { type: string, minLength: 4 } }
        - { name: note, in: query, schema: { type: string, nullable: true, maxLength: 5 } }
      responses:
        "200": { $ref: "common.yaml#/responses/Echo" }
    post:
      requestBody:
        content:
          application/json: { schema: { $ref: "common.yaml#/schemas/Item" } }
          application/x-www-form-urlencoded: { schema: { $ref: "common.yaml#/schemas/Item" } }
      responses:
        "200": { $ref: "common.yaml#/responses/Echo" }
  /echo/blocked:
    get:
      responses: { "200": { $ref: "common.yaml#/responses/Echo" } }
  /echo/open:
    get:
      responses: { "200": { description: free-form, content: { application/json: { schema: { type: object } } } } }
  /echo/status:
    get:
      responses: { "201": { $ref: "common.yaml#/responses/Echo" } }
  /stream:
    get:
      parameters: [{ name: chunks, in: query, schema: { type: integer } }, { name: ms, in: query, schema: { type: integer } }]
      responses: { "200": { description: text } }
"##;

const COMMON: &str = r##"schemas:
  Item:
    type: object
    required: [name, qty]
    properties:
      id: { type: integer, readOnly: true }
      name: { type: string, maxLength: 20 }
      qty: { type: integer, format: int32, minimum: 1 }
      price: { type: number, nullable: true }
      tags: { type: array, items: { type: string }, maxItems: 3 }
      parent: { $ref: "#/schemas/Item" }
responses:
  Echo:
    description: what the upstream saw
    content:
      application/json:
        schema:
          type: object
          properties:
            method: { type: string }
            path: { type: string }
            headers:
              type: object
              properties:
                host: { type: string }
                x-tenant: { type: string, writeOnly: true }
"##;

async fn spec_gateway(up: &TestUpstream) -> TestGateway {
    let dir = TempDir::new();
    dir.write("api.yaml", SPEC);
    dir.write("common.yaml", COMMON);
    let routes = "  - { path: \"/echo/*\", methods: [ANY], upstream: app, auth: none, openapi: { spec: api.yaml } }
  - { path: /echo/blocked, methods: [GET], upstream: app, auth: none, openapi: { spec: api.yaml, responses: block } }
  - { path: \"/v2/*\", methods: [ANY], upstream: app, auth: none, modes: { inspect: monitor, respond: monitor }, openapi: { spec: api.yaml, base_path: /v2 } }
  - { path: /stream, methods: [GET], upstream: app, auth: none, openapi: { spec: api.yaml } }
  - { path: /plain/*, methods: [GET], upstream: app, auth: none, redact: { enabled: false } }";
    TestGateway::start_in(dir, &config(&one_upstream(&up.url()), routes, ""), false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_bodies_of_a_30_spec_with_file_refs() {
    let up = TestUpstream::start().await;
    let gw = spec_gateway(&up).await;
    let a = gw.addr();
    let tenant = [("x-tenant", "acme")];
    let q = |path: &'static str| async move {
        call(a, "GET", path, &[("x-tenant", "acme"), ("cookie", "session=abcdef")], "").await
    };
    assert_eq!(q("/echo/items?ids=1&ids=2&filter[min]=3&filter[q]=x&note=hi").await.status, 200);
    let before = up.hits();
    let bad: Vec<(Got, &str)> = vec![
        (q("/echo/items?ids=1&ids=x").await, "array item type"),
        (q("/echo/items").await, "missing required query"),
        (call(a, "GET", "/echo/items?ids=1", &[], "").await, "missing required header"),
        (call(a, "GET", "/echo/items?ids=1", &[("x-tenant", "ACME!")], "").await, "header pattern"),
        (
            call(a, "GET", "/echo/items?ids=1", &[("x-tenant", "acme"), ("cookie", "session=ab")], "").await,
            "cookie minLength",
        ),
        (q("/echo/items?ids=1&filter[min]=lots").await, "deepObject property type"),
        (q("/echo/items?ids=1&note=far+too+long").await, "maxLength"),
    ];
    for (got, why) in bad {
        assert_eq!((got.status, got.code()), (400, "inspect.schema".to_string()), "{why}: {}", got.text());
    }
    let post = |ct: &'static str, body: &'static str| async move {
        call(a, "POST", "/echo/items", &[("content-type", ct)], body).await
    };
    let json = "application/json";
    assert_eq!(post(json, r#"{"name":"a","qty":1,"price":null,"parent":{"name":"b","qty":2}}"#).await.status, 200);
    assert_eq!(post("application/x-www-form-urlencoded", "name=a&qty=2&tags=x&tags=y").await.status, 200);
    let bad: Vec<(Got, &str, &str)> = vec![
        (post(json, r#"{"name":"a","qty":0}"#).await, "inspect.schema", "minimum"),
        (post(json, r#"{"name":"a","qty":3000000000}"#).await, "inspect.schema", "int32 overflow"),
        (post(json, r#"{"name":"a","qty":1e400}"#).await, "inspect.malformed_body", "number overflow"),
        (post(json, r#"{"name":"a","qty":1,"id":5}"#).await, "inspect.schema", "readOnly"),
        (
            post(json, r#"{"name":"a","qty":1,"parent":{"name":"b","qty":1,"admin":true}}"#).await,
            "inspect.schema",
            "nested undeclared",
        ),
        (post(json, r#"{"name":"a","qty":1,"qty":2}"#).await, "inspect.malformed_body", "duplicate key"),
        (post(json, r#"{"name":"a","qty":1,"tags":["1","2","3","4"]}"#).await, "inspect.schema", "maxItems"),
        (post("application/x-www-form-urlencoded", "name=a&qty=many").await, "inspect.schema", "form type"),
        (post("application/xml", "<item/>").await, "inspect.content_type", "415"),
    ];
    for (got, code, why) in bad {
        assert_eq!(got.code(), code, "{why}: {}", got.text());
    }
    assert_eq!(up.hits(), before + 2, "a rejected request reached the upstream");
    // Monitor mode: the same bad request passes, recorded.
    let got = call(a, "GET", "/v2/echo/items?ids=x", &tenant, "").await;
    assert_eq!(got.status, 200, "{}", got.text());
    // A spec error names the spec file and the JSON pointer, at the config line naming the spec.
    let dir = TempDir::new();
    dir.write("api.yaml", "openapi: 3.1.0\npaths:\n  /a:\n    get:\n      responses:\n        '200': { $ref: '#/components/responses/Nope' }\n");
    let p = dir.write(
        "bad.yaml",
        &config(
            &one_upstream(&up.url()),
            "  - { path: /a, methods: [GET], upstream: app, auth: none, openapi: { spec: api.yaml } }",
            "",
        ),
    );
    let Err(e) = gateway::config::load_file(&p, &gateway::metrics::Metrics::new()) else { panic!("accepted") };
    let text = e.to_string();
    assert!(
        text.contains("bad.yaml:")
            && text.contains("api.yaml#/paths/~1a/get/responses/200")
            && text.contains("names nothing"),
        "{text}"
    );
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_lose_undeclared_and_write_only_properties() {
    let up = TestUpstream::start().await;
    let gw = spec_gateway(&up).await;
    let a = gw.addr();
    let got = call(a, "GET", "/echo/items?ids=1", &[("x-tenant", "acme"), ("x-internal", "1")], "").await;
    assert_eq!(got.status, 200, "{}", got.text());
    let v = got.json();
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["headers", "method", "path"], "undeclared top-level properties removed: {v}");
    let headers: Vec<&String> = v["headers"].as_object().unwrap().keys().collect();
    assert_eq!(headers, ["host"], "writeOnly x-tenant and undeclared headers removed: {v}");
    assert_eq!(got.headers["content-length"], got.body.len().to_string());
    // Routes that read no response body (no spec, redaction off) forward the client's Accept-Encoding.
    let full = call(a, "GET", "/plain/echo", &[("accept-encoding", "gzip")], "").await.json();
    assert_eq!(full["headers"]["accept-encoding"], "gzip", "routes without a spec forward it unchanged");
    // block: a response with undeclared properties is refused.
    let got = get(a, "/echo/blocked").await;
    assert_eq!((got.status, got.code()), (502, "respond.schema".to_string()), "{}", got.text());
    assert!(!got.text().contains("x-request-id"));
    // A free-form object schema, and a status the spec does not declare: unchanged.
    assert!(get(a, "/echo/open").await.json().get("query").is_some());
    assert!(get(a, "/echo/status").await.json().get("query").is_some());
    // Monitor mode: undeclared properties pass (recorded), writeOnly ones still go.
    let v = call(a, "GET", "/v2/echo/items?ids=1", &[("x-tenant", "acme")], "").await.json();
    assert!(v.get("query").is_some() && v["headers"].get("x-forwarded-for").is_some(), "{v}");
    assert!(v["headers"].get("x-tenant").is_none(), "{v}");
    assert_eq!(v["headers"]["accept-encoding"], "identity", "the filter needs an uncompressed body");
    // Non-JSON responses stream through untouched on a route with a spec (JSON ones on routes without: above).
    let got = get(a, "/stream?chunks=3&ms=5").await;
    assert_eq!(got.text(), "chunk0;chunk1;chunk2;");
    assert!(got.headers.get("content-length").is_none(), "the stream was buffered");
    gw.handle.shutdown().await;
}

/// Strict routes refuse query parameters the operation does not declare (deepObject and exploded-object keys
/// belong to their parameter); `strict_query: false` lets them through while bodies stay strict. Unknown
/// cookies and headers are ignored either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_routes_refuse_undeclared_query_parameters() {
    let (api, _task) = sample_api::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let spec = sample_spec().display().to_string();
    let routes = format!(
        "  - {{ path: \"/*\", methods: [ANY], upstream: app, auth: none, openapi: {{ spec: \"{spec}\" }} }}
  - {{ hosts: [lax.test], path: \"/*\", methods: [ANY], upstream: app, auth: none, openapi: {{ spec: \"{spec}\", strict_query: false }} }}"
    );
    let gw = TestGateway::start(&config(&one_upstream(&format!("http://{api}")), &routes, "")).await;
    let a = gw.addr();
    let status = |g: &Got| (g.status, g.code());
    let schema = (400, "inspect.schema".to_string());
    assert_eq!(get(a, "/users?limit=2&role=user").await.status, 200);
    assert_eq!(status(&get(a, "/users?limit=2&debug=1").await), schema, "undeclared query parameter");
    assert_eq!(status(&get(a, "/users/2?admin=true").await), schema, "an operation without query parameters");
    assert_eq!(status(&get(a, "/users?limit%5B%5D=1").await), schema, "a spelling that is not the declared name");
    let got = get_with(a, "/users/2", &[("cookie", "tracking=1; theme=dark"), ("x-unknown", "1")]).await;
    assert_eq!(got.status, 200, "unknown cookies and headers are ignored: {}", got.text());
    // Not strict for the query: the undeclared parameter passes; declared ones are still checked, bodies strict.
    let lax = [("host", "lax.test")];
    assert_eq!(call(a, "GET", "/users?limit=2&utm_source=mail", &lax, "").await.status, 200);
    assert_eq!(status(&call(a, "GET", "/users?limit=500", &lax, "").await), schema);
    let smuggle = r#"{"name":"G","email":"g@example.com","password":"correct horse","is_admin":true}"#;
    let got = call(a, "POST", "/users", &[("host", "lax.test"), ("content-type", "application/json")], smuggle).await;
    assert_eq!(status(&got), schema, "{}", got.text());
    gw.handle.shutdown().await;
}

const UPLOAD_SPEC: &str = r##"openapi: 3.0.3
info: { title: uploads, version: "1" }
paths:
  /upload:
    post:
      requestBody:
        content:
          multipart/form-data:
            schema:
              type: object
              required: [title, file]
              properties:
                title: { type: string, maxLength: 20 }
                count: { type: integer, minimum: 1 }
                tags: { type: array, items: { type: string }, maxItems: 2 }
                meta: { type: object, properties: { lang: { type: string } } }
                file: { type: string, format: binary }
                extra: { type: array, items: { type: string, format: binary } }
          application/x-www-form-urlencoded:
            schema:
              type: object
              properties:
                ids: { type: array, items: { type: integer } }
                name: { type: string }
      responses: { "200": { description: ok } }
"##;

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, filename, content) in parts {
        b.extend_from_slice(format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some(f) = filename {
            b.extend_from_slice(format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream").as_bytes());
        }
        b.extend_from_slice(b"\r\n\r\n");
        b.extend_from_slice(content);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"--XyZ--\r\n");
    b
}

/// Multipart bodies are validated against their schema: parts as properties (typed, arrays from repeated
/// parts, JSON objects), files only where the schema declares `format: binary`, undeclared parts refused on
/// strict routes, and limits on parts and text fields. Form bodies: a single value of an array property is an
/// array of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_bodies_are_validated_against_the_schema() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    dir.write("uploads.yaml", UPLOAD_SPEC);
    let routes = "  - { path: /upload, methods: [POST], upstream: app, auth: none, openapi: { spec: uploads.yaml } }";
    let extra = "inspect: { json: { max_object_keys: 8, max_string_bytes: 64 } }";
    let gw = TestGateway::start_in(dir, &config(&one_upstream(&up.url()), routes, extra), false).await;
    let a = gw.addr();
    let send = |body: Vec<u8>| async move {
        let req = http::Request::post(format!("http://{a}/upload"))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        send(a, req).await
    };
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\x00\xff binary";
    let ok = multipart(&[
        ("title", None, b"Holiday"),
        ("count", None, b"2"),
        ("tags", None, b"sea"),
        ("tags", None, b"sun"),
        ("meta", None, br#"{"lang":"en"}"#),
        ("file", Some("a.png"), png),
        ("extra", Some("b.png"), png),
    ]);
    let got = send(ok).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(send(multipart(&[("title", None, b"T"), ("file", Some("a.png"), png)])).await.status, 200);
    let before = up.hits();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (multipart(&[("title", None, b"T")]), "inspect.schema", "required file missing"),
        (
            multipart(&[("title", Some("t.txt"), b"T"), ("file", Some("a.png"), png)]),
            "inspect.schema",
            "file in a text field",
        ),
        (
            multipart(&[("title", None, b"T"), ("file", Some("a"), png), ("role", None, b"admin")]),
            "inspect.schema",
            "undeclared part",
        ),
        (
            multipart(&[("title", None, b"T"), ("file", Some("a"), png), ("count", None, b"two")]),
            "inspect.schema",
            "integer",
        ),
        (
            multipart(&[("title", None, b"T"), ("file", Some("a"), png), ("count", None, b"0")]),
            "inspect.schema",
            "minimum",
        ),
        (
            multipart(&[
                ("title", None, b"T"),
                ("file", Some("a"), png),
                ("tags", None, b"a"),
                ("tags", None, b"b"),
                ("tags", None, b"c"),
            ]),
            "inspect.schema",
            "maxItems",
        ),
        (
            multipart(&[("title", None, b"T"), ("file", Some("a"), png), ("meta", None, b"{oops")]),
            "inspect.malformed_body",
            "JSON part",
        ),
        (
            multipart(&[("title", None, b"T"), ("file", Some("a"), png), ("meta", None, br#"{"lang":"en","x":1}"#)]),
            "inspect.schema",
            "undeclared in a JSON part",
        ),
        (
            multipart(&[("title", None, "x".repeat(100).as_bytes()), ("file", Some("a"), png)]),
            "inspect.malformed_body",
            "text part over the limit",
        ),
        (
            multipart(&[("title", None, b"\xff\xfe"), ("file", Some("a"), png)]),
            "inspect.malformed_body",
            "text part not UTF-8",
        ),
        (multipart(&vec![("tags", None, &b"t"[..]); 9]), "inspect.malformed_body", "too many parts"),
        (
            b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nunterminated".to_vec(),
            "inspect.malformed_body",
            "malformed",
        ),
    ];
    for (body, code, why) in cases {
        let got = send(body).await;
        assert_eq!(got.code(), code, "{why}: {}", got.text());
    }
    assert_eq!(up.hits(), before, "a refused body reached the upstream");
    let form = |body: &'static str| async move {
        call(a, "POST", "/upload", &[("content-type", "application/x-www-form-urlencoded")], body).await
    };
    assert_eq!(form("ids=1&name=a").await.status, 200, "one value of an array property");
    assert_eq!(form("ids=1&ids=2").await.status, 200);
    assert_eq!(form("ids=x").await.code(), "inspect.schema");
    assert_eq!(form("ids=1&role=admin").await.code(), "inspect.schema", "undeclared form field");
    gw.handle.shutdown().await;
}

const ENCODING_SPEC: &str = r##"
openapi: 3.1.0
info: { title: documents, version: "1" }
paths:
  /docs:
    post:
      requestBody:
        required: true
        content:
          multipart/form-data:
            schema:
              type: object
              required: [title]
              properties:
                title: { type: string }
                meta: { type: object, required: [lang], properties: { lang: { type: string, enum: [en, fr] } } }
                avatar: { type: string, format: binary }
                photo: { type: string, format: binary }
                attachment: { type: string, format: binary }
                notes: { type: string }
            encoding:
              avatar: { contentType: "image/png, image/jpeg" }
              photo:
                contentType: image/*
                headers:
                  X-Checksum: { required: true, schema: { type: string, pattern: "^[0-9a-f]{8}$" } }
                  X-Rating: { $ref: "#/components/headers/Rating" }
                  Content-Type: { required: true, schema: { type: string, enum: [ignored] } }
              notes: { contentType: "text/plain, text/markdown" }
              nobody: { contentType: "application/pdf" }
      responses: { "200": { description: ok } }
components:
  headers:
    Rating: { schema: { type: integer, maximum: 5 } }
"##;

/// One part for [`multipart_parts`]: the `Content-Disposition` parameters, other headers, the content.
type TestPart<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u8]);

/// A multipart body with the given part headers (besides `Content-Disposition`) per part.
fn multipart_parts(parts: &[TestPart<'_>]) -> Vec<u8> {
    let mut b = Vec::new();
    for (disposition, headers, content) in parts {
        b.extend_from_slice(format!("--XyZ\r\nContent-Disposition: form-data; {disposition}").as_bytes());
        for (h, v) in *headers {
            b.extend_from_slice(format!("\r\n{h}: {v}").as_bytes());
        }
        b.extend_from_slice(b"\r\n\r\n");
        b.extend_from_slice(content);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"--XyZ--\r\n");
    b
}

/// Multipart `encoding` objects: a part whose type its property's encoding (or OpenAPI's default for the
/// property's type) does not allow is `415 inspect.content_type`; part headers the encoding declares are
/// required and checked by their schemas (`400 inspect.schema`); JSON parts are checked by their property's
/// schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_parts_follow_their_encoding() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    dir.write("docs.yaml", ENCODING_SPEC);
    let routes = "  - { path: /docs, methods: [POST], upstream: app, auth: none, openapi: { spec: docs.yaml } }";
    let gw = TestGateway::start_in(dir, &config(&one_upstream(&up.url()), routes, ""), false).await;
    let a = gw.addr();
    let send = |body: Vec<u8>| async move {
        let req = http::Request::post(format!("http://{a}/docs"))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        send(a, req).await
    };
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\x00\xff";
    let title: TestPart<'_> = ("name=\"title\"", &[], b"Report");
    let photo_ok: &[(&str, &str)] = &[("Content-Type", "image/webp"), ("X-Checksum", "deadbeef"), ("X-Rating", "4")];
    let accepted: Vec<(&str, Vec<u8>)> = vec![
        (
            "every part as its encoding says",
            multipart_parts(&[
                title,
                ("name=\"meta\"", &[("Content-Type", "application/json")], br#"{"lang":"en"}"#),
                ("name=\"avatar\"; filename=\"a.png\"", &[("Content-Type", "image/png")], png),
                ("name=\"photo\"; filename=\"p.webp\"", photo_ok, png),
                ("name=\"notes\"", &[("Content-Type", "text/markdown; charset=utf-8")], b"# Notes"),
            ]),
        ),
        (
            "defaults: text with a charset, a +json part, a file of any type, parts without a type",
            multipart_parts(&[
                ("name=\"title\"", &[("Content-Type", "text/plain; charset=UTF-8")], b"Report"),
                ("name=\"meta\"", &[("Content-Type", "application/vnd.docs+json")], br#"{"lang":"fr"}"#),
                ("name=\"attachment\"; filename=\"x.pdf\"", &[("Content-Type", "application/pdf")], png),
                ("name=\"notes\"", &[], b"plain notes"),
            ]),
        ),
    ];
    for (why, body) in accepted {
        let got = send(body).await;
        assert_eq!(got.status, 200, "{why}: {}", got.text());
    }
    let before = up.hits();
    let photo = |headers: &'static [(&'static str, &'static str)]| {
        multipart_parts(&[title, ("name=\"photo\"; filename=\"p\"", headers, png)])
    };
    let refused: Vec<(&str, u16, &str, Vec<u8>)> = vec![
        (
            "an HTML file where the encoding lists images",
            415,
            "inspect.content_type",
            multipart_parts(&[
                title,
                ("name=\"avatar\"; filename=\"a.html\"", &[("Content-Type", "text/html")], b"<script>"),
            ]),
        ),
        (
            "a file without a type is text/plain",
            415,
            "inspect.content_type",
            multipart_parts(&[title, ("name=\"avatar\"; filename=\"a.png\"", &[], png)]),
        ),
        (
            "a text field labelled as JSON (default text/plain)",
            415,
            "inspect.content_type",
            multipart_parts(&[("name=\"title\"", &[("Content-Type", "application/json")], b"\"Report\"")]),
        ),
        (
            "an object part labelled as text (default application/json)",
            415,
            "inspect.content_type",
            multipart_parts(&[title, ("name=\"meta\"", &[("Content-Type", "text/plain")], br#"{"lang":"en"}"#)]),
        ),
        (
            "notes outside the listed text types",
            415,
            "inspect.content_type",
            multipart_parts(&[title, ("name=\"notes\"", &[("Content-Type", "text/html")], b"<b>x</b>")]),
        ),
        ("a required part header missing", 400, "inspect.schema", photo(&[("Content-Type", "image/gif")])),
        (
            "a part header failing its pattern",
            400,
            "inspect.schema",
            photo(&[("Content-Type", "image/gif"), ("X-Checksum", "not-hex!")]),
        ),
        (
            "a part header failing its typed schema",
            400,
            "inspect.schema",
            photo(&[("Content-Type", "image/gif"), ("X-Checksum", "deadbeef"), ("X-Rating", "9")]),
        ),
        (
            "a JSON part failing its property's schema",
            400,
            "inspect.schema",
            multipart_parts(&[title, ("name=\"meta\"", &[("Content-Type", "application/json")], br#"{"lang":"de"}"#)]),
        ),
    ];
    for (why, status, code, body) in refused {
        let got = send(body).await;
        assert_eq!((got.status, got.code()), (status, code.to_string()), "{why}: {}", got.text());
    }
    assert_eq!(up.hits(), before, "a refused part reached the upstream");
    gw.handle.shutdown().await;
}

const TRANSFER_SPEC: &str = r##"
openapi: 3.1.0
info: { title: transfers, version: "1" }
paths:
  /transfers:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [from, amount]
              properties:
                from: { type: object, properties: { account: { type: string } } }
                amount: { type: integer, minimum: 1 }
                memo: { type: string }
                role: { type: string }
      responses: { "200": { description: ok } }
"##;

/// One route with a spec, a JSON-body owner rule, a mass-assignment guard and detection: the body is parsed
/// once and every check reads that tree — each still refuses what it refused on its own, in stage order
/// (authorize before inspect), and a body that does not parse is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_rules_schema_and_detection_share_one_parse() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    dir.write("transfers.yaml", TRANSFER_SPEC);
    let keys = dir.path().join("keys.yaml");
    let alice = gateway::stages::identify::api_key::add(&keys, "alice", vec![], vec![], None).unwrap();
    let routes = "  - path: /transfers\n    methods: [POST]\n    upstream: app\n    auth: [api_key]\n    openapi: { spec: transfers.yaml }\n    owner: { json: from.account, claim: sub }\n    mass_assignment: { fields: [role] }";
    let yaml = config(&one_upstream(&up.url()), routes, "identity:\n  api_keys: { file: keys.yaml }\n");
    let gw = TestGateway::start_in(dir, &yaml, false).await;
    let a = gw.addr();
    let post = |body: &'static str| {
        let key = alice.secret.clone();
        async move {
            call(a, "POST", "/transfers", &[("x-api-key", key.as_str()), ("content-type", "application/json")], body)
                .await
        }
    };
    let got = post(r#"{"from":{"account":"alice"},"amount":5,"memo":"rent for May"}"#).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let before = up.hits();
    for (body, status, code, why) in [
        (r#"{"from":{"account":"bob"},"amount":5}"#, 403, "authz.object", "someone else's account"),
        (r#"{"from":{"account":"alice"},"amount":5,"role":"admin"}"#, 403, "authz.mass_assignment", "guarded field"),
        (r#"{"from":{"account":"alice"},"amount":0}"#, 400, "inspect.schema", "schema"),
        (r#"{"from":{"account":"alice"},"amount":5,"x":1}"#, 400, "inspect.schema", "undeclared property"),
        (r#"{"from":{"account":"alice"},"amount":5,"memo":"1' OR '1'='1"}"#, 403, "inspect.sqli", "detection"),
        (r#"{"from":{"account":"alice"},"from":{"account":"bob"},"amount":5}"#, 403, "authz.object", "duplicate key"),
        (r#"{"from":{"account":"alice"},"amount":5"#, 403, "authz.object", "not JSON"),
    ] {
        let got = post(body).await;
        assert_eq!((got.status, got.code()), (status, code.to_string()), "{why}: {}", got.text());
    }
    assert_eq!(up.hits(), before, "a refused body reached the upstream");
    gw.handle.shutdown().await;
}

/// The top-level `openapi:` shorthand: one entry protects a whole API (a route `{base_path}/*` with the spec),
/// carries route options, and keeps `auth` mandatory; errors point at the entry's lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_shorthand_protects_a_whole_api_from_its_spec() {
    let (api, _task) = sample_api::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let spec = sample_spec().display().to_string();
    let yaml = format!(
        "listen: [{{ addr: \"127.0.0.1:0\" }}]\nworkers: 1\naccess_log: off\nupstreams:\n{}\nopenapi:\n  - spec: \"{spec}\"\n    upstream: app\n    auth: none\n  - spec: \"{spec}\"\n    upstream: app\n    auth: none\n    hosts: [monitor.test]\n    modes: {{ inspect: monitor }}\n  - spec: \"{spec}\"\n    upstream: app\n    auth: none\n    base_path: /v2\nroutes:\n  - {{ path: /products, methods: [GET], upstream: app, auth: none }}\n",
        one_upstream(&format!("http://{api}"))
    );
    let gw = TestGateway::start(&yaml).await;
    let a = gw.addr();
    assert_eq!(get(a, "/users/2").await.status, 200);
    assert_eq!(get(a, "/v2/users/abc").await.code(), "inspect.schema", "the spec applies under its base path");
    assert_eq!(get(a, "/v2/internal/debug").await.code(), "route.not_found");
    assert_eq!((get(a, "/internal/debug").await.status), 404, "undeclared operations do not exist");
    let promote = r#"{"name":"G","email":"g@example.com","password":"correct horse","role":"admin"}"#;
    let got = call(a, "POST", "/users", &[("content-type", "application/json")], promote).await;
    assert_eq!((got.status, got.code()), (400, "inspect.schema".to_string()), "{}", got.text());
    assert_eq!(get(a, "/users?debug=1").await.code(), "inspect.schema");
    // An explicit route beside the shorthand wins for its path (this one has no spec).
    assert_eq!(get(a, "/products?debug=1").await.status, 200);
    // The second entry's route options apply: monitor mode lets the same request through.
    let got =
        call(a, "POST", "/users", &[("host", "monitor.test"), ("content-type", "application/json")], promote).await;
    assert_eq!(got.status, 201, "{}", got.text());
    gw.handle.shutdown().await;

    // `auth` is mandatory, and other mistakes are reported at the entry's lines.
    let dir = TempDir::new();
    let bad = format!(
        "listen: [{{ addr: \"127.0.0.1:0\" }}]\nupstreams:\n{}\nopenapi:\n  - spec: \"{spec}\"\n    upstream: app\n  - spec: nowhere.yaml\n    upstream: app\n    auth: none\n  - spec: \"{spec}\"\n    upstream: apx\n    auth: none\n    base_path: /v3\n",
        one_upstream("http://127.0.0.1:9")
    );
    let p = dir.write("bad.yaml", &bad);
    let Err(e) = gateway::config::load_file(&p, &gateway::metrics::Metrics::new()) else { panic!("accepted") };
    let text = e.to_string();
    assert!(text.contains("bad.yaml:5:") && text.contains("does not say who may call it"), "{text}");
    assert!(text.contains("bad.yaml:7:") && text.contains("nowhere.yaml"), "{text}");
    assert!(text.contains("bad.yaml:11:") && text.contains("unknown upstream `apx`"), "{text}");
}

/// Editing a file the spec pulls in through `$ref` reloads the config, like editing the spec itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_referenced_file_reloads_the_spec() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    dir.write("api.yaml", SPEC);
    let common = dir.write("common.yaml", COMMON);
    let routes = "  - { path: \"/echo/*\", methods: [ANY], upstream: app, auth: none, openapi: { spec: api.yaml } }";
    let gw = TestGateway::start_in(dir, &config(&one_upstream(&up.url()), routes, ""), true).await;
    let a = gw.addr();
    let post = || async move {
        call(
            a,
            "POST",
            "/echo/items",
            &[("content-type", "application/json")],
            r#"{"name":"a","qty":1,"colour":"red"}"#,
        )
        .await
    };
    assert_eq!(post().await.code(), "inspect.schema", "`colour` is not declared yet");
    std::fs::write(&common, COMMON.replace("      tags:", "      colour: { type: string }\n      tags:")).unwrap();
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        status = post().await.status;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "the change to common.yaml was not picked up");
    gw.handle.shutdown().await;
}

/// The shipped `examples/openapi.yaml` (the shorthand) in front of the sample API, as an operator runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_openapi_example_protects_the_sample_api() {
    let (api, _task) = sample_api::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let yaml = example(
        "openapi.yaml",
        &[
            ("RAMPART_UPSTREAM", format!("http://{api}")),
            ("RAMPART_LISTEN", "127.0.0.1:0".into()),
            ("RAMPART_ADMIN", "127.0.0.1:0".into()),
            ("RAMPART_OPENAPI", sample_spec().display().to_string()),
        ],
    );
    let gw = TestGateway::start(&yaml).await;
    let a = gw.addr();
    assert_eq!(get(a, "/products?q=keyboard").await.status, 200);
    assert_eq!(get(a, "/internal/debug").await.code(), "route.not_found");
    assert_eq!(get(a, "/users?debug=1").await.code(), "inspect.schema");
    let promote = r#"{"name":"G","email":"g@example.com","password":"correct horse","role":"admin"}"#;
    assert_eq!(
        call(a, "POST", "/users", &[("content-type", "application/json")], promote).await.code(),
        "inspect.schema"
    );
    let sqli = get(a, "/products?q=1%27%20UNION%20SELECT%20password%20FROM%20users--").await;
    assert_eq!(sqli.code(), "inspect.sqli", "detection runs on what the spec allows");
    gw.handle.shutdown().await;
}

/// On a spec route the detection engine walks the tree the validator parsed (one parse): keys and strings
/// nested in free-form objects and arrays are still scanned with their member names, exclusions still apply,
/// and monitor mode on the spec still lets the detector see the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_walks_the_validated_tree_on_spec_routes() {
    let up = TestUpstream::start().await;
    let dir = TempDir::new();
    dir.write(
        "notes.yaml",
        "openapi: 3.1.0\ninfo: { title: notes, version: '1' }\npaths:\n  /notes:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema:\n              type: object\n              properties:\n                title: { type: string }\n                snippet: { type: string }\n                meta: { type: object }\n                tags: { type: array, items: { type: string } }\n      responses: { '200': { description: ok } }\n",
    );
    let routes = "  - { path: /notes, methods: [POST], upstream: app, auth: none, openapi: { spec: notes.yaml }, inspect: { exclude: [\"json:snippet\"] } }";
    let gw = TestGateway::start_in(dir, &config(&one_upstream(&up.url()), routes, ""), false).await;
    let a = gw.addr();
    let post = |body: &'static str| async move {
        call(a, "POST", "/notes", &[("content-type", "application/json")], body).await
    };
    assert_eq!(post(r#"{"title":"Union Station","tags":["select","drop"],"meta":{"k":"O'Brien"}}"#).await.status, 200);
    assert_eq!(post(r#"{"meta":{"user":{"$where":"sleep(5000)"}}}"#).await.code(), "inspect.nosqli", "a nested key");
    assert_eq!(post(r#"{"meta":{"__proto__":{"admin":true}}}"#).await.code(), "inspect.proto_pollution");
    assert_eq!(post(r#"{"tags":["ok","' OR '1'='1' --"]}"#).await.code(), "inspect.sqli", "an array item");
    assert_eq!(post(r#"{"title":"<svg onload=alert(1)>"}"#).await.code(), "inspect.xss");
    assert_eq!(post(r#"{"snippet":"<script>alert(1)</script>"}"#).await.status, 200, "excluded field");
    assert_eq!(post(r#"{"title":"a","title":"b"}"#).await.code(), "inspect.malformed_body");
    gw.handle.shutdown().await;
}
