//! HTTP/1.1 as a bystander sees it: both byte streams of one connection, fed in capture order,
//! turned into one [`Call`] per request/response exchange.
//!
//! The parser may start in the middle of a connection, may lose bytes, and trusts nothing it
//! reads. It only believes a message starts where a request line or an `HTTP/1.x NNN` status line
//! begins a line, and skips anything else, so garbage costs one look per byte and never becomes a
//! call. Responses are paired with requests first in, first out, as HTTP/1.1 pipelining requires.

use std::collections::VecDeque;
use std::mem::{self, MaybeUninit};

use crate::call::{Call, CallFlags, Direction, Header, Message, Protocol, split_target, text};
use crate::{Limits, StreamParser};

/// Longest method we believe in a start line; real ones (`MKWORKSPACE`, `BASELINE-CONTROL`) fit.
const MAX_METHOD_LEN: usize = 32;
/// Distinct capture times remembered for bytes held back while an upgrade is decided; later
/// bytes share the last time, which only blurs the timestamps of requests pipelined behind it.
const MAX_HELD_TIMES: usize = 64;
const VERSION_PREFIX: &[u8] = b"HTTP/1.";

/// After a `101 Switching Protocols` that accepted `Upgrade: h2c`, the parser stops and hands the
/// connection over to an HTTP/2 parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2cUpgrade {
    /// The upgrading request; its response comes as HTTP/2 stream 1, so the call's status and
    /// response are left for the HTTP/2 parser to fill.
    pub request: Call,
    /// Request-direction bytes after the HTTP/1 request (the HTTP/2 client preface, if the
    /// capture saw it before the 101).
    pub request_rest: Vec<u8>,
    /// Response-direction bytes after the 101 head (the server's HTTP/2 SETTINGS, ...).
    pub response_rest: Vec<u8>,
}

/// Passive HTTP/1.x parser for one connection. See the module docs.
#[derive(Debug)]
pub struct Http1Parser {
    limits: Limits,
    mid_stream: bool,
    connection: Connection,
    requests: Reader,
    responses: Reader,
    /// Where the body of the request being read goes.
    request_target: RequestTarget,
    /// The request being read asked to switch protocols (`Upgrade`, `CONNECT`): what the client
    /// sends after it is held until the response says whether it is still HTTP/1.
    request_switches: bool,
    held: Held,
    /// Requests whose response has not begun, oldest first.
    waiting: VecDeque<Waiting>,
    /// The exchange whose response body is being read.
    answering: Option<Answer>,
    /// Interim (1xx) responses seen before the final one of the oldest waiting request.
    interim: Interim,
    next_seq: u64,
    /// Request-direction bytes were lost at some point: a response that finds no request waiting
    /// may answer one of them.
    requests_lost: bool,
    upgrade: Option<H2cUpgrade>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    Http,
    /// A `CONNECT` or non-h2c upgrade succeeded: what follows is not HTTP/1.
    Tunnel,
    /// An h2c upgrade was handed over; an HTTP/2 parser owns the rest of the connection.
    HandedOff,
    Closed,
}

/// One direction's position in its byte stream.
#[derive(Debug)]
struct Reader {
    direction: Direction,
    stage: Stage,
    /// The head (or chunk-size line, or trailer block) being assembled.
    buf: Vec<u8>,
    /// How much of `buf` was already searched for the end of the head, so a head fed one byte at
    /// a time is still searched in linear time.
    searched: usize,
    /// Capture time of `buf`'s first byte: the first byte of the message.
    started_ns: u64,
    /// Bytes were lost just before the next message: requests may have vanished with them.
    after_gap: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Looking for the start line of the next message.
    Seek(StartLine),
    /// A start line was recognised; the rest of the head is being collected in `buf`.
    Head,
    Body(Framing),
    /// Request direction only: waiting for the verdict on a protocol switch (see `Held`).
    Held,
}

/// How a body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    /// A response without declared length: it ends when the connection does.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    SizeLine,
    Data(u64),
    /// The CRLF after a chunk's data; `true` once the CR was seen.
    DataEnd(bool),
    Trailers,
}

/// Recogniser for the first line of a message, fed one byte at a time so that skipping garbage
/// never looks at a byte twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartLine {
    /// At the start of a line; empty lines between messages are skipped here.
    LineStart,
    /// Inside a line that cannot start a message: skip to its end.
    SkipLine,
    Method(usize),
    TargetStart,
    Target,
    /// This many bytes of `HTTP/1.` matched.
    Version(usize),
    Minor,
    RequestLineEnd,
    RequestLineCr,
    StatusSpace,
    /// This many status digits matched.
    Status(usize),
    StatusEnd,
}

enum Recognised {
    Continue(StartLine),
    Accept,
    Reject,
}

#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    /// (offset in `bytes`, capture time) where each data event's bytes begin.
    times: Vec<(usize, u64)>,
    /// Bytes lost after `bytes` (over the limit, or in a gap); once anything is lost nothing more
    /// is kept, so the loss is one contiguous gap after `bytes`.
    lost: u64,
}

#[derive(Debug)]
enum RequestTarget {
    None,
    /// The exchange with this sequence number, waiting or being answered.
    Exchange(u64),
    /// A request that found the waiting queue full: recorded on its own when it ends.
    Overflow(Box<Call>),
}

#[derive(Debug)]
enum Waiting {
    Exchange(Box<Exchange>),
    /// This many requests in a row arrived while the queue was full; they were recorded without
    /// their responses, which are read (to stay in step) but not recorded.
    Untracked(u64),
}

#[derive(Debug)]
struct Exchange {
    seq: u64,
    call: Call,
    offers_h2c: bool,
}

#[derive(Debug)]
struct Answer {
    exchange: Exchange,
    /// False for responses to untracked requests.
    record: bool,
}

#[derive(Debug, Default)]
struct Interim {
    first_byte_ns: Option<u64>,
    wire_bytes: u64,
}

impl Http1Parser {
    /// `mid_stream`: the connection began before capture did, so both directions skip bytes until
    /// something that is recognisably a message start.
    pub fn new(limits: Limits, mid_stream: bool) -> Self {
        // Either way the first byte may start a message, and anything that does not is skipped.
        let start = StartLine::LineStart;
        Self {
            limits,
            mid_stream,
            connection: Connection::Http,
            requests: Reader::new(Direction::Request, start),
            responses: Reader::new(Direction::Response, start),
            request_target: RequestTarget::None,
            request_switches: false,
            held: Held::default(),
            waiting: VecDeque::new(),
            answering: None,
            interim: Interim::default(),
            next_seq: 0,
            requests_lost: false,
            upgrade: None,
        }
    }

    /// The h2c hand-off, once a `101` accepted it; the caller then feeds an HTTP/2 parser instead.
    /// Bytes fed to this parser after the hand-off are ignored.
    pub fn take_h2c_upgrade(&mut self) -> Option<H2cUpgrade> {
        self.upgrade.take()
    }

    fn side(&mut self, direction: Direction) -> &mut Reader {
        match direction {
            Direction::Request => &mut self.requests,
            Direction::Response => &mut self.responses,
        }
    }

    /// Runs `input` through one direction's stages until it is used up or the connection stops
    /// being HTTP (a tunnel, or an h2c hand-off).
    fn feed(&mut self, direction: Direction, input: &[u8], time_ns: u64, calls: &mut Vec<Call>) {
        let max_buffered = self.limits.max_buffered_bytes;
        let mut used = 0;
        while used < input.len() && self.connection == Connection::Http {
            let rest = after(input, used);
            used += match self.side(direction).stage {
                Stage::Seek(line) => self.side(direction).seek(line, rest, time_ns, max_buffered),
                Stage::Head => {
                    let (n, head) = self.side(direction).read_head(rest, max_buffered);
                    match (head, direction) {
                        (HeadRead::Partial, _) => {}
                        (HeadRead::Complete, Direction::Request) => {
                            self.on_request_head(time_ns, calls)
                        }
                        (HeadRead::Complete, Direction::Response) => {
                            self.on_response_head(time_ns, calls)
                        }
                        (HeadRead::TooLarge, Direction::Request) => {
                            self.unusable_request_head(StartLine::SkipLine, time_ns, calls)
                        }
                        (HeadRead::TooLarge, Direction::Response) => {
                            self.unusable_response_head(StartLine::SkipLine, time_ns, calls)
                        }
                    }
                    n
                }
                Stage::Body(_) => match direction {
                    Direction::Request => self.read_request_body(rest, time_ns, calls),
                    Direction::Response => self.read_response_body(rest, time_ns, calls),
                },
                Stage::Held => {
                    // Only requests are ever held.
                    if direction == Direction::Request {
                        self.hold(rest, time_ns);
                    }
                    rest.len()
                }
            };
            if direction == Direction::Response && self.connection == Connection::HandedOff {
                if let Some(upgrade) = &mut self.upgrade {
                    upgrade.response_rest.extend_from_slice(after(input, used));
                }
                return;
            }
        }
    }

    fn on_request_head(&mut self, time_ns: u64, calls: &mut Vec<Call>) {
        let head = mem::take(&mut self.requests.buf);
        match parse_request_head(&head, &self.limits) {
            Some(parsed) => {
                let mut call = parsed.call;
                call.request.first_byte_ns = self.requests.started_ns;
                call.request.last_byte_ns = time_ns;
                call.request.wire_bytes = head.len() as u64;
                call.flags.gap = mem::take(&mut self.requests.after_gap);
                self.request_switches = parsed.switches_protocol;
                self.request_target = self.enqueue(call, parsed.offers_h2c);
                match parsed.body {
                    Some(framing) => self.requests.stage = Stage::Body(framing),
                    None => self.end_request(calls),
                }
            }
            // The head ended at an empty line, so the next byte starts a line.
            None => self.record_unusable_request(&head, StartLine::LineStart, time_ns, calls),
        }
        self.requests.reuse(head);
    }

    fn unusable_request_head(&mut self, resume: StartLine, time_ns: u64, calls: &mut Vec<Call>) {
        let head = mem::take(&mut self.requests.buf);
        self.record_unusable_request(&head, resume, time_ns, calls);
        self.requests.reuse(head);
    }

    /// A request head we cannot use (over the limit, or malformed past its start line): record
    /// what its start line says, so its response still pairs with it, and look for the next one.
    fn record_unusable_request(
        &mut self,
        head: &[u8],
        resume: StartLine,
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) {
        self.requests.stage = Stage::Seek(resume);
        let Some((method, target)) = request_line(head) else {
            return;
        };
        let mut call = Call::new(Protocol::Http1);
        set_target(&mut call, &method, &target);
        call.method = Some(method);
        call.flags.truncated = true;
        call.flags.gap = mem::take(&mut self.requests.after_gap);
        call.request.first_byte_ns = self.requests.started_ns;
        call.request.last_byte_ns = time_ns;
        call.request.wire_bytes = head.len() as u64;
        // Where its body ends is unknown, so nothing more is written to it.
        if let RequestTarget::Overflow(call) = self.enqueue(call, false) {
            calls.push(*call);
        }
        self.request_target = RequestTarget::None;
    }

    /// Queues a request for its response, or records it alone when the queue is full.
    fn enqueue(&mut self, mut call: Call, offers_h2c: bool) -> RequestTarget {
        let tracked = self
            .waiting
            .iter()
            .filter(|waiting| matches!(waiting, Waiting::Exchange(_)))
            .count();
        if tracked < self.limits.max_pending_calls {
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            self.waiting.push_back(Waiting::Exchange(Box::new(Exchange {
                seq,
                call,
                offers_h2c,
            })));
            return RequestTarget::Exchange(seq);
        }
        call.flags.truncated = true;
        match self.waiting.back_mut() {
            Some(Waiting::Untracked(count)) => *count = count.saturating_add(1),
            _ => self.waiting.push_back(Waiting::Untracked(1)),
        }
        RequestTarget::Overflow(Box::new(call))
    }

