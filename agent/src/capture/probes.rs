//! Loads the capture object, configures it and attaches its programs. The programs stay attached
//! while [`Probes`] lives; unlike enforcement nothing is pinned, because a capture nobody reads
//! would only fill a ring buffer.

use std::path::Path;

use agent_common::capture::{
    CaptureStat, KernelLayout, PAYLOAD_CAPACITY, SocketFd, SocketState, config, map_names,
    program_names,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        Program, ProgramError, TracePoint, UProbe,
        uprobe::{UProbeError, UProbeScope},
    },
};
use thiserror::Error;

use super::btf::{self, BtfError};

static CAPTURE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/moat-capture"));

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(
        "reading the kernel's type information ({path}): {source}; capture needs a kernel built \
         with CONFIG_DEBUG_INFO_BTF=y (or run with --capture off)",
        path = btf::VMLINUX_BTF
    )]
    ReadBtf {
        #[source]
        source: std::io::Error,
    },
    #[error("{source} ({path}); capture needs it to find sockets and their addresses", path = btf::VMLINUX_BTF)]
    Layout {
        #[source]
        source: BtfError,
    },
    #[error("the kernel refused Moat's capture object: {0}")]
    Object(#[source] Box<aya::EbpfError>),
    #[error(
        "the capture object has no {what} {name:?}; it was built from other sources than this agent"
    )]
    Missing {
        what: &'static str,
        name: &'static str,
    },
    #[error(
        "capture program {program}: {source}; capture needs syscall tracepoints (tracefs, \
         CONFIG_FTRACE_SYSCALLS), BPF ring buffers and bpf_loop (Linux 5.17 or later)"
    )]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("reading the possible CPUs ({path}): {source}")]
    Cpus {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("watching the capture ring buffer: {source}")]
    Ring {
        #[source]
        source: std::io::Error,
    },
    #[error("capture map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// What the kernel side captures, from the agent's flags.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Payload bytes per event (at most [`PAYLOAD_CAPACITY`]).
    pub max_payload: u32,
    pub ring_bytes: u32,
    /// Empty: all ports. Otherwise a connection is captured when either end's port is listed.
    pub ports: Vec<u16>,
    pub cgroups: Vec<u64>,
    pub processes: Vec<u32>,
}

pub struct Probes {
    ebpf: Ebpf,
}

fn map_error(map: &'static str) -> impl Fn(MapError) -> ProbeError {
    move |source| ProbeError::Map { map, source }
}

fn program_error(program: &'static str) -> impl Fn(ProgramError) -> ProbeError {
    move |source| ProbeError::Program { program, source }
}

