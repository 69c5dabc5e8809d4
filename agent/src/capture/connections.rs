//! Every captured connection: its process and addresses, its two byte streams in order, and the
//! parser that turns them into calls. Bounded in connections, in bytes per connection and in
//! idle time; whatever a bound costs is counted in [`TrackerStats`].

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    rc::Rc,
};

use protocols::{
    Call, Direction, Limits, StreamParser,
    connection::{ConnectionParser, Detected},
};

use super::{
    event::{Chunk, Endpoints, Event, Opened, Task},
    reassembly::{Piece, Reassembler},
    record::{CallRecord, Peer, Redaction},
};
use crate::crypto::ConnectionFacts;

#[derive(Debug, Clone)]
pub struct TrackerLimits {
    pub max_connections: usize,
    /// Bytes one connection may hold: out-of-order bytes waiting plus what its parser buffers.
    pub max_connection_bytes: usize,
    pub idle_timeout_ns: u64,
    /// How long a call seen at one end waits for the same call from the other end, when both
    /// ends are on this node.
    pub mirror_wait_ns: u64,
    pub max_awaiting_mirror: usize,
    pub parser: Limits,
}

/// What the bounds cost, and other losses, since the agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub connections_opened: u64,
    /// Least recently active connections dropped to admit new ones.
    pub connections_evicted: u64,
    /// Connections dropped after the idle timeout.
    pub connections_expired: u64,
    /// Connections whose parser was restarted because it held more than the per-connection bound.
    pub connection_bytes_exceeded: u64,
    /// Data events of connections the agent does not know (their open event was lost).
    pub events_unknown_connection: u64,
    pub calls: u64,
    /// Calls seen at both ends and reported once.
    pub calls_merged: u64,
    /// Calls reported from one end only because too many waited for their other end.
    pub mirror_queue_full: u64,
    /// Stream bytes declared lost because waiting for them (out-of-order bytes arrived first)
    /// would have held more than the per-connection bound.
    pub bytes_given_up: u64,
    /// `visibility.tls_opaque` observations dropped because too many waited to be reported or
    /// too many processes were remembered as reported.
    pub opaque_dropped: u64,
}

/// The library whose plaintext the TLS events carry (the only one hooked).
pub const TLS_LIBRARY: &str = "libssl.so.3";
/// A process is reported as using TLS Moat cannot read at most once per this long.
pub const OPAQUE_REPORT_INTERVAL_NS: u64 = 3_600_000_000_000;
/// Processes remembered as reported; beyond it, reports are dropped (counted).
const MAX_OPAQUE_PROCESSES: usize = 4096;
/// Reports waiting for the agent to take them.
const MAX_OPAQUE_PENDING: usize = 256;

/// A process whose TLS connection began with a handshake but gave no plaintext from any hooked
/// library: its TLS is a blind spot.
#[derive(Debug, Clone)]
pub struct OpaqueTls {
    pub task: Task,
    pub endpoints: Endpoints,
    pub time_ns: u64,
}

/// The plaintext a TLS library handed over on a connection: streams and a parser of its own,
/// apart from the ciphertext the socket carried.
struct Plaintext {
    parser: ConnectionParser,
    sent: Reassembler,
    received: Reassembler,
}

impl Plaintext {
    fn held_bytes(&self) -> usize {
        self.sent.held_bytes() + self.received.held_bytes() + self.parser.buffered_bytes()
    }
}

/// Whether a stream starts with a TLS handshake record: content type 22, major version 3.
pub fn starts_tls_handshake(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, minor, ..] if *minor <= 0x04)
}

struct Connection {
    /// Shared with the records of its calls' batches, so naming the process costs no copy.
    task: Rc<Task>,
    /// Its bytes are copied at the other end, also on this host; this end names its process.
    passive: bool,
    fd: u32,
    endpoints: Endpoints,
    parser: ConnectionParser,
    sent: Reassembler,
    received: Reassembler,
    last_seen_ns: u64,
    /// Stream bytes since the connection's memory was last measured (see [`Tracker::data`]).
    bytes_since_check: u64,
    /// Its encryption (plaintext API or TLS handshake facts) was reported, by this end or the
    /// other end on this node.
    facts_reported: bool,
    /// Open before capture started: its streams start at an unknown point of its protocol.
    mid_stream: bool,
    /// Plaintext from a TLS library, once some arrived.
    plaintext: Option<Box<Plaintext>>,
    /// Its bytes (at this end or the other, on this host) began with a TLS handshake.
    tls_handshake: bool,
}

impl Connection {
    fn held_bytes(&self) -> usize {
        self.sent.held_bytes()
            + self.received.held_bytes()
            + self.parser.buffered_bytes()
            + self
                .plaintext
                .as_ref()
                .map_or(0, |plaintext| plaintext.held_bytes())
    }
}

