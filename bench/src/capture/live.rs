//! Real servers and load generators on a testbed node, each load run with and without
//! moat-agent capturing the servers' port: what capture costs the traffic (requests/s, p99
//! latency), what it costs the node (the agent's CPU and memory), and whether it kept up (events
//! lost, calls parsed).

use std::{
    fs::File,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use testbed::{Background, Node, Pod, PodSpec};

use super::Options;
use crate::measure::cpu_time;

const HTTP1_PORT: u16 = 18180;
const HTTP2_PORT: u16 = 18181;
/// The agent's metrics endpoint, on loopback inside the node's namespace.
const METRICS_PORT: u16 = 19464;
/// After the load stops: the agent refreshes its metrics once a second, and a call seen at one
/// end waits up to 2 s for its other end, so this lets the counters settle.
const SETTLE: Duration = Duration::from_millis(3_000);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Where client and server talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Both in one pod, over 127.0.0.1.
    Loopback,
    /// Client pod to server pod, through the node's bridge.
    Pods,
}

#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub protocol: Protocol,
    pub route: Route,
}

impl Scenario {
    pub const ALL: [Self; 4] = [
        Self {
            protocol: Protocol::Http1,
            route: Route::Loopback,
        },
        Self {
            protocol: Protocol::Http1,
            route: Route::Pods,
        },
        Self {
            protocol: Protocol::Http2,
            route: Route::Loopback,
        },
        Self {
            protocol: Protocol::Http2,
            route: Route::Pods,
        },
    ];

    pub fn name(self) -> &'static str {
        match (self.protocol, self.route) {
            (Protocol::Http1, Route::Loopback) => "HTTP/1.1 wrk → nginx, loopback in one pod",
            (Protocol::Http1, Route::Pods) => "HTTP/1.1 wrk → nginx, pod to pod",
            (Protocol::Http2, Route::Loopback) => "HTTP/2 h2load → nghttpd, loopback in one pod",
            (Protocol::Http2, Route::Pods) => "HTTP/2 h2load → nghttpd, pod to pod",
        }
    }

    fn port(self) -> u16 {
        match self.protocol {
            Protocol::Http1 => HTTP1_PORT,
            Protocol::Http2 => HTTP2_PORT,
        }
    }
}

/// What one load run measured.
#[derive(Clone, Debug)]
pub struct LoadRun {
    pub requests: u64,
    pub requests_per_second: f64,
    pub p99: Duration,
}

/// What the agent did during one load run.
#[derive(Clone, Debug)]
pub struct AgentRun {
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
    pub events_lost: f64,
    /// Calls parsed: one read at both ends (both ends hooked, or adopted) counts twice.
    pub calls_parsed: f64,
    /// Calls parsed at both ends and written once.
    pub calls_merged: f64,
    /// `moat_capture_bytes_missed_total` per reason, where not zero.
    pub bytes_missed: Vec<(String, f64)>,
}

