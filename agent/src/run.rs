//! The agent's main loop: check, load, attach, enforce, report, until told to stop.

use std::{
    io,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use policy::Policy;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::{
    capture::{
        self, Capture,
        connections::TrackerLimits,
        probes::ProbeConfig,
        record::{CallRecord, Redaction},
    },
    cli::{Args, CaptureArgs, Command, HookArg, RunArgs, Switch},
    enforcer::{Enforcer, monotonic_ns},
    events::{self, DropEvents},
    interfaces,
    loader::{self, Datapath, Hook},
    metrics::{self, Metrics},
    policy_source::PolicySource,
    privileges,
    protocol::ip_protocol_name,
    report::{InterfaceRecord, Record, Reporter},
    traffic::ChangeTracker,
};

/// How often the agent refreshes metrics, expires timed blocks, looks for new or vanished
/// interfaces, and checks the policy file for edits.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

pub fn main(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Cleanup { state_dir }) => cleanup(&state_dir),
        None => run(args.run),
    }
}

fn cleanup(state_dir: &Path) -> anyhow::Result<()> {
    privileges::check()?;
    let cleaned = loader::cleanup(state_dir)?;
    info!(
        state_dir = %state_dir.display(),
        links = cleaned.links,
        maps = cleaned.maps,
        "removed Moat's programs, links and maps; nothing of Moat is enforced now"
    );
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.interfaces.is_empty()
        && args.interface_globs.is_empty()
        && args.capture.capture == Switch::Off
    {
        bail!(
            "with --capture off there is nothing to do: name the interfaces to enforce on with \
             --iface NAME or --iface-glob GLOB (see --help)"
        );
    }
    let metrics_addr: Option<SocketAddr> = match args.metrics_addr.as_str() {
        "off" => None,
        text => Some(text.parse().with_context(|| {
            format!(
                "--metrics-addr {text:?} is not an address; write one like 127.0.0.1:9464, or off"
            )
        })?),
    };
    privileges::check()?;
    // Everything that can be checked without touching the kernel is, so a typo fails before any
    // enforcement changes.
    let mut source = args.policy.as_deref().map(PolicySource::new);
    let policy = match &mut source {
        Some(source) => source.load()?,
        None => Arc::new(Policy::allow_all()),
    };
    for interface in &args.interfaces {
        loader::ifindex_of(interface)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, source, policy, metrics_addr))
}

struct Agent {
    args: RunArgs,
    datapath: Datapath,
    enforcer: Enforcer,
    source: Option<PolicySource>,
    reporter: Reporter<io::BufWriter<io::StdoutLock<'static>>>,
    metrics: Metrics,
}

