//! Socket capture: what the syscall programs record about TCP connections and the bytes that
//! cross them.
//!
//! The kernel side only copies bytes and counts; userspace reassembles and parses. Every event in
//! the ring buffer starts with an [`EventHeader`]; what follows depends on [`EventHeader::kind`]:
//! payload bytes for [`EventKind::Data`], a [`SocketTuple`] for [`EventKind::Open`], nothing
//! otherwise.

pub mod map_names {
    /// Ring buffer of events.
    pub const EVENTS: &str = "CAPTURE_EVENTS";
    /// Hash of [`super::SocketFd`] to [`super::SocketState`]: the sockets being captured.
    pub const SOCKETS: &str = "CAPTURE_SOCKETS";
    /// Array of `u64`, indexed by [`super::config`] slots.
    pub const CONFIG: &str = "CAPTURE_CONFIG";
    /// Per-CPU array of `u64`, indexed by [`super::CaptureStat`].
    pub const STATS: &str = "CAPTURE_STATS";
    /// Filters: hash sets of ports (`u16`), cgroup ids (`u64`) and process ids (`u32`).
    pub const PORT_FILTER: &str = "CAPTURE_PORT_FILTER";
    pub const CGROUP_FILTER: &str = "CAPTURE_CGROUP_FILTER";
    pub const PROCESS_FILTER: &str = "CAPTURE_PROCESS_FILTER";
    /// Scratch space for the event being assembled, one entry per possible CPU.
    pub const EVENT_BUFFER: &str = "EVENT_BUFFER";
    /// One-element array holding the [`super::KernelLayout`].
    pub const KERNEL_LAYOUT: &str = "CAPTURE_KERNEL_LAYOUT";
    /// LRU hash of [`super::EndKey`] to [`super::EndRef`]: captured ends by address, to find
    /// the other end of a connection on this host.
    pub const LOCAL_ENDS: &str = "CAPTURE_LOCAL_ENDS";
    /// Hash of thread (pid_tgid) to the TLS library call it is inside (see [`super::TlsCall`]).
    pub const TLS_IN_FLIGHT: &str = "CAPTURE_TLS_IN_FLIGHT";
    /// LRU hash of [`super::TlsSessionKey`] to [`super::TlsSession`]: which connection each
    /// TLS object (OpenSSL's `SSL *`) of a process writes to and reads from.
    pub const TLS_SESSIONS: &str = "CAPTURE_TLS_SESSIONS";
}

/// Program names in the capture object.
pub mod program_names {
    pub const SOCK_STATE: &str = "moat_sock_state";
    /// (program, tracepoint) pairs for the syscalls.
    pub const SYSCALLS: &[(&str, &str)] = &[
        ("moat_enter_connect", "sys_enter_connect"),
        ("moat_exit_connect", "sys_exit_connect"),
        ("moat_exit_accept", "sys_exit_accept"),
        ("moat_exit_accept", "sys_exit_accept4"),
        ("moat_enter_close", "sys_enter_close"),
        ("moat_enter_close_range", "sys_enter_close_range"),
        ("moat_enter_dup2", "sys_enter_dup2"),
        ("moat_enter_dup3", "sys_enter_dup3"),
        ("moat_enter_read", "sys_enter_read"),
        ("moat_enter_recvfrom", "sys_enter_recvfrom"),
        ("moat_enter_write", "sys_enter_write"),
        ("moat_enter_write", "sys_enter_sendto"),
        ("moat_enter_readv", "sys_enter_readv"),
        ("moat_enter_writev", "sys_enter_writev"),
        ("moat_enter_recvmsg", "sys_enter_recvmsg"),
        ("moat_enter_sendmsg", "sys_enter_sendmsg"),
        ("moat_enter_sendfile", "sys_enter_sendfile64"),
        ("moat_exit_data", "sys_exit_read"),
        ("moat_exit_data", "sys_exit_recvfrom"),
        ("moat_exit_data", "sys_exit_write"),
        ("moat_exit_data", "sys_exit_sendto"),
        ("moat_exit_data", "sys_exit_readv"),
        ("moat_exit_data", "sys_exit_writev"),
        ("moat_exit_data", "sys_exit_recvmsg"),
        ("moat_exit_data", "sys_exit_sendmsg"),
        ("moat_exit_data", "sys_exit_sendfile64"),
    ];
    /// (uprobe program, function) pairs attached to each OpenSSL library (libssl.so.3) found.
    /// The handshake is probed only to learn the socket of an `SSL *` from the syscalls it makes.
    pub const TLS_ENTRIES: &[(&str, &str)] = &[
        ("moat_ssl_write", "SSL_write"),
        ("moat_ssl_write_ex", "SSL_write_ex"),
        ("moat_ssl_read", "SSL_read"),
        ("moat_ssl_read_ex", "SSL_read_ex"),
        ("moat_ssl_handshake", "SSL_do_handshake"),
    ];
    /// The uretprobe attached to the same functions: copies what the call moved.
    pub const TLS_RETURN: &str = "moat_ssl_return";
}

