//! OpenAPI conformance: calls checked per second on one core against the Swagger Petstore and
//! against the largest published spec in the corpus, beside the floor any check pays (parsing
//! the same JSON bodies with serde_json), and the memory one bound spec takes.
//!
//! Calls are typical: JSON bodies under 2 KiB, path parameters, a query, credentials. The
//! whole analysis (inventory, learning, conformance) is measured too, as the agent runs it.

use std::{
    hint::black_box,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use intelligence::{
    Exchange,
    analyzer::{Analyzer, AnalyzerConfig, Binding},
    auth::AuthScheme,
    exchange::Side,
    finding::Mode,
    openapi::{Source, Spec, check},
};

static CALLER: std::sync::LazyLock<intelligence::Caller> =
    std::sync::LazyLock::new(|| intelligence::Caller::peer("shop/web"));

#[derive(Debug, clap::Args)]
pub struct Options {
    /// How long each measurement runs.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Copies of each spec loaded to measure memory per bound spec.
    #[arg(long, default_value_t = 20)]
    copies: usize,
    /// The published specs (../shared/corpora/openapi from the workspace).
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
}

struct Files;

impl Source for Files {
    fn read(&mut self, document: &str) -> Result<String, String> {
        std::fs::read_to_string(document).map_err(|error| error.to_string())
    }
}

fn load(path: &Path) -> anyhow::Result<Spec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let compiled = Spec::load(&text, &path.to_string_lossy(), &mut Files)
        .with_context(|| format!("loading {}", path.display()))?;
    Ok(compiled.spec)
}

/// A call as the benchmark replays it.
struct Call {
    method: &'static str,
    path: String,
    query: Option<String>,
    request_headers: Vec<(&'static str, &'static str)>,
    request: Vec<u8>,
    status: u16,
    response: Vec<u8>,
}

impl Call {
    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            method: self.method,
            path: &self.path,
            query: self.query.as_deref(),
            status: Some(self.status),
            request: Side {
                headers: &self.request_headers,
                body: &self.request,
                body_complete: true,
                seen: true,
            },
            response: Side {
                headers: &[("Content-Type", "application/json")],
                body: &self.response,
                body_complete: true,
                seen: true,
            },
            caller: &CALLER,
            auth: AuthScheme::BearerJwt,
            time_unix_secs: 1_700_000_000,
            latency_us: Some(900),
        }
    }
}

fn pet(id: u32) -> String {
    format!(
        r#"{{"id": {id}, "name": "doggie {id}", "category": {{"id": 1, "name": "Dogs"}}, "photoUrls": ["https://example.com/photos/{id}/1.png", "https://example.com/photos/{id}/2.png"], "tags": [{{"id": 1, "name": "friendly"}}, {{"id": 2, "name": "vaccinated"}}], "status": "available"}}"#
    )
}

fn petstore_calls() -> Vec<Call> {
    let json = ("Content-Type", "application/json");
    (0..64u32)
        .flat_map(|id| {
            [
                Call {
                    method: "GET",
                    path: format!("/api/v3/pet/{id}"),
                    query: None,
                    request_headers: vec![("api_key", "[redacted]")],
                    request: Vec::new(),
                    status: 200,
                    response: pet(id).into_bytes(),
                },
                Call {
                    method: "POST",
                    path: "/api/v3/pet".to_owned(),
                    query: None,
                    request_headers: vec![json, ("Authorization", "[redacted]")],
                    request: pet(id).into_bytes(),
                    status: 200,
                    response: pet(id).into_bytes(),
                },
                Call {
                    method: "GET",
                    path: "/api/v3/pet/findByStatus".to_owned(),
                    query: Some("status=sold".to_owned()),
                    request_headers: vec![("Authorization", "[redacted]")],
                    request: Vec::new(),
                    status: 200,
                    response: format!("[{}, {}]", pet(id), pet(id + 1)).into_bytes(),
                },
            ]
        })
        .collect()
}

