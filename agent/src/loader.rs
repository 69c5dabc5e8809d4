//! The only place that touches `aya::programs`: loads Moat's embedded kernel object with its maps
//! pinned under the state directory, attaches its programs (XDP or TCX) through pinned links, adopts what
//! an earlier agent left attached, and removes all of it on `cleanup`.
//!
//! Everything is pinned so that enforcement outlives the agent: a crash, `kill -9` or a rolling
//! update leaves the program attached and the policy in force, and the next agent swaps its own
//! program into the same links (one atomic `bpf_link_update` per interface) without a gap.

use std::{
    collections::BTreeMap,
    ffi::CString,
    io,
    path::{Path, PathBuf},
};

use agent_common::xdp::{SourceKey, TrafficCounters, XdpStat, map_names};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray, PerCpuHashMap},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, Xdp, XdpMode,
        links::{FdLink, LinkError, LinkOrder, PinnedLink},
        tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
        xdp::{XdpLink, XdpLinkId},
    },
};
use thiserror::Error;
use tracing::{info, warn};

use crate::{cli::XdpModeArg, traffic::XdpStats};

/// The kernel object agent-ebpf compiles to, built by build.rs.
static KERNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/moat"));

const XDP_PROGRAM: &str = "moat_xdp";
/// The XDP and TC return codes for "let it through".
const XDP_PASS: u32 = 2;
const TC_ACT_OK: u32 = 0;
const TC_PROGRAM: &str = "moat_tc";
/// Drop every frame, pass every frame: the benchmark's floors, never attached by the agent.
const DROP_FLOOR_PROGRAM: &str = "moat_bench_drop_all";
const PASS_FLOOR_PROGRAM: &str = "moat_bench_pass_all";

/// Which of the object's XDP programs an operation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Moat's enforcement program, XDP entry point.
    Moat,
    /// A program that drops every frame and does nothing else: what dropping in XDP costs.
    DropFloor,
    /// A program that passes every frame and does nothing else: what any XDP program costs the
    /// traffic it lets through.
    PassFloor,
}

/// The benchmark floors, as [`Datapath::attach_floor`] takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Floor {
    DropAll,
    PassAll,
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Program::Moat => XDP_PROGRAM,
            Program::DropFloor => DROP_FLOOR_PROGRAM,
            Program::PassFloor => PASS_FLOOR_PROGRAM,
        }
    }
}
const LINKS_DIR: &str = "links";

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "interface {name:?} does not exist in this network namespace; list the interfaces with \
         `ip -br link` and pass one of them to --iface"
    )]
    UnknownInterface { name: String },
    #[error(
        "cannot use state directory {path}: {source} (is bpffs mounted there? `mount -t bpf bpf /sys/fs/bpf`)"
    )]
    StateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the kernel refused Moat's eBPF object: {0}; if an older Moat left incompatible maps \
         pinned, remove them with `moat-agent cleanup`"
    )]
    Object(#[source] Box<aya::EbpfError>),
    #[error(
        "the kernel object has no program {name:?}; it was built from other sources than this agent"
    )]
    ProgramMissing { name: &'static str },
    #[error(
        "the kernel object has no map {name:?}; it was built from other sources than this agent"
    )]
    MapMissing { name: &'static str },
    #[error("the kernel refused to verify or load program {name:?}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(
        "interface {interface:?} already has an XDP program that Moat did not attach; see it with \
         `ip link show {interface}` and remove it with `ip link set {interface} xdp off` if it is \
         stale"
    )]
    InterfaceBusy { interface: String },
    #[error(
        "attaching Moat ({mode}) to interface {interface:?} failed: {source}; try the other hook \
         (--hook xdp or --hook tcx), or --xdp-mode generic where the driver has no native XDP"
    )]
    Attach {
        interface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(
        "pinning or adopting the link of interface {interface:?} at {path}: {reason}; if an \
         earlier agent's pin is damaged, `moat-agent cleanup` removes it"
    )]
    Pin {
        interface: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "a moat-agent is running with state directory {path}; stop it before `cleanup` (or give \
         this one another --state-dir)"
    )]
    StateDirInUse { path: PathBuf },
    #[error("cannot watch the drop-event ring buffer for readiness: {source}")]
    EventReader {
        #[source]
        source: io::Error,
    },
    #[error("reading map {map:?} failed: {source}")]
    MapRead {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Where and how the program runs on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    /// `xdp` or `tcx`.
    pub hook: &'static str,
    /// `native` or `generic` (XDP), `tcx`, or `adopted` (an earlier agent's link, now running
    /// this agent's program).
    pub mode: &'static str,
}

