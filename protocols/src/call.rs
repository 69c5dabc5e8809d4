//! The record every parser produces: one API call, as far as the bytes tell.

use std::borrow::Cow;

/// Which way bytes flow on a connection: from the side that opened it (the client) or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server: requests.
    Request,
    /// Server to client: responses.
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http1,
    Http2,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
        }
    }
}

/// One header field as it crossed the wire. HTTP/2 names arrive lower-case; HTTP/1 names keep the
/// sender's case. Values that are not UTF-8 are kept lossily (U+FFFD), since records are text.
/// Names are borrowed when they are well known (see [`header_name`]): most fields of most
/// messages then cost one allocation, their value, rather than two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Cow<'static, str>,
    pub value: String,
}

impl Header {
    /// A field from its wire bytes.
    pub fn new(name: &[u8], value: &[u8]) -> Self {
        Self {
            name: header_name(name),
            value: text(value),
        }
    }

    /// A field whose value was decoded into a buffer of its own, which becomes its text without
    /// a copy when it is UTF-8.
    pub(crate) fn with_value(name: &[u8], value: Vec<u8>) -> Self {
        Self {
            name: header_name(name),
            value: String::from_utf8(value)
                .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()),
        }
    }
}

/// Record text of wire bytes: lossy (U+FFFD) where they are not UTF-8.
pub(crate) fn text(bytes: &[u8]) -> String {
    // `from_utf8_lossy` walks its input in chunks even when all is well; a validity check first
    // is several times faster on the ASCII that headers and paths almost always are.
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A header name as record text: a static string when it is one of the names clients, servers
/// and proxies commonly send, spelled exactly as sent (the HTTP/2 lower-case form or the usual
/// HTTP/1 capitalisation); otherwise a copy.
pub(crate) fn header_name(name: &[u8]) -> Cow<'static, str> {
    match known_header_name(name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text(name)),
    }
}

/// Lower-case and usual HTTP/1 spellings of well-known names, as one string per name per spelling.
/// The HPACK static table's names are among them, so HTTP/2 names mostly never allocate.
const KNOWN_HEADER_NAMES: [[&str; 2]; 64] = [
    ["accept", "Accept"],
    ["accept-charset", "Accept-Charset"],
    ["accept-encoding", "Accept-Encoding"],
    ["accept-language", "Accept-Language"],
    ["accept-ranges", "Accept-Ranges"],
    [
        "access-control-allow-credentials",
        "Access-Control-Allow-Credentials",
    ],
    [
        "access-control-allow-headers",
        "Access-Control-Allow-Headers",
    ],
    [
        "access-control-allow-methods",
        "Access-Control-Allow-Methods",
    ],
    ["access-control-allow-origin", "Access-Control-Allow-Origin"],
    [
        "access-control-request-method",
        "Access-Control-Request-Method",
    ],
    ["age", "Age"],
    ["allow", "Allow"],
    ["authorization", "Authorization"],
    ["cache-control", "Cache-Control"],
    ["connection", "Connection"],
    ["content-disposition", "Content-Disposition"],
    ["content-encoding", "Content-Encoding"],
    ["content-language", "Content-Language"],
    ["content-length", "Content-Length"],
    ["content-location", "Content-Location"],
    ["content-range", "Content-Range"],
    ["content-type", "Content-Type"],
    ["cookie", "Cookie"],
    ["date", "Date"],
    ["etag", "ETag"],
    ["expect", "Expect"],
    ["expires", "Expires"],
    ["forwarded", "Forwarded"],
    ["from", "From"],
    ["grpc-encoding", "Grpc-Encoding"],
    ["grpc-message", "Grpc-Message"],
    ["grpc-status", "Grpc-Status"],
    ["grpc-timeout", "Grpc-Timeout"],
    ["host", "Host"],
    ["if-match", "If-Match"],
    ["if-modified-since", "If-Modified-Since"],
    ["if-none-match", "If-None-Match"],
    ["if-range", "If-Range"],
    ["if-unmodified-since", "If-Unmodified-Since"],
    ["keep-alive", "Keep-Alive"],
    ["last-modified", "Last-Modified"],
    ["link", "Link"],
    ["location", "Location"],
    ["max-forwards", "Max-Forwards"],
    ["origin", "Origin"],
    ["proxy-authenticate", "Proxy-Authenticate"],
    ["proxy-authorization", "Proxy-Authorization"],
    ["range", "Range"],
    ["referer", "Referer"],
    ["refresh", "Refresh"],
    ["retry-after", "Retry-After"],
    ["server", "Server"],
    ["set-cookie", "Set-Cookie"],
    ["strict-transport-security", "Strict-Transport-Security"],
    ["te", "TE"],
    ["trailer", "Trailer"],
    ["transfer-encoding", "Transfer-Encoding"],
    ["upgrade", "Upgrade"],
    ["user-agent", "User-Agent"],
    ["vary", "Vary"],
    ["via", "Via"],
    ["www-authenticate", "WWW-Authenticate"],
    ["x-forwarded-for", "X-Forwarded-For"],
    ["x-request-id", "X-Request-Id"],
];

