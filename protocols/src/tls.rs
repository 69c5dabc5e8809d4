//! TLS handshake facts read from a connection's first bytes, without decrypting anything.
//!
//! The client's ClientHello and the server's ServerHello travel in clear in every TLS version;
//! in TLS 1.2 and below the server's certificate, its CertificateRequest (mutual TLS) and the
//! client's Certificate do too. [`TlsObserver`] reads the TLS record layer of both directions,
//! reassembles handshake messages across records and picks out what they say: SNI, offered and
//! chosen versions and cipher suites, ALPN, whether a client certificate was requested and
//! sent, and the server certificate's subject, names and validity. It stops reading a direction
//! as soon as what follows is encrypted, after a gap, or on bytes that are not TLS; what it has
//! read by then is kept (partial input gives partial facts). It never panics and holds at most
//! [`MAX_HANDSHAKE_MESSAGE_BYTES`] per direction.

use std::net::IpAddr;

/// Largest handshake message reassembled (a certificate chain rarely exceeds 16 KiB). A longer
/// one ends the reading of that direction.
pub const MAX_HANDSHAKE_MESSAGE_BYTES: usize = 64 * 1024;

const RECORD_HEADER: usize = 5;
/// TLSPlaintext.length may not exceed 2^14; 2^14 + 2048 allows for compressed/odd peers.
const MAX_RECORD_PAYLOAD: usize = (1 << 14) + 2048;

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;

const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_SERVER_HELLO: u8 = 2;
const HANDSHAKE_CERTIFICATE: u8 = 11;
const HANDSHAKE_CERTIFICATE_REQUEST: u8 = 13;
const HANDSHAKE_SERVER_HELLO_DONE: u8 = 14;
const HANDSHAKE_CLIENT_KEY_EXCHANGE: u8 = 16;

const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
const EXTENSION_SUPPORTED_VERSIONS: u16 = 43;

pub const SSL_3_0: u16 = 0x0300;
pub const TLS_1_0: u16 = 0x0301;
pub const TLS_1_1: u16 = 0x0302;
pub const TLS_1_2: u16 = 0x0303;
pub const TLS_1_3: u16 = 0x0304;

/// The ServerHello.random of a HelloRetryRequest (RFC 8446, 4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// Most entries kept of any list a peer sends (cipher suites, ALPN names, certificate names):
/// enough for every real client, bounded against a hostile one.
const MAX_LIST_ENTRIES: usize = 128;
/// Longest name kept (SNI, ALPN, certificate names and subject).
const MAX_NAME_BYTES: usize = 255;

/// Whether `bytes` (a connection's first client bytes) start like a TLS handshake record:
/// content type 22, then a 3.x version. None: too few bytes to tell.
pub fn starts_like_tls(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [] => None,
        [first, ..] if *first != CONTENT_HANDSHAKE => Some(false),
        [_] => None,
        [_, major, ..] if *major != 3 => Some(false),
        [_, _] => None,
        [_, _, minor, ..] => Some(*minor <= 4),
    }
}

/// GREASE values (RFC 8701) carry no meaning: 0x?A?A with both bytes equal.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// What a ClientHello offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHelloFacts {
    /// ClientHello.legacy_version (the highest version a pre-1.3 client offers).
    pub legacy_version: u16,
    /// The versions offered, highest first: the supported_versions extension when present
    /// (GREASE left out), otherwise every version from TLS 1.0 (SSL 3.0 for an SSL 3.0 hello)
    /// up to legacy_version.
    pub versions: Vec<u16>,
    /// Offered cipher suites in the client's order, GREASE left out.
    pub cipher_suites: Vec<u16>,
    /// The server_name extension's host name.
    pub server_name: Option<String>,
    /// ALPN protocols offered, in order.
    pub alpn: Vec<String>,
}

impl ClientHelloFacts {
    /// The highest version offered.
    pub fn max_version(&self) -> u16 {
        self.versions
            .iter()
            .copied()
            .max()
            .unwrap_or(self.legacy_version)
    }
}

/// What a ServerHello chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHelloFacts {
    /// The negotiated version: supported_versions when present, otherwise legacy_version.
    pub version: u16,
    pub cipher_suite: u16,
    /// The ALPN protocol chosen.
    pub alpn: Option<String>,
}

/// What the server's (leaf) certificate says, read from its DER encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateFacts {
    /// The subject's attributes in RFC 4514 order of appearance reversed, e.g.
    /// `CN=api.example,O=Example` (only CN, O, OU, C, ST, L are named).
    pub subject: String,
    pub common_name: Option<String>,
    /// subjectAltName dNSName entries.
    pub dns_names: Vec<String>,
    /// subjectAltName iPAddress entries.
    pub ip_addresses: Vec<IpAddr>,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
}

impl CertificateFacts {
    /// Whether the certificate names `host` (a DNS name or an address): a SAN entry when there
    /// are any (RFC 6125 ignores the CN then), otherwise the CN; `*.` matches one left-most label.
    pub fn names(&self, host: &str) -> bool {
        if let Ok(address) = host.parse::<IpAddr>() {
            return self.ip_addresses.contains(&address);
        }
        if self.dns_names.is_empty() && self.ip_addresses.is_empty() {
            return self
                .common_name
                .as_deref()
                .is_some_and(|name| name_matches(name, host));
        }
        self.dns_names.iter().any(|name| name_matches(name, host))
    }
}

/// A certificate name (possibly `*.` wildcard) against a host name, case-insensitively; a
/// trailing dot on either is ignored.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || pattern.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// Everything a handshake showed, so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// The first ClientHello (a second one after a HelloRetryRequest only replaces nothing).
    pub client_hello: Option<ClientHelloFacts>,
    pub server_hello: Option<ServerHelloFacts>,
    /// The server asked the client to offer again (TLS 1.3 HelloRetryRequest).
    pub hello_retry: bool,
    /// Some(true): the server sent a CertificateRequest (mutual TLS); Some(false): its whole
    /// hello flight was seen without one (TLS 1.2 and below). None: not visible (TLS 1.3 sends
    /// it encrypted) or not seen.
    pub certificate_requested: Option<bool>,
    /// Whether the client sent a certificate (a non-empty Certificate message). None: not
    /// visible or not seen.
    pub client_certificate_sent: Option<bool>,
    /// The server's leaf certificate, when it travelled in clear (TLS 1.2 and below).
    pub server_certificate: Option<CertificateFacts>,
    /// A plaintext alert's (level, description), e.g. (2, 70) protocol_version: the first seen.
    pub alert: Option<(u8, u8)>,
    /// Bytes that broke the TLS framing or a handshake message that did not parse.
    pub malformed: bool,
}

