//! An identity as records carry it. Field names are part of Moat's interface
//! (docs/agent-output.md).

use std::sync::Arc;

use serde::Serialize;

use crate::tags::Tags;

/// What an address is, most specific first: a pod beats the service network it sits in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pod,
    Service,
    Node,
    Range,
    #[default]
    External,
}

/// The controller that owns a pod, resolved to the top: a ReplicaSet's Deployment, a Job's
/// CronJob.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Workload {
    pub kind: Arc<str>,
    pub name: Arc<str>,
}

/// Everything known about one end of a flow. Built once per object and shared: records hold an
/// `Arc<Identity>`, so resolving an address allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// The customer a `customer` range names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Whether the address belongs to the organisation: a pod, service or node of this cluster,
    /// or a range declared internal (pod, service and node networks, other clusters, `internal`).
    pub internal: bool,
}

impl Identity {
    /// An address nothing claims.
    pub fn external() -> Self {
        Self::default()
    }
}
