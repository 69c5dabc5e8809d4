//! Prometheus metrics on `--metrics-addr`, plus `/healthz` and `/readyz` for probes.
//!
//! The main loop refreshes a [`Snapshot`] from the kernel once a second; scrapes read the
//! snapshot, so a scrape never touches a map. Names and labels are documented in
//! docs/metrics.md and are part of Moat's interface.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use agent_common::xdp::TrafficCounters;
use axum::{Router, extract::State, http::StatusCode, routing::get};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{capture::CaptureStats, enforcer::VerdictLabel, loader::Attachment, traffic::XdpStats};

/// What the agent knows, as of the last refresh.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub verdicts: BTreeMap<VerdictLabel, TrafficCounters>,
    pub xdp: XdpStats,
    pub attachments: Vec<Attachment>,
    pub reloads_applied: u64,
    pub reloads_rejected: u64,
    pub timed_blocks: u64,
    /// Ring-buffer records the agent could not decode as drop events.
    pub malformed_drop_events: u64,
    /// True once the programs are attached and the policy applied.
    pub ready: bool,
    /// API call capture, when it runs.
    pub capture: Option<CaptureStats>,
    /// What the identity index holds.
    pub identity: identity::index::IndexStats,
    /// Per Kubernetes resource watched.
    pub kube: Vec<KubeWatchStats>,
    /// Shipping to the collector, when there is one.
    pub export: Option<crate::export::ExportStats>,
    pub analysis: crate::analysis::AnalysisStats,
    /// Findings reported since start, by kind (configured detectors name their own kinds, so
    /// the set is bounded by the detection file, not fixed).
    pub findings: BTreeMap<String, u64>,
    /// Block mode findings whose source was not blocked, by reason.
    pub blocks_not_made: BTreeMap<&'static str, u64>,
}

#[derive(Clone, Debug, Default)]
pub struct KubeWatchStats {
    pub resource: &'static str,
    pub synced: bool,
    /// How long the watch has been failing (0 while it works).
    pub stale_seconds: f64,
    pub errors: u64,
    pub rejected: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    snapshot: Arc<Mutex<Snapshot>>,
}

impl Metrics {
    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut snapshot = self
            .snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut snapshot);
    }

    fn read(&self) -> Snapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        if labels.is_empty() {
            ConstCounter::new(*value).encode(family)?;
            return Ok(());
        }
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.read();
        let verdict_series = |bytes: bool| -> Vec<(Labels<'_>, u64)> {
            snapshot
                .verdicts
                .iter()
                .map(|(label, counters)| {
                    (
                        vec![
                            ("verdict", label.verdict),
                            ("reason", label.reason),
                            ("rule", label.rule.as_str()),
                        ],
                        if bytes {
                            counters.bytes
                        } else {
                            counters.packets
                        },
                    )
                })
                .collect()
        };
        counter(
            &mut encoder,
            "moat_policy_packets",
            "Packets judged by the policy, by verdict, reason and rule (or rate limit) name.",
            &verdict_series(false),
        )?;
        counter(
            &mut encoder,
            "moat_policy_bytes",
            "Frame bytes judged by the policy, by verdict, reason and rule (or rate limit) name.",
            &verdict_series(true),
        )?;
        let xdp = snapshot.xdp;
        counter(
            &mut encoder,
            "moat_frames",
            "Frames (at the TCX hook: socket buffers) the program ran on.",
            &[(vec![], xdp.frames)],
        )?;
        counter(
            &mut encoder,
            "moat_unjudged_frames",
            "Frames passed without judgement: not IP (ARP...), or too short for their headers.",
            &[
                (vec![("reason", "non_ip")], xdp.non_ip),
                (vec![("reason", "truncated")], xdp.truncated),
            ],
        )?;
        counter(
            &mut encoder,
            "moat_events_dropped",
            "Things Moat could not record, by stage and reason: each is a loss, never silent.",
            &[
                (
                    vec![("stage", "xdp"), ("reason", "source_table_full")],
                    xdp.source_table_full,
                ),
                (
                    vec![("stage", "xdp"), ("reason", "drop_event_ring_full")],
                    xdp.drop_events_lost,
                ),
                (
                    vec![("stage", "xdp"), ("reason", "rate_state_full")],
                    xdp.rate_state_full,
                ),
                (
                    vec![("stage", "xdp"), ("reason", "conntrack_insert_failed")],
                    xdp.conntrack_insert_failed,
                ),
                (
                    vec![("stage", "agent"), ("reason", "malformed_drop_event")],
                    snapshot.malformed_drop_events,
                ),
            ],
        )?;
        counter(
            &mut encoder,
            "moat_drop_events_suppressed",
            "Drop events not sent because their flow had one in the last second (by design).",
            &[(vec![], xdp.drop_events_suppressed)],
        )?;
        counter(
            &mut encoder,
            "moat_policy_reloads",
            "Policy loads, by result: applied, or rejected (the last good policy stays).",
            &[
                (vec![("result", "applied")], snapshot.reloads_applied),
                (vec![("result", "rejected")], snapshot.reloads_rejected),
            ],
        )?;
        let mut interfaces = encoder.encode_descriptor(
            "moat_attached",
            "1 for each interface Moat's program is attached to, with its hook and mode.",
            None,
            MetricType::Gauge,
        )?;
        for attachment in &snapshot.attachments {
            let labels: Labels<'_> = vec![
                ("interface", &attachment.interface),
                ("hook", attachment.hook),
                ("mode", attachment.mode),
            ];
            ConstGauge::new(1i64).encode(interfaces.encode_family(&labels)?)?;
        }
        let mut blocks = encoder.encode_descriptor(
            "moat_timed_blocks",
            "Sources under a timed block now.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(snapshot.timed_blocks as i64)
            .encode(blocks.encode_family(&Labels::new())?)?;
        if let Some(capture) = &snapshot.capture {
            encode_capture(&mut encoder, capture)?;
        }
        encode_identity(&mut encoder, &snapshot)?;
        if let Some(export) = &snapshot.export {
            encode_export(&mut encoder, export)?;
        }
        encode_analysis(&mut encoder, &snapshot)
    }
}

