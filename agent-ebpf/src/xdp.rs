//! XDP on pod-facing interfaces: count every frame per (interface, source address, protocol).
//!
//! Kernel interface: the XDP hook (`struct xdp_md`), native on drivers that have it (veth does),
//! generic otherwise. Cost per frame: a bounds-checked read of at most 58 header bytes, one
//! per-CPU hash lookup and, for a source seen for the first time on this CPU, one insert. It never
//! loops, allocates, or changes the verdict: every frame passes.

use agent_common::xdp::{SourceKey, TrafficCounters, XdpStat};
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use crate::maps::{SOURCE_TRAFFIC, XDP_STATS};

const ETH_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPV4_HEADER_MIN_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// Why a frame could not be attributed to a source; each maps to an [`XdpStat`] slot.
enum Unattributed {
    NotIp,
    Truncated,
}

#[xdp]
pub fn moat_xdp_count(ctx: XdpContext) -> u32 {
    bump(XdpStat::Frames, 1);
    match source_of(&ctx) {
        Ok(key) => record(&key, frame_len(&ctx)),
        Err(Unattributed::NotIp) => bump(XdpStat::NonIp, 1),
        Err(Unattributed::Truncated) => bump(XdpStat::Truncated, 1),
    }
    xdp_action::XDP_PASS
}

fn frame_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

/// A pointer to `len` readable bytes at `offset`, or `Truncated` when the frame is shorter. The
/// comparison against `data_end` is what lets the verifier accept the read that follows.
#[inline(always)]
fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Result<*const u8, Unattributed> {
    let start = ctx.data() + offset;
    if start + len > ctx.data_end() {
        return Err(Unattributed::Truncated);
    }
    Ok(start as *const u8)
}

#[inline(always)]
fn read_u16_be(ctx: &XdpContext, offset: usize) -> Result<u16, Unattributed> {
    let ptr = bytes_at(ctx, offset, 2)?;
    // SAFETY: bytes_at checked that both bytes lie inside the frame.
    let bytes = unsafe { [*ptr, *ptr.add(1)] };
    Ok(u16::from_be_bytes(bytes))
}

fn source_of(ctx: &XdpContext) -> Result<SourceKey, Unattributed> {
    let mut ethertype = read_u16_be(ctx, ETH_HEADER_LEN - 2)?;
    let mut l3_offset = ETH_HEADER_LEN;
    // One VLAN tag (802.1Q or the outer 802.1ad of QinQ) is common on uplinks; deeper stacks are
    // rare enough to count as non-IP rather than pay for a loop.
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = read_u16_be(ctx, l3_offset + VLAN_TAG_LEN - 2)?;
        l3_offset += VLAN_TAG_LEN;
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    match ethertype {
        ETH_P_IPV4 => {
            let header = bytes_at(ctx, l3_offset, IPV4_HEADER_MIN_LEN)?;
            // SAFETY: bytes_at checked the 20 bytes of the fixed IPv4 header.
            let (protocol, source) = unsafe {
                (
                    *header.add(9),
                    [
                        *header.add(12),
                        *header.add(13),
                        *header.add(14),
                        *header.add(15),
                    ],
                )
            };
            Ok(SourceKey::ipv4(source, ifindex, protocol))
        }
        ETH_P_IPV6 => {
            let header = bytes_at(ctx, l3_offset, IPV6_HEADER_LEN)?;
            let mut source = [0u8; 16];
            // SAFETY: bytes_at checked the 40 bytes of the IPv6 header; the source address is
            // bytes 8..24 and the next header byte 6.
            let protocol = unsafe {
                core::ptr::copy_nonoverlapping(header.add(8), source.as_mut_ptr(), 16);
                *header.add(6)
            };
            Ok(SourceKey::ipv6(source, ifindex, protocol))
        }
        _ => Err(Unattributed::NotIp),
    }
}

fn record(key: &SourceKey, frame_len: u64) {
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

fn bump(stat: XdpStat, by: u64) {
    if let Some(slot) = XDP_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, as in `record`.
        unsafe { *slot += by };
    }
}
