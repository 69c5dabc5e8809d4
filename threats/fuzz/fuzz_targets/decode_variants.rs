//! Any value through `threats::decode::variants`: at most 9 distinct lower-cased variants,
//! each at most three times the length of the value as cut to `MAX_VALUE_BYTES`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use threats::decode;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let capped = decode::truncate(&value).len();
    let variants = decode::variants(&value);
    assert!(
        !variants.is_empty() && variants.len() <= 9,
        "{} variants",
        variants.len()
    );
    for (index, variant) in variants.iter().enumerate() {
        assert!(
            variant.len() <= 3 * capped,
            "variant {index}: {capped} bytes in, {} out",
            variant.len()
        );
        assert!(
            variants[..index].iter().all(|other| other != variant),
            "variant {index} repeats an earlier one"
        );
    }
});
