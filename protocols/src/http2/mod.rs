//! Passive HTTP/2 over cleartext (h2c): both directions of one connection's frames into one call
//! per stream, HPACK decoded per direction, gRPC recognised on top.
//!
//! A passive observer cannot ask for anything again, so where the bytes do not tell (a connection
//! joined late, a capture gap) the parser keeps what is certain, leaves the rest empty and flags
//! the call, rather than guessing.

mod frame;
pub mod hpack;
mod huffman;

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

use self::{
    frame::{FrameError, FrameHeader, FrameType, HEADER_LEN},
    hpack::{Decoder, HeaderList, HpackError},
};
use crate::{
    Call, CallFlags, Direction, Header, Limits, Message, Protocol, StreamParser,
    call::split_target,
    grpc::{self, MessageCounter},
};

/// What an HTTP/2 client sends before its first frame (RFC 9113 section 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why a connection stopped being parsed. Whatever it was, the peers would have torn the
/// connection down too (or we lost track of it): nothing after it can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConnectionError {
    #[error("the request direction does not start with the HTTP/2 client preface")]
    NoPreface,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{direction:?} header block on stream {stream_id}: {source}")]
    Hpack {
        direction: Direction,
        stream_id: u32,
        source: HpackError,
    },
    #[error("{kind:?} frame or header block of {length} bytes exceeds the {limit}-byte buffer")]
    TooLarge { kind: FrameType, length: usize, limit: usize },
    #[error("header block of stream {stream_id} interrupted by a {kind:?} frame")]
    InterruptedBlock { stream_id: u32, kind: FrameType },
    #[error("CONTINUATION on stream {stream_id} without an open header block")]
    UnexpectedContinuation { stream_id: u32 },
}

/// A DATA frame being streamed through; its payload is never buffered.
#[derive(Debug, Clone, Copy)]
struct DataFrame {
    stream_id: u32,
    end_stream: bool,
    /// The PADDED flag's pad-length octet is still to come; until then `data_remaining` holds
    /// the whole payload length.
    pad_length_pending: bool,
    data_remaining: u32,
    padding_remaining: u32,
}

impl DataFrame {
    fn done(&self) -> bool {
        !self.pad_length_pending && self.data_remaining == 0 && self.padding_remaining == 0
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    /// Matching the client preface; this many bytes of it seen.
    Preface { matched: usize },
    /// Looking for a frame boundary (connection joined late, or after a gap); bytes held in the
    /// side's buffer.
    Resync,
    /// Collecting a frame header in the side's buffer.
    Header,
    /// Collecting the payload of a frame the parser reads whole.
    Payload(FrameHeader),
    Data(DataFrame),
    /// Passing over a payload the parser has no use for.
    Skip { remaining: u32 },
    /// A connection error: nothing more is parsed.
    Failed,
}

#[derive(Debug, Clone, Copy)]
enum BlockKind {
    Headers { end_stream: bool },
    /// Decoded only to keep the HPACK table in step: pushed streams are not followed.
    PushPromise,
}

/// A header block spread over HEADERS (or PUSH_PROMISE) and CONTINUATION frames.
#[derive(Debug)]
struct OpenBlock {
    stream_id: u32,
    kind: BlockKind,
    fragments: Vec<u8>,
    wire_bytes: u64,
    first_byte_ns: u64,
}

/// One direction of the connection.
#[derive(Debug)]
struct Side {
    framing: Framing,
    buffer: Vec<u8>,
    /// When the current frame's header completed.
    frame_start_ns: u64,
    block: Option<OpenBlock>,
    /// Decodes this direction's header blocks.
    hpack: Decoder,
    /// Just resynchronised: CONTINUATION frames of a block whose start we missed are skipped.
    after_resync: bool,
}

impl Side {
    fn new(framing: Framing, hpack: Decoder) -> Self {
        Self {
            framing,
            buffer: Vec::new(),
            frame_start_ns: 0,
            block: None,
            hpack,
            after_resync: false,
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.buffer.len() + self.block.as_ref().map_or(0, |block| block.fragments.len()) + self.hpack.table_bytes()
    }
}

/// What a stream's request or response has shown so far.
#[derive(Debug, Default)]
struct Half {
    /// A header block of this message was seen (for responses an interim one counts): DATA that
    /// follows starts at a gRPC message boundary.
    start_seen: bool,
    /// The (final) header block was seen; a later block holds trailers.
    headers_seen: bool,
    trailers_seen: bool,
    ended: bool,
    /// A gap took bytes of it: body bytes after that are counted, not kept.
    lost: bool,
    counter: MessageCounter,
}

#[derive(Debug)]
struct Stream {
    call: Call,
    request: Half,
    response: Half,
}

impl Stream {
    fn new(call: Call) -> Self {
        Self {
            call,
            request: Half::default(),
            response: Half::default(),
        }
    }

