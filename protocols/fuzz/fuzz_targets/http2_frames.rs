//! Any input as a capture of one HTTP/2 connection: a flags byte (bit 0: joined mid-stream, bit 1:
//! start the request direction with the client preface), then operations (see operations.rs).
//! Feeding them never panics, the parser never holds more than its limits allow, and after close
//! it holds nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::http2::{Http2Parser, PREFACE};
use protocols::{Direction, Limits, StreamParser};

mod operations;

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
    let Some((&flags, operations)) = data.split_first() else {
        return;
    };
    let mut parser = Http2Parser::new(LIMITS, flags & 1 == 1);
    let mut calls = Vec::new();
    if flags & 2 != 0 {
        parser.data(Direction::Request, PREFACE, 1, &mut calls);
    }
    operations::replay(&mut parser, operations, 1, &mut calls, |parser| {
        assert!(parser.buffered_bytes() <= memory_bound());
    });
    assert_eq!(parser.buffered_bytes(), 0);
});
