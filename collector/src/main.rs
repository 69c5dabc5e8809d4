//! moat-collector: receives the records agents ship (gRPC `moat.v1.Ingest`), stores them, and
//! answers queries (`moat.v1.Query`), with gRPC health and server reflection.

mod service;
mod store;
mod validate;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use moat_api::v1::{ingest_server::IngestServer, query_server::QueryServer};
use tracing::info;

/// Moat's collector: agents ship API calls and drops to it (`moat-agent --collector URL`); the
/// `moat` CLI and any gRPC client query it (package moat.v1; server reflection is on).
#[derive(Debug, Parser)]
#[command(name = "moat-collector", version)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Where to store: `sqlite:PATH`, one file created if missing (WAL mode).
    #[arg(long, value_name = "URL", default_value = "sqlite:moat.db")]
    store: String,
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
    let Some(path) = args.store.strip_prefix("sqlite:") else {
        bail!(
            "--store {:?}: give sqlite:PATH (PostgreSQL is not supported yet)",
            args.store
        );
    };
    let store = store::Store::open(&PathBuf::from(path))?;
    let store = Arc::new(Mutex::new(store));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args.listen, store))
}

async fn serve(listen: SocketAddr, store: service::SharedStore) -> anyhow::Result<()> {
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
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen there"))?;
    info!(%listen, "collector serving");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            IngestServer::new(service::IngestService {
                store: store.clone(),
            })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .add_service(QueryServer::new(service::QueryService { store }))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await
        .context("serving gRPC")
}
