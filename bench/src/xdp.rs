//! `moat-bench xdp`: the drop path and the pass path of XDP enforcement.
//!
//! Drop path, on one veth pair (a pod's, on a testbed node): trafgen in the pod sends UDP from a
//! blocklisted source as fast as one core can, pinned to that core, and each contender drops it
//! where the agent would, at the node side of the veth:
//! (a) a bare XDP_DROP program built by the project (the floor of what XDP costs here),
//! (b) Moat with 10,000 blocklist CIDRs, 1,000 rules and connection tracking,
//! (c) nftables with the same set and rules in a netdev ingress hook,
//! (d) iptables in the raw table, with the blocklist in an ipset.
//! On veth, sending and receiving run on the same core, so the figures are per packet of the
//! whole path; the receive side's share shows as the difference from the floor. The kernel's
//! own timing of each XDP program (BPF_PROG_TEST_RUN, a million runs) isolates the program.
//!
//! Pass path: iperf3 throughput and ping latency between two pods with and without Moat on both
//! pods' interfaces, the flow allowed by a policy of the same size.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use agent::{
    cli::XdpModeArg,
    enforcer::Enforcer,
    loader::{Datapath, Floor, Hook, Program},
};
use anyhow::{Context as _, bail};
use testbed::{Node, Pod, PodSpec};

use crate::measure::{Cost, cost_of};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Packets trafgen sends per contender.
    #[arg(long, default_value_t = 3_000_000)]
    packets: u64,
    /// Seconds of iperf3 per pass-path measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Runs of each XDP program per BPF_PROG_TEST_RUN timing.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Floods per contender; the median is reported, so one disturbed run does not skew it.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

const BLOCKLIST_ENTRIES: u32 = 10_000;
const RULES: u32 = 1_000;
/// The flood's source: inside the blocklist (198.19.0.0/16 in /30s).
const FLOOD_SOURCE: &str = "198.19.66.5";
const SENDER_CPU: &str = "1";

/// The same blocklist and rules, for every contender.
struct Workload {
    blocklist: Vec<String>,
    /// (source, destination, TCP port) of each deny rule.
    rules: Vec<(String, String, u16)>,
}

impl Workload {
    fn new() -> Self {
        let blocklist = (0..BLOCKLIST_ENTRIES)
            .map(|index| {
                let base = index * 4;
                format!("198.19.{}.{}/30", base / 256, base % 256)
            })
            .collect();
        let rules = (0..RULES)
            .map(|index| {
                let host = |offset: u32| {
                    let value = 2 * index + offset;
                    format!("198.18.{}.{}", 128 + value / 256, value % 256)
                };
                (host(0), host(1), 1000 + index as u16)
            })
            .collect();
        Self { blocklist, rules }
    }

    fn moat_policy(&self) -> String {
        let mut text = String::from("identities:\n");
        for (index, (source, destination, _)) in self.rules.iter().enumerate() {
            let _ = writeln!(text, "  s{index}: {{ cidrs: [\"{source}/32\"] }}");
            let _ = writeln!(text, "  d{index}: {{ cidrs: [\"{destination}/32\"] }}");
        }
        let _ = writeln!(
            text,
            "  pods: {{ cidrs: [\"198.18.10.0/24\", \"198.18.20.0/24\"] }}"
        );
        text.push_str("blocklist:\n  cidrs:\n");
        for cidr in &self.blocklist {
            let _ = writeln!(text, "    - {cidr}");
        }
        text.push_str("rules:\n");
        for (index, (_, _, port)) in self.rules.iter().enumerate() {
            let _ = writeln!(
                text,
                "  - {{ name: r{index}, action: deny, from: s{index}, to: d{index}, protocol: tcp, ports: [{port}] }}"
            );
        }
        let _ = writeln!(
            text,
            "  - {{ name: pods, action: allow, from: pods, to: pods }}"
        );
        text
    }

    fn nftables(&self, interface: &str) -> String {
        let mut text = String::from(
            "table netdev moatbench {\n  set blocklist {\n    type ipv4_addr; flags interval;\n    elements = { ",
        );
        text.push_str(&self.blocklist.join(", "));
        let _ = write!(
            text,
            " }}\n  }}\n  chain ingress {{\n    type filter hook ingress device \"{interface}\" priority -500; policy accept;\n    ip saddr @blocklist drop\n"
        );
        for (source, destination, port) in &self.rules {
            let _ = writeln!(
                text,
                "    ip saddr {source} ip daddr {destination} tcp dport {port} drop"
            );
        }
        text.push_str("  }\n}\n");
        text
    }

