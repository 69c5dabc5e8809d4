//! The TC entry point, attached with TCX to the ingress of the node side of pod veths: it sees
//! what a pod sends, as XDP would, but on the socket buffer the veth passes along, so GSO/GRO
//! batches stay whole and allowed traffic keeps its throughput.
//!
//! Kernel interface: tcx ingress (`struct __sk_buff`, kernel 6.6+). A "frame" here is a socket
//! buffer, which for TCP may carry a GSO batch of many wire packets: counts are of buffers, bytes
//! are of all they carry.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};

use crate::hook::{Disposition, process};

/// Headers the parser may read: Ethernet, a VLAN tag, IPv6 with four extension headers, and TCP.
const HEADER_BYTES: u32 = 14 + 4 + 40 + 4 * 8 + 14;

#[classifier]
pub fn moat_tc(ctx: TcContext) -> i32 {
    let len = ctx.len();
    // Direct packet access reaches only the linear part of the buffer; make sure the headers are
    // in it (a no-op when they already are, as for what a local socket sends).
    if ((ctx.data_end() - ctx.data()) as u32) < HEADER_BYTES.min(len) {
        let _ = ctx.pull_data(HEADER_BYTES.min(len));
    }
    // SAFETY: reading a field of the __sk_buff the kernel passed us.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match process(&ctx, ifindex, len as u64) {
        Disposition::Pass => TC_ACT_OK,
        Disposition::Drop => TC_ACT_SHOT,
    }
}
