//! `cargo xtask eval detect`: Moat's detectors against the OWASP CRS regression attacks and a
//! benign set generated from real OpenAPI documents, beside ModSecurity with the Core Rule Set
//! (paranoia level 1, blocking) judging the same requests through nginx on loopback.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use intelligence::Exchange;
use intelligence::auth::AuthScheme;
use intelligence::exchange::Side;
use serde_json::{Value, json};
use threats::{Detector, ThreatKind};

use crate::shell;

/// One labelled case: a request, and for response cases the body the server answers with.
struct Case {
    /// The class the case is labelled with; `benign` for the generated set.
    class: &'static str,
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Set for response cases: what the backend reflects.
    response_body: Option<String>,
}

/// Which Moat kinds count as detecting a class.
fn kinds_of(class: &str) -> &'static [ThreatKind] {
    match class {
        "sqli" => &[ThreatKind::Sqli],
        "xss" => &[ThreatKind::Xss],
        "path_traversal" => &[ThreatKind::PathTraversal],
        "command_injection" => &[ThreatKind::CommandInjection],
        "ssrf" => &[ThreatKind::Ssrf],
        "jndi" => &[ThreatKind::Jndi],
        "scanner" => &[ThreatKind::Scanner],
        "leak" => &[
            ThreatKind::StackTrace,
            ThreatKind::DebugPage,
            ThreatKind::InternalAddress,
        ],
        _ => &ThreatKind::ALL,
    }
}

/// The class of a CRS rule id; None for rule families outside Moat's kinds (protocol
/// enforcement, session fixation, web shells, ...).
fn class_of(rule: u64) -> Option<&'static str> {
    Some(match rule / 1000 {
        913 => "scanner",
        930 => "path_traversal",
        931 => "ssrf",
        // PHP injection counts as command injection: both run code on the server.
        932 | 933 => "command_injection",
        934 if matches!(rule, 934110 | 934120) => "ssrf",
        // Node.js, Perl, Ruby injection, prototype pollution, SSTI.
        934 => "other",
        941 => "xss",
        942 => "sqli",
        944 => "jndi",
        951..=954 | 956 => "leak",
        _ => return None,
    })
}

pub fn detect() -> anyhow::Result<()> {
    let root = shell::workspace_root();
    let corpora = root.join("../shared/corpora");
    let mut cases = crs_cases(&corpora.join("crs-regression"))?;
    let attacks = cases.len();
    cases.extend(benign_cases(&corpora.join("openapi"))?);
    eprintln!(
        "eval: {attacks} attack stages from the CRS regression tests, {} benign cases generated",
        cases.len() - attacks
    );

    let detector = Detector::new();
    let moat: Vec<Vec<ThreatKind>> = cases.iter().map(|case| judge(&detector, case)).collect();
    let crs = match modsecurity(&cases) {
        Ok(verdicts) => Some(verdicts),
        Err(error) => {
            println!("ModSecurity baseline not run: {error:#}");
            None
        }
    };
    report(&cases, &moat, crs.as_deref());
    Ok(())
}

fn judge(detector: &Detector, case: &Case) -> Vec<ThreatKind> {
    let headers: Vec<(&str, &str)> = case
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let (path, query) = match case.uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (case.uri.as_str(), None),
    };
    let response_headers = [("Content-Type", "text/html")];
    let response = match &case.response_body {
        Some(body) => Side {
            headers: &response_headers,
            body: body.as_bytes(),
            body_complete: true,
            seen: true,
        },
        None => Side::default(),
    };
    let caller = intelligence::Caller::peer("eval");
    let exchange = Exchange {
        method: &case.method,
        path,
        query,
        status: Some(200),
        request: Side {
            headers: &headers,
            body: &case.body,
            body_complete: true,
            seen: true,
        },
        response,
        caller: &caller,
        auth: AuthScheme::None,
        time_unix_secs: 0,
        latency_us: None,
    };
    let threats = if case.response_body.is_some() {
        detector.response(&exchange)
    } else {
        detector.request(&exchange)
    };
    // Header hygiene is about the eval's own reflecting server, not about the case.
    threats
        .into_iter()
        .map(|t| t.kind)
        .filter(|k| *k != ThreatKind::MissingSecurityHeaders)
        .collect()
}

