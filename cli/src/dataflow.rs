//! `moat dataflow`: where sensitive data goes, totalled across agents.

use moat_api::v1::{DataFlow, DataFlowFilter, ListDataFlowsRequest};

use crate::{Failure, Output, calls::time, connect, render};

/// A class of sensitive data, as the detectors classify values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Class {
    /// Personal data: emails, phone numbers, national ids, dates of birth.
    Pii,
    /// Credentials: passwords, API keys, provider tokens, private keys, JWTs.
    Secret,
    /// Payment cards and bank accounts (IBANs).
    Financial,
    /// Health data (from configured detectors).
    Health,
    /// Internal addresses, and what configured detectors mark as business data.
    Business,
}

/// Which way data moved, as seen from the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Direction {
    /// Into the service: its requests carried it, from the counterpart.
    In,
    /// Out of the service: its responses carried it, to the counterpart.
    Out,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  Where does personal data go?            moat dataflow --class pii
  Which secrets cross plaintext links?    moat dataflow --class secret --plaintext
  What does the partner range receive?    moat dataflow --range partners --direction out
  Which services take in emails (and must delete them)?
                                          moat dataflow --kind data.email --direction in")]
pub struct DataFlowArgs {
    /// Only this class of data.
    #[arg(long, value_enum)]
    class: Option<Class>,
    /// Only this kind (`data.email`, `data.payment_card`, a configured detector's
    /// `data.<name>`) or family ending in a dot (`data.`).
    #[arg(long)]
    kind: Option<String>,
    /// Only this service's flows (an API's name, `namespace/service`, ...).
    #[arg(long, short = 's')]
    service: Option<String>,
    /// Only endpoints starting with this, e.g. `/api/v3/users`.
    #[arg(long, value_name = "PREFIX")]
    endpoint: Option<String>,
    /// Only data moving this way.
    #[arg(long, value_enum)]
    direction: Option<Direction>,
    /// Only flows over plaintext (unencrypted) connections.
    #[arg(long)]
    plaintext: bool,
    /// Only flows with a counterpart in this namespace.
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Only flows with a counterpart in this workload (a Deployment's, StatefulSet's... name).
    #[arg(long, short = 'w')]
    workload: Option<String>,
    /// Only flows with a counterpart in this named range (the inventory's ranges).
    #[arg(long)]
    range: Option<String>,
    /// Only flows with a counterpart of this customer (a customer range's).
    #[arg(long)]
    customer: Option<String>,
    #[command(flatten)]
    window: crate::scope::Window,
}

impl DataFlowArgs {
    fn filter(&self) -> DataFlowFilter {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        DataFlowFilter {
            service: text(&self.service),
            endpoint: text(&self.endpoint),
            data_class: flag_value(self.class),
            kind: text(&self.kind),
            direction: flag_value(self.direction),
            namespace: text(&self.namespace),
            workload: text(&self.workload),
            range: text(&self.range),
            customer: text(&self.customer),
            plaintext_only: self.plaintext,
            since_unix_nanos: crate::since_nanos(self.window.since),
        }
    }
}

/// A flag's value as given on the command line (empty when not given), which is also how the
/// collector names it.
fn flag_value(value: Option<impl clap::ValueEnum>) -> String {
    value
        .and_then(|value| value.to_possible_value())
        .map(|value| value.get_name().to_owned())
        .unwrap_or_default()
}

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
    args: &DataFlowArgs,
) -> Result<(), Failure> {
    let mut client = connect(collector, token).await?;
    let answer = client
        .list_data_flows(ListDataFlowsRequest {
            filter: Some(args.filter()),
            limit: args.window.limit,
        })
        .await?
        .into_inner();
    let flows = answer.flows;
    let mut out = std::io::stdout().lock();
    render::records(&mut out, output, flows.iter().map(json), |out| {
        let rows: Vec<Vec<String>> = flows.iter().map(cells).collect();
        render::aligned(out, &HEADERS, &rows)
    })
    .map_err(|error| Failure::Other(error.into()))?;
    // On standard error, so that JSON and YAML stay records only.
    if answer.more > 0 {
        eprintln!(
            "moat: {} more flows matched; raise --limit or narrow the filter",
            answer.more
        );
    }
    if answer.incomplete {
        eprintln!(
            "moat: warning: more agents' flows matched than the collector reads at once; \
             totals may miss some, narrow the filter"
        );
    }
    Ok(())
}

