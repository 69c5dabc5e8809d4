//! OpenAPI inferred from traffic: each endpoint learns the shapes of its parameters and JSON
//! bodies from the calls it sees (bounded in depth, width and samples), shapes from several
//! agents merge, and the result renders as an OpenAPI 3.1 document that, loaded back as the
//! binding spec, accepts the traffic it was learned from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{
    Exchange,
    auth::AuthScheme,
    openapi::conformance::form_pairs,
    openapi::schema::types::{ARRAY, BOOLEAN, INTEGER, NULL, NUMBER, OBJECT, STRING},
};

/// Nesting learned; deeper values are taken as they come (any type).
const MAX_DEPTH: usize = 8;
/// Properties learned per object; more make it an open map.
const MAX_PROPERTIES: usize = 64;
/// Query parameters and statuses learned per endpoint.
const MAX_PARAMETERS: usize = 32;
const MAX_STATUSES: usize = 16;

/// The inferred schema of a value: every type it was seen with, and for objects and arrays what
/// they held. Counts make merging exact: a property is required when every object had it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Values seen.
    pub samples: u64,
    /// Bits of `openapi::schema::types`; INTEGER alone for integers, NUMBER for the others.
    pub types: u8,
    /// Per property: its shape; an object's property count is its shape's `samples`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Shape>,
    /// Objects seen (the denominator of "every object had it").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub objects: u64,
    /// An object had more properties than are learned: it is a map, not a record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<Shape>>,
    /// A string format every string had (`date-time`, `date`, `uuid`, `email`, `uri`,
    /// `ipv4`); None when none was common to all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Strings seen so far (for the format's "every string").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub strings: u64,
    /// Deeper than learned: anything goes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl Shape {
    /// Folds one value in.
    pub fn observe(&mut self, value: &Value) {
        self.observe_at(value, 0);
    }

    fn observe_at(&mut self, value: &Value, depth: usize) {
        self.samples += 1;
        if depth >= MAX_DEPTH {
            self.unknown = true;
            return;
        }
        match value {
            Value::Null => self.types |= NULL,
            Value::Bool(_) => self.types |= BOOLEAN,
            Value::Number(number) => {
                self.types |= if number.is_i64() || number.is_u64() {
                    INTEGER
                } else {
                    NUMBER
                };
            }
            Value::String(text) => {
                self.types |= STRING;
                let format = crate::openapi::schema::detect_format(text);
                self.format = match (self.strings, &self.format, format) {
                    (0, _, Some(format)) => Some(format.to_owned()),
                    (_, Some(known), Some(format)) if known == format => Some(known.clone()),
                    _ => None,
                };
                self.strings += 1;
            }
            Value::Array(items) => {
                self.types |= ARRAY;
                let shape = self.items.get_or_insert_with(Box::default);
                for item in items.iter().take(64) {
                    shape.observe_at(item, depth + 1);
                }
            }
            Value::Object(map) => {
                self.types |= OBJECT;
                self.objects += 1;
                for (name, item) in map {
                    if !self.properties.contains_key(name)
                        && self.properties.len() >= MAX_PROPERTIES
                    {
                        self.open = true;
                        continue;
                    }
                    self.properties
                        .entry(name.clone())
                        .or_default()
                        .observe_at(item, depth + 1);
                }
            }
        }
    }

    /// Folds in what another agent (or another time) learned.
    pub fn merge(&mut self, other: &Shape) {
        self.format = match (self.strings, other.strings, &self.format, &other.format) {
            (_, 0, mine, _) => mine.clone(),
            (0, _, _, theirs) => theirs.clone(),
            (_, _, Some(mine), Some(theirs)) if mine == theirs => Some(mine.clone()),
            _ => None,
        };
        self.samples += other.samples;
        self.types |= other.types;
        self.objects += other.objects;
        self.strings += other.strings;
        self.open |= other.open;
        self.unknown |= other.unknown;
        for (name, theirs) in &other.properties {
            let room = self.properties.len() < MAX_PROPERTIES;
            match self.properties.get_mut(name) {
                Some(mine) => mine.merge(theirs),
                None if room => {
                    self.properties.insert(name.clone(), theirs.clone());
                }
                None => self.open = true,
            }
        }
        match (&mut self.items, &other.items) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.items = Some(theirs.clone()),
            _ => {}
        }
    }

    /// The JSON Schema (2020-12, as OpenAPI 3.1 uses it) of what was seen.
    pub fn schema(&self) -> Value {
        if self.unknown || self.types == 0 {
            return json!({});
        }
        let mut schema = Map::new();
        let mut names: Vec<&str> = Vec::new();
        // An integer seen where numbers are is a number.
        let types = if self.types & NUMBER != 0 {
            self.types & !INTEGER
        } else {
            self.types
        };
        for (bit, name) in [
            (OBJECT, "object"),
            (ARRAY, "array"),
            (STRING, "string"),
            (INTEGER, "integer"),
            (NUMBER, "number"),
            (BOOLEAN, "boolean"),
            (NULL, "null"),
        ] {
            if types & bit != 0 {
                names.push(name);
            }
        }
        schema.insert(
            "type".into(),
            match names.as_slice() {
                [one] => json!(one),
                many => json!(many),
            },
        );
        if let Some(format) = &self.format {
            schema.insert("format".into(), json!(format));
        }
        if self.types & OBJECT != 0 && !self.open {
            let properties: Map<String, Value> = self
                .properties
                .iter()
                .map(|(name, shape)| (name.clone(), shape.schema()))
                .collect();
            let required: Vec<&String> = self
                .properties
                .iter()
                .filter(|(_, shape)| shape.samples >= self.objects)
                .map(|(name, _)| name)
                .collect();
            schema.insert("properties".into(), Value::Object(properties));
            if !required.is_empty() {
                schema.insert("required".into(), json!(required));
            }
        }
        if let Some(items) = &self.items {
            schema.insert("items".into(), items.schema());
        }
        Value::Object(schema)
    }
}

