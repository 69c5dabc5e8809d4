//! In-memory traffic for the parser benchmark: one keep-alive HTTP/1.1 connection and one
//! HTTP/2 connection carrying the same kind of API calls (JSON GETs and POSTs with the headers
//! browsers, SDKs and nginx send), cut into the pieces the capture hands the agent: one piece
//! per syscall, at most one capture event long.

use protocols::Direction;

/// Payload bytes one capture event carries by default (`--capture-event-bytes`): a write larger
/// than this reaches the parser in several pieces.
const EVENT_BYTES: usize = 16 * 1024;

/// Requests per batch on the HTTP/2 connection: the client has this many streams open at once
/// and writes their frames together, as h2 clients coalesce frames into one write.
const H2_CONCURRENT_STREAMS: usize = 10;

/// One connection's traffic, in the order the capture would deliver it.
pub struct Corpus {
    pub segments: Vec<(Direction, Vec<u8>)>,
    pub calls: usize,
    pub bytes: usize,
}

impl Corpus {
    fn new() -> Self {
        Self {
            segments: Vec::new(),
            calls: 0,
            bytes: 0,
        }
    }

    /// One syscall's worth of bytes, split at the capture's event size.
    fn write(&mut self, direction: Direction, bytes: &[u8]) {
        for piece in bytes.chunks(EVENT_BYTES) {
            self.segments.push((direction, piece.to_vec()));
            self.bytes += piece.len();
        }
    }

    /// Each direction's bytes joined into one stream, for baselines that need no reassembly.
    pub fn stream(&self, direction: Direction) -> Vec<u8> {
        self.segments
            .iter()
            .filter(|(of, _)| *of == direction)
            .flat_map(|(_, bytes)| bytes.iter().copied())
            .collect()
    }
}

/// A deterministic generator (xorshift64*), so every run parses the same corpus.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn hex(&mut self, digits: usize) -> String {
        (0..digits)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16) as usize]))
            .collect()
    }
}

const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
];
const AUTHORITY: &str = "api.shop.svc.cluster.local:8080";
const DATE: &str = "Mon, 24 Nov 2025 10:00:00 GMT";

/// What one API call carries, independent of how a protocol frames it.
struct Exchange {
    post: bool,
    path: String,
    user_agent: &'static str,
    token: String,
    request_id: String,
    request_body: Vec<u8>,
    status: u16,
    response_body: Vec<u8>,
}

/// A JSON object of about `length` bytes.
fn json_body(random: &mut Random, length: usize) -> Vec<u8> {
    let mut body = String::from("{\"items\":[");
    while body.len() + 40 < length {
        body.push_str(&format!(
            "{{\"id\":{},\"sku\":\"{}\",\"qty\":{}}},",
            random.below(1_000_000),
            random.hex(8),
            random.below(20)
        ));
    }
    body.pop();
    body.push_str("]}");
    body.into_bytes()
}

fn exchanges(count: usize) -> Vec<Exchange> {
    let mut random = Random(0x5eed_cafe_f00d_beef);
    (0..count)
        .map(|_| {
            // Seven in ten calls read, the rest write; one in twenty misses.
            let post = random.below(10) >= 7;
            let path = if post {
                "/api/v1/orders".to_owned()
            } else {
                format!(
                    "/api/v1/users/{}?include=profile&page={}",
                    random.below(100_000),
                    random.below(50)
                )
            };
            let request_body = if post {
                let length = 150 + random.below(250) as usize;
                json_body(&mut random, length)
            } else {
                Vec::new()
            };
            let status = match (post, random.below(20)) {
                (_, 0) => 404,
                (true, _) => 201,
                (false, _) => 200,
            };
            let response_length = 100 + random.below(1_400) as usize;
            Exchange {
                post,
                path,
                user_agent: USER_AGENTS[random.below(USER_AGENTS.len() as u64) as usize],
                token: random.hex(40),
                request_id: format!(
                    "{}-{}-{}-{}",
                    random.hex(8),
                    random.hex(4),
                    random.hex(4),
                    random.hex(12)
                ),
                response_body: json_body(&mut random, response_length),
                request_body,
                status,
            }
        })
        .collect()
}

