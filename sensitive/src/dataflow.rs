//! Data flow: which classes of sensitive data enter and leave each endpoint of each service, to
//! and from whom, over encrypted or plaintext connections. What privacy teams ask ("where does
//! this data go", "where do we delete it"), answered with counts: never a value, never evidence.
//!
//! The caller feeds [`DataFlows::observe`] each call with its detections and the facts of the
//! call; [`DataFlows::take_changed`] hands out the flows whose totals changed since it was last
//! called, to be reported. The number of flows is bounded; past the bound, a call's values are
//! counted under an overflow flow per direction, class and transport, and the call is counted in
//! [`DataFlows::overflowed_calls`], so nothing goes uncounted.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
};

use serde::Serialize;

use crate::detection::{DataClass, Detection, Direction};

/// Kinds that judge how a token is used rather than carry a value of their class: the token
/// itself already counts as `data.jwt`, so counting these too would count it twice, under names
/// no privacy team asks about.
const TOKEN_HYGIENE_KINDS: [&str; 3] = [
    "auth.jwt_alg_none",
    "auth.jwt_expired_accepted",
    "auth.token_overbroad",
];

/// What stands in for the endpoint, kind and counterpart of the flows past the bound.
pub const OVERFLOW: &str = "{overflow}";

/// How the data moved, as seen from the service: `in` for values the request carried (from the
/// counterpart into the service), `out` for values the response carried (from the service out
/// to the counterpart).
pub fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Request => "in",
        Direction::Response => "out",
    }
}

/// The other end of the calls, as seen from the service: the caller, named as the endpoint
/// inventory names callers, with the facts a privacy team filters by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Counterpart {
    /// `namespace/workload`, `node/name`, `customer/name`, `range/name`, or an address.
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The named range the address is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The customer the range belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

impl Counterpart {
    fn overflow() -> Self {
        Self {
            label: OVERFLOW.to_owned(),
            ..Self::default()
        }
    }
}

/// What one flow is: values of one kind, in one direction of calls to one endpoint, exchanged
/// with one counterpart over one kind of transport.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub service: String,
    pub method: String,
    /// The endpoint template (`/users/{id}`).
    pub endpoint: String,
    pub direction: Direction,
    pub class: DataClass,
    /// `data.email`, or a configured detector's kind.
    pub kind: Cow<'static, str>,
    pub counterpart: Counterpart,
    /// Whether the connection was encrypted (TLS); plaintext flows of sensitive data are what
    /// a privacy review looks for first.
    pub encrypted: bool,
}

/// A flow's totals since the aggregator started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCounts {
    /// Calls that carried at least one such value.
    pub calls: u64,
    /// Such values found over those calls.
    pub values: u64,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
}

/// One flow and its totals, as [`DataFlows::take_changed`] hands them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFlow {
    pub key: FlowKey,
    pub counts: FlowCounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFlowLimits {
    /// Flows kept at most (the overflow flows, at most one per direction, class and transport,
    /// come on top).
    pub max_flows: usize,
}

impl Default for DataFlowLimits {
    fn default() -> Self {
        Self { max_flows: 10_000 }
    }
}

/// The facts of one call besides the values it carried.
#[derive(Debug, Clone, Copy)]
pub struct FlowCall<'a> {
    pub service: &'a str,
    pub method: &'a str,
    pub endpoint: &'a str,
    pub counterpart: &'a Counterpart,
    pub encrypted: bool,
    pub time_unix_secs: u64,
}

#[derive(Debug)]
struct Entry {
    counts: FlowCounts,
    changed: bool,
}

/// The data flows seen so far, bounded.
#[derive(Debug)]
pub struct DataFlows {
    flows: HashMap<FlowKey, Entry>,
    limits: DataFlowLimits,
    /// Flows in `flows` that are not overflow flows: what the bound counts.
    kept: usize,
    overflowed_calls: u64,
}

impl DataFlows {
    pub fn new(limits: DataFlowLimits) -> Self {
        Self {
            flows: HashMap::new(),
            limits,
            kept: 0,
            overflowed_calls: 0,
        }
    }

