//! A request body cut into values by what it holds: JSON keys and strings, form pairs, XML
//! text and attribute values, multipart parts (each cut by its own type, its file name a value
//! too), or the text as a whole.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Input, MAX_INPUTS, MAX_JSON_DEPTH, Role, pairs, short_name};

/// Multipart bodies inside multipart parts read this deep; deeper nesting is read as text.
const MAX_NESTING: usize = 2;

/// Appends the values of `text`, a body sent with `content_type`, found at `location`.
pub(super) fn inputs<'a>(
    text: &'a str,
    content_type: &str,
    location: &str,
    inputs: &mut Vec<Input<'a>>,
) {
    cut(text, content_type, location, 0, inputs);
}

fn cut<'a>(
    text: &'a str,
    content_type: &str,
    location: &str,
    depth: usize,
    inputs: &mut Vec<Input<'a>>,
) {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let trimmed = text.trim_start();
    if (media.contains("json") || trimmed.starts_with(['{', '['])) && json(text, location, inputs) {
        return;
    }
    if media.starts_with("multipart/")
        && depth < MAX_NESTING
        && let Some(boundary) = parameter(content_type, "boundary")
    {
        multipart(text, boundary, location, depth, inputs);
        return;
    }
    // Clients end form bodies with a newline at times; it is no part of the last value.
    let form = text.trim_end_matches(['\r', '\n']);
    let form_shaped = !form.contains('\n') && form.contains('=');
    if media == "application/x-www-form-urlencoded" || (media.is_empty() && form_shaped) {
        pairs(form, '&', location, inputs);
        return;
    }
    // The whole text too: markup and scripts span what the cuts below separate.
    inputs.push(Input {
        location: location.to_owned(),
        text: Cow::Borrowed(text),
        role: Role::Value,
    });
    if media.contains("xml") || trimmed.starts_with('<') {
        xml(text, location, inputs);
    } else if form_shaped {
        // `text/plain` bodies are often forms sent with the wrong type.
        pairs(form, '&', location, inputs);
    }
}

/// Appends the keys and strings of `text` if it is one JSON document (and nothing if it is
/// not), read as it is parsed: no tree is built, and strings without escapes are borrowed.
/// Keys come in document order, each one of a repeated key.
fn json<'a>(text: &'a str, location: &str, inputs: &mut Vec<Input<'a>>) -> bool {
    let before = inputs.len();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let walk = JsonValues {
        pointer: location.to_owned(),
        depth: 0,
        inputs: &mut *inputs,
    };
    let parsed = walk
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .is_ok();
    if !parsed {
        inputs.truncate(before);
    }
    parsed
}

/// The JSON value at `pointer`, `depth` levels down: its strings and keys become inputs; what
/// lies past [`MAX_JSON_DEPTH`] or [`MAX_INPUTS`] is parsed but not kept.
struct JsonValues<'i, 'a> {
    pointer: String,
    depth: usize,
    inputs: &'i mut Vec<Input<'a>>,
}

impl<'a> DeserializeSeed<'a> for JsonValues<'_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.depth > MAX_JSON_DEPTH || self.inputs.len() >= MAX_INPUTS {
            deserializer.deserialize_ignored_any(IgnoredAny)?;
            return Ok(());
        }
        deserializer.deserialize_any(self)
    }
}

impl<'a> JsonValues<'_, 'a> {
    fn push(self, text: Cow<'a, str>) {
        self.inputs.push(Input {
            location: self.pointer,
            text,
            role: Role::Value,
        });
    }
}

