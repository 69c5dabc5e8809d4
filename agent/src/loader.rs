//! The only place that touches `aya::programs`: loads Moat's embedded kernel object and attaches
//! its programs. Everything attached here is detached when the returned value is dropped.

use std::{ffi::CString, io};

use agent_common::xdp::{SourceKey, TrafficCounters, XdpStat, map_names};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, PerCpuHashMap},
    programs::{ProgramError, Xdp, XdpMode},
};
use thiserror::Error;
use tracing::{info, warn};

use crate::{cli::XdpModeArg, traffic::XdpStats};

/// The kernel object agent-ebpf compiles to, built by build.rs.
static KERNEL_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/moat"));

const XDP_COUNT_PROGRAM: &str = "moat_xdp_count";

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "interface {name:?} does not exist in this network namespace; list the interfaces with \
         `ip -br link` and pass one of them to --iface"
    )]
    UnknownInterface { name: String },
    #[error("the kernel refused Moat's eBPF object: {0}")]
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
    #[error("attaching XDP in {mode} mode to interface {interface:?} failed: {source}")]
    Attach {
        interface: String,
        mode: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("reading map {map:?} failed: {source}")]
    MapRead {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// Where and how the counting program runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    /// `native` or `generic`.
    pub mode: &'static str,
}

/// Moat's loaded kernel object with the XDP counter attached; dropping it detaches everything.
pub struct LoadedPrograms {
    // Holds the program, its links and the maps alive.
    ebpf: Ebpf,
    pub attachments: Vec<Attachment>,
}

/// Resolves every interface first, so a typo fails before anything is loaded or attached.
pub fn load_and_attach(
    interfaces: &[String],
    mode: XdpModeArg,
) -> Result<LoadedPrograms, LoadError> {
    let ifindexes = interfaces
        .iter()
        .map(|name| ifindex_of(name).map(|index| (name.clone(), index)))
        .collect::<Result<Vec<_>, _>>()?;

    let mut ebpf = Ebpf::load(KERNEL_OBJECT).map_err(|error| LoadError::Object(Box::new(error)))?;
    let program: &mut Xdp = ebpf
        .program_mut(XDP_COUNT_PROGRAM)
        .ok_or(LoadError::ProgramMissing {
            name: XDP_COUNT_PROGRAM,
        })?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: XDP_COUNT_PROGRAM,
            source,
        })?;
    program.load().map_err(|source| LoadError::Program {
        name: XDP_COUNT_PROGRAM,
        source,
    })?;

    let mut attachments = Vec::with_capacity(ifindexes.len());
    for (interface, ifindex) in ifindexes {
        let mode = attach(program, &interface, ifindex, mode)?;
        info!(interface, ifindex, mode, "XDP counter attached");
        attachments.push(Attachment {
            interface,
            ifindex,
            mode,
        });
    }
    Ok(LoadedPrograms { ebpf, attachments })
}

fn ifindex_of(name: &str) -> Result<u32, LoadError> {
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

fn attach(
    program: &mut Xdp,
    interface: &str,
    ifindex: u32,
    requested: XdpModeArg,
) -> Result<&'static str, LoadError> {
    let attempt = |program: &mut Xdp, mode: XdpMode, name: &'static str| {
        program
            .attach_to_if_index(ifindex, mode)
            .map(|_| name)
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
    if os_error_of(&source) == Some(libc::EBUSY) || os_error_of(&source) == Some(libc::EEXIST) {
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

impl LoadedPrograms {
    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, LoadError> {
        self.ebpf.map(name).ok_or(LoadError::MapMissing { name })
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
        Ok(XdpStats::from_slots(|stat| slots[stat as usize].clone()))
    }
}
