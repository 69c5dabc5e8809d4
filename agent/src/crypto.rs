//! Whether API connections are encrypted, and how well: the `api.connection` record of each
//! TCP connection that speaks an API protocol in clear or starts with a TLS handshake, and the
//! `crypto.*` findings judged from it. The rules are documented in docs/tls.md.

use std::{
    hash::{Hash, Hasher},
    net::IpAddr,
    time::{Duration, SystemTime},
};

use identity::{Kind, inventory::RangeKind};
use intelligence::{Finding, Severity};
use protocols::{
    connection::Detected,
    tls::{self, TlsFacts},
};
use serde::Serialize;

use crate::{
    analysis::caller_label, capture::record::Peer, detection::DetectionConfig, repeats::Repeats,
};

pub const PLAINTEXT_INTERNAL: &str = "crypto.plaintext_internal";
pub const WEAK_TLS: &str = "crypto.weak_tls";
pub const CERT_EXPIRING: &str = "crypto.cert_expiring";
pub const SNI_MISMATCH: &str = "crypto.sni_mismatch";
/// Every kind this module reports, for the detection file's validation.
pub const KINDS: [&str; 4] = [PLAINTEXT_INTERNAL, WEAK_TLS, CERT_EXPIRING, SNI_MISMATCH];

/// The tag that declares a range (or workload) sensitive: any value but `false`.
pub const SENSITIVE_TAG: &str = "sensitive";

/// Most findings remembered to suppress repeats; past it the memory starts over (counted).
const MAX_REMEMBERED: usize = 16_384;

/// One connection's encryption, as the capture tracker settles it.
#[derive(Debug, Clone)]
pub struct ConnectionFacts {
    pub client: Peer,
    pub server: Peer,
    pub protocol: Detected,
    /// The handshake, for a TLS connection.
    pub tls: Option<TlsFacts>,
    /// Monotonic time the encryption was settled.
    pub time_ns: u64,
    /// The ends on this host.
    pub seen_at: Vec<&'static str>,
}

impl ConnectionFacts {
    /// `plaintext`, `tls` or `mtls` (a client certificate was sent, or a TLS 1.2 server required
    /// one and the handshake went on).
    pub fn encryption(&self) -> &'static str {
        match &self.tls {
            None => "plaintext",
            Some(tls) if tls.mutual() == Some(true) => "mtls",
            Some(_) => "tls",
        }
    }

    pub fn protocol_name(&self) -> &'static str {
        match self.protocol {
            Detected::Http1 => "http1",
            Detected::Http2 => "http2",
            Detected::Tls => "tls",
            Detected::Other => "other",
        }
    }
}

/// The `api.connection` record (docs/agent-output.md).
#[derive(Debug, Serialize)]
pub struct ConnectionRecord<'a> {
    pub client: &'a Peer,
    pub server: &'a Peer,
    /// `http1` or `http2` (in clear), or `tls`.
    pub protocol: &'static str,
    /// `plaintext`, `tls` or `mtls`.
    pub encryption: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsRecord>,
    pub seen_at: &'a [&'static str],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Versions the client offered, highest first (`TLS 1.3`, ...).
    pub offered_versions: Vec<String>,
    /// The negotiated version; absent when the server's hello was not seen (refused, cut).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher_suite: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn_offered: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// Whether the server asked for a client certificate; absent when not visible (TLS 1.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate_requested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate_sent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<CertificateRecord>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hello_retry: bool,
    /// A plaintext alert, `fatal 70` (level, description number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// Bytes that broke the TLS framing were seen: the facts may be partial.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub malformed: bool,
    /// Why the handshake is weak (empty: nothing weak seen).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weaknesses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateRecord {
    pub subject: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<IpAddr>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

fn rfc3339(unix_seconds: i64) -> Option<String> {
    let seconds = u64::try_from(unix_seconds).ok()?;
    let time = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))?;
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

