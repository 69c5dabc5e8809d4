//! Which descriptors are captured TCP sockets: entered when `connect`/`accept` return one, gone
//! when it is closed. Each start and end is an event, so userspace knows every connection's
//! addresses and process before its first byte.
//!
//! The syscalls name a descriptor; the socket behind it is found by following the task's file
//! table (task -> files -> fdtable -> file -> socket -> sock) with the field offsets userspace
//! read from the kernel's BTF. Only TCP over IPv4/IPv6 is entered; a connect on a UDP or unix
//! socket is not.

use agent_common::{
    capture::{
        CONNECTION_ID_CPU_BITS, CaptureStat, EndRef, EventHeader, EventKind, KernelLayout,
        ROLE_CLIENT, ROLE_SERVER, SocketFd, SocketState, SocketTuple, config,
    },
    xdp::{FAMILY_IPV4, FAMILY_IPV6},
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::bpf_get_smp_processor_id,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    maps::{
        BufferShape, CAPTURE_CGROUP_FILTER, CAPTURE_CONNECTION_IDS, CAPTURE_EVENTS,
        CAPTURE_KERNEL_LAYOUT, CAPTURE_PORT_FILTER, CAPTURE_PROCESS_FILTER, CAPTURE_SOCKETS,
        IN_FLIGHT, InFlight, LOCAL_ENDS, SOCKET_CONNECTIONS, bump, config, wakeup_flags,
    },
    tracepoint::{arg, ret},
};

const EINPROGRESS: i64 = 115;
const AF_INET6: u16 = 10;
const TCP_CLOSE: i32 = 7;
const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;

#[repr(C)]
struct OpenEvent {
    header: EventHeader,
    tuple: SocketTuple,
}

/// A header for the current task; the caller fills what is specific to the event.
pub fn header(kind: EventKind, connection_id: u64, fd: u32) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        // SAFETY: helper calls without memory arguments.
        time_ns: unsafe { bpf_ktime_get_ns() },
        connection_id,
        // SAFETY: as above.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        offset: 0,
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        fd,
        length: 0,
        captured: 0,
        kind: kind as u8,
        direction: 0,
        _pad: [0; 2],
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

fn read_kernel<T: Copy>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copes with any address: a bad one is an error, not a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.ok()
}

/// The `struct sock` behind descriptor `fd` of the current process, if it is a TCP socket.
fn tcp_sock_of(fd: u32, layout: &KernelLayout) -> Option<u64> {
    // SAFETY: a helper without memory arguments.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read_kernel(task, layout.task_files)?;
    let fdtable: u64 = read_kernel(files, layout.files_fdt)?;
    let max_fds: u32 = read_kernel(fdtable, layout.fdtable_max_fds)?;
    if fd >= max_fds {
        return None;
    }
    let descriptors: u64 = read_kernel(fdtable, layout.fdtable_fd)?;
    let file: u64 = read_kernel(descriptors, fd * 8)?;
    let socket: u64 = read_kernel(file, layout.file_private_data)?;
    let sock: u64 = read_kernel(socket, layout.socket_sk)?;
    let protocol: u16 = read_kernel(sock, layout.sock_protocol)?;
    let family: u16 = read_kernel(sock, layout.family)?;
    (protocol == IPPROTO_TCP && (family == AF_INET || family == AF_INET6)).then_some(sock)
}

/// The socket's addresses, from this process's side.
fn tuple_of(sock: u64, layout: &KernelLayout, role: u8) -> Option<SocketTuple> {
    let family: u16 = read_kernel(sock, layout.family)?;
    let mut tuple = SocketTuple {
        local_port: read_kernel(sock, layout.num)?,
        remote_port: u16::from_be(read_kernel(sock, layout.dport)?),
        role,
        ..SocketTuple::default()
    };
    if family == AF_INET {
        tuple.family = FAMILY_IPV4;
        let local: [u8; 4] = read_kernel(sock, layout.rcv_saddr)?;
        let remote: [u8; 4] = read_kernel(sock, layout.daddr)?;
        tuple.local_addr[..4].copy_from_slice(&local);
        tuple.remote_addr[..4].copy_from_slice(&remote);
    } else {
        tuple.family = FAMILY_IPV6;
        tuple.local_addr = read_kernel(sock, layout.v6_rcv_saddr)?;
        tuple.remote_addr = read_kernel(sock, layout.v6_daddr)?;
    }
    Some(tuple)
}

