//! The OpenAPI checks against real published specs (../shared/corpora/openapi, read from there)
//! and small specs written here for what those do not exercise.

use std::path::PathBuf;

use intelligence::{
    Exchange, FindingKind,
    auth::AuthScheme,
    exchange::Side,
    openapi::{Conformance, Source, Spec, check, spec::Compiled},
};

static CALLER: std::sync::LazyLock<intelligence::Caller> =
    std::sync::LazyLock::new(|| intelligence::Caller::peer("test"));

struct Files;

impl Source for Files {
    fn read(&mut self, document: &str) -> Result<String, String> {
        std::fs::read_to_string(document).map_err(|error| error.to_string())
    }
}

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpora/openapi")
        .join(name)
}

fn load(name: &str) -> Compiled {
    let path = corpus(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    Spec::load(&text, &path.to_string_lossy(), &mut Files)
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn inline(text: &str) -> Spec {
    let compiled = Spec::load(text, "inline.yaml", &mut Files).expect("inline spec loads");
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    compiled.spec
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

/// A call with a JSON request and response; `request` and `response` may be empty.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    request_headers: &'a [(&'a str, &'a str)],
    request: &'a [u8],
    status: u16,
    response_headers: &'a [(&'a str, &'a str)],
    response: &'a [u8],
    auth: AuthScheme,
}

impl Default for Call<'_> {
    fn default() -> Self {
        Self {
            method: "GET",
            path: "/",
            query: None,
            request_headers: &[],
            request: b"",
            status: 200,
            response_headers: JSON,
            response: b"",
            auth: AuthScheme::None,
        }
    }
}

impl Call<'_> {
    fn check(&self, spec: &Spec) -> Conformance {
        let exchange = Exchange {
            method: self.method,
            path: self.path,
            query: self.query,
            status: Some(self.status),
            request: Side {
                headers: self.request_headers,
                body: self.request,
                body_complete: true,
                seen: true,
            },
            response: Side {
                headers: self.response_headers,
                body: self.response,
                body_complete: true,
                seen: true,
            },
            caller: &CALLER,
            auth: self.auth,
            time_unix_secs: 0,
            latency_us: None,
        };
        check(spec, &exchange)
    }

    fn kinds(&self, spec: &Spec) -> Vec<FindingKind> {
        self.check(spec)
            .violations
            .iter()
            .map(|violation| violation.kind)
            .collect()
    }
}

const PET: &[u8] = br#"{"id": 10, "name": "doggie", "photoUrls": ["a.png"], "status": "sold",
    "category": {"id": 1, "name": "Dogs"}, "tags": [{"id": 1, "name": "good"}]}"#;

#[test]
fn every_published_spec_compiles() {
    for (name, minimum_operations) in [
        ("petstore3.yaml", 19),
        ("openbanking-account-info.json", 28),
        ("otoroshi.json", 45),
        ("discourse.json", 68),
    ] {
        let compiled = load(name);
        assert!(
            compiled.spec.operations.len() >= minimum_operations,
            "{name}: {} operations",
            compiled.spec.operations.len()
        );
        assert!(
            compiled.warnings.is_empty(),
            "{name}: {:?}",
            compiled.warnings
        );
    }
}

#[test]
fn conforming_petstore_traffic_gives_no_violation() {
    let spec = load("petstore3.yaml").spec;
    let calls = [
        Call {
            path: "/api/v3/pet/10",
            request_headers: &[("api_key", "[redacted]")],
            response: PET,
            ..Call::default()
        },
        Call {
            method: "POST",
            path: "/api/v3/pet",
            request_headers: JSON,
            request: PET,
            response: PET,
            auth: AuthScheme::BearerJwt,
            ..Call::default()
        },
        Call {
            path: "/api/v3/pet/findByStatus",
            query: Some("status=sold"),
            response: &[b"[", PET, b"]"].concat(),
            auth: AuthScheme::Bearer,
            ..Call::default()
        },
        Call {
            path: "/api/v3/pet/findByTags",
            query: Some("tags=a&tags=b"),
            response: b"[]",
            auth: AuthScheme::Bearer,
            ..Call::default()
        },
        Call {
            method: "POST",
            path: "/api/v3/store/order",
            request_headers: &[("Content-Type", "application/x-www-form-urlencoded")],
            request: b"id=1&petId=10&quantity=2&status=placed&complete=true",
            response: br#"{"id": 1, "petId": 10, "quantity": 2, "shipDate": "2024-03-01T10:00:00Z", "status": "placed", "complete": true}"#,
            ..Call::default()
        },
        Call {
            path: "/api/v3/user/jane%20doe",
            status: 404,
            response_headers: &[],
            ..Call::default()
        },
        Call {
            method: "HEAD",
            path: "/api/v3/store/order/3",
            ..Call::default()
        },
    ];
    for call in calls {
        let result = call.check(&spec);
        assert!(
            result.violations.is_empty(),
            "{} {}: {:?}",
            call.method,
            call.path,
            result.violations
        );
        assert!(result.operation.is_some());
    }
    let documented = Call {
        path: "/api/v3/pet/findByStatus",
        auth: AuthScheme::Bearer,
        response: b"[]",
        ..Call::default()
    }
    .check(&spec)
    .documented;
    assert_eq!(
        documented,
        Some((
            "/api/v3/pet/findByStatus".to_owned(),
            "#/paths/~1pet~1findByStatus/get".to_owned()
        ))
    );
}

