//! `moat map`: who calls whom, and whether in clear.

use std::time::Duration;

use moat_api::v1::{GetServiceMapRequest, ServiceMapEdge};

use crate::{Collector, Failure, Output, connect};

#[derive(Debug, clap::Args)]
pub struct MapArgs {
    /// Only calls and connections from this long ago on, e.g. `15m`, `2h`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    since: Option<Duration>,

    /// Only the pairs with connections in clear (all or some of them: `plaintext` or `mixed`),
    /// most plaintext connections first: the links that still need securing.
    #[arg(long)]
    plaintext: bool,
}

/// The pairs with connections in clear, most of them first.
fn plaintext_pairs(mut edges: Vec<ServiceMapEdge>) -> Vec<ServiceMapEdge> {
    edges.retain(|edge| edge.plaintext_connections > 0);
    edges.sort_by(|a, b| {
        b.plaintext_connections
            .cmp(&a.plaintext_connections)
            .then_with(|| (&a.client, &a.server).cmp(&(&b.client, &b.server)))
    });
    edges
}

fn total_connections(edge: &ServiceMapEdge) -> u64 {
    edge.plaintext_connections + edge.tls_connections + edge.mtls_connections
}

/// Each encryption's share of the pair's connections, in percent, where any.
fn shares(edge: &ServiceMapEdge) -> Vec<(&'static str, f64)> {
    let total = total_connections(edge);
    if total == 0 {
        return Vec::new();
    }
    [
        ("plaintext", edge.plaintext_connections),
        ("tls", edge.tls_connections),
        ("mtls", edge.mtls_connections),
    ]
    .into_iter()
    .filter(|(_, count)| *count > 0)
    .map(|(name, count)| (name, count as f64 * 100.0 / total as f64))
    .collect()
}

/// `tls`, `mixed (plaintext 75%, tls 25%)`, `unknown`.
fn encryption_text(edge: &ServiceMapEdge) -> String {
    let encryption = if edge.encryption.is_empty() {
        "unknown"
    } else {
        edge.encryption.as_str()
    };
    if encryption != "mixed" {
        return encryption.to_owned();
    }
    let parts: Vec<String> = shares(edge)
        .iter()
        .map(|(name, share)| format!("{name} {share:.0}%"))
        .collect();
    format!("mixed ({})", parts.join(", "))
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
    let edges = if args.plaintext {
        plaintext_pairs(edges)
    } else {
        edges
    };
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
        "encryption": if edge.encryption.is_empty() { "unknown" } else { edge.encryption.as_str() },
        "connections": {
            "plaintext": edge.plaintext_connections, "tls": edge.tls_connections,
            "mtls": edge.mtls_connections,
        },
        "shares": shares(edge).into_iter()
            .map(|(name, share)| (name.to_owned(), serde_json::json!(share / 100.0)))
            .collect::<serde_json::Map<_, _>>(),
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
        "{:<client_width$}  {:<server_width$}  {:<11}  {:>8}  {:>7}  {:>10}  {:>11}  ENCRYPTION",
        "CLIENT", "SERVER", "PROTOCOLS", "CALLS", "FAILED", "MEAN", "CONNECTIONS"
    )?;
    for edge in edges {
        let cut = |text: &str, width: usize| text.chars().take(width).collect::<String>();
        writeln!(
            out,
            "{:<client_width$}  {:<server_width$}  {:<11}  {:>8}  {:>7}  {:>10}  {:>11}  {}",
            cut(&edge.client, client_width),
            cut(&edge.server, server_width),
            edge.protocols.join(","),
            edge.calls,
            edge.failed,
            format!("{:.1}ms", edge.mean_latency_us as f64 / 1000.0),
            total_connections(edge),
            encryption_text(edge),
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
                encryption: "mixed".into(),
                plaintext_connections: 3,
                tls_connections: 1,
                ..ServiceMapEdge::default()
            },
            ServiceMapEdge {
                client: "shop/web".into(),
                server: "shop/vault".into(),
                encryption: "mtls".into(),
                mtls_connections: 2,
                ..ServiceMapEdge::default()
            },
        ];
        let mut out = Vec::new();
        table(&mut out, &edges).expect("write");
        let golden = "\
CLIENT          SERVER            PROTOCOLS       CALLS   FAILED        MEAN  CONNECTIONS  ENCRYPTION
shop/web        shop/orders       http1,grpc       1200        3       4.2ms            0  unknown
range partners  service shop/api  http2               7        0       0.0ms            4  mixed (plaintext 75%, tls 25%)
shop/web        shop/vault                            0        0       0.0ms            2  mtls
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
        let plaintext = plaintext_pairs(edges);
        assert_eq!(plaintext.len(), 1);
        assert_eq!(plaintext[0].server, "service shop/api");
        let shares = json(&plaintext[0])["shares"].clone();
        assert_eq!(shares, serde_json::json!({"plaintext": 0.75, "tls": 0.25}));
    }
}
