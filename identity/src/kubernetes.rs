//! The facts Moat keeps of Kubernetes objects: a few strings and addresses per object instead of
//! the whole object, so a node agent holds a large cluster in little memory.
//!
//! Every function takes an object from the API server as it is, however incomplete: a missing
//! field yields a missing fact (or, where the object is useless without it, an error naming the
//! field), never a panic.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use k8s_openapi::{
    api::{
        core::v1::{Namespace, Node, Pod, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};

use crate::{
    Workload,
    apis::{self, AnnotatedApi},
    tags::Tags,
};

/// Milliseconds since the Unix epoch: the clock the index keeps time in.
pub type Millis = i64;

/// Why an object cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name}: {problem}")]
pub struct ObjectError {
    pub kind: &'static str,
    /// `namespace/name`, or whatever of it is known.
    pub name: String,
    pub problem: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub node: Option<Arc<str>>,
    /// Empty for a pod on the host's network (its address is the node's) or not yet scheduled.
    pub ips: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    /// From the pod's `moat.dev/*` labels, then annotations (which win).
    pub tags: Tags,
    pub workload: Option<Workload>,
    /// Container id (as in the cgroup path, without the runtime prefix) to container name.
    pub containers: BTreeMap<String, Arc<str>>,
    /// Succeeded or Failed: its address is released and may already belong to another pod.
    pub finished: bool,
    pub created: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFacts {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// ClusterIPs, external IPs and load-balancer ingress IPs.
    pub ips: Vec<IpAddr>,
    /// Only the ClusterIPs: what the service network is learned from.
    pub cluster_ips: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub tags: Tags,
    /// What its `moat.dev/openapi*` annotations bind, if it has them.
    pub api: Option<Arc<AnnotatedApi>>,
    /// `spec.selector`: the pods it sends traffic to; empty for a service without one (its
    /// endpoints are managed by hand), which selects no pod.
    pub selector: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: Arc<str>,
    /// InternalIP and ExternalIP addresses.
    pub ips: Vec<IpAddr>,
    pub pod_cidrs: Vec<ipnetwork::IpNetwork>,
    pub labels: BTreeMap<String, String>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceFacts {
    pub name: Arc<str>,
    pub labels: BTreeMap<String, String>,
    pub tags: Tags,
}

/// The pods behind a service, as an EndpointSlice lists them: how a node that watches only its
/// own pods still names the pods of other nodes that serve something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceFacts {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub service: Option<Arc<str>>,
    pub endpoints: Vec<SliceEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    pub ip: IpAddr,
    pub pod: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
}

fn display_name(meta: &ObjectMeta) -> String {
    match (&meta.namespace, &meta.name) {
        (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
        (None, Some(name)) => name.clone(),
        _ => "(unnamed)".to_owned(),
    }
}

fn required<'a>(
    kind: &'static str,
    meta: &ObjectMeta,
    field: &'static str,
    value: Option<&'a String>,
) -> Result<&'a str, ObjectError> {
    value
        .map(String::as_str)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ObjectError {
            kind,
            name: display_name(meta),
            problem: format!("has no {field}"),
        })
}

/// Labels then annotations: annotations may carry what labels cannot (an e-mail owner).
fn metadata_tags(meta: &ObjectMeta) -> Tags {
    let mut tags = meta
        .labels
        .as_ref()
        .map(Tags::from_metadata)
        .unwrap_or_default();
    if let Some(annotations) = &meta.annotations {
        tags.overlay(&Tags::from_metadata(annotations));
    }
    tags
}

fn addresses<'a>(texts: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = texts
        .into_iter()
        .filter_map(|text| text.parse().ok())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

