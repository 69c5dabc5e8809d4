//! Command-line flags of moat-agent.

use std::{path::PathBuf, time::Duration};

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

/// Moat's node agent. It sees every HTTP/1.1, HTTP/2 and gRPC call a process on this host makes
/// or serves (from syscall tracepoints, no sidecar; inside TLS where the process uses OpenSSL's
/// libssl.so.3, from uprobes, docs/tls-plaintext.md) and writes one `api.call` record per call;
/// and, on the interfaces it is given, it attaches Moat's kernel program (TC on pod veths, XDP on
/// uplinks), enforces a policy file there (blocklists, deny rules, isolation, per-source rate
/// limits), and reports what passed and what was dropped.
///
/// Needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON). Runs until SIGINT or SIGTERM, then
/// prints a last report listing every source. Enforcement is pinned in bpffs and stays in force
/// when the agent stops or crashes; the next agent takes it over without a gap, and
/// `moat-agent cleanup` removes it.
#[derive(Debug, Parser)]
#[command(name = "moat-agent", version, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    /// Log filter for standard error, e.g. `debug` or `agent=debug,aya=warn`. Defaults to `info`.
    #[arg(long, env = "MOAT_LOG", value_name = "FILTER", global = true)]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detach every program and remove every link and map Moat pinned under the state
    /// directory; enforcement stops. Safe to run when nothing is there.
    Cleanup {
        /// The bpffs directory the agent ran with.
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Print the CustomResourceDefinition of MoatPolicy (moat.dev/v1alpha1) as YAML, for
    /// `kubectl apply -f -`. Its schema is the policy file's (docs/policy.md).
    Crd,
}

pub const DEFAULT_STATE_DIR: &str = "/sys/fs/bpf/moat";

#[derive(Debug, ClapArgs)]
pub struct RunArgs {
    /// Interface to enforce on (the node side of a pod's veth pair, or an uplink). Repeat the flag
    /// for several interfaces. Without --iface or --iface-glob the agent only captures calls.
    #[arg(long = "iface", value_name = "NAME")]
    pub interfaces: Vec<String>,

    /// Attach to every interface whose name matches this glob (`*` and `?`), e.g. `veth*`,
    /// including interfaces created later; interfaces that disappear are let go. Repeatable;
    /// checked every second.
    #[arg(long = "iface-glob", value_name = "GLOB")]
    pub interface_globs: Vec<String>,

    /// Policy file (YAML) to enforce; docs/policy.md describes it. Edits (and SIGHUP) reload it
    /// atomically; an invalid edit is refused with file, line and field, and the last good
    /// policy stays in force. Without it, nothing is dropped.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// bpffs directory where maps and links are pinned, so enforcement survives the agent.
    /// Agents on one host must not share one.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Which kernel hook enforces on an interface: `xdp` (fastest where a NIC driver runs it
    /// natively: uplinks, physical NICs), `tcx` (TC ingress; on veth it keeps the GSO batching
    /// that XDP would make the pair give up, which costs allowed TCP most of its throughput), or
    /// `auto`: tcx on veth interfaces, xdp elsewhere.
    #[arg(long, value_enum, default_value_t = HookArg::Auto)]
    pub hook: HookArg,

    /// How XDP runs where XDP is used: `native` in the driver (fast; veth and most physical NICs have it),
    /// `generic` in the kernel's network stack (works everywhere, slower), or `auto`: native where
    /// the driver supports it, generic elsewhere. The log says which mode each interface got.
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,

    /// Format of the records on standard output: `jsonl` (one JSON object per line, for
    /// machines; docs/agent-output.md) or `text` (for people).
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    pub output: OutputFormat,

    /// How often to report traffic, e.g. `10s`, `500ms`. Each report lists the sources whose
    /// counters changed since the previous one, with totals kept in the pinned maps (so across
    /// agent restarts, until `moat-agent cleanup`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub report_interval: Duration,

    /// Address for Prometheus metrics (`/metrics`) and health checks (`/healthz`, `/readyz`).
    /// `off` disables the endpoint.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub identity: IdentityArgs,