impl TlsRecord {
    pub fn new(facts: &TlsFacts) -> Self {
        let client = facts.client_hello.as_ref();
        let server = facts.server_hello.as_ref();
        Self {
            server_name: client.and_then(|hello| hello.server_name.clone()),
            offered_versions: client.map_or_else(Vec::new, |hello| {
                hello
                    .versions
                    .iter()
                    .map(|version| tls::version_name(*version))
                    .collect()
            }),
            version: server.map(|hello| tls::version_name(hello.version)),
            cipher_suite: server.map(|hello| tls::cipher_suite_label(hello.cipher_suite)),
            alpn_offered: client.map_or_else(Vec::new, |hello| hello.alpn.clone()),
            alpn: server.and_then(|hello| hello.alpn.clone()),
            client_certificate_requested: facts.certificate_requested,
            client_certificate_sent: facts.client_certificate_sent,
            server_certificate: facts.server_certificate.as_ref().map(|certificate| {
                CertificateRecord {
                    subject: certificate.subject.clone(),
                    dns_names: certificate.dns_names.clone(),
                    ip_addresses: certificate.ip_addresses.clone(),
                    not_before: certificate.not_before.and_then(rfc3339),
                    not_after: certificate.not_after.and_then(rfc3339),
                }
            }),
            hello_retry: facts.hello_retry,
            alert: facts.alert.map(|(level, description)| {
                let level = if level == 2 { "fatal" } else { "warning" };
                format!("{level} {description}")
            }),
            malformed: facts.malformed,
            weaknesses: facts.weaknesses(),
        }
    }
}

/// A `crypto.*` finding before the detection file's mode and severity apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoFinding {
    pub kind: &'static str,
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    pub evidence: String,
}

fn is_sensitive_range(peer: &Peer) -> bool {
    let Some(identity) = &peer.identity else {
        return false;
    };
    let tagged = |tags: &identity::tags::Tags| {
        tags.get(SENSITIVE_TAG)
            .is_some_and(|value| !value.eq_ignore_ascii_case("false"))
    };
    let range_kind = identity.range.as_ref().map(|range| range.range_kind);
    matches!(range_kind, Some(RangeKind::Partner | RangeKind::Customer))
        || tagged(&identity.identity.tags)
}

fn is_internal(peer: &Peer) -> bool {
    peer.identity
        .as_ref()
        .is_some_and(|identity| identity.identity.internal)
}

/// Which plaintext rule a connection in clear breaks, most serious first: to or from a
/// sensitive range; across clusters; across nodes; between two internal ends otherwise.
fn plaintext_rule(client: &Peer, server: &Peer) -> Option<(&'static str, Severity, String)> {
    let (client_identity, server_identity) = (client.identity.as_ref(), server.identity.as_ref());
    if is_sensitive_range(server) || is_sensitive_range(client) {
        return Some((
            "sensitive_range",
            Severity::High,
            "API traffic in clear to or from a range declared sensitive".to_owned(),
        ));
    }
    if !(is_internal(client) && is_internal(server)) {
        return None;
    }
    let (client_identity, server_identity) = (client_identity?, server_identity?);
    let other_cluster = |identity: &crate::identity::PeerIdentity| {
        identity
            .range
            .as_ref()
            .is_some_and(|range| range.range_kind == RangeKind::OtherCluster)
    };
    let clusters = (
        client_identity.identity.cluster.as_deref(),
        server_identity.identity.cluster.as_deref(),
    );
    if other_cluster(client_identity)
        || other_cluster(server_identity)
        || matches!(clusters, (Some(a), Some(b)) if a != b)
    {
        return Some((
            "cross_cluster",
            Severity::High,
            "API traffic in clear between clusters".to_owned(),
        ));
    }
    let on_node = |identity: &crate::identity::PeerIdentity| match identity.identity.kind {
        Kind::Pod | Kind::Node => identity.identity.node.clone(),
        _ => None,
    };
    if let (Some(a), Some(b)) = (on_node(client_identity), on_node(server_identity))
        && a != b
    {
        return Some((
            "cross_node",
            Severity::Medium,
            format!("API traffic in clear between nodes {a} and {b}"),
        ));
    }
    Some((
        "internal",
        Severity::Medium,
        "API traffic in clear between internal workloads".to_owned(),
    ))
}