pub fn pod_facts(pod: &Pod) -> Result<PodFacts, ObjectError> {
    let meta = &pod.metadata;
    let uid = required("Pod", meta, "metadata.uid", meta.uid.as_ref())?;
    let namespace = required("Pod", meta, "metadata.namespace", meta.namespace.as_ref())?;
    let name = required("Pod", meta, "metadata.name", meta.name.as_ref())?;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let host_network = spec.and_then(|spec| spec.host_network).unwrap_or(false);
    let ips = if host_network {
        Vec::new()
    } else {
        let listed = status.and_then(|status| status.pod_ips.as_ref());
        addresses(
            listed
                .into_iter()
                .flatten()
                .map(|ip| &ip.ip)
                .chain(status.and_then(|status| status.pod_ip.as_ref())),
        )
    };
    let containers = status
        .into_iter()
        .flat_map(|status| {
            [
                &status.container_statuses,
                &status.init_container_statuses,
                &status.ephemeral_container_statuses,
            ]
        })
        .flatten()
        .flatten()
        .filter_map(|container| {
            let id = container.container_id.as_deref()?;
            // `containerd://<id>`, `cri-o://<id>`, `docker://<id>`.
            let id = id.rsplit_once("://").map_or(id, |(_, id)| id);
            Some((id.to_ascii_lowercase(), Arc::from(container.name.as_str())))
        })
        .collect();
    let phase = status.and_then(|status| status.phase.as_deref());
    let labels = meta.labels.clone().unwrap_or_default();
    Ok(PodFacts {
        uid: Arc::from(uid),
        namespace: Arc::from(namespace),
        name: Arc::from(name),
        node: spec
            .and_then(|spec| spec.node_name.as_deref())
            .map(Arc::from),
        ips,
        workload: workload_of(meta.owner_references.as_deref(), &labels),
        tags: metadata_tags(meta),
        labels,
        containers,
        finished: matches!(phase, Some("Succeeded" | "Failed")),
        created: meta
            .creation_timestamp
            .as_ref()
            .map(|time| time.0.as_millisecond()),
    })
}

/// The controller at the top of a pod's owners, without watching the owners themselves: a
/// ReplicaSet named `<deployment>-<pod-template-hash>` belongs to that Deployment, and a Job
/// named `<cronjob>-<scheduled minute>` to that CronJob (both names are how the controllers
/// build them).
fn workload_of(
    owners: Option<&[OwnerReference]>,
    labels: &BTreeMap<String, String>,
) -> Option<Workload> {
    let owner = owners?
        .iter()
        .find(|owner| owner.controller == Some(true))?;
    let (kind, name) = match owner.kind.as_str() {
        "ReplicaSet" => match labels
            .get("pod-template-hash")
            .and_then(|hash| owner.name.strip_suffix(hash.as_str()))
            .and_then(|rest| rest.strip_suffix('-'))
        {
            Some(deployment) if !deployment.is_empty() => ("Deployment", deployment),
            _ => ("ReplicaSet", owner.name.as_str()),
        },
        "Job" => match owner.name.rsplit_once('-') {
            Some((cronjob, minute))
                if !cronjob.is_empty()
                    && minute.len() >= 8
                    && minute.bytes().all(|b| b.is_ascii_digit()) =>
            {
                ("CronJob", cronjob)
            }
            _ => ("Job", owner.name.as_str()),
        },
        kind => (kind, owner.name.as_str()),
    };
    Some(Workload {
        kind: Arc::from(kind),
        name: Arc::from(name),
    })
}

pub fn service_facts(service: &Service) -> Result<ServiceFacts, ObjectError> {
    let meta = &service.metadata;
    let namespace = required(
        "Service",
        meta,
        "metadata.namespace",
        meta.namespace.as_ref(),
    )?;
    let name = required("Service", meta, "metadata.name", meta.name.as_ref())?;
    let spec = service.spec.as_ref();
    // "None" marks a headless service: its names resolve to pods, which the pods' own identities
    // cover.
    let cluster_ips = addresses(
        spec.and_then(|spec| spec.cluster_ips.as_ref())
            .into_iter()
            .flatten()
            .chain(spec.and_then(|spec| spec.cluster_ip.as_ref())),
    );
    let ingress = service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|balancer| balancer.ingress.as_ref());
    let mut ips = addresses(
        cluster_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .iter()
            .chain(
                spec.and_then(|spec| spec.external_ips.as_ref())
                    .into_iter()
                    .flatten(),
            )
            .chain(
                ingress
                    .into_iter()
                    .flatten()
                    .filter_map(|ingress| ingress.ip.as_ref()),
            ),
    );
    ips.dedup();
    Ok(ServiceFacts {
        selector: spec
            .and_then(|spec| spec.selector.clone())
            .unwrap_or_default(),
        namespace: Arc::from(namespace),
        name: Arc::from(name),
        ips,
        cluster_ips,
        tags: metadata_tags(meta),
        labels: meta.labels.clone().unwrap_or_default(),
        api: meta
            .annotations
            .as_ref()
            .and_then(|annotations| apis::annotated(namespace, name, annotations))
            .map(Arc::new),
    })
}

