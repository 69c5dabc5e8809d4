//! Moat's socket capture: syscall tracepoints (and `sock:inet_sock_set_state`) that copy the bytes
//! of TCP connections into a ring buffer. They find sockets, copy and count; reassembly and every
//! protocol parser live in userspace.
//!
//! Which descriptors are TCP sockets is learned when they are made: at the exit of `connect` and
//! `accept`, the programs follow the descriptor to its socket and enter it in the socket table
//! if it is TCP. Data syscalls on any descriptor not in that table (files, pipes, UDP, unix
//! sockets) cost one hash lookup and leave nothing. (fentry/fexit would reach the socket more
//! directly, but this kernel refuses to load them; tracepoints work everywhere.)
#![no_std]
#![no_main]

mod data;
mod maps;
#[path = "../runtime.rs"]
mod runtime;
mod sockets;
mod tls;
mod tracepoint;
