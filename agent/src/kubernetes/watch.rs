//! One watch per resource, each a task that feeds [`Update`]s into a bounded channel. The
//! channel applies back-pressure (a watch waits for the loop) rather than dropping: a lost update
//! would leave the index wrong until the next relist.

use std::{collections::BTreeMap, fmt::Debug, sync::Arc, time::Duration};

use futures::{StreamExt as _, TryStreamExt as _};
use identity::kubernetes::{
    NamespaceFacts, NodeFacts, ObjectError, PodFacts, ServiceFacts, SliceFacts, namespace_facts,
    node_facts, pod_facts, service_facts, slice_facts,
};
use k8s_openapi::{
    api::{
        core::v1::{ConfigMap, Namespace, Node, Pod, Service},
        discovery::v1::EndpointSlice,
    },
    serde::de::DeserializeOwned,
};
use kube::{Api, Client, Resource, ResourceExt as _, runtime::watcher};
use tokio::{sync::mpsc, task::AbortHandle};
use tracing::{debug, info, warn};

use super::{
    MoatPolicy,
    apis::{ConfigMapDocuments, config_map_documents},
};

/// Which pods this agent watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every pod of the cluster: remote pods are named with labels and owner, and policy
    /// selectors match pods anywhere. Costs the API server one pod watch per node.
    Cluster,
    /// Only this node's pods (a field selector); remote pods are named from EndpointSlices and
    /// known otherwise by their node's pod CIDR.
    Node,
}

/// The same change for every kind of fact.
#[derive(Debug)]
pub enum Change<F> {
    Apply(F),
    /// The key: a pod's uid, `namespace/name` or a name.
    Delete(String),
    /// The complete set after a (re)list.
    Replace(Vec<F>),
}

#[derive(Debug)]
pub enum Update {
    Pods(Change<PodFacts>),
    Services(Change<ServiceFacts>),
    Nodes(Change<NodeFacts>),
    Namespaces(Change<NamespaceFacts>),
    Slices(Change<SliceFacts>),
    Policies(Change<MoatPolicy>),
    /// A ConfigMap a Service's `moat.dev/openapi` annotation names, as it is now: None when it
    /// does not exist.
    ConfigMap {
        namespace: String,
        name: String,
        documents: Option<Arc<ConfigMapDocuments>>,
    },
    /// An object that cannot be used; the rest of its resource goes on.
    Rejected {
        resource: &'static str,
        error: String,
    },
    /// The watch of `resource` has a complete, current view (after a list or relist).
    Synced {
        resource: &'static str,
    },
    /// The watch of `resource` failed and is retrying; its facts may be stale from now on.
    Failed {
        resource: &'static str,
        error: String,
    },
}

/// What to watch.
#[derive(Clone, Debug)]
pub struct WatchTarget {
    pub node_name: Option<String>,
    pub scope: Scope,
    pub policies: bool,
}

/// Starts every watch; they run until the channel's receiver is dropped.
pub fn spawn_watches(client: Client, target: &WatchTarget, updates: mpsc::Sender<Update>) {
    let pods_config = match (target.scope, &target.node_name) {
        (Scope::Node, Some(node)) => {
            watcher::Config::default().fields(&format!("spec.nodeName={node}"))
        }
        _ => watcher::Config::default(),
    };
    spawn(
        Api::<Pod>::all(client.clone()),
        pods_config,
        "pods",
        pod_facts,
        |pod| pod.metadata.uid.clone().unwrap_or_default(),
        Update::Pods,
        updates.clone(),
    );
    spawn(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        "services",
        service_facts,
        namespaced_key,
        Update::Services,
        updates.clone(),
    );
    spawn(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        "nodes",
        node_facts,
        |node| node.name_any(),
        Update::Nodes,
        updates.clone(),
    );
    spawn(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
        "namespaces",
        namespace_facts,
        |namespace| namespace.name_any(),
        Update::Namespaces,
        updates.clone(),
    );
    if target.scope == Scope::Node {
        spawn(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
            "endpointslices",
            slice_facts,
            namespaced_key,
            Update::Slices,
            updates.clone(),
        );
    }
    if target.policies {
        spawn(
            Api::<MoatPolicy>::all(client),
            watcher::Config::default(),
            "moatpolicies",
            |policy| Ok(policy.clone()),
            namespaced_key,
            Update::Policies,
            updates,
        );
    }
}

fn namespaced_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or(""),
        object.meta().name.as_deref().unwrap_or("")
    )
}

/// One watch per ConfigMap that a Service's annotation names, each for that name alone (a
/// `metadata.name` field selector, as kubelet watches the ConfigMaps its pods mount): the agent
/// neither receives nor holds the cluster's other ConfigMaps.
pub struct ConfigMapWatches {
    client: Client,
    updates: mpsc::Sender<Update>,
    /// (namespace, name) to its watch; as many as there are annotated APIs, which are bounded.
    running: BTreeMap<(String, String), AbortHandle>,
}

impl ConfigMapWatches {
    pub fn new(client: Client, updates: mpsc::Sender<Update>) -> Self {
        Self {
            client,
            updates,
            running: BTreeMap::new(),
        }
    }

