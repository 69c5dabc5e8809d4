//! The agent's main loop: check, load, attach, enforce, report, until told to stop.

use std::{
    io,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use identity::apis::ApiBinding;
use ipnetwork::IpNetwork;
use policy::Policy;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::{
    analysis::{Analysis, EndpointRecord, FindingRecord, SpecOutcome},
    capture::{
        self, Capture,
        connections::TrackerLimits,
        probes::ProbeConfig,
        record::{CallRecord, Peer, Redaction},
    },
    cli::{
        Args, CaptureArgs, Command, HookArg, IdentityArgs, KubernetesMode, PodScopeArg, RunArgs,
        Switch,
    },
    detection,
    enforcer::{Enforcer, monotonic_ns},
    events::{self, DropEvents},
    export::{self as export_records, DropFacts, ExportConfig, Exporter},
    file_source::{DetectionSource, InventorySource, PolicySource},
    identity::{NodeIdentity, PeerIdentity, host_addresses, wall_millis},
    interfaces,
    kubernetes::{self, Change, Update},
    loader::{self, Datapath, Hook},
    metrics::{self, Metrics},
    policies::{Enforcement, Policies, Refusal},
    privileges,
    protocol::ip_protocol_name,
    report::{InterfaceRecord, Record, Reporter},
    traffic::ChangeTracker,
};

/// How often the agent refreshes metrics, expires timed blocks, looks for new or vanished
/// interfaces, and checks the policy file for edits.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// A process's TLS traffic gave no plaintext from any hooked TLS library (docs/tls-plaintext.md).
const TLS_OPAQUE_FINDING: &str = "visibility.tls_opaque";

pub fn main(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Cleanup { state_dir }) => cleanup(&state_dir),
        Some(Command::Crd) => {
            print!("{}", crate::kubernetes::crd_yaml());
            Ok(())
        }
        None => run(args.run),
    }
}

fn cleanup(state_dir: &Path) -> anyhow::Result<()> {
    privileges::check()?;
    let cleaned = loader::cleanup(state_dir)?;
    info!(
        state_dir = %state_dir.display(),
        links = cleaned.links,
        maps = cleaned.maps,
        "removed Moat's programs, links and maps; nothing of Moat is enforced now"
    );
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.interfaces.is_empty()
        && args.interface_globs.is_empty()
        && args.capture.capture == Switch::Off
    {
        bail!(
            "with --capture off there is nothing to do: name the interfaces to enforce on with \
             --iface NAME or --iface-glob GLOB (see --help)"
        );
    }
    let metrics_addr: Option<SocketAddr> = match args.metrics_addr.as_str() {
        "off" => None,
        text => Some(text.parse().with_context(|| {
            format!(
                "--metrics-addr {text:?} is not an address; write one like 127.0.0.1:9464, or off"
            )
        })?),
    };
    privileges::check()?;
    // Everything that can be checked without touching the kernel is, so a typo fails before any
    // enforcement changes.
    let mut source = args.policy.as_deref().map(PolicySource::new);
    let policy = match &mut source {
        Some(source) => source.load()?,
        None => Arc::new(Policy::allow_all()),
    };
    let mut inventory_source = args.identity.inventory.as_deref().map(InventorySource::new);
    let inventory = match &mut inventory_source {
        Some(source) => source.load()?,
        None => Arc::new(identity::Inventory::default()),
    };
    let mut analysis = Analysis::new(
        &args.analysis,
        detection::hash_key(args.analysis.hash_key_file.as_deref())?,
    );
    let mut detection_source = args.analysis.detection.as_deref().map(DetectionSource::new);
    if let Some(source) = &mut detection_source {
        analysis.set_detection(source.load()?);
    }
    for interface in &args.interfaces {
        loader::ifindex_of(interface)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(
        args,
        source,
        policy,
        (inventory_source, inventory),
        (detection_source, analysis),
        metrics_addr,
    ))
}

/// Whether to watch Kubernetes, per `--kubernetes`.
fn kubernetes_wanted(args: &IdentityArgs) -> bool {
    match args.kubernetes {
        KubernetesMode::On => true,
        KubernetesMode::Off => false,
        KubernetesMode::Auto => {
            args.kubeconfig.is_some() || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        }
    }
}

async fn kubernetes_client(args: &IdentityArgs) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}: cannot read it", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}: not a usable kubeconfig", path.display()))?
        }
        None => kube::Config::incluster().context(
            "--kubernetes: not in a pod (no service account); give --kubeconfig FILE or --kubernetes off",
        )?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// TLS towards an `https://` collector: its CA, and this agent's certificate for mTLS.
fn collector_tls(
    args: &crate::cli::ExportArgs,
) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    if !args
        .collector
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"))
    {
        return Ok(None);
    }
    let read = |flag: &str, path: &Path| {
        std::fs::read(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))
    };
    let Some(ca) = &args.collector_ca else {
        bail!(
            "--collector {}: an https:// collector needs --collector-ca FILE, the CA (PEM) that \
             signed its certificate",
            args.collector.as_deref().unwrap_or_default()
        );
    };
    let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(read("--collector-ca", ca)?),
    );
    if let (Some(certificate), Some(key)) = (&args.collector_cert, &args.collector_key) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read("--collector-cert", certificate)?,
            read("--collector-key", key)?,
        ));
    }
    Ok(Some(tls))
}

/// The host name, the default node name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

