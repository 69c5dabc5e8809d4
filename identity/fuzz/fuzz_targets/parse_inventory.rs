//! Any text as an inventory file: parsing returns an inventory or an error, never panics; an
//! inventory it returns builds an index that resolves any address.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(inventory) = identity::inventory::parse(&text, Path::new("fuzz.yaml")) {
        let index = identity::IdentityIndex::new(inventory);
        for address in ["10.0.0.1", "203.0.113.9", "fd00::1", "::ffff:10.0.0.1", "0.0.0.0"] {
            let _ = index.resolve(address.parse().expect("literal"), 0);
        }
    }
});
