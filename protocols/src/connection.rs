//! Which protocol a connection speaks, decided from its first bytes (never from its port), and
//! the parser for it. HTTP/1.1 that upgrades to h2c switches parsers mid-connection; bytes of
//! protocols Moat does not parse (databases) are left alone. TLS is not decrypted, but its
//! handshake is read for what it says in clear ([`crate::tls`]).

use crate::{
    Call, Direction, Limits, StreamParser,
    http1::Http1Parser,
    http2::{Http2Parser, PREFACE},
    tls::{self, Sender, TlsFacts, TlsObserver},
};

/// Bytes looked at before a connection is declared "not a protocol we parse".
const DETECTION_WINDOW: usize = 4096;

#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>, u64),
    Gap(u64, u64),
}

#[derive(Debug, Default)]
struct Pending {
    pieces: Vec<Piece>,
    bytes: usize,
}

impl Pending {
    /// Every captured byte held, gaps left out: what mid-stream detection searches.
    fn bytes_seen(&self) -> Vec<u8> {
        let mut seen = Vec::with_capacity(self.bytes);
        for piece in &self.pieces {
            if let Piece::Bytes(bytes, _) = piece {
                seen.extend_from_slice(bytes);
            }
        }
        seen
    }

    /// Captured bytes before the first gap: what detection of a fresh connection looks at.
    fn prefix(&self) -> Vec<u8> {
        let mut prefix = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Bytes(bytes, _) => prefix.extend_from_slice(bytes),
                Piece::Gap(..) => break,
            }
        }
        prefix
    }
}

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    /// A TLS handshake: its clear-text facts are read, the rest is ciphertext and yields no
    /// calls.
    Tls,
    /// Some other protocol (or encrypted bytes seen mid-stream): not parsed.
    Other,
}

#[derive(Debug)]
enum State {
    Detecting { request: Pending, response: Pending },
    Http1(Box<Http1Parser>),
    Http2(Box<Http2Parser>),
    Tls(Box<TlsObserver>),
    Other,
}

/// The protocol parser of one connection: detection first, then HTTP/1.1 or HTTP/2.
#[derive(Debug)]
pub struct ConnectionParser {
    limits: Limits,
    /// Whether what follows may be the middle of something: from the start for a connection
    /// first seen after it began, and after any gap before the protocol is known.
    mid_stream: bool,
    /// The connection was first seen after it began: every call on it says so.
    started_mid_stream: bool,
    state: State,
}

fn is_method_byte(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte == b'-' || byte == b'_'
}

/// A request line: `METHOD SP target SP HTTP/1.x CRLF`, the method an upper-case token of 3 to 20
/// bytes. `None`: not enough bytes to tell (no line end yet).
fn starts_like_request(bytes: &[u8]) -> Option<bool> {
    let mut method_end = None;
    for (index, byte) in bytes.iter().enumerate().take(21) {
        if *byte == b' ' {
            method_end = Some(index);
            break;
        }
        if !is_method_byte(*byte) {
            return Some(false);
        }
    }
    let Some(method_end) = method_end else {
        return if bytes.len() > 20 { Some(false) } else { None };
    };
    if method_end < 3 {
        return Some(false);
    }
    let Some(line_end) = bytes.windows(2).position(|pair| pair == b"\r\n") else {
        return (bytes.len() > DETECTION_WINDOW).then_some(false);
    };
    let line = &bytes[..line_end];
    Some(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"))
}

fn starts_like_status_line(bytes: &[u8]) -> Option<bool> {
    const PREFIX: &[u8] = b"HTTP/1.";
    let shared = bytes.len().min(PREFIX.len());
    if bytes.get(..shared) != PREFIX.get(..shared) {
        return Some(false);
    }
    (bytes.len() >= PREFIX.len()).then_some(true)
}

/// HTTP/2 frames: a frame header with a known type and a sane length, followed (when the bytes
/// reach that far) by another one. Only used for connections seen mid-stream, whose preface
/// was missed.
fn looks_like_http2_frames(bytes: &[u8]) -> bool {
    const HEADER: usize = 9;
    const MAX_TYPE: u8 = 9;
    let mut at = 0;
    let mut frames = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        if header[3] > MAX_TYPE || length > 1 << 14 || header[5] & 0x80 != 0 {
            return false;
        }
        frames += 1;
        at += HEADER + length;
    }
    frames >= 2 || (frames == 1 && at == bytes.len())
}

