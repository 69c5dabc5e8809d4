//! The production store: one PostgreSQL database that several collector replicas share.
//!
//! Replicas may receive the same record (an agent that reconnects elsewhere resends it), so
//! every insert is `ON CONFLICT DO NOTHING` on the record id, and only the rows it inserted go
//! into the per-minute aggregates.
//!
//! Those aggregates are added, not updated: each batch inserts its own rows, which queries
//! sum, so replicas storing at once never wait for each other's locks on a busy minute (that
//! halved ingest). Retention compacts them, every minute, into one row per key and minute.
//!
//! Followers read calls in the order their transactions became
//! visible (see [`Store::calls_after`]), which with concurrent writers is not the order of row
//! numbers.

mod tls;

use std::{
    collections::HashSet,
    path::Path,
    sync::{Condvar, Mutex},
    time::Duration,
};

use moat_api::v1::{
    AgentState, AgentStatus, ApiCall, CallFilter, DataFlow, DataFlowFilter, Drop as DropRecord,
    DropFilter, Endpoint, Finding, FindingFilter, Inventory, record,
};
use postgres::{Client, Transaction, types::ToSql};
use prost::Message;
pub use tls::TlsError;

use super::{
    CallRow, ConnectionRow, DATA_FLOWS, DROP_FILL_BATCH, DROP_FILTER_COLUMNS, DataFlowValues,
    DropRow, DropValues, ENDPOINTS, Edge, FilterValues, FindingRow, FindingValues, InventoryRow,
    MAX_EDGES, MAX_PAGE, MAX_PER_BOOT_ROWS, PerBootRow, PerBootTable, Position, Retention,
    SIZE_SAMPLE, Store, StoreError, Stored, agent_state, data_flow_conditions, drop_conditions,
    filter_conditions, finding_conditions, minutes, next_cursor, note_agent_sql, parse_cursor,
    redacted,
};

/// Connections a collector holds at most: ingest streams and queries beyond that wait for one.
const POOL_SIZE: usize = 8;
/// How long opening a connection may take before the store reports the server unreachable,
/// unless the URL's `connect_timeout` says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows one INSERT statement carries at most; a batch larger than that takes several.
const ROWS_PER_STATEMENT: usize = 5_000;
/// Minutes of aggregates one compaction merges at most; more wait for the next.
const MINUTES_PER_COMPACTION: i64 = 60;
/// Advisory lock keys (arbitrary, fixed): one replica at a time creates the schema or enforces
/// retention.
const SCHEMA_LOCK: i64 = 0x6d6f_6174_0001;
const RETENTION_LOCK: i64 = 0x6d6f_6174_0002;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    row_id BIGINT GENERATED ALWAYS AS IDENTITY,
    xact BIGINT NOT NULL,
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    time BIGINT NOT NULL,
    cluster TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    workloads TEXT NOT NULL,
    path TEXT NOT NULL,
    status BIGINT NOT NULL,
    tags TEXT NOT NULL,
    record BYTEA NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (time DESC, row_id DESC);