    fn read_request_body(&mut self, input: &[u8], time_ns: u64, calls: &mut Vec<Call>) -> usize {
        let Stage::Body(framing) = &mut self.requests.stage else {
            return 0;
        };
        let call = request_call(
            &mut self.request_target,
            &mut self.waiting,
            &mut self.answering,
        );
        let sink = Sink::new(call, Direction::Request);
        let (used, progress) = read_body(
            framing,
            &mut self.requests.buf,
            input,
            time_ns,
            &self.limits,
            sink,
        );
        match progress {
            BodyProgress::More => {}
            BodyProgress::Ended => self.end_request(calls),
            BodyProgress::Broken => self.break_request(false, StartLine::SkipLine, calls),
        }
        used
    }

    fn end_request(&mut self, calls: &mut Vec<Call>) {
        let call = request_call(
            &mut self.request_target,
            &mut self.waiting,
            &mut self.answering,
        );
        if let Some(call) = call {
            call.request.complete = true;
        }
        if let RequestTarget::Overflow(call) =
            mem::replace(&mut self.request_target, RequestTarget::None)
        {
            calls.push(*call);
        }
        self.requests.buf.clear();
        // A switching request is the newest: if the queue is empty its response already began,
        // and the verdict came while its body was still being read.
        let hold = mem::take(&mut self.request_switches) && !self.waiting.is_empty();
        self.requests.stage = if hold {
            Stage::Held
        } else {
            Stage::Seek(StartLine::LineStart)
        };
    }

    /// The request's body cannot be followed (bad chunk framing, or bytes lost in it).
    fn break_request(&mut self, gap: bool, resume: StartLine, calls: &mut Vec<Call>) {
        let call = request_call(
            &mut self.request_target,
            &mut self.waiting,
            &mut self.answering,
        );
        if let Some(call) = call {
            flag_cut(&mut call.flags, gap);
        }
        if let RequestTarget::Overflow(call) =
            mem::replace(&mut self.request_target, RequestTarget::None)
        {
            calls.push(*call);
        }
        self.request_switches = false;
        self.requests.buf.clear();
        self.requests.stage = Stage::Seek(resume);
    }

    fn hold(&mut self, bytes: &[u8], time_ns: u64) {
        let held = &mut self.held;
        let room = self
            .limits
            .max_buffered_bytes
            .saturating_sub(held.bytes.len());
        let kept = if held.lost == 0 {
            bytes.get(..room).unwrap_or(bytes)
        } else {
            &[]
        };
        if !kept.is_empty()
            && held.times.len() < MAX_HELD_TIMES
            && held.times.last().is_none_or(|&(_, time)| time != time_ns)
        {
            held.times.push((held.bytes.len(), time_ns));
        }
        held.bytes.extend_from_slice(kept);
        held.lost = held
            .lost
            .saturating_add(bytes.len().saturating_sub(kept.len()) as u64);
    }

    /// The switching request was answered without a switch: what the client sent after it is
    /// HTTP/1 again.
    fn release_held(&mut self, calls: &mut Vec<Call>) {
        if self.requests.stage != Stage::Held {
            return;
        }
        let held = mem::take(&mut self.held);
        self.requests.stage = Stage::Seek(StartLine::LineStart);
        for (index, &(start, time_ns)) in held.times.iter().enumerate() {
            let end = held
                .times
                .get(index.saturating_add(1))
                .map_or(held.bytes.len(), |&(next, _)| next);
            if let Some(bytes) = held.bytes.get(start..end) {
                self.feed(Direction::Request, bytes, time_ns, calls);
            }
        }
        if held.lost > 0 {
            self.gap_requests(held.lost, calls);
        }
    }

    fn on_response_head(&mut self, time_ns: u64, calls: &mut Vec<Call>) {
        let head = mem::take(&mut self.responses.buf);
        match parse_response_head(&head, &self.limits) {
            Some(parsed) => self.answer(parsed, head.len() as u64, time_ns, calls),
            None => self.record_unusable_response(&head, StartLine::LineStart, time_ns, calls),
        }
        self.responses.reuse(head);
    }

    fn answer(&mut self, parsed: ResponseHead, head_len: u64, time_ns: u64, calls: &mut Vec<Call>) {
        self.responses.stage = Stage::Seek(StartLine::LineStart);
        if parsed.status != 101 && (100..200).contains(&parsed.status) {
            // Interim: the final response of the same request follows.
            let interim = &mut self.interim;
            interim
                .first_byte_ns
                .get_or_insert(self.responses.started_ns);
            interim.wire_bytes = interim.wire_bytes.saturating_add(head_len);
            return;
        }
        let mut answer = self.next_answer();
        let interim = mem::take(&mut self.interim);
        let first_byte_ns = interim.first_byte_ns.unwrap_or(self.responses.started_ns);
        let wire_bytes = interim.wire_bytes.saturating_add(head_len);
        let call = &mut answer.exchange.call;
        let connect_accepted =
            call.method.as_deref() == Some("CONNECT") && (200..300).contains(&parsed.status);
        if parsed.status == 101
            && answer.record
            && answer.exchange.offers_h2c
            && parsed.accepts_h2c
            && self.held.lost == 0
        {
            self.upgrade = Some(H2cUpgrade {
                request: answer.exchange.call,
                request_rest: mem::take(&mut self.held.bytes),
                response_rest: Vec::new(),
            });
            self.stop(Connection::HandedOff);
            return;
        }
        call.status = Some(parsed.status);
        call.response.headers = parsed.headers;
        call.flags.truncated |= parsed.headers_truncated;
        call.response.first_byte_ns = first_byte_ns;
        call.response.last_byte_ns = time_ns;
        call.response.wire_bytes = wire_bytes;
        if parsed.status == 101 || connect_accepted {
            call.response.complete = true;
            if answer.record {
                calls.push(answer.exchange.call);
            }
            self.stop(Connection::Tunnel);
            return;
        }
        match response_framing(call.method.as_deref(), parsed.status, parsed.declared) {
            Some(framing) => {
                self.answering = Some(answer);
                self.responses.stage = Stage::Body(framing);
            }
            None => {
                call.response.complete = true;
                if answer.record {
                    calls.push(answer.exchange.call);
                }
            }
        }
        self.release_if_answered(calls);
    }

    /// The exchange the next final response belongs to: the oldest waiting request, or none
    /// (a response whose request we never saw).
    fn next_answer(&mut self) -> Answer {
        let seq = self.next_seq;
        match self.waiting.pop_front() {
            Some(Waiting::Exchange(exchange)) => Answer {
                exchange: *exchange,
                record: true,
            },
            Some(Waiting::Untracked(count)) => {
                if count > 1 {
                    self.waiting.push_front(Waiting::Untracked(count - 1));
                }
                self.next_seq = self.next_seq.wrapping_add(1);
                Answer {
                    exchange: Exchange {
                        seq,
                        call: Call::new(Protocol::Http1),
                        offers_h2c: false,
                    },
                    record: false,
                }
            }
            None => {
                self.next_seq = self.next_seq.wrapping_add(1);
                let mut call = Call::new(Protocol::Http1);
                call.flags.mid_stream = self.mid_stream;
                call.flags.gap = self.requests_lost;
                Answer {
                    exchange: Exchange {
                        seq,
                        call,
                        offers_h2c: false,
                    },
                    record: true,
                }
            }
        }
    }

    /// Once the switching request (always the newest) has its final answer and no switch
    /// happened, what was held behind it is parsed.
    fn release_if_answered(&mut self, calls: &mut Vec<Call>) {
        if self.waiting.is_empty() {
            self.release_held(calls);
        }
    }

    fn unusable_response_head(&mut self, resume: StartLine, time_ns: u64, calls: &mut Vec<Call>) {
        let head = mem::take(&mut self.responses.buf);
        self.record_unusable_response(&head, resume, time_ns, calls);
        self.responses.reuse(head);
    }

    /// A response head we cannot use: the exchange it answers ends here with the status line's
    /// status; its body, of unknown length, is skipped by looking for the next status line.
    fn record_unusable_response(
        &mut self,
        head: &[u8],
        resume: StartLine,
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) {
        self.responses.stage = Stage::Seek(resume);
        let status = status_line_code(head);
        if status.is_some_and(|status| status != 101 && (100..200).contains(&status)) {
            return;
        }
        let mut answer = self.next_answer();
        let interim = mem::take(&mut self.interim);
        let call = &mut answer.exchange.call;
        call.status = status;
        call.flags.truncated = true;
        call.response.first_byte_ns = interim.first_byte_ns.unwrap_or(self.responses.started_ns);
        call.response.last_byte_ns = time_ns;
        call.response.wire_bytes = interim.wire_bytes.saturating_add(head.len() as u64);
        if answer.record {
            calls.push(answer.exchange.call);
        }
        self.release_if_answered(calls);
    }

    fn read_response_body(&mut self, input: &[u8], time_ns: u64, calls: &mut Vec<Call>) -> usize {
        let Stage::Body(framing) = &mut self.responses.stage else {
            return 0;
        };
        let call = self
            .answering
            .as_mut()
            .map(|answer| &mut answer.exchange.call);
        let sink = Sink::new(call, Direction::Response);
        let (used, progress) = read_body(
            framing,
            &mut self.responses.buf,
            input,
            time_ns,
            &self.limits,
            sink,
        );
        match progress {
            BodyProgress::More => {}
            BodyProgress::Ended => self.end_response(calls),
            BodyProgress::Broken => self.break_response(false, StartLine::SkipLine, calls),
        }
        used
    }

    fn end_response(&mut self, calls: &mut Vec<Call>) {
        if let Some(mut answer) = self.answering.take() {
            answer.exchange.call.response.complete = true;
            if answer.record {
                calls.push(answer.exchange.call);
            }
        }
        self.responses.buf.clear();
        self.responses.stage = Stage::Seek(StartLine::LineStart);
    }

    fn break_response(&mut self, gap: bool, resume: StartLine, calls: &mut Vec<Call>) {
        if let Some(mut answer) = self.answering.take() {
            flag_cut(&mut answer.exchange.call.flags, gap);
            if answer.record {
                calls.push(answer.exchange.call);
            }
        }
        self.responses.buf.clear();
        self.responses.stage = Stage::Seek(resume);
    }

    fn gap_requests(&mut self, mut len: u64, calls: &mut Vec<Call>) {
        if let Stage::Body(framing) = &mut self.requests.stage {
            let call = request_call(
                &mut self.request_target,
                &mut self.waiting,
                &mut self.answering,
            );
            match skip_body(framing, len, Sink::new(call, Direction::Request)) {
                Skipped::Inside => return,
                Skipped::PastEnd(lost_after) => {
                    self.end_request(calls);
                    if lost_after == 0 {
                        return;
                    }
                    len = lost_after;
                }
                Skipped::Unknown => self.break_request(true, StartLine::LineStart, calls),
            }
        }
        if self.requests.stage == Stage::Held {
            self.held.lost = self.held.lost.saturating_add(len);
            return;
        }
        // Whole requests may have been lost; the next byte may start one.
        self.requests.buf.clear();
        self.requests.stage = Stage::Seek(StartLine::LineStart);
        self.requests.after_gap = true;
        self.requests_lost = true;
    }

