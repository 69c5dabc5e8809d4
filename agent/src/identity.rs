//! Identity on the node: the index of who an address is (fed by the inventory file and the
//! Kubernetes watches), which process runs in which pod and container (from its cgroup), and how
//! current the Kubernetes view is.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use identity::{
    Identity, IdentityIndex, Inventory,
    cgroup::{ContainerRef, container_of, pod_cgroup_in_proc},
    index::{IndexStats, Resolved},
    kubernetes::{Millis, NodeFacts},
    tags::Tags,
};
use serde::Serialize;

use crate::kubernetes::{Change, Update};

/// Identity facts of one end of a call or a drop, as records carry them next to the address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    #[serde(flatten)]
    pub identity: Arc<Identity>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub range: Option<Arc<identity::index::RangeFacts>>,
    /// The container of the process, when its cgroup is a pod container's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<str>>,
}

impl PeerIdentity {
    /// A few words for people: `pod shop/web-1`, `service shop/db`, `node n1`, `range acme`,
    /// `external`.
    pub fn short(&self) -> String {
        let identity = &self.identity;
        let scoped = |name: &Option<Arc<str>>| {
            format!(
                "{}/{}",
                identity.namespace.as_deref().unwrap_or("?"),
                name.as_deref().unwrap_or("?")
            )
        };
        match identity.kind {
            identity::Kind::Pod => format!("pod {}", scoped(&identity.pod)),
            identity::Kind::Service => format!("service {}", scoped(&identity.service)),
            identity::Kind::Node => format!("node {}", identity.node.as_deref().unwrap_or("?")),
            identity::Kind::Range => format!(
                "range {}",
                self.range.as_ref().map_or("?", |range| &*range.range)
            ),
            identity::Kind::External => "external".to_owned(),
        }
    }
}

/// How many cgroups' pods are remembered; past it the cache starts over (and counts that).
const MAX_CACHED_CGROUPS: usize = 65_536;
/// How long a process's container, read from /proc by pid where no cgroup id tells processes
/// apart, is trusted: reading /proc for both ends of every call is most of the agent's work on
/// such hosts, and a pid is not handed to a process in another pod within a second (the kernel
/// cycles through the whole pid space before reusing one).
const PID_CONTAINER_TTL: Duration = Duration::from_secs(1);
/// Directories looked at, at most, when searching the cgroup hierarchy for a cgroup id whose
/// process has already exited.
const MAX_CGROUP_WALK: usize = 100_000;

/// What the Kubernetes watch of one resource is doing.
#[derive(Clone, Debug, Default)]
pub struct WatchHealth {
    pub synced: bool,
    /// Since when the watch keeps failing: the facts are this old, at least.
    pub failing_since: Option<Instant>,
    pub last_error: Option<String>,
    pub errors: u64,
    pub rejected: u64,
}

/// What an update changed, for the agent to act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Pods or namespaces changed: policies that select pods need resolving again.
    pub pods: bool,
    /// A watch changed state, or an object was rejected: worth a record.
    pub event: Option<WatchEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatchEvent {
    pub resource: &'static str,
    /// `synced`, `failing` or `rejected`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct NodeIdentity {
    index: IdentityIndex,
    cgroup2: Option<PathBuf>,
    containers: HashMap<u64, Option<ContainerRef>>,
    /// Where cgroup ids do not tell processes apart (cgroup v1 only: every process is in the
    /// root, id 1): each process's container as read from /proc, and when.
    pid_containers: HashMap<u32, (Instant, Option<ContainerRef>)>,
    pub cgroup_cache_resets: u64,
    pub health: BTreeMap<&'static str, WatchHealth>,
}

pub fn wall_millis(time: SystemTime) -> Millis {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as Millis)
}

impl NodeIdentity {
    pub fn new(inventory: Inventory, cgroup2: Option<PathBuf>) -> Self {
        Self {
            index: IdentityIndex::new(inventory),
            cgroup2,
            containers: HashMap::new(),
            pid_containers: HashMap::new(),
            cgroup_cache_resets: 0,
            health: BTreeMap::new(),
        }
    }

    pub fn index(&self) -> &IdentityIndex {
        &self.index
    }

    pub fn stats(&self) -> IndexStats {
        self.index.stats()
    }

    /// Without Kubernetes, this host is a node of its own: its addresses are named after it.
    pub fn set_host(&mut self, name: &str, addresses: Vec<IpAddr>) {
        self.index.apply_node(NodeFacts {
            name: Arc::from(name),
            ips: addresses,
            pod_cidrs: Vec::new(),
            labels: BTreeMap::new(),
            tags: Tags::default(),
        });
        self.index.refresh();
    }

    /// With Kubernetes: this node's name, so only its pods' containers are kept.
    pub fn set_local_node(&mut self, name: &str) {
        self.index.set_local_node(name);
    }

    pub fn set_inventory(&mut self, inventory: Inventory) {
        self.index.set_inventory(inventory);
    }

