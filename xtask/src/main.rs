//! Moat's developer tasks: `cargo xtask setup | test | demo`.

mod demo;
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
    /// iproute2, tcpdump, ...), nightly's rust-src, bpf-linker 0.13 built against LLVM 22; and
    /// mount bpffs and tracefs. Needs root.
    Setup,
    /// The whole suite: formatting, clippy on every crate (the eBPF crate for its own target),
    /// unit and property tests, and the privileged end-to-end tests. Needs root.
    Test,
    /// Show Moat at work: build a node with three pods in network namespaces, attach moat-agent to
    /// the pods' interfaces, make the pods talk, and print what the agent saw. Needs root.
    Demo,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.task {
        Task::Setup => setup::run(),
        Task::Test => setup::run().and_then(|()| suite::run()),
        Task::Demo => setup::run().and_then(|()| demo::run()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
