//! XDP on pod-facing and uplink interfaces: judge every frame by the active policy, and count
//! what passes per (interface, source, protocol).
//!
//! Kernel interface: the XDP hook (`struct xdp_md`), native on drivers that have it (veth does),
//! generic otherwise. Cost per frame: a bounds-checked read of the fixed headers, one per-CPU
//! hash update for the source count, and the lookups `enforce` lists. It never allocates, and
//! every loop has a constant bound.

mod enforce;
mod packet;

use agent_common::xdp::{SourceKey, TrafficCounters, XdpStat};
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use crate::maps::{SOURCE_TRAFFIC, XDP_STATS};
use packet::NotParsed;

#[xdp]
pub fn moat_xdp(ctx: XdpContext) -> u32 {
    bump(XdpStat::Frames, 1);
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    let packet = match packet::parse(&ctx) {
        Ok(packet) => packet,
        // Not IP (ARP, LLDP) or too short to judge: the network needs the former, and the
        // kernel drops malformed IP itself.
        Err(NotParsed::NotIp) => {
            bump(XdpStat::NonIp, 1);
            return xdp_action::XDP_PASS;
        }
        Err(NotParsed::Truncated) => {
            bump(XdpStat::Truncated, 1);
            return xdp_action::XDP_PASS;
        }
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    let key = if packet.family == agent_common::xdp::FAMILY_IPV4 {
        SourceKey::ipv4(
            [packet.src[0], packet.src[1], packet.src[2], packet.src[3]],
            ifindex,
            packet.first_protocol,
        )
    } else {
        SourceKey::ipv6(packet.src, ifindex, packet.first_protocol)
    };
    match enforce::judge(&packet, ifindex, frame_len) {
        enforce::Verdict::Pass(_) => {
            count_source(&key, frame_len);
            xdp_action::XDP_PASS
        }
        // Dropped packets are counted per verdict and reported per flow; leaving them out of
        // the per-source table keeps a flood from costing a hash update per packet.
        enforce::Verdict::Drop { .. } => xdp_action::XDP_DROP,
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
