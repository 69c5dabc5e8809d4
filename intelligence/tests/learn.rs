//! Specs learned from traffic: the traffic they were learned from conforms to them, whatever
//! its JSON looks like.

use intelligence::{
    Exchange,
    auth::AuthScheme,
    endpoints::{Inventory, InventoryLimits},
    exchange::Side,
    learn::{self, LearnedEndpoint, Shape},
    openapi::{Source, Spec, check, schema::Direction},
};
use proptest::prelude::*;
use serde_json::{Value, json};

static CALLER: std::sync::LazyLock<intelligence::Caller> =
    std::sync::LazyLock::new(|| intelligence::Caller::peer("web"));

struct NoFiles;

impl Source for NoFiles {
    fn read(&mut self, document: &str) -> Result<String, String> {
        Err(format!("{document}: no files here"))
    }
}

struct Sample {
    method: &'static str,
    path: String,
    query: Option<String>,
    request: Option<Value>,
    status: u16,
    response: Option<Value>,
    auth: AuthScheme,
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

fn exchange<'a>(sample: &'a Sample, request: &'a [u8], response: &'a [u8]) -> Exchange<'a> {
    Exchange {
        method: sample.method,
        path: &sample.path,
        query: sample.query.as_deref(),
        status: Some(sample.status),
        request: Side {
            headers: if request.is_empty() { &[] } else { JSON },
            body: request,
            body_complete: true,
            seen: true,
        },
        response: Side {
            headers: if response.is_empty() { &[] } else { JSON },
            body: response,
            body_complete: true,
            seen: true,
        },
        caller: &CALLER,
        auth: sample.auth,
        time_unix_secs: 1,
        latency_us: Some(100),
    }
}

fn traffic() -> Vec<Sample> {
    let mut samples = Vec::new();
    for id in 1..70u32 {
        let tags = if id % 3 == 0 {
            json!([])
        } else {
            json!([{"id": id, "name": "t"}])
        };
        let mut pet = json!({"id": id, "name": format!("pet {id}"), "photoUrls": ["https://x/1.png"], "tags": tags});
        if id % 2 == 0 {
            pet["status"] = json!("sold");
        }
        if id % 5 == 0 {
            pet["category"] = Value::Null;
        }
        samples.push(Sample {
            method: "GET",
            path: format!("/api/v3/pet/{id}"),
            query: None,
            request: None,
            status: if id % 7 == 0 { 404 } else { 200 },
            response: Some(if id % 7 == 0 {
                json!({"code": 404, "message": "no pet"})
            } else {
                pet.clone()
            }),
            auth: AuthScheme::BearerJwt,
        });
        samples.push(Sample {
            method: "POST",
            path: "/api/v3/pet".to_owned(),
            query: None,
            request: Some(pet.clone()),
            status: 200,
            response: Some(pet),
            auth: AuthScheme::Bearer,
        });
        samples.push(Sample {
            method: "GET",
            path: "/api/v3/pet/findByStatus".to_owned(),
            query: Some(format!(
                "status={}&limit={}",
                ["sold", "available"][id as usize % 2],
                id
            )),
            request: None,
            status: 200,
            response: Some(json!([{"id": id, "weight": 1.5 * f64::from(id)}])),
            auth: AuthScheme::None,
        });
        samples.push(Sample {
            method: "DELETE",
            path: format!("/api/v3/user/member{id}"),
            query: None,
            request: None,
            status: 204,
            response: None,
            auth: AuthScheme::Basic,
        });
    }
    samples
}