pub struct Tracker {
    connections: HashMap<u64, Connection>,
    /// (local, remote) of each connection, to find the other end of a connection on this node.
    by_endpoints: HashMap<(SocketAddr, SocketAddr), u64>,
    awaiting_mirror: VecDeque<(u64, CallRecord)>,
    /// When each process was last reported as using TLS Moat cannot read.
    opaque_reported: HashMap<u32, u64>,
    opaque_pending: Vec<OpaqueTls>,
    limits: TrackerLimits,
    redaction: Redaction,
    pub stats: TrackerStats,
    /// Each connection's encryption, once known, for the agent to take (crate::crypto).
    pub connection_facts: Vec<ConnectionFacts>,
    /// (client, server) of the connections whose encryption was reported lately, oldest first:
    /// an end on this node that the other end's report missed (it ended first, or was not
    /// tracked yet) must not report the same connection again.
    reported_lately: VecDeque<(SocketAddr, SocketAddr)>,
}

/// Connections remembered in [`Tracker::reported_lately`]: far more than open and close within
/// the time the two ends of one connection take to report.
const MAX_REPORTED_LATELY: usize = 4096;

impl Tracker {
    pub fn new(limits: TrackerLimits, redaction: Redaction) -> Self {
        Self {
            connections: HashMap::new(),
            by_endpoints: HashMap::new(),
            awaiting_mirror: VecDeque::new(),
            opaque_reported: HashMap::new(),
            opaque_pending: Vec::new(),
            limits,
            redaction,
            stats: TrackerStats::default(),
            connection_facts: Vec::new(),
            reported_lately: VecDeque::new(),
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Bytes all connections hold.
    pub fn held_bytes(&self) -> usize {
        self.connections.values().map(Connection::held_bytes).sum()
    }

    /// A connection starts being tracked. `mid_stream`: it was open before capture began, so its
    /// streams start at an unknown point of its protocol.
    pub fn open(&mut self, opened: Opened, mid_stream: bool, out: &mut Vec<CallRecord>) {
        let Opened {
            connection_id,
            fd,
            task,
            endpoints,
            passive,
            time_ns,
        } = opened;
        if self.connections.contains_key(&connection_id) {
            self.close(connection_id, time_ns, out);
        }
        if self.connections.len() >= self.limits.max_connections {
            self.evict_least_recent(time_ns, out);
        }
        let window = self.limits.max_connection_bytes / 2;
        self.by_endpoints
            .insert((endpoints.local, endpoints.remote), connection_id);
        // The other end may have sent its handshake before this end was entered.
        let tls_handshake = self
            .by_endpoints
            .get(&(endpoints.remote, endpoints.local))
            .and_then(|id| self.connections.get(id))
            .is_some_and(|other| other.tls_handshake);
        self.connections.insert(
            connection_id,
            Connection {
                task: Rc::new(task),
                passive,
                fd,
                endpoints,
                parser: ConnectionParser::new(self.limits.parser, mid_stream),
                sent: Reassembler::new(0, window),
                received: Reassembler::new(0, window),
                last_seen_ns: time_ns,
                bytes_since_check: 0,
                facts_reported: false,
                mid_stream,
                plaintext: None,
                tls_handshake,
            },
        );
        self.stats.connections_opened += 1;
    }

    /// Makes room by dropping the least recently active connections: a 64th of the bound at a
    /// time, so a full table costs one scan per many opens rather than one per open.
    fn evict_least_recent(&mut self, time_ns: u64, out: &mut Vec<CallRecord>) {
        let mut by_age: Vec<(u64, u64)> = self
            .connections
            .iter()
            .map(|(id, connection)| (connection.last_seen_ns, *id))
            .collect();
        let count = (self.limits.max_connections / 64).clamp(1, by_age.len().max(1));
        if count < by_age.len() {
            by_age.select_nth_unstable(count);
        }
        for (_, connection_id) in by_age.into_iter().take(count) {
            self.stats.connections_evicted += 1;
            self.close(connection_id, time_ns, out);
        }
    }

    /// Ends every connection `matches` picks.
    fn close_matching(
        &mut self,
        matches: impl Fn(&Connection) -> bool,
        time_ns: u64,
        out: &mut Vec<CallRecord>,
    ) -> u64 {
        let closing: Vec<u64> = self
            .connections
            .iter()
            .filter(|(_, connection)| matches(connection))
            .map(|(connection_id, _)| *connection_id)
            .collect();
        for connection_id in &closing {
            self.close(*connection_id, time_ns, out);
        }
        closing.len() as u64
    }

    pub fn handle(&mut self, event: Event<'_>, out: &mut Vec<CallRecord>) {
        match event {
            Event::Open(opened) => self.open(opened, false, out),
            Event::Data(chunk) => self.data(chunk, out),
            Event::Close {
                connection_id,
                time_ns,
                ..
            }
            | Event::Closed {
                connection_id,
                time_ns,
            } => self.close(connection_id, time_ns, out),
            Event::CloseRange { tgid, first, last } => {
                self.close_matching(
                    |connection| {
                        connection.task.tgid == tgid && (first..=last).contains(&connection.fd)
                    },
                    0,
                    out,
                );
            }
        }
    }

    fn data(&mut self, chunk: Chunk<'_>, out: &mut Vec<CallRecord>) {
        let Chunk {
            connection_id,
            sent,
            offset,
            length,
            payload,
            time_ns,
            tls,
        } = chunk;
        let window = self.limits.max_connection_bytes / 2;
        let parser_limits = self.limits.parser;
        let Some(connection) = self.connections.get_mut(&connection_id) else {
            self.stats.events_unknown_connection += 1;
            return;
        };
        connection.last_seen_ns = time_ns;
        let direction = request_if(sent == connection.endpoints.is_client);
        let mut calls = Vec::new();
        let mut handshake_started = false;
        let (parser, stream) = if tls {
            let mid_stream = connection.mid_stream;
            let plaintext = connection.plaintext.get_or_insert_with(|| {
                Box::new(Plaintext {
                    parser: ConnectionParser::new(parser_limits, mid_stream),
                    sent: Reassembler::new(0, window),
                    received: Reassembler::new(0, window),
                })
            });
            let stream = if sent {
                &mut plaintext.sent
            } else {
                &mut plaintext.received
            };
            (&mut plaintext.parser, stream)
        } else {
            if offset == 0
                && !connection.mid_stream
                && !connection.tls_handshake
                && starts_tls_handshake(payload)
            {
                connection.tls_handshake = true;
                handshake_started = true;
            }
            let stream = if sent {
                &mut connection.sent
            } else {
                &mut connection.received
            };
            (&mut connection.parser, stream)
        };
        let given_up_before = stream.given_up();
        stream.push(offset, length, payload, time_ns, &mut |piece, time_ns| {
            deliver(parser, direction, piece, time_ns, &mut calls)
        });
        self.stats.bytes_given_up += stream.given_up() - given_up_before;
        // Measuring what a connection holds walks its open calls, too costly for every event; what
        // it holds grows by at most about what arrives, so measuring once a sixteenth of the
        // bound has arrived keeps it within a sixteenth of the bound.
        connection.bytes_since_check += length;
        let check_every = (self.limits.max_connection_bytes as u64 / 16).max(1);
        let measure = connection.bytes_since_check >= check_every;
        if measure {
            connection.bytes_since_check = 0;
        }
        if measure && connection.held_bytes() > self.limits.max_connection_bytes {
            // The parser is waiting for more than the bound allows (a huge header, a flood of
            // early bytes): what it holds is given up, and parsing resumes at the next message
            // it recognises.
            self.stats.connection_bytes_exceeded += 1;
            if tls && let Some(plaintext) = &mut connection.plaintext {
                plaintext.parser.close(time_ns, &mut calls);
                plaintext.parser = ConnectionParser::new(self.limits.parser, true);
                plaintext.sent.discard();
                plaintext.received.discard();
            } else {
                connection.parser.close(time_ns, &mut calls);
                connection.parser = ConnectionParser::new(self.limits.parser, true);
                connection.sent.discard();
                connection.received.discard();
            }
        }
        let (task, endpoints) = (Rc::clone(&connection.task), connection.endpoints);
        let settled = !connection.facts_reported && encryption_settled(&connection.parser, false);
        if handshake_started
            && let Some(other) = self
                .by_endpoints
                .get(&(endpoints.remote, endpoints.local))
                .and_then(|id| self.connections.get_mut(id))
        {
            other.tls_handshake = true;
        }
        if !calls.is_empty() {
            self.finish_calls(&task, endpoints, calls, tls, time_ns, out);
        }
        if settled {
            self.report_facts(connection_id, None, time_ns);
        }
    }

    /// Reports a connection's encryption once per connection, even when both of its ends are
    /// on this node. `closed`: the connection, already out of the table.
    fn report_facts(&mut self, connection_id: u64, closed: Option<&Connection>, time_ns: u64) {
        let Some(connection) = closed.or_else(|| self.connections.get(&connection_id)) else {
            return;
        };
        let endpoints = connection.endpoints;
        let other_end = self
            .by_endpoints
            .get(&(endpoints.remote, endpoints.local))
            .copied()
            .filter(|other| *other != connection_id);
        let other = other_end.and_then(|id| self.connections.get(&id));
        if other.is_some_and(|other| other.facts_reported) || connection.facts_reported {
            return;
        }
        let Some(protocol) = connection.parser.detected() else {
            return;
        };
        let (client, server) = endpoints.client_server();
        if self.reported_lately.contains(&(client, server)) {
            if let Some(connection) = self.connections.get_mut(&connection_id) {
                connection.facts_reported = true;
            }
            return;
        }
        let own = Some(&*connection.task);
        let peer_task = other.map(|other| &*other.task);
        let (client_task, server_task) = if endpoints.is_client {
            (own, peer_task)
        } else {
            (peer_task, own)
        };
        let mut seen_at = vec![if endpoints.is_client {
            "client"
        } else {
            "server"
        }];
        if other.is_some() {
            seen_at = vec!["client", "server"];
        }
        let facts = ConnectionFacts {
            client: Peer::new(client, client_task),
            server: Peer::new(server, server_task),
            protocol,
            tls: connection.parser.tls_facts().cloned(),
            time_ns,
            seen_at,
        };
        self.connection_facts.push(facts);
        if self.reported_lately.len() >= MAX_REPORTED_LATELY {
            self.reported_lately.pop_front();
        }
        self.reported_lately.push_back((client, server));
        if let Some(connection) = self.connections.get_mut(&connection_id) {
            connection.facts_reported = true;
        }
        if let Some(other) = other_end.and_then(|id| self.connections.get_mut(&id)) {
            other.facts_reported = true;
        }
    }

    /// Turns a connection's completed calls into records.
    fn finish_calls(
        &mut self,
        task: &Task,
        endpoints: Endpoints,
        calls: Vec<Call>,
        tls: bool,
        time_ns: u64,
        out: &mut Vec<CallRecord>,
    ) {
        let (client, server) = endpoints.client_server();
        let at_client = endpoints.is_client;
        let other_end = self
            .by_endpoints
            .get(&(endpoints.remote, endpoints.local))
            .and_then(|id| self.connections.get(id));
        let other_end_here = other_end.is_some();
        // The kernel copied this connection's bytes at this end only: the other end's process is
        // known from its open, and the call is complete now.
        //
        // Plaintext from a TLS library is read at each end that runs a hooked library, passive
        // or not: a call is reported when its mirror from the other end arrives or its wait
        // ends, naming both processes either way.
        let other_task = other_end.map(|connection| Rc::clone(&connection.task));
        let passive_peer = other_end
            .filter(|connection| connection.passive && !tls)
            .map(|connection| Rc::clone(&connection.task));
        let peer_task = if tls { &other_task } else { &passive_peer };
        for call in calls {
            self.stats.calls += 1;
            let (client_task, server_task) = if at_client {
                (Some(task), peer_task.as_deref())
            } else {
                (peer_task.as_deref(), Some(task))
            };
            let mut record = CallRecord::new(
                call,
                Peer::new(client, client_task),
                Peer::new(server, server_task),
                at_client,
                &self.redaction,
            );
            if tls {
                record.tls = true;
                record.tls_library = Some(TLS_LIBRARY);
            }
            if passive_peer.is_some() {
                record.seen_at = vec!["client", "server"];
                self.stats.calls_merged += 1;
                out.push(record);
            } else {
                self.report(record, other_end_here, time_ns, out);
            }
        }
    }

    /// Reports a call now, or holds it briefly for its mirror when the other end is on this
    /// node too.
    fn report(
        &mut self,
        record: CallRecord,
        other_end_here: bool,
        time_ns: u64,
        out: &mut Vec<CallRecord>,
    ) {
        if let Some(index) = self
            .awaiting_mirror
            .iter()
            .position(|(_, waiting)| waiting.is_mirror_of(&record))
        {
            if let Some((_, waiting)) = self.awaiting_mirror.remove(index) {
                self.stats.calls_merged += 1;
                out.push(waiting.merge(record));
            }
            return;
        }
        if !other_end_here {
            out.push(record);
            return;
        }
        if self.awaiting_mirror.len() >= self.limits.max_awaiting_mirror {
            self.stats.mirror_queue_full += 1;
            if let Some((_, oldest)) = self.awaiting_mirror.pop_front() {
                out.push(oldest);
            }
        }
        self.awaiting_mirror
            .push_back((time_ns.saturating_add(self.limits.mirror_wait_ns), record));
    }

    /// The connection is over: its parser reports what it still holds.
    pub fn close(&mut self, connection_id: u64, time_ns: u64, out: &mut Vec<CallRecord>) {
        let Some(mut connection) = self.connections.remove(&connection_id) else {
            return;
        };
        let key = (connection.endpoints.local, connection.endpoints.remote);
        if self.by_endpoints.get(&key) == Some(&connection_id) {
            self.by_endpoints.remove(&key);
        }
        let time_ns = if time_ns == 0 {
            connection.last_seen_ns
        } else {
            time_ns
        };
        let client = connection.endpoints.is_client;
        let (task, endpoints) = (Rc::clone(&connection.task), connection.endpoints);
        let Connection {
            parser,
            sent,
            received,
            plaintext,
            ..
        } = &mut connection;
        let calls = flush_and_close(parser, sent, received, client, time_ns);
        self.finish_calls(&task, endpoints, calls, false, time_ns, out);
        if let Some(plaintext) = plaintext {
            let Plaintext {
                parser,
                sent,
                received,
            } = &mut **plaintext;
            let calls = flush_and_close(parser, sent, received, client, time_ns);
            self.finish_calls(&task, endpoints, calls, true, time_ns, out);
        } else if connection.tls_handshake {
            self.note_opaque(&task, endpoints, time_ns);
        }
        if encryption_settled(&connection.parser, true) {
            self.report_facts(connection_id, Some(&connection), time_ns);
        }
    }

    /// A TLS connection of this process gave no plaintext: reported once per process per
    /// [`OPAQUE_REPORT_INTERVAL_NS`].
    fn note_opaque(&mut self, task: &Task, endpoints: Endpoints, time_ns: u64) {
        let recent = |at: &u64| time_ns.saturating_sub(*at) < OPAQUE_REPORT_INTERVAL_NS;
        if self.opaque_reported.get(&task.tgid).is_some_and(recent) {
            return;
        }
        if self.opaque_reported.len() >= MAX_OPAQUE_PROCESSES {
            self.opaque_reported.retain(|_, at| recent(at));
        }
        if self.opaque_reported.len() >= MAX_OPAQUE_PROCESSES
            || self.opaque_pending.len() >= MAX_OPAQUE_PENDING
        {
            self.stats.opaque_dropped += 1;
            return;
        }
        self.opaque_reported.insert(task.tgid, time_ns);
        self.opaque_pending.push(OpaqueTls {
            task: task.clone(),
            endpoints,
            time_ns,
        });
    }

    /// Processes seen using TLS that Moat could not read since the last call.
    pub fn take_opaque(&mut self) -> Vec<OpaqueTls> {
        std::mem::take(&mut self.opaque_pending)
    }

    /// Drops idle connections and releases calls whose other end did not report in time.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<CallRecord>) {
        let idle_timeout_ns = self.limits.idle_timeout_ns;
        self.stats.connections_expired += self.close_matching(
            |connection| now_ns.saturating_sub(connection.last_seen_ns) > idle_timeout_ns,
            now_ns,
            out,
        );
        while let Some((deadline, _)) = self.awaiting_mirror.front() {
            if *deadline > now_ns {
                break;
            }
            if let Some((_, record)) = self.awaiting_mirror.pop_front() {
                out.push(record);
            }
        }
    }

    /// Ends everything (the agent is stopping).
    pub fn close_all(&mut self, now_ns: u64, out: &mut Vec<CallRecord>) {
        let connection_ids: Vec<u64> = self.connections.keys().copied().collect();
        for connection_id in connection_ids {
            self.close(connection_id, now_ns, out);
        }
        out.extend(self.awaiting_mirror.drain(..).map(|(_, record)| record));
    }

    /// Process ids that own tracked connections.
    pub fn processes(&self) -> impl Iterator<Item = u32> + '_ {
        self.connections
            .values()
            .map(|connection| connection.task.tgid)
    }

