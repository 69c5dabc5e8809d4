//! Schemas compiled once into an arena and checked against JSON values: the JSON Schema
//! subset OpenAPI 3.0 defines (with `nullable`) and JSON Schema 2020-12 as OpenAPI 3.1 uses it
//! (type arrays, `const`, `prefixItems`, numeric exclusive bounds). References become arena
//! indices, so recursive schemas compile once and validate without inlining.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;

use super::document::{Documents, Location, Source, SpecError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemaId(u32);

/// JSON types as bits, as [`Schemas::types_of`] returns them.
pub mod types {
    pub const NULL: u8 = 1;
    pub const BOOLEAN: u8 = 2;
    pub const INTEGER: u8 = 4;
    pub const NUMBER: u8 = 8;
    pub const STRING: u8 = 16;
    pub const ARRAY: u8 = 32;
    pub const OBJECT: u8 = 64;
}

use types::{ARRAY, BOOLEAN, INTEGER, NULL, NUMBER, OBJECT, STRING};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Int32,
    Int64,
    Date,
    DateTime,
    Email,
    Uuid,
    Ipv4,
    Ipv6,
    Uri,
    Byte,
}

#[derive(Debug, Clone, Default)]
enum Additional {
    #[default]
    Any,
    Denied,
    Schema(SchemaId),
}

#[derive(Debug, Default)]
struct Node {
    /// Where the schema is, for messages: `#pointer` in the spec's document, `file#pointer` in
    /// another.
    at: String,
    reference: Option<SchemaId>,
    types: Option<u8>,
    enumeration: Option<Vec<Value>>,
    properties: Vec<(String, SchemaId)>,
    required: Vec<String>,
    additional: Additional,
    items: Option<SchemaId>,
    prefix_items: Vec<SchemaId>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<Regex>,
    format: Option<Format>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,
    all_of: Vec<SchemaId>,
    any_of: Vec<SchemaId>,
    one_of: Vec<SchemaId>,
    not: Option<SchemaId>,
    read_only: bool,
    write_only: bool,
}

/// Which way a value travels: `readOnly` properties are not required in requests, nor
/// `writeOnly` ones in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// Why a value does not match: where in the value, which schema rule, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// JSON pointer into the value (`/items/3/name`).
    pub instance: String,
    /// The schema rule: `#/pointer` in the spec, `file#/pointer` in another document.
    pub schema: String,
    pub message: String,
}

/// Validation steps one value may take: bounds the cost of hostile values against schemas with
/// wide `anyOf`s.
const STEP_BUDGET: u32 = 200_000;
/// Nesting of schema applications; cycles of `allOf`s through references stop here.
const MAX_DEPTH: u32 = 128;

#[derive(Debug, Default)]
pub struct Schemas {
    nodes: Vec<Node>,
    by_location: HashMap<Location, SchemaId>,
    /// Specs repeat their patterns (one per field of a kind); each is compiled once.
    patterns: HashMap<String, Regex>,
}

