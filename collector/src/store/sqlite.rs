//! The embedded store: one SQLite file in WAL mode, behind one connection (SQLite has one
//! writer at a time anyway).

use std::{
    path::Path,
    sync::{Mutex, MutexGuard},
};

use moat_api::v1::{
    AgentState, AgentStatus, ApiCall, CallFilter, DataFlow, DataFlowFilter, Drop as DropRecord,
    DropFilter, Endpoint, Finding, FindingFilter, Inventory, record,
};
use prost::Message;
use rusqlite::{CachedStatement, Connection, ToSql, Transaction, params};

use super::{
    CallRow, ConnectionRow, DATA_FLOWS, DROP_FILL_BATCH, DROP_FILTER_COLUMNS, DataFlowValues,
    DropRow, DropValues, ENDPOINTS, Edge, FilterValues, FindingRow, FindingValues, InventoryRow,
    MAX_EDGES, MAX_PAGE, MAX_PER_BOOT_ROWS, MinuteKey, PerBootRow, PerBootTable, Position,
    Retention, SIZE_SAMPLE, Store, StoreError, Stored, agent_state, data_flow_conditions,
    drop_conditions, filter_conditions, finding_conditions, minutes, next_cursor, note_agent_sql,
    parse_cursor,
};

pub struct Sqlite {
    connection: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    node TEXT NOT NULL,
    boot INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    time INTEGER NOT NULL,
    cluster TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    workloads TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    tags TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (time DESC);
-- Keyed by its primary key alone (WITHOUT ROWID): every stored batch upserts its rows, which
-- then costs one B-tree instead of a table and its key's index. Files made before keep the
-- rowid layout, which answers the same.
CREATE TABLE IF NOT EXISTS call_minutes (
    minute INTEGER NOT NULL,
    client TEXT NOT NULL,
    server TEXT NOT NULL,
    method TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    protocol TEXT NOT NULL,
    calls INTEGER NOT NULL,
    client_errors INTEGER NOT NULL,
    server_errors INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    latency_sum_us INTEGER NOT NULL,
    latency_max_us INTEGER NOT NULL,
    under_1ms INTEGER NOT NULL,
    under_10ms INTEGER NOT NULL,
    under_100ms INTEGER NOT NULL,
    under_1s INTEGER NOT NULL,
    request_bytes INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    PRIMARY KEY (minute, client, server, method, endpoint, protocol)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS findings (
    node TEXT NOT NULL,
    boot INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    time INTEGER NOT NULL,
    cluster TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    workloads TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    tags TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    sources TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
CREATE INDEX IF NOT EXISTS findings_by_time ON findings (time DESC);
CREATE TABLE IF NOT EXISTS endpoints (
    node TEXT NOT NULL,
    boot INTEGER NOT NULL,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    time INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (node, boot, service, method, endpoint)
);
CREATE TABLE IF NOT EXISTS data_flows (
    node TEXT NOT NULL,
    boot INTEGER NOT NULL,
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
    time INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (node, boot, service, endpoint, method, direction, data_class, kind, counterpart,
                 counterpart_namespace, counterpart_workload, counterpart_range,
                 counterpart_customer, transport)
);
CREATE TABLE IF NOT EXISTS agents (
    node TEXT NOT NULL,
    boot INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    records_stored INTEGER NOT NULL,
    status BLOB NOT NULL,
    PRIMARY KEY (node, boot)
);
CREATE TABLE IF NOT EXISTS inventories (
    node TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS drops (
    node TEXT NOT NULL,
    boot INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    time INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
CREATE TABLE IF NOT EXISTS connections (
    node TEXT NOT NULL,
    boot INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    time INTEGER NOT NULL,
    client TEXT NOT NULL,
    server TEXT NOT NULL,
    encryption TEXT NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
CREATE INDEX IF NOT EXISTS connections_by_time ON connections (time);
";

impl Sqlite {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut connection = Connection::open(path).map_err(open_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        connection.execute_batch(SCHEMA).map_err(open_error)?;
        add_drop_filter_columns(&mut connection).map_err(open_error)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// (rowid, time, record) of the rows of `table` (`calls` or `findings`) at `position`
    /// (over ?1 and ?2, bound to `anchor`) that match the filter, in `order`; findings also
    /// match `extra`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one query's parts, used by four callers"
    )]
    fn select<M: Message + Default>(
        &self,
        table: &str,
        position: &str,
        order: &str,
        anchor: (i64, i64),
        values: &FilterValues,
        extra: Option<&FindingValues>,
        limit: u32,
    ) -> Result<Vec<(i64, i64, M)>, StoreError> {
        let connection = self.connection();
        let limit = i64::from(limit.clamp(1, MAX_PAGE));
        let mut parameters: Vec<&dyn ToSql> = vec![
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
                    &extra.kind as &dyn ToSql,
                    &extra.service,
                    &extra.source_like,
                    &extra.source,
                ]);
                finding_conditions(|n, _| format!("?{n}"))
            }
            None => "TRUE".to_owned(),
        };
        parameters.push(&limit);
        let mut statement = connection.prepare_cached(&format!(
            "SELECT rowid, time, record FROM {table}
             WHERE {position} AND {} AND {own}
             ORDER BY {order}
             LIMIT ?{}",
            filter_conditions(|n, _| format!("?{n}")),
            parameters.len(),
        ))?;
        decoded_rows(&mut statement, parameters.as_slice())
    }

    fn last_row(&self, table: &str) -> Result<Position, StoreError> {
        let row = self.connection().query_row(
            &format!("SELECT coalesce(max(rowid), 0) FROM {table}"),
            [],
            |row| row.get(0),
        )?;
        Ok(Position {
            transaction: 0,
            row,
        })
    }
}

/// Adds the [`DROP_FILTER_COLUMNS`] a database of an older collector lacks, fills them in, and
/// indexes drops by time, in one transaction.
fn add_drop_filter_columns(connection: &mut Connection) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    let present: Vec<String> = transaction
        .prepare("SELECT name FROM pragma_table_info('drops')")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for (column, declaration, _) in DROP_FILTER_COLUMNS {
        if !present.iter().any(|name| name == column) {
            transaction.execute_batch(&format!(
                "ALTER TABLE drops ADD COLUMN {column} {declaration}"
            ))?;
        }
    }
    loop {
        let unfilled: Vec<(i64, Vec<u8>)> = transaction
            .prepare("SELECT rowid, record FROM drops WHERE sources = '' LIMIT ?1")?
            .query_map([DROP_FILL_BATCH], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if unfilled.is_empty() {
            break;
        }
        let mut update = transaction.prepare_cached(
            "UPDATE drops SET reason = ?2, rule = ?3, source_address = ?4, sources = ?5,
                              namespaces = ?6, workloads = ?7
             WHERE rowid = ?1",
        )?;
        for (rowid, bytes) in unfilled {
            // A record that does not decode (none should: only collectors write the column)
            // is filled as a drop with no fields, so the fill does not come back to it.
            let row = DropRow::new(&DropRecord::decode(bytes.as_slice()).unwrap_or_default());
            update.execute(params![
                rowid,
                row.reason,
                row.rule,
                row.source_address,
                row.sources,
                row.namespaces,
                row.workloads,
            ])?;
        }
    }
    transaction.execute_batch("CREATE INDEX IF NOT EXISTS drops_by_time ON drops (time DESC)")?;
    transaction.commit()
}

/// The statement that stores a row of `table`, as [`store_per_boot`] runs it.
fn per_boot_statement<'t>(
    transaction: &'t Transaction<'_>,
    table: &PerBootTable,
) -> rusqlite::Result<CachedStatement<'t>> {
    let placeholders: Vec<String> = (1..=table.key.len() + 4).map(|n| format!("?{n}")).collect();
    transaction.prepare_cached(&table.upsert(&format!("VALUES ({})", placeholders.join(", "))))
}

