//! Seeing API calls: the capture programs' events, turned into `api.call` records.
//!
//! [`Capture`] owns the kernel side ([`probes`]), reads its ring buffer, and feeds the
//! [`connections::Tracker`], which reassembles each connection and runs the protocol parsers.

pub mod btf;
pub mod connections;
pub mod event;
pub mod existing;
pub mod libraries;
pub mod probes;
pub mod reassembly;
pub mod record;

use std::{
    collections::HashSet,
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use agent_common::capture::{CaptureStat, EXISTING_CONNECTION_BASE, SocketFd};
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

use self::{
    connections::{OpaqueTls, Tracker, TrackerLimits, TrackerStats},
    event::{Event, Opened, Task},
    libraries::{FileId, Library, Scanner},
    probes::{ProbeConfig, ProbeError, Probes},
    record::{CallRecord, Redaction},
};

/// At most this many events are handled per wake-up, so a burst cannot starve the agent's other
/// work; the rest waits for the next turn.
const MAX_EVENTS_PER_READ: usize = 4096;
/// The kernel wakes the agent only when its ring buffer is filling up (a wake-up per event would
/// cost a context switch per event under load), so the agent also drains it this often: the
/// longest an event waits in a quiet ring.
const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

struct RingFd(RingBuf<MapData>);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Counters for metrics and the stats record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Kernel counters in [`CaptureStat::ALL`] order.
    pub kernel: [u64; CaptureStat::COUNT as usize],
    /// Ring-buffer events lost, per CPU.
    pub events_lost_per_cpu: Vec<u64>,
    pub tracker: TrackerStats,
    /// Ring-buffer records that did not decode.
    pub malformed_events: u64,
    pub connections: usize,
    pub held_bytes: usize,
    /// TLS library files the uprobes are attached to.
    pub tls_libraries_attached: usize,
}

/// Library files attached to at most: each costs a handful of uprobes.
const MAX_TLS_LIBRARIES: usize = 256;

/// The TLS library files hooked so far, and the scan that finds new ones.
struct TlsHooks {
    scanner: Scanner,
    /// Attached, or tried and refused (not retried).
    known: HashSet<FileId>,
    attached: usize,
}

pub struct Capture {
    probes: Probes,
    ring: AsyncFd<RingFd>,
    tracker: Tracker,
    malformed_events: u64,
    /// None when the kernel refused the TLS programs: plaintext capture is off, the rest works.
    tls: Option<TlsHooks>,
}

impl Capture {
    /// Loads and attaches the capture programs, then enters the connections that already exist
    /// (mid-stream: their protocol state before now is unknown).
    pub fn start(
        probe: &ProbeConfig,
        limits: TrackerLimits,
        redaction: Redaction,
        now_ns: u64,
        out: &mut Vec<CallRecord>,
    ) -> Result<Self, ProbeError> {
        let mut probes = Probes::load(probe)?;
        let ring = probes.take_events()?;
        // SAFETY: the descriptor belongs to the RingBuf that AsyncFd now owns; it stays open as
        // long as the registration, and nothing else closes it.
        let ring =
            unsafe { AsyncFd::register(RingFd(ring)) }.map_err(|error| ProbeError::Ring {
                source: std::io::Error::from(error),
            })?;
        let tls = match probes.load_tls() {
            Ok(()) => Some(TlsHooks {
                scanner: Scanner::default(),
                known: HashSet::new(),
                attached: 0,
            }),
            Err(error) => {
                warn!(%error, "TLS plaintext capture is off: the kernel refused its uprobes");
                None
            }
        };
        let mut capture = Self {
            probes,
            ring,
            tracker: Tracker::new(limits, redaction),
            malformed_events: 0,
            tls,
        };
        capture.attach_tls_libraries(libraries::host_libraries());
        capture.rescan_tls_libraries();
        capture.adopt_existing(probe, now_ns, out)?;
        Ok(capture)
    }

    /// Looks for processes that map a TLS library file not yet hooked (new processes each
    /// time, all of them now and then), and hooks it.
    fn rescan_tls_libraries(&mut self) {
        let Some(tls) = &mut self.tls else { return };
        let found = tls.scanner.rescan(std::process::id());
        self.attach_tls_libraries(found);
    }

