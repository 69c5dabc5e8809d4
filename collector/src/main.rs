//! moat-collector: receives the records agents ship (gRPC `moat.v1.Ingest`), stores them, and
//! answers queries (`moat.v1.Query`), with gRPC health and server reflection.

mod access;
mod service;
mod store;
mod validate;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context as _, bail};
use clap::Parser;
use moat_api::v1::{ingest_server::IngestServer, query_server::QueryServer};
use tracing::info;

/// Every ingested record is decoded into owned strings and re-encoded for storage; with glibc's
/// allocator, malloc and free were a fifth of the collector's time at full ingest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Moat's collector: agents ship API calls and drops to it (`moat-agent --collector URL`); the
/// `moat` CLI and any gRPC client query it (package moat.v1; server reflection is on).
#[derive(Debug, Parser)]
#[command(name = "moat-collector", version)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Where to store: `sqlite:PATH`, one file created if missing (WAL mode); or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also `postgresql://`), a PostgreSQL
    /// database that several collectors may share (its tables are created if missing). TLS to
    /// it as libpq's URL parameters say: `sslmode=disable|prefer|require|verify-ca|verify-full`
    /// (default prefer: TLS if the server offers it; use verify-full), `sslrootcert=FILE` (the
    /// CA; or --store-ca), `sslcert=FILE&sslkey=FILE` (a client certificate). From $MOAT_STORE
    /// when the flag is absent, which keeps a password off the command line.
    #[arg(
        long,
        env = "MOAT_STORE",
        hide_env_values = true,
        value_name = "URL",
        default_value = "sqlite:moat.db"
    )]
    store: String,
    /// The CA (PEM) that signed the PostgreSQL server's certificate, checked under
    /// sslmode=verify-full (and verify-ca, require, prefer); instead of sslrootcert= in the URL.
    #[arg(long, value_name = "FILE")]
    store_ca: Option<PathBuf>,
    /// Records older than this are deleted (checked every minute), e.g. `7d`, `36h`.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    retention: std::time::Duration,
    /// At most this many calls are kept; the oldest go first.
    #[arg(long, value_name = "CALLS", default_value_t = 10_000_000)]
    max_calls: u64,
    /// At most this many bytes of stored calls (their encoded records, estimated from the
    /// newest thousand; indexes and aggregates come on top), e.g. `20GiB`; the oldest go first.
    #[arg(long, value_name = "BYTES", default_value = "20GiB", value_parser = parse_bytes)]
    max_call_bytes: u64,
    /// Query tokens (YAML: `tokens: [{name, token, role: reader|admin}]`); every query must
    /// carry one (`authorization: Bearer <token>`). The file is reread every 2 seconds, so a
    /// Kubernetes Secret mounted as a volume rotates tokens without a restart; a bad edit is
    /// refused and the tokens in force stay. Without this file queries need none, which is only
    /// allowed when listening on a loopback address.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Serve TLS with this certificate (PEM; with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Agents must present a client certificate signed by this CA (PEM) to ship records (mTLS);
    /// query clients may connect without one (their tokens say who they are).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Log filter for standard error, e.g. `debug`.
    #[arg(long, env = "MOAT_LOG", value_name = "FILTER", default_value = "info")]
    log_level: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let access = match &args.tokens {
        Some(path) => access::Access::load(path)?,
        None if args.listen.ip().is_loopback() => access::Access::open(),
        None => bail!(
            "--listen {}: queries on a non-loopback address need --tokens FILE (no token, no data)",
            args.listen
        ),
    };
    let tls = tls_config(&args)?;
    let store = store::open(&args.store, args.store_ca.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("--listen {}: cannot listen there", args.listen))?;
        info!(listen = %args.listen, store = %store::redacted(&args.store), open_queries = access.is_open(), "collector serving");
        tokio::spawn(retention(
            store.clone(),
            args.retention,
            (args.max_calls, args.max_call_bytes),
        ));
        let access = Arc::new(access);
        if let Some(path) = args.tokens.clone() {
            tokio::spawn(follow_tokens(access.clone(), path));
        }
        serve(listener, store, access, tls, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}

