//! API protocol parsers for captured socket streams.
//!
//! The agent hands each connection's bytes to a parser, one direction at a time, in stream order,
//! with gaps marked. A parser turns them into [`call::Call`] records. Parsers are pure: they never
//! do I/O, never panic on any input, and never hold more memory than their [`Limits`] allow.

pub mod call;
pub mod connection;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod tls;

pub use call::{Call, CallFlags, Direction, GrpcCall, Header, Message, Protocol};

/// Bounds every parser honours. What a bound cuts off is flagged on the call (`truncated`), never
/// silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes a parser buffers per direction while waiting for the rest of a header block or
    /// frame. A header block longer than this is a parse error for that connection.
    pub max_buffered_bytes: usize,
    /// Most body bytes kept in memory per message (for the analysis later stages do). Longer
    /// bodies are counted in full and kept up to this many bytes.
    pub max_body_bytes: usize,
    /// Most header fields kept per message.
    pub max_headers: usize,
    /// HTTP/2: most bytes a decoded header list may take (name + value + 32 per field, as
    /// SETTINGS_MAX_HEADER_LIST_SIZE counts), and the largest HPACK dynamic table accepted.
    pub max_header_list_bytes: usize,
    pub max_hpack_table_bytes: usize,
    /// HTTP/2: most concurrent open streams tracked per connection.
    pub max_streams: usize,
    /// Most calls waiting for their response per connection (HTTP/1 pipelining).
    pub max_pending_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_buffered_bytes: 64 * 1024,
            max_body_bytes: 64 * 1024,
            max_headers: 128,
            max_header_list_bytes: 64 * 1024,
            max_hpack_table_bytes: 64 * 1024,
            max_streams: 256,
            max_pending_calls: 64,
        }
    }
}

/// What every protocol parser does with one connection's bytes.
///
/// The caller feeds each direction's bytes in stream order; the two directions are independent
/// streams, interleaved as the capture saw them. Calls are appended to `calls` as soon as they
/// complete (a response's last byte was parsed), so a long-lived connection yields records as it
/// goes.
pub trait StreamParser {
    /// `bytes` follow, in `direction`, everything fed before; `time_ns` is when they were
    /// captured (monotonic).
    fn data(&mut self, direction: Direction, bytes: &[u8], time_ns: u64, calls: &mut Vec<Call>);
    /// `len` bytes in `direction` were lost (capture truncation or ring-buffer loss). The parser
    /// skips them if it knows what they were (inside a body of known length) and otherwise
    /// resynchronises at the next recognisable message start; calls that lost bytes are flagged.
    fn gap(&mut self, direction: Direction, len: u64, time_ns: u64, calls: &mut Vec<Call>);
    /// The connection ended: calls still open are emitted with what was seen (incomplete).
    fn close(&mut self, time_ns: u64, calls: &mut Vec<Call>);
    /// Bytes currently held (buffers, bodies of open calls, HPACK tables): what the agent's
    /// memory accounting sees. Never more than the [`Limits`] imply.
    fn buffered_bytes(&self) -> usize;
}