/// A textual value (query, path) as the JSON it most likely is.
fn typed(text: &str) -> Value {
    if let Ok(integer) = text.parse::<i64>() {
        return json!(integer);
    }
    if let Ok(number) = text.parse::<f64>()
        && number.is_finite()
    {
        return json!(number);
    }
    match text {
        "true" => json!(true),
        "false" => json!(false),
        _ => json!(text),
    }
}

/// What one response status carried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseShape {
    /// Per media type: the JSON body's shape (empty shape for non-JSON bodies).
    pub content: BTreeMap<String, Shape>,
}

/// Everything learned about one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    pub calls: u64,
    /// Query parameters and the shapes of their values.
    pub query: BTreeMap<String, Shape>,
    /// Path parameters in template order.
    pub path: Vec<Shape>,
    /// Per request media type: the JSON body's shape.
    pub request: BTreeMap<String, Shape>,
    /// Calls with no request body: when there were some, a body is not required.
    pub without_body: u64,
    pub responses: BTreeMap<u16, ResponseShape>,
    /// Bits of [`AuthScheme::bit`] seen; `unauthenticated` calls counted apart.
    pub auth: u16,
    pub unauthenticated: u64,
    /// Calls whose status, and query parameters whose name, came past the bounds on statuses
    /// and parameters: not learned, but counted, so the spec still admits them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other_statuses: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other_parameters: u64,
}

/// Calls per endpoint learned in full; after that, one in [`LEARN_EVERY`].
const LEARN_FIRST: u64 = 64;
const LEARN_EVERY: u64 = 32;

