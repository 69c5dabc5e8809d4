//! Any sequence of calls through `threats::behavior`, with bounds small enough to reach: no
//! panic, at most one finding per kind and call, sources and items within their bounds after
//! every call, and findings only of the behavioral kinds.
#![no_main]

use libfuzzer_sys::{
    arbitrary::{self, Arbitrary},
    fuzz_target,
};
use threats::ThreatKind;
use threats::behavior::{
    BehaviorConfig, BehaviorDetector, BolaConfig, Call, CredentialStuffingConfig, ReconConfig,
};

const MAX_CALLS: usize = 512;

#[derive(Arbitrary, Debug)]
struct Step<'a> {
    source: u8,
    method: &'a str,
    template: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    object_ids: Vec<&'a str>,
    status: Option<u16>,
    account: Option<&'a str>,
    /// Seconds after the previous call; large values jump past every window.
    elapsed: u16,
}

fuzz_target!(|steps: Vec<Step<'_>>| {
    let config = BehaviorConfig {
        max_sources: 4,
        rearm_after_quiet_secs: 30,
        recon: ReconConfig {
            window_secs: 20,
            missed_paths: 4,
            parameter_names: 6,
        },
        bola: BolaConfig {
            window_secs: 20,
            distinct_ids: 5,
            consecutive_ids: 3,
            endpoints_per_source: 2,
        },
        credential_stuffing: CredentialStuffingConfig {
            window_secs: 20,
            failed_accounts: 3,
            failures_per_account: 4,
        },
    };
    let mut detector = BehaviorDetector::new(&config, [3; 16]).expect("the config is valid");
    let bound = config.max_sources * config.max_items_per_source();
    let mut time = 1_700_000_000u64;
    for step in steps.iter().take(MAX_CALLS) {
        time += u64::from(step.elapsed);
        let source = format!("source-{}", step.source % 6);
        let found = detector.observe(&Call {
            source: &source,
            service: "fuzz",
            method: step.method,
            template: step.template,
            path: step.path,
            query: step.query,
            object_ids: &step.object_ids,
            status: step.status,
            account: step.account,
            time_unix_secs: time,
        });
        assert!(found.len() <= 3);
        for threat in &found {
            assert!(matches!(
                threat.kind,
                ThreatKind::Recon | ThreatKind::BolaEnumeration | ThreatKind::CredentialStuffing
            ));
        }
        let stats = detector.stats();
        assert!(stats.sources <= config.max_sources);
        assert!(stats.items <= bound, "{} items", stats.items);
    }
});
