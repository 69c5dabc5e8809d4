//! The policy file as written: field names, nesting and defaults. Unknown fields are errors, so
//! a misspelt key is reported instead of silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::selector::LabelSelector;

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    #[serde(default)]
    pub identities: BTreeMap<String, IdentitySpec>,
    #[serde(default)]
    pub blocklist: BlocklistSpec,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub isolate: Vec<String>,
    #[serde(default)]
    pub rate_limits: Vec<RateLimitSpec>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdentitySpec {
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Kubernetes pods by labels, optionally in one namespace.
    pub selector: Option<PodSelectorSpec>,
    /// Kubernetes pods of the namespaces whose labels match.
    pub namespace_selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSelectorSpec {
    pub namespace: Option<String>,
    #[serde(default)]
    pub match_labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<crate::selector::Requirement>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BlocklistSpec {
    #[serde(default)]
    pub cidrs: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub action: ActionSpec,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub protocol: ProtocolSpec,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ActionSpec {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSpec {
    Tcp,
    Udp,
    Icmp,
    #[default]
    Any,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitSpec {
    pub name: String,
    pub to: String,
    pub per_source: PerSourceSpec,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PerSourceSpec {
    pub packets_per_second: u64,
    pub burst: u64,
}
