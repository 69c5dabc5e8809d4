//! The agent's side of API intelligence: which service a call went to, the specs the inventory
//! binds (read from disk and reloaded when they change), and each call handed to the analyzer.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use identity::apis::{ApiBinding, Server};
use intelligence::{
    Exchange, Finding,
    analyzer::{Analyzer, AnalyzerConfig, Binding},
    endpoints::{EndpointKey, EndpointStats, InventoryLimits},
    exchange::Side,
    openapi::{Source, Spec},
};
use tracing::{info, warn};

use crate::{
    capture::record::{CallRecord, HeaderRecord, Peer},
    cli::AnalysisArgs,
};

/// Spec documents larger than this are refused: a spec is configuration, not data.
const MAX_SPEC_BYTES: u64 = 32 << 20;

/// Reads spec documents from disk, remembering which it read so that edits are noticed.
#[derive(Default)]
struct Files {
    read: Vec<(PathBuf, Option<SystemTime>)>,
}

impl Source for Files {
    fn read(&mut self, document: &str) -> Result<String, String> {
        if document.contains("://") {
            return Err(
                "only files are read; download the referenced document next to the spec and \
                 refer to it by a relative path"
                    .to_owned(),
            );
        }
        let path = PathBuf::from(document);
        let metadata = std::fs::metadata(&path).map_err(|error| error.to_string())?;
        if metadata.len() > MAX_SPEC_BYTES {
            return Err(format!(
                "{} bytes, more than the {MAX_SPEC_BYTES} a spec may have",
                metadata.len()
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|error| error.to_string())?;
        self.read.push((path, metadata.modified().ok()));
        Ok(text)
    }
}

/// What became of one API's spec.
#[derive(Debug)]
pub enum SpecOutcome {
    Loaded {
        api: Arc<str>,
        file: PathBuf,
        operations: usize,
        /// Operations left out, each `document#pointer: reason`.
        warnings: Vec<String>,
    },
    Rejected {
        api: Arc<str>,
        file: PathBuf,
        error: String,
    },
}

struct Loaded {
    api: ApiBinding,
    /// None while no version of the spec has loaded.
    spec: Option<Arc<Spec>>,
    /// The last load failed (an earlier version may still be bound).
    rejected: bool,
    /// The documents the spec was read from, with their modification times.
    files: Vec<(PathBuf, Option<SystemTime>)>,
}

#[derive(Clone, Debug, Default)]
pub struct AnalysisStats {
    pub services: usize,
    pub endpoints: usize,
    /// Calls to services past `--max-services`: counted here, not inventoried.
    pub calls_not_inventoried: u64,
    /// APIs with a spec in force, and APIs whose last load failed.
    pub specs_bound: usize,
    pub specs_rejected: usize,
}

/// A finding with what the agent needs to act on it.
#[derive(Debug)]
pub struct Judged {
    pub finding: Finding,
    /// For findings in block mode: how long to block the caller.
    pub block_for: Option<Duration>,
}

pub struct Analysis {
    analyzer: Analyzer,
    apis: Vec<Loaded>,
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn pairs(headers: &[HeaderRecord]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|header| (header.name.as_str(), header.value.as_str()))
        .collect()
}

/// A name for the caller that outlives its pods: the workload, the service, the node, the
/// range, or the address.
pub fn caller_label(peer: &Peer) -> String {
    let Some(identity) = &peer.identity else {
        return peer.ip.to_string();
    };
    let facts = &identity.identity;
    let namespace = facts.namespace.as_deref().unwrap_or("-");
    if let Some(workload) = &facts.workload {
        return format!("{namespace}/{}", workload.name);
    }
    if let Some(name) = facts.pod.as_deref().or(facts.service.as_deref()) {
        return format!("{namespace}/{name}");
    }
    if let Some(node) = &facts.node {
        return format!("node/{node}");
    }
    if let Some(range) = &identity.range {
        return format!("range/{}", range.range);
    }
    peer.ip.to_string()
}

impl Analysis {
    pub fn new(args: &AnalysisArgs) -> Self {
        let defaults = InventoryLimits::default();
        let config = AnalyzerConfig {
            limits: InventoryLimits {
                services: args.max_services.max(1),
                endpoints_per_service: args.max_endpoints_per_service.max(1),
                ..defaults
            },
            new_endpoint: args.new_endpoint_findings.mode(),
            new_caller: args.new_caller_findings.mode(),
        };
        Self {
            analyzer: Analyzer::new(config),
            apis: Vec::new(),
        }
    }

    /// Makes `apis` the bound APIs, loading their specs. An API whose spec does not load keeps
    /// the version it had, if any.
    pub fn bind(&mut self, apis: &[ApiBinding], now: SystemTime) -> Vec<SpecOutcome> {
        let mut previous = std::mem::take(&mut self.apis);
        let mut outcomes = Vec::new();
        for api in apis {
            let kept = previous
                .iter()
                .position(|loaded| loaded.api.name == api.name && loaded.api.spec == api.spec)
                .map(|index| previous.swap_remove(index));
            let mut loaded = Loaded {
                api: api.clone(),
                spec: kept.as_ref().and_then(|kept| kept.spec.clone()),
                rejected: kept.as_ref().is_some_and(|kept| kept.rejected),
                files: kept.map(|kept| kept.files).unwrap_or_default(),
            };
            if loaded.spec.is_none() || loaded.changed() {
                outcomes.push(loaded.load());
            }
            self.apis.push(loaded);
        }
        self.rebind(now);
        outcomes
    }

    /// Reloads the specs whose files changed since they were read.
    pub fn reload_changed(&mut self, now: SystemTime) -> Vec<SpecOutcome> {
        let outcomes: Vec<SpecOutcome> = self
            .apis
            .iter_mut()
            .filter(|loaded| loaded.changed())
            .map(Loaded::load)
            .collect();
        if !outcomes.is_empty() {
            self.rebind(now);
        }
        outcomes
    }

    fn rebind(&mut self, now: SystemTime) {
        let bindings = self
            .apis
            .iter()
            .filter_map(|loaded| {
                Some(Binding {
                    service: loaded.api.name.to_string(),
                    spec: loaded.spec.clone()?,
                    mode: loaded.api.mode,
                    modes: loaded.api.modes.clone(),
                    severities: loaded.api.severities.clone(),
                    unused_after_secs: loaded.api.unused_after.as_secs(),
                })
            })
            .collect();
        self.analyzer.bind(bindings, unix_seconds(now));
    }

    /// The bound API that serves the call's server end, if any.
    fn api_of(&self, call: &CallRecord) -> Option<&ApiBinding> {
        let identity = call.server.identity.as_ref().map(|peer| &peer.identity);
        let service = identity
            .and_then(|facts| Some((facts.namespace.as_deref()?, facts.service.as_deref()?)));
        let server = Server {
            ip: call.server.ip,
            port: call.server.port,
            authority: call.authority.as_deref(),
            service,
        };
        self.apis
            .iter()
            .map(|loaded| &loaded.api)
            .find(|api| api.serves(&server))
    }

    /// The service a call went to: its bound API's name, else the Kubernetes service or
    /// workload, else the node or address, with the port.
    pub fn service_of(&self, call: &CallRecord) -> String {
        if let Some(api) = self.api_of(call) {
            return api.name.to_string();
        }
        let server = &call.server;
        let facts = server.identity.as_ref().map(|peer| &peer.identity);
        let namespace = facts
            .and_then(|facts| facts.namespace.as_deref())
            .unwrap_or("-");
        match facts {
            Some(facts) if facts.service.is_some() => {
                format!(
                    "{namespace}/{}",
                    facts.service.as_deref().unwrap_or_default()
                )
            }
            Some(facts) if facts.workload.is_some() => format!(
                "{namespace}/{}:{}",
                facts
                    .workload
                    .as_ref()
                    .map_or("", |workload| &*workload.name),
                server.port
            ),
            Some(facts) if facts.node.is_some() => {
                format!(
                    "{}:{}",
                    facts.node.as_deref().unwrap_or_default(),
                    server.port
                )
            }
            _ => socket_name(server.ip, server.port),
        }
    }

    /// Counts and checks one call that ended at `now`, and names its service and endpoint on
    /// the record.
    pub fn observe(&mut self, call: &mut CallRecord, now: SystemTime) -> Vec<Judged> {
        let (Some(method), Some(path)) = (call.method.as_deref(), call.path.as_deref()) else {
            return Vec::new();
        };
        let service = self.service_of(call);
        let block_for = self.api_of(call).map(|api| api.block_for);
        let request_headers = pairs(&call.request.headers);
        let response_headers = pairs(&call.response.headers);
        let caller = caller_label(&call.client);
        let whole = |record: &crate::capture::record::MessageRecord, body: &[u8]| {
            record.complete && body.len() as u64 == record.body_bytes
        };
        let exchange = Exchange {
            method,
            path,
            query: call.query.as_deref(),
            status: call.status,
            request: Side {
                headers: &request_headers,
                body: &call.request_body,
                body_complete: whole(&call.request, &call.request_body),
                seen: true,
            },
            response: Side {
                headers: &response_headers,
                body: &call.response_body,
                body_complete: whole(&call.response, &call.response_body),
                seen: call.status.is_some(),
            },
            caller: &caller,
            auth: call.auth,
            time_unix_secs: unix_seconds(now),
            latency_us: call.latency_us,
        };
        let observation = self.analyzer.observe(&service, &exchange);
        call.endpoint = observation.endpoint.map(|key| key.template);
        call.service = Some(service);
        observation
            .findings
            .into_iter()
            .map(|finding| Judged {
                block_for: (finding.mode == intelligence::finding::Mode::Block)
                    .then_some(block_for)
                    .flatten(),
                finding,
            })
            .collect()
    }

    /// Documented operations that fell silent.
    pub fn unused(&mut self, now: SystemTime) -> Vec<Finding> {
        self.analyzer.unused(unix_seconds(now))
    }

    /// Endpoints whose counts changed since the last call.
    pub fn changed_endpoints(&mut self) -> Vec<(String, EndpointKey, EndpointStats)> {
        self.analyzer.inventory().take_changed()
    }

    /// What the metrics show of the analysis.
    pub fn stats(&mut self) -> AnalysisStats {
        let (services, endpoints) = self.analyzer.inventory().size();
        AnalysisStats {
            services,
            endpoints,
            calls_not_inventoried: self.analyzer.inventory().services_overflow_calls,
            specs_bound: self
                .apis
                .iter()
                .filter(|loaded| loaded.spec.is_some())
                .count(),
            specs_rejected: self.apis.iter().filter(|loaded| loaded.rejected).count(),
        }
    }
}

fn socket_name(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

impl Loaded {
    fn changed(&self) -> bool {
        self.files.is_empty()
            || self.files.iter().any(|(path, modified)| {
                std::fs::metadata(path)
                    .and_then(|metadata| metadata.modified())
                    .ok()
                    != *modified
            })
    }

    fn load(&mut self) -> SpecOutcome {
        let file = self.api.spec.clone();
        let api = self.api.name.clone();
        let mut files = Files::default();
        let name = file.to_string_lossy().into_owned();
        let result = files
            .read(&name)
            .map_err(|reason| format!("{name}: cannot read the spec: {reason}"))
            .and_then(|text| {
                Spec::load(&text, &name, &mut files).map_err(|error| error.to_string())
            });
        // Whatever happened, watch what was read (or the root alone) for the next edit.
        self.files = if files.read.is_empty() {
            vec![(file.clone(), modified(&file))]
        } else {
            files.read
        };
        match result {
            Ok(compiled) => {
                let operations = compiled.spec.operations.len();
                let warnings: Vec<String> =
                    compiled.warnings.iter().map(ToString::to_string).collect();
                info!(api = %api, file = %file.display(), operations, warnings = warnings.len(), "OpenAPI spec bound");
                for warning in &warnings {
                    warn!(api = %api, %warning, "spec operation left out");
                }
                self.spec = Some(Arc::new(compiled.spec));
                self.rejected = false;
                SpecOutcome::Loaded {
                    api,
                    file,
                    operations,
                    warnings,
                }
            }
            Err(error) => {
                warn!(api = %api, %error, "OpenAPI spec rejected; the API keeps its previous spec, if any");
                self.rejected = true;
                SpecOutcome::Rejected { api, file, error }
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .ok()
}

/// An `api.finding` record: the finding, and the two ends of the call that showed it.
#[derive(Debug, serde::Serialize)]
pub struct FindingRecord<'a> {
    #[serde(flatten)]
    pub finding: &'a Finding,
    /// The caller; absent for findings about no call (unused endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a Peer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<&'a Peer>,
}

#[derive(Debug, serde::Serialize)]
pub struct CallerRecord<'a> {
    pub caller: &'a str,
    pub calls: u64,
    pub first_seen: u64,
    pub last_seen: u64,
}

/// An `api.endpoint` record. Times are Unix seconds; latencies are upper bounds of
/// power-of-two buckets.
#[derive(Debug, serde::Serialize)]
pub struct EndpointRecord<'a> {
    pub service: &'a str,
    pub method: &'a str,
    pub endpoint: &'a str,
    /// The bound spec's operation (`#/paths/...`), when the spec documents the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documented: Option<&'a str>,
    pub first_seen: u64,
    pub last_seen: u64,
    pub calls: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub no_response: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p90_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_us: Option<u64>,
    pub request_content_types: &'a [String],
    pub response_content_types: &'a [String],
    pub auth: Vec<&'static str>,
    pub callers: Vec<CallerRecord<'a>>,
    /// Calls from callers past the per-endpoint bound on named callers.
    pub other_callers_calls: u64,
    /// Shipped to the collector for `moat spec export`; too large for standard output.
    #[serde(skip)]
    pub learned: &'a intelligence::learn::Learned,
}

impl<'a> EndpointRecord<'a> {
    pub fn new(service: &'a str, key: &'a EndpointKey, stats: &'a EndpointStats) -> Self {
        Self {
            service,
            method: &key.method,
            endpoint: &key.template,
            documented: stats.documented.as_deref(),
            first_seen: stats.first_seen,
            last_seen: stats.last_seen,
            calls: stats.calls,
            client_errors: stats.client_errors,
            server_errors: stats.server_errors,
            no_response: stats.no_response,
            latency_p50_us: stats.latency.quantile(0.5),
            latency_p90_us: stats.latency.quantile(0.9),
            latency_p99_us: stats.latency.quantile(0.99),
            request_content_types: &stats.request_content_types,
            response_content_types: &stats.response_content_types,
            auth: stats.auth_schemes().map(|scheme| scheme.as_str()).collect(),
            callers: stats
                .callers
                .iter()
                .map(|(caller, counts)| CallerRecord {
                    caller,
                    calls: counts.calls,
                    first_seen: counts.first_seen,
                    last_seen: counts.last_seen,
                })
                .collect(),
            other_callers_calls: stats.other_callers_calls,
            learned: &stats.learned,
        }
    }
}