CREATE INDEX IF NOT EXISTS calls_by_visibility ON calls (xact, row_id);
CREATE TABLE IF NOT EXISTS call_minutes (
    minute BIGINT NOT NULL,
    client TEXT NOT NULL,
    server TEXT NOT NULL,
    method TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    protocol TEXT NOT NULL,
    calls BIGINT NOT NULL,
    client_errors BIGINT NOT NULL,
    server_errors BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    latency_sum_us BIGINT NOT NULL,
    latency_max_us BIGINT NOT NULL,
    under_1ms BIGINT NOT NULL,
    under_10ms BIGINT NOT NULL,
    under_100ms BIGINT NOT NULL,
    under_1s BIGINT NOT NULL,
    request_bytes BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL,
    compacted BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS call_minutes_by_minute ON call_minutes (minute);
CREATE INDEX IF NOT EXISTS call_minutes_to_compact ON call_minutes (minute) WHERE NOT compacted;
CREATE TABLE IF NOT EXISTS findings (
    row_id BIGINT GENERATED ALWAYS AS IDENTITY,
    xact BIGINT NOT NULL,
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    time BIGINT NOT NULL,
    cluster TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    workloads TEXT NOT NULL,
    path TEXT NOT NULL,
    status BIGINT NOT NULL,
    tags TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    sources TEXT NOT NULL,
    record BYTEA NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
CREATE INDEX IF NOT EXISTS findings_by_time ON findings (time DESC, row_id DESC);
CREATE INDEX IF NOT EXISTS findings_by_visibility ON findings (xact, row_id);
CREATE TABLE IF NOT EXISTS endpoints (
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    time BIGINT NOT NULL,
    record BYTEA NOT NULL,
    PRIMARY KEY (node, boot, service, method, endpoint)
);
CREATE TABLE IF NOT EXISTS data_flows (
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    service TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    method TEXT NOT NULL,
    direction TEXT NOT NULL,
    data_class TEXT NOT NULL,
    kind TEXT NOT NULL,
    counterpart TEXT NOT NULL,
    counterpart_namespace TEXT NOT NULL,
    counterpart_workload TEXT NOT NULL,
    counterpart_range TEXT NOT NULL,
    counterpart_customer TEXT NOT NULL,
    transport TEXT NOT NULL,
    time BIGINT NOT NULL,
    record BYTEA NOT NULL,
    PRIMARY KEY (node, boot, service, endpoint, method, direction, data_class, kind, counterpart,
                 counterpart_namespace, counterpart_workload, counterpart_range,
                 counterpart_customer, transport)
);
CREATE TABLE IF NOT EXISTS agents (
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    records_stored BIGINT NOT NULL,
    status BYTEA NOT NULL,
    PRIMARY KEY (node, boot)
);
CREATE TABLE IF NOT EXISTS inventories (
    node TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    record BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS drops (
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    time BIGINT NOT NULL,
    record BYTEA NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
CREATE TABLE IF NOT EXISTS connections (
    node TEXT NOT NULL,
    boot BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    time BIGINT NOT NULL,
    client TEXT NOT NULL,
    server TEXT NOT NULL,
    encryption TEXT NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
CREATE INDEX IF NOT EXISTS connections_by_time ON connections (time);
";

/// The oldest transaction still running: every transaction before it has committed or rolled
/// back, so no call below it can still appear.
const VISIBLE_BELOW: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

pub struct Postgres {
    /// The URL without its password, for errors.
    url: String,
    config: postgres::Config,
    tls: tls::Tls,
    pool: Mutex<Pool>,
    returned: Condvar,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Client>,
    /// Connections handed out, and being opened.
    busy: usize,
}

/// A connection out of the pool, back into it on drop unless it broke.
struct Pooled<'a> {
    client: Option<Client>,
    store: &'a Postgres,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut pool = self.store.pool();
        pool.busy -= 1;
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            pool.idle.push(client);
        }
        self.store.returned.notify_one();
    }
}

/// `error`'s text followed by its causes'.
fn with_causes(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

impl Postgres {
    /// Connects to `url`, over TLS as its `sslmode` says (with `ca`, from `--store-ca`, or
    /// its `sslrootcert`), and creates the tables that are missing.
    pub fn open(url: &str, ca: Option<&Path>) -> Result<Self, StoreError> {
        let shown = redacted(url);
        let (url, tls) = tls::Tls::from_url(url, ca).map_err(|source| StoreError::Tls {
            url: shown.clone(),
            source: Box::new(source),
        })?;
        if let Some(weakness) = tls.weakness() {
            tracing::warn!(store = %shown, "{weakness}");
        }
        let mut config: postgres::Config = url.parse().map_err(|source| StoreError::BadUrl {
            url: shown.clone(),
            source,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("moat-collector");
        }
        let store = Self {
            url: shown,
            config,
            tls,
            pool: Mutex::default(),
            returned: Condvar::new(),
        };
        {
            let mut client = store.client()?;
            // Replicas starting at once would race to create the same tables (CREATE ... IF
            // NOT EXISTS is not safe against that); the lock makes them take turns.
            let mut transaction = client.transaction().map_err(|error| store.error(error))?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .map_err(|error| store.error(error))?;
            // Tables already there are the usual case, not news for the log.
            transaction
                .batch_execute("SET LOCAL client_min_messages = warning")
                .map_err(|error| store.error(error))?;
            transaction
                .batch_execute(SCHEMA)
                .map_err(|error| store.error(error))?;
            add_drop_filter_columns(&mut transaction).map_err(|error| store.error(error))?;
            transaction.commit().map_err(|error| store.error(error))?;
        }
        Ok(store)
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection, a new one while fewer than [`POOL_SIZE`] are open, or else the
    /// next one returned.
    fn client(&self) -> Result<Pooled<'_>, StoreError> {
        let mut pool = self.pool();
        loop {
            if let Some(client) = pool.idle.pop() {
                // A connection the server closed meanwhile (restart, idle timeout) is dropped.
                if client.is_closed() {
                    continue;
                }
                pool.busy += 1;
                return Ok(Pooled {
                    client: Some(client),
                    store: self,
                });
            }
            if pool.busy < POOL_SIZE {
                pool.busy += 1;
                drop(pool);
                let mut pooled = Pooled {
                    client: None,
                    store: self,
                };
                let client =
                    self.tls
                        .connect(&self.config)
                        .map_err(|error| StoreError::Connect {
                            url: self.url.clone(),
                            reason: with_causes(&error),
                            advice: self.tls.advice(&error),
                        })?;
                pooled.client = Some(client);
                return Ok(pooled);
            }
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn error(&self, source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.url.clone(),
            source,
        }
    }

    /// (row, time or transaction, record) of the rows of `table` (`calls` or `findings`) at
    /// `position` (over $1 and $2, bound to `anchor`) that match the filter, in `order`;
    /// findings also match `extra`. `first` is the column returned second.
    #[expect(
        clippy::too_many_arguments,
        reason = "one query's parts, used by four callers"
    )]
    fn select<M: Message + Default>(
        &self,
        table: &str,
        first: &str,
        position: &str,
        order: &str,
        anchor: (i64, i64),
        values: &FilterValues,
        extra: Option<&FindingValues>,
        limit: u32,
    ) -> Result<Vec<(i64, i64, M)>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_PAGE));
        let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![
            &anchor.0,
            &anchor.1,
            &values.since,
            &values.until,
            &values.cluster,
            &values.namespace,
            &values.namespace_like,
            &values.workload,
            &values.workload_like,
            &values.path,
            &values.status,
            &values.tag,
            &values.tag_like,
        ];
        let own = match extra {
            Some(extra) => {
                parameters.extend([
                    &extra.kind as &(dyn ToSql + Sync),
                    &extra.service,
                    &extra.source_like,
                    &extra.source,
                ]);
                finding_conditions(|n, kind| format!("${n}::{kind}"))
            }
            None => "TRUE".to_owned(),
        };
        parameters.push(&limit);
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT row_id, {first}, record FROM {table}
                     WHERE {position} AND {} AND {own}
                     ORDER BY {order}
                     LIMIT ${}",
                    filter_conditions(|n, kind| format!("${n}::{kind}")),
                    parameters.len(),
                ),
                &parameters,
            )
            .map_err(|error| self.error(error))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let bytes: &[u8] = row.get(2);
            // Only collectors write the column; a row that does not decode is skipped.
            if let Ok(record) = M::decode(bytes) {
                records.push((row.get(0), row.get(1), record));
            }
        }
        Ok(records)
    }

    /// Rows of `table` that became visible after `after`, in that order.
    fn visible_after<M: Message + Default>(
        &self,
        table: &str,
        after: Position,
        values: &FilterValues,
        extra: Option<&FindingValues>,
        limit: u32,
    ) -> Result<Vec<(Position, M)>, StoreError> {
        Ok(self
            .select(
                table,
                "xact",
                &format!("(xact, row_id) > ($1::bigint, $2::bigint) AND xact < {VISIBLE_BELOW}"),
                "xact, row_id",
                (after.transaction, after.row),
                values,
                extra,
                limit,
            )?
            .into_iter()
            .map(|(row, transaction, record)| (Position { transaction, row }, record))
            .collect())
    }

    /// Rows of `table` before `cursor`, newest first, and the next page's cursor.
    fn page<M: Message + Default>(
        &self,
        table: &str,
        cursor: &str,
        page_size: u32,
        values: &FilterValues,
        extra: Option<&FindingValues>,
    ) -> Result<(Vec<M>, String), StoreError> {
        let before = parse_cursor(cursor)?;
        let limit = page_size.clamp(1, MAX_PAGE);
        let rows = self.select::<M>(
            table,
            "time",
            "(time, row_id) < ($1::bigint, $2::bigint)",
            "time DESC, row_id DESC",
            before,
            values,
            extra,
            limit,
        )?;
        let next = next_cursor(&rows, limit);
        Ok((
            rows.into_iter().map(|(_, _, record)| record).collect(),
            next,
        ))
    }
}