impl Probes {
    pub fn load(probe: &ProbeConfig) -> Result<Self, ProbeError> {
        let blob =
            std::fs::read(btf::VMLINUX_BTF).map_err(|source| ProbeError::ReadBtf { source })?;
        let layout = btf::kernel_layout(&blob).map_err(|source| ProbeError::Layout { source })?;
        let cpus =
            aya::util::nr_cpus().map_err(|(path, source)| ProbeError::Cpus { path, source })?;
        let ebpf = EbpfLoader::new()
            .map_max_entries(map_names::EVENTS, probe.ring_bytes)
            .map_max_entries(map_names::EVENT_BUFFER, cpus as u32)
            .load(CAPTURE_OBJECT)
            .map_err(|error| ProbeError::Object(Box::new(error)))?;
        let mut probes = Self { ebpf };
        probes.configure(probe, layout)?;
        probes.attach()?;
        Ok(probes)
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, ProbeError> {
        self.ebpf
            .map_mut(name)
            .ok_or(ProbeError::Missing { what: "map", name })
    }

    fn configure(&mut self, probe: &ProbeConfig, layout: KernelLayout) -> Result<(), ProbeError> {
        let mut layouts: Array<_, KernelLayout> =
            Array::try_from(self.map_mut(map_names::KERNEL_LAYOUT)?)
                .map_err(map_error(map_names::KERNEL_LAYOUT))?;
        layouts
            .set(0, layout, 0)
            .map_err(map_error(map_names::KERNEL_LAYOUT))?;

        let mut filters = 0;
        if !probe.ports.is_empty() {
            filters |= config::FILTER_PORTS;
            let mut set: HashMap<_, u16, u8> =
                HashMap::try_from(self.map_mut(map_names::PORT_FILTER)?)
                    .map_err(map_error(map_names::PORT_FILTER))?;
            for port in &probe.ports {
                set.insert(port, 1, 0)
                    .map_err(map_error(map_names::PORT_FILTER))?;
            }
        }
        if !probe.cgroups.is_empty() {
            filters |= config::FILTER_CGROUPS;
            let mut set: HashMap<_, u64, u8> =
                HashMap::try_from(self.map_mut(map_names::CGROUP_FILTER)?)
                    .map_err(map_error(map_names::CGROUP_FILTER))?;
            for cgroup in &probe.cgroups {
                set.insert(cgroup, 1, 0)
                    .map_err(map_error(map_names::CGROUP_FILTER))?;
            }
        }
        if !probe.processes.is_empty() {
            filters |= config::FILTER_PROCESSES;
            let mut set: HashMap<_, u32, u8> =
                HashMap::try_from(self.map_mut(map_names::PROCESS_FILTER)?)
                    .map_err(map_error(map_names::PROCESS_FILTER))?;
            for process in &probe.processes {
                set.insert(process, 1, 0)
                    .map_err(map_error(map_names::PROCESS_FILTER))?;
            }
        }
        let mut settings: Array<_, u64> = Array::try_from(self.map_mut(map_names::CONFIG)?)
            .map_err(map_error(map_names::CONFIG))?;
        let max_payload = probe.max_payload.min(PAYLOAD_CAPACITY as u32);
        for (slot, value) in [
            (config::MAX_PAYLOAD, u64::from(max_payload)),
            (config::FILTERS, filters),
            (config::AGENT_TGID, u64::from(std::process::id())),
        ] {
            settings
                .set(slot, value, 0)
                .map_err(map_error(map_names::CONFIG))?;
        }
        Ok(())
    }

    fn attach(&mut self) -> Result<(), ProbeError> {
        self.attach_tracepoint(program_names::SOCK_STATE, "sock", "inet_sock_set_state")?;
        for (program, tracepoint) in program_names::SYSCALLS {
            self.attach_tracepoint(program, "syscalls", tracepoint)?;
        }
        Ok(())
    }

    fn attach_tracepoint(
        &mut self,
        program: &'static str,
        category: &str,
        name: &str,
    ) -> Result<(), ProbeError> {
        let tracepoint: &mut TracePoint = self.program(program)?;
        // One program serves several tracepoints; it is loaded once.
        if tracepoint.fd().is_err() {
            tracepoint.load().map_err(program_error(program))?;
        }
        tracepoint
            .attach(category, name)
            .map_err(program_error(program))?;
        Ok(())
    }

    /// Loads the TLS programs (once); the kernel refusing them is an error like any other
    /// capture program's.
    pub fn load_tls(&mut self) -> Result<(), ProbeError> {
        let names = program_names::TLS_ENTRIES
            .iter()
            .map(|(program, _)| *program)
            .chain([program_names::TLS_RETURN]);
        for program in names {
            let uprobe = self.uprobe(program)?;
            if uprobe.fd().is_err() {
                uprobe.load().map_err(program_error(program))?;
            }
        }
        Ok(())
    }

    fn uprobe(&mut self, program: &'static str) -> Result<&mut UProbe, ProbeError> {
        self.program(program)
    }

    /// The loaded object's program named `program`, as the kind of program it must be.
    fn program<'a, P>(&'a mut self, program: &'static str) -> Result<&'a mut P, ProbeError>
    where
        &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
    {
        self.ebpf
            .program_mut(program)
            .ok_or(ProbeError::Missing {
                what: "program",
                name: program,
            })?
            .try_into()
            .map_err(program_error(program))
    }

    /// Attaches the TLS programs to the library file at `path`, for every process that runs it.
    /// Returns the functions hooked; a function the library lacks is skipped (an older or
    /// trimmed build), and the first error of another kind is returned.
    pub fn attach_tls(&mut self, path: &Path) -> Result<Vec<&'static str>, ProbeError> {
        let mut hooked = Vec::new();
        for (program, function) in program_names::TLS_ENTRIES {
            // The return probe first: an entry without its return would leave calls in flight.
            let attached = self.uprobe(program_names::TLS_RETURN)?.attach(
                *function,
                path,
                UProbeScope::AllProcesses,
            );
            match attached {
                Ok(_) => {}
                Err(ProgramError::UProbeError(UProbeError::SymbolError { .. })) => continue,
                Err(source) => {
                    return Err(ProbeError::Program {
                        program: program_names::TLS_RETURN,
                        source,
                    });
                }
            }
            self.uprobe(program)?
                .attach(*function, path, UProbeScope::AllProcesses)
                .map_err(program_error(program))?;
            hooked.push(*function);
        }
        Ok(hooked)
    }