fn report(cases: &[Case], moat: &[Vec<ThreatKind>], crs: Option<&[bool]>) {
    let mut classes: Vec<&str> = cases
        .iter()
        .map(|c| c.class)
        .filter(|c| *c != "benign")
        .collect();
    classes.sort_unstable();
    classes.dedup();
    println!();
    println!(
        "Recall: share of each class's attacks detected (Moat: a finding of that class's kind; Moat any: any finding; CRS: 403 or an outbound rule logged)."
    );
    println!(
        "Precision: detections of the class's kind on its attacks over those plus the benign cases flagged with that kind."
    );
    println!();
    println!(
        "{:<18} {:>6} {:>11} {:>11} {:>10} {:>9} {:>9}",
        "class", "cases", "Moat recall", "Moat any", "Moat prec", "Moat FP", "CRS recall"
    );
    for class in &classes {
        let kinds = kinds_of(class);
        let mut total = 0;
        let mut hit = 0;
        let mut any = 0;
        let mut crs_hit = 0;
        for (index, _) in cases.iter().enumerate().filter(|(_, c)| c.class == *class) {
            total += 1;
            hit += usize::from(moat[index].iter().any(|k| kinds.contains(k)));
            any += usize::from(!moat[index].is_empty());
            crs_hit += usize::from(crs.is_some_and(|v| v[index]));
        }
        let false_positives = cases
            .iter()
            .enumerate()
            .filter(|(i, c)| c.class == "benign" && moat[*i].iter().any(|k| kinds.contains(k)))
            .count();
        let crs_recall = if crs.is_some() {
            percent(crs_hit, total)
        } else {
            "-".to_owned()
        };
        println!(
            "{:<18} {:>6} {:>11} {:>11} {:>10} {:>9} {:>9}",
            class,
            total,
            percent(hit, total),
            percent(any, total),
            percent(hit, hit + false_positives),
            false_positives,
            crs_recall
        );
    }
    let attacks: Vec<usize> = (0..cases.len())
        .filter(|i| cases[*i].class != "benign")
        .collect();
    let benign: Vec<usize> = (0..cases.len())
        .filter(|i| cases[*i].class == "benign")
        .collect();
    let moat_tp = attacks.iter().filter(|i| !moat[**i].is_empty()).count();
    let moat_fp = benign.iter().filter(|i| !moat[**i].is_empty()).count();
    println!();
    println!(
        "all attacks: Moat recall {} precision {} ({moat_fp} of {} benign flagged)",
        percent(moat_tp, attacks.len()),
        percent(moat_tp, moat_tp + moat_fp),
        benign.len()
    );
    if let Some(verdicts) = crs {
        let crs_tp = attacks.iter().filter(|i| verdicts[**i]).count();
        let crs_fp = benign.iter().filter(|i| verdicts[**i]).count();
        println!(
            "all attacks: CRS  recall {} precision {} ({crs_fp} of {} benign blocked)",
            percent(crs_tp, attacks.len()),
            percent(crs_tp, crs_tp + crs_fp),
            benign.len()
        );
    }
    let mut flagged: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &benign {
        for kind in &moat[*i] {
            *flagged.entry(kind.as_str()).or_default() += 1;
        }
    }
    println!("benign findings by kind: {flagged:?}");
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// Every stage of the regression tests that expects a rule of a class Moat judges.
fn crs_cases(folder: &Path) -> anyhow::Result<Vec<Case>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for family in
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?
    {
        let family = family?.path();
        if family.is_dir() {
            for file in std::fs::read_dir(&family)? {
                let file = file?.path();
                if file.extension().is_some_and(|e| e == "yaml") {
                    files.push(file);
                }
            }
        }
    }
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let document: Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let Some(class) = document["rule_id"].as_u64().and_then(class_of) else {
            continue;
        };
        for test in document["tests"].as_array().into_iter().flatten() {
            for stage in test["stages"].as_array().into_iter().flatten() {
                let expected = stage["output"]["log"]["expect_ids"]
                    .as_array()
                    .is_some_and(|ids| !ids.is_empty());
                if !expected {
                    continue;
                }
                if let Some(case) = crs_case(class, &stage["input"]) {
                    cases.push(case);
                }
            }
        }
    }
    Ok(cases)
}