/// `calls` request/response pairs on one keep-alive HTTP/1.1 connection; each message is one
/// write (nginx and HTTP clients write head and small body together).
pub fn http1(calls: usize) -> Corpus {
    let mut corpus = Corpus::new();
    for exchange in exchanges(calls) {
        let method = if exchange.post { "POST" } else { "GET" };
        let mut request = format!(
            "{method} {} HTTP/1.1\r\nHost: {AUTHORITY}\r\nUser-Agent: {}\r\nAccept: application/json\r\n\
             Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n\
             Authorization: Bearer {}\r\nX-Request-Id: {}\r\nConnection: keep-alive\r\n",
            exchange.path, exchange.user_agent, exchange.token, exchange.request_id
        );
        if exchange.post {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                exchange.request_body.len()
            ));
        }
        request.push_str("\r\n");
        let mut request = request.into_bytes();
        request.extend_from_slice(&exchange.request_body);
        corpus.write(Direction::Request, &request);

        let reason = match exchange.status {
            200 => "OK",
            201 => "Created",
            _ => "Not Found",
        };
        let mut response = format!(
            "HTTP/1.1 {} {reason}\r\nServer: nginx/1.26.0\r\nDate: {DATE}\r\n\
             Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: keep-alive\r\nCache-Control: no-store\r\nX-Request-Id: {}\r\n\r\n",
            exchange.status,
            exchange.response_body.len(),
            exchange.request_id
        )
        .into_bytes();
        response.extend_from_slice(&exchange.response_body);
        corpus.write(Direction::Response, &response);
        corpus.calls += 1;
    }
    corpus
}

/// The same kind of calls on one HTTP/2 connection (h2c with prior knowledge), in batches of
/// concurrent streams.
pub fn http2(calls: usize) -> Corpus {
    let mut corpus = Corpus::new();
    let mut client = Hpack::default();
    let mut server = Hpack::default();

    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut opening, FrameType::Settings, 0, 0, &[]);
    frame(
        &mut opening,
        FrameType::WindowUpdate,
        0,
        0,
        &(1u32 << 30).to_be_bytes(),
    );
    corpus.write(Direction::Request, &opening);
    let mut greeting = Vec::new();
    frame(&mut greeting, FrameType::Settings, 0, 0, &[]);
    frame(&mut greeting, FrameType::Settings, ACK, 0, &[]);
    corpus.write(Direction::Response, &greeting);
    let mut first = true;

    let exchanges = exchanges(calls);
    for (batch_index, batch) in exchanges.chunks(H2_CONCURRENT_STREAMS).enumerate() {
        let first_stream = (batch_index * H2_CONCURRENT_STREAMS * 2 + 1) as u32;
        let mut requests = Vec::new();
        if std::mem::take(&mut first) {
            frame(&mut requests, FrameType::Settings, ACK, 0, &[]);
        }
        for (offset, exchange) in batch.iter().enumerate() {
            let stream = first_stream + 2 * offset as u32;
            let mut block = Vec::new();
            client.indexed(&mut block, if exchange.post { 3 } else { 2 });
            client.indexed(&mut block, 6);
            client.incremental(&mut block, 1, ":authority", AUTHORITY);
            client.literal(&mut block, Some(4), ":path", &exchange.path);
            client.incremental(&mut block, 58, "user-agent", exchange.user_agent);
            client.incremental(&mut block, 19, "accept", "application/json");
            client.indexed(&mut block, 16);
            client.never_indexed(
                &mut block,
                23,
                "authorization",
                &format!("Bearer {}", exchange.token),
            );
            client.literal(&mut block, None, "x-request-id", &exchange.request_id);
            if exchange.post {
                client.incremental(&mut block, 31, "content-type", "application/json");
                client.literal(
                    &mut block,
                    Some(28),
                    "content-length",
                    &exchange.request_body.len().to_string(),
                );
                frame(
                    &mut requests,
                    FrameType::Headers,
                    END_HEADERS,
                    stream,
                    &block,
                );
                frame(
                    &mut requests,
                    FrameType::Data,
                    END_STREAM,
                    stream,
                    &exchange.request_body,
                );
            } else {
                frame(
                    &mut requests,
                    FrameType::Headers,
                    END_HEADERS | END_STREAM,
                    stream,
                    &block,
                );
            }
        }
        corpus.write(Direction::Request, &requests);

        let mut responses = Vec::new();
        for (offset, exchange) in batch.iter().enumerate() {
            let stream = first_stream + 2 * offset as u32;
            let mut block = Vec::new();
            match exchange.status {
                200 => server.indexed(&mut block, 8),
                404 => server.indexed(&mut block, 13),
                status => server.literal(&mut block, Some(8), ":status", &status.to_string()),
            }
            server.incremental(&mut block, 54, "server", "nginx/1.26.0");
            server.literal(&mut block, Some(33), "date", DATE);
            server.incremental(
                &mut block,
                31,
                "content-type",
                "application/json; charset=utf-8",
            );
            server.literal(
                &mut block,
                Some(28),
                "content-length",
                &exchange.response_body.len().to_string(),
            );
            server.incremental(&mut block, 24, "cache-control", "no-store");
            server.literal(&mut block, None, "x-request-id", &exchange.request_id);
            frame(
                &mut responses,
                FrameType::Headers,
                END_HEADERS,
                stream,
                &block,
            );
            frame(
                &mut responses,
                FrameType::Data,
                END_STREAM,
                stream,
                &exchange.response_body,
            );
        }
        corpus.write(Direction::Response, &responses);
        corpus.calls += batch.len();
    }
    corpus
}