async fn serve(
    args: RunArgs,
    source: Option<PolicySource>,
    policy: Arc<Policy>,
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let metrics = Metrics::default();
    if let Some(address) = metrics_addr {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("--metrics-addr {address}: cannot listen there"))?;
        drop(listener);
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = metrics::serve(address, metrics).await {
                warn!(%address, %error, "metrics endpoint stopped");
            }
        });
    }

    let mut datapath = Datapath::load(&args.state_dir)?;
    let mut enforcer = Enforcer::adopt(&datapath)?;
    // The policy is in force before the program runs anywhere new, so no packet on a freshly
    // attached interface is judged by an empty policy.
    enforcer.apply(&mut datapath, policy.clone())?;
    for interface in &args.interfaces {
        datapath.attach(interface, hook_of(&args))?;
    }
    let mut agent = Agent {
        // Buffered, so a burst of calls costs one write; every record outside a burst is flushed.
        reporter: Reporter::new(io::BufWriter::new(io::stdout().lock()), args.output),
        args,
        datapath,
        enforcer,
        source,
        metrics,
    };
    agent.attach_glob_matches(false)?;
    let mut drop_events = DropEvents::open(&mut agent.datapath)?;
    let mut calls = Vec::new();
    let mut capture = match agent.args.capture.capture {
        Switch::On => Some(start_capture(&agent.args.capture, &mut calls)?),
        Switch::Off => None,
    };
    agent.emit_calls(&mut calls)?;

    let now = SystemTime::now();
    let attachments: Vec<_> = agent.datapath.attachments().cloned().collect();
    for attachment in &attachments {
        agent
            .reporter
            .name_interface(attachment.ifindex, &attachment.interface);
    }
    if let Some(source) = &agent.source {
        agent
            .reporter
            .emit(&applied_record(source.path(), &policy), now)
            .context("writing to standard output")?;
    }
    agent
        .reporter
        .emit(
            &Record::Ready {
                interfaces: attachments.iter().map(InterfaceRecord::from).collect(),
                state_dir: &agent.args.state_dir,
                policy: agent.source.as_ref().map(PolicySource::path),
                capture: capture.is_some(),
            },
            now,
        )
        .context("writing to standard output")?;
    agent.refresh_metrics(capture.as_mut());

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut reports = tokio::time::interval(agent.args.report_interval);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    reports.tick().await;
    let mut tracker = ChangeTracker::default();
    loop {
        tokio::select! {
            _ = reports.tick() => {
                agent.report_traffic(&mut tracker, false)?;
                agent.report_capture(capture.as_mut())?;
            }
            _ = housekeeping.tick() => {
                if let Some(capture) = &mut capture {
                    capture.housekeeping(monotonic_ns(), &mut calls)?;
                    agent.emit_calls(&mut calls)?;
                }
                agent.housekeeping(capture.as_mut())?;
            }
            batch = next_calls(capture.as_mut(), &mut calls) => {
                batch.context("reading capture events from the kernel")?;
                agent.emit_calls(&mut calls)?;
            }
            _ = hangup.recv() => {
                info!("SIGHUP: reloading the policy");
                agent.reload()?;
            }
            batch = drop_events.next_batch() => {
                for event in batch.context("reading drop events from the kernel")? {
                    agent.report_drop(&event)?;
                }
                let malformed = drop_events.malformed;
                agent.metrics.update(|snapshot| snapshot.malformed_drop_events = malformed);
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    if let Some(capture) = &mut capture {
        capture.stop(monotonic_ns(), &mut calls);
        agent.emit_calls(&mut calls)?;
    }
    agent.report_traffic(&mut tracker, true)?;
    agent.report_capture(capture.as_mut())?;
    info!(
        state_dir = %agent.args.state_dir.display(),
        "stopping; enforcement stays in place (the next agent takes it over; `moat-agent cleanup` removes it)"
    );
    Ok(())
}

fn start_capture(args: &CaptureArgs, calls: &mut Vec<CallRecord>) -> anyhow::Result<Capture> {
    let cgroups = args
        .cgroups
        .iter()
        .map(|cgroup| cgroup_id(cgroup))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let probe = ProbeConfig {
        max_payload: args.capture_event_bytes,
        ring_bytes: args.capture_ring_bytes,
        ports: args.ports.clone(),
        cgroups,
        processes: args.processes.clone(),
    };
    let limits = TrackerLimits {
        max_connections: args.capture_max_connections,
        max_connection_bytes: args.capture_max_connection_bytes,
        idle_timeout_ns: u64::try_from(args.capture_idle_timeout.as_nanos()).unwrap_or(u64::MAX),
        mirror_wait_ns: MIRROR_WAIT.as_nanos() as u64,
        max_awaiting_mirror: MAX_AWAITING_MIRROR,
        parser: protocols::Limits {
            max_body_bytes: args.capture_body_bytes,
            ..protocols::Limits::default()
        },
    };
    let capture = Capture::start(
        &probe,
        limits,
        Redaction::new(&args.redact_headers),
        monotonic_ns(),
        calls,
    )
    .context("starting API call capture (--capture off runs without it)")?;
    info!(
        ports = ?args.ports,
        processes = ?args.processes,
        cgroups = ?args.cgroups,
        "capturing API calls"
    );
    Ok(capture)
}

/// How long a call seen at one end of a connection waits for the other end, when both are on
/// this node, so the pair is reported once.
const MIRROR_WAIT: Duration = Duration::from_secs(2);
const MAX_AWAITING_MIRROR: usize = 4096;

/// A cgroup id from `--capture-cgroup`: a number, or a directory of the cgroup v2 hierarchy
/// (absolute, or relative to where it is mounted, as /proc/PID/cgroup shows it).
fn cgroup_id(text: &str) -> anyhow::Result<u64> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    let mount = capture::cgroup2_mount().context(
        "--capture-cgroup: no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo); mount one \
         or give the cgroup's id",
    )?;
    capture::cgroup_id(&mount, text).with_context(|| {
        format!(
            "--capture-cgroup {text:?} is not a cgroup directory; give a path in the cgroup v2 \
             hierarchy at {} (as /proc/PID/cgroup shows it) or a cgroup id",
            mount.display()
        )
    })
}

/// The next completed calls, or never when capture is off.
async fn next_calls(capture: Option<&mut Capture>, calls: &mut Vec<CallRecord>) -> io::Result<()> {
    match capture {
        Some(capture) => capture.next_batch(calls).await,
        None => std::future::pending().await,
    }
}

fn hook_of(args: &RunArgs) -> Hook {
    match args.hook {
        HookArg::Auto => Hook::Auto,
        HookArg::Xdp => Hook::Xdp(args.xdp_mode),
        HookArg::Tcx => Hook::Tcx,
    }
}

fn applied_record<'a>(file: &'a Path, policy: &Policy) -> Record<'a> {
    Record::PolicyApplied {
        file,
        identities: policy.identities.len(),
        rules: policy.rules.len(),
        blocklist_entries: policy.blocklist.len(),
        rate_limits: policy.rate_limits.len(),
    }
}