pub fn node_facts(node: &Node) -> Result<NodeFacts, ObjectError> {
    let meta = &node.metadata;
    let name = required("Node", meta, "metadata.name", meta.name.as_ref())?;
    let ips = addresses(
        node.status
            .as_ref()
            .and_then(|status| status.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|address| matches!(address.type_.as_str(), "InternalIP" | "ExternalIP"))
            .map(|address| &address.address),
    );
    let spec = node.spec.as_ref();
    let mut pod_cidrs: Vec<ipnetwork::IpNetwork> = spec
        .and_then(|spec| spec.pod_cidrs.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.and_then(|spec| spec.pod_cidr.as_ref()))
        .filter_map(|text| policy::parse_cidr(text).ok())
        .collect();
    pod_cidrs.sort_unstable();
    pod_cidrs.dedup();
    Ok(NodeFacts {
        name: Arc::from(name),
        ips,
        pod_cidrs,
        tags: metadata_tags(meta),
        labels: meta.labels.clone().unwrap_or_default(),
    })
}

pub fn namespace_facts(namespace: &Namespace) -> Result<NamespaceFacts, ObjectError> {
    let meta = &namespace.metadata;
    let name = required("Namespace", meta, "metadata.name", meta.name.as_ref())?;
    Ok(NamespaceFacts {
        name: Arc::from(name),
        tags: metadata_tags(meta),
        labels: meta.labels.clone().unwrap_or_default(),
    })
}

