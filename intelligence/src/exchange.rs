//! One observed call, as the analysis sees it: borrowed from the agent's record, never copied.

use crate::{Caller, auth::AuthScheme};

/// What the agent writes in place of a credential header's value: such values are known to be
/// present, never what they are.
pub const REDACTED: &str = "[redacted]";

/// One side of the call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Side<'a> {
    /// Header fields in wire order (names in the sender's case).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body bytes that were kept.
    pub body: &'a [u8],
    /// The kept body is the whole body and the message was seen to its end: only then is it
    /// judged (a cut body is not an invalid one).
    pub body_complete: bool,
    /// Whether a message of this side was seen at all (a response may be missing).
    pub seen: bool,
}

impl<'a> Side<'a> {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    /// The media type of the body, lower-case, without parameters (`application/json`).
    pub fn media_type(&self) -> Option<String> {
        let value = self.header("content-type")?;
        let media = value.split(';').next().unwrap_or_default().trim();
        (!media.is_empty()).then(|| media.to_ascii_lowercase())
    }

    /// The body as the server or client decoded it, when that is possible here: bodies with a
    /// content coding other than identity are not decoded.
    pub fn plain_body(&self) -> Option<&'a [u8]> {
        match self.header("content-encoding") {
            None => Some(self.body),
            Some(coding) if coding.trim().eq_ignore_ascii_case("identity") => Some(self.body),
            Some(_) => None,
        }
    }
}

/// A call: request line, status, both sides, and who made it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded), without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The final response status, None when no response was seen.
    pub status: Option<u16>,
    pub request: Side<'a>,
    pub response: Side<'a>,
    /// Who called, as far as the agent can tell; the inventory lists callers by it.
    pub caller: &'a Caller,
    /// How the request authenticated, judged before credentials were redacted.
    pub auth: AuthScheme,
    /// Wall-clock seconds (Unix) when the call ended.
    pub time_unix_secs: u64,
    pub latency_us: Option<u64>,
}