fn json_of(side: &crate::exchange::Side<'_>) -> Option<Value> {
    if !side.body_complete || side.body.is_empty() {
        return None;
    }
    serde_json::from_slice(side.plain_body()?).ok()
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

impl Learned {
    /// Whether the next call's bodies are worth parsing: every one at first, then a sample,
    /// so learning costs little on hot endpoints. Everything else is learned from every call,
    /// so that no status, parameter or media type the traffic used is missing.
    fn wants_bodies(&self) -> bool {
        self.calls < LEARN_FIRST || self.calls.is_multiple_of(LEARN_EVERY)
    }

    /// Learns from one call; `path_values` are the raw values of the template's placeholders.
    pub fn observe(&mut self, exchange: &Exchange<'_>, path_values: &[&str]) {
        let bodies = self.wants_bodies();
        self.calls += 1;
        if exchange.auth == AuthScheme::None {
            self.unauthenticated += 1;
        } else {
            self.auth |= exchange.auth.bit();
        }
        if let Some(query) = exchange.query {
            for (name, value) in form_pairs(query) {
                if !self.query.contains_key(&name) && self.query.len() >= MAX_PARAMETERS {
                    self.other_parameters += 1;
                    continue;
                }
                self.query.entry(name).or_default().observe(&typed(&value));
            }
        }
        if self.path.len() < path_values.len() {
            self.path.resize(path_values.len(), Shape::default());
        }
        for (shape, value) in self.path.iter_mut().zip(path_values) {
            shape.observe(&typed(&crate::openapi::conformance::percent_decode(
                value, false,
            )));
        }
        match exchange.request.media_type() {
            Some(media) if !exchange.request.body.is_empty() => {
                let shape = self.request.entry(media.clone()).or_default();
                if bodies
                    && is_json(&media)
                    && let Some(value) = json_of(&exchange.request)
                {
                    shape.observe(&value);
                }
            }
            _ => self.without_body += 1,
        }
        if let Some(status) = exchange.status {
            if !self.responses.contains_key(&status) && self.responses.len() >= MAX_STATUSES {
                self.other_statuses += 1;
                return;
            }
            let response = self.responses.entry(status).or_default();
            if let Some(media) = exchange.response.media_type()
                && !exchange.response.body.is_empty()
            {
                let shape = response.content.entry(media.clone()).or_default();
                if bodies
                    && is_json(&media)
                    && let Some(value) = json_of(&exchange.response)
                {
                    shape.observe(&value);
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Learned) {
        self.calls += other.calls;
        self.without_body += other.without_body;
        self.auth |= other.auth;
        self.unauthenticated += other.unauthenticated;
        self.other_statuses += other.other_statuses;
        self.other_parameters += other.other_parameters;
        // The bounds hold across agents too: what one agent learned past them is counted.
        for (name, shape) in &other.query {
            if !self.query.contains_key(name) && self.query.len() >= MAX_PARAMETERS {
                self.other_parameters += shape.samples;
                continue;
            }
            self.query.entry(name.clone()).or_default().merge(shape);
        }
        if self.path.len() < other.path.len() {
            self.path.resize(other.path.len(), Shape::default());
        }
        for (mine, theirs) in self.path.iter_mut().zip(&other.path) {
            mine.merge(theirs);
        }
        for (media, shape) in &other.request {
            self.request.entry(media.clone()).or_default().merge(shape);
        }
        for (status, response) in &other.responses {
            if !self.responses.contains_key(status) && self.responses.len() >= MAX_STATUSES {
                self.other_statuses += 1;
                continue;
            }
            let mine = self.responses.entry(*status).or_default();
            for (media, shape) in &response.content {
                mine.content.entry(media.clone()).or_default().merge(shape);
            }
        }
    }
}

/// One endpoint as the document is made from it.
pub struct LearnedEndpoint<'a> {
    pub method: &'a str,
    pub template: &'a str,
    pub learned: &'a Learned,
}

/// Placeholders renamed so that each is unique in its path (`/a/{id}/b/{id}` ->
/// `/a/{id}/b/{id2}`), as OpenAPI requires, with their names in order.
fn named_template(template: &str) -> (String, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    let mut out = String::new();
    for segment in template.split('/').filter(|segment| !segment.is_empty()) {
        out.push('/');
        match segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(base) => {
                let base = if base == "overflow" { "rest" } else { base };
                let mut name = base.to_owned();
                let mut counter = 2;
                while names.contains(&name) {
                    name = format!("{base}{counter}");
                    counter += 1;
                }
                out.push('{');
                out.push_str(&name);
                out.push('}');
                names.push(name);
            }
            None => out.push_str(segment),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    (out, names)
}

/// Schemes a learned spec may require. Keys and cookies are left out: which header or cookie
/// carried them is not kept, and a guessed name would make the traffic itself non-conforming.
/// A scheme, its name in `components.securitySchemes`, and its definition.
type SchemeDefinition = (AuthScheme, &'static str, fn() -> Value);

const SCHEMES: [SchemeDefinition; 3] = [
    (
        AuthScheme::Basic,
        "basicAuth",
        || json!({"type": "http", "scheme": "basic"}),
    ),
    (
        AuthScheme::Bearer,
        "bearerAuth",
        || json!({"type": "http", "scheme": "bearer"}),
    ),
    (
        AuthScheme::BearerJwt,
        "jwtAuth",
        || json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
    ),
];

/// An OpenAPI 3.1 document of `service` from its learned endpoints. Only what the traffic
/// showed is constrained, so the traffic it came from conforms to it.
pub fn openapi(service: &str, endpoints: &[LearnedEndpoint<'_>]) -> Value {
    let mut paths = Map::new();
    let mut used_schemes = BTreeMap::new();
    for endpoint in endpoints {
        if endpoint.method == "OTHER" {
            continue;
        }
        let learned = endpoint.learned;
        let (template, names) = named_template(endpoint.template);
        let mut parameters: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let schema = learned
                    .path
                    .get(index)
                    .map_or_else(|| json!({"type": "string"}), Shape::schema);
                json!({"name": name, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        for (name, shape) in &learned.query {
            parameters.push(json!({"name": name, "in": "query", "schema": shape.schema()}));
        }
        let mut operation = Map::new();
        operation.insert(
            "summary".into(),
            json!(format!("Learned from {} calls", learned.calls)),
        );
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if !learned.request.is_empty() {
            let content: Map<String, Value> = learned
                .request
                .iter()
                .map(|(media, shape)| (media.clone(), json!({"schema": shape.schema()})))
                .collect();
            operation.insert(
                "requestBody".into(),
                json!({"required": learned.without_body == 0, "content": content}),
            );
        }
        let mut responses = Map::new();
        for (status, response) in &learned.responses {
            let mut declared = Map::new();
            declared.insert(
                "description".into(),
                json!(format!("Seen with status {status}")),
            );
            if !response.content.is_empty() {
                let content: Map<String, Value> = response
                    .content
                    .iter()
                    .map(|(media, shape)| (media.clone(), json!({"schema": shape.schema()})))
                    .collect();
                declared.insert("content".into(), Value::Object(content));
            }
            responses.insert(status.to_string(), Value::Object(declared));
        }
        if learned.other_statuses > 0 {
            responses.insert(
                "default".into(),
                json!({"description": format!(
                    "{} calls answered with statuses past the {MAX_STATUSES} learned",
                    learned.other_statuses
                )}),
            );
        } else if responses.is_empty() {
            responses.insert(
                "default".into(),
                json!({"description": "No response was seen"}),
            );
        }
        operation.insert("responses".into(), Value::Object(responses));
        // Security only where every learned call authenticated: otherwise some caller got in
        // without credentials, and the spec should not claim they are needed.
        let precise = SCHEMES
            .iter()
            .fold(0, |bits, (scheme, _, _)| bits | scheme.bit());
        if learned.unauthenticated == 0 && learned.auth != 0 && learned.auth & !precise == 0 {
            let alternatives: Vec<Value> = SCHEMES
                .iter()
                .filter(|(scheme, _, _)| learned.auth & scheme.bit() != 0)
                .map(|(_, name, definition)| {
                    used_schemes.insert(*name, definition());
                    json!({ *name: [] })
                })
                .collect();
            if !alternatives.is_empty() {
                operation.insert("security".into(), Value::Array(alternatives));
            }
        }
        let item = paths.entry(template).or_insert_with(|| json!({}));
        if let Value::Object(item) = item {
            item.insert(
                endpoint.method.to_ascii_lowercase(),
                Value::Object(operation),
            );
        }
    }
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": service,
            "version": "learned",
            "description": format!("Inferred by Moat from observed traffic to {service}."),
        },
        "paths": paths,
    });
    if !used_schemes.is_empty() {
        document["components"] = json!({"securitySchemes": used_schemes});
    }
    document
}

/// Where traffic and a spec disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `undocumented_endpoint`, `undocumented_method`, `undocumented_status`,
    /// `undocumented_parameter` or `unused_endpoint`.
    pub kind: &'static str,
    pub method: String,
    pub endpoint: String,
    /// The spec's pointer, where the spec has something to point at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    pub detail: String,
}

/// How the learned endpoints and `spec` differ: traffic the spec does not describe, and
/// operations the traffic never used.
pub fn diff(spec: &crate::openapi::Spec, endpoints: &[LearnedEndpoint<'_>]) -> Vec<Difference> {
    use crate::openapi::spec::{ParameterIn, StatusPattern};
    let mut differences = Vec::new();
    let mut used = vec![false; spec.operations.len()];
    for endpoint in endpoints {
        let difference = |kind, pointer: Option<&str>, detail: String| Difference {
            kind,
            method: endpoint.method.to_owned(),
            endpoint: endpoint.template.to_owned(),
            pointer: pointer.map(str::to_owned),
            detail,
        };
        let Some(found) = spec.find(endpoint.template) else {
            differences.push(difference(
                "undocumented_endpoint",
                None,
                format!(
                    "{} calls to a path the spec does not have",
                    endpoint.learned.calls
                ),
            ));
            continue;
        };
        let Some(index) = found.operation(endpoint.method) else {
            differences.push(difference(
                "undocumented_method",
                Some(found.pointer),
                format!(
                    "{} calls; the path documents {}",
                    endpoint.learned.calls,
                    found.methods().collect::<Vec<_>>().join(", ")
                ),
            ));
            continue;
        };
        used[index] = true;
        let operation = &spec.operations[index];
        for status in endpoint.learned.responses.keys() {
            let documented = operation
                .responses
                .iter()
                .any(|response| match response.status {
                    StatusPattern::Exact(code) => code == *status,
                    StatusPattern::Class(class) => class == status / 100,
                    StatusPattern::Default => true,
                });
            if !documented {
                differences.push(difference(
                    "undocumented_status",
                    Some(&format!("{}/responses", operation.pointer)),
                    format!("status {status} was answered"),
                ));
            }
        }
        for name in endpoint.learned.query.keys() {
            let documented = operation.parameters.iter().any(|parameter| {
                parameter.location == ParameterIn::Query && parameter.name == *name
            });
            if !documented {
                differences.push(difference(
                    "undocumented_parameter",
                    Some(&operation.pointer),
                    format!("query parameter {name:?} was sent"),
                ));
            }
        }
    }
    for (operation, used) in spec.operations.iter().zip(used) {
        if !used {
            differences.push(Difference {
                kind: "unused_endpoint",
                method: operation.method.clone(),
                endpoint: operation.template.clone(),
                pointer: Some(operation.pointer.clone()),
                detail: "documented, never called".to_owned(),
            });
        }
    }
    differences
}
