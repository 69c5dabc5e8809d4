//! Any text as a spec document named `specs/api.yaml`, its `$ref`s reaching a few fixed
//! documents beside it, which refer to each other (in cycles too), to a broken file, to files
//! that do not exist and back to the spec itself: loading returns a spec or an error, never a
//! panic or a hang. A spec that loads checks two calls derived from the same input, and one
//! call per operation (up to 16) with the input itself as both bodies.
#![no_main]

use intelligence::openapi::{self, Source, Spec};
use libfuzzer_sys::{
    arbitrary::{Arbitrary, Unstructured},
    fuzz_target,
};

mod calls;

use calls::{Body, Call, Media, Method, Path};

const ROOT: &str = "specs/api.yaml";

const COMMON: &str = r##"
Pet:
  type: object
  required: [id, name]
  properties:
    id: {type: integer, format: int64, minimum: 1, exclusiveMaximum: 1000000}
    name: {type: string, minLength: 1, maxLength: 32, pattern: '^\w+(-\d+)?$'}
    owner: {$ref: 'types/other.json#/Owner'}
    tags: {type: array, items: {$ref: '#/Tag'}, uniqueItems: true, maxItems: 8}
    status: {type: string, enum: [available, sold], nullable: true}
    born: {type: string, format: date-time, readOnly: true}
  additionalProperties: false
Tag:
  oneOf:
    - {type: string, format: uuid}
    - {type: object, properties: {name: {type: string}}, not: {required: [id]}}
Loop:
  $ref: 'types/other.json#/Loop'
Id:
  name: id
  in: path
  required: true
  schema: {type: integer, format: int32, multipleOf: 3}
Query:
  name: q
  in: query
  explode: false
  schema: {type: array, items: {$ref: '#/Pet/properties/name'}, minItems: 1}
Missing:
  $ref: 'nowhere.yaml#/x'
Broken:
  $ref: 'broken.yaml#/pets'
Paths:
  $ref: 'api.yaml#/paths'
Item:
  parameters: [{$ref: '#/Id'}]
  get:
    parameters: [{$ref: '#/Query'}, {$ref: 'types/other.json#/Key'}]
    responses:
      '200': {$ref: '#/Ok'}
      4XX: {description: refused}
      default: {$ref: '#/Loop'}
  post:
    requestBody: {$ref: '#/Body'}
    security: [{key: []}, {basic: [], bearer: []}]
    responses: {'201': {description: created}}
Ok:
  description: ok
  content:
    application/json: {schema: {$ref: '#/Pet'}}
    'text/*': {schema: {type: string, maxLength: 4}}
Body:
  required: true
  content:
    application/json:
      schema: {allOf: [{$ref: '#/Pet'}, {$ref: 'types/other.json#/Owner'}]}
    application/x-www-form-urlencoded: {schema: {$ref: '#/Pet'}}
"##;

const OTHER: &str = r##"{
  "Owner": {
    "type": "object",
    "properties": {
      "pet": {"$ref": "../common.yaml#/Pet"},
      "self": {"$ref": "#/Owner"},
      "name": {"type": ["string", "null"], "const": "x"}
    },
    "anyOf": [{"required": ["pet"]}, {"required": ["name"]}]
  },
  "Loop": {"$ref": "../common.yaml#/Loop"},
  "Key": {"name": "X-Key", "in": "header", "required": true, "schema": {"type": "string"}},
  "Schemes": {
    "key": {"type": "apiKey", "in": "cookie", "name": "session"},
    "basic": {"type": "http", "scheme": "basic"},
    "bearer": {"type": "oauth2"}
  },
  "Root": {"$ref": "../api.yaml"}
}"##;

/// Referenced documents by their resolved names.
const DOCUMENTS: [(&str, &str); 3] = [
    ("specs/common.yaml", COMMON),
    ("specs/types/other.json", OTHER),
    ("specs/broken.yaml", "pets: [unclosed\n  - {\n"),
];

struct Fixed;

impl Source for Fixed {
    fn read(&mut self, document: &str) -> Result<String, String> {
        DOCUMENTS
            .iter()
            .find(|(name, _)| *name == document)
            .map(|(_, text)| (*text).to_owned())
            .ok_or_else(|| format!("{document}: no such file"))
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(compiled) = Spec::load(&text, ROOT, &mut Fixed) else {
        return;
    };
    let spec = compiled.spec;
    let templates: Vec<&str> = spec
        .operations
        .iter()
        .map(|operation| operation.template.as_str())
        .collect();
    let mut input = Unstructured::new(data);
    for _ in 0..2 {
        if let Ok(call) = Call::arbitrary(&mut input) {
            call.parts("", &templates)
                .with_exchange(|exchange| openapi::check(&spec, exchange));
        }
    }
    for (index, operation) in spec.operations.iter().take(16).enumerate() {
        let body = |media| Body {
            media: Some(media),
            encoding: None,
            bytes: data,
            complete: true,
            seen: true,
        };
        // Alternate JSON and forms, so that either decoding meets the operation's schemas.
        let media = || {
            if index % 2 == 0 {
                Media::Json
            } else {
                Media::Form
            }
        };
        let call = Call {
            method: Method::Other(&operation.method),
            path: Path::Template {
                operation: index as u8,
                values: vec!["1"],
                based: false,
            },
            query: Some("q=a,b-1&q=c"),
            request_headers: vec![("X-Key", "k"), ("Cookie", "session=[redacted]")],
            response_headers: Vec::new(),
            request: body(media()),
            response: body(media()),
            status: Some(200),
            caller: "fuzz",
            time_unix_secs: 0,
            latency_us: None,
        };
        call.parts("", &templates)
            .with_exchange(|exchange| openapi::check(&spec, exchange));
    }
});