fn crs_case(class: &'static str, input: &Value) -> Option<Case> {
    if let Some(encoded) = input["encoded_request"].as_str() {
        let compact: String = encoded.split_whitespace().collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()?;
        return parse_raw_request(class, &raw);
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let headers: Vec<(String, String)> = input["headers"]
        .as_object()
        .map(|map| map.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default();
    let body = match &input["data"] {
        Value::Array(lines) => lines.iter().map(text).collect::<Vec<_>>().join("\r\n"),
        other => text(other),
    };
    let response_body = (class == "leak")
        .then(|| {
            serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["body"].as_str().map(str::to_owned))
        })
        .flatten();
    if class == "leak" && response_body.is_none() {
        return None;
    }
    Some(Case {
        class,
        method: input["method"].as_str().unwrap_or("GET").to_owned(),
        uri: input["uri"].as_str().unwrap_or("/").to_owned(),
        headers,
        body: body.into_bytes(),
        response_body,
    })
}

fn parse_raw_request(class: &'static str, raw: &[u8]) -> Option<Case> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let uri = request_line.next().unwrap_or("/").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Case {
        class,
        method,
        uri,
        headers,
        body: body.as_bytes().to_vec(),
        response_body: None,
    })
}

/// Benign text that looks like what naive filters flag: apostrophes in names, SQL words and
/// paths in prose, code in comments, URLs to public hosts, markup-free punctuation.
const TRICKY_TEXT: &[&str] = &[
    "Seán O'Brien",
    "D'Angelo & Sons, Ltd.",
    "12 O'Connell St; Apt #4, Dublin 1",
    "Please select a plan from the options below, then press Continue.",
    "We should drop table tennis from the offsite agenda -- nobody signed up.",
    "Union Select Mortgage Brokers (UK) Ltd",
    "The config lives in ../config/app.yaml; edit it and restart.",
    "See https://docs.example.org/guide?section=auth&lang=en for details.",
    "Use `SELECT name FROM pets WHERE id = ?` with a bound parameter, never string concatenation.",
    "if (count > 0 && ready) { return items[0]; } // first one wins",
    "Price: $12.50 (incl. 20% VAT) - 3 for 2 offer",
    "Rock 'n' roll or jazz? Either is fine = happy team",
    "She said \"it's done\" and logged off at 5 o'clock.",
    "Run `ls -la` in the project folder to see hidden files.",
    "1 OR 2 tickets, whichever is cheaper",
    "C:\\Users\\Public\\Documents\\report.pdf",
    "Line one\nLine two; with a semicolon | and a pipe",
    "email me at jane.doe+pets@example.com",
    "Where's my order? It was due on 2024-03-01.",
    "Update: the cat's <3 years old and friendly",
    "Notes: exec summary attached; sleep schedule adjusted (8 hours)",
    "Meeting at 10:00 & lunch after; bring the /docs folder",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "curl/8.5.0",
];
/// Cases generated per operation, each with different values.
const ROUNDS: usize = 6;

/// Requests to every operation of the bundled OpenAPI documents, with realistic values.
fn benign_cases(folder: &Path) -> anyhow::Result<Vec<Case>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "yaml"))
        .collect();
    names.sort();
    let mut cases = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for file in names {
        let text = std::fs::read_to_string(&file)?;
        let spec: Value =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let Some(paths) = spec["paths"].as_object() else {
            continue;
        };
        for (template, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                let operation = &item[method];
                if operation.is_null() {
                    continue;
                }
                for _ in 0..ROUNDS {
                    cases.push(benign_case(
                        &spec, template, method, item, operation, &mut seed,
                    ));
                }
            }
        }
    }
    Ok(cases)
}

fn next(seed: &mut u64) -> usize {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 16) as usize
}

