//! `moat map`: who calls whom.

use std::time::Duration;

use moat_api::v1::{GetServiceMapRequest, ServiceMapEdge};

use crate::{Collector, Failure, Output, connect};

#[derive(Debug, clap::Args)]
pub struct MapArgs {
    /// Only calls from this long ago on, e.g. `15m`, `2h`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    since: Option<Duration>,
}

pub async fn run(
    collector: &Collector,
    token: Option<&str>,
    output: Output,
    args: &MapArgs,
) -> Result<(), Failure> {
    let mut client = connect(collector, token).await?;
    let since = crate::since_nanos(args.since);
    let edges = client
        .get_service_map(GetServiceMapRequest {
            since_unix_nanos: since,
            until_unix_nanos: 0,
        })
        .await?
        .into_inner()
        .edges;
    let mut out = std::io::stdout().lock();
    crate::render::records(&mut out, output, edges.iter().map(json), |out| {
        table(out, &edges)
    })
    .map_err(|error| Failure::Other(error.into()))
}

fn json(edge: &ServiceMapEdge) -> serde_json::Value {
    serde_json::json!({
        "client": edge.client, "server": edge.server, "protocols": edge.protocols,
        "calls": edge.calls, "failed": edge.failed, "mean_latency_us": edge.mean_latency_us,
        "max_latency_us": edge.max_latency_us, "encrypted": edge.encrypted,
    })
}

fn table(out: &mut dyn std::io::Write, edges: &[ServiceMapEdge]) -> std::io::Result<()> {
    let width = |pick: fn(&ServiceMapEdge) -> &str, header: &str| {
        edges
            .iter()
            .map(|edge| pick(edge).chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
            .min(50)
    };
    let client_width = width(|edge| &edge.client, "CLIENT");
    let server_width = width(|edge| &edge.server, "SERVER");
    writeln!(
        out,
        "{:<client_width$}  {:<server_width$}  {:<11}  {:>8}  {:>7}  {:>10}",
        "CLIENT", "SERVER", "PROTOCOLS", "CALLS", "FAILED", "MEAN"
    )?;
    for edge in edges {
        let cut = |text: &str, width: usize| text.chars().take(width).collect::<String>();
        writeln!(
            out,
            "{:<client_width$}  {:<server_width$}  {:<11}  {:>8}  {:>7}  {:>10}",
            cut(&edge.client, client_width),
            cut(&edge.server, server_width),
            edge.protocols.join(","),
            edge.calls,
            edge.failed,
            format!("{:.1}ms", edge.mean_latency_us as f64 / 1000.0)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_table_is_aligned() {
        let edges = vec![
            ServiceMapEdge {
                client: "shop/web".into(),
                server: "shop/orders".into(),
                protocols: vec!["http1".into(), "grpc".into()],
                calls: 1200,
                failed: 3,
                mean_latency_us: 4_250,
                ..ServiceMapEdge::default()
            },
            ServiceMapEdge {
                client: "range partners".into(),
                server: "service shop/api".into(),
                protocols: vec!["http2".into()],
                calls: 7,
                ..ServiceMapEdge::default()
            },
        ];
        let mut out = Vec::new();
        table(&mut out, &edges).expect("write");
        let golden = "\
CLIENT          SERVER            PROTOCOLS       CALLS   FAILED        MEAN
shop/web        shop/orders       http1,grpc       1200        3       4.2ms
range partners  service shop/api  http2               7        0       0.0ms
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
    }
}
