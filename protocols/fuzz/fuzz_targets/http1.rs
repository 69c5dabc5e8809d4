//! Any input as a capture of one HTTP/1 connection: a sequence of operations, each an operation
//! byte (bit 0: direction; bits 1-3 all clear: a gap, else data), a length byte, then for data
//! that many bytes. Feeding them never panics, the parser never holds more than its limits
//! allow, and after close it holds nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::http1::Http1Parser;
use protocols::{Direction, Limits, StreamParser};

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
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut parser = Http1Parser::new(LIMITS, first & 1 == 1);
    let mut calls = Vec::new();
    let mut time_ns = 1;
    while let [operation, len, tail @ ..] = rest {
        time_ns += 1;
        let direction = if operation & 1 == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        if operation & 0b1110 == 0 {
            // Small gaps land inside bodies and heads; huge ones past everything.
            let len = u64::from(*len) << (operation >> 4);
            parser.gap(direction, len, time_ns, &mut calls);
            rest = tail;
        } else {
            let (bytes, tail) = tail.split_at(usize::from(*len).min(tail.len()));
            parser.data(direction, bytes, time_ns, &mut calls);
            rest = tail;
        }
        // A pending hand-off holds whatever followed the 101 in the same event.
        let _ = parser.take_h2c_upgrade();
        assert!(parser.buffered_bytes() <= memory_bound());
    }
    parser.close(time_ns, &mut calls);
    assert_eq!(parser.buffered_bytes(), 0);
});
