//! `moat-bench collector`: what the collector sustains.
//!
//! - Ingest: records/s that several concurrent export streams get stored through a real
//!   moat-collector (gRPC, decoding, validation, storing), into SQLite (WAL mode) and into
//!   PostgreSQL (a throwaway server with its default durability: fsync at each commit), side by
//!   side; each against the same records inserted straight into a bare table of the same
//!   database in the same run (the floor any store there pays: one transaction per batch, no
//!   gRPC, no indexes).
//! - Queries: ListCalls latency (p50, p99) for each filter over everything stored, per store.
//! - Agent export: CPU the agent's exporter takes per 10k records/s shipped to a real collector,
//!   against the same paced loop making the records without shipping them.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use moat_api::v1::{
    ApiCall, CallFilter, ExportRequest, Identity, ListCallsRequest, Peer, Record, RecordId, Tag,
    ingest_client::IngestClient, query_client::QueryClient, record,
};
use prost::Message as _;

use crate::measure::cpu_time;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Records to ingest (and then query over).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Concurrent export streams, as from that many agents.
    #[arg(long, default_value_t = 4)]
    streams: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 1_000)]
    batch: u64,
    /// Queries per filter.
    #[arg(long, default_value_t = 50)]
    queries: usize,
    /// Records/s the agent's exporter ships for the export CPU measure.
    #[arg(long, default_value_t = 10_000)]
    export_rate: u64,
    /// How long the export CPU measure runs, in seconds.
    #[arg(long, default_value_t = 10)]
    export_seconds: u64,
}

const PORT: u16 = 17170;

/// Calls are stamped one millisecond apart from this time on, which is the moment the benchmark
/// starts minus one millisecond per record: recent enough that the collector's retention (7
/// days by default) keeps every one of them while the benchmark runs.
fn first_call_time(records: u64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i64);
    now - records as i64 * 1_000_000
}

fn call(first_time: i64, stream: u64, sequence: u64) -> ApiCall {
    let peer = |namespace: &str, workload: String, ip: &str| Peer {
        ip: ip.into(),
        port: 8080,
        identity: Some(Identity {
            kind: "pod".into(),
            cluster: "bench".into(),
            namespace: namespace.into(),
            workload_kind: "Deployment".into(),
            workload_name: workload,
            tags: vec![Tag {
                name: "team".into(),
                value: format!("team-{}", sequence % 20),
            }],
            ..Identity::default()
        }),
        ..Peer::default()
    };
    ApiCall {
        id: Some(RecordId {
            node: format!("node-{stream}"),
            boot: 1,
            sequence,
        }),
        time_unix_nanos: first_time + (sequence * 1_000_000) as i64,
        protocol: "http1".into(),
        client: Some(peer("edge", "gateway".into(), "10.0.0.1")),
        server: Some(peer(
            &format!("ns-{}", sequence % 50),
            format!("app-{}", sequence % 500),
            "10.0.1.1",
        )),
        method: "GET".into(),
        path: format!("/v1/items/{}", sequence % 1000),
        status: if sequence.is_multiple_of(97) {
            503
        } else {
            200
        },
        latency_us: 1_000 + sequence % 5_000,
        request_bytes: 300,
        response_bytes: 2_000,
        ..ApiCall::default()
    }
}