/// How often the tokens file is read for changes: a rotated token is in force (and the old
/// one refused) within this.
const TOKENS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Rereads the tokens file and takes its tokens when it changed and is valid; a bad edit is
/// logged and the tokens in force stay.
async fn follow_tokens(access: Arc<access::Access>, path: PathBuf) {
    let mut last = access::read(&path).ok();
    let mut ticks = tokio::time::interval(TOKENS_INTERVAL);
    loop {
        ticks.tick().await;
        let text = match access::read(&path) {
            Ok(text) => text,
            Err(error) => {
                if last.take().is_some() {
                    tracing::warn!(%error, "tokens file unreadable; the tokens in force stay");
                }
                continue;
            }
        };
        if last.as_ref() == Some(&text) {
            continue;
        }
        match access.replace(&text) {
            Ok(count) => info!(file = %path.display(), tokens = count, "tokens reloaded"),
            Err(error) => tracing::warn!(
                file = %path.display(),
                %error,
                "tokens edit refused; the tokens in force stay"
            ),
        }
        last = Some(text);
    }
}

/// How often old records are deleted.
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// `20GiB`, `512MB`, `1000000`: a size in bytes (binary units for `Ki`, `Mi`, `Gi`, `Ti`).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 20GiB or 500MB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{other:?} is not a unit; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Deletes records past their age or the caps, every minute, for as long as the collector
/// runs.
async fn retention(
    store: service::SharedStore,
    keep: std::time::Duration,
    (max_calls, max_call_bytes): (u64, u64),
) {
    let mut ticks = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        ticks.tick().await;
        let oldest = std::time::SystemTime::now()
            .checked_sub(keep)
            .and_then(|oldest| oldest.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |oldest| oldest.as_nanos() as i64);
        let store = store.clone();
        let retention = store::Retention {
            oldest,
            max_calls,
            max_call_bytes,
        };
        let outcome = tokio::task::spawn_blocking(move || store.enforce_retention(retention)).await;
        match outcome {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => info!(removed, "retention: old records deleted"),
            Ok(Err(error)) => tracing::warn!(%error, "retention failed; retrying in a minute"),
            Err(error) => tracing::warn!(%error, "retention task failed"),
        }
    }
}

/// The server's TLS settings from the flags, or None for plain gRPC.
fn tls_config(args: &Args) -> anyhow::Result<Option<Tls>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |flag: &str, path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))
    };
    Ok(Some(Tls {
        cert: read("--tls-cert", cert)?,
        key: read("--tls-key", key)?,
        client_ca: args
            .tls_client_ca
            .as_ref()
            .map(|path| read("--tls-client-ca", path))
            .transpose()?,
    }))
}

