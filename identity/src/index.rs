//! The identity of an address at a moment, and of a pod by uid.
//!
//! Pod addresses are reused: once a pod is gone its IP goes to the next pod scheduled on that
//! node. So the index keeps, per address, a short history of which pod held it from when until
//! when, and a call is attributed to the pod that held the address when the call happened, not
//! to whoever holds it when the record is written.
//!
//! Precedence for an address: a pod that held it then, a service's address, a node's address, a
//! pod an EndpointSlice names, then the most specific range (declared before learned), else
//! external.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use ipnetwork::IpNetwork;
use policy::selector::{LabelSelector, Labels};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

pub use crate::ranges::RangeFacts;

use crate::{
    Identity, Kind,
    inventory::{Inventory, RangeKind},
    kubernetes::{Millis, NamespaceFacts, NodeFacts, PodFacts, ServiceFacts, SliceFacts},
    ranges::{RangeEntry, RangeTable},
    stored::{Interner, PodOrigin, StoredPod},
    tags::Tags,
};

/// How long a released address still resolves to its former pod, for calls that started while
/// the pod held it and are reported later.
pub const DEFAULT_RETENTION_MS: Millis = 10 * 60 * 1000;
/// Holders remembered per address, so a churning address cannot grow without bound.
const MAX_TENURES_PER_ADDRESS: usize = 8;

/// What the index says about an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub identity: Arc<Identity>,
    /// The range the address lies in, whatever its identity.
    pub range: Option<Arc<RangeFacts>>,
}

/// A range as the inventory summary lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSummary {
    pub name: Arc<str>,
    pub kind: RangeKind,
    /// Sorted.
    pub cidrs: Vec<IpNetwork>,
    /// Learned from the cluster (nodes' pod CIDRs, the service network), not declared.
    pub learned: bool,
}

/// A workload with pods on this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadSummary {
    pub namespace: Arc<str>,
    /// `Deployment`, `StatefulSet`, ...; `Pod` for a pod without a controller.
    pub kind: Arc<str>,
    pub name: Arc<str>,
    pub pods: u32,
    /// The services selecting its pods, sorted.
    pub services: Vec<Arc<str>>,
}

/// A service's `spec.selector`: labels a pod must all have.
type Selector = BTreeMap<String, String>;

/// Sizes, for metrics and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Distinct shared strings (namespaces, nodes, workloads, labels).
    pub strings: usize,
    pub pods: usize,
    pub services: usize,
    pub nodes: usize,
    pub namespaces: usize,
    pub ranges: usize,
    pub pod_addresses: usize,
}

#[derive(Debug, Clone)]
struct Tenure {
    uid: Arc<str>,
    identity: Arc<Identity>,
    /// The address's range, looked up once rather than on every resolve.
    range: Option<Arc<RangeFacts>>,
    from: Millis,
    until: Option<Millis>,
}

#[derive(Debug)]
struct Live<F> {
    facts: F,
    identity: Arc<Identity>,
}

type NamespacedName = (Arc<str>, Arc<str>);

#[derive(Debug)]
pub struct IdentityIndex {
    inventory: Inventory,
    retention_ms: Millis,
    namespaces: HashMap<Arc<str>, NamespaceFacts>,
    /// Boxed: a table of 100,000 slots stays small, and growing it moves pointers.
    pods: HashMap<Arc<str>, Box<Live<StoredPod>>>,
    strings: Interner,
    local_node: Option<Arc<str>>,
    pods_by_ip: HashMap<IpAddr, Vec<Tenure>>,
    services: HashMap<NamespacedName, Live<ServiceFacts>>,
    service_by_ip: HashMap<IpAddr, Arc<Identity>>,
    /// Per namespace, the services with a selector, by name: what names a pod's service.
    selectors: HashMap<Arc<str>, BTreeMap<Arc<str>, Selector>>,
    nodes: HashMap<Arc<str>, Live<NodeFacts>>,
    node_by_ip: HashMap<IpAddr, Arc<Identity>>,
    slices: HashMap<NamespacedName, SliceFacts>,
    slice_by_ip: HashMap<IpAddr, Arc<Identity>>,
    ranges: RangeTable,
    /// Nodes' pod CIDRs or service addresses changed: the learned ranges need rebuilding.
    ranges_stale: bool,
    external: Arc<Identity>,
}

fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl IdentityIndex {
    pub fn new(inventory: Inventory) -> Self {
        let mut index = Self {
            inventory,
            retention_ms: DEFAULT_RETENTION_MS,
            namespaces: HashMap::default(),
            pods: HashMap::default(),
            strings: Interner::default(),
            local_node: None,
            pods_by_ip: HashMap::default(),
            services: HashMap::default(),
            selectors: HashMap::default(),
            service_by_ip: HashMap::default(),
            nodes: HashMap::default(),
            node_by_ip: HashMap::default(),
            slices: HashMap::default(),
            slice_by_ip: HashMap::default(),
            ranges: RangeTable::default(),
            ranges_stale: true,
            external: Arc::new(Identity::external()),
        };
        index.refresh();
        index
    }

    /// This node's name: only its pods' containers are kept (for naming local processes).
    pub fn set_local_node(&mut self, name: &str) {
        self.local_node = Some(Arc::from(name));
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// A new inventory: every identity is rebuilt with its rules and ranges.
    pub fn set_inventory(&mut self, inventory: Inventory) {
        self.inventory = inventory;
        self.rebuild_all();
        self.ranges_stale = true;
        self.refresh();
    }

    pub fn stats(&self) -> IndexStats {
        IndexStats {
            strings: self.strings.len(),
            pods: self.pods.len(),
            services: self.services.len(),
            nodes: self.nodes.len(),
            namespaces: self.namespaces.len(),
            ranges: self.ranges.len(),
            pod_addresses: self.pods_by_ip.len(),
        }
    }

    /// The ranges in force (declared and learned), by name.
    pub fn range_summary(&self) -> Vec<RangeSummary> {
        let declared: HashSet<&str> = self
            .inventory
            .ranges
            .iter()
            .map(|range| &*range.name)
            .collect();
        let mut by_name: BTreeMap<Arc<str>, RangeSummary> = BTreeMap::new();
        for (network, entry) in self.ranges.networks() {
            let facts = &entry.facts;
            by_name
                .entry(facts.range.clone())
                .or_insert_with(|| RangeSummary {
                    name: facts.range.clone(),
                    kind: facts.range_kind,
                    cidrs: Vec::new(),
                    learned: !declared.contains(&*facts.range),
                })
                .cidrs
                .push(network);
        }
        by_name
            .into_values()
            .map(|mut summary| {
                summary.cidrs.sort();
                summary
            })
            .collect()
    }

    /// The workloads with running pods on this node (every pod, when no node is set), with
    /// how many and the services that select them.
    pub fn workload_summary(&self) -> Vec<WorkloadSummary> {
        // (namespace, kind, name)
        type WorkloadKey = (Arc<str>, Arc<str>, Arc<str>);
        let mut workloads: BTreeMap<WorkloadKey, WorkloadSummary> = BTreeMap::new();
        for live in self.pods.values() {
            let identity = &live.identity;
            let here = self.local_node.is_none() || identity.node == self.local_node;
            if !here || live.facts.ips.is_empty() {
                continue;
            }
            let namespace = identity.namespace.clone().unwrap_or_else(|| Arc::from(""));
            let (kind, name) = match &identity.workload {
                Some(workload) => (workload.kind.clone(), workload.name.clone()),
                None => (
                    Arc::from("Pod"),
                    identity.pod.clone().unwrap_or_else(|| Arc::from("")),
                ),
            };
            let summary = workloads
                .entry((namespace.clone(), kind.clone(), name.clone()))
                .or_insert_with(|| WorkloadSummary {
                    namespace,
                    kind,
                    name,
                    pods: 0,
                    services: Vec::new(),
                });
            summary.pods += 1;
            if let Some(service) = &identity.service
                && !summary.services.contains(service)
            {
                summary.services.push(service.clone());
                summary.services.sort();
            }
        }
        workloads.into_values().collect()
    }

    /// Rebuilds what updates left stale (the learned ranges). Call after a batch of updates and
    /// before resolving; a thousand node updates then cost one rebuild, not a thousand.
    pub fn refresh(&mut self) {
        self.strings.sweep();
        if !self.ranges_stale {
            return;
        }
        self.ranges_stale = false;
        let declared = self.inventory.ranges.iter().flat_map(|range| {
            let entry = self.range_entry(
                &range.name,
                range.kind,
                range.customer.clone(),
                range.environment.clone(),
                &range.tags,
                None,
            );
            range.cidrs.iter().map(move |cidr| (*cidr, entry.clone()))
        });
        let mut learned: Vec<(IpNetwork, RangeEntry)> = Vec::new();
        let mut nodes: Vec<&Live<NodeFacts>> = self.nodes.values().collect();
        nodes.sort_by(|a, b| a.facts.name.cmp(&b.facts.name));
        for node in nodes {
            let name: Arc<str> = Arc::from(format!("pod-cidr/{}", node.facts.name));
            let entry = self.range_entry(
                &name,
                RangeKind::PodNetwork,
                None,
                None,
                &Tags::default(),
                Some(node.facts.name.clone()),
            );
            learned.extend(
                node.facts
                    .pod_cidrs
                    .iter()
                    .map(|cidr| (*cidr, entry.clone())),
            );
        }
        let declares_services = self
            .inventory
            .ranges
            .iter()
            .any(|range| range.kind == RangeKind::ServiceNetwork);
        if !declares_services {
            let entry = self.range_entry(
                "service-network",
                RangeKind::ServiceNetwork,
                None,
                None,
                &Tags::default(),
                None,
            );
            let cluster_ips = self
                .services
                .values()
                .flat_map(|service| service.facts.cluster_ips.iter().copied());
            learned.extend(
                learned_service_networks(cluster_ips)
                    .into_iter()
                    .map(|network| (network, entry.clone())),
            );
        }
        let declared: Vec<_> = declared.collect();
        self.ranges = RangeTable::build(declared.into_iter().chain(learned));
        for (ip, tenures) in &mut self.pods_by_ip {
            let range = self.ranges.lookup(*ip).map(|range| range.facts.clone());
            for tenure in tenures {
                tenure.range = range.clone();
            }
        }
    }

    fn range_entry(
        &self,
        name: &str,
        kind: RangeKind,
        customer: Option<Arc<str>>,
        environment: Option<Arc<str>>,
        tags: &Tags,
        node: Option<Arc<str>>,
    ) -> RangeEntry {
        let internal = kind.is_internal();
        let ours = matches!(
            kind,
            RangeKind::PodNetwork | RangeKind::ServiceNetwork | RangeKind::NodeNetwork
        );
        let facts = Arc::new(RangeFacts {
            range: Arc::from(name),
            range_kind: kind,
        });
        let identity = Arc::new(Identity {
            kind: Kind::Range,
            cluster: ours.then(|| self.inventory.cluster.clone()).flatten(),
            node,
            environment: environment.or_else(|| {
                internal
                    .then(|| self.inventory.environment.clone())
                    .flatten()
            }),
            customer,
            tags: tags.clone(),
            internal,
            ..Identity::default()
        });
        RangeEntry { facts, identity }
    }

    /// Tags from the inventory's rules, then the namespace, then the object itself; the
    /// environment tag becomes the identity's environment.
    fn tags_for(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        labels: &impl Labels,
        own: &Tags,
    ) -> (Tags, Option<Arc<str>>) {
        let mut tags = Tags::default();
        for rule in &self.inventory.tag_rules {
            if rule.applies(kind, namespace, labels) {
                tags.overlay(&rule.tags);
            }
        }
        if let Some(namespace) = namespace.and_then(|name| self.namespaces.get(name)) {
            tags.overlay(&namespace.tags);
        }
        tags.overlay(own);
        let environment = tags
            .remove("environment")
            .or_else(|| self.inventory.environment.clone());
        (tags, environment)
    }

    /// The first service (by name) of the pod's namespace whose selector its labels match:
    /// calls to the pod's address are calls to that service, whatever address they used.
    fn service_of(&self, namespace: &str, labels: &impl Labels) -> Option<Arc<str>> {
        self.selectors
            .get(namespace)?
            .iter()
            .find_map(|(name, selector)| {
                selector
                    .iter()
                    .all(|(key, value)| labels.label(key) == Some(value.as_str()))
                    .then(|| name.clone())
            })
    }

    fn pod_identity(&self, origin: PodOrigin, pod: &StoredPod) -> Arc<Identity> {
        let (tags, environment) =
            self.tags_for(Kind::Pod, Some(&origin.namespace), &pod.labels, &pod.tags);
        Arc::new(Identity {
            kind: Kind::Pod,
            cluster: self.inventory.cluster.clone(),
            service: self.service_of(&origin.namespace, &pod.labels),
            namespace: Some(origin.namespace),
            workload: origin.workload,
            pod: Some(origin.name),
            node: origin.node,
            environment,
            tags,
            internal: true,
            ..Identity::default()
        })
    }

    fn service_identity(&self, facts: &ServiceFacts) -> Arc<Identity> {
        let (tags, environment) = self.tags_for(
            Kind::Service,
            Some(&facts.namespace),
            &facts.labels,
            &facts.tags,
        );
        Arc::new(Identity {
            kind: Kind::Service,
            cluster: self.inventory.cluster.clone(),
            namespace: Some(facts.namespace.clone()),
            service: Some(facts.name.clone()),
            environment,
            tags,
            internal: true,
            ..Identity::default()
        })
    }

    fn node_identity(&self, facts: &NodeFacts) -> Arc<Identity> {
        let (tags, environment) = self.tags_for(Kind::Node, None, &facts.labels, &facts.tags);
        Arc::new(Identity {
            kind: Kind::Node,
            cluster: self.inventory.cluster.clone(),
            node: Some(facts.name.clone()),
            environment,
            tags,
            internal: true,
            ..Identity::default()
        })
    }

    /// Pods of other nodes known only from an EndpointSlice: no labels, no owner.
    fn slice_identities(&self, facts: &SliceFacts) -> Vec<(IpAddr, Arc<Identity>)> {
        let (tags, environment) = self.tags_for(
            Kind::Pod,
            Some(&facts.namespace),
            &BTreeMap::new(),
            &Tags::default(),
        );
        facts
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.pod.is_some())
            .map(|endpoint| {
                let identity = Identity {
                    kind: Kind::Pod,
                    cluster: self.inventory.cluster.clone(),
                    namespace: Some(facts.namespace.clone()),
                    pod: endpoint.pod.clone(),
                    node: endpoint.node.clone(),
                    service: facts.service.clone(),
                    environment: environment.clone(),
                    tags: tags.clone(),
                    internal: true,
                    ..Identity::default()
                };
                (normalize(endpoint.ip), Arc::new(identity))
            })
            .collect()
    }

    // ---- pods ----

    /// A pod was added or changed at `now`.
    pub fn apply_pod(&mut self, facts: PodFacts, now: Millis) {
        let created = facts.created;
        let (pod, origin) = StoredPod::new(facts, self.local_node.as_deref(), &mut self.strings);
        let identity = self.pod_identity(origin, &pod);
        let held: HashSet<IpAddr> = pod.ips.iter().copied().map(normalize).collect();
        let previous = self.pods.get(&pod.uid);
        let had: HashSet<IpAddr> = previous
            .map(|live| live.facts.ips.iter().copied().map(normalize).collect())
            .unwrap_or_default();
        // First sight (the agent started, or the watch relisted): the pod has held its address
        // since it was created, as far as anyone can tell.
        let since = if previous.is_none() {
            created.map_or(now, |created| created.min(now))
        } else {
            now
        };
        for ip in had.difference(&held) {
            self.end_tenure(*ip, &pod.uid, now);
        }
        for ip in &held {
            self.hold(*ip, &pod.uid, &identity, since, now);
        }
        let uid = pod.uid.clone();
        self.pods.insert(
            uid,
            Box::new(Live {
                facts: pod,
                identity,
            }),
        );
    }

    /// A pod was deleted at `now`.
    pub fn remove_pod(&mut self, uid: &str, now: Millis) {
        if let Some(live) = self.pods.remove(uid) {
            for ip in &live.facts.ips {
                self.end_tenure(normalize(*ip), &live.facts.uid, now);
            }
        }
    }

    /// The complete set of pods after a (re)list: those not in it are gone.
    pub fn replace_pods(&mut self, pods: Vec<PodFacts>, now: Millis) {
        let present: HashSet<Arc<str>> = pods.iter().map(|pod| pod.uid.clone()).collect();
        let gone: Vec<Arc<str>> = self
            .pods
            .keys()
            .filter(|uid| !present.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.remove_pod(&uid, now);
        }
        for pod in pods {
            self.apply_pod(pod, now);
        }
    }

    fn hold(
        &mut self,
        ip: IpAddr,
        uid: &Arc<str>,
        identity: &Arc<Identity>,
        since: Millis,
        now: Millis,
    ) {
        let retention = self.retention_ms;
        let range = self.ranges.lookup(ip).map(|range| range.facts.clone());
        // Most addresses only ever have one holder: a Vec would reserve room for four.
        let tenures = self
            .pods_by_ip
            .entry(ip)
            .or_insert_with(|| Vec::with_capacity(1));
        tenures.retain(|tenure| tenure.until.is_none_or(|until| until >= now - retention));
        if let Some(current) = tenures
            .iter_mut()
            .find(|tenure| tenure.until.is_none() && tenure.uid == *uid)
        {
            current.identity = identity.clone();
            return;
        }
        // Never before the previous holder let go; and whoever still holds it lost it now (a
        // delete the watch has not delivered yet: the network gave the address away).
        let released = tenures.iter().filter_map(|tenure| tenure.until).max();
        let from = released.map_or(since, |released| since.max(released));
        for tenure in tenures.iter_mut().filter(|tenure| tenure.until.is_none()) {
            tenure.until = Some(from.max(tenure.from));
        }
        tenures.push(Tenure {
            uid: uid.clone(),
            identity: identity.clone(),
            range,
            from,
            until: None,
        });
        if tenures.len() > MAX_TENURES_PER_ADDRESS {
            let excess = tenures.len() - MAX_TENURES_PER_ADDRESS;
            tenures.drain(..excess);
        }
    }

    fn end_tenure(&mut self, ip: IpAddr, uid: &str, now: Millis) {
        let retention = self.retention_ms;
        let Some(tenures) = self.pods_by_ip.get_mut(&ip) else {
            return;
        };
        for tenure in tenures
            .iter_mut()
            .filter(|tenure| tenure.until.is_none() && &*tenure.uid == uid)
        {
            tenure.until = Some(now.max(tenure.from));
        }
        tenures.retain(|tenure| tenure.until.is_none_or(|until| until >= now - retention));
        if tenures.is_empty() {
            self.pods_by_ip.remove(&ip);
        }
    }

    // ---- services, nodes, namespaces, slices ----

    pub fn apply_service(&mut self, facts: ServiceFacts) {
        let namespace = facts.namespace.clone();
        if self.store_service(facts) {
            self.rebuild_pods_of(&namespace);
        }
    }

    /// Stores the service; says whether the pods it selects changed, so that the caller
    /// rebuilds their identities (once per namespace, when many services change at once).
    fn store_service(&mut self, facts: ServiceFacts) -> bool {
        let key = (facts.namespace.clone(), facts.name.clone());
        let selects_differently = match self.drop_service(&key.0, &key.1) {
            Some(previous) => previous != facts.selector,
            None => !facts.selector.is_empty(),
        };
        let identity = self.service_identity(&facts);
        for ip in &facts.ips {
            self.service_by_ip.insert(normalize(*ip), identity.clone());
        }
        if !facts.cluster_ips.is_empty() {
            self.ranges_stale = true;
        }
        if !facts.selector.is_empty() {
            self.selectors
                .entry(key.0.clone())
                .or_default()
                .insert(key.1.clone(), facts.selector.clone());
        }
        self.services.insert(key, Live { facts, identity });
        selects_differently
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        if self
            .drop_service(namespace, name)
            .is_some_and(|selector| !selector.is_empty())
        {
            self.rebuild_pods_of(namespace);
        }
    }

    /// Forgets the service; returns the selector it had, if it was known.
    fn drop_service(&mut self, namespace: &str, name: &str) -> Option<Selector> {
        let key: NamespacedName = (Arc::from(namespace), Arc::from(name));
        if let Some(selectors) = self.selectors.get_mut(namespace) {
            selectors.remove(name);
            if selectors.is_empty() {
                self.selectors.remove(namespace);
            }
        }
        let live = self.services.remove(&key)?;
        for ip in &live.facts.ips {
            let ip = normalize(*ip);
            if self
                .service_by_ip
                .get(&ip)
                .is_some_and(|identity| Arc::ptr_eq(identity, &live.identity))
            {
                self.service_by_ip.remove(&ip);
            }
        }
        self.ranges_stale |= !live.facts.cluster_ips.is_empty();
        Some(live.facts.selector)
    }

    pub fn replace_services(&mut self, services: Vec<ServiceFacts>) {
        let present: HashSet<NamespacedName> = services
            .iter()
            .map(|service| (service.namespace.clone(), service.name.clone()))
            .collect();
        let gone: Vec<NamespacedName> = self
            .services
            .keys()
            .filter(|key| !present.contains(*key))
            .cloned()
            .collect();
        // A relist of a large cluster changes many services of each namespace: its pods are
        // rebuilt once, after all of them.
        let mut changed: HashSet<Arc<str>> = HashSet::default();
        for (namespace, name) in gone {
            if self
                .drop_service(&namespace, &name)
                .is_some_and(|selector| !selector.is_empty())
            {
                changed.insert(namespace);
            }
        }
        for service in services {
            let namespace = service.namespace.clone();
            if self.store_service(service) {
                changed.insert(namespace);
            }
        }
        for namespace in changed {
            self.rebuild_pods_of(&namespace);
        }
    }

    pub fn apply_node(&mut self, facts: NodeFacts) {
        let name = facts.name.clone();
        let cidrs_changed = self
            .nodes
            .get(&name)
            .is_none_or(|live| live.facts.pod_cidrs != facts.pod_cidrs);
        self.remove_node_addresses(&name);
        let identity = self.node_identity(&facts);
        for ip in &facts.ips {
            self.node_by_ip.insert(normalize(*ip), identity.clone());
        }
        self.ranges_stale |= cidrs_changed;
        self.nodes.insert(name, Live { facts, identity });
    }

    fn remove_node_addresses(&mut self, name: &str) {
        if let Some(live) = self.nodes.get(name) {
            for ip in &live.facts.ips {
                let ip = normalize(*ip);
                if self
                    .node_by_ip
                    .get(&ip)
                    .is_some_and(|identity| Arc::ptr_eq(identity, &live.identity))
                {
                    self.node_by_ip.remove(&ip);
                }
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        self.remove_node_addresses(name);
        if let Some(live) = self.nodes.remove(name) {
            self.ranges_stale |= !live.facts.pod_cidrs.is_empty();
        }
    }

    pub fn replace_nodes(&mut self, nodes: Vec<NodeFacts>) {
        let present: HashSet<Arc<str>> = nodes.iter().map(|node| node.name.clone()).collect();
        let gone: Vec<Arc<str>> = self
            .nodes
            .keys()
            .filter(|name| !present.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.remove_node(&name);
        }
        for node in nodes {
            self.apply_node(node);
        }
    }

    /// Namespace labels feed tags of everything in it, so its pods and services are rebuilt.
    pub fn apply_namespace(&mut self, facts: NamespaceFacts) {
        let name = facts.name.clone();
        if self.namespaces.get(&name) == Some(&facts) {
            return;
        }
        self.namespaces.insert(name.clone(), facts);
        self.rebuild_namespace(&name);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        if self.namespaces.remove(name).is_some() {
            self.rebuild_namespace(name);
        }
    }

    pub fn replace_namespaces(&mut self, namespaces: Vec<NamespaceFacts>) {
        let present: HashSet<Arc<str>> = namespaces
            .iter()
            .map(|namespace| namespace.name.clone())
            .collect();
        let gone: Vec<Arc<str>> = self
            .namespaces
            .keys()
            .filter(|name| !present.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.remove_namespace(&name);
        }
        for namespace in namespaces {
            self.apply_namespace(namespace);
        }
    }

    pub fn apply_slice(&mut self, facts: SliceFacts) {
        let key = (facts.namespace.clone(), facts.name.clone());
        self.remove_slice(&key.0, &key.1);
        for (ip, identity) in self.slice_identities(&facts) {
            self.slice_by_ip.insert(ip, identity);
        }
        self.slices.insert(key, facts);
    }

    pub fn remove_slice(&mut self, namespace: &str, name: &str) {
        let key: NamespacedName = (Arc::from(namespace), Arc::from(name));
        if let Some(facts) = self.slices.remove(&key) {
            for endpoint in &facts.endpoints {
                let ip = normalize(endpoint.ip);
                let still_listed = self.slices.values().any(|other| {
                    other
                        .endpoints
                        .iter()
                        .any(|other| normalize(other.ip) == ip)
                });
                if !still_listed {
                    self.slice_by_ip.remove(&ip);
                }
            }
        }
    }

    pub fn replace_slices(&mut self, slices: Vec<SliceFacts>) {
        self.slices.clear();
        self.slice_by_ip.clear();
        for slice in slices {
            self.apply_slice(slice);
        }
    }

    fn rebuild_pods_of(&mut self, namespace: &str) {
        let pods: Vec<Arc<str>> = self
            .pods
            .values()
            .filter(|live| live.identity.namespace.as_deref() == Some(namespace))
            .map(|live| live.facts.uid.clone())
            .collect();
        self.rebuild_pods(&pods);
    }

    fn rebuild_namespace(&mut self, namespace: &str) {
        self.rebuild_pods_of(namespace);
        let services: Vec<ServiceFacts> = self
            .services
            .values()
            .filter(|live| &*live.facts.namespace == namespace)
            .map(|live| live.facts.clone())
            .collect();
        for service in services {
            self.apply_service(service);
        }
        let slices: Vec<SliceFacts> = self
            .slices
            .values()
            .filter(|slice| &*slice.namespace == namespace)
            .cloned()
            .collect();
        for slice in slices {
            self.apply_slice(slice);
        }
    }

    fn rebuild_pods(&mut self, uids: &[Arc<str>]) {
        for uid in uids {
            let Some(live) = self.pods.get(uid) else {
                continue;
            };
            let origin = PodOrigin {
                namespace: live
                    .identity
                    .namespace
                    .clone()
                    .unwrap_or_else(|| Arc::from("")),
                name: live.identity.pod.clone().unwrap_or_else(|| Arc::from("")),
                node: live.identity.node.clone(),
                workload: live.identity.workload.clone(),
            };
            let identity = self.pod_identity(origin, &live.facts);
            for ip in &live.facts.ips {
                if let Some(tenures) = self.pods_by_ip.get_mut(&normalize(*ip)) {
                    for tenure in tenures
                        .iter_mut()
                        .filter(|tenure| tenure.until.is_none() && tenure.uid == *uid)
                    {
                        tenure.identity = identity.clone();
                    }
                }
            }
            if let Some(live) = self.pods.get_mut(uid) {
                live.identity = identity;
            }
        }
    }

    fn rebuild_all(&mut self) {
        let uids: Vec<Arc<str>> = self.pods.keys().cloned().collect();
        self.rebuild_pods(&uids);
        let services: Vec<ServiceFacts> = self
            .services
            .values()
            .map(|live| live.facts.clone())
            .collect();
        self.replace_services(services);
        let nodes: Vec<NodeFacts> = self.nodes.values().map(|live| live.facts.clone()).collect();
        self.replace_nodes(nodes);
        let slices: Vec<SliceFacts> = self.slices.values().cloned().collect();
        self.replace_slices(slices);
    }

    // ---- questions ----

    /// Who `ip` was at `at`.
    pub fn resolve(&self, ip: IpAddr, at: Millis) -> Resolved {
        let ip = normalize(ip);
        if let Some(tenure) = self.tenure_at(ip, at) {
            return Resolved {
                identity: tenure.identity.clone(),
                range: tenure.range.clone(),
            };
        }
        let range = self.ranges.lookup(ip);
        let identity = self
            .service_by_ip
            .get(&ip)
            .or_else(|| self.node_by_ip.get(&ip))
            .or_else(|| self.slice_by_ip.get(&ip))
            .or_else(|| range.map(|range| &range.identity))
            .unwrap_or(&self.external)
            .clone();
        Resolved {
            identity,
            range: range.map(|range| range.facts.clone()),
        }
    }

    fn tenure_at(&self, ip: IpAddr, at: Millis) -> Option<&Tenure> {
        self.pods_by_ip
            .get(&ip)?
            .iter()
            .rev()
            .find(|tenure| tenure.from <= at && tenure.until.is_none_or(|until| at < until))
    }

    /// The pod with this uid, as it is now.
    pub fn pod(&self, uid: &str) -> Option<&Arc<Identity>> {
        self.pods.get(uid).map(|live| &live.identity)
    }

    /// The name of a pod's container by the runtime's id.
    pub fn container(&self, uid: &str, container_id: &str) -> Option<&Arc<str>> {
        self.pods.get(uid)?.facts.container(container_id)
    }

    /// The current addresses of running pods that a policy selector picks: in `namespace` if
    /// given, in namespaces whose labels match `namespace_selector` if given, with labels that
    /// match `selector` if given.
    pub fn pod_ips_matching(
        &self,
        namespace: Option<&str>,
        namespace_selector: Option<&LabelSelector>,
        selector: Option<&LabelSelector>,
    ) -> Vec<IpAddr> {
        let empty = BTreeMap::new();
        let mut ips: Vec<IpAddr> = self
            .pods
            .values()
            .filter(|live| {
                let pod_namespace = live.identity.namespace.as_deref().unwrap_or("");
                namespace.is_none_or(|namespace| pod_namespace == namespace)
                    && namespace_selector.is_none_or(|wanted| {
                        let labels = self
                            .namespaces
                            .get(pod_namespace)
                            .map_or(&empty, |namespace| &namespace.labels);
                        wanted.matches(labels)
                    })
            })
            .map(|live| &live.facts)
            .filter(|pod| selector.is_none_or(|wanted| wanted.matches(&pod.labels)))
            .flat_map(|pod| pod.ips.iter().copied().map(normalize))
            .collect();
        ips.sort_unstable();
        ips.dedup();
        ips
    }
}

/// The service network, learned from ClusterIPs when the inventory declares none: per family, the
/// smallest network covering every ClusterIP, widened to at least a /16 (IPv4) or /112 (IPv6),
/// since the ClusterIPs in use are a sample of the allocator's range, which Kubernetes does not
/// publish to every reader.
fn learned_service_networks(cluster_ips: impl Iterator<Item = IpAddr>) -> Vec<IpNetwork> {
    let mut v4: Option<(u32, u32)> = None;
    let mut v6: Option<(u128, u128)> = None;
    for ip in cluster_ips.map(normalize) {
        match ip {
            IpAddr::V4(ip) => {
                let bits = ip.to_bits();
                v4 = Some(v4.map_or((bits, bits), |(low, high)| (low.min(bits), high.max(bits))));
            }
            IpAddr::V6(ip) => {
                let bits = ip.to_bits();
                v6 = Some(v6.map_or((bits, bits), |(low, high)| (low.min(bits), high.max(bits))));
            }
        }
    }
    let mut networks = Vec::new();
    if let Some((low, high)) = v4 {
        let prefix = ((low ^ high).leading_zeros() as u8).min(16);
        if let Ok(network) = ipnetwork::Ipv4Network::new(std::net::Ipv4Addr::from_bits(low), prefix)
        {
            networks.push(IpNetwork::V4(
                ipnetwork::Ipv4Network::new(network.network(), prefix).unwrap_or(network),
            ));
        }
    }
    if let Some((low, high)) = v6 {
        let prefix = ((low ^ high).leading_zeros() as u8).min(112);
        if let Ok(network) = ipnetwork::Ipv6Network::new(std::net::Ipv6Addr::from_bits(low), prefix)
        {
            networks.push(IpNetwork::V6(
                ipnetwork::Ipv6Network::new(network.network(), prefix).unwrap_or(network),
            ));
        }
    }
    networks
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{Workload, kubernetes::SliceEndpoint};

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pod(uid: &str, namespace: &str, name: &str, address: &str, created: Millis) -> PodFacts {
        PodFacts {
            uid: Arc::from(uid),
            namespace: Arc::from(namespace),
            name: Arc::from(name),
            node: Some(Arc::from("node-a")),
            ips: vec![ip(address)],
            labels: BTreeMap::new(),
            tags: Tags::default(),
            workload: None,
            containers: BTreeMap::new(),
            finished: false,
            created: Some(created),
        }
    }

    fn inventory(text: &str) -> Inventory {
        crate::inventory::parse(text, Path::new("inventory.yaml")).expect("valid inventory")
    }

    fn pod_name(index: &IdentityIndex, address: &str, at: Millis) -> Option<String> {
        let resolved = index.resolve(ip(address), at);
        (resolved.identity.kind == Kind::Pod)
            .then(|| resolved.identity.pod.as_deref().unwrap_or("").to_owned())
    }

    #[test]
    fn a_reused_address_belongs_to_whoever_held_it_at_the_time() {
        let mut index = IdentityIndex::new(Inventory::default());
        index.apply_pod(pod("u1", "shop", "old", "10.1.0.5", 1_000), 2_000);
        index.remove_pod("u1", 5_000);
        index.apply_pod(pod("u2", "shop", "new", "10.1.0.5", 6_000), 7_000);
        assert_eq!(
            pod_name(&index, "10.1.0.5", 1_500).as_deref(),
            Some("old"),
            "known since creation"
        );
        assert_eq!(pod_name(&index, "10.1.0.5", 4_999).as_deref(), Some("old"));
        assert_eq!(pod_name(&index, "10.1.0.5", 5_500), None, "nobody held it");
        assert_eq!(pod_name(&index, "10.1.0.5", 6_000).as_deref(), Some("new"));
        assert_eq!(pod_name(&index, "10.1.0.5", 99_000).as_deref(), Some("new"));
    }

    #[test]
    fn a_new_holder_ends_the_old_one_even_before_its_delete_arrives() {
        let mut index = IdentityIndex::new(Inventory::default());
        index.apply_pod(pod("u1", "shop", "old", "10.1.0.5", 1_000), 1_000);
        // The new pod was created while the old one was still listed: the old one keeps the
        // address until the new one is seen with it.
        index.apply_pod(pod("u2", "shop", "new", "10.1.0.5", 3_000), 8_000);
        assert_eq!(pod_name(&index, "10.1.0.5", 2_000).as_deref(), Some("old"));
        assert_eq!(pod_name(&index, "10.1.0.5", 8_000).as_deref(), Some("new"));
        index.remove_pod("u1", 9_000);
        assert_eq!(
            pod_name(&index, "10.1.0.5", 9_500).as_deref(),
            Some("new"),
            "the late delete changes nothing"
        );
    }

    #[test]
    fn finished_pods_release_their_address_and_history_is_bounded() {
        let mut index = IdentityIndex::new(Inventory::default());
        let mut job = pod("u1", "ci", "job", "10.1.0.9", 0);
        index.apply_pod(job.clone(), 0);
        job.finished = true;
        index.apply_pod(job, 1_000);
        assert_eq!(pod_name(&index, "10.1.0.9", 500).as_deref(), Some("job"));
        assert_eq!(pod_name(&index, "10.1.0.9", 1_500), None);
        for n in 0..100 {
            let uid = format!("churn-{n}");
            let now = 2_000 + n * 10;
            index.apply_pod(pod(&uid, "ci", &uid, "10.1.0.9", now), now);
            index.remove_pod(&uid, now + 5);
        }
        assert!(index.pods_by_ip[&ip("10.1.0.9")].len() <= MAX_TENURES_PER_ADDRESS);
        // Long after, the released address's history is gone entirely.
        index.apply_pod(
            pod("late", "ci", "late", "10.1.0.10", 0),
            DEFAULT_RETENTION_MS * 3,
        );
        index.remove_pod("late", DEFAULT_RETENTION_MS * 3);
        assert!(
            !index.pods_by_ip.contains_key(&ip("10.1.0.10"))
                || index.pods_by_ip[&ip("10.1.0.10")]
                    .iter()
                    .all(|t| t.until.is_some())
        );
    }

    #[test]
    fn relisting_removes_what_is_gone_and_keeps_what_stays() {
        let mut index = IdentityIndex::new(Inventory::default());
        index.apply_pod(pod("u1", "a", "one", "10.1.0.1", 0), 0);
        index.apply_pod(pod("u2", "a", "two", "10.1.0.2", 0), 0);
        index.replace_pods(vec![pod("u2", "a", "two", "10.1.0.2", 0)], 10_000);
        assert_eq!(pod_name(&index, "10.1.0.1", 20_000), None);
        assert_eq!(pod_name(&index, "10.1.0.1", 5_000).as_deref(), Some("one"));
        assert_eq!(pod_name(&index, "10.1.0.2", 20_000).as_deref(), Some("two"));
        assert_eq!(index.stats().pods, 1);
    }

    #[test]
    fn summaries_list_ranges_and_this_nodes_workloads() {
        let mut index = IdentityIndex::new(inventory(
            "ranges:\n  - {name: acme, kind: customer, customer: Acme, cidrs: [203.0.113.0/24, \"2001:db8::/32\"]}\n",
        ));
        index.set_local_node("node-a");
        index.apply_node(NodeFacts {
            name: Arc::from("node-b"),
            ips: vec![ip("192.168.1.11")],
            pod_cidrs: vec!["10.2.0.0/24".parse().expect("cidr")],
            labels: BTreeMap::new(),
            tags: Tags::default(),
        });
        let mut web = |uid: &str, address: &str, node: &str| {
            let mut facts = pod(uid, "shop", &format!("web-{uid}"), address, 0);
            facts.node = Some(Arc::from(node));
            facts.workload = Some(Workload {
                kind: Arc::from("Deployment"),
                name: Arc::from("web"),
            });
            facts.labels = labels(&[("app", "web")]);
            index.apply_pod(facts, 0);
        };
        web("a", "10.1.0.5", "node-a");
        web("b", "10.1.0.6", "node-a");
        web("c", "10.2.0.7", "node-b");
        index.apply_service(ServiceFacts {
            namespace: Arc::from("shop"),
            name: Arc::from("web"),
            ips: Vec::new(),
            cluster_ips: Vec::new(),
            labels: BTreeMap::new(),
            tags: Tags::default(),
            api: None,
            selector: labels(&[("app", "web")]),
        });
        index.refresh();
        let ranges: Vec<(String, Vec<String>, bool)> = index
            .range_summary()
            .into_iter()
            .map(|range| {
                let cidrs = range.cidrs.iter().map(ToString::to_string).collect();
                (range.name.to_string(), cidrs, range.learned)
            })
            .collect();
        assert_eq!(
            ranges,
            [
                (
                    "acme".to_owned(),
                    vec!["203.0.113.0/24".to_owned(), "2001:db8::/32".to_owned()],
                    false
                ),
                (
                    "pod-cidr/node-b".to_owned(),
                    vec!["10.2.0.0/24".to_owned()],
                    true
                ),
            ]
        );
        let workloads = index.workload_summary();
        assert_eq!(workloads.len(), 1, "{workloads:?}");
        assert_eq!(
            (&*workloads[0].name, workloads[0].pods),
            ("web", 2),
            "this node's pods only"
        );
        assert_eq!(workloads[0].services, [Arc::<str>::from("web")]);
    }

    #[test]
    fn a_pod_is_named_by_the_service_that_selects_it() {
        let mut index = IdentityIndex::new(Inventory::default());
        let mut web = pod("u1", "shop", "web-1", "10.1.0.5", 0);
        web.labels = labels(&[("app", "web"), ("tier", "front")]);
        index.apply_pod(web, 0);
        let mut other = pod("u2", "lab", "web-2", "10.1.0.6", 0);
        other.labels = labels(&[("app", "web")]);
        index.apply_pod(other, 0);
        let service = |name: &str, selector: &[(&str, &str)]| ServiceFacts {
            namespace: Arc::from("shop"),
            name: Arc::from(name),
            ips: Vec::new(),
            cluster_ips: Vec::new(),
            labels: BTreeMap::new(),
            tags: Tags::default(),
            api: None,
            selector: labels(selector),
        };
        let service_at = |index: &IdentityIndex, address: &str| {
            index
                .resolve(ip(address), 1)
                .identity
                .service
                .as_deref()
                .map(str::to_owned)
        };
        assert_eq!(service_at(&index, "10.1.0.5"), None);
        index.apply_service(service("web", &[("app", "web")]));
        assert_eq!(service_at(&index, "10.1.0.5").as_deref(), Some("web"));
        assert_eq!(
            service_at(&index, "10.1.0.6"),
            None,
            "services select in their namespace"
        );
        index.apply_service(service("web", &[("app", "web"), ("tier", "back")]));
        assert_eq!(
            service_at(&index, "10.1.0.5"),
            None,
            "a changed selector is followed"
        );
        index.replace_services(vec![
            service("front", &[("tier", "front")]),
            service("all", &[("app", "web")]),
            service("manual", &[]),
        ]);
        assert_eq!(
            service_at(&index, "10.1.0.5").as_deref(),
            Some("all"),
            "the first by name"
        );
        index.remove_service("shop", "all");
        assert_eq!(service_at(&index, "10.1.0.5").as_deref(), Some("front"));
        index.remove_service("shop", "front");
        assert_eq!(service_at(&index, "10.1.0.5"), None);
        let mut late = pod("u3", "shop", "web-3", "10.1.0.7", 0);
        late.labels = labels(&[("tier", "front")]);
        index.apply_service(service("front", &[("tier", "front")]));
        index.apply_pod(late, 0);
        assert_eq!(
            service_at(&index, "10.1.0.7").as_deref(),
            Some("front"),
            "a pod after its service"
        );
    }

    #[test]
    fn precedence_is_pod_service_node_slice_range_external() {
        let mut index = IdentityIndex::new(inventory(
            "cluster: prod\nenvironment: staging\nranges:\n  - {name: corp, kind: internal, cidrs: [10.0.0.0/8]}\n  - {name: acme, kind: customer, customer: Acme, cidrs: [203.0.113.0/24], environment: production}\n",
        ));
        index.apply_pod(pod("u1", "shop", "web", "10.1.0.5", 0), 0);
        index.apply_service(ServiceFacts {
            namespace: Arc::from("shop"),
            name: Arc::from("db"),
            ips: vec![ip("10.96.0.20")],
            cluster_ips: vec![ip("10.96.0.20")],
            labels: BTreeMap::new(),
            tags: Tags::default(),
            api: None,
            selector: BTreeMap::new(),
        });
        index.apply_node(NodeFacts {
            name: Arc::from("node-b"),
            ips: vec![ip("192.168.1.11")],
            pod_cidrs: vec!["10.2.0.0/24".parse().expect("cidr")],
            labels: BTreeMap::new(),
            tags: Tags::default(),
        });
        index.apply_slice(SliceFacts {
            namespace: Arc::from("shop"),
            name: Arc::from("db-x"),
            service: Some(Arc::from("db")),
            endpoints: vec![SliceEndpoint {
                ip: ip("10.2.0.7"),
                pod: Some(Arc::from("db-0")),
                node: Some(Arc::from("node-b")),
            }],
        });
        index.refresh();
        let at = 1_000;
        let web = index.resolve(ip("10.1.0.5"), at);
        assert_eq!(
            (web.identity.kind, web.identity.pod.as_deref()),
            (Kind::Pod, Some("web"))
        );
        assert_eq!(web.range.as_ref().map(|range| &*range.range), Some("corp"));
        assert_eq!(web.identity.environment.as_deref(), Some("staging"));
        assert_eq!(web.identity.cluster.as_deref(), Some("prod"));
        let db = index.resolve(ip("10.96.0.20"), at);
        assert_eq!(
            (db.identity.kind, db.identity.service.as_deref()),
            (Kind::Service, Some("db"))
        );
        assert_eq!(
            db.range.as_ref().map(|range| &*range.range),
            Some("service-network"),
            "learned beats the wider declared range"
        );
        assert_eq!(
            index.resolve(ip("192.168.1.11"), at).identity.kind,
            Kind::Node
        );
        let remote = index.resolve(ip("10.2.0.7"), at);
        assert_eq!(
            (
                remote.identity.kind,
                remote.identity.pod.as_deref(),
                remote.identity.node.as_deref()
            ),
            (Kind::Pod, Some("db-0"), Some("node-b"))
        );
        let unknown_pod = index.resolve(ip("10.2.0.8"), at);
        assert_eq!(unknown_pod.identity.kind, Kind::Range);
        assert_eq!(unknown_pod.identity.node.as_deref(), Some("node-b"));
        assert_eq!(
            unknown_pod
                .range
                .as_ref()
                .map(|range| (&*range.range, range.range_kind)),
            Some(("pod-cidr/node-b", RangeKind::PodNetwork))
        );
        assert!(unknown_pod.identity.internal);
        let customer = index.resolve(ip("203.0.113.9"), at);
        assert_eq!(customer.identity.customer.as_deref(), Some("Acme"));
        assert_eq!(customer.identity.environment.as_deref(), Some("production"));
        assert!(!customer.identity.internal);
        let outside = index.resolve(ip("198.51.100.1"), at);
        assert_eq!(outside.identity.kind, Kind::External);
        assert!(outside.range.is_none());
        assert_eq!(
            index
                .resolve(ip("::ffff:10.1.0.5"), at)
                .identity
                .pod
                .as_deref(),
            Some("web")
        );
    }

    #[test]
    fn a_declared_range_beats_a_learned_one_of_the_same_network() {
        let mut index = IdentityIndex::new(inventory(
            "ranges:\n  - {name: our-pods, kind: pod-network, cidrs: [10.2.0.0/24], owner: net@example.com}\n",
        ));
        index.apply_node(NodeFacts {
            name: Arc::from("node-b"),
            ips: vec![],
            pod_cidrs: vec!["10.2.0.0/24".parse().expect("cidr")],
            labels: BTreeMap::new(),
            tags: Tags::default(),
        });
        index.refresh();
        let resolved = index.resolve(ip("10.2.0.3"), 0);
        assert_eq!(
            resolved.range.as_ref().map(|range| &*range.range),
            Some("our-pods")
        );
        assert_eq!(
            resolved.identity.tags.get("owner").as_deref(),
            Some("net@example.com")
        );
    }

    #[test]
    fn tags_come_from_rules_then_namespace_then_the_pod() {
        let mut index = IdentityIndex::new(inventory(
            "environment: production\ntagRules:\n  - {namespace: payments, tags: {product: checkout, owner: payments-team@example.com, team: pay}}\n  - {selector: {matchLabels: {app: ledger}}, kinds: [pod], tags: {pci: in-scope}}\n",
        ));
        index.apply_namespace(NamespaceFacts {
            name: Arc::from("payments"),
            labels: BTreeMap::new(),
            tags: Tags::from_metadata(&labels(&[("moat.dev/team", "payments-core")])),
        });
        let mut ledger = pod("u1", "payments", "ledger-0", "10.1.0.7", 0);
        ledger.labels = labels(&[("app", "ledger")]);
        ledger.tags = Tags::from_metadata(&labels(&[("moat.dev/environment", "staging")]));
        ledger.workload = Some(Workload {
            kind: Arc::from("StatefulSet"),
            name: Arc::from("ledger"),
        });
        index.apply_pod(ledger, 0);
        let identity = index.resolve(ip("10.1.0.7"), 1).identity;
        let tags: Vec<(&str, &str)> = identity.tags.iter().collect();
        assert_eq!(
            tags,
            vec![
                ("owner", "payments-team@example.com"),
                ("pci", "in-scope"),
                ("product", "checkout"),
                ("team", "payments-core")
            ]
        );
        assert_eq!(
            identity.environment.as_deref(),
            Some("staging"),
            "the pod's own environment label wins"
        );

        // Relabelling the namespace retags its pods.
        index.apply_namespace(NamespaceFacts {
            name: Arc::from("payments"),
            labels: BTreeMap::new(),
            tags: Tags::default(),
        });
        assert_eq!(
            index
                .resolve(ip("10.1.0.7"), 2)
                .identity
                .tags
                .get("team")
                .as_deref(),
            Some("pay")
        );
    }

    #[test]
    fn selectors_pick_running_pods_by_labels_and_namespace() {
        let mut index = IdentityIndex::new(Inventory::default());
        index.apply_namespace(NamespaceFacts {
            name: Arc::from("shop"),
            labels: labels(&[("team", "store")]),
            tags: Tags::default(),
        });
        let mut db = pod("u1", "shop", "db-0", "10.1.0.1", 0);
        db.labels = labels(&[("app", "db")]);
        let mut other_db = pod("u2", "lab", "db-0", "10.1.0.2", 0);
        other_db.labels = labels(&[("app", "db")]);
        let mut finished = pod("u3", "shop", "db-old", "10.1.0.3", 0);
        finished.labels = labels(&[("app", "db")]);
        finished.finished = true;
        index.apply_pod(db, 0);
        index.apply_pod(other_db, 0);
        index.apply_pod(finished, 0);
        let app_db: LabelSelector =
            serde_yaml::from_str("matchLabels: {app: db}").expect("selector");
        assert_eq!(
            index.pod_ips_matching(Some("shop"), None, Some(&app_db)),
            vec![ip("10.1.0.1")]
        );
        assert_eq!(
            index.pod_ips_matching(None, None, Some(&app_db)),
            vec![ip("10.1.0.1"), ip("10.1.0.2")]
        );
        let team: LabelSelector =
            serde_yaml::from_str("matchLabels: {team: store}").expect("selector");
        assert_eq!(
            index.pod_ips_matching(None, Some(&team), None),
            vec![ip("10.1.0.1")]
        );
    }

    #[test]
    fn the_learned_service_network_covers_the_cluster_ips() {
        let networks = learned_service_networks(
            [ip("10.96.0.1"), ip("10.96.3.7"), ip("fd00:96::a")].into_iter(),
        );
        assert_eq!(
            networks,
            vec![
                "10.96.0.0/16".parse::<IpNetwork>().expect("cidr"),
                "fd00:96::/112".parse().expect("cidr")
            ]
        );
        let wide = learned_service_networks([ip("10.96.0.1"), ip("10.100.0.1")].into_iter());
        assert_eq!(
            wide,
            vec!["10.96.0.0/13".parse::<IpNetwork>().expect("cidr")]
        );
        assert!(learned_service_networks(std::iter::empty()).is_empty());
    }
}
