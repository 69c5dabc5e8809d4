//! `moat drops`: what the agents dropped (policy rules, blocklists, isolation, rate limits,
//! timed blocks), filtered, newest first; `--summary` counts them per reason, rule and source.

use std::collections::BTreeMap;

use moat_api::v1::{Drop, DropFilter, ListDropsRequest, Peer};

use crate::{Failure, Output, calls::time, connect, render};

#[derive(Debug, clap::Args)]
pub struct DropsArgs {
    /// Only drops for this reason.
    #[arg(long, value_parser = ["rule", "blocklist", "isolate", "rate_limit", "timed_block"])]
    reason: Option<String>,
    /// Only drops by this rule (a policy rule's or rate limit's name).
    #[arg(long)]
    rule: Option<String>,
    /// Only drops whose source is this address, in this network (CIDR, e.g. `198.18.0.0/15`),
    /// or has this pod, workload, range or customer name.
    #[arg(long, value_name = "IP/CIDR|NAME")]
    source: Option<String>,
    /// Only drops with either end in this namespace.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Only drops with either end in this workload.
    #[arg(long, short = 'w')]
    workload: Option<String>,
    #[command(flatten)]
    window: crate::scope::Window,
    /// Count the drops fetched (the newest `--limit`) per reason, rule and source instead of
    /// listing them, the most dropped first.
    #[arg(long)]
    summary: bool,
}

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
    args: &DropsArgs,
) -> Result<(), Failure> {
    let client = connect(collector, token).await?;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let filter = DropFilter {
        since_unix_nanos: crate::since_nanos(args.window.since),
        until_unix_nanos: 0,
        reason: text(&args.reason),
        rule: text(&args.rule),
        source: text(&args.source),
        namespace: text(&args.namespace),
        workload: text(&args.workload),
    };
    let drops = render::pages(args.window.limit, |cursor, page_size| {
        let mut client = client.clone();
        let filter = filter.clone();
        async move {
            let page = client
                .list_drops(ListDropsRequest {
                    filter: Some(filter),
                    page_size,
                    cursor,
                })
                .await?
                .into_inner();
            Ok((page.drops, page.next_cursor))
        }
    })
    .await?;
    let io = |error: std::io::Error| Failure::Other(error.into());
    let mut out = std::io::stdout().lock();
    if args.summary {
        let groups = summary(&drops);
        return render::records(&mut out, output, groups.iter().map(Group::json), |out| {
            let rows: Vec<Vec<String>> = groups.iter().map(Group::cells).collect();
            render::aligned(out, &SUMMARY_HEADERS, &rows)
        })
        .map_err(io);
    }
    render::records(&mut out, output, drops.iter().map(json), |out| {
        let rows: Vec<Vec<String>> = drops.iter().map(|drop| cells(drop).to_vec()).collect();
        render::aligned(out, &HEADERS, &rows)
    })
    .map_err(io)
}

const HEADERS: [&str; 7] = [
    "TIME",
    "REASON",
    "RULE",
    "SOURCE",
    "DESTINATION",
    "PROTO",
    "INTERFACE",
];

/// An end as its address (with the port, when `port`) and, in parentheses, who it is: its
/// namespace/workload (or pod), else its customer or range.
fn end(peer: &Option<Peer>, port: bool) -> String {
    let Some(peer) = peer else {
        return "-".to_owned();
    };
    let address = if port && peer.port != 0 {
        if peer.ip.contains(':') {
            format!("[{}]:{}", peer.ip, peer.port)
        } else {
            format!("{}:{}", peer.ip, peer.port)
        }
    } else {
        peer.ip.clone()
    };
    match who(peer) {
        Some(who) => format!("{address} ({who})"),
        None => address,
    }
}

