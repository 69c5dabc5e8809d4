//! The detectors, run over every value of a call.
//!
//! A request is cut into values (path, each query and form parameter name and value, each
//! header worth reading, each JSON key and string); each value is decoded into its variants
//! ([`crate::decode::variants`]); one Aho-Corasick pass over a variant tells which detectors
//! have something to look at, and only those run. A response's body and headers are checked for
//! leaks and header mistakes.

mod body;
mod command;
mod headers;
mod java;
mod leak;
mod nosqli;
mod php;
mod prefilter;
mod scanner;
mod sqli;
mod ssrf;
mod traversal;
mod upload;
mod xss;

use std::borrow::Cow;

use intelligence::finding::mask;
use intelligence::{Exchange, Severity};
use serde::Serialize;

use self::prefilter::Prefilter;
use crate::decode;

/// Values judged per request; the rest of a huge form or JSON document is skipped.
const MAX_INPUTS: usize = 256;
/// Body bytes read, request or response.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Depth of JSON walked.
const MAX_JSON_DEPTH: usize = 32;
/// Characters of a parameter name kept in a location (names can be payloads too).
const MAX_NAME_CHARS: usize = 32;
/// Characters shown of a value as evidence.
const EVIDENCE_CHARS: usize = 8;
/// Headers whose values are protocol plumbing, never application input.
const PLUMBING_HEADERS: &[&str] = &[
    "host",
    "accept",
    "accept-encoding",
    "accept-language",
    "content-length",
    "content-type",
    "connection",
    "keep-alive",
    "proxy-connection",
    "authorization",
    "te",
    "transfer-encoding",
    "upgrade-insecure-requests",
    "cache-control",
    "pragma",
    "if-none-match",
    "if-modified-since",
];

/// Every kind of threat or leak, named as records and queries name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ThreatKind {
    #[serde(rename = "threat.sqli")]
    Sqli,
    #[serde(rename = "threat.xss")]
    Xss,
    #[serde(rename = "threat.path_traversal")]
    PathTraversal,
    #[serde(rename = "threat.command_injection")]
    CommandInjection,
    #[serde(rename = "threat.ssrf")]
    Ssrf,
    /// JNDI lookups and the other Java code-execution vectors (OGNL, SpEL, deserialization).
    #[serde(rename = "threat.jndi")]
    Jndi,
    #[serde(rename = "threat.nosqli")]
    Nosqli,
    #[serde(rename = "threat.scanner")]
    Scanner,
    #[serde(rename = "leak.stack_trace")]
    StackTrace,
    /// Framework debug pages and database error messages.
    #[serde(rename = "leak.debug_page")]
    DebugPage,
    #[serde(rename = "leak.internal_address")]
    InternalAddress,
    #[serde(rename = "headers.missing_security_headers")]
    MissingSecurityHeaders,
    #[serde(rename = "headers.cors_misconfigured")]
    CorsMisconfigured,
    /// Found by [`crate::behavior`] over many calls of one source, not in one call.
    #[serde(rename = "threat.recon")]
    Recon,
    #[serde(rename = "threat.bola_enumeration")]
    BolaEnumeration,
    #[serde(rename = "threat.credential_stuffing")]
    CredentialStuffing,
}

