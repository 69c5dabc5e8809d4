//! Where records are kept: SQLite (one embedded file, the default) or PostgreSQL (shared by
//! several collector replicas). Both keep records whole (their protobuf encoding) next to the
//! columns queries filter on, with the record id as primary key, so a resent record is counted
//! as a duplicate and stored once; both keep the same per-minute aggregates and answer with the
//! same cursors.

mod postgres;
mod sqlite;

use std::{collections::BTreeMap, net::IpAddr, path::Path, sync::Arc};

use moat_api::v1::{
    AgentState, AgentStatus, ApiCall, CallFilter, DataFlow, DataFlowFilter, DropFilter, Endpoint,
    EndpointCaller, Finding, FindingFilter, Identity, Inventory, Peer, record,
};
use prost::Message as _;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("--store {0:?}: give sqlite:PATH or postgres://USER@HOST[:PORT]/DATABASE")]
    UnknownStore(String),
    #[error("--store-ca is the CA of a postgres:// store; SQLite needs none")]
    CaWithoutPostgres,
    #[error("store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("store {url}: not a PostgreSQL URL: {source}")]
    BadUrl {
        url: String,
        source: ::postgres::Error,
    },
    #[error("store {url}: {source}")]
    Tls {
        url: String,
        /// Boxed: it is large, and every store call returns this error type.
        source: Box<postgres::TlsError>,
    },
    #[error("store {url}: cannot connect ({reason}); {advice}")]
    Connect {
        url: String,
        /// The error and its causes: tokio-postgres's own text is only its kind ("db error").
        reason: String,
        /// What to check, from what failed.
        advice: String,
    },
    #[error("store {url}: {source}")]
    Postgres {
        url: String,
        source: ::postgres::Error,
    },
    #[error("cursor {0:?} is not one this collector returned")]
    BadCursor(String),
}

/// What retention keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Unix nanoseconds: calls, drops, findings and endpoint totals older than this go.
    pub oldest: i64,
    pub max_calls: u64,
    /// The stored calls' encoded bytes (indexes and aggregates come on top).
    pub max_call_bytes: u64,
}

/// Calls sampled, newest first, to estimate their mean size for the byte cap: a sum over
/// millions of rows every minute would cost more than the estimate is off.
const SIZE_SAMPLE: i64 = 1000;

impl Retention {
    /// How many of the oldest calls must go, of `count` calls whose sampled mean size is
    /// `mean_bytes`.
    fn excess_calls(&self, count: i64, mean_bytes: f64) -> i64 {
        let by_count = count - i64::try_from(self.max_calls).unwrap_or(i64::MAX);
        let by_bytes = if mean_bytes > 0.0 {
            let excess_bytes = count as f64 * mean_bytes - self.max_call_bytes as f64;
            (excess_bytes / mean_bytes).ceil() as i64
        } else {
            0
        };
        by_count.max(by_bytes).clamp(0, count)
    }
}

/// One edge of the service map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub client: String,
    pub server: String,
    pub protocols: Vec<String>,
    pub calls: u64,
    pub failed: u64,
    pub mean_latency_us: u64,
    pub max_latency_us: u64,
    /// The pair's connections seen starting, by encryption (docs/tls.md).
    pub connections: EncryptionCounts,
}

/// Connections by encryption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncryptionCounts {
    pub plaintext: u64,
    pub tls: u64,
    pub mtls: u64,
}

impl EncryptionCounts {
    fn add(&mut self, encryption: &str, connections: u64) {
        match encryption {
            "plaintext" => self.plaintext += connections,
            "tls" => self.tls += connections,
            "mtls" => self.mtls += connections,
            // An encryption this collector does not know counts as nothing known.
            _ => {}
        }
    }

    pub fn total(&self) -> u64 {
        self.plaintext + self.tls + self.mtls
    }

    /// `plaintext`, `tls` or `mtls` when every connection was so, `mixed` when they differ,
    /// `unknown` when none was seen starting.
    pub fn summary(&self) -> &'static str {
        match (self.plaintext > 0, self.tls > 0, self.mtls > 0) {
            (false, false, false) => "unknown",
            (true, false, false) => "plaintext",
            (false, true, false) => "tls",
            (false, false, true) => "mtls",
            _ => "mixed",
        }
    }
}

/// Adds each (client, server, encryption, connections) to its edge, making an edge without
/// calls for a pair seen only in connections (TLS, whose calls are not readable), and sorts the
/// edges busiest first (calls, then connections), at most [`MAX_EDGES`].
fn merge_connections(
    mut edges: Vec<Edge>,
    counts: Vec<(String, String, String, u64)>,
) -> Vec<Edge> {
    let mut index: std::collections::HashMap<(String, String), usize> = edges
        .iter()
        .enumerate()
        .map(|(at, edge)| ((edge.client.clone(), edge.server.clone()), at))
        .collect();
    for (client, server, encryption, connections) in counts {
        let at = *index
            .entry((client.clone(), server.clone()))
            .or_insert_with(|| {
                edges.push(Edge {
                    client,
                    server,
                    protocols: Vec::new(),
                    calls: 0,
                    failed: 0,
                    mean_latency_us: 0,
                    max_latency_us: 0,
                    connections: EncryptionCounts::default(),
                });
                edges.len() - 1
            });
        edges[at].connections.add(&encryption, connections);
    }
    edges.sort_by(|a, b| {
        (b.calls, b.connections.total())
            .cmp(&(a.calls, a.connections.total()))
            .then_with(|| (&a.client, &a.server).cmp(&(&b.client, &b.server)))
    });
    edges.truncate(MAX_EDGES as usize);
    edges
}

/// A connection record as stored: its id, time, the pair as the map names it, its encryption.
struct ConnectionRow {
    node: String,
    boot: i64,
    sequence: i64,
    time: i64,
    client: String,
    server: String,
    encryption: String,
}

impl ConnectionRow {
    fn new(connection: &moat_api::v1::Connection) -> Self {
        let id = connection.id.clone().unwrap_or_default();
        Self {
            node: id.node,
            boot: id.boot as i64,
            sequence: id.sequence as i64,
            time: connection.time_unix_nanos,
            client: map_name(connection.client.as_ref()),
            server: map_name(connection.server.as_ref()),
            encryption: connection.encryption.clone(),
        }
    }
}

/// What storing a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub accepted: u32,
    pub duplicates: u32,
}

/// Where a call stands in the order calls became visible: how far a follower has read. SQLite
/// has one writer, so its row numbers are that order and `transaction` stays 0; PostgreSQL's
/// replicas commit concurrently, so there it is the writing transaction's id first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub transaction: i64,
    pub row: i64,
}

/// What the collector asks of a store, whichever it is. Calls block; the service makes them
/// from blocking threads, and a store serialises or pools its connections itself.
pub trait Store: Send + Sync {
    /// Stores a batch in one transaction: all of it or, on error, none.
    fn insert(&self, records: &[record::Kind]) -> Result<Stored, StoreError>;

    /// Calls matching `filter`, newest first, `page_size` at most (1 to 1,000), after `cursor`,
    /// and the cursor of the next page (empty after the last).
    fn list_calls(
        &self,
        filter: &CallFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<ApiCall>, String), StoreError>;

    /// Calls that became visible after `after` and match `filter`, in that order, with their
    /// positions: what a follower has not seen yet.
    fn calls_after(
        &self,
        filter: &CallFilter,
        after: Position,
        limit: u32,
    ) -> Result<Vec<(Position, ApiCall)>, StoreError>;

    /// Where a follower starts: after every call visible now.
    fn last_position(&self) -> Result<Position, StoreError>;

    /// Deletes records older than the retention's `oldest`, then the oldest calls past its
    /// caps; returns how many records went.
    fn enforce_retention(&self, retention: Retention) -> Result<u64, StoreError>;

    /// Who calls whom between `since` and `until` (Unix nanoseconds; 0: unbounded): one edge
    /// per (client, server), busiest first.
    fn service_map(&self, since: i64, until: i64) -> Result<Vec<Edge>, StoreError>;

    /// Findings matching `filter`, newest first, as [`Store::list_calls`] pages calls.
    fn list_findings(
        &self,
        filter: &FindingFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<Finding>, String), StoreError>;

    /// Findings that became visible after `after`, as [`Store::calls_after`].
    fn findings_after(
        &self,
        filter: &FindingFilter,
        after: Position,
        limit: u32,
    ) -> Result<Vec<(Position, Finding)>, StoreError>;

    /// Where a findings follower starts.
    fn last_finding_position(&self) -> Result<Position, StoreError>;

    /// Drops matching `filter`, newest first, as [`Store::list_calls`] pages calls.
    fn list_drops(
        &self,
        filter: &DropFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<moat_api::v1::Drop>, String), StoreError>;

    /// The latest endpoint record of each agent boot, of `service` (empty: all), at most
    /// [`MAX_PER_BOOT_ROWS`]; [`merge_endpoints`] makes the inventory of them.
    fn endpoint_rows(&self, service: &str) -> Result<Vec<Endpoint>, StoreError>;

    /// The latest data flow record of each agent boot that matches `filter`, at most
    /// [`MAX_PER_BOOT_ROWS`], and whether more matched; [`merge_data_flows`] totals them.
    fn data_flow_rows(&self, filter: &DataFlowFilter) -> Result<(Vec<DataFlow>, bool), StoreError>;

    /// Each node's latest inventory, with the node.
    fn inventories(&self) -> Result<Vec<(String, Inventory)>, StoreError>;

    /// Notes that a batch from the agent `status` describes arrived at `seen` (Unix
    /// nanoseconds) and `stored` of its records were new: every replica sees every agent.
    fn note_agent(&self, status: &AgentStatus, stored: u64, seen: i64) -> Result<(), StoreError>;

    /// Every agent (node, boot) heard from, with its latest status; `connected` is left false
    /// (whether a stream is open is the replica's to say).
    fn agents(&self) -> Result<Vec<AgentState>, StoreError>;

    /// Sums over every per-minute aggregate, for tests to check what was counted.
    #[cfg(test)]
    fn minute_totals(&self) -> Result<MinuteTotals, StoreError>;
}

/// The store `--store` names: `sqlite:PATH`, or `postgres://...` (also `postgresql://...`),
/// whose server certificate `postgres_ca` (`--store-ca`) may have signed.
pub fn open(store: &str, postgres_ca: Option<&Path>) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = store.strip_prefix("sqlite:") {
        if postgres_ca.is_some() {
            return Err(StoreError::CaWithoutPostgres);
        }
        Ok(Arc::new(sqlite::Sqlite::open(Path::new(path))?))
    } else if store.starts_with("postgres://") || store.starts_with("postgresql://") {
        Ok(Arc::new(postgres::Postgres::open(store, postgres_ca)?))
    } else {
        Err(StoreError::UnknownStore(redacted(store)))
    }
}