/// An ECMA-262 pattern (what JSON Schema's `pattern` is) in the regex crate's syntax: there,
/// `\d` and `\w` are ASCII, as they are in JavaScript without the `u` flag; the regex crate's
/// Unicode classes would accept more and cost hundreds of KiB each.
fn ecma_to_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match (chars.next(), in_class) {
                (Some('d'), false) => out.push_str("[0-9]"),
                (Some('d'), true) => out.push_str("0-9"),
                (Some('w'), false) => out.push_str("[0-9A-Za-z_]"),
                (Some('w'), true) => out.push_str("0-9A-Za-z_"),
                (Some(other), _) => {
                    out.push('\\');
                    out.push(other);
                }
                (None, _) => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

impl Schemas {
    fn regex(&mut self, pattern: &str) -> Result<Regex, regex::Error> {
        if let Some(compiled) = self.patterns.get(pattern) {
            return Ok(compiled.clone());
        }
        // The regex crate guarantees linear time, so a hostile value cannot stall a check.
        let compiled = regex::RegexBuilder::new(&ecma_to_regex(pattern))
            .size_limit(1 << 20)
            .build()?;
        self.patterns.insert(pattern.to_owned(), compiled.clone());
        Ok(compiled)
    }

    /// Compiles the schema at `location` (and everything it references), once.
    pub fn compile(
        &mut self,
        documents: &mut Documents,
        location: &Location,
        source: &mut dyn Source,
    ) -> Result<SchemaId, SpecError> {
        // Locations are recorded before their schema is compiled, so that recursion finds
        // them; a failure forgets everything this call made, or a later reference to a broken
        // schema would find an empty one, which accepts anything.
        let mark = self.nodes.len();
        let result = self.compile_at(documents, location, source, 0);
        if result.is_err() {
            self.nodes.truncate(mark);
            self.by_location.retain(|_, id| (id.0 as usize) < mark);
        }
        result
    }

    fn compile_at(
        &mut self,
        documents: &mut Documents,
        location: &Location,
        source: &mut dyn Source,
        depth: u32,
    ) -> Result<SchemaId, SpecError> {
        if let Some(&id) = self.by_location.get(location) {
            return Ok(id);
        }
        if depth > MAX_DEPTH {
            return Err(documents.error(location, "schema nested more than 128 levels deep"));
        }
        let id = SchemaId(self.nodes.len() as u32);
        self.by_location.insert(location.clone(), id);
        self.nodes.push(Node::default());
        let value = documents
            .get(location)
            .cloned()
            .unwrap_or(Value::Bool(true));
        let node = self.node_of(documents, location, &value, source, depth)?;
        self.nodes[id.0 as usize] = node;
        Ok(id)
    }

    fn node_of(
        &mut self,
        documents: &mut Documents,
        location: &Location,
        value: &Value,
        source: &mut dyn Source,
        depth: u32,
    ) -> Result<Node, SpecError> {
        // Pointers into the spec's own document are written as `#/...`, like the spec's own
        // references; other documents are named.
        let at = if location.document == 0 {
            format!("#{}", location.pointer)
        } else {
            format!("{}#{}", documents.name(location.document), location.pointer)
        };
        let map = match value {
            Value::Bool(true) => {
                return Ok(Node {
                    at,
                    ..Node::default()
                });
            }
            Value::Bool(false) => {
                return Ok(Node {
                    at,
                    types: Some(0),
                    ..Node::default()
                });
            }
            Value::Object(map) => map,
            _ => return Err(documents.error(location, "a schema must be an object or a boolean")),
        };
        let mut node = Node {
            at,
            ..Node::default()
        };
        let number = |key: &str| map.get(key).and_then(Value::as_f64);
        let count = |key: &str| map.get(key).and_then(Value::as_u64);
        if let Some(Value::String(reference)) = map.get("$ref") {
            let target = documents.resolve(location, reference, source)?;
            node.reference = Some(self.compile_at(documents, &target, source, depth + 1)?);
        }
        let nullable = map.get("nullable") == Some(&Value::Bool(true));
        node.types = match map.get("type") {
            None => None,
            Some(Value::String(name)) => {
                Some(type_bits(name, documents, location)? | if nullable { NULL } else { 0 })
            }
            Some(Value::Array(names)) => {
                let mut bits = 0;
                for name in names {
                    let name = name
                        .as_str()
                        .ok_or_else(|| documents.error(location, "type names must be strings"))?;
                    bits |= type_bits(name, documents, location)?;
                }
                Some(bits)
            }
            Some(_) => return Err(documents.error(location, "type must be a string or an array")),
        };
        node.enumeration = match (map.get("enum"), map.get("const")) {
            (Some(Value::Array(values)), _) => {
                let mut values = values.clone();
                if nullable {
                    values.push(Value::Null);
                }
                Some(values)
            }
            (Some(_), _) => return Err(documents.error(location, "enum must be an array")),
            (None, Some(value)) => Some(vec![value.clone()]),
            (None, None) => None,
        };
        if let Some(Value::Object(properties)) = map.get("properties") {
            let names: Vec<String> = properties.keys().cloned().collect();
            let base = location.child("properties");
            for name in names {
                let id = self.compile_at(documents, &base.child(&name), source, depth + 1)?;
                node.properties.push((name, id));
            }
        }
        if let Some(Value::Array(required)) = map.get("required") {
            node.required = required
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect();
        }
        node.additional = match map.get("additionalProperties") {
            None | Some(Value::Bool(true)) => Additional::Any,
            Some(Value::Bool(false)) => Additional::Denied,
            Some(_) => Additional::Schema(self.compile_at(
                documents,
                &location.child("additionalProperties"),
                source,
                depth + 1,
            )?),
        };
        match map.get("items") {
            Some(Value::Array(items)) => {
                // OpenAPI 3.0 forbids it, JSON Schema draft 4 meant tuples by it.
                let base = location.child("items");
                for index in 0..items.len() {
                    let id = self.compile_at(
                        documents,
                        &base.child(&index.to_string()),
                        source,
                        depth + 1,
                    )?;
                    node.prefix_items.push(id);
                }
            }
            Some(_) => {
                node.items =
                    Some(self.compile_at(documents, &location.child("items"), source, depth + 1)?)
            }
            None => {}
        }
        if let Some(Value::Array(items)) = map.get("prefixItems") {
            let base = location.child("prefixItems");
            for index in 0..items.len() {
                let id = self.compile_at(
                    documents,
                    &base.child(&index.to_string()),
                    source,
                    depth + 1,
                )?;
                node.prefix_items.push(id);
            }
        }
        node.min_items = count("minItems");
        node.max_items = count("maxItems");
        node.unique_items = map.get("uniqueItems") == Some(&Value::Bool(true));
        node.min_properties = count("minProperties");
        node.max_properties = count("maxProperties");
        node.min_length = count("minLength");
        node.max_length = count("maxLength");
        if let Some(pattern) = map.get("pattern").and_then(Value::as_str) {
            let compiled = self.regex(pattern).map_err(|error| {
                documents.error(
                    &location.child("pattern"),
                    format!("pattern is not a usable regular expression: {error}"),
                )
            })?;
            node.pattern = Some(compiled);
        }
        node.format = map
            .get("format")
            .and_then(Value::as_str)
            .and_then(format_of);
        node.minimum = number("minimum");
        node.maximum = number("maximum");
        // 3.0: booleans that make minimum/maximum exclusive; 3.1: the bounds themselves.
        match map.get("exclusiveMinimum") {
            Some(Value::Bool(true)) => node.exclusive_minimum = node.minimum.take(),
            Some(Value::Number(bound)) => node.exclusive_minimum = bound.as_f64(),
            _ => {}
        }
        match map.get("exclusiveMaximum") {
            Some(Value::Bool(true)) => node.exclusive_maximum = node.maximum.take(),
            Some(Value::Number(bound)) => node.exclusive_maximum = bound.as_f64(),
            _ => {}
        }
        node.multiple_of = number("multipleOf").filter(|step| *step > 0.0);
        for (key, list) in [("allOf", 0), ("anyOf", 1), ("oneOf", 2)] {
            let Some(Value::Array(members)) = map.get(key) else {
                continue;
            };
            let base = location.child(key);
            let mut ids = Vec::with_capacity(members.len());
            for index in 0..members.len() {
                ids.push(self.compile_at(
                    documents,
                    &base.child(&index.to_string()),
                    source,
                    depth + 1,
                )?);
            }
            match list {
                0 => node.all_of = ids,
                1 => node.any_of = ids,
                _ => node.one_of = ids,
            }
        }
        if map.contains_key("not") {
            node.not =
                Some(self.compile_at(documents, &location.child("not"), source, depth + 1)?);
        }
        node.read_only = map.get("readOnly") == Some(&Value::Bool(true));
        node.write_only = map.get("writeOnly") == Some(&Value::Bool(true));
        Ok(node)
    }

    /// Checks `value` against schema `id`; the first mismatch found. A value too costly to
    /// check completely (see [`STEP_BUDGET`]) is taken as matching: a finding must be sure.
    pub fn validate(
        &self,
        id: SchemaId,
        value: &Value,
        direction: Direction,
    ) -> Result<(), Mismatch> {
        let mut check = Check {
            schemas: self,
            direction,
            steps: 0,
        };
        let mut path = String::new();
        match check.value(id, value, &mut path, 0) {
            Err(Failure::Mismatch(mismatch)) => Err(mismatch),
            Ok(()) | Err(Failure::Budget) => Ok(()),
        }
    }

    /// Whether the schema (through references and `allOf`) says `readOnly` / `writeOnly`.
    fn flag(&self, id: SchemaId, read_only: bool, depth: u32) -> bool {
        let node = &self.nodes[id.0 as usize];
        if (read_only && node.read_only) || (!read_only && node.write_only) {
            return true;
        }
        depth < 16
            && (node
                .reference
                .is_some_and(|target| self.flag(target, read_only, depth + 1))
                || node
                    .all_of
                    .iter()
                    .any(|&member| self.flag(member, read_only, depth + 1)))
    }

    /// The declared properties and which are required, through references and `allOf`: what
    /// spec learning and form decoding need.
    pub fn property_types(&self, id: SchemaId) -> Vec<(String, Option<u8>)> {
        let mut out = Vec::new();
        self.collect_properties(id, &mut out, 0);
        out
    }

    fn collect_properties(&self, id: SchemaId, out: &mut Vec<(String, Option<u8>)>, depth: u32) {
        if depth > 16 {
            return;
        }
        let node = &self.nodes[id.0 as usize];
        for (name, property) in &node.properties {
            out.push((name.clone(), self.types_of(*property, 0)));
        }
        for &member in node.reference.iter().chain(&node.all_of) {
            self.collect_properties(member, out, depth + 1);
        }
    }

    /// The types a schema allows, through references (None: any).
    pub fn types_of(&self, id: SchemaId, depth: u32) -> Option<u8> {
        let node = &self.nodes[id.0 as usize];
        node.types.or_else(|| {
            (depth < 16)
                .then(|| {
                    node.reference
                        .and_then(|target| self.types_of(target, depth + 1))
                })
                .flatten()
        })
    }
}

fn type_bits(name: &str, documents: &Documents, location: &Location) -> Result<u8, SpecError> {
    Ok(match name {
        "null" => NULL,
        "boolean" => BOOLEAN,
        "integer" => INTEGER,
        "number" => NUMBER | INTEGER,
        "string" => STRING,
        "array" => ARRAY,
        "object" => OBJECT,
        other => {
            return Err(documents.error(
                &location.child("type"),
                format!("{other:?} is not a JSON Schema type (null, boolean, integer, number, string, array, object)"),
            ));
        }
    })
}

/// Formats checked; unknown ones are annotations, as JSON Schema says.
fn format_of(name: &str) -> Option<Format> {
    Some(match name {
        "int32" => Format::Int32,
        "int64" => Format::Int64,
        "date" => Format::Date,
        "date-time" => Format::DateTime,
        "email" => Format::Email,
        "uuid" => Format::Uuid,
        "ipv4" => Format::Ipv4,
        "ipv6" => Format::Ipv6,
        "uri" => Format::Uri,
        "byte" => Format::Byte,
        _ => return None,
    })
}

enum Failure {
    Mismatch(Mismatch),
    Budget,
}

struct Check<'a> {
    schemas: &'a Schemas,
    direction: Direction,
    steps: u32,
}

