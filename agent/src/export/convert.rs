//! The agent's records in the collector's protobuf form (proto/moat/v1/records.proto).

use std::time::SystemTime;

use moat_api::v1::{self as api, RecordId};

use intelligence::finding::Mode;

use crate::{
    analysis::{EndpointRecord, FindingRecord},
    capture::record::{CallRecord, HeaderRecord, Peer},
    dataflow::DataFlowRecord,
    identity::PeerIdentity,
};

fn unix_nanos(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i64)
}

/// An enum's name as records spell it (its serde name).
fn serde_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn text(value: &Option<std::sync::Arc<str>>) -> String {
    value.as_deref().unwrap_or_default().to_owned()
}

fn identity(who: Option<&PeerIdentity>) -> Option<api::Identity> {
    let who = who?;
    let identity = &who.identity;
    Some(api::Identity {
        kind: serde_name(identity.kind),
        cluster: text(&identity.cluster),
        namespace: text(&identity.namespace),
        workload_kind: identity
            .workload
            .as_ref()
            .map(|workload| workload.kind.to_string())
            .unwrap_or_default(),
        workload_name: identity
            .workload
            .as_ref()
            .map(|workload| workload.name.to_string())
            .unwrap_or_default(),
        pod: text(&identity.pod),
        container: text(&who.container),
        node: text(&identity.node),
        service: text(&identity.service),
        range: who
            .range
            .as_ref()
            .map(|range| range.range.to_string())
            .unwrap_or_default(),
        range_kind: who
            .range
            .as_ref()
            .map(|range| serde_name(range.range_kind))
            .unwrap_or_default(),
        customer: text(&identity.customer),
        environment: text(&identity.environment),
        tags: identity
            .tags
            .iter()
            .map(|(name, value)| api::Tag {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect(),
        internal: identity.internal,
    })
}

fn caller(caller: &intelligence::Caller) -> api::Caller {
    let text = |level: &Option<String>| level.clone().unwrap_or_default();
    api::Caller {
        peer: caller.peer.clone(),
        application: text(&caller.application),
        api_key: text(&caller.api_key),
        customer: text(&caller.customer),
        user: text(&caller.user),
    }
}

fn peer(peer: &Peer) -> api::Peer {
    api::Peer {
        ip: peer.ip.to_string(),
        port: u32::from(peer.port),
        pid: peer.pid.unwrap_or(0),
        comm: peer.comm.clone().unwrap_or_default(),
        identity: identity(peer.identity.as_ref()),
    }
}

fn headers(headers: &[HeaderRecord]) -> Vec<api::Header> {
    headers
        .iter()
        .map(|header| api::Header {
            name: header.name.to_string(),
            value: header.value.clone(),
        })
        .collect()
}

pub fn call_record(id: RecordId, call: &CallRecord, time: SystemTime) -> api::Record {
    api::Record {
        kind: Some(api::record::Kind::Call(api::ApiCall {
            id: Some(id),
            time_unix_nanos: unix_nanos(time),
            protocol: call.protocol.to_owned(),
            client: Some(peer(&call.client)),
            server: Some(peer(&call.server)),
            method: call.method.clone().unwrap_or_default(),
            authority: call.authority.clone().unwrap_or_default(),
            path: call.path.clone().unwrap_or_default(),
            query: call.query.clone().unwrap_or_default(),
            status: call.status.map_or(0, u32::from),
            latency_us: call.latency_us.unwrap_or(0),
            request_bytes: call.request.bytes,
            response_bytes: call.response.bytes,
            grpc_service: call
                .grpc
                .as_ref()
                .map(|grpc| grpc.service.clone())
                .unwrap_or_default(),
            grpc_method: call
                .grpc
                .as_ref()
                .map(|grpc| grpc.method.clone())
                .unwrap_or_default(),
            grpc_status: call
                .grpc
                .as_ref()
                .and_then(|grpc| grpc.status)
                .map_or(-1, |status| status as i32),
            flags: call.flags.iter().map(|flag| (*flag).to_owned()).collect(),
            request_headers: headers(&call.request.headers),
            response_headers: headers(&call.response.headers),
            service: call.service.clone().unwrap_or_default(),
            endpoint: call.endpoint.clone().unwrap_or_default(),
            auth: call.auth.as_str().to_owned(),
            caller: call.caller.as_ref().map(caller),
            tls: call.tls,
            tls_library: call.tls_library.unwrap_or_default().to_owned(),
        })),
    }
}

pub fn finding_record(id: RecordId, record: &FindingRecord<'_>, time: SystemTime) -> api::Record {
    let finding = record.finding;
    api::Record {
        kind: Some(api::record::Kind::Finding(api::Finding {
            id: Some(id),
            time_unix_nanos: unix_nanos(time),
            kind: finding.kind.to_string(),
            rule: finding.rule.to_string(),
            severity: finding.severity.as_str().to_owned(),
            service: finding.service.clone(),
            method: finding.method.clone(),
            endpoint: finding.endpoint.clone(),
            spec_pointer: finding.spec_pointer.clone().unwrap_or_default(),
            message: finding.message.clone(),
            evidence: finding.evidence.clone(),
            mode: match finding.mode {
                Mode::Off => "off",
                Mode::Detect => "detect",
                Mode::Block => "block",
            }
            .to_owned(),
            source: record.source.map(peer),
            destination: record.destination.map(peer),
            caller: record.caller.map(caller),
        })),
    }
}

/// One connection's encryption (an `api.connection` record).
pub fn connection_record(
    id: RecordId,
    record: &crate::crypto::ConnectionRecord<'_>,
    not_after: Option<i64>,
    time: SystemTime,
) -> api::Record {
    api::Record {
        kind: Some(api::record::Kind::Connection(api::Connection {
            id: Some(id),
            time_unix_nanos: unix_nanos(time),
            client: Some(peer(record.client)),
            server: Some(peer(record.server)),
            protocol: record.protocol.to_owned(),
            encryption: record.encryption.to_owned(),
            tls: record.tls.as_ref().map(|tls| api::TlsHandshake {
                server_name: tls.server_name.clone().unwrap_or_default(),
                offered_versions: tls.offered_versions.clone(),
                version: tls.version.clone().unwrap_or_default(),
                cipher_suite: tls.cipher_suite.clone().unwrap_or_default(),
                alpn_offered: tls.alpn_offered.clone(),
                alpn: tls.alpn.clone().unwrap_or_default(),
                client_certificate_requested: tls.client_certificate_requested,
                client_certificate_sent: tls.client_certificate_sent,
                certificate_subject: tls
                    .server_certificate
                    .as_ref()
                    .map(|certificate| certificate.subject.clone())
                    .unwrap_or_default(),
                certificate_dns_names: tls
                    .server_certificate
                    .as_ref()
                    .map(|certificate| certificate.dns_names.clone())
                    .unwrap_or_default(),
                certificate_not_after: not_after.unwrap_or_default(),
                weaknesses: tls.weaknesses.clone(),
            }),
        })),
    }
}

/// Unix seconds as records carry them.
fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub fn endpoint_record(id: RecordId, record: &EndpointRecord<'_>, time: SystemTime) -> api::Record {
    api::Record {
        kind: Some(api::record::Kind::Endpoint(api::Endpoint {
            id: Some(id),
            time_unix_nanos: unix_nanos(time),
            service: record.service.to_owned(),
            method: record.method.to_owned(),
            endpoint: record.endpoint.to_owned(),
            documented: record.documented.unwrap_or_default().to_owned(),
            first_seen_unix: seconds(record.first_seen),
            last_seen_unix: seconds(record.last_seen),
            calls: record.calls,
            client_errors: record.client_errors,
            server_errors: record.server_errors,
            no_response: record.no_response,
            latency_p50_us: record.latency_p50_us.unwrap_or(0),
            latency_p90_us: record.latency_p90_us.unwrap_or(0),
            latency_p99_us: record.latency_p99_us.unwrap_or(0),
            request_content_types: record.request_content_types.to_vec(),
            response_content_types: record.response_content_types.to_vec(),
            auth: record
                .auth
                .iter()
                .map(|scheme| (*scheme).to_owned())
                .collect(),
            callers: record
                .callers
                .iter()
                .map(|caller| api::EndpointCaller {
                    caller: caller.caller.to_owned(),
                    application: caller.application.unwrap_or_default().to_owned(),
                    api_key: caller.api_key.unwrap_or_default().to_owned(),
                    customer: caller.customer.unwrap_or_default().to_owned(),
                    user: caller.user.unwrap_or_default().to_owned(),
                    calls: caller.calls,
                    first_seen_unix: seconds(caller.first_seen),
                    last_seen_unix: seconds(caller.last_seen),
                })
                .collect(),
            other_callers_calls: record.other_callers_calls,
            learned_json: serde_json::to_string(record.learned).unwrap_or_default(),
            tags: record
                .tags
                .iter()
                .map(|(name, value)| api::Tag {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        })),
    }
}

pub fn data_flow_record(
    id: RecordId,
    record: &DataFlowRecord<'_>,
    time: SystemTime,
) -> api::Record {
    let counterpart = record.counterpart;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    api::Record {
        kind: Some(api::record::Kind::DataFlow(api::DataFlow {
            id: Some(id),
            time_unix_nanos: unix_nanos(time),
            service: record.service.to_owned(),
            method: record.method.to_owned(),
            endpoint: record.endpoint.to_owned(),
            direction: record.direction.to_owned(),
            data_class: record.class.to_owned(),
            kind: record.kind.to_owned(),
            counterpart: Some(api::DataFlowCounterpart {
                label: counterpart.label.clone(),
                namespace: text(&counterpart.namespace),
                workload: text(&counterpart.workload),
                range: text(&counterpart.range),
                customer: text(&counterpart.customer),
            }),
            encrypted: record.encrypted,
            calls: record.calls,
            values: record.values,
            first_seen_unix: seconds(record.first_seen),
            last_seen_unix: seconds(record.last_seen),
        })),
    }
}

/// A `policy.denied` record's fields.
pub struct DropFacts<'a> {
    pub reason: &'a str,
    pub rule: &'a str,
    pub source: (std::net::IpAddr, u16, &'a PeerIdentity),
    pub destination: (std::net::IpAddr, u16, &'a PeerIdentity),
    pub protocol: &'a str,
    pub interface: &'a str,
}

pub fn drop_record(id: RecordId, facts: &DropFacts<'_>, time: SystemTime) -> api::Record {
    let end = |(ip, port, who): (std::net::IpAddr, u16, &PeerIdentity)| api::Peer {
        ip: ip.to_string(),
        port: u32::from(port),
        identity: identity(Some(who)),
        ..api::Peer::default()
    };
    api::Record {
        kind: Some(api::record::Kind::Drop(api::Drop {
            id: Some(id),
            time_unix_nanos: unix_nanos(time),
            reason: facts.reason.to_owned(),
            rule: facts.rule.to_owned(),
            source: Some(end(facts.source)),
            destination: Some(end(facts.destination)),
            protocol: facts.protocol.to_owned(),
            interface: facts.interface.to_owned(),
        })),
    }
}

/// The ranges and workloads the identity index knows, as an inventory record's body (no id or
/// time yet: the agent ships it only when it differs from the last one shipped).
pub fn inventory(index: &identity::IdentityIndex) -> api::Inventory {
    api::Inventory {
        id: None,
        time_unix_nanos: 0,
        cluster: text(&index.inventory().cluster),
        ranges: index
            .range_summary()
            .into_iter()
            .map(|range| api::InventoryRange {
                name: range.name.to_string(),
                kind: serde_name(range.kind),
                cidrs: range.cidrs.iter().map(ToString::to_string).collect(),
                learned: range.learned,
            })
            .collect(),
        workloads: index
            .workload_summary()
            .into_iter()
            .map(|workload| api::InventoryWorkload {
                namespace: workload.namespace.to_string(),
                kind: workload.kind.to_string(),
                name: workload.name.to_string(),
                pods: workload.pods,
                services: workload.services.iter().map(ToString::to_string).collect(),
            })
            .collect(),
    }
}