impl ThreatKind {
    pub const ALL: [Self; 16] = [
        Self::Sqli,
        Self::Xss,
        Self::PathTraversal,
        Self::CommandInjection,
        Self::Ssrf,
        Self::Jndi,
        Self::Nosqli,
        Self::Scanner,
        Self::StackTrace,
        Self::DebugPage,
        Self::InternalAddress,
        Self::MissingSecurityHeaders,
        Self::CorsMisconfigured,
        Self::Recon,
        Self::BolaEnumeration,
        Self::CredentialStuffing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqli => "threat.sqli",
            Self::Xss => "threat.xss",
            Self::PathTraversal => "threat.path_traversal",
            Self::CommandInjection => "threat.command_injection",
            Self::Ssrf => "threat.ssrf",
            Self::Jndi => "threat.jndi",
            Self::Nosqli => "threat.nosqli",
            Self::Scanner => "threat.scanner",
            Self::StackTrace => "leak.stack_trace",
            Self::DebugPage => "leak.debug_page",
            Self::InternalAddress => "leak.internal_address",
            Self::MissingSecurityHeaders => "headers.missing_security_headers",
            Self::CorsMisconfigured => "headers.cors_misconfigured",
            Self::Recon => "threat.recon",
            Self::BolaEnumeration => "threat.bola_enumeration",
            Self::CredentialStuffing => "threat.credential_stuffing",
        }
    }
}

/// One detection in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Threat {
    pub kind: ThreatKind,
    pub severity: Severity,
    /// Which detector rule fired (`sqli.tautology`, `trace.java`, ...).
    pub rule: &'static str,
    /// Where: `path`, `query.<name>`, `header.<name>`, `body/<json pointer>`, `body.<form name>`,
    /// `response.body`, `response.header.<name>`.
    pub location: String,
    /// A masked glimpse of the value ([`mask`]).
    pub evidence: String,
}

/// One request value to judge, borrowed from the call where it is there as it is.
#[derive(Debug)]
struct Input<'a> {
    location: String,
    text: Cow<'a, str>,
    role: Role,
}

/// What a value is to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The request's path.
    Path,
    Value,
    /// A parameter or JSON key.
    Key,
    /// The name of an uploaded file.
    FileName,
}

/// The request detectors a prefilter hit can wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Sqli,
    Xss,
    Traversal,
    Command,
    Ssrf,
    Java,
    Nosqli,
}

impl Check {
    const ALL: [Self; 7] = [
        Self::Sqli,
        Self::Xss,
        Self::Traversal,
        Self::Command,
        Self::Ssrf,
        Self::Java,
        Self::Nosqli,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Substrings at least one of which a value must hold for the detector to have anything
    /// to find: the prefilter's patterns.
    fn triggers(self) -> &'static [&'static str] {
        match self {
            Self::Sqli => &[
                "'",
                "\"",
                "--",
                "#",
                "/*",
                ";",
                "(",
                "=",
                "@@",
                "union",
                "or ",
                "and ",
                "xor",
                "||",
                "&&",
                "waitfor",
                "select",
                "information_schema",
                "into",
                "<>",
                // Catalogs, system procedures and statements that open a value.
                "sys",
                "pg_",
                "sqlite_",
                "mysql.",
                "msdb",
                "tempdb",
                "xp_",
                "sp_",
                "exec",
                "declare",
                "alter",
                " as ",
            ],
            Self::Xss => &[
                "<",
                "javascript",
                "vbscript",
                "livescript",
                "data:",
                // Every rule naming an `on*` handler needs the `=` that assigns it; `on` alone
                // is in half the words of any prose.
                "=",
                "function(",
                "expression",
                "-moz-binding",
                "behavior",
                "alert",
                "prompt",
                "confirm",
                "eval",
                "settimeout",
                "setinterval",
                "document",
                "innerhtml",
                "location",
                "![]",
                "[",
                "`",
                // A scheme split by tabs or newlines: `ja&tab;vascript:`.
                "script:",
                // Characters the detector drops before matching (browsers drop them in URLs
                // and attribute names), and comments it drops (CSS does inside a word): what
                // they split is whole only once they are gone.
                "\t",
                "\n",
                "\r",
                "\0",
                "/*",
            ],
            Self::Traversal => &[
                "..",
                "etc/",
                "proc/",
                "win",
                ".ht",
                "web.config",
                ".git",
                ".svn",
                ".hg",
                ".env",
                "id_rsa",
                ".ssh",
                "wp-config",
                "var/",
                ".bash_history",
                "applicationhost",
                "web-inf",
                "meta-inf",
                ".aws",
                ".docker",
                ".kube",
                "%2e",
                "%c0",
                "%c1",
                "%u",
                "%25",
                "sys/",
                // Hidden files and folders.
                "/.",
            ],
            Self::Command => &[
                ";",
                "|",
                "&",
                "`",
                "\n",
                "$(",
                "<?",
                "php://",
                "phar://",
                "child_process",
                "process.",
                "constructor",
                "(",
                // Commands at the value's start: an option or a path as their argument, or a
                // wrapper before them; Windows batch conditions.
                " -",
                " /",
                "time ",
                "nohup",
                "strace",
                "sudo",
                "if ",
                "${",
                // PHP: template tags, variables and superglobals, serialized objects.
                "php]",
                "php}",
                // Words split by quotes or backslashes (`"w"get`, `w\\ho\\am\\i`), brace
                // expansion, bash's network devices, batch comparisons.
                "'",
                "\"",
                "\\",
                "{",
                "/dev/",
                "==",
                // PowerShell's static members and web client.
                "]::",
                "webclient",
                ".download",
                "$",
                ":{",
            ],
            Self::Ssrf => &["://"],
            Self::Java => &[
                "${",
                "#{",
                "java",
                "runtime",
                "processbuilder",
                "classloader",
                "#_memberaccess",
                "ognl",
                "t(",
                "ro0ab",
                "s7qaf",
                "ztaa",
                "aced0005",
                "xwork",
                // Dotted class names in gadget packages (`java` covers `javax`).
                "jdk.",
                "sun.",
                "org.",
                "com.",
                "ch.qos",
                "bsh.",
                // Gadget class names.
                "transformer",
                "closure",
                "factory",
                "impl",
                "invocationhandler",
                "expexception",
                "mapentry",
                "objectinputstream",
                "scriptengine",
                "classloader",
                "xmldecoder",
            ],
            Self::Nosqli => &["$"],
        }
    }
}