    /// Who `ip` was at `at`, and, when the process is known, which pod and container it runs in
    /// (a process's cgroup names its pod more surely than an address: host-network pods share
    /// the node's).
    pub fn peer(&mut self, ip: IpAddr, at: Millis, process: Option<(u32, u64)>) -> PeerIdentity {
        let Resolved { identity, range } = self.index.resolve(ip, at);
        if let Some((pid, cgroup_id)) = process
            && let Some(container) = self.container_of(pid, cgroup_id)
            && let Some(pod) = self.index.pod(&container.pod_uid)
        {
            let name = container
                .container_id
                .as_deref()
                .and_then(|id| self.index.container(&container.pod_uid, id))
                .cloned();
            return PeerIdentity {
                identity: pod.clone(),
                range,
                container: name,
            };
        }
        PeerIdentity {
            identity,
            range,
            container: None,
        }
    }

    fn container_of(&mut self, pid: u32, cgroup_id: u64) -> Option<ContainerRef> {
        // Cgroup id 1 is the root, all a host with only cgroup v1 reports: the pid is the key,
        // for a short while.
        let by_cgroup = cgroup_id > 1;
        let now = Instant::now();
        if by_cgroup {
            if let Some(known) = self.containers.get(&cgroup_id) {
                return known.clone();
            }
        } else if let Some((read, known)) = self.pid_containers.get(&pid)
            && now.duration_since(*read) < PID_CONTAINER_TTL
        {
            return known.clone();
        }
        let found = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|content| pod_cgroup_in_proc(&content).and_then(container_of))
            .or_else(|| self.search_cgroup(cgroup_id));
        if by_cgroup {
            if self.containers.len() >= MAX_CACHED_CGROUPS {
                self.containers.clear();
                self.cgroup_cache_resets += 1;
            }
            self.containers.insert(cgroup_id, found.clone());
        } else {
            if self.pid_containers.len() >= MAX_CACHED_CGROUPS {
                self.pid_containers.clear();
                self.cgroup_cache_resets += 1;
            }
            self.pid_containers.insert(pid, (now, found.clone()));
        }
        found
    }

    /// The process is gone (short-lived clients often are by the time their call is reported),
    /// but its cgroup usually is not: find the directory whose inode is the id.
    fn search_cgroup(&self, cgroup_id: u64) -> Option<ContainerRef> {
        use std::os::unix::fs::MetadataExt as _;
        let root = self.cgroup2.as_ref()?;
        if cgroup_id <= 1 {
            return None;
        }
        let mut pending = vec![root.clone()];
        let mut visited = 0;
        while let Some(directory) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&directory) else {
                continue;
            };
            for entry in entries.flatten() {
                visited += 1;
                if visited > MAX_CGROUP_WALK {
                    return None;
                }
                let Ok(metadata) = entry.metadata() else {
                    continue;
                };
                if !metadata.is_dir() {
                    continue;
                }
                let path = entry.path();
                if metadata.ino() == cgroup_id {
                    let relative = path.strip_prefix(root).ok()?;
                    return container_of(&format!("/{}", relative.display()));
                }
                pending.push(path);
            }
        }
        None
    }

    /// Applies one update from the Kubernetes watches at `now`.
    pub fn apply(&mut self, update: Update, now: SystemTime) -> Effect {
        let at = wall_millis(now);
        let mut effect = Effect::default();
        match update {
            Update::Pods(change) => {
                effect.pods = true;
                match change {
                    Change::Apply(pod) => self.index.apply_pod(pod, at),
                    Change::Delete(uid) => self.index.remove_pod(&uid, at),
                    Change::Replace(pods) => self.index.replace_pods(pods, at),
                }
            }
            Update::Namespaces(change) => {
                effect.pods = true;
                match change {
                    Change::Apply(namespace) => self.index.apply_namespace(namespace),
                    Change::Delete(name) => self.index.remove_namespace(&name),
                    Change::Replace(namespaces) => self.index.replace_namespaces(namespaces),
                }
            }
            Update::Services(change) => match change {
                Change::Apply(service) => self.index.apply_service(service),
                Change::Delete(key) => {
                    let (namespace, name) = key.split_once('/').unwrap_or(("", &key));
                    self.index.remove_service(namespace, name);
                }
                Change::Replace(services) => self.index.replace_services(services),
            },
            Update::Nodes(change) => match change {
                Change::Apply(node) => self.index.apply_node(node),
                Change::Delete(name) => self.index.remove_node(&name),
                Change::Replace(nodes) => self.index.replace_nodes(nodes),
            },
            Update::Slices(change) => match change {
                Change::Apply(slice) => self.index.apply_slice(slice),
                Change::Delete(key) => {
                    let (namespace, name) = key.split_once('/').unwrap_or(("", &key));
                    self.index.remove_slice(namespace, name);
                }
                Change::Replace(slices) => self.index.replace_slices(slices),
            },
            // The agent's enforcement owns policies, and its analysis the ConfigMaps of specs;
            // nothing here.
            Update::Policies(_) | Update::ConfigMap { .. } => {}
            Update::Rejected { resource, error } => {
                self.health.entry(resource).or_default().rejected += 1;
                effect.event = Some(WatchEvent {
                    resource,
                    state: "rejected",
                    error: Some(error),
                });
            }
            Update::Synced { resource } => {
                let health = self.health.entry(resource).or_default();
                let was_current = health.synced && health.failing_since.is_none();
                health.synced = true;
                health.failing_since = None;
                if !was_current {
                    effect.event = Some(WatchEvent {
                        resource,
                        state: "synced",
                        error: None,
                    });
                }
            }
            Update::Failed { resource, error } => {
                let health = self.health.entry(resource).or_default();
                health.errors += 1;
                health.last_error = Some(error.clone());
                if health.failing_since.is_none() {
                    health.failing_since = Some(Instant::now());
                    effect.event = Some(WatchEvent {
                        resource,
                        state: "failing",
                        error: Some(error),
                    });
                }
            }
        }
        effect
    }

    /// Rebuilds what a batch of updates left stale; call before resolving.
    pub fn refresh(&mut self) {
        self.index.refresh();
    }

    /// Per resource, how long its facts have possibly been out of date.
    pub fn staleness(&self) -> Vec<(&'static str, Duration)> {
        self.health
            .iter()
            .map(|(resource, health)| {
                (
                    *resource,
                    health
                        .failing_since
                        .map_or(Duration::ZERO, |since| since.elapsed()),
                )
            })
            .collect()
    }
}

