//! Shipping records to the collector (`--collector URL`): a bounded queue the main loop pushes
//! to without ever waiting, and a task that streams batches over `moat.v1.Ingest/Export` and
//! removes records from the queue only once the collector acknowledges them. After a lost
//! connection the unacknowledged records are sent again (their ids make that harmless); a full
//! queue drops the newest records and counts them, and the count travels with the next batch.

mod convert;
mod spool;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use moat_api::v1::{AgentStatus, ExportRequest, Record, RecordId, ingest_client::IngestClient};
use tokio::sync::{Notify, mpsc};
use tonic::codec::CompressionEncoding;
use tracing::{debug, info, warn};

pub use convert::{
    DropFacts, call_record, connection_record, data_flow_record, drop_record, endpoint_record,
    finding_record, inventory,
};

#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// `http://host:port` of the collector.
    pub url: String,
    pub node: String,
    /// Records held while the collector is slow or away.
    pub queue_records: usize,
    pub batch_records: usize,
    /// A batch smaller than `batch_records` leaves after this long.
    pub flush_interval: Duration,
    /// For an `https://` collector.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Where records go when the queue is full, and how many bytes it may hold.
    pub spool: Option<(std::path::PathBuf, u64)>,
}

/// What export did since the agent started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub queued: u64,
    pub acknowledged: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Dropped because the queue (and the spool, if any) was full.
    pub dropped: u64,
    /// Records in the on-disk spool now.
    pub spooled: u64,
    pub reconnects: u64,
    /// Records waiting now.
    pub depth: u64,
    pub connected: bool,
}

struct Queue {
    records: VecDeque<Record>,
    /// Records past the queue's capacity, in order, when there is a spool.
    spool: Option<spool::Spool>,
    capacity: usize,
    next_sequence: u64,
    stats: ExportStats,
    /// Capture events lost, as the agent last reported them, for the collector's agent status.
    events_lost: u64,
}

pub struct Exporter {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    node: String,
    boot: u64,
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Batches sent ahead of their acknowledgements.
const IN_FLIGHT_BATCHES: usize = 4;
const MIN_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(30);

impl Exporter {
    /// Starts the export task on the current runtime; fails only when the spool directory
    /// cannot be used.
    pub fn start(config: ExportConfig) -> Result<Self, spool::SpoolError> {
        let boot = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        let spool = config
            .spool
            .as_ref()
            .map(|(dir, bytes)| spool::Spool::open(dir, *bytes))
            .transpose()?;
        let queue = Arc::new(Mutex::new(Queue {
            records: VecDeque::new(),
            spool,
            capacity: config.queue_records,
            next_sequence: 1,
            stats: ExportStats::default(),
            events_lost: 0,
        }));
        let wake = Arc::new(Notify::new());
        let exporter = Self {
            queue: queue.clone(),
            wake: wake.clone(),
            node: config.node.clone(),
            boot,
        };
        tokio::spawn(run(config, boot, queue, wake));
        Ok(exporter)
    }

    /// Before the agent exits: what waits in memory goes to the spool (if there is one), so the
    /// next agent ships it.
    pub fn shutdown(&self) {
        let mut queue = lock(&self.queue);
        let queue = &mut *queue;
        let Some(spool) = &mut queue.spool else {
            return;
        };
        // In-memory records are older than spooled ones: they go first, so the spool is
        // rewritten behind them.
        let mut ordered: Vec<Record> = queue.records.drain(..).collect();
        while !spool.is_empty() {
            match spool.pop_segment() {
                Ok(records) => ordered.extend(records),
                Err(error) => {
                    warn!(%error, "reading the spool at shutdown");
                    break;
                }
            }
        }
        for record in &ordered {
            if !matches!(spool.push(record), Ok(true)) {
                queue.stats.dropped += 1;
            }
        }
        if let Err(error) = spool.flush() {
            warn!(%error, "writing the spool at shutdown");
        }
    }

    /// Capture events lost so far, to report with the next batch.
    pub fn set_events_lost(&self, lost: u64) {
        lock(&self.queue).events_lost = lost;
    }

    /// The id the next record gets.
    pub fn next_id(&self) -> RecordId {
        RecordId {
            node: self.node.clone(),
            boot: self.boot,
            sequence: lock(&self.queue).next_sequence,
        }
    }

    /// Queues a record built with [`Exporter::next_id`]; never waits.
    pub fn push(&self, record: Record) {
        let mut queue = lock(&self.queue);
        let queue = &mut *queue;
        queue.next_sequence += 1;
        queue.stats.queued += 1;
        // Once records are spooled, newer ones follow them there, so order is kept.
        let spooling = queue.spool.as_ref().is_some_and(|spool| !spool.is_empty());
        if queue.records.len() < queue.capacity && !spooling {
            queue.records.push_back(record);
        } else {
            let spooled = match &mut queue.spool {
                Some(spool) => spool.push(&record).unwrap_or_else(|error| {
                    warn!(%error, "spooling a record");
                    false
                }),
                None => false,
            };
            if !spooled {
                queue.stats.dropped += 1;
            }
        }
        // A stored permit at most: cheap, and the sender decides whether a batch is due.
        self.wake.notify_one();
    }

