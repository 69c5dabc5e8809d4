//! Floors of what XDP itself costs here: programs that decide at once and do nothing else.
//! Never attached by the agent; `cargo xtask bench xdp` measures Moat's program against them.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// The floor of the drop path.
#[xdp]
pub fn moat_bench_drop_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// The floor of the pass path: what any XDP program on the interface costs allowed traffic.
#[xdp]
pub fn moat_bench_pass_all(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
