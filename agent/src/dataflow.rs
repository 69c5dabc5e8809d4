//! `api.dataflow` records: the data flows ([`sensitive::dataflow`]) whose totals changed, for
//! standard output and the collector. Counts and names only: a flow never carries a value.

use sensitive::dataflow::{Counterpart, DataFlow, direction_name};
use serde::Serialize;

use crate::{analysis::caller_label, capture::record::Peer};

/// An `api.dataflow` record. Times are Unix seconds.
#[derive(Debug, Serialize)]
pub struct DataFlowRecord<'a> {
    pub service: &'a str,
    pub method: &'a str,
    pub endpoint: &'a str,
    /// `in`: requests carried it, from the counterpart into the service; `out`: responses
    /// carried it, from the service out to the counterpart.
    pub direction: &'static str,
    /// `pii`, `secret`, `financial`, `health` or `business`.
    pub class: &'static str,
    /// `data.email`, ..., or a configured detector's kind.
    pub kind: &'a str,
    pub counterpart: &'a Counterpart,
    pub encrypted: bool,
    /// Calls that carried at least one such value.
    pub calls: u64,
    /// Such values, over those calls.
    pub values: u64,
    pub first_seen: u64,
    pub last_seen: u64,
}

impl<'a> From<&'a DataFlow> for DataFlowRecord<'a> {
    fn from(flow: &'a DataFlow) -> Self {
        let key = &flow.key;
        Self {
            service: &key.service,
            method: &key.method,
            endpoint: &key.endpoint,
            direction: direction_name(key.direction),
            class: key.class.as_str(),
            kind: &key.kind,
            counterpart: &key.counterpart,
            encrypted: key.encrypted,
            calls: flow.counts.calls,
            values: flow.counts.values,
            first_seen: flow.counts.first_seen,
            last_seen: flow.counts.last_seen,
        }
    }
}

/// The records of `flows` (what [`sensitive::dataflow::DataFlows::take_changed`] returned).
pub fn records(flows: &[DataFlow]) -> Vec<DataFlowRecord<'_>> {
    flows.iter().map(DataFlowRecord::from).collect()
}

/// A call's caller as a data flow's counterpart: named as the endpoint inventory names callers,
/// with the namespace, workload, range and customer its identity gives.
pub fn counterpart(caller: &Peer) -> Counterpart {
    let identity = caller.identity.as_ref();
    let facts = identity.map(|identity| &identity.identity);
    let text = |value: Option<&std::sync::Arc<str>>| value.map(ToString::to_string);
    Counterpart {
        label: caller_label(caller),
        namespace: text(facts.and_then(|facts| facts.namespace.as_ref())),
        workload: facts
            .and_then(|facts| facts.workload.as_ref())
            .map(|workload| workload.name.to_string()),
        range: identity
            .and_then(|identity| identity.range.as_ref())
            .map(|range| range.range.to_string()),
        customer: text(facts.and_then(|facts| facts.customer.as_ref())),
    }
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, sync::Arc};

    use sensitive::{
        DataClass, Direction,
        dataflow::{FlowCounts, FlowKey},
    };

    use super::*;
    use crate::identity::PeerIdentity;

    #[test]
    fn a_record_names_the_flow_and_its_counterpart_without_a_value() {
        let caller = Peer {
            ip: "10.1.0.7".parse().expect("address"),
            port: 40112,
            pid: None,
            comm: None,
            cgroup_id: None,
            identity: Some(PeerIdentity {
                identity: Arc::new(identity::Identity {
                    kind: identity::Kind::Pod,
                    namespace: Some("shop".into()),
                    workload: Some(identity::Workload {
                        kind: "Deployment".into(),
                        name: "web".into(),
                    }),
                    internal: true,
                    ..identity::Identity::default()
                }),
                range: None,
                container: None,
            }),
        };
        let flow = DataFlow {
            key: FlowKey {
                service: "accounts".into(),
                method: "GET".into(),
                endpoint: "/users/{id}".into(),
                direction: Direction::Response,
                class: DataClass::Pii,
                kind: Cow::Borrowed("data.email"),
                counterpart: counterpart(&caller),
                encrypted: false,
            },
            counts: FlowCounts {
                calls: 3,
                values: 7,
                first_seen: 100,
                last_seen: 160,
            },
        };
        let flows = [flow];
        let records = records(&flows);
        let json = serde_json::to_value(&records).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!([{
                "service": "accounts",
                "method": "GET",
                "endpoint": "/users/{id}",
                "direction": "out",
                "class": "pii",
                "kind": "data.email",
                "counterpart": {"label": "shop/web", "namespace": "shop", "workload": "web"},
                "encrypted": false,
                "calls": 3,
                "values": 7,
                "first_seen": 100,
                "last_seen": 160,
            }])
        );

        let id = moat_api::v1::RecordId {
            node: "node-a".into(),
            boot: 1,
            sequence: 4,
        };
        let shipped = crate::export::data_flow_record(id, &records[0], std::time::UNIX_EPOCH);
        let Some(moat_api::v1::record::Kind::DataFlow(shipped)) = shipped.kind else {
            panic!("a data flow record: {shipped:?}");
        };
        assert_eq!(
            (
                shipped.direction.as_str(),
                shipped.data_class.as_str(),
                shipped.calls,
                shipped.last_seen_unix
            ),
            ("out", "pii", 3, 160)
        );
        let who = shipped.counterpart.unwrap_or_default();
        assert_eq!(
            (
                who.label.as_str(),
                who.workload.as_str(),
                who.range.as_str()
            ),
            ("shop/web", "web", "")
        );
    }
}