/// The detectors, compiled once and shared by every call.
pub struct Detector {
    prefilter: Prefilter,
    tools: scanner::Tools,
    xss: xss::Xss,
    commands: command::Commands,
    traversal: traversal::Traversal,
    leaks: leak::Leaks,
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

impl Detector {
    pub fn new() -> Self {
        let triggers = Check::ALL.into_iter().flat_map(|check| {
            check
                .triggers()
                .iter()
                .map(move |trigger| (trigger.as_bytes(), check.bit()))
        });
        let prefilter = Prefilter::new(triggers);
        Self {
            prefilter,
            tools: scanner::Tools::new(),
            xss: xss::Xss::new(),
            commands: command::Commands::new(),
            traversal: traversal::Traversal::new(),
            leaks: leak::Leaks::new(),
        }
    }

    /// Threats in the request: at most one per detector and value.
    pub fn request(&self, exchange: &Exchange<'_>) -> Vec<Threat> {
        let mut threats = Vec::new();
        let request = &exchange.request;
        for (name, value) in request.headers {
            if let Some(rule) = scanner::check_header_name(name) {
                push(
                    &mut threats,
                    ThreatKind::Scanner,
                    Severity::Medium,
                    rule,
                    format!("header.{}", name.to_ascii_lowercase()),
                    name,
                );
            }
            if name.eq_ignore_ascii_case("user-agent")
                && let Some(rule) = self.tools.check_user_agent(value)
            {
                push(
                    &mut threats,
                    ThreatKind::Scanner,
                    Severity::Medium,
                    rule,
                    "header.user-agent".to_owned(),
                    value,
                );
            }
        }
        let body = request
            .plain_body()
            .filter(|body| !body.is_empty())
            .map(|body| text(&body[..body.len().min(MAX_BODY_BYTES)]));
        for input in inputs(exchange, body.as_deref()) {
            self.judge(&input, &mut threats);
        }
        threats
    }