/// `url` without its password (and without query parameters, which may hold one), for errors
/// and logs.
pub fn redacted(url: &str) -> String {
    let url = url.split_once('?').map_or(url, |(before, _)| before);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            let hidden = if user.len() == user_info.len() {
                ""
            } else {
                ":***"
            };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Sums over the per-minute aggregates.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub struct MinuteTotals {
    pub calls: i64,
    pub failed: i64,
    pub server_errors: i64,
    pub endpoints: i64,
}

/// Values of both ends joined with a separator no Kubernetes name contains, so a filter on
/// either end is one LIKE.
const SEPARATOR: char = '\u{1f}';

/// Rows a list or follow query returns at most.
const MAX_PAGE: u32 = 1000;

/// Edges the service map returns at most.
const MAX_EDGES: i64 = 10_000;

/// A call as both stores' `calls` table holds it.
struct CallRow {
    node: String,
    boot: i64,
    sequence: i64,
    time: i64,
    cluster: String,
    namespaces: String,
    workloads: String,
    path: String,
    status: i64,
    tags: String,
    record: Vec<u8>,
}

impl CallRow {
    fn new(call: &ApiCall) -> Self {
        let id = call.id.as_ref();
        let no_identity = Identity::default();
        let (client, server) = (
            identity_or(call.client.as_ref(), &no_identity),
            identity_or(call.server.as_ref(), &no_identity),
        );
        let cluster = if client.cluster.is_empty() {
            &server.cluster
        } else {
            &client.cluster
        };
        let mut tags = String::new();
        for tag in client.tags.iter().chain(&server.tags) {
            tags.push(SEPARATOR);
            tags.push_str(&tag.name);
            tags.push('=');
            tags.push_str(&tag.value);
        }
        tags.push(SEPARATOR);
        Self {
            node: id.map(|id| id.node.clone()).unwrap_or_default(),
            boot: id.map_or(0, |id| id.boot as i64),
            sequence: id.map_or(0, |id| id.sequence as i64),
            time: call.time_unix_nanos,
            cluster: cluster.clone(),
            namespaces: both(&client.namespace, &server.namespace),
            workloads: both(&client.workload_name, &server.workload_name),
            path: call.path.clone(),
            status: i64::from(call.status),
            tags,
            record: call.encode_to_vec(),
        }
    }
}

/// A peer's identity, or `absent` when it has none.
fn identity_or<'a>(peer: Option<&'a Peer>, absent: &'a Identity) -> &'a Identity {
    peer.and_then(|peer| peer.identity.as_ref())
        .unwrap_or(absent)
}

/// Rows of a per-boot table (endpoints, data flows) one query reads at most: agents x restarts
/// x endpoints or flows.
pub const MAX_PER_BOOT_ROWS: i64 = 200_000;

/// Severities in order; a finding's rank fills the `status` column, so `min_status` filters
/// by severity.
const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

fn severity_rank(severity: &str) -> i64 {
    SEVERITIES
        .iter()
        .position(|known| *known == severity)
        .map_or(0, |index| index as i64 + 1)
}

/// A finding as both stores' `findings` table holds it: the calls' filter columns, with the
/// endpoint in `path` and the severity's rank in `status` (so one filter serves both tables),
/// and the columns only findings are filtered by.
struct FindingRow {
    call: CallRow,
    kind: String,
    service: String,
    /// The source's address, pod, workload, range and customer, between separators.
    sources: String,
}

impl FindingRow {
    fn new(finding: &Finding) -> Self {
        let as_call = ApiCall {
            id: finding.id.clone(),
            time_unix_nanos: finding.time_unix_nanos,
            client: finding.source.clone(),
            server: finding.destination.clone(),
            path: finding.endpoint.clone(),
            ..ApiCall::default()
        };
        let mut call = CallRow::new(&as_call);
        call.status = severity_rank(&finding.severity);
        call.record = finding.encode_to_vec();
        Self {
            call,
            kind: finding.kind.clone(),
            service: finding.service.clone(),
            sources: source_names(finding.source.as_ref()),
        }
    }
}

/// A table of records an agent sends again whenever their totals change (endpoints, data
/// flows). Both stores keep the latest record per agent boot and key: a record resent after a
/// newer one changes nothing (and counts as a duplicate); queries sum over boots.
struct PerBootTable {
    name: &'static str,
    /// The text columns that, after node and boot, say which record a row is.
    key: &'static [&'static str],
}

const ENDPOINTS: PerBootTable = PerBootTable {
    name: "endpoints",
    key: &["service", "method", "endpoint"],
};

/// Keyed by every field that tells flows apart, in the order flows are listed; also what
/// [`merge_data_flows`] totals by.
const DATA_FLOWS: PerBootTable = PerBootTable {
    name: "data_flows",
    key: &[
        "service",
        "endpoint",
        "method",
        "direction",
        "data_class",
        "kind",
        "counterpart",
        "counterpart_namespace",
        "counterpart_workload",
        "counterpart_range",
        "counterpart_customer",
        "transport",
    ],
};

impl PerBootTable {
    /// The statement that stores rows unless a newer one of their agent boot and key is
    /// stored; `rows` is the VALUES or SELECT giving (node, boot, key columns, time, record).
    fn upsert(&self, rows: &str) -> String {
        let key = self.key.join(", ");
        format!(
            "INSERT INTO {name} (node, boot, {key}, time, record) {rows}
             ON CONFLICT (node, boot, {key}) DO UPDATE SET
                 time = excluded.time, record = excluded.record
             WHERE excluded.time > {name}.time",
            name = self.name,
        )
    }
}

/// A row of a [`PerBootTable`].
struct PerBootRow {
    node: String,
    boot: i64,
    /// The values of the table's key columns, in order.
    key: Vec<String>,
    time: i64,
    record: Vec<u8>,
}

impl PerBootRow {
    fn new(
        id: &Option<moat_api::v1::RecordId>,
        key: Vec<String>,
        time: i64,
        record: Vec<u8>,
    ) -> Self {
        let id = id.clone().unwrap_or_default();
        Self {
            node: id.node,
            boot: id.boot as i64,
            key,
            time,
            record,
        }
    }

    fn endpoint(endpoint: &Endpoint) -> Self {
        Self::new(
            &endpoint.id,
            vec![
                endpoint.service.clone(),
                endpoint.method.clone(),
                endpoint.endpoint.clone(),
            ],
            endpoint.time_unix_nanos,
            endpoint.encode_to_vec(),
        )
    }

    fn data_flow(flow: &DataFlow) -> Self {
        Self::new(
            &flow.id,
            data_flow_key(flow),
            flow.time_unix_nanos,
            flow.encode_to_vec(),
        )
    }
}

/// What `transport` holds for a flow over plaintext connections.
const PLAINTEXT: &str = "plaintext";

/// A data flow's values of the [`DATA_FLOWS`] key columns.
fn data_flow_key(flow: &DataFlow) -> Vec<String> {
    let counterpart = flow.counterpart.clone().unwrap_or_default();
    vec![
        flow.service.clone(),
        flow.endpoint.clone(),
        flow.method.clone(),
        flow.direction.clone(),
        flow.data_class.clone(),
        flow.kind.clone(),
        counterpart.label,
        counterpart.namespace,
        counterpart.workload,
        counterpart.range,
        counterpart.customer,
        if flow.encrypted {
            "encrypted"
        } else {
            PLAINTEXT
        }
        .to_owned(),
    ]
}

/// Data flows across agents: one per flow, calls and values summed over the agent boots that
/// reported it (each boot's counts are its own), first and last seen over all; at most `limit`
/// of them in [`DATA_FLOWS`] key order, and how many more there were.
pub fn merge_data_flows(rows: Vec<DataFlow>, limit: usize) -> (Vec<DataFlow>, u32) {
    let mut merged: BTreeMap<Vec<String>, DataFlow> = BTreeMap::new();
    for row in rows {
        let Some(total) = merged.get_mut(&data_flow_key(&row)) else {
            merged.insert(data_flow_key(&row), DataFlow { id: None, ..row });
            continue;
        };
        total.calls += row.calls;
        total.values += row.values;
        total.first_seen_unix = total.first_seen_unix.min(row.first_seen_unix);
        total.last_seen_unix = total.last_seen_unix.max(row.last_seen_unix);
        total.time_unix_nanos = total.time_unix_nanos.max(row.time_unix_nanos);
    }
    let more = u32::try_from(merged.len().saturating_sub(limit)).unwrap_or(u32::MAX);
    (merged.into_values().take(limit).collect(), more)
}

/// Whether two endpoint callers are one: the same workload or range, application, API key,
/// customer and user.
fn same_caller(one: &EndpointCaller, other: &EndpointCaller) -> bool {
    (
        &one.caller,
        &one.application,
        &one.api_key,
        &one.customer,
        &one.user,
    ) == (
        &other.caller,
        &other.application,
        &other.api_key,
        &other.customer,
        &other.user,
    )
}

/// The inventory across agents: one entry per (service, method, endpoint), totals summed over
/// the agent boots that reported it (each boot's counts are its own), first and last seen over
/// all, callers and content types united, learned shapes merged; each latency percentile is the
/// highest an agent reported, since percentiles do not add.
pub fn merge_endpoints(rows: Vec<Endpoint>) -> Vec<Endpoint> {
    use intelligence::learn::Learned;
    let mut merged: BTreeMap<(String, String, String), (Endpoint, Learned)> = BTreeMap::new();
    for row in rows {
        let learned: Learned = serde_json::from_str(&row.learned_json).unwrap_or_default();
        let key = (
            row.service.clone(),
            row.endpoint.clone(),
            row.method.clone(),
        );
        let Some((total, total_learned)) = merged.get_mut(&key) else {
            merged.insert(key, (row, learned));
            continue;
        };
        total_learned.merge(&learned);
        total.first_seen_unix = total.first_seen_unix.min(row.first_seen_unix);
        total.last_seen_unix = total.last_seen_unix.max(row.last_seen_unix);
        total.calls += row.calls;
        total.client_errors += row.client_errors;
        total.server_errors += row.server_errors;
        total.no_response += row.no_response;
        total.latency_p50_us = total.latency_p50_us.max(row.latency_p50_us);
        total.latency_p90_us = total.latency_p90_us.max(row.latency_p90_us);
        total.latency_p99_us = total.latency_p99_us.max(row.latency_p99_us);
        if total.documented.is_empty() {
            total.documented = row.documented;
        }
        for (mine, theirs) in [
            (&mut total.request_content_types, row.request_content_types),
            (
                &mut total.response_content_types,
                row.response_content_types,
            ),
            (&mut total.auth, row.auth),
        ] {
            for value in theirs {
                if !mine.contains(&value) {
                    mine.push(value);
                }
            }
        }
        total.other_callers_calls += row.other_callers_calls;
        for tag in row.tags {
            match total.tags.iter_mut().find(|known| known.name == tag.name) {
                Some(known) => known.value = tag.value,
                None => total.tags.push(tag),
            }
        }
        for caller in row.callers {
            match total
                .callers
                .iter_mut()
                .find(|known| same_caller(known, &caller))
            {
                Some(known) => {
                    known.calls += caller.calls;
                    known.first_seen_unix = known.first_seen_unix.min(caller.first_seen_unix);
                    known.last_seen_unix = known.last_seen_unix.max(caller.last_seen_unix);
                }
                None => total.callers.push(caller),
            }
        }
    }
    merged
        .into_values()
        .map(|(mut endpoint, learned)| {
            endpoint.learned_json = serde_json::to_string(&learned).unwrap_or_default();
            endpoint.id = None;
            endpoint
        })
        .collect()
}

/// SQL both stores use to keep one row per agent boot: the newest status, records counted by
/// every replica added up. `parameter(n)` names parameter n in the store's syntax; `greatest`
/// is its two-argument maximum.
fn note_agent_sql(parameter: impl Fn(usize) -> String, greatest: &str) -> String {
    format!(
        "INSERT INTO agents (node, boot, last_seen, records_stored, status)
         VALUES ({}, {}, {}, {}, {})
         ON CONFLICT (node, boot) DO UPDATE SET
             last_seen = {greatest}(agents.last_seen, excluded.last_seen),
             records_stored = agents.records_stored + excluded.records_stored,
             status = CASE WHEN excluded.last_seen >= agents.last_seen
                           THEN excluded.status ELSE agents.status END",
        parameter(1),
        parameter(2),
        parameter(3),
        parameter(4),
        parameter(5),
    )
}

/// An agent row's state.
fn agent_state(last_seen: i64, records_stored: i64, status: &[u8]) -> Option<AgentState> {
    Some(AgentState {
        status: Some(AgentStatus::decode(status).ok()?),
        last_seen_unix_nanos: last_seen,
        records_stored: records_stored.max(0) as u64,
        connected: false,
    })
}

