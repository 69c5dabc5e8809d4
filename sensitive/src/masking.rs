//! Masking verification: a field a spec or config declares masked must not carry more of its
//! value than the mask style lets through.

use serde::Deserialize;
use serde_json::Value;

/// How much of a declared-masked value may be in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MaskStyle {
    /// `************1111`
    #[serde(rename = "last4")]
    Last4,
    /// `411111******1111`
    #[serde(rename = "first6last4")]
    First6Last4,
    /// Nothing in clear.
    #[serde(rename = "full")]
    Full,
}

impl MaskStyle {
    /// How many clear characters the style lets through.
    pub fn allowed_clear(self) -> usize {
        match self {
            Self::Last4 => 4,
            Self::First6Last4 => 10,
            Self::Full => 0,
        }
    }
}

/// A declared-masked field: a JSON pointer (`/card/number`, `*` standing for any array index or
/// key) or a bare field name matched wherever it appears.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedField {
    pub field: String,
    pub style: MaskStyle,
}

impl MaskedField {
    /// Whether the value at `pointer`, whose last segment is `name`, is this field.
    pub fn covers(&self, pointer: &str, name: &str) -> bool {
        if !self.field.starts_with('/') {
            return self.field.eq_ignore_ascii_case(name);
        }
        let mut declared = self.field.split('/');
        let mut actual = pointer.split('/');
        loop {
            match (declared.next(), actual.next()) {
                (None, None) => return true,
                (Some(d), Some(a)) if d == "*" || d == a => {}
                _ => return false,
            }
        }
    }

    /// Whether `value` shows more than the style allows: its clear characters (letters and
    /// digits other than the usual mask characters) outnumber what the style keeps.
    pub fn ineffective(&self, value: &str) -> bool {
        clear_characters(value) > self.style.allowed_clear()
    }
}

fn clear_characters(value: &str) -> usize {
    value
        .chars()
        .filter(|c| c.is_alphanumeric() && !matches!(c, 'x' | 'X'))
        .count()
}

/// Declared-masked fields from an OpenAPI schema: every property carrying `x-moat-masked`
/// becomes a pointer (array items as `*`). Local `$ref`s into `document` are followed to a
/// bounded depth; unknown styles are skipped so that a spec typo does not reject the spec.
pub fn from_schema(schema: &Value, document: &Value) -> Vec<MaskedField> {
    let mut fields = Vec::new();
    walk_schema(schema, document, String::new(), 0, &mut fields);
    fields
}

/// Declared-masked fields of every request and response body schema of an OpenAPI document
/// (its `paths`, following `#/...` references to request bodies, responses and schemas). A
/// field declared in several bodies is listed once.
pub fn declared_in_spec(document: &Value) -> Vec<MaskedField> {
    let resolve = |value: &'_ Value| -> Option<Value> {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => document.pointer(reference.strip_prefix('#')?).cloned(),
            None => Some(value.clone()),
        }
    };
    let mut bodies: Vec<Value> = Vec::new();
    let operations = document
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|item| item.values());
    for operation in operations {
        if let Some(body) = operation.get("requestBody").and_then(resolve) {
            bodies.push(body);
        }
        let responses = operation
            .get("responses")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|responses| responses.values());
        bodies.extend(responses.filter_map(resolve));
    }
    let mut fields: Vec<MaskedField> = Vec::new();
    for body in &bodies {
        let schemas = body
            .get("content")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|content| content.values())
            .filter_map(|media| media.get("schema"));
        for schema in schemas {
            for field in from_schema(schema, document) {
                if !fields.contains(&field) && fields.len() < MAX_SCHEMA_FIELDS {
                    fields.push(field);
                }
            }
        }
    }
    fields
}

const MAX_SCHEMA_DEPTH: usize = 24;
const MAX_SCHEMA_FIELDS: usize = 1024;

