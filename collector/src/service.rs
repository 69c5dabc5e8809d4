//! The gRPC services: Ingest (agents stream batches in, each acknowledged once stored) and Query.

use std::{
    collections::BTreeSet,
    pin::Pin,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use moat_api::v1::{
    ApiCall, ExportRequest, ExportResponse, Finding, GetAgentStatusRequest, GetAgentStatusResponse,
    GetInventoryRequest, GetInventoryResponse, GetServiceMapRequest, GetServiceMapResponse,
    ListCallsRequest, ListCallsResponse, ListDataFlowsRequest, ListDataFlowsResponse,
    ListDropsRequest, ListDropsResponse, ListEndpointsRequest, ListEndpointsResponse,
    ListFindingsRequest, ListFindingsResponse, ServiceMapEdge, WatchCallsRequest,
    WatchFindingsRequest, ingest_server::Ingest, query_server::Query,
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::{
    store::{
        DROP_REASONS, Position, Store, StoreError, address_range, merge_data_flows,
        merge_endpoints, merge_inventories,
    },
    validate,
};

pub type SharedStore = Arc<dyn Store>;

/// The agents (node, boot) with an export stream open on this collector; what else is known of
/// agents is in the store, shared by replicas.
pub type Agents = Arc<Mutex<BTreeSet<(String, u64)>>>;

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i64)
}

/// The gRPC status of a store error: a bad cursor is the caller's mistake, the rest ours.
fn status_of(error: StoreError) -> Status {
    match error {
        StoreError::BadCursor(cursor) => Status::invalid_argument(format!(
            "cursor {cursor:?} is not one this collector returned"
        )),
        error => Status::internal(error.to_string()),
    }
}

/// Runs `work` on the store on a blocking thread (both stores' calls block).
async fn with_store<T: Send + 'static>(
    store: &SharedStore,
    work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&*store))
        .await
        .map_err(|error| Status::internal(format!("store task: {error}")))?
        .map_err(status_of)
}

/// Data flows a query returns unless it asks for another number, and at most.
const DEFAULT_DATA_FLOWS: u32 = 100;
const MAX_DATA_FLOWS: u32 = 10_000;

/// A data flow's directions and classes, as filters name them.
const DIRECTIONS: [&str; 2] = ["in", "out"];
const DATA_CLASSES: [&str; 5] = ["pii", "secret", "financial", "health", "business"];

/// A filter's `field` is empty or one of `known`: a misspelt value is the caller's mistake to
/// hear about, not an empty answer.
fn check_one_of(field: &str, value: &str, known: &[&str]) -> Result<(), Status> {
    if value.is_empty() || known.contains(&value) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "{field} {value:?}: give one of {}",
            known.join(", ")
        )))
    }
}

pub struct IngestService {
    pub store: SharedStore,
    pub agents: Agents,
    /// mTLS: only agents with a certificate the client CA signed may ship.
    pub require_client_certificates: bool,
}

/// Acknowledgements waiting to be sent back on one stream; the agent sends a few batches ahead
/// at most, so a handful suffice.
const ACK_QUEUE: usize = 16;

#[tonic::async_trait]
impl Ingest for IngestService {
    type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportResponse, Status>> + Send>>;