    fn gap_responses(&mut self, len: u64, calls: &mut Vec<Call>) {
        if let Stage::Body(framing) = &mut self.responses.stage {
            let call = self
                .answering
                .as_mut()
                .map(|answer| &mut answer.exchange.call);
            match skip_body(framing, len, Sink::new(call, Direction::Response)) {
                Skipped::Inside => return,
                Skipped::PastEnd(lost_after) => {
                    self.end_response(calls);
                    if lost_after == 0 {
                        return;
                    }
                }
                Skipped::Unknown => {
                    self.break_response(true, StartLine::LineStart, calls);
                    return;
                }
            }
        }
        self.responses.buf.clear();
        self.responses.stage = Stage::Seek(StartLine::LineStart);
        self.interim = Interim::default();
        // Responses come in request order, so lost bytes at or after a message start belong to
        // the oldest waiting request's response.
        if !self.waiting.is_empty() {
            let mut answer = self.next_answer();
            answer.exchange.call.flags.gap = true;
            if answer.record {
                calls.push(answer.exchange.call);
            }
            self.release_if_answered(calls);
        }
    }

    /// The connection stops being HTTP/1: drop what was buffered for parsing it.
    fn stop(&mut self, connection: Connection) {
        self.connection = connection;
        self.requests.buf = Vec::new();
        self.responses.buf = Vec::new();
        self.held = Held::default();
    }
}

impl StreamParser for Http1Parser {
    fn data(&mut self, direction: Direction, bytes: &[u8], time_ns: u64, calls: &mut Vec<Call>) {
        self.feed(direction, bytes, time_ns, calls);
    }

    fn gap(&mut self, direction: Direction, len: u64, _time_ns: u64, calls: &mut Vec<Call>) {
        if self.connection != Connection::Http || len == 0 {
            return;
        }
        match direction {
            Direction::Request => self.gap_requests(len, calls),
            Direction::Response => self.gap_responses(len, calls),
        }
    }

    fn close(&mut self, _time_ns: u64, calls: &mut Vec<Call>) {
        if self.connection == Connection::Closed {
            return;
        }
        if let Some(mut answer) = self.answering.take() {
            if self.responses.stage == Stage::Body(Framing::UntilClose) {
                answer.exchange.call.response.complete = true;
            }
            if answer.record {
                calls.push(answer.exchange.call);
            }
        }
        let mut interim = Some(mem::take(&mut self.interim));
        for waiting in mem::take(&mut self.waiting) {
            if let Waiting::Exchange(mut exchange) = waiting {
                // Interim responses belong to the oldest waiting request.
                if let Some(Interim {
                    first_byte_ns: Some(first_byte_ns),
                    wire_bytes,
                }) = interim.take()
                {
                    exchange.call.response.first_byte_ns = first_byte_ns;
                    exchange.call.response.wire_bytes = wire_bytes;
                }
                calls.push(exchange.call);
            }
        }
        if let RequestTarget::Overflow(call) =
            mem::replace(&mut self.request_target, RequestTarget::None)
        {
            calls.push(*call);
        }
        self.stop(Connection::Closed);
    }

    fn buffered_bytes(&self) -> usize {
        let waiting = self.waiting.iter().filter_map(|waiting| match waiting {
            Waiting::Exchange(exchange) => Some(&exchange.call),
            Waiting::Untracked(_) => None,
        });
        let answering = self.answering.as_ref().map(|answer| &answer.exchange.call);
        let overflow = match &self.request_target {
            RequestTarget::Overflow(call) => Some(&**call),
            RequestTarget::None | RequestTarget::Exchange(_) => None,
        };
        let upgrading = self.upgrade.as_ref().map(|upgrade| &upgrade.request);
        let calls: usize = waiting
            .chain(answering)
            .chain(overflow)
            .chain(upgrading)
            .map(kept_bytes)
            .sum();
        let upgrade_rest = self.upgrade.as_ref().map_or(0, |upgrade| {
            upgrade.request_rest.len() + upgrade.response_rest.len()
        });
        self.requests.buf.len()
            + self.responses.buf.len()
            + self.held.bytes.len()
            + upgrade_rest
            + calls
    }
}

/// Memory a call holds that grows with the traffic: header fields and kept bodies.
fn kept_bytes(call: &Call) -> usize {
    let fields = |fields: &[Header]| -> usize {
        fields
            .iter()
            .map(|field| field.name.len() + field.value.len())
            .sum()
    };
    [&call.request, &call.response]
        .iter()
        .map(|message| message.body.len() + fields(&message.headers) + fields(&message.trailers))
        .sum()
}

/// The call the body of the request being read belongs to, wherever it is now.
fn request_call<'a>(
    target: &'a mut RequestTarget,
    waiting: &'a mut VecDeque<Waiting>,
    answering: &'a mut Option<Answer>,
) -> Option<&'a mut Call> {
    match target {
        RequestTarget::None => None,
        RequestTarget::Overflow(call) => Some(call),
        RequestTarget::Exchange(seq) => {
            let seq = *seq;
            // The request being read is the newest: the back of the queue, or (answered early,
            // before its body ended) the one being answered.
            if let Some(Waiting::Exchange(exchange)) = waiting.back_mut()
                && exchange.seq == seq
            {
                return Some(&mut exchange.call);
            }
            answering
                .as_mut()
                .filter(|answer| answer.exchange.seq == seq)
                .map(|answer| &mut answer.exchange.call)
        }
    }
}

/// A message was cut where we could not follow it: by lost bytes, or by framing we could not
/// parse (which, like a bound, leaves the message partly unrecorded).
fn flag_cut(flags: &mut CallFlags, gap: bool) {
    if gap {
        flags.gap = true;
    } else {
        flags.truncated = true;
    }
}

fn after(input: &[u8], used: usize) -> &[u8] {
    input.get(used..).unwrap_or_default()
}

enum HeadRead {
    Partial,
    Complete,
    TooLarge,
}

impl Reader {
    fn new(direction: Direction, start: StartLine) -> Self {
        Self {
            direction,
            stage: Stage::Seek(start),
            buf: Vec::new(),
            searched: 0,
            started_ns: 0,
            after_gap: false,
        }
    }

    /// Gives `buf` back emptied, keeping its allocation for the next head.
    fn reuse(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.buf = buf;
    }

    /// Skips bytes until a start line is recognised (kept in `buf`); returns the bytes used.
    fn seek(&mut self, mut line: StartLine, input: &[u8], time_ns: u64, limit: usize) -> usize {
        let mut used = 0;
        while let Some(&byte) = input.get(used) {
            if line == StartLine::SkipLine {
                let response = self.direction == Direction::Response;
                let rest = after(input, used);
                let next_start = if response {
                    memchr::memchr2(b'\n', b'H', rest)
                } else {
                    memchr::memchr(b'\n', rest)
                };
                match next_start {
                    // A status line may follow a body that did not end its last line.
                    Some(offset) if response && input.get(used + offset) == Some(&b'H') => {
                        used = used.saturating_add(offset);
                        line = StartLine::LineStart;
                        continue;
                    }
                    Some(newline) => {
                        used = used.saturating_add(newline).saturating_add(1);
                        line = StartLine::LineStart;
                        continue;
                    }
                    None => {
                        used = input.len();
                        break;
                    }
                }
            }
            if line == StartLine::LineStart && self.buf.is_empty() {
                let rest = after(input, used);
                if let Some(len) =
                    whole_start_line(self.direction, rest).filter(|&len| len <= limit)
                {
                    self.started_ns = time_ns;
                    self.buf.extend_from_slice(rest.get(..len).unwrap_or(rest));
                    self.searched = 0;
                    self.stage = Stage::Head;
                    return used.saturating_add(len);
                }
            }
            used += 1;
            let step = if self.buf.len() < limit {
                line.next(self.direction, byte)
            } else {
                Recognised::Reject
            };
            match step {
                Recognised::Continue(StartLine::LineStart) => line = StartLine::LineStart,
                Recognised::Continue(next) => {
                    if self.buf.is_empty() {
                        self.started_ns = time_ns;
                    }
                    self.buf.push(byte);
                    line = next;
                }
                Recognised::Accept => {
                    self.buf.push(byte);
                    self.searched = 0;
                    self.stage = Stage::Head;
                    return used;
                }
                Recognised::Reject => {
                    self.buf.clear();
                    line = match byte {
                        b'\n' => StartLine::LineStart,
                        // `HTTP/1.` cannot overlap itself, so a status line can only begin
                        // here if this byte is its `H`.
                        b'H' if self.direction == Direction::Response => {
                            self.started_ns = time_ns;
                            self.buf.push(byte);
                            StartLine::Version(1)
                        }
                        _ => StartLine::SkipLine,
                    };
                }
            }
        }
        self.stage = Stage::Seek(line);
        used
    }

    /// Collects head bytes up to the empty line that ends the head; returns the bytes used.
    fn read_head(&mut self, input: &[u8], limit: usize) -> (usize, HeadRead) {
        let room = limit.saturating_sub(self.buf.len());
        let taken = input.get(..room).unwrap_or(input);
        let before = self.buf.len();
        // Searched where the input lies rather than after copying it: an event carries the
        // body (and more messages) after the head, and only the head is kept.
        let searched = self.searched.min(before);
        let prefix = self.buf.get(searched..).unwrap_or_default();
        if let Some(end) = head_end(prefix, taken) {
            let end = searched.saturating_add(end);
            let used = end.saturating_sub(before);
            self.buf.truncate(end);
            self.buf
                .extend_from_slice(taken.get(..used).unwrap_or(taken));
            return (used, HeadRead::Complete);
        }
        self.buf.extend_from_slice(taken);
        // The last two bytes may begin the terminator.
        self.searched = self.buf.len().saturating_sub(2);
        let read = if self.buf.len() >= limit {
            HeadRead::TooLarge
        } else {
            HeadRead::Partial
        };
        (taken.len(), read)
    }
}

/// End of a head in `prefix` followed by `input`: the offset just past the first empty line (LF
/// LF or LF CR LF).
fn head_end(prefix: &[u8], input: &[u8]) -> Option<usize> {
    let byte = |at: usize| match at.checked_sub(prefix.len()) {
        None => prefix.get(at),
        Some(at) => input.get(at),
    };
    memchr::memchr_iter(b'\n', prefix)
        .chain(memchr::memchr_iter(b'\n', input).map(|at| at.saturating_add(prefix.len())))
        .find_map(|at| match (byte(at + 1), byte(at + 2)) {
            (Some(b'\n'), _) => Some(at + 2),
            (Some(b'\r'), Some(b'\n')) => Some(at + 3),
            _ => None,
        })
}

impl StartLine {
    fn next(self, direction: Direction, byte: u8) -> Recognised {
        use Recognised::{Accept, Continue, Reject};
        use StartLine as S;
        let request = direction == Direction::Request;
        match self {
            S::LineStart if byte == b'\r' || byte == b'\n' => Continue(S::LineStart),
            S::LineStart if request && is_method_byte(byte) => Continue(S::Method(1)),
            S::LineStart if !request && byte == b'H' => Continue(S::Version(1)),
            S::Method(len) if is_method_byte(byte) && len < MAX_METHOD_LEN => {
                Continue(S::Method(len + 1))
            }
            S::Method(_) if byte == b' ' => Continue(S::TargetStart),
            S::TargetStart | S::Target if is_target_byte(byte) => Continue(S::Target),
            S::Target if byte == b' ' => Continue(S::Version(0)),
            S::Version(len) if VERSION_PREFIX.get(len) == Some(&byte) => {
                if len + 1 == VERSION_PREFIX.len() {
                    Continue(S::Minor)
                } else {
                    Continue(S::Version(len + 1))
                }
            }
            S::Minor if byte == b'0' || byte == b'1' => Continue(if request {
                S::RequestLineEnd
            } else {
                S::StatusSpace
            }),
            S::RequestLineEnd if byte == b'\r' => Continue(S::RequestLineCr),
            S::RequestLineEnd | S::RequestLineCr if byte == b'\n' => Accept,
            S::StatusSpace if byte == b' ' => Continue(S::Status(0)),
            S::Status(digits) if byte.is_ascii_digit() => Continue(if digits + 1 == 3 {
                S::StatusEnd
            } else {
                S::Status(digits + 1)
            }),
            S::StatusEnd if matches!(byte, b' ' | b'\r' | b'\n') => Accept,
            _ => Reject,
        }
    }
}