/// The latest inventory of a node, as both stores' `inventories` table holds it.
struct InventoryRow {
    node: String,
    time: i64,
    record: Vec<u8>,
}

impl InventoryRow {
    fn new(inventory: &Inventory) -> Self {
        Self {
            node: inventory
                .id
                .as_ref()
                .map(|id| id.node.clone())
                .unwrap_or_default(),
            time: inventory.time_unix_nanos,
            record: inventory.encode_to_vec(),
        }
    }
}

/// The cluster's inventory from the nodes': ranges by name (CIDRs united), workloads by
/// namespace, kind and name (pods summed: each agent reports its node's), services united.
pub fn merge_inventories(
    inventories: Vec<(String, Inventory)>,
    namespace: &str,
) -> moat_api::v1::GetInventoryResponse {
    use moat_api::v1::{InventoryNode, InventoryRange, InventoryWorkload};
    let mut ranges: BTreeMap<String, InventoryRange> = BTreeMap::new();
    let mut workloads: BTreeMap<(String, String, String), InventoryWorkload> = BTreeMap::new();
    let mut nodes = Vec::new();
    for (node, inventory) in inventories {
        nodes.push(InventoryNode {
            node,
            cluster: inventory.cluster.clone(),
            reported_unix_nanos: inventory.time_unix_nanos,
        });
        for range in inventory.ranges {
            let merged = ranges
                .entry(range.name.clone())
                .or_insert_with(|| InventoryRange {
                    cidrs: Vec::new(),
                    ..range.clone()
                });
            for cidr in range.cidrs {
                if !merged.cidrs.contains(&cidr) {
                    merged.cidrs.push(cidr);
                }
            }
            merged.cidrs.sort();
        }
        for workload in inventory.workloads {
            if !namespace.is_empty() && workload.namespace != namespace {
                continue;
            }
            let key = (
                workload.namespace.clone(),
                workload.kind.clone(),
                workload.name.clone(),
            );
            match workloads.get_mut(&key) {
                Some(merged) => {
                    merged.pods += workload.pods;
                    for service in workload.services {
                        if !merged.services.contains(&service) {
                            merged.services.push(service);
                        }
                    }
                    merged.services.sort();
                }
                None => {
                    workloads.insert(key, workload);
                }
            }
        }
    }
    nodes.sort_by(|one, other| one.node.cmp(&other.node));
    moat_api::v1::GetInventoryResponse {
        ranges: ranges.into_values().collect(),
        workloads: workloads.into_values().collect(),
        nodes,
    }
}

/// A drop as both stores' `drops` table holds it: the columns drops are filtered by, and the
/// record.
struct DropRow {
    node: String,
    boot: i64,
    sequence: i64,
    time: i64,
    reason: String,
    rule: String,
    /// The source's address as 16 bytes (IPv4 mapped into IPv6), so that a network is a range
    /// of them; empty when the agent sent no valid address.
    source_address: Vec<u8>,
    /// The source's address, pod, workload, range and customer, between separators.
    sources: String,
    namespaces: String,
    workloads: String,
    record: Vec<u8>,
}

impl DropRow {
    fn new(drop: &moat_api::v1::Drop) -> Self {
        let id = drop.id.clone().unwrap_or_default();
        let identity = |peer: &Option<Peer>| {
            peer.as_ref()
                .and_then(|peer| peer.identity.clone())
                .unwrap_or_default()
        };
        let (source, destination) = (identity(&drop.source), identity(&drop.destination));
        Self {
            node: id.node,
            boot: id.boot as i64,
            sequence: id.sequence as i64,
            time: drop.time_unix_nanos,
            reason: drop.reason.clone(),
            rule: drop.rule.clone(),
            source_address: drop
                .source
                .as_ref()
                .and_then(|peer| peer.ip.parse::<IpAddr>().ok())
                .map(|ip| address_bytes(ip).to_vec())
                .unwrap_or_default(),
            sources: source_names(drop.source.as_ref()),
            namespaces: both(&source.namespace, &destination.namespace),
            workloads: both(&source.workload_name, &destination.workload_name),
            record: drop.encode_to_vec(),
        }
    }
}

/// The columns the first collectors' `drops` table lacked, with their declarations in SQLite
/// and in PostgreSQL. Opening a store adds those missing, then fills them in from the records
/// ([`DropRow`]) of rows whose `sources` is still empty: a filled row's never is (it holds at
/// least a separator), so an interrupted fill resumes where it stopped.
const DROP_FILTER_COLUMNS: [(&str, &str, &str); 6] = [
    (
        "reason",
        "TEXT NOT NULL DEFAULT ''",
        "TEXT NOT NULL DEFAULT ''",
    ),
    (
        "rule",
        "TEXT NOT NULL DEFAULT ''",
        "TEXT NOT NULL DEFAULT ''",
    ),
    (
        "source_address",
        "BLOB NOT NULL DEFAULT X''",
        "BYTEA NOT NULL DEFAULT ''::bytea",
    ),
    (
        "sources",
        "TEXT NOT NULL DEFAULT ''",
        "TEXT NOT NULL DEFAULT ''",
    ),
    (
        "namespaces",
        "TEXT NOT NULL DEFAULT ''",
        "TEXT NOT NULL DEFAULT ''",
    ),
    (
        "workloads",
        "TEXT NOT NULL DEFAULT ''",
        "TEXT NOT NULL DEFAULT ''",
    ),
];

/// Rows the fill of [`DROP_FILTER_COLUMNS`] reads at a time.
const DROP_FILL_BATCH: i64 = 1000;

/// The reasons agents give for a drop, as filters name them.
pub const DROP_REASONS: [&str; 5] = ["rule", "blocklist", "isolate", "rate_limit", "timed_block"];

/// `ip` as 16 bytes: an IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`), so both families
/// sort in one order and a network of either is one range.
fn address_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Why a source filter that looks like a network (it holds a `/`) is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("{0:?} is not an address")]
    Address(String),
    #[error("{prefix:?} is not a prefix length of 0 to {max}")]
    Prefix { prefix: String, max: u8 },
}

/// The first and last address of a network, as [`address_bytes`].
pub type AddressRange = ([u8; 16], [u8; 16]);

/// The first and last address, as [`address_bytes`], of `text` when it is an address (a
/// network of one) or a network in CIDR notation (`198.18.0.0/15`, `fd00::/8`); `Ok(None)`
/// when it is neither (no `/`, no address: a name).
pub fn address_range(text: &str) -> Result<Option<AddressRange>, NetworkError> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let ip = match (address.parse::<IpAddr>(), prefix) {
        (Ok(ip), _) => ip,
        (Err(_), None) => return Ok(None),
        (Err(_), Some(_)) => return Err(NetworkError::Address(address.to_owned())),
    };
    let (max, offset) = if ip.is_ipv4() { (32, 96) } else { (128, 0) };
    let length = match prefix {
        None => max,
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|length| *length <= max)
            .ok_or_else(|| NetworkError::Prefix {
                prefix: prefix.to_owned(),
                max,
            })?,
    };
    let bits = u32::from(length) + offset;
    let host_mask = u128::MAX.checked_shr(bits).unwrap_or(0);
    let address = u128::from_be_bytes(address_bytes(ip));
    Ok(Some((
        (address & !host_mask).to_be_bytes(),
        (address | host_mask).to_be_bytes(),
    )))
}

/// A peer's address, pod, workload, range and customer between separators, so a filter on
/// any of them is one LIKE.
fn source_names(peer: Option<&Peer>) -> String {
    let Some(peer) = peer else {
        return SEPARATOR.to_string();
    };
    let identity = peer.identity.clone().unwrap_or_default();
    [
        peer.ip.as_str(),
        &identity.pod,
        &identity.workload_name,
        &identity.range,
        &identity.customer,
    ]
    .iter()
    .filter(|value| !value.is_empty())
    .map(|value| format!("{SEPARATOR}{value}"))
    .collect::<String>()
        + &SEPARATOR.to_string()
}

/// The SQL conditions of a [`DropFilter`], the same in both stores, over parameters 3 to 14
/// ([`DropValues`] in order; 1 and 2 are the page's position).
fn drop_conditions(parameter: impl Fn(usize, &str) -> String) -> String {
    let p = |n| {
        parameter(
            n,
            match n {
                3 | 4 => "bigint",
                9 | 10 => "bytea",
                _ => "text",
            },
        )
    };
    format!(
        "({since} = 0 OR time >= {since}) AND ({until} = 0 OR time < {until})
         AND {reason}
         AND {rule}
         AND ({source} = '' OR sources LIKE {source_like} ESCAPE '\\'
              OR (length({low}) = 16 AND source_address >= {low} AND source_address <= {high}))
         AND ({namespace} = '' OR namespaces LIKE {namespace_like} ESCAPE '\\')
         AND ({workload} = '' OR workloads LIKE {workload_like} ESCAPE '\\')",
        since = p(3),
        until = p(4),
        reason = equal_condition("reason", &p(5)),
        rule = equal_condition("rule", &p(6)),
        source = p(7),
        source_like = p(8),
        low = p(9),
        high = p(10),
        namespace = p(11),
        namespace_like = p(12),
        workload = p(13),
        workload_like = p(14),
    )
}

/// The values of [`drop_conditions`]' parameters 3 to 14, in order.
struct DropValues {
    since: i64,
    until: i64,
    reason: String,
    rule: String,
    source: String,
    source_like: String,
    /// The source filter's addresses when it is an address or network; empty otherwise.
    source_low: Vec<u8>,
    source_high: Vec<u8>,
    namespace: String,
    namespace_like: String,
    workload: String,
    workload_like: String,
}

impl DropValues {
    /// A source filter that is neither a name nor a valid address or network matches nothing.
    fn new(filter: &DropFilter) -> Self {
        let (source_low, source_high) = match address_range(&filter.source) {
            Ok(Some((low, high))) => (low.to_vec(), high.to_vec()),
            Ok(None) | Err(_) => (Vec::new(), Vec::new()),
        };
        Self {
            since: filter.since_unix_nanos,
            until: filter.until_unix_nanos,
            reason: filter.reason.clone(),
            rule: filter.rule.clone(),
            source: filter.source.clone(),
            source_like: like(&filter.source),
            source_low,
            source_high,
            namespace: filter.namespace.clone(),
            namespace_like: like(&filter.namespace),
            workload: filter.workload.clone(),
            workload_like: like(&filter.workload),
        }
    }
}

/// One row of the per-minute aggregates: (minute, client, server, method, endpoint, protocol).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MinuteKey {
    minute: i64,
    client: String,
    server: String,
    method: String,
    endpoint: String,
    protocol: String,
}

/// What one minute's row counts.
#[derive(Clone, Copy, Debug, Default)]
struct MinuteCounts {
    calls: i64,
    client_errors: i64,
    server_errors: i64,
    failed: i64,
    latency_sum_us: i64,
    latency_max_us: i64,
    under_1ms: i64,
    under_10ms: i64,
    under_100ms: i64,
    under_1s: i64,
    request_bytes: i64,
    response_bytes: i64,
}

impl MinuteKey {
    /// The aggregate row `call` counts in.
    fn of(call: &ApiCall) -> Self {
        Self {
            minute: call.time_unix_nanos.div_euclid(60_000_000_000),
            client: map_name(call.client.as_ref()),
            server: map_name(call.server.as_ref()),
            method: call.method.clone(),
            // The agent's template (learned or the spec's); older agents send none.
            endpoint: if call.endpoint.is_empty() {
                endpoint(&call.path)
            } else {
                call.endpoint.clone()
            },
            protocol: call.protocol.clone(),
        }
    }
}

