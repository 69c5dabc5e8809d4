//! `moat findings`: what the agents found about the APIs, filtered, newest first; `--follow`
//! prints new findings as they arrive.

use moat_api::v1::{Finding, FindingFilter, ListFindingsRequest, Peer, WatchFindingsRequest};

use crate::{Failure, Output, calls::time, connect, render};

#[derive(Debug, clap::Args)]
pub struct FindingsArgs {
    /// Only findings of this severity or higher: info, low, medium, high, critical.
    #[arg(long, value_name = "SEVERITY", value_parser = ["info", "low", "medium", "high", "critical"])]
    severity: Option<String>,
    /// Only this kind (`spec.invalid_parameter`) or family (`spec.`, `inventory.`, `policy.`).
    #[arg(long)]
    kind: Option<String>,
    /// Only findings about this service (an API's name, `namespace/service`, ...).
    #[arg(long, short = 's')]
    service: Option<String>,
    /// Only findings about endpoints starting with this, e.g. `/api/v3/pet`.
    #[arg(long, value_name = "PREFIX")]
    endpoint: Option<String>,
    /// Only findings whose source is this address, pod, workload, range or customer.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    scope: crate::scope::Scope,
}

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
    args: &FindingsArgs,
) -> Result<(), Failure> {
    let client = connect(collector, token).await?;
    let (namespace, workload, cluster, tag) = args.scope.names();
    let filter = FindingFilter {
        since_unix_nanos: crate::since_nanos(args.scope.window.since),
        min_severity: args.severity.clone().unwrap_or_default(),
        kind: args.kind.clone().unwrap_or_default(),
        service: args.service.clone().unwrap_or_default(),
        endpoint: args.endpoint.clone().unwrap_or_default(),
        source: args.source.clone().unwrap_or_default(),
        namespace,
        workload,
        cluster,
        tag,
        ..FindingFilter::default()
    };
    let findings = render::pages(args.scope.window.limit, |cursor, page_size| {
        let mut client = client.clone();
        let filter = filter.clone();
        async move {
            let page = client
                .list_findings(ListFindingsRequest {
                    filter: Some(filter),
                    page_size,
                    cursor,
                })
                .await?
                .into_inner();
            Ok((page.findings, page.next_cursor))
        }
    })
    .await?;
    let io = |error: std::io::Error| Failure::Other(error.into());
    if !args.scope.follow {
        let mut out = std::io::stdout().lock();
        return render::records(&mut out, output, findings.iter().map(json), |out| {
            let rows: Vec<Vec<String>> = findings
                .iter()
                .map(|finding| cells(finding).to_vec())
                .collect();
            render::aligned(out, &HEADERS, &rows)
        })
        .map_err(io);
    }
    let updates = client
        .clone()
        .watch_findings(WatchFindingsRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner();
    render::Follow {
        headers: &HEADERS,
        widths: &FOLLOW_WIDTHS,
        cells: |finding| cells(finding).to_vec(),
        json,
    }
    .run(output, &findings, updates)
    .await
}

const HEADERS: [&str; 7] = [
    "TIME", "SEVERITY", "FINDING", "SERVICE", "ENDPOINT", "SOURCE", "MESSAGE",
];
const FOLLOW_WIDTHS: [usize; 7] = [20, 8, 28, 20, 32, 24, 60];

/// Who the source is, in a few words: its workload, pod, range or customer, else its address.
fn source(peer: &Option<Peer>) -> String {
    let Some(peer) = peer else {
        return "-".to_owned();
    };
    let identity = peer.identity.clone().unwrap_or_default();
    if !identity.workload_name.is_empty() {
        format!("{}/{}", identity.namespace, identity.workload_name)
    } else if !identity.pod.is_empty() {
        format!("{}/{}", identity.namespace, identity.pod)
    } else if !identity.customer.is_empty() {
        format!("{} ({})", peer.ip, identity.customer)
    } else if !identity.range.is_empty() {
        format!("{} ({})", peer.ip, identity.range)
    } else {
        peer.ip.clone()
    }
}

fn cells(finding: &Finding) -> [String; 7] {
    [
        time(finding.time_unix_nanos),
        finding.severity.clone(),
        finding.kind.clone(),
        finding.service.clone(),
        format!("{} {}", finding.method, finding.endpoint),
        source(&finding.source),
        finding.message.clone(),
    ]
}

fn json(finding: &Finding) -> serde_json::Value {
    let peer = |peer: &Option<Peer>| {
        let Some(peer) = peer else {
            return serde_json::Value::Null;
        };
        let identity = peer.identity.clone().unwrap_or_default();
        serde_json::json!({
            "ip": peer.ip, "kind": identity.kind, "namespace": identity.namespace,
            "pod": identity.pod, "workload": identity.workload_name, "range": identity.range,
            "customer": identity.customer,
        })
    };
    serde_json::json!({
        "time": time(finding.time_unix_nanos),
        "kind": finding.kind,
        "severity": finding.severity,
        "service": finding.service,
        "method": finding.method,
        "endpoint": finding.endpoint,
        "spec_pointer": finding.spec_pointer,
        "message": finding.message,
        "evidence": finding.evidence,
        "mode": finding.mode,
        "rule": finding.rule,
        "source": peer(&finding.source),
        "destination": peer(&finding.destination),
        "caller": finding.caller.as_ref().map(|caller| serde_json::json!({
            "peer": caller.peer, "application": caller.application, "api_key": caller.api_key,
            "customer": caller.customer, "user": caller.user,
        })),
    })
}

#[cfg(test)]
mod tests {
    use moat_api::v1::Identity;

    use super::*;

    fn sample() -> Vec<Finding> {
        vec![
            Finding {
                time_unix_nanos: 1_795_000_000_000_000_000,
                kind: "spec.invalid_parameter".into(),
                severity: "high".into(),
                service: "petstore".into(),
                method: "GET".into(),
                endpoint: "/api/v3/pet/{petId}".into(),
                spec_pointer: "#/paths/~1pet~1{petId}/get/parameters/0".into(),
                message: "path parameter \"petId\": expected integer, got string".into(),
                evidence: "path petId=\"\"… (3 chars)".into(),
                mode: "block".into(),
                source: Some(Peer {
                    ip: "203.0.113.9".into(),
                    identity: Some(Identity {
                        kind: "range".into(),
                        range: "partners".into(),
                        customer: "Acme".into(),
                        ..Identity::default()
                    }),
                    ..Peer::default()
                }),
                ..Finding::default()
            },
            Finding {
                time_unix_nanos: 1_794_999_999_000_000_000,
                kind: "inventory.new_endpoint".into(),
                severity: "info".into(),
                service: "shop/orders".into(),
                method: "POST".into(),
                endpoint: "/v1/orders".into(),
                message: "first call to this endpoint".into(),
                source: Some(Peer {
                    ip: "10.0.0.5".into(),
                    identity: Some(Identity {
                        kind: "pod".into(),
                        namespace: "shop".into(),
                        pod: "web-1".into(),
                        workload_name: "web".into(),
                        ..Identity::default()
                    }),
                    ..Peer::default()
                }),
                ..Finding::default()
            },
        ]
    }

    #[test]
    fn the_findings_table_names_sources_by_identity() {
        let rows: Vec<Vec<String>> = sample()
            .iter()
            .map(|finding| cells(finding).to_vec())
            .collect();
        let mut out = Vec::new();
        render::aligned(&mut out, &HEADERS, &rows).expect("write");
        let golden = "\
TIME                  SEVERITY  FINDING                 SERVICE      ENDPOINT                 SOURCE              MESSAGE
2026-11-18T11:06:40Z  high      spec.invalid_parameter  petstore     GET /api/v3/pet/{petId}  203.0.113.9 (Acme)  path parameter \"petId\": expected integer, got string
2026-11-18T11:06:39Z  info      inventory.new_endpoint  shop/orders  POST /v1/orders          shop/web            first call to this endpoint
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
    }

    #[test]
    fn json_and_yaml_carry_the_pointer_and_masked_evidence() {
        let value = json(&sample()[0]);
        assert_eq!(
            value["spec_pointer"],
            "#/paths/~1pet~1{petId}/get/parameters/0"
        );
        assert_eq!(value["evidence"], "path petId=\"\"… (3 chars)");
        assert_eq!(value["source"]["customer"], "Acme");
        let mut out = Vec::new();
        render::record(&mut out, Output::Yaml, &value).expect("write");
        let yaml = String::from_utf8(out).expect("utf-8");
        assert!(yaml.starts_with("---\n"), "{yaml}");
        assert!(yaml.contains("kind: spec.invalid_parameter\n"), "{yaml}");
    }
}