/// Payload bytes one event can carry at most; the configured limit ([`config::MAX_PAYLOAD`]) is
/// at most this. A syscall that moves more is split into several events.
pub const PAYLOAD_CAPACITY: usize = 32 * 1024;
/// Default payload bytes per event.
pub const DEFAULT_MAX_PAYLOAD: u32 = 16 * 1024;
/// Events one syscall's bytes fill at most (small iovec elements share one); bytes past them are
/// reported as moved but not captured (a truncation the parser sees as a gap). With the default
/// payload size, a read or write of up to 256 KiB is captured whole.
pub const MAX_EVENTS_PER_SYSCALL: u32 = 16;
/// iovec elements of one readv/writev/recvmsg/sendmsg that are looked at (the kernel's own
/// limit, UIO_MAXIOV).
pub const MAX_IOVECS: u32 = 1024;
/// Copy steps per syscall (one per iovec element, plus one per event filled).
pub const MAX_STEPS_PER_SYSCALL: u32 = MAX_IOVECS + MAX_EVENTS_PER_SYSCALL;
pub const SOCKETS_MAX_ENTRIES: u32 = 65_536;
/// Syscalls in flight at once (between their enter and exit) on captured sockets.
pub const IN_FLIGHT_MAX_ENTRIES: u32 = 16_384;
pub const DEFAULT_EVENTS_BYTES: u32 = 16 << 20;
/// Low bits of a kernel-made connection id that hold the CPU it was made on.
pub const CONNECTION_ID_CPU_BITS: u32 = 12;
/// Ids of connections found open at start-up: the kernel's counter never gets this far.
pub const EXISTING_CONNECTION_BASE: u64 = 1 << 63;

/// Slots of the config array.
pub mod config {
    /// Payload bytes per event, at most [`super::PAYLOAD_CAPACITY`].
    pub const MAX_PAYLOAD: u32 = 0;
    /// Bit set of `FILTER_*`: which filters are on.
    pub const FILTERS: u32 = 1;
    /// The agent's own process id, never captured (its own exports would loop back).
    pub const AGENT_TGID: u32 = 2;
    pub const SLOTS: u32 = 3;

    pub const FILTER_PORTS: u64 = 1;
    pub const FILTER_CGROUPS: u64 = 2;
    pub const FILTER_PROCESSES: u64 = 4;
}