    fn parts(&mut self, direction: Direction) -> (&mut Half, &mut Message, &mut CallFlags) {
        match direction {
            Direction::Request => (&mut self.request, &mut self.call.request, &mut self.call.flags),
            Direction::Response => (&mut self.response, &mut self.call.response, &mut self.call.flags),
        }
    }

    fn buffered_bytes(&self) -> usize {
        let message_bytes = |message: &Message| {
            message.body.len()
                + message
                    .headers
                    .iter()
                    .chain(&message.trailers)
                    .map(|header| header.name.len() + header.value.len())
                    .sum::<usize>()
        };
        message_bytes(&self.call.request) + message_bytes(&self.call.response)
    }

    fn into_call(self) -> Call {
        let Self {
            mut call,
            request,
            response,
        } = self;
        call.request.complete = request.headers_seen && request.ended && !request.lost;
        call.response.complete = response.headers_seen && response.ended && !response.lost;
        if let Some(grpc) = &mut call.grpc {
            grpc.request_messages = request.counter.messages();
            grpc.request_message_bytes = request.counter.message_bytes();
            grpc.response_messages = response.counter.messages();
            grpc.response_message_bytes = response.counter.message_bytes();
        }
        call
    }
}

/// Parses one HTTP/2 connection; see [`StreamParser`].
#[derive(Debug)]
pub struct Http2Parser {
    limits: Limits,
    request: Side,
    response: Side,
    streams: BTreeMap<u32, Stream>,
    /// Joined after the connection started: every call is flagged, unknown state is expected.
    mid_stream: bool,
    /// A gap cost framing or HPACK state: from then on like `mid_stream`, flagged as a gap.
    desynced_by_gap: bool,
    highest_request_stream: u32,
    /// Streams already emitted, so stray frames after their end do not open them again.
    recently_closed: VecDeque<u32>,
    dropped_streams: u64,
    error: Option<ConnectionError>,
}

impl Http2Parser {
    pub fn new(limits: Limits, mid_stream: bool) -> Self {
        let cap = limits.max_hpack_table_bytes;
        let decoder = || if mid_stream { Decoder::joined_late(cap) } else { Decoder::new(cap) };
        let (request_framing, response_framing) = if mid_stream {
            (Framing::Resync, Framing::Resync)
        } else {
            (Framing::Preface { matched: 0 }, Framing::Header)
        };
        Self {
            limits,
            request: Side::new(request_framing, decoder()),
            response: Side::new(response_framing, decoder()),
            streams: BTreeMap::new(),
            mid_stream,
            desynced_by_gap: false,
            highest_request_stream: 0,
            recently_closed: VecDeque::new(),
            dropped_streams: 0,
            error: None,
        }
    }

    /// After an HTTP/1.1 `Upgrade: h2c` answered by 101: `request` (already filled from the
    /// HTTP/1 request) is stream 1's request; its response arrives as HTTP/2 on stream 1. The
    /// client then still sends the connection preface.
    pub fn upgraded(limits: Limits, mut request: Call) -> Self {
        let mut parser = Self::new(limits, false);
        let grpc = request.request.headers.iter().any(|header| {
            header.name.eq_ignore_ascii_case("content-type") && header.value.starts_with("application/grpc")
        });
        request.protocol = Protocol::Http2;
        request.stream_id = Some(1);
        if grpc {
            mark_grpc(&mut request);
        }
        let lost = !request.request.complete;
        let mut stream = Stream::new(request);
        stream.request = Half {
            start_seen: true,
            headers_seen: true,
            ended: true,
            lost,
            ..Half::default()
        };
        parser.streams.insert(1, stream);
        parser.highest_request_stream = 1;
        parser
    }

