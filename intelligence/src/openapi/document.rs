//! Spec documents and `$ref` resolution. A spec may span files (`$ref: common.yaml#/Pet`); the
//! agent supplies them through [`Source`], so this module does no I/O of its own.

use serde_json::Value;

/// A spec that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{document}#{pointer}: {reason}")]
pub struct SpecError {
    /// The document (file path or URI) holding the problem.
    pub document: String,
    /// JSON pointer inside it (empty: the document itself).
    pub pointer: String,
    pub reason: String,
}

/// Supplies referenced documents by their resolved name.
pub trait Source {
    fn read(&mut self, document: &str) -> Result<String, String>;
}

/// Most documents one spec may span, so that a `$ref` chain cannot load without end.
const MAX_DOCUMENTS: usize = 64;

/// The documents a spec spans, the root first.
#[derive(Debug)]
pub struct Documents {
    documents: Vec<(String, Value)>,
}

/// A place in one of the documents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub document: usize,
    /// JSON pointer, `""` for the root.
    pub pointer: String,
}

/// JSON or YAML text as a value (JSON is YAML, but JSON's own parser is faster and its errors
/// clearer for JSON files).
pub fn parse(text: &str, document: &str) -> Result<Value, SpecError> {
    let trimmed = text.trim_start();
    let parsed = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(|error| error.to_string())
    } else {
        serde_yaml::from_str(text).map_err(|error| error.to_string())
    };
    parsed.map_err(|reason| SpecError {
        document: document.to_owned(),
        pointer: String::new(),
        reason: format!("not valid JSON or YAML: {reason}"),
    })
}