/// Adds the [`DROP_FILTER_COLUMNS`] (and the row numbers pages of drops are cut by) that a
/// database of an older collector lacks, fills them in, and indexes drops by time. Columns are
/// looked up first: ALTER TABLE locks the table even when it changes nothing.
fn add_drop_filter_columns(transaction: &mut Transaction<'_>) -> Result<(), postgres::Error> {
    let present: Vec<String> = transaction
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'drops'",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let missing = |column: &str| !present.iter().any(|name| name == column);
    if missing("row_id") {
        transaction.batch_execute(
            "ALTER TABLE drops ADD COLUMN row_id BIGINT GENERATED ALWAYS AS IDENTITY",
        )?;
    }
    for (column, _, declaration) in DROP_FILTER_COLUMNS {
        if missing(column) {
            transaction.batch_execute(&format!(
                "ALTER TABLE drops ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    loop {
        let unfilled = transaction.query(
            "SELECT node, boot, sequence, record FROM drops WHERE sources = '' LIMIT $1",
            &[&DROP_FILL_BATCH],
        )?;
        if unfilled.is_empty() {
            break;
        }
        for stored in &unfilled {
            // A record that does not decode (none should: only collectors write the column)
            // is filled as a drop with no fields, so the fill does not come back to it.
            let row =
                DropRow::new(&DropRecord::decode(stored.get::<_, &[u8]>(3)).unwrap_or_default());
            transaction.execute(
                "UPDATE drops SET reason = $4, rule = $5, source_address = $6, sources = $7,
                                  namespaces = $8, workloads = $9
                 WHERE node = $1 AND boot = $2 AND sequence = $3",
                &[
                    &stored.get::<_, String>(0),
                    &stored.get::<_, i64>(1),
                    &stored.get::<_, i64>(2),
                    &row.reason,
                    &row.rule,
                    &row.source_address,
                    &row.sources,
                    &row.namespaces,
                    &row.workloads,
                ],
            )?;
        }
    }
    transaction
        .batch_execute("CREATE INDEX IF NOT EXISTS drops_by_time ON drops (time DESC, row_id DESC)")
}

/// Stores `rows` of `table`, each unless a newer one of its agent boot and key is stored; how
/// many were. Rows are sorted by key, so that two replicas storing the same rows lock them in
/// the same order, and only the newest of a key in the batch is offered: ON CONFLICT cannot
/// update a row twice in one statement.
fn store_per_boot(
    transaction: &mut Transaction<'_>,
    table: &PerBootTable,
    mut rows: Vec<PerBootRow>,
) -> Result<usize, postgres::Error> {
    rows.sort_by(|one, other| {
        (&one.node, one.boot, &one.key, std::cmp::Reverse(one.time)).cmp(&(
            &other.node,
            other.boot,
            &other.key,
            std::cmp::Reverse(other.time),
        ))
    });
    rows.dedup_by(|later, kept| {
        (&later.node, later.boot, &later.key) == (&kept.node, kept.boot, &kept.key)
    });
    // (node, boot, key columns, time, record) as arrays, one element per row.
    let mut types = vec!["text", "bigint"];
    types.extend(table.key.iter().map(|_| "text"));
    types.extend(["bigint", "bytea"]);
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(n, kind)| format!("${}::{kind}[]", n + 1))
        .collect();
    let statement = table.upsert(&format!("SELECT * FROM unnest({})", arrays.join(", ")));
    let mut stored = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let nodes: Vec<&String> = chunk.iter().map(|row| &row.node).collect();
        let boots: Vec<i64> = chunk.iter().map(|row| row.boot).collect();
        let keys: Vec<Vec<&String>> = (0..table.key.len())
            .map(|column| chunk.iter().map(|row| &row.key[column]).collect())
            .collect();
        let times: Vec<i64> = chunk.iter().map(|row| row.time).collect();
        let records: Vec<&Vec<u8>> = chunk.iter().map(|row| &row.record).collect();
        let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&nodes, &boots];
        parameters.extend(keys.iter().map(|column| column as &(dyn ToSql + Sync)));
        parameters.extend([&times as &(dyn ToSql + Sync), &records]);
        stored += transaction.execute(statement.as_str(), &parameters)? as usize;
    }
    Ok(stored)
}