    fn ipset(&self) -> String {
        let mut text = String::from("create moatbench hash:net family inet maxelem 65536\n");
        for cidr in &self.blocklist {
            let _ = writeln!(text, "add moatbench {cidr}");
        }
        text
    }

    fn iptables(&self) -> String {
        let mut text = String::from(
            "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m set --match-set moatbench src -j DROP\n",
        );
        for (source, destination, port) in &self.rules {
            let _ = writeln!(
                text,
                "-A PREROUTING -s {source} -d {destination} -p tcp --dport {port} -j DROP"
            );
        }
        text.push_str("COMMIT\n");
        text
    }
}

struct Bench {
    node: Node,
    sender: Pod,
    receiver: Pod,
    directory: PathBuf,
    workload: Workload,
    options: Options,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let mut node = Node::new("xdpbench").context("building the testbed node")?;
    let sender = node
        .add_pod(PodSpec::new(
            "sender",
            "198.18.10.2/24",
            "fd00:198:18:10::2/64",
        ))
        .context("sender pod")?;
    let receiver = node
        .add_pod(PodSpec::new(
            "receiver",
            "198.18.20.2/24",
            "fd00:198:18:20::2/64",
        ))
        .context("receiver pod")?;
    let directory = std::env::temp_dir().join(format!("moat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    let bench = Bench {
        node,
        sender,
        receiver,
        directory,
        workload: Workload::new(),
        options: Options {
            packets: options.packets,
            seconds: options.seconds,
            repeat: options.repeat,
            rounds: options.rounds.max(1),
        },
    };
    let outcome = bench.run();
    let _ = std::fs::remove_dir_all(&bench.directory);
    outcome
}

/// What runs on the pods' interfaces during a pass-path measurement.
#[derive(Clone, Copy, Debug)]
enum PassConfig {
    Bare,
    PassFloor,
    MoatXdp,
    MoatTcx,
}

/// One contender's drop-path result.
struct DropResult {
    name: &'static str,
    cost: Cost,
    packets: u64,
}

impl DropResult {
    fn packets_per_second(&self) -> f64 {
        self.packets as f64 / self.cost.wall.as_secs_f64()
    }

    fn cpu_ns_per_packet(&self) -> f64 {
        self.cost.cpu.as_nanos() as f64 / self.packets as f64
    }
}

impl Bench {
    fn state_dir(&self, name: &str) -> PathBuf {
        PathBuf::from(format!(
            "/sys/fs/bpf/moat-bench-{}-{name}",
            std::process::id()
        ))
    }

    fn run(&self) -> anyhow::Result<()> {
        let interface = self.sender.host_interface.clone();
        println!(
            "moat-bench xdp: {} packets per flood, median of {} floods per contender, sender pinned to CPU {SENDER_CPU}",
            self.options.packets, self.options.rounds
        );
        let trafgen = self.trafgen_config()?;

        let mut results = Vec::new();
        results.push(self.drop_run(
            "none (no filter: the kernel forwards and drops later)",
            &trafgen,
        )?);

        // (a) the floor.
        {
            let state = self.state_dir("floor");
            let datapath = self.node.enter(|| -> anyhow::Result<Datapath> {
                let mut datapath = Datapath::load(&state)?;
                datapath.attach_floor(Floor::DropAll, &interface)?;
                Ok(datapath)
            })??;
            results.push(self.drop_run("bare XDP_DROP (floor)", &trafgen)?);
            drop(datapath);
            agent::loader::cleanup(&state)?;
        }
        // (b) Moat.
        let (moat_timings, moat_result) = {
            let state = self.state_dir("moat");
            let (mut datapath, _enforcer) = self.moat(&state, &[&interface])?;
            let result = self.drop_run("Moat (10k blocklist, 1k rules, conntrack)", &trafgen)?;
            let timings = self.program_timings(&mut datapath)?;
            drop(datapath);
            agent::loader::cleanup(&state)?;
            (timings, result)
        };
        results.push(moat_result);
        // (c) nftables.
        let nft_file = self.directory.join("moatbench.nft");
        std::fs::write(&nft_file, self.workload.nftables(&interface))?;
        testbed::run(self.node.command("nft").arg("-f").arg(&nft_file))?;
        let nft = self.drop_run("nftables netdev ingress (same set and rules)", &trafgen);
        testbed::run(
            self.node
                .command("nft")
                .args(["delete", "table", "netdev", "moatbench"]),
        )?;
        results.push(nft?);
        // (d) iptables raw.
        let (iptables, iptables_name) = self.iptables_binary();
        std::fs::write(self.directory.join("ipset"), self.workload.ipset())?;
        std::fs::write(self.directory.join("iptables"), self.workload.iptables())?;
        testbed::run(
            self.node
                .command("ipset")
                .arg("restore")
                .arg("-file")
                .arg(self.directory.join("ipset")),
        )?;
        testbed::run(
            self.node
                .command(format!("{iptables}-restore"))
                .stdin(std::fs::File::open(self.directory.join("iptables"))?),
        )?;
        let raw = self.drop_run(iptables_name, &trafgen);
        testbed::run(
            self.node
                .command(iptables)
                .args(["-t", "raw", "-F", "PREROUTING"]),
        )?;
        testbed::run(self.node.command("ipset").args(["destroy", "moatbench"]))?;
        results.push(raw?);

        self.print_drop_table(&results, &moat_timings);
        self.pass_path()?;
        Ok(())
    }