fn collector_binary() -> anyhow::Result<PathBuf> {
    let bench = std::env::current_exe().context("finding moat-bench's own path")?;
    let collector = bench.with_file_name("moat-collector");
    if !collector.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p collector` (`cargo xtask bench collector` does)",
            collector.display()
        );
    }
    Ok(collector)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let directory =
        std::env::temp_dir().join(format!("moat-bench-collector-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory)?;
    let outcome = measure(options, &directory);
    let _ = std::fs::remove_dir_all(&directory);
    outcome
}

fn measure(options: &Options, directory: &std::path::Path) -> anyhow::Result<()> {
    let per_stream = options.records / options.streams.max(1);
    let total = per_stream * options.streams.max(1);
    let first_time = first_call_time(total);
    println!(
        "collector: {total} records over {} streams, batches of {}",
        options.streams, options.batch
    );

    // Floors: the same records, encoded as the collector stores them, into a bare table.
    let sqlite_floor = {
        let connection = rusqlite::Connection::open(directory.join("floor.db"))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection
            .execute_batch("CREATE TABLE calls (id INTEGER PRIMARY KEY, record BLOB NOT NULL)")?;
        let started = Instant::now();
        let mut connection = connection;
        for chunk_start in (0..total).step_by(options.batch.max(1) as usize) {
            let transaction = connection.transaction()?;
            {
                let mut statement =
                    transaction.prepare_cached("INSERT INTO calls (record) VALUES (?1)")?;
                for sequence in chunk_start..(chunk_start + options.batch).min(total) {
                    statement.execute([call(first_time, 0, sequence + 1).encode_to_vec()])?;
                }
            }
            transaction.commit()?;
        }
        total as f64 / started.elapsed().as_secs_f64()
    };

    let postgres = testbed::postgres::Server::start_with(testbed::postgres::Durability::Full)
        .context("starting PostgreSQL for the collector's PostgreSQL store")?;
    let postgres_floor = {
        let mut client = postgres::Client::connect(&postgres.url(), postgres::NoTls)?;
        client.batch_execute(
            "CREATE TABLE floor (id BIGINT GENERATED ALWAYS AS IDENTITY, record BYTEA NOT NULL)",
        )?;
        let started = Instant::now();
        for chunk_start in (0..total).step_by(options.batch.max(1) as usize) {
            let records: Vec<Vec<u8>> = (chunk_start..(chunk_start + options.batch).min(total))
                .map(|sequence| call(first_time, 0, sequence + 1).encode_to_vec())
                .collect();
            client.execute(
                "INSERT INTO floor (record) SELECT * FROM unnest($1::bytea[])",
                &[&records],
            )?;
        }
        total as f64 / started.elapsed().as_secs_f64()
    };

    let stores = [
        (
            "SQLite",
            format!("sqlite:{}", directory.join("moat.db").display()),
            sqlite_floor,
            "100k/s",
        ),
        ("PostgreSQL", postgres.url(), postgres_floor, "50k/s"),
    ];
    let mut results = Vec::new();
    for (port, (name, store, floor, target)) in (PORT..).zip(&stores) {
        let result = through_collector(options, store, port)
            .with_context(|| format!("the collector storing in {name}"))?;
        results.push((*name, result, *floor, *target));
    }

    println!(
        "  ingest, records/s stored through moat-collector, and bare inserts into the same database:"
    );
    for (name, result, floor, target) in &results {
        println!(
            "    {name:<10} {:>9.0}/s; bare inserts {floor:>9.0}/s (ratio {:.2}; target {target}); \
             collector CPU {:.1} us per record",
            result.ingest_rate,
            result.ingest_rate / floor,
            result.ingest_cpu.as_secs_f64() * 1e6
        );
    }
    println!("  ListCalls over {total} records, p50 / p99 in ms:");
    for (index, (filter, _)) in results[0].1.queries.iter().enumerate() {
        let line: Vec<String> = results
            .iter()
            .map(|(name, result, _, _)| {
                let (_, (p50, p99)) = result.queries[index];
                format!(
                    "{name} {:>7.2} / {:>7.2}",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                )
            })
            .collect();
        println!("    {filter:<14} {}", line.join("   "));
    }

    let rate = options.export_rate;
    let (exporting, floor) =
        agent_export_cost(&stores[0].1, PORT + 10, rate, options.export_seconds)
            .context("the agent's export")?;
    let per_10k = |cpu: Duration| cpu.as_secs_f64() * 1e3 * 10_000.0 / rate as f64;
    println!(
        "  agent export at {rate} records/s: {:.1} ms CPU per second per 10k records/s \
         ({:.1}% of a core); making the records alone {:.1} ms (ratio {:.2})",
        per_10k(exporting),
        per_10k(exporting) / 10.0,
        per_10k(floor),
        exporting.as_secs_f64() / floor.as_secs_f64().max(1e-9),
    );
    Ok(())
}

/// A moat-collector storing in `store`, listening on loopback `port` once this returns.
fn start_collector(store: &str, port: u16) -> anyhow::Result<(Running, SocketAddr)> {
    let collector = Running(
        Command::new(collector_binary()?)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "warn",
                "--store",
            ])
            .arg(store)
            .stdin(Stdio::null())
            .spawn()
            .context("starting moat-collector")?,
    );
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
        if Instant::now() > deadline {
            bail!("moat-collector does not listen on {address}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((collector, address))
}

/// This process's CPU time (user and system) so far.
fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |value: libc::timeval| {
        Duration::from_secs(value.tv_sec as u64) + Duration::from_micros(value.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The agent's side of shipping: CPU the agent's exporter (batching, encoding, compression,
/// gRPC, acknowledgements) takes for `rate` records/s for `seconds` into a real collector,
/// against the same loop making the same records without shipping them. Returns (exporting,
/// floor) CPU per second of wall time.
fn agent_export_cost(
    store: &str,
    port: u16,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<(Duration, Duration)> {
    let first_time = first_call_time(rate * seconds);
    let (_collector, address) = start_collector(store, port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let paced = |ship: &mut dyn FnMut(Record)| {
        let started = Instant::now();
        let cpu = own_cpu();
        let tick = Duration::from_millis(10);
        let per_tick = rate * tick.as_millis() as u64 / 1000;
        let mut sequence = 0;
        for step in 0..seconds * 100 {
            for _ in 0..per_tick {
                sequence += 1;
                ship(Record {
                    kind: Some(record::Kind::Call(call(first_time, 0, sequence))),
                });
            }
            let due = started + tick * (step as u32 + 1);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        (own_cpu() - cpu).div_f64(started.elapsed().as_secs_f64())
    };
    let floor = paced(&mut |record| drop(std::hint::black_box(record)));
    let exporter = runtime.block_on(async {
        agent::export::Exporter::start(agent::export::ExportConfig {
            url: format!("http://{address}"),
            node: "bench".to_owned(),
            queue_records: 100_000,
            batch_records: 1_000,
            flush_interval: Duration::from_millis(500),
            tls: None,
            spool: None,
        })
    })?;
    let _guard = runtime.enter();
    let exporting = paced(&mut |record| exporter.push(record));
    // Everything shipped must have been stored, or the measure flatters the exporter.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = exporter.stats();
        if stats.acknowledged + stats.duplicates >= rate * seconds {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the collector acknowledged {} of {} records",
                stats.acknowledged,
                rate * seconds
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((exporting, floor))
}

/// What one store sustains through the collector.
struct Measured {
    ingest_rate: f64,
    /// The collector's CPU time (all threads) per record stored.
    ingest_cpu: Duration,
    /// (filter, (p50, p99)) of ListCalls.
    queries: Vec<(&'static str, (Duration, Duration))>,
}

/// Ingests `options.records` through a moat-collector storing in `store` (listening on `port`),
/// then times ListCalls for each filter.
fn through_collector(options: &Options, store: &str, port: u16) -> anyhow::Result<Measured> {
    let per_stream = options.records / options.streams.max(1);
    let total = per_stream * options.streams.max(1);
    let first_time = first_call_time(total);
    let (collector, address) = start_collector(store, port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let url = format!("http://{address}");
    let cpu_before = cpu_time(collector.0.id())?;
    let ingest_rate = runtime.block_on(async {
        let started = Instant::now();
        let mut streams = Vec::new();
        for stream in 0..options.streams.max(1) {
            let url = url.clone();
            let batch = options.batch.max(1);
            streams.push(tokio::spawn(async move {
                let mut client = IngestClient::connect(url).await?;
                let batches = (0..per_stream).step_by(batch as usize).enumerate().map(
                    move |(number, start)| ExportRequest {
                        batch: number as u64 + 1,
                        records: (start..(start + batch).min(per_stream))
                            .map(|sequence| Record {
                                kind: Some(record::Kind::Call(call(
                                    first_time,
                                    stream,
                                    sequence + 1,
                                ))),
                            })
                            .collect(),
                        ..ExportRequest::default()
                    },
                );
                let expected = per_stream.div_ceil(batch) as usize;
                let mut acks = client
                    .export(tokio_stream::iter(batches))
                    .await?
                    .into_inner();
                let mut stored = 0u64;
                for _ in 0..expected {
                    match acks.message().await? {
                        Some(ack) => stored += u64::from(ack.accepted),
                        None => break,
                    }
                }
                anyhow::Ok(stored)
            }));
        }
        let mut stored = 0;
        for stream in streams {
            stored += stream.await??;
        }
        if stored != total {
            bail!("{stored} of {total} records stored");
        }
        anyhow::Ok(total as f64 / started.elapsed().as_secs_f64())
    })?;
    let ingest_cpu = cpu_time(collector.0.id())?
        .saturating_sub(cpu_before)
        .div_f64(total as f64);

    let filters: [(&str, CallFilter); 6] = [
        ("newest 100", CallFilter::default()),
        (
            "namespace",
            CallFilter {
                namespace: "ns-7".into(),
                ..CallFilter::default()
            },
        ),
        (
            "workload",
            CallFilter {
                workload: "app-123".into(),
                ..CallFilter::default()
            },
        ),
        (
            "path prefix",
            CallFilter {
                path_prefix: "/v1/items/99".into(),
                ..CallFilter::default()
            },
        ),
        (
            "status >= 500",
            CallFilter {
                min_status: 500,
                ..CallFilter::default()
            },
        ),
        (
            "tag",
            CallFilter {
                tag: "team=team-3".into(),
                ..CallFilter::default()
            },
        ),
    ];
    let queries = runtime.block_on(async {
        let mut client = QueryClient::connect(url).await?;
        let mut queries = Vec::new();
        for (name, filter) in filters {
            let mut times = Vec::with_capacity(options.queries);
            for _ in 0..options.queries.max(1) {
                let started = Instant::now();
                client
                    .list_calls(ListCallsRequest {
                        filter: Some(filter.clone()),
                        page_size: 100,
                        cursor: String::new(),
                    })
                    .await?;
                times.push(started.elapsed());
            }
            times.sort_unstable();
            let p50 = times[times.len() / 2];
            let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
            queries.push((name, (p50, p99)));
        }
        anyhow::Ok(queries)
    })?;
    Ok(Measured {
        ingest_rate,
        ingest_cpu,
        queries,
    })
}