fn benign_case(
    spec: &Value,
    template: &str,
    method: &str,
    item: &Value,
    operation: &Value,
    seed: &mut u64,
) -> Case {
    let mut path = template.to_owned();
    let mut query = Vec::new();
    let parameters = item["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(operation["parameters"].as_array().into_iter().flatten());
    for parameter in parameters {
        let parameter = resolve(spec, parameter);
        let name = parameter["name"].as_str().unwrap_or("p");
        let value = sample(spec, &parameter["schema"], name, seed, 0);
        let text = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match parameter["in"].as_str() {
            Some("path") => path = path.replace(&format!("{{{name}}}"), &encode(&text)),
            Some("query") => query.push(format!("{}={}", encode(name), encode(&text))),
            _ => {}
        }
    }
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let mut headers = vec![
        ("Host".to_owned(), "api.example.com".to_owned()),
        (
            "User-Agent".to_owned(),
            USER_AGENTS[next(seed) % USER_AGENTS.len()].to_owned(),
        ),
        ("Accept".to_owned(), "application/json".to_owned()),
    ];
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    let body = if schema.is_null() || method == "get" {
        Vec::new()
    } else {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        sample(spec, schema, "body", seed, 0)
            .to_string()
            .into_bytes()
    };
    Case {
        class: "benign",
        method: method.to_ascii_uppercase(),
        uri,
        headers,
        body,
        response_body: None,
    }
}

fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => spec.pointer(pointer).unwrap_or(value),
        None => value,
    }
}

/// A value for `schema`, named `name`, realistic for what such a field holds.
fn sample(spec: &Value, schema: &Value, name: &str, seed: &mut u64, depth: usize) -> Value {
    let schema = resolve(spec, schema);
    if depth > 4 {
        return Value::Null;
    }
    if let Some(options) = schema["enum"].as_array().filter(|o| !o.is_empty()) {
        return options[next(seed) % options.len()].clone();
    }
    if let Some(first) = ["allOf", "oneOf", "anyOf"]
        .iter()
        .find_map(|k| schema[*k].as_array().and_then(|a| a.first()))
    {
        return sample(spec, first, name, seed, depth + 1);
    }
    let lower = name.to_ascii_lowercase();
    match schema["type"]
        .as_str()
        .unwrap_or(if schema["properties"].is_object() {
            "object"
        } else {
            "string"
        }) {
        "object" => {
            let mut object = serde_json::Map::new();
            for (key, property) in schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .take(12)
            {
                object.insert(key.clone(), sample(spec, property, key, seed, depth + 1));
            }
            Value::Object(object)
        }
        "array" => Value::Array(
            (0..1 + next(seed) % 2)
                .map(|_| sample(spec, &schema["items"], name, seed, depth + 1))
                .collect(),
        ),
        "integer" => json!(next(seed) % 5000),
        "number" => json!((next(seed) % 100_000) as f64 / 100.0),
        "boolean" => json!(next(seed).is_multiple_of(2)),
        _ => {
            let text = if lower.contains("email") {
                format!("user{}@example.com", next(seed) % 1000)
            } else if lower.contains("url") || lower.contains("uri") || lower.contains("link") {
                format!(
                    "https://www.example.com/resources/{}?ref=api",
                    next(seed) % 1000
                )
            } else if lower.contains("date") || lower.contains("time") {
                "2024-05-17T09:30:00Z".to_owned()
            } else if lower.ends_with("id") || schema["format"] == "uuid" {
                format!(
                    "{:08x}-4b1d-4e5f-9a2b-{:012x}",
                    next(seed) % 0xffff_ffff,
                    next(seed) % 0xffff_ffff_ffff
                )
            } else {
                TRICKY_TEXT[next(seed) % TRICKY_TEXT.len()].to_owned()
            };
            Value::String(text)
        }
    }
}

