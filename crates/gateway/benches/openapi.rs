//! Cost of the OpenAPI positive model per request (a typical operation: path, query and header parameters and
//! a ~1 KB JSON body, strict) and of the response filter on a ~2 KB JSON body.
//!
//! Also: spec validation plus injection detection of one JSON body, parsed twice (validator tree + detection
//! token walk) versus once (detection walks the validator's tree); and with the authorize stage's body rules
//! (owner field, mass-assignment guard) parsing the body for themselves versus sharing the one parse.
//!
//! `cargo bench -p rampart-gateway --bench openapi`

use bytes::Bytes;
use divan::counter::BytesCount;
use divan::{black_box, Bencher};
use gateway::openapi::compile::Settings;
use gateway::openapi::validate::parse_json;
use gateway::openapi::{check_head, OpenApi, ResponseMode};
use gateway::pipeline::Verdict;
use gateway::stages::authorize::{AuthzPolicy, MassAssignmentRule, OwnerRule, OwnerSource};
use gateway::stages::identify::{AuthMethod, Identity};
use gateway::stages::inspect::{BodyKind, InspectPolicy, JsonLimits};
use serde_json::Value;
use std::path::Path;

fn main() {
    divan::main();
}

const SPEC: &str = r##"openapi: 3.1.0
info: { title: bench, version: "1" }
paths:
  /stores/{store}/orders:
    post:
      operationId: createOrder
      parameters:
        - { name: store, in: path, required: true, schema: { type: integer, minimum: 1 } }
        - { name: dry_run, in: query, schema: { type: boolean } }
        - { name: tags, in: query, style: form, explode: false, schema: { type: array, items: { type: string, maxLength: 16 } } }
        - { name: X-Tenant, in: header, required: true, schema: { type: string, pattern: "^[a-z0-9-]{3,32}$" } }
      requestBody:
        required: true
        content: { application/json: { schema: { $ref: "#/components/schemas/Order" } } }
      responses:
        "201": { description: created, content: { application/json: { schema: { $ref: "#/components/schemas/Order" } } } }
components:
  schemas:
    Address:
      type: object
      required: [street, city, country]
      properties:
        street: { type: string, maxLength: 200 }
        city: { type: string, maxLength: 100 }
        postcode: { type: string, pattern: "^[A-Z0-9 -]{3,10}$" }
        country: { type: string, enum: [FR, DE, GB, US, JP, IE] }
    Line:
      type: object
      required: [sku, qty, unit_price]
      properties:
        sku: { type: string, pattern: "^[A-Z]{2}-[0-9]{3,5}$" }
        qty: { type: integer, format: int32, minimum: 1, maximum: 1000 }
        unit_price: { type: number, minimum: 0 }
        note: { type: string, maxLength: 200 }
    Order:
      type: object
      required: [customer, lines, shipping]
      properties:
        id: { type: string, format: uuid, readOnly: true }
        customer:
          type: object
          required: [name, email]
          properties:
            name: { type: string, maxLength: 100 }
            email: { type: string, format: email }
            phone: { type: string, maxLength: 32 }
            password: { type: string, writeOnly: true }
        lines: { type: array, minItems: 1, maxItems: 50, items: { $ref: "#/components/schemas/Line" } }
        shipping: { $ref: "#/components/schemas/Address" }
        billing: { $ref: "#/components/schemas/Address" }
        status: { type: string, enum: [new, paid, shipped], readOnly: true }
        created_at: { type: string, format: date-time, readOnly: true }
"##;

fn api() -> OpenApi {
    let settings = Settings {
        strict: true,
        strict_query: true,
        base_path: String::new(),
        responses: ResponseMode::Filter,
        max_response_bytes: 1 << 22,
    };
    OpenApi::from_text(Path::new("bench.yaml"), SPEC, settings).unwrap()
}

fn lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"sku":"KB-{:04}","qty":{},"unit_price":{}.5,"note":"gift wrap, leave at door {i}"}}"#,
                100 + i,
                i + 1,
                10 + i
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A realistic order of about 1 KB.
fn request_body() -> String {
    format!(
        r#"{{"customer":{{"name":"Seán O'Brien","email":"sean@example.com","phone":"+353 1 555 0100"}},"lines":[{}],"shipping":{{"street":"12 Drop Lane","city":"Dublin","postcode":"D02 X285","country":"IE"}},"billing":{{"street":"12 Drop Lane","city":"Dublin","postcode":"D02 X285","country":"IE"}}}}"#,
        lines(8)
    )
}