    /// Streams that were not followed because `max_streams` were already open.
    pub fn dropped_streams(&self) -> u64 {
        self.dropped_streams
    }

    /// Why parsing stopped, if it did.
    pub fn error(&self) -> Option<&ConnectionError> {
        self.error.as_ref()
    }

    fn side(&self, direction: Direction) -> &Side {
        match direction {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    fn side_mut(&mut self, direction: Direction) -> &mut Side {
        match direction {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    /// Whether earlier frames may be missing: streams we never saw open are then expected.
    fn lost_state(&self) -> bool {
        self.mid_stream || self.desynced_by_gap
    }

    /// Consumes a prefix of `bytes`; 0 only once the connection failed.
    fn step(&mut self, direction: Direction, bytes: &[u8], time_ns: u64, calls: &mut Vec<Call>) -> usize {
        match self.side(direction).framing {
            Framing::Failed => 0,
            Framing::Preface { matched } => {
                let expected = PREFACE.get(matched..).unwrap_or_default();
                let taken = expected.len().min(bytes.len());
                if bytes.get(..taken) != expected.get(..taken) {
                    self.fail(ConnectionError::NoPreface, calls);
                    return 0;
                }
                self.side_mut(direction).framing = if matched + taken == PREFACE.len() {
                    Framing::Header
                } else {
                    Framing::Preface { matched: matched + taken }
                };
                taken
            }
            Framing::Resync => self.resync(direction, bytes, time_ns, calls),
            Framing::Header => {
                let side = self.side_mut(direction);
                let taken = HEADER_LEN.saturating_sub(side.buffer.len()).min(bytes.len());
                side.buffer.extend_from_slice(bytes.get(..taken).unwrap_or_default());
                if let Ok(raw) = <[u8; HEADER_LEN]>::try_from(side.buffer.as_slice()) {
                    side.buffer.clear();
                    self.start_frame(direction, FrameHeader::parse(&raw), time_ns, calls);
                }
                taken
            }
            Framing::Payload(header) => {
                let side = self.side_mut(direction);
                let length = header.length as usize;
                let taken = length.saturating_sub(side.buffer.len()).min(bytes.len());
                side.buffer.extend_from_slice(bytes.get(..taken).unwrap_or_default());
                if side.buffer.len() >= length {
                    let payload = std::mem::take(&mut side.buffer);
                    side.framing = Framing::Header;
                    self.finish_frame(direction, header, &payload, time_ns, calls);
                }
                taken
            }
            Framing::Data(frame) => self.data_payload(direction, frame, bytes, time_ns, calls),
            Framing::Skip { remaining } => {
                let taken = (remaining as usize).min(bytes.len());
                self.side_mut(direction).framing = skip(remaining - taken as u32);
                taken
            }
        }
    }

    /// Holds bytes until a run of plausible frame headers shows where frames start.
    fn resync(&mut self, direction: Direction, bytes: &[u8], time_ns: u64, calls: &mut Vec<Call>) -> usize {
        let span = self.limits.max_buffered_bytes.max(2 * HEADER_LEN);
        let side = self.side_mut(direction);
        let taken = span.saturating_sub(side.buffer.len()).min(bytes.len()).max(1);
        side.buffer.extend_from_slice(bytes.get(..taken).unwrap_or_default());
        match find_boundary(&side.buffer, span, direction == Direction::Request) {
            Boundary::At(start) => {
                let held = side.buffer.split_off(start.min(side.buffer.len()));
                side.buffer = Vec::new();
                side.framing = Framing::Header;
                side.after_resync = true;
                self.data(direction, &held, time_ns, calls);
            }
            Boundary::NeedMore(start) => {
                side.buffer.drain(..start.min(side.buffer.len()));
            }
        }
        taken
    }

    fn start_frame(&mut self, direction: Direction, header: FrameHeader, time_ns: u64, calls: &mut Vec<Call>) {
        if let Err(error) = header.validate() {
            return self.fail(error.into(), calls);
        }
        let limit = self.limits.max_buffered_bytes;
        let side = self.side_mut(direction);
        side.frame_start_ns = time_ns;
        match (side.block.as_ref().map(|block| block.stream_id), header.kind) {
            (Some(stream_id), FrameType::Continuation) if stream_id == header.stream_id => {}
            (Some(stream_id), kind) => return self.fail(ConnectionError::InterruptedBlock { stream_id, kind }, calls),
            (None, FrameType::Continuation) if side.after_resync => {
                side.framing = skip(header.length);
                return;
            }
            (None, FrameType::Continuation) => {
                let stream_id = header.stream_id;
                return self.fail(ConnectionError::UnexpectedContinuation { stream_id }, calls);
            }
            _ => side.after_resync = false,
        }
        match header.kind {
            FrameType::Data => {
                let padded = header.has(frame::PADDED);
                if padded && header.length == 0 {
                    let error = FrameError::BadPadding {
                        kind: header.kind,
                        padding: 0,
                        length: 0,
                    };
                    return self.fail(error.into(), calls);
                }
                let data = DataFrame {
                    stream_id: header.stream_id,
                    end_stream: header.has(frame::END_STREAM),
                    pad_length_pending: padded,
                    data_remaining: header.length,
                    padding_remaining: 0,
                };
                if self.open_stream(direction, header.stream_id, false) {
                    self.account(direction, header.stream_id, header.wire_len(), time_ns);
                }
                self.side_mut(direction).framing = Framing::Data(data);
                if data.done() {
                    self.finish_data(direction, data, calls);
                }
            }
            FrameType::Headers
            | FrameType::PushPromise
            | FrameType::Continuation
            | FrameType::Settings
            | FrameType::RstStream => {
                let length = header.length as usize;
                if length > limit {
                    let kind = header.kind;
                    return self.fail(ConnectionError::TooLarge { kind, length, limit }, calls);
                }
                side.framing = Framing::Payload(header);
                if length == 0 {
                    side.framing = Framing::Header;
                    self.finish_frame(direction, header, &[], time_ns, calls);
                }
            }
            FrameType::Priority
            | FrameType::Ping
            | FrameType::Goaway
            | FrameType::WindowUpdate
            | FrameType::Unknown(_) => side.framing = skip(header.length),
        }
    }

    fn finish_frame(
        &mut self,
        direction: Direction,
        header: FrameHeader,
        payload: &[u8],
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) {
        let limit = self.limits.max_buffered_bytes;
        match header.kind {
            FrameType::Settings if !header.has(frame::ACK) => {
                // Each side's table size bounds what the *other* side's encoder may use.
                let decoder = &mut self.side_mut(other(direction)).hpack;
                for (identifier, value) in frame::settings(payload) {
                    if identifier == frame::SETTINGS_HEADER_TABLE_SIZE {
                        decoder.announce_table_size(value);
                    }
                }
            }
            FrameType::RstStream => {
                self.account(direction, header.stream_id, header.wire_len(), time_ns);
                self.emit(header.stream_id, calls);
            }
            FrameType::Headers | FrameType::PushPromise => {
                let fragment = match frame::header_block_fragment(&header, payload) {
                    Ok(fragment) => fragment,
                    Err(error) => return self.fail(error.into(), calls),
                };
                let kind = match header.kind {
                    FrameType::Headers => BlockKind::Headers {
                        end_stream: header.has(frame::END_STREAM),
                    },
                    _ => BlockKind::PushPromise,
                };
                let side = self.side_mut(direction);
                let block = OpenBlock {
                    stream_id: header.stream_id,
                    kind,
                    fragments: fragment.to_vec(),
                    wire_bytes: header.wire_len(),
                    first_byte_ns: side.frame_start_ns,
                };
                if header.has(frame::END_HEADERS) {
                    self.decode_block(direction, block, time_ns, calls);
                } else {
                    side.block = Some(block);
                }
            }
            FrameType::Continuation => {
                let Some(mut block) = self.side_mut(direction).block.take() else {
                    return;
                };
                let length = block.fragments.len() + payload.len();
                if length > limit {
                    let kind = header.kind;
                    return self.fail(ConnectionError::TooLarge { kind, length, limit }, calls);
                }
                block.fragments.extend_from_slice(payload);
                block.wire_bytes += header.wire_len();
                if header.has(frame::END_HEADERS) {
                    self.decode_block(direction, block, time_ns, calls);
                } else {
                    self.side_mut(direction).block = Some(block);
                }
            }
            _ => {}
        }
    }

    fn decode_block(&mut self, direction: Direction, block: OpenBlock, time_ns: u64, calls: &mut Vec<Call>) {
        let max_list_bytes = self.limits.max_header_list_bytes;
        let stream_id = block.stream_id;
        let list = match self.side_mut(direction).hpack.decode(&block.fragments, max_list_bytes) {
            Ok(list) => list,
            Err(source) => {
                let error = ConnectionError::Hpack {
                    direction,
                    stream_id,
                    source,
                };
                return self.fail(error, calls);
            }
        };
        let BlockKind::Headers { end_stream } = block.kind else {
            return;
        };
        if !self.open_stream(direction, stream_id, true) {
            return;
        }
        self.account(direction, stream_id, block.wire_bytes, block.first_byte_ns);
        self.account(direction, stream_id, 0, time_ns);
        let (lost_state, mid_stream, max_headers) = (self.lost_state(), self.mid_stream, self.limits.max_headers);
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return;
        };
        if list.truncated {
            stream.call.flags.truncated = true;
        }
        if list.unresolved {
            // Only a table we could not follow leaves references unresolved.
            match (mid_stream, lost_state) {
                (true, _) => stream.call.flags.mid_stream = true,
                (false, true) => stream.call.flags.gap = true,
                (false, false) => stream.call.flags.truncated = true,
            }
        }
        match direction {
            Direction::Request => apply_request_headers(stream, list, end_stream, max_headers),
            Direction::Response => apply_response_headers(stream, list, end_stream, max_headers),
        }
        if end_stream {
            self.end_half(direction, stream_id, calls);
        }
    }

    fn data_payload(
        &mut self,
        direction: Direction,
        mut data: DataFrame,
        bytes: &[u8],
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) -> usize {
        let taken = if data.pad_length_pending {
            let padding = bytes.first().copied().unwrap_or_default();
            let Some(remaining) = data.data_remaining.checked_sub(1 + u32::from(padding)) else {
                let length = data.data_remaining;
                let error = FrameError::BadPadding {
                    kind: FrameType::Data,
                    padding,
                    length,
                };
                self.fail(error.into(), calls);
                return 0;
            };
            data.pad_length_pending = false;
            data.data_remaining = remaining;
            data.padding_remaining = u32::from(padding);
            1
        } else if data.data_remaining > 0 {
            let taken = (data.data_remaining as usize).min(bytes.len());
            self.body(direction, data.stream_id, bytes.get(..taken).unwrap_or_default(), time_ns);
            data.data_remaining -= taken as u32;
            taken
        } else {
            let taken = (data.padding_remaining as usize).min(bytes.len());
            data.padding_remaining -= taken as u32;
            taken
        };
        self.side_mut(direction).framing = Framing::Data(data);
        if data.done() {
            self.finish_data(direction, data, calls);
        }
        taken
    }

    fn body(&mut self, direction: Direction, stream_id: u32, bytes: &[u8], time_ns: u64) {
        let max_body = self.limits.max_body_bytes;
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return;
        };
        let (half, message, flags) = stream.parts(direction);
        if !half.start_seen {
            // Its DATA began before we looked: message boundaries are unknown.
            half.counter.skip(u64::MAX);
        }
        half.counter.feed(bytes);
        message.body_bytes = message.body_bytes.saturating_add(bytes.len() as u64);
        touch(message, time_ns);
        if half.lost {
            return;
        }
        let room = max_body.saturating_sub(message.body.len());
        message.body.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        if bytes.len() > room {
            flags.truncated = true;
        }
    }

    fn finish_data(&mut self, direction: Direction, data: DataFrame, calls: &mut Vec<Call>) {
        self.side_mut(direction).framing = Framing::Header;
        if data.end_stream {
            self.end_half(direction, data.stream_id, calls);
        }
    }

    /// Frame bytes belong to the stream's message in that direction.
    fn account(&mut self, direction: Direction, stream_id: u32, wire_bytes: u64, time_ns: u64) {
        if let Some(stream) = self.streams.get_mut(&stream_id) {
            let (_, message, _) = stream.parts(direction);
            message.wire_bytes = message.wire_bytes.saturating_add(wire_bytes);
            touch(message, time_ns);
        }
    }

    /// Whether the stream is (now) tracked. `by_headers`: a header block, which may open it.
    fn open_stream(&mut self, direction: Direction, stream_id: u32, by_headers: bool) -> bool {
        if self.streams.contains_key(&stream_id) {
            return true;
        }
        // Even ids are server pushes, which are not followed.
        if stream_id % 2 == 0 || self.recently_closed.contains(&stream_id) {
            return false;
        }
        let fresh = stream_id > self.highest_request_stream;
        if !fresh && !self.lost_state() {
            // Closed already, or dropped over the stream limit.
            return false;
        }
        if fresh && by_headers && direction == Direction::Request {
            self.highest_request_stream = stream_id;
        }
        if self.streams.len() >= self.limits.max_streams {
            self.dropped_streams += 1;
            for stream in self.streams.values_mut() {
                stream.call.flags.truncated = true;
            }
            return false;
        }
        let mut call = Call::new(Protocol::Http2);
        call.stream_id = Some(stream_id);
        call.flags.mid_stream = self.mid_stream;
        call.flags.gap = self.desynced_by_gap;
        self.streams.insert(stream_id, Stream::new(call));
        true
    }

    fn end_half(&mut self, direction: Direction, stream_id: u32, calls: &mut Vec<Call>) {
        let lost_state = self.lost_state();
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return;
        };
        stream.parts(direction).0.ended = true;
        // A request whose start we never saw may have ended unseen too: the response's end is
        // then the best sign the call is over.
        let request_done = stream.request.ended || (lost_state && !stream.request.start_seen);
        if request_done && stream.response.ended {
            self.emit(stream_id, calls);
        }
    }

    fn emit(&mut self, stream_id: u32, calls: &mut Vec<Call>) {
        let Some(stream) = self.streams.remove(&stream_id) else {
            return;
        };
        if self.recently_closed.len() >= self.limits.max_streams.max(1) {
            self.recently_closed.pop_front();
        }
        self.recently_closed.push_back(stream_id);
        calls.push(stream.into_call());
    }

    fn fail(&mut self, error: ConnectionError, calls: &mut Vec<Call>) {
        self.error.get_or_insert(error);
        for side in [&mut self.request, &mut self.response] {
            side.framing = Framing::Failed;
            side.buffer = Vec::new();
            side.block = None;
        }
        for stream in self.streams.values_mut() {
            stream.call.flags.truncated = true;
        }
        self.emit_all(calls);
    }

    fn emit_all(&mut self, calls: &mut Vec<Call>) {
        let streams = std::mem::take(&mut self.streams);
        calls.extend(streams.into_values().map(Stream::into_call));
    }

    /// A gap we cannot step over: framing and this direction's HPACK state are gone.
    fn desync(&mut self, direction: Direction) {
        self.desynced_by_gap = true;
        let side = self.side_mut(direction);
        side.framing = Framing::Resync;
        side.buffer = Vec::new();
        side.block = None;
        side.hpack.lose_state();
        for stream in self.streams.values_mut() {
            let (half, _, flags) = stream.parts(direction);
            if !half.ended {
                half.lost = true;
                half.counter.skip(u64::MAX);
                flags.gap = true;
            }
        }
    }
}

impl StreamParser for Http2Parser {
    fn data(&mut self, direction: Direction, bytes: &[u8], time_ns: u64, calls: &mut Vec<Call>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let used = self.step(direction, rest, time_ns, calls);
            if used == 0 {
                break;
            }
            rest = rest.get(used..).unwrap_or_default();
        }
    }

