//! The record every parser produces: one API call, as far as the bytes tell.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
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
