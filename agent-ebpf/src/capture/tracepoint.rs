//! Reading syscall tracepoint records: arguments are 8-byte slots from offset 16, and the exit
//! record's return value sits in the first one.

use aya_ebpf::programs::TracePointContext;

pub fn arg(ctx: &TracePointContext, index: usize) -> u64 {
    // SAFETY: syscall tracepoint records hold their arguments as u64 slots at these offsets;
    // read_at goes through bpf_probe_read, so a bad offset reads an error, not memory.
    unsafe { ctx.read_at::<u64>(16 + 8 * index) }.unwrap_or(0)
}

pub fn ret(ctx: &TracePointContext) -> i64 {
    arg(ctx, 0) as i64
}