/// Slots of the well-known-name table: a power of two with room to spare, so that few names share
/// a slot and a lookup is one hash and, mostly, one comparison.
const NAME_SLOTS: usize = 256;

/// Index into `KNOWN_HEADER_NAMES` + 1 per slot (0: empty), built at compile time. Names whose
/// slot is taken probe the next ones.
const NAME_TABLE: [u8; NAME_SLOTS] = {
    let mut table = [0u8; NAME_SLOTS];
    let mut index = 0;
    while index < KNOWN_HEADER_NAMES.len() {
        let mut slot = name_slot(KNOWN_HEADER_NAMES[index][0].as_bytes());
        while table[slot] != 0 {
            slot = (slot + 1) % NAME_SLOTS;
        }
        table[slot] = index as u8 + 1;
        index += 1;
    }
    table
};

/// Hash of a name without regard to ASCII case: its length and first, middle and last bytes.
const fn name_slot(name: &[u8]) -> usize {
    let len = name.len();
    if len == 0 {
        return 0;
    }
    let first = name[0].to_ascii_lowercase() as usize;
    let middle = name[len / 2].to_ascii_lowercase() as usize;
    let last = name[len - 1].to_ascii_lowercase() as usize;
    (len.wrapping_mul(31) ^ first.wrapping_mul(7) ^ middle.wrapping_mul(13) ^ last) % NAME_SLOTS
}

fn known_header_name(name: &[u8]) -> Option<&'static str> {
    let mut slot = name_slot(name);
    // Probing ends at an empty slot; the table is never full.
    for _ in 0..NAME_SLOTS {
        let index = usize::from(*NAME_TABLE.get(slot)?);
        let [lower, usual] = KNOWN_HEADER_NAMES.get(index.checked_sub(1)?)?;
        if lower.len() == name.len() {
            if lower.as_bytes() == name {
                return Some(lower);
            }
            if usual.as_bytes() == name {
                return Some(usual);
            }
        }
        slot = (slot + 1) % NAME_SLOTS;
    }
    None
}

/// One half of a call: the request or the response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Header fields in wire order; HTTP/2 pseudo-headers (`:path`, ...) are not repeated here,
    /// they fill the call's own fields.
    pub headers: Vec<Header>,
    /// Trailer fields (HTTP/1 chunked trailers, HTTP/2 trailing HEADERS).
    pub trailers: Vec<Header>,
    /// Body bytes kept, at most `Limits::max_body_bytes`; after decoding chunked framing (HTTP/1)
    /// or DATA framing (HTTP/2). Compressed bodies stay compressed.
    pub body: Vec<u8>,
    /// Full body length, including what was not kept or was lost in a gap.
    pub body_bytes: u64,
    /// Bytes this message took on the wire: header block and body, including framing.
    pub wire_bytes: u64,
    /// Capture time (monotonic ns) of the message's first and last byte; 0 when not seen.
    pub first_byte_ns: u64,
    pub last_byte_ns: u64,
    /// The message was seen in full: its end was parsed (not cut by a close, gap or error).
    pub complete: bool,
}

