//! Copying the bytes of captured sockets. Enter programs note the buffer of a syscall on a
//! captured descriptor; exit programs, which know how many bytes moved, copy them out in events
//! of at most the configured payload size, each tagged with its stream offset. Bytes past the
//! per-buffer event limit are reported as moved but not captured, so userspace sees an honest gap.

use agent_common::capture::{
    CaptureStat, DIRECTION_RECEIVED, DIRECTION_SENT, EventHeader, EventKind,
    MAX_EVENTS_PER_SYSCALL, MAX_IOVECS, MAX_STEPS_PER_SYSCALL, PAYLOAD_CAPACITY, SocketFd, config,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user, generated,
        generated::bpf_get_smp_processor_id,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    maps::{
        BufferShape, CAPTURE_EVENTS, CAPTURE_SOCKETS, EVENT_BUFFER, EventBuffer, IN_FLIGHT,
        InFlight, bump, config, wakeup_flags,
    },
    sockets::header,
    tracepoint::{arg, ret},
};

const MSG_PEEK: u64 = 2;
/// Offsets in the x86-64/arm64 user ABI's `struct msghdr`.
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;

fn note(fd: u64, buffer: u64, count: u64, shape: BufferShape, direction: u8) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let key = SocketFd {
        tgid: (pid_tgid >> 32) as u32,
        fd: fd as u32,
    };
    // SAFETY: a value read out of our own map.
    let Some(state) = (unsafe { CAPTURE_SOCKETS.get(key) }).copied() else {
        return;
    };
    // A syscall made inside a TLS library call names the TLS object's socket.
    crate::tls::link(pid_tgid, key, state.connection_id);
    // The other end, on this host, copies these bytes.
    if state.passive != 0 {
        return;
    }
    let call = InFlight {
        buffer,
        count,
        fd: fd as u32,
        shape,
        direction,
        _pad: [0; 2],
    };
    if IN_FLIGHT.insert(pid_tgid, call, 0).is_err() {
        bump(CaptureStat::InFlightTableFull, 1);
    }
}

/// Notes a syscall whose arguments start (fd, buffer, length or iovec count); for msghdr
/// syscalls the third argument is flags, which the exit does not read.
fn note_arguments(ctx: &TracePointContext, shape: BufferShape, direction: u8) {
    note(arg(ctx, 0), arg(ctx, 1), arg(ctx, 2), shape, direction);
}

/// A peek leaves the bytes in the socket; the read that follows captures them.
fn peeks(flags: u64) -> bool {
    flags & MSG_PEEK != 0
}

/// read(fd, buf, count).
#[tracepoint]
pub fn moat_enter_read(ctx: TracePointContext) -> u32 {
    note_arguments(&ctx, BufferShape::Flat, DIRECTION_RECEIVED);
    0
}

/// recvfrom(fd, buf, len, flags, ...).
#[tracepoint]
pub fn moat_enter_recvfrom(ctx: TracePointContext) -> u32 {
    if !peeks(arg(&ctx, 3)) {
        note_arguments(&ctx, BufferShape::Flat, DIRECTION_RECEIVED);
    }
    0
}

/// write(fd, buf, count) and sendto(fd, buf, len, ...).
#[tracepoint]
pub fn moat_enter_write(ctx: TracePointContext) -> u32 {
    note_arguments(&ctx, BufferShape::Flat, DIRECTION_SENT);
    0
}

/// sendfile(out_fd, in_fd, offset, count).
#[tracepoint]
pub fn moat_enter_sendfile(ctx: TracePointContext) -> u32 {
    note(
        arg(&ctx, 0),
        0,
        arg(&ctx, 3),
        BufferShape::FromFile,
        DIRECTION_SENT,
    );
    0
}

#[tracepoint]
pub fn moat_enter_readv(ctx: TracePointContext) -> u32 {
    note_arguments(&ctx, BufferShape::Vector, DIRECTION_RECEIVED);
    0
}

#[tracepoint]
pub fn moat_enter_writev(ctx: TracePointContext) -> u32 {
    note_arguments(&ctx, BufferShape::Vector, DIRECTION_SENT);
    0
}

/// recvmsg(fd, msg, flags).
#[tracepoint]
pub fn moat_enter_recvmsg(ctx: TracePointContext) -> u32 {
    if !peeks(arg(&ctx, 2)) {
        note_arguments(&ctx, BufferShape::Message, DIRECTION_RECEIVED);
    }
    0
}

#[tracepoint]
pub fn moat_enter_sendmsg(ctx: TracePointContext) -> u32 {
    note_arguments(&ctx, BufferShape::Message, DIRECTION_SENT);
    0
}