impl TlsFacts {
    /// The version the connection uses, when the server said.
    pub fn negotiated_version(&self) -> Option<u16> {
        self.server_hello.as_ref().map(|hello| hello.version)
    }

    /// Whether the handshake is known to use mutual TLS: the client sent a certificate, or
    /// (TLS 1.2) the server required one and the connection went on.
    pub fn mutual(&self) -> Option<bool> {
        match (self.certificate_requested, self.client_certificate_sent) {
            (_, Some(sent)) => Some(sent),
            (Some(false), _) => Some(false),
            _ => None,
        }
    }

    /// Why this handshake is weak, per docs/tls.md: a version below TLS 1.2 negotiated or the
    /// best the client could offer, or a weak cipher suite negotiated. Empty: nothing weak seen.
    pub fn weaknesses(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(client) = &self.client_hello
            && client.max_version() < TLS_1_2
        {
            reasons.push(format!(
                "client offered at most {}",
                version_name(client.max_version())
            ));
        }
        if let Some(server) = &self.server_hello {
            if server.version < TLS_1_2 {
                reasons.push(format!("negotiated {}", version_name(server.version)));
            }
            if is_weak_cipher_suite(server.cipher_suite) {
                reasons.push(format!(
                    "negotiated weak cipher suite {}",
                    cipher_suite_label(server.cipher_suite)
                ));
            }
        } else if let Some(client) = &self.client_hello
            && !client.cipher_suites.is_empty()
            && client
                .cipher_suites
                .iter()
                .all(|suite| is_weak_cipher_suite(*suite) || is_signalling_suite(*suite))
            && client
                .cipher_suites
                .iter()
                .any(|suite| is_weak_cipher_suite(*suite))
        {
            reasons.push("client offered only weak cipher suites".to_owned());
        }
        reasons
    }
}

/// `TLS 1.2`, `SSL 3.0`, or the hex code of anything else.
pub fn version_name(version: u16) -> String {
    match version {
        SSL_3_0 => "SSL 3.0".to_owned(),
        TLS_1_0 => "TLS 1.0".to_owned(),
        TLS_1_1 => "TLS 1.1".to_owned(),
        TLS_1_2 => "TLS 1.2".to_owned(),
        TLS_1_3 => "TLS 1.3".to_owned(),
        other => format!("0x{other:04x}"),
    }
}

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV and TLS_FALLBACK_SCSV: signals, not ciphers.
fn is_signalling_suite(suite: u16) -> bool {
    matches!(suite, 0x00ff | 0x5600)
}

/// Cipher suites with a NULL or export cipher, RC4, DES or 3DES, anonymous key exchange, or MD5
/// MACs (IANA TLS Cipher Suites registry; RFC 7465 bans RC4, RFC 8429 deprecates DES and
/// 3DES).
pub fn is_weak_cipher_suite(suite: u16) -> bool {
    matches!(
        suite,
        // NULL, export, RC4, IDEA-MD5, DES, 3DES and anonymous suites of RFC 2246/4346.
        0x0000..=0x001b
        // Export RC4/RC2/DES of the 1999 drafts, DHE_DSS_WITH_RC4.
        | 0x0060..=0x0066
        // Anonymous AES.
        | 0x0034 | 0x003a | 0x006c | 0x006d | 0x00a6 | 0x00a7
        // NULL with SHA-1/SHA-256, and PSK NULL.
        | 0x002c..=0x002e | 0x003b | 0x00b0 | 0x00b1 | 0x00b4 | 0x00b5 | 0x00b8 | 0x00b9
        // Anonymous Camellia and SEED.
        | 0x0046 | 0x0089 | 0x009b | 0x00bf | 0x00c5
        // PSK with RC4 or 3DES.
        | 0x008a | 0x008b | 0x008e | 0x008f | 0x0092 | 0x0093
        // ECDH/ECDHE with NULL, RC4 or 3DES; anonymous ECDH; SRP with 3DES.
        | 0xc001..=0xc003 | 0xc006..=0xc008 | 0xc00b..=0xc00d | 0xc010..=0xc012
        | 0xc015..=0xc01c
        // ECDHE_PSK with RC4, 3DES or NULL.
        | 0xc033 | 0xc034 | 0xc039..=0xc03b
    )
}

/// The IANA name of common cipher suites, otherwise `0x....`.
pub fn cipher_suite_label(suite: u16) -> String {
    let name = match suite {
        0x0000 => "TLS_NULL_WITH_NULL_NULL",
        0x0001 => "TLS_RSA_WITH_NULL_MD5",
        0x0002 => "TLS_RSA_WITH_NULL_SHA",
        0x0004 => "TLS_RSA_WITH_RC4_128_MD5",
        0x0005 => "TLS_RSA_WITH_RC4_128_SHA",
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        0x0009 => "TLS_RSA_WITH_DES_CBC_SHA",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc011 => "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        0xc012 => "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        other => return format!("0x{other:04x}"),
    };
    name.to_owned()
}

/// Which end of the connection sent bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// The record layer of one direction.
#[derive(Debug, Default)]
struct RecordReader {
    /// Bytes of a record header not complete yet.
    header: Vec<u8>,
    /// Content type and payload bytes still to come of the current record.
    record: Option<(u8, usize)>,
    /// Handshake bytes of messages not complete yet (across records).
    handshake: Vec<u8>,
    /// Nothing more is read: what follows is encrypted, lost, or not TLS.
    done: bool,
    /// This direction's (final) hello was seen.
    hello_seen: bool,
    /// The first bytes of this direction's first alert (level, description), which a record
    /// boundary or a capture may split.
    alert: Vec<u8>,
    /// A ChangeCipherSpec was seen: later handshake records are encrypted, except that a TLS 1.3
    /// client in compatibility mode may send one before its second ClientHello.
    cipher_changed: bool,
}