/// PEM contents.
pub struct Tls {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

async fn serve(
    listener: tokio::net::TcpListener,
    store: service::SharedStore,
    access: Arc<access::Access>,
    tls: Option<Tls>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<IngestServer<service::IngestService>>()
        .await;
    health
        .set_serving::<QueryServer<service::QueryService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(moat_api::v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;
    let check = move |request: tonic::Request<()>| access.role(&request).map(|_| request);
    let agents = service::Agents::default();
    let mut builder = tonic::transport::Server::builder();
    let require_client_certificates = tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
    if let Some(tls) = tls {
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(tls.cert, tls.key));
        if let Some(ca) = tls.client_ca {
            // Optional at the handshake so that query clients need no certificate; Ingest
            // refuses a stream without one.
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        builder = builder
            .tls_config(config)
            .context("--tls-cert/--tls-key: not a usable certificate and key")?;
    }
    builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            IngestServer::new(service::IngestService {
                store: store.clone(),
                agents: agents.clone(),
                require_client_certificates,
            })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .add_service(QueryServer::with_interceptor(
            service::QueryService { store, agents },
            check,
        ))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY small answers wait for the peer's delayed ACK (40 ms).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .context("serving gRPC")
}

#[cfg(test)]
mod tests {

    //! The collector served on a loopback port, driven by real gRPC clients.

    use moat_api::v1::{
        ApiCall, DropFilter, ExportRequest, ListCallsRequest, ListDropsRequest, Record, RecordId,
        ingest_client::IngestClient, query_client::QueryClient, record,
    };
    use tokio_stream::StreamExt as _;

    use super::*;

    struct Running {
        address: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        _database: PathBuf,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let _ = std::fs::remove_file(&self._database);
        }
    }

    async fn start(label: &str, access: access::Access) -> Running {
        start_with(label, access, None).await
    }

    async fn start_with(label: &str, access: access::Access, tls: Option<Tls>) -> Running {
        let database =
            std::env::temp_dir().join(format!("moat-collector-{label}-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&database);
        let store =
            store::open(&format!("sqlite:{}", database.display()), None).expect("open store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, store, Arc::new(access), tls, async {
            let _ = stopped.await;
        }));
        Running {
            address,
            stop: Some(stop),
            _database: database,
        }
    }

    fn call(node: &str, sequence: u64) -> Record {
        Record {
            kind: Some(record::Kind::Call(ApiCall {
                id: Some(RecordId {
                    node: node.into(),
                    boot: 1,
                    sequence,
                }),
                time_unix_nanos: sequence as i64,
                path: format!("/{node}/{sequence}"),
                ..ApiCall::default()
            })),
        }
    }

    async fn export(
        address: SocketAddr,
        batches: Vec<ExportRequest>,
    ) -> Result<Vec<(u32, u32, u32)>, tonic::Status> {
        let mut client = IngestClient::connect(format!("http://{address}"))
            .await
            .expect("connect");
        let count = batches.len();
        let mut acks = client
            .export(tokio_stream::iter(batches))
            .await?
            .into_inner();
        let mut seen = Vec::new();
        while seen.len() < count {
            match acks.next().await {
                Some(Ok(ack)) => seen.push((ack.accepted, ack.duplicates, ack.rejected)),
                Some(Err(status)) => return Err(status),
                None => break,
            }
        }
        Ok(seen)
    }

    async fn count_calls(address: SocketAddr, token: Option<&str>) -> Result<usize, tonic::Status> {
        let mut client = QueryClient::connect(format!("http://{address}"))
            .await
            .expect("connect");
        let mut request = tonic::Request::new(ListCallsRequest {
            page_size: 1000,
            ..ListCallsRequest::default()
        });
        if let Some(token) = token {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        Ok(client.list_calls(request).await?.into_inner().calls.len())
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(super::parse_bytes("20GiB"), Ok(20 << 30));
        assert_eq!(super::parse_bytes("500 MB"), Ok(500_000_000));
        assert_eq!(super::parse_bytes("1024"), Ok(1024));
        assert!(super::parse_bytes("lots").is_err());
        assert!(super::parse_bytes("5 parsecs").is_err());
        assert!(super::parse_bytes("99999999999TiB").is_err());
    }

    #[tokio::test]
    async fn several_agents_at_once_are_all_stored_and_resends_counted_once() {
        let collector = start("agents", access::Access::open()).await;
        let agents = (0..3).map(|agent| {
            let address = collector.address;
            tokio::spawn(async move {
                let node = format!("node-{agent}");
                let batches = (0..10)
                    .map(|batch| ExportRequest {
                        batch: batch + 1,
                        records: (1..=20).map(|n| call(&node, batch * 20 + n)).collect(),
                        ..ExportRequest::default()
                    })
                    .collect();
                export(address, batches).await.expect("export")
            })
        });
        for agent in agents {
            let acks = agent.await.expect("agent task");
            assert_eq!(acks.len(), 10);
            assert!(acks.iter().all(|ack| *ack == (20, 0, 0)), "{acks:?}");
        }
        assert_eq!(
            count_calls(collector.address, None).await.expect("query"),
            600
        );
        // An agent that lost its connection sends a batch again: nothing new is stored.
        let again = export(
            collector.address,
            vec![ExportRequest {
                batch: 1,
                records: (1..=20).map(|n| call("node-0", n)).collect(),
                ..ExportRequest::default()
            }],
        )
        .await
        .expect("resend");
        assert_eq!(again, vec![(0, 20, 0)]);
        assert_eq!(
            count_calls(collector.address, None).await.expect("query"),
            600
        );
    }

    #[tokio::test]
    async fn malformed_and_oversized_batches_are_refused_and_the_collector_carries_on() {
        let collector = start("malformed", access::Access::open()).await;
        let mut leaking = call("node-x", 1);
        if let Some(record::Kind::Call(call)) = &mut leaking.kind {
            call.request_headers.push(moat_api::v1::Header {
                name: "Authorization".into(),
                value: "Bearer secret".into(),
            });
        }
        let without_id = Record {
            kind: Some(record::Kind::Call(ApiCall::default())),
        };
        let acks = export(
            collector.address,
            vec![ExportRequest {
                batch: 1,
                records: vec![leaking, without_id, call("node-x", 2)],
                ..ExportRequest::default()
            }],
        )
        .await
        .expect("export");
        assert_eq!(acks, vec![(1, 0, 2)]);

        let huge = ApiCall {
            path: "x".repeat(5 << 20),
            id: Some(RecordId {
                node: "n".into(),
                boot: 1,
                sequence: 9,
            }),
            ..ApiCall::default()
        };
        let refused = export(
            collector.address,
            vec![ExportRequest {
                batch: 1,
                records: vec![Record {
                    kind: Some(record::Kind::Call(huge)),
                }],
                ..ExportRequest::default()
            }],
        )
        .await
        .expect_err("a 5 MiB message is over the limit");
        assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused}");

        let acks = export(
            collector.address,
            vec![ExportRequest {
                batch: 1,
                records: vec![call("node-x", 3)],
                ..ExportRequest::default()
            }],
        )
        .await
        .expect("the collector still serves");
        assert_eq!(acks, vec![(1, 0, 0)]);
        assert_eq!(
            count_calls(collector.address, None).await.expect("query"),
            2
        );
    }

    #[tokio::test]
    async fn a_follower_gets_the_matching_calls_stored_after_it_asked() {
        let collector = start("follow", access::Access::open()).await;
        export(
            collector.address,
            vec![ExportRequest {
                batch: 1,
                records: vec![call("old", 1)],
                ..ExportRequest::default()
            }],
        )
        .await
        .expect("export");
        let mut client = QueryClient::connect(format!("http://{}", collector.address))
            .await
            .expect("connect");
        let filter = moat_api::v1::CallFilter {
            path_prefix: "/wanted".into(),
            ..Default::default()
        };
        let mut follow = client
            .watch_calls(moat_api::v1::WatchCallsRequest {
                filter: Some(filter),
            })
            .await
            .expect("watch")
            .into_inner();
        let records = (1..=3)
            .map(|sequence| {
                let node = if sequence == 2 { "other" } else { "wanted" };
                call(node, sequence)
            })
            .collect();
        export(
            collector.address,
            vec![ExportRequest {
                batch: 1,
                records,
                ..ExportRequest::default()
            }],
        )
        .await
        .expect("export");
        let mut paths = Vec::new();
        while paths.len() < 2 {
            let call = tokio::time::timeout(std::time::Duration::from_secs(5), follow.message())
                .await
                .expect("a call within 5 s")
                .expect("stream")
                .expect("a call");
            paths.push(call.path);
        }
        assert_eq!(
            paths,
            vec!["/wanted/1", "/wanted/3"],
            "only new calls, only matching, oldest first"
        );
    }

    /// A CA, and certificates it signs (PEM certificate and key).
    struct Authority {
        params: rcgen::CertificateParams,
        key: rcgen::KeyPair,
        pem: String,
    }

    impl Authority {
        fn new() -> Self {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let pem = params.self_signed(&key).expect("CA").pem();
            Self { params, key, pem }
        }

        fn issue(&self, name: &str) -> (String, String) {
            let key = rcgen::KeyPair::generate().expect("key");
            let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
            let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
            let certificate = params.signed_by(&key, &issuer).expect("signed");
            (certificate.pem(), key.serialize_pem())
        }
    }

    async fn export_over_tls(
        address: SocketAddr,
        ca: &str,
        client: Option<&(String, String)>,
    ) -> Result<Vec<u32>, tonic::Status> {
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .domain_name("localhost");
        if let Some((certificate, key)) = client {
            tls = tls.identity(tonic::transport::Identity::from_pem(certificate, key));
        }
        let channel = tonic::transport::Endpoint::from_shared(format!("https://{address}"))
            .expect("endpoint")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .map_err(|error| tonic::Status::unavailable(format!("{error:?}")))?;
        let mut acks = IngestClient::new(channel)
            .export(tokio_stream::iter(vec![ExportRequest {
                batch: 1,
                records: vec![call("tls", 1)],
                ..ExportRequest::default()
            }]))
            .await?
            .into_inner();
        let mut accepted = Vec::new();
        while let Some(ack) = acks.message().await? {
            accepted.push(ack.accepted);
        }
        Ok(accepted)
    }

    #[tokio::test]
    async fn with_mtls_only_agents_with_a_certificate_of_the_client_ca_may_ship() {
        let servers = Authority::new();
        let agents = Authority::new();
        let strangers = Authority::new();
        let (certificate, key) = servers.issue("localhost");
        let tls = Tls {
            cert: certificate.into_bytes(),
            key: key.into_bytes(),
            client_ca: Some(agents.pem.clone().into_bytes()),
        };
        let collector = start_with("mtls", access::Access::open(), Some(tls)).await;

        let agent = agents.issue("node-a");
        let accepted = export_over_tls(collector.address, &servers.pem, Some(&agent))
            .await
            .expect("a known agent ships");
        assert_eq!(accepted, vec![1]);
        let refused = export_over_tls(collector.address, &servers.pem, None)
            .await
            .expect_err("no certificate");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
        let stranger = strangers.issue("node-x");
        assert!(
            export_over_tls(collector.address, &servers.pem, Some(&stranger))
                .await
                .is_err(),
            "a certificate from another CA fails the handshake"
        );
        let wrong_server = Authority::new();
        assert!(
            export_over_tls(collector.address, &wrong_server.pem, Some(&agent))
                .await
                .is_err(),
            "the agent checks the collector's certificate too"
        );
    }

    #[tokio::test]
    async fn queries_need_a_known_token_when_tokens_are_configured() {
        let tokens = std::env::temp_dir().join(format!("moat-tokens-{}.yaml", std::process::id()));
        std::fs::write(
            &tokens,
            "tokens:\n  - { name: ci, token: reader-token-0123456789, role: reader }\n",
        )
        .expect("write tokens");
        let collector = start("tokens", access::Access::load(&tokens).expect("tokens")).await;
        let _ = std::fs::remove_file(&tokens);
        export(
            collector.address,
            vec![ExportRequest {
                batch: 1,
                records: vec![call("n", 1)],
                ..ExportRequest::default()
            }],
        )
        .await
        .expect("ingest is not behind query tokens");
        assert_eq!(
            count_calls(collector.address, None)
                .await
                .expect_err("no token")
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            count_calls(collector.address, Some("wrong-token-0123456789"))
                .await
                .expect_err("unknown")
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            count_calls(collector.address, Some("reader-token-0123456789"))
                .await
                .expect("reader"),
            1
        );
        let mut client = QueryClient::connect(format!("http://{}", collector.address))
            .await
            .expect("connect");
        let drops = |token: Option<&str>| {
            let mut request = tonic::Request::new(ListDropsRequest::default());
            if let Some(token) = token {
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("header"),
                );
            }
            request
        };
        assert_eq!(
            client
                .list_drops(drops(None))
                .await
                .expect_err("no token")
                .code(),
            tonic::Code::Unauthenticated
        );
        client
            .list_drops(drops(Some("reader-token-0123456789")))
            .await
            .expect("a reader lists drops");
    }