/// Stores `row` unless a newer one of its agent boot and key is stored; whether it was.
fn store_per_boot(statement: &mut CachedStatement<'_>, row: &PerBootRow) -> rusqlite::Result<bool> {
    let mut parameters: Vec<&dyn ToSql> = vec![&row.node, &row.boot];
    parameters.extend(row.key.iter().map(|value| value as &dyn ToSql));
    parameters.extend([&row.time as &dyn ToSql, &row.record]);
    Ok(statement.execute(parameters.as_slice())? == 1)
}

/// Rows after `after`, with their positions.
/// A record as the rows it is stored as.
enum Row<'r> {
    Call(CallRow, MinuteKey, &'r ApiCall),
    Drop(DropRow),
    Finding(FindingRow),
    Inventory(InventoryRow),
    Endpoint(PerBootRow),
    DataFlow(PerBootRow),
    Connection(ConnectionRow),
}

impl<'r> Row<'r> {
    fn new(record: &'r record::Kind) -> Self {
        match record {
            record::Kind::Call(call) => Row::Call(CallRow::new(call), MinuteKey::of(call), call),
            record::Kind::Drop(drop) => Row::Drop(DropRow::new(drop)),
            record::Kind::Finding(finding) => Row::Finding(FindingRow::new(finding)),
            record::Kind::Inventory(inventory) => Row::Inventory(InventoryRow::new(inventory)),
            record::Kind::Endpoint(endpoint) => Row::Endpoint(PerBootRow::endpoint(endpoint)),
            record::Kind::DataFlow(flow) => Row::DataFlow(PerBootRow::data_flow(flow)),
            record::Kind::Connection(connection) => Row::Connection(ConnectionRow::new(connection)),
        }
    }
}

