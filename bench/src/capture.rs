//! `moat-bench capture`: what API call capture costs.
//!
//! Live: HTTP/1.1 (wrk against nginx) and HTTP/2 (h2load against nghttpd), each over loopback
//! inside one pod and between two pods of a testbed node, with and without moat-agent capturing
//! the server's port. Rounds alternate which of the two goes first, and each figure is the
//! median of its rounds. The agent's records go to /dev/null, so it pays for serializing them as
//! it would in production.
//!
//! Parsers: the protocols crate's HTTP/1.1 and HTTP/2 parsers on an in-memory corpus, against
//! bare `httparse` on the same HTTP/1.1 bytes; no kernel involved.

mod corpus;
pub(crate) mod live;
mod parsers;

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context as _;

use live::{AgentRun, LoadRun, ScenarioResult};

#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Seconds each load run lasts, and each parser measurement at least.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Rounds of every measurement; the median round is reported, so one disturbed round does
    /// not skew it. Live rounds alternate whether the run with or without the agent goes first.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Connections each load generator keeps open (wrk --connections, h2load --clients).
    #[arg(long, default_value_t = 10)]
    connections: u32,
    /// Concurrent streams h2load opens on each HTTP/2 connection.
    #[arg(long, default_value_t = 10)]
    streams: u32,
    /// Run one part only: `live` (servers, load generators and the agent on a testbed node;
    /// needs root) or `parsers` (parser throughput on an in-memory corpus; needs nothing).
    #[arg(long, value_enum, value_name = "PART")]
    only: Option<Part>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Live,
    Parsers,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let options = Options {
        rounds: options.rounds.max(1),
        seconds: options.seconds.max(1),
        ..options.clone()
    };
    let machine = machine();
    println!(
        "moat-bench capture on {machine}: median of {} rounds of {} s",
        options.rounds, options.seconds
    );
    let live = if options.only == Some(Part::Parsers) {
        Vec::new()
    } else {
        live(&options)?
    };
    let parsers = if options.only == Some(Part::Live) {
        None
    } else {
        eprintln!("  parsers: measuring");
        Some(parsers::run(
            Duration::from_secs(options.seconds.into()),
            options.rounds,
        )?)
    };

    let mut markdown = format!(
        "Machine: {machine}. Median of {} rounds of {} s; {} connections per load generator, \
         {} streams per HTTP/2 connection. Reproduce: `sudo cargo xtask bench capture -- \
         --rounds {} --seconds {} --connections {} --streams {}{}`.\n",
        options.rounds,
        options.seconds,
        options.connections,
        options.streams,
        options.rounds,
        options.seconds,
        options.connections,
        options.streams,
        match options.only {
            Some(Part::Live) => " --only live",
            Some(Part::Parsers) => " --only parsers",
            None => "",
        }
    );
    if !live.is_empty() {
        let (table, notes) = live_table(&live);
        println!(
            "\nLive traffic, with and without the agent capturing\n\n{}{notes}",
            table.text()
        );
        let _ = write!(markdown, "\n{}{notes}", table.markdown());
    }
    if let Some(parsers) = &parsers {
        let (table, notes) = parser_table(parsers);
        println!("\nParser throughput, one core\n\n{}{notes}", table.text());
        let _ = write!(markdown, "\n{}{notes}", table.markdown());
    }
    println!("\nAs markdown:\n\n{markdown}");
    Ok(())
}

fn live(options: &Options) -> anyhow::Result<Vec<ScenarioResult>> {
    let directory = std::env::temp_dir().join(format!("moat-bench-capture-{}", std::process::id()));
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let outcome = live_in(options, &directory);
    let _ = std::fs::remove_dir_all(&directory);
    outcome
}

