//! The embedded store: one SQLite file in WAL mode. Records are kept whole (their protobuf
//! encoding) next to the columns queries filter on; the record id is the primary key, so a
//! resent record is counted as a duplicate and stored once.

use std::path::Path;

use moat_api::v1::{ApiCall, CallFilter, record};
use prost::Message as _;
use rusqlite::{Connection, params};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cursor {0:?} is not one this collector returned")]
    BadCursor(String),
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
}

/// What storing a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub accepted: u32,
    pub duplicates: u32,
}

pub struct Store {
    connection: Connection,
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
);
CREATE TABLE IF NOT EXISTS drops (
    node TEXT NOT NULL,
    boot INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    time INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (node, boot, sequence)
);
";

/// Values of both ends joined with a separator no Kubernetes name contains, so a filter on
/// either end is one LIKE.
const SEPARATOR: char = '\u{1f}';

/// A peer as the service map names it: its workload, else its pod, service, node or range,
/// else its address.
fn map_name(peer: Option<&moat_api::v1::Peer>) -> String {
    let Some(peer) = peer else {
        return String::new();
    };
    let identity = peer.identity.clone().unwrap_or_default();
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

/// A path as an endpoint: segments that are identifiers (numbers, UUIDs, long hex) become
/// `{id}`, so `/orders/123` and `/orders/456` aggregate together. Issue 7's inventory learns
/// proper templates; this keeps the per-minute table's cardinality bounded meanwhile.
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

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let connection = Connection::open(path).map_err(open_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        connection.execute_batch(SCHEMA).map_err(open_error)?;
        Ok(Self { connection })
    }

    /// Stores a batch in one transaction: all of it or, on error, none.
    pub fn insert(&mut self, records: &[record::Kind]) -> Result<Stored, StoreError> {
        let transaction = self.connection.transaction()?;
        let mut stored = Stored::default();
        {
            let mut call_statement = transaction.prepare_cached(
                "INSERT OR IGNORE INTO calls (node, boot, sequence, time, cluster, namespaces, workloads, path, status, tags, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut minute_statement = transaction.prepare_cached(
                "INSERT INTO call_minutes (minute, client, server, method, endpoint, protocol, calls,
                                           client_errors, server_errors, failed, latency_sum_us, latency_max_us,
                                           under_1ms, under_10ms, under_100ms, under_1s, request_bytes, response_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (minute, client, server, method, endpoint, protocol) DO UPDATE SET
                     calls = calls + 1,
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
            let mut drop_statement = transaction.prepare_cached(
                "INSERT OR IGNORE INTO drops (node, boot, sequence, time, record) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for record in records {
                let inserted = match record {
                    record::Kind::Call(call) => {
                        let id = call.id.clone().unwrap_or_default();
                        let identity = |peer: &Option<moat_api::v1::Peer>| {
                            peer.as_ref()
                                .and_then(|peer| peer.identity.clone())
                                .unwrap_or_default()
                        };
                        let (client, server) = (identity(&call.client), identity(&call.server));
                        let cluster = if client.cluster.is_empty() {
                            &server.cluster
                        } else {
                            &client.cluster
                        };
                        let tags: String = client
                            .tags
                            .iter()
                            .chain(&server.tags)
                            .map(|tag| format!("{SEPARATOR}{}={}", tag.name, tag.value))
                            .collect::<String>()
                            + &SEPARATOR.to_string();
                        let (client_name, server_name) = (
                            map_name(call.client.as_ref()),
                            map_name(call.server.as_ref()),
                        );
                        let inserted = call_statement.execute(params![
                            id.node,
                            id.boot as i64,
                            id.sequence as i64,
                            call.time_unix_nanos,
                            cluster,
                            both(&client.namespace, &server.namespace),
                            both(&client.workload_name, &server.workload_name),
                            call.path,
                            call.status,
                            tags,
                            call.encode_to_vec(),
                        ])?;
                        // A resent call is already in the aggregates.
                        if inserted == 1 {
                            let latency = call.latency_us;
                            minute_statement.execute(params![
                                call.time_unix_nanos.div_euclid(60_000_000_000),
                                client_name,
                                server_name,
                                call.method,
                                endpoint(&call.path),
                                call.protocol,
                                (400..500).contains(&call.status),
                                call.status >= 500,
                                failed(call),
                                latency as i64,
                                latency < 1_000,
                                latency < 10_000,
                                latency < 100_000,
                                latency < 1_000_000,
                                call.request_bytes as i64,
                                call.response_bytes as i64,
                            ])?;
                        }
                        inserted
                    }
                    record::Kind::Drop(drop) => {
                        let id = drop.id.clone().unwrap_or_default();
                        drop_statement.execute(params![
                            id.node,
                            id.boot as i64,
                            id.sequence as i64,
                            drop.time_unix_nanos,
                            drop.encode_to_vec(),
                        ])?
                    }
                };
                if inserted == 1 {
                    stored.accepted += 1;
                } else {
                    stored.duplicates += 1;
                }
            }
        }
        transaction.commit()?;
        Ok(stored)
    }

    /// Calls matching `filter`, newest first, `page_size` at most, after `cursor`.
    pub fn list_calls(
        &self,
        filter: &CallFilter,
        page_size: u32,
        cursor: &str,
    ) -> Result<(Vec<ApiCall>, String), StoreError> {
        // The cursor is the (time, rowid) of the last call returned: keyset pagination, stable
        // while new calls arrive.
        let (before_time, before_row) = if cursor.is_empty() {
            (i64::MAX, i64::MAX)
        } else {
            let (time, row) = cursor
                .split_once(':')
                .and_then(|(time, row)| Some((time.parse().ok()?, row.parse().ok()?)))
                .ok_or_else(|| StoreError::BadCursor(cursor.to_owned()))?;
            (time, row)
        };
        let limit = page_size.clamp(1, 1000);
        let rows = self.select_calls(
            "(time, rowid) < (?1, ?2)",
            "time DESC, rowid DESC",
            (before_time, before_row),
            filter,
            limit,
        )?;
        let last = rows.last().map(|(rowid, time, _)| (*time, *rowid));
        let calls: Vec<ApiCall> = rows.into_iter().map(|(_, _, call)| call).collect();
        let next = match last {
            Some((time, rowid)) if calls.len() == limit as usize => format!("{time}:{rowid}"),
            _ => String::new(),
        };
        Ok((calls, next))
    }

    /// Calls stored after row `after` that match `filter`, oldest first, with their rows: what a
    /// follower has not seen yet.
    pub fn calls_after(
        &self,
        filter: &CallFilter,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, ApiCall)>, StoreError> {
        Ok(self
            .select_calls("rowid > ?2", "rowid ASC", (0, after), filter, limit)?
            .into_iter()
            .map(|(rowid, _, call)| (rowid, call))
            .collect())
    }

    /// Deletes calls and drops older than `oldest` (Unix nanoseconds), then the oldest calls
    /// beyond `max_calls`; returns how many records went.
    pub fn enforce_retention(&mut self, oldest: i64, max_calls: u64) -> Result<u64, StoreError> {
        let transaction = self.connection.transaction()?;
        let mut removed =
            transaction.execute("DELETE FROM calls WHERE time < ?1", [oldest])? as u64;
        removed += transaction.execute("DELETE FROM drops WHERE time < ?1", [oldest])? as u64;
        transaction.execute(
            "DELETE FROM call_minutes WHERE minute < ?1",
            [oldest.div_euclid(60_000_000_000)],
        )?;
        let count: i64 =
            transaction.query_row("SELECT count(*) FROM calls", [], |row| row.get(0))?;
        let excess = count - i64::try_from(max_calls).unwrap_or(i64::MAX);
        if excess > 0 {
            removed += transaction.execute(
                "DELETE FROM calls WHERE rowid IN (SELECT rowid FROM calls ORDER BY time ASC, rowid ASC LIMIT ?1)",
                [excess],
            )? as u64;
        }
        transaction.commit()?;
        Ok(removed)
    }

    /// Who calls whom between `since` and `until` (Unix nanoseconds; 0: unbounded): one edge
    /// per (client, server), busiest first.
    pub fn service_map(&self, since: i64, until: i64) -> Result<Vec<Edge>, StoreError> {
        // From the per-minute aggregates: cheap over any range, whatever the raw calls kept.
        let minute = |nanos: i64| {
            if nanos == 0 {
                0
            } else {
                nanos.div_euclid(60_000_000_000)
            }
        };
        let mut statement = self.connection.prepare_cached(
            "SELECT client, server, group_concat(DISTINCT protocol), sum(calls), sum(failed),
                    sum(latency_sum_us) / max(sum(calls), 1), max(latency_max_us)
             FROM call_minutes
             WHERE (?1 = 0 OR minute >= ?1) AND (?2 = 0 OR minute <= ?2)
             GROUP BY client, server
             ORDER BY sum(calls) DESC
             LIMIT 10000",
        )?;
        let edges = statement.query_map(params![minute(since), minute(until)], |row| {
            Ok(Edge {
                client: row.get(0)?,
                server: row.get(1)?,
                protocols: row
                    .get::<_, String>(2)?
                    .split(',')
                    .map(str::to_owned)
                    .collect(),
                calls: row.get::<_, i64>(3)? as u64,
                failed: row.get::<_, i64>(4)? as u64,
                mean_latency_us: row.get::<_, i64>(5)? as u64,
                max_latency_us: row.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(edges.collect::<Result<_, _>>()?)
    }

    /// The newest row: a follower starts after it.
    pub fn last_row(&self) -> Result<i64, StoreError> {
        Ok(self
            .connection
            .query_row("SELECT coalesce(max(rowid), 0) FROM calls", [], |row| {
                row.get(0)
            })?)
    }

    /// (rowid, time, call) of the calls at `position` (over ?1 and ?2, bound to `anchor`) that
    /// match `filter`, in `order`.
    fn select_calls(
        &self,
        position: &str,
        order: &str,
        anchor: (i64, i64),
        filter: &CallFilter,
        limit: u32,
    ) -> Result<Vec<(i64, i64, ApiCall)>, StoreError> {
        let like = |value: &str| format!("%{SEPARATOR}{value}{SEPARATOR}%");
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT rowid, time, record FROM calls
             WHERE {position}
               AND (?3 = 0 OR time >= ?3) AND (?4 = 0 OR time < ?4)
               AND (?5 = '' OR cluster = ?5)
               AND (?6 = '' OR namespaces LIKE ?7)
               AND (?8 = '' OR workloads LIKE ?9)
               AND (?10 = '' OR substr(path, 1, length(?10)) = ?10)
               AND status >= ?11
               AND (?12 = '' OR tags LIKE ?13)
             ORDER BY {order}
             LIMIT ?14"
        ))?;
        let rows = statement.query_map(
            params![
                anchor.0,
                anchor.1,
                filter.since_unix_nanos,
                filter.until_unix_nanos,
                filter.cluster,
                filter.namespace,
                like(&filter.namespace),
                filter.workload,
                like(&filter.workload),
                filter.path_prefix,
                filter.min_status,
                filter.tag,
                like(&filter.tag),
                limit,
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            },
        )?;
        let mut calls = Vec::new();
        for row in rows {
            let (rowid, time, bytes) = row?;
            // Only this collector writes the column; a row that does not decode is skipped.
            if let Ok(call) = ApiCall::decode(bytes.as_slice()) {
                calls.push((rowid, time, call));
            }
        }
        Ok(calls)
    }
}

#[cfg(test)]
mod tests {
    use moat_api::v1::{Identity, Peer, RecordId, Tag};

    use super::*;

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

    fn store() -> (Store, PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "moat-store-{}-{:?}.db",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        (Store::open(&path).expect("open"), path)
    }

    use std::path::PathBuf;

    #[test]
    fn the_service_map_counts_calls_and_failures_per_caller_and_callee() {
        let (mut store, path) = store();
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
        let _ = std::fs::remove_file(path);
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
    fn per_minute_aggregates_count_each_call_once() {
        let (mut store, path) = store();
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
        let (calls, failed, server_errors, endpoints): (i64, i64, i64, i64) = store
            .connection
            .query_row(
                "SELECT sum(calls), sum(failed), sum(server_errors), count(DISTINCT endpoint) FROM call_minutes",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .expect("aggregates");
        assert_eq!((calls, failed, server_errors, endpoints), (4, 1, 1, 1));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn retention_removes_what_is_too_old_then_the_oldest_past_the_cap() {
        let (mut store, path) = store();
        let batch: Vec<_> = (1..=10)
            .map(|n| call(n, n as i64 * 100, "shop", "db", "/a", 200))
            .collect();
        store.insert(&batch).expect("insert");
        assert_eq!(store.enforce_retention(300, 1000).expect("by age"), 2);
        assert_eq!(store.enforce_retention(0, 5).expect("by count"), 3);
        let (calls, _) = store
            .list_calls(&CallFilter::default(), 100, "")
            .expect("list");
        let kept: Vec<u64> = calls
            .iter()
            .map(|call| call.id.as_ref().map_or(0, |id| id.sequence))
            .collect();
        assert_eq!(kept, vec![10, 9, 8, 7, 6]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_resent_batch_is_counted_as_duplicates_and_stored_once() {
        let (mut store, path) = store();
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
        let (calls, next) = store
            .list_calls(&CallFilter::default(), 10, "")
            .expect("list");
        assert_eq!(calls.len(), 2);
        assert!(next.is_empty());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn filters_match_either_end_and_pages_follow_the_cursor() {
        let (mut store, path) = store();
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
        let sequences = |calls: Vec<ApiCall>| -> Vec<u64> {
            calls
                .iter()
                .map(|call| call.id.as_ref().map_or(0, |id| id.sequence))
                .collect()
        };
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
            sequences(list(CallFilter {
                workload: "api".into(),
                ..CallFilter::default()
            })),
            vec![25, 20, 15, 10, 5]
        );
        assert_eq!(
            sequences(list(CallFilter {
                min_status: 500,
                ..CallFilter::default()
            })),
            vec![20, 10]
        );
        assert_eq!(
            sequences(list(CallFilter {
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

        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let (calls, next) = store
                .list_calls(&CallFilter::default(), 10, &cursor)
                .expect("page");
            seen.extend(sequences(calls));
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
        let _ = std::fs::remove_file(path);
    }
}