/// `relative` resolved against the document `base`: URLs and absolute paths stand alone, other
/// paths are relative to the base's directory.
fn join(base: &str, relative: &str) -> String {
    if relative.contains("://") || relative.starts_with('/') {
        return relative.to_owned();
    }
    let directory = base.rfind('/').map_or("", |slash| &base[..=slash]);
    let mut parts: Vec<&str> = directory.split('/').collect();
    parts.pop();
    for part in relative.split('/') {
        match part {
            "." => {}
            ".." if parts
                .last()
                .is_some_and(|last| !last.is_empty() && *last != "..") =>
            {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

/// `~1` and `~0` decoded, and percent-encoding (pointers in URI fragments are encoded).
fn unescape(token: &str) -> String {
    super::conformance::percent_decode(token, false)
        .replace("~1", "/")
        .replace("~0", "~")
}

/// A token as a JSON pointer writes it.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl Documents {
    pub fn new(name: &str, root: Value) -> Self {
        Self {
            documents: vec![(name.to_owned(), root)],
        }
    }

    pub fn name(&self, document: usize) -> &str {
        self.documents
            .get(document)
            .map_or("", |(name, _)| name.as_str())
    }

    pub fn error(&self, location: &Location, reason: impl Into<String>) -> SpecError {
        SpecError {
            document: self.name(location.document).to_owned(),
            pointer: location.pointer.clone(),
            reason: reason.into(),
        }
    }

    /// The value at `location`.
    pub fn get(&self, location: &Location) -> Option<&Value> {
        let (_, root) = self.documents.get(location.document)?;
        if location.pointer.is_empty() {
            return Some(root);
        }
        let mut value = root;
        for token in location.pointer.strip_prefix('/')?.split('/') {
            let token = unescape(token);
            value = match value {
                Value::Object(map) => map.get(&token)?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// Where the `$ref` string `reference`, found at `from`, points; loads the document it
    /// names when it is not loaded yet.
    pub fn resolve(
        &mut self,
        from: &Location,
        reference: &str,
        source: &mut dyn Source,
    ) -> Result<Location, SpecError> {
        let (document, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let document = if document.is_empty() {
            from.document
        } else {
            let name = join(self.name(from.document), document);
            match self
                .documents
                .iter()
                .position(|(loaded, _)| *loaded == name)
            {
                Some(index) => index,
                None => self.load(from, &name, source)?,
            }
        };
        let location = Location {
            document,
            pointer: fragment.to_owned(),
        };
        if self.get(&location).is_none() {
            return Err(self.error(
                from,
                format!("$ref {reference:?} points at nothing (no value at {fragment:?})"),
            ));
        }
        Ok(location)
    }

    fn load(
        &mut self,
        from: &Location,
        name: &str,
        source: &mut dyn Source,
    ) -> Result<usize, SpecError> {
        if self.documents.len() >= MAX_DOCUMENTS {
            return Err(self.error(
                from,
                format!("a spec may span at most {MAX_DOCUMENTS} documents; {name} is one more"),
            ));
        }
        let text = source
            .read(name)
            .map_err(|reason| self.error(from, format!("cannot read {name}: {reason}")))?;
        let value = parse(&text, name)?;
        self.documents.push((name.to_owned(), value));
        Ok(self.documents.len() - 1)
    }

    /// Follows `$ref`s from `location` until a value that is not a reference (OpenAPI objects
    /// other than schemas are replaced whole by their `$ref`). A cycle of references is an
    /// error.
    pub fn follow(
        &mut self,
        mut location: Location,
        source: &mut dyn Source,
    ) -> Result<Location, SpecError> {
        for _ in 0..32 {
            let reference = match self.get(&location) {
                Some(Value::Object(map)) => match map.get("$ref") {
                    Some(Value::String(reference)) => reference.clone(),
                    Some(_) => return Err(self.error(&location, "$ref must be a string")),
                    None => return Ok(location),
                },
                _ => return Ok(location),
            };
            location = self.resolve(&location, &reference, source)?;
        }
        Err(self.error(&location, "$ref chain longer than 32 (a cycle?)"))
    }
}

impl Location {
    pub fn root() -> Self {
        Self {
            document: 0,
            pointer: String::new(),
        }
    }

    /// The location of member `token` of this value.
    pub fn child(&self, token: &str) -> Self {
        // Pointers are read as URI fragments, percent-decoded (that is how `$ref`s write them):
        // a `%` of the name itself is encoded, or `/a%41` would be looked up as `/aA`.
        Self {
            document: self.document,
            pointer: format!("{}/{}", self.pointer, escape(token).replace('%', "%25")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Files(HashMap<&'static str, &'static str>);

    impl Source for Files {
        fn read(&mut self, document: &str) -> Result<String, String> {
            self.0
                .get(document)
                .map(|text| (*text).to_owned())
                .ok_or_else(|| "no such file".to_owned())
        }
    }

    #[test]
    fn references_resolve_within_and_across_documents() {
        let root = parse(
            r##"{"a": {"$ref": "#/b"}, "b": {"$ref": "common/types.yaml#/Pet"}, "c": {"$ref": "missing.yaml#/x"}}"##,
            "specs/api.json",
        )
        .expect("valid JSON");
        let mut files = Files(HashMap::from([(
            "specs/common/types.yaml",
            "Pet:\n  type: object\nOwner:\n  $ref: '../api.json#/a'\n",
        )]));
        let mut documents = Documents::new("specs/api.json", root);
        let target = documents
            .follow(Location::root().child("a"), &mut files)
            .expect("resolves");
        assert_eq!(documents.name(target.document), "specs/common/types.yaml");
        assert_eq!(target.pointer, "/Pet");
        assert_eq!(
            documents.get(&target),
            Some(&serde_json::json!({"type": "object"}))
        );
        let error = documents
            .follow(Location::root().child("c"), &mut files)
            .expect_err("missing file");
        assert_eq!(error.document, "specs/api.json");
        assert_eq!(error.pointer, "/c");
        assert!(error.reason.contains("specs/missing.yaml"), "{error}");
    }

    #[test]
    fn a_cycle_of_references_is_an_error_not_a_hang() {
        let root = parse(
            r##"{"a": {"$ref": "#/b"}, "b": {"$ref": "#/a"}}"##,
            "x.json",
        )
        .expect("valid JSON");
        let mut documents = Documents::new("x.json", root);
        let error = documents
            .follow(Location::root().child("a"), &mut Files(HashMap::new()))
            .expect_err("cycle");
        assert!(error.reason.contains("cycle"), "{error}");
    }

    #[test]
    fn pointer_tokens_are_unescaped() {
        let root = parse(r#"{"paths": {"/pets/{id}": {"get": 1}}}"#, "x.json").expect("JSON");
        let documents = Documents::new("x.json", root);
        let location = Location::root()
            .child("paths")
            .child("/pets/{id}")
            .child("get");
        assert_eq!(location.pointer, "/paths/~1pets~1{id}/get");
        assert_eq!(documents.get(&location), Some(&serde_json::json!(1)));
        let encoded = Location {
            document: 0,
            pointer: "/paths/~1pets~1%7Bid%7D/get".into(),
        };
        assert_eq!(documents.get(&encoded), Some(&serde_json::json!(1)));
    }

    #[test]
    fn member_names_with_percent_signs_are_found() {
        let root = parse(
            r#"{"paths": {"/user/%%%descrip": 1, "/files/%7Bid%7D": 2, "100%": 3}}"#,
            "x.json",
        )
        .expect("JSON");
        let documents = Documents::new("x.json", root);
        let paths = Location::root().child("paths");
        for (name, value) in [("/user/%%%descrip", 1), ("/files/%7Bid%7D", 2), ("100%", 3)] {
            assert_eq!(
                documents.get(&paths.child(name)),
                Some(&serde_json::json!(value)),
                "{name}"
            );
        }
    }

    #[test]
    fn relative_names_join_like_paths() {
        assert_eq!(join("a/b/spec.yaml", "c.yaml"), "a/b/c.yaml");
        assert_eq!(join("a/b/spec.yaml", "../c.yaml"), "a/c.yaml");
        assert_eq!(join("/abs/spec.yaml", "./c.yaml"), "/abs/c.yaml");
        assert_eq!(join("spec.yaml", "c.yaml"), "c.yaml");
        assert_eq!(join("a/spec.yaml", "/etc/c.yaml"), "/etc/c.yaml");
        assert_eq!(join("a/spec.yaml", "https://x/y.yaml"), "https://x/y.yaml");
    }
}
