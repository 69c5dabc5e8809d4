//! The XDP entry point, for uplinks and physical NICs (native XDP runs in the driver, before the
//! kernel builds a socket buffer) and wherever the operator asks for it.
//!
//! Kernel interface: the XDP hook (`struct xdp_md`), native on drivers that have it, generic
//! otherwise. On veth, XDP makes the pair give up GSO/GRO batching, which costs allowed TCP most
//! of its throughput: pod interfaces get the TC entry point instead (see `tc`).

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use crate::hook::{Disposition, process};

#[xdp]
pub fn moat_xdp(ctx: XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    match process(&ctx, ctx.ingress_ifindex() as u32, frame_len) {
        Disposition::Pass => xdp_action::XDP_PASS,
        Disposition::Drop => xdp_action::XDP_DROP,
    }
}
