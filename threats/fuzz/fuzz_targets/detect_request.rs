//! Any request through `Detector::request`: no panic, at most one finding per detector and
//! value (256 values, 7 value detectors) plus the scanner's two per header, and evidence that
//! stays a masked glimpse whatever the value's size.
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
        let threats = detector().request(exchange);
        let headers = exchange.request.headers.len();
        assert!(
            threats.len() <= 256 * 7 + 2 * headers,
            "{} threats",
            threats.len()
        );
        for threat in &threats {
            assert!(
                threat.evidence.len() <= 128,
                "evidence {:?}",
                threat.evidence
            );
        }
    });
});