impl<'a> Visitor<'a> for JsonValues<'_, 'a> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_borrowed_str<E>(self, text: &'a str) -> Result<(), E> {
        self.push(Cow::Borrowed(text));
        Ok(())
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        self.push(Cow::Owned(text.to_owned()));
        Ok(())
    }

    fn visit_string<E>(self, text: String) -> Result<(), E> {
        self.push(Cow::Owned(text));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut items: A) -> Result<(), A::Error> {
        for index in 0.. {
            let item = JsonValues {
                pointer: child_pointer(&self.pointer, itoa(index, &mut [0; 20])),
                depth: self.depth + 1,
                inputs: &mut *self.inputs,
            };
            if items.next_element_seed(item)?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'a>>(self, mut fields: A) -> Result<(), A::Error> {
        while let Some(JsonText(key)) = fields.next_key::<JsonText<'a>>()? {
            let child = child_pointer(&self.pointer, short_name(&key));
            self.inputs.push(Input {
                location: child.clone(),
                text: key,
                role: Role::Key,
            });
            fields.next_value_seed(JsonValues {
                pointer: child,
                depth: self.depth + 1,
                inputs: &mut *self.inputs,
            })?;
        }
        Ok(())
    }
}

/// `pointer/name`, built without the formatting machinery: one per JSON value.
fn child_pointer(pointer: &str, name: &str) -> String {
    let mut child = String::with_capacity(pointer.len() + 1 + name.len());
    child.push_str(pointer);
    child.push('/');
    child.push_str(name);
    child
}

/// `number` in decimal, written into `buffer`.
fn itoa(mut number: usize, buffer: &mut [u8; 20]) -> &str {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[start..]).unwrap_or_default()
}

/// A JSON key, borrowed when it has no escapes (serde's own `Cow<str>` always copies).
struct JsonText<'a>(Cow<'a, str>);

impl<'a> serde::Deserialize<'a> for JsonText<'a> {
    fn deserialize<D: Deserializer<'a>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(JsonTextVisitor)
    }
}

struct JsonTextVisitor;

impl<'a> Visitor<'a> for JsonTextVisitor {
    type Value = JsonText<'a>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON string")
    }

    fn visit_borrowed_str<E>(self, text: &'a str) -> Result<Self::Value, E> {
        Ok(JsonText(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(JsonText(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(JsonText(Cow::Owned(text)))
    }
}

/// The value of parameter `name` in a header value such as `form-data; name="a"; filename=b`.
fn parameter<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').skip(1).find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"'))
    })
}

fn multipart<'a>(
    text: &'a str,
    boundary: &str,
    location: &str,
    depth: usize,
    inputs: &mut Vec<Input<'a>>,
) {
    let delimiter = format!("--{boundary}");
    // The preamble before the first delimiter is not a part.
    for part in text.split(delimiter.as_str()).skip(1) {
        if inputs.len() >= MAX_INPUTS || part.starts_with("--") {
            return;
        }
        let part = part.trim_start_matches(['\r', '\n']);
        let (head, content) = match (part.find("\r\n\r\n"), part.find("\n\n")) {
            (Some(crlf), Some(lf)) if lf < crlf => (&part[..lf], &part[lf + 2..]),
            (Some(crlf), _) => (&part[..crlf], &part[crlf + 4..]),
            (None, Some(lf)) => (&part[..lf], &part[lf + 2..]),
            (None, None) => (part, ""),
        };
        let content = content
            .strip_suffix("\r\n")
            .or_else(|| content.strip_suffix('\n'))
            .unwrap_or(content);
        let header = |wanted: &str| {
            head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case(wanted).then_some(value)
            })
        };
        let disposition = header("content-disposition").unwrap_or_default();
        let name = parameter(disposition, "name").unwrap_or_default();
        let part_location = format!("{location}.{}", short_name(name));
        inputs.push(Input {
            location: part_location.clone(),
            text: Cow::Borrowed(name),
            role: Role::Key,
        });
        if let Some(filename) = parameter(disposition, "filename") {
            inputs.push(Input {
                location: format!("{part_location}.filename"),
                text: Cow::Borrowed(filename),
                role: Role::FileName,
            });
        }
        if !content.is_empty() {
            let content_type = header("content-type").unwrap_or_default();
            cut(content, content_type, &part_location, depth + 1, inputs);
        }
    }
}