/// Who an end is beyond its address, if the agent knew.
fn who(peer: &Peer) -> Option<String> {
    let identity = peer.identity.clone().unwrap_or_default();
    if !identity.workload_name.is_empty() {
        Some(format!("{}/{}", identity.namespace, identity.workload_name))
    } else if !identity.pod.is_empty() {
        Some(format!("{}/{}", identity.namespace, identity.pod))
    } else if !identity.customer.is_empty() {
        Some(identity.customer)
    } else if !identity.range.is_empty() {
        Some(identity.range)
    } else {
        None
    }
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn cells(drop: &Drop) -> [String; 7] {
    [
        time(drop.time_unix_nanos),
        drop.reason.clone(),
        or_dash(&drop.rule),
        // The source's port is an ephemeral one, rarely worth the width.
        end(&drop.source, false),
        end(&drop.destination, true),
        or_dash(&drop.protocol),
        or_dash(&drop.interface),
    ]
}

fn peer_json(peer: &Option<Peer>) -> serde_json::Value {
    let Some(peer) = peer else {
        return serde_json::Value::Null;
    };
    let identity = peer.identity.clone().unwrap_or_default();
    serde_json::json!({
        "ip": peer.ip, "port": peer.port, "kind": identity.kind,
        "namespace": identity.namespace, "pod": identity.pod,
        "workload": identity.workload_name, "range": identity.range,
        "customer": identity.customer,
    })
}

fn json(drop: &Drop) -> serde_json::Value {
    serde_json::json!({
        "time": time(drop.time_unix_nanos),
        "node": drop.id.as_ref().map(|id| id.node.clone()).unwrap_or_default(),
        "reason": drop.reason,
        "rule": drop.rule,
        "source": peer_json(&drop.source),
        "destination": peer_json(&drop.destination),
        "protocol": drop.protocol,
        "interface": drop.interface,
    })
}

const SUMMARY_HEADERS: [&str; 6] = ["REASON", "RULE", "SOURCE", "DROPS", "FIRST", "LAST"];

/// Drops of one reason, rule and source.
#[derive(Debug, PartialEq, Eq)]
struct Group {
    reason: String,
    rule: String,
    /// The source as the table shows it: its address and who it is.
    source: String,
    drops: u64,
    first_unix_nanos: i64,
    last_unix_nanos: i64,
}

impl Group {
    fn cells(&self) -> Vec<String> {
        vec![
            self.reason.clone(),
            or_dash(&self.rule),
            self.source.clone(),
            self.drops.to_string(),
            time(self.first_unix_nanos),
            time(self.last_unix_nanos),
        ]
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "reason": self.reason,
            "rule": self.rule,
            "source": self.source,
            "drops": self.drops,
            "first": time(self.first_unix_nanos),
            "last": time(self.last_unix_nanos),
        })
    }
}