    fn attach_tls_libraries(&mut self, libraries: Vec<Library>) {
        let Some(tls) = &mut self.tls else { return };
        for library in libraries {
            if tls.known.contains(&library.file) {
                continue;
            }
            if tls.known.len() >= MAX_TLS_LIBRARIES {
                warn!(
                    path = %library.path.display(),
                    limit = MAX_TLS_LIBRARIES,
                    "not hooking another TLS library file: the limit is reached"
                );
                return;
            }
            tls.known.insert(library.file);
            match self.probes.attach_tls(&library.path) {
                Ok(functions) if !functions.is_empty() => {
                    tls.attached += 1;
                    info!(
                        path = %library.path.display(),
                        library = library.library,
                        device = library.file.device,
                        inode = library.file.inode,
                        pid = library.pid,
                        ?functions,
                        "hooked a TLS library"
                    );
                }
                Ok(_) => warn!(
                    path = %library.path.display(),
                    "a TLS library without the functions Moat hooks; its traffic stays opaque"
                ),
                Err(error) => warn!(
                    path = %library.path.display(),
                    %error,
                    "could not hook a TLS library; its traffic stays opaque"
                ),
            }
        }
    }

    /// Processes seen using TLS that Moat could not read, for `visibility.tls_opaque`.
    pub fn take_opaque(&mut self) -> Vec<OpaqueTls> {
        self.tracker.take_opaque()
    }

    fn adopt_existing(
        &mut self,
        probe: &ProbeConfig,
        now_ns: u64,
        out: &mut Vec<CallRecord>,
    ) -> Result<(), ProbeError> {
        let admitted = |socket: &existing::ExistingSocket| {
            let ports = probe.ports.is_empty()
                || probe.ports.contains(&socket.endpoints.local.port())
                || probe.ports.contains(&socket.endpoints.remote.port());
            let processes = probe.processes.is_empty() || probe.processes.contains(&socket.tgid);
            let cgroups = probe.cgroups.is_empty()
                || socket
                    .cgroup_id
                    .is_some_and(|id| probe.cgroups.contains(&id));
            ports && processes && cgroups
        };
        for (index, socket) in existing::scan(std::process::id())
            .into_iter()
            .filter(admitted)
            .enumerate()
        {
            let connection_id = EXISTING_CONNECTION_BASE | index as u64;
            let key = SocketFd {
                tgid: socket.tgid,
                fd: socket.fd,
            };
            if self.probes.adopt_existing(key, connection_id)? {
                let task = Task {
                    tgid: socket.tgid,
                    pid: socket.tgid,
                    comm: socket.comm,
                    cgroup_id: socket.cgroup_id.unwrap_or(0),
                };
                let opened = Opened {
                    connection_id,
                    fd: socket.fd,
                    task,
                    endpoints: socket.endpoints,
                    passive: false,
                    time_ns: now_ns,
                };
                self.tracker.open(opened, true, out);
            }
        }
        Ok(())
    }

