//! One call checked against a compiled spec: which operation it is, and every way it breaks
//! the contract, at most one violation of each kind per call.

use serde_json::Value;

use super::{
    schema::{Direction, SchemaId, Schemas, types},
    spec::{Content, Operation, ParameterIn, SecurityScheme, Spec, StatusPattern},
};
use crate::{
    Exchange,
    auth::AuthScheme,
    exchange::{REDACTED, Side},
    finding::{FindingKind, mask},
    template,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: FindingKind,
    /// `#/json/pointer` into the spec document (or `file#/pointer` for another file).
    pub pointer: String,
    pub message: String,
    /// Where in the call, and a masked glimpse of the value.
    pub evidence: String,
}

#[derive(Debug, Default)]
pub struct Conformance {
    /// The spec's path template with the server's base path (as requests spell it), and the
    /// operation's (or, for a method the path lacks, the path item's) pointer, when the path is
    /// documented.
    pub documented: Option<(String, String)>,
    /// Index into [`Spec::operations`], when the operation is documented.
    pub operation: Option<usize>,
    pub violations: Vec<Violation>,
}

impl Conformance {
    fn report(&mut self, kind: FindingKind, pointer: &str, message: String, evidence: String) {
        if self
            .violations
            .iter()
            .all(|violation| violation.kind != kind)
        {
            self.violations.push(Violation {
                kind,
                pointer: pointer.to_owned(),
                message,
                evidence,
            });
        }
    }
}

/// Decodes `%XX` (and `+` as space in query strings); invalid escapes stay as they are.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let raw = text.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let hex = |offset: usize| {
            raw.get(index + offset)
                .and_then(|byte| (*byte as char).to_digit(16))
        };
        match (raw[index], hex(1), hex(2)) {
            (b'%', Some(high), Some(low)) => {
                bytes.push((high * 16 + low) as u8);
                index += 3;
            }
            (b'+', _, _) if plus_is_space => {
                bytes.push(b' ');
                index += 1;
            }
            (byte, _, _) => {
                bytes.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `name=value` pairs of a query string or form body, decoded.
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

/// A textual value as the JSON its schema expects, where it parses as that: `"42"` becomes 42
/// for an integer parameter; anything else stays a string, so the schema reports it.
fn coerce(raw: &str, allowed: Option<u8>) -> Value {
    let allowed = allowed.unwrap_or(types::STRING);
    if allowed & (types::INTEGER | types::NUMBER) != 0
        && let Ok(number) = raw.parse::<serde_json::Number>()
    {
        return Value::Number(number);
    }
    if allowed & types::BOOLEAN != 0 && (raw == "true" || raw == "false") {
        return Value::Bool(raw == "true");
    }
    if allowed & types::NULL != 0 && raw == "null" {
        return Value::Null;
    }
    Value::String(raw.to_owned())
}

/// The value a parameter's occurrences make, as JSON for its schema.
fn parameter_value(
    schemas: &Schemas,
    schema: SchemaId,
    occurrences: &[&str],
    explode: bool,
) -> Value {
    let allowed = schemas.types_of(schema, 0);
    if allowed.is_some_and(|bits| bits & types::ARRAY != 0) {
        let items = schemas
            .items_of(schema)
            .and_then(|items| schemas.types_of(items, 0));
        let values: Vec<&str> = if explode || occurrences.len() > 1 {
            occurrences.to_vec()
        } else {
            occurrences
                .iter()
                .flat_map(|value| value.split(','))
                .collect()
        };
        return Value::Array(
            values
                .into_iter()
                .map(|value| coerce(value, items))
                .collect(),
        );
    }
    coerce(occurrences.first().copied().unwrap_or_default(), allowed)
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json") || media == "text/json"
}

/// The declared content a media type falls under: exact, then `type/*`, then `*/*`.
fn matching_content<'a>(content: &'a [Content], media: &str) -> Option<&'a Content> {
    let major = media.split('/').next().unwrap_or_default();
    content
        .iter()
        .find(|declared| declared.media_range == media)
        .or_else(|| {
            content.iter().find(|declared| {
                declared
                    .media_range
                    .strip_suffix("/*")
                    .is_some_and(|range| range == major)
            })
        })
        .or_else(|| {
            content
                .iter()
                .find(|declared| declared.media_range == "*/*")
        })
}

