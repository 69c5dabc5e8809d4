//! The call every spec-checking target derives from its input: method, path, query, headers and
//! both sides' bodies, in the shape the agent hands the analysis. Paths are mostly a spec
//! template with its placeholders filled, so that inputs reach operations and not only the
//! shadow-API branch.

use intelligence::{Exchange, auth, exchange::Side};
use libfuzzer_sys::arbitrary::{self, Arbitrary};

#[derive(Arbitrary, Debug)]
pub enum Method<'a> {
    Get,
    Put,
    Post,
    Delete,
    Options,
    Head,
    Patch,
    Trace,
    Other(&'a str),
}

impl<'a> Method<'a> {
    fn as_str(&self) -> &'a str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Post => "POST",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Head => "HEAD",
            Self::Patch => "PATCH",
            Self::Trace => "TRACE",
            Self::Other(method) => method,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Path<'a> {
    /// Template `operation` (modulo the templates there are), placeholders filled in turn from
    /// `values`, after the base path when `based`.
    Template {
        operation: u8,
        values: Vec<&'a str>,
        based: bool,
    },
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
pub enum Media<'a> {
    Json,
    /// `application/<suffix>+json`, which is checked as JSON.
    JsonSuffix(&'a str),
    Xml,
    Form,
    Text,
    Other(&'a str),
}

impl Media<'_> {
    fn content_type(&self) -> String {
        match self {
            Self::Json => "application/json; charset=utf-8".to_owned(),
            Self::JsonSuffix(suffix) => format!("application/{suffix}+json"),
            Self::Xml => "application/xml".to_owned(),
            Self::Form => "application/x-www-form-urlencoded".to_owned(),
            Self::Text => "text/plain".to_owned(),
            Self::Other(media) => (*media).to_owned(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Body<'a> {
    pub media: Option<Media<'a>>,
    pub encoding: Option<&'a str>,
    pub bytes: &'a [u8],
    pub complete: bool,
    pub seen: bool,
}

#[derive(Arbitrary, Debug)]
pub struct Call<'a> {
    pub method: Method<'a>,
    pub path: Path<'a>,
    pub query: Option<&'a str>,
    pub request_headers: Vec<(&'a str, &'a str)>,
    pub response_headers: Vec<(&'a str, &'a str)>,
    pub request: Body<'a>,
    pub response: Body<'a>,
    pub status: Option<u16>,
    pub caller: &'a str,
    pub time_unix_secs: u64,
    pub latency_us: Option<u64>,
}

/// `template` with each `{name}` replaced by the next of `values` (cycling; empty when there
/// are none).
pub fn fill(template: &str, values: &[&str]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut next = values.iter().cycle();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        if !values.is_empty() {
            out.push_str(next.next().copied().unwrap_or_default());
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// What an exchange borrows: the path and header fields made from a [`Call`].
pub struct Parts<'a> {
    path: String,
    request: Vec<(String, String)>,
    response: Vec<(String, String)>,
    call: &'a Call<'a>,
}

impl<'a> Call<'a> {
    /// The owned parts of this call's exchange, its templated path resolved against
    /// `templates` and `base`.
    pub fn parts(&'a self, base: &str, templates: &[&str]) -> Parts<'a> {
        let path = match &self.path {
            Path::Template {
                operation,
                values,
                based,
            } if !templates.is_empty() => {
                let template = templates[usize::from(*operation) % templates.len()];
                let filled = fill(template, values);
                if *based {
                    format!("{base}{filled}")
                } else {
                    filled
                }
            }
            Path::Template { values, .. } => values.join("/"),
            Path::Raw(path) => (*path).to_owned(),
        };
        // The body's own fields first: a side's header lookup takes the first, so the media
        // type chosen for the body is the one it is checked as.
        let fields = |body: &Body<'a>, given: &[(&'a str, &'a str)]| -> Vec<(String, String)> {
            let media = body
                .media
                .as_ref()
                .map(|media| ("Content-Type", media.content_type()));
            let encoding = body
                .encoding
                .map(|coding| ("Content-Encoding", coding.to_owned()));
            media
                .into_iter()
                .chain(encoding)
                .map(|(name, value)| (name.to_owned(), value))
                .chain(
                    given
                        .iter()
                        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
                )
                .collect()
        };
        Parts {
            path,
            request: fields(&self.request, &self.request_headers),
            response: fields(&self.response, &self.response_headers),
            call: self,
        }
    }
}

fn side<'a>(body: &Body<'a>, headers: &'a [(&'a str, &'a str)]) -> Side<'a> {
    Side {
        headers,
        body: body.bytes,
        body_complete: body.complete,
        seen: body.seen,
    }
}

fn borrowed(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

impl Parts<'_> {
    /// Runs `with` on the exchange, its authentication judged from its headers and query as
    /// the agent judges it.
    pub fn with_exchange<T>(&self, with: impl FnOnce(&Exchange<'_>) -> T) -> T {
        let call = self.call;
        let request_headers = borrowed(&self.request);
        let response_headers = borrowed(&self.response);
        let caller = intelligence::Caller::peer(call.caller);
        let exchange = Exchange {
            method: call.method.as_str(),
            path: &self.path,
            query: call.query,
            status: call.status,
            request: side(&call.request, &request_headers),
            response: side(&call.response, &response_headers),
            caller: &caller,
            auth: auth::scheme_of(request_headers.iter().copied(), call.query, &[]),
            time_unix_secs: call.time_unix_secs,
            latency_us: call.latency_us,
        };
        with(&exchange)
    }
}