#[test]
fn a_path_outside_the_spec_is_a_shadow_api_only_when_the_server_serves_it() {
    let spec = load("petstore3.yaml").spec;
    let kinds = |status| {
        Call {
            path: "/api/v3/admin/export",
            status,
            ..Call::default()
        }
        .check(&spec)
        .violations
        .iter()
        .map(|violation| violation.kind)
        .collect::<Vec<_>>()
    };
    assert_eq!(kinds(200), [FindingKind::UndocumentedEndpoint]);
    assert_eq!(kinds(403), [FindingKind::UndocumentedEndpoint]);
    assert_eq!(kinds(404), [], "a scanner's miss is no endpoint");
}

#[test]
fn each_petstore_violation_is_reported_once_with_its_pointer() {
    let spec = load("petstore3.yaml").spec;
    let key = &[("api_key", "[redacted]")][..];
    let cases: Vec<(Call, FindingKind, &str)> = vec![
        (
            Call {
                path: "/api/v3/admin/export",
                ..Call::default()
            },
            FindingKind::UndocumentedEndpoint,
            "#/paths",
        ),
        (
            Call {
                method: "PATCH",
                path: "/api/v3/pet/10",
                request_headers: key,
                ..Call::default()
            },
            FindingKind::MethodNotAllowed,
            "#/paths/~1pet~1{petId}",
        ),
        (
            Call {
                path: "/api/v3/store/inventory",
                response: b"{}",
                ..Call::default()
            },
            FindingKind::MissingHeader,
            "#/paths/~1store~1inventory/get/security",
        ),
        (
            Call {
                path: "/api/v3/pet/ten",
                request_headers: key,
                response: PET,
                ..Call::default()
            },
            FindingKind::InvalidParameter,
            "#/paths/~1pet~1{petId}/get/parameters/0",
        ),
        (
            Call {
                path: "/api/v3/pet/findByStatus",
                query: Some("status=lost"),
                auth: AuthScheme::Bearer,
                response: b"[]",
                ..Call::default()
            },
            FindingKind::InvalidParameter,
            "#/paths/~1pet~1findByStatus/get/parameters/0",
        ),
        (
            Call {
                method: "POST",
                path: "/api/v3/pet",
                request_headers: JSON,
                request: br#"{"name": 5, "status": "gone"}"#,
                auth: AuthScheme::Bearer,
                response: PET,
                ..Call::default()
            },
            FindingKind::InvalidRequestBody,
            "#/components/schemas/Pet",
        ),
        (
            Call {
                method: "POST",
                path: "/api/v3/pet",
                request_headers: &[("Content-Type", "text/csv")],
                request: b"id,name\n1,x",
                auth: AuthScheme::Bearer,
                response: PET,
                ..Call::default()
            },
            FindingKind::UnexpectedContentType,
            "#/paths/~1pet/post/requestBody/content",
        ),
        (
            Call {
                path: "/api/v3/pet/10",
                request_headers: key,
                response: br#"{"id": "ten", "name": "x", "photoUrls": []}"#,
                ..Call::default()
            },
            FindingKind::InvalidResponseBody,
            "#/components/schemas/Pet/properties/id",
        ),
    ];
    for (call, kind, pointer) in cases {
        let result = call.check(&spec);
        assert_eq!(
            result
                .violations
                .iter()
                .map(|violation| violation.kind)
                .collect::<Vec<_>>(),
            [kind],
            "{} {}: {:?}",
            call.method,
            call.path,
            result.violations
        );
        let violation = &result.violations[0];
        assert!(
            violation.pointer.ends_with(pointer),
            "{kind:?}: pointer {} is not {pointer}",
            violation.pointer
        );
        assert!(!violation.message.is_empty());
    }
}

