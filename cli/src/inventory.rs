//! `moat inventory`: the ranges and workloads the agents know, merged across nodes.

use moat_api::v1::{GetInventoryRequest, GetInventoryResponse};

use crate::{Failure, Output, connect, render};

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Only this namespace's workloads.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
}

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
    args: &InventoryArgs,
) -> Result<(), Failure> {
    let mut client = connect(collector, token).await?;
    let inventory = client
        .get_inventory(GetInventoryRequest {
            namespace: args.namespace.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    render::records(&mut out, output, values(&inventory), |out| {
        table(out, &inventory)
    })
    .map_err(|error| Failure::Other(error.into()))
}

/// One record per range, workload and node, each with its `type`.
fn values(inventory: &GetInventoryResponse) -> Vec<serde_json::Value> {
    let ranges = inventory.ranges.iter().map(|range| {
        serde_json::json!({
            "type": "range", "name": range.name, "kind": range.kind, "cidrs": range.cidrs,
            "learned": range.learned,
        })
    });
    let workloads = inventory.workloads.iter().map(|workload| {
        serde_json::json!({
            "type": "workload", "namespace": workload.namespace, "kind": workload.kind,
            "name": workload.name, "pods": workload.pods, "services": workload.services,
        })
    });
    let nodes = inventory.nodes.iter().map(|node| {
        serde_json::json!({
            "type": "node", "node": node.node, "cluster": node.cluster,
            "reported": crate::calls::time(node.reported_unix_nanos),
        })
    });
    ranges.chain(workloads).chain(nodes).collect()
}

fn table(out: &mut dyn std::io::Write, inventory: &GetInventoryResponse) -> std::io::Result<()> {
    let ranges: Vec<Vec<String>> = inventory
        .ranges
        .iter()
        .map(|range| {
            vec![
                range.name.clone(),
                range.kind.clone(),
                range.cidrs.join(","),
                if range.learned { "learned" } else { "declared" }.to_owned(),
            ]
        })
        .collect();
    render::aligned(out, &["RANGE", "KIND", "CIDRS", "SOURCE"], &ranges)?;
    writeln!(out)?;
    let workloads: Vec<Vec<String>> = inventory
        .workloads
        .iter()
        .map(|workload| {
            vec![
                workload.namespace.clone(),
                workload.kind.clone(),
                workload.name.clone(),
                workload.pods.to_string(),
                workload.services.join(","),
            ]
        })
        .collect();
    render::aligned(
        out,
        &["NAMESPACE", "KIND", "WORKLOAD", "PODS", "SERVICES"],
        &workloads,
    )?;
    writeln!(out)?;
    let nodes: Vec<Vec<String>> = inventory
        .nodes
        .iter()
        .map(|node| {
            vec![
                node.node.clone(),
                node.cluster.clone(),
                crate::calls::time(node.reported_unix_nanos),
            ]
        })
        .collect();
    render::aligned(out, &["NODE", "CLUSTER", "REPORTED"], &nodes)
}

#[cfg(test)]
mod tests {
    use moat_api::v1::{InventoryNode, InventoryRange, InventoryWorkload};

    use super::*;

    #[test]
    fn the_inventory_prints_ranges_workloads_and_nodes() {
        let inventory = GetInventoryResponse {
            ranges: vec![InventoryRange {
                name: "acme".into(),
                kind: "customer".into(),
                cidrs: vec!["203.0.113.0/24".into()],
                learned: false,
            }],
            workloads: vec![InventoryWorkload {
                namespace: "shop".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                pods: 3,
                services: vec!["web".into()],
            }],
            nodes: vec![InventoryNode {
                node: "node-a".into(),
                cluster: "prod".into(),
                reported_unix_nanos: 1_795_000_000_000_000_000,
            }],
        };
        let mut out = Vec::new();
        table(&mut out, &inventory).expect("write");
        let golden = "\
RANGE  KIND      CIDRS           SOURCE
acme   customer  203.0.113.0/24  declared

NAMESPACE  KIND        WORKLOAD  PODS  SERVICES
shop       Deployment  web       3     web

NODE    CLUSTER  REPORTED
node-a  prod     2026-11-18T11:06:40Z
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
        assert_eq!(values(&inventory).len(), 3);
    }
}
