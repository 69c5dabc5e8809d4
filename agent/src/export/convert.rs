//! The agent's records in the collector's protobuf form (proto/moat/v1/records.proto).

use std::time::SystemTime;

use moat_api::v1::{self as api, RecordId};

use crate::{
    capture::record::{CallRecord, HeaderRecord, Peer},
    identity::PeerIdentity,
};

fn unix_nanos(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i64)
}

fn text(value: &Option<std::sync::Arc<str>>) -> String {
    value.as_deref().unwrap_or_default().to_owned()
}

fn identity(who: Option<&PeerIdentity>) -> Option<api::Identity> {
    let who = who?;
    let identity = &who.identity;
    Some(api::Identity {
        kind: serde_json::to_value(identity.kind)
            .ok()
            .and_then(|kind| kind.as_str().map(str::to_owned))
            .unwrap_or_default(),
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
            .and_then(|range| serde_json::to_value(range.range_kind).ok())
            .and_then(|kind| kind.as_str().map(str::to_owned))
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
            name: header.name.clone(),
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