fn positioned<M>(rows: Vec<(i64, i64, M)>) -> Vec<(Position, M)> {
    rows.into_iter()
        .map(|(row, _, record)| {
            let position = Position {
                transaction: 0,
                row,
            };
            (position, record)
        })
        .collect()
}

impl Store for Sqlite {
    fn insert(&self, records: &[record::Kind]) -> Result<Stored, StoreError> {
        // Rows are built (records encoded, filter columns and aggregate keys formatted) before
        // the one writer's lock is taken, so that concurrent streams build theirs in parallel
        // and the lock is held only for SQLite's own work.
        let rows: Vec<Row<'_>> = records.iter().map(Row::new).collect();
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        let mut stored = Stored::default();
        let mut new_calls = Vec::new();
        {
            let mut call_statement = transaction.prepare_cached(
                "INSERT OR IGNORE INTO calls (node, boot, sequence, time, cluster, namespaces, workloads, path, status, tags, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut drop_statement = transaction.prepare_cached(
                "INSERT OR IGNORE INTO drops (node, boot, sequence, time, reason, rule, source_address,
                                              sources, namespaces, workloads, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut finding_statement = transaction.prepare_cached(
                "INSERT OR IGNORE INTO findings (node, boot, sequence, time, cluster, namespaces, workloads, path, status, tags, kind, service, sources, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            let mut inventory_statement = transaction.prepare_cached(
                "INSERT INTO inventories (node, time, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node) DO UPDATE SET time = excluded.time, record = excluded.record
                 WHERE excluded.time > inventories.time",
            )?;
            let mut connection_statement = transaction.prepare_cached(
                "INSERT OR IGNORE INTO connections (node, boot, sequence, time, client, server, encryption)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut endpoint_statement = per_boot_statement(&transaction, &ENDPOINTS)?;
            let mut data_flow_statement = per_boot_statement(&transaction, &DATA_FLOWS)?;
            for row in rows {
                let inserted = match row {
                    Row::Call(row, minute, call) => {
                        let inserted = call_statement.execute(params![
                            row.node,
                            row.boot,
                            row.sequence,
                            row.time,
                            row.cluster,
                            row.namespaces,
                            row.workloads,
                            row.path,
                            row.status,
                            row.tags,
                            row.record,
                        ])? == 1;
                        // A resent call is already in the aggregates.
                        if inserted {
                            new_calls.push((minute, call));
                        }
                        inserted
                    }
                    Row::Drop(row) => {
                        drop_statement.execute(params![
                            row.node,
                            row.boot,
                            row.sequence,
                            row.time,
                            row.reason,
                            row.rule,
                            row.source_address,
                            row.sources,
                            row.namespaces,
                            row.workloads,
                            row.record,
                        ])? == 1
                    }
                    Row::Finding(FindingRow {
                        call: row,
                        kind,
                        service,
                        sources,
                    }) => {
                        finding_statement.execute(params![
                            row.node,
                            row.boot,
                            row.sequence,
                            row.time,
                            row.cluster,
                            row.namespaces,
                            row.workloads,
                            row.path,
                            row.status,
                            row.tags,
                            kind,
                            service,
                            sources,
                            row.record,
                        ])? == 1
                    }
                    Row::Inventory(row) => {
                        inventory_statement.execute(params![row.node, row.time, row.record])? == 1
                    }
                    Row::Endpoint(row) => store_per_boot(&mut endpoint_statement, &row)?,
                    Row::DataFlow(row) => store_per_boot(&mut data_flow_statement, &row)?,
                    Row::Connection(row) => {
                        connection_statement.execute(params![
                            row.node,
                            row.boot,
                            row.sequence,
                            row.time,
                            row.client,
                            row.server,
                            row.encryption,
                        ])? == 1
                    }
                };
                if inserted {
                    stored.accepted += 1;
                } else {
                    stored.duplicates += 1;
                }
            }
            let mut minute_statement = transaction.prepare_cached(
                "INSERT INTO call_minutes (minute, client, server, method, endpoint, protocol, calls,
                                           client_errors, server_errors, failed, latency_sum_us, latency_max_us,
                                           under_1ms, under_10ms, under_100ms, under_1s, request_bytes, response_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
                 ON CONFLICT (minute, client, server, method, endpoint, protocol) DO UPDATE SET
                     calls = calls + excluded.calls,
                     client_errors = client_errors + excluded.client_errors,
                     server_errors = server_errors + excluded.server_errors,
                     failed = failed + excluded.failed,
                     latency_sum_us = latency_sum_us + excluded.latency_sum_us,
                     latency_max_us = max(latency_max_us, excluded.latency_max_us),
                     under_1ms = under_1ms + excluded.under_1ms,
                     under_10ms = under_10ms + excluded.under_10ms,
                     under_100ms = under_100ms + excluded.under_100ms,
                     under_1s = under_1s + excluded.under_1s,
                     request_bytes = request_bytes + excluded.request_bytes,
                     response_bytes = response_bytes + excluded.response_bytes",
            )?;
            for (key, counts) in minutes(new_calls) {
                minute_statement.execute(params![
                    key.minute,
                    key.client,
                    key.server,
                    key.method,
                    key.endpoint,
                    key.protocol,
                    counts.calls,
                    counts.client_errors,
                    counts.server_errors,
                    counts.failed,
                    counts.latency_sum_us,
                    counts.latency_max_us,
                    counts.under_1ms,
                    counts.under_10ms,
                    counts.under_100ms,
                    counts.under_1s,
                    counts.request_bytes,
                    counts.response_bytes,
                ])?;
            }
        }
        transaction.commit()?;
        Ok(stored)
    }

    fn list_calls(
        &self,
        filter: &CallFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<ApiCall>, String), StoreError> {
        let before = parse_cursor(cursor)?;
        let limit = page_size.clamp(1, MAX_PAGE);
        let rows = self.select::<ApiCall>(
            "calls",
            "(time, rowid) < (?1, ?2)",
            "time DESC, rowid DESC",
            before,
            &FilterValues::new(filter),
            None,
            limit,
        )?;
        let next = next_cursor(&rows, limit);
        Ok((rows.into_iter().map(|(_, _, call)| call).collect(), next))
    }

    fn calls_after(
        &self,
        filter: &CallFilter,
        after: Position,
        limit: u32,
    ) -> Result<Vec<(Position, ApiCall)>, StoreError> {
        Ok(positioned(self.select(
            "calls",
            "rowid > ?2",
            "rowid ASC",
            (0, after.row),
            &FilterValues::new(filter),
            None,
            limit,
        )?))
    }

    fn last_position(&self) -> Result<Position, StoreError> {
        self.last_row("calls")
    }

    fn list_findings(
        &self,
        filter: &FindingFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<Finding>, String), StoreError> {
        let before = parse_cursor(cursor)?;
        let limit = page_size.clamp(1, MAX_PAGE);
        let (values, own) = FindingValues::new(filter);
        let rows = self.select::<Finding>(
            "findings",
            "(time, rowid) < (?1, ?2)",
            "time DESC, rowid DESC",
            before,
            &values,
            Some(&own),
            limit,
        )?;
        let next = next_cursor(&rows, limit);
        Ok((
            rows.into_iter().map(|(_, _, finding)| finding).collect(),
            next,
        ))
    }

    fn findings_after(
        &self,
        filter: &FindingFilter,
        after: Position,
        limit: u32,
    ) -> Result<Vec<(Position, Finding)>, StoreError> {
        let (values, own) = FindingValues::new(filter);
        Ok(positioned(self.select(
            "findings",
            "rowid > ?2",
            "rowid ASC",
            (0, after.row),
            &values,
            Some(&own),
            limit,
        )?))
    }

    fn last_finding_position(&self) -> Result<Position, StoreError> {
        self.last_row("findings")
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
        let parameters: [&dyn ToSql; 15] = [
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
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT rowid, time, record FROM drops
             WHERE (time, rowid) < (?1, ?2) AND {}
             ORDER BY time DESC, rowid DESC
             LIMIT ?15",
            drop_conditions(|n, _| format!("?{n}")),
        ))?;
        let drops: Vec<(i64, i64, DropRecord)> =
            decoded_rows(&mut statement, parameters.as_slice())?;
        let next = next_cursor(&drops, limit as u32);
        Ok((drops.into_iter().map(|(_, _, drop)| drop).collect(), next))
    }

    fn endpoint_rows(&self, service: &str) -> Result<Vec<Endpoint>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT record FROM endpoints WHERE (?1 = '' OR service = ?1) LIMIT ?2",
        )?;
        let rows = statement.query_map(params![service, MAX_PER_BOOT_ROWS], |row| {
            row.get::<_, Vec<u8>>(0)
        })?;
        let mut endpoints = Vec::new();
        for bytes in rows {
            if let Ok(endpoint) = Endpoint::decode(bytes?.as_slice()) {
                endpoints.push(endpoint);
            }
        }
        Ok(endpoints)
    }

    fn data_flow_rows(&self, filter: &DataFlowFilter) -> Result<(Vec<DataFlow>, bool), StoreError> {
        let values = DataFlowValues::new(filter);
        // One more than the bound, to tell a full answer from a cut one.
        let limit = MAX_PER_BOOT_ROWS + 1;
        let mut parameters: Vec<&dyn ToSql> = values
            .texts
            .iter()
            .map(|value| value as &dyn ToSql)
            .collect();
        parameters.extend([&values.since as &dyn ToSql, &limit]);
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT record FROM data_flows WHERE {} LIMIT ?12",
            data_flow_conditions(|n, _| format!("?{n}")),
        ))?;
        let rows = statement.query_map(parameters.as_slice(), |row| row.get::<_, Vec<u8>>(0))?;
        let mut flows = Vec::new();
        for bytes in rows {
            if let Ok(flow) = DataFlow::decode(bytes?.as_slice()) {
                flows.push(flow);
            }
        }
        let incomplete = flows.len() as i64 > MAX_PER_BOOT_ROWS;
        flows.truncate(MAX_PER_BOOT_ROWS as usize);
        Ok((flows, incomplete))
    }

    fn note_agent(&self, status: &AgentStatus, stored: u64, seen: i64) -> Result<(), StoreError> {
        let connection = self.connection();
        let mut statement =
            connection.prepare_cached(&note_agent_sql(|n| format!("?{n}"), "max"))?;
        statement.execute(params![
            status.node,
            status.boot as i64,
            seen,
            stored as i64,
            status.encode_to_vec(),
        ])?;
        Ok(())
    }

    fn agents(&self) -> Result<Vec<AgentState>, StoreError> {
        let connection = self.connection();
        let mut statement =
            connection.prepare_cached("SELECT last_seen, records_stored, status FROM agents")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut agents = Vec::new();
        for row in rows {
            let (last_seen, stored, status) = row?;
            agents.extend(agent_state(last_seen, stored, &status));
        }
        Ok(agents)
    }

    fn inventories(&self) -> Result<Vec<(String, Inventory)>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached("SELECT node, record FROM inventories")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut inventories = Vec::new();
        for row in rows {
            let (node, bytes) = row?;
            if let Ok(inventory) = Inventory::decode(bytes.as_slice()) {
                inventories.push((node, inventory));
            }
        }
        Ok(inventories)
    }

    fn enforce_retention(&self, retention: Retention) -> Result<u64, StoreError> {
        let oldest = retention.oldest;
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        let mut removed = 0;
        for table in [
            "calls",
            "drops",
            "findings",
            "endpoints",
            "data_flows",
            "inventories",
            "connections",
        ] {
            removed += transaction
                .execute(&format!("DELETE FROM {table} WHERE time < ?1"), [oldest])?
                as u64;
        }
        removed += transaction.execute("DELETE FROM agents WHERE last_seen < ?1", [oldest])? as u64;
        transaction.execute(
            "DELETE FROM call_minutes WHERE minute < ?1",
            [oldest.div_euclid(60_000_000_000)],
        )?;
        let (count, mean_bytes): (i64, f64) = transaction.query_row(
            "SELECT count(*),
                    coalesce((SELECT avg(length(record)) FROM
                                (SELECT record FROM calls ORDER BY rowid DESC LIMIT ?1)), 0)
             FROM calls",
            [SIZE_SAMPLE],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let excess = retention.excess_calls(count, mean_bytes);
        if excess > 0 {
            removed += transaction.execute(
                "DELETE FROM calls WHERE rowid IN (SELECT rowid FROM calls ORDER BY time ASC, rowid ASC LIMIT ?1)",
                [excess],
            )? as u64;
        }
        transaction.commit()?;
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
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT client, server, group_concat(DISTINCT protocol), sum(calls), sum(failed),
                    sum(latency_sum_us) / max(sum(calls), 1), max(latency_max_us)
             FROM call_minutes
             WHERE (?1 = 0 OR minute >= ?1) AND (?2 = 0 OR minute <= ?2)
             GROUP BY client, server
             ORDER BY sum(calls) DESC, client, server
             LIMIT ?3",
        )?;
        let edges =
            statement.query_map(params![minute(since), minute(until), MAX_EDGES], |row| {
                let mut protocols: Vec<String> = row
                    .get::<_, String>(2)?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                // group_concat's order is unspecified; PostgreSQL's store sorts them too.
                protocols.sort_unstable();
                Ok(Edge {
                    client: row.get(0)?,
                    server: row.get(1)?,
                    protocols,
                    calls: row.get::<_, i64>(3)? as u64,
                    failed: row.get::<_, i64>(4)? as u64,
                    mean_latency_us: row.get::<_, i64>(5)? as u64,
                    max_latency_us: row.get::<_, i64>(6)? as u64,
                    connections: super::EncryptionCounts::default(),
                })
            })?;
        let edges = edges.collect::<Result<_, _>>()?;
        let mut statement = connection.prepare_cached(
            "SELECT client, server, encryption, count(*) FROM connections
             WHERE (?1 = 0 OR time >= ?1) AND (?2 = 0 OR time <= ?2)
             GROUP BY client, server, encryption",
        )?;
        let counts = statement.query_map(params![since, until], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get::<_, i64>(3)? as u64,
            ))
        })?;
        Ok(super::merge_connections(
            edges,
            counts.collect::<Result<_, _>>()?,
        ))
    }

    #[cfg(test)]
    fn minute_totals(&self) -> Result<super::MinuteTotals, StoreError> {
        Ok(self.connection().query_row(
            "SELECT sum(calls), sum(failed), sum(server_errors), count(DISTINCT endpoint) FROM call_minutes",
            [],
            |row| {
                Ok(super::MinuteTotals {
                    calls: row.get(0)?,
                    failed: row.get(1)?,
                    server_errors: row.get(2)?,
                    endpoints: row.get(3)?,
                })
            },
        )?)
    }
}

/// The `(rowid, time, record)` rows a statement selects, records decoded.
fn decoded_rows<M: Message + Default>(
    statement: &mut CachedStatement<'_>,
    parameters: &[&dyn ToSql],
) -> Result<Vec<(i64, i64, M)>, StoreError> {
    let rows = statement.query_map(parameters, |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut records = Vec::new();
    for row in rows {
        let (rowid, time, bytes) = row?;
        // Only this collector writes the column; a row that does not decode is skipped.
        if let Ok(record) = M::decode(bytes.as_slice()) {
            records.push((rowid, time, record));
        }
    }
    Ok(records)
}
