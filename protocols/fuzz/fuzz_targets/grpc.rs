//! Any input as one direction of a gRPC body, cut into pieces: operations of a length byte
//! (bit 7 set: a gap of the low bits' length) then for data that many bytes. Counting never
//! panics, and without gaps the counts do not depend on where the body was cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::grpc::{self, MessageCounter};

fuzz_target!(|data: &[u8]| {
    let mut pieces = MessageCounter::default();
    let mut whole_body = Vec::new();
    let mut gaps = false;
    let mut rest = data;
    while let [len, tail @ ..] = rest {
        if len & 0x80 != 0 {
            pieces.skip(u64::from(len & 0x7f));
            gaps = true;
            rest = tail;
            continue;
        }
        let (bytes, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        pieces.feed(bytes);
        whole_body.extend_from_slice(bytes);
        rest = tail;
    }
    if !gaps {
        let mut whole = MessageCounter::default();
        whole.feed(&whole_body);
        assert_eq!(whole, pieces);
    }
    // The text helpers take any string.
    let text = String::from_utf8_lossy(data);
    let _ = grpc::percent_decode(&text);
    let _ = grpc::service_and_method(&text);
    let _ = grpc::parse_status(&text);
});
