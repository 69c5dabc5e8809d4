//! moat: ask a Moat collector what its agents saw.

mod agents;
mod callers;
mod calls;
mod dataflow;
mod drops;
mod endpoints;
mod findings;
mod inventory;
mod map;
mod render;
mod scope;
mod spec;

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
    /// The CA (PEM) that signed the collector's certificate, for an `https://` collector.
    #[arg(long, env = "MOAT_CA", value_name = "FILE", global = true)]
    ca: Option<std::path::PathBuf>,
    /// How to print: `table` for people, `json` (one object per line) or `yaml` (one document
    /// per record) for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// Where the collector is and how to reach it.
pub struct Collector {
    pub url: String,
    pub ca: Option<std::path::PathBuf>,
}

impl Args {
    fn collector(&self) -> Collector {
        Collector {
            url: self.collector.clone(),
            ca: self.ca.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API calls, newest first.
    Calls(calls::CallsArgs),
    /// Findings about the APIs (spec violations, new endpoints and callers, blocks), newest
    /// first; `--follow` prints new ones as they arrive.
    Findings(findings::FindingsArgs),
    /// The endpoint inventory: each service's endpoints with calls, errors, latency, auth
    /// schemes, callers and whether the bound spec documents them.
    Endpoints(endpoints::EndpointsArgs),
    /// Who calls each endpoint: workload or range, application, customer and end user, with
    /// calls and first and last seen, busiest first (`--customer "Acme Corp"` for one
    /// customer's clients).
    Callers(callers::CallersArgs),
    /// The ranges (declared and learned) and workloads (pods, services) the agents know.
    Inventory(inventory::InventoryArgs),
    /// Where sensitive data goes: per service and endpoint, which classes of data came in or
    /// went out, to and from whom, encrypted or not (`moat dataflow --class pii`).
    ///
    /// Each row is a flow: calls to one endpoint whose requests (`in`, from the counterpart, the
    /// caller) or responses (`out`, to it) carried values of one class and kind, with the calls
    /// and values counted across agents. The values themselves never leave the agents.
    #[command(name = "dataflow")]
    DataFlow(dataflow::DataFlowArgs),
    /// OpenAPI from traffic: `export` a service's learned spec, `diff` traffic against a spec.
    #[command(subcommand)]
    Spec(spec::SpecCommand),
    /// Who calls whom: per caller and callee, calls, failures and latency.
    Map(map::MapArgs),
    /// What the agents dropped, newest first: the reason (rule, blocklist, isolate,
    /// rate_limit, timed_block), the rule, both ends, protocol and interface; `--summary`
    /// counts them per reason, rule and source.
    Drops(drops::DropsArgs),
    /// The agents that shipped to the collector since it started: version, uptime, whether
    /// connected, last seen, queue, and what they lost.
    Agents,
}

pub enum Failure {
    Unreachable(tonic::transport::Error),
    Refused(String),
    Other(anyhow::Error),
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                Self::Refused(status.message().to_owned())
            }
            _ => Self::Other(anyhow::anyhow!(
                "the collector refused the query: {}",
                status.message()
            )),
        }
    }
}

/// Sends the query token, when there is one, with every request.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = moat_api::v1::query_client::QueryClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

pub async fn connect(collector: &Collector, token: Option<&str>) -> Result<Client, Failure> {
    let url = &collector.url;
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|error| Failure::Other(anyhow::anyhow!("--collector {url:?}: {error}")))?;
    if url.starts_with("https://") {
        let Some(ca) = &collector.ca else {
            return Err(Failure::Other(anyhow::anyhow!(
                "--collector {url}: an https:// collector needs --ca FILE (or $MOAT_CA), the CA that signed its certificate"
            )));
        };
        let pem = std::fs::read(ca)
            .map_err(|error| Failure::Other(anyhow::anyhow!("--ca {}: {error}", ca.display())))?;
        endpoint = endpoint
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
            )
            .map_err(|error| Failure::Other(anyhow::anyhow!("--ca {}: {error}", ca.display())))?;
    }
    let channel = endpoint.connect().await.map_err(Failure::Unreachable)?;
    let bearer = token
        .map(|token| format!("Bearer {token}").parse())
        .transpose()
        .map_err(|_| {
            Failure::Other(anyhow::anyhow!(
                "--token: only printable ASCII fits in a header"
            ))
        })?;
    Ok(moat_api::v1::query_client::QueryClient::with_interceptor(
        channel,
        Bearer(bearer),
    ))
}

/// `--since` as Unix nanoseconds (0: from the beginning).
pub fn since_nanos(since: Option<std::time::Duration>) -> i64 {
    since
        .and_then(|since| std::time::SystemTime::now().checked_sub(since))
        .and_then(|since| since.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos() as i64)
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
                calls::run(&args.collector(), args.token.as_deref(), args.output, calls).await
            }
            Command::Findings(findings) => {
                findings::run(
                    &args.collector(),
                    args.token.as_deref(),
                    args.output,
                    findings,
                )
                .await
            }
            Command::Endpoints(endpoints) => {
                endpoints::run(
                    &args.collector(),
                    args.token.as_deref(),
                    args.output,
                    endpoints,
                )
                .await
            }
            Command::Callers(callers) => {
                callers::run(
                    &args.collector(),
                    args.token.as_deref(),
                    args.output,
                    callers,
                )
                .await
            }
            Command::Inventory(inventory) => {
                inventory::run(
                    &args.collector(),
                    args.token.as_deref(),
                    args.output,
                    inventory,
                )
                .await
            }
            Command::DataFlow(flows) => {
                dataflow::run(&args.collector(), args.token.as_deref(), args.output, flows).await
            }
            Command::Spec(command) => {
                spec::run(
                    &args.collector(),
                    args.token.as_deref(),
                    args.output,
                    command,
                )
                .await
            }
            Command::Map(map) => {
                map::run(&args.collector(), args.token.as_deref(), args.output, map).await
            }
            Command::Drops(drops) => {
                drops::run(&args.collector(), args.token.as_deref(), args.output, drops).await
            }
            Command::Agents => {
                agents::run(&args.collector(), args.token.as_deref(), args.output).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Unreachable(error)) => {
            eprintln!(
                "moat: error: cannot reach the collector at {}: {error}",
                args.collector
            );
            ExitCode::from(UNAVAILABLE)
        }
        Err(Failure::Refused(message)) => {
            eprintln!(
                "moat: error: the collector refused the token: {message} (give one with --token or $MOAT_TOKEN)"
            );
            ExitCode::from(NO_PERMISSION)
        }
        Err(Failure::Other(error)) => {
            eprintln!("moat: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