    /// Loads Moat with the workload's policy onto `interfaces` of the node, in XDP.
    fn moat(&self, state: &Path, interfaces: &[&str]) -> anyhow::Result<(Datapath, Enforcer)> {
        self.moat_at(state, interfaces, Hook::Xdp(XdpModeArg::Native))
    }

    /// Loads Moat with the workload's policy onto `interfaces` of the node, at `hook`.
    fn moat_at(
        &self,
        state: &Path,
        interfaces: &[&str],
        hook: Hook,
    ) -> anyhow::Result<(Datapath, Enforcer)> {
        let policy_file = self.directory.join("policy.yaml");
        std::fs::write(&policy_file, self.workload.moat_policy())?;
        let policy =
            Arc::new(policy::load(&policy_file).map_err(|error| anyhow::anyhow!("{error}"))?);
        self.node
            .enter(|| -> anyhow::Result<(Datapath, Enforcer)> {
                let mut datapath = Datapath::load(state)?;
                let mut enforcer = Enforcer::adopt(&datapath)?;
                enforcer.apply(&mut datapath, policy)?;
                for interface in interfaces {
                    datapath.attach(interface, hook)?;
                }
                Ok((datapath, enforcer))
            })?
    }

    fn iptables_binary(&self) -> (&'static str, &'static str) {
        let legacy_works = self
            .node
            .command("iptables-legacy")
            .args(["-t", "raw", "-L"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if legacy_works {
            (
                "iptables-legacy",
                "iptables-legacy raw PREROUTING (ipset + rules)",
            )
        } else {
            (
                "iptables",
                "iptables (nft backend) raw PREROUTING (ipset + rules)",
            )
        }
    }

    fn trafgen_config(&self) -> anyhow::Result<PathBuf> {
        let bridge_mac = mac_of(&self.node, "moat0")?;
        let config = self.directory.join("flood.cfg");
        std::fs::write(
            &config,
            format!(
                "{{ eth(da={bridge_mac}, sa=02:00:00:00:00:01), ipv4(saddr={FLOOD_SOURCE}, daddr={}, ttl=64), udp(sp=4000, dp=9), fill(0x41, 18) }}\n",
                self.receiver.ipv4
            ),
        )?;
        Ok(config)
    }

    /// Floods `rounds` times and keeps the median round (by CPU per packet).
    fn drop_run(&self, name: &'static str, config: &Path) -> anyhow::Result<DropResult> {
        let packets = self.options.packets;
        let mut rounds = Vec::new();
        for _ in 0..self.options.rounds {
            let (status, cost) = cost_of(|| {
                self.sender
                    .command("taskset")
                    .args([
                        "-c", SENDER_CPU, "trafgen", "--cpus", "1", "-o", "eth0", "-i",
                    ])
                    .arg(config)
                    .args(["-n", &packets.to_string(), "-C"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
            });
            let status = status.context("running trafgen (netsniff-ng)")?;
            if !status.success() {
                bail!("trafgen failed ({status}) for {name}");
            }
            rounds.push(DropResult {
                name,
                cost,
                packets,
            });
        }
        rounds.sort_by(|a, b| a.cpu_ns_per_packet().total_cmp(&b.cpu_ns_per_packet()));
        eprintln!("  measured: {name}");
        Ok(rounds.swap_remove(rounds.len() / 2))
    }

    /// Mean in-kernel time of one run of each program on a blocklisted and an allowed frame.
    fn program_timings(
        &self,
        datapath: &mut Datapath,
    ) -> anyhow::Result<Vec<(&'static str, Duration)>> {
        let blocked = udp_frame([198, 19, 66, 5], [198, 18, 20, 2]);
        let allowed = udp_frame([198, 18, 10, 2], [198, 18, 20, 2]);
        let repeat = self.options.repeat;
        let mut timings = Vec::new();
        for (name, program, frame) in [
            ("floor, any frame", Program::DropFloor, &blocked),
            ("Moat, blocklisted source (drop)", Program::Moat, &blocked),
            (
                "Moat, allowed flow (pass, rules, conntrack)",
                Program::Moat,
                &allowed,
            ),
        ] {
            let (_, mean) = datapath.time_on_frame(program, frame, repeat)?;
            timings.push((name, mean));
        }
        Ok(timings)
    }

    fn print_drop_table(&self, results: &[DropResult], timings: &[(&'static str, Duration)]) {
        let floor = results
            .iter()
            .find(|result| result.name.starts_with("bare"))
            .expect("floor ran");
        let moat = results
            .iter()
            .find(|result| result.name.starts_with("Moat"))
            .expect("Moat ran");
        println!(
            "\n## Drop path: {} UDP packets from a blocklisted source, one veth pair\n",
            self.options.packets
        );
        println!(
            "| contender | packets/s | CPU ns/packet (whole path) | Moat's CPU/packet relative to it |"
        );
        println!("|---|---:|---:|---:|");
        for result in results {
            println!(
                "| {} | {:.0} | {:.0} | {:.3} |",
                result.name,
                result.packets_per_second(),
                result.cpu_ns_per_packet(),
                moat.cpu_ns_per_packet() / result.cpu_ns_per_packet()
            );
        }
        println!(
            "\nMoat's extra CPU per dropped packet over the floor: {:.0} ns ({:+.1}% of the floor's whole path)",
            moat.cpu_ns_per_packet() - floor.cpu_ns_per_packet(),
            100.0 * (moat.cpu_ns_per_packet() / floor.cpu_ns_per_packet() - 1.0)
        );
        println!(
            "\n## In-kernel time of one program run (BPF_PROG_TEST_RUN, {} runs)\n",
            self.options.repeat
        );
        println!("| program and frame | ns per run | relative to the floor |");
        println!("|---|---:|---:|");
        let floor_run = timings[0].1.as_nanos().max(1) as f64;
        for (name, mean) in timings {
            println!(
                "| {name} | {} | {:.2} |",
                mean.as_nanos(),
                mean.as_nanos() as f64 / floor_run
            );
        }
    }

    fn pass_path(&self) -> anyhow::Result<()> {
        let receiver = self.receiver.ipv4.to_string();
        let _server = testbed::spawn(
            self.receiver
                .command("iperf3")
                .args(["-s", "-B", &receiver])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        std::thread::sleep(Duration::from_millis(500));
        let interfaces = [
            self.sender.host_interface.as_str(),
            self.receiver.host_interface.as_str(),
        ];
        // Rounds interleave the configurations, so drift on the machine spreads over all of
        // them; each figure is the median of its rounds.
        let configurations = [
            PassConfig::Bare,
            PassConfig::PassFloor,
            PassConfig::MoatXdp,
            PassConfig::MoatTcx,
        ];
        let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); configurations.len()];
        for round in 0..self.options.rounds {
            for (index, configuration) in configurations.iter().enumerate() {
                let state = self.state_dir(&format!("pass{round}{index}"));
                samples[index].push(self.pass_with(
                    *configuration,
                    &state,
                    &interfaces,
                    &receiver,
                )?);
            }
        }
        let median = |values: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
            let mut picked: Vec<f64> = values.iter().map(pick).collect();
            picked.sort_by(f64::total_cmp);
            picked[picked.len() / 2]
        };
        let throughput: Vec<f64> = samples
            .iter()
            .map(|values| median(values, |sample| sample.0))
            .collect();
        let latency: Vec<f64> = samples
            .iter()
            .map(|values| median(values, |sample| sample.1))
            .collect();
        let (without, with_floor, with_moat, with_tcx) = (
            (throughput[0], latency[0]),
            (throughput[1], latency[1]),
            (throughput[2], latency[2]),
            (throughput[3], latency[3]),
        );

        println!(
            "\n## Pass path: allowed traffic between two pods (median of {} rounds of {} s of iperf3 TCP and 500 pings), programs on both pods' interfaces\n",
            self.options.rounds, self.options.seconds
        );
        println!(
            "| | no program | bare XDP_PASS | Moat in XDP | Moat in TCX (the default on veth) | Moat TCX / no program | Moat XDP / bare XDP_PASS |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        println!(
            "| throughput (Gbit/s) | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} |",
            without.0 / 1e9,
            with_floor.0 / 1e9,
            with_moat.0 / 1e9,
            with_tcx.0 / 1e9,
            with_tcx.0 / without.0,
            with_moat.0 / with_floor.0
        );
        println!(
            "| ping round trip, mean (µs) | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} |",
            without.1 * 1000.0,
            with_floor.1 * 1000.0,
            with_moat.1 * 1000.0,
            with_tcx.1 * 1000.0,
            with_tcx.1 / without.1,
            with_moat.1 / with_floor.1
        );
        Ok(())
    }

    /// Sets up `configuration` on both pods' interfaces, measures, and removes it again.
    fn pass_with(
        &self,
        configuration: PassConfig,
        state: &Path,
        interfaces: &[&str],
        receiver: &str,
    ) -> anyhow::Result<(f64, f64)> {
        let installed = match configuration {
            PassConfig::Bare => None,
            PassConfig::PassFloor => Some(self.node.enter(|| -> anyhow::Result<Datapath> {
                let mut datapath = Datapath::load(state)?;
                for interface in interfaces {
                    datapath.attach_floor(Floor::PassAll, interface)?;
                }
                Ok(datapath)
            })??),
            PassConfig::MoatXdp => Some(self.moat(state, interfaces)?.0),
            PassConfig::MoatTcx => Some(self.moat_at(state, interfaces, Hook::Tcx)?.0),
        };
        let measured = self.pass_measurement(receiver);
        if let Some(datapath) = installed {
            drop(datapath);
            agent::loader::cleanup(state)?;
        }
        measured
    }

    /// iperf3 throughput (bit/s) and mean ping round trip (ms) from sender to receiver.
    fn pass_measurement(&self, receiver: &str) -> anyhow::Result<(f64, f64)> {
        let output = self
            .sender
            .run(
                "iperf3",
                &[
                    "-c",
                    receiver,
                    "-t",
                    &self.options.seconds.to_string(),
                    "-J",
                ],
            )
            .context("iperf3")?;
        let report = String::from_utf8_lossy(&output.stdout);
        let throughput = json_number_after(&report, "\"sum_received\"", "\"bits_per_second\"")
            .context("no throughput in iperf3's report")?;
        let ping = self
            .sender
            .run("ping", &["-q", "-c", "500", "-i", "0.002", receiver])
            .context("ping")?;
        let summary = String::from_utf8_lossy(&ping.stdout);
        let mean = summary
            .lines()
            .find_map(|line| line.strip_prefix("rtt min/avg/max/mdev = "))
            .and_then(|values| values.split('/').nth(1))
            .and_then(|mean| mean.parse::<f64>().ok())
            .context("no round trip in ping's summary")?;
        Ok((throughput, mean))
    }
}

fn mac_of(node: &Node, interface: &str) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(["-n", node.netns(), "-br", "link", "show", interface])
        .output()?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(2)
        .map(str::to_owned)
        .context("no MAC address in `ip -br link`")
}

/// The first number after `key` that follows `section` in a JSON text.
fn json_number_after(text: &str, section: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(section)?..];
    let rest = &rest[rest.find(key)? + key.len()..];
    let number: String = rest
        .trim_start_matches(|c: char| c == ':' || c.is_whitespace())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+' || *c == '-')
        .collect();
    number.parse().ok()
}

/// An Ethernet/IPv4/UDP frame with a valid header checksum.
fn udp_frame(source: [u8; 4], destination: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&source);
    ip.extend_from_slice(&destination);
    let sum = ip
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum::<u32>();
    let checksum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&[0x0f, 0xa0, 0, 9, 0, 26, 0, 0]);
    frame.extend_from_slice(&[0x41; 18]);
    frame
}
