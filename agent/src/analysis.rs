//! The agent's side of API intelligence: which service a call went to, the specs the inventory
//! and Services' annotations bind (read from disk or ConfigMaps, and reloaded when they change),
//! and each call handed to the analyzer.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use identity::apis::{ApiBinding, ConfigMapKey, Server, SpecLocation};
use intelligence::{
    Exchange, Finding,
    analyzer::{Analyzer, AnalyzerConfig, Binding},
    endpoints::{EndpointKey, EndpointStats, InventoryLimits},
    exchange::Side,
    openapi::{Source, Spec},
};
use sensitive::{
    HashKey,
    dataflow::{DataFlow, DataFlowLimits, DataFlows, FlowCall},
    masking::MaskedField,
};
use tracing::{info, warn};

use crate::{
    capture::record::{CallRecord, HeaderRecord, Peer},
    cli::AnalysisArgs,
    detection::{CallContext, ClientFacts, DetectionConfig, DetectionStats, Detectors},
    kubernetes::{ConfigMapDocuments, Document},
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

/// Serves a spec's documents from one ConfigMap: the spec is one key, and the relative file
/// names its `$ref`s give are other keys of the same ConfigMap.
struct ConfigMapSource<'a> {
    /// `configmap <namespace>/<name>`, as the ConfigMap's documents are named.
    config_map: String,
    /// None: the ConfigMap does not exist.
    documents: Option<&'a ConfigMapDocuments>,
}

impl Source for ConfigMapSource<'_> {
    fn read(&mut self, document: &str) -> Result<String, String> {
        let key = document
            .strip_prefix(&self.config_map)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|key| !key.contains('/'))
            .ok_or_else(|| {
                format!(
                    "only keys of {} are read; put the referenced document in a key of it and \
                     refer to it by the key's name",
                    self.config_map
                )
            })?;
        let documents = self
            .documents
            .ok_or_else(|| format!("{} does not exist", self.config_map))?;
        match documents.documents.get(key) {
            Some(Document::Text(text)) => Ok(text.clone()),
            Some(Document::TooLarge { bytes }) => Err(format!(
                "{bytes} bytes that would make {} larger than the {} bytes the agent holds of one \
                 ConfigMap",
                self.config_map,
                crate::kubernetes::MAX_CONFIG_MAP_BYTES
            )),
            None => Err(format!("{} has no key {key:?}", self.config_map)),
        }
    }
}

/// The ConfigMaps bound specs are read from, by (namespace, name): None when one does not
/// exist. One not here yet has not been listed, so its specs wait rather than fail.
type ConfigMaps = HashMap<(String, String), Option<Arc<ConfigMapDocuments>>>;

fn config_map_of(key: &ConfigMapKey) -> (String, String) {
    (key.namespace.clone(), key.name.clone())
}

/// What became of one API's spec.
#[derive(Debug)]
pub enum SpecOutcome {
    Loaded {
        api: Arc<str>,
        /// The file, or `configmap <namespace>/<name>/<key>`.
        file: String,
        operations: usize,
        /// Operations left out, each `document#pointer: reason`.
        warnings: Vec<String>,
    },
    Rejected {
        api: Arc<str>,
        file: String,
        error: String,
    },
}

/// What a spec was last read from, to notice edits.
enum Read {
    Nothing,
    /// The documents, with their modification times.
    Files(Vec<(PathBuf, Option<SystemTime>)>),
    /// The ConfigMap as it was then (None: it did not exist).
    ConfigMap(Option<Arc<ConfigMapDocuments>>),
}

