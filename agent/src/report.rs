//! Records on standard output: JSON lines for machines, text for people.
//!
//! Every JSON record carries `kind` and `time`; field names are part of Moat's interface and
//! documented in docs/agent-output.md.

use std::{collections::HashMap, io::Write, net::IpAddr, path::Path, time::SystemTime};

use serde::Serialize;

use crate::{
    capture::{CaptureStats, record::CallRecord},
    cli::OutputFormat,
    loader::Attachment,
    protocol::ip_protocol_name,
    traffic::{SourceTraffic, XdpStats},
};

#[derive(Debug, Serialize)]
#[serde(tag = "kind")]
pub enum Record<'a> {
    /// The programs are attached and the policy (if any) applied.
    #[serde(rename = "agent.ready")]
    Ready {
        interfaces: Vec<InterfaceRecord<'a>>,
        state_dir: &'a Path,
        #[serde(skip_serializing_if = "Option::is_none")]
        policy: Option<&'a Path>,
        /// Whether API calls are being captured.
        capture: bool,
    },
    /// One API call.
    #[serde(rename = "api.call")]
    Call(&'a CallRecord),
    /// One connection's encryption: an API protocol in clear, or a TLS handshake's facts
    /// (docs/tls.md).
    #[serde(rename = "api.connection")]
    Connection(&'a crate::crypto::ConnectionRecord<'a>),
    /// What capture saw and what it lost, since the agent started.
    #[serde(rename = "agent.capture_stats")]
    CaptureStats(&'a CaptureStatsRecord),
    /// An interface matched `--iface-glob` after start-up and the program now runs on it.
    #[serde(rename = "agent.attached")]
    Attached(InterfaceRecord<'a>),
    /// An interface the program ran on is gone.
    #[serde(rename = "agent.detached")]
    Detached { interface: &'a str },
    /// Totals for one (interface, source, protocol) since the pinned maps were created.
    #[serde(rename = "traffic.source")]
    SourceTraffic {
        interface: &'a str,
        source: IpAddr,
        protocol: &'a str,
        packets: u64,
        bytes: u64,
    },
    #[serde(rename = "agent.datapath_stats")]
    XdpStats {
        frames: u64,
        non_ip: u64,
        truncated: u64,
        untracked_source_table_full: u64,
        drop_events_lost: u64,
        drop_events_suppressed: u64,
    },
    /// A new policy is in force: the policy file and the MoatPolicies it combines, with pod
    /// selectors resolved.
    #[serde(rename = "policy.applied")]
    PolicyApplied {
        /// The file's path, then `MoatPolicy <namespace>/<name>` for each MoatPolicy.
        sources: &'a [String],
        identities: usize,
        rules: usize,
        blocklist_entries: usize,
        rate_limits: usize,
        /// Addresses of pods that identities select.
        pod_addresses: usize,
        /// What prompted it: `start`, `file`, `kubernetes` (a MoatPolicy or a watch's first
        /// list) or `pods` (selected pods changed).
        reason: &'a str,
    },
    /// A policy that did not validate or could not join the others; the rest stays in force.
    #[serde(rename = "policy.rejected")]
    PolicyRejected {
        #[serde(skip_serializing_if = "Option::is_none")]
        file: Option<&'a Path>,
        /// `<namespace>/<name>` of a refused MoatPolicy.
        #[serde(skip_serializing_if = "Option::is_none")]
        moat_policy: Option<&'a str>,
        error: String,
    },
    /// A Kubernetes watch listed everything (`synced`), started failing (`failing`: its facts
    /// age from now on; it retries with back-off), or met an object it cannot use (`rejected`).
    /// The inventory file changed and is in use.
    #[serde(rename = "identity.inventory_applied")]
    InventoryApplied { file: &'a Path },
    /// An inventory edit that did not validate; the previous inventory stays in use.
    #[serde(rename = "identity.inventory_rejected")]
    InventoryRejected { file: &'a Path, error: String },
    /// The detection file (re)loaded and in force.
    #[serde(rename = "detection.applied")]
    DetectionApplied { file: &'a Path },
    /// A detection file edit that did not validate; the previous one stays in force.
    #[serde(rename = "detection.rejected")]
    DetectionRejected { file: &'a Path, error: String },
    #[serde(rename = "kube.watch")]
    KubeWatch(&'a crate::identity::WatchEvent),
    /// A packet was dropped: the first of its flow, then at most one a second.
    #[serde(rename = "policy.denied")]
    Denied {
        /// `rule`, `blocklist`, `isolate`, `rate_limit` or `timed_block`.
        reason: &'a str,
        /// The rule's or rate limit's name, for those reasons; for `timed_block`, why the
        /// block was made (`threat.sqli on shop-api GET /customers`) when this agent made it.
        #[serde(skip_serializing_if = "str::is_empty")]
        rule: &'a str,
        src: IpAddr,
        dst: IpAddr,
        /// Who the source and destination are.
        source: &'a crate::identity::PeerIdentity,
        destination: &'a crate::identity::PeerIdentity,
        src_port: u16,
        dst_port: u16,
        protocol: &'a str,
        interface: &'a str,
    },
    /// Something worth a human's attention about an API call (or, for unused endpoints, the
    /// absence of calls): docs/api-intelligence.md lists the kinds.
    #[serde(rename = "api.finding")]
    Finding(&'a crate::analysis::FindingRecord<'a>),
    /// An endpoint's counts since it was first seen, when they changed.
    #[serde(rename = "api.endpoint")]
    Endpoint(&'a crate::analysis::EndpointRecord<'a>),
    /// A data flow's counts since it was first seen, when they changed: which class of
    /// sensitive data an endpoint took in or gave out, with whom, over which transport.
    #[serde(rename = "api.dataflow")]
    DataFlow(&'a crate::dataflow::DataFlowRecord<'a>),
    /// An API's OpenAPI spec is bound; operations the spec defines badly are left out, each
    /// with a warning.
    #[serde(rename = "api.spec_loaded")]
    SpecLoaded {
        api: &'a str,
        /// The file, or `configmap <namespace>/<name>/<key>`.
        file: &'a str,
        operations: usize,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        warnings: &'a [String],
    },
    /// An API's spec did not load (file, JSON pointer, reason); its previous version, if any,
    /// stays bound.
    #[serde(rename = "api.spec_rejected")]
    SpecRejected {
        api: &'a str,
        /// The file, or `configmap <namespace>/<name>/<key>`.
        file: &'a str,
        error: &'a str,
    },
    #[serde(rename = "enforce.timed_block")]
    TimedBlock {
        network: String,
        reason: &'a str,
        ttl_seconds: u64,
    },
    #[serde(rename = "enforce.timed_block_expired")]
    TimedBlockExpired { network: String, reason: &'a str },
}

#[derive(Debug, Serialize)]
pub struct CaptureStatsRecord {
    pub connections: usize,
    pub held_bytes: usize,
    pub connections_opened: u64,
    pub calls: u64,
    pub calls_merged: u64,
    pub events_lost: u64,
    pub bytes_lost: u64,
    pub bytes_not_captured: u64,
    pub bytes_unreadable: u64,
    pub bytes_from_file: u64,
    pub bytes_given_up: u64,
    pub socket_table_full: u64,
    pub in_flight_table_full: u64,
    pub malformed_events: u64,
    pub events_unknown_connection: u64,
    pub connections_evicted: u64,
    pub connections_expired: u64,
    pub connection_bytes_exceeded: u64,
    pub mirror_queue_full: u64,
    pub tls_bytes_unlinked: u64,
    pub tls_in_flight_table_full: u64,
    pub tls_libraries_attached: usize,
}

impl From<CaptureStats> for CaptureStatsRecord {
    fn from(stats: CaptureStats) -> Self {
        use agent_common::capture::CaptureStat;
        let kernel = |stat: CaptureStat| stats.kernel[stat as usize];
        Self {
            connections: stats.connections,
            held_bytes: stats.held_bytes,
            connections_opened: stats.tracker.connections_opened,
            calls: stats.tracker.calls,
            calls_merged: stats.tracker.calls_merged,
            events_lost: kernel(CaptureStat::EventsLost),
            bytes_lost: kernel(CaptureStat::BytesLost),
            bytes_not_captured: kernel(CaptureStat::BytesNotCaptured),
            bytes_unreadable: kernel(CaptureStat::BytesUnreadable),
            bytes_from_file: kernel(CaptureStat::BytesFromFile),
            bytes_given_up: stats.tracker.bytes_given_up,
            socket_table_full: kernel(CaptureStat::SocketTableFull),
            in_flight_table_full: kernel(CaptureStat::InFlightTableFull),
            malformed_events: stats.malformed_events,
            events_unknown_connection: stats.tracker.events_unknown_connection,
            connections_evicted: stats.tracker.connections_evicted,
            connections_expired: stats.tracker.connections_expired,
            connection_bytes_exceeded: stats.tracker.connection_bytes_exceeded,
            mirror_queue_full: stats.tracker.mirror_queue_full,
            tls_bytes_unlinked: kernel(CaptureStat::TlsBytesUnlinked),
            tls_in_flight_table_full: kernel(CaptureStat::TlsInFlightTableFull),
            tls_libraries_attached: stats.tls_libraries_attached,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct InterfaceRecord<'a> {
    pub interface: &'a str,
    pub ifindex: u32,
    pub hook: &'a str,
    pub mode: &'a str,
}

impl<'a> From<&'a Attachment> for InterfaceRecord<'a> {
    fn from(attachment: &'a Attachment) -> Self {
        Self {
            interface: &attachment.interface,
            ifindex: attachment.ifindex,
            hook: attachment.hook,
            mode: attachment.mode,
        }
    }
}

#[derive(Serialize)]
struct Stamped<'a> {
    time: &'a str,
    #[serde(flatten)]
    record: &'a Record<'a>,
}

pub struct Reporter<W> {
    out: W,
    format: OutputFormat,
    interface_names: HashMap<u32, String>,
    /// The last time stamped and its text: a burst of records shares one `now`, and formatting
    /// it for each record cost more than the rest of a small record.
    stamp: Option<(SystemTime, String)>,
}

impl<W: Write> Reporter<W> {
    pub fn new(out: W, format: OutputFormat) -> Self {
        Self {
            out,
            format,
            interface_names: HashMap::new(),
            stamp: None,
        }
    }

    /// Remembers an interface's name, so records about its index can name it.
    pub fn name_interface(&mut self, ifindex: u32, name: &str) {
        self.interface_names.insert(ifindex, name.to_owned());
    }

    /// Forgets a vanished interface's name, so the map holds only live interfaces.
    pub fn forget_interface(&mut self, ifindex: u32) {
        self.interface_names.remove(&ifindex);
    }

    pub fn interface_name(&self, ifindex: u32) -> String {
        self.interface_names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("ifindex-{ifindex}"))
    }

    pub fn emit(&mut self, record: &Record<'_>, now: SystemTime) -> std::io::Result<()> {
        self.write(record, now)?;
        self.out.flush()
    }

    /// Writes a record without flushing: for batches (a burst of calls), flushed once with
    /// [`Reporter::flush`].
    pub fn write(&mut self, record: &Record<'_>, now: SystemTime) -> std::io::Result<()> {
        let stamp = match &mut self.stamp {
            Some((at, text)) if *at == now => text,
            stamp => &stamp.insert((now, timestamp(now))).1,
        };
        let stamped = Stamped {
            time: stamp,
            record,
        };
        match self.format {
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, &stamped)?;
                self.out.write_all(b"\n")?;
            }
            OutputFormat::Text => match record {
                Record::Call(call) => writeln!(self.out, "{} {}", stamped.time, call_line(call))?,
                _ => {
                    let value = serde_json::to_value(&stamped)?;
                    writeln!(self.out, "{}", text_line(&value))?;
                }
            },
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// A traffic report: the sources that changed, then the program-wide counters.
    pub fn traffic(
        &mut self,
        changed: &[SourceTraffic],
        stats: XdpStats,
        now: SystemTime,
    ) -> std::io::Result<()> {
        if self.format == OutputFormat::Text {
            return self.traffic_table(changed, stats, now);
        }
        for entry in changed {
            let interface = self.interface_name(entry.ifindex);
            let protocol = ip_protocol_name(entry.protocol);
            self.emit(
                &Record::SourceTraffic {
                    interface: &interface,
                    source: entry.source,
                    protocol: &protocol,
                    packets: entry.counters.packets,
                    bytes: entry.counters.bytes,
                },
                now,
            )?;
        }
        self.emit(&stats_record(stats), now)
    }

    fn traffic_table(
        &mut self,
        changed: &[SourceTraffic],
        stats: XdpStats,
        now: SystemTime,
    ) -> std::io::Result<()> {
        writeln!(self.out, "--- traffic at {}", timestamp(now))?;
        if !changed.is_empty() {
            writeln!(
                self.out,
                "{:<16} {:<40} {:<10} {:>12} {:>14}",
                "INTERFACE", "SOURCE", "PROTOCOL", "PACKETS", "BYTES"
            )?;
        }
        for entry in changed {
            writeln!(
                self.out,
                "{:<16} {:<40} {:<10} {:>12} {:>14}",
                self.interface_name(entry.ifindex),
                entry.source,
                ip_protocol_name(entry.protocol),
                entry.counters.packets,
                entry.counters.bytes
            )?;
        }
        writeln!(
            self.out,
            "frames {}, not IP {}, truncated {}, untracked (source table full) {}, drop events lost {}",
            stats.frames,
            stats.non_ip,
            stats.truncated,
            stats.source_table_full,
            stats.drop_events_lost
        )?;
        self.out.flush()
    }
}

fn stats_record(stats: XdpStats) -> Record<'static> {
    Record::XdpStats {
        frames: stats.frames,
        non_ip: stats.non_ip,
        truncated: stats.truncated,
        untracked_source_table_full: stats.source_table_full,
        drop_events_lost: stats.drop_events_lost,
        drop_events_suppressed: stats.drop_events_suppressed,
    }
}

/// One call on one line, for people:
/// `api.call http1 GET 198.18.2.10:8080/users?id=1 -> 200 in 1.2ms, curl[412] 198.18.1.10:40112 -> python3[77] 198.18.2.10:8080`.
fn call_line(call: &CallRecord) -> String {
    let peer = |peer: &crate::capture::record::Peer| {
        let who = peer
            .identity
            .as_ref()
            .map(|identity| format!(" ({})", identity.short()))
            .unwrap_or_default();
        match (&peer.comm, peer.pid) {
            (Some(comm), Some(pid)) => format!("{comm}[{pid}] {}:{}{who}", peer.ip, peer.port),
            _ => format!("{}:{}{who}", peer.ip, peer.port),
        }
    };
    let mut line = format!(
        "api.call {} {} {}{}",
        call.protocol,
        call.method.as_deref().unwrap_or("?"),
        call.authority.as_deref().unwrap_or(""),
        call.path.as_deref().unwrap_or("?"),
    );
    if let Some(query) = &call.query {
        line.push('?');
        line.push_str(query);
    }
    match call.status {
        Some(status) => line.push_str(&format!(" -> {status}")),
        None => line.push_str(" -> (no response)"),
    }
    if let Some(grpc) = &call.grpc
        && let Some(status) = grpc.status
    {
        line.push_str(&format!(" grpc-status {status}"));
    }
    if let Some(latency) = call.latency_us {
        line.push_str(&format!(" in {:.1}ms", latency as f64 / 1000.0));
    }
    line.push_str(&format!(
        ", {} -> {}",
        peer(&call.client),
        peer(&call.server)
    ));
    if !call.flags.is_empty() {
        line.push_str(&format!(" [{}]", call.flags.join(",")));
    }
    line
}

/// `TIME KIND key=value ...` from a record's JSON, for the text format.
fn text_line(value: &serde_json::Value) -> String {
    let Some(fields) = value.as_object() else {
        return value.to_string();
    };
    let mut line = format!(
        "{} {}",
        fields
            .get("time")
            .and_then(|time| time.as_str())
            .unwrap_or(""),
        fields
            .get("kind")
            .and_then(|kind| kind.as_str())
            .unwrap_or("")
    );
    for (key, field) in fields {
        if key == "time" || key == "kind" {
            continue;
        }
        match field.as_str() {
            Some(text) => line.push_str(&format!(" {key}={text}")),
            // Who an end is: its kind and name, not the whole object.
            None if field.get("kind").is_some() && field.get("internal").is_some() => {
                let name = ["pod", "service", "node", "range"]
                    .iter()
                    .find_map(|part| field.get(*part).and_then(|name| name.as_str()))
                    .unwrap_or("");
                let kind = field["kind"].as_str().unwrap_or("");
                line.push_str(&format!(" {key}={kind}:{name}"));
            }
            None => line.push_str(&format!(" {key}={field}")),
        }
    }
    line
}

fn timestamp(now: SystemTime) -> String {
    humantime::format_rfc3339_millis(now).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_common::xdp::TrafficCounters;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn entry(ifindex: u32, source: &str, protocol: u8) -> SourceTraffic {
        SourceTraffic {
            ifindex,
            source: source.parse().unwrap(),
            protocol,
            counters: TrafficCounters {
                packets: 3,
                bytes: 180,
            },
        }
    }

    fn lines(out: Vec<u8>) -> Vec<serde_json::Value> {
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn jsonl_records_carry_kind_time_and_names() {
        let mut out = Vec::new();
        let mut reporter = Reporter::new(&mut out, OutputFormat::Jsonl);
        reporter.name_interface(7, "veth-web");
        let attachment = Attachment {
            interface: "veth-web".to_owned(),
            ifindex: 7,
            hook: "xdp",
            mode: "native",
        };
        reporter
            .emit(
                &Record::Ready {
                    interfaces: vec![(&attachment).into()],
                    state_dir: Path::new("/sys/fs/bpf/moat"),
                    policy: None,
                    capture: false,
                },
                at(0),
            )
            .unwrap();
        reporter
            .traffic(
                &[entry(7, "198.18.0.2", 17), entry(9, "fd00:198:18::3", 58)],
                XdpStats {
                    frames: 6,
                    ..XdpStats::default()
                },
                at(1),
            )
            .unwrap();
        let lines = lines(out);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["kind"], "agent.ready");
        assert_eq!(lines[0]["interfaces"][0]["mode"], "native");
        assert_eq!(lines[0]["time"], "1970-01-01T00:00:00.000Z");
        assert!(lines[0].get("policy").is_none());
        assert_eq!(lines[1]["kind"], "traffic.source");
        assert_eq!(lines[1]["interface"], "veth-web");
        assert_eq!(lines[1]["source"], "198.18.0.2");
        assert_eq!(lines[1]["protocol"], "udp");
        assert_eq!(lines[1]["packets"], 3);
        assert_eq!(lines[1]["bytes"], 180);
        assert_eq!(
            lines[2]["interface"], "ifindex-9",
            "unknown interfaces keep their index"
        );
        assert_eq!(lines[2]["protocol"], "ipv6-icmp");
        assert_eq!(lines[3]["kind"], "agent.datapath_stats");
        assert_eq!(lines[3]["frames"], 6);
    }

    #[test]
    fn denied_records_name_rule_and_flow() {
        use std::sync::Arc;

        let pod = crate::identity::PeerIdentity {
            identity: Arc::new(identity::Identity {
                kind: identity::Kind::Pod,
                namespace: Some("shop".into()),
                pod: Some("web-1".into()),
                internal: true,
                ..identity::Identity::default()
            }),
            range: None,
            container: None,
        };
        let outside = crate::identity::PeerIdentity {
            identity: Arc::new(identity::Identity::external()),
            range: None,
            container: None,
        };
        let mut out = Vec::new();
        let mut reporter = Reporter::new(&mut out, OutputFormat::Jsonl);
        reporter
            .emit(
                &Record::Denied {
                    reason: "rule",
                    rule: "frontend-not-to-db",
                    src: "198.18.1.10".parse().unwrap(),
                    dst: "198.18.3.10".parse().unwrap(),
                    source: &pod,
                    destination: &pod,
                    src_port: 40000,
                    dst_port: 5432,
                    protocol: "tcp",
                    interface: "v0-web",
                },
                at(2),
            )
            .unwrap();
        reporter
            .emit(
                &Record::Denied {
                    reason: "blocklist",
                    rule: "",
                    src: "198.19.66.1".parse().unwrap(),
                    dst: "198.18.3.10".parse().unwrap(),
                    source: &outside,
                    destination: &pod,
                    src_port: 0,
                    dst_port: 0,
                    protocol: "icmp",
                    interface: "uplink",
                },
                at(2),
            )
            .unwrap();
        let lines = lines(out);
        assert_eq!(lines[0]["kind"], "policy.denied");
        assert_eq!(lines[0]["rule"], "frontend-not-to-db");
        assert_eq!(lines[0]["dst_port"], 5432);
        assert_eq!(lines[0]["source"]["kind"], "pod");
        assert_eq!(lines[0]["source"]["namespace"], "shop");
        assert_eq!(lines[0]["destination"]["pod"], "web-1");
        assert_eq!(lines[1]["source"]["kind"], "external");
        assert_eq!(lines[1]["source"]["internal"], false);
        assert!(
            lines[1].get("rule").is_none(),
            "no rule name for a blocklist drop"
        );
    }

    #[test]
    fn text_output_is_a_table_and_key_value_lines() {
        let mut out = Vec::new();
        let mut reporter = Reporter::new(&mut out, OutputFormat::Text);
        reporter.name_interface(7, "veth-web");
        reporter
            .traffic(&[entry(7, "198.18.0.2", 6)], XdpStats::default(), at(0))
            .unwrap();
        reporter
            .emit(
                &Record::Detached {
                    interface: "veth-web",
                },
                at(0),
            )
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("INTERFACE"), "{text}");
        assert!(text.lines().any(|line| line.starts_with("veth-web")
            && line.contains("198.18.0.2")
            && line.contains("tcp")
            && line.trim_end().ends_with("180")));
        assert!(
            text.lines()
                .any(|line| line == "1970-01-01T00:00:00.000Z agent.detached interface=veth-web"),
            "{text}"
        );
    }
}