struct Agent {
    args: RunArgs,
    datapath: Datapath,
    enforcer: Enforcer,
    source: Option<PolicySource>,
    inventory_source: Option<InventorySource>,
    detection_source: Option<DetectionSource>,
    reporter: Reporter<io::BufWriter<io::StdoutLock<'static>>>,
    metrics: Metrics,
    identity: NodeIdentity,
    policies: Policies,
    /// With Kubernetes, the first policy waits for pods, namespaces and MoatPolicies to be
    /// listed: enforcing before would drop the selectors' pods and the MoatPolicies' rules from
    /// what the previous agent left in force.
    awaiting_sync: Vec<&'static str>,
    /// Standalone: this host's addresses, as last named.
    host_addresses: Vec<std::net::IpAddr>,
    kube_client: Option<kube::Client>,
    kube_events: Option<kubernetes::EventPublisher>,
    /// With Kubernetes: the ConfigMaps that annotated Services' specs are in.
    config_map_watches: Option<kubernetes::ConfigMapWatches>,
    exporter: Option<Exporter>,
    analysis: Analysis,
    /// The inventory file's `apis:`.
    inventory_apis: Vec<ApiBinding>,
    /// What Services' `moat.dev/openapi` annotations bind.
    annotated_apis: kubernetes::AnnotatedApis,
    /// The inventory last shipped to the collector, and when it was looked at.
    inventory_shipped: (Option<moat_api::v1::Inventory>, Option<std::time::Instant>),
    crypto: crate::crypto::CryptoJudge,
}

/// How often the agent looks whether its inventory (ranges, workloads) changed, to ship it.
const INVENTORY_INTERVAL: Duration = Duration::from_secs(10);

/// Updates from the Kubernetes watches wait here for the main loop; a full channel holds the
/// watches back rather than losing an update.
const KUBE_UPDATE_QUEUE: usize = 1024;
/// At most this many updates are applied per turn of the loop, so a relist of a large cluster
/// does not starve capture.
const KUBE_UPDATES_PER_TURN: usize = 4096;