    async fn export(
        &self,
        request: Request<Streaming<ExportRequest>>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        if self.require_client_certificates
            && request
                .peer_certs()
                .is_none_or(|certificates| certificates.is_empty())
        {
            return Err(Status::unauthenticated(
                "shipping records needs a client certificate signed by the collector's --tls-client-ca",
            ));
        }
        let mut inbound = request.into_inner();
        let store = self.store.clone();
        let agents = self.agents.clone();
        let (acks, outbound) = mpsc::channel(ACK_QUEUE);
        tokio::spawn(async move {
            let mut agent: Option<(String, u64)> = None;
            let disconnect = |agent: &Option<(String, u64)>| {
                if let Some(key) = agent {
                    agents
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .remove(key);
                }
            };
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => {
                        disconnect(&agent);
                        return;
                    }
                    // A malformed or oversized message: the agent learns why, the stream
                    // ends, and the collector carries on.
                    Err(status) => {
                        debug!(%status, "export stream ended");
                        disconnect(&agent);
                        let _ = acks.send(Err(status)).await;
                        return;
                    }
                };
                let status = batch.status.clone();
                let reply = with_store(&store, move |store| {
                    let status = batch.status.clone();
                    let reply = store_batch(store, batch)?;
                    if let Some(status) = &status {
                        store.note_agent(status, u64::from(reply.accepted), now_nanos())?;
                    }
                    Ok(reply)
                })
                .await;
                if let (Some(status), Ok(_)) = (status, &reply) {
                    let key = (status.node.clone(), status.boot);
                    agents
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(key.clone());
                    agent = Some(key);
                }
                let failed = reply.is_err();
                if acks.send(reply).await.is_err() || failed {
                    disconnect(&agent);
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }
}

fn store_batch(store: &dyn Store, batch: ExportRequest) -> Result<ExportResponse, StoreError> {
    let mut rejected = 0;
    let records: Vec<_> = batch
        .records
        .into_iter()
        .filter_map(|record| record.kind)
        .filter(|record| match validate::check(record) {
            Ok(()) => true,
            Err(refusal) => {
                warn!(?refusal, "record refused");
                rejected += 1;
                false
            }
        })
        .collect();
    let stored = store.insert(&records)?;
    Ok(ExportResponse {
        batch: batch.batch,
        accepted: stored.accepted,
        duplicates: stored.duplicates,
        rejected,
    })
}

pub struct QueryService {
    pub store: SharedStore,
    pub agents: Agents,
}

/// How often a follower looks for new calls: what follow mode adds to a call's delay, at most.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// Calls sent to one follower ahead of what it has read; a slow reader is waited for.
const FOLLOW_QUEUE: usize = 256;

/// An agent that shipped a batch to any replica this recently counts as connected: its stream
/// may be open on another replica.
const RECENTLY_SEEN: std::time::Duration = std::time::Duration::from_secs(60);

/// A page's size as asked, 100 when not.
fn page_size(asked: u32) -> u32 {
    if asked == 0 { 100 } else { asked }
}

/// Follow mode: what `fetch` finds after `start`, then after the last record sent, until the
/// follower goes away; a slow follower is waited for, a store error ends the stream with it.
fn follow<M, F>(
    store: SharedStore,
    start: Position,
    fetch: F,
) -> Pin<Box<dyn Stream<Item = Result<M, Status>> + Send>>
where
    M: Send + 'static,
    F: Fn(&dyn Store, Position) -> Result<Vec<(Position, M)>, StoreError>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let (records, outbound) = mpsc::channel(FOLLOW_QUEUE);
    tokio::spawn(async move {
        let mut after = start;
        while !records.is_closed() {
            let fetch = fetch.clone();
            let found = match with_store(&store, move |store| fetch(store, after)).await {
                Ok(found) => found,
                Err(status) => {
                    let _ = records.send(Err(status)).await;
                    return;
                }
            };
            let full = found.len() == FOLLOW_QUEUE;
            for (position, record) in found {
                after = position;
                if records.send(Ok(record)).await.is_err() {
                    return;
                }
            }
            if !full {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        }
    });
    Box::pin(ReceiverStream::new(outbound))
}

#[tonic::async_trait]
impl Query for QueryService {
    type WatchCallsStream = Pin<Box<dyn Stream<Item = Result<ApiCall, Status>> + Send>>;

    async fn watch_calls(
        &self,
        request: Request<WatchCallsRequest>,
    ) -> Result<Response<Self::WatchCallsStream>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let start = with_store(&self.store, |store| store.last_position()).await?;
        Ok(Response::new(follow(
            self.store.clone(),
            start,
            move |store, after| store.calls_after(&filter, after, FOLLOW_QUEUE as u32),
        )))
    }

    type WatchFindingsStream = Pin<Box<dyn Stream<Item = Result<Finding, Status>> + Send>>;

    async fn watch_findings(
        &self,
        request: Request<WatchFindingsRequest>,
    ) -> Result<Response<Self::WatchFindingsStream>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let start = with_store(&self.store, |store| store.last_finding_position()).await?;
        Ok(Response::new(follow(
            self.store.clone(),
            start,
            move |store, after| store.findings_after(&filter, after, FOLLOW_QUEUE as u32),
        )))
    }

    async fn list_findings(
        &self,
        request: Request<ListFindingsRequest>,
    ) -> Result<Response<ListFindingsResponse>, Status> {
        let request = request.into_inner();
        let page_size = page_size(request.page_size);
        let (findings, next_cursor) = with_store(&self.store, move |store| {
            store.list_findings(
                &request.filter.unwrap_or_default(),
                page_size,
                &request.cursor,
            )
        })
        .await?;
        Ok(Response::new(ListFindingsResponse {
            findings,
            next_cursor,
        }))
    }

