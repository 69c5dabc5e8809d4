//! Any input as a capture of one HTTP/2 connection: a flags byte (bit 0: joined mid-stream, bit 1:
//! start the request direction with the client preface), then operations (see operations.rs).
//! Feeding them never panics, the parser never holds more than its limits allow, and after close
//! it holds nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::http2::{Http2Parser, PREFACE};
use protocols::{Direction, StreamParser};

mod operations;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, operations)) = data.split_first() else {
        return;
    };
    let mut parser = Http2Parser::new(operations::LIMITS, flags & 1 == 1);
    let mut calls = Vec::new();
    if flags & 2 != 0 {
        parser.data(Direction::Request, PREFACE, 1, &mut calls);
    }
    operations::replay(&mut parser, operations, 1, &mut calls, |parser| {
        assert!(parser.buffered_bytes() <= operations::http2_bound());
    });
    assert_eq!(parser.buffered_bytes(), 0);
});