#[derive(Clone, Copy)]
enum FrameType {
    Data = 0,
    Headers = 1,
    Settings = 4,
    WindowUpdate = 8,
}

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(out: &mut Vec<u8>, kind: FrameType, flags: u8, stream: u32, payload: &[u8]) {
    let length = payload.len() as u32;
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind as u8);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Just enough of an HPACK encoder (RFC 7541) for the corpus, encoding the way common clients
/// and servers do: static-table hits as one index, fields that repeat on every request into the
/// dynamic table once and indexed after, per-request values as literals, credentials never
/// indexed. Strings go without Huffman coding (allowed, just longer). The fields it indexes take
/// far less than the default 4 KiB table, so nothing is ever evicted and the encoder need not
/// track evictions.
#[derive(Default)]
struct Hpack {
    /// Entries added to the dynamic table, oldest first.
    dynamic: Vec<(&'static str, String)>,
}

/// Indices 1..=61 are the static table; the dynamic table starts after it.
const STATIC_ENTRIES: usize = 61;

impl Hpack {
    /// An indexed field (§6.1).
    fn indexed(&mut self, out: &mut Vec<u8>, index: usize) {
        integer(out, 0x80, 7, index);
    }

    /// Indexed if this field was added before, otherwise a literal with incremental indexing
    /// (§6.2.1) whose name is static entry `name_index`.
    fn incremental(
        &mut self,
        out: &mut Vec<u8>,
        name_index: usize,
        name: &'static str,
        value: &str,
    ) {
        if let Some(position) = self
            .dynamic
            .iter()
            .position(|(known_name, known_value)| *known_name == name && known_value == value)
        {
            // The newest entry is STATIC_ENTRIES + 1.
            let index = STATIC_ENTRIES + self.dynamic.len() - position;
            self.indexed(out, index);
            return;
        }
        integer(out, 0x40, 6, name_index);
        string(out, value);
        self.dynamic.push((name, value.to_owned()));
    }

    /// A literal without indexing (§6.2.2), its name static entry `name_index` or, without one,
    /// a literal name.
    fn literal(&mut self, out: &mut Vec<u8>, name_index: Option<usize>, name: &str, value: &str) {
        Self::not_added(out, 0x00, name_index, name, value);
    }

    /// A literal never indexed (§6.2.3), as clients send credentials.
    fn never_indexed(&mut self, out: &mut Vec<u8>, name_index: usize, name: &str, value: &str) {
        Self::not_added(out, 0x10, Some(name_index), name, value);
    }

    fn not_added(
        out: &mut Vec<u8>,
        pattern: u8,
        name_index: Option<usize>,
        name: &str,
        value: &str,
    ) {
        match name_index {
            Some(index) => integer(out, pattern, 4, index),
            None => {
                out.push(pattern);
                string(out, name);
            }
        }
        string(out, value);
    }
}

/// An HPACK integer (§5.1) with a `prefix`-bit prefix, after the `pattern` bits of its first
/// byte.
fn integer(out: &mut Vec<u8>, pattern: u8, prefix: u32, value: usize) {
    let limit = (1usize << prefix) - 1;
    if value < limit {
        out.push(pattern | value as u8);
        return;
    }
    out.push(pattern | limit as u8);
    let mut rest = value - limit;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// An HPACK string literal (§5.2) without Huffman coding.
fn string(out: &mut Vec<u8>, text: &str) {
    integer(out, 0x00, 7, text.len());
    out.extend_from_slice(text.as_bytes());
}