    fn judge(&self, input: &Input<'_>, threats: &mut Vec<Threat>) {
        if input.role == Role::FileName
            && let Some((kind, rule)) = upload::check(&input.text)
        {
            push(
                threats,
                kind,
                Severity::High,
                rule,
                input.location.clone(),
                &input.text,
            );
        }
        let variants = decode::variants(&input.text);
        let mut done = 0u8;
        for variant in &variants {
            let woken = self.prefilter.wakes(variant.as_bytes());
            for check in Check::ALL {
                if woken & check.bit() == 0 || done & check.bit() != 0 {
                    continue;
                }
                if let Some((kind, severity, rule)) = self.run(check, variant, input) {
                    done |= check.bit();
                    push(
                        threats,
                        kind,
                        severity,
                        rule,
                        input.location.clone(),
                        &input.text,
                    );
                }
            }
        }
    }

    fn run(
        &self,
        check: Check,
        variant: &str,
        input: &Input<'_>,
    ) -> Option<(ThreatKind, Severity, &'static str)> {
        match check {
            Check::Sqli => {
                sqli::check(variant).map(|rule| (ThreatKind::Sqli, Severity::High, rule))
            }
            Check::Xss => self
                .xss
                .check(variant)
                .map(|rule| (ThreatKind::Xss, Severity::High, rule)),
            Check::Traversal => self
                .traversal
                .check(variant, &input.text, input.role == Role::Path)
                .map(|rule| (ThreatKind::PathTraversal, Severity::High, rule)),
            Check::Command => self
                .commands
                .check(variant)
                .map(|rule| (ThreatKind::CommandInjection, Severity::Critical, rule)),
            Check::Ssrf => ssrf::check(variant).map(|target| match target {
                ssrf::Target::Metadata => {
                    (ThreatKind::Ssrf, Severity::Critical, "ssrf.cloud_metadata")
                }
                ssrf::Target::Internal => {
                    (ThreatKind::Ssrf, Severity::High, "ssrf.internal_address")
                }
                ssrf::Target::Scheme => (ThreatKind::Ssrf, Severity::High, "ssrf.dangerous_scheme"),
                ssrf::Target::RemoteInclude => {
                    (ThreatKind::Ssrf, Severity::Medium, "ssrf.remote_include")
                }
            }),
            Check::Java => {
                java::check(variant).map(|rule| (ThreatKind::Jndi, Severity::Critical, rule))
            }
            Check::Nosqli => nosqli::check(variant, input.role == Role::Key)
                .map(|rule| (ThreatKind::Nosqli, Severity::High, rule)),
        }
    }

