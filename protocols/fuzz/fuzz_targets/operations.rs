//! The input format every stream-parser target shares: operations, each an operation byte
//! (bit 0: direction; bits 1-3 all clear: a gap, else data), a length byte, then for data that
//! many bytes.

use protocols::{Call, Direction, Limits, StreamParser};

/// Small enough that fuzz inputs reach every bound.
pub const LIMITS: Limits = Limits {
    max_buffered_bytes: 512,
    max_body_bytes: 64,
    max_headers: 16,
    max_header_list_bytes: 1024,
    max_hpack_table_bytes: 1024,
    max_streams: 8,
    max_pending_calls: 4,
};

/// What the HTTP/1 parser may hold: three buffers (two heads or chunk lines, bytes held during
/// an upgrade) and every open call (waiting, answered, overflowed, handed over) with both
/// messages' fields (lossy UTF-8 may triple a head), trailers and kept body.
#[allow(dead_code)] // Not every target uses every bound.
pub fn http1_bound() -> usize {
    let per_message = 2 * 3 * LIMITS.max_buffered_bytes + LIMITS.max_body_bytes;
    3 * LIMITS.max_buffered_bytes + (LIMITS.max_pending_calls + 3) * 2 * per_message
}

/// What the HTTP/2 parser may hold: per direction a frame buffer and a header block (each at
/// most `max_buffered_bytes`) and an HPACK table; per tracked stream two messages with a kept
/// body and header fields (headers and trailers each at most one header list, which lossy UTF-8
/// may triple).
#[allow(dead_code)] // Not every target uses every bound.
pub fn http2_bound() -> usize {
    let per_direction = 2 * LIMITS.max_buffered_bytes + LIMITS.max_hpack_table_bytes;
    let per_message = LIMITS.max_body_bytes + 2 * 3 * LIMITS.max_header_list_bytes;
    2 * per_direction + LIMITS.max_streams * 2 * per_message
}

/// Replays `operations` into `parser` (from capture time `time_ns` on), calling `check` after
/// each, then closes it. Returns the capture time after the last operation.
pub fn replay<P: StreamParser>(
    parser: &mut P,
    mut operations: &[u8],
    mut time_ns: u64,
    calls: &mut Vec<Call>,
    mut check: impl FnMut(&mut P),
) {
    while let [operation, len, tail @ ..] = operations {
        time_ns += 1;
        let direction = if operation & 1 == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        if operation & 0b1110 == 0 {
            // Small gaps land inside bodies and heads; huge ones past everything.
            let len = u64::from(*len) << (operation >> 4);
            parser.gap(direction, len, time_ns, calls);
            operations = tail;
        } else {
            let (bytes, tail) = tail.split_at(usize::from(*len).min(tail.len()));
            parser.data(direction, bytes, time_ns, calls);
            operations = tail;
        }
        check(parser);
    }
    parser.close(time_ns, calls);
}