/// Ids unique across CPUs without atomics (which the BPF target lacks in Rust): a per-CPU
/// counter above the CPU number.
fn next_connection_id() -> Option<u64> {
    let counter = CAPTURE_CONNECTION_IDS.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; nothing else runs on it until this program returns.
    let count = unsafe {
        *counter += 1;
        *counter
    };
    // SAFETY: a helper without arguments.
    let cpu = u64::from(unsafe { bpf_get_smp_processor_id() });
    Some(count << CONNECTION_ID_CPU_BITS | cpu)
}

#[tracepoint]
pub fn moat_enter_connect(ctx: TracePointContext) -> u32 {
    let call = InFlight {
        buffer: 0,
        count: 0,
        fd: arg(&ctx, 0) as u32,
        shape: BufferShape::Connect,
        direction: 0,
        _pad: [0; 2],
    };
    if IN_FLIGHT
        .insert(bpf_get_current_pid_tgid(), call, 0)
        .is_err()
    {
        bump(CaptureStat::InFlightTableFull, 1);
    }
    0
}

#[tracepoint]
pub fn moat_exit_connect(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let call = unsafe { IN_FLIGHT.get(id) }.copied();
    let _ = IN_FLIGHT.remove(id);
    let Some(call) = call else { return 0 };
    let result = ret(&ctx);
    // A non-blocking connect returns EINPROGRESS with the local port already chosen.
    if call.shape == BufferShape::Connect && (result == 0 || result == -EINPROGRESS) {
        adopt(call.fd, ROLE_CLIENT);
    }
    0
}

#[tracepoint]
pub fn moat_exit_accept(ctx: TracePointContext) -> u32 {
    let result = ret(&ctx);
    if result >= 0 {
        adopt(result as u32, ROLE_SERVER);
    }
    0
}

fn admitted(tuple: &SocketTuple, tgid: u32, cgroup_id: u64) -> bool {
    if u64::from(tgid) == config(config::AGENT_TGID) {
        return false;
    }
    let filters = config(config::FILTERS);
    // SAFETY: lookups in hash sets whose values are never referenced.
    unsafe {
        if filters & config::FILTER_PORTS != 0
            && CAPTURE_PORT_FILTER.get(tuple.local_port).is_none()
            && CAPTURE_PORT_FILTER.get(tuple.remote_port).is_none()
        {
            return false;
        }
        if filters & config::FILTER_CGROUPS != 0 && CAPTURE_CGROUP_FILTER.get(cgroup_id).is_none() {
            return false;
        }
        if filters & config::FILTER_PROCESSES != 0 && CAPTURE_PROCESS_FILTER.get(tgid).is_none() {
            return false;
        }
    }
    true
}

/// Whether the other end of this connection is a socket this host already copies: then both
/// ends carry the same bytes, and copying them once is enough. The entry is checked against the
/// socket table, so an end whose descriptor was closed (or reused) does not count.
fn peer_is_captured(tuple: &SocketTuple) -> bool {
    // SAFETY: values copied out of our own maps.
    let Some(peer) = (unsafe { LOCAL_ENDS.get(tuple.peer_key()) }).copied() else {
        return false;
    };
    // SAFETY: as above.
    let Some(state) = (unsafe { CAPTURE_SOCKETS.get(peer.socket) }).copied() else {
        return false;
    };
    state.connection_id == peer.connection_id && state.passive == 0
}