/// Which kernel hook runs Moat on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP, in the given mode: for uplinks and physical NICs.
    Xdp(XdpModeArg),
    /// TC ingress through TCX: for veth, where XDP would cost allowed traffic its GSO batching.
    Tcx,
    /// TCX on veth interfaces, XDP (auto mode) on everything else.
    Auto,
}

impl Hook {
    /// The hook an interface gets: `Auto` decided by its driver.
    fn resolve(self, interface: &str) -> ChosenHook {
        match self {
            Hook::Xdp(mode) => ChosenHook::Xdp(mode),
            Hook::Tcx => ChosenHook::Tcx,
            Hook::Auto if crate::interfaces::driver_of(interface).as_deref() == Some("veth") => {
                ChosenHook::Tcx
            }
            Hook::Auto => ChosenHook::Xdp(XdpModeArg::Auto),
        }
    }
}

/// A hook decided for one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChosenHook {
    Xdp(XdpModeArg),
    Tcx,
}

impl ChosenHook {
    fn name(self) -> &'static str {
        match self {
            ChosenHook::Xdp(_) => "xdp",
            ChosenHook::Tcx => "tcx",
        }
    }

    fn other(self) -> &'static str {
        match self {
            ChosenHook::Xdp(_) => "tcx",
            ChosenHook::Tcx => "xdp",
        }
    }
}

/// What adopting a pinned link and pinning a new one need from a program type, so that XDP and
/// TCX share one path.
trait LinkedProgram {
    type Link: TryFrom<FdLink, Error = LinkError> + TryInto<FdLink, Error = LinkError>;
    type Id;
    fn swap_into(&mut self, link: Self::Link) -> Result<Self::Id, ProgramError>;
    fn take(&mut self, id: Self::Id) -> Result<Self::Link, ProgramError>;
}

impl LinkedProgram for Xdp {
    type Link = XdpLink;
    type Id = XdpLinkId;
    fn swap_into(&mut self, link: XdpLink) -> Result<XdpLinkId, ProgramError> {
        self.attach_to_link(link)
    }
    fn take(&mut self, id: XdpLinkId) -> Result<XdpLink, ProgramError> {
        self.take_link(id)
    }
}

impl LinkedProgram for SchedClassifier {
    type Link = SchedClassifierLink;
    type Id = SchedClassifierLinkId;
    fn swap_into(
        &mut self,
        link: SchedClassifierLink,
    ) -> Result<SchedClassifierLinkId, ProgramError> {
        self.attach_to_link(link)
    }
    fn take(&mut self, id: SchedClassifierLinkId) -> Result<SchedClassifierLink, ProgramError> {
        self.take_link(id)
    }
}

