//! Any text as a policy file (and, after the first NUL, as the blocklist file it may name):
//! parsing returns a policy or an error, never panics; a policy it returns always compiles or
//! is refused for size, and its reference evaluation never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (policy_text, blocklist_text) = text.split_once('\0').unwrap_or((&text, ""));
    let blocklist = blocklist_text.to_owned();
    let read = move |_: &Path| Ok(blocklist.clone());
    if let Ok(policy) = policy::parse(policy_text, Path::new("fuzz.yaml"), &read) {
        let _ = policy::compile::compile(&policy);
        let flow = policy::evaluate::Flow {
            src: "198.18.1.10".parse().expect("literal"),
            dst: "198.18.2.10".parse().expect("literal"),
            protocol: 6,
            dst_port: Some(5432),
        };
        let _ = policy::evaluate::evaluate(&policy, &flow);
    }
});
