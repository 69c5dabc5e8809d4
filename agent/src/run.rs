//! The agent's main loop: check privileges, attach, report until told to stop.

use std::{io, time::SystemTime};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::{cli::Args, loader, privileges, report::Reporter, traffic::ChangeTracker};

pub fn run(args: Args) -> anyhow::Result<()> {
    privileges::check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let programs = loader::load_and_attach(&args.interfaces, args.xdp_mode)?;
    let mut reporter = Reporter::new(io::stdout().lock(), args.output, &programs.attachments);
    let mut tracker = ChangeTracker::default();
    reporter
        .ready(&programs.attachments, SystemTime::now())
        .context("writing to standard output")?;

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut ticks = tokio::time::interval(args.report_interval);
    ticks.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            _ = terminate.recv() => true,
            _ = interrupt.recv() => true,
        };
        let snapshot = programs.source_traffic()?;
        let changed = if stopping {
            tracker.everything(snapshot)
        } else {
            tracker.changes(snapshot)
        };
        reporter
            .report(&changed, programs.xdp_stats()?, SystemTime::now())
            .context("writing to standard output")?;
        if stopping {
            info!("stopping: detaching programs");
            return Ok(());
        }
    }
}