#[test]
fn evidence_is_masked() {
    let spec = load("petstore3.yaml").spec;
    let result = Call {
        path: "/api/v3/pet/findByStatus",
        query: Some("status=4111111111111111"),
        auth: AuthScheme::Bearer,
        response: b"[]",
        ..Call::default()
    }
    .check(&spec);
    let evidence = &result.violations[0].evidence;
    assert!(!evidence.contains("4111111111111111"), "{evidence}");
    assert!(evidence.contains("16 chars"), "{evidence}");
}

const SMALL: &str = r##"
openapi: 3.1.0
info: {title: small, version: "1"}
paths:
  /search:
    get:
      parameters:
        - {name: q, in: query, required: true, schema: {type: string, minLength: 2}}
        - {name: X-Request-Id, in: header, required: true, schema: {type: string, format: uuid}}
        - {name: ids, in: query, schema: {type: array, items: {type: integer}}, style: form, explode: false}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Tree"}
        "4XX": {description: client error}
components:
  schemas:
    Tree:
      type: object
      required: [name]
      additionalProperties: false
      properties:
        name: {type: [string, "null"], maxLength: 8}
        children: {type: array, maxItems: 1000, items: {$ref: "#/components/schemas/Tree"}}
"##;

#[test]
fn parameters_headers_statuses_and_recursive_schemas() {
    let spec = inline(SMALL);
    let id = &[("X-Request-Id", "123e4567-e89b-12d3-a456-426614174000")][..];
    let good = Call {
        path: "/search",
        query: Some("q=ab&ids=1,2,3"),
        request_headers: id,
        response:
            br#"{"name": "root", "children": [{"name": null, "children": [{"name": "leaf"}]}]}"#,
        ..Call::default()
    };
    assert_eq!(good.kinds(&spec), []);
    let cases: Vec<(Call, Vec<FindingKind>)> = vec![
        (
            Call {
                query: None,
                ..Call {
                    ..good_clone(&good)
                }
            },
            vec![FindingKind::MissingParameter],
        ),
        (
            Call {
                query: Some("q=a"),
                ..good_clone(&good)
            },
            vec![FindingKind::InvalidParameter],
        ),
        (
            Call {
                query: Some("q=ab&ids=1,x"),
                ..good_clone(&good)
            },
            vec![FindingKind::InvalidParameter],
        ),
        (
            Call {
                request_headers: &[],
                ..good_clone(&good)
            },
            vec![FindingKind::MissingHeader],
        ),
        (
            Call {
                request_headers: &[("x-request-id", "nope")],
                ..good_clone(&good)
            },
            vec![FindingKind::InvalidParameter],
        ),
        (
            Call {
                status: 302,
                ..good_clone(&good)
            },
            vec![FindingKind::UnexpectedStatus],
        ),
        (
            Call {
                status: 404,
                ..good_clone(&good)
            },
            vec![],
        ),
        (
            Call {
                response: br#"{"name": "root", "children": [{"name": "far too long"}]}"#,
                ..good_clone(&good)
            },
            vec![FindingKind::InvalidResponseBody],
        ),
        (
            Call {
                response: br#"{"name": "x", "extra": 1}"#,
                ..good_clone(&good)
            },
            vec![FindingKind::InvalidResponseBody],
        ),
        (
            Call {
                response_headers: &[("Content-Type", "text/html")],
                response: b"<html>",
                ..good_clone(&good)
            },
            vec![FindingKind::UnexpectedContentType],
        ),
        (
            Call {
                query: Some("q=a"),
                request_headers: &[],
                status: 302,
                ..good_clone(&good)
            },
            vec![
                FindingKind::InvalidParameter,
                FindingKind::MissingHeader,
                FindingKind::UnexpectedStatus,
            ],
        ),
    ];
    for (call, expected) in cases {
        let mut kinds = call.kinds(&spec);
        kinds.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(
            kinds, expected,
            "query {:?} headers {:?} status {}",
            call.query, call.request_headers, call.status
        );
    }
    let deep = Call {
        response: br#"{"name": "a", "children": [{"name": "b", "children": [{"name": 3}]}]}"#,
        ..good_clone(&good)
    }
    .check(&spec);
    assert!(
        deep.violations[0]
            .evidence
            .contains("/children/0/children/0/name"),
        "{:?}",
        deep.violations
    );
}