/// Swaps `program` into the `adopted` link (one bpf_link_update: no gap), or attaches it anew
/// with `attach`; either way returns the link, ready to pin, and the mode to report.
fn adopt_or_attach<P: LinkedProgram>(
    program: &mut P,
    adopted: Option<FdLink>,
    attach: impl FnOnce(&mut P) -> Result<(P::Id, &'static str), LoadError>,
    pin_error: impl Fn(String) -> LoadError,
) -> Result<(FdLink, &'static str), LoadError> {
    let (id, mode) = match adopted {
        Some(fd_link) => {
            let link = P::Link::try_from(fd_link).map_err(|error| pin_error(error.to_string()))?;
            let id = program
                .swap_into(link)
                .map_err(|error| pin_error(format!("swapping in the new program: {error}")))?;
            (id, "adopted")
        }
        None => attach(program)?,
    };
    let link = program
        .take(id)
        .map_err(|error| pin_error(error.to_string()))?;
    let fd_link = link.try_into().map_err(|error| {
        pin_error(format!(
            "the link cannot be pinned (a netlink attachment has no link object): {error}"
        ))
    })?;
    Ok((fd_link, mode))
}

/// Moat's loaded kernel object. Dropping it closes Moat's handles; the pinned links and maps,
/// and so enforcement, stay until [`cleanup`].
pub struct Datapath {
    ebpf: Ebpf,
    /// Held for the agent's life: one agent per state directory. A second one (a rolling update
    /// that starts the new agent before the old one ends) waits for it.
    _lock: StateLock,
    state_dir: PathBuf,
    links: BTreeMap<String, (Attachment, PinnedLink)>,
}

impl Datapath {
    /// Loads the object, reusing maps pinned in `state_dir` by an earlier agent.
    pub fn load(state_dir: &Path) -> Result<Self, LoadError> {
        let state_error = |source| LoadError::StateDir {
            path: state_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(state_dir.join(LINKS_DIR)).map_err(state_error)?;
        let lock = match StateLock::try_acquire(state_dir).map_err(state_error)? {
            Some(lock) => lock,
            None => {
                info!(
                    state_dir = %state_dir.display(),
                    "another moat-agent holds the state directory; waiting for it to stop (enforcement continues meanwhile)"
                );
                StateLock::acquire(state_dir).map_err(state_error)?
            }
        };
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(state_dir)
            .load(KERNEL_OBJECT)
            .map_err(|error| LoadError::Object(Box::new(error)))?;
        for program in [Program::Moat, Program::DropFloor, Program::PassFloor] {
            xdp_program(&mut ebpf, program)?
                .load()
                .map_err(|source| LoadError::Program {
                    name: program.name(),
                    source,
                })?;
        }
        tc_program(&mut ebpf)?
            .load()
            .map_err(|source| LoadError::Program {
                name: TC_PROGRAM,
                source,
            })?;
        Ok(Self {
            ebpf,
            _lock: lock,
            state_dir: state_dir.to_owned(),
            links: BTreeMap::new(),
        })
    }

    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.links.values().map(|(attachment, _)| attachment)
    }

    pub fn is_attached(&self, interface: &str) -> bool {
        self.links.contains_key(interface)
    }

    /// Runs Moat on `interface` at `hook`: swapped into the link an earlier agent pinned for it
    /// (one atomic update, no gap), or in a new link, pinned. A link an earlier agent pinned at the
    /// other hook is removed once the new one is in place.
    pub fn attach(&mut self, interface: &str, hook: Hook) -> Result<Attachment, LoadError> {
        let ifindex = ifindex_of(interface)?;
        let hook = hook.resolve(interface);
        let pin = self.link_pin(hook.name(), interface, ifindex);
        self.remove_stale_pins(interface, ifindex);
        let pin_error = |reason: String| LoadError::Pin {
            interface: interface.to_owned(),
            path: pin.clone(),
            reason,
        };
        let adopted = if pin.exists() {
            let pinned =
                PinnedLink::from_pin(&pin).map_err(|error| pin_error(error.to_string()))?;
            Some(
                pinned
                    .unpin()
                    .map_err(|error| pin_error(error.to_string()))?,
            )
        } else {
            None
        };
        let (fd_link, mode) = match hook {
            ChosenHook::Xdp(mode) => adopt_or_attach(
                xdp_program(&mut self.ebpf, Program::Moat)?,
                adopted,
                |program| attach_new(program, interface, ifindex, mode),
                pin_error,
            )?,
            ChosenHook::Tcx => adopt_or_attach(
                tc_program(&mut self.ebpf)?,
                adopted,
                |program| {
                    program
                        .attach_with_options(
                            interface,
                            TcAttachType::Ingress,
                            TcAttachOptions::TcxOrder(LinkOrder::default()),
                        )
                        .map(|id| (id, "tcx"))
                        .map_err(|source| LoadError::Attach {
                            interface: interface.to_owned(),
                            mode: "tcx",
                            source,
                        })
                },
                pin_error,
            )?,
        };
        let pinned = fd_link
            .pin(&pin)
            .map_err(|error| pin_error(error.to_string()))?;
        self.remove_other_hook_pin(interface, ifindex, hook);
        let attachment = Attachment {
            interface: interface.to_owned(),
            ifindex,
            hook: hook.name(),
            mode,
        };
        info!(
            interface,
            ifindex,
            hook = hook.name(),
            mode,
            "Moat attached"
        );
        self.links
            .insert(interface.to_owned(), (attachment.clone(), pinned));
        Ok(attachment)
    }

    /// An earlier agent may have run this interface at the other hook: with the new link in
    /// place, its link goes (both would judge every packet).
    fn remove_other_hook_pin(&self, interface: &str, ifindex: u32, hook: ChosenHook) {
        let path = self.link_pin(hook.other(), interface, ifindex);
        if path.exists() {
            match PinnedLink::from_pin(&path).map(PinnedLink::unpin) {
                Ok(Ok(link)) => drop(link),
                _ => warn!(path = %path.display(), "could not remove an earlier agent's link"),
            }
        }
    }

    /// The interface is gone (a pod was deleted): the kernel destroyed its link; drop the pin.
    /// Its per-source traffic entries go too: interface indexes are not reused soon, so on a node
    /// where pods come and go they would otherwise fill the source table with the dead.
    pub fn forget(&mut self, interface: &str) {
        if let Some((attachment, pinned)) = self.links.remove(interface) {
            if let Err(error) = pinned.unpin() {
                warn!(interface, %error, "could not remove the link pin of a vanished interface");
            }
            let removed = self.forget_sources(attachment.ifindex);
            info!(
                interface,
                ifindex = attachment.ifindex,
                removed_sources = removed,
                "interface gone; detached"
            );
        }
    }

    /// Removes the per-source traffic entries of `ifindex`; returns how many.
    fn forget_sources(&mut self, ifindex: u32) -> usize {
        let name = map_names::SOURCE_TRAFFIC;
        let Ok(map) = self.map_mut(name) else {
            return 0;
        };
        let Ok(mut table) =
            PerCpuHashMap::<&mut MapData, SourceKey, TrafficCounters>::try_from(map)
        else {
            return 0;
        };
        let dead: Vec<SourceKey> = table
            .keys()
            .filter_map(Result::ok)
            .filter(|key| key.ifindex == ifindex)
            .collect();
        dead.iter()
            .filter(|key| match table.remove(key) {
                Ok(()) => true,
                Err(error) => {
                    warn!(map = name, %error, "could not remove a vanished interface's source entry");
                    false
                }
            })
            .count()
    }

    fn link_pin(&self, hook: &str, interface: &str, ifindex: u32) -> PathBuf {
        self.state_dir
            .join(LINKS_DIR)
            .join(format!("{hook}-{interface}-{ifindex}"))
    }

    /// Pins for the same interface name with another index belong to an interface that was
    /// deleted and re-created; their links are defunct.
    fn remove_stale_pins(&self, interface: &str, ifindex: u32) {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join(LINKS_DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_stale = ["xdp", "tcx"].iter().any(|hook| {
                name.strip_prefix(&format!("{hook}-{interface}-"))
                    .and_then(|index| index.parse::<u32>().ok())
                    .is_some_and(|index| index != ifindex)
            });
            if is_stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Runs Moat's program for `hook` once on `frame` with no interface involved
    /// (BPF_PROG_TEST_RUN), against the live maps, and says whether it let the frame pass. Lets
    /// tests ask the kernel itself what each entry point would do with a packet.
    pub fn passes(&mut self, hook: Hook, frame: &[u8]) -> Result<bool, LoadError> {
        let options = TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::default()
        };
        match hook {
            Hook::Xdp(_) => xdp_program(&mut self.ebpf, Program::Moat)?
                .test_run(options)
                .map(|result| result.return_value == XDP_PASS)
                .map_err(|source| LoadError::Program {
                    name: XDP_PROGRAM,
                    source,
                }),
            Hook::Tcx | Hook::Auto => tc_program(&mut self.ebpf)?
                .test_run(options)
                .map(|result| result.return_value == TC_ACT_OK)
                .map_err(|source| LoadError::Program {
                    name: TC_PROGRAM,
                    source,
                }),
        }
    }

    /// Runs `program` `repeat` times on `frame` in the kernel and returns its verdict and the
    /// mean time one run took, as the kernel measured it.
    pub fn time_on_frame(
        &mut self,
        program: Program,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), LoadError> {
        let options = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        };
        xdp_program(&mut self.ebpf, program)?
            .test_run(options)
            .map(|result| (result.return_value, result.duration))
            .map_err(|source| LoadError::Program {
                name: program.name(),
                source,
            })
    }

    /// Attaches one of the floor programs to `interface`, unpinned: it goes when this value
    /// does. For benchmarks only; Moat's own program is attached with [`Datapath::attach`].
    pub fn attach_floor(&mut self, floor: Floor, interface: &str) -> Result<(), LoadError> {
        let program = match floor {
            Floor::DropAll => Program::DropFloor,
            Floor::PassAll => Program::PassFloor,
        };
        let ifindex = ifindex_of(interface)?;
        let program = xdp_program(&mut self.ebpf, program)?;
        attach_new(program, interface, ifindex, XdpModeArg::Native).map(|_| ())
    }

    pub fn map(&self, name: &'static str) -> Result<&Map, LoadError> {
        self.ebpf.map(name).ok_or(LoadError::MapMissing { name })
    }

    pub fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, LoadError> {
        self.ebpf
            .map_mut(name)
            .ok_or(LoadError::MapMissing { name })
    }

    pub fn take_map(&mut self, name: &'static str) -> Result<Map, LoadError> {
        self.ebpf
            .take_map(name)
            .ok_or(LoadError::MapMissing { name })
    }

    /// Every tracked source with its counters summed over CPUs.
    pub fn source_traffic(&self) -> Result<Vec<(SourceKey, TrafficCounters)>, LoadError> {
        let name = map_names::SOURCE_TRAFFIC;
        let read_error = |source| LoadError::MapRead { map: name, source };
        let table: PerCpuHashMap<&MapData, SourceKey, TrafficCounters> =
            PerCpuHashMap::try_from(self.map(name)?).map_err(read_error)?;
        table
            .iter()
            .map(|entry| {
                let (key, per_cpu) = entry.map_err(read_error)?;
                Ok((key, crate::traffic::sum_per_cpu(per_cpu.iter().copied())))
            })
            .collect()
    }

    pub fn xdp_stats(&self) -> Result<XdpStats, LoadError> {
        let name = map_names::XDP_STATS;
        let read_error = |source| LoadError::MapRead { map: name, source };
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map(name)?).map_err(read_error)?;
        let mut slots = Vec::with_capacity(XdpStat::ALL.len());
        for stat in XdpStat::ALL {
            slots.push(stats.get(&(stat as u32), 0).map_err(read_error)?.to_vec());
        }
        Ok(XdpStats::from_slots(|stat| &slots[stat as usize]))
    }
}

