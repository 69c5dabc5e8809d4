//! `moat calls`: API calls from the collector, filtered, newest first.

use std::time::{Duration, SystemTime};

use moat_api::v1::{ApiCall, CallFilter, ListCallsRequest, Peer, WatchCallsRequest};

use crate::{Failure, Output, connect, render};

#[derive(Debug, clap::Args)]
pub struct CallsArgs {
    /// Only calls whose path starts with this.
    #[arg(long, value_name = "PREFIX")]
    path: Option<String>,
    /// Only calls with this status or higher, e.g. 500 for server errors.
    #[arg(long, value_name = "STATUS")]
    min_status: Option<u32>,
    #[command(flatten)]
    scope: crate::scope::Scope,
}

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
    args: &CallsArgs,
) -> Result<(), Failure> {
    let mut client = connect(collector, token).await?;
    let (namespace, workload, cluster, tag) = args.scope.names();
    let filter = CallFilter {
        since_unix_nanos: crate::since_nanos(args.scope.window.since),
        cluster,
        namespace,
        workload,
        path_prefix: args.path.clone().unwrap_or_default(),
        min_status: args.min_status.unwrap_or(0),
        tag,
        ..CallFilter::default()
    };
    let calls = render::pages(args.scope.window.limit, |cursor, page_size| {
        let mut client = client.clone();
        let filter = filter.clone();
        async move {
            let page = client
                .list_calls(ListCallsRequest {
                    filter: Some(filter),
                    page_size,
                    cursor,
                })
                .await?
                .into_inner();
            Ok((page.calls, page.next_cursor))
        }
    })
    .await?;
    if !args.scope.follow {
        let mut out = std::io::stdout().lock();
        return render::records(&mut out, output, calls.iter().map(json), |out| {
            table(out, &calls)
        })
        .map_err(|error| Failure::Other(error.into()));
    }
    // Follow: a stream has no end to size columns by, so they are fixed.
    let updates = client
        .watch_calls(WatchCallsRequest {
            filter: Some(filter),
        })
        .await?
        .into_inner();
    render::Follow {
        headers: &HEADERS,
        widths: &FOLLOW_WIDTHS,
        cells: |call| cells(call).to_vec(),
        json,
    }
    .run(output, &calls, updates)
    .await
}

const HEADERS: [&str; 6] = ["TIME", "CALL", "STATUS", "LATENCY", "CLIENT", "SERVER"];
const FOLLOW_WIDTHS: [usize; 6] = [20, 40, 6, 9, 32, 32];

fn cells(call: &ApiCall) -> [String; 6] {
    [
        time(call.time_unix_nanos),
        format!("{} {}", call.method, call.path),
        if call.status == 0 {
            "-".to_owned()
        } else {
            call.status.to_string()
        },
        format!("{:.1}ms", call.latency_us as f64 / 1000.0),
        who(&call.client),
        who(&call.server),
    ]
}

fn who(peer: &Option<Peer>) -> String {
    let Some(peer) = peer else {
        return "?".to_owned();
    };
    match &peer.identity {
        Some(identity) if identity.kind == "pod" => {
            format!("{}/{}", identity.namespace, identity.pod)
        }
        Some(identity) if identity.kind == "service" => {
            format!("svc {}/{}", identity.namespace, identity.service)
        }
        Some(identity) if identity.kind == "node" => format!("node {}", identity.node),
        Some(identity) if identity.kind == "range" => format!("{} ({})", peer.ip, identity.range),
        _ => peer.ip.clone(),
    }
}