fn encode_analysis(
    encoder: &mut DescriptorEncoder,
    snapshot: &Snapshot,
) -> Result<(), std::fmt::Error> {
    let findings: Vec<(Labels<'_>, u64)> = snapshot
        .findings
        .iter()
        .map(|(kind, count)| (vec![("kind", kind.as_str())], *count))
        .collect();
    counter(
        encoder,
        "moat_api_findings",
        "Findings reported (api.finding records), by kind: inventory.*, spec.*, auth.*, data.*, threat.*, leak.*, headers.*, policy.blocked.",
        &findings,
    )?;
    gauge(
        encoder,
        "moat_api_data_flows",
        "Data flows kept (service, endpoint, direction, data class, kind, counterpart), bounded by --max-data-flows.",
        snapshot.analysis.data_flows as i64,
    )?;
    counter(
        encoder,
        "moat_api_data_flow_calls_overflowed",
        "Calls whose sensitive values were counted in an overflow flow ({overflow}) because --max-data-flows flows were kept.",
        &[(vec![], snapshot.analysis.data_flow_calls_overflowed)],
    )?;
    let behavior = &snapshot.analysis.behavior;
    gauge(
        encoder,
        "moat_behavior_sources",
        "Sources the behavioural detectors (recon, BOLA enumeration, credential stuffing) hold state for, bounded by the detection file's behavior.maxSources.",
        behavior.sources as i64,
    )?;
    gauge(
        encoder,
        "moat_behavior_items",
        "Distinct paths, parameter names, ids and accounts the behavioural detectors hold, over all sources.",
        behavior.items as i64,
    )?;
    counter(
        encoder,
        "moat_behavior_sources_evicted",
        "Sources forgotten for newer ones while they still had counts in their window: a burst they were in may go unreported.",
        &[(vec![], behavior.sources_evicted)],
    )?;
    counter(
        encoder,
        "moat_behavior_endpoints_evicted",
        "Endpoints whose ids a source was counting, forgotten for a newer endpoint (more than behavior.bola.endpointsPerSource walked at once).",
        &[(vec![], behavior.endpoints_evicted)],
    )?;
    let detection = &snapshot.analysis.detection;
    counter(
        encoder,
        "moat_detection_bodies_unjudged",
        "Calls whose bodies the detectors did not read because --detection-body-bytes-per-second was spent (request line, headers and caller still judged).",
        &[(vec![], detection.bodies_unjudged)],
    )?;
    counter(
        encoder,
        "moat_detection_body_bytes_unjudged",
        "Body bytes of those calls.",
        &[(vec![], detection.body_bytes_unjudged)],
    )?;
    counter(
        encoder,
        "moat_detection_repeats_suppressed",
        "Findings about a server's side (data it returns, leaks, headers) or a connection's encryption (crypto.*) not reported again within the detection file's repeatAfter.",
        &[(vec![], detection.repeats_suppressed)],
    )?;
    counter(
        encoder,
        "moat_detection_memory_resets",
        "Times the memory of reported findings was full and cleared; each clears lets repeats through early once.",
        &[(vec![], detection.memory_resets)],
    )?;
    let unmade: Vec<(Labels<'_>, u64)> = ["own_address", "table_full", "error"]
        .into_iter()
        .map(|reason| {
            let count = snapshot.blocks_not_made.get(reason).copied().unwrap_or(0);
            (vec![("reason", reason)], count)
        })
        .collect();
    counter(
        encoder,
        "moat_api_blocks_not_made",
        "Block mode findings whose source was not blocked, by reason: own_address (this node's or loopback), table_full (the timed block table), error.",
        &unmade,
    )?;
    let analysis = &snapshot.analysis;
    gauge(
        encoder,
        "moat_api_services",
        "Services in the endpoint inventory.",
        analysis.services as i64,
    )?;
    gauge(
        encoder,
        "moat_api_endpoints",
        "Endpoints in the inventory, over all services (each bounded by --max-endpoints-per-service).",
        analysis.endpoints as i64,
    )?;
    counter(
        encoder,
        "moat_api_calls_not_inventoried",
        "Calls to services past --max-services: counted, not inventoried or checked.",
        &[(vec![], analysis.calls_not_inventoried)],
    )?;
    let mut specs = encoder.encode_descriptor(
        "moat_api_specs",
        "APIs of the inventory's apis: section by spec state: bound (a version is in force), rejected (the last load failed).",
        None,
        MetricType::Gauge,
    )?;
    for (state, count) in [
        ("bound", analysis.specs_bound),
        ("rejected", analysis.specs_rejected),
    ] {
        ConstGauge::new(count as i64).encode(specs.encode_family(&[("state", state)])?)?;
    }
    Ok(())
}

fn encode_export(
    encoder: &mut DescriptorEncoder,
    export: &crate::export::ExportStats,
) -> Result<(), std::fmt::Error> {
    counter(
        encoder,
        "moat_export_records",
        "Records for the collector, by result: queued, acknowledged (stored), duplicate (already stored: a resend), rejected (refused by the collector), dropped (the queue was full).",
        &[
            (vec![("result", "queued")], export.queued),
            (vec![("result", "acknowledged")], export.acknowledged),
            (vec![("result", "duplicate")], export.duplicates),
            (vec![("result", "rejected")], export.rejected),
            (vec![("result", "dropped")], export.dropped),
        ],
    )?;
    counter(
        encoder,
        "moat_export_reconnects",
        "Connections to the collector lost or refused (each retried with back-off).",
        &[(vec![], export.reconnects)],
    )?;
    gauge(
        encoder,
        "moat_export_queue_depth",
        "Records waiting for the collector's acknowledgement.",
        export.depth as i64,
    )?;
    gauge(
        encoder,
        "moat_export_spooled_records",
        "Records in the on-disk spool (--spool-dir), waiting for room in the queue.",
        export.spooled as i64,
    )?;
    gauge(
        encoder,
        "moat_export_connected",
        "1 while the agent has a stream to the collector.",
        i64::from(export.connected),
    )
}

fn encode_identity(
    encoder: &mut DescriptorEncoder,
    snapshot: &Snapshot,
) -> Result<(), std::fmt::Error> {
    let stats = snapshot.identity;
    let mut known = encoder.encode_descriptor(
        "moat_identity_objects",
        "What the identity index knows, by kind: pods, services, nodes, namespaces, ranges (declared and learned) and pod addresses (with their recent holders).",
        None,
        MetricType::Gauge,
    )?;
    for (kind, count) in [
        ("pod", stats.pods),
        ("service", stats.services),
        ("node", stats.nodes),
        ("namespace", stats.namespaces),
        ("range", stats.ranges),
        ("pod_address", stats.pod_addresses),
    ] {
        ConstGauge::new(count as i64).encode(known.encode_family(&vec![("kind", kind)])?)?;
    }
    if snapshot.kube.is_empty() {
        return Ok(());
    }
    let mut synced = encoder.encode_descriptor(
        "moat_kube_watch_synced",
        "1 once a Kubernetes watch has listed everything, by resource.",
        None,
        MetricType::Gauge,
    )?;
    for watch in &snapshot.kube {
        ConstGauge::new(i64::from(watch.synced))
            .encode(synced.encode_family(&vec![("resource", watch.resource)])?)?;
    }
    let mut stale = encoder.encode_descriptor(
        "moat_kube_watch_stale_seconds",
        "How long a Kubernetes watch has been failing (0 while it works): the facts from it are at least this old.",
        None,
        MetricType::Gauge,
    )?;
    for watch in &snapshot.kube {
        ConstGauge::new(watch.stale_seconds)
            .encode(stale.encode_family(&vec![("resource", watch.resource)])?)?;
    }
    let series = |value: fn(&KubeWatchStats) -> u64| -> Vec<(Labels<'_>, u64)> {
        snapshot
            .kube
            .iter()
            .map(|watch| (vec![("resource", watch.resource)], value(watch)))
            .collect()
    };
    counter(
        encoder,
        "moat_kube_watch_errors",
        "Kubernetes watch failures (each followed by a retry with back-off), by resource.",
        &series(|watch| watch.errors),
    )?;
    counter(
        encoder,
        "moat_kube_objects_rejected",
        "Kubernetes objects the agent could not use (missing uid or name), by resource.",
        &series(|watch| watch.rejected),
    )
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(family.encode_family(&Labels::new())?)
}

fn encode_capture(
    encoder: &mut DescriptorEncoder,
    capture: &CaptureStats,
) -> Result<(), std::fmt::Error> {
    use agent_common::capture::CaptureStat;
    let kernel = |stat: CaptureStat| capture.kernel[stat as usize];
    let tracker = capture.tracker;
    counter(
        encoder,
        "moat_api_calls",
        "API calls parsed from captured connections (a call seen at both ends counts twice here, is reported once).",
        &[(vec![], tracker.calls)],
    )?;
    counter(
        encoder,
        "moat_api_calls_merged",
        "Calls seen at both ends of a connection on this node, reported once.",
        &[(vec![], tracker.calls_merged)],
    )?;
    counter(
        encoder,
        "moat_capture_connections_opened",
        "Connections capture started tracking.",
        &[(vec![], tracker.connections_opened)],
    )?;
    let cpus: Vec<String> = (0..capture.events_lost_per_cpu.len())
        .map(|cpu| cpu.to_string())
        .collect();
    let lost: Vec<(Labels<'_>, u64)> = capture
        .events_lost_per_cpu
        .iter()
        .zip(&cpus)
        .map(|(lost, cpu)| (vec![("cpu", cpu.as_str())], *lost))
        .collect();
    counter(
        encoder,
        "moat_capture_events_lost",
        "Capture events the kernel's ring buffer had no room for, per CPU.",
        &lost,
    )?;
    counter(
        encoder,
        "moat_capture_bytes_missed",
        "Stream bytes the agent did not get, by reason: ring buffer full, past the per-syscall event limit, unreadable from the process, sent from a file with sendfile (never in the process's memory), or given up in the agent because waiting for them would have passed the per-connection bound.",
        &[
            (
                vec![("reason", "ring_full")],
                kernel(CaptureStat::BytesLost),
            ),
            (
                vec![("reason", "event_limit")],
                kernel(CaptureStat::BytesNotCaptured),
            ),
            (
                vec![("reason", "unreadable")],
                kernel(CaptureStat::BytesUnreadable),
            ),
            (
                vec![("reason", "sendfile")],
                kernel(CaptureStat::BytesFromFile),
            ),
            (vec![("reason", "reorder_bound")], tracker.bytes_given_up),
            (
                vec![("reason", "tls_unlinked")],
                kernel(CaptureStat::TlsBytesUnlinked),
            ),
        ],
    )?;
    counter(
        encoder,
        "moat_capture_dropped",
        "What a capture bound or a lost event cost, by reason; each is a loss, never silent.",
        &[
            (
                vec![("reason", "socket_table_full")],
                kernel(CaptureStat::SocketTableFull),
            ),
            (
                vec![("reason", "in_flight_table_full")],
                kernel(CaptureStat::InFlightTableFull),
            ),
            (
                vec![("reason", "tls_in_flight_table_full")],
                kernel(CaptureStat::TlsInFlightTableFull),
            ),
            (
                vec![("reason", "tls_opaque_dropped")],
                tracker.opaque_dropped,
            ),
            (
                vec![("reason", "malformed_event")],
                capture.malformed_events,
            ),
            (
                vec![("reason", "unknown_connection")],
                tracker.events_unknown_connection,
            ),
            (
                vec![("reason", "connection_evicted")],
                tracker.connections_evicted,
            ),
            (
                vec![("reason", "connection_expired")],
                tracker.connections_expired,
            ),
            (
                vec![("reason", "connection_bytes_exceeded")],
                tracker.connection_bytes_exceeded,
            ),
            (
                vec![("reason", "mirror_queue_full")],
                tracker.mirror_queue_full,
            ),
        ],
    )?;
    gauge(
        encoder,
        "moat_capture_connections",
        "Connections tracked now.",
        capture.connections as i64,
    )?;
    gauge(
        encoder,
        "moat_capture_held_bytes",
        "Bytes held by tracked connections now (incomplete messages, kept bodies, out-of-order bytes).",
        capture.held_bytes as i64,
    )
}

/// Serves until the process ends.
pub async fn serve(address: SocketAddr, metrics: Metrics) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Metrics>| async move { metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(metrics): State<Metrics>| async move {
                if metrics.read().ready {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(metrics);
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_series_with_its_labels() {
        let metrics = Metrics::default();
        metrics.update(|snapshot| {
            snapshot.verdicts.insert(
                VerdictLabel {
                    verdict: "drop",
                    reason: "rule",
                    rule: "frontend-not-to-db".to_owned(),
                },
                TrafficCounters {
                    packets: 3,
                    bytes: 222,
                },
            );
            snapshot.xdp.frames = 10;
            snapshot.reloads_rejected = 1;
            snapshot.attachments.push(Attachment {
                interface: "veth1".to_owned(),
                ifindex: 4,
                hook: "xdp",
                mode: "native",
            });
        });
        let text = metrics.render();
        for line in [
            "moat_policy_packets_total{verdict=\"drop\",reason=\"rule\",rule=\"frontend-not-to-db\"} 3",
            "moat_policy_bytes_total{verdict=\"drop\",reason=\"rule\",rule=\"frontend-not-to-db\"} 222",
            "moat_frames_total 10",
            "moat_policy_reloads_total{result=\"rejected\"} 1",
            "moat_events_dropped_total{stage=\"xdp\",reason=\"drop_event_ring_full\"} 0",
            "moat_events_dropped_total{stage=\"agent\",reason=\"malformed_drop_event\"} 0",
            "moat_attached{interface=\"veth1\",hook=\"xdp\",mode=\"native\"} 1",
            "moat_timed_blocks{} 0",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "{line} missing:\n{text}"
            );
        }
    }

    #[test]
    fn capture_losses_are_exposed_by_every_documented_reason() {
        use agent_common::capture::CaptureStat;
        let mut capture = CaptureStats {
            events_lost_per_cpu: vec![2, 3],
            ..CaptureStats::default()
        };
        capture.kernel[CaptureStat::BytesFromFile as usize] = 3000;
        capture.tracker.bytes_given_up = 17;
        capture.tracker.connections_evicted = 4;
        let metrics = Metrics::default();
        metrics.update(|snapshot| snapshot.capture = Some(capture));
        let text = metrics.render();
        let docs = include_str!("../../docs/metrics.md");
        for line in [
            "moat_capture_events_lost_total{cpu=\"0\"} 2",
            "moat_capture_events_lost_total{cpu=\"1\"} 3",
            "moat_capture_bytes_missed_total{reason=\"ring_full\"} 0",
            "moat_capture_bytes_missed_total{reason=\"event_limit\"} 0",
            "moat_capture_bytes_missed_total{reason=\"unreadable\"} 0",
            "moat_capture_bytes_missed_total{reason=\"sendfile\"} 3000",
            "moat_capture_bytes_missed_total{reason=\"reorder_bound\"} 17",
            "moat_capture_dropped_total{reason=\"connection_evicted\"} 4",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "{line} missing:\n{text}"
            );
            if line.contains("reason=") {
                let reason = line.split('"').nth(1).unwrap_or_default();
                assert!(
                    docs.contains(&format!("`{reason}`")),
                    "docs/metrics.md lacks {reason}"
                );
            }
        }
    }
}