    fn gap(&mut self, direction: Direction, len: u64, _time_ns: u64, calls: &mut Vec<Call>) {
        if len == 0 {
            return;
        }
        match self.side(direction).framing {
            Framing::Failed => {}
            Framing::Data(mut data)
                if !data.pad_length_pending
                    && len <= u64::from(data.data_remaining) + u64::from(data.padding_remaining) =>
            {
                // Inside a DATA payload of known length: the bytes were body (or padding) only.
                let lost_body = len.min(u64::from(data.data_remaining));
                if let Some(stream) = self.streams.get_mut(&data.stream_id) {
                    let (half, message, flags) = stream.parts(direction);
                    message.body_bytes = message.body_bytes.saturating_add(lost_body);
                    half.lost = true;
                    half.counter.skip(lost_body);
                    flags.gap = true;
                }
                data.data_remaining -= lost_body as u32;
                data.padding_remaining -= (len - lost_body) as u32;
                self.side_mut(direction).framing = Framing::Data(data);
                if data.done() {
                    self.finish_data(direction, data, calls);
                }
            }
            Framing::Skip { remaining } if len <= u64::from(remaining) => {
                self.side_mut(direction).framing = skip(remaining - len as u32);
            }
            Framing::Resync => self.side_mut(direction).buffer.clear(),
            _ => self.desync(direction),
        }
    }