fn walk_schema(
    schema: &Value,
    document: &Value,
    pointer: String,
    depth: usize,
    out: &mut Vec<MaskedField>,
) {
    if depth > MAX_SCHEMA_DEPTH || out.len() >= MAX_SCHEMA_FIELDS {
        return;
    }
    let Some(object) = schema.as_object() else {
        return;
    };
    if let Some(target) = object
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        if let Some(resolved) = document.pointer(target) {
            walk_schema(resolved, document, pointer, depth + 1, out);
        }
        return;
    }
    if let Some(style) = object
        .get("x-moat-masked")
        .and_then(|style| MaskStyle::deserialize(style).ok())
        && !pointer.is_empty()
    {
        out.push(MaskedField {
            field: pointer.clone(),
            style,
        });
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let segment = name.replace('~', "~0").replace('/', "~1");
            walk_schema(
                property,
                document,
                format!("{pointer}/{segment}"),
                depth + 1,
                out,
            );
        }
    }
    if let Some(items) = object.get("items") {
        walk_schema(items, document, format!("{pointer}/*"), depth + 1, out);
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        for branch in object
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk_schema(branch, document, pointer.clone(), depth + 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_spec_declares_masks_in_its_request_and_response_bodies() {
        let document = json!({
            "openapi": "3.0.3",
            "paths": {
                "/cards/{id}": {
                    "parameters": [{"name": "id", "in": "path"}],
                    "get": {"responses": {"200": {"$ref": "#/components/responses/Card"}}},
                    "put": {
                        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Card"}}}},
                        "responses": {"204": {"description": "saved"}}
                    }
                }
            },
            "components": {
                "responses": {"Card": {"description": "a card", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Card"}}}}},
                "schemas": {"Card": {"type": "object", "properties": {
                    "number": {"type": "string", "x-moat-masked": "last4"},
                    "holder": {"type": "string"}
                }}}
            }
        });
        assert_eq!(
            declared_in_spec(&document),
            [MaskedField {
                field: "/number".into(),
                style: MaskStyle::Last4
            }]
        );
        assert!(declared_in_spec(&json!({"paths": []})).is_empty());
    }

    #[test]
    fn styles_bound_the_clear_characters() {
        let last4 = MaskedField {
            field: "/card/number".into(),
            style: MaskStyle::Last4,
        };
        assert!(!last4.ineffective("************1111"));
        assert!(!last4.ineffective("XXXX-XXXX-XXXX-1111"));
        assert!(last4.ineffective("4111111111111111"));
        let first6 = MaskedField {
            field: "pan".into(),
            style: MaskStyle::First6Last4,
        };
        assert!(!first6.ineffective("411111******1111"));
        assert!(first6.ineffective("4111111111111111"));
        let full = MaskedField {
            field: "ssn".into(),
            style: MaskStyle::Full,
        };
        assert!(!full.ineffective("***-**-****"));
        assert!(full.ineffective("***-**-6789"));
    }

    #[test]
    fn pointers_and_names_cover_fields() {
        let pointer = MaskedField {
            field: "/customers/*/card/number".into(),
            style: MaskStyle::Last4,
        };
        assert!(pointer.covers("/customers/3/card/number", "number"));
        assert!(!pointer.covers("/customers/3/card", "card"));
        assert!(!pointer.covers("/customers/3/card/number/x", "x"));
        let name = MaskedField {
            field: "SSN".into(),
            style: MaskStyle::Full,
        };
        assert!(name.covers("/a/b/ssn", "ssn"));
    }

    #[test]
    fn schema_annotations_become_fields() {
        let document = json!({"components": {"schemas": {"Card": {"type": "object", "properties": {
            "number": {"type": "string", "x-moat-masked": "last4"},
            "holder": {"type": "string", "x-moat-masked": "sideways"}
        }}}}});
        let schema = json!({"type": "object", "properties": {
            "cards": {"type": "array", "items": {"$ref": "#/components/schemas/Card"}},
            "iban": {"allOf": [{"type": "string", "x-moat-masked": "first6last4"}]}
        }});
        let mut fields = from_schema(&schema, &document);
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        assert_eq!(
            fields,
            [
                MaskedField {
                    field: "/cards/*/number".into(),
                    style: MaskStyle::Last4
                },
                MaskedField {
                    field: "/iban".into(),
                    style: MaskStyle::First6Last4
                },
            ]
        );
        let looping = json!({"$ref": "#"});
        assert!(
            from_schema(&looping, &looping).is_empty(),
            "a $ref cycle ends"
        );
    }
}
