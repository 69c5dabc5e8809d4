//! Any input as a capture of one HTTP/1 connection: a flags byte (bit 0: joined mid-stream), then
//! operations (see operations.rs). Feeding them never panics, the parser never holds more than
//! its limits allow, and after close it holds nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::http1::Http1Parser;
use protocols::{Limits, StreamParser};

mod operations;

/// Small enough that fuzz inputs reach every bound.
const LIMITS: Limits = Limits {
    max_buffered_bytes: 512,
    max_body_bytes: 64,
    max_headers: 16,
    max_header_list_bytes: 4096,
    max_hpack_table_bytes: 4096,
    max_streams: 16,
    max_pending_calls: 4,
};

/// Three buffers (two heads or chunk lines, bytes held during an upgrade) and every open call
/// (waiting, answered, overflowed, handed over) with both messages' fields (lossy UTF-8 may
/// triple a head), trailers and kept body.
fn memory_bound() -> usize {
    let per_message = 2 * 3 * LIMITS.max_buffered_bytes + LIMITS.max_body_bytes;
    3 * LIMITS.max_buffered_bytes + (LIMITS.max_pending_calls + 3) * 2 * per_message
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, operations)) = data.split_first() else {
        return;
    };
    let mut parser = Http1Parser::new(LIMITS, first & 1 == 1);
    let mut calls = Vec::new();
    operations::replay(&mut parser, operations, 1, &mut calls, |parser| {
        // A pending hand-off holds whatever followed the 101 in the same event.
        let _ = parser.take_h2c_upgrade();
        assert!(parser.buffered_bytes() <= memory_bound());
    });
    assert_eq!(parser.buffered_bytes(), 0);
});