/// Reads the handshake of one connection from both directions' bytes.
#[derive(Debug, Default)]
pub struct TlsObserver {
    client: RecordReader,
    server: RecordReader,
    facts: TlsFacts,
    /// A HelloRetryRequest was read and the client's second ClientHello not yet.
    client_waiting_for_retry: bool,
}

impl TlsObserver {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn facts(&self) -> &TlsFacts {
        &self.facts
    }

    pub fn into_facts(self) -> TlsFacts {
        self.facts
    }

    /// Both directions are past what can be read in clear: the facts will not change.
    pub fn finished(&self) -> bool {
        self.client.done && self.server.done
    }

    /// Bytes held while waiting for the rest of a record header or handshake message.
    pub fn buffered_bytes(&self) -> usize {
        self.client.header.len()
            + self.client.handshake.len()
            + self.server.header.len()
            + self.server.handshake.len()
    }

    /// Bytes were lost in one direction: nothing after them can be framed, so reading stops.
    pub fn gap(&mut self, sender: Sender) {
        let reader = self.reader(sender);
        reader.done = true;
        reader.handshake = Vec::new();
        reader.header = Vec::new();
    }

    fn reader(&mut self, sender: Sender) -> &mut RecordReader {
        match sender {
            Sender::Client => &mut self.client,
            Sender::Server => &mut self.server,
        }
    }

    /// `bytes` follow what `sender` sent before.
    pub fn data(&mut self, sender: Sender, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.reader(sender).done {
            let reader = self.reader(sender);
            let Some((content_type, remaining)) = reader.record else {
                let wanted = RECORD_HEADER - reader.header.len();
                let take = wanted.min(bytes.len());
                reader.header.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if reader.header.len() < RECORD_HEADER {
                    return;
                }
                let header = std::mem::take(&mut reader.header);
                let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
                if header[1] != 3 || length > MAX_RECORD_PAYLOAD {
                    self.stop_malformed(sender);
                    return;
                }
                let content_type = header[0];
                if !matches!(
                    content_type,
                    CONTENT_CHANGE_CIPHER_SPEC | CONTENT_ALERT | CONTENT_HANDSHAKE
                ) {
                    // Application data (or anything else): the handshake in clear is over.
                    self.reader(sender).done = true;
                    return;
                }
                if content_type == CONTENT_CHANGE_CIPHER_SPEC {
                    self.change_cipher_spec(sender);
                }
                let reader = self.reader(sender);
                reader.record = Some((content_type, length));
                if length == 0 {
                    reader.record = None;
                }
                continue;
            };
            let take = remaining.min(bytes.len());
            let (payload, rest) = bytes.split_at(take);
            bytes = rest;
            let reader = self.reader(sender);
            reader.record = (remaining > take).then_some((content_type, remaining - take));
            match content_type {
                CONTENT_HANDSHAKE => {
                    if reader.cipher_changed {
                        // Encrypted Finished (TLS 1.2) or the like.
                        reader.done = true;
                        return;
                    }
                    reader.handshake.extend_from_slice(payload);
                    self.read_handshake_messages(sender);
                }
                CONTENT_ALERT if !reader.cipher_changed && reader.alert.len() < 2 => {
                    let take = payload.len().min(2 - reader.alert.len());
                    reader.alert.extend_from_slice(&payload[..take]);
                    if let [level, description] = reader.alert[..]
                        && self.facts.alert.is_none()
                    {
                        self.facts.alert = Some((level, description));
                    }
                }
                _ => {}
            }
        }
    }

    fn change_cipher_spec(&mut self, sender: Sender) {
        // A TLS 1.3 client in middlebox compatibility mode sends ChangeCipherSpec before its
        // second ClientHello (after a HelloRetryRequest); a TLS 1.3 server sends one after its
        // HelloRetryRequest. Neither is followed by encrypted handshake records until the real
        // hello of that direction.
        let retrying = self.facts.hello_retry
            && match sender {
                Sender::Client => self.client_waiting_for_retry,
                Sender::Server => self.facts.server_hello.is_none(),
            };
        if !retrying {
            self.reader(sender).cipher_changed = true;
        }
    }

    fn stop_malformed(&mut self, sender: Sender) {
        self.facts.malformed = true;
        self.gap(sender);
    }

    fn read_handshake_messages(&mut self, sender: Sender) {
        loop {
            let reader = self.reader(sender);
            let Some(header) = reader.handshake.get(..4) else {
                return;
            };
            let message_type = header[0];
            let length =
                usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
            if length > MAX_HANDSHAKE_MESSAGE_BYTES {
                self.stop_malformed(sender);
                return;
            }
            if reader.handshake.len() < 4 + length {
                return;
            }
            let message: Vec<u8> = reader.handshake.drain(..4 + length).skip(4).collect();
            let parsed = match (sender, message_type) {
                (Sender::Client, HANDSHAKE_CLIENT_HELLO) => self.client_hello(&message),
                (Sender::Server, HANDSHAKE_SERVER_HELLO) => self.server_hello(&message),
                (Sender::Server, HANDSHAKE_CERTIFICATE) => {
                    if self.facts.server_certificate.is_none() {
                        self.facts.server_certificate = leaf_certificate(&message)
                            .map(|leaf| parse_certificate(leaf).unwrap_or_default());
                    }
                    Some(())
                }
                (Sender::Client, HANDSHAKE_CERTIFICATE) => {
                    // TLS 1.2: certificate_list<0..2^24-1>; empty when the client has none.
                    let sent = message.get(..3).map(|length| length != [0, 0, 0]);
                    self.facts.client_certificate_sent = sent;
                    sent.map(|_| ())
                }
                (Sender::Server, HANDSHAKE_CERTIFICATE_REQUEST) => {
                    self.facts.certificate_requested = Some(true);
                    Some(())
                }
                (Sender::Server, HANDSHAKE_SERVER_HELLO_DONE) => {
                    self.facts.certificate_requested.get_or_insert(false);
                    Some(())
                }
                (Sender::Client, HANDSHAKE_CLIENT_KEY_EXCHANGE) => {
                    if self.facts.certificate_requested == Some(true) {
                        self.facts.client_certificate_sent.get_or_insert(false);
                    }
                    Some(())
                }
                _ => Some(()),
            };
            if parsed.is_none() {
                self.facts.malformed = true;
            }
            // TLS 1.3: after the ServerHello, the server's handshake is encrypted.
            if sender == Sender::Server
                && self
                    .facts
                    .server_hello
                    .as_ref()
                    .is_some_and(|hello| hello.version >= TLS_1_3)
            {
                self.server.done = true;
                self.server.handshake = Vec::new();
                return;
            }
        }
    }