async fn serve(
    args: RunArgs,
    source: Option<PolicySource>,
    policy: Arc<Policy>,
    (inventory_source, inventory): (Option<InventorySource>, Arc<identity::Inventory>),
    (detection_source, analysis): (Option<DetectionSource>, Analysis),
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    if let Some(address) = metrics_addr {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("--metrics-addr {address}: cannot listen there"))?;
        drop(listener);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = metrics::serve(address, metrics).await {
                warn!(%address, %error, "metrics endpoint stopped");
            }
        });
    }

    let kube_client = if kubernetes_wanted(&args.identity) {
        Some(kubernetes_client(&args.identity).await?)
    } else {
        None
    };
    let mut datapath = Datapath::load(&args.state_dir)?;
    let mut enforcer = Enforcer::adopt(&datapath)?;
    let mut policies = Policies::default();
    if let Some(source) = &source {
        policies.set_file(source.path().display().to_string(), policy.clone());
    }
    let apis = inventory.apis.clone();
    let mut node_identity =
        NodeIdentity::new(Arc::unwrap_or_clone(inventory), capture::cgroup2_mount());
    let awaiting_sync = if kube_client.is_some() {
        vec!["pods", "namespaces", "moatpolicies"]
    } else {
        // The policy is in force before the program runs anywhere new, so no packet on a freshly
        // attached interface is judged by an empty policy.
        let (next, _) = policies.next(node_identity.index());
        if let Some(next) = next {
            enforcer.apply(&mut datapath, next.policy.clone())?;
            policies.enforced(next.policy);
        }
        Vec::new()
    };
    let node_name = args.identity.node_name.clone().unwrap_or_else(host_name);
    if kube_client.is_some() {
        node_identity.set_local_node(&node_name);
    }
    let host = if kube_client.is_none() {
        let addresses = host_addresses();
        node_identity.set_host(&node_name, addresses.clone());
        addresses
    } else {
        Vec::new()
    };
    let exporter = match &args.export.collector {
        Some(url) => {
            info!(collector = url, "shipping records to the collector");
            Some(Exporter::start(ExportConfig {
                url: url.clone(),
                node: node_name.clone(),
                queue_records: args.export.export_queue_records,
                batch_records: args.export.export_batch_records.max(1),
                flush_interval: args.export.export_interval,
                tls: collector_tls(&args.export)?,
                spool: args
                    .export
                    .spool_dir
                    .clone()
                    .map(|dir| (dir, args.export.spool_bytes)),
            })?)
        }
        None => None,
    };
    let mut config_map_watches = None;
    let mut kube_updates = kube_client.as_ref().map(|client| {
        let (sender, receiver) = tokio::sync::mpsc::channel(KUBE_UPDATE_QUEUE);
        config_map_watches = Some(kubernetes::ConfigMapWatches::new(
            client.clone(),
            sender.clone(),
        ));
        let target = kubernetes::WatchTarget {
            node_name: Some(node_name.clone()),
            scope: match args.identity.kube_pods {
                PodScopeArg::Cluster => kubernetes::Scope::Cluster,
                PodScopeArg::Node => kubernetes::Scope::Node,
            },
            policies: true,
        };
        kubernetes::spawn_watches(client.clone(), &target, sender);
        info!(node = %node_name, "watching Kubernetes");
        receiver
    });
    for interface in &args.interfaces {
        datapath.attach(interface, hook_of(&args))?;
    }
    let mut agent = Agent {
        // Buffered, so a burst of calls costs one write; every record outside a burst is flushed.
        reporter: Reporter::new(io::BufWriter::new(io::stdout().lock()), args.output),
        args,
        datapath,
        enforcer,
        source,
        inventory_source,
        detection_source,
        metrics,
        identity: node_identity,
        policies,
        awaiting_sync,
        host_addresses: host,
        kube_events: kube_client
            .as_ref()
            .map(|client| kubernetes::EventPublisher::start(client.clone(), &node_name)),
        kube_client,
        config_map_watches,
        exporter,
        analysis,
        inventory_apis: apis,
        annotated_apis: kubernetes::AnnotatedApis::default(),
        inventory_shipped: (None, None),
        crypto: crate::crypto::CryptoJudge::default(),
    };
    agent.bind_apis()?;
    agent.attach_glob_matches(false)?;
    let mut drop_events = DropEvents::open(&mut agent.datapath)?;
    let mut calls = Vec::new();
    let mut capture = match agent.args.capture.capture {
        Switch::On => Some(start_capture(&agent.args.capture, &mut calls)?),
        Switch::Off => None,
    };
    agent.emit_calls(&mut calls)?;
    agent.emit_connections(capture.as_mut())?;

    let now = SystemTime::now();
    let attachments: Vec<_> = agent.datapath.attachments().cloned().collect();
    for attachment in &attachments {
        agent
            .reporter
            .name_interface(attachment.ifindex, &attachment.interface);
    }
    if let Some(source) = &agent.source
        && agent.awaiting_sync.is_empty()
    {
        agent
            .reporter
            .emit(
                &applied_record(&[source.path().display().to_string()], &policy, 0, "start"),
                now,
            )
            .context("writing to standard output")?;
    }
    agent
        .reporter
        .emit(
            &Record::Ready {
                interfaces: attachments.iter().map(InterfaceRecord::from).collect(),
                state_dir: &agent.args.state_dir,
                policy: agent.source.as_ref().map(PolicySource::path),
                capture: capture.is_some(),
            },
            now,
        )
        .context("writing to standard output")?;
    agent.refresh_metrics(capture.as_mut());

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut reports = tokio::time::interval(agent.args.report_interval);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    reports.tick().await;
    let mut tracker = ChangeTracker::default();
    loop {
        tokio::select! {
            _ = reports.tick() => {
                agent.report_traffic(&mut tracker, false)?;
                agent.report_capture(capture.as_mut())?;
                agent.report_endpoints()?;
            }
            _ = housekeeping.tick() => {
                if let Some(capture) = &mut capture {
                    capture.housekeeping(monotonic_ns(), &mut calls)?;
                    agent.emit_calls(&mut calls)?;
                    agent.emit_connections(Some(capture))?;
                }
                agent.report_opaque_tls(capture.as_mut())?;
                agent.housekeeping(capture.as_mut())?;
            }
            batch = next_calls(capture.as_mut(), &mut calls) => {
                batch.context("reading capture events from the kernel")?;
                agent.emit_calls(&mut calls)?;
                agent.emit_connections(capture.as_mut())?;
            }
            _ = hangup.recv() => {
                info!("SIGHUP: reloading the policy");
                agent.reload()?;
            }
            Some(update) = next_update(kube_updates.as_mut()) => {
                agent.kube_updates(update, kube_updates.as_mut())?;
            }
            batch = drop_events.next_batch() => {
                for event in batch.context("reading drop events from the kernel")? {
                    agent.report_drop(&event)?;
                }
                let malformed = drop_events.malformed;
                agent.metrics.update(|snapshot| snapshot.malformed_drop_events = malformed);
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    if let Some(capture) = &mut capture {
        capture.stop(monotonic_ns(), &mut calls);
        agent.emit_calls(&mut calls)?;
        agent.emit_connections(Some(capture))?;
    }
    agent.report_opaque_tls(capture.as_mut())?;
    agent.report_traffic(&mut tracker, true)?;
    agent.report_capture(capture.as_mut())?;
    if let Some(exporter) = &agent.exporter {
        exporter.shutdown();
    }
    info!(
        state_dir = %agent.args.state_dir.display(),
        "stopping; enforcement stays in place (the next agent takes it over; `moat-agent cleanup` removes it)"
    );
    Ok(())
}

fn start_capture(args: &CaptureArgs, calls: &mut Vec<CallRecord>) -> anyhow::Result<Capture> {
    let cgroups = args
        .cgroups
        .iter()
        .map(|cgroup| cgroup_id(cgroup))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let probe = ProbeConfig {
        max_payload: args.capture_event_bytes,
        ring_bytes: args.capture_ring_bytes,
        ports: args.ports.clone(),
        cgroups,
        processes: args.processes.clone(),
    };
    let limits = TrackerLimits {
        max_connections: args.capture_max_connections,
        max_connection_bytes: args.capture_max_connection_bytes,
        idle_timeout_ns: u64::try_from(args.capture_idle_timeout.as_nanos()).unwrap_or(u64::MAX),
        mirror_wait_ns: MIRROR_WAIT.as_nanos() as u64,
        max_awaiting_mirror: MAX_AWAITING_MIRROR,
        parser: protocols::Limits {
            max_body_bytes: args.capture_body_bytes,
            ..protocols::Limits::default()
        },
    };
    let capture = Capture::start(
        &probe,
        limits,
        Redaction::new(&args.redact_headers),
        monotonic_ns(),
        calls,
    )
    .context("starting API call capture (--capture off runs without it)")?;
    info!(
        ports = ?args.ports,
        processes = ?args.processes,
        cgroups = ?args.cgroups,
        "capturing API calls"
    );
    Ok(capture)
}

/// How long a call seen at one end of a connection waits for the other end, when both are on
/// this node, so the pair is reported once.
const MIRROR_WAIT: Duration = Duration::from_secs(2);
const MAX_AWAITING_MIRROR: usize = 4096;

/// A cgroup id from `--capture-cgroup`: a number, or a directory of the cgroup v2 hierarchy
/// (absolute, or relative to where it is mounted, as /proc/PID/cgroup shows it).
fn cgroup_id(text: &str) -> anyhow::Result<u64> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    let mount = capture::cgroup2_mount().context(
        "--capture-cgroup: no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo); mount one \
         or give the cgroup's id",
    )?;
    capture::cgroup_id(&mount, text).with_context(|| {
        format!(
            "--capture-cgroup {text:?} is not a cgroup directory; give a path in the cgroup v2 \
             hierarchy at {} (as /proc/PID/cgroup shows it) or a cgroup id",
            mount.display()
        )
    })
}

/// The next update from the Kubernetes watches, or never without Kubernetes.
async fn next_update(updates: Option<&mut tokio::sync::mpsc::Receiver<Update>>) -> Option<Update> {
    match updates {
        Some(updates) => updates.recv().await,
        None => std::future::pending().await,
    }
}

/// The next completed calls, or never when capture is off.
async fn next_calls(capture: Option<&mut Capture>, calls: &mut Vec<CallRecord>) -> io::Result<()> {
    match capture {
        Some(capture) => capture.next_batch(calls).await,
        None => std::future::pending().await,
    }
}

fn hook_of(args: &RunArgs) -> Hook {
    match args.hook {
        HookArg::Auto => Hook::Auto,
        HookArg::Xdp => Hook::Xdp(args.xdp_mode),
        HookArg::Tcx => Hook::Tcx,
    }
}

fn applied_record<'a>(
    sources: &'a [String],
    policy: &Policy,
    pod_addresses: usize,
    reason: &'a str,
) -> Record<'a> {
    Record::PolicyApplied {
        sources,
        identities: policy.identities.len(),
        rules: policy.rules.len(),
        blocklist_entries: policy.blocklist.len(),
        rate_limits: policy.rate_limits.len(),
        pod_addresses,
        reason,
    }
}