/// The syscall returned descriptor `fd`: capture it if it is a TCP socket the filters admit.
fn adopt(fd: u32, role: u8) {
    let Some(layout) = CAPTURE_KERNEL_LAYOUT.get(0) else {
        return;
    };
    let Some(sock) = tcp_sock_of(fd, layout) else {
        return;
    };
    let Some(mut tuple) = tuple_of(sock, layout, role) else {
        return;
    };
    let mut header = header(EventKind::Open, 0, fd);
    if !admitted(&tuple, header.tgid, header.cgroup_id) {
        return;
    }
    let Some(connection_id) = next_connection_id() else {
        return;
    };
    header.connection_id = connection_id;
    let key = SocketFd {
        tgid: header.tgid,
        fd,
    };
    let passive = peer_is_captured(&tuple);
    tuple.passive = u8::from(passive);
    let state = SocketState {
        connection_id,
        sent: 0,
        received: 0,
        passive: u32::from(passive),
        _pad: 0,
    };
    if CAPTURE_SOCKETS.insert(key, state, 0).is_err() {
        bump(CaptureStat::SocketTableFull, 1);
        return;
    }
    if !passive {
        let end = EndRef {
            socket: key,
            connection_id,
        };
        // An LRU map: an entry evicted early only means that connection's two ends are both
        // copied, as when one of them is on another host.
        let _ = LOCAL_ENDS.insert(tuple.end_key(), end, 0);
    }
    let _ = SOCKET_CONNECTIONS.insert(sock, connection_id, 0);
    let event = OpenEvent { header, tuple };
    if CAPTURE_EVENTS
        .output::<OpenEvent>(&event, wakeup_flags())
        .is_err()
    {
        bump(CaptureStat::EventsLost, 1);
    }
}

/// The process let go of `fd`; if it was a captured socket, say so.
fn forget(fd: u32) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = SocketFd { tgid, fd };
    // SAFETY: copied out before removal.
    let Some(state) = (unsafe { CAPTURE_SOCKETS.get(key) }).copied() else {
        return;
    };
    let _ = CAPTURE_SOCKETS.remove(key);
    let event = header(EventKind::Close, state.connection_id, fd);
    if CAPTURE_EVENTS
        .output::<EventHeader>(&event, wakeup_flags())
        .is_err()
    {
        bump(CaptureStat::EventsLost, 1);
    }
}

#[tracepoint]
pub fn moat_enter_close(ctx: TracePointContext) -> u32 {
    forget(arg(&ctx, 0) as u32);
    0
}

/// dup2/dup3 close the target descriptor first.
#[tracepoint]
pub fn moat_enter_dup2(ctx: TracePointContext) -> u32 {
    forget(arg(&ctx, 1) as u32);
    0
}

#[tracepoint]
pub fn moat_enter_dup3(ctx: TracePointContext) -> u32 {
    forget(arg(&ctx, 1) as u32);
    0
}

/// close_range may close thousands of descriptors: too many to look up here, so userspace removes
/// the captured ones in the range.
#[tracepoint]
pub fn moat_enter_close_range(ctx: TracePointContext) -> u32 {
    if arg(&ctx, 2) & CLOSE_RANGE_CLOEXEC != 0 {
        return 0;
    }
    let mut event = header(EventKind::CloseRange, 0, arg(&ctx, 0) as u32);
    event.length = arg(&ctx, 1).min(u64::from(u32::MAX)) as u32;
    if CAPTURE_EVENTS
        .output::<EventHeader>(&event, wakeup_flags())
        .is_err()
    {
        bump(CaptureStat::EventsLost, 1);
    }
    0
}

/// `sock:inet_sock_set_state`: a captured connection reaching CLOSE is over, even if its process
/// never closes the descriptor (it may exit, or hand the socket on).
#[tracepoint]
pub fn moat_sock_state(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets of the tracepoint's fields (skaddr, newstate, protocol), a stable format.
    let (skaddr, newstate, protocol) = unsafe {
        (
            ctx.read_at::<u64>(8).unwrap_or(0),
            ctx.read_at::<i32>(20).unwrap_or(0),
            ctx.read_at::<u16>(30).unwrap_or(0),
        )
    };
    if protocol != IPPROTO_TCP || newstate != TCP_CLOSE {
        return 0;
    }
    // SAFETY: copied out before removal.
    let Some(connection_id) = (unsafe { SOCKET_CONNECTIONS.get(skaddr) }).copied() else {
        return 0;
    };
    let _ = SOCKET_CONNECTIONS.remove(skaddr);
    let event = header(EventKind::Closed, connection_id, 0);
    if CAPTURE_EVENTS
        .output::<EventHeader>(&event, wakeup_flags())
        .is_err()
    {
        bump(CaptureStat::EventsLost, 1);
    }
    0
}