struct Loaded {
    api: ApiBinding,
    /// None while no version of the spec has loaded.
    spec: Option<Arc<Spec>>,
    /// The last load failed (an earlier version may still be bound).
    rejected: bool,
    read: Read,
    /// Fields the bound spec declares masked, for masking verification.
    masked: Arc<[MaskedField]>,
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
    pub detection: DetectionStats,
    pub behavior: threats::behavior::BehaviorStats,
    /// Data flows kept, and calls counted in the overflow flows past `--max-data-flows`.
    pub data_flows: usize,
    pub data_flow_calls_overflowed: u64,
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
    detectors: Detectors,
    /// Where sensitive data goes: per endpoint, class and counterpart.
    flows: DataFlows,
    apis: Vec<Loaded>,
    /// Only those the bound APIs name.
    config_maps: ConfigMaps,
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn pairs(headers: &[HeaderRecord]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|header| (&*header.name, header.value.as_str()))
        .collect()
}

/// A name for the caller that outlives its pods: the workload, the service, the node, the
/// customer (of a customer range), the range, or the address.
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
    if let Some(customer) = &facts.customer {
        return format!("customer/{customer}");
    }
    if let Some(range) = &identity.range {
        return format!("range/{}", range.range);
    }
    peer.ip.to_string()
}