pub fn read_user<T: Copy>(address: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user copes with any address: a bad one is an error, not a fault.
    unsafe { bpf_probe_read_user(address as *const T) }.ok()
}

/// The exit of every data syscall: copy what moved.
#[tracepoint]
pub fn moat_exit_data(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let Some(call) = (unsafe { IN_FLIGHT.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = IN_FLIGHT.remove(pid_tgid);
    let moved = ret(&ctx);
    if moved <= 0 || call.shape == BufferShape::Connect {
        return 0;
    }
    let moved = moved as u64;
    let key = SocketFd {
        tgid: (pid_tgid >> 32) as u32,
        fd: call.fd,
    };
    let Some(state) = CAPTURE_SOCKETS.get_ptr_mut(key) else {
        return 0;
    };
    // SAFETY: a value pointer of our own hash map; two threads moving bytes on one socket at
    // once race on these offsets as they race on the socket itself.
    let (connection_id, offset) = unsafe {
        let state = &mut *state;
        let counter = if call.direction == DIRECTION_SENT {
            &mut state.sent
        } else {
            &mut state.received
        };
        let offset = *counter;
        *counter += moved;
        (state.connection_id, offset)
    };
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(event) = EVENT_BUFFER.get_ptr_mut(cpu) else {
        return 0;
    };
    // SAFETY: this CPU's scratch entry; nothing else runs on it until this program returns.
    let event = unsafe { &mut *event };
    event.header = header(EventKind::Data, connection_id, call.fd);
    event.header.direction = call.direction;
    let (iovecs, count) = match call.shape {
        BufferShape::Flat => (0, 0),
        BufferShape::Vector => (call.buffer, call.count),
        BufferShape::Message => (
            read_user::<u64>(call.buffer + MSGHDR_IOV).unwrap_or(0),
            read_user::<u64>(call.buffer + MSGHDR_IOVLEN).unwrap_or(0),
        ),
        BufferShape::FromFile => {
            emit_uncaptured(event, offset, moved, CaptureStat::BytesFromFile);
            return 0;
        }
        BufferShape::Connect => return 0,
    };
    let source = if call.shape == BufferShape::Flat {
        Source::Flat(call.buffer)
    } else {
        Source::Vector { iovecs, count }
    };
    copy_out(event, offset, moved, source);
    0
}

/// Where the bytes of a call are in the process's memory.
pub enum Source {
    Flat(u64),
    Vector { iovecs: u64, count: u64 },
}

/// Sends `moved` stream bytes from `offset` as events of `event.header`'s kind, connection and
/// direction: bounded by [`MAX_EVENTS_PER_SYSCALL`] events, the rest reported as not captured.
pub fn copy_out(event: &mut EventBuffer, offset: u64, moved: u64, source: Source) {
    let (flat, buffer, iovecs, count) = match source {
        Source::Flat(buffer) => (1, buffer, 0, 0),
        Source::Vector { iovecs, count } => (0, 0, iovecs, count),
    };
    event.walk = Walk {
        offset,
        remaining: moved,
        flat,
        buffer,
        iovecs,
        count: count.min(u64::from(MAX_IOVECS)),
        next_iovec: 0,
        source: 0,
        left_in_segment: 0,
        filled: 0,
        events: 0,
        limit: config(config::MAX_PAYLOAD).clamp(1, PAYLOAD_CAPACITY as u64),
    };
    // bpf_loop, with the loop state in the map value rather than on the stack: the verifier
    // then checks the step without tracking every value each iteration leaves, which a plain
    // loop over iovecs and chunks (or a stack-held state) made it give up on.
    // SAFETY: the callback has the signature bpf_loop requires; it takes no context.
    unsafe {
        generated::bpf_loop(
            MAX_STEPS_PER_SYSCALL,
            copy_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    flush(event);
    let (offset, remaining) = (event.walk.offset, event.walk.remaining);
    if remaining > 0 {
        emit_uncaptured(event, offset, remaining, CaptureStat::BytesNotCaptured);
    }
}

/// A syscall's bytes being sent to userspace: where they are (one flat buffer, or `count` iovec
/// elements), how far copying has got, and the event being filled. Small iovec elements share
/// an event, so a sendmsg of many small pieces costs few events.
#[repr(C)]
pub struct Walk {
    /// Stream offset of the next byte to copy.
    pub offset: u64,
    pub remaining: u64,
    /// 1 for a flat buffer at `buffer`, 0 for iovecs.
    pub flat: u64,
    pub buffer: u64,
    pub iovecs: u64,
    pub count: u64,
    pub next_iovec: u64,
    pub source: u64,
    pub left_in_segment: u64,
    /// Payload bytes in the event being filled; they end just before `offset`.
    pub filled: u64,
    pub events: u64,
    pub limit: u64,
}

/// Copies the next piece of the current segment into the event being filled, moving to the next
/// segment when one ends and sending the event when it is full. Returns 1 to stop the loop.
extern "C" fn copy_step(_index: u32, _context: *mut core::ffi::c_void) -> i64 {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(event) = EVENT_BUFFER.get_ptr_mut(cpu) else {
        return 1;
    };
    // SAFETY: this CPU's scratch entry; nothing else runs on it until this program returns.
    let event = unsafe { &mut *event };
    let walk = &mut event.walk;
    if walk.remaining == 0 || walk.events >= u64::from(MAX_EVENTS_PER_SYSCALL) {
        return 1;
    }
    if walk.left_in_segment == 0 {
        let segment = if walk.flat == 1 {
            (walk.next_iovec == 0).then_some((walk.buffer, walk.remaining))
        } else if walk.next_iovec < walk.count {
            let element = walk.iovecs + walk.next_iovec * 16;
            read_user::<u64>(element).zip(read_user::<u64>(element + 8))
        } else {
            None
        };
        let Some((base, length)) = segment else {
            return 1;
        };
        walk.next_iovec += 1;
        walk.source = base;
        walk.left_in_segment = length.min(walk.remaining);
    }
    let piece = walk
        .left_in_segment
        .min(walk.limit.saturating_sub(walk.filled));
    let (filled, source) = (walk.filled, walk.source);
    if copy_piece(event, filled, source, piece) {
        event.walk.filled += piece;
    } else {
        // Not readable, but moved: what is filled goes first, then the piece as a gap.
        flush(event);
        let offset = event.walk.offset;
        emit_uncaptured(event, offset, piece, CaptureStat::BytesUnreadable);
    }
    let walk = &mut event.walk;
    walk.offset += piece;
    walk.remaining -= piece;
    walk.source += piece;
    walk.left_in_segment -= piece;
    if walk.filled >= walk.limit || walk.remaining == 0 {
        flush(event);
    }
    0
}

/// Copies `length` bytes from user memory at `source` to the payload at `at`.
#[inline(never)]
fn copy_piece(event: &mut EventBuffer, at: u64, source: u64, length: u64) -> bool {
    // Masks that show the verifier both stay inside the payload, which is twice the capacity so
    // that any start below the capacity plus any length up to it fits.
    let at = (at as usize) & (PAYLOAD_CAPACITY - 1);
    let length = (length as usize) & (PAYLOAD_CAPACITY * 2 - 1);
    if length > PAYLOAD_CAPACITY {
        return false;
    }
    // SAFETY: destination and length stay inside this CPU's scratch payload (see above).
    unsafe {
        generated::bpf_probe_read_user(
            event.payload.as_mut_ptr().add(at).cast(),
            length as u32,
            source as *const core::ffi::c_void,
        ) == 0
    }
}

/// Sends the event being filled, if it holds anything.
#[inline(never)]
fn flush(event: &mut EventBuffer) {
    let filled = (event.walk.filled as usize) & (PAYLOAD_CAPACITY * 2 - 1);
    if filled == 0 || filled > PAYLOAD_CAPACITY {
        return;
    }
    event.header.offset = event.walk.offset - event.walk.filled;
    event.header.length = filled as u32;
    event.header.captured = filled as u32;
    let size = size_of::<EventHeader>() + filled;
    // SAFETY: the header is followed by the payload in the map value (EventBuffer is
    // #[repr(C)]), so `size` bytes from the header are inside it.
    let bytes =
        unsafe { core::slice::from_raw_parts((&raw const event.header).cast::<u8>(), size) };
    if CAPTURE_EVENTS
        .output::<[u8]>(bytes, wakeup_flags())
        .is_err()
    {
        bump(CaptureStat::EventsLost, 1);
        bump(CaptureStat::BytesLost, filled as u64);
    }
    event.walk.events += 1;
    event.walk.filled = 0;
}

/// Bytes moved but not copied (past what this syscall's events may carry, or sent from a file):
/// one event that says how many, so userspace sees a gap of the right length.
fn emit_uncaptured(event: &mut EventBuffer, offset: u64, length: u64, reason: CaptureStat) {
    bump(reason, length);
    event.header.offset = offset;
    event.header.length = length.min(u64::from(u32::MAX)) as u32;
    event.header.captured = 0;
    if CAPTURE_EVENTS
        .output::<EventHeader>(&event.header, wakeup_flags())
        .is_err()
    {
        bump(CaptureStat::EventsLost, 1);
    }
}