    /// Waits for events (a wake-up from the kernel, or the drain interval) and handles those
    /// available; completed calls go to `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<CallRecord>) -> std::io::Result<()> {
        loop {
            let mut closed_ranges = Vec::new();
            let (tracker, malformed) = (&mut self.tracker, &mut self.malformed_events);
            let handled = tokio::select! {
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    let handled = drain(&mut guard.get_inner_mut().0, tracker, malformed, &mut closed_ranges, out);
                    if handled < MAX_EVENTS_PER_READ {
                        guard.clear_ready();
                    }
                    handled
                }
                () = tokio::time::sleep(DRAIN_INTERVAL) => {
                    drain(&mut self.ring.get_mut().0, tracker, malformed, &mut closed_ranges, out)
                }
            };
            for (tgid, first, last) in closed_ranges {
                self.forget_range(tgid, first, last)?;
            }
            if handled > 0 {
                return Ok(());
            }
        }
    }

    fn forget_range(&mut self, tgid: u32, first: u32, last: u32) -> std::io::Result<()> {
        let closed: Vec<SocketFd> = self
            .probes
            .sockets()
            .map_err(std::io::Error::other)?
            .into_iter()
            .filter(|socket| socket.tgid == tgid && (first..=last).contains(&socket.fd))
            .collect();
        self.probes.forget(closed).map_err(std::io::Error::other)
    }

    /// Once a second: new TLS libraries are hooked, idle connections expire, calls stop waiting for their other end, and the
    /// sockets of processes that exited without closing them are let go.
    pub fn housekeeping(
        &mut self,
        now_ns: u64,
        out: &mut Vec<CallRecord>,
    ) -> Result<(), ProbeError> {
        self.rescan_tls_libraries();
        self.tracker.expire(now_ns, out);
        let sockets = self.probes.sockets()?;
        // Each process is looked up once, however many sockets it holds.
        let mut owners: Vec<u32> = sockets
            .iter()
            .map(|socket| socket.tgid)
            .chain(self.tracker.processes())
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners.retain(|tgid| !Path::new(&format!("/proc/{tgid}")).exists());
        let gone = |tgid: &u32| owners.binary_search(tgid).is_ok();
        self.probes
            .forget(sockets.into_iter().filter(|socket| gone(&socket.tgid)))?;
        for tgid in &owners {
            self.tracker.close_process(*tgid, now_ns, out);
        }
        Ok(())
    }

    pub fn stats(&mut self) -> Result<CaptureStats, ProbeError> {
        let (kernel, events_lost_per_cpu) = self.probes.stats()?;
        Ok(CaptureStats {
            kernel,
            events_lost_per_cpu,
            tracker: self.tracker.stats,
            malformed_events: self.malformed_events,
            connections: self.tracker.connection_count(),
            held_bytes: self.tracker.held_bytes(),
            tls_libraries_attached: self.tls.as_ref().map_or(0, |tls| tls.attached),
        })
    }

    /// The agent is stopping: every open call is reported with what was seen.
    /// The connections whose encryption became known since the last call.
    pub fn take_connection_facts(&mut self) -> Vec<crate::crypto::ConnectionFacts> {
        std::mem::take(&mut self.tracker.connection_facts)
    }

    pub fn stop(&mut self, now_ns: u64, out: &mut Vec<CallRecord>) {
        self.tracker.close_all(now_ns, out);
    }
}

/// Handles up to [`MAX_EVENTS_PER_READ`] events from the ring; returns how many. close_range
/// events are also listed in `closed_ranges`, for the caller to clear from the kernel's table.
fn drain(
    ring: &mut RingBuf<MapData>,
    tracker: &mut Tracker,
    malformed: &mut u64,
    closed_ranges: &mut Vec<(u32, u32, u32)>,
    out: &mut Vec<CallRecord>,
) -> usize {
    let mut handled = 0;
    while handled < MAX_EVENTS_PER_READ {
        let Some(item) = ring.next() else { break };
        handled += 1;
        match event::decode(&item) {
            Some(event) => {
                if let Event::CloseRange { tgid, first, last } = event {
                    closed_ranges.push((tgid, first, last));
                }
                tracker.handle(event, out);
            }
            None => *malformed += 1,
        }
    }
    handled
}

/// The id of the cgroup at `path` in the cgroup v2 hierarchy mounted at `mount`: the inode
/// number of its directory, which is what bpf_get_current_cgroup_id returns. `path` is as
/// /proc/PID/cgroup shows it (relative to the mount), or absolute under the mount.
pub fn cgroup_id(mount: &Path, path: &str) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let directory = if Path::new(path).starts_with(mount) {
        std::path::PathBuf::from(path)
    } else {
        mount.join(path.trim_start_matches('/'))
    };
    Ok(std::fs::metadata(directory)?.ino())
}

/// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on most hosts, /sys/fs/cgroup/unified
/// on hybrid ones (v1 controllers beside v2). The kernel's cgroup ids are those of this hierarchy.
pub fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        // Fields: id parent major:minor root mount-point options ... - fstype source options.
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2").then(|| {
            before
                .split_whitespace()
                .nth(4)
                .map(std::path::PathBuf::from)
        })?
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_cgroup2_hierarchy() {
        let mount = super::cgroup2_mount().expect("a cgroup v2 hierarchy");
        assert!(mount.join("cgroup.procs").exists(), "{}", mount.display());
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = text
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .unwrap();
        let id = super::cgroup_id(&mount, path).unwrap();
        assert_eq!(
            super::cgroup_id(
                &mount,
                &mount
                    .join(path.trim_start_matches('/'))
                    .display()
                    .to_string()
            )
            .unwrap(),
            id
        );
    }
}
