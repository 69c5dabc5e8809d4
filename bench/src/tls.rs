//! `moat-bench tls`: what reading TLS plaintext through OpenSSL uprobes costs.
//!
//! wrk (which links OpenSSL) against nginx serving HTTPS (OpenSSL too, with a test CA made by
//! the openssl command line) from one pod to another on a testbed node, with and without
//! moat-agent capturing the server's port: both ends' SSL_read/SSL_write calls are then probed,
//! which is the most the uprobes can cost a call. Rounds alternate which of the two goes first;
//! each figure is the median of its rounds. A third run per round sets bare kernel uprobes and
//! uretprobes (tracefs `uprobe_events`, no BPF program, nothing recorded) on the same four
//! functions of the same library: what any uprobe-based reader costs on this machine, the floor
//! under Moat's figure. The agent's records go to /dev/null, so it pays for
//! serializing them as it would in production.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use testbed::{Background, Node, Pod, tls::TestCa};

use crate::capture::{
    Table,
    live::{
        AgentRun, BenchAgent, LoadRun, agent_binary, alternating_wrk, client_and_server,
        missed_bytes, wait_listening, write_site,
    },
    machine, median,
};
use crate::measure::cpu_time;

const TLS_PORT: u16 = 18543;
const METRICS_PORT: u16 = 19465;
/// After the load stops: the agent refreshes its metrics once a second, and a call seen at one
/// end waits up to 2 s for its other end.
const SETTLE: Duration = Duration::from_millis(3_000);
/// The throughput the agent should leave the traffic, as a share of the throughput without it.
const TARGET_RATIO: f64 = 0.93;

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Seconds each load run lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Rounds; the median round is reported. Rounds alternate whether the run with or without
    /// the agent goes first.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Connections wrk keeps open (each does one TLS handshake, then keeps it alive).
    #[arg(long, default_value_t = 10)]
    connections: u32,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let options = Options {
        rounds: options.rounds.max(1),
        seconds: options.seconds.max(1),
        ..options.clone()
    };
    let machine = machine();
    println!(
        "moat-bench tls on {machine}: median of {} rounds of {} s",
        options.rounds, options.seconds
    );
    let directory = std::env::temp_dir().join(format!("moat-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let outcome = measure(&options, &directory);
    let _ = std::fs::remove_dir_all(&directory);
    let Runs {
        without,
        with,
        bare_uprobes,
    } = outcome?;

    let rate = |runs: &[&LoadRun]| median(runs.iter().map(|run| run.requests_per_second).collect());
    let p99 = |runs: &[&LoadRun]| median(runs.iter().map(|run| run.p99.as_secs_f64()).collect());
    let without: Vec<&LoadRun> = without.iter().collect();
    let with_loads: Vec<&LoadRun> = with.iter().map(|(load, _)| load).collect();
    let (rate_without, rate_with) = (rate(&without), rate(&with_loads));
    let (p99_without, p99_with) = (p99(&without), p99(&with_loads));
    let cpu = median(
        with.iter()
            .map(|(load, agent)| agent.cpu.as_secs_f64() * 10_000.0 / load.requests.max(1) as f64)
            .collect(),
    );
    let peak_rss = with
        .iter()
        .map(|(_, agent)| agent.peak_rss_bytes)
        .max()
        .unwrap_or(0);
    let lost: f64 = with.iter().map(|(_, agent)| agent.events_lost).sum();
    // Both ends are hooked: a call read at both is reported once.
    let parsed: f64 = with
        .iter()
        .map(|(_, agent)| agent.calls_parsed - agent.calls_merged)
        .sum();
    let requests: u64 = with_loads.iter().map(|run| run.requests).sum();
    let ratio = rate_with / rate_without;
    let bare: Vec<&LoadRun> = bare_uprobes.iter().collect();
    let (rate_bare, p99_bare) = (rate(&bare), p99(&bare));
    let mut table = Table::new(&[
        "scenario",
        "req/s without",
        "req/s with",
        "ratio (target ≥ 0.93)",
        "p99 without",
        "p99 with",
        "p99 added",
        "agent CPU at 10k req/s",
        "agent peak RSS",
        "events lost",
        "calls reported / requests",
    ]);
    table.row(vec![
        "HTTPS wrk → nginx (both OpenSSL), pod to pod".to_owned(),
        format!("{rate_without:.0}"),
        format!("{rate_with:.0}"),
        format!("{ratio:.3}"),
        format!("{:.2} ms", p99_without * 1e3),
        format!("{:.2} ms", p99_with * 1e3),
        format!("{:+.2} ms", (p99_with - p99_without) * 1e3),
        format!("{:.1}% of a core", cpu * 100.0),
        format!("{:.1} MiB", peak_rss as f64 / (1024.0 * 1024.0)),
        format!("{lost:.0}"),
        format!("{:.3}", parsed / requests.max(1) as f64),
    ]);
    table.row(vec![
        "the same, bare kernel uprobes instead of the agent (floor)".to_owned(),
        format!("{rate_without:.0}"),
        format!("{rate_bare:.0}"),
        format!("{:.3}", rate_bare / rate_without),
        format!("{:.2} ms", p99_without * 1e3),
        format!("{:.2} ms", p99_bare * 1e3),
        format!("{:+.2} ms", (p99_bare - p99_without) * 1e3),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
        "-".to_owned(),
    ]);
    let mut notes = String::new();
    if let Some(missed) = missed_bytes(with.iter().map(|(_, agent)| agent)) {
        let _ = writeln!(
            notes,
            "\nStream bytes the agent did not get, all rounds: {missed}."
        );
    }
    if ratio < TARGET_RATIO {
        let _ = writeln!(
            notes,
            "\nBelow the target: the agent left {ratio:.3} of the throughput (target {TARGET_RATIO})."
        );
    }
    println!(
        "\nHTTPS, with and without the agent reading TLS plaintext\n\n{}{notes}",
        table.text()
    );
    println!(
        "\nAs markdown:\n\nMachine: {machine}. Median of {} rounds of {} s; {} connections. \
         Reproduce: `sudo cargo xtask bench tls -- --rounds {} --seconds {} --connections {}`.\n\n{}{notes}",
        options.rounds,
        options.seconds,
        options.connections,
        options.rounds,
        options.seconds,
        options.connections,
        table.markdown()
    );
    Ok(())
}

struct Runs {
    without: Vec<LoadRun>,
    with: Vec<(LoadRun, AgentRun)>,
    bare_uprobes: Vec<LoadRun>,
}

/// The library nginx and wrk use, and the functions Moat hooks in it.
const LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
const HOOKED: [&str; 4] = ["SSL_write", "SSL_write_ex", "SSL_read", "SSL_read_ex"];
const TRACEFS: &str = "/sys/kernel/tracing";

/// File offsets of `functions` in the ELF file `library`, from readelf's dynamic symbols and
/// program headers.
fn function_offsets(library: &str, functions: &[&str]) -> anyhow::Result<Vec<u64>> {
    let readelf = |args: &[&str]| -> anyhow::Result<String> {
        let output = std::process::Command::new("readelf")
            .args(args)
            .arg(library)
            .output()
            .context("running readelf (Debian package binutils)")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let hex = |text: &str| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok();
    // Executable LOAD segments: (virtual address, file offset, size).
    let segments: Vec<(u64, u64, u64)> = readelf(&["-W", "-l"])?
        .lines()
        .filter(|line| line.trim_start().starts_with("LOAD") && line.contains(" R E "))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((
                hex(fields.get(2)?)?,
                hex(fields.get(1)?)?,
                hex(fields.get(5)?)?,
            ))
        })
        .collect();
    let symbols = readelf(&["-W", "--dyn-syms"])?;
    functions
        .iter()
        .map(|function| {
            let address = symbols
                .lines()
                .find_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let name = fields.get(7)?.split('@').next()?;
                    (name == *function && fields.get(3) == Some(&"FUNC")).then(|| hex(fields[1]))?
                })
                .with_context(|| format!("{function} is not in {library}"))?;
            let (vaddr, offset, _) = segments
                .iter()
                .find(|(vaddr, _, size)| (*vaddr..vaddr + size).contains(&address))
                .with_context(|| format!("{function} is in no executable segment of {library}"))?;
            Ok(address - vaddr + offset)
        })
        .collect()
}

