//! What every hook does with a frame: judge it by the active policy, and count what passes per
//! (interface, source, protocol). The XDP and TC entry points differ only in how they read the
//! frame and return the verdict.
//!
//! Cost per frame: a bounds-checked read of the fixed headers, the lookups `enforce` lists, and
//! for a passed frame one per-CPU hash update. It never allocates, and every loop has a constant
//! bound.

use agent_common::xdp::{SourceKey, TrafficCounters, XdpStat};

use crate::{
    enforce,
    maps::{SOURCE_TRAFFIC, XDP_STATS},
    packet::{self, Frame, NotParsed},
};

pub enum Disposition {
    Pass,
    Drop,
}

#[inline(always)]
pub fn process<F: Frame>(frame: &F, ifindex: u32, frame_len: u64) -> Disposition {
    bump(XdpStat::Frames, 1);
    let packet = match packet::parse(frame) {
        Ok(packet) => packet,
        // Not IP (ARP, LLDP) or too short to judge: the network needs the former, and the
        // kernel drops malformed IP itself.
        Err(NotParsed::NotIp) => {
            bump(XdpStat::NonIp, 1);
            return Disposition::Pass;
        }
        Err(NotParsed::Truncated) => {
            bump(XdpStat::Truncated, 1);
            return Disposition::Pass;
        }
    };
    match enforce::judge(&packet, ifindex, frame_len) {
        enforce::Verdict::Pass(_) => {
            let key = SourceKey::new(packet.family, packet.src, ifindex, packet.first_protocol);
            count_source(&key, frame_len);
            Disposition::Pass
        }
        // Dropped packets are counted per verdict and reported per flow; leaving them out of
        // the per-source table keeps a flood from costing a hash update per packet.
        enforce::Verdict::Drop(_) => Disposition::Drop,
    }
}

fn count_source(key: &SourceKey, frame_len: u64) {
    if let Some(counters) = SOURCE_TRAFFIC.get_ptr_mut(key) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU value; XDP runs with migration
        // disabled, so nothing else writes it concurrently.
        unsafe {
            (*counters).packets += 1;
            (*counters).bytes += frame_len;
        }
        return;
    }
    let first = TrafficCounters {
        packets: 1,
        bytes: frame_len,
    };
    // BPF_ANY: if another CPU created the entry since the lookup, this CPU's slot is still zero,
    // so writing the first frame's counts into it is exact.
    if SOURCE_TRAFFIC.insert(key, first, 0).is_err() {
        bump(XdpStat::SourceTableFull, 1);
    }
}

pub(crate) fn bump(stat: XdpStat, by: u64) {
    if let Some(slot) = XDP_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, as in `count_source`.
        unsafe { *slot += by };
    }
}
