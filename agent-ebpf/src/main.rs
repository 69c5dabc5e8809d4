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
mod runtime;
mod tc;
mod xdp;