/// A GET of every operation of `spec` that has one, its path parameters filled with `1`.
fn generic_calls(spec: &Spec) -> Vec<Call> {
    spec.operations
        .iter()
        .filter(|operation| operation.method == "GET")
        .map(|operation| {
            let path: String = operation
                .template
                .split('/')
                .map(|segment| if segment.contains('{') { "1" } else { segment })
                .collect::<Vec<_>>()
                .join("/");
            Call {
                method: "GET",
                path,
                query: None,
                request_headers: vec![("Authorization", "[redacted]")],
                request: Vec::new(),
                status: 200,
                response: br#"{"data": {"id": "1", "name": "x"}}"#.to_vec(),
            }
        })
        .collect()
}

/// Calls per second of `work` over `calls`, round-robin, for `duration`.
fn rate(calls: &[Call], duration: Duration, mut work: impl FnMut(&Call)) -> f64 {
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < duration {
        for call in calls {
            work(call);
        }
        done += calls.len() as u64;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn parse_bodies(call: &Call) {
    for body in [&call.request, &call.response] {
        if !body.is_empty() {
            black_box(serde_json::from_slice::<serde_json::Value>(body).ok());
        }
    }
}

fn resident_bytes() -> u64 {
    crate::measure::proc_status_bytes("self", "VmRSS").unwrap_or(0)
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let corpus = options.corpus.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/openapi")
    });
    println!(
        "OpenAPI conformance, one core, {:?} per measurement",
        options.duration
    );
    println!(
        "{:<34} {:>10} {:>14} {:>14} {:>9} {:>12}",
        "spec", "operations", "parse only/s", "checked/s", "ratio", "analysed/s"
    );
    for name in [
        "petstore3.yaml",
        "openbanking-account-info.json",
        "discourse.json",
    ] {
        let path = corpus.join(name);
        let spec = std::sync::Arc::new(load(&path)?);
        let calls = if name == "petstore3.yaml" {
            petstore_calls()
        } else {
            generic_calls(&spec)
        };
        let floor = rate(&calls, options.duration, parse_bodies);
        let checked = rate(&calls, options.duration, |call| {
            black_box(check(&spec, &call.exchange()));
        });
        let mut analyzer = Analyzer::new(AnalyzerConfig::default());
        analyzer.bind(
            vec![Binding {
                service: "bench".to_owned(),
                spec: spec.clone(),
                mode: Mode::Detect,
                modes: Default::default(),
                severities: Default::default(),
                unused_after_secs: 86_400,
            }],
            0,
        );
        let analysed = rate(&calls, options.duration, |call| {
            black_box(analyzer.observe("bench", &call.exchange()));
        });
        println!(
            "{name:<34} {:>10} {floor:>14.0} {checked:>14.0} {:>8.2}x {analysed:>12.0}",
            spec.operations.len(),
            checked / floor,
        );
    }
    println!(
        "\n(ratio: calls checked per second over JSON bodies parsed per second: 1.0x means checking costs no more than parsing)"
    );

    println!(
        "\nmemory per bound spec ({} copies loaded, resident growth)",
        options.copies
    );
    for name in [
        "petstore3.yaml",
        "openbanking-account-info.json",
        "otoroshi.json",
        "discourse.json",
    ] {
        let path = corpus.join(name);
        let file_bytes = std::fs::metadata(&path).map_or(0, |metadata| metadata.len());
        let before = resident_bytes();
        let specs: Vec<Spec> = (0..options.copies)
            .map(|_| load(&path))
            .collect::<anyhow::Result<_>>()?;
        let grown = resident_bytes().saturating_sub(before);
        black_box(&specs);
        println!(
            "{name:<34} file {:>8} KiB   {:>8} KiB per spec",
            file_bytes / 1024,
            grown / options.copies.max(1) as u64 / 1024
        );
    }
    Ok(())
}