/// `reason 1.2 MB, reason 0.3 MB`: the stream bytes the agent did not get over `runs`, per
/// reason in order of first appearance; None when it got them all.
pub fn missed_bytes<'a>(runs: impl IntoIterator<Item = &'a AgentRun>) -> Option<String> {
    let mut reasons: Vec<(&str, f64)> = Vec::new();
    for (reason, bytes) in runs.into_iter().flat_map(|run| &run.bytes_missed) {
        match reasons.iter_mut().find(|(known, _)| *known == reason) {
            Some((_, total)) => *total += bytes,
            None => reasons.push((reason, *bytes)),
        }
    }
    (!reasons.is_empty()).then(|| {
        reasons
            .iter()
            .map(|(reason, bytes)| format!("{reason} {:.1} MB", bytes / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// A node with a client pod and a server pod, in 198.18.`client_subnet`.0/24 and
/// 198.18.`server_subnet`.0/24 (and the matching IPv6 /64s).
pub fn client_and_server(
    label: &str,
    client_subnet: u8,
    server_subnet: u8,
) -> anyhow::Result<(Node, Pod, Pod)> {
    let mut node = Node::new(label).context("building the testbed node (needs root)")?;
    let mut pod = |name: &str, subnet: u8| {
        node.add_pod(PodSpec::new(
            name,
            &format!("198.18.{subnet}.2/24"),
            &format!("fd00:198:18:{subnet}::2/64"),
        ))
        .with_context(|| format!("{name} pod"))
    };
    let client = pod("client", client_subnet)?;
    let server = pod("server", server_subnet)?;
    Ok((node, client, server))
}

/// wrk from `client` with one thread and `(connections, seconds)`, alternating nginx's static
/// page and its `return 200` location at `base_url`; the script is written to `directory`.
pub fn alternating_wrk(
    client: &Pod,
    directory: &Path,
    (connections, seconds): (u32, u32),
    base_url: &str,
) -> anyhow::Result<LoadRun> {
    let script = directory.join("alternate.lua");
    std::fs::write(
        &script,
        "local paths = { \"/index.html\", \"/ok\" }\n\
         local turn = 0\n\
         request = function()\n\
           turn = turn % #paths + 1\n\
           return wrk.format(nil, paths[turn])\n\
         end\n",
    )?;
    let output = client
        .run(
            "wrk",
            &[
                "--threads",
                "1",
                "--connections",
                &connections.to_string(),
                "--duration",
                &format!("{seconds}s"),
                "--latency",
                "--script",
                &script.display().to_string(),
                base_url,
            ],
        )
        .context("running wrk (Debian package wrk)")?;
    let report = String::from_utf8_lossy(&output.stdout);
    parse_wrk(&report).with_context(|| format!("reading wrk's report:\n{report}"))
}

/// moat-agent as a benchmark runs it: in the node's namespace, capturing one port on the whole
/// host, its records written to /dev/null (so serializing them is paid, as in production).
pub struct BenchAgent<'a> {
    pub node: &'a Node,
    pub binary: &'a Path,
    pub log: PathBuf,
    pub state_dir: PathBuf,
    pub metrics_port: u16,
}

impl BenchAgent<'_> {
    /// Starts the agent and returns once it reports ready.
    pub fn start(&self, port: u16) -> anyhow::Result<Background> {
        let mut command = self.node.command(self.binary);
        command
            .args(["--capture", "on", "--capture-port", &port.to_string()])
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(["--output", "jsonl", "--log-level", "warn", "--state-dir"])
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&self.log).context("creating the agent's log file")?);
        let mut agent = testbed::spawn(&mut command).context("starting moat-agent")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent.child_mut().try_wait()? {
                bail!(
                    "moat-agent exited ({status}) before it was ready; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if self
                .node
                .http_get(self.metrics_port, "/readyz")
                .is_ok_and(|body| body == "ready")
            {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!(
                    "moat-agent was not ready within 30 s; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reads what the agent did, stops it and removes its pins.
    pub fn finish(&self, mut agent: Background, cpu_before: Duration) -> anyhow::Result<AgentRun> {
        let cpu = cpu_time(agent.id())?.saturating_sub(cpu_before);
        let peak_rss_bytes = peak_rss(agent.id())?;
        let metrics = self
            .node
            .http_get(self.metrics_port, "/metrics")
            .context("scraping the agent's /metrics")?;
        let run = AgentRun {
            cpu,
            peak_rss_bytes,
            events_lost: metric_sum(&metrics, "moat_capture_events_lost_total"),
            calls_parsed: metric_sum(&metrics, "moat_api_calls_total"),
            calls_merged: metric_sum(&metrics, "moat_api_calls_merged_total"),
            bytes_missed: metric_by_label(&metrics, "moat_capture_bytes_missed_total", "reason")
                .into_iter()
                .filter(|(_, value)| *value > 0.0)
                .collect(),
        };
        if agent
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
            .is_none()
        {
            bail!("moat-agent did not stop within 10 s of SIGTERM");
        }
        let cleanup = std::process::Command::new(self.binary)
            .args(["cleanup", "--log-level", "warn", "--state-dir"])
            .arg(&self.state_dir)
            .status()
            .context("running moat-agent cleanup")?;
        if !cleanup.success() {
            bail!("moat-agent cleanup failed ({cleanup})");
        }
        Ok(run)
    }
}

/// Every round of one scenario.
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub without: Vec<LoadRun>,
    pub with: Vec<(LoadRun, AgentRun)>,
}

pub struct Testbed {
    node: Node,
    client: Pod,
    server: Pod,
    directory: PathBuf,
    agent: PathBuf,
    options: Options,
}

impl Testbed {
    pub fn new(options: &Options, directory: &Path) -> anyhow::Result<Self> {
        let agent = agent_binary()?;
        let (node, client, server) = client_and_server("capbench", 10, 20)?;
        Ok(Self {
            node,
            client,
            server,
            directory: directory.to_owned(),
            agent,
            options: options.clone(),
        })
    }

    /// Both servers run in the server pod for the whole benchmark, listening on every address
    /// of the pod (loopback and eth0).
    pub fn start_servers(&self) -> anyhow::Result<[Background; 2]> {
        let root = write_site(&self.directory, "capture")?;
        let config = self.directory.join("nginx.conf");
        // Debian's defaults where they matter (sendfile on), one worker so that the two cores
        // are shared by server, client and agent alike in every run.
        std::fs::write(
            &config,
            format!(
                "daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{ access_log off; sendfile on; client_body_temp_path {dir};\n\
                   server {{ listen {HTTP1_PORT}; root {root};\n\
                     location = /ok {{ return 200 \"ok\\n\"; }} }} }}\n",
                dir = self.directory.display(),
                root = root.display(),
            ),
        )?;
        let nginx = self
            .server
            .spawn("nginx", &["-c", &config.display().to_string()])
            .context("starting nginx (Debian package nginx-light)")?;
        let nghttpd = self
            .server
            .spawn(
                "nghttpd",
                &[
                    "--no-tls",
                    "-d",
                    &root.display().to_string(),
                    &HTTP2_PORT.to_string(),
                ],
            )
            .context("starting nghttpd (Debian package nghttp2-server)")?;
        for port in [HTTP1_PORT, HTTP2_PORT] {
            wait_listening(&self.server, SocketAddr::new(self.server.ipv4.into(), port))?;
        }
        Ok([nginx, nghttpd])
    }

    /// Runs a scenario `rounds` times with and without the agent, alternating which goes first.
    pub fn scenario(&self, scenario: Scenario) -> anyhow::Result<ScenarioResult> {
        let mut result = ScenarioResult {
            scenario,
            without: Vec::new(),
            with: Vec::new(),
        };
        for round in 0..self.options.rounds {
            for with_agent in [round % 2 == 1, round % 2 == 0] {
                if with_agent {
                    let agent = self.agent().start(scenario.port())?;
                    let cpu_before = cpu_time(agent.id())?;
                    let load = self.load(scenario)?;
                    std::thread::sleep(SETTLE);
                    let agent_run = self.agent().finish(agent, cpu_before)?;
                    result.with.push((load, agent_run));
                } else {
                    result.without.push(self.load(scenario)?);
                }
            }
            eprintln!(
                "  {}: round {} of {} done",
                scenario.name(),
                round + 1,
                self.options.rounds
            );
        }
        Ok(result)
    }

    fn state_dir(&self) -> PathBuf {
        PathBuf::from(format!(
            "/sys/fs/bpf/moat-bench-{}-capture",
            std::process::id()
        ))
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

    fn load(&self, scenario: Scenario) -> anyhow::Result<LoadRun> {
        let (client, host) = match scenario.route {
            Route::Loopback => (&self.server, "127.0.0.1".to_owned()),
            Route::Pods => (&self.client, self.server.ipv4.to_string()),
        };
        match scenario.protocol {
            Protocol::Http1 => self.wrk(client, &host),
            Protocol::Http2 => self.h2load(client, &host),
        }
    }

    fn wrk(&self, client: &Pod, host: &str) -> anyhow::Result<LoadRun> {
        alternating_wrk(
            client,
            &self.directory,
            (self.options.connections, self.options.seconds),
            &format!("http://{host}:{HTTP1_PORT}/"),
        )
    }

    /// h2load with one thread over h2c (prior knowledge), with per-request timings logged for
    /// the p99.
    fn h2load(&self, client: &Pod, host: &str) -> anyhow::Result<LoadRun> {
        let log = self.directory.join("h2load.log");
        let output = client
            .run(
                "h2load",
                &[
                    "--threads",
                    "1",
                    "--clients",
                    &self.options.connections.to_string(),
                    "--max-concurrent-streams",
                    &self.options.streams.to_string(),
                    "--duration",
                    &self.options.seconds.to_string(),
                    "--log-file",
                    &log.display().to_string(),
                    &format!("http://{host}:{HTTP2_PORT}/index.html"),
                ],
            )
            .context("running h2load (Debian package nghttp2-client)")?;
        let report = String::from_utf8_lossy(&output.stdout);
        let timings = std::fs::read_to_string(&log).context("reading h2load's log file")?;
        parse_h2load(&report, &timings)
            .with_context(|| format!("reading h2load's report:\n{report}"))
    }
}

impl Drop for Testbed {
    /// A run that failed with the agent up killed it and left its pins: remove them, so no
    /// capture program stays attached after the benchmark.
    fn drop(&mut self) {
        if self.state_dir().exists() {
            let _ = std::process::Command::new(&self.agent)
                .args(["cleanup", "--log-level", "warn", "--state-dir"])
                .arg(self.state_dir())
                .status();
        }
    }
}

/// target/<profile>/moat-agent next to this binary, or `$MOAT_AGENT_BIN`.
pub(crate) fn agent_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MOAT_AGENT_BIN") {
        return Ok(PathBuf::from(path));
    }
    let bench = std::env::current_exe().context("finding moat-bench's own path")?;
    let agent = bench.with_file_name("moat-agent");
    if !agent.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p agent` \
             (`cargo xtask bench capture` does) or set MOAT_AGENT_BIN",
            agent.display()
        );
    }
    Ok(agent)
}

pub(crate) fn wait_listening(pod: &Pod, address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if pod.enter(|| TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok())? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "nothing listens on {address} in pod {} after 15 s",
        pod.name
    )
}

/// A small page of about half a kilobyte, as a static site or an API's documentation page would serve, in
/// `<directory>/www`; returns that root.
pub(crate) fn write_site(directory: &Path, benchmark: &str) -> anyhow::Result<PathBuf> {
    let root = directory.join("www");
    std::fs::create_dir_all(&root)?;
    let page = format!(
        "<!doctype html>\n<html><head><title>moat bench</title></head><body>\n{}</body></html>\n",
        format!("<p>A small static page served by the {benchmark} benchmark.</p>\n").repeat(8)
    );
    std::fs::write(root.join("index.html"), page)?;
    Ok(root)
}

/// The most resident memory a process has had (VmHWM), in bytes.
pub(crate) fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    crate::measure::proc_status_bytes(&pid.to_string(), "VmHWM")
        .with_context(|| format!("no VmHWM in /proc/{pid}/status"))
}

/// The sum of every series of a metric in Prometheus' text format.
pub(crate) fn metric_sum(exposition: &str, name: &str) -> f64 {
    metric_by_label(exposition, name, "")
        .iter()
        .map(|(_, value)| value)
        .sum()
}

/// (value of `label`, sample value) of every series of a metric.
pub(crate) fn metric_by_label(exposition: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let value: f64 = value.split_whitespace().next()?.parse().ok()?;
            let label_value = labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(label)?.strip_prefix('='))
                .map(|quoted| quoted.trim_matches('"').to_owned())
                .unwrap_or_default();
            Some((label_value, value))
        })
        .collect()
}

/// Requests completed, requests/s and the 99th percentile from `wrk --latency`.
pub(crate) fn parse_wrk(report: &str) -> anyhow::Result<LoadRun> {
    let requests = report
        .lines()
        .find_map(|line| {
            let (count, rest) = line.trim().split_once(' ')?;
            rest.starts_with("requests in")
                .then(|| count.parse().ok())?
        })
        .context("no `N requests in` line")?;
    let requests_per_second = report
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .context("no `Requests/sec:` line")?;
    let p99 = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("99%"))
        .and_then(|value| wrk_duration(value.trim()))
        .context("no 99% line in the latency distribution")?;
    if report.contains("Non-2xx or 3xx responses") || report.contains("Socket errors") {
        bail!("wrk saw errors");
    }
    Ok(LoadRun {
        requests,
        requests_per_second,
        p99,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`.
fn wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// Requests that succeeded and requests/s from h2load's summary; the 99th percentile of the
/// per-request times in its log file (start µs, status, µs to the end of the response).
fn parse_h2load(report: &str, timings: &str) -> anyhow::Result<LoadRun> {
    let requests_per_second = report
        .lines()
        .find_map(|line| line.strip_prefix("finished in "))
        .and_then(|rest| rest.split(", ").nth(1))
        .and_then(|rate| rate.strip_suffix(" req/s"))
        .and_then(|rate| rate.parse().ok())
        .context("no `finished in ..., N req/s` line")?;
    let counts = report
        .lines()
        .find_map(|line| line.strip_prefix("requests: "))
        .context("no `requests:` line")?;
    let count_of = |what: &str| -> Option<u64> {
        counts
            .split(", ")
            .find_map(|part| part.strip_suffix(what)?.trim().parse().ok())
    };
    let requests = count_of(" succeeded").context("no succeeded count")?;
    if requests == 0 {
        bail!("h2load completed no request");
    }
    if count_of(" failed").unwrap_or(0) + count_of(" errored").unwrap_or(0) > 0 {
        bail!("h2load saw failed requests");
    }
    let mut micros: Vec<u64> = timings
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if micros.is_empty() {
        bail!("h2load's log file has no request timings");
    }
    micros.sort_unstable();
    let p99 = micros[(micros.len() * 99 / 100).min(micros.len() - 1)];
    Ok(LoadRun {
        requests,
        requests_per_second,
        p99: Duration::from_micros(p99),
    })
}
