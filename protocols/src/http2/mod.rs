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
use std::mem;

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
    TooLarge {
        kind: FrameType,
        length: usize,
        limit: usize,
    },
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
    Preface {
        matched: usize,
    },
    /// Looking for a frame boundary (connection joined late, or after a gap); bytes held in the
    /// side's buffer.
    Resync,
    /// Collecting a frame header in the side's buffer.
    Header,
    /// Collecting the payload of a frame the parser reads whole.
    Payload(FrameHeader),
    Data(DataFrame),
    /// Passing over a payload the parser has no use for.
    Skip {
        remaining: u32,
    },
    /// A connection error: nothing more is parsed.
    Failed,
}

#[derive(Debug, Clone, Copy)]
enum BlockKind {
    Headers {
        end_stream: bool,
    },
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
        self.buffer.len()
            + self.block.as_ref().map_or(0, |block| block.fragments.len())
            + self.hpack.table_bytes()
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
    /// gRPC facts from the response, kept apart until the call is emitted: whether the call is
    /// gRPC at all is the request's to say, and its headers may be parsed after the response's.
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
    response_says_grpc: bool,
}

impl Stream {
    fn new(call: Call) -> Self {
        Self {
            call,
            request: Half::default(),
            response: Half::default(),
            grpc_status: None,
            grpc_message: None,
            response_says_grpc: false,
        }
    }