/// This host's addresses, for standalone mode.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that freeifaddrs releases below; every
    // pointer is checked before it is read.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return addresses;
        }
        let mut entry = list;
        while !entry.is_null() {
            let address = (*entry).ifa_addr;
            if !address.is_null() {
                match i32::from((*address).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(address as *const libc::sockaddr_in);
                        addresses
                            .push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(address as *const libc::sockaddr_in6);
                        addresses.push(IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    addresses.sort_unstable();
    addresses.dedup();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_cgroup_ids_a_process_container_is_read_once_a_second() {
        let mut node = NodeIdentity::new(Inventory::default(), None);
        let pid = std::process::id();
        // This test process is in no pod: what /proc says.
        assert_eq!(node.container_of(pid, 1), None);
        let remembered = ContainerRef {
            pod_uid: "0b1c".to_owned(),
            container_id: None,
        };
        node.pid_containers
            .insert(pid, (Instant::now(), Some(remembered.clone())));
        assert_eq!(node.container_of(pid, 1), Some(remembered.clone()));
        let stale = Instant::now()
            .checked_sub(PID_CONTAINER_TTL)
            .expect("monotonic clock past a second");
        node.pid_containers.insert(pid, (stale, Some(remembered)));
        assert_eq!(node.container_of(pid, 1), None, "read again once stale");
    }

    #[test]
    fn this_host_has_loopback_addresses() {
        let addresses = host_addresses();
        assert!(
            addresses.contains(&"127.0.0.1".parse::<IpAddr>().expect("ip")),
            "{addresses:?}"
        );
    }

    #[test]
    fn a_standalone_host_names_its_own_addresses() {
        let mut node = NodeIdentity::new(Inventory::default(), None);
        node.set_host("laptop", host_addresses());
        let peer = node.peer("127.0.0.1".parse().expect("ip"), 0, None);
        assert_eq!(peer.identity.kind, identity::Kind::Node);
        assert_eq!(peer.identity.node.as_deref(), Some("laptop"));
        let json = serde_json::to_value(&peer).expect("serializes");
        assert_eq!(json["kind"], "node");
        assert_eq!(json["internal"], true);
        assert_eq!(peer.short(), "node laptop");
        let outside = node.peer("192.0.2.1".parse().expect("ip"), 0, None);
        assert_eq!(outside.short(), "external");
        assert_eq!(
            serde_json::to_value(&outside).expect("serializes")["kind"],
            "external"
        );
    }

    #[test]
    fn watch_failures_are_reported_once_and_recovery_once() {
        let mut node = NodeIdentity::new(Inventory::default(), None);
        let now = SystemTime::now();
        let failed = || Update::Failed {
            resource: "pods",
            error: "connection refused".to_owned(),
        };
        assert_eq!(
            node.apply(failed(), now).event.map(|event| event.state),
            Some("failing")
        );
        assert_eq!(node.apply(failed(), now).event, None);
        assert_eq!(node.health["pods"].errors, 2);
        assert!(node.staleness()[0].1 <= Duration::from_secs(1));
        assert_eq!(
            node.apply(Update::Synced { resource: "pods" }, now)
                .event
                .map(|event| event.state),
            Some("synced")
        );
        assert_eq!(
            node.apply(Update::Synced { resource: "pods" }, now).event,
            None
        );
        assert_eq!(node.staleness()[0].1, Duration::ZERO);
    }
}
