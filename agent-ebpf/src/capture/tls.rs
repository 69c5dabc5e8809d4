//! Plaintext of TLS connections, read where the TLS library hands it over: uprobes on OpenSSL's
//! `SSL_write`/`SSL_read` (and their `_ex` forms) note the call's `SSL *` and buffer; the
//! uretprobe, which knows how many bytes moved, copies them out as [`EventKind::TlsData`] events
//! of the connection, with the same bounded copy as the syscall programs.
//!
//! Which connection an `SSL *` belongs to is learned from the syscalls its calls make: a read or
//! write on a captured socket while the thread is inside a TLS library call ties that object to
//! the socket ([`link`]); `SSL_do_handshake` is probed for that alone, so a server's first
//! `SSL_read` is tied even when its bytes were already buffered by the handshake. No socket
//! known means the plaintext is counted ([`CaptureStat::TlsBytesUnlinked`]) and not copied.
//!
//! Cost per TLS call: two hash updates and the copy; per syscall on a captured socket: one
//! hash lookup (the thread is not inside a TLS call) or two. Nothing is parsed here.

use agent_common::capture::{
    CaptureStat, DIRECTION_RECEIVED, DIRECTION_SENT, EventKind, SocketFd, TLS_FUNCTION_HANDSHAKE,
    TLS_FUNCTION_READ, TLS_FUNCTION_READ_EX, TLS_FUNCTION_WRITE, TLS_FUNCTION_WRITE_EX, TlsCall,
    TlsSession, TlsSessionKey, config,
};
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_get_smp_processor_id},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};

use crate::{
    data::{Source, copy_out, read_user},
    maps::{CAPTURE_TLS_IN_FLIGHT, CAPTURE_TLS_SESSIONS, EVENT_BUFFER, bump, config},
    sockets::header,
};

/// The current thread, inside a TLS library call, made a syscall on captured socket `socket`:
/// the call's TLS object moves its bytes on that connection.
pub fn link(pid_tgid: u64, socket: SocketFd, connection_id: u64) {
    // SAFETY: a value copied out of our own map.
    let Some(call) = (unsafe { CAPTURE_TLS_IN_FLIGHT.get(pid_tgid) }).copied() else {
        return;
    };
    let key = TlsSessionKey {
        tgid: socket.tgid,
        _pad: 0,
        session: call.session,
    };
    // SAFETY: as above.
    if let Some(known) = unsafe { CAPTURE_TLS_SESSIONS.get(key) }
        && known.connection_id == connection_id
    {
        return;
    }
    // A new object, or one now used on another connection: its plaintext stream starts here.
    let session = TlsSession {
        connection_id,
        sent: 0,
        received: 0,
        fd: socket.fd,
        _pad: 0,
    };
    let _ = CAPTURE_TLS_SESSIONS.insert(key, session, 0);
}

fn enter(ctx: &ProbeContext, function: u8) {
    if u64::from(ctx.tgid()) == config(config::AGENT_TGID) {
        return;
    }
    let count_at = if function == TLS_FUNCTION_WRITE_EX || function == TLS_FUNCTION_READ_EX {
        ctx.arg::<u64>(3).unwrap_or(0)
    } else {
        0
    };
    let call = TlsCall {
        session: ctx.arg::<u64>(0).unwrap_or(0),
        buffer: ctx.arg::<u64>(1).unwrap_or(0),
        count_at,
        function,
        _pad: [0; 7],
    };
    if CAPTURE_TLS_IN_FLIGHT
        .insert(bpf_get_current_pid_tgid(), call, 0)
        .is_err()
    {
        bump(CaptureStat::TlsInFlightTableFull, 1);
    }
}

/// `int SSL_write(SSL *ssl, const void *buf, int num)`.
#[uprobe]
pub fn moat_ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_FUNCTION_WRITE);
    0
}

/// `int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written)`.
#[uprobe]
pub fn moat_ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_FUNCTION_WRITE_EX);
    0
}

/// `int SSL_read(SSL *ssl, void *buf, int num)`.
#[uprobe]
pub fn moat_ssl_read(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_FUNCTION_READ);
    0
}

/// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`.
#[uprobe]
pub fn moat_ssl_read_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_FUNCTION_READ_EX);
    0
}

/// `int SSL_do_handshake(SSL *s)`: only its syscalls matter (see [`link`]).
#[uprobe]
pub fn moat_ssl_handshake(ctx: ProbeContext) -> u32 {
    enter(&ctx, TLS_FUNCTION_HANDSHAKE);
    0
}

/// The return of every probed TLS function: copy the plaintext it moved.
#[uretprobe]
pub fn moat_ssl_return(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let Some(call) = (unsafe { CAPTURE_TLS_IN_FLIGHT.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = CAPTURE_TLS_IN_FLIGHT.remove(pid_tgid);
    // The functions return int; the upper half of the register is not part of it.
    let result = ctx.ret::<u64>() as u32 as i32;
    let moved = match call.function {
        TLS_FUNCTION_WRITE | TLS_FUNCTION_READ if result > 0 => result as u64,
        TLS_FUNCTION_WRITE_EX | TLS_FUNCTION_READ_EX if result == 1 => {
            read_user::<u64>(call.count_at).unwrap_or(0)
        }
        _ => return 0,
    };
    if moved == 0 {
        return 0;
    }
    let direction = if call.function == TLS_FUNCTION_WRITE || call.function == TLS_FUNCTION_WRITE_EX
    {
        DIRECTION_SENT
    } else {
        DIRECTION_RECEIVED
    };
    let key = TlsSessionKey {
        tgid: (pid_tgid >> 32) as u32,
        _pad: 0,
        session: call.session,
    };
    let Some(session) = CAPTURE_TLS_SESSIONS.get_ptr_mut(key) else {
        bump(CaptureStat::TlsBytesUnlinked, moved);
        return 0;
    };
    // SAFETY: a value pointer of our own map; two threads using one TLS object at once race on
    // these offsets as they would on the object itself (OpenSSL forbids it).
    let (connection_id, fd, offset) = unsafe {
        let session = &mut *session;
        let counter = if direction == DIRECTION_SENT {
            &mut session.sent
        } else {
            &mut session.received
        };
        let offset = *counter;
        *counter += moved;
        (session.connection_id, session.fd, offset)
    };
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(event) = EVENT_BUFFER.get_ptr_mut(cpu) else {
        return 0;
    };
    // SAFETY: this CPU's scratch entry; nothing else runs on it until this program returns.
    let event = unsafe { &mut *event };
    event.header = header(EventKind::TlsData, connection_id, fd);
    event.header.direction = direction;
    copy_out(event, offset, moved, Source::Flat(call.buffer));
    0
}