/// The protocol of a connection from the first bytes of each direction. `mid_stream`: the bytes
/// may start anywhere in a conversation, so a message start is looked for anywhere in them.
pub fn detect(request: &[u8], response: &[u8], mid_stream: bool) -> Option<Detected> {
    if mid_stream {
        return detect_within(request, response);
    }
    let preface_shared = request.len().min(PREFACE.len());
    if !request.is_empty() && request[..preface_shared] == PREFACE[..preface_shared] {
        return (request.len() >= PREFACE.len()).then_some(Detected::Http2);
    }
    match tls::starts_like_tls(request) {
        Some(true) => return Some(Detected::Tls),
        None if !request.is_empty() => return None,
        _ => {}
    }
    match starts_like_request(request) {
        Some(true) => return Some(Detected::Http1),
        None if !request.is_empty() => return None,
        _ => {}
    }
    if starts_like_status_line(response) == Some(true) {
        return Some(Detected::Http1);
    }
    if !request.is_empty() {
        return Some(Detected::Other);
    }
    (response.len() >= DETECTION_WINDOW).then_some(Detected::Other)
}

/// Detection for bytes that may begin in the middle of a message: the HTTP/2 preface anywhere,
/// an HTTP/1.x request line at the start of any line, a status line anywhere, or HTTP/2 frame
/// headers that chain from the first byte. None: nothing yet (the caller keeps looking; it never
/// gives a mid-stream connection up as "other", since the next message may yet come).
fn detect_within(request: &[u8], response: &[u8]) -> Option<Detected> {
    if request
        .windows(PREFACE.len())
        .any(|window| window == PREFACE.as_slice())
    {
        return Some(Detected::Http2);
    }
    let line_starts = std::iter::once(0).chain(
        request
            .iter()
            .enumerate()
            .filter(|(_, byte)| **byte == b'\n')
            .map(|(index, _)| index + 1),
    );
    let request_line = line_starts
        .filter_map(|start| request.get(start..))
        .any(|rest| starts_like_request(rest) == Some(true));
    let status_line = response
        .windows(9)
        .any(|window| window.starts_with(b"HTTP/1.") && window[8] == b' ');
    if request_line || status_line {
        return Some(Detected::Http1);
    }
    (looks_like_http2_frames(request) || looks_like_http2_frames(response))
        .then_some(Detected::Http2)
}

impl ConnectionParser {
    pub fn new(limits: Limits, mid_stream: bool) -> Self {
        Self {
            limits,
            mid_stream,
            started_mid_stream: mid_stream,
            state: State::Detecting {
                request: Pending::default(),
                response: Pending::default(),
            },
        }
    }

    /// The protocol, once known.
    pub fn detected(&self) -> Option<Detected> {
        match self.state {
            State::Detecting { .. } => None,
            State::Http1(_) => Some(Detected::Http1),
            State::Http2(_) => Some(Detected::Http2),
            State::Tls(_) => Some(Detected::Tls),
            State::Other => Some(Detected::Other),
        }
    }

    /// What the TLS handshake showed, when the connection speaks TLS.
    pub fn tls_facts(&self) -> Option<&TlsFacts> {
        match &self.state {
            State::Tls(observer) => Some(observer.facts()),
            _ => None,
        }
    }

    /// The connection speaks TLS and everything its handshake shows in clear has been read.
    pub fn tls_finished(&self) -> bool {
        matches!(&self.state, State::Tls(observer) if observer.finished())
    }

    fn hold(&mut self, direction: Direction, piece: Piece, calls: &mut Vec<Call>) {
        let State::Detecting { request, response } = &mut self.state else {
            return;
        };
        let pending = match direction {
            Direction::Request => &mut *request,
            Direction::Response => &mut *response,
        };
        if let Piece::Gap(..) = piece {
            // Whatever came before the gap, what follows is the middle of something.
            self.mid_stream = true;
        }
        if let Piece::Bytes(bytes, _) = &piece {
            pending.bytes += bytes.len();
        }
        pending.pieces.push(piece);
        let decided = if self.mid_stream {
            let found = detect(&request.bytes_seen(), &response.bytes_seen(), true);
            if found.is_none() && request.bytes + response.bytes > DETECTION_WINDOW {
                // No message start in this much: it is all the middle of something. Drop it and
                // keep looking in what follows, within the same memory.
                *request = Pending::default();
                *response = Pending::default();
            }
            found
        } else {
            let over_bound = request.bytes + response.bytes > self.limits.max_buffered_bytes;
            detect(&request.prefix(), &response.prefix(), false)
                .or(over_bound.then_some(Detected::Other))
        };
        if let Some(protocol) = decided {
            self.switch(protocol, calls);
        }
    }