/// The findings one connection's encryption shows. `expiry_warning`: how long before its
/// notAfter a server certificate is reported; `now_unix`: the wall clock, in seconds.
pub fn judge(
    facts: &ConnectionFacts,
    expiry_warning: Duration,
    now_unix: i64,
) -> Vec<CryptoFinding> {
    let mut findings = Vec::new();
    let between = format!(
        "{} -> {}",
        caller_label(&facts.client),
        caller_label(&facts.server)
    );
    let Some(tls) = &facts.tls else {
        if matches!(facts.protocol, Detected::Http1 | Detected::Http2)
            && let Some((rule, severity, message)) = plaintext_rule(&facts.client, &facts.server)
        {
            findings.push(CryptoFinding {
                kind: PLAINTEXT_INTERNAL,
                rule,
                severity,
                message,
                evidence: format!("{between} over {}", facts.protocol_name()),
            });
        }
        return findings;
    };
    let weaknesses = tls.weaknesses();
    if !weaknesses.is_empty() {
        let old = |version: u16| version < tls::TLS_1_0;
        let severity = if tls
            .client_hello
            .as_ref()
            .is_some_and(|hello| old(hello.max_version()))
            || tls.negotiated_version().is_some_and(old)
        {
            Severity::High
        } else {
            Severity::Medium
        };
        let rule = if weaknesses
            .iter()
            .any(|reason| reason.contains("cipher suite"))
        {
            "cipher_suite"
        } else {
            "version"
        };
        findings.push(CryptoFinding {
            kind: WEAK_TLS,
            rule,
            severity,
            message: format!("weak TLS: {}", weaknesses.join("; ")),
            evidence: between.clone(),
        });
    }
    let server_name = tls
        .client_hello
        .as_ref()
        .and_then(|hello| hello.server_name.as_deref());
    if let Some(certificate) = &tls.server_certificate {
        if let Some(not_after) = certificate.not_after {
            let left = not_after - now_unix;
            let warning = i64::try_from(expiry_warning.as_secs()).unwrap_or(i64::MAX);
            let subject = if certificate.subject.is_empty() {
                server_name.unwrap_or("?")
            } else {
                &certificate.subject
            };
            let when = rfc3339(not_after).unwrap_or_else(|| not_after.to_string());
            if left < 0 {
                findings.push(CryptoFinding {
                    kind: CERT_EXPIRING,
                    rule: "expired",
                    severity: Severity::High,
                    message: format!("the server certificate {subject} expired at {when}"),
                    evidence: between.clone(),
                });
            } else if left < warning {
                findings.push(CryptoFinding {
                    kind: CERT_EXPIRING,
                    rule: "expiring",
                    severity: Severity::Medium,
                    message: format!(
                        "the server certificate {subject} expires at {when}, in {} days",
                        left / 86_400
                    ),
                    evidence: between.clone(),
                });
            }
        }
        if let Some(server_name) = server_name
            && !certificate.names(server_name)
        {
            let mut names = certificate.dns_names.clone();
            names.extend(certificate.ip_addresses.iter().map(IpAddr::to_string));
            if names.is_empty() {
                names.extend(certificate.common_name.clone());
            }
            findings.push(CryptoFinding {
                kind: SNI_MISMATCH,
                rule: "",
                severity: Severity::Medium,
                message: format!(
                    "the client asked for {server_name} but the server's certificate names {}",
                    names.join(", ")
                ),
                evidence: between,
            });
        }
    }
    findings
}

/// Turns crypto findings into findings, as the detection file sets their mode and severity,
/// saying each (kind, rule, ends, message) once within the file's `repeatAfter`.
#[derive(Debug)]
pub struct CryptoJudge {
    pub repeats: Repeats,
}

impl Default for CryptoJudge {
    fn default() -> Self {
        Self {
            repeats: Repeats::new(MAX_REMEMBERED),
        }
    }
}

