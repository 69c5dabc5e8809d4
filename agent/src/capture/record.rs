//! The `api.call` record: one call as the agent writes it, with credentials redacted. Field names
//! are part of Moat's interface (docs/agent-output.md).

use std::{borrow::Cow, net::SocketAddr};

use protocols::{Call, Header, Message};
use serde::Serialize;

use super::event::Task;

/// Replaces the values of credential headers.
pub use intelligence::exchange::REDACTED;

/// Names of the headers whose values never leave the agent. A short list compared without
/// regard to case: cheaper per header than lower-casing each name for a set lookup.
#[derive(Debug, Clone)]
pub struct Redaction {
    names: Vec<String>,
    /// The names `--redact-header` added: deployment-specific credential headers, API keys
    /// more often than not, so requests carrying them count as authenticated.
    custom: Vec<String>,
}

impl Redaction {
    pub fn new(extra: &[String]) -> Self {
        // Credentials whatever the deployment, and the API key headers the auth judgement
        // knows; `--redact-header` adds more.
        let mut names: Vec<String> = intelligence::auth::CREDENTIAL_HEADERS
            .iter()
            .chain(&intelligence::auth::API_KEY_HEADERS)
            .map(|name| (*name).to_owned())
            .chain(extra.iter().map(|name| name.to_ascii_lowercase()))
            .collect();
        names.sort();
        names.dedup();
        let custom = extra.iter().map(|name| name.to_ascii_lowercase()).collect();
        Self { names, custom }
    }