    fn close(&mut self, _time_ns: u64, calls: &mut Vec<Call>) {
        self.emit_all(calls);
        for side in [&mut self.request, &mut self.response] {
            side.buffer = Vec::new();
            side.block = None;
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.request.buffered_bytes()
            + self.response.buffered_bytes()
            + self.streams.values().map(Stream::buffered_bytes).sum::<usize>()
    }
}

fn other(direction: Direction) -> Direction {
    match direction {
        Direction::Request => Direction::Response,
        Direction::Response => Direction::Request,
    }
}

fn skip(remaining: u32) -> Framing {
    if remaining == 0 {
        Framing::Header
    } else {
        Framing::Skip { remaining }
    }
}

fn touch(message: &mut Message, time_ns: u64) {
    if message.first_byte_ns == 0 {
        message.first_byte_ns = time_ns;
    }
    message.last_byte_ns = message.last_byte_ns.max(time_ns);
}

fn mark_grpc(call: &mut Call) {
    call.protocol = Protocol::Grpc;
    let names = call.path.as_deref().and_then(grpc::service_and_method);
    let grpc = call.grpc.get_or_insert_default();
    if let Some((service, method)) = names {
        grpc.service = service;
        grpc.method = method;
    }
}

fn is_grpc_content_type(value: &str) -> bool {
    value.starts_with("application/grpc")
}

/// Header fields as record text, pseudo-headers apart.
fn split_fields(list: HeaderList) -> (Vec<Header>, Vec<Header>) {
    list.fields
        .into_iter()
        .map(|field| Header {
            name: String::from_utf8_lossy(&field.name).into_owned(),
            value: String::from_utf8_lossy(&field.value).into_owned(),
        })
        .partition(|header| header.name.starts_with(':'))
}

fn keep_headers(into: &mut Vec<Header>, fields: Vec<Header>, max_headers: usize, flags: &mut CallFlags) {
    let room = max_headers.saturating_sub(into.len());
    if fields.len() > room {
        flags.truncated = true;
    }
    into.extend(fields.into_iter().take(room));
}

fn find_value<'a>(fields: &'a [Header], name: &str) -> Option<&'a str> {
    fields.iter().find(|header| header.name == name).map(|header| header.value.as_str())
}

/// A block without pseudo-headers that ends the stream, where the initial headers were never
/// seen, is the trailers of a message whose start we missed.
fn is_trailers(half: &Half, pseudo: &[Header], end_stream: bool) -> bool {
    half.headers_seen || (pseudo.is_empty() && end_stream)
}

fn apply_request_headers(stream: &mut Stream, list: HeaderList, end_stream: bool, max_headers: usize) {
    let (pseudo, regular) = split_fields(list);
    let call = &mut stream.call;
    if is_trailers(&stream.request, &pseudo, end_stream) {
        if !stream.request.trailers_seen {
            stream.request.trailers_seen = true;
            keep_headers(&mut call.request.trailers, regular, max_headers, &mut call.flags);
        }
        return;
    }
    stream.request.start_seen = true;
    stream.request.headers_seen = true;
    for header in pseudo {
        match header.name.as_str() {
            ":method" => call.method = Some(header.value),
            ":authority" => call.authority = Some(header.value),
            ":path" => {
                let (path, query) = split_target(&header.value);
                call.path = Some(path);
                call.query = query;
            }
            // :scheme and :protocol have no place in the record.
            _ => {}
        }
    }
    if call.authority.is_none() {
        call.authority = find_value(&regular, "host").map(str::to_owned);
    }
    let grpc = find_value(&regular, "content-type").is_some_and(is_grpc_content_type);
    keep_headers(&mut call.request.headers, regular, max_headers, &mut call.flags);
    if grpc {
        mark_grpc(call);
    }
}

fn apply_response_headers(stream: &mut Stream, list: HeaderList, end_stream: bool, max_headers: usize) {
    let (pseudo, regular) = split_fields(list);
    let call = &mut stream.call;
    let status = find_value(&pseudo, ":status").and_then(|status| status.parse::<u16>().ok());
    if let Some(grpc_status) = find_value(&regular, "grpc-status").and_then(grpc::parse_status) {
        if !stream.request.headers_seen && call.grpc.is_none() {
            // The request was never seen; a gRPC status says what it was.
            mark_grpc(call);
        }
        if let Some(grpc) = &mut call.grpc {
            grpc.status = Some(grpc_status);
            grpc.message = find_value(&regular, "grpc-message").map(grpc::percent_decode);
        }
    }
    if is_trailers(&stream.response, &pseudo, end_stream) {
        if !stream.response.trailers_seen {
            stream.response.trailers_seen = true;
            keep_headers(&mut call.response.trailers, regular, max_headers, &mut call.flags);
        }
        return;
    }
    stream.response.start_seen = true;
    if status.is_some_and(|status| (100..200).contains(&status)) {
        // Interim responses (100 Continue, 103 Early Hints) are not the answer.
        return;
    }
    stream.response.headers_seen = true;
    call.status = status;
    let grpc = find_value(&regular, "content-type").is_some_and(is_grpc_content_type);
    if grpc && !stream.request.headers_seen && call.grpc.is_none() {
        mark_grpc(call);
    }
    keep_headers(&mut call.response.headers, regular, max_headers, &mut call.flags);
}

enum Boundary {
    /// Frames start here.
    At(usize),
    /// Nothing before here can start a frame; what follows needs more bytes to tell.
    NeedMore(usize),
}

/// Where frames start in bytes taken from the middle of a connection: the first offset holding a
/// plausible frame header followed by another one. A candidate whose second header lies more than
/// `span` bytes on is passed over, so the answer never depends on how the bytes were chunked.
fn find_boundary(bytes: &[u8], span: usize, client: bool) -> Boundary {
    let header_at = |at: usize| -> Option<&[u8; HEADER_LEN]> { bytes.get(at..at + HEADER_LEN)?.try_into().ok() };
    for start in 0..bytes.len() {
        let rest = bytes.get(start..).unwrap_or_default();
        if client && rest.first() == Some(&PREFACE[0]) {
            let shared = rest.len().min(PREFACE.len());
            if rest.get(..shared) == PREFACE.get(..shared) {
                if shared < PREFACE.len() {
                    return Boundary::NeedMore(start);
                }
                return Boundary::At(start + PREFACE.len());
            }
        }
        let Some(first) = header_at(start) else {
            return Boundary::NeedMore(start);
        };
        if !FrameHeader::plausible(first) {
            continue;
        }
        let next = start + HEADER_LEN + FrameHeader::parse(first).length as usize;
        if next + HEADER_LEN - start > span {
            continue;
        }
        match header_at(next) {
            None => return Boundary::NeedMore(start),
            Some(second) if FrameHeader::plausible(second) => return Boundary::At(start),
            Some(_) => {}
        }
    }
    Boundary::NeedMore(bytes.len())
}