/// Bare kernel uprobes and uretprobes on Moat's functions, removed when dropped.
struct BareUprobes {
    group: String,
    /// Events defined so far, each removed on drop.
    events: Vec<String>,
}

impl BareUprobes {
    fn set() -> anyhow::Result<Self> {
        let group = format!("moatbench{}", std::process::id());
        let offsets = function_offsets(LIBSSL, &HOOKED)?;
        let events = Path::new(TRACEFS).join("uprobe_events");
        let mut definitions = String::new();
        for (index, offset) in offsets.iter().enumerate() {
            let _ = writeln!(definitions, "p:{group}/entry{index} {LIBSSL}:{offset:#x}");
            let _ = writeln!(definitions, "r:{group}/return{index} {LIBSSL}:{offset:#x}");
        }
        let mut bare = Self {
            group,
            events: Vec::new(),
        };
        for definition in definitions.lines() {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&events)
                .with_context(|| format!("opening {} (tracefs)", events.display()))?;
            std::io::Write::write_all(&mut file, format!("{definition}\n").as_bytes())
                .with_context(|| format!("defining {definition}"))?;
            if let Some(event) = definition
                .split_whitespace()
                .next()
                .and_then(|head| head.split_once(':'))
            {
                bare.events.push(event.1.to_owned());
            }
        }
        let enable = Path::new(TRACEFS)
            .join("events")
            .join(&bare.group)
            .join("enable");
        std::fs::write(&enable, "1").with_context(|| format!("writing {}", enable.display()))?;
        Ok(bare)
    }
}