#[test]
fn a_learned_spec_accepts_the_traffic_it_was_learned_from() {
    let samples = traffic();
    let bodies: Vec<(Vec<u8>, Vec<u8>)> = samples
        .iter()
        .map(|sample| {
            let encode = |value: &Option<Value>| {
                value
                    .as_ref()
                    .map(|value| value.to_string().into_bytes())
                    .unwrap_or_default()
            };
            (encode(&sample.request), encode(&sample.response))
        })
        .collect();
    let mut inventory = Inventory::new(InventoryLimits::default());
    for (sample, (request, response)) in samples.iter().zip(&bodies) {
        inventory.observe("petstore", &exchange(sample, request, response), None);
    }
    let endpoints: Vec<_> = inventory.endpoints().collect();
    let learned: Vec<LearnedEndpoint<'_>> = endpoints
        .iter()
        .map(|(_, key, stats)| LearnedEndpoint {
            method: &key.method,
            template: &key.template,
            learned: &stats.learned,
        })
        .collect();
    let document = learn::openapi("petstore", &learned);
    let paths = document["paths"].as_object().expect("paths");
    let mut templates: Vec<&String> = paths.keys().collect();
    templates.sort();
    assert_eq!(
        templates,
        [
            "/api/v3/pet",
            "/api/v3/pet/findByStatus",
            "/api/v3/pet/{id}",
            "/api/v3/user/{param}"
        ]
    );
    let get = &paths["/api/v3/pet/{id}"]["get"];
    assert_eq!(get["parameters"][0]["schema"]["type"], "integer", "{get}");
    assert_eq!(get["security"], json!([{"jwtAuth": []}]));
    let pet_schema = &get["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        pet_schema["required"],
        json!(["id", "name", "photoUrls", "tags"]),
        "{pet_schema}"
    );
    assert_eq!(
        pet_schema["properties"]["photoUrls"]["items"]["format"],
        "uri"
    );
    assert_eq!(pet_schema["properties"]["category"]["type"], "null");
    let find = &paths["/api/v3/pet/findByStatus"]["get"];
    assert!(
        find.get("security").is_none(),
        "some calls had no credentials: {find}"
    );
    assert_eq!(
        find["responses"]["200"]["content"]["application/json"]["schema"]["items"]["properties"]["weight"]
            ["type"],
        "number"
    );

    let text = serde_json::to_string(&document).expect("serializes");
    let compiled = Spec::load(&text, "learned.json", &mut NoFiles).expect("the learned spec loads");
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    assert_eq!(
        learn::diff(&compiled.spec, &learned),
        [],
        "a learned spec differs from nothing it learned"
    );

    let published = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpora/openapi/petstore3.yaml"),
    )
    .expect("the published Petstore spec");
    let petstore = Spec::load(&published, "petstore3.yaml", &mut NoFiles)
        .expect("loads")
        .spec;
    let differences = learn::diff(&petstore, &learned);
    let summary: Vec<(&str, &str, &str)> = differences
        .iter()
        .filter(|difference| difference.kind != "unused_endpoint")
        .map(|difference| {
            (
                difference.kind,
                difference.method.as_str(),
                difference.endpoint.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("undocumented_parameter", "GET", "/api/v3/pet/findByStatus")],
        "{differences:?}"
    );
    let unused = differences
        .iter()
        .filter(|difference| difference.kind == "unused_endpoint")
        .count();
    assert_eq!(unused, 19 - 4, "{differences:?}");
    for (sample, (request, response)) in samples.iter().zip(&bodies) {
        let result = check(&compiled.spec, &exchange(sample, request, response));
        assert!(
            result.violations.is_empty(),
            "{} {}: {:?}",
            sample.method,
            sample.path,
            result.violations
        );
    }
}

#[test]
fn statuses_past_the_bound_are_counted_and_still_admitted() {
    let mut learned = learn::Learned::default();
    let statuses: Vec<u16> = (200..220).collect();
    let samples: Vec<Sample> = statuses
        .iter()
        .map(|status| Sample {
            method: "GET",
            path: "/things".to_owned(),
            query: None,
            request: None,
            status: *status,
            response: None,
            auth: AuthScheme::None,
        })
        .collect();
    for sample in &samples {
        learned.observe(&exchange(sample, b"", b""), &[]);
    }
    assert_eq!((learned.responses.len(), learned.other_statuses), (16, 4));
    let document = learn::openapi(
        "things",
        &[LearnedEndpoint {
            method: "GET",
            template: "/things",
            learned: &learned,
        }],
    );
    let text = serde_json::to_string(&document).expect("serializes");
    let spec = Spec::load(&text, "learned.json", &mut NoFiles)
        .expect("loads")
        .spec;
    for sample in &samples {
        let result = check(&spec, &exchange(sample, b"", b""));
        assert!(
            result.violations.is_empty(),
            "status {}: {:?}",
            sample.status,
            result.violations
        );
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        "[a-z0-9@.:/-]{0,12}".prop_map(Value::String),
        Just(json!("2024-03-01T10:00:00Z")),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]{1,2}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn a_learned_schema_accepts_every_value_it_was_learned_from(values in prop::collection::vec(json_value(), 1..12)) {
        let mut shape = Shape::default();
        let (first, rest) = values.split_at(values.len() / 2);
        for value in first {
            shape.observe(value);
        }
        let mut other = Shape::default();
        for value in rest {
            other.observe(value);
        }
        shape.merge(&other);
        let document = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {},
            "components": {"schemas": {"Learned": shape.schema()}},
        });
        let mut documents = intelligence::openapi::Documents::new("x.json", document);
        let mut schemas = intelligence::openapi::schema::Schemas::default();
        let location = intelligence::openapi::document::Location::root().child("components").child("schemas").child("Learned");
        let id = schemas.compile(&mut documents, &location, &mut NoFiles).expect("compiles");
        for value in &values {
            prop_assert!(schemas.validate(id, value, Direction::Response).is_ok(), "{} rejects {}", shape.schema(), value);
        }
    }
}
