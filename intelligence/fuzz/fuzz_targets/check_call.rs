//! The Swagger Petstore spec and any sequence of calls: each call is checked against the spec
//! and observed by an analyzer, under the service the spec is bound to or under one without a
//! spec (whose endpoints are templated from the paths), with inventory bounds small enough to
//! reach. The spec learned from each service's inventory then loads back with every operation
//! usable: the learned document is Moat's own output, so nothing in it may be broken.
#![no_main]

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use intelligence::{
    analyzer::{Analyzer, AnalyzerConfig, Binding},
    endpoints::InventoryLimits,
    finding::Mode,
    learn::{self, LearnedEndpoint},
    openapi::{self, Source, Spec},
    template::TemplateLimits,
};
use libfuzzer_sys::{
    arbitrary::{self, Arbitrary},
    fuzz_target,
};

mod calls;

/// The path the Petstore's `servers` entry puts its operations under.
const BASE: &str = "/api/v3";
const BOUND: &str = "petstore";
const UNBOUND: &str = "unbound";
const MAX_CALLS: usize = 32;

struct NoFiles;

impl Source for NoFiles {
    fn read(&mut self, document: &str) -> Result<String, String> {
        Err(format!("{document}: the spec is one file"))
    }
}

/// Read and compiled once: the spec is fixed, and loading it per input would dwarf the checks.
fn petstore() -> &'static Arc<Spec> {
    static SPEC: OnceLock<Arc<Spec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpora/openapi/petstore3.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
        let compiled = Spec::load(&text, "petstore3.yaml", &mut NoFiles)
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        Arc::new(compiled.spec)
    })
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Each call, and whether it goes to the service the spec is bound to.
    calls: Vec<(bool, calls::Call<'a>)>,
}

fuzz_target!(|input: Input<'_>| {
    let spec = petstore();
    let templates: Vec<&str> = spec
        .operations
        .iter()
        .map(|operation| operation.template.as_str())
        .collect();
    let mut analyzer = Analyzer::new(AnalyzerConfig {
        limits: InventoryLimits {
            services: 2,
            endpoints_per_service: 16,
            callers_per_endpoint: 4,
            content_types_per_endpoint: 2,
            template: TemplateLimits {
                literals_per_position: 3,
                max_nodes: 64,
                max_depth: 8,
            },
        },
        ..AnalyzerConfig::default()
    });
    analyzer.bind(
        vec![Binding {
            service: BOUND.to_owned(),
            spec: Arc::clone(spec),
            mode: Mode::Block,
            modes: HashMap::new(),
            severities: HashMap::new(),
            unused_after_secs: 60,
        }],
        0,
    );
    for (bound, call) in input.calls.iter().take(MAX_CALLS) {
        let service = if *bound { BOUND } else { UNBOUND };
        call.parts(BASE, &templates).with_exchange(|exchange| {
            let _ = openapi::check(spec, exchange);
            let _ = analyzer.observe(service, exchange);
        });
    }
    let _ = analyzer.unused(u64::MAX);
    for service in [BOUND, UNBOUND] {
        let inventory = analyzer.inventory();
        let endpoints: Vec<LearnedEndpoint<'_>> = inventory
            .endpoints()
            .filter(|(name, _, _)| *name == service)
            .map(|(_, key, stats)| LearnedEndpoint {
                method: &key.method,
                template: &key.template,
                learned: &stats.learned,
            })
            .collect();
        let document = learn::openapi(service, &endpoints);
        let text = serde_json::to_string(&document).expect("a JSON value serializes");
        let learned = Spec::load(&text, "learned.json", &mut NoFiles)
            .unwrap_or_else(|error| panic!("the learned spec does not load: {error}\n{text}"));
        assert!(
            learned.warnings.is_empty(),
            "the learned spec has broken operations: {:?}\n{text}",
            learned.warnings
        );
    }
});