impl Analysis {
    pub fn new(args: &AnalysisArgs, hash_key: HashKey) -> Self {
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
            detectors: Detectors::new(
                Arc::new(DetectionConfig::default()),
                hash_key,
                args.detection_body_bytes_per_second,
            ),
            flows: DataFlows::new(DataFlowLimits {
                max_flows: args.max_data_flows.max(1),
            }),
            apis: Vec::new(),
            config_maps: ConfigMaps::new(),
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
            let mut loaded = match kept {
                Some(kept) => Loaded {
                    api: api.clone(),
                    ..kept
                },
                None => Loaded {
                    api: api.clone(),
                    spec: None,
                    rejected: false,
                    read: Read::Nothing,
                    masked: Arc::new([]),
                },
            };
            if loaded.due(&self.config_maps) {
                outcomes.push(loaded.load(&self.config_maps));
            }
            self.apis.push(loaded);
        }
        let named = self.config_maps();
        self.config_maps.retain(|key, _| named.contains(key));
        self.rebind(now);
        outcomes
    }

    /// The detection file in force.
    pub fn detection(&self) -> &DetectionConfig {
        self.detectors.config()
    }

    /// Puts a (validated) detection file in force.
    pub fn set_detection(&mut self, config: Arc<DetectionConfig>) {
        self.detectors.reconfigure(config);
    }

    /// The ConfigMaps (namespace, name) the bound APIs read their specs from.
    pub fn config_maps(&self) -> BTreeSet<(String, String)> {
        self.apis
            .iter()
            .filter_map(|loaded| match &loaded.api.spec {
                SpecLocation::ConfigMap(key) => Some(config_map_of(key)),
                SpecLocation::File(_) => None,
            })
            .collect()
    }

    /// The ConfigMap `namespace/name` as it is now (None: it does not exist); the specs read
    /// from it are reloaded if it changed. A ConfigMap no bound API names is ignored.
    pub fn set_config_map(
        &mut self,
        namespace: String,
        name: String,
        documents: Option<Arc<ConfigMapDocuments>>,
        now: SystemTime,
    ) -> Vec<SpecOutcome> {
        let key = (namespace, name);
        if !self.config_maps().contains(&key) {
            return Vec::new();
        }
        let unchanged = self
            .config_maps
            .get(&key)
            .is_some_and(|current| current.as_deref() == documents.as_deref());
        if unchanged {
            // A relist of the same text keeps the version the specs were read from.
            return Vec::new();
        }
        self.config_maps.insert(key, documents);
        self.reload_changed(now)
    }

    /// Reloads the specs whose files or ConfigMaps changed since they were read.
    pub fn reload_changed(&mut self, now: SystemTime) -> Vec<SpecOutcome> {
        let config_maps = &self.config_maps;
        let outcomes: Vec<SpecOutcome> = self
            .apis
            .iter_mut()
            .filter(|loaded| loaded.changed(config_maps))
            .map(|loaded| loaded.load(config_maps))
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
    fn api_of(&self, call: &CallRecord) -> Option<&Loaded> {
        let identity = call.server.identity.as_ref().map(|peer| &peer.identity);
        let service = identity
            .and_then(|facts| Some((facts.namespace.as_deref()?, facts.service.as_deref()?)));
        let server = Server {
            ip: call.server.ip,
            port: call.server.port,
            authority: call.authority.as_deref(),
            service,
        };
        self.apis.iter().find(|loaded| loaded.api.serves(&server))
    }

    /// The service a call went to: its bound API's (`api`, what [`Self::api_of`] found) name,
    /// else the Kubernetes service or workload, else the node or address, with the port.
    fn service_of(call: &CallRecord, api: Option<&ApiBinding>) -> String {
        if let Some(api) = api {
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
        // Matching the bound APIs' servers is the per-call cost of binding: done once.
        let loaded = self.api_of(call);
        let masked = loaded.map_or_else(|| Arc::from([]), |loaded| loaded.masked.clone());
        let api = loaded.map(|loaded| &loaded.api);
        let service = Self::service_of(call, api);
        let block_for = api.map(|api| api.block_for);
        let request_headers = pairs(&call.request.headers);
        let response_headers = pairs(&call.response.headers);
        let credentials = pairs(&call.credentials);
        let peer = caller_label(&call.client);
        let caller = self.detectors.caller(&ClientFacts {
            peer: &peer,
            range_customer: call
                .client
                .identity
                .as_ref()
                .and_then(|client| client.identity.customer.as_deref()),
            user_agent: call
                .request
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case("user-agent"))
                .map(|header| header.value.as_str()),
            credentials: &credentials,
        });
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
        if let (Some(key), Some(server)) = (&observation.endpoint, &call.server.identity) {
            self.analyzer
                .inventory()
                .tag(&service, key, server.identity.tags.iter());
        }
        let endpoint = observation
            .endpoint
            .as_ref()
            .map_or(path, |key| key.template.as_str());
        let judgement = self.detectors.judge(&CallContext {
            exchange: &exchange,
            service: &service,
            endpoint,
            credentials: &credentials,
            masked: &masked,
            // Both ends named by a process here: the bytes never left this node.
            crosses_node: !(call.client.has_process() && call.server.has_process()),
            // The socket capture reads what applications write: a TLS connection's calls
            // never parse, so every call seen here travelled in plaintext.
            encrypted: false,
        });
        if !judgement.detections.is_empty() {
            self.flows.observe(
                &FlowCall {
                    service: &service,
                    method,
                    endpoint,
                    counterpart: &crate::dataflow::counterpart(&call.client),
                    encrypted: false,
                    time_unix_secs: exchange.time_unix_secs,
                },
                &judgement.detections,
            );
        }
        let detection_block_for = self.detectors.config().block_for;
        let blocking = |finding: Finding, block_for: Option<Duration>| Judged {
            block_for: (finding.mode == intelligence::finding::Mode::Block)
                .then_some(block_for)
                .flatten(),
            finding,
        };
        let judged = observation
            .findings
            .into_iter()
            .map(|finding| blocking(finding, block_for))
            .chain(
                judgement
                    .findings
                    .into_iter()
                    .map(|finding| blocking(finding, Some(detection_block_for))),
            )
            .collect();
        call.endpoint = observation.endpoint.map(|key| key.template);
        call.service = Some(service);
        call.caller = Some(caller);
        call.redact_found(&judgement.detections);
        // Credentials have served the judging; they must not outlive it.
        call.credentials = Vec::new();
        judged
    }

    /// Documented operations that fell silent.
    pub fn unused(&mut self, now: SystemTime) -> Vec<Finding> {
        self.analyzer.unused(unix_seconds(now))
    }

    /// Data flows whose counts changed since the last call.
    pub fn changed_flows(&mut self) -> Vec<DataFlow> {
        self.flows.take_changed()
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
            detection: self.detectors.stats(),
            behavior: self.detectors.behavior_stats(),
            data_flows: self.flows.len(),
            data_flow_calls_overflowed: self.flows.overflowed_calls(),
        }
    }
}