    /// Watches exactly the ConfigMaps in `wanted`: starts the missing watches, stops the others.
    pub fn follow(&mut self, wanted: &std::collections::BTreeSet<(String, String)>) {
        self.running.retain(|key, watch| {
            let keep = wanted.contains(key);
            if !keep {
                watch.abort();
            }
            keep
        });
        for key in wanted {
            if self.running.contains_key(key) {
                continue;
            }
            let (namespace, name) = key.clone();
            info!(configmap = %format!("{namespace}/{name}"), "watching a ConfigMap an annotation names");
            let watch = spawn(
                Api::<ConfigMap>::namespaced(self.client.clone(), &namespace),
                watcher::Config::default().fields(&format!("metadata.name={name}")),
                "configmaps",
                config_map_documents,
                namespaced_key,
                move |change| Update::ConfigMap {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    documents: match change {
                        Change::Apply(documents) => Some(Arc::new(documents)),
                        Change::Delete(_) => None,
                        Change::Replace(listed) => listed.into_iter().next().map(Arc::new),
                    },
                },
                self.updates.clone(),
            );
            self.running.insert(key.clone(), watch);
        }
    }
}

impl Drop for ConfigMapWatches {
    fn drop(&mut self) {
        for watch in self.running.values() {
            watch.abort();
        }
    }
}

fn spawn<K, F, W>(
    api: Api<K>,
    config: watcher::Config,
    resource: &'static str,
    facts: fn(&K) -> Result<F, ObjectError>,
    key: fn(&K) -> String,
    wrap: W,
    updates: mpsc::Sender<Update>,
) -> AbortHandle
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
    F: Send + 'static,
    W: Fn(Change<F>) -> Update + Send + Sync + 'static,
{
    let task = tokio::spawn(async move {
        let mut delay = MIN_RETRY;
        loop {
            match watch_once(&api, &config, resource, facts, key, &wrap, &updates).await {
                Ended::ReceiverGone => return,
                Ended::Synced => delay = MIN_RETRY,
                Ended::Failed => {}
            }
            tokio::time::sleep(jittered(delay)).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    });
    task.abort_handle()
}

/// Retries of a failed watch wait from this, doubling up to [`MAX_RETRY`], with jitter so that
/// every node's agent does not come back at the same instant.
const MIN_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    // 75% to 125% of the delay.
    delay.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}

enum Ended {
    /// The watch listed everything, then failed.
    Synced,
    /// The watch failed before it listed everything.
    Failed,
    ReceiverGone,
}

/// One watcher from a fresh list to its first failure. After a failure the agent starts over
/// with a list rather than resuming the watch, so it learns for certain when it is current
/// again (a resumed watch on a quiet cluster says nothing), and what changed while it was away.
/// The list is served from the API server's watch cache (resourceVersion 0), which is cheap.
async fn watch_once<K, F>(
    api: &Api<K>,
    config: &watcher::Config,
    resource: &'static str,
    facts: fn(&K) -> Result<F, ObjectError>,
    key: fn(&K) -> String,
    wrap: &impl Fn(Change<F>) -> Update,
    updates: &mpsc::Sender<Update>,
) -> Ended
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
    F: Send + 'static,
{
    // Bookmarks are on in kube's default config: a watch that ends normally resumes from a
    // recent resourceVersion instead of relisting.
    let mut stream = watcher(api.clone(), config.clone()).boxed();
    let mut listing: Vec<F> = Vec::new();
    let mut synced = false;
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return Ended::Failed,
            Err(error) => {
                warn!(resource, %error, "Kubernetes watch failed; relisting after a back-off");
                let failed = Update::Failed {
                    resource,
                    error: error.to_string(),
                };
                if updates.send(failed).await.is_err() {
                    return Ended::ReceiverGone;
                }
                return if synced { Ended::Synced } else { Ended::Failed };
            }
        };
        let rejected = |error: ObjectError| Update::Rejected {
            resource,
            error: error.to_string(),
        };
        let outgoing = match event {
            watcher::Event::Init => {
                listing.clear();
                Vec::new()
            }
            watcher::Event::InitApply(object) => match facts(&object) {
                Ok(facts) => {
                    listing.push(facts);
                    Vec::new()
                }
                Err(error) => vec![rejected(error)],
            },
            watcher::Event::InitDone => {
                debug!(resource, objects = listing.len(), "listed");
                synced = true;
                vec![
                    wrap(Change::Replace(std::mem::take(&mut listing))),
                    Update::Synced { resource },
                ]
            }
            watcher::Event::Apply(object) => match facts(&object) {
                Ok(facts) => vec![wrap(Change::Apply(facts))],
                // An object that became unusable is gone as far as identity goes.
                Err(error) => vec![rejected(error), wrap(Change::Delete(key(&object)))],
            },
            watcher::Event::Delete(object) => vec![wrap(Change::Delete(key(&object)))],
        };
        for update in outgoing {
            if updates.send(update).await.is_err() {
                return Ended::ReceiverGone;
            }
        }
    }
}
