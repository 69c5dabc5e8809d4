//! Moat's kernel programs: one enforcement path with two entry points (XDP for uplinks, TC via
//! TCX for pod veths). They parse fixed headers, look up, count and decide; everything that needs
//! more parsing happens in userspace.
#![no_std]
#![no_main]

mod enforce;
mod floor;
mod hook;
mod maps;
mod packet;
mod tc;
mod xdp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach a panic, so this is never called.
    loop {}
}

// GPL-compatible, because the helpers the programs call are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