impl CryptoJudge {
    pub fn findings(
        &mut self,
        facts: &ConnectionFacts,
        config: &DetectionConfig,
        expiry_warning: Duration,
        now: SystemTime,
    ) -> Vec<Finding> {
        let now_unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let service = caller_label(&facts.server);
        judge(facts, expiry_warning, now_unix as i64)
            .into_iter()
            .filter(|finding| config.mode_of(finding.kind) != intelligence::finding::Mode::Off)
            .filter(|finding| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                (
                    finding.kind,
                    finding.rule,
                    &finding.message,
                    &finding.evidence,
                )
                    .hash(&mut hasher);
                self.repeats
                    .first_saying(hasher.finish(), now_unix, config.repeat_after.as_secs())
            })
            .map(|finding| Finding {
                severity: config.severity_of(finding.kind, finding.severity),
                mode: config.mode_of(finding.kind),
                kind: finding.kind.into(),
                rule: finding.rule.into(),
                service: service.clone(),
                method: String::new(),
                endpoint: String::new(),
                spec_pointer: None,
                message: finding.message,
                evidence: finding.evidence,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, sync::Arc};

    use identity::{Identity, index::RangeFacts};
    use protocols::tls::{Sender, TlsObserver};

    use super::*;
    use crate::identity::PeerIdentity;

    /// A real handshake (protocols/tests/data/tls, made with openssl s_client and s_server).
    fn handshake(name: &str) -> TlsFacts {
        let read = |side: &str| {
            let path = format!(
                "{}/../protocols/tests/data/tls/{name}.{side}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read(&path).unwrap_or_else(|error| panic!("read {path}: {error}"))
        };
        let mut observer = TlsObserver::new();
        observer.data(Sender::Client, &read("client"));
        observer.data(Sender::Server, &read("server"));
        observer.into_facts()
    }

    /// The fixtures' server certificate's notAfter (2026-12-27T22:57:54Z).
    const NOT_AFTER: i64 = 1_798_412_274;
    const DAY: i64 = 86_400;
    const WARNING: Duration = Duration::from_secs(30 * 86_400);

    fn peer(address: &str, identity: Identity, range: Option<(&str, RangeKind)>) -> Peer {
        let address: SocketAddr = address.parse().expect("address");
        let mut peer = Peer::new(address, None);
        peer.identity = Some(PeerIdentity {
            identity: Arc::new(identity),
            range: range.map(|(name, range_kind)| {
                Arc::new(RangeFacts {
                    range: Arc::from(name),
                    range_kind,
                })
            }),
            container: None,
        });
        peer
    }

    fn pod(name: &str, node: &str) -> Identity {
        Identity {
            kind: Kind::Pod,
            namespace: Some(Arc::from("shop")),
            pod: Some(Arc::from(name)),
            node: Some(Arc::from(node)),
            internal: true,
            ..Identity::default()
        }
    }

    fn connection(
        client: Peer,
        server: Peer,
        protocol: Detected,
        tls: Option<TlsFacts>,
    ) -> ConnectionFacts {
        ConnectionFacts {
            client,
            server,
            protocol,
            tls,
            time_ns: 1,
            seen_at: vec!["client"],
        }
    }

    fn kinds(findings: &[CryptoFinding]) -> Vec<(&str, &str, Severity)> {
        findings
            .iter()
            .map(|finding| (finding.kind, finding.rule, finding.severity))
            .collect()
    }

    #[test]
    fn plaintext_between_internal_ends_is_a_finding_and_with_an_outsider_is_not() {
        let web = peer("198.18.1.10:40000", pod("web-1", "n1"), None);
        let api = peer("198.18.2.10:8080", pod("api-1", "n2"), None);
        let facts = connection(web.clone(), api.clone(), Detected::Http1, None);
        assert_eq!(facts.encryption(), "plaintext");
        let findings = judge(&facts, WARNING, 0);
        assert_eq!(
            kinds(&findings),
            [(PLAINTEXT_INTERNAL, "cross_node", Severity::Medium)]
        );
        assert_eq!(findings[0].evidence, "shop/web-1 -> shop/api-1 over http1");
        let same_node = peer("198.18.2.11:8080", pod("api-2", "n1"), None);
        let facts = connection(web.clone(), same_node, Detected::Http2, None);
        assert_eq!(
            kinds(&judge(&facts, WARNING, 0)),
            [(PLAINTEXT_INTERNAL, "internal", Severity::Medium)]
        );
        let outsider = peer("203.0.113.9:50000", Identity::default(), None);
        let facts = connection(outsider, api.clone(), Detected::Http1, None);
        assert!(judge(&facts, WARNING, 0).is_empty());
        // Bytes of no API protocol are not API traffic.
        let facts = connection(web, api, Detected::Other, None);
        assert!(judge(&facts, WARNING, 0).is_empty());
    }

    #[test]
    fn plaintext_to_a_sensitive_or_other_cluster_range_is_serious() {
        let web = peer("198.18.1.10:40000", pod("web-1", "n1"), None);
        let partner = peer(
            "192.0.2.10:443",
            Identity {
                kind: Kind::Range,
                ..Identity::default()
            },
            Some(("payments-partner", RangeKind::Partner)),
        );
        let facts = connection(web.clone(), partner, Detected::Http1, None);
        assert_eq!(
            kinds(&judge(&facts, WARNING, 0)),
            [(PLAINTEXT_INTERNAL, "sensitive_range", Severity::High)]
        );
        let mut tags = identity::tags::Tags::default();
        tags.insert(SENSITIVE_TAG, "true");
        let vault = peer(
            "10.9.0.10:8200",
            Identity {
                kind: Kind::Range,
                internal: true,
                tags,
                ..Identity::default()
            },
            Some(("vault", RangeKind::Internal)),
        );
        let facts = connection(web.clone(), vault, Detected::Http1, None);
        assert_eq!(
            kinds(&judge(&facts, WARNING, 0)),
            [(PLAINTEXT_INTERNAL, "sensitive_range", Severity::High)]
        );
        let remote = peer(
            "10.200.0.10:8080",
            Identity {
                kind: Kind::Range,
                internal: true,
                ..Identity::default()
            },
            Some(("cluster-b", RangeKind::OtherCluster)),
        );
        let facts = connection(web, remote, Detected::Http1, None);
        assert_eq!(
            kinds(&judge(&facts, WARNING, 0)),
            [(PLAINTEXT_INTERNAL, "cross_cluster", Severity::High)]
        );
    }

    #[test]
    fn tls_between_internal_ends_is_no_plaintext_finding_and_mutual_tls_is_named() {
        let web = peer("198.18.1.10:40000", pod("web-1", "n1"), None);
        let api = peer("198.18.2.10:8443", pod("api-1", "n2"), None);
        let facts = connection(
            web.clone(),
            api.clone(),
            Detected::Tls,
            Some(handshake("tls13")),
        );
        assert_eq!(facts.encryption(), "tls");
        assert!(judge(&facts, WARNING, NOT_AFTER - 365 * DAY).is_empty());
        let facts = connection(web, api, Detected::Tls, Some(handshake("tls12_mtls")));
        assert_eq!(facts.encryption(), "mtls");
        assert!(judge(&facts, WARNING, NOT_AFTER - 31 * DAY).is_empty());
        let record = TlsRecord::new(facts.tls.as_ref().expect("tls"));
        assert_eq!(record.version.as_deref(), Some("TLS 1.2"));
        assert_eq!(record.server_name.as_deref(), Some("api.example.test"));
        assert_eq!(record.client_certificate_sent, Some(true));
        let certificate = record.server_certificate.expect("certificate");
        assert_eq!(
            certificate.not_after.as_deref(),
            Some("2026-12-27T22:57:54Z")
        );
    }

    #[test]
    fn a_refused_old_version_offer_is_weak_tls() {
        let client = peer("198.18.1.10:40000", Identity::default(), None);
        let server = peer("198.18.2.10:8443", Identity::default(), None);
        let facts = connection(
            client,
            server,
            Detected::Tls,
            Some(handshake("tls10_refused")),
        );
        let findings = judge(&facts, WARNING, 0);
        assert_eq!(kinds(&findings), [(WEAK_TLS, "version", Severity::Medium)]);
        assert_eq!(
            findings[0].message,
            "weak TLS: client offered at most TLS 1.0"
        );
        let record = TlsRecord::new(facts.tls.as_ref().expect("tls"));
        assert_eq!(record.alert.as_deref(), Some("fatal 80"));
        assert_eq!(record.version, None);
    }

    #[test]
    fn certificates_expiring_within_the_warning_or_expired_and_names_not_matching_are_findings() {
        let client = peer("198.18.1.10:40000", Identity::default(), None);
        let server = peer("198.18.2.10:8443", Identity::default(), None);
        let facts = connection(
            client,
            server,
            Detected::Tls,
            Some(handshake("tls12_wrong_name")),
        );
        let findings = judge(&facts, WARNING, NOT_AFTER - 10 * DAY);
        assert_eq!(
            kinds(&findings),
            [
                (CERT_EXPIRING, "expiring", Severity::Medium),
                (SNI_MISMATCH, "", Severity::Medium)
            ]
        );
        assert!(
            findings[0].message.contains("in 10 days"),
            "{}",
            findings[0].message
        );
        assert_eq!(
            findings[1].message,
            "the client asked for other.example.org but the server's certificate names \
             api.example.test, *.api.example.test, 198.18.0.10"
        );
        let short_warning = Duration::from_secs(86_400);
        assert_eq!(
            kinds(&judge(&facts, short_warning, NOT_AFTER - 10 * DAY)),
            [(SNI_MISMATCH, "", Severity::Medium)]
        );
        assert_eq!(
            kinds(&judge(&facts, short_warning, NOT_AFTER + 1))[0],
            (CERT_EXPIRING, "expired", Severity::High)
        );
    }

    #[test]
    fn a_finding_is_said_once_within_repeat_after() {
        let web = peer("198.18.1.10:40000", pod("web-1", "n1"), None);
        let api = peer("198.18.2.10:8080", pod("api-1", "n2"), None);
        let facts = connection(web, api, Detected::Http1, None);
        let config = DetectionConfig::default();
        let mut judge = CryptoJudge::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = judge.findings(&facts, &config, WARNING, now);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, PLAINTEXT_INTERNAL);
        assert_eq!(first[0].service, "shop/api-1");
        assert!(judge.findings(&facts, &config, WARNING, now).is_empty());
        assert_eq!(judge.repeats.suppressed, 1);
        let later = now + config.repeat_after + Duration::from_secs(1);
        assert_eq!(judge.findings(&facts, &config, WARNING, later).len(), 1);
    }

    #[test]
    fn the_detection_file_silences_or_rates_crypto_findings() {
        let text = "modes:\n  crypto.*: off\n  crypto.weak_tls: detect\nseverities:\n  crypto.weak_tls: high\n";
        let config = crate::detection::load_with(std::path::Path::new("detection.yaml"), &|_| {
            Ok(text.to_owned())
        })
        .expect("a valid detection file");
        let client = peer("198.18.1.10:40000", Identity::default(), None);
        let server = peer("198.18.2.10:8443", Identity::default(), None);
        let weak = connection(
            client,
            server,
            Detected::Tls,
            Some(handshake("tls10_refused")),
        );
        let mut judge = CryptoJudge::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let findings = judge.findings(&weak, &config, WARNING, now);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::High);
        let web = peer("198.18.1.10:40000", pod("web-1", "n1"), None);
        let api = peer("198.18.2.10:8080", pod("api-1", "n2"), None);
        let plaintext = connection(web, api, Detected::Http1, None);
        assert!(judge.findings(&plaintext, &config, WARNING, now).is_empty());
    }
}
