//! Reports on standard output: JSON lines for machines, an aligned table for people.
//!
//! JSON records carry `kind` so that consumers can dispatch on it; their field names are part of
//! Moat's interface and documented in docs/agent-output.md.

use std::{collections::HashMap, io::Write, net::IpAddr, time::SystemTime};

use serde::Serialize;

use crate::{
    cli::OutputFormat, loader::Attachment, protocol::ip_protocol_name, traffic::SourceTraffic,
    traffic::XdpStats,
};

#[derive(Debug, Serialize)]
#[serde(tag = "kind")]
enum Record<'a> {
    /// The programs are attached: traffic from now on is counted.
    #[serde(rename = "agent.ready")]
    Ready {
        time: String,
        interfaces: Vec<ReadyInterface<'a>>,
    },
    /// Totals since attachment for one (interface, source, protocol).
    #[serde(rename = "traffic.source")]
    SourceTraffic {
        time: String,
        interface: &'a str,
        source: IpAddr,
        protocol: &'a str,
        packets: u64,
        bytes: u64,
    },
    #[serde(rename = "agent.xdp_stats")]
    XdpStats {
        time: String,
        frames: u64,
        non_ip: u64,
        truncated: u64,
        untracked_source_table_full: u64,
    },
}

#[derive(Debug, Serialize)]
struct ReadyInterface<'a> {
    interface: &'a str,
    ifindex: u32,
    mode: &'a str,
}

pub struct Reporter<W> {
    out: W,
    format: OutputFormat,
    interface_names: HashMap<u32, String>,
}

impl<W: Write> Reporter<W> {
    pub fn new(out: W, format: OutputFormat, attachments: &[Attachment]) -> Self {
        let interface_names = attachments
            .iter()
            .map(|attachment| (attachment.ifindex, attachment.interface.clone()))
            .collect();
        Self {
            out,
            format,
            interface_names,
        }
    }

    pub fn ready(&mut self, attachments: &[Attachment], now: SystemTime) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Jsonl => {
                let interfaces = attachments
                    .iter()
                    .map(|attachment| ReadyInterface {
                        interface: &attachment.interface,
                        ifindex: attachment.ifindex,
                        mode: attachment.mode,
                    })
                    .collect();
                let record = Record::Ready {
                    time: timestamp(now),
                    interfaces,
                };
                self.write_json(&record)?;
            }
            OutputFormat::Text => {
                for attachment in attachments {
                    writeln!(
                        self.out,
                        "counting on {} (ifindex {}, {} XDP)",
                        attachment.interface, attachment.ifindex, attachment.mode
                    )?;
                }
            }
        }
        self.out.flush()
    }

    pub fn report(
        &mut self,
        changed: &[SourceTraffic],
        stats: XdpStats,
        now: SystemTime,
    ) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Jsonl => self.report_jsonl(changed, stats, now)?,
            OutputFormat::Text => self.report_text(changed, stats, now)?,
        }
        self.out.flush()
    }

    fn interface_name(&self, ifindex: u32) -> String {
        self.interface_names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("ifindex-{ifindex}"))
    }

    fn report_jsonl(
        &mut self,
        changed: &[SourceTraffic],
        stats: XdpStats,
        now: SystemTime,
    ) -> std::io::Result<()> {
        let time = timestamp(now);
        for entry in changed {
            let interface = self.interface_name(entry.ifindex);
            let protocol = ip_protocol_name(entry.protocol);
            let record = Record::SourceTraffic {
                time: time.clone(),
                interface: &interface,
                source: entry.source,
                protocol: &protocol,
                packets: entry.counters.packets,
                bytes: entry.counters.bytes,
            };
            self.write_json(&record)?;
        }
        self.write_json(&Record::XdpStats {
            time,
            frames: stats.frames,
            non_ip: stats.non_ip,
            truncated: stats.truncated,
            untracked_source_table_full: stats.source_table_full,
        })
    }

    fn report_text(
        &mut self,
        changed: &[SourceTraffic],
        stats: XdpStats,
        now: SystemTime,
    ) -> std::io::Result<()> {
        writeln!(self.out, "--- {}", timestamp(now))?;
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
            "frames {}, not IP {}, truncated {}, untracked (source table full) {}",
            stats.frames, stats.non_ip, stats.truncated, stats.source_table_full
        )
    }

    fn write_json(&mut self, record: &Record<'_>) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")
    }
}

fn timestamp(now: SystemTime) -> String {
    humantime::format_rfc3339_millis(now).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_common::xdp::TrafficCounters;

    use super::*;

    fn attachments() -> Vec<Attachment> {
        vec![Attachment {
            interface: "veth-web".to_owned(),
            ifindex: 7,
            mode: "native",
        }]
    }

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

    #[test]
    fn jsonl_records_carry_kind_and_names() {
        let mut out = Vec::new();
        let mut reporter = Reporter::new(&mut out, OutputFormat::Jsonl, &attachments());
        reporter.ready(&attachments(), at(0)).unwrap();
        reporter
            .report(
                &[entry(7, "198.18.0.2", 17), entry(9, "fd00:198:18::3", 58)],
                XdpStats {
                    frames: 6,
                    non_ip: 0,
                    truncated: 0,
                    source_table_full: 0,
                },
                at(1),
            )
            .unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["kind"], "agent.ready");
        assert_eq!(lines[0]["interfaces"][0]["mode"], "native");
        assert_eq!(lines[0]["time"], "1970-01-01T00:00:00.000Z");
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
        assert_eq!(lines[3]["kind"], "agent.xdp_stats");
        assert_eq!(lines[3]["frames"], 6);
    }

    #[test]
    fn text_reports_are_a_table() {
        let mut out = Vec::new();
        let mut reporter = Reporter::new(&mut out, OutputFormat::Text, &attachments());
        reporter
            .report(&[entry(7, "198.18.0.2", 6)], XdpStats::default(), at(0))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("INTERFACE"), "{text}");
        assert!(text.lines().any(|line| line.starts_with("veth-web")
            && line.contains("198.18.0.2")
            && line.contains("tcp")
            && line.trim_end().ends_with("180")));
    }
}
