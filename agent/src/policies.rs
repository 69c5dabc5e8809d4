//! The policy in force is made of several: the policy file and every valid MoatPolicy, each
//! under its own names, with pod selectors resolved to the pods' current addresses. This module
//! keeps the parts and says, after any change (a file edit, a MoatPolicy, a pod), what the kernel
//! should now enforce, if anything changed.

use std::{collections::BTreeMap, sync::Arc};

use identity::IdentityIndex;
use policy::{Overlap, Policy, PolicyError};

/// A MoatPolicy that could not join the policy in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `namespace/name`.
    pub policy: String,
    pub error: String,
}

/// What to enforce now.
#[derive(Clone, Debug)]
pub struct Enforcement {
    pub policy: Arc<Policy>,
    /// The file, then `MoatPolicy namespace/name` of each part.
    pub sources: Vec<String>,
    /// Addresses selected pods have, across all identities.
    pub pod_addresses: usize,
    pub overlaps: Vec<Overlap>,
}

#[derive(Debug, Default)]
pub struct Policies {
    file: Option<(String, Arc<Policy>)>,
    custom: BTreeMap<String, Policy>,
    in_force: Option<Arc<Policy>>,
}

impl Policies {
    pub fn set_file(&mut self, path: String, policy: Arc<Policy>) {
        self.file = Some((path, policy));
    }

    /// A MoatPolicy was added or changed: valid ones become part of the policy, invalid ones
    /// leave it (the rest keeps being enforced) and are refused.
    pub fn set_custom(
        &mut self,
        key: String,
        policy: Result<Policy, PolicyError>,
    ) -> Option<Refusal> {
        match policy {
            Ok(policy) => {
                self.custom.insert(key, policy);
                None
            }
            Err(error) => {
                self.custom.remove(&key);
                Some(Refusal {
                    policy: key,
                    error: error.to_string(),
                })
            }
        }
    }

    pub fn remove_custom(&mut self, key: &str) {
        self.custom.remove(key);
    }

    /// After a relist: exactly these MoatPolicies exist.
    pub fn replace_custom(
        &mut self,
        all: Vec<(String, Result<Policy, PolicyError>)>,
    ) -> Vec<Refusal> {
        self.custom.clear();
        all.into_iter()
            .filter_map(|(key, policy)| self.set_custom(key, policy))
            .collect()
    }

    pub fn has_pod_selectors(&self) -> bool {
        self.file
            .iter()
            .any(|(_, policy)| policy.has_pod_selectors())
            || self.custom.values().any(Policy::has_pod_selectors)
    }

    /// The combined, resolved policy, unless it is what the kernel already enforces. A
    /// MoatPolicy that conflicts with the parts before it (the file first, then by namespace
    /// and name) is refused and left out.
    pub fn next(&mut self, index: &IdentityIndex) -> (Option<Enforcement>, Vec<Refusal>) {
        let mut refusals = Vec::new();
        let combined = loop {
            let mut parts: Vec<(String, &Policy)> = Vec::new();
            let mut sources = Vec::new();
            if let Some((path, policy)) = &self.file {
                parts.push((String::new(), policy));
                sources.push(path.clone());
            }
            for (key, policy) in &self.custom {
                parts.push((format!("{key}/"), policy));
                sources.push(format!("MoatPolicy {key}"));
            }
            match Policy::combine(&parts) {
                Ok(policy) => break (policy, sources),
                Err(error) => {
                    let key = error.source_name.trim_end_matches('/').to_owned();
                    if self.custom.remove(&key).is_none() {
                        // Only a MoatPolicy can conflict (the file comes first); never loop.
                        break (Policy::allow_all(), sources);
                    }
                    refusals.push(Refusal {
                        policy: key,
                        error: error.message,
                    });
                }
            }
        };
        let (combined, sources) = combined;
        let (resolved, overlaps) = combined.resolve_pods(&|selector| {
            index.pod_ips_matching(
                selector.namespace.as_deref(),
                selector.namespaces.as_ref(),
                selector.labels.as_ref(),
            )
        });
        if self.in_force.as_deref() == Some(&resolved) {
            return (None, refusals);
        }
        let pod_addresses = resolved
            .identities
            .iter()
            .zip(&combined.identities)
            .map(|(resolved, declared)| resolved.cidrs.len() - declared.cidrs.len())
            .sum();
        (
            Some(Enforcement {
                policy: Arc::new(resolved),
                sources,
                pod_addresses,
                overlaps,
            }),
            refusals,
        )
    }

