//! `moat agents`: what each agent last told the collector.

use std::time::Duration;

use moat_api::v1::{AgentState, GetAgentStatusRequest};

use crate::{Failure, Output, calls::time, connect};

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
) -> Result<(), Failure> {
    let mut client = connect(collector, token).await?;
    let mut agents = client
        .get_agent_status(GetAgentStatusRequest {})
        .await?
        .into_inner()
        .agents;
    agents.sort_by_key(|agent| std::cmp::Reverse(agent.last_seen_unix_nanos));
    let mut out = std::io::stdout().lock();
    crate::render::records(&mut out, output, agents.iter().map(json), |out| {
        table(out, &agents)
    })
    .map_err(|error| Failure::Other(error.into()))
}

fn uptime(agent: &AgentState) -> String {
    let boot = agent.status.as_ref().map_or(0, |status| status.boot as i64);
    let seconds = (agent.last_seen_unix_nanos - boot).max(0) as u64 / 1_000_000_000;
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

fn json(agent: &AgentState) -> serde_json::Value {
    let status = agent.status.clone().unwrap_or_default();
    serde_json::json!({
        "node": status.node, "version": status.version, "boot": status.boot,
        "connected": agent.connected, "last_seen": time(agent.last_seen_unix_nanos),
        "records_stored": agent.records_stored, "queue_depth": status.queue_depth,
        "records_dropped": status.records_dropped, "events_lost": status.events_lost,
    })
}

fn table(out: &mut dyn std::io::Write, agents: &[AgentState]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<8} {:<12} {:<9} {:<20} {:>9} {:>7} {:>8} {:>6}",
        "NODE", "VERSION", "UP", "CONNECTED", "LAST SEEN", "STORED", "QUEUE", "DROPPED", "LOST"
    )?;
    for agent in agents {
        let status = agent.status.clone().unwrap_or_default();
        writeln!(
            out,
            "{:<24} {:<8} {:<12} {:<9} {:<20} {:>9} {:>7} {:>8} {:>6}",
            status.node,
            status.version,
            uptime(agent),
            if agent.connected { "yes" } else { "no" },
            time(agent.last_seen_unix_nanos),
            agent.records_stored,
            status.queue_depth,
            status.records_dropped,
            status.events_lost
        )?;
    }
    Ok(())
}