fn cookie_names(side: &Side<'_>) -> Option<Vec<String>> {
    let cookie = side.header("cookie")?;
    Some(
        cookie
            .split(';')
            .filter_map(|pair| pair.split('=').next())
            .map(|name| name.trim().to_owned())
            .collect(),
    )
}

/// Checks `exchange` against `spec`.
pub fn check(spec: &Spec, exchange: &Exchange<'_>) -> Conformance {
    let mut result = Conformance::default();
    let Some(found) = spec.find(exchange.path) else {
        // A path the server answers 404 is not served: no shadow API, whatever asked for it.
        if exchange.status == Some(404) {
            return result;
        }
        let learned = template::render(
            &exchange
                .path
                .split('/')
                .filter(|part| !part.is_empty())
                .map(|part| match template::classify(part) {
                    Some(placeholder) => template::Segment::Placeholder(placeholder),
                    None => {
                        template::Segment::Literal(part.chars().take(64).collect::<String>().into())
                    }
                })
                .take(16)
                .collect::<Vec<_>>(),
        );
        result.report(
            FindingKind::UndocumentedEndpoint,
            "#/paths",
            "the path is not in the spec (shadow API)".to_owned(),
            format!("{} {learned}", exchange.method),
        );
        return result;
    };
    let preflight = exchange.method.eq_ignore_ascii_case("OPTIONS")
        && exchange
            .request
            .header("access-control-request-method")
            .is_some();
    let operation = found.operation(exchange.method).or_else(|| {
        exchange
            .method
            .eq_ignore_ascii_case("HEAD")
            .then(|| found.operation("GET"))
            .flatten()
    });
    let Some(index) = operation else {
        result.documented = Some((found.full_template(), found.pointer.to_owned()));
        if !preflight {
            let allowed: Vec<&str> = found.methods().collect();
            result.report(
                FindingKind::MethodNotAllowed,
                found.pointer,
                format!(
                    "{} is not documented for this path; it allows {}",
                    exchange.method,
                    allowed.join(", ")
                ),
                format!("{} {}", exchange.method, found.full_template()),
            );
        }
        return result;
    };
    let operation = &spec.operations[index];
    result.documented = Some((found.full_template(), operation.pointer.clone()));
    result.operation = Some(index);
    // Parsed once: both parameters and security requirements look at them.
    let query = exchange.query.map(form_pairs).unwrap_or_default();
    let cookies = cookie_names(&exchange.request);
    let request = Request {
        exchange,
        query: &query,
        cookies: cookies.as_deref(),
    };
    check_parameters(spec, operation, &request, &found.parameters, &mut result);
    check_security(spec, operation, &request, &mut result);
    check_request_body(spec, operation, exchange, &mut result);
    check_response(spec, operation, exchange, &mut result);
    result
}

/// The request, with its query and cookie names parsed.
struct Request<'a> {
    exchange: &'a Exchange<'a>,
    query: &'a [(String, String)],
    /// None without a Cookie header.
    cookies: Option<&'a [String]>,
}