/// Percent-encoding of everything but unreserved characters, as a client library sends.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether ModSecurity with the CRS (paranoia level 1, anomaly blocking) detects each case:
/// the request answered 403, or for response cases an outbound rule logged.
fn modsecurity(cases: &[Case]) -> anyhow::Result<Vec<bool>> {
    let module = Path::new("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so");
    let rules = Path::new("/usr/share/modsecurity-crs/rules");
    if !module.exists() || !rules.exists() {
        bail!(
            "{} or {} missing (the eval packages install them)",
            module.display(),
            rules.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("moat-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let backend = TcpListener::bind("127.0.0.1:0")?;
    let backend_port = backend.local_addr()?.port();
    std::thread::spawn(move || reflect(backend));
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    std::fs::write(dir.join("modsecurity.conf"), modsecurity_conf(&dir))?;
    std::fs::write(
        dir.join("nginx.conf"),
        nginx_conf(&dir, module, port, backend_port),
    )?;
    let mut nginx = Nginx(
        Command::new("nginx")
            .args(["-p"])
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .spawn()
            .context("starting nginx")?,
    );
    let log = dir.join("error.log");
    wait_for_port(port, &mut nginx.0, &log)?;
    let mut verdicts = Vec::with_capacity(cases.len());
    for case in cases {
        let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let status = send(port, case).unwrap_or(0);
        let outbound = case.response_body.is_some() && {
            // The log is written as the response passes; give the worker a moment.
            std::thread::sleep(Duration::from_millis(2));
            let text = std::fs::read(&log).unwrap_or_default();
            let new = String::from_utf8_lossy(text.get(before as usize..).unwrap_or_default())
                .into_owned();
            new.contains("[id \"95")
        };
        verdicts.push(status == 403 || outbound);
    }
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(verdicts)
}

/// Stops nginx when the eval ends, however it ends.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, nginx: &mut Child, log: &Path) -> anyhow::Result<()> {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = nginx.try_wait()? {
            bail!(
                "nginx exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nginx did not listen on 127.0.0.1:{port}")
}

fn modsecurity_conf(dir: &Path) -> String {
    format!(
        r#"SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction ProcessPartial
SecResponseBodyAccess On
SecResponseBodyMimeType text/plain text/html text/xml application/json
SecResponseBodyLimitAction ProcessPartial
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecTmpDir {dir}
SecDataDir {dir}
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
Include /etc/modsecurity/crs/crs-setup.conf
Include /etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf
Include /usr/share/modsecurity-crs/rules/*.conf
Include /etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf
"#,
        dir = dir.display()
    )
}

fn nginx_conf(dir: &Path, module: &Path, port: u16, backend: u16) -> String {
    format!(
        r#"load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        modsecurity on;
        modsecurity_rules_file {dir}/modsecurity.conf;
        location / {{ proxy_pass http://127.0.0.1:{backend}; }}
    }}
}}
"#,
        module = module.display(),
        dir = dir.display()
    )
}

/// The backend: answers 200, and for `/reflect` with the body named in the request's JSON.
fn reflect(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let request = read_message(&mut stream);
        let text = String::from_utf8_lossy(&request);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let reply = text
            .starts_with("POST /reflect")
            .then(|| {
                serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v["body"].as_str().map(str::to_owned))
            })
            .flatten()
            .unwrap_or_else(|| "ok".to_owned());
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        );
    }
}

/// A whole HTTP/1.1 message with a Content-Length body (what nginx sends upstream).
fn read_message(stream: &mut TcpStream) -> Vec<u8> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut data = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return data;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return data,
            Ok(n) => data.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Sends the case to nginx on loopback and returns the response status.
fn send(port: u16, case: &Case) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{} {} HTTP/1.1\r\n", case.method, case.uri).into_bytes();
    for (name, value) in &case.headers {
        let lower = name.to_ascii_lowercase();
        if lower == "content-length" || lower == "connection" || lower == "transfer-encoding" {
            continue;
        }
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !case
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        request.extend_from_slice(b"Host: localhost\r\n");
    }
    if !case.body.is_empty()
        && !case
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        request.extend_from_slice(b"Content-Type: application/x-www-form-urlencoded\r\n");
    }
    request.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            case.body.len()
        )
        .as_bytes(),
    );
    request.extend_from_slice(&case.body);
    stream.write_all(&request)?;
    let mut head = [0; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")
}
