//! Every map of every program, in one place, so their sizes can be reviewed together.

use agent_common::xdp::{SOURCE_TRAFFIC_MAX_ENTRIES, SourceKey, TrafficCounters, XdpStat};
use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};

#[map]
pub static SOURCE_TRAFFIC: PerCpuHashMap<SourceKey, TrafficCounters> =
    PerCpuHashMap::with_max_entries(SOURCE_TRAFFIC_MAX_ENTRIES, 0);

#[map]
pub static XDP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(XdpStat::COUNT, 0);
