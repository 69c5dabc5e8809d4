//! What the collector refuses to store: a record without an id (it could never be deduplicated)
//! and a record carrying a credential in clear. Agents redact credentials; a record that still
//! holds one comes from a misconfigured or foreign sender, and must not reach the database.

use moat_api::v1::{Header, record};

use intelligence::{auth::is_credential_header, exchange::REDACTED};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NoId,
    Credential,
}

pub fn check(record: &record::Kind) -> Result<(), Refusal> {
    let (id, headers): (_, Vec<&Header>) = match record {
        record::Kind::Call(call) => (
            call.id.as_ref(),
            call.request_headers
                .iter()
                .chain(&call.response_headers)
                .collect(),
        ),
        record::Kind::Drop(drop) => (drop.id.as_ref(), Vec::new()),
        // Evidence is masked by the agent and carries no header values.
        record::Kind::Finding(finding) => (finding.id.as_ref(), Vec::new()),
        record::Kind::Endpoint(endpoint) => (endpoint.id.as_ref(), Vec::new()),
        // Counts and names: the agent never ships a flow's values.
        record::Kind::DataFlow(flow) => (flow.id.as_ref(), Vec::new()),
        record::Kind::Inventory(inventory) => (inventory.id.as_ref(), Vec::new()),
        // Handshake facts: names and versions, no payload.
        record::Kind::Connection(connection) => (connection.id.as_ref(), Vec::new()),
    };
    if id.is_none_or(|id| id.node.is_empty() || id.sequence == 0) {
        return Err(Refusal::NoId);
    }
    let leaks = headers
        .iter()
        .any(|header| is_credential_header(&header.name) && header.value != REDACTED);
    if leaks {
        return Err(Refusal::Credential);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use moat_api::v1::{ApiCall, RecordId};

    use super::*;

    fn call(headers: Vec<Header>, id: Option<RecordId>) -> record::Kind {
        record::Kind::Call(ApiCall {
            id,
            request_headers: headers,
            ..ApiCall::default()
        })
    }

    fn id() -> Option<RecordId> {
        Some(RecordId {
            node: "n1".into(),
            boot: 1,
            sequence: 1,
        })
    }

    #[test]
    fn clear_credentials_and_missing_ids_are_refused() {
        let header = |name: &str, value: &str| Header {
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(
            check(&call(vec![header("Authorization", "[redacted]")], id())),
            Ok(())
        );
        assert_eq!(
            check(&call(vec![header("AUTHORIZATION", "Bearer x")], id())),
            Err(Refusal::Credential)
        );
        for name in ["x-api-key", "Api_Key", "X-Auth-Token"] {
            assert_eq!(
                check(&call(vec![header(name, "k")], id())),
                Err(Refusal::Credential),
                "{name}"
            );
        }
        assert_eq!(
            check(&call(vec![header("accept", "*/*")], None)),
            Err(Refusal::NoId)
        );
        assert_eq!(
            check(&call(
                vec![],
                Some(RecordId {
                    node: "n1".into(),
                    boot: 1,
                    sequence: 0
                })
            )),
            Err(Refusal::NoId)
        );
    }
}
