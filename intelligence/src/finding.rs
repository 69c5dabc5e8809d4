//! Findings: what the analysis tells a human, each with a kind, a severity and masked evidence.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// The kinds of finding the inventory and spec conformance report, named as records and
/// queries name them. Detectors elsewhere (sensitive data, threats) name theirs as strings in
/// the same dotted form (`threat.sqli`, `data.email`, or a team's own `data.customer_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FindingKind {
    #[serde(rename = "inventory.new_endpoint")]
    NewEndpoint,
    #[serde(rename = "inventory.new_caller")]
    NewCaller,
    #[serde(rename = "inventory.endpoint_overflow")]
    EndpointOverflow,
    #[serde(rename = "spec.undocumented_endpoint")]
    UndocumentedEndpoint,
    #[serde(rename = "spec.unused_endpoint")]
    UnusedEndpoint,
    #[serde(rename = "spec.method_not_allowed")]
    MethodNotAllowed,
    #[serde(rename = "spec.missing_header")]
    MissingHeader,
    #[serde(rename = "spec.missing_parameter")]
    MissingParameter,
    #[serde(rename = "spec.invalid_parameter")]
    InvalidParameter,
    #[serde(rename = "spec.invalid_request_body")]
    InvalidRequestBody,
    #[serde(rename = "spec.unexpected_status")]
    UnexpectedStatus,
    #[serde(rename = "spec.invalid_response_body")]
    InvalidResponseBody,
    #[serde(rename = "spec.unexpected_content_type")]
    UnexpectedContentType,
    /// A finding in block mode put its source into the kernel's timed blocks.
    #[serde(rename = "policy.blocked")]
    SourceBlocked,
    /// A 2xx without credentials from an endpoint documented or observed as authenticated.
    #[serde(rename = "auth.missing")]
    AuthMissing,
}

impl FindingKind {
    pub const ALL: [Self; 15] = [
        Self::NewEndpoint,
        Self::NewCaller,
        Self::EndpointOverflow,
        Self::UndocumentedEndpoint,
        Self::UnusedEndpoint,
        Self::MethodNotAllowed,
        Self::MissingHeader,
        Self::MissingParameter,
        Self::InvalidParameter,
        Self::InvalidRequestBody,
        Self::UnexpectedStatus,
        Self::InvalidResponseBody,
        Self::UnexpectedContentType,
        Self::SourceBlocked,
        Self::AuthMissing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewEndpoint => "inventory.new_endpoint",
            Self::NewCaller => "inventory.new_caller",
            Self::EndpointOverflow => "inventory.endpoint_overflow",
            Self::UndocumentedEndpoint => "spec.undocumented_endpoint",
            Self::UnusedEndpoint => "spec.unused_endpoint",
            Self::MethodNotAllowed => "spec.method_not_allowed",
            Self::MissingHeader => "spec.missing_header",
            Self::MissingParameter => "spec.missing_parameter",
            Self::InvalidParameter => "spec.invalid_parameter",
            Self::InvalidRequestBody => "spec.invalid_request_body",
            Self::UnexpectedStatus => "spec.unexpected_status",
            Self::InvalidResponseBody => "spec.invalid_response_body",
            Self::UnexpectedContentType => "spec.unexpected_content_type",
            Self::SourceBlocked => "policy.blocked",
            Self::AuthMissing => "auth.missing",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Severity unless a spec binding overrides it. Shadow APIs and bodies that break the
    /// contract are what attackers probe with; news about the inventory is for information.
    pub fn default_severity(self) -> Severity {
        match self {
            Self::NewEndpoint | Self::NewCaller => Severity::Info,
            Self::EndpointOverflow | Self::UnusedEndpoint | Self::UnexpectedStatus => Severity::Low,
            Self::AuthMissing => Severity::High,
            Self::UndocumentedEndpoint
            | Self::MethodNotAllowed
            | Self::InvalidRequestBody
            | Self::SourceBlocked => Severity::Medium,
            Self::MissingHeader
            | Self::MissingParameter
            | Self::InvalidParameter
            | Self::InvalidResponseBody
            | Self::UnexpectedContentType => Severity::Low,
        }
    }

    /// Kinds a request alone can show, so that blocking its source makes sense; the others are
    /// the server's doing (its responses) or the inventory's news.
    pub fn is_about_the_request(self) -> bool {
        matches!(
            self,
            Self::UndocumentedEndpoint
                | Self::MethodNotAllowed
                | Self::MissingHeader
                | Self::MissingParameter
                | Self::InvalidParameter
                | Self::InvalidRequestBody
        )
    }
}

/// What to do when a kind of finding occurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Off,
    #[default]
    Detect,
    /// Report and drop the source's packets for a while (XDP timed block).
    Block,
}

/// One finding about one call (or, for unused endpoints, about the absence of calls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `spec.invalid_parameter`, `threat.sqli`, `data.email`... Serialized as `finding`:
    /// records already use `kind` for what record they are.
    #[serde(rename = "finding")]
    pub kind: Cow<'static, str>,
    /// Which rule of the kind's detector fired (`sqli.union`, `trace.java`); empty where the
    /// kind says it all (spec findings name their rule by `spec_pointer`).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub rule: Cow<'static, str>,
    pub severity: Severity,
    /// The service the call went to (its inventory name).
    pub service: String,
    pub method: String,
    /// The endpoint's template (`/users/{id}`), as the inventory or the spec names it.
    pub endpoint: String,
    /// JSON pointer into the bound spec of the rule that was broken (`#/paths/~1pets/get/...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_pointer: Option<String>,
    /// What was wrong, in a sentence.
    pub message: String,
    /// Where in the call and a masked glimpse of what was there; never a whole value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub evidence: String,
    /// Whether the finding asks for the source to be blocked.
    pub mode: Mode,
}

/// At most `keep` leading characters of `value` and its length, so evidence shows the shape of
/// what was sent without carrying it: `"abcd…" (17 chars)`. Short values show no characters at
/// all, since a few characters of a short value are most of it.
pub fn mask(value: &str, keep: usize) -> String {
    let length = value.chars().count();
    let shown: String = if length > keep * 3 {
        value
            .chars()
            .take(keep)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    } else {
        String::new()
    };
    format!("{shown:?}… ({length} chars)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in FindingKind::ALL {
            assert_eq!(FindingKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).expect("kind serializes");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(FindingKind::parse("spec.nonsense"), None);
    }

    #[test]
    fn masking_never_shows_a_short_value_and_caps_long_ones() {
        assert_eq!(mask("secret", 3), "\"\"… (6 chars)");
        assert_eq!(mask("4111111111111111", 4), "\"4111\"… (16 chars)");
        assert_eq!(mask("ab\ncdefghijklmn", 3), "\"ab?\"… (15 chars)");
    }
}