pub fn slice_facts(slice: &EndpointSlice) -> Result<SliceFacts, ObjectError> {
    let meta = &slice.metadata;
    let namespace = required(
        "EndpointSlice",
        meta,
        "metadata.namespace",
        meta.namespace.as_ref(),
    )?;
    let name = required("EndpointSlice", meta, "metadata.name", meta.name.as_ref())?;
    let endpoints = slice
        .endpoints
        .iter()
        .flatten()
        .flat_map(|endpoint| {
            let pod = endpoint
                .target_ref
                .as_ref()
                .filter(|target| target.kind.as_deref() == Some("Pod"))
                .and_then(|target| target.name.as_deref())
                .map(Arc::<str>::from);
            let node = endpoint.node_name.as_deref().map(Arc::<str>::from);
            endpoint
                .addresses
                .iter()
                .filter_map(|text| text.parse().ok())
                .map(move |ip| SliceEndpoint {
                    ip,
                    pod: pod.clone(),
                    node: node.clone(),
                })
        })
        .collect();
    Ok(SliceFacts {
        namespace: Arc::from(namespace),
        name: Arc::from(name),
        service: meta
            .labels
            .as_ref()
            .and_then(|labels| labels.get("kubernetes.io/service-name"))
            .map(|name| Arc::from(name.as_str())),
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    #[test]
    fn a_deployment_pod_names_its_deployment_containers_and_addresses() {
        let facts = pod_facts(&pod(json!({
            "metadata": {
                "name": "web-7d9f8c6b5d-x2k4p", "namespace": "shop",
                "uid": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                "creationTimestamp": "2026-11-01T10:00:00Z",
                "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5d", "moat.dev/team": "storefront"},
                "annotations": {"moat.dev/owner": "web@example.com", "moat.dev/team": "checkout"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5d", "uid": "u", "controller": true}]
            },
            "spec": {"nodeName": "node-a", "containers": [{"name": "web"}]},
            "status": {
                "phase": "Running", "podIP": "10.1.0.5",
                "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00:10::5"}],
                "containerStatuses": [{"name": "web", "containerID": "containerd://ABCDEF", "image": "i", "imageID": "", "ready": true, "restartCount": 0}]
            }
        })))
        .expect("valid pod");
        assert_eq!(
            facts.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert_eq!(
            facts.ips,
            vec![
                "10.1.0.5".parse::<IpAddr>().expect("ip"),
                "fd00:10::5".parse().expect("ip")
            ]
        );
        assert_eq!(
            facts.containers.get("abcdef").map(|name| &**name),
            Some("web")
        );
        assert_eq!(
            facts.tags.get("team").as_deref(),
            Some("checkout"),
            "annotations win over labels"
        );
        assert_eq!(facts.tags.get("owner").as_deref(), Some("web@example.com"));
        assert_eq!(facts.node.as_deref(), Some("node-a"));
        assert_eq!(facts.created, Some(1_793_527_200_000));
        assert!(!facts.finished);
    }

    #[test]
    fn owners_resolve_only_as_far_as_names_prove() {
        let owned = |kind: &str, name: &str, hash: Option<&str>| {
            let mut labels = BTreeMap::new();
            if let Some(hash) = hash {
                labels.insert("pod-template-hash".to_owned(), hash.to_owned());
            }
            let owner = OwnerReference {
                kind: kind.to_owned(),
                name: name.to_owned(),
                controller: Some(true),
                ..OwnerReference::default()
            };
            workload_of(Some(&[owner]), &labels)
                .map(|workload| (workload.kind.to_string(), workload.name.to_string()))
        };
        let pair = |kind: &str, name: &str| Some((kind.to_owned(), name.to_owned()));
        assert_eq!(
            owned("ReplicaSet", "api-5f6d", Some("5f6d")),
            pair("Deployment", "api")
        );
        assert_eq!(
            owned("ReplicaSet", "api-5f6d", None),
            pair("ReplicaSet", "api-5f6d")
        );
        assert_eq!(
            owned("ReplicaSet", "api-5f6d", Some("0000")),
            pair("ReplicaSet", "api-5f6d")
        );
        assert_eq!(
            owned("Job", "backup-29381520", None),
            pair("CronJob", "backup")
        );
        assert_eq!(owned("Job", "migrate", None), pair("Job", "migrate"));
        assert_eq!(owned("StatefulSet", "db", None), pair("StatefulSet", "db"));
        assert_eq!(workload_of(None, &BTreeMap::new()), None);
        let not_controller = OwnerReference {
            kind: "ReplicaSet".into(),
            name: "x".into(),
            ..OwnerReference::default()
        };
        assert_eq!(workload_of(Some(&[not_controller]), &BTreeMap::new()), None);
    }

    #[test]
    fn host_network_and_finished_pods_hold_no_address_of_their_own() {
        let host = pod_facts(&pod(json!({
            "metadata": {"name": "cilium-x", "namespace": "kube-system", "uid": "u1"},
            "spec": {"hostNetwork": true, "containers": []},
            "status": {"phase": "Running", "podIP": "192.168.1.10"}
        })))
        .expect("valid pod");
        assert!(host.ips.is_empty());
        let done = pod_facts(&pod(json!({
            "metadata": {"name": "job-x", "namespace": "ci", "uid": "u2"},
            "status": {"phase": "Succeeded", "podIP": "10.1.0.9"}
        })))
        .expect("valid pod");
        assert!(done.finished);
    }

    #[test]
    fn incomplete_objects_name_what_is_missing() {
        let error = pod_facts(&pod(json!({"metadata": {"name": "x", "namespace": "y"}})))
            .expect_err("no uid");
        assert_eq!(error.to_string(), "Pod y/x: has no metadata.uid");
        let garbage = pod_facts(&pod(json!({
            "metadata": {"name": "x", "namespace": "y", "uid": "u"},
            "status": {"podIP": "not an address", "podIPs": [{"ip": "999.1.1.1"}]}
        })))
        .expect("valid enough");
        assert!(garbage.ips.is_empty());
    }

    #[test]
    fn services_nodes_and_slices_keep_their_addresses() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "shop", "labels": {"moat.dev/product": "shop"}},
            "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00:96::20"], "externalIPs": ["203.0.113.9"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.4"}]}}
        }))
        .expect("a service");
        let facts = service_facts(&service).expect("valid service");
        assert_eq!(facts.cluster_ips.len(), 2);
        assert_eq!(facts.ips.len(), 4);
        assert_eq!(facts.tags.get("product").as_deref(), Some("shop"));
        let headless: Service = serde_json::from_value(
            json!({"metadata": {"name": "h", "namespace": "s"}, "spec": {"clusterIP": "None"}}),
        )
        .expect("a service");
        assert!(service_facts(&headless).expect("valid").ips.is_empty());
        assert_eq!(facts.api, None);
        let annotated: Service = serde_json::from_value(json!({"metadata": {
            "name": "pets", "namespace": "shop",
            "annotations": {"moat.dev/openapi": "pets-spec/openapi.yaml"}
        }}))
        .expect("a service");
        let api = service_facts(&annotated)
            .expect("valid")
            .api
            .expect("annotated");
        assert_eq!(
            api.binding.as_ref().map(|binding| &*binding.name),
            Some("shop/pets")
        );

        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-a"},
            "spec": {"podCIDR": "10.1.0.0/24", "podCIDRs": ["10.1.0.0/24", "fd00:10::/64"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-a"}]}
        }))
        .expect("a node");
        let facts = node_facts(&node).expect("valid node");
        assert_eq!(
            facts.ips,
            vec!["192.168.1.10".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(facts.pod_cidrs.len(), 2);

        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "db-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.2.0.7"], "nodeName": "node-b", "targetRef": {"kind": "Pod", "name": "db-0", "namespace": "shop"}}]
        }))
        .expect("a slice");
        let facts = slice_facts(&slice).expect("valid slice");
        assert_eq!(facts.service.as_deref(), Some("db"));
        assert_eq!(facts.endpoints[0].pod.as_deref(), Some("db-0"));
        assert_eq!(facts.endpoints[0].node.as_deref(), Some("node-b"));
    }
}
