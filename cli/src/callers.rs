//! `moat callers`: who calls each endpoint, at four levels (workload or range, application,
//! customer, end user), with volumes and first and last seen, across agents.

use moat_api::v1::{Endpoint, EndpointCaller};

use crate::{Failure, Output, render};

#[derive(Debug, clap::Args)]
pub struct CallersArgs {
    /// Only this service's endpoints (an API's name, `namespace/service`, ...).
    #[arg(long, short = 's')]
    service: Option<String>,
    /// Only endpoints whose template starts with this (`/users`).
    #[arg(long, short = 'e')]
    endpoint: Option<String>,
    /// Only callers of this customer or tenant (as shown: a name, or a `#` hash).
    #[arg(long)]
    customer: Option<String>,
    /// Only callers whose workload, range or address contains this (`shop/`, `range/acme`).
    #[arg(long)]
    caller: Option<String>,
    /// Only callers using this application (`curl`, `browser`, a configured API key's name).
    #[arg(long)]
    application: Option<String>,
}

impl CallersArgs {
    fn admits(&self, endpoint: &Endpoint, caller: &EndpointCaller) -> bool {
        self.endpoint
            .as_ref()
            .is_none_or(|prefix| endpoint.endpoint.starts_with(prefix.as_str()))
            && self
                .customer
                .as_ref()
                .is_none_or(|customer| caller.customer == *customer)
            && self
                .caller
                .as_ref()
                .is_none_or(|part| caller.caller.contains(part.as_str()))
            && self
                .application
                .as_ref()
                .is_none_or(|application| caller.application == *application)
    }
}

/// One caller of one endpoint.
struct Row<'a> {
    endpoint: &'a Endpoint,
    caller: &'a EndpointCaller,
}

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
    args: &CallersArgs,
) -> Result<(), Failure> {
    let endpoints = crate::endpoints::fetch(
        collector,
        token,
        args.service.as_deref().unwrap_or_default(),
    )
    .await?;
    let rows = rows(&endpoints, args);
    let mut out = std::io::stdout().lock();
    render::records(&mut out, output, rows.iter().map(json), |out| {
        let cells: Vec<Vec<String>> = rows.iter().map(cells).collect();
        render::aligned(out, &HEADERS, &cells)
    })
    .map_err(|error| Failure::Other(error.into()))
}

/// The callers the filters admit, busiest first.
fn rows<'a>(endpoints: &'a [Endpoint], args: &CallersArgs) -> Vec<Row<'a>> {
    let mut rows: Vec<Row<'a>> = endpoints
        .iter()
        .flat_map(|endpoint| {
            endpoint
                .callers
                .iter()
                .filter(|caller| args.admits(endpoint, caller))
                .map(move |caller| Row { endpoint, caller })
        })
        .collect();
    rows.sort_by(|a, b| {
        b.caller
            .calls
            .cmp(&a.caller.calls)
            .then_with(|| a.endpoint.service.cmp(&b.endpoint.service))
            .then_with(|| a.endpoint.endpoint.cmp(&b.endpoint.endpoint))
    });
    rows
}

const HEADERS: [&str; 10] = [
    "SERVICE",
    "METHOD",
    "ENDPOINT",
    "CALLER",
    "APPLICATION",
    "CUSTOMER",
    "USER",
    "CALLS",
    "FIRST SEEN",
    "LAST SEEN",
];

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn seen(unix_seconds: i64) -> String {
    crate::calls::time(unix_seconds.saturating_mul(1_000_000_000))
}

fn cells(row: &Row<'_>) -> Vec<String> {
    let caller = row.caller;
    vec![
        row.endpoint.service.clone(),
        row.endpoint.method.clone(),
        row.endpoint.endpoint.clone(),
        caller.caller.clone(),
        or_dash(&caller.application),
        or_dash(&caller.customer),
        or_dash(&caller.user),
        caller.calls.to_string(),
        seen(caller.first_seen_unix),
        seen(caller.last_seen_unix),
    ]
}

fn json(row: &Row<'_>) -> serde_json::Value {
    let caller = row.caller;
    serde_json::json!({
        "service": row.endpoint.service,
        "method": row.endpoint.method,
        "endpoint": row.endpoint.endpoint,
        "caller": caller.caller,
        "application": caller.application,
        "api_key": caller.api_key,
        "customer": caller.customer,
        "user": caller.user,
        "calls": caller.calls,
        "first_seen": seen(caller.first_seen_unix),
        "last_seen": seen(caller.last_seen_unix),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(peer: &str, customer: &str, user: &str, calls: u64) -> EndpointCaller {
        EndpointCaller {
            caller: peer.into(),
            application: "curl".into(),
            customer: customer.into(),
            user: user.into(),
            calls,
            first_seen_unix: 1_700_000_000,
            last_seen_unix: 1_700_000_060,
            ..EndpointCaller::default()
        }
    }

    #[test]
    fn callers_are_listed_busiest_first_and_filtered_by_level() {
        let endpoints = [
            Endpoint {
                service: "shop".into(),
                method: "GET".into(),
                endpoint: "/orders/{id}".into(),
                callers: vec![
                    caller("range/partner-lab", "Acme Corp", "#0a1b2c3d4e5f6a7b", 40),
                    caller("shop/web", "", "", 900),
                ],
                ..Endpoint::default()
            },
            Endpoint {
                service: "shop".into(),
                method: "POST".into(),
                endpoint: "/login".into(),
                callers: vec![caller("range/partner-lab", "Acme Corp", "", 7)],
                ..Endpoint::default()
            },
        ];
        let everyone = CallersArgs {
            service: None,
            endpoint: None,
            customer: None,
            caller: None,
            application: None,
        };
        let cells: Vec<Vec<String>> = rows(&endpoints, &everyone).iter().map(cells).collect();
        let mut out = Vec::new();
        render::aligned(&mut out, &HEADERS, &cells).expect("write");
        let golden = "\
SERVICE  METHOD  ENDPOINT      CALLER             APPLICATION  CUSTOMER   USER               CALLS  FIRST SEEN            LAST SEEN
shop     GET     /orders/{id}  shop/web           curl         -          -                  900    2023-11-14T22:13:20Z  2023-11-14T22:14:20Z
shop     GET     /orders/{id}  range/partner-lab  curl         Acme Corp  #0a1b2c3d4e5f6a7b  40     2023-11-14T22:13:20Z  2023-11-14T22:14:20Z
shop     POST    /login        range/partner-lab  curl         Acme Corp  -                  7      2023-11-14T22:13:20Z  2023-11-14T22:14:20Z
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);

        let acme_orders = CallersArgs {
            customer: Some("Acme Corp".into()),
            endpoint: Some("/orders".into()),
            ..everyone
        };
        let found: Vec<u64> = rows(&endpoints, &acme_orders)
            .iter()
            .map(|row| row.caller.calls)
            .collect();
        assert_eq!(found, [40]);
    }
}