fn type_of(value: &Value) -> u8 {
    match value {
        Value::Null => NULL,
        Value::Bool(_) => BOOLEAN,
        Value::Number(number) => {
            let integral = number.is_i64()
                || number.is_u64()
                || number.as_f64().is_some_and(|float| float.fract() == 0.0);
            if integral { INTEGER | NUMBER } else { NUMBER }
        }
        Value::String(_) => STRING,
        Value::Array(_) => ARRAY,
        Value::Object(_) => OBJECT,
    }
}

/// The allowed types, named (number includes integer, so it is named once).
fn type_names(bits: u8) -> String {
    let names = [
        (INTEGER, "integer"),
        (NUMBER, "number"),
        (STRING, "string"),
        (BOOLEAN, "boolean"),
        (ARRAY, "array"),
        (OBJECT, "object"),
        (NULL, "null"),
    ];
    let named: Vec<&str> = names
        .iter()
        .filter(|(bit, name)| bits & bit != 0 && !(*name == "integer" && bits & NUMBER != 0))
        .map(|(_, name)| *name)
        .collect();
    if named.is_empty() {
        "nothing".to_owned()
    } else {
        named.join(" or ")
    }
}

fn value_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) if type_of(value) & INTEGER != 0 => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn push_pointer(path: &mut String, token: &str) -> usize {
    let length = path.len();
    path.push('/');
    path.push_str(&super::document::escape(token));
    length
}

