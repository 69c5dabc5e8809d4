//! Any input as a capture of one HTTP/1 connection: a flags byte (bit 0: joined mid-stream), then
//! operations (see operations.rs). Feeding them never panics, the parser never holds more than
//! its limits allow, and after close it holds nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::http1::Http1Parser;
use protocols::StreamParser;

mod operations;

fuzz_target!(|data: &[u8]| {
    let Some((&first, operations)) = data.split_first() else {
        return;
    };
    let mut parser = Http1Parser::new(operations::LIMITS, first & 1 == 1);
    let mut calls = Vec::new();
    operations::replay(&mut parser, operations, 1, &mut calls, |parser| {
        // A pending hand-off holds whatever followed the 101 in the same event.
        let _ = parser.take_h2c_upgrade();
        assert!(parser.buffered_bytes() <= operations::http1_bound());
    });
    assert_eq!(parser.buffered_bytes(), 0);
});