fn check_parameters(
    spec: &Spec,
    operation: &Operation,
    request: &Request<'_>,
    path_values: &[(&str, String)],
    result: &mut Conformance,
) {
    let (exchange, query, cookies) = (request.exchange, request.query, request.cookies);
    for parameter in &operation.parameters {
        let name = parameter.name.as_str();
        let occurrences: Vec<String> = match parameter.location {
            ParameterIn::Path => path_values
                .iter()
                .filter(|(key, _)| *key == name)
                .map(|(_, value)| percent_decode(value, false))
                .collect(),
            ParameterIn::Query => query
                .iter()
                .filter(|(key, _)| key == name || key.strip_suffix("[]") == Some(name))
                .map(|(_, value)| value.clone())
                .collect(),
            ParameterIn::Header => exchange
                .request
                .headers
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| (*value).to_owned())
                .collect(),
            // Cookie values are credentials the agent redacts: only their presence is known.
            ParameterIn::Cookie => match cookies {
                Some(names) if names.iter().any(|cookie| cookie == name) => {
                    vec![REDACTED.to_owned()]
                }
                Some(names) if names.iter().all(|cookie| cookie == REDACTED) => {
                    vec![REDACTED.to_owned()]
                }
                _ => Vec::new(),
            },
        };
        let place = match parameter.location {
            ParameterIn::Path => "path",
            ParameterIn::Query => "query",
            ParameterIn::Header => "header",
            ParameterIn::Cookie => "cookie",
        };
        if occurrences.is_empty() {
            if parameter.required {
                let kind = match parameter.location {
                    ParameterIn::Header => FindingKind::MissingHeader,
                    _ => FindingKind::MissingParameter,
                };
                result.report(
                    kind,
                    &parameter.pointer,
                    format!("required {place} parameter {name:?} is missing"),
                    format!("{place} {name}"),
                );
            }
            continue;
        }
        if occurrences.iter().any(|value| value == REDACTED) {
            continue;
        }
        let Some(schema) = parameter.schema else {
            continue;
        };
        let borrowed: Vec<&str> = occurrences.iter().map(String::as_str).collect();
        let value = parameter_value(&spec.schemas, schema, &borrowed, parameter.explode);
        if let Err(mismatch) = spec.schemas.validate(schema, &value, Direction::Request) {
            result.report(
                FindingKind::InvalidParameter,
                &parameter.pointer,
                format!("{place} parameter {name:?}: {}", mismatch.message),
                format!("{place} {name}={}", mask(&occurrences.join(","), 3)),
            );
        }
    }
}

fn check_security(
    spec: &Spec,
    operation: &Operation,
    request: &Request<'_>,
    result: &mut Conformance,
) {
    if operation.security.is_empty() {
        return;
    }
    let (exchange, query) = (request.exchange, request.query);
    let cookies = request.cookies.unwrap_or_default();
    let satisfied = |scheme: &str| match spec.security_schemes.get(scheme) {
        // A requirement naming an undeclared scheme cannot be checked.
        None | Some(SecurityScheme::Unverifiable) => true,
        Some(SecurityScheme::Basic) => exchange.auth == AuthScheme::Basic,
        Some(SecurityScheme::Bearer) => {
            matches!(exchange.auth, AuthScheme::Bearer | AuthScheme::BearerJwt)
        }
        Some(SecurityScheme::ApiKey { location, name }) => match location {
            ParameterIn::Header | ParameterIn::Path => exchange.request.header(name).is_some(),
            ParameterIn::Query => query.iter().any(|(key, _)| key == name),
            ParameterIn::Cookie => cookies
                .iter()
                .any(|cookie| cookie == name || cookie == REDACTED),
        },
    };
    if operation
        .security
        .iter()
        .any(|alternative| alternative.iter().all(|scheme| satisfied(scheme)))
    {
        return;
    }
    let names: Vec<&str> = operation
        .security
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let in_query = operation.security.iter().flatten().all(|scheme| {
        matches!(
            spec.security_schemes.get(scheme),
            Some(SecurityScheme::ApiKey {
                location: ParameterIn::Query,
                ..
            })
        )
    });
    let kind = if in_query {
        FindingKind::MissingParameter
    } else {
        FindingKind::MissingHeader
    };
    result.report(
        kind,
        &format!("{}/security", operation.pointer),
        format!(
            "no credentials for any security requirement ({})",
            names.join(", ")
        ),
        format!("auth {}", exchange.auth.as_str()),
    );
}

/// The body as JSON, or why it is not.
fn json_body(side: &Side<'_>) -> Option<Result<Value, String>> {
    if !side.body_complete {
        return None;
    }
    let body = side.plain_body()?;
    Some(serde_json::from_slice(body).map_err(|error| format!("not valid JSON: {error}")))
}

/// A form body as an object, its values typed after the schema's properties.
fn form_body(schemas: &Schemas, schema: SchemaId, side: &Side<'_>) -> Option<Value> {
    if !side.body_complete {
        return None;
    }
    let text = std::str::from_utf8(side.plain_body()?).ok()?;
    let declared = schemas.property_types(schema);
    let mut object = serde_json::Map::new();
    for (name, value) in form_pairs(text) {
        let allowed = declared
            .iter()
            .find(|(property, _)| *property == name)
            .and_then(|(_, types)| *types);
        object.insert(name, coerce(&value, allowed));
    }
    Some(Value::Object(object))
}