impl Check<'_> {
    fn fail(&self, node: &Node, path: &str, message: String) -> Failure {
        Failure::Mismatch(Mismatch {
            instance: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
            schema: node.at.clone(),
            message,
        })
    }

    fn value(
        &mut self,
        id: SchemaId,
        value: &Value,
        path: &mut String,
        depth: u32,
    ) -> Result<(), Failure> {
        self.steps += 1;
        if self.steps > STEP_BUDGET || depth > MAX_DEPTH {
            return Err(Failure::Budget);
        }
        let node = &self.schemas.nodes[id.0 as usize];
        if let Some(target) = node.reference {
            self.value(target, value, path, depth + 1)?;
        }
        if let Some(types) = node.types
            && types & type_of(value) == 0
        {
            return Err(self.fail(
                node,
                path,
                format!(
                    "expected {}, got {}",
                    type_names(types),
                    value_type_name(value)
                ),
            ));
        }
        if let Some(values) = &node.enumeration
            && !values.iter().any(|allowed| json_equal(allowed, value))
        {
            return Err(self.fail(
                node,
                path,
                format!("not one of the {} allowed values", values.len()),
            ));
        }
        match value {
            Value::String(text) => self.string(node, text, path)?,
            Value::Number(number) => {
                self.number(node, number.as_f64().unwrap_or(0.0), number, path)?
            }
            Value::Array(items) => self.array(node, items, path, depth)?,
            Value::Object(map) => self.object(node, map, path, depth)?,
            Value::Null | Value::Bool(_) => {}
        }
        for &member in &node.all_of {
            self.value(member, value, path, depth + 1)?;
        }
        if !node.any_of.is_empty() {
            let mut matched = false;
            for &member in &node.any_of {
                match self.value(member, value, path, depth + 1) {
                    Ok(()) => {
                        matched = true;
                        break;
                    }
                    Err(Failure::Budget) => return Err(Failure::Budget),
                    Err(Failure::Mismatch(_)) => {}
                }
            }
            if !matched {
                return Err(self.fail(
                    node,
                    path,
                    format!("matches none of the {} anyOf schemas", node.any_of.len()),
                ));
            }
        }
        if !node.one_of.is_empty() {
            let mut matches = 0;
            for &member in &node.one_of {
                match self.value(member, value, path, depth + 1) {
                    Ok(()) => matches += 1,
                    Err(Failure::Budget) => return Err(Failure::Budget),
                    Err(Failure::Mismatch(_)) => {}
                }
            }
            if matches != 1 {
                return Err(self.fail(
                    node,
                    path,
                    format!("matches {matches} of the oneOf schemas, not exactly one"),
                ));
            }
        }
        if let Some(not) = node.not {
            match self.value(not, value, path, depth + 1) {
                Ok(()) => {
                    return Err(self.fail(node, path, "matches the schema under `not`".to_owned()));
                }
                Err(Failure::Budget) => return Err(Failure::Budget),
                Err(Failure::Mismatch(_)) => {}
            }
        }
        Ok(())
    }

    /// A count (of characters, items or properties) within its schema's bounds; `names` are
    /// the unit and the two keywords, for the message.
    fn count(
        &self,
        node: &Node,
        path: &str,
        count: u64,
        (minimum, maximum): (Option<u64>, Option<u64>),
        (unit, minimum_keyword, maximum_keyword): (&str, &str, &str),
    ) -> Result<(), Failure> {
        if let Some(minimum) = minimum
            && count < minimum
        {
            return Err(self.fail(
                node,
                path,
                format!("{count} {unit}, fewer than {minimum_keyword} {minimum}"),
            ));
        }
        if let Some(maximum) = maximum
            && count > maximum
        {
            return Err(self.fail(
                node,
                path,
                format!("{count} {unit}, more than {maximum_keyword} {maximum}"),
            ));
        }
        Ok(())
    }

    fn string(&self, node: &Node, text: &str, path: &str) -> Result<(), Failure> {
        if node.min_length.is_some() || node.max_length.is_some() {
            let length = text.chars().count() as u64;
            let bounds = (node.min_length, node.max_length);
            self.count(
                node,
                path,
                length,
                bounds,
                ("characters", "minLength", "maxLength"),
            )?;
        }
        if let Some(pattern) = &node.pattern
            && !pattern.is_match(text)
        {
            return Err(self.fail(
                node,
                path,
                format!("does not match pattern {:?}", pattern.as_str()),
            ));
        }
        if let Some(format) = node.format
            && !string_has_format(text, format)
        {
            return Err(self.fail(node, path, format!("not a valid {format:?} string")));
        }
        Ok(())
    }

    fn number(
        &self,
        node: &Node,
        value: f64,
        number: &serde_json::Number,
        path: &str,
    ) -> Result<(), Failure> {
        let fail = |message: String| Err(self.fail(node, path, message));
        if let Some(minimum) = node.minimum
            && value < minimum
        {
            return fail(format!("below the minimum {minimum}"));
        }
        if let Some(maximum) = node.maximum
            && value > maximum
        {
            return fail(format!("above the maximum {maximum}"));
        }
        if let Some(bound) = node.exclusive_minimum
            && value <= bound
        {
            return fail(format!("not above the exclusive minimum {bound}"));
        }
        if let Some(bound) = node.exclusive_maximum
            && value >= bound
        {
            return fail(format!("not below the exclusive maximum {bound}"));
        }
        if let Some(step) = node.multiple_of {
            let quotient = value / step;
            if (quotient - quotient.round()).abs() > 1e-9 {
                return fail(format!("not a multiple of {step}"));
            }
        }
        match node.format {
            Some(Format::Int32)
                if number
                    .as_i64()
                    .is_none_or(|integer| i32::try_from(integer).is_err()) =>
            {
                fail("not a 32-bit integer (format int32)".to_owned())
            }
            Some(Format::Int64) if number.as_i64().is_none() && number.as_u64().is_none() => {
                fail("not a 64-bit integer (format int64)".to_owned())
            }
            _ => Ok(()),
        }
    }

    fn array(
        &mut self,
        node: &Node,
        items: &[Value],
        path: &mut String,
        depth: u32,
    ) -> Result<(), Failure> {
        let bounds = (node.min_items, node.max_items);
        self.count(
            node,
            path,
            items.len() as u64,
            bounds,
            ("items", "minItems", "maxItems"),
        )?;
        if node.unique_items {
            // Quadratic in the worst case; the step budget bounds it.
            for (index, item) in items.iter().enumerate() {
                self.steps += index as u32;
                if self.steps > STEP_BUDGET {
                    return Err(Failure::Budget);
                }
                if items[..index]
                    .iter()
                    .any(|earlier| json_equal(earlier, item))
                {
                    return Err(self.fail(
                        node,
                        path,
                        format!("item {index} repeats an earlier one (uniqueItems)"),
                    ));
                }
            }
        }
        for (index, item) in items.iter().enumerate() {
            let schema = node.prefix_items.get(index).copied().or(node.items);
            if let Some(schema) = schema {
                let length = push_pointer(path, &index.to_string());
                let result = self.value(schema, item, path, depth + 1);
                path.truncate(length);
                result?;
            }
        }
        Ok(())
    }

    fn object(
        &mut self,
        node: &Node,
        map: &serde_json::Map<String, Value>,
        path: &mut String,
        depth: u32,
    ) -> Result<(), Failure> {
        let bounds = (node.min_properties, node.max_properties);
        let names = ("properties", "minProperties", "maxProperties");
        self.count(node, path, map.len() as u64, bounds, names)?;
        for name in &node.required {
            if map.contains_key(name) {
                continue;
            }
            let exempt = node
                .properties
                .iter()
                .find(|(property, _)| property == name)
                .is_some_and(|(_, id)| {
                    self.schemas
                        .flag(*id, self.direction == Direction::Request, 0)
                });
            if !exempt {
                return Err(self.fail(
                    node,
                    path,
                    format!("required property {name:?} is missing"),
                ));
            }
        }
        for (name, item) in map {
            let declared = node
                .properties
                .iter()
                .find(|(property, _)| property == name)
                .map(|(_, id)| *id);
            let schema = match (declared, &node.additional) {
                (Some(id), _) => Some(id),
                (None, Additional::Any) => None,
                (None, Additional::Schema(id)) => Some(*id),
                (None, Additional::Denied) => {
                    let length = push_pointer(path, name);
                    let failure = self.fail(
                        node,
                        path,
                        "property not allowed (additionalProperties: false)".to_owned(),
                    );
                    path.truncate(length);
                    return Err(failure);
                }
            };
            if let Some(schema) = schema {
                let length = push_pointer(path, name);
                let result = self.value(schema, item, path, depth + 1);
                path.truncate(length);
                result?;
            }
        }
        Ok(())
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_equal(one: &Value, other: &Value) -> bool {
    match (one, other) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, x)| b.get(key).is_some_and(|y| json_equal(x, y)))
        }
        _ => one == other,
    }
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [year, month, day] = parts[..] else {
        return false;
    };
    let in_range = |part: &str, low: u32, high: u32| {
        part.parse::<u32>().is_ok_and(|n| (low..=high).contains(&n))
    };
    year.len() == 4
        && digits(year)
        && month.len() == 2
        && day.len() == 2
        && in_range(month, 1, 12)
        && in_range(day, 1, 31)
}