    /// Leaks and header mistakes in the response (nothing when no response was seen).
    pub fn response(&self, exchange: &Exchange<'_>) -> Vec<Threat> {
        let response = &exchange.response;
        let mut threats = Vec::new();
        if !response.seen {
            return threats;
        }
        let missing = headers::missing_security_headers(response);
        if !missing.is_empty() {
            let list = missing.join(", ");
            threats.push(Threat {
                kind: ThreatKind::MissingSecurityHeaders,
                severity: Severity::Low,
                rule: "headers.security_headers",
                location: "response.headers".to_owned(),
                evidence: format!("missing: {list}"),
            });
        }
        if let Some(rule) = headers::cors(&exchange.request, response) {
            let allowed = response
                .header("access-control-allow-origin")
                .unwrap_or_default();
            push(
                &mut threats,
                ThreatKind::CorsMisconfigured,
                Severity::High,
                rule,
                "response.header.access-control-allow-origin".to_owned(),
                allowed,
            );
        }
        for (name, value) in response.headers {
            if let Some(rule) = self.leaks.internal_address(value) {
                push(
                    &mut threats,
                    ThreatKind::InternalAddress,
                    Severity::Low,
                    rule,
                    format!("response.header.{}", name.to_ascii_lowercase()),
                    value,
                );
            }
        }
        let Some(body) = response.plain_body() else {
            return threats;
        };
        let body = text(&body[..body.len().min(MAX_BODY_BYTES)]);
        // JSON error bodies carry traces as escaped strings: `"trace":"at x\n\tat y"`.
        let body =
            if body.contains('\\') && response.media_type().is_some_and(|m| m.contains("json")) {
                Cow::Owned(decode::backslash_escapes(&body))
            } else {
                body
            };
        let leaks = self.leaks.body(&body);
        let checks: [(ThreatKind, Severity, Option<&'static str>); 3] = [
            (ThreatKind::StackTrace, Severity::Medium, leaks.stack_trace),
            (ThreatKind::DebugPage, Severity::Medium, leaks.debug_page),
            (
                ThreatKind::InternalAddress,
                Severity::Low,
                self.leaks.internal_address(&body),
            ),
        ];
        for (kind, severity, rule) in checks {
            if let Some(rule) = rule {
                push(
                    &mut threats,
                    kind,
                    severity,
                    rule,
                    "response.body".to_owned(),
                    &body,
                );
            }
        }
        threats
    }
}

fn push(
    threats: &mut Vec<Threat>,
    kind: ThreatKind,
    severity: Severity,
    rule: &'static str,
    location: String,
    value: &str,
) {
    threats.push(Threat {
        kind,
        severity,
        rule,
        location,
        evidence: mask(value, EVIDENCE_CHARS),
    });
}

/// `bytes` as text, invalid sequences replaced: the same as `String::from_utf8_lossy`, but valid
/// text (nearly every body) is checked by `str::from_utf8`, many times faster over ASCII.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// `name` cut to its first [`MAX_NAME_CHARS`] characters.
fn short_name(name: &str) -> &str {
    match name.char_indices().nth(MAX_NAME_CHARS) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

/// The request's values, in the order an attacker is most likely to use them, capped at
/// [`MAX_INPUTS`]; `body` is the request body's text, if any.
fn inputs<'a>(exchange: &Exchange<'a>, body: Option<&'a str>) -> Vec<Input<'a>> {
    let mut inputs = vec![Input {
        location: "path".to_owned(),
        text: Cow::Borrowed(exchange.path),
        role: Role::Path,
    }];
    if let Some(query) = exchange.query {
        pairs(query, '&', "query", &mut inputs);
    }
    let request = &exchange.request;
    for (name, value) in request.headers {
        let lower = name.to_ascii_lowercase();
        if PLUMBING_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        if lower == "cookie" {
            pairs(value, ';', "cookie", &mut inputs);
        } else {
            let role = if matches!(lower.as_str(), "x-filename" | "x-file-name") {
                Role::FileName
            } else {
                Role::Value
            };
            inputs.push(Input {
                location: format!("header.{lower}"),
                text: Cow::Borrowed(value),
                role,
            });
        }
    }
    if let Some(text) = body {
        let content_type = request.header("content-type").unwrap_or_default();
        body::inputs(text, content_type, "body", &mut inputs);
    }
    inputs.truncate(MAX_INPUTS);
    inputs
}

/// `a=1&b=2` (or cookies' `a=1; b=2`): names and values both, since either can carry a payload.
fn pairs<'a>(text: &'a str, separator: char, prefix: &str, inputs: &mut Vec<Input<'a>>) {
    for pair in text.split(separator).filter(|p| !p.trim().is_empty()) {
        if inputs.len() >= MAX_INPUTS {
            return;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = name.trim();
        let location = format!(
            "{prefix}.{}",
            short_name(&decode::percent_decode(name, true))
        );
        inputs.push(Input {
            location: location.clone(),
            text: Cow::Borrowed(name),
            role: Role::Key,
        });
        if !value.is_empty() {
            inputs.push(Input {
                location,
                text: Cow::Borrowed(value),
                role: Role::Value,
            });
        }
    }
}

#[cfg(test)]
mod tests;