    fn switch(&mut self, protocol: Detected, calls: &mut Vec<Call>) {
        let held = std::mem::replace(&mut self.state, State::Other);
        self.state = match protocol {
            Detected::Http1 => {
                State::Http1(Box::new(Http1Parser::new(self.limits, self.mid_stream)))
            }
            Detected::Http2 => {
                State::Http2(Box::new(Http2Parser::new(self.limits, self.mid_stream)))
            }
            Detected::Tls => State::Tls(Box::new(TlsObserver::new())),
            Detected::Other => State::Other,
        };
        if let State::Detecting { request, response } = held {
            for (direction, pending) in [
                (Direction::Request, request),
                (Direction::Response, response),
            ] {
                for piece in pending.pieces {
                    match piece {
                        Piece::Bytes(bytes, time_ns) => {
                            self.data(direction, &bytes, time_ns, calls)
                        }
                        Piece::Gap(length, time_ns) => self.gap(direction, length, time_ns, calls),
                    }
                }
            }
        }
    }

    /// After an HTTP/1.1 request upgraded to h2c, HTTP/2 continues the connection.
    fn follow_upgrade(&mut self, time_ns: u64, calls: &mut Vec<Call>) {
        let State::Http1(parser) = &mut self.state else {
            return;
        };
        let Some(upgrade) = parser.take_h2c_upgrade() else {
            return;
        };
        self.state = State::Http2(Box::new(Http2Parser::upgraded(
            self.limits,
            upgrade.request,
        )));
        if let State::Http2(parser) = &mut self.state {
            parser.data(Direction::Request, &upgrade.request_rest, time_ns, calls);
            parser.data(Direction::Response, &upgrade.response_rest, time_ns, calls);
        }
    }
}

/// The client sends requests.
fn sender_of(direction: Direction) -> Sender {
    match direction {
        Direction::Request => Sender::Client,
        Direction::Response => Sender::Server,
    }
}

impl ConnectionParser {
    fn flag_mid_stream(&self, calls: &mut [Call]) {
        if self.started_mid_stream {
            for call in calls {
                call.flags.mid_stream = true;
            }
        }
    }

    fn route_data(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        time_ns: u64,
        calls: &mut Vec<Call>,
    ) {
        if bytes.is_empty() {
            return;
        }
        match &mut self.state {
            State::Detecting { .. } => {
                self.hold(direction, Piece::Bytes(bytes.to_vec(), time_ns), calls)
            }
            State::Http1(parser) => {
                parser.data(direction, bytes, time_ns, calls);
                self.follow_upgrade(time_ns, calls);
            }
            State::Http2(parser) => parser.data(direction, bytes, time_ns, calls),
            State::Tls(observer) => observer.data(sender_of(direction), bytes),
            State::Other => {}
        }
    }

    fn route_gap(&mut self, direction: Direction, len: u64, time_ns: u64, calls: &mut Vec<Call>) {
        match &mut self.state {
            State::Detecting { .. } => self.hold(direction, Piece::Gap(len, time_ns), calls),
            State::Http1(parser) => parser.gap(direction, len, time_ns, calls),
            State::Http2(parser) => parser.gap(direction, len, time_ns, calls),
            State::Tls(observer) => observer.gap(sender_of(direction)),
            State::Other => {}
        }
    }

    fn route_close(&mut self, time_ns: u64, calls: &mut Vec<Call>) {
        if let State::Detecting { request, response } = &self.state {
            // Too few bytes to be sure; the likeliest reading of what there is.
            let protocol = detect(&request.bytes_seen(), &response.bytes_seen(), true);
            if let Some(protocol) = protocol.filter(|protocol| *protocol != Detected::Other) {
                self.switch(protocol, calls);
            }
        }
        match &mut self.state {
            State::Http1(parser) => parser.close(time_ns, calls),
            State::Http2(parser) => parser.close(time_ns, calls),
            State::Detecting { .. } | State::Tls(_) | State::Other => {}
        }
    }
}

impl StreamParser for ConnectionParser {
    fn data(&mut self, direction: Direction, bytes: &[u8], time_ns: u64, calls: &mut Vec<Call>) {
        let first = calls.len();
        self.route_data(direction, bytes, time_ns, calls);
        self.flag_mid_stream(&mut calls[first..]);
    }

    fn gap(&mut self, direction: Direction, len: u64, time_ns: u64, calls: &mut Vec<Call>) {
        let first = calls.len();
        self.route_gap(direction, len, time_ns, calls);
        self.flag_mid_stream(&mut calls[first..]);
    }