/// RFC 3339 `date-time`: a date, `T`, a time with optional fraction, and an offset.
fn is_date_time(text: &str) -> bool {
    let Some((date, time)) = text.split_once(['T', 't']) else {
        return false;
    };
    let (clock, offset_ok) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, true)
    } else if let Some(index) = time.rfind(['+', '-']) {
        let offset = &time[index + 1..];
        let ok = offset.len() == 5
            && offset.as_bytes()[2] == b':'
            && digits(&offset[..2])
            && digits(&offset[3..]);
        (&time[..index], ok)
    } else {
        return false;
    };
    let clock = clock.split_once('.').map_or(
        clock,
        |(whole, fraction)| if digits(fraction) { whole } else { "" },
    );
    let fields: Vec<&str> = clock.split(':').collect();
    is_date(date)
        && offset_ok
        && fields.len() == 3
        && fields.iter().all(|field| field.len() == 2 && digits(field))
        && fields[0] < "24"
        && fields[1] < "60"
        && fields[2] <= "60"
}

/// The most specific format `text` has, as the validator checks it: what learning from
/// traffic records, so that a learned format never rejects the value it was learned from.
pub fn detect_format(text: &str) -> Option<&'static str> {
    [
        ("uuid", Format::Uuid),
        ("date-time", Format::DateTime),
        ("date", Format::Date),
        ("ipv4", Format::Ipv4),
        ("email", Format::Email),
    ]
    .into_iter()
    .find(|(_, format)| string_has_format(text, *format))
    .map(|(name, _)| name)
    // Any `word:` passes as a URI; only call it one when it looks like a URL.
    .or_else(|| (text.contains("://") && string_has_format(text, Format::Uri)).then_some("uri"))
}

