//! Any text as a CIDR: parsed or refused with a reason, never a panic, and what parses prints
//! back to text that parses to the same network.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(network) = policy::parse_cidr(&text) {
        assert_eq!(policy::parse_cidr(&network.to_string()), Ok(network));
    }
});