    /// The ring buffer of events; callable once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let map = self
            .ebpf
            .take_map(map_names::EVENTS)
            .ok_or(ProbeError::Missing {
                what: "map",
                name: map_names::EVENTS,
            })?;
        RingBuf::try_from(map).map_err(map_error(map_names::EVENTS))
    }

    /// Enters a connection that existed before capture started, unless the kernel already has
    /// one for that descriptor. Returns whether it was entered.
    pub fn adopt_existing(
        &mut self,
        socket: SocketFd,
        connection_id: u64,
    ) -> Result<bool, ProbeError> {
        let mut sockets: HashMap<_, SocketFd, SocketState> =
            HashMap::try_from(self.map_mut(map_names::SOCKETS)?)
                .map_err(map_error(map_names::SOCKETS))?;
        let state = SocketState {
            connection_id,
            sent: 0,
            received: 0,
            passive: 0,
            _pad: 0,
        };
        const BPF_NOEXIST: u64 = 1;
        match sockets.insert(socket, state, BPF_NOEXIST) {
            Ok(()) => Ok(true),
            Err(MapError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(false)
            }
            Err(source) => Err(ProbeError::Map {
                map: map_names::SOCKETS,
                source,
            }),
        }
    }

    /// Drops descriptors the kernel told us were closed in bulk (close_range), or that belong to
    /// processes that exited without closing them.
    pub fn forget(
        &mut self,
        sockets: impl IntoIterator<Item = SocketFd>,
    ) -> Result<(), ProbeError> {
        let mut table: HashMap<_, SocketFd, SocketState> =
            HashMap::try_from(self.map_mut(map_names::SOCKETS)?)
                .map_err(map_error(map_names::SOCKETS))?;
        for socket in sockets {
            match table.remove(&socket) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(MapError::SyscallError(error))
                    if error.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(source) => {
                    return Err(ProbeError::Map {
                        map: map_names::SOCKETS,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Every descriptor the kernel captures now.
    pub fn sockets(&mut self) -> Result<Vec<SocketFd>, ProbeError> {
        let table: HashMap<_, SocketFd, SocketState> =
            HashMap::try_from(self.map_mut(map_names::SOCKETS)?)
                .map_err(map_error(map_names::SOCKETS))?;
        Ok(table.keys().filter_map(Result::ok).collect())
    }

    /// The kernel's counters summed over CPUs, in [`CaptureStat::ALL`] order, and the events
    /// lost on each CPU.
    pub fn stats(&mut self) -> Result<([u64; CaptureStat::COUNT as usize], Vec<u64>), ProbeError> {
        let stats: PerCpuArray<_, u64> = PerCpuArray::try_from(self.map_mut(map_names::STATS)?)
            .map_err(map_error(map_names::STATS))?;
        let mut totals = [0; CaptureStat::COUNT as usize];
        let mut lost_per_cpu = Vec::new();
        for (total, stat) in totals.iter_mut().zip(CaptureStat::ALL) {
            let values = stats
                .get(&(stat as u32), 0)
                .map_err(map_error(map_names::STATS))?;
            *total = values.iter().sum();
            if stat == CaptureStat::EventsLost {
                lost_per_cpu = values.iter().copied().collect();
            }
        }
        Ok((totals, lost_per_cpu))
    }
}
