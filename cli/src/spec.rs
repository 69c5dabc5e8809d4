//! `moat spec export` and `moat spec diff`: the OpenAPI document the traffic implies, and where
//! traffic and a spec disagree. Both read the endpoint inventory the collector merged across
//! agents, with what each agent learned of parameters and bodies.

use std::path::PathBuf;

use intelligence::{
    learn::{self, Learned, LearnedEndpoint},
    openapi::{Source, Spec},
};
use moat_api::v1::Endpoint;

use crate::{Failure, Output, render};

#[derive(Debug, clap::Subcommand)]
pub enum SpecCommand {
    /// Write an OpenAPI 3.1 document inferred from the service's observed traffic: paths,
    /// methods, parameters, JSON bodies, statuses and security schemes. It accepts the traffic
    /// it was learned from, so it can be bound back as the service's spec.
    Export {
        /// The service (an API's name, `namespace/service`, ...; see `moat endpoints`).
        #[arg(long, short = 's')]
        service: String,
        /// Write it here instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// `yaml` or `json`.
        #[arg(long, default_value = "yaml", value_parser = ["yaml", "json"])]
        format: String,
    },
    /// Show where the service's observed traffic and a spec disagree: undocumented endpoints,
    /// methods, statuses and query parameters, and documented operations never called.
    Diff {
        #[arg(long, short = 's')]
        service: String,
        /// The spec (OpenAPI 3.0 or 3.1, YAML or JSON; `$ref`s to files beside it are read).
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
    },
}

struct Files;

impl Source for Files {
    fn read(&mut self, document: &str) -> Result<String, String> {
        std::fs::read_to_string(document).map_err(|error| error.to_string())
    }
}

/// The endpoints with what they learned, skipping the overflow bucket.
fn learned(endpoints: &[Endpoint]) -> Vec<(&Endpoint, Learned)> {
    endpoints
        .iter()
        .filter(|endpoint| endpoint.method != "OTHER")
        .map(|endpoint| {
            (
                endpoint,
                serde_json::from_str(&endpoint.learned_json).unwrap_or_default(),
            )
        })
        .collect()
}

fn views<'a>(learned: &'a [(&'a Endpoint, Learned)]) -> Vec<LearnedEndpoint<'a>> {
    learned
        .iter()
        .map(|(endpoint, learned)| LearnedEndpoint {
            method: &endpoint.method,
            template: &endpoint.endpoint,
            learned,
        })
        .collect()
}

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
    command: &SpecCommand,
) -> Result<(), Failure> {
    let other = |error: anyhow::Error| Failure::Other(error);
    match command {
        SpecCommand::Export {
            service,
            out,
            format,
        } => {
            let endpoints = crate::endpoints::fetch(collector, token, service).await?;
            if endpoints.is_empty() {
                return Err(other(anyhow::anyhow!(
                    "--service {service:?}: the collector has no endpoints of that service; `moat endpoints` lists the services it knows"
                )));
            }
            let learned = learned(&endpoints);
            let document = learn::openapi(service, &views(&learned));
            let text = if format == "json" {
                serde_json::to_string_pretty(&document).map_err(|error| other(error.into()))? + "\n"
            } else {
                serde_yaml::to_string(&document).map_err(|error| other(error.into()))?
            };
            match out {
                Some(path) => std::fs::write(path, text)
                    .map_err(|error| other(anyhow::anyhow!("--out {}: {error}", path.display()))),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        SpecCommand::Diff { service, spec } => {
            let text = std::fs::read_to_string(spec)
                .map_err(|error| other(anyhow::anyhow!("--spec {}: {error}", spec.display())))?;
            let compiled = Spec::load(&text, &spec.to_string_lossy(), &mut Files)
                .map_err(|error| other(anyhow::anyhow!("--spec: {error}")))?;
            for warning in &compiled.warnings {
                eprintln!("moat: warning: --spec: operation left out: {warning}");
            }
            let endpoints = crate::endpoints::fetch(collector, token, service).await?;
            let learned = learned(&endpoints);
            let differences = learn::diff(&compiled.spec, &views(&learned));
            let mut out = std::io::stdout().lock();
            let values = differences
                .iter()
                .map(|difference| serde_json::to_value(difference).unwrap_or_default());
            render::records(&mut out, output, values, |out| {
                let rows: Vec<Vec<String>> = differences
                    .iter()
                    .map(|difference| {
                        vec![
                            difference.kind.to_owned(),
                            difference.method.clone(),
                            difference.endpoint.clone(),
                            difference.detail.clone(),
                        ]
                    })
                    .collect();
                render::aligned(out, &["DIFFERENCE", "METHOD", "ENDPOINT", "DETAIL"], &rows)
            })
            .map_err(|error| other(error.into()))
        }
    }
}
