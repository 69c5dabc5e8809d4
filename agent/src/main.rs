//! moat-agent: Moat's node agent. Everything but flag parsing and logging set-up lives in the
//! library (`agent::run`).

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;

/// Every parsed call allocates (header strings, records); glibc's allocator showed as a quarter
/// of the agent's time under load, mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = agent::cli::Args::parse();
    init_logging(args.log_level.as_deref());
    match agent::run::main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, the whole cause chain, no backtrace: the reader is an operator.
            eprintln!("moat-agent: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
