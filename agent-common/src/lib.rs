//! The kernel/userspace boundary of Moat.
//!
//! Every type that crosses between `agent-ebpf` and `agent` lives here, `#[repr(C)]` with explicit
//! padding and a compile-time size check, so both sides agree on the layout byte for byte. Map
//! names are constants so that a rename on one side cannot silently break the lookup on the other.
#![no_std]

pub mod policy;
pub mod xdp;