impl Drop for BareUprobes {
    fn drop(&mut self) {
        let enable = Path::new(TRACEFS)
            .join("events")
            .join(&self.group)
            .join("enable");
        let _ = std::fs::write(enable, "0");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .append(true)
            .open(Path::new(TRACEFS).join("uprobe_events"))
        {
            for event in &self.events {
                let _ = std::io::Write::write_all(&mut file, format!("-:{event}\n").as_bytes());
            }
        }
    }
}

fn measure(options: &Options, directory: &Path) -> anyhow::Result<Runs> {
    let testbed = Testbed::new(options, directory)?;
    let _nginx = testbed.start_nginx()?;
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut bare_uprobes = Vec::new();
    for round in 0..options.rounds {
        {
            let _probes = BareUprobes::set()?;
            bare_uprobes.push(testbed.wrk()?);
        }
        for with_agent in [round % 2 == 1, round % 2 == 0] {
            if with_agent {
                let agent = testbed.agent().start(TLS_PORT)?;
                let cpu_before = cpu_time(agent.id())?;
                let load = testbed.wrk()?;
                std::thread::sleep(SETTLE);
                let agent_run = testbed.agent().finish(agent, cpu_before)?;
                with.push((load, agent_run));
            } else {
                without.push(testbed.wrk()?);
            }
        }
        eprintln!("  tls: round {} of {} done", round + 1, options.rounds);
    }
    Ok(Runs {
        without,
        with,
        bare_uprobes,
    })
}

struct Testbed {
    node: Node,
    client: Pod,
    server: Pod,
    directory: PathBuf,
    agent: PathBuf,
    options: Options,
}

impl Testbed {
    fn new(options: &Options, directory: &Path) -> anyhow::Result<Self> {
        let agent = agent_binary()?;
        let (node, client, server) = client_and_server("tlsbench", 30, 40)?;
        Ok(Self {
            node,
            client,
            server,
            directory: directory.to_owned(),
            agent,
            options: options.clone(),
        })
    }

    /// A test CA, a certificate it signed for the server pod, and nginx serving TLS with it
    /// (one process, so the two cores are shared alike in every run, and stopping it leaves no
    /// worker behind).
    fn start_nginx(&self) -> anyhow::Result<Background> {
        let certificate = TestCa::new(&self.directory, "Moat bench CA")
            .and_then(|ca| {
                ca.issue(
                    "server",
                    "server.test",
                    &[&format!("IP:{}", self.server.ipv4)],
                    1,
                )
            })
            .context("making the server's certificate")?;
        let root = write_site(&self.directory, "TLS")?;
        let config = self.directory.join("nginx.conf");
        std::fs::write(
            &config,
            format!(
                "daemon off; master_process off; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{ access_log off; sendfile on; client_body_temp_path {dir};\n\
                   server {{ listen {TLS_PORT} ssl; root {root};\n\
                     ssl_certificate {cert}; ssl_certificate_key {key};\n\
                     ssl_protocols TLSv1.2 TLSv1.3;\n\
                     location = /ok {{ return 200 \"ok\\n\"; }} }} }}\n",
                dir = self.directory.display(),
                root = root.display(),
                cert = certificate.certificate(),
                key = certificate.key(),
            ),
        )?;
        let nginx = self
            .server
            .spawn("nginx", &["-c", &config.display().to_string()])
            .context("starting nginx (Debian package nginx-light)")?;
        wait_listening(
            &self.server,
            SocketAddr::new(self.server.ipv4.into(), TLS_PORT),
        )?;
        Ok(nginx)
    }

    fn state_dir(&self) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/moat-bench-{}-tls", std::process::id()))
    }

    fn agent(&self) -> BenchAgent<'_> {
        BenchAgent {
            node: &self.node,
            binary: &self.agent,
            log: self.directory.join("agent.log"),
            state_dir: self.state_dir(),
            metrics_port: METRICS_PORT,
        }
    }

    /// wrk over HTTPS.
    fn wrk(&self) -> anyhow::Result<LoadRun> {
        alternating_wrk(
            &self.client,
            &self.directory,
            (self.options.connections, self.options.seconds),
            &format!("https://{}:{TLS_PORT}/", self.server.ipv4),
        )
    }
}

impl Drop for Testbed {
    /// A run that failed with the agent up killed it and left its pins: remove them.
    fn drop(&mut self) {
        if self.state_dir().exists() {
            let _ = std::process::Command::new(&self.agent)
                .args(["cleanup", "--log-level", "warn", "--state-dir"])
                .arg(self.state_dir())
                .status();
        }
    }
}