fn tc_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, LoadError> {
    ebpf.program_mut(TC_PROGRAM)
        .ok_or(LoadError::ProgramMissing { name: TC_PROGRAM })?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: TC_PROGRAM,
            source,
        })
}

fn xdp_program(ebpf: &mut Ebpf, program: Program) -> Result<&mut Xdp, LoadError> {
    let name = program.name();
    ebpf.program_mut(name)
        .ok_or(LoadError::ProgramMissing { name })?
        .try_into()
        .map_err(|source| LoadError::Program { name, source })
}

pub fn ifindex_of(name: &str) -> Result<u32, LoadError> {
    let unknown = || LoadError::UnknownInterface {
        name: name.to_owned(),
    };
    let c_name = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: c_name is a valid NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(unknown()),
        index => Ok(index),
    }
}

fn attach_new(
    program: &mut Xdp,
    interface: &str,
    ifindex: u32,
    requested: XdpModeArg,
) -> Result<(XdpLinkId, &'static str), LoadError> {
    let attempt = |program: &mut Xdp, mode: XdpMode, name: &'static str| {
        program
            .attach_to_if_index(ifindex, mode)
            .map(|id| (id, name))
            .map_err(|source| classify_attach_error(interface, name, source))
    };
    match requested {
        XdpModeArg::Native => attempt(program, XdpMode::Driver, "native"),
        XdpModeArg::Generic => attempt(program, XdpMode::Skb, "generic"),
        XdpModeArg::Auto => match attempt(program, XdpMode::Driver, "native") {
            Err(LoadError::Attach { source, .. }) => {
                warn!(
                    interface,
                    reason = %source,
                    "driver has no native XDP; falling back to generic mode, which costs more per packet"
                );
                attempt(program, XdpMode::Skb, "generic")
            }
            other => other,
        },
    }
}