/// The per-minute aggregates of newly stored calls, each given with its [`MinuteKey`], one row
/// per key, in key order.
fn minutes<'a>(
    calls: impl IntoIterator<Item = (MinuteKey, &'a ApiCall)>,
) -> BTreeMap<MinuteKey, MinuteCounts> {
    let mut minutes = BTreeMap::<MinuteKey, MinuteCounts>::new();
    for (key, call) in calls {
        let latency = call.latency_us as i64;
        let counts = minutes.entry(key).or_default();
        counts.calls += 1;
        counts.client_errors += i64::from((400..500).contains(&call.status));
        counts.server_errors += i64::from(call.status >= 500);
        counts.failed += i64::from(failed(call));
        counts.latency_sum_us += latency;
        counts.latency_max_us = counts.latency_max_us.max(latency);
        counts.under_1ms += i64::from(latency < 1_000);
        counts.under_10ms += i64::from(latency < 10_000);
        counts.under_100ms += i64::from(latency < 100_000);
        counts.under_1s += i64::from(latency < 1_000_000);
        counts.request_bytes += call.request_bytes as i64;
        counts.response_bytes += call.response_bytes as i64;
    }
    minutes
}

/// A peer as the service map names it: its workload, else its pod, service, node or range,
/// else its address.
fn map_name(peer: Option<&Peer>) -> String {
    let Some(peer) = peer else {
        return String::new();
    };
    let no_identity = Identity::default();
    let identity = identity_or(Some(peer), &no_identity);
    let scoped = |name: &str| format!("{}/{name}", identity.namespace);
    if !identity.workload_name.is_empty() {
        scoped(&identity.workload_name)
    } else if !identity.pod.is_empty() {
        scoped(&identity.pod)
    } else if !identity.service.is_empty() {
        format!("service {}", scoped(&identity.service))
    } else if identity.kind == "node" {
        format!("node {}", identity.node)
    } else if !identity.range.is_empty() {
        format!("range {}", identity.range)
    } else {
        peer.ip.clone()
    }
}

/// A path as an endpoint, for calls whose agent sent no template: segments that are
/// identifiers (numbers, UUIDs, long hex) become `{id}`, so `/orders/123` and `/orders/456`
/// aggregate together and the per-minute table's cardinality stays bounded.
fn endpoint(path: &str) -> String {
    let is_identifier = |segment: &str| {
        let hex = segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()))
            || (hex && segment.len() >= 16 && segment.bytes().any(|b| b.is_ascii_digit()))
    };
    let mut out: String = path
        .split('/')
        .map(|segment| {
            if is_identifier(segment) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    out.truncate(out.floor_char_boundary(512));
    out
}

/// A server error (5xx), a failed gRPC status, or no response at all.
fn failed(call: &ApiCall) -> bool {
    call.status >= 500 || call.status == 0 || call.grpc_status > 0
}

fn both(client: &str, server: &str) -> String {
    format!("{SEPARATOR}{client}{SEPARATOR}{server}{SEPARATOR}")
}

/// A page cursor: the (time, row) of the last call returned, so the next page starts below it
/// (keyset pagination, stable while calls arrive). No cursor starts above everything.
fn parse_cursor(cursor: &str) -> Result<(i64, i64), StoreError> {
    if cursor.is_empty() {
        return Ok((i64::MAX, i64::MAX));
    }
    cursor
        .split_once(':')
        .and_then(|(time, row)| Some((time.parse().ok()?, row.parse().ok()?)))
        .ok_or_else(|| StoreError::BadCursor(cursor.to_owned()))
}

/// The next page's cursor after `rows` (row, time, call), if the page was full.
fn next_cursor<M>(rows: &[(i64, i64, M)], limit: u32) -> String {
    match rows.last() {
        Some((row, time, _)) if rows.len() == limit as usize => format!("{time}:{row}"),
        _ => String::new(),
    }
}

/// `column` equals the text `parameter` holds, or that parameter is empty.
fn equal_condition(column: &str, parameter: &str) -> String {
    format!("({parameter} = '' OR {column} = {parameter})")
}

/// `column` starts with the text `parameter` holds (empty: anything does).
fn prefix_condition(column: &str, parameter: &str) -> String {
    format!("({parameter} = '' OR substr({column}, 1, length({parameter})) = {parameter})")
}

/// `kind` is the kind `parameter` holds, or of the family it names by ending in `.` (`spec.`).
fn kind_condition(parameter: &str) -> String {
    format!(
        "({kind} = '' OR kind = {kind}
              OR (substr({kind}, length({kind}), 1) = '.' AND substr(kind, 1, length({kind})) = {kind}))",
        kind = parameter,
    )
}

/// The SQL conditions of a [`CallFilter`], the same in both stores. `parameter(n, type)` names
/// parameter n (3 to 13) in the store's syntax; [`FilterValues`] holds their values in order.
fn filter_conditions(parameter: impl Fn(usize, &str) -> String) -> String {
    let p = |n| {
        parameter(
            n,
            if matches!(n, 3 | 4 | 11) {
                "bigint"
            } else {
                "text"
            },
        )
    };
    format!(
        "({since} = 0 OR time >= {since}) AND ({until} = 0 OR time < {until})
         AND {cluster}
         AND ({namespace} = '' OR namespaces LIKE {namespace_like} ESCAPE '\\')
         AND ({workload} = '' OR workloads LIKE {workload_like} ESCAPE '\\')
         AND {path}
         AND status >= {status}
         AND ({tag} = '' OR tags LIKE {tag_like} ESCAPE '\\')",
        since = p(3),
        until = p(4),
        cluster = equal_condition("cluster", &p(5)),
        namespace = p(6),
        namespace_like = p(7),
        workload = p(8),
        workload_like = p(9),
        path = prefix_condition("path", &p(10)),
        status = p(11),
        tag = p(12),
        tag_like = p(13),
    )
}

/// The conditions only findings have, after [`filter_conditions`]' parameters: 14 (kind, or a
/// family ending in `.`), 15 (service), 16 (source, as a LIKE pattern), 17 (source).
fn finding_conditions(parameter: impl Fn(usize, &str) -> String) -> String {
    let p = |n| parameter(n, "text");
    format!(
        "{kind}
         AND {service}
         AND ({source} = '' OR sources LIKE {source_like} ESCAPE '\\')",
        kind = kind_condition(&p(14)),
        service = equal_condition("service", &p(15)),
        source_like = p(16),
        source = p(17),
    )
}

/// The SQL conditions of a [`DataFlowFilter`], the same in both stores, over parameters 1 to
/// 10 (text, [`DataFlowValues::texts`]) and 11 (since).
fn data_flow_conditions(parameter: impl Fn(usize, &str) -> String) -> String {
    let text = |n| parameter(n, "text");
    let mut conditions = vec![
        equal_condition("service", &text(1)),
        prefix_condition("endpoint", &text(2)),
        equal_condition("data_class", &text(3)),
        kind_condition(&text(4)),
    ];
    for (n, column) in [
        "direction",
        "counterpart_namespace",
        "counterpart_workload",
        "counterpart_range",
        "counterpart_customer",
        "transport",
    ]
    .into_iter()
    .enumerate()
    {
        conditions.push(equal_condition(column, &text(n + 5)));
    }
    let since = parameter(11, "bigint");
    conditions.push(format!("({since} = 0 OR time >= {since})"));
    conditions.join(" AND ")
}

/// The values of [`data_flow_conditions`]' parameters.
struct DataFlowValues {
    texts: [String; 10],
    since: i64,
}

impl DataFlowValues {
    fn new(filter: &DataFlowFilter) -> Self {
        Self {
            texts: [
                filter.service.clone(),
                filter.endpoint.clone(),
                filter.data_class.clone(),
                filter.kind.clone(),
                filter.direction.clone(),
                filter.namespace.clone(),
                filter.workload.clone(),
                filter.range.clone(),
                filter.customer.clone(),
                if filter.plaintext_only {
                    PLAINTEXT.to_owned()
                } else {
                    String::new()
                },
            ],
            since: filter.since_unix_nanos,
        }
    }
}

/// The values of [`finding_conditions`]' parameters, in order.
struct FindingValues {
    kind: String,
    service: String,
    source_like: String,
    source: String,
}

impl FindingValues {
    /// The calls' filter values and the findings' own, for a findings filter.
    fn new(filter: &FindingFilter) -> (FilterValues, Self) {
        let as_calls = CallFilter {
            since_unix_nanos: filter.since_unix_nanos,
            until_unix_nanos: filter.until_unix_nanos,
            cluster: filter.cluster.clone(),
            namespace: filter.namespace.clone(),
            workload: filter.workload.clone(),
            path_prefix: filter.endpoint.clone(),
            min_status: severity_rank(&filter.min_severity) as u32,
            tag: filter.tag.clone(),
        };
        let values = FilterValues::new(&as_calls);
        let own = Self {
            kind: filter.kind.clone(),
            service: filter.service.clone(),
            source_like: like(&filter.source),
            source: filter.source.clone(),
        };
        (values, own)
    }
}

/// A LIKE pattern matching `value` as a whole name between separators, its own `%`, `_` and
/// `\` taken literally.
fn like(value: &str) -> String {
    let escaped: String = value
        .chars()
        .flat_map(|c| {
            let escape = matches!(c, '%' | '_' | '\\').then_some('\\');
            escape.into_iter().chain([c])
        })
        .collect();
    format!("%{SEPARATOR}{escaped}{SEPARATOR}%")
}

/// The values of [`filter_conditions`]' parameters 3 to 13.
struct FilterValues {
    since: i64,
    until: i64,
    cluster: String,
    namespace: String,
    namespace_like: String,
    workload: String,
    workload_like: String,
    path: String,
    status: i64,
    tag: String,
    tag_like: String,
}

