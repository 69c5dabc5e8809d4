//! Capture events from ring-buffer bytes. The bytes come from our own kernel programs but are
//! still not trusted: anything that does not decode is counted, never a panic.

use std::net::{IpAddr, SocketAddr};

use agent_common::{
    address,
    capture::{DIRECTION_SENT, EventHeader, EventKind, ROLE_CLIENT, SocketTuple},
};

/// Who is at each end of a connection, from the capturing process's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Whether this process opened the connection (connect) or accepted it.
    pub is_client: bool,
}

impl Endpoints {
    pub fn from_tuple(tuple: &SocketTuple) -> Self {
        let canonical = |family, bytes: &[u8; 16], port| {
            // A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d; records name them as IPv4
            // so both ends of one connection agree.
            let ip = match address::decode(family, bytes) {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            SocketAddr::new(ip, port)
        };
        Self {
            local: canonical(tuple.family, &tuple.local_addr, tuple.local_port),
            remote: canonical(tuple.family, &tuple.remote_addr, tuple.remote_port),
            is_client: tuple.role == ROLE_CLIENT,
        }
    }

    /// (client, server).
    pub fn client_server(&self) -> (SocketAddr, SocketAddr) {
        if self.is_client {
            (self.local, self.remote)
        } else {
            (self.remote, self.local)
        }
    }
}

/// The process behind an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub tgid: u32,
    pub pid: u32,
    pub comm: String,
    pub cgroup_id: u64,
}

/// A connection capture starts tracking.
#[derive(Debug, Clone)]
pub struct Opened {
    pub connection_id: u64,
    pub fd: u32,
    pub task: Task,
    pub endpoints: Endpoints,
    /// The other end is captured on this host and carries the bytes; this end names its process.
    pub passive: bool,
    pub time_ns: u64,
}

/// Bytes that crossed a connection.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    pub connection_id: u64,
    /// Sent by the capturing process (else received).
    pub sent: bool,
    /// Stream offset of the first byte.
    pub offset: u64,
    /// Stream bytes this event covers; `payload` holds the first of them (all, unless the kernel
    /// could not capture them).
    pub length: u64,
    pub payload: &'a [u8],
    pub time_ns: u64,
    /// Plaintext from a TLS library call, a stream of its own (else the socket's bytes).
    pub tls: bool,
}

#[derive(Debug)]
pub enum Event<'a> {
    Open(Opened),
    Data(Chunk<'a>),
    /// The process closed its descriptor.
    Close {
        connection_id: u64,
        tgid: u32,
        fd: u32,
        time_ns: u64,
    },
    /// The TCP connection ended.
    Closed {
        connection_id: u64,
        time_ns: u64,
    },
    /// close_range(first..=last) by process `tgid`.
    CloseRange {
        tgid: u32,
        first: u32,
        last: u32,
    },
}

fn read<T: Copy>(bytes: &[u8], at: usize) -> Option<T> {
    let end = at.checked_add(size_of::<T>())?;
    let slice = bytes.get(at..end)?;
    // SAFETY: T is one of the boundary's #[repr(C)] plain-integer types, valid for any bytes;
    // the slice is exactly its size, and read_unaligned copes with any alignment.
    Some(unsafe { slice.as_ptr().cast::<T>().read_unaligned() })
}

fn comm(bytes: &[u8; 16]) -> String {
    let end = bytes
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The event in `bytes`, or None if they are not a well-formed event.
pub fn decode(bytes: &[u8]) -> Option<Event<'_>> {
    let header: EventHeader = read(bytes, 0)?;
    let body = bytes.get(size_of::<EventHeader>()..)?;
    Some(match EventKind::from_u8(header.kind)? {
        EventKind::Open => {
            let tuple = read::<SocketTuple>(body, 0)?;
            Event::Open(Opened {
                connection_id: header.connection_id,
                fd: header.fd,
                task: Task {
                    tgid: header.tgid,
                    pid: header.pid,
                    comm: comm(&header.comm),
                    cgroup_id: header.cgroup_id,
                },
                endpoints: Endpoints::from_tuple(&tuple),
                passive: tuple.passive == 1,
                time_ns: header.time_ns,
            })
        }
        kind @ (EventKind::Data | EventKind::TlsData) => Event::Data(Chunk {
            connection_id: header.connection_id,
            sent: header.direction == DIRECTION_SENT,
            offset: header.offset,
            length: u64::from(header.length),
            payload: body.get(..header.captured as usize)?,
            time_ns: header.time_ns,
            tls: kind == EventKind::TlsData,
        }),
        EventKind::Close => Event::Close {
            connection_id: header.connection_id,
            tgid: header.tgid,
            fd: header.fd,
            time_ns: header.time_ns,
        },
        EventKind::Closed => Event::Closed {
            connection_id: header.connection_id,
            time_ns: header.time_ns,
        },
        EventKind::CloseRange => Event::CloseRange {
            tgid: header.tgid,
            first: header.fd,
            last: header.length,
        },
    })
}