const HEADERS: [&str; 11] = [
    "SERVICE",
    "METHOD",
    "ENDPOINT",
    "DIR",
    "CLASS",
    "KIND",
    "COUNTERPART",
    "TLS",
    "CALLS",
    "VALUES",
    "LAST SEEN",
];

fn cells(flow: &DataFlow) -> Vec<String> {
    vec![
        flow.service.clone(),
        flow.method.clone(),
        flow.endpoint.clone(),
        flow.direction.clone(),
        flow.data_class.clone(),
        flow.kind.clone(),
        flow.counterpart
            .as_ref()
            .map(|counterpart| counterpart.label.clone())
            .unwrap_or_default(),
        if flow.encrypted { "yes" } else { "no" }.to_owned(),
        flow.calls.to_string(),
        flow.values.to_string(),
        time(flow.last_seen_unix.saturating_mul(1_000_000_000)),
    ]
}

fn json(flow: &DataFlow) -> serde_json::Value {
    let counterpart = flow.counterpart.clone().unwrap_or_default();
    serde_json::json!({
        "service": flow.service,
        "method": flow.method,
        "endpoint": flow.endpoint,
        "direction": flow.direction,
        "class": flow.data_class,
        "kind": flow.kind,
        "counterpart": {
            "label": counterpart.label,
            "namespace": counterpart.namespace,
            "workload": counterpart.workload,
            "range": counterpart.range,
            "customer": counterpart.customer,
        },
        "encrypted": flow.encrypted,
        "calls": flow.calls,
        "values": flow.values,
        "first_seen": time(flow.first_seen_unix.saturating_mul(1_000_000_000)),
        "last_seen": time(flow.last_seen_unix.saturating_mul(1_000_000_000)),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use moat_api::v1::DataFlowCounterpart;

    use super::*;

    #[test]
    fn flags_become_the_filter_the_collector_takes() {
        let args = crate::Args::parse_from([
            "moat",
            "dataflow",
            "--class",
            "pii",
            "--direction",
            "out",
            "--plaintext",
            "-n",
            "shop",
            "--customer",
            "acme",
        ]);
        let crate::Command::DataFlow(args) = args.command else {
            panic!("moat dataflow");
        };
        let filter = args.filter();
        assert_eq!(
            (
                filter.data_class.as_str(),
                filter.direction.as_str(),
                filter.plaintext_only,
                filter.namespace.as_str(),
                filter.customer.as_str(),
                filter.service.as_str(),
            ),
            ("pii", "out", true, "shop", "acme", "")
        );
    }

    #[test]
    fn the_table_says_what_went_where_and_how() {
        let flows = [DataFlow {
            service: "accounts".into(),
            method: "GET".into(),
            endpoint: "/users/{id}".into(),
            direction: "out".into(),
            data_class: "pii".into(),
            kind: "data.email".into(),
            counterpart: Some(DataFlowCounterpart {
                label: "customer/acme".into(),
                customer: "acme".into(),
                ..DataFlowCounterpart::default()
            }),
            calls: 12,
            values: 30,
            last_seen_unix: 1_790_000_000,
            ..DataFlow::default()
        }];
        let rows: Vec<Vec<String>> = flows.iter().map(cells).collect();
        let mut out = Vec::new();
        render::aligned(&mut out, &HEADERS, &rows).expect("write");
        let golden = "\
SERVICE   METHOD  ENDPOINT     DIR  CLASS  KIND        COUNTERPART    TLS  CALLS  VALUES  LAST SEEN
accounts  GET     /users/{id}  out  pii    data.email  customer/acme  no   12     30      2026-09-21T14:13:20Z
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
    }
}
