//! The call the detector targets derive from their input: request line, headers and both
//! bodies, in the shape the agent hands the detectors. Bodies are raw bytes or a JSON document
//! built from the input, so that inputs reach the JSON walk and not only its parse error.

use intelligence::{Exchange, auth::AuthScheme, exchange::Side};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use serde_json::Value;

static CALLER: std::sync::LazyLock<intelligence::Caller> =
    std::sync::LazyLock::new(|| intelligence::Caller::peer("fuzz"));

#[derive(Arbitrary, Debug)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(i64),
    String(&'a str),
    Array(Vec<Json<'a>>),
    Object(Vec<(&'a str, Json<'a>)>),
}

impl Json<'_> {
    fn value(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(value) => Value::Bool(*value),
            Self::Number(value) => Value::from(*value),
            Self::String(text) => Value::from(*text),
            Self::Array(items) => Value::Array(items.iter().map(Self::value).collect()),
            Self::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), value.value()))
                    .collect(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Media<'a> {
    Json,
    Form,
    Html,
    Text,
    Other(&'a str),
}

impl Media<'_> {
    fn content_type(&self) -> &str {
        match self {
            Self::Json => "application/json",
            Self::Form => "application/x-www-form-urlencoded",
            Self::Html => "text/html; charset=utf-8",
            Self::Text => "text/plain",
            Self::Other(media) => media,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Content<'a> {
    Bytes(&'a [u8]),
    Json(Json<'a>),
}

#[derive(Arbitrary, Debug)]
pub struct Body<'a> {
    pub media: Option<Media<'a>>,
    pub encoding: Option<&'a str>,
    pub content: Content<'a>,
    pub seen: bool,
}

#[derive(Arbitrary, Debug)]
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub request_headers: Vec<(&'a str, &'a str)>,
    pub response_headers: Vec<(&'a str, &'a str)>,
    pub request: Body<'a>,
    pub response: Body<'a>,
    pub status: Option<u16>,
}

/// A side's header fields (the body's media type and coding first, as a side's lookup takes
/// the first) and body bytes.
fn owned(body: &Body<'_>, given: &[(&str, &str)]) -> (Vec<(String, String)>, Vec<u8>) {
    let mut fields: Vec<(String, String)> = Vec::new();
    if let Some(media) = &body.media {
        fields.push(("Content-Type".to_owned(), media.content_type().to_owned()));
    }
    if let Some(coding) = body.encoding {
        fields.push(("Content-Encoding".to_owned(), coding.to_owned()));
    }
    fields.extend(
        given
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    let bytes = match &body.content {
        Content::Bytes(bytes) => bytes.to_vec(),
        Content::Json(json) => json.value().to_string().into_bytes(),
    };
    (fields, bytes)
}

fn borrowed(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

impl Call<'_> {
    /// Runs `with` on this call's exchange.
    pub fn with_exchange<T>(&self, with: impl FnOnce(&Exchange<'_>) -> T) -> T {
        let (request_fields, request_body) = owned(&self.request, &self.request_headers);
        let (response_fields, response_body) = owned(&self.response, &self.response_headers);
        let request_headers = borrowed(&request_fields);
        let response_headers = borrowed(&response_fields);
        let exchange = Exchange {
            method: self.method,
            path: self.path,
            query: self.query,
            status: self.status,
            request: Side {
                headers: &request_headers,
                body: &request_body,
                body_complete: true,
                seen: self.request.seen,
            },
            response: Side {
                headers: &response_headers,
                body: &response_body,
                body_complete: true,
                seen: self.response.seen,
            },
            caller: &CALLER,
            auth: AuthScheme::None,
            time_unix_secs: 0,
            latency_us: None,
        };
        with(&exchange)
    }
}