impl Store for Postgres {
    fn insert(&self, records: &[record::Kind]) -> Result<Stored, StoreError> {
        let sql = |error| self.error(error);
        let mut calls: Vec<&ApiCall> = Vec::new();
        let mut drops = Vec::new();
        let mut findings = Vec::new();
        let mut endpoints = Vec::new();
        let mut data_flows = Vec::new();
        let mut inventories = Vec::new();
        let mut connections = Vec::new();
        for record in records {
            match record {
                record::Kind::Call(call) => calls.push(call),
                record::Kind::Drop(drop) => drops.push(drop),
                record::Kind::Finding(finding) => findings.push(finding),
                record::Kind::Endpoint(endpoint) => endpoints.push(PerBootRow::endpoint(endpoint)),
                record::Kind::DataFlow(flow) => data_flows.push(PerBootRow::data_flow(flow)),
                record::Kind::Inventory(inventory) => {
                    inventories.push(InventoryRow::new(inventory))
                }
                record::Kind::Connection(connection) => {
                    connections.push(ConnectionRow::new(connection))
                }
            }
        }
        // Rows in id order, so that two replicas storing the same records lock them in the
        // same order.
        let id = |id: &Option<moat_api::v1::RecordId>| {
            id.as_ref()
                .map(|id| (id.node.clone(), id.boot, id.sequence))
        };
        calls.sort_by_key(|call| id(&call.id));
        drops.sort_by_key(|drop| id(&drop.id));
        findings.sort_by_key(|finding| id(&finding.id));

        let mut client = self.client()?;
        let mut transaction = client.transaction().map_err(sql)?;
        // Taking the transaction id first, before any row number, keeps (transaction, row) in
        // the order followers can see calls in.
        let xact: i64 = transaction
            .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .map_err(sql)?
            .get(0);

        let mut new_calls = Vec::new();
        for chunk in calls.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<CallRow> = chunk.iter().map(|call| CallRow::new(call)).collect();
            let column = |get: fn(&CallRow) -> &String| rows.iter().map(get).collect::<Vec<_>>();
            let number = |get: fn(&CallRow) -> i64| rows.iter().map(get).collect::<Vec<_>>();
            let inserted = transaction
                .query(
                    "INSERT INTO calls (xact, node, boot, sequence, time, cluster, namespaces,
                                        workloads, path, status, tags, record)
                     SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                                              $6::text[], $7::text[], $8::text[], $9::text[],
                                              $10::bigint[], $11::text[], $12::bytea[])
                     ON CONFLICT DO NOTHING
                     RETURNING node, boot, sequence",
                    &[
                        &xact,
                        &column(|row| &row.node),
                        &number(|row| row.boot),
                        &number(|row| row.sequence),
                        &number(|row| row.time),
                        &column(|row| &row.cluster),
                        &column(|row| &row.namespaces),
                        &column(|row| &row.workloads),
                        &column(|row| &row.path),
                        &number(|row| row.status),
                        &column(|row| &row.tags),
                        &rows.iter().map(|row| &row.record).collect::<Vec<_>>(),
                    ],
                )
                .map_err(sql)?;
            let mut stored: HashSet<(String, i64, i64)> = inserted
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect();
            // Of several copies of one record in a batch, the first counts as the one stored.
            for (call, row) in chunk.iter().zip(&rows) {
                if stored.remove(&(row.node.clone(), row.boot, row.sequence)) {
                    new_calls.push(*call);
                }
            }
        }

        let mut new_drops = 0;
        for chunk in drops.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<DropRow> = chunk.iter().map(|drop| DropRow::new(drop)).collect();
            let number = |get: fn(&DropRow) -> i64| rows.iter().map(get).collect::<Vec<_>>();
            let column = |get: fn(&DropRow) -> &String| rows.iter().map(get).collect::<Vec<_>>();
            new_drops += transaction
                .execute(
                    "INSERT INTO drops (node, boot, sequence, time, reason, rule, source_address,
                                        sources, namespaces, workloads, record)
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],
                                          $5::text[], $6::text[], $7::bytea[], $8::text[],
                                          $9::text[], $10::text[], $11::bytea[])
                     ON CONFLICT DO NOTHING",
                    &[
                        &column(|row| &row.node),
                        &number(|row| row.boot),
                        &number(|row| row.sequence),
                        &number(|row| row.time),
                        &column(|row| &row.reason),
                        &column(|row| &row.rule),
                        &rows
                            .iter()
                            .map(|row| &row.source_address)
                            .collect::<Vec<_>>(),
                        &column(|row| &row.sources),
                        &column(|row| &row.namespaces),
                        &column(|row| &row.workloads),
                        &rows.iter().map(|row| &row.record).collect::<Vec<_>>(),
                    ],
                )
                .map_err(sql)? as usize;
        }

        let mut new_findings = 0;
        for chunk in findings.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<FindingRow> = chunk
                .iter()
                .map(|finding| FindingRow::new(finding))
                .collect();
            let column = |get: fn(&FindingRow) -> &String| rows.iter().map(get).collect::<Vec<_>>();
            let number = |get: fn(&FindingRow) -> i64| rows.iter().map(get).collect::<Vec<_>>();
            new_findings += transaction
                .execute(
                    "INSERT INTO findings (xact, node, boot, sequence, time, cluster, namespaces,
                                           workloads, path, status, tags, kind, service, sources,
                                           record)
                     SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                                              $6::text[], $7::text[], $8::text[], $9::text[],
                                              $10::bigint[], $11::text[], $12::text[], $13::text[],
                                              $14::text[], $15::bytea[])
                     ON CONFLICT DO NOTHING",
                    &[
                        &xact,
                        &column(|row| &row.call.node),
                        &number(|row| row.call.boot),
                        &number(|row| row.call.sequence),
                        &number(|row| row.call.time),
                        &column(|row| &row.call.cluster),
                        &column(|row| &row.call.namespaces),
                        &column(|row| &row.call.workloads),
                        &column(|row| &row.call.path),
                        &number(|row| row.call.status),
                        &column(|row| &row.call.tags),
                        &column(|row| &row.kind),
                        &column(|row| &row.service),
                        &column(|row| &row.sources),
                        &rows.iter().map(|row| &row.call.record).collect::<Vec<_>>(),
                    ],
                )
                .map_err(sql)? as usize;
        }

        let new_endpoints = store_per_boot(&mut transaction, &ENDPOINTS, endpoints).map_err(sql)?;
        let new_data_flows =
            store_per_boot(&mut transaction, &DATA_FLOWS, data_flows).map_err(sql)?;

        // One per node is kept: the newest of a batch, then only if newer than the stored one.
        inventories.sort_by(|one, other| {
            (&one.node, std::cmp::Reverse(one.time))
                .cmp(&(&other.node, std::cmp::Reverse(other.time)))
        });
        inventories.dedup_by(|later, kept| later.node == kept.node);
        let mut new_inventories = 0;
        for row in &inventories {
            new_inventories += transaction
                .execute(
                    "INSERT INTO inventories (node, time, record) VALUES ($1, $2, $3)
                     ON CONFLICT (node) DO UPDATE SET time = excluded.time, record = excluded.record
                     WHERE excluded.time > inventories.time",
                    &[&row.node, &row.time, &row.record],
                )
                .map_err(sql)? as usize;
        }

        let stored_calls = new_calls.len();
        let minutes: Vec<_> = minutes(
            new_calls
                .into_iter()
                .map(|call| (super::MinuteKey::of(call), call)),
        )
        .into_iter()
        .collect();
        for chunk in minutes.chunks(ROWS_PER_STATEMENT) {
            let key = |get: fn(&super::MinuteKey) -> &String| {
                chunk.iter().map(|(key, _)| get(key)).collect::<Vec<_>>()
            };
            let count = |get: fn(&super::MinuteCounts) -> i64| {
                chunk
                    .iter()
                    .map(|(_, counts)| get(counts))
                    .collect::<Vec<_>>()
            };
            transaction
                .execute(
                    "INSERT INTO call_minutes (minute, client, server, method, endpoint, protocol,
                                               calls, client_errors, server_errors, failed,
                                               latency_sum_us, latency_max_us, under_1ms,
                                               under_10ms, under_100ms, under_1s, request_bytes,
                                               response_bytes)
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                                          $5::text[], $6::text[], $7::bigint[], $8::bigint[],
                                          $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                                          $13::bigint[], $14::bigint[], $15::bigint[],
                                          $16::bigint[], $17::bigint[], $18::bigint[])",
                    &[
                        &chunk.iter().map(|(key, _)| key.minute).collect::<Vec<_>>(),
                        &key(|key| &key.client),
                        &key(|key| &key.server),
                        &key(|key| &key.method),
                        &key(|key| &key.endpoint),
                        &key(|key| &key.protocol),
                        &count(|counts| counts.calls),
                        &count(|counts| counts.client_errors),
                        &count(|counts| counts.server_errors),
                        &count(|counts| counts.failed),
                        &count(|counts| counts.latency_sum_us),
                        &count(|counts| counts.latency_max_us),
                        &count(|counts| counts.under_1ms),
                        &count(|counts| counts.under_10ms),
                        &count(|counts| counts.under_100ms),
                        &count(|counts| counts.under_1s),
                        &count(|counts| counts.request_bytes),
                        &count(|counts| counts.response_bytes),
                    ],
                )
                .map_err(sql)?;
        }
        // Sorted by id, as the other records, so replicas lock rows in the same order.
        connections
            .sort_by(|a, b| (&a.node, a.boot, a.sequence).cmp(&(&b.node, b.boot, b.sequence)));
        let mut new_connections = 0;
        for chunk in connections.chunks(ROWS_PER_STATEMENT) {
            let column =
                |get: fn(&ConnectionRow) -> &String| chunk.iter().map(get).collect::<Vec<_>>();
            let number = |get: fn(&ConnectionRow) -> i64| chunk.iter().map(get).collect::<Vec<_>>();
            new_connections += transaction
                .execute(
                    "INSERT INTO connections (node, boot, sequence, time, client, server, encryption)
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],
                                          $5::text[], $6::text[], $7::text[])
                     ON CONFLICT DO NOTHING",
                    &[
                        &column(|row| &row.node),
                        &number(|row| row.boot),
                        &number(|row| row.sequence),
                        &number(|row| row.time),
                        &column(|row| &row.client),
                        &column(|row| &row.server),
                        &column(|row| &row.encryption),
                    ],
                )
                .map_err(sql)? as usize;
        }
        transaction.commit().map_err(sql)?;

        let accepted = stored_calls
            + new_connections
            + new_drops
            + new_findings
            + new_endpoints
            + new_data_flows
            + new_inventories;
        Ok(Stored {
            accepted: accepted as u32,
            duplicates: (records.len() - accepted) as u32,
        })
    }

    fn list_calls(
        &self,
        filter: &CallFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<ApiCall>, String), StoreError> {
        self.page("calls", cursor, page_size, &FilterValues::new(filter), None)
    }

    fn calls_after(
        &self,
        filter: &CallFilter,
        after: Position,
        limit: u32,
    ) -> Result<Vec<(Position, ApiCall)>, StoreError> {
        self.visible_after("calls", after, &FilterValues::new(filter), None, limit)
    }

    fn list_findings(
        &self,
        filter: &FindingFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<Finding>, String), StoreError> {
        let (values, own) = FindingValues::new(filter);
        self.page("findings", cursor, page_size, &values, Some(&own))
    }

    fn findings_after(
        &self,
        filter: &FindingFilter,
        after: Position,
        limit: u32,
    ) -> Result<Vec<(Position, Finding)>, StoreError> {
        let (values, own) = FindingValues::new(filter);
        self.visible_after("findings", after, &values, Some(&own), limit)
    }

    fn last_finding_position(&self) -> Result<Position, StoreError> {
        self.last_position()
    }

    fn list_drops(
        &self,
        filter: &DropFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<DropRecord>, String), StoreError> {
        let before = parse_cursor(cursor)?;
        let limit = i64::from(page_size.clamp(1, MAX_PAGE));
        let values = DropValues::new(filter);
        let parameters: [&(dyn ToSql + Sync); 15] = [
            &before.0,
            &before.1,
            &values.since,
            &values.until,
            &values.reason,
            &values.rule,
            &values.source,
            &values.source_like,
            &values.source_low,
            &values.source_high,
            &values.namespace,
            &values.namespace_like,
            &values.workload,
            &values.workload_like,
            &limit,
        ];
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT row_id, time, record FROM drops
                     WHERE (time, row_id) < ($1::bigint, $2::bigint) AND {}
                     ORDER BY time DESC, row_id DESC
                     LIMIT $15",
                    drop_conditions(|n, kind| format!("${n}::{kind}")),
                ),
                &parameters,
            )
            .map_err(|error| self.error(error))?;
        let drops: Vec<(i64, i64, DropRecord)> = rows
            .iter()
            // Only collectors write the column; a row that does not decode is skipped.
            .filter_map(|row| {
                let drop = DropRecord::decode(row.get::<_, &[u8]>(2)).ok()?;
                Some((row.get(0), row.get(1), drop))
            })
            .collect();
        let next = next_cursor(&drops, limit as u32);
        Ok((drops.into_iter().map(|(_, _, drop)| drop).collect(), next))
    }

    fn endpoint_rows(&self, service: &str) -> Result<Vec<Endpoint>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT record FROM endpoints WHERE ($1::text = '' OR service = $1::text) LIMIT $2",
                &[&service, &MAX_PER_BOOT_ROWS],
            )
            .map_err(|error| self.error(error))?;
        Ok(rows
            .iter()
            .filter_map(|row| Endpoint::decode(row.get::<_, &[u8]>(0)).ok())
            .collect())
    }

    fn data_flow_rows(&self, filter: &DataFlowFilter) -> Result<(Vec<DataFlow>, bool), StoreError> {
        let values = DataFlowValues::new(filter);
        // One more than the bound, to tell a full answer from a cut one.
        let limit = MAX_PER_BOOT_ROWS + 1;
        let mut parameters: Vec<&(dyn ToSql + Sync)> = values
            .texts
            .iter()
            .map(|value| value as &(dyn ToSql + Sync))
            .collect();
        parameters.extend([&values.since as &(dyn ToSql + Sync), &limit]);
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT record FROM data_flows WHERE {} LIMIT $12",
                    data_flow_conditions(|n, kind| format!("${n}::{kind}")),
                ),
                &parameters,
            )
            .map_err(|error| self.error(error))?;
        let incomplete = rows.len() as i64 > MAX_PER_BOOT_ROWS;
        let flows = rows
            .iter()
            .take(MAX_PER_BOOT_ROWS as usize)
            .filter_map(|row| DataFlow::decode(row.get::<_, &[u8]>(0)).ok())
            .collect();
        Ok((flows, incomplete))
    }

    fn last_position(&self) -> Result<Position, StoreError> {
        // Everything below the oldest running transaction is visible now. A call committed by
        // a younger transaction while an older one still runs is visible too, and a new
        // follower may see it once more: the cost of a position that misses nothing.
        let below: i64 = self
            .client()?
            .query_one(&format!("SELECT {VISIBLE_BELOW}"), &[])
            .map_err(|error| self.error(error))?
            .get(0);
        Ok(Position {
            transaction: below - 1,
            row: i64::MAX,
        })
    }

    fn note_agent(&self, status: &AgentStatus, stored: u64, seen: i64) -> Result<(), StoreError> {
        self.client()?
            .execute(
                &note_agent_sql(|n| format!("${n}"), "GREATEST"),
                &[
                    &status.node,
                    &(status.boot as i64),
                    &seen,
                    &(stored as i64),
                    &status.encode_to_vec(),
                ],
            )
            .map_err(|error| self.error(error))?;
        Ok(())
    }

    fn agents(&self) -> Result<Vec<AgentState>, StoreError> {
        let rows = self
            .client()?
            .query("SELECT last_seen, records_stored, status FROM agents", &[])
            .map_err(|error| self.error(error))?;
        Ok(rows
            .iter()
            .filter_map(|row| agent_state(row.get(0), row.get(1), row.get::<_, &[u8]>(2)))
            .collect())
    }

    fn inventories(&self) -> Result<Vec<(String, Inventory)>, StoreError> {
        let rows = self
            .client()?
            .query("SELECT node, record FROM inventories", &[])
            .map_err(|error| self.error(error))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let inventory = Inventory::decode(row.get::<_, &[u8]>(1)).ok()?;
                Some((row.get(0), inventory))
            })
            .collect())
    }

    fn enforce_retention(&self, retention: Retention) -> Result<u64, StoreError> {
        let oldest = retention.oldest;
        let sql = |error| self.error(error);
        let mut client = self.client()?;
        let mut transaction = client.transaction().map_err(sql)?;
        // Replicas enforcing the cap at once would each delete the excess they counted.
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&RETENTION_LOCK])
            .map_err(sql)?;
        let mut removed = transaction
            .execute("DELETE FROM calls WHERE time < $1", &[&oldest])
            .map_err(sql)?;
        for table in [
            "drops",
            "findings",
            "endpoints",
            "data_flows",
            "inventories",
            "connections",
        ] {
            removed += transaction
                .execute(&format!("DELETE FROM {table} WHERE time < $1"), &[&oldest])
                .map_err(sql)?;
        }
        removed += transaction
            .execute("DELETE FROM agents WHERE last_seen < $1", &[&oldest])
            .map_err(sql)?;
        transaction
            .execute(
                "DELETE FROM call_minutes WHERE minute < $1",
                &[&oldest.div_euclid(60_000_000_000)],
            )
            .map_err(sql)?;
        // A batch's aggregates that arrive while this runs are not visible to it, so they stay,
        // uncompacted, for the next round: nothing is counted twice or lost.
        transaction
            .execute(
                "WITH merged AS (
                     DELETE FROM call_minutes
                     WHERE minute IN (SELECT DISTINCT minute FROM call_minutes
                                      WHERE NOT compacted ORDER BY minute LIMIT $1)
                     RETURNING *
                 )
                 INSERT INTO call_minutes (minute, client, server, method, endpoint, protocol,
                                           calls, client_errors, server_errors, failed,
                                           latency_sum_us, latency_max_us, under_1ms, under_10ms,
                                           under_100ms, under_1s, request_bytes, response_bytes,
                                           compacted)
                 SELECT minute, client, server, method, endpoint, protocol,
                        sum(calls), sum(client_errors), sum(server_errors), sum(failed),
                        sum(latency_sum_us), max(latency_max_us), sum(under_1ms),
                        sum(under_10ms), sum(under_100ms), sum(under_1s), sum(request_bytes),
                        sum(response_bytes), true
                 FROM merged
                 GROUP BY minute, client, server, method, endpoint, protocol",
                &[&MINUTES_PER_COMPACTION],
            )
            .map_err(sql)?;
        let sizes = transaction
            .query_one(
                "SELECT count(*),
                        coalesce((SELECT avg(length(record)) FROM
                                    (SELECT record FROM calls ORDER BY row_id DESC LIMIT $1) AS sample),
                                 0)::float8
                 FROM calls",
                &[&SIZE_SAMPLE],
            )
            .map_err(sql)?;
        let excess = retention.excess_calls(sizes.get(0), sizes.get(1));
        if excess > 0 {
            removed += transaction
                .execute(
                    "DELETE FROM calls WHERE row_id IN
                         (SELECT row_id FROM calls ORDER BY time ASC, row_id ASC LIMIT $1)",
                    &[&excess],
                )
                .map_err(sql)?;
        }
        transaction.commit().map_err(sql)?;
        Ok(removed)
    }

    fn service_map(&self, since: i64, until: i64) -> Result<Vec<Edge>, StoreError> {
        // From the per-minute aggregates: cheap over any range, whatever the raw calls kept.
        let minute = |nanos: i64| {
            if nanos == 0 {
                0
            } else {
                nanos.div_euclid(60_000_000_000)
            }
        };
        let rows = self
            .client()?
            .query(
                "SELECT client, server, array_agg(DISTINCT protocol ORDER BY protocol),
                        sum(calls)::bigint, sum(failed)::bigint,
                        div(sum(latency_sum_us), greatest(sum(calls), 1))::bigint,
                        max(latency_max_us)
                 FROM call_minutes
                 WHERE ($1::bigint = 0 OR minute >= $1) AND ($2::bigint = 0 OR minute <= $2)
                 GROUP BY client, server
                 ORDER BY sum(calls) DESC, client, server
                 LIMIT $3",
                &[&minute(since), &minute(until), &MAX_EDGES],
            )
            .map_err(|error| self.error(error))?;
        let edges = rows
            .iter()
            .map(|row| Edge {
                client: row.get(0),
                server: row.get(1),
                protocols: row.get(2),
                calls: row.get::<_, i64>(3) as u64,
                failed: row.get::<_, i64>(4) as u64,
                mean_latency_us: row.get::<_, i64>(5) as u64,
                max_latency_us: row.get::<_, i64>(6) as u64,
                connections: super::EncryptionCounts::default(),
            })
            .collect();
        let counts = self
            .client()?
            .query(
                "SELECT client, server, encryption, count(*) FROM connections
                 WHERE ($1::bigint = 0 OR time >= $1) AND ($2::bigint = 0 OR time <= $2)
                 GROUP BY client, server, encryption",
                &[&since, &until],
            )
            .map_err(|error| self.error(error))?
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    row.get::<_, i64>(3) as u64,
                )
            })
            .collect();
        Ok(super::merge_connections(edges, counts))
    }

    #[cfg(test)]
    fn minute_totals(&self) -> Result<super::MinuteTotals, StoreError> {
        let row = self
            .client()?
            .query_one(
                "SELECT sum(calls)::bigint, sum(failed)::bigint, sum(server_errors)::bigint,
                        count(DISTINCT endpoint)
                 FROM call_minutes",
                &[],
            )
            .map_err(|error| self.error(error))?;
        Ok(super::MinuteTotals {
            calls: row.get(0),
            failed: row.get(1),
            server_errors: row.get(2),
            endpoints: row.get(3),
        })
    }
}
