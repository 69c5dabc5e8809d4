//! Threat detection: bytes of bodies and values per second on one core through the threat
//! detectors (`threats::Detector`, request and response) and the sensitive-data scanner, beside
//! two floors measured on the same calls in the same run (a byte scan, and serde_json parsing
//! the JSON bodies), and the latency detection adds to one call.
//!
//! Two sets of calls: benign JSON API calls generated from the published OpenAPI documents in
//! ../shared/corpora/openapi (request bodies from each operation's schema, responses from its
//! 2xx schema, with lists of several items), and every request of the OWASP CRS regression
//! tests in ../shared/corpora/crs-regression (payloads mostly in the path and query). The bytes
//! counted per call are the path, the query and both bodies.

use std::{
    hint::black_box,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use base64::Engine as _;
use intelligence::{Exchange, auth::AuthScheme, exchange::Side};
use serde_json::{Value, json};
use threats::behavior::{BehaviorConfig, BehaviorDetector, Call as BehaviorCall};

static CALLER: std::sync::LazyLock<intelligence::Caller> =
    std::sync::LazyLock::new(|| intelligence::Caller::peer("bench/client"));

/// The target beside which the detectors' throughput is printed.
const TARGET_MB_PER_SECOND: f64 = 200.0;
/// Benign calls generated per operation, each with different values.
const ROUNDS: usize = 2;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// How long each throughput measurement runs.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Passes over a set timed call by call for the latency percentiles.
    #[arg(long, default_value_t = 5)]
    latency_passes: usize,
    /// The corpora (../shared/corpora from the workspace).
    #[arg(long, value_name = "DIR")]
    corpora: Option<PathBuf>,
    /// Run only this part over both sets, for `--duration` each, and print its rate: a
    /// profiler attached to the run then sees that part alone.
    #[arg(long, value_enum)]
    only: Option<Part>,
}

/// One part of detection, run alone with `--only`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Part {
    /// `threats::Detector::request`.
    Request,
    /// `threats::Detector::response`.
    Response,
    /// `sensitive::Scanner::scan`.
    Sensitive,
}

/// A call as the benchmark replays it.
struct Call {
    method: String,
    path: String,
    query: Option<String>,
    request_headers: Vec<(String, String)>,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Call {
    /// The bytes the detectors are asked to read: path, query and both bodies.
    fn bytes(&self) -> usize {
        self.path.len()
            + self.query.as_ref().map_or(0, String::len)
            + self.request.len()
            + self.response.len()
    }
}

const RESPONSE_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
];

/// Every call's header fields borrowed, so that exchanges can be built before timing.
fn borrowed(calls: &[Call]) -> Vec<Vec<(&str, &str)>> {
    calls
        .iter()
        .map(|call| {
            call.request_headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect()
        })
        .collect()
}

fn exchanges<'a>(calls: &'a [Call], headers: &'a [Vec<(&'a str, &'a str)>]) -> Vec<Exchange<'a>> {
    calls
        .iter()
        .zip(headers)
        .enumerate()
        .map(|(index, (call, headers))| Exchange {
            method: &call.method,
            path: &call.path,
            query: call.query.as_deref(),
            status: Some(200),
            request: Side {
                headers,
                body: &call.request,
                body_complete: true,
                seen: true,
            },
            response: Side {
                headers: RESPONSE_HEADERS,
                body: &call.response,
                body_complete: true,
                seen: true,
            },
            caller: &CALLER,
            auth: AuthScheme::BearerJwt,
            time_unix_secs: 1_700_000_000 + index as u64 / 100,
            latency_us: Some(900),
        })
        .collect()
}