impl Agent {
    fn emit(&mut self, record: &Record<'_>, now: SystemTime) -> anyhow::Result<()> {
        self.reporter
            .emit(record, now)
            .context("writing to standard output")
    }

    fn emit_calls(&mut self, calls: &mut Vec<CallRecord>) -> anyhow::Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let now_ns = monotonic_ns();
        let now_ms = wall_millis(now);
        for mut call in calls.drain(..) {
            let at = if call.started_ns == 0 {
                now_ms
            } else {
                now_ms - (now_ns.saturating_sub(call.started_ns) / 1_000_000) as i64
            };
            for peer in [&mut call.client, &mut call.server] {
                peer.identity = Some(self.identity.peer(peer.ip, at, peer.process()));
            }
            let judged = self.analysis.observe(&mut call, now);
            if let Some(exporter) = &self.exporter {
                exporter.push(export_records::call_record(exporter.next_id(), &call, now));
            }
            self.reporter
                .write(&Record::Call(&call), now)
                .context("writing to standard output")?;
            for judged in judged {
                self.report_finding(&judged.finding, Some(&call), now)?;
                if let Some(ttl) = judged.block_for {
                    self.block_caller(&call, &judged.finding, ttl, now)?;
                }
            }
        }
        self.reporter.flush().context("writing to standard output")
    }

    /// Reports each connection whose encryption became known, and the `crypto.*` findings it
    /// shows.
    fn emit_connections(&mut self, capture: Option<&mut Capture>) -> anyhow::Result<()> {
        let Some(capture) = capture else {
            return Ok(());
        };
        let connections = capture.take_connection_facts();
        if connections.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let now_ns = monotonic_ns();
        let now_ms = wall_millis(now);
        for mut facts in connections {
            let at = now_ms - (now_ns.saturating_sub(facts.time_ns) / 1_000_000) as i64;
            for peer in [&mut facts.client, &mut facts.server] {
                peer.identity = Some(self.identity.peer(peer.ip, at, peer.process()));
            }
            let record = crate::crypto::ConnectionRecord {
                client: &facts.client,
                server: &facts.server,
                protocol: facts.protocol_name(),
                encryption: facts.encryption(),
                tls: facts.tls.as_ref().map(crate::crypto::TlsRecord::new),
                seen_at: &facts.seen_at,
            };
            if let Some(exporter) = &self.exporter {
                let not_after = facts
                    .tls
                    .as_ref()
                    .and_then(|tls| tls.server_certificate.as_ref())
                    .and_then(|certificate| certificate.not_after);
                exporter.push(export_records::connection_record(
                    exporter.next_id(),
                    &record,
                    not_after,
                    now,
                ));
            }
            self.reporter
                .write(&Record::Connection(&record), now)
                .context("writing to standard output")?;
            let findings = self.crypto.findings(
                &facts,
                self.analysis.detection(),
                self.args.analysis.cert_expiry_warning,
                now,
            );
            for finding in findings {
                self.report_finding_between(
                    &finding,
                    Some(&facts.client),
                    Some(&facts.server),
                    None,
                    now,
                )?;
            }
        }
        self.reporter.flush().context("writing to standard output")
    }

    /// Ships what the identity index knows of ranges and workloads when it changed, looking at
    /// most every [`INVENTORY_INTERVAL`].
    fn ship_inventory(&mut self, now: SystemTime) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let (shipped, looked) = &mut self.inventory_shipped;
        if looked.is_some_and(|looked| looked.elapsed() < INVENTORY_INTERVAL) {
            return;
        }
        *looked = Some(std::time::Instant::now());
        let current = export_records::inventory(self.identity.index());
        if shipped.as_ref() == Some(&current) {
            return;
        }
        let mut record = current.clone();
        record.id = Some(exporter.next_id());
        record.time_unix_nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as i64);
        exporter.push(moat_api::v1::Record {
            kind: Some(moat_api::v1::record::Kind::Inventory(record)),
        });
        *shipped = Some(current);
    }

    /// Binds the specs the inventory and Services' annotations name, watches the ConfigMaps
    /// those are in, and says how loading went.
    fn bind_apis(&mut self) -> anyhow::Result<()> {
        let mut apis = self.inventory_apis.clone();
        for api in self.annotated_apis.bindings() {
            if self
                .inventory_apis
                .iter()
                .any(|bound| bound.name == api.name)
            {
                info!(
                    api = %api.name,
                    annotation_spec = %api.spec,
                    "the inventory binds an API of this name; its binding wins over the Service's moat.dev/openapi annotation"
                );
                continue;
            }
            apis.push(api.clone());
        }
        let outcomes = self.analysis.bind(&apis, SystemTime::now());
        if let Some(watches) = &mut self.config_map_watches {
            watches.follow(&self.analysis.config_maps());
        }
        self.report_specs(&outcomes)
    }

    fn report_specs(&mut self, outcomes: &[SpecOutcome]) -> anyhow::Result<()> {
        let now = SystemTime::now();
        for outcome in outcomes {
            let record = match outcome {
                SpecOutcome::Loaded {
                    api,
                    file,
                    operations,
                    warnings,
                } => Record::SpecLoaded {
                    api,
                    file,
                    operations: *operations,
                    warnings,
                },
                SpecOutcome::Rejected { api, file, error } => {
                    Record::SpecRejected { api, file, error }
                }
            };
            self.emit(&record, now)?;
        }
        Ok(())
    }

    /// `visibility.tls_opaque`: processes whose TLS Moat could not read (no hooked library gave
    /// their plaintext), each reported at most once an hour by the capture.
    fn report_opaque_tls(&mut self, capture: Option<&mut Capture>) -> anyhow::Result<()> {
        let Some(capture) = capture else {
            return Ok(());
        };
        let opaque = capture.take_opaque();
        if opaque.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let now_ms = wall_millis(now);
        for seen in opaque {
            let endpoints = seen.endpoints;
            let mut local = Peer::new(endpoints.local, Some(&seen.task));
            let mut remote = Peer::new(endpoints.remote, None);
            for peer in [&mut local, &mut remote] {
                peer.identity = Some(self.identity.peer(peer.ip, now_ms, peer.process()));
            }
            let (_, server) = endpoints.client_server();
            let role = if endpoints.is_client {
                "client"
            } else {
                "server"
            };
            let finding = intelligence::Finding {
                kind: TLS_OPAQUE_FINDING.into(),
                rule: String::new().into(),
                severity: intelligence::Severity::Low,
                service: server.to_string(),
                method: String::new(),
                endpoint: String::new(),
                spec_pointer: None,
                message: format!(
                    "process {comm} (pid {pid}) uses TLS that Moat cannot read: its connection \
                     with {remote} (as {role}) began with a TLS handshake, but no hooked TLS \
                     library ({library}) gave its plaintext; it may use Go crypto/tls, rustls, \
                     Java or a statically linked TLS library",
                    comm = seen.task.comm,
                    pid = seen.task.tgid,
                    remote = endpoints.remote,
                    library = crate::capture::connections::TLS_LIBRARY,
                ),
                evidence: String::new(),
                mode: intelligence::finding::Mode::Detect,
            };
            let (source, destination) = if endpoints.is_client {
                (&local, &remote)
            } else {
                (&remote, &local)
            };
            self.report_finding_between(&finding, Some(source), Some(destination), None, now)?;
        }
        self.reporter.flush().context("writing to standard output")
    }

    fn report_finding(
        &mut self,
        finding: &intelligence::Finding,
        call: Option<&CallRecord>,
        now: SystemTime,
    ) -> anyhow::Result<()> {
        self.report_finding_between(
            finding,
            call.map(|call| &call.client),
            call.map(|call| &call.server),
            call.and_then(|call| call.caller.as_ref()),
            now,
        )
    }

    fn report_finding_between(
        &mut self,
        finding: &intelligence::Finding,
        source: Option<&Peer>,
        destination: Option<&Peer>,
        caller: Option<&intelligence::Caller>,
        now: SystemTime,
    ) -> anyhow::Result<()> {
        self.metrics.update(|snapshot| {
            *snapshot
                .findings
                .entry(finding.kind.to_string())
                .or_default() += 1;
        });
        let record = FindingRecord {
            finding,
            source,
            destination,
            caller,
        };
        if let Some(exporter) = &self.exporter {
            exporter.push(export_records::finding_record(
                exporter.next_id(),
                &record,
                now,
            ));
        }
        self.emit(&Record::Finding(&record), now)
    }

    /// Drops the caller's packets for `ttl`, unless it is this node itself or already blocked.
    fn block_caller(
        &mut self,
        call: &CallRecord,
        cause: &intelligence::Finding,
        ttl: Duration,
        now: SystemTime,
    ) -> anyhow::Result<()> {
        let source = call.client.ip;
        let network = IpNetwork::from(source);
        if source.is_loopback() || self.host_addresses.contains(&source) {
            warn!(%source, finding = %cause.kind, "not blocking this node's own address");
            self.count_unmade_block("own_address");
            return Ok(());
        }
        if self
            .enforcer
            .timed_blocks()
            .any(|block| block.network == network)
        {
            return Ok(());
        }
        let reason = format!(
            "{} on {} {} {}",
            cause.kind, cause.service, cause.method, cause.endpoint
        );
        match self
            .enforcer
            .block(&mut self.datapath, network, ttl, &reason)
        {
            Ok(_) => {
                self.emit(
                    &Record::TimedBlock {
                        network: network.to_string(),
                        reason: &reason,
                        ttl_seconds: ttl.as_secs(),
                    },
                    now,
                )?;
                let blocked = intelligence::Finding {
                    kind: intelligence::FindingKind::SourceBlocked.as_str().into(),
                    rule: cause.kind.clone(),
                    severity: intelligence::FindingKind::SourceBlocked.default_severity(),
                    message: format!(
                        "{source} is dropped for {} s: the request that prompted it had already reached the server",
                        ttl.as_secs()
                    ),
                    evidence: format!("after {}", cause.kind),
                    spec_pointer: cause.spec_pointer.clone(),
                    ..cause.clone()
                };
                self.report_finding(&blocked, Some(call), now)
            }
            Err(error) => {
                warn!(%source, %error, "could not block the source of a finding in block mode");
                self.count_unmade_block(match error {
                    crate::enforcer::EnforceError::TooManyTimedBlocks { .. } => "table_full",
                    _ => "error",
                });
                Ok(())
            }
        }
    }

    /// A block mode finding whose source was not blocked, by why: loss is counted, not only
    /// logged.
    fn count_unmade_block(&self, reason: &'static str) {
        self.metrics.update(|snapshot| {
            *snapshot.blocks_not_made.entry(reason).or_default() += 1;
        });
    }

    /// `api.endpoint` and `api.dataflow` records for the endpoints called and the data flows
    /// seen since the last report.
    fn report_endpoints(&mut self) -> anyhow::Result<()> {
        let now = SystemTime::now();
        for (service, key, stats) in self.analysis.changed_endpoints() {
            let record = EndpointRecord::new(&service, &key, &stats);
            if let Some(exporter) = &self.exporter {
                exporter.push(export_records::endpoint_record(
                    exporter.next_id(),
                    &record,
                    now,
                ));
            }
            self.reporter
                .write(&Record::Endpoint(&record), now)
                .context("writing to standard output")?;
        }
        for flow in self.analysis.changed_flows() {
            let record = crate::dataflow::DataFlowRecord::from(&flow);
            if let Some(exporter) = &self.exporter {
                exporter.push(export_records::data_flow_record(
                    exporter.next_id(),
                    &record,
                    now,
                ));
            }
            self.reporter
                .write(&Record::DataFlow(&record), now)
                .context("writing to standard output")?;
        }
        self.reporter.flush().context("writing to standard output")
    }

    fn report_capture(&mut self, capture: Option<&mut Capture>) -> anyhow::Result<()> {
        let Some(capture) = capture else {
            return Ok(());
        };
        let stats = capture.stats()?;
        self.emit(&Record::CaptureStats(&stats.into()), SystemTime::now())
    }

    fn report_traffic(&mut self, tracker: &mut ChangeTracker, closing: bool) -> anyhow::Result<()> {
        let snapshot = self.datapath.source_traffic()?;
        let changed = if closing {
            tracker.everything(snapshot)
        } else {
            tracker.changes(snapshot)
        };
        self.reporter
            .traffic(&changed, self.datapath.xdp_stats()?, SystemTime::now())
            .context("writing to standard output")
    }

    fn housekeeping(&mut self, capture: Option<&mut Capture>) -> anyhow::Result<()> {
        let now = SystemTime::now();
        for lapsed in self.enforcer.expire_blocks(&mut self.datapath)? {
            let record = Record::TimedBlockExpired {
                network: lapsed.network.to_string(),
                reason: &lapsed.reason,
            };
            self.emit(&record, now)?;
        }
        self.attach_glob_matches(true)?;
        if self.kube_client.is_none() {
            let addresses = host_addresses();
            if addresses != self.host_addresses {
                let name = self
                    .args
                    .identity
                    .node_name
                    .clone()
                    .unwrap_or_else(host_name);
                self.identity.set_host(&name, addresses.clone());
                self.host_addresses = addresses;
            }
        }
        if self
            .inventory_source
            .as_mut()
            .is_some_and(InventorySource::changed)
        {
            self.reload_inventory()?;
        }
        if self
            .detection_source
            .as_mut()
            .is_some_and(DetectionSource::changed)
        {
            self.reload_detection()?;
        }
        if self.source.as_mut().is_some_and(PolicySource::changed) {
            info!("policy file changed: reloading");
            self.reload()?;
        }
        let outcomes = self.analysis.reload_changed(now);
        self.report_specs(&outcomes)?;
        self.ship_inventory(now);
        for finding in self.analysis.unused(now) {
            self.report_finding(&finding, None, now)?;
        }
        self.refresh_metrics(capture);
        Ok(())
    }

    /// Attaches to interfaces newly matching a glob, and lets go of vanished ones.
    fn attach_glob_matches(&mut self, announce: bool) -> anyhow::Result<()> {
        let present = interfaces::list();
        let gone: Vec<(String, u32)> = self
            .datapath
            .attachments()
            .filter(|attachment| !present.contains(&attachment.interface))
            .map(|attachment| (attachment.interface.clone(), attachment.ifindex))
            .collect();
        for (interface, ifindex) in gone {
            self.datapath.forget(&interface);
            self.reporter.forget_interface(ifindex);
            if announce {
                self.emit(
                    &Record::Detached {
                        interface: &interface,
                    },
                    SystemTime::now(),
                )?;
            }
        }
        if self.args.interface_globs.is_empty() {
            return Ok(());
        }
        for interface in present {
            let wanted = self
                .args
                .interface_globs
                .iter()
                .any(|glob| interfaces::glob_matches(glob, &interface));
            if !wanted || self.datapath.is_attached(&interface) {
                continue;
            }
            match self.datapath.attach(&interface, hook_of(&self.args)) {
                Ok(attachment) => {
                    self.reporter
                        .name_interface(attachment.ifindex, &attachment.interface);
                    if announce {
                        self.emit(&Record::Attached((&attachment).into()), SystemTime::now())?;
                    }
                }
                // An interface can vanish between listing and attaching, or belong to someone
                // else's XDP program; neither stops the agent.
                Err(error) => warn!(interface, %error, "not attached"),
            }
        }
        Ok(())
    }

    fn reload(&mut self) -> anyhow::Result<()> {
        let Some(source) = &mut self.source else {
            info!("no --policy file; nothing to reload");
            return Ok(());
        };
        let path = source.path().to_owned();
        match source.load() {
            Ok(policy) => {
                self.policies.set_file(path.display().to_string(), policy);
                self.enforce("file")
            }
            Err(error) => {
                warn!(%error, "policy rejected; the previous one stays in force");
                self.metrics
                    .update(|snapshot| snapshot.reloads_rejected += 1);
                self.emit(
                    &Record::PolicyRejected {
                        file: Some(&path),
                        moat_policy: None,
                        error: error.to_string(),
                    },
                    SystemTime::now(),
                )
            }
        }
    }

    fn reload_inventory(&mut self) -> anyhow::Result<()> {
        let Some(source) = &mut self.inventory_source else {
            return Ok(());
        };
        let path = source.path().to_owned();
        let now = SystemTime::now();
        match source.load() {
            Ok(inventory) => {
                info!(file = %path.display(), "inventory applied");
                self.inventory_apis = inventory.apis.clone();
                self.identity.set_inventory(Arc::unwrap_or_clone(inventory));
                self.emit(&Record::InventoryApplied { file: &path }, now)?;
                self.bind_apis()
            }
            Err(error) => {
                warn!(%error, "inventory rejected; the previous one stays in use");
                self.emit(
                    &Record::InventoryRejected {
                        file: &path,
                        error: error.to_string(),
                    },
                    now,
                )
            }
        }
    }

    fn reload_detection(&mut self) -> anyhow::Result<()> {
        let Some(source) = &mut self.detection_source else {
            return Ok(());
        };
        let path = source.path().to_owned();
        let now = SystemTime::now();
        match source.load() {
            Ok(config) => {
                info!(file = %path.display(), "detection file applied");
                self.analysis.set_detection(config);
                self.emit(&Record::DetectionApplied { file: &path }, now)
            }
            Err(error) => {
                warn!(%error, "detection file rejected; the previous one stays in use");
                self.emit(
                    &Record::DetectionRejected {
                        file: &path,
                        error: error.to_string(),
                    },
                    now,
                )
            }
        }
    }

    /// Puts the combined policy (file, MoatPolicies, selectors resolved) in force if it changed.
    fn enforce(&mut self, reason: &str) -> anyhow::Result<()> {
        if !self.awaiting_sync.is_empty() {
            return Ok(());
        }
        let (next, refusals) = self.policies.next(self.identity.index());
        for refusal in refusals {
            self.refuse(refusal)?;
        }
        let Some(Enforcement {
            policy,
            sources,
            pod_addresses,
            overlaps,
        }) = next
        else {
            return Ok(());
        };
        for overlap in &overlaps {
            warn!(
                address = %overlap.address,
                kept = overlap.kept,
                dropped = overlap.dropped,
                "two identities select the same pod; it belongs to the first by name"
            );
        }
        let now = SystemTime::now();
        match self.enforcer.apply(&mut self.datapath, policy.clone()) {
            Ok(()) => {
                info!(?sources, reason, pod_addresses, "policy applied");
                self.metrics
                    .update(|snapshot| snapshot.reloads_applied += 1);
                self.policies.enforced(policy.clone());
                self.emit(
                    &applied_record(&sources, &policy, pod_addresses, reason),
                    now,
                )
            }
            Err(error) => {
                warn!(%error, "policy rejected; the previous one stays in force");
                self.metrics
                    .update(|snapshot| snapshot.reloads_rejected += 1);
                let file = self.source.as_ref().map(|source| source.path().to_owned());
                self.emit(
                    &Record::PolicyRejected {
                        file: file.as_deref(),
                        moat_policy: None,
                        error: error.to_string(),
                    },
                    now,
                )
            }
        }
    }

    /// A MoatPolicy left out: a record, a log line, and a Kubernetes Event on the object, where
    /// `kubectl describe` shows it.
    fn refuse(&mut self, refusal: Refusal) -> anyhow::Result<()> {
        warn!(
            policy = refusal.policy,
            error = refusal.error,
            "MoatPolicy refused; the others stay in force"
        );
        self.metrics
            .update(|snapshot| snapshot.reloads_rejected += 1);
        if let Some(events) = &self.kube_events {
            events.refused(&refusal.policy, &refusal.error);
        }
        self.emit(
            &Record::PolicyRejected {
                file: None,
                moat_policy: Some(&refusal.policy),
                error: refusal.error.clone(),
            },
            SystemTime::now(),
        )
    }

    /// Applies an update from the Kubernetes watches and whatever else is already queued.
    fn kube_updates(
        &mut self,
        first: Update,
        mut queue: Option<&mut tokio::sync::mpsc::Receiver<Update>>,
    ) -> anyhow::Result<()> {
        let mut pods_changed = false;
        let mut policies_changed = false;
        let mut apis_changed = false;
        let mut pending = Some(first);
        let mut applied = 0;
        while let Some(update) = pending.take() {
            applied += 1;
            let now = SystemTime::now();
            match update {
                Update::Policies(change) => {
                    policies_changed = true;
                    let refusals = match change {
                        Change::Apply(object) => {
                            let policy = object.policy();
                            self.policies
                                .set_custom(object.key(), policy)
                                .into_iter()
                                .collect()
                        }
                        Change::Delete(key) => {
                            self.policies.remove_custom(&key);
                            Vec::new()
                        }
                        Change::Replace(objects) => self.policies.replace_custom(
                            objects
                                .into_iter()
                                .map(|object| (object.key(), object.policy()))
                                .collect(),
                        ),
                    };
                    for refusal in refusals {
                        self.refuse(refusal)?;
                    }
                }
                Update::Services(change) => {
                    let noticed = self.annotated_apis.update(&change);
                    apis_changed |= noticed.changed;
                    self.identity.apply(Update::Services(change), now);
                    for error in noticed.refused {
                        warn!(%error, "Service annotation refused");
                        let refused = Update::Rejected {
                            resource: "services",
                            error,
                        };
                        if let Some(event) = self.identity.apply(refused, now).event {
                            self.emit(&Record::KubeWatch(&event), now)?;
                        }
                    }
                }
                Update::ConfigMap {
                    namespace,
                    name,
                    documents,
                } => {
                    let outcomes = self
                        .analysis
                        .set_config_map(namespace, name, documents, now);
                    self.report_specs(&outcomes)?;
                }
                Update::Synced { resource } => {
                    self.awaiting_sync.retain(|waiting| *waiting != resource);
                    policies_changed = true;
                    let effect = self.identity.apply(Update::Synced { resource }, now);
                    if let Some(event) = effect.event {
                        self.emit(&Record::KubeWatch(&event), now)?;
                    }
                }
                update => {
                    let effect = self.identity.apply(update, now);
                    pods_changed |= effect.pods;
                    if let Some(event) = effect.event {
                        self.emit(&Record::KubeWatch(&event), now)?;
                    }
                }
            }
            if applied < KUBE_UPDATES_PER_TURN {
                pending = queue.as_mut().and_then(|queue| queue.try_recv().ok());
            }
        }
        self.identity.refresh();
        if apis_changed {
            self.bind_apis()?;
        }
        if policies_changed {
            self.enforce("kubernetes")?;
        } else if pods_changed && self.policies.has_pod_selectors() {
            self.enforce("pods")?;
        }
        Ok(())
    }

    fn report_drop(&mut self, event: &agent_common::policy::DropEvent) -> anyhow::Result<()> {
        let mut cause = self.enforcer.drop_cause(event.slot, event.counter);
        let (src, dst) = events::addresses(&event.flow);
        // A timed block has no rule name; why it was made says what the operator needs.
        if cause.reason == "timed_block"
            && let Some(block) = self.enforcer.timed_block_of(src)
        {
            cause.rule.clone_from(&block.reason);
        }
        let age = Duration::from_nanos(monotonic_ns().saturating_sub(event.time_ns));
        let when = SystemTime::now()
            .checked_sub(age)
            .unwrap_or_else(SystemTime::now);
        let interface = self.reporter.interface_name(event.ifindex);
        let protocol = ip_protocol_name(event.flow.protocol);
        let at = wall_millis(when);
        let source: PeerIdentity = self.identity.peer(src, at, None);
        let destination: PeerIdentity = self.identity.peer(dst, at, None);
        if let Some(exporter) = &self.exporter {
            let facts = DropFacts {
                reason: cause.reason,
                rule: &cause.rule,
                source: (src, event.flow.src_port, &source),
                destination: (dst, event.flow.dst_port, &destination),
                protocol: &protocol,
                interface: &interface,
            };
            exporter.push(export_records::drop_record(
                exporter.next_id(),
                &facts,
                when,
            ));
        }
        let record = Record::Denied {
            reason: cause.reason,
            rule: &cause.rule,
            src,
            dst,
            source: &source,
            destination: &destination,
            src_port: event.flow.src_port,
            dst_port: event.flow.dst_port,
            protocol: &protocol,
            interface: &interface,
        };
        self.emit(&record, when)
    }

    /// Only called once the programs are attached and the policy applied, so it also marks the
    /// agent ready.
    fn refresh_metrics(&mut self, capture: Option<&mut Capture>) {
        let capture = capture.map(|capture| capture.stats());
        let verdicts = self.enforcer.verdict_totals(&self.datapath);
        let xdp = self.datapath.xdp_stats();
        let attachments: Vec<_> = self.datapath.attachments().cloned().collect();
        let timed_blocks = self.enforcer.timed_blocks().count() as u64;
        let identity = self.identity.stats();
        let stale: std::collections::HashMap<&str, Duration> =
            self.identity.staleness().into_iter().collect();
        let kube: Vec<crate::metrics::KubeWatchStats> = self
            .identity
            .health
            .iter()
            .map(|(resource, health)| crate::metrics::KubeWatchStats {
                resource,
                synced: health.synced,
                stale_seconds: stale.get(resource).map_or(0.0, Duration::as_secs_f64),
                errors: health.errors,
                rejected: health.rejected,
            })
            .collect();
        if let (Some(exporter), Some(Ok(capture))) = (&self.exporter, &capture) {
            exporter.set_events_lost(capture.events_lost_per_cpu.iter().sum());
        }
        let export = self.exporter.as_ref().map(Exporter::stats);
        let mut analysis = self.analysis.stats();
        // crypto.* findings are held back by the same repeatAfter, in a memory of their own.
        analysis.detection.repeats_suppressed += self.crypto.repeats.suppressed;
        analysis.detection.memory_resets += self.crypto.repeats.resets;
        self.metrics.update(|snapshot| {
            snapshot.export = export;
            snapshot.analysis = analysis;
            snapshot.identity = identity;
            snapshot.kube = kube;
            match verdicts {
                Ok(verdicts) => snapshot.verdicts = verdicts,
                Err(error) => warn!(%error, "reading verdict counters"),
            }
            match xdp {
                Ok(xdp) => snapshot.xdp = xdp,
                Err(error) => warn!(%error, "reading XDP counters"),
            }
            match capture {
                Some(Ok(capture)) => snapshot.capture = Some(capture),
                Some(Err(error)) => warn!(%error, "reading capture counters"),
                None => {}
            }
            snapshot.attachments = attachments;
            snapshot.timed_blocks = timed_blocks;
            snapshot.ready = true;
        });
    }
}
