//! moat: ask a Moat collector what its agents saw.

mod calls;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Query a Moat collector (moat-collector) for what its agents saw.
///
/// Exit codes: 0 success (even when nothing matched), 2 wrong flags, 69 the collector could not
/// be reached, 77 the collector refused the token (or wants one), 1 any other error.
#[derive(Debug, Parser)]
#[command(name = "moat", version)]
struct Args {
    /// The collector's gRPC address.
    #[arg(
        long,
        env = "MOAT_COLLECTOR",
        value_name = "URL",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    collector: String,
    /// The query token the collector gave you (its --tokens file), sent as a bearer token.
    #[arg(
        long,
        env = "MOAT_TOKEN",
        value_name = "TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    /// How to print: `table` for people, `json` (one object per line) for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API calls, newest first.
    Calls(calls::CallsArgs),
}

/// Exit code for "the collector could not be reached" (EX_UNAVAILABLE).
const UNAVAILABLE: u8 = 69;
/// Exit code for "the collector refused the token" (EX_NOPERM).
const NO_PERMISSION: u8 = 77;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("moat: error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &args.command {
            Command::Calls(calls) => {
                calls::run(&args.collector, args.token.as_deref(), args.output, calls).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(calls::Failure::Unreachable(error)) => {
            eprintln!(
                "moat: error: cannot reach the collector at {}: {error}",
                args.collector
            );
            ExitCode::from(UNAVAILABLE)
        }
        Err(calls::Failure::Refused(message)) => {
            eprintln!(
                "moat: error: the collector refused the token: {message} (give one with --token or $MOAT_TOKEN)"
            );
            ExitCode::from(NO_PERMISSION)
        }
        Err(calls::Failure::Other(error)) => {
            eprintln!("moat: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