/// Calls per second of `work` over `exchanges`, round-robin, for `duration`.
fn rate(
    exchanges: &[Exchange<'_>],
    duration: Duration,
    mut work: impl FnMut(&Exchange<'_>),
) -> f64 {
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < duration {
        for exchange in exchanges {
            work(exchange);
        }
        done += exchanges.len() as u64;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// The median and 99th percentile of `work`'s time per call, in microseconds.
fn latency(
    exchanges: &[Exchange<'_>],
    passes: usize,
    mut work: impl FnMut(&Exchange<'_>),
) -> (f64, f64) {
    let mut times: Vec<Duration> = Vec::with_capacity(exchanges.len() * passes);
    for _ in 0..passes.max(1) {
        for exchange in exchanges {
            let started = Instant::now();
            work(exchange);
            times.push(started.elapsed());
        }
    }
    times.sort_unstable();
    let at = |share: f64| {
        let index = ((times.len() as f64 * share) as usize).min(times.len().saturating_sub(1));
        times
            .get(index)
            .map_or(0.0, |time| time.as_secs_f64() * 1e6)
    };
    (at(0.50), at(0.99))
}

/// The floor for any reader: every byte looked at once (counting quotes, which the compiler
/// vectorises).
fn scan(exchange: &Exchange<'_>) {
    for bytes in [
        exchange.path.as_bytes(),
        exchange.query.unwrap_or_default().as_bytes(),
        exchange.request.body,
        exchange.response.body,
    ] {
        black_box(bytes.iter().filter(|&&byte| byte == b'"').count());
    }
}

/// The floor for a reader of JSON: both bodies parsed.
fn parse(exchange: &Exchange<'_>) {
    for body in [exchange.request.body, exchange.response.body] {
        if !body.is_empty() {
            black_box(serde_json::from_slice::<Value>(body).ok());
        }
    }
}

struct Row {
    name: &'static str,
    calls: usize,
    bytes_per_call: f64,
    scan: f64,
    json: Option<f64>,
    detect: f64,
    p50: f64,
    p99: f64,
    sensitive: f64,
    /// Where detection's time goes: each side alone, MB/s of the whole call.
    request_only: f64,
    response_only: f64,
}

fn measure(
    name: &'static str,
    calls: &[Call],
    json: bool,
    options: &Options,
) -> anyhow::Result<Row> {
    let headers = borrowed(calls);
    let exchanges = exchanges(calls, &headers);
    let bytes: usize = calls.iter().map(Call::bytes).sum();
    let bytes_per_call = bytes as f64 / calls.len().max(1) as f64;
    let megabytes = |calls_per_second: f64| calls_per_second * bytes_per_call / 1e6;
    let detector = threats::Detector::new();
    let scanner = sensitive::Scanner::new(
        &sensitive::Config::default(),
        sensitive::HashKey::new([9; 32]),
    )
    .context("building the sensitive-data scanner")?;
    let detect = |exchange: &Exchange<'_>| {
        black_box(detector.request(exchange));
        black_box(detector.response(exchange));
    };
    let scan_rate = rate(&exchanges, options.duration, scan);
    let json_rate = json.then(|| rate(&exchanges, options.duration, parse));
    let detect_rate = rate(&exchanges, options.duration, detect);
    let (p50, p99) = latency(&exchanges, options.latency_passes, detect);
    let sensitive_rate = rate(&exchanges, options.duration, |exchange| {
        black_box(scanner.scan(exchange, "bench"));
    });
    let request_rate = rate(&exchanges, options.duration, |exchange| {
        black_box(detector.request(exchange));
    });
    let response_rate = rate(&exchanges, options.duration, |exchange| {
        black_box(detector.response(exchange));
    });
    Ok(Row {
        name,
        calls: calls.len(),
        bytes_per_call,
        scan: megabytes(scan_rate),
        json: json_rate.map(megabytes),
        detect: megabytes(detect_rate),
        p50,
        p99,
        sensitive: megabytes(sensitive_rate),
        request_only: megabytes(request_rate),
        response_only: megabytes(response_rate),
    })
}

/// Calls per second through the behavioral detectors, every call from one of 1000 sources,
/// with ids in its path.
fn behavior_rate(duration: Duration) -> anyhow::Result<f64> {
    let mut detector = BehaviorDetector::new(&BehaviorConfig::default(), [5; 16])?;
    let sources: Vec<String> = (0..1000)
        .map(|n| format!("10.0.{}.{}", n / 256, n % 256))
        .collect();
    let paths: Vec<String> = (0..4096)
        .map(|n| format!("/users/{}", n * 7919 % 100_000))
        .collect();
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < duration {
        for (index, path) in paths.iter().enumerate() {
            let status = if index % 17 == 0 { 404 } else { 200 };
            black_box(detector.observe(&BehaviorCall {
                source: &sources[index % sources.len()],
                service: "bench",
                method: "GET",
                template: "/users/{id}",
                path,
                query: Some("fields=name,email&expand=orders"),
                object_ids: &[],
                status: Some(status),
                account: None,
                time_unix_secs: 1_700_000_000 + done / 10_000,
            }));
            done += 1;
        }
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// MB/s of `part` alone on each set.
fn measure_part(part: Part, sets: &[(&str, &[Call])], options: &Options) -> anyhow::Result<()> {
    let detector = threats::Detector::new();
    let scanner = sensitive::Scanner::new(
        &sensitive::Config::default(),
        sensitive::HashKey::new([9; 32]),
    )
    .context("building the sensitive-data scanner")?;
    for (name, calls) in sets {
        let headers = borrowed(calls);
        let exchanges = exchanges(calls, &headers);
        let calls_per_second = rate(&exchanges, options.duration, |exchange| match part {
            Part::Request => drop(black_box(detector.request(exchange))),
            Part::Response => drop(black_box(detector.response(exchange))),
            Part::Sensitive => drop(black_box(scanner.scan(exchange, "bench"))),
        });
        let bytes: usize = calls.iter().map(Call::bytes).sum();
        println!(
            "{name}: {part:?} alone {:.1} MB/s",
            calls_per_second * bytes as f64 / calls.len().max(1) as f64 / 1e6
        );
    }
    Ok(())
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let corpora = options
        .corpora
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora"));
    let benign = benign_calls(&corpora.join("openapi"))?;
    let attacks = crs_calls(&corpora.join("crs-regression"))?;
    if let Some(part) = options.only {
        return measure_part(
            part,
            &[
                ("benign JSON API calls", &benign),
                ("CRS attack requests", &attacks),
            ],
            options,
        );
    }
    println!(
        "Threat detection, one core, {:?} per measurement; MB/s of paths, queries and bodies (1 MB = 10^6 bytes)",
        options.duration
    );
    println!(
        "{:<22} {:>6} {:>10} {:>10} {:>10} {:>11} {:>8} {:>9} {:>8} {:>8} {:>13}",
        "set",
        "calls",
        "bytes/call",
        "scan MB/s",
        "json MB/s",
        "detect MB/s",
        "vs json",
        "vs scan",
        "p50 us",
        "p99 us",
        "sensitive MB/s"
    );
    let rows = [
        measure("benign JSON API calls", &benign, true, options)?,
        measure("CRS attack requests", &attacks, false, options)?,
    ];
    for row in &rows {
        println!(
            "{:<22} {:>6} {:>10.0} {:>10.0} {:>10} {:>11.1} {:>8} {:>8.3}x {:>8.1} {:>8.1} {:>13.1}",
            row.name,
            row.calls,
            row.bytes_per_call,
            row.scan,
            row.json.map_or("-".to_owned(), |json| format!("{json:.0}")),
            row.detect,
            row.json
                .map_or("-".to_owned(), |json| format!("{:.2}x", row.detect / json)),
            row.detect / row.scan,
            row.p50,
            row.p99,
            row.sensitive,
        );
    }
    println!();
    for row in &rows {
        println!(
            "{}: request detection alone {:.1} MB/s, response detection alone {:.1} MB/s",
            row.name, row.request_only, row.response_only
        );
    }
    println!();
    for row in &rows {
        let verdict = if row.detect >= TARGET_MB_PER_SECOND {
            "met"
        } else {
            "not met"
        };
        println!(
            "{}: {:.1} MB/s through the threat detectors against a target of {TARGET_MB_PER_SECOND:.0} MB/s per core: {verdict}",
            row.name, row.detect
        );
    }
    let behavior = behavior_rate(options.duration)?;
    println!(
        "behavioral detectors (1000 sources, ids in every path): {:.0} calls/s, {:.0} ns per call",
        behavior,
        1e9 / behavior
    );
    println!(
        "\n(vs json: detection's throughput over parsing the same JSON bodies; vs scan: over looking at every byte once. Latency is request and response detection of one call.)"
    );
    Ok(())
}

/// Every request of the CRS regression tests that has one (stages may give the request raw
/// and base64-encoded, or as method, URI, headers and data).
fn crs_calls(folder: &Path) -> anyhow::Result<Vec<Call>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for family in
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?
    {
        let family = family?.path();
        if family.is_dir() {
            for file in std::fs::read_dir(&family)? {
                let file = file?.path();
                if file
                    .extension()
                    .is_some_and(|extension| extension == "yaml")
                {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    let mut calls = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let document: Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        for test in document["tests"].as_array().into_iter().flatten() {
            for stage in test["stages"].as_array().into_iter().flatten() {
                calls.extend(crs_call(&stage["input"]));
            }
        }
    }
    anyhow::ensure!(!calls.is_empty(), "no requests in {}", folder.display());
    Ok(calls)
}

fn crs_call(input: &Value) -> Option<Call> {
    let error = br#"{"error": "not found", "status": 404}"#.to_vec();
    if let Some(encoded) = input["encoded_request"].as_str() {
        let compact: String = encoded.split_whitespace().collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next()?.split(' ');
        let method = request_line.next()?.to_owned();
        let uri = request_line.next().unwrap_or("/");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        return Some(call(method, uri, headers, body.as_bytes().to_vec(), error));
    }
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let headers = input["headers"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(name, value)| (name.clone(), text(value)))
                .collect()
        })
        .unwrap_or_default();
    let body = match &input["data"] {
        Value::Array(lines) => lines.iter().map(text).collect::<Vec<_>>().join("\r\n"),
        other => text(other),
    };
    Some(call(
        input["method"].as_str().unwrap_or("GET").to_owned(),
        input["uri"].as_str().unwrap_or("/"),
        headers,
        body.into_bytes(),
        error,
    ))
}

fn call(
    method: String,
    uri: &str,
    request_headers: Vec<(String, String)>,
    request: Vec<u8>,
    response: Vec<u8>,
) -> Call {
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (uri.to_owned(), None),
    };
    Call {
        method,
        path,
        query,
        request_headers,
        request,
        response,
    }
}

/// Benign text that naive filters flag (as `cargo xtask eval detect` generates it).
const TEXT: &[&str] = &[
    "Seán O'Brien",
    "D'Angelo & Sons, Ltd.",
    "12 O'Connell St; Apt #4, Dublin 1",
    "Please select a plan from the options below, then press Continue.",
    "The config lives in ../config/app.yaml; edit it and restart.",
    "See https://docs.example.org/guide?section=auth&lang=en for details.",
    "Price: $12.50 (incl. 20% VAT) - 3 for 2 offer",
    "She said \"it's done\" and logged off at 5 o'clock.",
    "Where's my order? It was due on 2024-03-01.",
    "Meeting at 10:00 & lunch after; bring the /docs folder",
];

/// A request and a response for every operation of the OpenAPI documents in `folder`, per
/// round, with values sampled from their schemas.
fn benign_calls(folder: &Path) -> anyhow::Result<Vec<Call>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json" || extension == "yaml")
        })
        .collect();
    files.sort();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut calls = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let spec: Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        for (template, item) in spec["paths"].as_object().into_iter().flatten() {
            for method in ["get", "post", "put", "patch", "delete"] {
                let operation = &item[method];
                if operation.is_null() {
                    continue;
                }
                for _ in 0..ROUNDS {
                    calls.push(benign_call(&spec, template, method, operation, &mut seed));
                }
            }
        }
    }
    anyhow::ensure!(!calls.is_empty(), "no operations in {}", folder.display());
    Ok(calls)
}

fn benign_call(
    spec: &Value,
    template: &str,
    method: &str,
    operation: &Value,
    seed: &mut u64,
) -> Call {
    let path = template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                (next(seed) % 100_000).to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let mut headers = vec![
        ("Host".to_owned(), "api.example.com".to_owned()),
        ("User-Agent".to_owned(), "okhttp/4.12.0".to_owned()),
        ("Accept".to_owned(), "application/json".to_owned()),
    ];
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    let request = if schema.is_null() || method == "get" {
        Vec::new()
    } else {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        sample(spec, schema, "body", seed, 0)
            .to_string()
            .into_bytes()
    };
    let responses = operation["responses"].as_object();
    let schema = responses
        .into_iter()
        .flatten()
        .find(|(status, _)| status.starts_with('2'))
        .map(|(_, response)| &resolve(spec, response)["content"]["application/json"]["schema"])
        .filter(|schema| !schema.is_null());
    let response = match schema {
        Some(schema) => sample(spec, schema, "body", seed, 0),
        None => json!({"ok": true}),
    };
    Call {
        method: method.to_ascii_uppercase(),
        path,
        query: Some(format!("limit=20&offset={}", next(seed) % 200)),
        request_headers: headers,
        request,
        response: response.to_string().into_bytes(),
    }
}

fn next(seed: &mut u64) -> usize {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 16) as usize
}

fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"]
        .as_str()
        .and_then(|reference| reference.strip_prefix('#'))
    {
        Some(pointer) => spec.pointer(pointer).unwrap_or(value),
        None => value,
    }
}