/// Checks a body against the content declared for it; `None` when nothing was declared.
fn check_body(
    schemas: &Schemas,
    content: &[Content],
    side: &Side<'_>,
    content_pointer: &str,
    direction: Direction,
    result: &mut Conformance,
) {
    let (invalid, what) = match direction {
        Direction::Request => (FindingKind::InvalidRequestBody, "request"),
        Direction::Response => (FindingKind::InvalidResponseBody, "response"),
    };
    let Some(media) = side.media_type() else {
        return;
    };
    let Some(declared) = matching_content(content, &media) else {
        let allowed: Vec<&str> = content
            .iter()
            .map(|declared| declared.media_range.as_str())
            .collect();
        result.report(
            FindingKind::UnexpectedContentType,
            content_pointer,
            format!(
                "{what} body is {media}; the spec allows {}",
                allowed.join(", ")
            ),
            format!("{what} content-type {media}"),
        );
        return;
    };
    let Some(schema) = declared.schema else {
        return;
    };
    let value = if is_json(&media) {
        match json_body(side) {
            None => return,
            Some(Ok(value)) => value,
            Some(Err(reason)) => {
                result.report(
                    invalid,
                    &declared.pointer,
                    format!("{what} body is {reason}"),
                    format!("{what} body"),
                );
                return;
            }
        }
    } else if media == "application/x-www-form-urlencoded" {
        match form_body(schemas, schema, side) {
            Some(value) => value,
            None => return,
        }
    } else {
        return;
    };
    if let Err(mismatch) = schemas.validate(schema, &value, direction) {
        let glimpse = value
            .pointer(&mismatch.instance)
            .map(|found| match found {
                Value::String(text) => mask(text, 3),
                Value::Object(_) | Value::Array(_) => String::new(),
                other => mask(&other.to_string(), 3),
            })
            .unwrap_or_default();
        result.report(
            invalid,
            &mismatch.schema,
            format!("{what} body at {}: {}", mismatch.instance, mismatch.message),
            format!("{what} body {} {glimpse}", mismatch.instance)
                .trim_end()
                .to_owned(),
        );
    }
}

fn check_request_body(
    spec: &Spec,
    operation: &Operation,
    exchange: &Exchange<'_>,
    result: &mut Conformance,
) {
    let Some(body) = &operation.request_body else {
        return;
    };
    let request = &exchange.request;
    if request.body.is_empty() {
        if body.required && request.body_complete {
            result.report(
                FindingKind::InvalidRequestBody,
                &body.pointer,
                "the request body is required but the request has none".to_owned(),
                "request body empty".to_owned(),
            );
        }
        return;
    }
    check_body(
        &spec.schemas,
        &body.content,
        request,
        &format!("{}/content", body.pointer),
        Direction::Request,
        result,
    );
}

fn check_response(
    spec: &Spec,
    operation: &Operation,
    exchange: &Exchange<'_>,
    result: &mut Conformance,
) {
    let Some(status) = exchange.status else {
        return;
    };
    let declared = operation
        .responses
        .iter()
        .find(|response| response.status == StatusPattern::Exact(status))
        .or_else(|| {
            operation
                .responses
                .iter()
                .find(|response| response.status == StatusPattern::Class(status / 100))
        })
        .or_else(|| {
            operation
                .responses
                .iter()
                .find(|response| response.status == StatusPattern::Default)
        });
    let Some(response) = declared else {
        if !operation.responses.is_empty() {
            let codes: Vec<String> = operation
                .responses
                .iter()
                .map(|response| match response.status {
                    StatusPattern::Exact(code) => code.to_string(),
                    StatusPattern::Class(class) => format!("{class}XX"),
                    StatusPattern::Default => "default".to_owned(),
                })
                .collect();
            result.report(
                FindingKind::UnexpectedStatus,
                &format!("{}/responses", operation.pointer),
                format!(
                    "status {status} is not documented; the spec lists {}",
                    codes.join(", ")
                ),
                format!("status {status}"),
            );
        }
        return;
    };
    let bodiless = exchange.method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304;
    if bodiless || response.content.is_empty() || exchange.response.body.is_empty() {
        return;
    }
    check_body(
        &spec.schemas,
        &response.content,
        &exchange.response,
        &format!("{}/content", response.pointer),
        Direction::Response,
        result,
    );
}
