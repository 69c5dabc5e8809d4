//! Any response through `Detector::response`: no panic, at most the body's three leak checks,
//! the two header checks and one internal address per header, with masked evidence.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use threats::Detector;

mod calls;

/// Compiled once: building the automata per input would dwarf the detection.
fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(Detector::new)
}

fuzz_target!(|call: calls::Call<'_>| {
    call.with_exchange(|exchange| {
        let threats = detector().response(exchange);
        let headers = exchange.response.headers.len();
        assert!(threats.len() <= 5 + headers, "{} threats", threats.len());
        for threat in &threats {
            // The missing-headers finding lists header names, not a masked value.
            if threat.rule != "headers.security_headers" {
                assert!(
                    threat.evidence.len() <= 128,
                    "evidence {:?}",
                    threat.evidence
                );
            }
        }
    });
});
