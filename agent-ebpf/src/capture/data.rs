//! Copying the bytes of captured sockets. Enter programs note the buffer of a syscall on a
//! captured descriptor; exit programs, which know how many bytes moved, copy them out in events
//! of at most the configured payload size, each tagged with its stream offset. Bytes past the
//! per-buffer event limit are reported as moved but not captured, so userspace sees an honest gap.

use agent_common::capture::{
    CaptureStat, DIRECTION_RECEIVED, DIRECTION_SENT, EventHeader, EventKind,
    MAX_EVENTS_PER_SYSCALL, MAX_IOVECS, PAYLOAD_CAPACITY, SocketFd, config,
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
        InFlight, bump, config,
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
    // SAFETY: membership test only.
    if unsafe { CAPTURE_SOCKETS.get(&key) }.is_none() {
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
    if IN_FLIGHT.insert(&pid_tgid, &call, 0).is_err() {
        bump(CaptureStat::InFlightTableFull, 1);
    }
}

/// read(fd, buf, count) and recvfrom(fd, buf, len, flags, ...).
#[tracepoint]
pub fn moat_enter_read(ctx: TracePointContext) -> u32 {
    note(
        arg(&ctx, 0),
        arg(&ctx, 1),
        arg(&ctx, 2),
        BufferShape::Flat,
        DIRECTION_RECEIVED,
    );
    0
}

#[tracepoint]
pub fn moat_enter_recvfrom(ctx: TracePointContext) -> u32 {
    // A peek leaves the bytes in the socket; the read that follows captures them.
    if arg(&ctx, 3) & MSG_PEEK == 0 {
        note(
            arg(&ctx, 0),
            arg(&ctx, 1),
            arg(&ctx, 2),
            BufferShape::Flat,
            DIRECTION_RECEIVED,
        );
    }
    0
}

/// write(fd, buf, count) and sendto(fd, buf, len, ...).
#[tracepoint]
pub fn moat_enter_write(ctx: TracePointContext) -> u32 {
    note(
        arg(&ctx, 0),
        arg(&ctx, 1),
        arg(&ctx, 2),
        BufferShape::Flat,
        DIRECTION_SENT,
    );
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
    note(
        arg(&ctx, 0),
        arg(&ctx, 1),
        arg(&ctx, 2),
        BufferShape::Vector,
        DIRECTION_RECEIVED,
    );
    0
}

#[tracepoint]
pub fn moat_enter_writev(ctx: TracePointContext) -> u32 {
    note(
        arg(&ctx, 0),
        arg(&ctx, 1),
        arg(&ctx, 2),
        BufferShape::Vector,
        DIRECTION_SENT,
    );
    0
}

#[tracepoint]
pub fn moat_enter_recvmsg(ctx: TracePointContext) -> u32 {
    if arg(&ctx, 2) & MSG_PEEK == 0 {
        note(
            arg(&ctx, 0),
            arg(&ctx, 1),
            0,
            BufferShape::Message,
            DIRECTION_RECEIVED,
        );
    }
    0
}

#[tracepoint]
pub fn moat_enter_sendmsg(ctx: TracePointContext) -> u32 {
    note(
        arg(&ctx, 0),
        arg(&ctx, 1),
        0,
        BufferShape::Message,
        DIRECTION_SENT,
    );
    0
}

fn read_user<T: Copy>(address: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user copes with any address: a bad one is an error, not a fault.
    unsafe { bpf_probe_read_user(address as *const T) }.ok()
}

/// The exit of every data syscall: copy what moved.
#[tracepoint]
pub fn moat_exit_data(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let Some(call) = (unsafe { IN_FLIGHT.get(&pid_tgid) }).copied() else {
        return 0;
    };
    let _ = IN_FLIGHT.remove(&pid_tgid);
    let moved = ret(&ctx);
    if moved <= 0 || call.shape == BufferShape::Connect {
        return 0;
    }
    let moved = moved as u64;
    let key = SocketFd {
        tgid: (pid_tgid >> 32) as u32,
        fd: call.fd,
    };
    let Some(state) = CAPTURE_SOCKETS.get_ptr_mut(&key) else {
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
    let mut walk = Walk {
        offset,
        remaining: moved,
        flat: u64::from(call.shape == BufferShape::Flat),
        buffer: call.buffer,
        iovecs,
        count: count.min(u64::from(MAX_IOVECS)),
        next_iovec: 0,
        source: 0,
        left_in_segment: 0,
        limit: config(config::MAX_PAYLOAD).clamp(1, PAYLOAD_CAPACITY as u64),
        cpu,
    };
    // bpf_loop: the verifier checks the step once, instead of every unrolled iteration in every
    // combination of outcomes, which a plain loop over iovecs and chunks exceeded.
    // SAFETY: the callback has the signature bpf_loop requires, and `walk` outlives the call.
    unsafe {
        generated::bpf_loop(
            MAX_EVENTS_PER_SYSCALL,
            emit_step as *mut core::ffi::c_void,
            (&raw mut walk).cast(),
            0,
        );
    }
    if walk.remaining > 0 {
        emit_uncaptured(event, walk.offset, walk.remaining, CaptureStat::BytesNotCaptured);
    }
    0
}

/// A syscall's bytes being sent to userspace: where they are (one flat buffer, or `count` iovec
/// elements) and how far sending has got.
#[repr(C)]
struct Walk {
    offset: u64,
    remaining: u64,
    /// 1 for a flat buffer at `buffer`, 0 for iovecs.
    flat: u64,
    buffer: u64,
    iovecs: u64,
    count: u64,
    next_iovec: u64,
    source: u64,
    left_in_segment: u64,
    limit: u64,
    cpu: u32,
}

/// One event: the next chunk of the current segment, moving to the next segment when one ends.
/// Returns 1 to stop the loop.
extern "C" fn emit_step(_index: u32, walk: *mut core::ffi::c_void) -> i64 {
    // SAFETY: bpf_loop hands back the pointer to the caller's `Walk`.
    let walk = unsafe { &mut *walk.cast::<Walk>() };
    if walk.remaining == 0 {
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
    let chunk = walk.left_in_segment.min(walk.limit);
    if let Some(event) = EVENT_BUFFER.get_ptr_mut(walk.cpu) {
        // SAFETY: this CPU's scratch entry; nothing else runs on it until this program returns.
        emit_chunk(unsafe { &mut *event }, walk.offset, walk.source, chunk);
    }
    walk.offset += chunk;
    walk.remaining -= chunk;
    walk.source += chunk;
    walk.left_in_segment -= chunk;
    0
}

/// One event of `length` bytes (at most the payload capacity) copied from `source`. Bytes that
/// cannot be copied are still sent as moved-but-not-captured, so the offsets stay true.
#[inline(never)]
fn emit_chunk(event: &mut EventBuffer, offset: u64, source: u64, length: u64) {
    let length = (length as usize) & (PAYLOAD_CAPACITY * 2 - 1);
    if length > PAYLOAD_CAPACITY {
        return;
    }
    event.header.offset = offset;
    event.header.length = length as u32;
    // SAFETY: the destination is this CPU's scratch payload and length is at most its size.
    let copied = unsafe {
        generated::bpf_probe_read_user(
            event.payload.as_mut_ptr().cast(),
            length as u32,
            source as *const core::ffi::c_void,
        )
    } == 0;
    event.header.captured = if copied { length as u32 } else { 0 };
    let size = size_of::<EventHeader>() + if copied { length } else { 0 };
    // SAFETY: the event buffer is a map value of at least `size` bytes.
    let bytes =
        unsafe { core::slice::from_raw_parts((event as *const EventBuffer).cast::<u8>(), size) };
    let sent = CAPTURE_EVENTS.output::<[u8]>(bytes, 0).is_ok();
    if !sent {
        bump(CaptureStat::EventsLost, 1);
        bump(CaptureStat::BytesLost, length as u64);
    }
    if !copied {
        bump(CaptureStat::BytesUnreadable, length as u64);
    }
}

/// Bytes moved but not copied (past what this syscall's events may carry, or sent from a file):
/// one event that says how many, so userspace sees a gap of the right length.
fn emit_uncaptured(event: &mut EventBuffer, offset: u64, length: u64, reason: CaptureStat) {
    bump(reason, length);
    event.header.offset = offset;
    event.header.length = length.min(u64::from(u32::MAX)) as u32;
    event.header.captured = 0;
    if CAPTURE_EVENTS
        .output::<EventHeader>(&event.header, 0)
        .is_err()
    {
        bump(CaptureStat::EventsLost, 1);
    }
}