/// Counters, per CPU. Numbers are part of the boundary: never reuse one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureStat {
    /// Events the ring buffer had no room for.
    EventsLost = 0,
    /// Payload bytes in those events.
    BytesLost = 1,
    /// Connections not captured because the socket table was full.
    SocketTableFull = 2,
    /// Syscalls on captured sockets whose bytes were not captured because the in-flight table
    /// was full.
    InFlightTableFull = 3,
    /// Payload bytes moved but not captured (past the per-syscall event limit or iovec limit).
    BytesNotCaptured = 4,
    /// Payload bytes the kernel could not copy from the process (a fault).
    BytesUnreadable = 5,
    /// Bytes sendfile moved from a file to a captured socket: they never pass through the
    /// process, so there is nothing to copy.
    BytesFromFile = 6,
    /// Plaintext bytes a TLS library call moved on a TLS object whose socket is not known (no
    /// syscall on a captured socket was seen inside its calls yet, or the socket is filtered
    /// out): not copied.
    TlsBytesUnlinked = 7,
    /// TLS library calls not followed because the TLS in-flight table was full.
    TlsInFlightTableFull = 8,
}

impl CaptureStat {
    pub const COUNT: u32 = 9;
    pub const ALL: [Self; Self::COUNT as usize] = [
        Self::EventsLost,
        Self::BytesLost,
        Self::SocketTableFull,
        Self::InFlightTableFull,
        Self::BytesNotCaptured,
        Self::BytesUnreadable,
        Self::BytesFromFile,
        Self::TlsBytesUnlinked,
        Self::TlsInFlightTableFull,
    ];
}

/// A process's file descriptor: how syscalls name a socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketFd {
    pub tgid: u32,
    pub fd: u32,
}
const _: () = assert!(core::mem::size_of::<SocketFd>() == 8);

/// What the kernel keeps per captured socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketState {
    /// Names the connection for as long as the agent runs, also after its descriptor number is
    /// reused: a counter the kernel programs increment per captured connection (connections the
    /// agent finds already open get ids from [`EXISTING_CONNECTION_BASE`] up).
    pub connection_id: u64,
    /// Bytes sent and received so far: the stream offset of the next byte each way.
    pub sent: u64,
    pub received: u64,
    /// 1: the other end of this connection is a captured socket on this host, whose bytes are
    /// the same; this end's bytes are not copied (see [`SocketTuple::passive`]).
    pub passive: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SocketState>() == 32);

/// A connection as one end sees it: the key under which the kernel finds the other end of a
/// connection whose both ends are on this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndKey {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<EndKey>() == 40);

/// Which descriptor holds a captured end, and its connection id (to tell a live end from a
/// reused descriptor).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndRef {
    pub socket: SocketFd,
    pub connection_id: u64,
}
const _: () = assert!(core::mem::size_of::<EndRef>() == 16);

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A captured connection started (connect or accept returned); a [`SocketTuple`] follows.
    Open = 1,
    /// Bytes crossed the socket; `captured` payload bytes follow.
    Data = 2,
    /// The process closed its descriptor.
    Close = 3,
    /// The TCP connection reached CLOSE (the socket is gone even if no close was seen, e.g. the
    /// process exited).
    Closed = 4,
    /// close_range(first = fd, last = length as fd): userspace drops those descriptors.
    CloseRange = 5,
    /// Plaintext a TLS library call moved on the connection, before encryption or after
    /// decryption: a stream of its own, with its own offsets, next to the ciphertext `Data`
    /// stream of the same connection; `captured` payload bytes follow.
    TlsData = 6,
}

impl EventKind {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Open,
            2 => Self::Data,
            3 => Self::Close,
            4 => Self::Closed,
            5 => Self::CloseRange,
            6 => Self::TlsData,
            _ => return None,
        })
    }
}

/// [`EventHeader::direction`].
pub const DIRECTION_SENT: u8 = 1;
pub const DIRECTION_RECEIVED: u8 = 2;

/// [`SocketTuple::role`]: which end of the connection this process is.
pub const ROLE_CLIENT: u8 = 1;
pub const ROLE_SERVER: u8 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// Monotonic time (bpf_ktime_get_ns) when the syscall returned.
    pub time_ns: u64,
    pub connection_id: u64,
    pub cgroup_id: u64,
    /// Stream offset of the first byte this event covers, in its direction.
    pub offset: u64,
    pub tgid: u32,
    /// Thread id.
    pub pid: u32,
    pub fd: u32,
    /// Bytes of the stream this event covers (what the syscall moved, or this event's share of
    /// it); the first `captured` of them follow the header.
    pub length: u32,
    pub captured: u32,
    pub kind: u8,
    pub direction: u8,
    pub _pad: [u8; 2],
    pub comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 72);