    /// Ends the connections of a process that is gone (it exited without closing them).
    pub fn close_process(&mut self, tgid: u32, now_ns: u64, out: &mut Vec<CallRecord>) {
        self.close_matching(|connection| connection.task.tgid == tgid, now_ns, out);
    }
}

/// Whether a connection's encryption is known for good: an API protocol in clear as soon as it
/// is recognised, a TLS handshake once everything it shows in clear was read (or the connection
/// ended).
fn encryption_settled(parser: &ConnectionParser, closing: bool) -> bool {
    match parser.detected() {
        Some(Detected::Http1 | Detected::Http2) => true,
        Some(Detected::Tls) => closing || parser.tls_finished(),
        Some(Detected::Other) | None => false,
    }
}

/// Delivers what a connection's streams still hold and closes its parser: the calls it had open.
fn flush_and_close(
    parser: &mut ConnectionParser,
    sent: &mut Reassembler,
    received: &mut Reassembler,
    client: bool,
    time_ns: u64,
) -> Vec<Call> {
    let mut calls = Vec::new();
    for (stream, direction) in [(sent, request_if(client)), (received, request_if(!client))] {
        stream.flush(&mut |piece, time_ns| deliver(parser, direction, piece, time_ns, &mut calls));
    }
    parser.close(time_ns, &mut calls);
    calls
}

