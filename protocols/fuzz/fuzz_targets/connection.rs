//! Any input as a capture of one connection of unknown protocol: a flags byte (bit 0: joined
//! mid-stream), then operations (see operations.rs). Detection, the h2c hand-off and both
//! parsers behind it never panic and never hold more than their limits allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::{StreamParser, connection::ConnectionParser};

mod operations;

/// Whichever parser runs, bounded as the http1 and http2_frames targets check, plus what
/// detection holds (a detection window per direction, or the buffer bound).
fn memory_bound() -> usize {
    let detection = 2 * 4096 + 2 * 255;
    operations::http1_bound()
        .max(operations::http2_bound())
        .max(detection)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, operations)) = data.split_first() else {
        return;
    };
    let mut parser = ConnectionParser::new(operations::LIMITS, flags & 1 == 1);
    let mut calls = Vec::new();
    operations::replay(&mut parser, operations, 1, &mut calls, |parser| {
        assert!(parser.buffered_bytes() <= memory_bound());
    });
});