    fn client_hello(&mut self, message: &[u8]) -> Option<()> {
        let hello = parse_client_hello(message);
        if self.client.hello_seen {
            // The second ClientHello answers a HelloRetryRequest: the first says what was offered.
            self.client_waiting_for_retry = false;
            return hello.map(|_| ());
        }
        self.client.hello_seen = true;
        let hello = hello?;
        self.facts.client_hello = Some(hello);
        Some(())
    }

    fn server_hello(&mut self, message: &[u8]) -> Option<()> {
        if message.get(2..34) == Some(HELLO_RETRY_RANDOM.as_slice()) {
            self.facts.hello_retry = true;
            self.client_waiting_for_retry = true;
            return Some(());
        }
        if self.server.hello_seen {
            return Some(());
        }
        self.server.hello_seen = true;
        let hello = parse_server_hello(message)?;
        self.facts.server_hello = Some(hello);
        Some(())
    }
}

/// A cursor over bytes that reads TLS's big-endian integers and length-prefixed vectors;
/// every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < count {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|bytes| {
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2])
        })
    }

    fn vector_u8(&mut self) -> Option<&'a [u8]> {
        let length = self.u8()?;
        self.take(usize::from(length))
    }

    fn vector_u16(&mut self) -> Option<&'a [u8]> {
        let length = self.u16()?;
        self.take(usize::from(length))
    }

    fn vector_u24(&mut self) -> Option<&'a [u8]> {
        let length = self.u24()?;
        self.take(length)
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

fn text(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_NAME_BYTES)];
    String::from_utf8_lossy(bytes).into_owned()
}

/// Each (type, data) of an extensions block.
fn extensions(block: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut reader = Reader::new(block);
    std::iter::from_fn(move || {
        let kind = reader.u16()?;
        let data = reader.vector_u16()?;
        Some((kind, data))
    })
}

fn alpn_names(data: &[u8]) -> Option<Vec<String>> {
    let mut list = Reader::new(Reader::new(data).vector_u16()?);
    let mut names = Vec::new();
    while !list.is_empty() {
        let name = list.vector_u8()?;
        if names.len() < MAX_LIST_ENTRIES {
            names.push(text(name));
        }
    }
    Some(names)
}

fn server_name(data: &[u8]) -> Option<String> {
    let mut list = Reader::new(Reader::new(data).vector_u16()?);
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vector_u16()?;
        if kind == 0 {
            return Some(text(name));
        }
    }
    None
}

/// Every version from `lowest` up to `highest`, highest first.
fn versions_up_to(legacy_version: u16) -> Vec<u16> {
    if !(SSL_3_0..=TLS_1_2).contains(&legacy_version) {
        return vec![legacy_version];
    }
    let lowest = if legacy_version == SSL_3_0 {
        SSL_3_0
    } else {
        TLS_1_0
    };
    (lowest..=legacy_version).rev().collect()
}

/// A ClientHello's body (after the handshake header). None: it does not parse.
pub fn parse_client_hello(body: &[u8]) -> Option<ClientHelloFacts> {
    let mut reader = Reader::new(body);
    let legacy_version = reader.u16()?;
    reader.take(32)?;
    reader.vector_u8()?;
    let suites = reader.vector_u16()?;
    reader.vector_u8()?;
    let cipher_suites = suites
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .filter(|suite| !is_grease(*suite))
        .take(MAX_LIST_ENTRIES)
        .collect();
    let mut hello = ClientHelloFacts {
        legacy_version,
        versions: Vec::new(),
        cipher_suites,
        server_name: None,
        alpn: Vec::new(),
    };
    // SSL 3.0 hellos may end without an extensions block.
    let block = if reader.is_empty() {
        &[][..]
    } else {
        reader.vector_u16()?
    };
    for (kind, data) in extensions(block) {
        match kind {
            EXTENSION_SERVER_NAME => hello.server_name = server_name(data),
            EXTENSION_ALPN => hello.alpn = alpn_names(data).unwrap_or_default(),
            EXTENSION_SUPPORTED_VERSIONS => {
                if let Some(list) = Reader::new(data).vector_u8() {
                    hello.versions = list
                        .chunks_exact(2)
                        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                        .filter(|version| !is_grease(*version))
                        .take(MAX_LIST_ENTRIES)
                        .collect();
                    hello.versions.sort_unstable_by(|a, b| b.cmp(a));
                }
            }
            _ => {}
        }
    }
    if hello.versions.is_empty() {
        hello.versions = versions_up_to(legacy_version);
    }
    Some(hello)
}

/// A ServerHello's body. None: it does not parse.
pub fn parse_server_hello(body: &[u8]) -> Option<ServerHelloFacts> {
    let mut reader = Reader::new(body);
    let legacy_version = reader.u16()?;
    reader.take(32)?;
    reader.vector_u8()?;
    let cipher_suite = reader.u16()?;
    reader.u8()?;
    let mut hello = ServerHelloFacts {
        version: legacy_version,
        cipher_suite,
        alpn: None,
    };
    let block = if reader.is_empty() {
        &[][..]
    } else {
        reader.vector_u16()?
    };
    for (kind, data) in extensions(block) {
        match kind {
            EXTENSION_ALPN => {
                hello.alpn = alpn_names(data).and_then(|names| names.into_iter().next())
            }
            EXTENSION_SUPPORTED_VERSIONS => {
                if let Some(version) = Reader::new(data).u16() {
                    hello.version = version;
                }
            }
            _ => {}
        }
    }
    Some(hello)
}