    pub fn stats(&self) -> ExportStats {
        let queue = lock(&self.queue);
        ExportStats {
            depth: queue.records.len() as u64,
            spooled: queue.spool.as_ref().map_or(0, spool::Spool::len),
            ..queue.stats
        }
    }
}

/// Brings spooled records back into memory once half the queue is free.
fn refill(queue: &mut Queue) {
    while queue.records.len() <= queue.capacity / 2 {
        let Some(spool) = &mut queue.spool else {
            return;
        };
        if spool.is_empty() {
            return;
        }
        match spool.pop_segment() {
            Ok(records) => queue.records.extend(records),
            Err(error) => {
                warn!(%error, "reading the spool");
                return;
            }
        }
    }
}

fn jittered(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    delay.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}

async fn run(config: ExportConfig, boot: u64, queue: Arc<Mutex<Queue>>, wake: Arc<Notify>) {
    let mut delay = MIN_RETRY;
    loop {
        match session(&config, boot, &queue, &wake).await {
            Ok(()) => delay = MIN_RETRY,
            Err(error) => {
                warn!(collector = config.url, %error, "export to the collector interrupted; retrying");
            }
        }
        {
            let mut queue = lock(&queue);
            queue.stats.connected = false;
            queue.stats.reconnects += 1;
        }
        tokio::time::sleep(jittered(delay)).await;
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// One connection: sends batches from the head of the queue, and removes each batch once it is
/// acknowledged. Returns when the connection fails.
async fn session(
    config: &ExportConfig,
    boot: u64,
    queue: &Mutex<Queue>,
    wake: &Notify,
) -> Result<(), tonic::Status> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(config.url.clone())
        .map_err(|error| tonic::Status::invalid_argument(error.to_string()))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = &config.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|error| tonic::Status::invalid_argument(error.to_string()))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let mut client = IngestClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let (batches, outbound) = mpsc::channel(IN_FLIGHT_BATCHES);
    let mut acks = client
        .export(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await?
        .into_inner();
    lock(queue).stats.connected = true;
    info!(collector = config.url, "exporting to the collector");
    // (batch number, records in it), oldest first; the records are the queue's first ones.
    let mut in_flight: VecDeque<(u64, usize)> = VecDeque::new();
    let mut next_batch = 1u64;
    let mut last_batch = tokio::time::Instant::now();
    loop {
        let sent: usize = in_flight.iter().map(|(_, count)| count).sum();
        let unsent = {
            let mut queue = lock(queue);
            refill(&mut queue);
            queue.records.len().saturating_sub(sent)
        };
        let can_send = in_flight.len() < IN_FLIGHT_BATCHES;
        if can_send && unsent > 0 {
            let (records, status) = {
                let queue = lock(queue);
                let records: Vec<Record> = queue
                    .records
                    .iter()
                    .skip(sent)
                    .take(config.batch_records)
                    .cloned()
                    .collect();
                let status = AgentStatus {
                    node: config.node.clone(),
                    boot,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    queue_depth: queue.records.len() as u64,
                    records_dropped: queue.stats.dropped,
                    events_lost: queue.events_lost,
                };
                (records, status)
            };
            let full = records.len() >= config.batch_records;
            let due = last_batch.elapsed() >= config.flush_interval;
            if full || (!records.is_empty() && due) {
                let count = records.len();
                let request = ExportRequest {
                    batch: next_batch,
                    records,
                    dropped_by_agent: status.records_dropped,
                    status: Some(status),
                };
                if batches.send(request).await.is_err() {
                    return Err(tonic::Status::unavailable("the export stream closed"));
                }
                in_flight.push_back((next_batch, count));
                next_batch += 1;
                last_batch = tokio::time::Instant::now();
                continue;
            }
        }
        tokio::select! {
            ack = acks.message() => {
                let Some(ack) = ack? else {
                    return Err(tonic::Status::unavailable("the collector ended the export stream"));
                };
                let Some((batch, count)) = in_flight.pop_front() else {
                    return Err(tonic::Status::internal("an acknowledgement for no batch"));
                };
                if ack.batch != batch {
                    return Err(tonic::Status::internal(format!("acknowledgement for batch {} while {batch} was next", ack.batch)));
                }
                let mut queue = lock(queue);
                let acknowledged = count.min(queue.records.len());
                queue.records.drain(..acknowledged);
                refill(&mut queue);
                queue.stats.acknowledged += u64::from(ack.accepted);
                queue.stats.duplicates += u64::from(ack.duplicates);
                queue.stats.rejected += u64::from(ack.rejected);
                debug!(batch, accepted = ack.accepted, duplicates = ack.duplicates, "batch acknowledged");
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(last_batch + config.flush_interval), if can_send && unsent > 0 => {}
        }
    }
}
