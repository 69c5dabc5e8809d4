//! A selector byte, then a value: one decoding layer of `threats::decode` over it. No layer
//! panics, and none makes its output longer than three times its input (the bound the module
//! promises, which keeps a call's cost proportional to what it carries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use threats::decode;

fuzz_target!(|data: &[u8]| {
    let [selector, value @ ..] = data else {
        return;
    };
    let value = String::from_utf8_lossy(value);
    let value = value.as_ref();
    let output = match selector % 7 {
        0 => decode::percent_decode(value, true),
        1 => decode::percent_decode(value, false),
        2 => decode::html_entities(value),
        3 => decode::backslash_escapes(value),
        4 => decode::sql_fold(value),
        5 => decode::decode_once(value),
        _ => decode::base64_payload(value).unwrap_or_default(),
    };
    assert!(
        output.len() <= 3 * value.len(),
        "layer {}: {} bytes in, {} out",
        selector % 7,
        value.len(),
        output.len()
    );
});