    fn parts(&mut self, direction: Direction) -> (&mut Half, &mut Message, &mut CallFlags) {
        match direction {
            Direction::Request => (
                &mut self.request,
                &mut self.call.request,
                &mut self.call.flags,
            ),
            Direction::Response => (
                &mut self.response,
                &mut self.call.response,
                &mut self.call.flags,
            ),
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
            grpc_status,
            grpc_message,
            response_says_grpc,
        } = self;
        call.request.complete = request.headers_seen && request.ended && !request.lost;
        call.response.complete = response.headers_seen && response.ended && !response.lost;
        if !request.headers_seen && response_says_grpc {
            // The request was never seen; the response says what it was.
            mark_grpc(&mut call);
        }
        if let Some(grpc) = &mut call.grpc {
            grpc.status = grpc_status;
            grpc.message = grpc_message;
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
    /// Boxed: a stream carries its whole call, which the map would otherwise move about as it
    /// rebalances.
    streams: BTreeMap<u32, Box<Stream>>,
    /// Joined after the connection started: every call is flagged, unknown state is expected.
    mid_stream: bool,
    /// A gap cost framing or HPACK state: from then on like `mid_stream`, flagged as a gap.
    desynced_by_gap: bool,
    highest_request_stream: u32,
    /// Streams already emitted, so stray frames after their end do not open them again.
    recently_closed: VecDeque<u32>,
    /// The highest id ever put in `recently_closed`: a client opens streams in increasing order,
    /// so a new stream is above it and needs no search of the list.
    highest_closed: u32,
    dropped_streams: u64,
    error: Option<ConnectionError>,
}

impl Http2Parser {
    pub fn new(limits: Limits, mid_stream: bool) -> Self {
        let cap = limits.max_hpack_table_bytes;
        let decoder = || {
            if mid_stream {
                Decoder::joined_late(cap)
            } else {
                Decoder::new(cap)
            }
        };
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
            highest_closed: 0,
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
            header.name.eq_ignore_ascii_case("content-type")
                && header.value.starts_with("application/grpc")
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
        parser.streams.insert(1, Box::new(stream));
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
    fn step(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) -> usize {
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
                    Framing::Preface {
                        matched: matched + taken,
                    }
                };
                taken
            }
            Framing::Resync => self.resync(direction, bytes, time_ns, calls),
            Framing::Header => {
                let side = self.side_mut(direction);
                let taken = HEADER_LEN
                    .saturating_sub(side.buffer.len())
                    .min(bytes.len());
                side.buffer
                    .extend_from_slice(bytes.get(..taken).unwrap_or_default());
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
                side.buffer
                    .extend_from_slice(bytes.get(..taken).unwrap_or_default());
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
    fn resync(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) -> usize {
        let span = self.limits.max_buffered_bytes.max(2 * HEADER_LEN);
        let side = self.side_mut(direction);
        let taken = span
            .saturating_sub(side.buffer.len())
            .min(bytes.len())
            .max(1);
        side.buffer
            .extend_from_slice(bytes.get(..taken).unwrap_or_default());
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

    fn start_frame(
        &mut self,
        direction: Direction,
        header: FrameHeader,
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) {
        if let Err(error) = header.validate() {
            return self.fail(error.into(), calls);
        }
        let limit = self.limits.max_buffered_bytes;
        let side = self.side_mut(direction);
        side.frame_start_ns = time_ns;
        match (
            side.block.as_ref().map(|block| block.stream_id),
            header.kind,
        ) {
            (Some(stream_id), FrameType::Continuation) if stream_id == header.stream_id => {}
            (Some(stream_id), kind) => {
                return self.fail(ConnectionError::InterruptedBlock { stream_id, kind }, calls);
            }
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
                    return self.fail(
                        ConnectionError::TooLarge {
                            kind,
                            length,
                            limit,
                        },
                        calls,
                    );
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
                let mut block = OpenBlock {
                    stream_id: header.stream_id,
                    kind,
                    fragments: Vec::new(),
                    wire_bytes: header.wire_len(),
                    first_byte_ns: side.frame_start_ns,
                };
                // A block in one frame, as nearly all are, is decoded where it lies.
                if header.has(frame::END_HEADERS) {
                    self.decode_block(direction, &block, fragment, time_ns, calls);
                } else {
                    block.fragments = fragment.to_vec();
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
                    return self.fail(
                        ConnectionError::TooLarge {
                            kind,
                            length,
                            limit,
                        },
                        calls,
                    );
                }
                block.fragments.extend_from_slice(payload);
                block.wire_bytes += header.wire_len();
                if header.has(frame::END_HEADERS) {
                    let fragments = mem::take(&mut block.fragments);
                    self.decode_block(direction, &block, &fragments, time_ns, calls);
                } else {
                    self.side_mut(direction).block = Some(block);
                }
            }
            _ => {}
        }
    }

    fn decode_block(
        &mut self,
        direction: Direction,
        block: &OpenBlock,
        fragments: &[u8],
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) {
        let max_list_bytes = self.limits.max_header_list_bytes;
        let stream_id = block.stream_id;
        let list = match self
            .side_mut(direction)
            .hpack
            .decode(fragments, max_list_bytes)
        {
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
        let (lost_state, mid_stream, max_headers) =
            (self.lost_state(), self.mid_stream, self.limits.max_headers);
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
            self.body(
                direction,
                data.stream_id,
                bytes.get(..taken).unwrap_or_default(),
                time_ns,
            );
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
        message
            .body
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
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
        let closed = stream_id <= self.highest_closed && self.recently_closed.contains(&stream_id);
        if stream_id.is_multiple_of(2) || closed {
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
        self.streams.insert(stream_id, Box::new(Stream::new(call)));
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
        self.highest_closed = self.highest_closed.max(stream_id);
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
        calls.extend(streams.into_values().map(|stream| stream.into_call()));
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
                    && len
                        <= u64::from(data.data_remaining) + u64::from(data.padding_remaining) =>
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

    fn close(&mut self, time_ns: u64, calls: &mut Vec<Call>) {
        for direction in [Direction::Request, Direction::Response] {
            // A last frame found while resynchronising had nothing after it to confirm it; with
            // the connection over, ending exactly at the last byte is confirmation enough.
            let side = self.side_mut(direction);
            if matches!(side.framing, Framing::Resync) && is_one_whole_frame(&side.buffer) {
                let held = std::mem::take(&mut side.buffer);
                side.framing = Framing::Header;
                side.after_resync = true;
                self.data(direction, &held, time_ns, calls);
            }
        }
        self.emit_all(calls);
        for side in [&mut self.request, &mut self.response] {
            side.buffer = Vec::new();
            side.block = None;
            side.hpack.lose_state();
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.request.buffered_bytes()
            + self.response.buffered_bytes()
            + self
                .streams
                .values()
                .map(|stream| stream.buffered_bytes())
                .sum::<usize>()
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

/// Header fields as record text, pseudo-headers apart. The regular ones stay where the decoder
/// put them, so that they usually become the message's headers without a copy.
fn split_fields(list: HeaderList) -> (Vec<Header>, Vec<Header>) {
    let mut regular = list.fields;
    let pseudo = regular
        .extract_if(.., |header| header.name.starts_with(':'))
        .collect();
    (pseudo, regular)
}

fn keep_headers(
    into: &mut Vec<Header>,
    mut fields: Vec<Header>,
    max_headers: usize,
    flags: &mut CallFlags,
) {
    let room = max_headers.saturating_sub(into.len());
    if fields.len() > room {
        flags.truncated = true;
        fields.truncate(room);
    }
    if into.is_empty() {
        *into = fields;
    } else {
        into.append(&mut fields);
    }
}

fn find_value<'a>(fields: &'a [Header], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|header| header.name == name)
        .map(|header| header.value.as_str())
}

/// A block without pseudo-headers that ends the stream, where the initial headers were never
/// seen, is the trailers of a message whose start we missed.
fn is_trailers(half: &Half, pseudo: &[Header], end_stream: bool) -> bool {
    half.headers_seen || (pseudo.is_empty() && end_stream)
}

fn apply_request_headers(
    stream: &mut Stream,
    list: HeaderList,
    end_stream: bool,
    max_headers: usize,
) {
    let (pseudo, regular) = split_fields(list);
    let call = &mut stream.call;
    if is_trailers(&stream.request, &pseudo, end_stream) {
        if !stream.request.trailers_seen {
            stream.request.trailers_seen = true;
            keep_headers(
                &mut call.request.trailers,
                regular,
                max_headers,
                &mut call.flags,
            );
        }
        return;
    }
    stream.request.start_seen = true;
    stream.request.headers_seen = true;
    for header in pseudo {
        match &*header.name {
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
    keep_headers(
        &mut call.request.headers,
        regular,
        max_headers,
        &mut call.flags,
    );
    if grpc {
        mark_grpc(call);
    }
}

fn apply_response_headers(
    stream: &mut Stream,
    list: HeaderList,
    end_stream: bool,
    max_headers: usize,
) {
    let (pseudo, regular) = split_fields(list);
    let call = &mut stream.call;
    let status = find_value(&pseudo, ":status").and_then(|status| status.parse::<u16>().ok());
    if let Some(grpc_status) = find_value(&regular, "grpc-status").and_then(grpc::parse_status) {
        stream.grpc_status = Some(grpc_status);
        stream.grpc_message = find_value(&regular, "grpc-message").map(grpc::percent_decode);
        stream.response_says_grpc = true;
    }
    if is_trailers(&stream.response, &pseudo, end_stream) {
        if !stream.response.trailers_seen {
            stream.response.trailers_seen = true;
            keep_headers(
                &mut call.response.trailers,
                regular,
                max_headers,
                &mut call.flags,
            );
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
    if find_value(&regular, "content-type").is_some_and(is_grpc_content_type) {
        stream.response_says_grpc = true;
    }
    keep_headers(
        &mut call.response.headers,
        regular,
        max_headers,
        &mut call.flags,
    );
}

fn is_one_whole_frame(bytes: &[u8]) -> bool {
    let Some(header) = bytes
        .get(..HEADER_LEN)
        .and_then(|header| <&[u8; HEADER_LEN]>::try_from(header).ok())
    else {
        return false;
    };
    FrameHeader::plausible(header) && FrameHeader::parse(header).wire_len() == bytes.len() as u64
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
    let header_at = |at: usize| -> Option<&[u8; HEADER_LEN]> {
        bytes.get(at..at + HEADER_LEN)?.try_into().ok()
    };
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;
    use crate::GrpcCall;

    const TIME: u64 = 1_000;

    /// A test-side HPACK encoder: indexed references for fields already in a table, literals
    /// with incremental indexing otherwise, so the decoder's dynamic table is exercised.
    struct Encoder {
        table: VecDeque<(String, String)>,
        table_bytes: usize,
        max_table_bytes: usize,
        huffman: bool,
    }

    impl Encoder {
        fn new(huffman: bool) -> Self {
            Self {
                table: VecDeque::new(),
                table_bytes: 0,
                max_table_bytes: 4096,
                huffman,
            }
        }

        fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
            let mut block = Vec::new();
            for (name, value) in fields {
                let static_hit = hpack_static_index(name, value);
                let dynamic_hit = self.table.iter().position(|(n, v)| n == name && v == value);
                match (static_hit, dynamic_hit) {
                    (Some(index), _) => integer(&mut block, 0x80, 7, index),
                    (None, Some(position)) => integer(&mut block, 0x80, 7, 62 + position),
                    (None, None) => {
                        block.push(0x40);
                        self.string(&mut block, name);
                        self.string(&mut block, value);
                        self.insert(name, value);
                    }
                }
            }
            block
        }

        fn string(&self, block: &mut Vec<u8>, text: &str) {
            if self.huffman {
                let coded = huffman::encode(text.as_bytes());
                integer(block, 0x80, 7, coded.len());
                block.extend(coded);
            } else {
                integer(block, 0, 7, text.len());
                block.extend_from_slice(text.as_bytes());
            }
        }

        fn insert(&mut self, name: &str, value: &str) {
            let size = name.len() + value.len() + 32;
            while self.table_bytes + size > self.max_table_bytes {
                let Some((n, v)) = self.table.pop_back() else {
                    break;
                };
                self.table_bytes -= n.len() + v.len() + 32;
            }
            if size <= self.max_table_bytes {
                self.table.push_front((name.to_owned(), value.to_owned()));
                self.table_bytes += size;
            }
        }
    }

    fn hpack_static_index(name: &str, value: &str) -> Option<usize> {
        [
            (":method", "GET", 2),
            (":method", "POST", 3),
            (":path", "/", 4),
            (":scheme", "http", 6),
            (":status", "200", 8),
        ]
        .iter()
        .find(|(n, v, _)| n == &name && v == &value)
        .map(|(_, _, index)| *index)
    }

    fn integer(block: &mut Vec<u8>, first: u8, prefix: u32, value: usize) {
        let max = (1usize << prefix) - 1;
        if value < max {
            block.push(first | value as u8);
            return;
        }
        block.push(first | max as u8);
        let mut rest = value - max;
        while rest >= 128 {
            block.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        block.push(rest as u8);
    }

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        bytes.extend([kind, flags]);
        bytes.extend(stream_id.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const PUSH_PROMISE: u8 = 5;
    const PING: u8 = 6;
    const WINDOW_UPDATE: u8 = 8;
    const CONTINUATION: u8 = 9;
    const EH: u8 = frame::END_HEADERS;
    const ES: u8 = frame::END_STREAM;

    fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
        let payload: Vec<u8> = pairs
            .iter()
            .flat_map(|(id, value)| id.to_be_bytes().into_iter().chain(value.to_be_bytes()))
            .collect();
        frame(SETTINGS, 0, 0, &payload)
    }

    fn grpc_message(payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend((payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn client_start() -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(settings(&[(3, 100)]));
        bytes
    }

    fn run(parser: &mut Http2Parser, request: &[u8], response: &[u8]) -> Vec<Call> {
        let mut calls = Vec::new();
        parser.data(Direction::Request, request, TIME, &mut calls);
        parser.data(Direction::Response, response, TIME + 1, &mut calls);
        calls
    }

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.to_owned().into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_get_and_its_response() {
        let (mut client, mut server) = (Encoder::new(true), Encoder::new(false));
        let mut request = client_start();
        let block = client.encode(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/a?b=1"),
            (":authority", "h"),
        ]);
        request.extend(frame(HEADERS, EH | ES, 1, &block));
        request.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        let mut response = settings(&[]);
        response.extend(frame(SETTINGS, frame::ACK, 0, &[]));
        let block = server.encode(&[(":status", "200"), ("content-type", "text/plain")]);
        response.extend(frame(HEADERS, EH, 1, &block));
        response.extend(frame(DATA, 0, 1, b"hello "));
        response.extend(frame(PING, 0, 0, &[0; 8]));
        response.extend(frame(0xfa, 0xff, 1, b"an extension frame"));
        response.extend(frame(DATA, ES, 1, b"world"));

        let mut parser = Http2Parser::new(Limits::default(), false);
        let calls = run(&mut parser, &request, &response);
        assert_eq!(calls.len(), 1);
        let call = &calls[0];
        assert_eq!(call.protocol, Protocol::Http2);
        assert_eq!(call.stream_id, Some(1));
        assert_eq!(call.method.as_deref(), Some("GET"));
        assert_eq!(call.authority.as_deref(), Some("h"));
        assert_eq!(
            (call.path.as_deref(), call.query.as_deref()),
            (Some("/a"), Some("b=1"))
        );
        assert_eq!(call.status, Some(200));
        assert!(
            call.request.headers.is_empty(),
            "pseudo-headers fill the call's own fields"
        );
        assert_eq!(
            call.response.headers,
            [header("content-type", "text/plain")]
        );
        assert_eq!(call.response.body, b"hello world");
        assert_eq!(call.response.body_bytes, 11);
        assert_eq!(call.request.wire_bytes, 9 + block_len(&request, 1));
        assert_eq!(call.response.wire_bytes, 3 * 9 + block.len() as u64 + 11);
        assert_eq!(
            (call.request.first_byte_ns, call.response.last_byte_ns),
            (TIME, TIME + 1)
        );
        assert!(call.request.complete && call.response.complete);
        assert_eq!(call.flags, CallFlags::default());
        assert_eq!(
            parser.buffered_bytes(),
            parser.request.hpack.table_bytes() + parser.response.hpack.table_bytes()
        );
        assert!(parser.error().is_none());
    }

    /// Payload length of the first HEADERS frame on `stream_id` in `bytes` (after the preface).
    fn block_len(bytes: &[u8], stream_id: u32) -> u64 {
        let mut at = PREFACE.len();
        while let Some(raw) = bytes.get(at..at + 9) {
            let header = FrameHeader::parse(raw.try_into().expect("9 bytes"));
            if header.kind == FrameType::Headers && header.stream_id == stream_id {
                return u64::from(header.length);
            }
            at += header.wire_len() as usize;
        }
        panic!("no HEADERS on stream {stream_id}");
    }

    #[test]
    fn interleaved_streams_with_continuation_padding_and_priority() {
        let (mut client, mut server) = (Encoder::new(false), Encoder::new(true));
        let mut request = client_start();
        let first = client.encode(&[
            (":method", "POST"),
            (":path", "/one"),
            ("x-a", "1"),
            ("x-b", "2"),
        ]);
        // HEADERS with PADDED and PRIORITY, then the rest of the block in a CONTINUATION.
        let (head, tail) = first.split_at(5);
        let mut payload = vec![3, 0, 0, 0, 0, 16];
        payload.extend_from_slice(head);
        payload.extend([0; 3]);
        request.extend(frame(HEADERS, frame::PADDED | frame::PRIORITY, 1, &payload));
        request.extend(frame(CONTINUATION, EH, 1, tail));
        let second = client.encode(&[(":method", "POST"), (":path", "/two"), ("x-a", "1")]);
        request.extend(frame(HEADERS, EH, 3, &second));
        request.extend(frame(DATA, frame::PADDED, 1, &[2, b'a', b'b', 0, 0]));
        request.extend(frame(DATA, 0, 3, b"cd"));
        request.extend(frame(DATA, ES, 1, b"e"));
        request.extend(frame(DATA, ES, 3, b""));
        let mut response = settings(&[]);
        let block = server.encode(&[(":status", "200")]);
        response.extend(frame(HEADERS, EH | ES, 3, &block));
        let block = server.encode(&[(":status", "200"), ("x-z", "9")]);
        response.extend(frame(HEADERS, EH, 1, &block));
        let trailers = server.encode(&[("x-trailer", "t")]);
        response.extend(frame(HEADERS, EH | ES, 1, &trailers));

        let calls = run(
            &mut Http2Parser::new(Limits::default(), false),
            &request,
            &response,
        );
        assert_eq!(calls.len(), 2);
        let (three, one) = (&calls[0], &calls[1]);
        assert_eq!(three.stream_id, Some(3));
        assert_eq!(three.path.as_deref(), Some("/two"));
        assert_eq!(three.request.body, b"cd");
        assert_eq!(three.request.headers, [header("x-a", "1")]);
        assert_eq!(one.path.as_deref(), Some("/one"));
        assert_eq!(
            one.request.headers,
            [header("x-a", "1"), header("x-b", "2")]
        );
        assert_eq!(one.request.body, b"abe");
        assert_eq!(
            one.request.wire_bytes,
            2 * 9 + payload.len() as u64 + tail.len() as u64 + 2 * 9 + 5 + 1
        );
        assert_eq!(one.response.headers, [header("x-z", "9")]);
        assert_eq!(one.response.trailers, [header("x-trailer", "t")]);
        assert!(one.request.complete && one.response.complete && three.response.complete);
    }

    #[test]
    fn grpc_unary_and_streaming_calls() {
        let (mut client, mut server) = (Encoder::new(true), Encoder::new(true));
        let grpc_request = |path: &'static str| {
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "svc:50051"),
                ("content-type", "application/grpc+proto"),
                ("te", "trailers"),
            ]
        };
        let mut request = client_start();
        request.extend(frame(
            HEADERS,
            EH,
            1,
            &client.encode(&grpc_request("/helloworld.Greeter/SayHello")),
        ));
        let message = grpc_message(b"0123456789");
        // The 5-byte prefix itself split over two DATA frames.
        request.extend(frame(DATA, 0, 1, &message[..3]));
        request.extend(frame(DATA, ES, 1, &message[3..]));
        request.extend(frame(
            HEADERS,
            EH,
            3,
            &client.encode(&grpc_request("/chat.Chat/Talk")),
        ));
        let mut stream: Vec<u8> = (0..20u8)
            .flat_map(|n| grpc_message(&vec![n; usize::from(n)]))
            .collect();
        while !stream.is_empty() {
            let chunk: Vec<u8> = stream.drain(..stream.len().min(37)).collect();
            request.extend(frame(DATA, 0, 3, &chunk));
        }
        request.extend(frame(DATA, ES, 3, &[]));
        request.extend(frame(
            HEADERS,
            EH | ES,
            5,
            &client.encode(&grpc_request("/helloworld.Greeter/Fail")),
        ));

        let mut response = settings(&[]);
        let ok_headers = [(":status", "200"), ("content-type", "application/grpc")];
        response.extend(frame(HEADERS, EH, 1, &server.encode(&ok_headers)));
        response.extend(frame(DATA, 0, 1, &grpc_message(b"hi")));
        response.extend(frame(
            HEADERS,
            EH | ES,
            1,
            &server.encode(&[("grpc-status", "0")]),
        ));
        let failed = [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
            ("grpc-message", "no%20such%20method%3A%20Fail"),
        ];
        response.extend(frame(HEADERS, EH | ES, 5, &server.encode(&failed)));
        response.extend(frame(HEADERS, EH, 3, &server.encode(&ok_headers)));
        let replies: Vec<u8> = (0..7).flat_map(|_| grpc_message(b"ack")).collect();
        response.extend(frame(DATA, 0, 3, &replies));
        response.extend(frame(
            HEADERS,
            EH | ES,
            3,
            &server.encode(&[("grpc-status", "0")]),
        ));

        let calls = run(
            &mut Http2Parser::new(Limits::default(), false),
            &request,
            &response,
        );
        let grpc: Vec<(Option<u32>, &GrpcCall)> = calls
            .iter()
            .map(|call| (call.stream_id, call.grpc.as_ref().expect("a gRPC call")))
            .collect();
        assert!(calls.iter().all(|call| call.protocol == Protocol::Grpc));
        assert_eq!(grpc.len(), 3);
        let unary = GrpcCall {
            service: "helloworld.Greeter".into(),
            method: "SayHello".into(),
            status: Some(0),
            message: None,
            request_messages: 1,
            response_messages: 1,
            request_message_bytes: 10,
            response_message_bytes: 2,
        };
        assert_eq!(grpc[0], (Some(1), &unary));
        let trailers_only = GrpcCall {
            service: "helloworld.Greeter".into(),
            method: "Fail".into(),
            status: Some(5),
            message: Some("no such method: Fail".into()),
            ..GrpcCall::default()
        };
        assert_eq!(grpc[1], (Some(5), &trailers_only));
        let streaming = GrpcCall {
            service: "chat.Chat".into(),
            method: "Talk".into(),
            status: Some(0),
            message: None,
            request_messages: 20,
            response_messages: 7,
            request_message_bytes: (0..20).sum(),
            response_message_bytes: 21,
        };
        assert_eq!(grpc[2], (Some(3), &streaming));
        assert_eq!(calls[0].response.trailers, [header("grpc-status", "0")]);
    }

    #[test]
    fn interim_responses_reset_streams_and_close() {
        let (mut client, mut server) = (Encoder::new(false), Encoder::new(false));
        let mut request = client_start();
        request.extend(frame(
            HEADERS,
            EH,
            1,
            &client.encode(&[(":method", "POST"), ("expect", "100-continue")]),
        ));
        request.extend(frame(HEADERS, EH, 3, &client.encode(&[(":method", "GET")])));
        request.extend(frame(HEADERS, EH, 5, &client.encode(&[(":method", "GET")])));
        request.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]));
        let mut response = settings(&[]);
        response.extend(frame(HEADERS, EH, 1, &server.encode(&[(":status", "100")])));
        response.extend(frame(HEADERS, EH, 1, &server.encode(&[(":status", "417")])));
        let mut parser = Http2Parser::new(Limits::default(), false);
        let mut calls = run(&mut parser, &request, &response);
        assert_eq!(calls.len(), 1, "the reset stream");
        assert_eq!(
            (calls[0].stream_id, calls[0].request.complete),
            (Some(3), false)
        );
        assert_eq!(calls[0].request.wire_bytes, 2 * 9 + 1 + 4);
        assert!(parser.buffered_bytes() > 0);
        parser.close(TIME + 2, &mut calls);
        assert_eq!(calls.len(), 3);
        assert_eq!(
            (calls[1].stream_id, calls[1].status),
            (Some(1), Some(417)),
            "100 is not the status"
        );
        assert!(!calls[1].request.complete && !calls[1].response.complete);
        assert_eq!(calls[2].stream_id, Some(5));
        assert_eq!(parser.buffered_bytes(), 0, "closing frees the tables too");
    }

    #[test]
    fn streams_over_the_limit_are_counted_and_flagged() {
        let mut client = Encoder::new(false);
        let mut request = client_start();
        for stream_id in [1, 3, 5] {
            request.extend(frame(
                HEADERS,
                EH | ES,
                stream_id,
                &client.encode(&[(":method", "GET")]),
            ));
        }
        let limits = Limits {
            max_streams: 2,
            ..Limits::default()
        };
        let mut parser = Http2Parser::new(limits, false);
        let mut calls = run(&mut parser, &request, &[]);
        parser.close(TIME, &mut calls);
        assert_eq!(parser.dropped_streams(), 1);
        assert_eq!(
            calls.iter().map(|call| call.stream_id).collect::<Vec<_>>(),
            [Some(1), Some(3)]
        );
        assert!(calls.iter().all(|call| call.flags.truncated));
    }

    #[test]
    fn connection_errors_stop_parsing_and_flag_open_calls() {
        let mut client = Encoder::new(false);
        let mut request = client_start();
        request.extend(frame(HEADERS, EH, 1, &client.encode(&[(":method", "GET")])));
        let mut good = request.clone();
        request.extend(frame(PING, 0, 0, &[0; 7]));
        request.extend(frame(
            HEADERS,
            EH | ES,
            3,
            &client.encode(&[(":method", "GET")]),
        ));
        let mut parser = Http2Parser::new(Limits::default(), false);
        let calls = run(&mut parser, &request, &[]);
        assert!(matches!(
            parser.error(),
            Some(ConnectionError::Frame(FrameError::BadLength { .. }))
        ));
        assert_eq!(calls.len(), 1);
        assert!(calls[0].flags.truncated && !calls[0].request.complete);
        assert!(
            run(&mut parser, &request, &request).is_empty(),
            "nothing after the error"
        );
        assert_eq!(parser.buffered_bytes(), parser.request.hpack.table_bytes());

        let mut parser = Http2Parser::new(Limits::default(), false);
        run(&mut parser, b"GET / HTTP/1.1\r\n\r\n", &[]);
        assert_eq!(parser.error(), Some(&ConnectionError::NoPreface));

        // A CONTINUATION growing the block past the buffer bound.
        let limits = Limits {
            max_buffered_bytes: 64,
            ..Limits::default()
        };
        good.extend(frame(HEADERS, 0, 3, &[0x82]));
        good.extend(frame(CONTINUATION, 0, 3, &[0x82; 40]));
        good.extend(frame(CONTINUATION, EH, 3, &[0x82; 40]));
        let mut parser = Http2Parser::new(limits, false);
        run(&mut parser, &good, &[]);
        assert!(matches!(
            parser.error(),
            Some(ConnectionError::TooLarge { length: 81, .. })
        ));

        // A block interrupted by another stream's frame.
        let mut parser = Http2Parser::new(Limits::default(), false);
        let mut interrupted = client_start();
        interrupted.extend(frame(HEADERS, 0, 1, &[0x82]));
        interrupted.extend(frame(DATA, 0, 1, b"x"));
        run(&mut parser, &interrupted, &[]);
        assert!(matches!(
            parser.error(),
            Some(ConnectionError::InterruptedBlock { stream_id: 1, .. })
        ));
    }

    #[test]
    fn settings_header_table_size_bounds_the_other_sides_encoder() {
        let mut request = client_start();
        // A size update to 8192, then an indexed :method GET.
        request.extend(frame(HEADERS, EH | ES, 1, &[0x3f, 0xe1, 0x3f, 0x82]));
        let mut parser = Http2Parser::new(Limits::default(), false);
        let mut calls = Vec::new();
        parser.data(
            Direction::Response,
            &settings(&[(1, 8192)]),
            TIME,
            &mut calls,
        );
        // The client's own SETTINGS (in `request`) announce nothing about its encoder.
        parser.data(Direction::Request, &request, TIME, &mut calls);
        assert!(parser.error().is_none());
        assert_eq!(parser.request.hpack.table_bytes(), 0);

        let mut parser = Http2Parser::new(Limits::default(), false);
        let mut request_announcing = client_start();
        request_announcing.extend(settings(&[(1, 8192)]));
        request_announcing.extend(frame(HEADERS, EH | ES, 1, &[0x3f, 0xe1, 0x3f, 0x82]));
        run(&mut parser, &request_announcing, &[]);
        assert!(matches!(
            parser.error(),
            Some(ConnectionError::Hpack {
                source: HpackError::TableSizeOverLimit { .. },
                ..
            })
        ));
    }

    #[test]
    fn push_promises_keep_the_response_table_in_step() {
        let (mut client, mut server) = (Encoder::new(false), Encoder::new(false));
        let mut request = client_start();
        request.extend(frame(
            HEADERS,
            EH | ES,
            1,
            &client.encode(&[(":method", "GET")]),
        ));
        let mut response = settings(&[]);
        let mut promise = vec![0, 0, 0, 2];
        promise.extend(server.encode(&[
            (":method", "GET"),
            (":path", "/style.css"),
            ("x-pushed", "yes"),
        ]));
        response.extend(frame(PUSH_PROMISE, EH, 1, &promise));
        response.extend(frame(
            HEADERS,
            EH | ES,
            2,
            &server.encode(&[(":status", "200")]),
        ));
        // Refers back to the entries the promise inserted.
        response.extend(frame(
            HEADERS,
            EH | ES,
            1,
            &server.encode(&[(":status", "200"), ("x-pushed", "yes")]),
        ));
        let calls = run(
            &mut Http2Parser::new(Limits::default(), false),
            &request,
            &response,
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].response.headers, [header("x-pushed", "yes")]);
    }

    #[test]
    fn hpack_bombs_are_cut_at_the_header_list_bound() {
        let mut request = client_start();
        let mut block = vec![0x82, 0x40, 0x01, b'k', 0x7f, 0xa1, 0x1e];
        block.extend(std::iter::repeat_n(b'v', 4000));
        block.extend(std::iter::repeat_n(0xbe, 5000));
        request.extend(frame(HEADERS, EH | ES, 1, &block));
        let limits = Limits {
            max_header_list_bytes: 16 * 1024,
            ..Limits::default()
        };
        let mut parser = Http2Parser::new(limits, false);
        let mut calls = run(&mut parser, &request, &[]);
        parser.close(TIME, &mut calls);
        assert_eq!(calls.len(), 1);
        assert!(calls[0].flags.truncated);
        assert_eq!(calls[0].method.as_deref(), Some("GET"));
        assert_eq!(
            calls[0].request.headers.len(),
            4,
            "4033 bytes each: four fit in 16 KiB"
        );
    }

    #[test]
    fn h2c_upgrade_continues_stream_one() {
        let mut upgraded = Call::new(Protocol::Http1);
        upgraded.method = Some("GET".into());
        upgraded.path = Some("/".into());
        upgraded.request.complete = true;
        upgraded.request.first_byte_ns = 5;
        let mut parser = Http2Parser::upgraded(Limits::default(), upgraded);
        let mut server = Encoder::new(true);
        let mut response = settings(&[]);
        response.extend(frame(HEADERS, EH, 1, &server.encode(&[(":status", "200")])));
        response.extend(frame(DATA, ES, 1, b"upgraded"));
        let calls = run(&mut parser, &client_start(), &response);
        assert_eq!(calls.len(), 1);
        let call = &calls[0];
        assert_eq!(
            (call.protocol, call.stream_id, call.status),
            (Protocol::Http2, Some(1), Some(200))
        );
        assert_eq!(
            (call.method.as_deref(), call.request.first_byte_ns),
            (Some("GET"), 5)
        );
        assert_eq!(call.response.body, b"upgraded");
        assert!(call.request.complete && call.response.complete);
    }

    #[test]
    fn joining_mid_stream_resynchronises_and_guesses_nothing() {
        let (mut client, mut server) = (Encoder::new(false), Encoder::new(false));
        // What happened before we looked: stream 1 opened, entries entered both tables.
        let mut earlier_request = client_start();
        earlier_request.extend(frame(
            HEADERS,
            EH,
            1,
            &client.encode(&[(":method", "POST"), ("x-token", "abc")]),
        ));
        let mut earlier_response = settings(&[]);
        earlier_response.extend(frame(
            HEADERS,
            EH,
            1,
            &server.encode(&[(":status", "200"), ("x-seen", "1")]),
        ));
        // What we see: the middle of a DATA frame, then frames.
        let mut request = frame(DATA, 0, 1, &[0xaa; 30])[12..].to_vec();
        request.extend(frame(DATA, ES, 1, b"end"));
        request.extend(frame(
            HEADERS,
            EH | ES,
            3,
            &client.encode(&[(":method", "POST"), ("x-token", "abc"), ("x-new", "n")]),
        ));
        request.extend(frame(
            HEADERS,
            EH | ES,
            5,
            &client.encode(&[(":method", "GET"), ("x-new", "n")]),
        ));
        let mut response = frame(DATA, ES, 1, b"bye");
        response.extend(frame(
            HEADERS,
            EH | ES,
            3,
            &server.encode(&[(":status", "200"), ("x-seen", "1")]),
        ));
        response.extend(frame(
            HEADERS,
            EH | ES,
            5,
            &server.encode(&[(":status", "204")]),
        ));
        assert!(!earlier_request.is_empty() && !earlier_response.is_empty());

        let mut parser = Http2Parser::new(Limits::default(), true);
        let calls = run(&mut parser, &request, &response);
        assert!(parser.error().is_none(), "{:?}", parser.error());
        assert_eq!(
            calls.iter().map(|call| call.stream_id).collect::<Vec<_>>(),
            [Some(1), Some(3), Some(5)]
        );
        assert!(calls.iter().all(|call| call.flags.mid_stream));
        let (one, three, five) = (&calls[0], &calls[1], &calls[2]);
        assert_eq!(
            (one.method.as_ref(), one.status),
            (None, None),
            "stream 1 began before we looked"
        );
        assert_eq!(
            (one.request.body.as_slice(), one.response.body.as_slice()),
            (&b"end"[..], &b"bye"[..])
        );
        assert!(!one.request.complete && !one.response.complete);
        // x-token and x-seen were indexed before we looked: left out, not guessed.
        assert_eq!(three.method.as_deref(), Some("POST"));
        assert_eq!(three.request.headers, [header("x-new", "n")]);
        assert!(three.response.headers.is_empty());
        assert_eq!(three.status, Some(200));
        assert!(three.request.complete && three.response.complete);
        // x-new entered the table while we watched, so a reference to it resolves.
        assert_eq!(five.request.headers, [header("x-new", "n")]);
        assert_eq!(five.status, Some(204));
    }

    #[test]
    fn a_preface_after_joining_late_is_recognised() {
        // Detection saw a gap before the preface, so the parser was told it joined late.
        let mut request = client_start();
        request.extend(frame(
            HEADERS,
            EH | ES,
            1,
            &Encoder::new(true).encode(&[(":method", "GET")]),
        ));
        let response = frame(
            HEADERS,
            EH | ES,
            1,
            &Encoder::new(true).encode(&[(":status", "200")]),
        );
        let mut parser = Http2Parser::new(Limits::default(), true);
        let mut calls = run(&mut parser, &request, &response);
        assert!(
            calls.is_empty(),
            "a lone response frame is only confirmed by what follows it"
        );
        parser.close(TIME, &mut calls);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].method.as_deref(), calls[0].status),
            (Some("GET"), Some(200))
        );
        assert!(calls[0].flags.mid_stream);
    }

    #[test]
    fn gaps_inside_data_are_skipped_elsewhere_they_desynchronise() {
        let (mut client, mut server) = (Encoder::new(false), Encoder::new(false));
        let mut request = client_start();
        request.extend(frame(
            HEADERS,
            EH,
            1,
            &client.encode(&[(":method", "POST"), ("x-a", "1")]),
        ));
        let body_frame = frame(DATA, ES, 1, &[7; 100]);
        let mut parser = Http2Parser::new(Limits::default(), false);
        let mut calls = Vec::new();
        parser.data(Direction::Request, &request, TIME, &mut calls);
        parser.data(Direction::Request, &body_frame[..30], TIME, &mut calls);
        parser.gap(Direction::Request, 50, TIME, &mut calls);
        parser.data(Direction::Request, &body_frame[80..], TIME, &mut calls);
        let mut response = settings(&[]);
        response.extend(frame(
            HEADERS,
            EH | ES,
            1,
            &server.encode(&[(":status", "200"), ("x-b", "2")]),
        ));
        parser.data(Direction::Response, &response, TIME, &mut calls);
        assert_eq!(calls.len(), 1);
        assert!(calls[0].flags.gap && !calls[0].request.complete);
        assert_eq!(
            (calls[0].request.body_bytes, calls[0].request.body.len()),
            (100, 21)
        );

        // A gap in frame headers: resynchronise, and HPACK references from before are unknown.
        parser.gap(Direction::Request, 4, TIME, &mut calls);
        let mut later = frame(PING, 0, 0, &[0; 8]);
        later.extend(frame(
            HEADERS,
            EH | ES,
            3,
            &client.encode(&[(":method", "POST"), ("x-a", "1")]),
        ));
        parser.data(Direction::Request, &later, TIME, &mut calls);
        let block = server.encode(&[(":status", "200"), ("x-b", "2")]);
        parser.data(
            Direction::Response,
            &frame(HEADERS, EH | ES, 3, &block),
            TIME,
            &mut calls,
        );
        assert!(parser.error().is_none(), "{:?}", parser.error());
        assert_eq!(calls.len(), 2);
        let call = &calls[1];
        assert!(call.flags.gap && !call.flags.mid_stream);
        assert!(
            call.request.headers.is_empty(),
            "x-a was a reference into the lost table"
        );
        assert_eq!(
            call.response.headers,
            [header("x-b", "2")],
            "the response table was not lost"
        );
    }

    #[test]
    fn python_h2_conversation() {
        let request = include_bytes!("../../tests/data/h2_request.bin");
        let response = include_bytes!("../../tests/data/h2_response.bin");
        let mut parser = Http2Parser::new(Limits::default(), false);
        let mut calls = run(&mut parser, request, response);
        assert!(parser.error().is_none(), "{:?}", parser.error());
        calls.sort_by_key(|call| call.stream_id);
        assert_eq!(calls.len(), 3);
        let (get, post, grpc) = (&calls[0], &calls[1], &calls[2]);
        assert_eq!(
            (get.method.as_deref(), get.path.as_deref()),
            (Some("GET"), Some("/users/7"))
        );
        assert_eq!(
            (get.query.as_deref(), get.authority.as_deref()),
            (Some("fields=name"), Some("api.example"))
        );
        assert_eq!(get.request.headers, [header("accept", "application/json")]);
        assert_eq!(
            (get.status, get.response.body.as_slice()),
            (Some(200), &b"{\"id\":7}"[..])
        );
        assert_eq!(post.request.body, b"{\"name\":\"ann\"}");
        assert_eq!(
            (post.status, post.response.body.as_slice()),
            (Some(201), &b"{\"id\":8}"[..])
        );
        assert_eq!(grpc.protocol, Protocol::Grpc);
        let facts = grpc.grpc.as_ref().expect("gRPC facts");
        assert_eq!(
            (facts.service.as_str(), facts.method.as_str()),
            ("helloworld.Greeter", "SayHello")
        );
        assert_eq!((facts.request_messages, facts.response_messages), (1, 2));
        assert_eq!(
            (facts.status, facts.message.as_deref()),
            (Some(0), Some("all good"))
        );
        assert!(
            calls
                .iter()
                .all(|call| call.request.complete && call.response.complete)
        );
        assert!(calls.iter().all(|call| call.flags == CallFlags::default()));
    }

    /// One step of a generated conversation, before HPACK encoding (which must follow wire order).
    #[derive(Debug, Clone)]
    enum Unit {
        Headers {
            stream_id: u32,
            fields: Vec<(String, String)>,
            end_stream: bool,
            /// Where the block is cut into HEADERS + CONTINUATION frames (as fractions).
            cuts: Vec<u8>,
        },
        Data {
            stream_id: u32,
            bytes: Vec<u8>,
            end_stream: bool,
            padding: Option<u8>,
        },
    }

    #[derive(Debug, Clone)]
    struct Exchange {
        grpc: bool,
        request_headers: Vec<(String, String)>,
        request_body: Vec<Vec<u8>>,
        response_headers: Vec<(String, String)>,
        response_body: Vec<Vec<u8>>,
        trailers: bool,
    }

    fn header_fields() -> impl Strategy<Value = Vec<(String, String)>> {
        // Few distinct names and values, so fields repeat and hit the dynamic table.
        proptest::collection::vec(("x-[a-c]", "[a-z0-9]{0,3}|v{40}"), 0..4)
    }

    fn exchange() -> impl Strategy<Value = Exchange> {
        (
            any::<bool>(),
            header_fields(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
            header_fields(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
            any::<bool>(),
        )
            .prop_map(
                |(
                    grpc,
                    request_headers,
                    request_body,
                    response_headers,
                    response_body,
                    trailers,
                )| {
                    Exchange {
                        grpc,
                        request_headers,
                        request_body,
                        response_headers,
                        response_body,
                        trailers,
                    }
                },
            )
    }

    /// The units of each direction for `exchanges` (stream ids 1, 3, 5, ...), per stream in order.
    fn units(exchanges: &[Exchange], cuts: &[u8]) -> (Vec<Vec<Unit>>, Vec<Vec<Unit>>) {
        let mut cut = cuts.iter().copied().cycle();
        let mut requests = Vec::new();
        let mut responses = Vec::new();
        for (index, exchange) in exchanges.iter().enumerate() {
            let stream_id = 2 * index as u32 + 1;
            let mut fields = vec![
                (":method".to_owned(), "POST".to_owned()),
                (":path".to_owned(), format!("/pkg.Svc/M{}", index % 3)),
            ];
            if exchange.grpc {
                fields.push(("content-type".to_owned(), "application/grpc".to_owned()));
            }
            fields.extend(exchange.request_headers.iter().cloned());
            let body = |chunks: &[Vec<u8>], grpc: bool, size: u8| -> Vec<Vec<u8>> {
                if !grpc {
                    return chunks.to_vec();
                }
                // gRPC messages re-cut at other places than the message boundaries.
                let stream: Vec<u8> = chunks
                    .iter()
                    .flat_map(|chunk| grpc_message(chunk))
                    .collect();
                stream
                    .chunks(3 + usize::from(size % 9))
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            let mut request = vec![Unit::Headers {
                stream_id,
                fields,
                end_stream: false,
                cuts: vec![cut.next().unwrap_or(0)],
            }];
            for (chunk_index, chunk) in body(
                &exchange.request_body,
                exchange.grpc,
                cut.next().unwrap_or(0),
            )
            .into_iter()
            .enumerate()
            {
                let padding = (chunk_index % 2 == 1).then(|| cut.next().unwrap_or(0) % 4);
                request.push(Unit::Data {
                    stream_id,
                    bytes: chunk,
                    end_stream: false,
                    padding,
                });
            }
            request.push(Unit::Data {
                stream_id,
                bytes: Vec::new(),
                end_stream: true,
                padding: None,
            });
            let mut fields = vec![(":status".to_owned(), "200".to_owned())];
            fields.extend(exchange.response_headers.iter().cloned());
            let mut response = vec![Unit::Headers {
                stream_id,
                fields,
                end_stream: false,
                cuts: vec![cut.next().unwrap_or(0), cut.next().unwrap_or(0)],
            }];
            for chunk in body(
                &exchange.response_body,
                exchange.grpc,
                cut.next().unwrap_or(0),
            ) {
                response.push(Unit::Data {
                    stream_id,
                    bytes: chunk,
                    end_stream: false,
                    padding: None,
                });
            }
            let trailer_fields = if exchange.trailers || exchange.grpc {
                vec![
                    ("grpc-status".to_owned(), "0".to_owned()),
                    ("grpc-message".to_owned(), "ok%21".to_owned()),
                ]
            } else {
                Vec::new()
            };
            response.push(if trailer_fields.is_empty() {
                Unit::Data {
                    stream_id,
                    bytes: Vec::new(),
                    end_stream: true,
                    padding: None,
                }
            } else {
                Unit::Headers {
                    stream_id,
                    fields: trailer_fields,
                    end_stream: true,
                    cuts: Vec::new(),
                }
            });
            requests.push(request);
            responses.push(response);
        }
        (requests, responses)
    }

    /// Interleaves per-stream unit lists (keeping each stream's order, and opening streams in id
    /// order as clients must) and serialises them.
    fn serialise(
        mut streams: Vec<Vec<Unit>>,
        choices: &[u8],
        start: Vec<u8>,
        huffman: bool,
    ) -> Vec<u8> {
        let mut encoder = Encoder::new(huffman);
        let mut bytes = start;
        let mut choice = choices.iter().copied().cycle();
        let lengths: Vec<usize> = streams.iter().map(Vec::len).collect();
        for stream in &mut streams {
            stream.reverse();
        }
        loop {
            let started = |index: usize| streams[index].len() < lengths[index];
            let live: Vec<usize> = (0..streams.len())
                .filter(|index| !streams[*index].is_empty() && (*index == 0 || started(index - 1)))
                .collect();
            if live.is_empty() {
                return bytes;
            }
            let pick = live[usize::from(choice.next().unwrap_or(0)) % live.len()];
            match streams[pick].pop().expect("a live stream has units") {
                Unit::Headers {
                    stream_id,
                    fields,
                    end_stream,
                    cuts,
                } => {
                    let fields: Vec<(&str, &str)> = fields
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let block = encoder.encode(&fields);
                    let mut points: Vec<usize> = cuts
                        .iter()
                        .map(|cut| block.len() * usize::from(*cut) / 256)
                        .collect();
                    points.sort_unstable();
                    points.push(block.len());
                    let mut from = 0;
                    for (index, to) in points.iter().enumerate() {
                        let last = index + 1 == points.len();
                        let flags = if last { EH } else { 0 }
                            | if end_stream && index == 0 { ES } else { 0 };
                        let kind = if index == 0 { HEADERS } else { CONTINUATION };
                        bytes.extend(frame(kind, flags, stream_id, &block[from..*to]));
                        from = *to;
                    }
                }
                Unit::Data {
                    stream_id,
                    bytes: data,
                    end_stream,
                    padding,
                } => {
                    let flags = if end_stream { ES } else { 0 };
                    match padding {
                        Some(padding) => {
                            let mut payload = vec![padding];
                            payload.extend(data);
                            payload.extend(vec![0; usize::from(padding)]);
                            bytes.extend(frame(DATA, flags | frame::PADDED, stream_id, &payload));
                        }
                        None => bytes.extend(frame(DATA, flags, stream_id, &data)),
                    }
                }
            }
        }
    }

    fn conversation() -> impl Strategy<Value = (Vec<Exchange>, Vec<u8>, Vec<u8>, Vec<u8>)> {
        (
            proptest::collection::vec(exchange(), 1..5),
            proptest::collection::vec(any::<u8>(), 1..16),
            proptest::collection::vec(any::<u8>(), 1..16),
            proptest::collection::vec(any::<u8>(), 1..16),
        )
    }

    fn sorted(mut calls: Vec<Call>) -> Vec<Call> {
        calls.sort_by_key(|call| call.stream_id);
        calls
    }

    /// Feeds both directions cut into pieces (sizes from `cuts`), alternating between them.
    fn feed_in_pieces(
        parser: &mut Http2Parser,
        request: &[u8],
        response: &[u8],
        cuts: &[u8],
    ) -> Vec<Call> {
        let mut calls = Vec::new();
        let mut sizes = cuts.iter().map(|cut| usize::from(*cut % 23) + 1).cycle();
        let (mut request, mut response) = (request, response);
        while !request.is_empty() || !response.is_empty() {
            for (direction, rest, time_ns) in [
                (Direction::Request, &mut request, TIME),
                (Direction::Response, &mut response, TIME + 1),
            ] {
                let size = sizes.next().unwrap_or(1).min(rest.len());
                let (piece, tail) = rest.split_at(size);
                parser.data(direction, piece, time_ns, &mut calls);
                *rest = tail;
            }
        }
        parser.close(TIME, &mut calls);
        calls
    }

    fn bound(limits: &Limits) -> usize {
        let per_side =
            2 * limits.max_buffered_bytes.max(2 * HEADER_LEN) + limits.max_hpack_table_bytes;
        // Lossy UTF-8 may triple header text.
        let per_stream = 2 * (limits.max_body_bytes + 2 * 3 * limits.max_header_list_bytes);
        2 * per_side + limits.max_streams * per_stream
    }

    proptest! {
        #[test]
        fn splitting_never_changes_the_calls((exchanges, choices, cuts, pieces) in conversation(), huffman: bool) {
            let (requests, responses) = units(&exchanges, &cuts);
            let request = serialise(requests, &choices, client_start(), huffman);
            let response = serialise(responses, &cuts, settings(&[(1, 4096)]), !huffman);

            let mut whole = Http2Parser::new(Limits::default(), false);
            let mut calls = run(&mut whole, &request, &response);
            whole.close(TIME, &mut calls);
            prop_assert!(whole.error().is_none(), "{:?}", whole.error());
            let calls = sorted(calls);
            prop_assert_eq!(calls.len(), exchanges.len());
            for (call, exchange) in calls.iter().zip(&exchanges) {
                prop_assert!(call.request.complete && call.response.complete);
                prop_assert_eq!(call.protocol == Protocol::Grpc, exchange.grpc);
                prop_assert_eq!(call.request.headers.len(), exchange.request_headers.len() + usize::from(exchange.grpc));
                prop_assert_eq!(call.response.headers.len(), exchange.response_headers.len());
                if let Some(grpc) = &call.grpc {
                    prop_assert_eq!(grpc.request_messages, exchange.request_body.len() as u64);
                    prop_assert_eq!(grpc.response_messages, exchange.response_body.len() as u64);
                    prop_assert_eq!(grpc.status, Some(0));
                    prop_assert_eq!(grpc.message.as_deref(), Some("ok!"));
                } else {
                    prop_assert_eq!(&call.request.body, &exchange.request_body.concat());
                    prop_assert_eq!(&call.response.body, &exchange.response_body.concat());
                }
            }

            let mut split = Http2Parser::new(Limits::default(), false);
            prop_assert_eq!(sorted(feed_in_pieces(&mut split, &request, &response, &pieces)), calls);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            request in proptest::collection::vec(any::<u8>(), 0..600),
            response in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<u8>(), 1..8),
            mid_stream: bool,
            preface: bool,
            gap in proptest::option::of(0u64..64),
        ) {
            let limits = Limits {
                max_buffered_bytes: 256,
                max_body_bytes: 64,
                max_headers: 4,
                max_header_list_bytes: 256,
                max_hpack_table_bytes: 256,
                max_streams: 4,
                max_pending_calls: 4,
            };
            let mut parser = Http2Parser::new(limits, mid_stream);
            let mut calls = Vec::new();
            if preface {
                parser.data(Direction::Request, PREFACE, TIME, &mut calls);
            }
            let mut sizes = cuts.iter().map(|cut| usize::from(*cut) + 1).cycle();
            let (mut request, mut response) = (request.as_slice(), response.as_slice());
            while !request.is_empty() || !response.is_empty() {
                for (direction, rest) in [(Direction::Request, &mut request), (Direction::Response, &mut response)] {
                    let size = sizes.next().unwrap_or(1).min(rest.len());
                    let (piece, tail) = rest.split_at(size);
                    parser.data(direction, piece, TIME, &mut calls);
                    *rest = tail;
                    if let Some(gap) = gap {
                        parser.gap(direction, gap, TIME, &mut calls);
                    }
                    prop_assert!(parser.buffered_bytes() <= bound(&limits));
                }
            }
            parser.close(TIME, &mut calls);
        }

        #[test]
        fn valid_frames_after_arbitrary_bytes_never_panic(
            (exchanges, choices, cuts, _) in conversation(),
            junk in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            // A conversation joined at an arbitrary point: resynchronisation must cope.
            let (requests, responses) = units(&exchanges, &cuts);
            let mut request = junk.clone();
            request.extend(serialise(requests, &choices, Vec::new(), true));
            let mut response = junk;
            response.extend(serialise(responses, &cuts, Vec::new(), false));
            let mut parser = Http2Parser::new(Limits::default(), true);
            let calls = feed_in_pieces(&mut parser, &request, &response, &cuts);
            prop_assert!(calls.iter().all(|call| call.flags.mid_stream));
            prop_assert!(calls.len() <= exchanges.len() * 2);
        }
    }
}