    #[command(flatten)]
    pub export: ExportArgs,

    #[command(flatten)]
    pub analysis: AnalysisArgs,
}

/// The endpoint inventory and its findings (specs are bound in the inventory file's `apis:`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "API inventory")]
pub struct AnalysisArgs {
    /// `inventory.new_endpoint` findings (severity info) on an endpoint's first call: `detect`
    /// or `off`.
    #[arg(long, value_enum, default_value_t = NewsArg::Detect)]
    pub new_endpoint_findings: NewsArg,

    /// `inventory.new_caller` findings (severity info) on a caller's first call to an endpoint:
    /// `detect` or `off`.
    #[arg(long, value_enum, default_value_t = NewsArg::Detect)]
    pub new_caller_findings: NewsArg,

    /// Endpoints kept per service; calls to further ones are counted in one overflow bucket
    /// (`{overflow}`), reported once as `inventory.endpoint_overflow`.
    #[arg(long, value_name = "ENDPOINTS", default_value_t = 2048)]
    pub max_endpoints_per_service: usize,

    /// Services kept in the inventory; calls to further ones are counted, not inventoried.
    #[arg(long, value_name = "SERVICES", default_value_t = 1024)]
    pub max_services: usize,

    /// The detection file: off, detect or block per finding kind or family (threat.*, data.*,
    /// auth.*, leak.*, headers.*, crypto.*), severities, how long block mode drops a source, the team's
    /// own sensitive-data detectors, how callers are named and the behavioural thresholds
    /// (docs/detection.md). Reloaded when it changes; an
    /// invalid edit is refused and the last good file stays in force. Without it every
    /// detector runs in detect mode.
    #[arg(long, value_name = "FILE")]
    pub detection: Option<PathBuf>,

    /// A file of at least 16 random bytes (a Kubernetes Secret, say) that keys the hashes in
    /// findings' evidence, so that agents sharing it correlate the same value across nodes and
    /// restarts. Without it each agent start draws its own key.
    #[arg(long, value_name = "FILE")]
    pub hash_key_file: Option<PathBuf>,

    /// Data flows kept (service, endpoint, direction, data class, kind, counterpart); values in
    /// further flows are counted in one overflow flow per direction and class.
    #[arg(long, value_name = "FLOWS", default_value_t = 10_000)]
    pub max_data_flows: usize,

    /// Body bytes the detectors read per second (64 MiB). Past it, a call's request
    /// line, headers and caller are still judged but its bodies are not, and both are counted
    /// (moat_detection_bodies_unjudged_total): a burst of large bodies must not slow capture.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub detection_body_bytes_per_second: u64,

    /// `crypto.cert_expiring` when a server certificate seen in a TLS handshake expires within
    /// this long (`30d`, `12h`); an expired one is always reported (docs/tls.md).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub cert_expiry_warning: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewsArg {
    Detect,
    Off,
}

impl NewsArg {
    pub fn mode(self) -> intelligence::finding::Mode {
        match self {
            Self::Detect => intelligence::finding::Mode::Detect,
            Self::Off => intelligence::finding::Mode::Off,
        }
    }
}

/// Shipping records to a collector.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Export")]
pub struct ExportArgs {
    /// The moat-collector to ship API calls and drops to, e.g. `http://collector:7070` (gRPC,
    /// gzip-compressed, each batch acknowledged). Records still go to standard output too.
    #[arg(long, value_name = "URL")]
    pub collector: Option<String>,

    /// Records held in memory while the collector is slow or unreachable; past this the newest
    /// go to the spool (--spool-dir) or, without one, are dropped, counted
    /// (`moat_export_records_total{result="dropped"}`) and the count sent to the collector once
    /// it is back.
    #[arg(long, value_name = "RECORDS", default_value_t = 100_000)]
    pub export_queue_records: usize,

    /// Records per batch at most.
    #[arg(long, value_name = "RECORDS", default_value_t = 1_000)]
    pub export_batch_records: usize,