/// The upstream's answer of about 2 KB, with undeclared and writeOnly properties to remove.
fn response_body() -> String {
    format!(
        r#"{{"id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","status":"new","created_at":"2024-05-01T10:00:00Z","internal_margin":0.31,"customer":{{"name":"Seán O'Brien","email":"sean@example.com","password":"hunter2hunter2","risk_score":12}},"lines":[{}],"shipping":{{"street":"12 Drop Lane","city":"Dublin","postcode":"D02 X285","country":"IE","geo":{{"lat":53.3,"lon":-6.2}}}}}}"#,
        lines(18)
    )
}

fn parts(body_len: usize) -> http::request::Parts {
    http::Request::post("/stores/42/orders?dry_run=false&tags=gift,express")
        .header("x-tenant", "acme-eu")
        .header("content-type", "application/json")
        .header("content-length", body_len)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

#[divan::bench]
fn validate_request(bencher: Bencher) {
    let api = api();
    let body = Bytes::from(request_body());
    assert!((900..1300).contains(&body.len()) && (1800..2600).contains(&response_body().len()));
    let parts = parts(body.len());
    let limits = JsonLimits::default();
    bencher.counter(BytesCount::new(body.len())).bench(|| {
        let head = check_head(&api, black_box(&parts), "/stores/42/orders", true);
        assert!(matches!(head.verdict, Verdict::Continue));
        let (Some(op), Some(media)) = (head.op, head.media) else { panic!("no operation") };
        let v = op.check_body(media, "application/json", black_box(&body), &limits, api.strict).verdict;
        assert!(matches!(v, Verdict::Continue), "{v:?}");
    });
}

fn detection() -> InspectPolicy {
    InspectPolicy {
        detector: detect::Detector::new(detect::Level::L1),
        headers: vec![http::header::USER_AGENT, http::header::COOKIE],
        exclude: Default::default(),
        max_body_bytes: 1 << 20,
        json: JsonLimits::default(),
    }
}

/// Spec validation and injection detection of the same ~1 KB JSON body, as the gateway did before: the
/// validator parses it into a tree, the detection engine parses it again (its token walk).
#[divan::bench]
fn validate_and_detect_two_parses(bencher: Bencher) {
    let (api, policy) = (api(), detection());
    let body = Bytes::from(request_body());
    let parts = parts(body.len());
    let limits = JsonLimits::default();
    bencher.counter(BytesCount::new(body.len())).bench(|| {
        let head = check_head(&api, black_box(&parts), "/stores/42/orders", true);
        let (Some(op), Some(media)) = (head.op, head.media) else { panic!("no operation") };
        let checked = op.check_body(media, "application/json", black_box(&body), &limits, api.strict);
        assert!(matches!(checked.verdict, Verdict::Continue));
        let v = policy.scan_body(BodyKind::Json, black_box(&body));
        assert!(matches!(v, Verdict::Continue), "{v:?}");
    });
}

/// The same, with the detection engine walking the validator's tree (what the gateway does now).
#[divan::bench]
fn validate_and_detect_one_parse(bencher: Bencher) {
    let (api, policy) = (api(), detection());
    let body = Bytes::from(request_body());
    let parts = parts(body.len());
    let limits = JsonLimits::default();
    bencher.counter(BytesCount::new(body.len())).bench(|| {
        let head = check_head(&api, black_box(&parts), "/stores/42/orders", true);
        let (Some(op), Some(media)) = (head.op, head.media) else { panic!("no operation") };
        let checked = op.check_body(media, "application/json", black_box(&body), &limits, api.strict);
        assert!(matches!(checked.verdict, Verdict::Continue));
        let Some(tree) = &checked.json else { panic!("no tree") };
        let v = policy.scan_json_tree(tree);
        assert!(matches!(v, Verdict::Continue), "{v:?}");
    });
}

/// An authorize policy with the two body rules (owner from a JSON field, mass-assignment guard) and the
/// identity that owns the bench body.
fn body_rules() -> (AuthzPolicy, Identity) {
    let policy = AuthzPolicy {
        owner: Some(OwnerRule {
            source: OwnerSource::Json(vec!["customer".into(), "email".into()]),
            claim: "email".into(),
            override_roles: Vec::new(),
        }),
        mass_assignment: Some(MassAssignmentRule { fields: vec!["role".into(), "is_admin".into()], roles: Vec::new() }),
        ..AuthzPolicy::default()
    };
    let id = Identity {
        consumer: "sean".into(),
        method: AuthMethod::ApiKey,
        scopes: Vec::new(),
        roles: Vec::new(),
        claims: serde_json::json!({ "email": "sean@example.com" }),
    };
    (policy, id)
}

/// Authorize body rules, spec validation and detection of one ~1 KB JSON body as the gateway did before: the
/// authorize stage parsed the body for its rules, the validator parsed it again (detection walks its tree).
#[divan::bench]
fn authorize_validate_detect_two_parses(bencher: Bencher) {
    let (api, policy, (authz, id)) = (api(), detection(), body_rules());
    let body = Bytes::from(request_body());
    let parts = parts(body.len());
    let limits = JsonLimits::default();
    bencher.counter(BytesCount::new(body.len())).bench(|| {
        let v = authz.check_body(&id, &BodyKind::Json, black_box(&body));
        assert!(matches!(v, Verdict::Continue), "{v:?}");
        let head = check_head(&api, black_box(&parts), "/stores/42/orders", true);
        let (Some(op), Some(media)) = (head.op, head.media) else { panic!("no operation") };
        let checked = op.check_body(media, "application/json", black_box(&body), &limits, api.strict);
        let Some(tree) = &checked.json else { panic!("no tree") };
        let v = policy.scan_json_tree(tree);
        assert!(matches!(v, Verdict::Continue), "{v:?}");
    });
}

/// The same with one parse shared by the three checks (what the gateway does now).
#[divan::bench]
fn authorize_validate_detect_one_parse(bencher: Bencher) {
    let (api, policy, (authz, id)) = (api(), detection(), body_rules());
    let body = Bytes::from(request_body());
    let parts = parts(body.len());
    let limits = JsonLimits::default();
    bencher.counter(BytesCount::new(body.len())).bench(|| {
        let tree = parse_json(black_box(&body), &limits).ok();
        let v = authz.check_body_parsed(&id, &BodyKind::Json, black_box(&body), tree.as_ref());
        assert!(matches!(v, Verdict::Continue), "{v:?}");
        let head = check_head(&api, black_box(&parts), "/stores/42/orders", true);
        let (Some(op), Some(media)) = (head.op, head.media) else { panic!("no operation") };
        let checked = op.check_body_parsed(media, "application/json", black_box(&body), &limits, api.strict, tree);
        let Some(tree) = &checked.json else { panic!("no tree") };
        let v = policy.scan_json_tree(tree);
        assert!(matches!(v, Verdict::Continue), "{v:?}");
    });
}

/// The detection engine alone on the body, parsing it (the token walk) and on an already parsed tree.
#[divan::bench]
fn detect_token_walk(bencher: Bencher) {
    let policy = detection();
    let body = Bytes::from(request_body());
    bencher.counter(BytesCount::new(body.len())).bench(|| policy.scan_body(BodyKind::Json, black_box(&body)));
}

#[divan::bench]
fn detect_tree_walk(bencher: Bencher) {
    let policy = detection();
    let body = Bytes::from(request_body());
    let tree: Value = serde_json::from_slice(&body).unwrap();
    bencher.counter(BytesCount::new(body.len())).bench(|| policy.scan_json_tree(black_box(&tree)));
}

#[divan::bench]
fn filter_response_parse_filter_serialize(bencher: Bencher) {
    let api = api();
    let body = Bytes::from(response_body());
    let OpenApiOp(op) = op(&api);
    bencher.counter(BytesCount::new(body.len())).bench(|| {
        let mut v: Value = serde_json::from_slice(black_box(&body)).unwrap();
        let check = op.filter_response(201, &mut v, ResponseMode::Filter);
        black_box(check);
        serde_json::to_vec(&v).unwrap()
    });
}

#[divan::bench]
fn filter_response_transform_only(bencher: Bencher) {
    let api = api();
    let value: Value = serde_json::from_str(&response_body()).unwrap();
    let OpenApiOp(op) = op(&api);
    bencher.with_inputs(|| value.clone()).bench_local_refs(|v| op.filter_response(201, v, ResponseMode::Filter));
}

struct OpenApiOp<'a>(&'a gateway::openapi::Operation);

fn op(api: &OpenApi) -> OpenApiOp<'_> {
    match api.find(&http::Method::POST, "/stores/42/orders") {
        gateway::openapi::OperationMatch::Found(op, _) => OpenApiOp(op),
        _ => panic!("no operation"),
    }
}