fn classify_attach_error(interface: &str, mode: &'static str, source: ProgramError) -> LoadError {
    let errno = os_error_of(&source);
    if errno == Some(libc::EBUSY) || errno == Some(libc::EEXIST) {
        return LoadError::InterfaceBusy {
            interface: interface.to_owned(),
        };
    }
    LoadError::Attach {
        interface: interface.to_owned(),
        mode,
        source,
    }
}

fn os_error_of(error: &ProgramError) -> Option<i32> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            return io_error.raw_os_error();
        }
        cause = current.source();
    }
    None
}

/// An exclusive flock(2) on the state directory itself (bpffs holds no regular files, but its
/// directories take locks like any other). Released when dropped or when the process dies, so a
/// crashed agent never leaves it held.
struct StateLock {
    _directory: std::fs::File,
}

impl StateLock {
    fn open(state_dir: &Path) -> io::Result<std::fs::File> {
        std::fs::File::open(state_dir)
    }

    fn lock(directory: &std::fs::File, operation: i32) -> io::Result<bool> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(directory.as_raw_fd(), operation) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(false)
        } else {
            Err(error)
        }
    }

    /// The lock, or None if another process holds it.
    fn try_acquire(state_dir: &Path) -> io::Result<Option<Self>> {
        let directory = Self::open(state_dir)?;
        Ok(
            Self::lock(&directory, libc::LOCK_EX | libc::LOCK_NB)?.then_some(Self {
                _directory: directory,
            }),
        )
    }

    /// Waits for the lock.
    fn acquire(state_dir: &Path) -> io::Result<Self> {
        let directory = Self::open(state_dir)?;
        Self::lock(&directory, libc::LOCK_EX)?;
        Ok(Self {
            _directory: directory,
        })
    }
}