/// gRPC facts, for calls whose request content-type is application/grpc[+proto|+json|...].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcCall {
    /// From `:path` `/package.Service/Method`.
    pub service: String,
    pub method: String,
    /// `grpc-status` from the trailers (or a trailers-only response); None if never seen.
    pub status: Option<u32>,
    /// `grpc-message`, percent-decoded.
    pub message: Option<String>,
    /// Length-prefixed messages counted from the 5-byte gRPC framing, per direction, and the sum
    /// of their declared lengths.
    pub request_messages: u64,
    pub response_messages: u64,
    pub request_message_bytes: u64,
    pub response_message_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallFlags {
    /// Something was cut by a bound: a body longer than kept, a header block over the limit, or a
    /// capture event that carried fewer bytes than the syscall moved.
    pub truncated: bool,
    /// The connection was first seen after it had started; what could not be known is left empty
    /// rather than guessed (e.g. an HTTP/2 header that referred to a dynamic-table entry we never
    /// saw).
    pub mid_stream: bool,
    /// Bytes of this call were lost in a capture gap.
    pub gap: bool,
}

/// One API call: a request and its response, as far as they were seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub protocol: Protocol,
    /// HTTP/2 stream id; None for HTTP/1.
    pub stream_id: Option<u32>,
    /// Request line or pseudo-headers. None when not seen (response-only mid-stream calls) or not
    /// decodable.
    pub method: Option<String>,
    /// `:authority` or the Host header.
    pub authority: Option<String>,
    /// Path without the query string.
    pub path: Option<String>,
    /// Query string without the leading `?`; None when the target has none.
    pub query: Option<String>,
    /// Final response status (1xx interim responses are not the status).
    pub status: Option<u16>,
    pub request: Message,
    pub response: Message,
    pub grpc: Option<GrpcCall>,
    pub flags: CallFlags,
}

impl Call {
    /// A call of this protocol with nothing known yet.
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            stream_id: None,
            method: None,
            authority: None,
            path: None,
            query: None,
            status: None,
            request: Message::default(),
            response: Message::default(),
            grpc: None,
            flags: CallFlags::default(),
        }
    }

    /// Time from the first request byte to the last response byte, when both were seen.
    pub fn latency_ns(&self) -> Option<u64> {
        let (start, end) = (self.request.first_byte_ns, self.response.last_byte_ns);
        (start != 0 && end >= start).then(|| end - start)
    }
}

/// Splits a request target into path and query (`/a?b=1` -> `/a`, `Some("b=1")`).
pub fn split_target(target: &str) -> (String, Option<String>) {
    match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_names_are_borrowed_in_either_spelling_and_others_copied() {
        for [lower, usual] in KNOWN_HEADER_NAMES {
            assert!(matches!(header_name(lower.as_bytes()), Cow::Borrowed(name) if name == lower));
            assert!(matches!(header_name(usual.as_bytes()), Cow::Borrowed(name) if name == usual));
            // Any other capitalisation is kept as sent.
            let odd = lower.to_ascii_uppercase();
            if odd != usual {
                assert_eq!(header_name(odd.as_bytes()), Cow::<str>::Owned(odd.clone()));
            }
        }
        for name in ["", "x", "x-custom-header", "hosts", "hos"] {
            assert_eq!(header_name(name.as_bytes()), name);
            assert!(matches!(header_name(name.as_bytes()), Cow::Owned(_)));
        }
        assert_eq!(header_name(b"ho\xffst"), "ho\u{fffd}st");
    }

    #[test]
    fn text_is_lossy_only_where_bytes_are_not_utf8() {
        assert_eq!(text(b"caf\xc3\xa9"), "café");
        assert_eq!(text(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(
            Header::with_value(b"x", b"caf\xc3\xa9".to_vec()).value,
            "café"
        );
        assert_eq!(
            Header::with_value(b"x", b"a\xffb".to_vec()).value,
            "a\u{fffd}b"
        );
    }
}