    fn close(&mut self, time_ns: u64, calls: &mut Vec<Call>) {
        let first = calls.len();
        self.route_close(time_ns, calls);
        self.flag_mid_stream(&mut calls[first..]);
    }

    fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Detecting { request, response } => request.bytes + response.bytes,
            State::Http1(parser) => parser.buffered_bytes(),
            State::Http2(parser) => parser.buffered_bytes(),
            State::Tls(observer) => observer.buffered_bytes(),
            State::Other => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_reads_the_bytes_not_the_port() {
        assert_eq!(
            detect(b"GET / HTTP/1.1\r\n", b"", false),
            Some(Detected::Http1)
        );
        assert_eq!(detect(b"GET /a-long-path", b"", false), None);
        assert_eq!(
            detect(b"EHLO mail.example\r\n", b"220 hi\r\n", false),
            Some(Detected::Other)
        );
        assert_eq!(
            detect(b"PROPFIND /x HTTP/1.1\r\n", b"", false),
            Some(Detected::Http1)
        );
        assert_eq!(detect(PREFACE, b"", false), Some(Detected::Http2));
        assert_eq!(detect(&PREFACE[..10], b"", false), None);
        assert_eq!(detect(b"GE", b"", false), None);
        assert_eq!(
            detect(b"\x16\x03\x01\x02\x00", b"", false),
            Some(Detected::Tls)
        );
        assert_eq!(detect(b"\x16\x03", b"", false), None);
        assert_eq!(detect(b"\x16\x04", b"", false), Some(Detected::Other));
        assert_eq!(
            detect(b"", b"HTTP/1.1 200 OK\r\n", true),
            Some(Detected::Http1)
        );
        assert_eq!(detect(b"", b"HTTP/1", true), None);
        assert_eq!(
            detect(b"\0\0\0\x04\0\0\0\0\0", b"", false),
            Some(Detected::Other)
        );
        // A SETTINGS frame then a PING: HTTP/2 seen mid-stream.
        let frames =
            b"\0\0\0\x04\x01\0\0\0\0\0\0\x08\x06\0\0\0\0\0\x01\x02\x03\x04\x05\x06\x07\x08";
        assert_eq!(detect(frames, b"", true), Some(Detected::Http2));
        assert_eq!(
            detect(b"", &[0x55; DETECTION_WINDOW], false),
            Some(Detected::Other)
        );
        // Mid-stream, nothing is given up: the next message may still come.
        assert_eq!(detect(b"", &[0x55; DETECTION_WINDOW], true), None);
    }

    #[test]
    fn a_tls_connection_yields_no_calls_and_its_handshake_facts() {
        let client = include_bytes!("../tests/data/tls/tls12_mtls.client");
        let server = include_bytes!("../tests/data/tls/tls12_mtls.server");
        let mut parser = ConnectionParser::new(Limits::default(), false);
        let mut calls = Vec::new();
        // As a capture delivers them: the hello in two pieces, then the answer.
        parser.data(Direction::Request, &client[..2], 1, &mut calls);
        assert_eq!(parser.detected(), None);
        parser.data(Direction::Request, &client[2..], 2, &mut calls);
        parser.data(Direction::Response, server, 3, &mut calls);
        parser.close(4, &mut calls);
        assert!(calls.is_empty());
        assert_eq!(parser.detected(), Some(Detected::Tls));
        assert!(parser.tls_finished());
        let facts = parser.tls_facts().expect("tls facts");
        assert_eq!(
            facts
                .client_hello
                .as_ref()
                .and_then(|hello| hello.server_name.as_deref()),
            Some("api.example.test")
        );
        assert_eq!(facts.mutual(), Some(true));
        assert_eq!(parser.buffered_bytes(), 0);
    }

    #[test]
    fn a_mid_stream_connection_finds_the_next_message_after_any_amount_of_junk() {
        let mut parser = ConnectionParser::new(Limits::default(), true);
        let mut calls = Vec::new();
        for _ in 0..100 {
            parser.data(Direction::Request, &[b'a'; 1000], 1, &mut calls);
            assert!(parser.buffered_bytes() <= 2 * DETECTION_WINDOW);
        }
        parser.data(
            Direction::Request,
            b"\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
            2,
            &mut calls,
        );
        parser.data(
            Direction::Response,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            3,
            &mut calls,
        );
        assert_eq!(calls.len(), 1, "{calls:#?}");
        assert_eq!(calls[0].path.as_deref(), Some("/next"));
        assert!(calls[0].flags.mid_stream);
    }
}