/// The first (leaf) certificate of a TLS 1.2 Certificate message.
fn leaf_certificate(body: &[u8]) -> Option<&[u8]> {
    let mut list = Reader::new(Reader::new(body).vector_u24()?);
    list.vector_u24()
}

/// One DER tag-length-value: (tag, contents, what follows).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (length_bytes, rest) = (rest.get(..count)?, rest.get(count..)?);
        let length = length_bytes
            .iter()
            .fold(0usize, |length, byte| length << 8 | usize::from(*byte));
        (length, rest)
    };
    let contents = rest.get(..length)?;
    Some((tag, contents, rest.get(length..)?))
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_EXPLICIT_0: u8 = 0xa0;
const TAG_EXPLICIT_3: u8 = 0xa3;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_SAN_DNS: u8 = 0x82;
const TAG_SAN_IP: u8 = 0x87;

const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

fn attribute_label(oid: &[u8]) -> Option<&'static str> {
    match oid {
        [0x55, 0x04, 0x03] => Some("CN"),
        [0x55, 0x04, 0x06] => Some("C"),
        [0x55, 0x04, 0x07] => Some("L"),
        [0x55, 0x04, 0x08] => Some("ST"),
        [0x55, 0x04, 0x0a] => Some("O"),
        [0x55, 0x04, 0x0b] => Some("OU"),
        _ => None,
    }
}

/// An X.509 certificate's subject, names and validity. None: its DER does not parse (up to
/// the part that broke, nothing is kept, so a certificate is either read or not).
pub fn parse_certificate(certificate: &[u8]) -> Option<CertificateFacts> {
    let (TAG_SEQUENCE, certificate, _) = der(certificate)? else {
        return None;
    };
    let (TAG_SEQUENCE, tbs, _) = der(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = der(rest)?;
    if tag == TAG_EXPLICIT_0 {
        rest = after;
    }
    let (_serial, _, after) = der(rest)?;
    let (_signature, _, after) = der(after)?;
    let (_issuer, _, after) = der(after)?;
    let (TAG_SEQUENCE, validity, after) = der(after)? else {
        return None;
    };
    let (subject_tag, subject, after) = der(after)?;
    if subject_tag != TAG_SEQUENCE {
        return None;
    }
    let mut facts = CertificateFacts::default();
    let (begin_tag, begin, end) = der(validity)?;
    let (end_tag, end, _) = der(end)?;
    facts.not_before = asn1_time(begin_tag, begin);
    facts.not_after = asn1_time(end_tag, end);
    let mut attributes = Vec::new();
    let mut names = subject;
    while let Some((TAG_SET, set, next)) = der(names) {
        names = next;
        let mut set = set;
        while let Some((TAG_SEQUENCE, attribute, next)) = der(set) {
            set = next;
            let Some((TAG_OID, oid, value)) = der(attribute) else {
                continue;
            };
            let Some((_, value, _)) = der(value) else {
                continue;
            };
            let value = text(value);
            if oid == OID_COMMON_NAME && facts.common_name.is_none() {
                facts.common_name = Some(value.clone());
            }
            if let Some(label) = attribute_label(oid) {
                attributes.push(format!("{label}={value}"));
            }
        }
    }
    // RFC 4514 writes the most specific attribute (last in DER) first.
    attributes.reverse();
    facts.subject = attributes.join(",");
    // subjectPublicKeyInfo, then optional [1] [2] unique IDs, then [3] extensions.
    let (_, _, mut after) = der(after)?;
    while let Some((tag, contents, next)) = der(after) {
        after = next;
        if tag == TAG_EXPLICIT_3 {
            read_subject_alt_names(contents, &mut facts);
        }
    }
    Some(facts)
}

fn read_subject_alt_names(extensions: &[u8], facts: &mut CertificateFacts) {
    let Some((TAG_SEQUENCE, mut list, _)) = der(extensions) else {
        return;
    };
    while let Some((TAG_SEQUENCE, extension, next)) = der(list) {
        list = next;
        let Some((TAG_OID, oid, mut rest)) = der(extension) else {
            continue;
        };
        if oid != OID_SUBJECT_ALT_NAME {
            continue;
        }
        if let Some((TAG_BOOLEAN, _, after)) = der(rest) {
            rest = after;
        }
        let Some((TAG_OCTET_STRING, value, _)) = der(rest) else {
            continue;
        };
        let Some((TAG_SEQUENCE, mut names, _)) = der(value) else {
            continue;
        };
        while let Some((tag, name, next)) = der(names) {
            names = next;
            if facts.dns_names.len() + facts.ip_addresses.len() >= MAX_LIST_ENTRIES {
                break;
            }
            match tag {
                TAG_SAN_DNS => facts.dns_names.push(text(name)),
                TAG_SAN_IP => {
                    if let Ok(octets) = <[u8; 4]>::try_from(name) {
                        facts.ip_addresses.push(IpAddr::from(octets));
                    } else if let Ok(octets) = <[u8; 16]>::try_from(name) {
                        facts.ip_addresses.push(IpAddr::from(octets));
                    }
                }
                _ => {}
            }
        }
    }
}

fn digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0')),
    )
}