    /// Where records go when --export-queue-records are already waiting (a long collector
    /// outage), and where they survive an agent restart. Created if missing.
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// The spool's size cap; past it records are dropped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    pub spool_bytes: u64,

    /// The CA (PEM) that signed the collector's certificate; required for an `https://`
    /// collector.
    #[arg(long, value_name = "FILE")]
    pub collector_ca: Option<PathBuf>,

    /// This agent's client certificate (PEM), for a collector that requires mTLS.
    #[arg(long, value_name = "FILE", requires = "collector_key")]
    pub collector_cert: Option<PathBuf>,

    /// The private key of --collector-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "collector_cert")]
    pub collector_key: Option<PathBuf>,

    /// A batch smaller than --export-batch-records leaves after this long.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub export_interval: Duration,
}

/// Who is talking: how addresses and processes get names.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Identity")]
pub struct IdentityArgs {
    /// Inventory file (YAML; docs/identity.md): cluster name, environment, named address ranges
    /// (pod, service and node networks, other clusters, partners, customers, scanners) and tag
    /// rules. Every record names each end by it. Edits are picked up within a second.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,

    /// Watch Kubernetes for pods, services, nodes, namespaces and MoatPolicies: `on`, `off`, or
    /// `auto` (on inside a pod, or when --kubeconfig or $KUBECONFIG is given).
    #[arg(long, value_enum, default_value_t = KubernetesMode::Auto)]
    pub kubernetes: KubernetesMode,

    /// Kubeconfig to reach the API server with. Default: in-cluster service account.
    #[arg(long, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// This node's name, as Kubernetes knows it (the chart sets it from the downward API).
    /// Default: the host name.
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Which pods to watch: `cluster` (all: remote pods are named with labels and owner, and
    /// policy selectors match pods on every node) or `node` (only this node's, for very large
    /// clusters: remote pods are named from EndpointSlices, and selectors match local pods).
    #[arg(long, value_enum, default_value_t = PodScopeArg::Cluster)]
    pub kube_pods: PodScopeArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubernetesMode {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodScopeArg {
    Cluster,
    Node,
}

/// Seeing API calls: which connections are captured and how much of them is kept.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "API call capture")]
pub struct CaptureArgs {
    /// Capture the TCP connections of every process on this host and report each HTTP/1.1,
    /// HTTP/2 and gRPC call as an `api.call` record. `off` runs enforcement only.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub capture: Switch,

    /// Capture only connections with this port at either end (repeatable). Default: all ports.
    #[arg(long = "capture-port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Capture only processes in this cgroup (v2), given as its path in the cgroup v2 hierarchy
    /// (as /proc/PID/cgroup shows it) or as its id (repeatable). Default: all cgroups.
    #[arg(long = "capture-cgroup", value_name = "PATH|ID")]
    pub cgroups: Vec<String>,

    /// Capture only this process id (repeatable). Default: all processes.
    #[arg(long = "capture-pid", value_name = "PID")]
    pub processes: Vec<u32>,

    /// Payload bytes one kernel event carries (at most 32768); a syscall that moves more is
    /// split into several events, and bytes past 16 events per syscall are counted as not captured.
    #[arg(long, value_name = "BYTES", default_value_t = agent_common::capture::DEFAULT_MAX_PAYLOAD,
          value_parser = clap::value_parser!(u32).range(64..=agent_common::capture::PAYLOAD_CAPACITY as i64))]
    pub capture_event_bytes: u32,

    /// Size of the kernel's capture ring buffer; a power of two. Events that find it full are
    /// lost and counted (moat_capture_events_lost_total).
    #[arg(long, value_name = "BYTES", default_value_t = agent_common::capture::DEFAULT_EVENTS_BYTES,
          value_parser = parse_ring_bytes)]
    pub capture_ring_bytes: u32,

    /// Connections tracked at once; past it the least recently active one is dropped (counted).
    #[arg(long, value_name = "N", default_value_t = 16_384)]
    pub capture_max_connections: usize,

    /// Bytes one connection may hold while its messages are incomplete (header blocks, bodies
    /// kept for analysis, out-of-order bytes); past it its parser starts over (counted).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub capture_max_connection_bytes: usize,

    /// Body bytes kept in memory per message for analysis (never written out).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub capture_body_bytes: usize,

    /// A connection with no traffic for this long is forgotten (its open calls are reported
    /// incomplete).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub capture_idle_timeout: Duration,

    /// Another header whose value is a credential and is replaced by `[redacted]` in records
    /// (repeatable). Authorization, Cookie, Set-Cookie, Proxy-Authorization and X-Api-Key always
    /// are.
    #[arg(long = "redact-header", value_name = "NAME")]
    pub redact_headers: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

