//! The capture object's maps. None is pinned: capture state is rebuilt by each agent (it reads
//! the connections that exist when it starts), unlike enforcement, which must outlive the agent.

use crate::data::Walk;
use agent_common::capture::{
    CaptureStat, DEFAULT_EVENTS_BYTES, EndKey, EndRef, EventHeader, IN_FLIGHT_MAX_ENTRIES,
    KernelLayout, PAYLOAD_CAPACITY, SOCKETS_MAX_ENTRIES, SocketFd, SocketState,
    TLS_IN_FLIGHT_MAX_ENTRIES, TLS_SESSIONS_MAX_ENTRIES, TlsCall, TlsSession, TlsSessionKey,
    config,
};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};

/// Ring buffer size; the agent sets it at load time (`--capture-ring-bytes`).
#[map]
pub static CAPTURE_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_EVENTS_BYTES, 0);

#[map]
pub static CAPTURE_SOCKETS: HashMap<SocketFd, SocketState> =
    HashMap::with_max_entries(SOCKETS_MAX_ENTRIES, 0);

#[map]
pub static CAPTURE_CONFIG: Array<u64> = Array::with_max_entries(config::SLOTS, 0);

#[map]
pub static CAPTURE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CaptureStat::COUNT, 0);

#[map]
pub static CAPTURE_PORT_FILTER: HashMap<u16, u8> = HashMap::with_max_entries(1024, 0);
#[map]
pub static CAPTURE_CGROUP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);
#[map]
pub static CAPTURE_PROCESS_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

#[map]
pub static CAPTURE_KERNEL_LAYOUT: Array<KernelLayout> = Array::with_max_entries(1, 0);

#[map]
pub static CAPTURE_CONNECTION_IDS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static LOCAL_ENDS: LruHashMap<EndKey, EndRef> =
    LruHashMap::with_max_entries(SOCKETS_MAX_ENTRIES, 0);

/// Socket address to connection id, for the state tracepoint, which names sockets by address.
#[map]
pub static SOCKET_CONNECTIONS: LruHashMap<u64, u64> =
    LruHashMap::with_max_entries(SOCKETS_MAX_ENTRIES, 0);

/// The TLS library call each thread is inside, between its uprobe and its uretprobe.
#[map]
pub static CAPTURE_TLS_IN_FLIGHT: HashMap<u64, TlsCall> =
    HashMap::with_max_entries(TLS_IN_FLIGHT_MAX_ENTRIES, 0);

/// Which connection each TLS object moves bytes on. An LRU map: a TLS object forgotten early
/// only means its next bytes wait for its next syscall to be tied to the socket again.
#[map]
pub static CAPTURE_TLS_SESSIONS: LruHashMap<TlsSessionKey, TlsSession> =
    LruHashMap::with_max_entries(TLS_SESSIONS_MAX_ENTRIES, 0);

/// How a syscall in flight passes its buffer.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BufferShape {
    /// One buffer (read, write, recvfrom, sendto).
    Flat = 1,
    /// An iovec array (readv, writev).
    Vector = 2,
    /// A msghdr whose msg_iov is the iovec array (recvmsg, sendmsg).
    Message = 3,
    /// connect: no buffer; the descriptor is what matters.
    Connect = 4,
    /// sendfile: bytes go from a file to the socket without passing through the process, so
    /// there is nothing to copy; they are reported as moved but not captured, which keeps the
    /// stream offsets true.
    FromFile = 5,
}

/// A syscall on a captured socket, between its enter and its exit, keyed by thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InFlight {
    pub buffer: u64,
    /// Buffer length (Flat) or iovec count (Vector; Message reads it from the msghdr).
    pub count: u64,
    pub fd: u32,
    pub shape: BufferShape,
    pub direction: u8,
    pub _pad: [u8; 2],
}

#[map]
pub static IN_FLIGHT: HashMap<u64, InFlight> = HashMap::with_max_entries(IN_FLIGHT_MAX_ENTRIES, 0);

/// The event being assembled: too big for the 512-byte stack, and for a per-CPU map value
/// (32 KiB at most), so an ordinary array with one entry per CPU, indexed by CPU id. The agent
/// sizes it to the possible CPUs at load time.
#[repr(C)]
pub struct EventBuffer {
    /// The copy loop's state: in the map value rather than on the stack, so the verifier checks
    /// the loop's step without tracking every value each iteration leaves.
    pub walk: Walk,
    /// The header and the payload must stay adjacent: an event is sent as one span of both.
    pub header: EventHeader,
    /// Twice the capacity, so the verifier can see that a piece copied at any fill level below
    /// the capacity stays inside; events carry at most the capacity.
    pub payload: [u8; 2 * PAYLOAD_CAPACITY],
}

#[map]
pub static EVENT_BUFFER: Array<EventBuffer> = Array::with_max_entries(1, 0);

pub fn bump(stat: CaptureStat, by: u64) {
    if let Some(counter) = CAPTURE_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, so no other program touches it concurrently.
        unsafe { *counter += by };
    }
}

pub fn config(slot: u32) -> u64 {
    CAPTURE_CONFIG.get(slot).copied().unwrap_or(0)
}

/// Ring-buffer flags for an event: wake the agent only when the ring is filling up. The agent
/// also drains the ring on a short timer, so waking it for every event would only cost a context
/// switch per event under load; waking it early when an eighth is full keeps it ahead of
/// overflow.
pub fn wakeup_flags() -> u64 {
    let available = CAPTURE_EVENTS.query(u64::from(BPF_RB_AVAIL_DATA));
    let size = CAPTURE_EVENTS.query(u64::from(BPF_RB_RING_SIZE));
    if available > size / 8 {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}
