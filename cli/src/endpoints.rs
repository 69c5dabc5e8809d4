//! `moat endpoints`: the endpoint inventory across agents, per service.

use moat_api::v1::{Endpoint, ListEndpointsRequest};

use crate::{Failure, Output, connect, render};

#[derive(Debug, clap::Args)]
pub struct EndpointsArgs {
    /// Only this service's endpoints (an API's name, `namespace/service`, ...).
    #[arg(long, short = 's')]
    service: Option<String>,
    /// Only endpoints the bound spec does not document (shadow endpoints).
    #[arg(long)]
    undocumented: bool,
}

/// The inventory of `service` (all when empty), as the collector merges it across agents.
pub async fn fetch(
    collector: &crate::Collector,
    token: Option<&str>,
    service: &str,
) -> Result<Vec<Endpoint>, Failure> {
    let mut client = connect(collector, token).await?;
    Ok(client
        .list_endpoints(ListEndpointsRequest {
            service: service.to_owned(),
        })
        .await?
        .into_inner()
        .endpoints)
}

pub async fn run(
    collector: &crate::Collector,
    token: Option<&str>,
    output: Output,
    args: &EndpointsArgs,
) -> Result<(), Failure> {
    let mut endpoints = fetch(
        collector,
        token,
        args.service.as_deref().unwrap_or_default(),
    )
    .await?;
    if args.undocumented {
        endpoints.retain(|endpoint| endpoint.documented.is_empty());
    }
    let mut out = std::io::stdout().lock();
    render::records(&mut out, output, endpoints.iter().map(json), |out| {
        let rows: Vec<Vec<String>> = endpoints.iter().map(cells).collect();
        render::aligned(out, &HEADERS, &rows)
    })
    .map_err(|error| Failure::Other(error.into()))
}

const HEADERS: [&str; 10] = [
    "SERVICE", "METHOD", "ENDPOINT", "CALLS", "4XX", "5XX", "P99", "AUTH", "CALLERS", "SPEC",
];

fn cells(endpoint: &Endpoint) -> Vec<String> {
    vec![
        endpoint.service.clone(),
        endpoint.method.clone(),
        endpoint.endpoint.clone(),
        endpoint.calls.to_string(),
        endpoint.client_errors.to_string(),
        endpoint.server_errors.to_string(),
        if endpoint.latency_p99_us == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}ms", endpoint.latency_p99_us as f64 / 1000.0)
        },
        endpoint.auth.join(","),
        (endpoint.callers.len() + usize::from(endpoint.other_callers_calls > 0)).to_string(),
        if endpoint.documented.is_empty() {
            "no"
        } else {
            "yes"
        }
        .to_owned(),
    ]
}

fn json(endpoint: &Endpoint) -> serde_json::Value {
    serde_json::json!({
        "service": endpoint.service,
        "method": endpoint.method,
        "endpoint": endpoint.endpoint,
        "documented": endpoint.documented,
        "first_seen": crate::calls::time(endpoint.first_seen_unix.saturating_mul(1_000_000_000)),
        "last_seen": crate::calls::time(endpoint.last_seen_unix.saturating_mul(1_000_000_000)),
        "calls": endpoint.calls,
        "client_errors": endpoint.client_errors,
        "server_errors": endpoint.server_errors,
        "no_response": endpoint.no_response,
        "latency_p50_us": endpoint.latency_p50_us,
        "latency_p90_us": endpoint.latency_p90_us,
        "latency_p99_us": endpoint.latency_p99_us,
        "request_content_types": endpoint.request_content_types,
        "response_content_types": endpoint.response_content_types,
        "auth": endpoint.auth,
        "callers": endpoint.callers.iter().map(|caller| serde_json::json!({
            "caller": caller.caller, "application": caller.application, "api_key": caller.api_key,
            "customer": caller.customer, "user": caller.user, "calls": caller.calls,
        })).collect::<Vec<_>>(),
        "other_callers_calls": endpoint.other_callers_calls,
        "tags": endpoint.tags.iter().map(|tag| (tag.name.clone(), serde_json::Value::from(tag.value.clone()))).collect::<serde_json::Map<_, _>>(),
    })
}

#[cfg(test)]
mod tests {
    use moat_api::v1::EndpointCaller;

    use super::*;

    #[test]
    fn the_inventory_table_says_what_the_spec_documents() {
        let endpoints = [
            Endpoint {
                service: "petstore".into(),
                method: "GET".into(),
                endpoint: "/api/v3/pet/{petId}".into(),
                documented: "#/paths/~1pet~1{petId}/get".into(),
                calls: 1200,
                client_errors: 12,
                latency_p99_us: 8192,
                auth: vec!["api_key_header".into()],
                callers: vec![EndpointCaller {
                    caller: "shop/web".into(),
                    calls: 1200,
                    ..EndpointCaller::default()
                }],
                ..Endpoint::default()
            },
            Endpoint {
                service: "petstore".into(),
                method: "GET".into(),
                endpoint: "/api/v3/admin/export".into(),
                calls: 3,
                auth: vec!["none".into()],
                other_callers_calls: 3,
                ..Endpoint::default()
            },
        ];
        let rows: Vec<Vec<String>> = endpoints.iter().map(cells).collect();
        let mut out = Vec::new();
        render::aligned(&mut out, &HEADERS, &rows).expect("write");
        let golden = "\
SERVICE   METHOD  ENDPOINT              CALLS  4XX  5XX  P99    AUTH            CALLERS  SPEC
petstore  GET     /api/v3/pet/{petId}   1200   12   0    8.2ms  api_key_header  1        yes
petstore  GET     /api/v3/admin/export  3      0    0    -      none            1        no
";
        assert_eq!(String::from_utf8(out).expect("utf-8"), golden);
    }
}
