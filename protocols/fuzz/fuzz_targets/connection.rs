//! Any input as a capture of one connection of unknown protocol: a flags byte (bit 0: joined
//! mid-stream), then operations (see operations.rs). Detection, the h2c hand-off and both
//! parsers behind it never panic and never hold more than their limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::{Limits, StreamParser, connection::ConnectionParser};

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

/// Whichever parser runs, bounded as the http1 and http2_frames targets check, plus what
/// detection holds (a detection window per direction, or the buffer bound).
fn memory_bound() -> usize {
    let http1 = {
        let per_message = 2 * 3 * LIMITS.max_buffered_bytes + LIMITS.max_body_bytes;
        3 * LIMITS.max_buffered_bytes + (LIMITS.max_pending_calls + 3) * 2 * per_message
    };
    let http2 = {
        let per_direction = 2 * LIMITS.max_buffered_bytes + LIMITS.max_hpack_table_bytes;
        let per_message = LIMITS.max_body_bytes + 2 * 3 * LIMITS.max_header_list_bytes;
        2 * per_direction + LIMITS.max_streams * 2 * per_message
    };
    let detection = 2 * 4096 + 2 * 255;
    http1.max(http2).max(detection)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, operations)) = data.split_first() else {
        return;
    };
    let mut parser = ConnectionParser::new(LIMITS, flags & 1 == 1);
    let mut calls = Vec::new();
    operations::replay(&mut parser, operations, 1, &mut calls, |parser| {
        assert!(parser.buffered_bytes() <= memory_bound());
    });
});
