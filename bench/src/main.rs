//! moat-bench: Moat's benchmarks, each against baselines measured in the same run, reported as
//! ratios. Run through `cargo xtask bench <name>`, which installs the peers it needs; never part
//! of the test suite, and nothing here asserts on a wall-clock number.

mod capture;
mod collector;
mod detect;
mod identity;
mod measure;
mod spec;
mod tls;
mod xdp;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The agent's allocator, so memory measured here is what the agent would use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "moat-bench")]
struct Args {
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(Debug, Subcommand)]
enum Benchmark {
    /// XDP enforcement: drop cost of Moat with a large policy against a bare XDP_DROP program,
    /// nftables and iptables holding the same blocklist and rules, and what Moat costs allowed
    /// traffic between two pods.
    Xdp(xdp::Options),
    /// API call capture: requests/s, p99 latency, agent CPU and memory with and without
    /// moat-agent capturing HTTP/1.1 (wrk → nginx) and HTTP/2 (h2load → nghttpd), over loopback
    /// and between pods; and parser throughput against bare httparse (`--only parsers` needs
    /// no root).
    Capture(capture::Options),
    /// Identity at cluster scale: address lookups per second with 100k pods and 10k ranges
    /// against a bare hash map, the index's memory, and the time from a pod change to the
    /// kernel's policy maps (that part needs root).
    Identity(identity::Options),
    /// The collector: records/s stored through moat-collector into SQLite and into PostgreSQL,
    /// each against bare inserts into the same database, and ListCalls latency per filter over
    /// what was stored.
    Collector(collector::Options),
    /// OpenAPI conformance: calls checked per second on one core against the Petstore and
    /// large published specs, beside parsing the same bodies alone; memory per bound spec.
    Spec(spec::Options),
    /// Threat detection: MB/s of paths, queries and bodies per core through the threat
    /// detectors and the sensitive-data scanner on benign JSON API calls and the CRS attack
    /// requests, against a byte scan and JSON parsing of the same calls; latency per call; and
    /// calls per second through the behavioral detectors.
    Detect(detect::Options),
    /// TLS plaintext through OpenSSL uprobes: requests/s and p99 latency of HTTPS (wrk → nginx,
    /// pod to pod) with and without moat-agent reading both ends' plaintext, and the agent's
    /// CPU and memory.
    Tls(tls::Options),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.benchmark {
        Benchmark::Xdp(options) => xdp::run(&options),
        Benchmark::Capture(options) => capture::run(&options),
        Benchmark::Identity(options) => identity::run(&options),
        Benchmark::Collector(options) => collector::run(&options),
        Benchmark::Spec(options) => spec::run(&options),
        Benchmark::Detect(options) => detect::run(&options),
        Benchmark::Tls(options) => tls::run(&options),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