fn parse_ring_bytes(text: &str) -> Result<u32, String> {
    let bytes: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count; write e.g. 16777216"))?;
    if !bytes.is_power_of_two() || bytes < 4096 {
        return Err(format!(
            "{bytes} is not a power of two of at least 4096, which the kernel requires of a ring buffer; \
             try {}",
            bytes.max(4096).next_power_of_two()
        ));
    }
    Ok(bytes)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HookArg {
    Auto,
    Xdp,
    Tcx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Text,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text)
        .map_err(|error| format!("{error}; write a duration such as `10s` or `500ms`"))?;
    if interval < Duration::from_millis(100) {
        return Err(format!(
            "{text} is shorter than the 100ms minimum; reading the maps more often costs CPU for no \
             new information"
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_args() {
        let args = Args::try_parse_from([
            "moat-agent",
            "--iface",
            "veth0",
            "--iface",
            "veth1",
            "--iface-glob",
            "lxc*",
            "--policy",
            "/etc/moat/policy.yaml",
            "--xdp-mode",
            "generic",
            "--output",
            "text",
            "--report-interval",
            "500ms",
        ])
        .expect("valid flags");
        assert!(args.command.is_none());
        assert_eq!(args.run.interfaces, ["veth0", "veth1"]);
        assert_eq!(args.run.interface_globs, ["lxc*"]);
        assert_eq!(
            args.run.policy,
            Some(PathBuf::from("/etc/moat/policy.yaml"))
        );
        assert_eq!(args.run.xdp_mode, XdpModeArg::Generic);
        assert_eq!(args.run.output, OutputFormat::Text);
        assert_eq!(args.run.report_interval, Duration::from_millis(500));
        assert_eq!(args.run.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(args.run.capture.capture, Switch::On);
    }

    #[test]
    fn capture_flags_are_validated() {
        let args = Args::try_parse_from([
            "moat-agent",
            "--capture-port",
            "80",
            "--capture-port",
            "8080",
            "--capture-event-bytes",
            "4096",
            "--redact-header",
            "X-Session",
        ])
        .expect("valid flags");
        assert_eq!(args.run.capture.ports, [80, 8080]);
        assert_eq!(args.run.capture.capture_event_bytes, 4096);
        assert!(Args::try_parse_from(["moat-agent", "--capture-event-bytes", "99999"]).is_err());
        assert!(parse_ring_bytes("5000").unwrap_err().contains("try 8192"));
        assert_eq!(parse_ring_bytes("65536"), Ok(65536));
    }

    #[test]
    fn cleanup_is_a_subcommand_with_its_own_state_dir() {
        let args = Args::try_parse_from(["moat-agent", "cleanup", "--state-dir", "/sys/fs/bpf/x"])
            .expect("valid flags");
        match args.command {
            Some(Command::Cleanup { state_dir }) => {
                assert_eq!(state_dir, PathBuf::from("/sys/fs/bpf/x"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn intervals_are_validated_with_a_hint() {
        assert!(
            parse_interval("fast")
                .unwrap_err()
                .contains("such as `10s`")
        );
        assert!(
            parse_interval("10ms")
                .unwrap_err()
                .contains("100ms minimum")
        );
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
    }
}
