//! The compact form the index keeps of each pod: strings shared through an interner (a cluster
//! has 100,000 pods but a few hundred namespaces, nodes, workloads and label values), labels in
//! a sorted slice, containers in a slice. A 100,000-pod cluster then fits the agent's memory
//! budget.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use policy::selector::Labels;
use rustc_hash::FxHashSet;

use crate::{Workload, kubernetes::PodFacts, tags::Tags};

/// Shared copies of repeated strings.
#[derive(Debug, Default)]
pub struct Interner {
    strings: FxHashSet<Arc<str>>,
    /// Size after the last sweep: the next sweep waits until the set has doubled.
    swept_at: usize,
}

impl Interner {
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(known) = self.strings.get(text) {
            return known.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(shared.clone());
        shared
    }

    /// Forgets strings nothing else holds any more (labels of deleted pods), once the set has
    /// doubled since the last sweep, so churn cannot grow it without bound.
    pub fn sweep(&mut self) {
        if self.strings.len() < 2 * self.swept_at.max(1024) {
            return;
        }
        self.strings.retain(|text| Arc::strong_count(text) > 1);
        self.swept_at = self.strings.len();
    }

    pub(crate) fn len(&self) -> usize {
        self.strings.len()
    }
}

/// Labels sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactLabels(Box<[(Arc<str>, Arc<str>)]>);

impl CompactLabels {
    pub fn new(labels: &BTreeMap<String, String>, interner: &mut Interner) -> Self {
        Self(
            labels
                .iter()
                .map(|(key, value)| (interner.intern(key), interner.intern(value)))
                .collect(),
        )
    }
}

impl Labels for CompactLabels {
    fn label(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(candidate, _)| (**candidate).cmp(key))
            .ok()
            .map(|index| &*self.0[index].1)
    }
}

/// Who a pod is, as its identity will say: the identity is rebuilt from this when tags change.
pub struct PodOrigin {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub node: Option<Arc<str>>,
    pub workload: Option<Workload>,
}

/// What the index keeps of a pod besides its identity (which holds namespace, name, node and
/// workload, so they are not kept twice).
#[derive(Debug)]
pub struct StoredPod {
    pub uid: Arc<str>,
    /// Empty once the pod has finished: its addresses are released.
    pub ips: Box<[IpAddr]>,
    pub labels: CompactLabels,
    /// The pod's own tags (from its labels and annotations).
    pub tags: Tags,
    /// (container id, name); only for pods of this node, the only ones whose processes the
    /// agent sees.
    pub containers: Box<[(Box<str>, Arc<str>)]>,
}

impl StoredPod {
    /// `local_node`: this node's name, when known; other nodes' pods keep no containers.
    pub fn new(
        facts: PodFacts,
        local_node: Option<&str>,
        interner: &mut Interner,
    ) -> (Self, PodOrigin) {
        let ips = if facts.finished {
            Box::default()
        } else {
            facts.ips.into_boxed_slice()
        };
        let local = local_node.is_none_or(|local| facts.node.as_deref() == Some(local));
        let containers = if local {
            facts
                .containers
                .into_iter()
                .map(|(id, name)| (id.into_boxed_str(), interner.intern(&name)))
                .collect()
        } else {
            Box::default()
        };
        let origin = PodOrigin {
            namespace: interner.intern(&facts.namespace),
            name: facts.name,
            node: facts.node.map(|node| interner.intern(&node)),
            workload: facts.workload.map(|workload| Workload {
                kind: interner.intern(&workload.kind),
                name: interner.intern(&workload.name),
            }),
        };
        let pod = Self {
            labels: CompactLabels::new(&facts.labels, interner),
            containers,
            uid: facts.uid,
            ips,
            tags: facts.tags,
        };
        (pod, origin)
    }

    pub fn container(&self, id: &str) -> Option<&Arc<str>> {
        self.containers
            .iter()
            .find(|(candidate, _)| &**candidate == id)
            .map(|(_, name)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_found_by_key_and_strings_are_shared() {
        let mut interner = Interner::default();
        let map = BTreeMap::from([
            ("app".to_owned(), "db".to_owned()),
            ("tier".to_owned(), "gold".to_owned()),
        ]);
        let one = CompactLabels::new(&map, &mut interner);
        let two = CompactLabels::new(&map, &mut interner);
        assert_eq!(one.label("tier"), Some("gold"));
        assert_eq!(one.label("zone"), None);
        assert!(Arc::ptr_eq(&one.0[0].1, &two.0[0].1));
        assert_eq!(interner.len(), 4);
    }

    #[test]
    fn a_sweep_forgets_strings_nobody_holds() {
        let mut interner = Interner::default();
        let kept = interner.intern("kept");
        for n in 0..5000 {
            interner.intern(&format!("gone-{n}"));
        }
        interner.sweep();
        assert_eq!(interner.len(), 1);
        assert!(Arc::ptr_eq(&kept, &interner.intern("kept")));
    }
}
