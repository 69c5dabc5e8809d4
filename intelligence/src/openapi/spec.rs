//! A spec compiled for checking calls: its paths as matchable templates, each operation's
//! parameters, bodies, responses and security, with every schema compiled.

use std::collections::HashMap;

use serde_json::Value;

use super::{
    document::{Documents, Location, Source, SpecError, parse},
    schema::{SchemaId, Schemas},
};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterIn {
    Path,
    Query,
    Header,
    Cookie,
}

#[derive(Debug)]
pub struct Parameter {
    pub name: String,
    pub location: ParameterIn,
    pub required: bool,
    pub schema: Option<SchemaId>,
    /// Arrays in the query: repeated names (`explode`, the default for `form`) or one
    /// comma-separated value.
    pub explode: bool,
    pub pointer: String,
}

/// One media type an operation accepts or returns.
#[derive(Debug)]
pub struct Content {
    /// `application/json`, `application/*`, `*/*`, lower-case.
    pub media_range: String,
    pub schema: Option<SchemaId>,
    pub pointer: String,
}

#[derive(Debug)]
pub struct RequestBody {
    pub required: bool,
    pub content: Vec<Content>,
    pub pointer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    Exact(u16),
    /// `2XX`: the hundreds digit.
    Class(u16),
    Default,
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusPattern,
    pub content: Vec<Content>,
    pub pointer: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityScheme {
    ApiKey {
        location: ParameterIn,
        name: String,
    },
    Basic,
    /// HTTP bearer, OAuth 2 and OpenID Connect: a bearer token in `Authorization`.
    Bearer,
    /// Mutual TLS and schemes this check cannot see: taken as satisfied.
    Unverifiable,
}

#[derive(Debug)]
pub struct Operation {
    pub method: String,
    /// The path template as the spec writes it, without the server's base path.
    pub template: String,
    pub pointer: String,
    pub parameters: Vec<Parameter>,
    pub request_body: Option<RequestBody>,
    pub responses: Vec<Response>,
    /// Alternatives, each a set of schemes that must all be present; empty: no security.
    pub security: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateSegment {
    Literal(String),
    /// `prefix{name}suffix`.
    Parameter {
        prefix: String,
        name: String,
        suffix: String,
    },
}

#[derive(Debug)]
struct PathItem {
    segments: Vec<TemplateSegment>,
    /// Matching prefers concrete paths over templated ones (`/pets/mine` over `/pets/{id}`).
    literal_segments: usize,
    /// (upper-case method, index into operations).
    operations: Vec<(String, usize)>,
    template: String,
    pointer: String,
}

/// A compiled spec.
#[derive(Debug)]
pub struct Spec {
    pub title: String,
    /// `openapi` as the document declares it (`3.0.2`, `3.1.0`).
    pub openapi: String,
    base_paths: Vec<String>,
    paths: Vec<PathItem>,
    pub operations: Vec<Operation>,
    pub schemas: Schemas,
    pub security_schemes: HashMap<String, SecurityScheme>,
}

/// The path item a request path falls under.
#[derive(Debug)]
pub struct PathMatch<'a> {
    /// The server's base path the request path began with (`/api/v3`, or `/`).
    pub base: &'a str,
    /// The spec's path template, relative to the base.
    pub template: &'a str,
    pub pointer: &'a str,
    /// The raw (percent-encoded) path parameter values, by name.
    pub parameters: Vec<(&'a str, String)>,
    operations: &'a [(String, usize)],
}

impl PathMatch<'_> {
    /// The template as requests spell it: base path and template (`/api/v3/pet/{petId}`).
    pub fn full_template(&self) -> String {
        if self.base == "/" {
            self.template.to_owned()
        } else {
            format!("{}{}", self.base, self.template)
        }
    }

    /// The operation for `method` (case-insensitive), as an index into [`Spec::operations`].
    pub fn operation(&self, method: &str) -> Option<usize> {
        self.operations
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(method))
            .map(|(_, index)| *index)
    }

    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.operations.iter().map(|(name, _)| name.as_str())
    }
}

fn parse_template(template: &str) -> Vec<TemplateSegment> {
    template
        .split('/')
        .filter(|part| !part.is_empty())
        .map(|part| match (part.find('{'), part.rfind('}')) {
            (Some(open), Some(close)) if open < close => TemplateSegment::Parameter {
                prefix: part[..open].to_owned(),
                name: part[open + 1..close].to_owned(),
                suffix: part[close + 1..].to_owned(),
            },
            _ => TemplateSegment::Literal(part.to_owned()),
        })
        .collect()
}