/// UTCTime `YYMMDDHHMMSSZ` (years 50-99 are 19xx, RFC 5280) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`, as seconds since the Unix epoch.
fn asn1_time(tag: u8, value: &[u8]) -> Option<i64> {
    let (year, rest) = match tag {
        TAG_UTC_TIME => {
            let year = digits(value.get(..2)?)?;
            (
                if year >= 50 { 1900 + year } else { 2000 + year },
                value.get(2..)?,
            )
        }
        TAG_GENERALIZED_TIME => (digits(value.get(..4)?)?, value.get(4..)?),
        _ => return None,
    };
    if rest.len() != 11 || rest[10] != b'Z' {
        return None;
    }
    let field = |at: usize| digits(&rest[at..at + 2]);
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Real handshakes between `openssl s_client` and `openssl s_server` (OpenSSL 3.0), each
    /// direction's bytes as a relay between them saw them: (name, client bytes, server bytes).
    const HANDSHAKES: [(&str, &[u8], &[u8]); 5] = [
        (
            "tls12_mtls",
            include_bytes!("../tests/data/tls/tls12_mtls.client"),
            include_bytes!("../tests/data/tls/tls12_mtls.server"),
        ),
        (
            "tls13",
            include_bytes!("../tests/data/tls/tls13.client"),
            include_bytes!("../tests/data/tls/tls13.server"),
        ),
        (
            "tls10_refused",
            include_bytes!("../tests/data/tls/tls10_refused.client"),
            include_bytes!("../tests/data/tls/tls10_refused.server"),
        ),
        (
            "tls12_wrong_name",
            include_bytes!("../tests/data/tls/tls12_wrong_name.client"),
            include_bytes!("../tests/data/tls/tls12_wrong_name.server"),
        ),
        (
            "tls13_hrr",
            include_bytes!("../tests/data/tls/tls13_hrr.client"),
            include_bytes!("../tests/data/tls/tls13_hrr.server"),
        ),
    ];

    /// The server certificate of the TLS 1.2 fixtures (tests/data/tls/server.crt): made with
    /// `openssl x509 -req -days 20` and subjectAltName DNS:api.example.test,
    /// DNS:*.api.example.test, IP:198.18.0.10.
    const SERVER_CERTIFICATE: &[u8] = include_bytes!("../tests/data/tls/server.der");
    /// `date +%s` of the certificate's notBefore (2026-12-07 22:57:54Z) and notAfter
    /// (2026-12-27 22:57:54Z), as openssl printed them.
    const NOT_BEFORE: i64 = 1_796_684_274;
    const NOT_AFTER: i64 = 1_798_412_274;

    fn handshake(name: &str) -> (&'static [u8], &'static [u8]) {
        let (_, client, server) = HANDSHAKES
            .iter()
            .find(|(fixture, _, _)| *fixture == name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        (client, server)
    }

    /// Feeds the whole client flight, then the whole server flight, in pieces of `split`.
    fn observe(client: &[u8], server: &[u8], split: usize) -> TlsObserver {
        let mut observer = TlsObserver::new();
        for chunk in client.chunks(split.max(1)) {
            observer.data(Sender::Client, chunk);
        }
        for chunk in server.chunks(split.max(1)) {
            observer.data(Sender::Server, chunk);
        }
        observer
    }

    fn facts_of(name: &str) -> TlsFacts {
        let (client, server) = handshake(name);
        observe(client, server, usize::MAX).into_facts()
    }

    fn expected_certificate() -> CertificateFacts {
        CertificateFacts {
            subject: "CN=api.example.test,O=Moat Test,C=FR".to_owned(),
            common_name: Some("api.example.test".to_owned()),
            dns_names: vec![
                "api.example.test".to_owned(),
                "*.api.example.test".to_owned(),
            ],
            ip_addresses: vec!["198.18.0.10".parse().expect("address")],
            not_before: Some(NOT_BEFORE),
            not_after: Some(NOT_AFTER),
        }
    }

    #[test]
    fn a_tls_1_2_mutual_handshake_shows_versions_suite_names_certificate_and_client_certificate() {
        let facts = facts_of("tls12_mtls");
        let client = facts.client_hello.as_ref().expect("client hello");
        assert_eq!(client.server_name.as_deref(), Some("api.example.test"));
        assert_eq!(client.alpn, ["http/1.1"]);
        // No supported_versions extension: legacy_version 1.2 offers everything up to it.
        assert_eq!(client.versions, [TLS_1_2, TLS_1_1, TLS_1_0]);
        assert!(client.cipher_suites.contains(&0xc02c), "{client:?}");
        let server = facts.server_hello.as_ref().expect("server hello");
        assert_eq!(server.version, TLS_1_2);
        // ECDHE-ECDSA-AES256-GCM-SHA384, as s_client reported.
        assert_eq!(server.cipher_suite, 0xc02c);
        assert_eq!(
            cipher_suite_label(server.cipher_suite),
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        );
        assert_eq!(facts.certificate_requested, Some(true));
        assert_eq!(facts.client_certificate_sent, Some(true));
        assert_eq!(facts.mutual(), Some(true));
        assert_eq!(facts.server_certificate, Some(expected_certificate()));
        assert!(facts.weaknesses().is_empty(), "{:?}", facts.weaknesses());
        assert!(!facts.malformed);
        assert_eq!(facts.alert, None);
    }

    #[test]
    fn a_tls_1_2_handshake_without_client_certificates_says_none_was_requested() {
        let facts = facts_of("tls12_wrong_name");
        assert_eq!(facts.certificate_requested, Some(false));
        assert_eq!(facts.client_certificate_sent, None);
        assert_eq!(facts.mutual(), Some(false));
        let certificate = facts.server_certificate.as_ref().expect("certificate");
        let client = facts.client_hello.as_ref().expect("client hello");
        assert_eq!(client.server_name.as_deref(), Some("other.example.org"));
        assert!(!certificate.names("other.example.org"));
        assert!(certificate.names("api.example.test"));
    }

    #[test]
    fn a_tls_1_3_handshake_shows_the_hellos_and_hides_the_rest() {
        let facts = facts_of("tls13");
        let client = facts.client_hello.as_ref().expect("client hello");
        assert_eq!(client.legacy_version, TLS_1_2);
        assert_eq!(client.versions, [TLS_1_3]);
        assert_eq!(client.alpn, ["h2", "http/1.1"]);
        assert_eq!(client.server_name.as_deref(), Some("api.example.test"));
        let server = facts.server_hello.as_ref().expect("server hello");
        assert_eq!(server.version, TLS_1_3);
        assert_eq!(server.cipher_suite, 0x1302);
        assert_eq!(facts.server_certificate, None);
        assert_eq!(facts.certificate_requested, None);
        assert_eq!(facts.mutual(), None);
        assert!(
            !facts.malformed,
            "encrypted records are not read as handshake"
        );
        assert!(facts.weaknesses().is_empty());
    }

    #[test]
    fn a_hello_retry_keeps_the_first_offer_and_reads_the_real_server_hello() {
        let facts = facts_of("tls13_hrr");
        assert!(facts.hello_retry);
        assert_eq!(facts.negotiated_version(), Some(TLS_1_3));
        assert!(!facts.malformed);
        let observer = {
            let (client, server) = handshake("tls13_hrr");
            observe(client, server, usize::MAX)
        };
        assert!(observer.finished());
    }

    #[test]
    fn a_refused_tls_1_0_offer_is_weak_from_the_client_hello_alone() {
        let facts = facts_of("tls10_refused");
        let client = facts.client_hello.as_ref().expect("client hello");
        assert_eq!(client.versions, [TLS_1_0]);
        assert_eq!(client.server_name.as_deref(), Some("old.example.test"));
        assert_eq!(facts.server_hello, None);
        // Fatal internal_error, as s_client reported.
        assert_eq!(facts.alert, Some((2, 80)));
        assert_eq!(facts.weaknesses(), ["client offered at most TLS 1.0"]);
    }

    #[test]
    fn every_split_of_every_handshake_gives_the_same_facts() {
        for (name, client, server) in HANDSHAKES {
            let whole = observe(client, server, usize::MAX).into_facts();
            for split in 1..64 {
                assert_eq!(
                    observe(client, server, split).into_facts(),
                    whole,
                    "{name} in pieces of {split}"
                );
            }
        }
    }

    #[test]
    fn interleaving_the_directions_as_a_capture_would_gives_the_same_facts() {
        for (name, client, server) in HANDSHAKES {
            let whole = observe(client, server, usize::MAX).into_facts();
            let mut observer = TlsObserver::new();
            for index in 0..client.len().max(server.len()).div_ceil(7) {
                let range = |bytes: &'static [u8]| {
                    &bytes[(index * 7).min(bytes.len())..((index + 1) * 7).min(bytes.len())]
                };
                observer.data(Sender::Client, range(client));
                observer.data(Sender::Server, range(server));
            }
            assert_eq!(observer.into_facts(), whole, "{name}");
        }
    }

    #[test]
    fn a_truncated_handshake_gives_what_it_reached() {
        let (client, server) = handshake("tls12_mtls");
        let facts = observe(client, &server[..100], usize::MAX).into_facts();
        assert!(facts.client_hello.is_some());
        assert_eq!(facts.negotiated_version(), Some(TLS_1_2));
        assert_eq!(facts.server_certificate, None);
        let facts = observe(&client[..50], b"", usize::MAX).into_facts();
        assert_eq!(facts, TlsFacts::default());
    }

    #[test]
    fn a_gap_stops_reading_that_direction_only() {
        let (client, server) = handshake("tls12_mtls");
        let mut observer = TlsObserver::new();
        observer.data(Sender::Client, &client[..10]);
        observer.gap(Sender::Client);
        observer.data(Sender::Client, &client[10..]);
        observer.data(Sender::Server, server);
        let facts = observer.into_facts();
        assert_eq!(facts.client_hello, None);
        assert_eq!(facts.negotiated_version(), Some(TLS_1_2));
        assert!(facts.server_certificate.is_some());
    }

    #[test]
    fn bytes_that_are_not_tls_are_malformed_and_end_reading() {
        let mut observer = TlsObserver::new();
        observer.data(Sender::Client, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(observer.facts().malformed);
        assert_eq!(observer.buffered_bytes(), 0);
        observer.data(Sender::Server, &[0x17, 3, 3, 0, 1, 0]);
        assert!(observer.finished());
    }

    #[test]
    fn detection_of_a_tls_start() {
        assert_eq!(starts_like_tls(b""), None);
        assert_eq!(starts_like_tls(b"\x16"), None);
        assert_eq!(starts_like_tls(b"\x16\x03"), None);
        assert_eq!(starts_like_tls(b"\x16\x03\x01"), Some(true));
        assert_eq!(starts_like_tls(b"\x16\x03\x09"), Some(false));
        assert_eq!(starts_like_tls(b"\x16\x02"), Some(false));
        assert_eq!(starts_like_tls(b"GET"), Some(false));
    }

    #[test]
    fn the_certificate_reads_subject_names_and_validity() {
        assert_eq!(
            parse_certificate(SERVER_CERTIFICATE),
            Some(expected_certificate())
        );
        assert_eq!(
            parse_certificate(&SERVER_CERTIFICATE[..SERVER_CERTIFICATE.len() / 2]),
            None
        );
    }

    #[test]
    fn certificate_names_match_like_rfc_6125() {
        for (pattern, host, matches) in [
            ("api.example.test", "api.example.test", true),
            ("API.example.test", "api.EXAMPLE.test.", true),
            ("*.example.test", "api.example.test", true),
            ("*.example.test", "example.test", false),
            ("*.example.test", "a.b.example.test", false),
            ("*.example.test", ".example.test", false),
            ("api.example.test", "web.example.test", false),
            ("", "", false),
        ] {
            assert_eq!(name_matches(pattern, host), matches, "{pattern} ~ {host}");
        }
        let certificate = expected_certificate();
        assert!(certificate.names("198.18.0.10"));
        assert!(!certificate.names("198.18.0.11"));
        assert!(certificate.names("v1.api.example.test"));
        let only_cn = CertificateFacts {
            common_name: Some("legacy.example.test".to_owned()),
            ..CertificateFacts::default()
        };
        assert!(only_cn.names("legacy.example.test"));
    }

    #[test]
    fn asn1_times_convert_to_unix_seconds() {
        assert_eq!(asn1_time(TAG_UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(
            asn1_time(TAG_UTC_TIME, b"491231235959Z"),
            Some(2_524_607_999)
        );
        assert_eq!(
            asn1_time(TAG_GENERALIZED_TIME, b"20261227225754Z"),
            Some(NOT_AFTER)
        );
        assert_eq!(asn1_time(TAG_UTC_TIME, b"701301000000Z"), None);
        assert_eq!(asn1_time(TAG_UTC_TIME, b"7001010000Z"), None);
        assert_eq!(asn1_time(TAG_OCTET_STRING, b"700101000000Z"), None);
    }

    /// A ClientHello body: version, random, empty session id, suites, null compression, and
    /// `extensions` when given.
    fn client_hello_body(version: u16, suites: &[u16], extensions: Option<&[u8]>) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&u16::try_from(suites.len() * 2).expect("few").to_be_bytes());
        for suite in suites {
            body.extend_from_slice(&suite.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        if let Some(extensions) = extensions {
            body.extend_from_slice(&u16::try_from(extensions.len()).expect("few").to_be_bytes());
            body.extend_from_slice(extensions);
        }
        body
    }

    #[test]
    fn an_ssl_3_hello_without_extensions_and_weak_suites_is_weak() {
        let hello =
            parse_client_hello(&client_hello_body(SSL_3_0, &[0x0004, 0x000a, 0x00ff], None))
                .expect("parses");
        assert_eq!(hello.versions, [SSL_3_0]);
        assert_eq!(hello.server_name, None);
        let facts = TlsFacts {
            client_hello: Some(hello),
            ..TlsFacts::default()
        };
        assert_eq!(
            facts.weaknesses(),
            [
                "client offered at most SSL 3.0",
                "client offered only weak cipher suites"
            ]
        );
    }

    #[test]
    fn grease_is_left_out_and_a_tls_1_1_legacy_hello_offers_1_0_and_1_1() {
        // supported_versions with GREASE 0x7a7a, TLS 1.3 and TLS 1.2.
        let extensions = [0, 43, 0, 7, 6, 0x7a, 0x7a, 3, 4, 3, 3];
        let hello = parse_client_hello(&client_hello_body(
            TLS_1_2,
            &[0x1a1a, 0x1301],
            Some(&extensions),
        ))
        .expect("parses");
        assert_eq!(hello.versions, [TLS_1_3, TLS_1_2]);
        assert_eq!(hello.cipher_suites, [0x1301]);
        let hello =
            parse_client_hello(&client_hello_body(TLS_1_1, &[0xc013], Some(&[]))).expect("parses");
        assert_eq!(hello.versions, [TLS_1_1, TLS_1_0]);
        assert_eq!(hello.max_version(), TLS_1_1);
    }

    #[test]
    fn a_weak_negotiated_suite_is_named() {
        let facts = TlsFacts {
            server_hello: Some(ServerHelloFacts {
                version: TLS_1_2,
                cipher_suite: 0x000a,
                alpn: None,
            }),
            ..TlsFacts::default()
        };
        assert_eq!(
            facts.weaknesses(),
            ["negotiated weak cipher suite TLS_RSA_WITH_3DES_EDE_CBC_SHA"]
        );
        assert!(!is_weak_cipher_suite(0x1301));
        assert!(!is_weak_cipher_suite(0xc02f));
        assert!(is_weak_cipher_suite(0xc011));
    }

    #[test]
    fn a_huge_handshake_message_is_refused_before_it_is_buffered() {
        let mut observer = TlsObserver::new();
        // A record holding the header of a 16 MiB ClientHello.
        observer.data(Sender::Client, &[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]);
        assert!(observer.facts().malformed);
        assert_eq!(observer.buffered_bytes(), 0);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic_and_stay_bounded(
            client in proptest::collection::vec(any::<u8>(), 0..2048),
            server in proptest::collection::vec(any::<u8>(), 0..2048),
            split in 1usize..64,
        ) {
            let mut observer = TlsObserver::new();
            for (client, server) in client.chunks(split).zip(server.chunks(split)) {
                observer.data(Sender::Client, client);
                observer.data(Sender::Server, server);
                prop_assert!(observer.buffered_bytes() <= 2 * (MAX_HANDSHAKE_MESSAGE_BYTES + MAX_RECORD_PAYLOAD + RECORD_HEADER));
            }
            let _ = observer.facts().weaknesses();
        }

        #[test]
        fn a_real_handshake_with_any_byte_changed_never_panics(
            fixture in 0..HANDSHAKES.len(),
            position in any::<prop::sample::Index>(),
            value in any::<u8>(),
            split in 1usize..512,
        ) {
            let (_, client, server) = HANDSHAKES[fixture];
            let mut client = client.to_vec();
            let at = position.index(client.len());
            client[at] = value;
            let facts = observe(&client, server, split).into_facts();
            let _ = facts.weaknesses();
            let _ = facts.mutual();
        }

        #[test]
        fn any_certificate_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse_certificate(&bytes);
            let mut mutated = SERVER_CERTIFICATE.to_vec();
            for (index, byte) in bytes.iter().enumerate().take(8) {
                let at = (usize::from(*byte) * 7 + index * 131) % mutated.len();
                mutated[at] ^= byte | 1;
            }
            let _ = parse_certificate(&mutated);
        }

        #[test]
        fn asn1_time_round_trips_dates(days in 0i64..100_000, seconds in 0i64..86_400) {
            let unix = days * 86_400 + seconds;
            // Civil date of `days` by the inverse algorithm, written as GeneralizedTime.
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let day = doy - (153 * mp + 2) / 5 + 1;
            let month = if mp < 10 { mp + 3 } else { mp - 9 };
            let year = yoe + era * 400 + i64::from(month <= 2);
            let text = format!(
                "{year:04}{month:02}{day:02}{:02}{:02}{:02}Z",
                seconds / 3600,
                seconds / 60 % 60,
                seconds % 60
            );
            prop_assert_eq!(asn1_time(TAG_GENERALIZED_TIME, text.as_bytes()), Some(unix));
        }
    }
}