    fn redacts(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|redacted| redacted.eq_ignore_ascii_case(name))
    }

    /// The headers as records, taking their strings rather than copying them; the values
    /// replaced go to `credentials`.
    fn headers(
        &self,
        headers: Vec<Header>,
        credentials: &mut Vec<HeaderRecord>,
    ) -> Vec<HeaderRecord> {
        headers
            .into_iter()
            .map(|header| {
                if self.redacts(&header.name) {
                    credentials.push(HeaderRecord {
                        name: header.name.clone(),
                        value: header.value,
                    });
                    HeaderRecord {
                        name: header.name,
                        value: REDACTED.to_owned(),
                    }
                } else {
                    HeaderRecord {
                        name: header.name,
                        value: header.value,
                    }
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HeaderRecord {
    /// Borrowed when the parser found it well known (see `protocols::Header`).
    pub name: Cow<'static, str>,
    pub value: String,
}

/// One end of a call. The process is absent when that end is not on this node (or was not
/// captured).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Peer {
    pub ip: std::net::IpAddr,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// Who this end is (pod, service, node, range or external), filled in when the call is
    /// reported.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::identity::PeerIdentity>,
}

impl Peer {
    pub fn new(address: SocketAddr, task: Option<&Task>) -> Self {
        Self {
            ip: address.ip(),
            port: address.port(),
            pid: task.map(|task| task.tgid),
            comm: task.map(|task| task.comm.clone()),
            cgroup_id: task.map(|task| task.cgroup_id),
            identity: None,
        }
    }

    /// (pid, cgroup id) of the process at this end, when it is on this host.
    pub fn process(&self) -> Option<(u32, u64)> {
        Some((self.pid?, self.cgroup_id?))
    }

    pub fn has_process(&self) -> bool {
        self.pid.is_some()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageRecord {
    /// Bytes on the wire, head and body with framing.
    pub bytes: u64,
    pub body_bytes: u64,
    pub complete: bool,
    pub headers: Vec<HeaderRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trailers: Vec<HeaderRecord>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GrpcRecord {
    pub service: String,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub request_messages: u64,
    pub response_messages: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallRecord {
    pub protocol: &'static str,
    pub client: Peer,
    pub server: Peer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcRecord>,
    /// First request byte to last response byte, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    pub request: MessageRecord,
    pub response: MessageRecord,
    /// `truncated`, `mid_stream`, `gap`.
    pub flags: Vec<&'static str>,
    /// How the request authenticated (`none`, `basic`, `bearer_jwt`, ...), judged before its
    /// credentials were redacted.
    pub auth: intelligence::auth::AuthScheme,
    /// The service the call went to (its bound API's name, else its Kubernetes service or
    /// workload, else the server's address), and the endpoint template it counts under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Who called, beyond the client's address: its workload or range, application, customer
    /// and end user, as the detection file allows them to be shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<intelligence::Caller>,
    /// The ends of the call on this host (whose processes are named): `client`, `server` or both.
    pub seen_at: Vec<&'static str>,
    /// Read as plaintext from a TLS library (uprobes) rather than from the socket's bytes.
    pub tls: bool,
    /// Which library (`libssl.so.3`), when `tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_library: Option<&'static str>,
    /// Monotonic time of the call's first byte (0 when unknown): when its ends are identified,
    /// since addresses change hands.
    #[serde(skip)]
    pub started_ns: u64,
    /// Bodies stay in memory for analysis; never serialized.
    #[serde(skip)]
    pub request_body: Vec<u8>,
    #[serde(skip)]
    pub response_body: Vec<u8>,
    /// The request's credential headers as sent, before redaction: token hygiene and the
    /// caller's customer and end user are judged from them in the agent; never serialized.
    #[serde(skip)]
    pub credentials: Vec<HeaderRecord>,
}

/// `query` with the value of each parameter whose (percent-decoded) name `redacts` replaced.
fn redacted_query(query: &str, redacts: impl Fn(&str) -> bool) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() => {
                let decoded = percent_encoding::percent_decode_str(&name.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned();
                if redacts(&decoded) {
                    format!("{name}={REDACTED}")
                } else {
                    pair.to_owned()
                }
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// An absolute-form target (`http://user:secret@host/`) without its password.
fn without_userinfo_password(path: &str) -> String {
    let Some((scheme, rest)) = path.split_once("://") else {
        return path.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:{REDACTED}@{host}{tail}")
        }
        None => path.to_owned(),
    }
}

/// The message as a record, and its kept body (kept for analysis, never serialized); the
/// credential values redacted go to `credentials`.
fn message(
    message: Message,
    redaction: &Redaction,
    credentials: &mut Vec<HeaderRecord>,
) -> (MessageRecord, Vec<u8>) {
    let record = MessageRecord {
        bytes: message.wire_bytes,
        body_bytes: message.body_bytes,
        complete: message.complete,
        headers: redaction.headers(message.headers, credentials),
        trailers: redaction.headers(message.trailers, credentials),
    };
    (record, message.body)
}

impl CallRecord {
    pub fn new(
        call: Call,
        client: Peer,
        server: Peer,
        at_client: bool,
        redaction: &Redaction,
    ) -> Self {
        let mut flags = Vec::new();
        if call.flags.truncated {
            flags.push("truncated");
        }
        if call.flags.mid_stream {
            flags.push("mid_stream");
        }
        if call.flags.gap {
            flags.push("gap");
        }
        let latency_us = call.latency_ns().map(|ns| ns / 1_000);
        let started_ns = [call.request.first_byte_ns, call.response.first_byte_ns]
            .into_iter()
            .filter(|&ns| ns != 0)
            .min()
            .unwrap_or(0);
        let auth = intelligence::auth::scheme_of(
            call.request
                .headers
                .iter()
                .map(|header| (&*header.name, header.value.as_str())),
            call.query.as_deref(),
            &redaction.custom,
        );
        let mut credentials = Vec::new();
        let (request, request_body) = message(call.request, redaction, &mut credentials);
        // What a server sets (cookies) is the client's secret, not the caller's credential.
        let (response, response_body) = message(call.response, redaction, &mut Vec::new());
        Self {
            protocol: call.protocol.as_str(),
            client,
            server,
            stream_id: call.stream_id,
            latency_us,
            request,
            response,
            grpc: call.grpc.map(|grpc| GrpcRecord {
                service: grpc.service,
                method: grpc.method,
                status: grpc.status,
                message: grpc.message,
                request_messages: grpc.request_messages,
                response_messages: grpc.response_messages,
            }),
            method: call.method,
            authority: call.authority,
            path: call.path,
            query: call.query,
            status: call.status,
            flags,
            auth,
            service: None,
            endpoint: None,
            caller: None,
            seen_at: vec![if at_client { "client" } else { "server" }],
            tls: false,
            tls_library: None,
            started_ns,
            request_body,
            response_body,
            credentials,
        }
    }

    /// Replaces what the record would carry in clear of the values the detectors found
    /// sensitive (query parameters, header values, a password in an absolute target), and of
    /// the keys and tokens a query carries: a finding says they were there; the record, which
    /// leaves the agent, must not carry them.
    pub fn redact_found(&mut self, detections: &[sensitive::Detection]) {
        use sensitive::{Direction, Location};
        let mut parameters: Vec<&str> = Vec::new();
        for detection in detections {
            match &detection.location {
                Location::Query { param } => parameters.push(param),
                Location::Header { name } => {
                    let message = match detection.direction {
                        Direction::Request => &mut self.request,
                        Direction::Response => &mut self.response,
                    };
                    for header in message
                        .headers
                        .iter_mut()
                        .filter(|header| header.name.eq_ignore_ascii_case(name))
                    {
                        header.value = REDACTED.to_owned();
                    }
                }
                Location::Path => {
                    if let Some(path) = &mut self.path {
                        *path = without_userinfo_password(path);
                    }
                }
                Location::Json { .. } | Location::Form { .. } | Location::Text { .. } => {}
            }
        }
        if let Some(query) = &mut self.query {
            *query = redacted_query(query, |name| {
                intelligence::auth::is_api_key_parameter(name) || parameters.contains(&name)
            });
        }
    }

    /// Whether `other` is this same call captured at the other end of the connection. A field
    /// one end could not see (a request read that was under way when capture started, bytes lost
    /// in a gap) does not rule a match out; a field both ends saw must agree.
    pub fn is_mirror_of(&self, other: &Self) -> bool {
        fn agree<T: PartialEq>(one: &Option<T>, other: &Option<T>) -> bool {
            one.is_none() || other.is_none() || one == other
        }
        self.client.ip == other.client.ip
            && self.client.port == other.client.port
            && self.server.ip == other.server.ip
            && self.server.port == other.server.port
            && self.seen_at != other.seen_at
            && self.stream_id == other.stream_id
            && agree(&self.method, &other.method)
            && agree(&self.path, &other.path)
            && agree(&self.status, &other.status)
    }

    /// How much of the call this view saw: more is better, then fewer flags.
    fn completeness(&self) -> (bool, bool, usize) {
        (
            self.method.is_some(),
            self.status.is_some(),
            usize::MAX - self.flags.len(),
        )
    }

    /// Folds in the same call seen at the other end: both processes, and the cleaner parse.
    pub fn merge(self, other: Self) -> Self {
        let (mut best, rest) = if other.completeness() > self.completeness() {
            (other, self)
        } else {
            (self, other)
        };
        if !best.client.has_process() {
            best.client = rest.client;
        }
        if !best.server.has_process() {
            best.server = rest.server;
        }
        // Latency as the client lived it: from its first request byte to its last response byte.
        if rest.seen_at == ["client"] && rest.latency_us.is_some() {
            best.latency_us = rest.latency_us;
        }
        best.seen_at = vec!["client", "server"];
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_queries_and_passwords_in_targets_are_redacted() {
        assert_eq!(
            redacted_query(
                "page=2&api_key=k-123&Token=t&empty=",
                intelligence::auth::is_api_key_parameter
            ),
            "page=2&api_key=[redacted]&Token=[redacted]&empty="
        );
        assert_eq!(
            redacted_query("e%6Dail=ann%40example.com&q=x", |name| name == "email"),
            "e%6Dail=[redacted]&q=x",
            "names compare decoded"
        );
        assert_eq!(
            without_userinfo_password("http://ann:s3cret@proxy.example:8080/a?b"),
            "http://ann:[redacted]@proxy.example:8080/a?b"
        );
        assert_eq!(without_userinfo_password("/plain/path"), "/plain/path");
    }
}