/// XML text and attribute values, each its own value (names are the document's, not input).
fn xml<'a>(text: &'a str, location: &str, inputs: &mut Vec<Input<'a>>) {
    let mut element = String::new();
    let mut rest = text;
    while !rest.is_empty() && inputs.len() < MAX_INPUTS {
        let open = rest.find('<').unwrap_or(rest.len());
        push_text(&rest[..open], &format!("{location}/{element}"), inputs);
        rest = rest.get(open + 1..).unwrap_or_default();
        if let Some(cdata) = rest.strip_prefix("![CDATA[") {
            let end = cdata.find("]]>").unwrap_or(cdata.len());
            push_text(&cdata[..end], &format!("{location}/{element}"), inputs);
            rest = cdata.get(end + 3..).unwrap_or_default();
            continue;
        }
        let close = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..close];
        rest = rest.get(close + 1..).unwrap_or_default();
        if tag.starts_with(['?', '!', '/']) {
            continue;
        }
        let name_end = tag
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(tag.len());
        element = short_name(&tag[..name_end]).to_owned();
        attributes(&tag[name_end..], &format!("{location}/{element}"), inputs);
    }
}

fn push_text<'a>(text: &'a str, location: &str, inputs: &mut Vec<Input<'a>>) {
    let text = text.trim();
    if !text.is_empty() {
        inputs.push(Input {
            location: location.to_owned(),
            text: Cow::Borrowed(text),
            role: Role::Value,
        });
    }
}

/// `name="value"` pairs of a start tag (after its name).
fn attributes<'a>(mut rest: &'a str, location: &str, inputs: &mut Vec<Input<'a>>) {
    while let Some(equals) = rest.find('=') {
        let name = rest[..equals].trim();
        let value = rest[equals + 1..].trim_start();
        let Some(quote) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
            return;
        };
        let inner = &value[1..];
        let end = inner.find(quote).unwrap_or(inner.len());
        push_text(
            &inner[..end],
            &format!("{location}@{}", short_name(name)),
            inputs,
        );
        rest = inner.get(end + 1..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str, content_type: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        inputs(text, content_type, "body", &mut found);
        found
            .into_iter()
            .map(|i| (i.location, i.text.into_owned()))
            .collect()
    }

    #[test]
    fn xml_text_and_attributes_are_values() {
        let found = values(
            r#"<?xml version="1.0"?><a><b id='x1' note="hi there">text <![CDATA[raw <c>]]></b></a>"#,
            "application/xml",
        );
        for (location, text) in [
            ("body/b@id", "x1"),
            ("body/b@note", "hi there"),
            ("body/b", "text"),
            ("body/b", "raw <c>"),
        ] {
            assert!(
                found.contains(&(location.to_owned(), text.to_owned())),
                "{location} {text} not in {found:?}"
            );
        }
    }

    #[test]
    fn multipart_parts_are_cut_by_their_own_type() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{\"k\":\"v\"}\r\n--XyZ\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\n\nhello\n--XyZ--\r\n";
        let found = values(body, "multipart/form-data; boundary=XyZ");
        for (location, text) in [
            ("body.meta/k", "v"),
            ("body.file.filename", "a.txt"),
            ("body.file", "hello"),
        ] {
            assert!(
                found.contains(&(location.to_owned(), text.to_owned())),
                "{location} {text} not in {found:?}"
            );
        }
        // Without a boundary the body is text.
        assert_eq!(values("--x\n\nhi", "multipart/form-data").len(), 1);
    }

    #[test]
    fn array_indexes_are_written_in_decimal() {
        for number in [0, 7, 10, 255, 1_000_003, usize::MAX] {
            assert_eq!(itoa(number, &mut [0; 20]), number.to_string());
        }
    }

    #[test]
    fn plain_text_shaped_like_a_form_is_read_both_ways() {
        let found = values("a=1&b=2", "text/plain");
        assert!(found.contains(&("body".to_owned(), "a=1&b=2".to_owned())));
        assert!(found.contains(&("body.b".to_owned(), "2".to_owned())));
        let form = values("a=1&b=2", "application/x-www-form-urlencoded");
        assert!(!form.iter().any(|(location, _)| location == "body"));
    }
}