pub fn time(nanos: i64) -> String {
    let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

fn table(out: &mut dyn std::io::Write, calls: &[ApiCall]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = calls.iter().map(|call| cells(call).to_vec()).collect();
    crate::render::aligned(out, &HEADERS, &rows)
}

fn json(call: &ApiCall) -> serde_json::Value {
    let peer = |peer: &Option<Peer>| {
        let Some(peer) = peer else {
            return serde_json::Value::Null;
        };
        let identity = peer.identity.clone().unwrap_or_default();
        serde_json::json!({
            "ip": peer.ip, "port": peer.port, "kind": identity.kind, "namespace": identity.namespace,
            "pod": identity.pod, "workload": identity.workload_name, "service": identity.service,
            "node": identity.node, "range": identity.range,
        })
    };
    serde_json::json!({
        "time": time(call.time_unix_nanos),
        "protocol": call.protocol,
        "method": call.method,
        "path": call.path,
        "status": call.status,
        "latency_us": call.latency_us,
        "service": call.service,
        "endpoint": call.endpoint,
        "auth": call.auth,
        "client": peer(&call.client),
        "server": peer(&call.server),
    })
}

#[cfg(test)]
mod tests {
    use moat_api::v1::{Identity, RecordId};

    use super::*;

    fn peer(ip: &str, identity: Identity) -> Option<Peer> {
        Some(Peer {
            ip: ip.into(),
            port: 8080,
            identity: Some(identity),
            ..Peer::default()
        })
    }

    fn sample() -> Vec<ApiCall> {
        vec![
            ApiCall {
                id: Some(RecordId {
                    node: "n".into(),
                    boot: 1,
                    sequence: 2,
                }),
                time_unix_nanos: 1_795_000_000_000_000_000,
                method: "POST".into(),
                path: "/v1/orders".into(),
                status: 503,
                latency_us: 12_345,
                client: peer(
                    "10.0.0.5",
                    Identity {
                        kind: "pod".into(),
                        namespace: "shop".into(),
                        pod: "web-7d9f8-x2k4p".into(),
                        ..Identity::default()
                    },
                ),
                server: peer(
                    "10.96.0.10",
                    Identity {
                        kind: "service".into(),
                        namespace: "shop".into(),
                        service: "orders".into(),
                        ..Identity::default()
                    },
                ),
                ..ApiCall::default()
            },
            ApiCall {
                id: Some(RecordId {
                    node: "n".into(),
                    boot: 1,
                    sequence: 1,
                }),
                time_unix_nanos: 1_794_999_999_000_000_000,
                method: "GET".into(),
                path: "/healthz".into(),
                status: 0,
                latency_us: 0,
                client: peer(
                    "203.0.113.9",
                    Identity {
                        kind: "range".into(),
                        range: "acme".into(),
                        ..Identity::default()
                    },
                ),
                server: peer(
                    "192.168.1.10",
                    Identity {
                        kind: "node".into(),
                        node: "node-a".into(),
                        ..Identity::default()
                    },
                ),
                ..ApiCall::default()
            },
        ]
    }

    #[test]
    fn the_table_is_aligned_and_names_ends_by_identity() {
        let mut out = Vec::new();
        table(&mut out, &sample()).expect("write");
        let golden = "\
TIME                  CALL             STATUS  LATENCY  CLIENT                SERVER
2026-11-18T11:06:40Z  POST /v1/orders  503     12.3ms   shop/web-7d9f8-x2k4p  svc shop/orders
2026-11-18T11:06:39Z  GET /healthz     -       0.0ms    203.0.113.9 (acme)    node node-a
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
    }

    #[test]
    fn json_lines_carry_the_fields_scripts_use() {
        let line = json(&sample()[0]);
        assert_eq!(
            line,
            serde_json::json!({
                "time": "2026-11-18T11:06:40Z", "protocol": "", "method": "POST", "path": "/v1/orders",
                "status": 503, "latency_us": 12345, "service": "", "endpoint": "", "auth": "",
                "client": {"ip": "10.0.0.5", "port": 8080, "kind": "pod", "namespace": "shop", "pod": "web-7d9f8-x2k4p", "workload": "", "service": "", "node": "", "range": ""},
                "server": {"ip": "10.96.0.10", "port": 8080, "kind": "service", "namespace": "shop", "pod": "", "workload": "", "service": "orders", "node": "", "range": ""},
            })
        );
    }

    #[test]
    fn follow_lines_keep_fixed_columns() {
        let line = render::fixed_line(&cells(&sample()[0]), &FOLLOW_WIDTHS);
        assert!(
            line.starts_with("2026-11-18T11:06:40Z  POST /v1/orders"),
            "{line}"
        );
        assert_eq!(line.find("503"), Some(20 + 2 + 40 + 2), "{line}");
    }
}