fn string_has_format(text: &str, format: Format) -> bool {
    match format {
        Format::Int32 | Format::Int64 => true,
        Format::Date => is_date(text),
        Format::DateTime => is_date_time(text),
        Format::Email => text.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !text.contains(char::is_whitespace)
        }),
        Format::Uuid => {
            let bytes = text.as_bytes();
            bytes.len() == 36
                && bytes.iter().enumerate().all(|(index, byte)| match index {
                    8 | 13 | 18 | 23 => *byte == b'-',
                    _ => byte.is_ascii_hexdigit(),
                })
        }
        Format::Ipv4 => text.parse::<std::net::Ipv4Addr>().is_ok(),
        Format::Ipv6 => text.parse::<std::net::Ipv6Addr>().is_ok(),
        Format::Uri => text.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }),
        Format::Byte => {
            text.len().is_multiple_of(4)
                && text
                    .trim_end_matches('=')
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/')
        }
    }
}

impl Schemas {
    /// The schema of an array's items, through references.
    pub fn items_of(&self, id: SchemaId) -> Option<SchemaId> {
        let mut current = id;
        for _ in 0..16 {
            let node = &self.nodes[current.0 as usize];
            if let Some(items) = node.items {
                return Some(items);
            }
            current = node.reference?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecma_classes_are_ascii_inside_and_outside_brackets() {
        assert_eq!(ecma_to_regex(r"^\w{0,4}$"), "^[0-9A-Za-z_]{0,4}$");
        assert_eq!(ecma_to_regex(r"[\d\-+]+\.\s"), r"[0-9\-+]+\.\s");
        let regex = regex::Regex::new(&ecma_to_regex(r"^\w+$")).expect("compiles");
        assert!(regex.is_match("abc_09"));
        assert!(!regex.is_match("café"), "ECMA \\w is ASCII");
    }

    #[test]
    fn formats_learned_are_formats_checked() {
        for (text, format) in [
            ("123e4567-e89b-12d3-a456-426614174000", Some("uuid")),
            ("2024-03-01T10:00:00Z", Some("date-time")),
            ("2024-03-01", Some("date")),
            ("10.1.2.3", Some("ipv4")),
            ("a@b.example", Some("email")),
            ("https://example.com/x", Some("uri")),
            ("mailto:x", None),
            ("-@.@", None),
            ("2024-13-01", None),
        ] {
            assert_eq!(detect_format(text), format, "{text}");
        }
    }
}