fn good_clone<'a>(call: &Call<'a>) -> Call<'a> {
    Call {
        method: call.method,
        path: call.path,
        query: call.query,
        request_headers: call.request_headers,
        request: call.request,
        status: call.status,
        response_headers: call.response_headers,
        response: call.response,
        auth: call.auth,
    }
}

#[test]
fn hostile_bodies_give_findings_never_a_panic() {
    let spec = inline(SMALL);
    let id = &[("X-Request-Id", "123e4567-e89b-12d3-a456-426614174000")][..];
    let deep_nesting = "[".repeat(100_000);
    let wide = format!(
        "{{\"name\": \"x\", \"children\": [{}]}}",
        vec!["{\"name\": \"y\"}"; 20_000].join(",")
    );
    let bodies: Vec<&[u8]> = vec![
        deep_nesting.as_bytes(),
        wide.as_bytes(),
        b"{\"name\": \"\xff\xfe\"}",
        b"\x00\x01",
        b"{",
    ];
    for body in bodies {
        let result = Call {
            path: "/search",
            query: Some("q=ab"),
            request_headers: id,
            response: body,
            ..Call::default()
        }
        .check(&spec);
        assert_eq!(
            result
                .violations
                .iter()
                .map(|violation| violation.kind)
                .collect::<Vec<_>>(),
            [FindingKind::InvalidResponseBody],
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
}

#[test]
fn broken_specs_are_refused_or_warned_about_with_a_pointer() {
    let not_openapi =
        Spec::load("swagger: '2.0'\npaths: {}\n", "old.yaml", &mut Files).expect_err("Swagger 2");
    assert_eq!(
        (not_openapi.document.as_str(), not_openapi.pointer.as_str()),
        ("old.yaml", "/openapi")
    );
    assert!(not_openapi.reason.contains("Swagger 2.0"), "{not_openapi}");
    let syntax = Spec::load("openapi: [3.1\n", "bad.yaml", &mut Files).expect_err("YAML error");
    assert!(syntax.reason.contains("not valid JSON or YAML"), "{syntax}");
    let broken_ref = r##"
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /a:
    get:
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Missing"}}}}
  /b:
    get:
      responses: {"200": {description: ok}}
  /c:
    get:
      parameters: [{name: x, in: query, schema: {type: strin}}]
      responses: {"200": {description: ok}}
"##;
    let compiled =
        Spec::load(broken_ref, "api.yaml", &mut Files).expect("the rest of the spec loads");
    let pointers: Vec<&str> = compiled
        .warnings
        .iter()
        .map(|warning| warning.pointer.as_str())
        .collect();
    assert_eq!(
        pointers,
        [
            "/paths/~1a/get/responses/200/content/application~1json/schema",
            "/paths/~1c/get/parameters/0/schema/type"
        ],
        "{:?}",
        compiled.warnings
    );
    assert_eq!(compiled.spec.operations.len(), 2);
    let shared_broken = r##"
openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /a:
    post:
      requestBody: {content: {application/json: {schema: {$ref: "#/components/schemas/Bad"}}}}
      responses: {"200": {description: ok}}
  /b:
    post:
      requestBody: {content: {application/json: {schema: {$ref: "#/components/schemas/Bad"}}}}
      responses: {"200": {description: ok}}
components:
  schemas:
    Bad: {type: object, properties: {n: {type: integr}}}
"##;
    let compiled = Spec::load(shared_broken, "api.yaml", &mut Files).expect("loads");
    let pointers: Vec<&str> = compiled
        .warnings
        .iter()
        .map(|warning| warning.pointer.as_str())
        .collect();
    assert_eq!(
        pointers,
        [
            "/components/schemas/Bad/properties/n/type",
            "/components/schemas/Bad/properties/n/type"
        ],
        "every operation using a broken schema is left out, not only the first"
    );
    assert!(compiled.spec.operations.is_empty());
    let missing_file = r#"{"openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "paths": {"/a": {"$ref": "paths/a.yaml"}}}"#;
    let compiled = Spec::load(missing_file, "/nonexistent/api.json", &mut Files).expect("loads");
    assert_eq!(compiled.warnings.len(), 1);
    assert!(
        compiled.warnings[0]
            .reason
            .contains("/nonexistent/paths/a.yaml"),
        "{:?}",
        compiled.warnings
    );
}