    /// The kernel now enforces `policy`.
    pub fn enforced(&mut self, policy: Arc<Policy>) {
        self.in_force = Some(policy);
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap as Map, path::Path};

    use identity::{Inventory, kubernetes::PodFacts, tags::Tags};

    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        policy::parse(text, Path::new("p.yaml"), &|_| {
            Err(std::io::Error::other("no files"))
        })
    }

    fn pod(uid: &str, ip: &str, app: &str) -> PodFacts {
        PodFacts {
            uid: uid.into(),
            namespace: "shop".into(),
            name: uid.into(),
            node: None,
            ips: vec![ip.parse().expect("ip")],
            labels: Map::from([("app".to_owned(), app.to_owned())]),
            tags: Tags::default(),
            workload: None,
            containers: Map::new(),
            finished: false,
            created: Some(0),
        }
    }

    const SELECTING: &str = "identities:\n  db: { selector: { namespace: shop, matchLabels: { app: db } } }\nrules:\n  - { name: no-db, action: deny, from: any, to: db }\n";

    #[test]
    fn selectors_follow_pods_and_nothing_is_reapplied_without_a_change() {
        let mut index = IdentityIndex::new(Inventory::default());
        let mut policies = Policies::default();
        policies.set_file(
            "policy.yaml".to_owned(),
            Arc::new(parse(SELECTING).expect("valid")),
        );
        let (first, _) = policies.next(&index);
        let first = first.expect("a first policy");
        assert_eq!(first.pod_addresses, 0);
        policies.enforced(first.policy);
        assert!(policies.next(&index).0.is_none(), "nothing changed");

        index.apply_pod(pod("u1", "198.18.3.10", "db"), 0);
        index.apply_pod(pod("u2", "198.18.3.11", "web"), 0);
        let next = policies.next(&index).0.expect("the db pod joins");
        assert_eq!(
            next.policy.identities[0].cidrs,
            vec![
                "198.18.3.10/32"
                    .parse::<ipnetwork::IpNetwork>()
                    .expect("cidr")
            ]
        );
        assert_eq!(next.pod_addresses, 1);
        policies.enforced(next.policy);

        // Relabelled: the web pod becomes a db.
        index.apply_pod(pod("u2", "198.18.3.11", "db"), 1);
        let next = policies.next(&index).0.expect("relabelled pod joins");
        assert_eq!(next.pod_addresses, 2);
    }

    #[test]
    fn a_bad_or_conflicting_moat_policy_is_refused_and_the_rest_stays() {
        let index = IdentityIndex::new(Inventory::default());
        let mut policies = Policies::default();
        policies.set_file(
            "policy.yaml".to_owned(),
            Arc::new(parse("identities:\n  db: { cidrs: [198.18.3.10/32] }\n").expect("valid")),
        );
        assert!(
            policies
                .set_custom("shop/good".to_owned(), parse(SELECTING))
                .is_none()
        );
        let refusal = policies
            .set_custom("shop/bad".to_owned(), parse("rules: [{ name: x }]"))
            .expect("refused");
        assert_eq!(refusal.policy, "shop/bad");
        assert!(
            policies
                .set_custom(
                    "shop/clash".to_owned(),
                    parse("identities:\n  x: { cidrs: [198.18.3.10/32] }\n")
                )
                .is_none()
        );
        let (enforcement, refusals) = policies.next(&index);
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].policy, "shop/clash");
        assert!(
            refusals[0].error.contains("already has"),
            "{}",
            refusals[0].error
        );
        let enforcement = enforcement.expect("the rest is enforced");
        assert_eq!(
            enforcement.sources,
            vec!["policy.yaml", "MoatPolicy shop/good"]
        );
        let rules: Vec<&str> = enforcement
            .policy
            .rules
            .iter()
            .map(|rule| rule.name.as_str())
            .collect();
        assert_eq!(rules, vec!["shop/good/no-db"]);
    }
}
