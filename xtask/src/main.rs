//! Moat's developer tasks: `cargo xtask setup | test | demo | fuzz | bench | eval`.

mod demo;
mod eval;
mod setup;
mod shell;
mod suite;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Moat's developer tasks. Each task runs `setup` first, so a fresh machine needs nothing else.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install, only where missing, what building and testing Moat needs: Debian packages (LLVM 22,
    /// iproute2, tcpdump, ...), nightly's rust-src, bpf-linker 0.13 built against LLVM 22, a
    /// Python virtualenv for the chart checks (target/chart-venv, charts/tests/requirements.txt);
    /// and mount bpffs and tracefs. Needs root.
    Setup,
    /// The whole suite: formatting, clippy on every crate (the eBPF crate for its own target),
    /// the Helm chart's offline checks (charts/tests), unit and property tests, and the
    /// privileged end-to-end tests. Needs root.
    Test,
    /// Show Moat at work on this machine, no cluster needed: a small shop (frontend, api,
    /// payments, db, a dev workload, a customer and an attacker) in network namespaces, watched
    /// by moat-agent and shipped to moat-collector; realistic traffic (HTTP/1.1, HTTP/2, gRPC,
    /// TLS, personal data, a spec-breaking client, an injection, recon, lateral movement); then
    /// the `moat` CLI prints the inventory, the service map, findings, drops and data flows.
    /// Removes everything it made when it ends. Needs root.
    Demo {
        /// Keep the shop, agent and collector running after the story, to query them by hand;
        /// Enter stops and cleans up.
        #[arg(long)]
        keep: bool,
    },
    /// Fuzz a parser with cargo-fuzz (installed if missing): `parse_policy`, `parse_cidr`
    /// (policy), `parse_inventory`, `kubernetes_objects` (identity), `http1`, `http2_frames`,
    /// `hpack`, `grpc`, `connection` (protocols), `load_spec`, `check_call`, `template_path`
    /// (intelligence), `decode_layers`, `decode_variants`, `detect_request`, `detect_response` or
    /// `behavior` (threats). Crashes are saved under <crate>/fuzz/artifacts. Not part of `test`.
    Fuzz {
        /// The fuzz target.
        target: String,
        /// How long to fuzz.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
    },
    /// Benchmarks, each against baselines measured in the same run (never part of `test`).
    /// `xdp`: XDP enforcement against a bare XDP program, nftables and iptables. `capture`: API
    /// call capture, live traffic with and without the agent, and parser throughput. `identity`:
    /// address lookups with 100k pods and 10k ranges, the index's memory, and pod change to
    /// enforced kernel maps. `collector`: records/s stored against bare SQLite, and query
    /// latency per filter. `spec`: OpenAPI conformance checks per second per core against
    /// parsing alone, and memory per bound spec. `detect`: MB/s per core through the threat
    /// detectors against a byte scan and JSON parsing, and latency per call. `tls`: HTTPS
    /// requests/s and p99 (wrk → nginx) with and without the agent reading TLS plaintext through
    /// OpenSSL uprobes. Extra arguments go to moat-bench (`cargo xtask bench capture -- --help`). Needs root (except `spec` and
    /// `detect`).
    Bench {
        /// Which benchmark: `xdp`, `capture`, `identity`, `collector`, `spec`, `detect` or `tls`.
        name: String,
        /// Arguments for moat-bench.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Evaluations of Moat's judgement against labelled corpora and baselines from the same run.
    /// `detect`: the threat detectors on the CRS regression attacks and a benign set generated
    /// from ../shared/corpora/openapi, beside nginx with ModSecurity and the Core Rule Set
    /// (paranoia level 1) on loopback; prints precision and recall per kind. Installs nginx's
    /// ModSecurity module and the CRS (needs root for that); never part of `test`.
    Eval {
        /// Which evaluation: `detect`.
        name: String,
    },
}

/// (target, crate whose fuzz/ directory holds it).
const FUZZ_TARGETS: [(&str, &str); 18] = [
    ("parse_policy", "policy"),
    ("parse_cidr", "policy"),
    ("parse_inventory", "identity"),
    ("kubernetes_objects", "identity"),
    ("http1", "protocols"),
    ("http2_frames", "protocols"),
    ("hpack", "protocols"),
    ("grpc", "protocols"),
    ("connection", "protocols"),
    ("tls", "protocols"),
    ("load_spec", "intelligence"),
    ("check_call", "intelligence"),
    ("template_path", "intelligence"),
    ("decode_layers", "threats"),
    ("decode_variants", "threats"),
    ("detect_request", "threats"),
    ("detect_response", "threats"),
    ("behavior", "threats"),
];

fn fuzz(target: &str, seconds: u32) -> anyhow::Result<()> {
    let Some((_, crate_dir)) = FUZZ_TARGETS.iter().find(|(name, _)| *name == target) else {
        anyhow::bail!(
            "no fuzz target named {target:?}; the targets are: {}",
            FUZZ_TARGETS
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    shell::exec(
        std::process::Command::new("cargo")
            .args(["+nightly", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .current_dir(shell::workspace_root().join(crate_dir)),
    )
}

const BENCHMARKS: [&str; 7] = [
    "xdp",
    "capture",
    "identity",
    "collector",
    "spec",
    "detect",
    "tls",
];

fn bench(name: &str, args: &[String]) -> anyhow::Result<()> {
    if !BENCHMARKS.contains(&name) {
        anyhow::bail!(
            "no benchmark named {name:?}; the benchmarks are: {}",
            BENCHMARKS.join(", ")
        );
    }
    // The capture and collector benchmarks run the agent's and collector's binaries, which
    // `cargo run` below would not build.
    let binary = match name {
        "capture" | "tls" => Some("agent"),
        "collector" => Some("collector"),
        _ => None,
    };
    if let Some(package) = binary {
        shell::exec(
            std::process::Command::new("cargo")
                .args(["build", "--release", "--quiet", "--package", package])
                .current_dir(shell::workspace_root()),
        )?;
    }
    shell::exec(
        std::process::Command::new("cargo")
            .args([
                "run",
                "--release",
                "--quiet",
                "--package",
                "moat-bench",
                "--",
                name,
            ])
            .args(args)
            .current_dir(shell::workspace_root()),
    )
}

fn evaluate(name: &str) -> anyhow::Result<()> {
    match name {
        // Pure code and loopback only: the build and kernel set-up are not needed.
        "detect" => setup::eval_packages().and_then(|()| eval::detect()),
        _ => anyhow::bail!("no evaluation named {name:?}; the evaluations are: detect"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.task {
        Task::Setup => setup::run(),
        Task::Test => setup::run().and_then(|()| suite::run()),
        Task::Demo { keep } => setup::run().and_then(|()| demo::run(keep)),
        Task::Fuzz { target, seconds } => setup::run()
            .and_then(|()| setup::cargo_fuzz())
            .and_then(|()| fuzz(&target, seconds)),
        Task::Bench { name, args } => setup::run()
            .and_then(|()| setup::bench_packages())
            .and_then(|()| bench(&name, &args)),
        Task::Eval { name } => evaluate(&name),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