/// The path part of a server URL, with variables replaced by their defaults; `/` when it has
/// none.
fn base_path(server: &Value) -> String {
    let mut url = server
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    if let Some(Value::Object(variables)) = server.get("variables") {
        for (name, variable) in variables {
            let default = variable
                .get("default")
                .and_then(Value::as_str)
                .unwrap_or_default();
            url = url.replace(&format!("{{{name}}}"), default);
        }
    }
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |slash| &rest[slash..]),
        None => url.as_str(),
    };
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() || !trimmed.starts_with('/') {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Operations whose definition is broken are left out, with a warning each; the spec as a whole
/// fails only when it is not an OpenAPI 3 document at all.
#[derive(Debug)]
pub struct Compiled {
    pub spec: Spec,
    pub warnings: Vec<SpecError>,
}

impl Spec {
    /// Loads and compiles the spec in `text`, named `name` (its file path: references resolve
    /// relative to it), reading referenced documents from `source`.
    pub fn load(text: &str, name: &str, source: &mut dyn Source) -> Result<Compiled, SpecError> {
        let root = parse(text, name)?;
        let documents = Documents::new(name, root);
        let top = Location::root();
        let root = documents.get(&top).cloned().unwrap_or(Value::Null);
        let openapi = root
            .get("openapi")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !openapi.starts_with("3.") {
            let reason = match root.get("swagger") {
                Some(_) => {
                    "a Swagger 2.0 document; convert it to OpenAPI 3 (e.g. with swagger2openapi)"
                        .to_owned()
                }
                None => {
                    format!("`openapi` is {openapi:?}; an OpenAPI 3.0 or 3.1 document is needed")
                }
            };
            return Err(documents.error(&top.child("openapi"), reason));
        }
        let title = root
            .pointer("/info/title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut base_paths: Vec<String> = match root.get("servers") {
            Some(Value::Array(servers)) if !servers.is_empty() => {
                servers.iter().map(base_path).collect()
            }
            _ => vec!["/".to_owned()],
        };
        base_paths.sort_by_key(|path| std::cmp::Reverse(path.len()));
        base_paths.dedup();
        let mut compiler = Compiler {
            documents,
            schemas: Schemas::default(),
            source,
            warnings: Vec::new(),
        };
        let security_schemes = compiler.security_schemes(&root);
        let global_security = security_of(root.get("security")).unwrap_or_default();
        let mut spec = Spec {
            title,
            openapi,
            base_paths,
            paths: Vec::new(),
            operations: Vec::new(),
            schemas: Schemas::default(),
            security_schemes,
        };
        if let Some(Value::Object(paths)) = root.get("paths") {
            for template in paths.keys() {
                let location = top.child("paths").child(template);
                compiler.path_item(&mut spec, template, location, &global_security);
            }
        }
        spec.schemas = compiler.schemas;
        Ok(Compiled {
            spec,
            warnings: compiler.warnings,
        })
    }

    /// The path item `path` (percent-encoded, without query) falls under, after removing the
    /// servers' base path; the most concrete one when several match.
    pub fn find(&self, path: &str) -> Option<PathMatch<'_>> {
        // (path item, its literal segments, its parameters' values)
        type Candidate<'a> = (usize, usize, Vec<(&'a str, String)>);
        let mut best: Option<Candidate<'_>> = None;
        let mut matched_base = "/";
        for base in &self.base_paths {
            let rest = if base == "/" {
                path
            } else {
                match path.strip_prefix(base.as_str()) {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
                    _ => continue,
                }
            };
            let parts: Vec<&str> = rest.split('/').filter(|part| !part.is_empty()).collect();
            for (index, item) in self.paths.iter().enumerate() {
                if best
                    .as_ref()
                    .is_some_and(|(_, literals, _)| *literals >= item.literal_segments)
                {
                    continue;
                }
                if let Some(parameters) = match_segments(&item.segments, &parts) {
                    best = Some((index, item.literal_segments, parameters));
                }
            }
            if best.is_some() {
                matched_base = base;
                break;
            }
        }
        let (index, _, parameters) = best?;
        let item = &self.paths[index];
        Some(PathMatch {
            base: matched_base,
            template: &item.template,
            pointer: &item.pointer,
            parameters,
            operations: &item.operations,
        })
    }
}

fn match_segments<'a>(
    template: &'a [TemplateSegment],
    parts: &[&str],
) -> Option<Vec<(&'a str, String)>> {
    if template.len() != parts.len() {
        return None;
    }
    let mut parameters = Vec::new();
    for (segment, part) in template.iter().zip(parts) {
        match segment {
            TemplateSegment::Literal(literal) => {
                if literal != part {
                    return None;
                }
            }
            TemplateSegment::Parameter {
                prefix,
                name,
                suffix,
            } => {
                let value = part
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix(suffix.as_str())?;
                if value.is_empty() {
                    return None;
                }
                parameters.push((name.as_str(), value.to_owned()));
            }
        }
    }
    Some(parameters)
}