fn socket_name(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

impl Loaded {
    /// Whether what the spec was read from changed since. A ConfigMap not listed yet has not.
    fn changed(&self, config_maps: &ConfigMaps) -> bool {
        match (&self.api.spec, &self.read) {
            (SpecLocation::File(_), Read::Files(files)) => files.iter().any(|(path, modified)| {
                std::fs::metadata(path)
                    .and_then(|metadata| metadata.modified())
                    .ok()
                    != *modified
            }),
            (SpecLocation::ConfigMap(key), read) => config_maps
                .get(&config_map_of(key))
                .is_some_and(|current| match read {
                    Read::ConfigMap(then) => match (then, current) {
                        (Some(then), Some(current)) => !Arc::ptr_eq(then, current),
                        (None, None) => false,
                        _ => true,
                    },
                    _ => true,
                }),
            (SpecLocation::File(_), _) => true,
        }
    }

    /// Whether binding should (re)load the spec: a file spec that is not loaded is tried again;
    /// a ConfigMap's is loaded once per version of the ConfigMap.
    fn due(&self, config_maps: &ConfigMaps) -> bool {
        match self.api.spec {
            SpecLocation::File(_) => self.spec.is_none() || self.changed(config_maps),
            SpecLocation::ConfigMap(_) => self.changed(config_maps),
        }
    }

    fn load(&mut self, config_maps: &ConfigMaps) -> SpecOutcome {
        let file = self.api.spec.to_string();
        let api = self.api.name.clone();
        let result = match &self.api.spec {
            SpecLocation::File(path) => {
                let mut files = Files::default();
                let result = compile(&file, &mut files);
                // Whatever happened, watch what was read (or the root alone) for the next edit.
                self.read = Read::Files(if files.read.is_empty() {
                    vec![(path.clone(), modified(path))]
                } else {
                    files.read
                });
                result
            }
            SpecLocation::ConfigMap(key) => {
                let documents = config_maps.get(&config_map_of(key)).cloned().flatten();
                let mut source = ConfigMapSource {
                    config_map: format!("configmap {}/{}", key.namespace, key.name),
                    documents: documents.as_deref(),
                };
                let result = compile(&file, &mut source);
                self.read = Read::ConfigMap(documents);
                result
            }
        };
        match result {
            Ok((compiled, masked)) => {
                self.masked = masked.into();
                let operations = compiled.spec.operations.len();
                let warnings: Vec<String> =
                    compiled.warnings.iter().map(ToString::to_string).collect();
                info!(api = %api, file = %file, operations, warnings = warnings.len(), "OpenAPI spec bound");
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

/// The spec named `name` and the documents it refers to, read from `source`, with the fields
/// its root document declares masked (`x-moat-masked`).
fn compile(
    name: &str,
    source: &mut dyn Source,
) -> Result<(intelligence::openapi::spec::Compiled, Vec<MaskedField>), String> {
    let text = source
        .read(name)
        .map_err(|reason| format!("{name}: cannot read the spec: {reason}"))?;
    let compiled = Spec::load(&text, name, source).map_err(|error| error.to_string())?;
    // The spec compiled, so its text is YAML or JSON.
    let masked = serde_yaml::from_str::<serde_json::Value>(&text)
        .map(|document| sensitive::masking::declared_in_spec(&document))
        .unwrap_or_default();
    Ok((compiled, masked))
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
    /// The caller beyond its address (application, customer, end user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<&'a intelligence::Caller>,
}

#[derive(Debug, serde::Serialize)]
pub struct CallerRecord<'a> {
    /// The workload, service, node, range or address.
    pub caller: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
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
    /// The answering servers' tags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: &'a BTreeMap<String, String>,
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
                    caller: &caller.peer,
                    application: caller.application.as_deref(),
                    api_key: caller.api_key.as_deref(),
                    customer: caller.customer.as_deref(),
                    user: caller.user.as_deref(),
                    calls: counts.calls,
                    first_seen: counts.first_seen,
                    last_seen: counts.last_seen,
                })
                .collect(),
            other_callers_calls: stats.other_callers_calls,
            learned: &stats.learned,
            tags: &stats.tags,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use identity::apis::{AnnotatedApi, annotated};

    use super::*;
    use crate::cli::NewsArg;

    const SPEC: &str = "\
openapi: 3.0.3
info: {title: pets, version: '1'}
paths:
  /pets/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
      responses:
        '200':
          description: a pet
          content:
            application/json:
              schema: {$ref: 'schemas.yaml#/Pet'}
";

    fn analysis() -> Analysis {
        Analysis::new(
            &AnalysisArgs {
                new_endpoint_findings: NewsArg::Off,
                new_caller_findings: NewsArg::Off,
                max_endpoints_per_service: 64,
                max_services: 64,
                detection: None,
                hash_key_file: None,
                max_data_flows: 16,
                cert_expiry_warning: std::time::Duration::from_secs(30 * 86_400),
                detection_body_bytes_per_second: 1 << 20,
            },
            HashKey::new([1; 32]),
        )
    }

    fn binding(reference: &str) -> ApiBinding {
        let annotations = BTreeMap::from([(
            identity::apis::OPENAPI_ANNOTATION.to_owned(),
            reference.to_owned(),
        )]);
        let api: Option<AnnotatedApi> = annotated("shop", "pets", &annotations);
        api.and_then(|api| api.binding).expect("a binding")
    }

    fn config_map(keys: &[(&str, &str)]) -> Option<Arc<ConfigMapDocuments>> {
        Some(Arc::new(ConfigMapDocuments {
            documents: keys
                .iter()
                .map(|(key, text)| ((*key).to_owned(), Document::Text((*text).to_owned())))
                .collect(),
        }))
    }

    fn set(
        analysis: &mut Analysis,
        name: &str,
        documents: Option<Arc<ConfigMapDocuments>>,
    ) -> Vec<SpecOutcome> {
        analysis.set_config_map(
            "shop".to_owned(),
            name.to_owned(),
            documents,
            SystemTime::now(),
        )
    }

    fn rejection(outcomes: &[SpecOutcome]) -> &str {
        match outcomes {
            [SpecOutcome::Rejected { api, file, error }] => {
                assert_eq!(&**api, "shop/pets");
                assert_eq!(file, "configmap shop/specs/openapi.yaml");
                error
            }
            other => panic!("one rejection expected: {other:?}"),
        }
    }

    #[test]
    fn a_spec_in_a_config_map_loads_with_the_keys_it_refers_to_and_keeps_its_last_good_version() {
        let mut analysis = analysis();
        let outcomes = analysis.bind(&[binding("specs/openapi.yaml")], SystemTime::now());
        assert!(outcomes.is_empty(), "waits for the ConfigMap: {outcomes:?}");
        assert_eq!(
            analysis.config_maps(),
            BTreeSet::from([("shop".to_owned(), "specs".to_owned())])
        );
        assert!(
            set(
                &mut analysis,
                "other",
                config_map(&[("openapi.yaml", SPEC)])
            )
            .is_empty(),
            "a ConfigMap no binding names is ignored"
        );
        assert!(analysis.config_maps.is_empty());

        let good = config_map(&[
            ("openapi.yaml", SPEC),
            (
                "schemas.yaml",
                "Pet: {type: object, properties: {id: {type: integer}}}",
            ),
        ]);
        match set(&mut analysis, "specs", good.clone()).as_slice() {
            [
                SpecOutcome::Loaded {
                    api,
                    file,
                    operations,
                    warnings,
                },
            ] => {
                assert_eq!(&**api, "shop/pets");
                assert_eq!(file, "configmap shop/specs/openapi.yaml");
                assert_eq!(*operations, 1);
                assert!(warnings.is_empty(), "{warnings:?}");
            }
            other => panic!("loaded expected: {other:?}"),
        }
        let bound = analysis.apis[0].spec.clone().expect("bound");
        assert!(
            set(&mut analysis, "specs", good).is_empty(),
            "a relist of the same text reloads nothing"
        );

        let broken = rejection(&set(
            &mut analysis,
            "specs",
            config_map(&[("openapi.yaml", "paths: ["), ("schemas.yaml", "Pet: {}")]),
        ))
        .to_owned();
        assert!(
            broken.starts_with("configmap shop/specs/openapi.yaml#: not valid JSON or YAML"),
            "{broken}"
        );
        let missing_key = rejection(&set(
            &mut analysis,
            "specs",
            config_map(&[("schemas.yaml", "Pet: {}")]),
        ))
        .to_owned();
        assert!(
            missing_key.ends_with("configmap shop/specs has no key \"openapi.yaml\""),
            "{missing_key}"
        );
        let deleted = rejection(&set(&mut analysis, "specs", None)).to_owned();
        assert!(
            deleted.ends_with("configmap shop/specs does not exist"),
            "{deleted}"
        );
        assert!(set(&mut analysis, "specs", None).is_empty(), "said once");
        assert!(
            Arc::ptr_eq(analysis.apis[0].spec.as_ref().expect("kept"), &bound),
            "the last good spec stays bound"
        );

        // A mode change rebinds without reading the spec again.
        let mut blocking = binding("specs/openapi.yaml");
        blocking.mode = intelligence::finding::Mode::Block;
        assert!(analysis.bind(&[blocking], SystemTime::now()).is_empty());
        assert!(Arc::ptr_eq(
            analysis.apis[0].spec.as_ref().expect("kept"),
            &bound
        ));
        // Unbound: its ConfigMap is let go.
        assert!(analysis.bind(&[], SystemTime::now()).is_empty());
        assert!(analysis.config_maps.is_empty());
    }

    #[test]
    fn a_config_map_spec_reads_only_keys_of_its_own_config_map() {
        let mut analysis = analysis();
        analysis.bind(&[binding("specs/openapi.yaml")], SystemTime::now());
        for (reference, complaint) in [
            (
                "../other/schemas.yaml#/Pet",
                "only keys of configmap shop/specs are read",
            ),
            (
                "https://example.com/schemas.yaml#/Pet",
                "only keys of configmap shop/specs are read",
            ),
            (
                "missing.yaml#/Pet",
                "configmap shop/specs has no key \"missing.yaml\"",
            ),
        ] {
            // As with files, an operation whose reference fails is left out with a warning.
            let spec = SPEC.replace("schemas.yaml#/Pet", reference);
            match set(
                &mut analysis,
                "specs",
                config_map(&[("openapi.yaml", &spec)]),
            )
            .as_slice()
            {
                [
                    SpecOutcome::Loaded {
                        operations: 0,
                        warnings,
                        ..
                    },
                ] => assert!(
                    warnings.len() == 1 && warnings[0].contains(complaint),
                    "{reference}: {warnings:?}"
                ),
                other => panic!("{reference}: loaded without the operation expected: {other:?}"),
            }
        }
        let oversized = Some(Arc::new(ConfigMapDocuments {
            documents: BTreeMap::from([(
                "openapi.yaml".to_owned(),
                Document::TooLarge { bytes: 2 << 20 },
            )]),
        }));
        let error = rejection(&set(&mut analysis, "specs", oversized)).to_owned();
        assert!(error.contains("larger than the 1048576 bytes"), "{error}");
    }
}