/// What `cleanup` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    pub links: usize,
    pub maps: usize,
}

/// Detaches every link and removes every pin Moat made under `state_dir`, then the directory.
pub fn cleanup(state_dir: &Path) -> Result<Cleaned, LoadError> {
    let state_error = |source| LoadError::StateDir {
        path: state_dir.to_owned(),
        source,
    };
    let mut cleaned = Cleaned::default();
    if !state_dir.exists() {
        return Ok(cleaned);
    }
    let Some(_lock) = StateLock::try_acquire(state_dir).map_err(state_error)? else {
        return Err(LoadError::StateDirInUse {
            path: state_dir.to_owned(),
        });
    };
    let links_dir = state_dir.join(LINKS_DIR);
    if links_dir.exists() {
        for entry in std::fs::read_dir(&links_dir).map_err(state_error)? {
            let path = entry.map_err(state_error)?.path();
            // Opening the pin and unpinning it leaves our fd the last reference: closing it
            // destroys the link, which detaches the program.
            match PinnedLink::from_pin(&path) {
                Ok(pinned) => match pinned.unpin() {
                    Ok(link) => drop(link),
                    Err(error) => warn!(path = %path.display(), %error, "could not unpin link"),
                },
                Err(error) => {
                    warn!(path = %path.display(), %error, "not a link pin; removing the file");
                    std::fs::remove_file(&path).map_err(state_error)?;
                }
            }
            cleaned.links += 1;
        }
        std::fs::remove_dir(&links_dir).map_err(state_error)?;
    }
    for entry in std::fs::read_dir(state_dir).map_err(state_error)? {
        let path = entry.map_err(state_error)?.path();
        std::fs::remove_file(&path).map_err(state_error)?;
        cleaned.maps += 1;
    }
    std::fs::remove_dir(state_dir).map_err(state_error)?;
    Ok(cleaned)
}