fn request_if(condition: bool) -> Direction {
    if condition {
        Direction::Request
    } else {
        Direction::Response
    }
}

fn deliver(
    parser: &mut ConnectionParser,
    direction: Direction,
    piece: Piece<'_>,
    time_ns: u64,
    calls: &mut Vec<Call>,
) {
    match piece {
        Piece::Bytes(bytes) => parser.data(direction, bytes, time_ns, calls),
        Piece::Gap(missing) => parser.gap(direction, missing, time_ns, calls),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::capture::record::Redaction;

    fn limits() -> TrackerLimits {
        TrackerLimits {
            max_connections: 4,
            max_connection_bytes: 64 * 1024,
            idle_timeout_ns: 10_000,
            mirror_wait_ns: 1_000,
            max_awaiting_mirror: 8,
            parser: Limits::default(),
        }
    }

    fn task(tgid: u32, comm: &str) -> Task {
        Task {
            tgid,
            pid: tgid,
            comm: comm.to_owned(),
            cgroup_id: 7,
        }
    }

    fn endpoints(local: &str, remote: &str, is_client: bool) -> Endpoints {
        Endpoints {
            local: local.parse::<SocketAddr>().unwrap(),
            remote: remote.parse::<SocketAddr>().unwrap(),
            is_client,
        }
    }

    /// Connection 1: curl's end of CLIENT -> SERVER.
    fn open_client_end(tracker: &mut Tracker, out: &mut Vec<CallRecord>) {
        let curl = opened(1, 3, task(100, "curl"), endpoints(CLIENT, SERVER, true), 10);
        tracker.open(curl, false, out);
    }

    /// Connection 2: nginx's end of curl's connection, opened at `at`.
    fn nginx_end(at: u64) -> Opened {
        opened(
            2,
            4,
            task(200, "nginx"),
            endpoints(SERVER, CLIENT, false),
            at,
        )
    }

    /// Connections 1 and 2: curl's and nginx's ends of one connection on this node.
    fn open_both_ends(tracker: &mut Tracker, out: &mut Vec<CallRecord>) {
        open_client_end(tracker, out);
        tracker.open(nginx_end(11), false, out);
    }

    const CLIENT: &str = "198.18.1.10:40000";
    const SERVER: &str = "198.18.2.10:8080";
    const REQUEST: &[u8] = b"GET /a?b=1 HTTP/1.1\r\nHost: api\r\nAuthorization: secret\r\n\r\n";
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    fn data(id: u64, sent: bool, offset: u64, bytes: &[u8], time_ns: u64) -> Event<'_> {
        Event::Data(Chunk {
            connection_id: id,
            sent,
            offset,
            length: bytes.len() as u64,
            payload: bytes,
            time_ns,
            tls: false,
        })
    }

    fn opened(id: u64, fd: u32, task: Task, endpoints: Endpoints, time_ns: u64) -> Opened {
        Opened {
            connection_id: id,
            fd,
            task,
            endpoints,
            passive: false,
            time_ns,
        }
    }

    fn plaintext(id: u64, sent: bool, offset: u64, bytes: &[u8], time_ns: u64) -> Event<'_> {
        match data(id, sent, offset, bytes, time_ns) {
            Event::Data(chunk) => Event::Data(Chunk { tls: true, ..chunk }),
            _ => unreachable!("data() makes data events"),
        }
    }

    /// The start of a TLS 1.2 ClientHello record, and an application data record.
    const CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03];
    const CIPHERTEXT: &[u8] = &[0x17, 0x03, 0x03, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef];

    #[test]
    fn tls_handshake_records_are_told_from_other_first_bytes() {
        assert!(starts_tls_handshake(CLIENT_HELLO));
        assert!(starts_tls_handshake(&[0x16, 0x03, 0x03]));
        assert!(!starts_tls_handshake(&[0x16, 0x03]), "too short to tell");
        assert!(!starts_tls_handshake(CIPHERTEXT));
        assert!(!starts_tls_handshake(b"GET / HTTP/1.1\r\n"));
        assert!(
            !starts_tls_handshake(&[0x16, 0x02, 0x00]),
            "SSLv2-era versions"
        );
    }

    #[test]
    fn tls_plaintext_read_at_both_ends_is_one_call_marked_tls_and_ciphertext_none() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        let nginx = Opened {
            passive: true,
            ..nginx_end(11)
        };
        open_client_end(&mut tracker, &mut out);
        tracker.open(nginx, false, &mut out);
        // The ciphertext, copied at the client's end only.
        tracker.handle(data(1, true, 0, CLIENT_HELLO, 12), &mut out);
        tracker.handle(data(1, false, 0, CIPHERTEXT, 13), &mut out);
        // The plaintext, from each end's TLS library, in its own stream.
        tracker.handle(plaintext(1, true, 0, REQUEST, 20), &mut out);
        tracker.handle(plaintext(2, false, 0, REQUEST, 21), &mut out);
        tracker.handle(plaintext(2, true, 0, RESPONSE, 30), &mut out);
        tracker.handle(plaintext(1, false, 0, RESPONSE, 31), &mut out);
        tracker.handle(
            Event::Closed {
                connection_id: 1,
                time_ns: 40,
            },
            &mut out,
        );
        tracker.handle(
            Event::Closed {
                connection_id: 2,
                time_ns: 41,
            },
            &mut out,
        );
        tracker.expire(10_000_000, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        let call = &out[0];
        assert!(call.tls);
        assert_eq!(call.tls_library, Some(TLS_LIBRARY));
        assert_eq!(call.path.as_deref(), Some("/a"));
        assert_eq!(call.status, Some(200));
        assert_eq!(call.seen_at, ["client", "server"]);
        assert_eq!(call.server.comm.as_deref(), Some("nginx"));
        assert!(
            tracker.take_opaque().is_empty(),
            "both ends gave plaintext: nothing is opaque"
        );
    }

    #[test]
    fn tls_without_plaintext_is_reported_opaque_once_per_process() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        for (id, port) in [(1u64, 40000u16), (3, 40001), (5, 40002)] {
            let client = format!("198.18.1.10:{port}");
            tracker.open(
                opened(
                    id,
                    3,
                    task(100, "rustls"),
                    endpoints(&client, SERVER, true),
                    10,
                ),
                false,
                &mut out,
            );
            tracker.handle(data(id, true, 0, CLIENT_HELLO, 12), &mut out);
            tracker.handle(data(id, false, 0, CIPHERTEXT, 13), &mut out);
            tracker.close(id, 20, &mut out);
        }
        // A clear connection of another process, and one whose first bytes were missed.
        tracker.open(
            opened(
                7,
                3,
                task(300, "clear"),
                endpoints(CLIENT, SERVER, true),
                10,
            ),
            false,
            &mut out,
        );
        tracker.handle(data(7, true, 0, REQUEST, 12), &mut out);
        tracker.close(7, 20, &mut out);
        tracker.open(
            opened(9, 3, task(400, "late"), endpoints(CLIENT, SERVER, true), 10),
            true,
            &mut out,
        );
        tracker.handle(data(9, true, 0, CLIENT_HELLO, 12), &mut out);
        tracker.close(9, 20, &mut out);
        let opaque = tracker.take_opaque();
        assert_eq!(opaque.len(), 1, "{opaque:#?}");
        assert_eq!(opaque[0].task.comm, "rustls");
        assert!(tracker.take_opaque().is_empty(), "taken once");
        assert!(
            out.iter()
                .all(|call| call.client.comm.as_deref() == Some("clear") && !call.tls),
            "ciphertext gives no calls, only the clear request does: {out:#?}"
        );
    }

    #[test]
    fn a_call_seen_at_one_end_is_reported_with_that_process() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_client_end(&mut tracker, &mut out);
        tracker.handle(data(1, true, 0, REQUEST, 20), &mut out);
        tracker.handle(data(1, false, 0, RESPONSE, 50), &mut out);
        assert_eq!(out.len(), 1);
        let call = &out[0];
        assert_eq!(call.path.as_deref(), Some("/a"));
        assert_eq!(call.status, Some(200));
        assert_eq!(call.client.comm.as_deref(), Some("curl"));
        assert_eq!(call.server.pid, None);
        assert_eq!(call.seen_at, ["client"]);
        let authorization = call
            .request
            .headers
            .iter()
            .find(|h| h.name == "Authorization");
        assert_eq!(authorization.map(|h| h.value.as_str()), Some("[redacted]"));
    }

    #[test]
    fn a_tls_handshake_seen_at_both_ends_is_reported_once_when_it_is_read() {
        let fixture = |side: &str| {
            let path = format!(
                "{}/../protocols/tests/data/tls/tls12_mtls.{side}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read(&path).unwrap_or_else(|error| panic!("read {path}: {error}"))
        };
        let (hello, answer) = (fixture("client"), fixture("server"));
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_both_ends(&mut tracker, &mut out);
        tracker.handle(data(1, true, 0, &hello, 20), &mut out);
        tracker.handle(data(2, false, 0, &hello, 21), &mut out);
        tracker.handle(data(2, true, 0, &answer, 30), &mut out);
        tracker.handle(data(1, false, 0, &answer, 31), &mut out);
        // Application data after the handshake: both directions are past the clear part.
        let application = [23, 3, 3, 0, 2, 0xaa, 0xbb];
        let hello_length = hello.len() as u64;
        let answer_length = answer.len() as u64;
        tracker.handle(data(1, true, hello_length, &application, 40), &mut out);
        tracker.handle(data(1, false, answer_length, &application, 41), &mut out);
        tracker.handle(data(2, false, hello_length, &application, 42), &mut out);
        tracker.handle(data(2, true, answer_length, &application, 43), &mut out);
        assert!(out.is_empty(), "ciphertext yields no calls");
        let facts = std::mem::take(&mut tracker.connection_facts);
        assert_eq!(facts.len(), 1, "{facts:#?}");
        assert_eq!(facts[0].encryption(), "mtls");
        assert_eq!(facts[0].client.comm.as_deref(), Some("curl"));
        assert_eq!(facts[0].server.comm.as_deref(), Some("nginx"));
        assert_eq!(facts[0].seen_at, ["client", "server"]);
        tracker.close(1, 50, &mut out);
        tracker.close(2, 51, &mut out);
        assert!(tracker.connection_facts.is_empty(), "reported once");
    }

    #[test]
    fn an_end_that_reports_after_the_other_end_closed_does_not_report_the_connection_again() {
        let hello = [22, 3, 1, 0, 4, 1, 0, 0, 0];
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_client_end(&mut tracker, &mut out);
        tracker.handle(data(1, true, 0, &hello, 20), &mut out);
        tracker.close(1, 30, &mut out);
        assert_eq!(std::mem::take(&mut tracker.connection_facts).len(), 1);
        // The server's end, known only now.
        let nginx = nginx_end(31);
        tracker.open(nginx, false, &mut out);
        tracker.handle(data(2, false, 0, &hello, 32), &mut out);
        tracker.close(2, 40, &mut out);
        assert!(tracker.connection_facts.is_empty(), "reported once");
        // Another connection between the same two hosts (another client port) is news.
        let curl = opened(
            3,
            5,
            task(100, "curl"),
            endpoints("198.18.1.10:40001", SERVER, true),
            50,
        );
        tracker.open(curl, false, &mut out);
        tracker.handle(data(3, true, 0, REQUEST, 51), &mut out);
        assert_eq!(tracker.connection_facts.len(), 1);
    }

    #[test]
    fn a_plaintext_api_connection_is_reported_when_its_protocol_is_known() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_client_end(&mut tracker, &mut out);
        tracker.handle(data(1, true, 0, REQUEST, 20), &mut out);
        let facts = std::mem::take(&mut tracker.connection_facts);
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].encryption(), "plaintext");
        assert_eq!(facts[0].protocol_name(), "http1");
        tracker.handle(data(1, false, 0, RESPONSE, 50), &mut out);
        tracker.close(1, 60, &mut out);
        assert!(tracker.connection_facts.is_empty());
    }

    #[test]
    fn a_call_seen_at_both_ends_is_reported_once_with_both_processes() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_both_ends(&mut tracker, &mut out);
        tracker.handle(data(1, true, 0, REQUEST, 20), &mut out);
        tracker.handle(data(2, false, 0, REQUEST, 21), &mut out);
        tracker.handle(data(2, true, 0, RESPONSE, 30), &mut out);
        assert!(out.is_empty(), "the server's view waits for the client's");
        tracker.handle(data(1, false, 0, RESPONSE, 31), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].client.comm.as_deref(), Some("curl"));
        assert_eq!(out[0].server.comm.as_deref(), Some("nginx"));
        assert_eq!(out[0].seen_at, ["client", "server"]);
        assert_eq!(tracker.stats.calls_merged, 1);
    }

    #[test]
    fn a_call_copied_at_one_end_names_the_passive_end_s_process_at_once() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_client_end(&mut tracker, &mut out);
        let nginx = Opened {
            passive: true,
            ..nginx_end(11)
        };
        tracker.open(nginx, false, &mut out);
        tracker.handle(data(1, true, 0, REQUEST, 20), &mut out);
        tracker.handle(data(1, false, 0, RESPONSE, 31), &mut out);
        assert_eq!(out.len(), 1, "no wait for a mirror that will not come");
        assert_eq!(out[0].client.comm.as_deref(), Some("curl"));
        assert_eq!(out[0].server.comm.as_deref(), Some("nginx"));
        assert_eq!(out[0].seen_at, ["client", "server"]);
        assert_eq!(tracker.stats.calls_merged, 1);
    }

    #[test]
    fn an_unanswered_mirror_is_released_after_the_wait() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_both_ends(&mut tracker, &mut out);
        tracker.handle(data(2, false, 0, REQUEST, 21), &mut out);
        tracker.handle(data(2, true, 0, RESPONSE, 30), &mut out);
        tracker.expire(500, &mut out);
        assert!(out.is_empty());
        tracker.expire(1_100, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seen_at, ["server"]);
    }

    #[test]
    fn connections_are_bounded_and_evictions_counted() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        for id in 0..6u64 {
            let local = format!("198.18.1.10:{}", 40000 + id);
            tracker.open(
                opened(
                    id,
                    3,
                    task(100, "curl"),
                    endpoints(&local, SERVER, true),
                    id,
                ),
                false,
                &mut out,
            );
        }
        assert_eq!(tracker.connection_count(), 4);
        assert_eq!(tracker.stats.connections_evicted, 2);
        tracker.handle(data(0, true, 0, REQUEST, 20), &mut out);
        assert_eq!(
            tracker.stats.events_unknown_connection, 1,
            "connection 0 was evicted"
        );
    }

    #[test]
    fn idle_connections_expire_and_their_open_calls_are_reported_incomplete() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_client_end(&mut tracker, &mut out);
        tracker.handle(data(1, true, 0, REQUEST, 20), &mut out);
        tracker.expire(5_000, &mut out);
        assert!(out.is_empty());
        tracker.expire(20_021, &mut out);
        assert_eq!(tracker.connection_count(), 0);
        assert_eq!(tracker.stats.connections_expired, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, None);
        assert!(!out[0].response.complete);
    }

    #[test]
    fn a_connection_over_its_byte_bound_restarts_its_parser_and_counts_it() {
        // A bound below the body bytes the parser keeps, so a large upload reaches it.
        let limits = TrackerLimits {
            max_connection_bytes: 32 * 1024,
            ..limits()
        };
        let mut tracker = Tracker::new(limits, Redaction::new(&[]));
        let mut out = Vec::new();
        open_client_end(&mut tracker, &mut out);
        let head = b"POST /upload HTTP/1.1\r\nContent-Length: 131072\r\n\r\n";
        tracker.handle(data(1, true, 0, head, 20), &mut out);
        let mut offset = head.len() as u64;
        let body = vec![b'a'; 8 * 1024];
        for _ in 0..16 {
            tracker.handle(data(1, true, offset, &body, 21), &mut out);
            offset += body.len() as u64;
            assert!(tracker.held_bytes() <= 32 * 1024);
        }
        assert!(tracker.stats.connection_bytes_exceeded >= 1);
        // Parsing resumes at the next message.
        tracker.handle(data(1, true, offset, REQUEST, 23), &mut out);
        tracker.handle(data(1, false, 0, RESPONSE, 30), &mut out);
        assert!(
            out.iter().any(|call| call.path.as_deref() == Some("/a")),
            "{out:#?}"
        );
    }

    #[test]
    fn close_range_ends_the_connections_of_that_process_in_the_range() {
        let mut tracker = Tracker::new(limits(), Redaction::new(&[]));
        let mut out = Vec::new();
        open_client_end(&mut tracker, &mut out);
        tracker.open(
            opened(
                2,
                9,
                task(100, "curl"),
                endpoints("198.18.1.10:40001", SERVER, true),
                10,
            ),
            false,
            &mut out,
        );
        tracker.handle(
            Event::CloseRange {
                tgid: 100,
                first: 0,
                last: 5,
            },
            &mut out,
        );
        assert_eq!(tracker.connection_count(), 1);
    }
}