fn security_of(value: Option<&Value>) -> Option<Vec<Vec<String>>> {
    let Value::Array(alternatives) = value? else {
        return None;
    };
    Some(
        alternatives
            .iter()
            .filter_map(Value::as_object)
            .map(|requirement| requirement.keys().cloned().collect())
            .collect(),
    )
}

fn parameter_in(name: &str) -> Option<ParameterIn> {
    Some(match name {
        "path" => ParameterIn::Path,
        "query" => ParameterIn::Query,
        "header" => ParameterIn::Header,
        "cookie" => ParameterIn::Cookie,
        _ => return None,
    })
}

struct Compiler<'s> {
    documents: Documents,
    schemas: Schemas,
    source: &'s mut dyn Source,
    warnings: Vec<SpecError>,
}

impl Compiler<'_> {
    fn security_schemes(&mut self, root: &Value) -> HashMap<String, SecurityScheme> {
        let mut schemes = HashMap::new();
        let Some(Value::Object(declared)) = root.pointer("/components/securitySchemes") else {
            return schemes;
        };
        let base = Location::root()
            .child("components")
            .child("securitySchemes");
        for name in declared.keys() {
            let location = match self.documents.follow(base.child(name), self.source) {
                Ok(location) => location,
                Err(error) => {
                    self.warnings.push(error);
                    continue;
                }
            };
            let Some(scheme) = self.documents.get(&location) else {
                continue;
            };
            let text = |key: &str| scheme.get(key).and_then(Value::as_str).unwrap_or_default();
            let compiled = match (text("type"), text("scheme").to_ascii_lowercase().as_str()) {
                ("apiKey", _) => match parameter_in(text("in")) {
                    Some(location) => SecurityScheme::ApiKey {
                        location,
                        name: text("name").to_owned(),
                    },
                    None => SecurityScheme::Unverifiable,
                },
                ("http", "basic") => SecurityScheme::Basic,
                ("http", "bearer") | ("oauth2", _) | ("openIdConnect", _) => SecurityScheme::Bearer,
                _ => SecurityScheme::Unverifiable,
            };
            schemes.insert(name.clone(), compiled);
        }
        schemes
    }

    fn path_item(
        &mut self,
        spec: &mut Spec,
        template: &str,
        location: Location,
        global_security: &[Vec<String>],
    ) {
        let location = match self.documents.follow(location, self.source) {
            Ok(location) => location,
            Err(error) => return self.warnings.push(error),
        };
        let Some(Value::Object(item)) = self.documents.get(&location).cloned() else {
            return self.warnings.push(
                self.documents
                    .error(&location, "a path item must be an object"),
            );
        };
        let shared = self.parameters(&location.child("parameters"), item.get("parameters"));
        let segments = parse_template(template);
        let mut path = PathItem {
            literal_segments: segments
                .iter()
                .filter(|segment| matches!(segment, TemplateSegment::Literal(_)))
                .count(),
            segments,
            operations: Vec::new(),
            template: template.to_owned(),
            pointer: format!("#{}", location.pointer),
        };
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let operation_location = location.child(method);
            match self.operation(
                spec,
                method,
                template,
                &operation_location,
                operation,
                &shared,
                global_security,
            ) {
                Ok(index) => path.operations.push((method.to_ascii_uppercase(), index)),
                Err(error) => self.warnings.push(error),
            }
        }
        spec.paths.push(path);
    }

    /// Parameters at `location`; broken ones are warned about and left out.
    fn parameters(&mut self, location: &Location, value: Option<&Value>) -> Vec<Parameter> {
        let Some(Value::Array(list)) = value else {
            return Vec::new();
        };
        let mut parameters = Vec::new();
        for index in 0..list.len() {
            match self.parameter(&location.child(&index.to_string())) {
                Ok(parameter) => parameters.push(parameter),
                Err(error) => self.warnings.push(error),
            }
        }
        parameters
    }

    fn parameter(&mut self, location: &Location) -> Result<Parameter, SpecError> {
        let location = self.documents.follow(location.clone(), self.source)?;
        let value = self
            .documents
            .get(&location)
            .cloned()
            .unwrap_or(Value::Null);
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| self.documents.error(&location, "a parameter needs a name"))?
            .to_owned();
        let place = value
            .get("in")
            .and_then(Value::as_str)
            .and_then(parameter_in)
            .ok_or_else(|| {
                self.documents.error(
                    &location.child("in"),
                    "`in` must be path, query, header or cookie",
                )
            })?;
        let schema = match value.get("schema") {
            Some(_) => Some(self.schemas.compile(
                &mut self.documents,
                &location.child("schema"),
                self.source,
            )?),
            None => self.first_content_schema(&location, &value)?,
        };
        let style = value.get("style").and_then(Value::as_str).unwrap_or("form");
        Ok(Parameter {
            name,
            location: place,
            required: place == ParameterIn::Path
                || value.get("required") == Some(&Value::Bool(true)),
            schema,
            explode: value
                .get("explode")
                .and_then(Value::as_bool)
                .unwrap_or(style == "form"),
            pointer: format!("#{}", location.pointer),
        })
    }

    /// A parameter described by `content` instead of `schema`.
    fn first_content_schema(
        &mut self,
        location: &Location,
        value: &Value,
    ) -> Result<Option<SchemaId>, SpecError> {
        let Some(Value::Object(content)) = value.get("content") else {
            return Ok(None);
        };
        let Some(media) = content.keys().next() else {
            return Ok(None);
        };
        let schema = location.child("content").child(media).child("schema");
        if self.documents.get(&schema).is_none() {
            return Ok(None);
        }
        self.schemas
            .compile(&mut self.documents, &schema, self.source)
            .map(Some)
    }

    fn content(
        &mut self,
        location: &Location,
        value: Option<&Value>,
    ) -> Result<Vec<Content>, SpecError> {
        let Some(Value::Object(content)) = value else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for media in content.keys() {
            let media_location = location.child(media);
            let schema_location = media_location.child("schema");
            let schema = match self.documents.get(&schema_location) {
                Some(_) => Some(self.schemas.compile(
                    &mut self.documents,
                    &schema_location,
                    self.source,
                )?),
                None => None,
            };
            out.push(Content {
                media_range: media
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase(),
                schema,
                pointer: format!("#{}", media_location.pointer),
            });
        }
        Ok(out)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one operation's context, used once"
    )]
    fn operation(
        &mut self,
        spec: &mut Spec,
        method: &str,
        template: &str,
        location: &Location,
        operation: &Value,
        shared: &[Parameter],
        global_security: &[Vec<String>],
    ) -> Result<usize, SpecError> {
        let mut parameters =
            self.parameters(&location.child("parameters"), operation.get("parameters"));
        for inherited in shared {
            let overridden = parameters
                .iter()
                .any(|own| own.name == inherited.name && own.location == inherited.location);
            if !overridden {
                parameters.push(Parameter {
                    name: inherited.name.clone(),
                    location: inherited.location,
                    required: inherited.required,
                    schema: inherited.schema,
                    explode: inherited.explode,
                    pointer: inherited.pointer.clone(),
                });
            }
        }
        let request_body = match operation.get("requestBody") {
            Some(_) => {
                let body_location = self
                    .documents
                    .follow(location.child("requestBody"), self.source)?;
                let body = self
                    .documents
                    .get(&body_location)
                    .cloned()
                    .unwrap_or(Value::Null);
                Some(RequestBody {
                    required: body.get("required") == Some(&Value::Bool(true)),
                    content: self.content(&body_location.child("content"), body.get("content"))?,
                    pointer: format!("#{}", body_location.pointer),
                })
            }
            None => None,
        };
        let mut responses = Vec::new();
        if let Some(Value::Object(declared)) = operation.get("responses") {
            for code in declared.keys() {
                let status = match code.as_str() {
                    "default" => StatusPattern::Default,
                    code if code.len() == 3 && (code.ends_with("XX") || code.ends_with("xx")) => {
                        match code[..1].parse::<u16>() {
                            Ok(class) => StatusPattern::Class(class),
                            Err(_) => continue,
                        }
                    }
                    code => match code.parse::<u16>() {
                        Ok(exact) => StatusPattern::Exact(exact),
                        Err(_) => {
                            self.warnings.push(self.documents.error(
                                &location.child("responses").child(code),
                                "a response key must be a status code, a class like 2XX, or default",
                            ));
                            continue;
                        }
                    },
                };
                let response_location = self
                    .documents
                    .follow(location.child("responses").child(code), self.source)?;
                let response = self
                    .documents
                    .get(&response_location)
                    .cloned()
                    .unwrap_or(Value::Null);
                responses.push(Response {
                    status,
                    content: self
                        .content(&response_location.child("content"), response.get("content"))?,
                    pointer: format!("#{}", response_location.pointer),
                });
            }
        }
        spec.operations.push(Operation {
            method: method.to_ascii_uppercase(),
            template: template.to_owned(),
            pointer: format!("#{}", location.pointer),
            parameters,
            request_body,
            responses,
            security: security_of(operation.get("security"))
                .unwrap_or_else(|| global_security.to_vec()),
        });
        Ok(spec.operations.len() - 1)
    }
}