/// A connection's addresses, from this process's side. Addresses are laid out as everywhere on
/// the boundary (see [`crate::address`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketTuple {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u8,
    pub role: u8,
    /// 1: the other end is a captured socket on this host that copies the connection's bytes;
    /// this end only names its process (a call is copied and parsed once, not twice).
    pub passive: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<SocketTuple>() == 40);

impl SocketTuple {
    pub fn end_key(&self) -> EndKey {
        EndKey {
            local_addr: self.local_addr,
            remote_addr: self.remote_addr,
            local_port: self.local_port,
            remote_port: self.remote_port,
            family: self.family,
            _pad: [0; 3],
        }
    }

    /// The key of the other end of the same connection.
    pub fn peer_key(&self) -> EndKey {
        EndKey {
            local_addr: self.remote_addr,
            remote_addr: self.local_addr,
            local_port: self.remote_port,
            remote_port: self.local_port,
            family: self.family,
            _pad: [0; 3],
        }
    }
}

/// Which TLS library function a thread is inside ([`TlsCall::function`]).
pub const TLS_FUNCTION_WRITE: u8 = 1;
/// `SSL_write_ex`: success is 1, the byte count is written through the fourth argument.
pub const TLS_FUNCTION_WRITE_EX: u8 = 2;
pub const TLS_FUNCTION_READ: u8 = 3;
pub const TLS_FUNCTION_READ_EX: u8 = 4;
/// `SSL_do_handshake`: moves no plaintext; its syscalls tie the TLS object to its socket.
pub const TLS_FUNCTION_HANDSHAKE: u8 = 5;
/// TLS library calls in flight at once (one per thread inside a call).
pub const TLS_IN_FLIGHT_MAX_ENTRIES: u32 = 16_384;
/// TLS objects whose socket is remembered; least recently used forgotten first.
pub const TLS_SESSIONS_MAX_ENTRIES: u32 = 65_536;

/// A thread inside a TLS library call, between its uprobe and its uretprobe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsCall {
    /// The `SSL *`.
    pub session: u64,
    pub buffer: u64,
    /// Where `SSL_read_ex`/`SSL_write_ex` write the byte count (0 for the others).
    pub count_at: u64,
    pub function: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<TlsCall>() == 32);

/// A TLS object of a process: `SSL *` values are addresses, unique only within their process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsSessionKey {
    pub tgid: u32,
    pub _pad: u32,
    pub session: u64,
}
const _: () = assert!(core::mem::size_of::<TlsSessionKey>() == 16);

/// The connection a TLS object was last seen moving bytes on, learned from the syscalls its
/// library calls make, and the plaintext stream's offsets (separate from the ciphertext's).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsSession {
    pub connection_id: u64,
    pub sent: u64,
    pub received: u64,
    pub fd: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<TlsSession>() == 32);

/// Byte offsets of the kernel structure fields the capture programs read, from the running
/// kernel's BTF: Rust eBPF has no CO-RE relocations, so userspace finds the layout and hands it
/// over at load time. The programs follow task -> files -> fdtable -> file -> socket -> sock to
/// learn what a descriptor returned by connect/accept is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub sock_protocol: u32,
    /// `struct sock_common`, which starts `struct sock`.
    pub daddr: u32,
    pub rcv_saddr: u32,
    pub dport: u32,
    pub num: u32,
    pub family: u32,
    pub v6_daddr: u32,
    pub v6_rcv_saddr: u32,
}
const _: () = assert!(core::mem::size_of::<KernelLayout>() == 56);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are #[repr(C)] plain integers and byte arrays with explicit padding: every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for super::SocketFd {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SocketState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TlsSessionKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TlsSession {}
}