impl Agent {
    fn emit(&mut self, record: &Record<'_>, now: SystemTime) -> anyhow::Result<()> {
        self.reporter
            .emit(record, now)
            .context("writing to standard output")
    }

    fn emit_calls(&mut self, calls: &mut Vec<CallRecord>) -> anyhow::Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        for call in calls.drain(..) {
            self.reporter
                .write(&Record::Call(&call), now)
                .context("writing to standard output")?;
        }
        self.reporter.flush().context("writing to standard output")
    }

    fn report_capture(&mut self, capture: Option<&mut Capture>) -> anyhow::Result<()> {
        let Some(capture) = capture else {
            return Ok(());
        };
        let stats = capture.stats()?;
        self.emit(&Record::CaptureStats(&stats.into()), SystemTime::now())
    }

    fn report_traffic(&mut self, tracker: &mut ChangeTracker, closing: bool) -> anyhow::Result<()> {
        let snapshot = self.datapath.source_traffic()?;
        let changed = if closing {
            tracker.everything(snapshot)
        } else {
            tracker.changes(snapshot)
        };
        self.reporter
            .traffic(&changed, self.datapath.xdp_stats()?, SystemTime::now())
            .context("writing to standard output")
    }

    fn housekeeping(&mut self, capture: Option<&mut Capture>) -> anyhow::Result<()> {
        let now = SystemTime::now();
        for lapsed in self.enforcer.expire_blocks(&mut self.datapath)? {
            let record = Record::TimedBlockExpired {
                network: lapsed.network.to_string(),
                reason: &lapsed.reason,
            };
            self.emit(&record, now)?;
        }
        self.attach_glob_matches(true)?;
        if self.source.as_mut().is_some_and(PolicySource::changed) {
            info!("policy file changed: reloading");
            self.reload()?;
        }
        self.refresh_metrics(capture);
        Ok(())
    }

    /// Attaches to interfaces newly matching a glob, and lets go of vanished ones.
    fn attach_glob_matches(&mut self, announce: bool) -> anyhow::Result<()> {
        let present = interfaces::list();
        let gone: Vec<(String, u32)> = self
            .datapath
            .attachments()
            .filter(|attachment| !present.contains(&attachment.interface))
            .map(|attachment| (attachment.interface.clone(), attachment.ifindex))
            .collect();
        for (interface, ifindex) in gone {
            self.datapath.forget(&interface);
            self.reporter.forget_interface(ifindex);
            if announce {
                self.emit(
                    &Record::Detached {
                        interface: &interface,
                    },
                    SystemTime::now(),
                )?;
            }
        }
        if self.args.interface_globs.is_empty() {
            return Ok(());
        }
        for interface in present {
            let wanted = self
                .args
                .interface_globs
                .iter()
                .any(|glob| interfaces::glob_matches(glob, &interface));
            if !wanted || self.datapath.is_attached(&interface) {
                continue;
            }
            match self.datapath.attach(&interface, hook_of(&self.args)) {
                Ok(attachment) => {
                    self.reporter
                        .name_interface(attachment.ifindex, &attachment.interface);
                    if announce {
                        self.emit(&Record::Attached((&attachment).into()), SystemTime::now())?;
                    }
                }
                // An interface can vanish between listing and attaching, or belong to someone
                // else's XDP program; neither stops the agent.
                Err(error) => warn!(interface, %error, "not attached"),
            }
        }
        Ok(())
    }

    fn reload(&mut self) -> anyhow::Result<()> {
        let Some(source) = &mut self.source else {
            info!("no --policy file; nothing to reload");
            return Ok(());
        };
        let path = source.path().to_owned();
        let outcome = source
            .load()
            .map_err(|error| error.to_string())
            .and_then(|policy| {
                self.enforcer
                    .apply(&mut self.datapath, policy.clone())
                    .map(|()| policy)
                    .map_err(|error| error.to_string())
            });
        let now = SystemTime::now();
        match outcome {
            Ok(policy) => {
                info!(file = %path.display(), "policy applied");
                self.metrics
                    .update(|snapshot| snapshot.reloads_applied += 1);
                self.emit(&applied_record(&path, &policy), now)
            }
            Err(error) => {
                warn!(%error, "policy rejected; the previous one stays in force");
                self.metrics
                    .update(|snapshot| snapshot.reloads_rejected += 1);
                self.emit(&Record::PolicyRejected { file: &path, error }, now)
            }
        }
    }

    fn report_drop(&mut self, event: &agent_common::policy::DropEvent) -> anyhow::Result<()> {
        let cause = self.enforcer.drop_cause(event.slot, event.counter);
        let (src, dst) = events::addresses(&event.flow);
        let age = Duration::from_nanos(monotonic_ns().saturating_sub(event.time_ns));
        let when = SystemTime::now()
            .checked_sub(age)
            .unwrap_or_else(SystemTime::now);
        let interface = self.reporter.interface_name(event.ifindex);
        let protocol = ip_protocol_name(event.flow.protocol);
        let record = Record::Denied {
            reason: cause.reason,
            rule: &cause.rule,
            src,
            dst,
            src_port: event.flow.src_port,
            dst_port: event.flow.dst_port,
            protocol: &protocol,
            interface: &interface,
        };
        self.emit(&record, when)
    }

    /// Only called once the programs are attached and the policy applied, so it also marks the
    /// agent ready.
    fn refresh_metrics(&mut self, capture: Option<&mut Capture>) {
        let capture = capture.map(|capture| capture.stats());
        let verdicts = self.enforcer.verdict_totals(&self.datapath);
        let xdp = self.datapath.xdp_stats();
        let attachments: Vec<_> = self.datapath.attachments().cloned().collect();
        let timed_blocks = self.enforcer.timed_blocks().count() as u64;
        self.metrics.update(|snapshot| {
            match verdicts {
                Ok(verdicts) => snapshot.verdicts = verdicts,
                Err(error) => warn!(%error, "reading verdict counters"),
            }
            match xdp {
                Ok(xdp) => snapshot.xdp = xdp,
                Err(error) => warn!(%error, "reading XDP counters"),
            }
            match capture {
                Some(Ok(capture)) => snapshot.capture = Some(capture),
                Some(Err(error)) => warn!(%error, "reading capture counters"),
                None => {}
            }
            snapshot.attachments = attachments;
            snapshot.timed_blocks = timed_blocks;
            snapshot.ready = true;
        });
    }
}