/// A value for `schema`, named `name`, realistic for what such a field holds; lists hold a
/// page of items, as API responses do.
fn sample(spec: &Value, schema: &Value, name: &str, seed: &mut u64, depth: usize) -> Value {
    let schema = resolve(spec, schema);
    if depth > 5 {
        return Value::Null;
    }
    if let Some(options) = schema["enum"]
        .as_array()
        .filter(|options| !options.is_empty())
    {
        return options[next(seed) % options.len()].clone();
    }
    if let Some(first) = ["allOf", "oneOf", "anyOf"]
        .iter()
        .find_map(|key| schema[*key].as_array().and_then(|all| all.first()))
    {
        return sample(spec, first, name, seed, depth + 1);
    }
    let kind = schema["type"]
        .as_str()
        .unwrap_or(if schema["properties"].is_object() {
            "object"
        } else {
            "string"
        });
    let lower = name.to_ascii_lowercase();
    match kind {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .take(16)
                .map(|(key, property)| (key.clone(), sample(spec, property, key, seed, depth + 1)))
                .collect(),
        ),
        "array" => Value::Array(
            (0..2 + next(seed) % (8 / (depth + 1)).max(1))
                .map(|_| sample(spec, &schema["items"], name, seed, depth + 1))
                .collect(),
        ),
        "integer" => json!(next(seed) % 5000),
        "number" => json!((next(seed) % 100_000) as f64 / 100.0),
        "boolean" => json!(next(seed).is_multiple_of(2)),
        _ if lower.contains("email") => json!(format!("user{}@example.com", next(seed) % 1000)),
        _ if lower.contains("url") || lower.contains("link") => json!(format!(
            "https://www.example.com/resources/{}?ref=api",
            next(seed) % 1000
        )),
        _ if lower.contains("date") || lower.contains("time") => json!("2024-05-17T09:30:00Z"),
        _ if lower.ends_with("id") || schema["format"] == "uuid" => json!(format!(
            "{:08x}-4b1d-4e5f-9a2b-{:012x}",
            next(seed) % 0xffff_ffff,
            next(seed) % 0xffff_ffff_ffff
        )),
        _ => json!(TEXT[next(seed) % TEXT.len()]),
    }
}