    async fn get_inventory(
        &self,
        request: Request<GetInventoryRequest>,
    ) -> Result<Response<GetInventoryResponse>, Status> {
        let namespace = request.into_inner().namespace;
        let inventories = with_store(&self.store, |store| store.inventories()).await?;
        Ok(Response::new(merge_inventories(inventories, &namespace)))
    }

    async fn list_endpoints(
        &self,
        request: Request<ListEndpointsRequest>,
    ) -> Result<Response<ListEndpointsResponse>, Status> {
        let service = request.into_inner().service;
        let rows = with_store(&self.store, move |store| store.endpoint_rows(&service)).await?;
        Ok(Response::new(ListEndpointsResponse {
            endpoints: merge_endpoints(rows),
        }))
    }

    async fn list_data_flows(
        &self,
        request: Request<ListDataFlowsRequest>,
    ) -> Result<Response<ListDataFlowsResponse>, Status> {
        let request = request.into_inner();
        let filter = request.filter.unwrap_or_default();
        check_one_of("direction", &filter.direction, &DIRECTIONS)?;
        check_one_of("data_class", &filter.data_class, &DATA_CLASSES)?;
        let limit = match request.limit {
            0 => DEFAULT_DATA_FLOWS,
            asked => asked.min(MAX_DATA_FLOWS),
        };
        let (rows, incomplete) =
            with_store(&self.store, move |store| store.data_flow_rows(&filter)).await?;
        let (flows, more) = merge_data_flows(rows, limit as usize);
        Ok(Response::new(ListDataFlowsResponse {
            flows,
            more,
            incomplete,
        }))
    }

    async fn list_drops(
        &self,
        request: Request<ListDropsRequest>,
    ) -> Result<Response<ListDropsResponse>, Status> {
        let request = request.into_inner();
        let filter = request.filter.unwrap_or_default();
        check_one_of("reason", &filter.reason, &DROP_REASONS)?;
        address_range(&filter.source).map_err(|error| {
            Status::invalid_argument(format!(
                "source {:?}: {error}; give an address, a network such as 198.18.0.0/15, or a name",
                filter.source
            ))
        })?;
        let page_size = page_size(request.page_size);
        let (drops, next_cursor) = with_store(&self.store, move |store| {
            store.list_drops(&filter, page_size, &request.cursor)
        })
        .await?;
        Ok(Response::new(ListDropsResponse { drops, next_cursor }))
    }

    async fn list_calls(
        &self,
        request: Request<ListCallsRequest>,
    ) -> Result<Response<ListCallsResponse>, Status> {
        let request = request.into_inner();
        let page_size = page_size(request.page_size);
        let (calls, next_cursor) = with_store(&self.store, move |store| {
            store.list_calls(
                &request.filter.unwrap_or_default(),
                page_size,
                &request.cursor,
            )
        })
        .await?;
        Ok(Response::new(ListCallsResponse { calls, next_cursor }))
    }

    async fn get_service_map(
        &self,
        request: Request<GetServiceMapRequest>,
    ) -> Result<Response<GetServiceMapResponse>, Status> {
        let request = request.into_inner();
        let edges = with_store(&self.store, move |store| {
            store.service_map(request.since_unix_nanos, request.until_unix_nanos)
        })
        .await?;
        Ok(Response::new(GetServiceMapResponse {
            edges: edges
                .into_iter()
                .map(|edge| ServiceMapEdge {
                    client: edge.client,
                    server: edge.server,
                    protocols: edge.protocols,
                    calls: edge.calls,
                    failed: edge.failed,
                    mean_latency_us: edge.mean_latency_us,
                    max_latency_us: edge.max_latency_us,
                    encrypted: matches!(edge.connections.summary(), "tls" | "mtls"),
                    encryption: edge.connections.summary().to_owned(),
                    plaintext_connections: edge.connections.plaintext,
                    tls_connections: edge.connections.tls,
                    mtls_connections: edge.connections.mtls,
                })
                .collect(),
        }))
    }

    async fn get_agent_status(
        &self,
        _request: Request<GetAgentStatusRequest>,
    ) -> Result<Response<GetAgentStatusResponse>, Status> {
        let mut agents = with_store(&self.store, |store| store.agents()).await?;
        let open = self
            .agents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let recent = now_nanos() - RECENTLY_SEEN.as_nanos() as i64;
        for agent in &mut agents {
            let key = agent
                .status
                .as_ref()
                .map(|status| (status.node.clone(), status.boot))
                .unwrap_or_default();
            agent.connected = open.contains(&key) || agent.last_seen_unix_nanos >= recent;
        }
        Ok(Response::new(GetAgentStatusResponse { agents }))
    }
}