impl FilterValues {
    fn new(filter: &CallFilter) -> Self {
        Self {
            since: filter.since_unix_nanos,
            until: filter.until_unix_nanos,
            cluster: filter.cluster.clone(),
            namespace: filter.namespace.clone(),
            namespace_like: like(&filter.namespace),
            workload: filter.workload.clone(),
            workload_like: like(&filter.workload),
            path: filter.path_prefix.clone(),
            status: i64::from(filter.min_status),
            tag: filter.tag.clone(),
            tag_like: like(&filter.tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use moat_api::v1::{RecordId, Tag};

    use super::*;

    /// A store of each kind, with what it needs kept alive: a SQLite file, or a throwaway
    /// PostgreSQL server of its own.
    struct Backend {
        store: Arc<dyn Store>,
        /// What `--store` would say, to open it again.
        address: String,
        _server: Option<testbed::postgres::Server>,
        file: Option<std::path::PathBuf>,
    }

    impl Backend {
        fn sqlite(test: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("moat-store-{test}-{}.db", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let address = format!("sqlite:{}", path.display());
            Self {
                store: open(&address, None).expect("open SQLite"),
                address,
                _server: None,
                file: Some(path),
            }
        }

        fn postgres() -> Self {
            let server = testbed::postgres::Server::start().expect("start PostgreSQL");
            let address = server.url();
            Self {
                store: open(&address, None).expect("open PostgreSQL"),
                address,
                _server: Some(server),
                file: None,
            }
        }
    }

    impl Drop for Backend {
        fn drop(&mut self) {
            if let Some(file) = &self.file {
                let _ = std::fs::remove_file(file);
            }
        }
    }

    /// Runs each named test on both stores: `<test>::sqlite` and `<test>::postgres`.
    macro_rules! on_both_stores {
        ($($test:ident),* $(,)?) => {$(
            mod $test {
                #[test]
                fn sqlite() {
                    super::$test(&super::Backend::sqlite(stringify!($test)));
                }

                #[test]
                fn postgres() {
                    super::$test(&super::Backend::postgres());
                }
            }
        )*};
    }

    on_both_stores!(
        the_service_map_counts_calls_and_failures_per_caller_and_callee,
        the_service_map_shows_each_pairs_encryption_and_pairs_seen_only_in_tls,
        per_minute_aggregates_count_each_call_once,
        retention_removes_what_is_too_old_then_the_oldest_past_the_cap,
        a_resent_batch_is_counted_as_duplicates_and_stored_once,
        filters_match_either_end_and_pages_follow_the_cursor,
        followers_get_what_was_stored_after_their_position_in_order,
        replicas_starting_at_once_share_one_schema,
        findings_filter_by_severity_kind_service_source_and_either_end,
        finding_followers_get_new_findings_in_order,
        endpoints_keep_each_boots_latest_and_merge_across_agents,
        data_flows_keep_each_boots_latest_merge_across_agents_and_filter,
        the_inventory_is_each_nodes_latest_merged,
        agents_are_kept_per_boot_with_their_latest_status,
        drops_filter_by_time_reason_rule_source_network_and_either_end,
        drops_an_older_collector_stored_are_filled_in_and_found,
    );

    /// A drop from `source` (an address, optionally in a customer's range) to a pod of
    /// `shop/api`.
    fn drop_record(
        sequence: u64,
        time: i64,
        reason: &str,
        rule: &str,
        source: &str,
        customer: &str,
    ) -> moat_api::v1::Drop {
        moat_api::v1::Drop {
            id: Some(RecordId {
                node: "node-a".into(),
                boot: 3,
                sequence,
            }),
            time_unix_nanos: time,
            reason: reason.into(),
            rule: rule.into(),
            source: Some(Peer {
                ip: source.into(),
                port: 40_000,
                identity: Some(Identity {
                    kind: if customer.is_empty() { "" } else { "range" }.into(),
                    range: if customer.is_empty() { "" } else { "partners" }.into(),
                    customer: customer.into(),
                    ..Identity::default()
                }),
                ..Peer::default()
            }),
            destination: Some(Peer {
                ip: "10.0.0.9".into(),
                port: 8080,
                identity: Some(Identity {
                    kind: "pod".into(),
                    namespace: "shop".into(),
                    pod: "api-0".into(),
                    workload_name: "api".into(),
                    ..Identity::default()
                }),
                ..Peer::default()
            }),
            protocol: "tcp".into(),
            interface: "eth0".into(),
        }
    }

    #[test]
    fn sources_are_addresses_networks_or_names() {
        let range = |text: &str| {
            address_range(text).map(|range| {
                range.map(|(low, high)| {
                    (
                        std::net::Ipv6Addr::from(low).to_string(),
                        std::net::Ipv6Addr::from(high).to_string(),
                    )
                })
            })
        };
        let pair = |low: &str, high: &str| Ok(Some((low.to_owned(), high.to_owned())));
        assert_eq!(
            range("198.18.0.7"),
            pair("::ffff:198.18.0.7", "::ffff:198.18.0.7")
        );
        assert_eq!(
            range("198.18.3.4/15"),
            pair("::ffff:198.18.0.0", "::ffff:198.19.255.255")
        );
        assert_eq!(
            range("0.0.0.0/0"),
            pair("::ffff:0.0.0.0", "::ffff:255.255.255.255")
        );
        assert_eq!(
            range("fd00:198:18::1/48"),
            pair("fd00:198:18::", "fd00:198:18:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            range("::/0"),
            pair("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(range("Acme Corp"), Ok(None));
        assert_eq!(range(""), Ok(None));
        assert_eq!(
            range("198.18.0.0/33"),
            Err(NetworkError::Prefix {
                prefix: "33".into(),
                max: 32
            })
        );
        assert_eq!(
            range("fd00::/129"),
            Err(NetworkError::Prefix {
                prefix: "129".into(),
                max: 128
            })
        );
        assert_eq!(
            range("10.0.0.0/x"),
            Err(NetworkError::Prefix {
                prefix: "x".into(),
                max: 32
            })
        );
        assert_eq!(range("shop/api"), Err(NetworkError::Address("shop".into())));
    }

    proptest::proptest! {
        /// An address is in every network of it, and an address that differs from it in a bit
        /// of the network's prefix is not.
        #[test]
        fn an_address_is_in_its_networks_and_only_there(
            address: u32,
            prefix in 1u8..=32,
            flipped in 0u8..32,
        ) {
            let ip = std::net::Ipv4Addr::from(address);
            let (low, high) = address_range(&format!("{ip}/{prefix}"))
                .expect("valid")
                .expect("a network");
            let inside = |ip: std::net::Ipv4Addr| {
                let bytes = address_bytes(IpAddr::V4(ip));
                low <= bytes && bytes <= high
            };
            proptest::prop_assert!(inside(ip));
            let bit = flipped % prefix;
            let other = std::net::Ipv4Addr::from(address ^ (1 << (31 - u32::from(bit))));
            proptest::prop_assert!(!inside(other), "{other} in {ip}/{prefix}");
            let host_bits = 32 - u32::from(prefix);
            let size = u128::from_be_bytes(high) - u128::from_be_bytes(low) + 1;
            proptest::prop_assert_eq!(size, 1u128 << host_bits);
        }
    }

    fn drop_sequences(drops: &[moat_api::v1::Drop]) -> Vec<u64> {
        drops
            .iter()
            .map(|drop| drop.id.as_ref().map_or(0, |id| id.sequence))
            .collect()
    }

    fn drops_filter_by_time_reason_rule_source_network_and_either_end(backend: &Backend) {
        let store = &*backend.store;
        let drops = [
            drop_record(1, 10, "rule", "deny-udp-7777", "198.18.0.5", ""),
            drop_record(2, 20, "timed_block", "", "198.19.1.7", "Acme Corp"),
            drop_record(3, 20, "rule", "deny-udp-7777", "fd00:198:18::5", ""),
            drop_record(4, 30, "blocklist", "", "203.0.113.9", ""),
            drop_record(5, 40, "rate_limit", "api-flood", "198.18.0.5", ""),
        ];
        let batch: Vec<record::Kind> = drops.iter().cloned().map(record::Kind::Drop).collect();
        assert_eq!(store.insert(&batch).expect("insert").accepted, 5);
        assert_eq!(store.insert(&batch).expect("resend").duplicates, 5);
        let list = |filter: DropFilter| {
            let (drops, next) = store.list_drops(&filter, 10, "").expect("list");
            assert_eq!(next, "", "one page holds them all");
            drop_sequences(&drops)
        };
        assert_eq!(
            list(DropFilter::default()),
            vec![5, 4, 3, 2, 1],
            "newest first, the later stored first among equal times"
        );
        let (first, _) = store
            .list_drops(&DropFilter::default(), 1, "")
            .expect("list");
        assert_eq!(first[0], drops[4], "the record comes back whole");
        assert_eq!(
            list(DropFilter {
                since_unix_nanos: 20,
                until_unix_nanos: 40,
                ..DropFilter::default()
            }),
            vec![4, 3, 2],
            "since inclusive, until exclusive"
        );
        let reason = |reason: &str| DropFilter {
            reason: reason.into(),
            ..DropFilter::default()
        };
        assert_eq!(list(reason("rule")), vec![3, 1]);
        assert_eq!(list(reason("timed_block")), vec![2]);
        let rule = |rule: &str| DropFilter {
            rule: rule.into(),
            ..DropFilter::default()
        };
        assert_eq!(list(rule("deny-udp-7777")), vec![3, 1]);
        assert_eq!(
            list(rule("deny-udp")),
            Vec::<u64>::new(),
            "rules match whole"
        );
        let source = |source: &str| DropFilter {
            source: source.into(),
            ..DropFilter::default()
        };
        assert_eq!(list(source("198.18.0.5")), vec![5, 1], "an address");
        assert_eq!(list(source("198.18.0.5/32")), vec![5, 1]);
        assert_eq!(
            list(source("198.18.0.0/15")),
            vec![5, 2, 1],
            "a network holds 198.18.0.0 to 198.19.255.255"
        );
        assert_eq!(list(source("198.18.0.0/16")), vec![5, 1]);
        assert_eq!(
            list(source("198.18.0.1/16")),
            vec![5, 1],
            "host bits ignored"
        );
        assert_eq!(list(source("fd00:198:18::/48")), vec![3], "IPv6 too");
        assert_eq!(
            list(source("::ffff:198.18.0.0/112")),
            vec![5, 1],
            "IPv4 is mapped into IPv6"
        );
        assert_eq!(
            list(source("0.0.0.0/0")),
            vec![5, 4, 2, 1],
            "every IPv4 address"
        );
        assert_eq!(list(source("Acme Corp")), vec![2], "a customer's name");
        assert_eq!(list(source("partners")), vec![2], "a range's name");
        assert_eq!(
            list(source("198.18.0")),
            Vec::<u64>::new(),
            "names match whole"
        );
        assert_eq!(
            list(source("198.18.0.0/99")),
            Vec::<u64>::new(),
            "no network: nothing (the service refuses it first)"
        );
        assert_eq!(
            list(DropFilter {
                namespace: "shop".into(),
                workload: "api".into(),
                reason: "rule".into(),
                ..DropFilter::default()
            }),
            vec![3, 1],
            "the destination's namespace and workload"
        );
        assert_eq!(
            list(DropFilter {
                workload: "ap%".into(),
                ..DropFilter::default()
            }),
            Vec::<u64>::new(),
            "`%` is not a wildcard"
        );

        let (page, next) = store
            .list_drops(&DropFilter::default(), 2, "")
            .expect("page");
        assert_eq!(drop_sequences(&page), vec![5, 4]);
        let (page, next) = store
            .list_drops(&DropFilter::default(), 2, &next)
            .expect("page 2");
        assert_eq!(
            drop_sequences(&page),
            vec![3, 2],
            "two drops at one time stay on one page"
        );
        let (page, last) = store
            .list_drops(&DropFilter::default(), 2, &next)
            .expect("page 3");
        assert_eq!((drop_sequences(&page), last.as_str()), (vec![1], ""));
        assert!(matches!(
            store.list_drops(&DropFilter::default(), 2, "yesterday"),
            Err(StoreError::BadCursor(_))
        ));

        assert_eq!(
            store.enforce_retention(keep_after(25)).expect("retention"),
            3
        );
        assert_eq!(list(DropFilter::default()), vec![5, 4]);
    }

    /// Runs `statements` (the old `drops` table, and a drop stored in it) on the backend's
    /// database directly, with `record` as parameter 1 of the last.
    fn run_directly(backend: &Backend, statements: &[&str], record: &[u8]) {
        let (last, setup) = statements.split_last().expect("a statement");
        if let Some(file) = &backend.file {
            let connection = rusqlite::Connection::open(file).expect("open SQLite");
            for statement in setup {
                connection.execute_batch(statement).expect("set up");
            }
            connection.execute(last, [record]).expect("insert");
        } else {
            let mut client =
                ::postgres::Client::connect(&backend.address, ::postgres::NoTls).expect("connect");
            for statement in setup {
                client.batch_execute(statement).expect("set up");
            }
            client.execute(*last, &[&record]).expect("insert");
        }
    }

    fn drops_an_older_collector_stored_are_filled_in_and_found(backend: &Backend) {
        let (integer, bytes) = if backend.file.is_some() {
            ("INTEGER", "BLOB")
        } else {
            ("BIGINT", "BYTEA")
        };
        let old = drop_record(1, 10, "timed_block", "", "198.18.0.5", "Acme Corp");
        run_directly(
            backend,
            &[
                "DROP TABLE drops",
                &format!(
                    "CREATE TABLE drops (node TEXT NOT NULL, boot {integer} NOT NULL,
                                         sequence {integer} NOT NULL, time {integer} NOT NULL,
                                         record {bytes} NOT NULL,
                                         PRIMARY KEY (node, boot, sequence))"
                ),
                &format!(
                    "INSERT INTO drops (node, boot, sequence, time, record)
                     VALUES ('node-a', 3, 1, 10, {})",
                    if backend.file.is_some() { "?1" } else { "$1" }
                ),
            ],
            &old.encode_to_vec(),
        );
        let store = open(&backend.address, None).expect("open the older database");
        store
            .insert(&[record::Kind::Drop(drop_record(
                2,
                20,
                "rule",
                "deny-udp-7777",
                "198.18.0.6",
                "",
            ))])
            .expect("insert after the upgrade");
        let list = |filter: DropFilter| {
            let (drops, _) = store.list_drops(&filter, 10, "").expect("list");
            drop_sequences(&drops)
        };
        assert_eq!(list(DropFilter::default()), vec![2, 1]);
        let filtered = |reason: &str, source: &str| DropFilter {
            reason: reason.into(),
            source: source.into(),
            ..DropFilter::default()
        };
        assert_eq!(list(filtered("timed_block", "198.18.0.0/15")), vec![1]);
        assert_eq!(list(filtered("", "Acme Corp")), vec![1]);
        assert_eq!(list(filtered("rule", "198.18.0.6")), vec![2]);
        let again = open(&backend.address, None).expect("open once more: nothing left to do");
        let (drops, _) = again
            .list_drops(&DropFilter::default(), 10, "")
            .expect("list");
        assert_eq!(drops.len(), 2);
    }

    fn agents_are_kept_per_boot_with_their_latest_status(backend: &Backend) {
        let store = &*backend.store;
        let status = |boot: u64, depth: u64| AgentStatus {
            node: "node-a".into(),
            boot,
            version: "0.1.0".into(),
            queue_depth: depth,
            ..AgentStatus::default()
        };
        store.note_agent(&status(1, 5), 10, 100).expect("note");
        store.note_agent(&status(1, 7), 3, 200).expect("note");
        store
            .note_agent(&status(1, 9), 2, 150)
            .expect("a late batch from another replica");
        store
            .note_agent(&status(2, 0), 1, 300)
            .expect("a restarted agent");
        let mut agents = store.agents().expect("agents");
        agents.sort_by_key(|agent| agent.status.as_ref().map(|status| status.boot));
        let summary: Vec<(u64, i64, u64, u64)> = agents
            .iter()
            .map(|agent| {
                let status = agent.status.clone().unwrap_or_default();
                (
                    status.boot,
                    agent.last_seen_unix_nanos,
                    agent.records_stored,
                    status.queue_depth,
                )
            })
            .collect();
        assert_eq!(summary, vec![(1, 200, 15, 7), (2, 300, 1, 0)]);
        assert_eq!(
            store.enforce_retention(keep_after(250)).expect("retention"),
            1
        );
        assert_eq!(store.agents().expect("agents").len(), 1);
    }

    fn inventory_record(node: &str, time: i64, pods: u32, cidr: &str) -> record::Kind {
        record::Kind::Inventory(Inventory {
            id: Some(RecordId {
                node: node.into(),
                boot: 1,
                sequence: time as u64,
            }),
            time_unix_nanos: time,
            cluster: "prod".into(),
            ranges: vec![moat_api::v1::InventoryRange {
                name: "pods".into(),
                kind: "pod-network".into(),
                cidrs: vec![cidr.into()],
                learned: true,
            }],
            workloads: vec![moat_api::v1::InventoryWorkload {
                namespace: "shop".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                pods,
                services: vec![format!("web-{node}")],
            }],
        })
    }

    fn the_inventory_is_each_nodes_latest_merged(backend: &Backend) {
        let store = &*backend.store;
        store
            .insert(&[
                inventory_record("node-a", 10, 1, "10.1.0.0/24"),
                inventory_record("node-a", 20, 2, "10.1.0.0/24"),
                inventory_record("node-b", 15, 3, "10.2.0.0/24"),
            ])
            .expect("insert");
        store
            .insert(&[inventory_record("node-a", 5, 9, "10.9.0.0/24")])
            .expect("an older one resent");
        let merged = merge_inventories(store.inventories().expect("read"), "");
        let nodes: Vec<(&str, i64)> = merged
            .nodes
            .iter()
            .map(|node| (node.node.as_str(), node.reported_unix_nanos))
            .collect();
        assert_eq!(nodes, vec![("node-a", 20), ("node-b", 15)]);
        assert_eq!(merged.ranges.len(), 1);
        assert_eq!(merged.ranges[0].cidrs, vec!["10.1.0.0/24", "10.2.0.0/24"]);
        assert_eq!(merged.workloads.len(), 1);
        assert_eq!(merged.workloads[0].pods, 5, "each node's pods, summed");
        assert_eq!(
            merged.workloads[0].services,
            vec!["web-node-a", "web-node-b"]
        );
        assert!(
            merge_inventories(store.inventories().expect("read"), "lab")
                .workloads
                .is_empty()
        );
    }

    fn finding(
        sequence: u64,
        time: i64,
        kind: &str,
        severity: &str,
        service: &str,
        source: &str,
    ) -> record::Kind {
        let peer = |ip: &str, namespace: &str, workload: &str| Peer {
            ip: ip.into(),
            identity: Some(Identity {
                cluster: "prod".into(),
                namespace: namespace.into(),
                workload_name: workload.into(),
                ..Identity::default()
            }),
            ..Peer::default()
        };
        record::Kind::Finding(Finding {
            id: Some(RecordId {
                node: "node-a".into(),
                boot: 7,
                sequence,
            }),
            time_unix_nanos: time,
            kind: kind.into(),
            severity: severity.into(),
            service: service.into(),
            method: "GET".into(),
            endpoint: "/pets/{id}".into(),
            source: Some(peer(source, "web", "frontend")),
            destination: Some(peer("10.0.0.9", "shop", service)),
            ..Finding::default()
        })
    }

    fn finding_sequences(findings: &[Finding]) -> Vec<u64> {
        findings
            .iter()
            .map(|finding| finding.id.as_ref().map_or(0, |id| id.sequence))
            .collect()
    }

    fn findings_filter_by_severity_kind_service_source_and_either_end(backend: &Backend) {
        let store = &*backend.store;
        let batch = vec![
            finding(1, 10, "inventory.new_endpoint", "info", "pets", "10.1.0.1"),
            finding(2, 20, "spec.invalid_parameter", "low", "pets", "10.1.0.2"),
            finding(
                3,
                30,
                "spec.undocumented_endpoint",
                "high",
                "orders",
                "10.1.0.1",
            ),
            finding(4, 40, "policy.blocked", "medium", "pets", "10.1.0_1"),
        ];
        assert_eq!(store.insert(&batch).expect("insert").accepted, 4);
        assert_eq!(store.insert(&batch).expect("resend").duplicates, 4);
        let list = |filter: FindingFilter| {
            let (findings, _) = store.list_findings(&filter, 10, "").expect("list");
            finding_sequences(&findings)
        };
        assert_eq!(list(FindingFilter::default()), vec![4, 3, 2, 1]);
        let at_least = |severity: &str| FindingFilter {
            min_severity: severity.into(),
            ..FindingFilter::default()
        };
        assert_eq!(list(at_least("medium")), vec![4, 3]);
        assert_eq!(list(at_least("low")), vec![4, 3, 2]);
        let kind = |kind: &str| FindingFilter {
            kind: kind.into(),
            ..FindingFilter::default()
        };
        assert_eq!(list(kind("spec.")), vec![3, 2], "a family ends in a dot");
        assert_eq!(list(kind("spec.invalid_parameter")), vec![2]);
        assert_eq!(
            list(kind("spec")),
            Vec::<u64>::new(),
            "not a prefix match without the dot"
        );
        let service = FindingFilter {
            service: "orders".into(),
            ..FindingFilter::default()
        };
        assert_eq!(list(service), vec![3]);
        let source = |source: &str| FindingFilter {
            source: source.into(),
            ..FindingFilter::default()
        };
        assert_eq!(
            list(source("10.1.0.1")),
            vec![3, 1],
            "`_` is not a wildcard"
        );
        assert_eq!(list(source("frontend")), vec![4, 3, 2, 1]);
        let namespace = FindingFilter {
            namespace: "shop".into(),
            ..FindingFilter::default()
        };
        assert_eq!(
            list(namespace),
            vec![4, 3, 2, 1],
            "the destination's namespace"
        );
        let endpoint = FindingFilter {
            endpoint: "/orders".into(),
            ..FindingFilter::default()
        };
        assert_eq!(list(endpoint), Vec::<u64>::new());
        let (page, next) = store
            .list_findings(&FindingFilter::default(), 3, "")
            .expect("page");
        assert_eq!(finding_sequences(&page), vec![4, 3, 2]);
        let (rest, last) = store
            .list_findings(&FindingFilter::default(), 3, &next)
            .expect("next page");
        assert_eq!((finding_sequences(&rest), last.as_str()), (vec![1], ""));
        let removed = store.enforce_retention(keep_after(25)).expect("retention");
        assert_eq!(removed, 2);
        assert_eq!(list(FindingFilter::default()), vec![4, 3]);
    }

    fn finding_followers_get_new_findings_in_order(backend: &Backend) {
        let store = &*backend.store;
        store
            .insert(&[finding(
                1,
                10,
                "spec.missing_header",
                "low",
                "pets",
                "10.1.0.1",
            )])
            .expect("insert");
        let start = store.last_finding_position().expect("position");
        store
            .insert(&[
                finding(2, 50, "spec.missing_header", "low", "pets", "10.1.0.1"),
                finding(3, 40, "inventory.new_caller", "info", "pets", "10.1.0.1"),
                finding(
                    4,
                    30,
                    "spec.invalid_request_body",
                    "medium",
                    "pets",
                    "10.1.0.1",
                ),
            ])
            .expect("insert");
        let spec = FindingFilter {
            kind: "spec.".into(),
            ..FindingFilter::default()
        };
        let found: Vec<Finding> = store
            .findings_after(&spec, start, 10)
            .expect("follow")
            .into_iter()
            .map(|(_, finding)| finding)
            .collect();
        assert_eq!(
            finding_sequences(&found),
            vec![2, 4],
            "stored order, matching only"
        );
    }

    fn endpoint_record(
        node: &str,
        boot: u64,
        sequence: u64,
        time: i64,
        calls: u64,
        caller: &str,
    ) -> record::Kind {
        let learned = intelligence::learn::Learned {
            calls,
            responses: [(200, intelligence::learn::ResponseShape::default())].into(),
            ..Default::default()
        };
        record::Kind::Endpoint(Endpoint {
            id: Some(RecordId {
                node: node.into(),
                boot,
                sequence,
            }),
            time_unix_nanos: time,
            service: "pets".into(),
            method: "GET".into(),
            endpoint: "/pets/{id}".into(),
            first_seen_unix: time,
            last_seen_unix: time,
            calls,
            latency_p99_us: calls * 10,
            auth: vec!["bearer".into()],
            callers: vec![EndpointCaller {
                caller: caller.into(),
                calls,
                first_seen_unix: time,
                last_seen_unix: time,
                ..EndpointCaller::default()
            }],
            learned_json: serde_json::to_string(&learned).expect("serializes"),
            ..Endpoint::default()
        })
    }

    fn endpoints_keep_each_boots_latest_and_merge_across_agents(backend: &Backend) {
        let store = &*backend.store;
        store
            .insert(&[
                endpoint_record("node-a", 1, 1, 100, 5, "web"),
                endpoint_record("node-a", 1, 2, 200, 9, "web"),
                endpoint_record("node-b", 1, 1, 150, 4, "batch"),
            ])
            .expect("insert");
        // An older record resent after a newer one changes nothing.
        store
            .insert(&[endpoint_record("node-a", 1, 1, 100, 5, "web")])
            .expect("resend");
        // A restarted agent counts afresh.
        store
            .insert(&[endpoint_record("node-a", 2, 1, 300, 1, "web")])
            .expect("after restart");
        let rows = store.endpoint_rows("pets").expect("rows");
        assert_eq!(rows.len(), 3, "one per agent boot");
        assert!(store.endpoint_rows("other").expect("rows").is_empty());
        let merged = merge_endpoints(rows);
        assert_eq!(merged.len(), 1);
        let total = &merged[0];
        assert_eq!(total.calls, 9 + 4 + 1);
        assert_eq!((total.first_seen_unix, total.last_seen_unix), (150, 300));
        assert_eq!(total.latency_p99_us, 90, "the highest any agent reported");
        let callers: Vec<(&str, u64)> = total
            .callers
            .iter()
            .map(|caller| (caller.caller.as_str(), caller.calls))
            .collect();
        assert_eq!(callers, vec![("web", 10), ("batch", 4)]);
        let learned: intelligence::learn::Learned =
            serde_json::from_str(&total.learned_json).expect("learned shapes");
        assert_eq!(learned.calls, 14);
    }

    /// Node `node`'s flow of emails out of `/users/{id}` to `caller` of namespace `shop`.
    fn data_flow(
        (node, boot, sequence): (&str, u64, u64),
        time: i64,
        calls: u64,
        caller: &str,
        encrypted: bool,
    ) -> DataFlow {
        DataFlow {
            id: Some(RecordId {
                node: node.into(),
                boot,
                sequence,
            }),
            time_unix_nanos: time,
            service: "accounts".into(),
            method: "GET".into(),
            endpoint: "/users/{id}".into(),
            direction: "out".into(),
            data_class: "pii".into(),
            kind: "data.email".into(),
            counterpart: Some(moat_api::v1::DataFlowCounterpart {
                label: format!("shop/{caller}"),
                namespace: "shop".into(),
                workload: caller.into(),
                ..moat_api::v1::DataFlowCounterpart::default()
            }),
            encrypted,
            calls,
            values: calls * 2,
            first_seen_unix: time,
            last_seen_unix: time,
        }
    }

    fn data_flows_keep_each_boots_latest_merge_across_agents_and_filter(backend: &Backend) {
        let store = &*backend.store;
        let card_in = DataFlow {
            direction: "in".into(),
            data_class: "financial".into(),
            kind: "data.payment_card".into(),
            endpoint: "/payments".into(),
            counterpart: Some(moat_api::v1::DataFlowCounterpart {
                label: "customer/acme".into(),
                range: "partners".into(),
                customer: "acme".into(),
                ..moat_api::v1::DataFlowCounterpart::default()
            }),
            ..data_flow(("node-b", 1, 9), 400, 3, "", false)
        };
        store
            .insert(
                &[
                    data_flow(("node-a", 1, 1), 100, 5, "web", false),
                    data_flow(("node-a", 1, 2), 200, 9, "web", false),
                    data_flow(("node-b", 1, 1), 150, 4, "web", false),
                    data_flow(("node-b", 1, 2), 160, 1, "web", true),
                    data_flow(("node-a", 2, 1), 300, 1, "web", false),
                    card_in,
                ]
                .map(record::Kind::DataFlow),
            )
            .expect("insert");
        let resent = store
            .insert(&[record::Kind::DataFlow(data_flow(
                ("node-a", 1, 1),
                100,
                5,
                "web",
                false,
            ))])
            .expect("an older record resent");
        assert_eq!(resent.duplicates, 1, "changes nothing");
        let list = |filter: DataFlowFilter| {
            let (rows, incomplete) = store.data_flow_rows(&filter).expect("rows");
            assert!(!incomplete);
            merge_data_flows(rows, 100).0
        };
        let all = list(DataFlowFilter::default());
        let summary: Vec<(&str, &str, bool, u64, u64, i64, i64)> = all
            .iter()
            .map(|flow| {
                (
                    flow.endpoint.as_str(),
                    flow.counterpart
                        .as_ref()
                        .map_or("", |who| who.label.as_str()),
                    flow.encrypted,
                    flow.calls,
                    flow.values,
                    flow.first_seen_unix,
                    flow.last_seen_unix,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/payments", "customer/acme", false, 3, 6, 400, 400),
                ("/users/{id}", "shop/web", true, 1, 2, 160, 160),
                (
                    "/users/{id}",
                    "shop/web",
                    false,
                    9 + 4 + 1,
                    (9 + 4 + 1) * 2,
                    150,
                    300
                ),
            ],
            "each boot's latest, summed over agents and restarts"
        );
        assert!(all.iter().all(|flow| flow.id.is_none()));
        let endpoints = |filter: DataFlowFilter| -> Vec<String> {
            list(filter)
                .into_iter()
                .map(|flow| format!("{} {}", flow.endpoint, flow.encrypted))
                .collect()
        };
        let by = |filter: DataFlowFilter| endpoints(filter).len();
        assert_eq!(
            by(DataFlowFilter {
                data_class: "pii".into(),
                ..DataFlowFilter::default()
            }),
            2
        );
        assert_eq!(
            endpoints(DataFlowFilter {
                plaintext_only: true,
                endpoint: "/users".into(),
                ..DataFlowFilter::default()
            }),
            vec!["/users/{id} false"]
        );
        assert_eq!(
            endpoints(DataFlowFilter {
                direction: "in".into(),
                kind: "data.".into(),
                customer: "acme".into(),
                range: "partners".into(),
                ..DataFlowFilter::default()
            }),
            vec!["/payments false"],
            "a kind's family, the counterpart's range and customer"
        );
        for filter in [
            DataFlowFilter {
                kind: "data".into(),
                ..DataFlowFilter::default()
            },
            DataFlowFilter {
                namespace: "sho".into(),
                ..DataFlowFilter::default()
            },
            DataFlowFilter {
                workload: "web".into(),
                service: "payments".into(),
                ..DataFlowFilter::default()
            },
        ] {
            assert_eq!(by(filter.clone()), 0, "{filter:?}");
        }
        assert_eq!(
            by(DataFlowFilter {
                namespace: "shop".into(),
                workload: "web".into(),
                ..DataFlowFilter::default()
            }),
            2
        );
        assert_eq!(
            by(DataFlowFilter {
                since_unix_nanos: 250,
                ..DataFlowFilter::default()
            }),
            2,
            "what agents reported since"
        );
        let (first, more) = merge_data_flows(
            store
                .data_flow_rows(&DataFlowFilter::default())
                .expect("rows")
                .0,
            1,
        );
        assert_eq!((first.len(), more), (1, 2));
        assert_eq!(
            store.enforce_retention(keep_after(250)).expect("retention"),
            3,
            "flows of boots that have not reported since go"
        );
        assert_eq!(by(DataFlowFilter::default()), 2);
    }

    fn call(
        sequence: u64,
        time: i64,
        namespace: &str,
        workload: &str,
        path: &str,
        status: u32,
    ) -> record::Kind {
        let peer = |namespace: &str, workload: &str| Peer {
            identity: Some(Identity {
                cluster: "prod".into(),
                namespace: namespace.into(),
                workload_name: workload.into(),
                tags: vec![Tag {
                    name: "team".into(),
                    value: format!("team-{workload}"),
                }],
                ..Identity::default()
            }),
            ..Peer::default()
        };
        record::Kind::Call(ApiCall {
            id: Some(RecordId {
                node: "node-a".into(),
                boot: 7,
                sequence,
            }),
            time_unix_nanos: time,
            client: Some(peer("edge", "gateway")),
            server: Some(peer(namespace, workload)),
            path: path.into(),
            status,
            ..ApiCall::default()
        })
    }

    fn sequences(calls: &[ApiCall]) -> Vec<u64> {
        calls
            .iter()
            .map(|call| call.id.as_ref().map_or(0, |id| id.sequence))
            .collect()
    }

    fn the_service_map_counts_calls_and_failures_per_caller_and_callee(backend: &Backend) {
        let store = &*backend.store;
        let batch: Vec<_> = (1..=6)
            .map(|n| {
                call(
                    n,
                    n as i64 * 60_000_000_000,
                    "shop",
                    if n <= 4 { "db" } else { "api" },
                    "/a",
                    if n == 2 { 503 } else { 200 },
                )
            })
            .collect();
        store.insert(&batch).expect("insert");
        let edges = store.service_map(0, 0).expect("map");
        let summary: Vec<(String, String, u64, u64)> = edges
            .iter()
            .map(|edge| {
                (
                    edge.client.clone(),
                    edge.server.clone(),
                    edge.calls,
                    edge.failed,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("edge/gateway".to_owned(), "shop/db".to_owned(), 4, 1),
                ("edge/gateway".to_owned(), "shop/api".to_owned(), 2, 0),
            ]
        );
        assert_eq!(
            store
                .service_map(5 * 60_000_000_000, 0)
                .expect("since minute 5")
                .len(),
            1
        );
    }

    fn connection(sequence: u64, time: i64, workload: &str, encryption: &str) -> record::Kind {
        let peer = |namespace: &str, workload: &str| Peer {
            identity: Some(Identity {
                namespace: namespace.into(),
                workload_name: workload.into(),
                ..Identity::default()
            }),
            ..Peer::default()
        };
        record::Kind::Connection(moat_api::v1::Connection {
            id: Some(RecordId {
                node: "node-a".into(),
                boot: 7,
                sequence,
            }),
            time_unix_nanos: time,
            client: Some(peer("edge", "gateway")),
            server: Some(peer("shop", workload)),
            protocol: if encryption == "plaintext" {
                "http1"
            } else {
                "tls"
            }
            .into(),
            encryption: encryption.into(),
            tls: None,
        })
    }

    fn the_service_map_shows_each_pairs_encryption_and_pairs_seen_only_in_tls(backend: &Backend) {
        let store = &*backend.store;
        let minute = 60_000_000_000;
        // shop/db: calls in clear and connections both in clear and in TLS; shop/vault: TLS only
        // (no calls: ciphertext); shop/api: calls but no connection seen starting.
        let mut batch = vec![
            call(1, minute, "shop", "db", "/a", 200),
            call(2, minute, "shop", "db", "/a", 200),
            call(3, minute, "shop", "api", "/a", 200),
        ];
        batch.extend([
            connection(10, minute, "db", "plaintext"),
            connection(11, minute, "db", "plaintext"),
            connection(12, minute, "db", "plaintext"),
            connection(13, minute, "db", "tls"),
            connection(14, minute, "vault", "mtls"),
            connection(15, 9 * minute, "vault", "mtls"),
        ]);
        let stored = store.insert(&batch).expect("insert");
        assert_eq!((stored.accepted, stored.duplicates), (9, 0));
        assert_eq!(
            store.insert(&batch[3..]).expect("insert again").duplicates,
            6,
            "a resent connection counts once"
        );
        let edges = store.service_map(0, 0).expect("map");
        let summary: Vec<(&str, u64, &str, EncryptionCounts)> = edges
            .iter()
            .map(|edge| {
                (
                    edge.server.as_str(),
                    edge.calls,
                    edge.connections.summary(),
                    edge.connections,
                )
            })
            .collect();
        let counts = |plaintext, tls, mtls| EncryptionCounts {
            plaintext,
            tls,
            mtls,
        };
        assert_eq!(
            summary,
            [
                ("shop/db", 2, "mixed", counts(3, 1, 0)),
                ("shop/api", 1, "unknown", counts(0, 0, 0)),
                ("shop/vault", 0, "mtls", counts(0, 0, 2)),
            ]
        );
        let late = store.service_map(5 * minute, 0).expect("since minute 5");
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].connections, counts(0, 0, 1));
        store
            .enforce_retention(keep_after(5 * minute))
            .expect("retention");
        let kept = store.service_map(0, 0).expect("map after retention");
        assert_eq!(kept.len(), 1, "old connections go with the other records");
        assert_eq!(kept[0].connections, counts(0, 0, 1));
    }

    #[test]
    fn endpoints_fold_identifiers() {
        assert_eq!(
            endpoint("/v1/orders/123/items/9"),
            "/v1/orders/{id}/items/{id}"
        );
        assert_eq!(
            endpoint("/users/3f2b8c1e-4d5a-4b6c-9e7f-0123456789ab"),
            "/users/{id}"
        );
        assert_eq!(endpoint("/blobs/deadbeefcafe0123"), "/blobs/{id}");
        assert_eq!(endpoint("/v2/catalogue/shoes"), "/v2/catalogue/shoes");
        assert_eq!(
            endpoint("/facade"),
            "/facade",
            "short hex-looking words stay"
        );
        assert_eq!(endpoint(""), "");
    }

    #[test]
    fn urls_in_errors_keep_no_password() {
        assert_eq!(
            redacted("postgres://moat:s3cret@db.example:5432/moat?password=x"),
            "postgres://moat:***@db.example:5432/moat"
        );
        assert_eq!(
            redacted("postgresql://moat@db/moat"),
            "postgresql://moat@db/moat"
        );
        assert_eq!(redacted("sqlite:moat.db"), "sqlite:moat.db");
        assert!(matches!(
            open("mysql://root:pw@db/moat", None),
            Err(StoreError::UnknownStore(store)) if store == "mysql://root:***@db/moat"
        ));
    }

    #[test]
    fn an_unreachable_postgres_is_named_without_its_password() {
        let error = open("postgres://moat:s3cret@127.0.0.1:1/moat", None)
            .err()
            .expect("nothing listens on port 1")
            .to_string();
        assert!(
            error.starts_with("store postgres://moat:***@127.0.0.1:1/moat: cannot connect"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
        assert!(error.contains("pg_hba.conf"), "says what to check: {error}");
    }

    fn per_minute_aggregates_count_each_call_once(backend: &Backend) {
        let store = &*backend.store;
        let minute = 60_000_000_000;
        let batch: Vec<_> = (1..=4)
            .map(|n| {
                call(
                    n,
                    minute * 10 + n as i64,
                    "shop",
                    "db",
                    &format!("/orders/{n}"),
                    if n == 4 { 503 } else { 200 },
                )
            })
            .collect();
        store.insert(&batch).expect("insert");
        store.insert(&batch).expect("a resend");
        store.insert(&batch[..2]).expect("a partial resend");
        let totals = |calls| MinuteTotals {
            calls,
            failed: 1,
            server_errors: 1,
            endpoints: 1,
        };
        assert_eq!(store.minute_totals().expect("aggregates"), totals(4));
        let later: Vec<_> = (5..=6)
            .map(|n| call(n, minute * 10 + n as i64, "shop", "db", "/orders/9", 200))
            .collect();
        store.insert(&later).expect("insert");
        assert_eq!(store.minute_totals().expect("aggregates"), totals(6));
        // Retention also compacts PostgreSQL's aggregates: the same sums, in fewer rows.
        store.enforce_retention(keep_after(0)).expect("retention");
        assert_eq!(store.minute_totals().expect("aggregates"), totals(6));
        store
            .insert(&[call(7, minute * 10 + 7, "shop", "db", "/orders/7", 200)])
            .expect("a late call");
        store.enforce_retention(keep_after(0)).expect("retention");
        assert_eq!(store.minute_totals().expect("aggregates"), totals(7));
        let edges = store.service_map(0, 0).expect("map");
        assert_eq!(
            (edges.len(), edges[0].calls, edges[0].failed),
            (1, 7, 1),
            "{edges:?}"
        );
    }

    fn retention_removes_what_is_too_old_then_the_oldest_past_the_cap(backend: &Backend) {
        let store = &*backend.store;
        let batch: Vec<_> = (1..=10)
            .map(|n| call(n, n as i64 * 100, "shop", "db", "/a", 200))
            .collect();
        store.insert(&batch).expect("insert");
        assert_eq!(store.enforce_retention(keep_after(300)).expect("by age"), 2);
        let by_count = Retention {
            max_calls: 5,
            ..keep_after(0)
        };
        assert_eq!(store.enforce_retention(by_count).expect("by count"), 3);
        let (calls, _) = store
            .list_calls(&CallFilter::default(), 100, "")
            .expect("list");
        assert_eq!(sequences(&calls), vec![10, 9, 8, 7, 6]);
        // Calls of one size: a cap of three of them keeps the newest three.
        let size = calls[0].encoded_len() as u64;
        assert!(calls.iter().all(|call| call.encoded_len() as u64 == size));
        let by_bytes = Retention {
            max_call_bytes: size * 3,
            ..keep_after(0)
        };
        assert_eq!(store.enforce_retention(by_bytes).expect("by bytes"), 2);
        let (calls, _) = store
            .list_calls(&CallFilter::default(), 100, "")
            .expect("list");
        assert_eq!(sequences(&calls), vec![10, 9, 8]);
    }

    /// Retention by age alone.
    fn keep_after(oldest: i64) -> Retention {
        Retention {
            oldest,
            max_calls: u64::MAX,
            max_call_bytes: u64::MAX,
        }
    }

    #[test]
    fn the_byte_cap_takes_enough_of_the_oldest_calls() {
        let retention = Retention {
            oldest: 0,
            max_calls: u64::MAX,
            max_call_bytes: 1000,
        };
        assert_eq!(retention.excess_calls(10, 100.0), 0);
        assert_eq!(retention.excess_calls(11, 100.0), 1);
        assert_eq!(
            retention.excess_calls(20, 150.0),
            14,
            "ceil((3000 - 1000) / 150)"
        );
        assert_eq!(retention.excess_calls(0, 0.0), 0);
        let both = Retention {
            max_calls: 3,
            ..retention
        };
        assert_eq!(both.excess_calls(8, 100.0), 5, "the stricter cap wins");
    }

    fn a_resent_batch_is_counted_as_duplicates_and_stored_once(backend: &Backend) {
        let store = &*backend.store;
        let batch = vec![
            call(1, 10, "shop", "db", "/a", 200),
            call(2, 20, "shop", "db", "/b", 200),
        ];
        assert_eq!(
            store.insert(&batch).expect("insert"),
            Stored {
                accepted: 2,
                duplicates: 0
            }
        );
        assert_eq!(
            store.insert(&batch).expect("insert"),
            Stored {
                accepted: 0,
                duplicates: 2
            }
        );
        let within = vec![
            call(3, 30, "shop", "db", "/c", 200),
            call(3, 30, "shop", "db", "/c", 200),
            call(2, 20, "shop", "db", "/b", 200),
        ];
        assert_eq!(
            store.insert(&within).expect("insert"),
            Stored {
                accepted: 1,
                duplicates: 2
            },
            "the same record twice in one batch"
        );
        let (calls, next) = store
            .list_calls(&CallFilter::default(), 10, "")
            .expect("list");
        assert_eq!(sequences(&calls), vec![3, 2, 1]);
        assert!(next.is_empty());
    }

    fn filters_match_either_end_and_pages_follow_the_cursor(backend: &Backend) {
        let store = &*backend.store;
        let batch: Vec<_> = (1..=25)
            .map(|n| {
                call(
                    n,
                    n as i64 * 10,
                    if n % 2 == 0 { "shop" } else { "lab" },
                    if n % 5 == 0 { "api" } else { "db" },
                    &format!("/v1/items/{n}"),
                    if n % 10 == 0 { 503 } else { 200 },
                )
            })
            .collect();
        store.insert(&batch).expect("insert");
        let list = |filter: CallFilter| store.list_calls(&filter, 1000, "").expect("list").0;
        assert_eq!(
            list(CallFilter {
                namespace: "shop".into(),
                ..CallFilter::default()
            })
            .len(),
            12
        );
        assert_eq!(
            list(CallFilter {
                namespace: "edge".into(),
                ..CallFilter::default()
            })
            .len(),
            25,
            "the client end counts"
        );
        assert_eq!(
            sequences(&list(CallFilter {
                workload: "api".into(),
                ..CallFilter::default()
            })),
            vec![25, 20, 15, 10, 5]
        );
        assert_eq!(
            sequences(&list(CallFilter {
                min_status: 500,
                ..CallFilter::default()
            })),
            vec![20, 10]
        );
        assert_eq!(
            sequences(&list(CallFilter {
                since_unix_nanos: 200,
                until_unix_nanos: 230,
                ..CallFilter::default()
            })),
            vec![22, 21, 20]
        );
        assert_eq!(
            list(CallFilter {
                path_prefix: "/v1/items/1".into(),
                ..CallFilter::default()
            })
            .len(),
            11
        );
        assert_eq!(
            list(CallFilter {
                tag: "team=team-api".into(),
                ..CallFilter::default()
            })
            .len(),
            5
        );
        assert_eq!(
            list(CallFilter {
                cluster: "staging".into(),
                ..CallFilter::default()
            })
            .len(),
            0
        );
        assert_eq!(
            list(CallFilter {
                namespace: "sho".into(),
                ..CallFilter::default()
            })
            .len(),
            0,
            "whole names only"
        );
        assert_eq!(
            list(CallFilter {
                namespace: "sho_".into(),
                ..CallFilter::default()
            })
            .len(),
            0,
            "no wildcards"
        );
        assert_eq!(
            list(CallFilter {
                tag: "team=%".into(),
                ..CallFilter::default()
            })
            .len(),
            0,
            "no wildcards"
        );

        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let (calls, next) = store
                .list_calls(&CallFilter::default(), 10, &cursor)
                .expect("page");
            seen.extend(sequences(&calls));
            if next.is_empty() {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen, (1..=25).rev().collect::<Vec<u64>>());
        assert!(matches!(
            store.list_calls(&CallFilter::default(), 10, "garbage"),
            Err(StoreError::BadCursor(_))
        ));
    }

    fn followers_get_what_was_stored_after_their_position_in_order(backend: &Backend) {
        let store = &*backend.store;
        store
            .insert(&[call(1, 10, "shop", "db", "/old", 200)])
            .expect("insert");
        let start = store.last_position().expect("position");
        assert!(
            store
                .calls_after(&CallFilter::default(), start, 10)
                .expect("nothing new")
                .is_empty()
        );
        let batch: Vec<_> = (2..=6)
            .map(|n| call(n, 100 - n as i64, "shop", "db", &format!("/new/{n}"), 200))
            .collect();
        store.insert(&batch).expect("insert");
        store
            .insert(&[call(7, 1, "lab", "db", "/new/7", 200)])
            .expect("insert");
        let shop = CallFilter {
            namespace: "shop".into(),
            ..CallFilter::default()
        };
        let first = store.calls_after(&shop, start, 3).expect("first read");
        let calls: Vec<ApiCall> = first.iter().map(|(_, call)| call.clone()).collect();
        assert_eq!(sequences(&calls), vec![2, 3, 4], "stored order, not time");
        let rest = store
            .calls_after(&shop, first[2].0, 10)
            .expect("second read");
        let calls: Vec<ApiCall> = rest.iter().map(|(_, call)| call.clone()).collect();
        assert_eq!(
            sequences(&calls),
            vec![5, 6],
            "matching only, from where it was"
        );
    }

    fn replicas_starting_at_once_share_one_schema(backend: &Backend) {
        backend
            .store
            .insert(&[call(1, 10, "shop", "db", "/a", 200)])
            .expect("insert");
        let replicas: Vec<_> = (0..4)
            .map(|_| {
                let address = backend.address.clone();
                std::thread::spawn(move || open(&address, None).expect("open again"))
            })
            .collect();
        for replica in replicas {
            let replica = replica.join().expect("opening thread");
            let (calls, _) = replica
                .list_calls(&CallFilter::default(), 10, "")
                .expect("list");
            assert_eq!(sequences(&calls), vec![1], "what the first one stored");
        }
    }
}
