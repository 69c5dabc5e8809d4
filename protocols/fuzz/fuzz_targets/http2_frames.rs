//! Any input as a capture of one HTTP/2 connection: a flags byte (bit 0: joined mid-stream, bit 1:
//! start the request direction with the client preface), then operations, each an operation byte
//! (bit 0: direction; bits 1-3 all clear: a gap, else data), a length byte, then for data that
//! many bytes. Feeding them never panics, the parser never holds more than its limits allow, and
//! after close it holds nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::http2::{Http2Parser, PREFACE};
use protocols::{Direction, Limits, StreamParser};

/// Small enough that fuzz inputs reach every bound.
const LIMITS: Limits = Limits {
    max_buffered_bytes: 512,
    max_body_bytes: 64,
    max_headers: 16,
    max_header_list_bytes: 1024,
    max_hpack_table_bytes: 1024,
    max_streams: 8,
    max_pending_calls: 4,
};

/// Per direction a frame buffer and a header block (each at most `max_buffered_bytes`) and an
/// HPACK table; per tracked stream two messages with a kept body and header fields (headers and
/// trailers each at most one header list, which lossy UTF-8 may triple).
fn memory_bound() -> usize {
    let per_direction = 2 * LIMITS.max_buffered_bytes + LIMITS.max_hpack_table_bytes;
    let per_message = LIMITS.max_body_bytes + 2 * 3 * LIMITS.max_header_list_bytes;
    2 * per_direction + LIMITS.max_streams * 2 * per_message
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut parser = Http2Parser::new(LIMITS, flags & 1 == 1);
    let mut calls = Vec::new();
    let mut time_ns = 1;
    if flags & 2 != 0 {
        parser.data(Direction::Request, PREFACE, time_ns, &mut calls);
    }
    while let [operation, len, tail @ ..] = rest {
        time_ns += 1;
        let direction = if operation & 1 == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        if operation & 0b1110 == 0 {
            // Small gaps land inside DATA payloads; huge ones past everything.
            let len = u64::from(*len) << (operation >> 4);
            parser.gap(direction, len, time_ns, &mut calls);
            rest = tail;
        } else {
            let (bytes, tail) = tail.split_at(usize::from(*len).min(tail.len()));
            parser.data(direction, bytes, time_ns, &mut calls);
            rest = tail;
        }
        assert!(parser.buffered_bytes() <= memory_bound());
    }
    parser.close(time_ns, &mut calls);
    assert_eq!(parser.buffered_bytes(), 0);
});