/// Length of the start line `input` begins with, up to and including the byte the recogniser
/// accepts it on, when all of it is there and well formed: what `StartLine::next` accepts from
/// `LineStart`, read without stepping through its states, since that is how nearly every message
/// begins. None leaves the line to the recogniser.
fn whole_start_line(direction: Direction, input: &[u8]) -> Option<usize> {
    let minor = |rest: &[u8]| -> Option<usize> {
        let rest = rest.strip_prefix(VERSION_PREFIX)?;
        matches!(rest.first(), Some(b'0' | b'1')).then_some(VERSION_PREFIX.len() + 1)
    };
    match direction {
        Direction::Request => {
            let method = input
                .iter()
                .take_while(|&&byte| is_method_byte(byte))
                .count();
            if method == 0 || method > MAX_METHOD_LEN {
                return None;
            }
            let rest = input.get(method..)?.strip_prefix(b" ")?;
            let target = rest
                .iter()
                .take_while(|&&byte| is_target_byte(byte))
                .count();
            if target == 0 {
                return None;
            }
            let rest = rest.get(target..)?.strip_prefix(b" ")?;
            let rest = rest.get(minor(rest)?..)?;
            let rest = rest.strip_prefix(b"\r").unwrap_or(rest);
            let rest = rest.strip_prefix(b"\n")?;
            Some(input.len() - rest.len())
        }
        Direction::Response => {
            let rest = input.get(minor(input)?..)?.strip_prefix(b" ")?;
            let (status, rest) = rest.split_at_checked(3)?;
            let end = rest.first()?;
            (status.iter().all(u8::is_ascii_digit) && matches!(end, b' ' | b'\r' | b'\n'))
                .then(|| input.len() - rest.len() + 1)
        }
    }
}

/// Methods in the wild are upper-case tokens; demanding that keeps prose from passing as one.
fn is_method_byte(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte == b'-' || byte == b'_'
}

/// What httparse accepts in a request target.
fn is_target_byte(byte: u8) -> bool {
    byte > b' ' && byte != 0x7f
}

/// Method and target of a start line the recogniser accepted.
fn request_line(head: &[u8]) -> Option<(String, String)> {
    let line = head.split(|&byte| byte == b'\n').next()?;
    let mut parts = line.split(|&byte| byte == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    Some((text(method), text(target)))
}

/// Status of a status line the recogniser accepted (`HTTP/1.x NNN`).
fn status_line_code(head: &[u8]) -> Option<u16> {
    let digits = head.get(VERSION_PREFIX.len() + 2..VERSION_PREFIX.len() + 5)?;
    parse_decimal(digits).and_then(|status| u16::try_from(status).ok())
}

struct RequestHead {
    call: Call,
    /// None: the request has no body.
    body: Option<Framing>,
    switches_protocol: bool,
    offers_h2c: bool,
}

struct ResponseHead {
    status: u16,
    headers: Vec<Header>,
    headers_truncated: bool,
    declared: Declared,
    accepts_h2c: bool,
}

/// What a message's framing headers declare about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Nothing,
    Length(u64),
    Chunked,
    /// A transfer coding other than chunked last: the body runs to the connection's end.
    OtherCoding,
}

/// Room for every field a head can hold: each takes at least one line.
fn field_capacity(block: &[u8]) -> usize {
    block.iter().filter(|&&byte| byte == b'\n').count().max(1)
}

/// Header slots a head is parsed into without allocating: more fields than nearly any head has.
const STACK_FIELDS: usize = 64;

/// Uninitialised slots for every field `block` can hold: on the stack when they fit there.
fn field_slots<'s, 'b>(
    block: &[u8],
    stack: &'s mut [MaybeUninit<httparse::Header<'b>>; STACK_FIELDS],
    heap: &'s mut Vec<MaybeUninit<httparse::Header<'b>>>,
) -> &'s mut [MaybeUninit<httparse::Header<'b>>] {
    let needed = field_capacity(block);
    if needed <= STACK_FIELDS {
        return stack;
    }
    heap.resize(needed, MaybeUninit::uninit());
    heap
}

fn parse_request_head(head: &[u8], limits: &Limits) -> Option<RequestHead> {
    let (mut stack, mut heap) = ([MaybeUninit::uninit(); STACK_FIELDS], Vec::new());
    let slots = field_slots(head, &mut stack, &mut heap);
    let mut request = httparse::Request::new(&mut []);
    let mut config = httparse::ParserConfig::default();
    // The server already decided what it accepts; a bystander records, it does not judge.
    config.ignore_invalid_headers_in_requests(true);
    if !config
        .parse_request_with_uninit_headers(&mut request, head, slots)
        .ok()?
        .is_complete()
    {
        return None;
    }
    let method = request.method?;
    let target = request.path?;
    let fields = &*request.headers;
    let declared = declared_body(fields)?;
    let mut call = Call::new(Protocol::Http1);
    set_target(&mut call, method, target);
    call.method = Some(method.to_owned());
    call.request.headers = kept_fields(fields, limits.max_headers, &mut call.flags);
    if call.authority.is_none() {
        call.authority = field_values(fields, "host").next().map(text);
    }
    let body = match declared {
        Declared::Chunked => Some(Framing::Chunked(Chunk::SizeLine)),
        Declared::Length(0) | Declared::Nothing => None,
        Declared::Length(len) => Some(Framing::Length(len)),
        // A request body nobody can delimit: servers reject it, we cannot follow it.
        Declared::OtherCoding => return None,
    };
    Some(RequestHead {
        call,
        body,
        switches_protocol: method == "CONNECT" || field_values(fields, "upgrade").next().is_some(),
        offers_h2c: has_token(fields, "upgrade", "h2c"),
    })
}

fn parse_response_head(head: &[u8], limits: &Limits) -> Option<ResponseHead> {
    let (mut stack, mut heap) = ([MaybeUninit::uninit(); STACK_FIELDS], Vec::new());
    let slots = field_slots(head, &mut stack, &mut heap);
    let mut response = httparse::Response::new(&mut []);
    let mut config = httparse::ParserConfig::default();
    // Clients tolerate these from real servers, so must we.
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_responses(true);
    if !config
        .parse_response_with_uninit_headers(&mut response, head, slots)
        .ok()?
        .is_complete()
    {
        return None;
    }
    let status = response.code?;
    let fields = &*response.headers;
    let mut flags = CallFlags::default();
    Some(ResponseHead {
        status,
        declared: declared_body(fields)?,
        accepts_h2c: has_token(fields, "upgrade", "h2c"),
        headers: kept_fields(fields, limits.max_headers, &mut flags),
        headers_truncated: flags.truncated,
    })
}

/// The body framing of a response (RFC 9112 §6.3); None when it has no body.
fn response_framing(method: Option<&str>, status: u16, declared: Declared) -> Option<Framing> {
    if method == Some("HEAD") || status == 204 || status == 304 || (100..200).contains(&status) {
        return None;
    }
    match declared {
        Declared::Chunked => Some(Framing::Chunked(Chunk::SizeLine)),
        Declared::Length(0) => None,
        Declared::Length(len) => Some(Framing::Length(len)),
        Declared::Nothing | Declared::OtherCoding => Some(Framing::UntilClose),
    }
}