    #[tokio::test]
    async fn drops_shipped_by_agents_are_listed_by_source_network_and_bad_filters_refused() {
        let collector = start("drops", access::Access::open()).await;
        let shipped = |sequence: u64, source: &str| Record {
            kind: Some(record::Kind::Drop(moat_api::v1::Drop {
                id: Some(RecordId {
                    node: "node-d".into(),
                    boot: 1,
                    sequence,
                }),
                time_unix_nanos: sequence as i64,
                reason: "rule".into(),
                rule: "deny-udp-7777".into(),
                source: Some(moat_api::v1::Peer {
                    ip: source.into(),
                    ..moat_api::v1::Peer::default()
                }),
                ..moat_api::v1::Drop::default()
            })),
        };
        let acks = export(
            collector.address,
            vec![ExportRequest {
                batch: 1,
                records: vec![shipped(1, "198.18.0.5"), shipped(2, "203.0.113.9")],
                ..ExportRequest::default()
            }],
        )
        .await
        .expect("export");
        assert_eq!(acks, vec![(2, 0, 0)]);
        let mut client = QueryClient::connect(format!("http://{}", collector.address))
            .await
            .expect("connect");
        let list = |filter: DropFilter| ListDropsRequest {
            filter: Some(filter),
            ..ListDropsRequest::default()
        };
        let found = client
            .list_drops(list(DropFilter {
                reason: "rule".into(),
                source: "198.18.0.0/15".into(),
                ..DropFilter::default()
            }))
            .await
            .expect("list")
            .into_inner();
        let sources: Vec<String> = found
            .drops
            .iter()
            .filter_map(|drop| drop.source.as_ref().map(|peer| peer.ip.clone()))
            .collect();
        assert_eq!(sources, vec!["198.18.0.5"]);
        assert_eq!(found.next_cursor, "");
        for (filter, why) in [
            (
                DropFilter {
                    reason: "firewall".into(),
                    ..DropFilter::default()
                },
                "no such reason",
            ),
            (
                DropFilter {
                    source: "198.18.0.0/40".into(),
                    ..DropFilter::default()
                },
                "no such network",
            ),
        ] {
            let refused = client.list_drops(list(filter)).await.expect_err(why);
            assert_eq!(
                refused.code(),
                tonic::Code::InvalidArgument,
                "{why}: {refused}"
            );
        }
    }
}