fn live_in(options: &Options, directory: &Path) -> anyhow::Result<Vec<ScenarioResult>> {
    let testbed = live::Testbed::new(options, directory)?;
    let _servers = testbed.start_servers()?;
    live::Scenario::ALL
        .into_iter()
        .map(|scenario| testbed.scenario(scenario))
        .collect()
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The live results, and which stream bytes the agent did not get.
fn live_table(results: &[ScenarioResult]) -> (Table, String) {
    let mut table = Table::new(&[
        "scenario",
        "req/s without",
        "req/s with",
        "ratio (target ≥ 0.95)",
        "p99 without",
        "p99 with",
        "p99 added",
        "agent CPU at 10k req/s",
        "agent peak RSS",
        "events lost",
        "calls parsed / requests",
    ]);
    let mut missed = String::new();
    for result in results {
        let with: Vec<&LoadRun> = result.with.iter().map(|(load, _)| load).collect();
        let agent: Vec<&AgentRun> = result.with.iter().map(|(_, agent)| agent).collect();
        let rate =
            |runs: &[&LoadRun]| median(runs.iter().map(|run| run.requests_per_second).collect());
        let p99 =
            |runs: &[&LoadRun]| median(runs.iter().map(|run| run.p99.as_secs_f64()).collect());
        let without: Vec<&LoadRun> = result.without.iter().collect();
        let (rate_without, rate_with) = (rate(&without), rate(&with));
        let (p99_without, p99_with) = (p99(&without), p99(&with));
        // Core-seconds per 10,000 requests: the share of one core the agent needs at 10k req/s.
        let cpu = median(
            result
                .with
                .iter()
                .map(|(load, agent)| {
                    agent.cpu.as_secs_f64() * 10_000.0 / load.requests.max(1) as f64
                })
                .collect(),
        );
        let peak_rss = agent
            .iter()
            .map(|run| run.peak_rss_bytes)
            .max()
            .unwrap_or(0);
        let lost: f64 = agent.iter().map(|run| run.events_lost).sum();
        let parsed: f64 = agent.iter().map(|run| run.calls_parsed).sum();
        let requests: u64 = with.iter().map(|run| run.requests).sum();
        table.row(vec![
            result.scenario.name().to_owned(),
            format!("{rate_without:.0}"),
            format!("{rate_with:.0}"),
            format!("{:.3}", rate_with / rate_without),
            format!("{:.2} ms", p99_without * 1e3),
            format!("{:.2} ms", p99_with * 1e3),
            format!("{:+.2} ms", (p99_with - p99_without) * 1e3),
            format!("{:.1}% of a core", cpu * 100.0),
            format!("{:.1} MiB", peak_rss as f64 / (1024.0 * 1024.0)),
            format!("{lost:.0}"),
            format!("{:.3}", parsed / requests.max(1) as f64),
        ]);
        if let Some(reasons) = live::missed_bytes(agent.iter().copied()) {
            let _ = writeln!(missed, "- {}: {reasons}", result.scenario.name());
        }
    }
    let notes = if missed.is_empty() {
        String::new()
    } else {
        format!(
            "\nStream bytes the agent did not get (moat_capture_bytes_missed_total, all rounds \
             with the agent):\n{missed}"
        )
    };
    (table, notes)
}

/// The parser results, and what the corpus was.
fn parser_table(results: &parsers::Results) -> (Table, String) {
    let mut table = Table::new(&["parser", "MB/s", "calls/s", "relative to httparse"]);
    for throughput in [&results.http1, &results.httparse, &results.http2] {
        let relative = if throughput.name.starts_with("protocols::http2") {
            // Different bytes on the wire: not comparable with httparse's figure.
            "–".to_owned()
        } else {
            format!(
                "{:.2}",
                throughput.bytes_per_second / results.httparse.bytes_per_second
            )
        };
        table.row(vec![
            throughput.name.to_owned(),
            format!("{:.0}", throughput.bytes_per_second / 1e6),
            format!("{:.0}", throughput.calls_per_second),
            relative,
        ]);
    }
    let notes = format!(
        "\nHTTP/1.1: {} request/response pairs on one keep-alive connection ({:.1} MB); HTTP/2: \
         the same calls on one connection, 10 streams at a time ({:.1} MB). Fed as the agent \
         feeds them: one syscall's worth at a time, at most 16 KiB.\n",
        results.http1_calls,
        results.http1_bytes as f64 / 1e6,
        results.http2_bytes as f64 / 1e6,
    );
    (table, notes)
}

/// Rows of figures, printed aligned for people and as markdown for docs/benchmarks.md.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|title| (*title).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Columns padded to their widest cell; the first (a name) left-aligned, figures right.
    pub(crate) fn text(&self) -> String {
        let lines: Vec<&Vec<String>> = std::iter::once(&self.header).chain(&self.rows).collect();
        let widths: Vec<usize> = (0..self.header.len())
            .map(|column| {
                lines
                    .iter()
                    .map(|line| line[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for line in lines {
            for (column, (cell, width)) in line.iter().zip(&widths).enumerate() {
                let padding = " ".repeat(width - cell.chars().count());
                if column == 0 {
                    let _ = write!(text, "{cell}{padding}");
                } else {
                    let _ = write!(text, "  {padding}{cell}");
                }
            }
            text.push('\n');
        }
        text
    }

    pub(crate) fn markdown(&self) -> String {
        let mut text = format!("| {} |\n|---|", self.header.join(" | "));
        text.push_str(&"---:|".repeat(self.header.len() - 1));
        text.push('\n');
        for row in &self.rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        text
    }
}

/// CPU model, core count and kernel, for the record.
pub(crate) fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|value| value.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default();
    format!("{model}, {cores} cores, Linux {kernel}")
}