/// None when Content-Length is malformed or contradicts itself: the message cannot be delimited.
fn declared_body(fields: &[httparse::Header<'_>]) -> Option<Declared> {
    let codings: Vec<&[u8]> = field_values(fields, "transfer-encoding")
        .flat_map(|value| value.split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        return Some(if last.eq_ignore_ascii_case(b"chunked") {
            Declared::Chunked
        } else {
            Declared::OtherCoding
        });
    }
    let mut length = None;
    for item in field_values(fields, "content-length").flat_map(|value| value.split(|&b| b == b','))
    {
        let item = parse_decimal(item.trim_ascii())?;
        if length.is_some_and(|length| length != item) {
            return None;
        }
        length = Some(item);
    }
    Some(length.map_or(Declared::Nothing, Declared::Length))
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = char::from(byte).to_digit(10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn field_values<'a>(
    fields: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |field| field.name.eq_ignore_ascii_case(name))
        .map(|field| field.value)
}

fn has_token(fields: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    field_values(fields, name)
        .flat_map(|value| value.split(|&byte| byte == b','))
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn kept_fields(fields: &[httparse::Header<'_>], max: usize, flags: &mut CallFlags) -> Vec<Header> {
    if fields.len() > max {
        flags.truncated = true;
    }
    fields
        .iter()
        .take(max)
        .map(|field| Header::new(field.name.as_bytes(), field.value))
        .collect()
}

/// Fills method-independent target fields: authority-form for CONNECT, absolute-form
/// (`http://host/p?q`, as sent to proxies), or origin-form.
fn set_target(call: &mut Call, method: &str, target: &str) {
    if method == "CONNECT" {
        call.authority = Some(target.to_owned());
        return;
    }
    let (path, query) = match absolute_form(target) {
        Some((authority, rest)) => {
            call.authority = (!authority.is_empty()).then(|| authority.to_owned());
            if rest.starts_with('/') {
                split_target(rest)
            } else {
                // An empty path in absolute form means `/`.
                split_target(&format!("/{rest}"))
            }
        }
        None => split_target(target),
    };
    call.path = Some(path);
    call.query = query;
}

/// (authority without userinfo, path and query) of an absolute-form target. Userinfo is dropped:
/// records must not carry credentials.
fn absolute_form(target: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = target.split_once("://")?;
    let mut scheme = scheme.chars();
    let valid_scheme = scheme.next()?.is_ascii_alphabetic()
        && scheme.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at_checked(end)?;
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Some((host, path))
}

/// Where body bytes are recorded: a message of a call, or nowhere (the call was already emitted
/// or is not tracked) while the framing is still followed.
struct Sink<'a> {
    target: Option<(&'a mut Message, &'a mut CallFlags)>,
}

impl<'a> Sink<'a> {
    fn new(call: Option<&'a mut Call>, direction: Direction) -> Self {
        let target = call.map(|call| {
            let message = match direction {
                Direction::Request => &mut call.request,
                Direction::Response => &mut call.response,
            };
            (message, &mut call.flags)
        });
        Self { target }
    }

    fn framing(&mut self, len: usize, time_ns: u64) {
        if let Some((message, _)) = &mut self.target {
            message.wire_bytes = message.wire_bytes.saturating_add(len as u64);
            message.last_byte_ns = time_ns;
        }
    }

    fn data(&mut self, data: &[u8], time_ns: u64, max_body_bytes: usize) {
        self.framing(data.len(), time_ns);
        if let Some((message, flags)) = &mut self.target {
            message.body_bytes = message.body_bytes.saturating_add(data.len() as u64);
            let room = max_body_bytes.saturating_sub(message.body.len());
            let kept = data.get(..room).unwrap_or(data);
            message.body.extend_from_slice(kept);
            if kept.len() < data.len() {
                flags.truncated = true;
            }
        }
    }

    /// `len` more body bytes are declared: room for what of them is kept is made at once, not
    /// grown event by event.
    fn expect(&mut self, len: u64, max_body_bytes: usize) {
        if let Some((message, _)) = &mut self.target {
            let room = max_body_bytes.saturating_sub(message.body.len());
            message.body.reserve(clamp(len, room));
        }
    }

    fn lost(&mut self, len: u64) {
        if let Some((message, flags)) = &mut self.target {
            message.body_bytes = message.body_bytes.saturating_add(len);
            message.wire_bytes = message.wire_bytes.saturating_add(len);
            flags.gap = true;
        }
    }

    fn trailers(&mut self, block: &[u8], max_headers: usize) {
        if let Some((message, flags)) = &mut self.target {
            let mut fields = vec![httparse::EMPTY_HEADER; field_capacity(block)];
            match httparse::parse_headers(block, &mut fields) {
                Ok(httparse::Status::Complete((_, fields))) => {
                    message.trailers = kept_fields(fields, max_headers, flags);
                }
                _ => flags.truncated = true,
            }
        }
    }
}

enum BodyProgress {
    More,
    Ended,
    /// The framing cannot be followed any further.
    Broken,
}

/// Reads body bytes (and chunk framing, assembling size lines and trailers in `line`); returns
/// the bytes used.
fn read_body(
    framing: &mut Framing,
    line: &mut Vec<u8>,
    input: &[u8],
    time_ns: u64,
    limits: &Limits,
    mut sink: Sink<'_>,
) -> (usize, BodyProgress) {
    let mut used = 0;
    loop {
        let rest = after(input, used);
        if rest.is_empty() {
            return (used, BodyProgress::More);
        }
        match framing {
            Framing::UntilClose => {
                sink.data(rest, time_ns, limits.max_body_bytes);
                return (input.len(), BodyProgress::More);
            }
            Framing::Length(remaining) | Framing::Chunked(Chunk::Data(remaining)) => {
                let data = rest.get(..clamp(*remaining, rest.len())).unwrap_or(rest);
                sink.expect(*remaining, limits.max_body_bytes);
                sink.data(data, time_ns, limits.max_body_bytes);
                used += data.len();
                *remaining = remaining.saturating_sub(data.len() as u64);
                if *remaining == 0 {
                    match framing {
                        Framing::Length(_) => return (used, BodyProgress::Ended),
                        _ => *framing = Framing::Chunked(Chunk::DataEnd(false)),
                    }
                }
            }
            Framing::Chunked(Chunk::DataEnd(seen_cr)) => {
                let byte = rest.first().copied().unwrap_or_default();
                used += 1;
                sink.framing(1, time_ns);
                *framing = match (*seen_cr, byte) {
                    (false, b'\r') => Framing::Chunked(Chunk::DataEnd(true)),
                    (_, b'\n') => Framing::Chunked(Chunk::SizeLine),
                    _ => return (used, BodyProgress::Broken),
                };
            }
            Framing::Chunked(Chunk::SizeLine) => {
                let (taken, complete) = take_line(line, rest, limits.max_buffered_bytes);
                used += taken;
                sink.framing(taken, time_ns);
                if !complete {
                    let full = line.len() >= limits.max_buffered_bytes;
                    let progress = if full {
                        BodyProgress::Broken
                    } else {
                        BodyProgress::More
                    };
                    return (used, progress);
                }
                let size = chunk_size(line);
                line.clear();
                *framing = match size {
                    Some(0) => Framing::Chunked(Chunk::Trailers),
                    Some(size) => Framing::Chunked(Chunk::Data(size)),
                    None => return (used, BodyProgress::Broken),
                };
            }
            Framing::Chunked(Chunk::Trailers) => {
                let (taken, complete) = take_line(line, rest, limits.max_buffered_bytes);
                used += taken;
                sink.framing(taken, time_ns);
                if complete && ends_with_empty_line(line) {
                    sink.trailers(line, limits.max_headers);
                    line.clear();
                    return (used, BodyProgress::Ended);
                }
                if line.len() >= limits.max_buffered_bytes {
                    return (used, BodyProgress::Broken);
                }
            }
        }
    }
}

fn clamp(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |remaining| remaining.min(available))
}

/// Appends `input` up to and including its first LF, within `limit`; returns the bytes taken and
/// whether the line is complete.
fn take_line(line: &mut Vec<u8>, input: &[u8], limit: usize) -> (usize, bool) {
    let room = limit.saturating_sub(line.len());
    let (wanted, complete) = match memchr::memchr(b'\n', input) {
        Some(newline) => (newline.saturating_add(1), true),
        None => (input.len(), false),
    };
    if wanted > room {
        let taken = input.get(..room).unwrap_or(input);
        line.extend_from_slice(taken);
        return (taken.len(), false);
    }
    line.extend_from_slice(input.get(..wanted).unwrap_or(input));
    (wanted, complete)
}

/// The trailer section ends with an empty line (it may be the only line).
fn ends_with_empty_line(block: &[u8]) -> bool {
    block == b"\n" || block == b"\r\n" || block.ends_with(b"\n\n") || block.ends_with(b"\n\r\n")
}

/// `1a;ext=value\r\n` -> 26. Extensions are ignored; sizes over 64 bits are malformed.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let size = line.split(|&byte| byte == b';').next()?.trim_ascii();
    if size.is_empty() || size.len() > 16 {
        return None;
    }
    size.iter().try_fold(0u64, |value, &byte| {
        let digit = char::from(byte).to_digit(16)?;
        Some((value << 4) | u64::from(digit))
    })
}

enum Skipped {
    /// The lost bytes were all body bytes of known extent.
    Inside,
    /// The message ended inside the lost bytes; this many lost bytes came after it.
    PastEnd(u64),
    /// The lost bytes held framing: where the message ends is unknown.
    Unknown,
}