/// `drops` counted per (reason, rule, source): the most dropped first, then by reason, rule
/// and source.
fn summary(drops: &[Drop]) -> Vec<Group> {
    let mut groups: BTreeMap<(String, String, String), Group> = BTreeMap::new();
    for drop in drops {
        let source = end(&drop.source, false);
        let key = (drop.reason.clone(), drop.rule.clone(), source.clone());
        let group = groups.entry(key).or_insert_with(|| Group {
            reason: drop.reason.clone(),
            rule: drop.rule.clone(),
            source,
            drops: 0,
            first_unix_nanos: drop.time_unix_nanos,
            last_unix_nanos: drop.time_unix_nanos,
        });
        group.drops += 1;
        group.first_unix_nanos = group.first_unix_nanos.min(drop.time_unix_nanos);
        group.last_unix_nanos = group.last_unix_nanos.max(drop.time_unix_nanos);
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    // Stable: equal counts keep the key order.
    groups.sort_by_key(|group| std::cmp::Reverse(group.drops));
    groups
}

#[cfg(test)]
mod tests {
    use moat_api::v1::{Identity, RecordId};

    use super::*;

    fn drop(second: i64, reason: &str, rule: &str, source: Peer) -> Drop {
        Drop {
            id: Some(RecordId {
                node: "node-a".into(),
                boot: 1,
                sequence: second as u64,
            }),
            time_unix_nanos: 1_795_000_000_000_000_000 + second * 1_000_000_000,
            reason: reason.into(),
            rule: rule.into(),
            source: Some(source),
            destination: Some(Peer {
                ip: "10.0.0.9".into(),
                port: 8080,
                identity: Some(Identity {
                    kind: "pod".into(),
                    namespace: "shop".into(),
                    pod: "api-0".into(),
                    workload_name: "api".into(),
                    ..Identity::default()
                }),
                ..Peer::default()
            }),
            protocol: "tcp".into(),
            interface: "eth0".into(),
        }
    }

    fn customer() -> Peer {
        Peer {
            ip: "198.18.0.5".into(),
            port: 40_001,
            identity: Some(Identity {
                kind: "range".into(),
                range: "partners".into(),
                customer: "Acme Corp".into(),
                ..Identity::default()
            }),
            ..Peer::default()
        }
    }

    fn pod() -> Peer {
        Peer {
            ip: "10.0.0.5".into(),
            port: 51_000,
            identity: Some(Identity {
                kind: "pod".into(),
                namespace: "shop".into(),
                pod: "web-1".into(),
                workload_name: "web".into(),
                ..Identity::default()
            }),
            ..Peer::default()
        }
    }

    fn unknown() -> Peer {
        Peer {
            ip: "fd00:198:18::7".into(),
            port: 7777,
            ..Peer::default()
        }
    }

    fn sample() -> Vec<Drop> {
        let mut to_v6 = drop(1, "rule", "deny-udp-7777", pod());
        to_v6.destination = Some(unknown());
        to_v6.protocol = "udp".into();
        vec![
            drop(4, "timed_block", "", customer()),
            drop(3, "timed_block", "", customer()),
            drop(2, "rate_limit", "api-flood", unknown()),
            to_v6,
        ]
    }

    #[test]
    fn the_drops_table_names_both_ends() {
        let rows: Vec<Vec<String>> = sample().iter().map(|drop| cells(drop).to_vec()).collect();
        let mut out = Vec::new();
        render::aligned(&mut out, &HEADERS, &rows).expect("write");
        let golden = "\
TIME                  REASON       RULE           SOURCE                  DESTINATION               PROTO  INTERFACE
2026-11-18T11:06:44Z  timed_block  -              198.18.0.5 (Acme Corp)  10.0.0.9:8080 (shop/api)  tcp    eth0
2026-11-18T11:06:43Z  timed_block  -              198.18.0.5 (Acme Corp)  10.0.0.9:8080 (shop/api)  tcp    eth0
2026-11-18T11:06:42Z  rate_limit   api-flood      fd00:198:18::7          10.0.0.9:8080 (shop/api)  tcp    eth0
2026-11-18T11:06:41Z  rule         deny-udp-7777  10.0.0.5 (shop/web)     [fd00:198:18::7]:7777     udp    eth0
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
    }

    #[test]
    fn the_summary_counts_per_reason_rule_and_source_most_first() {
        let groups = summary(&sample());
        let rows: Vec<Vec<String>> = groups.iter().map(Group::cells).collect();
        let mut out = Vec::new();
        render::aligned(&mut out, &SUMMARY_HEADERS, &rows).expect("write");
        let golden = "\
REASON       RULE           SOURCE                  DROPS  FIRST                 LAST
timed_block  -              198.18.0.5 (Acme Corp)  2      2026-11-18T11:06:43Z  2026-11-18T11:06:44Z
rate_limit   api-flood      fd00:198:18::7          1      2026-11-18T11:06:42Z  2026-11-18T11:06:42Z
rule         deny-udp-7777  10.0.0.5 (shop/web)     1      2026-11-18T11:06:41Z  2026-11-18T11:06:41Z
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
    }

    #[test]
    fn json_and_yaml_carry_both_ends_identities() {
        let value = json(&sample()[0]);
        assert_eq!(value["reason"], "timed_block");
        assert_eq!(value["node"], "node-a");
        assert_eq!(value["source"]["ip"], "198.18.0.5");
        assert_eq!(value["source"]["customer"], "Acme Corp");
        assert_eq!(value["destination"]["workload"], "api");
        assert_eq!(value["destination"]["port"], 8080);
        let mut out = Vec::new();
        render::record(&mut out, Output::Yaml, &value).expect("write");
        let yaml = String::from_utf8(out).expect("utf-8");
        assert!(yaml.starts_with("---\n"), "{yaml}");
        assert!(yaml.contains("reason: timed_block\n"), "{yaml}");
        let summary_json = summary(&sample())[0].json();
        assert_eq!(summary_json["drops"], 2);
        assert_eq!(summary_json["source"], "198.18.0.5 (Acme Corp)");
    }
}