    /// Counts what `detections` (one call's, from [`crate::Scanner::scan`]) found, once per
    /// call and flow however many values of the flow the call carried.
    pub fn observe(&mut self, call: &FlowCall<'_>, detections: &[Detection]) {
        let mut values: BTreeMap<(Direction, DataClass, &Cow<'static, str>), u64> = BTreeMap::new();
        for detection in detections {
            if TOKEN_HYGIENE_KINDS.contains(&detection.kind.as_ref()) {
                continue;
            }
            *values
                .entry((
                    detection.direction,
                    detection.evidence.class,
                    &detection.kind,
                ))
                .or_default() += 1;
        }
        let mut overflowed = false;
        for ((direction, class, kind), values) in values {
            let mut key = FlowKey {
                service: call.service.to_owned(),
                method: call.method.to_owned(),
                endpoint: call.endpoint.to_owned(),
                direction,
                class,
                kind: kind.clone(),
                counterpart: call.counterpart.clone(),
                encrypted: call.encrypted,
            };
            if !self.flows.contains_key(&key) {
                if self.kept >= self.limits.max_flows {
                    key = FlowKey {
                        service: OVERFLOW.to_owned(),
                        method: OVERFLOW.to_owned(),
                        endpoint: OVERFLOW.to_owned(),
                        kind: Cow::Borrowed(OVERFLOW),
                        counterpart: Counterpart::overflow(),
                        ..key
                    };
                    overflowed = true;
                } else {
                    self.kept += 1;
                }
            }
            let time = call.time_unix_secs;
            let entry = self.flows.entry(key).or_insert(Entry {
                counts: FlowCounts {
                    calls: 0,
                    values: 0,
                    first_seen: time,
                    last_seen: time,
                },
                changed: true,
            });
            let counts = &mut entry.counts;
            counts.calls += 1;
            counts.values += values;
            counts.first_seen = counts.first_seen.min(time);
            counts.last_seen = counts.last_seen.max(time);
            entry.changed = true;
        }
        self.overflowed_calls += u64::from(overflowed);
    }

    /// Flows counted since the last call, each once, sorted; marks them reported.
    pub fn take_changed(&mut self) -> Vec<DataFlow> {
        let mut changed: Vec<DataFlow> = self
            .flows
            .iter_mut()
            .filter(|(_, entry)| entry.changed)
            .map(|(key, entry)| {
                entry.changed = false;
                DataFlow {
                    key: key.clone(),
                    counts: entry.counts,
                }
            })
            .collect();
        changed.sort_by(|one, other| one.key.cmp(&other.key));
        changed
    }

    /// Flows kept now, overflow flows included.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Calls with values counted under an overflow flow because the bound on flows was
    /// reached, since the aggregator started.
    pub fn overflowed_calls(&self) -> u64 {
        self.overflowed_calls
    }
}

#[cfg(test)]
mod tests {
    use intelligence::Severity;

    use super::*;
    use crate::detection::{Evidence, HashKey, Location};

    fn detection(kind: &'static str, class: DataClass, direction: Direction) -> Detection {
        Detection {
            kind: Cow::Borrowed(kind),
            severity: Severity::Medium,
            direction,
            location: Location::Path,
            evidence: Evidence::new(&HashKey::new([1; 32]), class, "value", "value", 0),
            detail: None,
        }
    }

    fn caller(label: &str) -> Counterpart {
        Counterpart {
            label: label.to_owned(),
            namespace: label
                .split_once('/')
                .map(|(namespace, _)| namespace.to_owned()),
            ..Counterpart::default()
        }
    }

    fn call<'a>(endpoint: &'a str, counterpart: &'a Counterpart, time: u64) -> FlowCall<'a> {
        FlowCall {
            service: "accounts",
            method: "GET",
            endpoint,
            counterpart,
            encrypted: false,
            time_unix_secs: time,
        }
    }

    fn summary(flows: &[DataFlow]) -> Vec<(&str, &str, &str, &str, u64, u64)> {
        flows
            .iter()
            .map(|flow| {
                (
                    flow.key.endpoint.as_str(),
                    direction_name(flow.key.direction),
                    flow.key.kind.as_ref(),
                    flow.key.counterpart.label.as_str(),
                    flow.counts.calls,
                    flow.counts.values,
                )
            })
            .collect()
    }