fn skip_body(framing: &mut Framing, len: u64, mut sink: Sink<'_>) -> Skipped {
    match framing {
        Framing::UntilClose => {
            sink.lost(len);
            Skipped::Inside
        }
        Framing::Length(remaining) if len < *remaining => {
            *remaining -= len;
            sink.lost(len);
            Skipped::Inside
        }
        Framing::Length(remaining) => {
            sink.lost(*remaining);
            Skipped::PastEnd(len - *remaining)
        }
        // Chunk data of known size is skipped like a Content-Length body.
        Framing::Chunked(Chunk::Data(remaining)) if len <= *remaining => {
            *remaining -= len;
            sink.lost(len);
            if *remaining == 0 {
                *framing = Framing::Chunked(Chunk::DataEnd(false));
            }
            Skipped::Inside
        }
        Framing::Chunked(_) => Skipped::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CURL_GET: &[u8] = b"GET /api/v1/users?id=42&full=1 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

    /// A connection under test: everything emitted so far, in order.
    struct Wire {
        parser: Http1Parser,
        calls: Vec<Call>,
    }

    impl Wire {
        fn new() -> Self {
            Self::with(Limits::default(), false)
        }

        fn with(limits: Limits, mid_stream: bool) -> Self {
            Self {
                parser: Http1Parser::new(limits, mid_stream),
                calls: Vec::new(),
            }
        }

        fn request(&mut self, bytes: &[u8], time_ns: u64) -> &mut Self {
            self.parser
                .data(Direction::Request, bytes, time_ns, &mut self.calls);
            self
        }

        fn response(&mut self, bytes: &[u8], time_ns: u64) -> &mut Self {
            self.parser
                .data(Direction::Response, bytes, time_ns, &mut self.calls);
            self
        }

        fn gap(&mut self, direction: Direction, len: u64) -> &mut Self {
            self.parser.gap(direction, len, 0, &mut self.calls);
            self
        }

        fn close(&mut self) -> &mut Self {
            self.parser.close(0, &mut self.calls);
            self
        }

        fn only_call(&self) -> &Call {
            match self.calls.as_slice() {
                [call] => call,
                calls => panic!("expected one call, got {}: {calls:#?}", calls.len()),
            }
        }
    }

    /// What nginx sends for a small JSON body.
    fn nginx_json(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Tue, 14 May 2024 10:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\n\r\n").into_bytes()
    }

    fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
        message
            .headers
            .iter()
            .find(|field| field.name == name)
            .map(|field| field.value.as_str())
    }

    #[test]
    fn records_a_curl_request_and_nginx_response() {
        let response = nginx_json(r#"{"id":42}"#);
        let mut wire = Wire::new();
        wire.request(CURL_GET, 100).response(&response, 250);
        let call = wire.only_call();
        assert_eq!(call.protocol, Protocol::Http1);
        assert_eq!(call.method.as_deref(), Some("GET"));
        assert_eq!(call.authority.as_deref(), Some("api.example.com"));
        assert_eq!(call.path.as_deref(), Some("/api/v1/users"));
        assert_eq!(call.query.as_deref(), Some("id=42&full=1"));
        assert_eq!(call.status, Some(200));
        assert_eq!(header(&call.request, "User-Agent"), Some("curl/8.5.0"));
        assert_eq!(header(&call.response, "Server"), Some("nginx/1.24.0"));
        assert_eq!(call.request.headers.len(), 3);
        assert_eq!(call.response.body, br#"{"id":42}"#);
        assert_eq!(call.response.body_bytes, 9);
        assert_eq!(call.request.wire_bytes, CURL_GET.len() as u64);
        assert_eq!(call.response.wire_bytes, response.len() as u64);
        assert_eq!(call.request.body_bytes, 0);
        assert!(call.request.complete && call.response.complete);
        assert_eq!(
            (call.request.first_byte_ns, call.request.last_byte_ns),
            (100, 100)
        );
        assert_eq!(
            (call.response.first_byte_ns, call.response.last_byte_ns),
            (250, 250)
        );
        assert_eq!(call.latency_ns(), Some(150));
        assert_eq!(call.flags, CallFlags::default());
        assert_eq!(wire.parser.buffered_bytes(), 0);
    }

    #[test]
    fn header_names_keep_their_case_and_values_are_lossy_utf8() {
        let mut wire = Wire::new();
        wire.request(b"GET / HTTP/1.1\r\nhost: a\r\nX-MiXeD: caf\xe9\r\n\r\n", 1)
            .response(b"HTTP/1.1 204 No Content\r\n\r\n", 2);
        let call = wire.only_call();
        assert_eq!(call.request.headers[0].name, "host");
        assert_eq!(call.authority.as_deref(), Some("a"));
        assert_eq!(header(&call.request, "X-MiXeD"), Some("caf\u{fffd}"));
    }

    #[test]
    fn timestamps_come_from_the_events_carrying_first_and_last_bytes() {
        let response = nginx_json("hello world");
        let (head, body) = response.split_at(response.len() - 5);
        let mut wire = Wire::new();
        wire.request(&CURL_GET[..10], 10)
            .request(&CURL_GET[10..], 20)
            .response(head, 30)
            .response(body, 40);
        let call = wire.only_call();
        assert_eq!(
            (call.request.first_byte_ns, call.request.last_byte_ns),
            (10, 20)
        );
        assert_eq!(
            (call.response.first_byte_ns, call.response.last_byte_ns),
            (30, 40)
        );
    }

    #[test]
    fn keep_alive_connection_yields_a_call_per_exchange_as_it_goes() {
        let mut wire = Wire::new();
        for (index, path) in ["/a", "/b", "/c"].iter().enumerate() {
            wire.request(&get(path), 1).response(&nginx_json(path), 2);
            assert_eq!(wire.calls.len(), index + 1, "call for {path} not emitted");
        }
        let paths: Vec<_> = wire.calls.iter().map(|c| c.path.as_deref()).collect();
        assert_eq!(paths, [Some("/a"), Some("/b"), Some("/c")]);
        let bodies: Vec<_> = wire.calls.iter().map(|c| c.response.body.clone()).collect();
        assert_eq!(bodies, [b"/a".to_vec(), b"/b".to_vec(), b"/c".to_vec()]);
    }

    #[test]
    fn pipelined_responses_pair_with_requests_in_order() {
        let mut wire = Wire::new();
        let requests = [get("/1"), get("/2"), get("/3")].concat();
        let responses = [nginx_json("one"), nginx_json("two"), nginx_json("three")].concat();
        wire.request(&requests, 1);
        assert!(wire.calls.is_empty());
        wire.response(&responses, 2);
        let pairs: Vec<_> = wire
            .calls
            .iter()
            .map(|c| (c.path.clone().unwrap_or_default(), c.response.body.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/1".to_owned(), b"one".to_vec()),
                ("/2".to_owned(), b"two".to_vec()),
                ("/3".to_owned(), b"three".to_vec())
            ]
        );
    }

    #[test]
    fn pipelining_beyond_the_queue_bound_records_requests_alone() {
        let limits = Limits {
            max_pending_calls: 2,
            ..Limits::default()
        };
        let mut wire = Wire::with(limits, false);
        let requests: Vec<u8> = (1..=4).flat_map(|n| get(&format!("/{n}"))).collect();
        wire.request(&requests, 1);
        // The two that did not fit are recorded at once, flagged, without a response.
        assert_eq!(wire.calls.len(), 2);
        for call in &wire.calls {
            assert!(call.flags.truncated && call.status.is_none());
        }
        let responses: Vec<u8> = (1..=4).flat_map(|n| nginx_json(&n.to_string())).collect();
        wire.response(&responses, 2).close();
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| (c.path.clone().unwrap_or_default(), c.response.body.clone()))
            .collect();
        assert_eq!(
            recorded,
            [
                ("/3".to_owned(), vec![]),
                ("/4".to_owned(), vec![]),
                ("/1".to_owned(), b"1".to_vec()),
                ("/2".to_owned(), b"2".to_vec()),
            ]
        );
        // Back in step: the queue has room again.
        wire.request(&get("/5"), 3);
        assert_eq!(wire.calls.len(), 4, "closed parser must ignore bytes");
    }

    #[test]
    fn queue_has_room_again_once_responses_drain_it() {
        let limits = Limits {
            max_pending_calls: 1,
            ..Limits::default()
        };
        let mut wire = Wire::with(limits, false);
        wire.request(&[get("/1"), get("/2")].concat(), 1)
            .response(&[nginx_json("1"), nginx_json("2")].concat(), 2)
            .request(&get("/3"), 3)
            .response(&nginx_json("3"), 4);
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| (c.path.clone().unwrap_or_default(), c.status))
            .collect();
        assert_eq!(
            recorded,
            [
                ("/2".to_owned(), None),
                ("/1".to_owned(), Some(200)),
                ("/3".to_owned(), Some(200))
            ]
        );
    }

    #[test]
    fn chunked_response_with_extensions_and_trailers() {
        let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: abc123\r\nX-Other: 1\r\n\r\n";
        let mut wire = Wire::new();
        wire.request(&get("/stream"), 1).response(response, 2);
        let call = wire.only_call();
        assert_eq!(call.response.body, b"hello, world");
        assert_eq!(call.response.body_bytes, 12);
        assert_eq!(call.response.wire_bytes, response.len() as u64);
        let trailers: Vec<_> = call
            .response
            .trailers
            .iter()
            .map(|t| (&*t.name, t.value.as_str()))
            .collect();
        assert_eq!(trailers, [("X-Checksum", "abc123"), ("X-Other", "1")]);
        assert!(call.response.complete);
    }

    #[test]
    fn chunked_request_body_is_decoded() {
        let request = b"POST /upload HTTP/1.1\r\nHost: files.example.com\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
        let mut wire = Wire::new();
        wire.request(request, 1)
            .response(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 2);
        let call = wire.only_call();
        assert_eq!(call.request.body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(call.request.wire_bytes, request.len() as u64);
        assert!(call.request.trailers.is_empty());
        assert_eq!(call.status, Some(201));
    }

    #[test]
    fn content_length_request_body_is_kept_up_to_the_limit() {
        let limits = Limits {
            max_body_bytes: 4,
            ..Limits::default()
        };
        let request = b"PUT /doc HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
        let mut wire = Wire::with(limits, false);
        wire.request(request, 1).response(&nginx_json("ok"), 2);
        let call = wire.only_call();
        assert_eq!(call.request.body, b"0123");
        assert_eq!(call.request.body_bytes, 10);
        assert_eq!(call.request.wire_bytes, request.len() as u64);
        assert!(call.flags.truncated && call.request.complete);
    }

    #[test]
    fn response_without_length_ends_at_close() {
        let mut wire = Wire::new();
        wire.request(&get("/legacy"), 1)
            .response(
                b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ",
                2,
            )
            .response(b"this", 3);
        assert!(wire.calls.is_empty());
        let response_header = "Content-Type".len() + "text/plain".len();
        assert_eq!(
            wire.parser.buffered_bytes(),
            request_header_bytes(&get("/legacy")) + response_header + 11
        );
        wire.close();
        let call = wire.only_call();
        assert_eq!(call.response.body, b"all of this");
        assert!(call.response.complete);
        assert_eq!(call.response.last_byte_ns, 3);
        assert_eq!(wire.parser.buffered_bytes(), 0);
    }

    /// Header bytes a call holds for a request.
    fn request_header_bytes(request: &[u8]) -> usize {
        let head = parse_request_head(request, &Limits::default()).expect("valid request");
        kept_bytes(&head.call)
    }

    #[test]
    fn request_without_body_is_complete_at_its_head() {
        let mut wire = Wire::new();
        wire.request(b"DELETE /items/7 HTTP/1.1\r\nHost: h\r\n\r\n", 5)
            .close();
        let call = wire.only_call();
        assert!(call.request.complete);
        assert_eq!(call.status, None);
        assert!(!call.response.complete);
    }

    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    const EARLY_HINTS: &[u8] =
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";

    #[test]
    fn interim_responses_are_not_the_final_status() {
        let mut wire = Wire::new();
        wire.request(
            b"POST /big HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            1,
        )
        .response(CONTINUE, 2)
        .request(b"abc", 3)
        .response(EARLY_HINTS, 4);
        assert!(wire.calls.is_empty());
        let last = nginx_json("done");
        wire.response(&last, 5);
        let call = wire.only_call();
        assert_eq!(call.status, Some(200));
        assert_eq!(call.request.body, b"abc");
        assert_eq!(call.response.first_byte_ns, 2);
        assert_eq!(
            call.response.wire_bytes,
            (CONTINUE.len() + EARLY_HINTS.len() + last.len()) as u64,
            "interim heads count as response bytes"
        );
        assert_eq!(header(&call.response, "Server"), Some("nginx/1.24.0"));
    }

    #[test]
    fn head_204_and_304_responses_have_no_body_despite_content_length() {
        let mut wire = Wire::new();
        wire.request(
            &[
                b"HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
                &get("/gone"),
                &get("/cached"),
                &get("/after"),
            ]
            .concat(),
            1,
        )
        .response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n",
            2,
        )
        .response(&nginx_json("after"), 3);
        let statuses: Vec<_> = wire.calls.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [Some(200), Some(204), Some(304), Some(200)]);
        assert!(wire.calls.iter().all(|c| c.response.complete));
        assert_eq!(wire.calls[3].response.body, b"after");
        assert_eq!(wire.calls[0].response.body_bytes, 0);
    }

    #[test]
    fn connect_accepted_becomes_a_tunnel() {
        let mut wire = Wire::new();
        wire.request(
            b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n\x16\x03\x01\x02\x00",
            1,
        )
        .response(b"HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03", 2)
        .request(&get("/not-http-anymore"), 3)
        .response(&nginx_json("nor this"), 4)
        .gap(Direction::Request, 10)
        .close();
        let call = wire.only_call();
        assert_eq!(call.method.as_deref(), Some("CONNECT"));
        assert_eq!(call.authority.as_deref(), Some("db.internal:5432"));
        assert_eq!(call.path, None);
        assert_eq!(call.status, Some(200));
        assert!(call.response.complete);
    }

    #[test]
    fn connect_refused_stays_http() {
        let mut wire = Wire::new();
        wire.request(b"CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n", 1)
            // Sent before the verdict: held, then parsed once the proxy refused.
            .request(&get("/next"), 2)
            .response(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                3,
            )
            .response(&nginx_json("next"), 4);
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| (c.method.clone(), c.status, c.request.first_byte_ns))
            .collect();
        assert_eq!(
            recorded,
            [
                (Some("CONNECT".to_owned()), Some(407), 1),
                (Some("GET".to_owned()), Some(200), 2)
            ]
        );
    }

    #[test]
    fn websocket_upgrade_is_recorded_then_ignored() {
        let mut wire = Wire::new();
        wire.request(
            b"GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            1,
        )
        .response(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello",
            2,
        )
        .request(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58GET / HTTP/1.1\r\n\r\n", 3)
        .close();
        let call = wire.only_call();
        assert_eq!(call.status, Some(101));
        assert!(call.response.complete);
        assert!(wire.parser.take_h2c_upgrade().is_none());
        assert_eq!(wire.parser.buffered_bytes(), 0);
    }

    const H2C_REQUEST: &[u8] = b"GET /index HTTP/1.1\r\nHost: server.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[test]
    fn h2c_upgrade_hands_over_with_the_bytes_after_it() {
        let mut wire = Wire::new();
        wire.request(H2C_REQUEST, 1)
            .request(H2_PREFACE, 2)
            .response(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
                3,
            );
        assert!(wire.calls.is_empty());
        let upgrade = wire.parser.take_h2c_upgrade().expect("h2c hand-off");
        assert_eq!(upgrade.request.path.as_deref(), Some("/index"));
        assert_eq!(upgrade.request.status, None);
        assert!(upgrade.request.request.complete);
        assert_eq!(upgrade.request_rest, H2_PREFACE);
        assert_eq!(
            upgrade.response_rest,
            b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        );
        assert!(wire.parser.take_h2c_upgrade().is_none());
        wire.request(b"more", 4).close();
        assert!(wire.calls.is_empty());
    }

    #[test]
    fn h2c_refused_keeps_parsing_http1() {
        let mut wire = Wire::new();
        wire.request(H2C_REQUEST, 1)
            .request(&get("/second"), 2)
            .response(&nginx_json("first"), 3)
            .response(&nginx_json("second"), 4);
        assert!(wire.parser.take_h2c_upgrade().is_none());
        let paths: Vec<_> = wire.calls.iter().map(|c| c.path.as_deref()).collect();
        assert_eq!(paths, [Some("/index"), Some("/second")]);
    }

    #[test]
    fn absolute_form_target_gives_authority_and_path() {
        let mut wire = Wire::new();
        wire.request(
            b"GET http://user:secret@origin.example:8080/v2/items?page=3 HTTP/1.1\r\nHost: proxy.local\r\n\r\nGET http://bare.example HTTP/1.1\r\nHost: proxy.local\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: o.example\r\n\r\n",
            1,
        )
        .close();
        let targets: Vec<_> = wire
            .calls
            .iter()
            .map(|c| {
                (
                    c.authority.as_deref(),
                    c.path.as_deref(),
                    c.query.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            targets,
            [
                (
                    Some("origin.example:8080"),
                    Some("/v2/items"),
                    Some("page=3")
                ),
                (Some("bare.example"), Some("/"), None),
                (Some("o.example"), Some("*"), None),
            ]
        );
    }

    #[test]
    fn headers_beyond_the_limit_are_dropped_but_framing_still_counts() {
        let limits = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let mut wire = Wire::with(limits, false);
        wire.request(
            b"POST /f HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nContent-Length: 2\r\n\r\nhi",
            1,
        )
        .response(&nginx_json("x"), 2);
        let call = wire.only_call();
        assert_eq!(call.request.headers.len(), 2);
        assert_eq!(call.request.body, b"hi");
        assert_eq!(call.response.headers.len(), 2);
        assert!(call.flags.truncated);
    }

    #[test]
    fn heads_split_at_every_offset_parse_the_same() {
        let request = [
            CURL_GET,
            b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
        ]
        .concat();
        let response = [
            nginx_json("first"),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
        ]
        .concat();
        let mut whole = Wire::new();
        whole.request(&request, 1).response(&response, 1).close();
        assert_eq!(whole.calls.len(), 2);
        for split in 0..=request.len().max(response.len()) {
            let mut wire = Wire::new();
            let (a, b) = request.split_at(split.min(request.len()));
            let (c, d) = response.split_at(split.min(response.len()));
            wire.request(a, 1)
                .request(b, 1)
                .response(c, 1)
                .response(d, 1)
                .close();
            assert_eq!(wire.calls, whole.calls, "split at {split}");
        }
        let mut bytewise = Wire::new();
        for byte in &request {
            bytewise.request(std::slice::from_ref(byte), 1);
        }
        for byte in &response {
            bytewise.response(std::slice::from_ref(byte), 1);
        }
        bytewise.close();
        assert_eq!(bytewise.calls, whole.calls);
    }

    #[test]
    fn oversized_head_is_recorded_truncated_then_parsing_resumes() {
        let limits = Limits {
            max_buffered_bytes: 256,
            ..Limits::default()
        };
        let mut wire = Wire::with(limits, false);
        let cookie = "c".repeat(400);
        let big = format!("GET /big?x=1 HTTP/1.1\r\nHost: h\r\nCookie: {cookie}\r\n\r\n");
        wire.request(big.as_bytes(), 1)
            .response(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n",
                2,
            )
            .request(&get("/small"), 3)
            .response(&nginx_json("fine"), 4);
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| {
                (
                    c.path.as_deref(),
                    c.query.as_deref(),
                    c.status,
                    c.flags.truncated,
                )
            })
            .collect();
        assert_eq!(
            recorded,
            [
                (Some("/big"), Some("x=1"), Some(431), true),
                (Some("/small"), None, Some(200), false)
            ]
        );
        assert!(!wire.calls[0].request.complete);
    }

    #[test]
    fn oversized_response_head_ends_its_call_and_resynchronises() {
        let limits = Limits {
            max_buffered_bytes: 200,
            ..Limits::default()
        };
        let mut wire = Wire::with(limits, false);
        let big = format!(
            "HTTP/1.1 500 Internal Server Error\r\nX-Debug: {}\r\nContent-Length: 3\r\n\r\nerr",
            "d".repeat(300)
        );
        wire.request(&[get("/1"), get("/2")].concat(), 1)
            .response(big.as_bytes(), 2)
            .response(&nginx_json("two"), 3);
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| {
                (
                    c.path.as_deref(),
                    c.status,
                    c.flags.truncated,
                    c.response.complete,
                )
            })
            .collect();
        assert_eq!(
            recorded,
            [
                (Some("/1"), Some(500), true, false),
                (Some("/2"), Some(200), false, true)
            ]
        );
    }

    #[test]
    fn gap_inside_a_content_length_body_is_skipped() {
        let mut wire = Wire::new();
        wire.request(&get("/download"), 1)
            .response(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234", 2)
            .gap(Direction::Response, 10)
            .response(b"ABCDE", 3)
            .request(&get("/next"), 4)
            .response(&nginx_json("next"), 5);
        let first = &wire.calls[0];
        assert_eq!(first.response.body, b"01234ABCDE");
        assert_eq!(first.response.body_bytes, 20);
        assert!(first.flags.gap && first.response.complete);
        assert_eq!(wire.calls[1].response.body, b"next");
        assert!(!wire.calls[1].flags.gap);
    }

    #[test]
    fn gap_running_past_a_body_end_loses_the_next_response_start() {
        let mut wire = Wire::new();
        wire.request(&[get("/1"), get("/2"), get("/3")].concat(), 1)
            .response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab", 2)
            .gap(Direction::Response, 12)
            .response(b"rest of response two\r\n", 3)
            .response(&nginx_json("three"), 4);
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| {
                (
                    c.path.as_deref(),
                    c.status,
                    c.flags.gap,
                    c.response.complete,
                )
            })
            .collect();
        assert_eq!(
            recorded,
            [
                (Some("/1"), Some(200), true, true),
                (Some("/2"), None, true, false),
                (Some("/3"), Some(200), false, true)
            ]
        );
    }

    #[test]
    fn gap_in_chunk_framing_cuts_the_call_and_resynchronises() {
        let mut wire = Wire::new();
        wire.request(&[get("/1"), get("/2")].concat(), 1)
            .response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                2,
            )
            .gap(Direction::Response, 7)
            .response(b"lost tail\r\n0\r\n\r\n", 3)
            .response(&nginx_json("two"), 4);
        let first = &wire.calls[0];
        assert_eq!(first.response.body, b"hello");
        assert!(first.flags.gap && !first.response.complete);
        assert_eq!(wire.calls[1].response.body, b"two");
        assert_eq!(wire.calls.len(), 2);
    }

    #[test]
    fn gap_in_a_request_head_resynchronises_at_the_next_request() {
        let mut wire = Wire::new();
        wire.request(b"GET /lost HTTP/1.1\r\nHo", 1)
            .gap(Direction::Request, 30)
            .request(b"t: h\r\nAccept: */*\r\n\r\n", 2)
            .response(&nginx_json("lost"), 3)
            .request(&get("/found"), 4)
            .response(&nginx_json("found"), 5);
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| (c.method.as_deref(), c.path.as_deref(), c.flags.gap))
            .collect();
        // The lost request's response is recorded on its own, and the request after the gap is
        // flagged: requests may have vanished before it.
        assert_eq!(
            recorded,
            [(None, None, true), (Some("GET"), Some("/found"), true)]
        );
        assert_eq!(wire.calls[0].response.body, b"lost");
    }

    #[test]
    fn gap_inside_a_request_body_is_skipped() {
        let mut wire = Wire::new();
        wire.request(
            b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\nab",
            1,
        )
        .gap(Direction::Request, 4)
        .request(b"gh", 2)
        .response(&nginx_json("ok"), 3);
        let call = wire.only_call();
        assert_eq!(call.request.body, b"abgh");
        assert_eq!(call.request.body_bytes, 8);
        assert!(call.flags.gap && call.request.complete);
    }

    #[test]
    fn mid_stream_skips_to_message_starts_and_records_orphan_responses() {
        let mut wire = Wire::with(Limits::default(), true);
        wire.request(b"ody of an earlier request\r\nmore\r\n", 1)
            .response(
                b"tail of a body\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                2,
            )
            .request(&get("/seen"), 3)
            .response(&nginx_json("seen"), 4);
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| (c.method.as_deref(), c.status, c.flags.mid_stream))
            .collect();
        assert_eq!(
            recorded,
            [(None, Some(404), true), (Some("GET"), Some(200), false)]
        );
    }

    #[test]
    fn mid_stream_start_inside_a_line_does_not_guess() {
        let mut wire = Wire::with(Limits::default(), true);
        wire.request(b"T /half HTTP/1.1\r\nHost: h\r\n\r\n", 1)
            .response(b"TP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2)
            .close();
        // `T` looks like a method; the request line after it is believed, the response is not.
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| (c.method.as_deref(), c.status))
            .collect();
        assert_eq!(recorded, [(Some("T"), None)]);
    }

    #[test]
    fn close_emits_open_calls_incomplete() {
        let mut wire = Wire::new();
        wire.request(&[get("/1"), get("/2")].concat(), 1)
            .request(b"POST /3 HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 2)
            .response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 3)
            .close();
        let recorded: Vec<_> = wire
            .calls
            .iter()
            .map(|c| {
                (
                    c.path.as_deref(),
                    c.status,
                    c.request.complete,
                    c.response.complete,
                )
            })
            .collect();
        assert_eq!(
            recorded,
            [
                (Some("/1"), Some(200), true, false),
                (Some("/2"), None, true, false),
                (Some("/3"), None, false, false)
            ]
        );
        assert_eq!(wire.calls[2].request.body, b"abc");
        assert_eq!(wire.parser.buffered_bytes(), 0);
        wire.close();
        assert_eq!(wire.calls.len(), 3, "a second close emits nothing");
    }

    #[test]
    fn garbage_is_skipped_without_calls() {
        let mut wire = Wire::new();
        // A TLS ClientHello: not HTTP at all.
        wire.request(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xaa\xbb GET / HTTP/1.1 \x00\x00",
            1,
        )
        .response(
            b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03HTTP/1.1 20",
            2,
        );
        assert!(wire.calls.is_empty());
        // Only what may be the start of a status line is held.
        assert_eq!(wire.parser.buffered_bytes(), b"HTTP/1.1 20".len());
        wire.request(b"\nsome text\r\nGET /real HTTP/1.1\r\nHost: h\r\n\r\n", 3)
            .response(&nginx_json("real"), 4);
        let call = wire.only_call();
        assert_eq!(call.path.as_deref(), Some("/real"));
    }

    #[test]
    fn garbage_without_line_ends_holds_no_memory() {
        let mut wire = Wire::new();
        let noise: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8 | 0x80).collect();
        for piece in noise.chunks(7) {
            wire.request(piece, 1).response(piece, 1);
        }
        assert_eq!(wire.parser.buffered_bytes(), 0);
        wire.close();
        assert!(wire.calls.is_empty());
    }

    #[test]
    fn malformed_framing_headers_fail_the_message() {
        let mut wire = Wire::new();
        wire.request(
            b"POST /smuggle HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            1,
        )
        .response(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", 2);
        let call = wire.only_call();
        assert_eq!(call.path.as_deref(), Some("/smuggle"));
        assert_eq!(call.status, Some(400));
        assert!(call.flags.truncated && !call.request.complete);
    }

    #[test]
    fn buffered_bytes_tracks_partial_heads_and_kept_bodies() {
        let mut wire = Wire::new();
        wire.request(b"GET /x HTTP/1.1\r\nHost: h", 1);
        assert_eq!(wire.parser.buffered_bytes(), 24);
        wire.request(b"\r\n\r\n", 1)
            .response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", 2);
        let headers = "Host".len() + "h".len() + "Content-Length".len() + "10".len();
        assert_eq!(wire.parser.buffered_bytes(), headers + 5);
        wire.response(b"67890", 3);
        assert_eq!(wire.parser.buffered_bytes(), 0);
    }

    // ---- properties ----

    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    const STATUSES: [u16; 6] = [200, 201, 204, 304, 404, 500];

    #[derive(Debug, Clone)]
    enum Body {
        None,
        Length(Vec<u8>),
        /// Non-empty chunks; `true` adds an extension and a trailer.
        Chunked(Vec<Vec<u8>>, bool),
    }

    impl Body {
        fn bytes(&self) -> Vec<u8> {
            match self {
                Self::None => Vec::new(),
                Self::Length(body) => body.clone(),
                Self::Chunked(chunks, _) => chunks.concat(),
            }
        }

        /// Writes the framing headers, the end of the head and the body. A response without a
        /// body must say so, or it would run to the connection's end.
        fn write(&self, out: &mut Vec<u8>, direction: Direction) {
            match self {
                Self::None if direction == Direction::Response => {
                    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                }
                Self::None => out.extend_from_slice(b"\r\n"),
                Self::Length(body) => {
                    out.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    out.extend_from_slice(body);
                }
                Self::Chunked(chunks, extras) => {
                    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                    for chunk in chunks {
                        let ext = if *extras { ";ext=\"v\"" } else { "" };
                        out.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n");
                    if *extras {
                        out.extend_from_slice(b"X-Sum: 1\r\n");
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    struct Exchange {
        method: &'static str,
        target: String,
        headers: Vec<(String, String)>,
        request_body: Body,
        continue_first: bool,
        status: u16,
        response_body: Body,
    }

    fn body() -> impl Strategy<Value = Body> {
        prop_oneof![
            Just(Body::None),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Body::Length),
            (
                prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..4),
                any::<bool>()
            )
                .prop_map(|(chunks, extras)| Body::Chunked(chunks, extras)),
        ]
    }

    fn exchange() -> impl Strategy<Value = Exchange> {
        (
            prop::sample::select(METHODS.as_slice()),
            "/[a-z0-9/._-]{0,12}(\\?[a-z0-9=&%]{0,10})?",
            prop::collection::vec(
                (
                    prop::sample::select(vec!["Accept", "User-Agent", "x-request-id", "Cookie"]),
                    "[ -~]{0,16}",
                ),
                0..4,
            ),
            body(),
            any::<bool>(),
            prop::sample::select(STATUSES.as_slice()),
            body(),
        )
            .prop_map(
                |(method, target, headers, request_body, continue_first, status, response_body)| {
                    Exchange {
                        method,
                        target,
                        headers: headers
                            .into_iter()
                            .map(|(name, value)| (name.to_owned(), value))
                            .collect(),
                        request_body,
                        continue_first,
                        status,
                        response_body,
                    }
                },
            )
    }

    struct Streams {
        requests: Vec<u8>,
        responses: Vec<u8>,
        /// For each exchange: where its request ends and where its response begins.
        request_ends: Vec<usize>,
        response_starts: Vec<usize>,
    }

    /// Serialises the exchanges as a client and server would; with `close_delimited`, the last
    /// response (when it may have a body) has no length and ends with the connection.
    fn serialise(exchanges: &[Exchange], close_delimited: bool) -> Streams {
        let mut streams = Streams {
            requests: Vec::new(),
            responses: Vec::new(),
            request_ends: Vec::new(),
            response_starts: Vec::new(),
        };
        for (index, exchange) in exchanges.iter().enumerate() {
            let out = &mut streams.requests;
            out.extend_from_slice(
                format!(
                    "{} {} HTTP/1.1\r\nHost: svc.test\r\n",
                    exchange.method, exchange.target
                )
                .as_bytes(),
            );
            for (name, value) in &exchange.headers {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            exchange.request_body.write(out, Direction::Request);
            streams.request_ends.push(out.len());

            let out = &mut streams.responses;
            streams.response_starts.push(out.len());
            if exchange.continue_first {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            out.extend_from_slice(
                format!("HTTP/1.1 {} Whatever\r\nServer: t\r\n", exchange.status).as_bytes(),
            );
            if has_response_body(exchange) {
                let last = index + 1 == exchanges.len();
                if close_delimited && last {
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&exchange.response_body.bytes());
                } else {
                    exchange.response_body.write(out, Direction::Response);
                }
            } else {
                // Lengths that must be ignored.
                out.extend_from_slice(b"Content-Length: 7\r\n\r\n");
            }
        }
        streams
    }

    fn has_response_body(exchange: &Exchange) -> bool {
        exchange.method != "HEAD" && exchange.status != 204 && exchange.status != 304
    }

    fn property_limits() -> Limits {
        Limits {
            max_body_bytes: 16,
            ..Limits::default()
        }
    }

    fn feed_whole(streams: &Streams) -> Vec<Call> {
        let mut wire = Wire::with(property_limits(), false);
        wire.request(&streams.requests, 1)
            .response(&streams.responses, 1)
            .close();
        wire.calls
    }

    /// Feeds both streams in pieces of the given sizes, switching direction as `choices` say,
    /// but never a response byte before the request it answers was fed in full (no server
    /// answers a request it has not read).
    fn feed_interleaved(streams: &Streams, sizes: &[usize], choices: &[bool]) -> Vec<Call> {
        let mut wire = Wire::with(property_limits(), false);
        let (requests, responses) = (&streams.requests, &streams.responses);
        let (mut fed_requests, mut fed_responses) = (0, 0);
        let mut step = 0;
        while fed_requests < requests.len() || fed_responses < responses.len() {
            let size = sizes[step % sizes.len()];
            let prefer_response = choices[step % choices.len()];
            step += 1;
            let response_end = (fed_responses + size).min(responses.len());
            let answered = streams
                .response_starts
                .iter()
                .filter(|&&start| start < response_end)
                .count();
            let needed = answered
                .checked_sub(1)
                .map_or(0, |i| streams.request_ends[i]);
            let may_respond = fed_responses < responses.len() && fed_requests >= needed;
            if may_respond && (prefer_response || fed_requests == requests.len()) {
                wire.response(&responses[fed_responses..response_end], 1);
                fed_responses = response_end;
            } else {
                let end = (fed_requests + size).min(requests.len());
                wire.request(&requests[fed_requests..end], 1);
                fed_requests = end;
            }
        }
        wire.close();
        wire.calls
    }

    /// Where the recogniser, stepped one byte at a time from the start of a line, accepts a start
    /// line in `input`: the length through the accepting byte.
    fn recognised_start_line(direction: Direction, input: &[u8]) -> Option<usize> {
        let mut line = StartLine::LineStart;
        for (at, &byte) in input.iter().enumerate() {
            match line.next(direction, byte) {
                Recognised::Continue(next) => line = next,
                Recognised::Accept => return Some(at + 1),
                Recognised::Reject => return None,
            }
        }
        None
    }

    #[test]
    fn whole_start_lines_are_read_at_once() {
        for (direction, line) in [
            (
                Direction::Request,
                &b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n"[..],
            ),
            (Direction::Request, b"M-SEARCH * HTTP/1.0\n"),
            (Direction::Response, b"HTTP/1.1 200 OK\r\n"),
            (Direction::Response, b"HTTP/1.0 404\r\n"),
        ] {
            let expected = recognised_start_line(direction, line);
            assert!(expected.is_some());
            assert_eq!(whole_start_line(direction, line), expected);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_split_and_interleaving_yields_the_same_calls(
            exchanges in prop::collection::vec(exchange(), 1..8),
            close_delimited in any::<bool>(),
            sizes in prop::collection::vec(1usize..48, 1..16),
            choices in prop::collection::vec(any::<bool>(), 1..16),
            byte_at_a_time in any::<bool>(),
        ) {
            let streams = serialise(&exchanges, close_delimited);
            let whole = feed_whole(&streams);
            prop_assert_eq!(whole.len(), exchanges.len());
            for (call, exchange) in whole.iter().zip(&exchanges) {
                prop_assert_eq!(call.method.as_deref(), Some(exchange.method));
                prop_assert_eq!(call.status, Some(exchange.status));
                let (path, query) = split_target(&exchange.target);
                prop_assert_eq!(call.path.as_ref(), Some(&path));
                prop_assert_eq!(&call.query, &query);
                let kept = property_limits().max_body_bytes;
                let request_body = exchange.request_body.bytes();
                prop_assert_eq!(&call.request.body[..], &request_body[..request_body.len().min(kept)]);
                if has_response_body(exchange) {
                    let response_body = exchange.response_body.bytes();
                    prop_assert_eq!(call.response.body_bytes, response_body.len() as u64);
                    prop_assert_eq!(&call.response.body[..], &response_body[..response_body.len().min(kept)]);
                } else {
                    prop_assert_eq!(call.response.body_bytes, 0);
                }
                prop_assert!(call.request.complete && call.response.complete);
                prop_assert!(!call.flags.gap && !call.flags.mid_stream);
            }
            let total_wire: u64 = whole.iter().map(|c| c.request.wire_bytes).sum();
            prop_assert_eq!(total_wire, streams.requests.len() as u64);
            let total_wire: u64 = whole.iter().map(|c| c.response.wire_bytes).sum();
            prop_assert_eq!(total_wire, streams.responses.len() as u64);

            let sizes = if byte_at_a_time { vec![1] } else { sizes };
            prop_assert_eq!(feed_interleaved(&streams, &sizes, &choices), whole);
        }

        #[test]
        fn a_start_line_read_at_once_is_one_the_recogniser_accepts(
            request in any::<bool>(),
            parts in prop::collection::vec(
                prop_oneof![
                    Just(b"GET".to_vec()),
                    Just(b" ".to_vec()),
                    Just(b"/p?q".to_vec()),
                    Just(b"HTTP/1.".to_vec()),
                    Just(b"1".to_vec()),
                    Just(b"200".to_vec()),
                    Just(b"\r".to_vec()),
                    Just(b"\n".to_vec()),
                    prop::collection::vec(any::<u8>(), 1..4),
                ],
                0..10,
            ),
        ) {
            let direction = if request { Direction::Request } else { Direction::Response };
            let input = parts.concat();
            if let Some(len) = whole_start_line(direction, &input) {
                prop_assert_eq!(recognised_start_line(direction, &input), Some(len));
            }
        }


        #[test]
        fn arbitrary_input_never_panics_and_stays_bounded(
            operations in prop::collection::vec(operation(), 0..64),
            mid_stream in any::<bool>(),
        ) {
            let limits = Limits {
                max_buffered_bytes: 256,
                max_body_bytes: 64,
                max_headers: 8,
                max_pending_calls: 4,
                ..Limits::default()
            };
            let mut wire = Wire::with(limits, mid_stream);
            for operation in &operations {
                match operation {
                    Operation::Data(direction, bytes) => {
                        wire.parser.data(*direction, bytes, 1, &mut wire.calls);
                    }
                    Operation::Gap(direction, len) => wire.parser.gap(*direction, *len, 1, &mut wire.calls),
                }
                // A pending hand-off holds whatever followed it in the same event.
                let _ = wire.parser.take_h2c_upgrade();
                prop_assert!(wire.parser.buffered_bytes() <= memory_bound(&limits));
            }
            wire.close();
            prop_assert_eq!(wire.parser.buffered_bytes(), 0);
        }
    }

    /// Most a parser may hold: three buffers (two heads or chunk lines, bytes held during an
    /// upgrade) and every open call (waiting, being answered, overflowed, handed over) with both
    /// messages' fields (lossy UTF-8 may triple a head), trailers and kept body.
    fn memory_bound(limits: &Limits) -> usize {
        let per_message = 2 * 3 * limits.max_buffered_bytes + limits.max_body_bytes;
        3 * limits.max_buffered_bytes + (limits.max_pending_calls + 3) * 2 * per_message
    }

    #[derive(Debug, Clone)]
    enum Operation {
        Data(Direction, Vec<u8>),
        Gap(Direction, u64),
    }

    /// Pieces of HTTP among the noise, so random input reaches deep states.
    const FRAGMENTS: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"POST /x?y HTTP/1.0\r\n",
        b"CONNECT h:1 HTTP/1.1\r\n",
        b"HEAD / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 100 Continue\r\n",
        b"HTTP/1.1 101 Switching\r\n",
        b"HTTP/1.0 204 \r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Upgrade: h2c\r\n",
        b"Upgrade: websocket\r\n",
        b"Host: h\r\n",
        b"\r\n",
        b"\n",
        b"5;a=b\r\nhello\r\n",
        b"fffffffffffffffff\r\n",
        b"0\r\nT: 1\r\n\r\n",
    ];

    fn operation() -> impl Strategy<Value = Operation> {
        let direction = prop_oneof![Just(Direction::Request), Just(Direction::Response)];
        let piece = prop_oneof![
            prop::sample::select(FRAGMENTS).prop_map(<[u8]>::to_vec),
            prop::collection::vec(any::<u8>(), 0..300),
        ];
        prop_oneof![
            8 => (direction.clone(), prop::collection::vec(piece, 1..6))
                .prop_map(|(direction, pieces)| Operation::Data(direction, pieces.concat())),
            1 => (direction, prop_oneof![0u64..64, any::<u64>()])
                .prop_map(|(direction, len)| Operation::Gap(direction, len)),
        ]
    }
}