    #[test]
    fn a_call_counts_once_per_flow_with_all_its_values() {
        let mut flows = DataFlows::new(DataFlowLimits::default());
        let web = caller("shop/web");
        let email = detection("data.email", DataClass::Pii, Direction::Response);
        let card = detection(
            "data.payment_card",
            DataClass::Financial,
            Direction::Request,
        );
        flows.observe(
            &call("/users/{id}", &web, 100),
            &[email.clone(), email.clone(), card.clone()],
        );
        flows.observe(&call("/users/{id}", &web, 90), std::slice::from_ref(&email));
        let changed = flows.take_changed();
        assert_eq!(
            summary(&changed),
            vec![
                ("/users/{id}", "in", "data.payment_card", "shop/web", 1, 1),
                ("/users/{id}", "out", "data.email", "shop/web", 2, 3),
            ]
        );
        let email_flow = &changed[1];
        assert_eq!(email_flow.key.class, DataClass::Pii);
        assert_eq!(
            (email_flow.counts.first_seen, email_flow.counts.last_seen),
            (90, 100)
        );
        assert!(flows.take_changed().is_empty(), "reported once");
        flows.observe(&call("/users/{id}", &web, 120), &[email]);
        let again = flows.take_changed();
        assert_eq!(summary(&again).len(), 1, "only what changed");
        assert_eq!((again[0].counts.calls, again[0].counts.last_seen), (3, 120));
    }

    #[test]
    fn counterparts_and_transports_are_flows_of_their_own() {
        let mut flows = DataFlows::new(DataFlowLimits::default());
        let (web, partner) = (caller("shop/web"), caller("range/partner"));
        let email = [detection("data.email", DataClass::Pii, Direction::Response)];
        flows.observe(&call("/users", &web, 1), &email);
        flows.observe(&call("/users", &partner, 1), &email);
        flows.observe(
            &FlowCall {
                encrypted: true,
                ..call("/users", &web, 1)
            },
            &email,
        );
        let changed = flows.take_changed();
        let transports: Vec<(&str, bool)> = changed
            .iter()
            .map(|flow| (flow.key.counterpart.label.as_str(), flow.key.encrypted))
            .collect();
        assert_eq!(
            transports,
            vec![
                ("range/partner", false),
                ("shop/web", false),
                ("shop/web", true)
            ]
        );
    }

    #[test]
    fn token_hygiene_is_not_a_flow_but_what_a_token_carries_is() {
        let mut flows = DataFlows::new(DataFlowLimits::default());
        let web = caller("shop/web");
        flows.observe(
            &call("/login", &web, 1),
            &[
                detection("auth.jwt_alg_none", DataClass::Secret, Direction::Request),
                detection(
                    "auth.token_overbroad",
                    DataClass::Secret,
                    Direction::Request,
                ),
                detection("data.jwt", DataClass::Secret, Direction::Request),
                detection("auth.jwt_pii_claims", DataClass::Pii, Direction::Request),
            ],
        );
        let kinds: Vec<String> = flows
            .take_changed()
            .iter()
            .map(|flow| flow.key.kind.to_string())
            .collect();
        assert_eq!(
            kinds,
            vec!["auth.jwt_pii_claims", "data.jwt"],
            "by class, then kind"
        );
    }

    #[test]
    fn past_the_bound_values_are_counted_under_overflow_flows() {
        let mut flows = DataFlows::new(DataFlowLimits { max_flows: 2 });
        let email = [detection("data.email", DataClass::Pii, Direction::Response)];
        let callers: Vec<Counterpart> = (0..5).map(|n| caller(&format!("shop/web-{n}"))).collect();
        for counterpart in &callers {
            flows.observe(&call("/users", counterpart, 7), &email);
        }
        flows.observe(&call("/users", &callers[0], 8), &email);
        flows.observe(
            &call("/users", &callers[4], 9),
            &[detection(
                "data.iban",
                DataClass::Financial,
                Direction::Request,
            )],
        );
        assert_eq!(flows.len(), 2 + 2, "two flows, two overflow flows");
        assert_eq!(flows.overflowed_calls(), 4);
        let changed = flows.take_changed();
        assert_eq!(
            summary(&changed),
            vec![
                ("/users", "out", "data.email", "shop/web-0", 2, 2),
                ("/users", "out", "data.email", "shop/web-1", 1, 1),
                (OVERFLOW, "in", OVERFLOW, OVERFLOW, 1, 1),
                (OVERFLOW, "out", OVERFLOW, OVERFLOW, 3, 3),
            ]
        );
        assert_eq!(changed[2].key.class, DataClass::Financial, "class is kept");
    }
}
